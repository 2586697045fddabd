//! Where snapshot files come from (SPEC.md §7): a mirror directory or an HTTP(S)
//! server laid out like a published site (SPEC.md §2).
//!
//! A [`Fetch`] is asked only for the flat site names of [`crate::docs::paths`]
//! ([`SiteFile::parse`] refuses anything else) and never returns more than the
//! caller's bound: it reads at most `max_len + 1` bytes and refuses the file
//! with `limit_exceeded` when that extra byte arrives. Nothing a fetcher
//! returns is trusted; the caller verifies every byte.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Code, Rejection, reject};

#[cfg(feature = "http")]
pub use crate::http::{HTTP_ATTEMPTS, HTTP_BACKOFF, HttpFetch, Timeouts};

/// A source of site files.
pub trait Fetch {
    /// The bytes of site file `path`, `None` when the source does not have it
    /// (HTTP 404, no such file). At most `max_len` bytes are accepted; a longer
    /// file is refused with `limit_exceeded` after reading `max_len + 1` bytes.
    fn get(&self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Rejection>;

    /// Where `path` lives, for messages (a URL or a file path).
    fn location(&self, path: &str) -> String;
}

/// The kinds of file a site holds, parsed from their exact flat names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteFile {
    /// `head.cbor`
    Head,
    /// `root/{N}.cbor`
    Root(u64),
    /// `manifest/{V}.{sha256 hex}.cbor`
    Manifest(u64, [u8; 32]),
    /// `shard/{sha256 hex}.zst`
    Shard([u8; 32]),
    /// `layer/{sha256 hex}.zst`
    Layer([u8; 32]),
    /// `prefix/{sha256 hex}.zst`
    Prefix([u8; 32]),
    /// `log/checkpoint`: the manifest log's checkpoint and cosignatures
    /// (SPEC.md §15; mutable, like the head)
    Checkpoint,
    /// `log/leaves`: the manifest log's leaves (append-only)
    Leaves,
}

/// The subdirectories of a site.
pub const SITE_DIRS: [&str; 6] = ["root", "manifest", "shard", "layer", "prefix", "log"];

fn parse_version(s: &str) -> Option<u64> {
    // Canonical decimal only: no sign, no leading zero, at least 1.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl SiteFile {
    /// Parse an exact site name; anything else (other spellings, upper-case
    /// hex, leading zeros, `..`, extra components) is `None`.
    pub fn parse(name: &str) -> Option<SiteFile> {
        if name == crate::docs::paths::HEAD {
            return Some(SiteFile::Head);
        }
        if name == crate::tlog::CHECKPOINT_PATH {
            return Some(SiteFile::Checkpoint);
        }
        if name == crate::tlog::LEAVES_PATH {
            return Some(SiteFile::Leaves);
        }
        let (dir, file) = name.split_once('/')?;
        match dir {
            "root" => parse_version(file.strip_suffix(".cbor")?).map(SiteFile::Root),
            "manifest" => {
                let (v, h) = file.strip_suffix(".cbor")?.split_once('.')?;
                Some(SiteFile::Manifest(parse_version(v)?, parse_hash(h)?))
            }
            "shard" => parse_hash(file.strip_suffix(".zst")?).map(SiteFile::Shard),
            "layer" => parse_hash(file.strip_suffix(".zst")?).map(SiteFile::Layer),
            "prefix" => parse_hash(file.strip_suffix(".zst")?).map(SiteFile::Prefix),
            _ => None,
        }
    }

    /// The canonical name (inverse of [`SiteFile::parse`]).
    pub fn name(self) -> String {
        use crate::docs::paths;
        match self {
            SiteFile::Head => paths::HEAD.to_string(),
            SiteFile::Root(v) => paths::root(v),
            SiteFile::Manifest(v, h) => paths::manifest(v, &h),
            SiteFile::Shard(h) => paths::shard(&h),
            SiteFile::Layer(h) => paths::layer(&h),
            SiteFile::Prefix(h) => paths::prefixes(&h),
            SiteFile::Checkpoint => crate::tlog::CHECKPOINT_PATH.to_string(),
            SiteFile::Leaves => crate::tlog::LEAVES_PATH.to_string(),
        }
    }

    /// The subdirectory holding the file, if any.
    pub fn dir(self) -> Option<&'static str> {
        match self {
            SiteFile::Head => None,
            SiteFile::Root(_) => Some("root"),
            SiteFile::Manifest(..) => Some("manifest"),
            SiteFile::Shard(_) => Some("shard"),
            SiteFile::Layer(_) => Some("layer"),
            SiteFile::Prefix(_) => Some("prefix"),
            SiteFile::Checkpoint | SiteFile::Leaves => Some("log"),
        }
    }
}

pub(crate) fn checked_name(path: &str, location: &str) -> Result<SiteFile, Rejection> {
    SiteFile::parse(path).ok_or_else(|| {
        reject(
            location,
            Code::BadPath,
            format!("{path:?} is not a site file name"),
        )
    })
}

pub(crate) fn too_long(location: &str, max_len: u64) -> Rejection {
    reject(
        location,
        Code::LimitExceeded,
        format!("is longer than the {max_len} bytes accepted for it"),
    )
}

/// Read at most `max_len + 1` bytes; refuse more than `max_len`.
pub fn read_bounded(mut r: impl Read, max_len: u64, location: &str) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    r.by_ref()
        .take(max_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| io_error(location, &e))?;
    if out.len() as u64 > max_len {
        return Err(too_long(location, max_len));
    }
    Ok(out)
}

/// A rejection for an I/O failure at `location`.
pub fn io_error(location: &str, e: &io::Error) -> Rejection {
    reject(location, Code::IoError, e.to_string())
}

/// A mirror directory (or a store, or an unpacked bundle).
#[derive(Debug, Clone)]
pub struct DirFetch {
    base: PathBuf,
}

impl DirFetch {
    pub fn new(base: impl Into<PathBuf>) -> DirFetch {
        DirFetch { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Fetch for DirFetch {
    fn location(&self, path: &str) -> String {
        self.base.join(path).display().to_string()
    }

    fn get(&self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Rejection> {
        let loc = self.location(path);
        let kind = checked_name(path, &loc)?;
        // Neither the subdirectory nor the file may be a symlink: a mirror
        // directory is served as it is, never redirected elsewhere on disk.
        if let Some(dir) = kind.dir() {
            let d = self.base.join(dir);
            match std::fs::symlink_metadata(&d) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(reject(
                        d.display().to_string(),
                        Code::SymlinkRefused,
                        "is a symbolic link; a mirror's directories must be real directories",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error(&d.display().to_string(), &e)),
            }
        }
        let full = self.base.join(path);
        let lmeta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&loc, &e)),
        };
        if lmeta.file_type().is_symlink() {
            return Err(reject(
                &loc,
                Code::SymlinkRefused,
                "is a symbolic link; a mirror's files must be regular files",
            ));
        }
        if !lmeta.file_type().is_file() {
            return Err(reject(&loc, Code::NotAFile, "is not a regular file"));
        }
        if lmeta.len() > max_len {
            return Err(too_long(&loc, max_len));
        }
        let file = match File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&loc, &e)),
        };
        // The file opened must be the one inspected (no swap for a symlink in
        // between).
        let meta = file.metadata().map_err(|e| io_error(&loc, &e))?;
        if meta.dev() != lmeta.dev() || meta.ino() != lmeta.ino() {
            return Err(reject(
                &loc,
                Code::SymlinkRefused,
                "changed while it was opened",
            ));
        }
        read_bounded(file, max_len, &loc).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn site_names_parse_exactly() {
        let h = [0x01u8; 32];
        for f in [
            SiteFile::Head,
            SiteFile::Root(1),
            SiteFile::Root(1234),
            SiteFile::Manifest(7, h),
            SiteFile::Shard(h),
            SiteFile::Layer(h),
            SiteFile::Prefix(h),
        ] {
            assert_eq!(SiteFile::parse(&f.name()), Some(f));
        }
        for bad in [
            "root/0.cbor",
            "root/01.cbor",
            "root/+1.cbor",
            "root/1.cbor/x",
            "../head.cbor",
            "/head.cbor",
            "./head.cbor",
            "HEAD.cbor",
            "shard/../head.cbor",
            &format!("shard/{}.zst", H.to_uppercase()),
            &format!("shard/{H}0.zst"),
            &format!("shard/{H}.zst.tmp"),
            &format!("manifest/1.{H}.zst"),
            &format!("manifest/1{H}.cbor"),
            &format!("blob/{H}.zst"),
            &format!("shard/x/{H}.zst"),
            "",
        ] {
            assert_eq!(SiteFile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dir_fetch_reads_bounded_and_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("root")).unwrap();
        std::fs::write(t.path().join("root/1.cbor"), b"hello").unwrap();
        std::fs::write(t.path().join("head.cbor"), b"head").unwrap();
        let f = DirFetch::new(t.path());
        assert_eq!(f.get("root/1.cbor", 5).unwrap().unwrap(), b"hello");
        assert_eq!(
            f.get("root/1.cbor", 4).unwrap_err().code,
            Code::LimitExceeded
        );
        assert_eq!(f.get("root/2.cbor", 5).unwrap(), None);
        assert_eq!(f.get(&format!("shard/{H}.zst"), 5).unwrap(), None);
        assert_eq!(
            f.get("root/../head.cbor", 5).unwrap_err().code,
            Code::BadPath
        );

        std::os::unix::fs::symlink(t.path().join("head.cbor"), t.path().join("root/3.cbor"))
            .unwrap();
        assert_eq!(
            f.get("root/3.cbor", 50).unwrap_err().code,
            Code::SymlinkRefused
        );

        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(format!("{H}.zst")), b"x").unwrap();
        std::os::unix::fs::symlink(other.path(), t.path().join("shard")).unwrap();
        assert_eq!(
            f.get(&format!("shard/{H}.zst"), 50).unwrap_err().code,
            Code::SymlinkRefused
        );

        std::fs::create_dir(t.path().join("root/4.cbor")).unwrap();
        assert_eq!(f.get("root/4.cbor", 50).unwrap_err().code, Code::NotAFile);
    }
}
