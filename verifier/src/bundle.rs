//! Importing a tar bundle carried into an air-gapped site (SPEC.md §7 via a
//! directory source). No network is touched.
//!
//! The archive is never unpacked by the tar library: entries are iterated raw
//! (no GNU long-name or pax processing), and only regular files whose path is
//! exactly a site name are accepted — `head.cbor`, `root/{N}.cbor`,
//! `manifest/{V}.{hex}.cbor`, `shard|layer|prefix/{hex}.zst`, optionally
//! prefixed by `./` as GNU tar writes them. Directory entries are skipped only
//! for `./` and the five site directories. Everything else is refused with
//! `bad_bundle` naming the entry: `..`, absolute paths, symlinks, hard links,
//! devices, FIFOs, extension headers, unknown names and duplicates. Entry
//! count, each entry's size (by kind) and the total are capped before any byte
//! is read. Files stream into `create_new` files in a fresh staging directory,
//! which is then synced from like any mirror and removed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Code, Rejection, reject};
use crate::fetch::{DirFetch, Fetch, SITE_DIRS, SiteFile, io_error};
use crate::limits::Limits;
use crate::store::Store;
use crate::sync::{SyncOptions, SyncReport, staging_dir, sync_locked};

/// What was taken from a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unpacked {
    pub files: u64,
    pub bytes: u64,
}

/// The largest size accepted for a site file of this kind.
pub fn max_size(kind: SiteFile, limits: &Limits) -> u64 {
    match kind {
        SiteFile::Head => limits.max_head_bytes,
        SiteFile::Root(_) => limits.max_root_bytes,
        SiteFile::Manifest(..) => limits.max_manifest_bytes,
        SiteFile::Shard(_) | SiteFile::Layer(_) | SiteFile::Prefix(_) => limits.max_file_bytes,
        SiteFile::Checkpoint => crate::note::MAX_NOTE_BYTES as u64,
        SiteFile::Leaves => crate::tlog::MAX_LOG_SIZE * 32,
    }
}

fn entry_kind(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Symlink => "a symbolic link",
        tar::EntryType::Link => "a hard link",
        tar::EntryType::Char => "a character device",
        tar::EntryType::Block => "a block device",
        tar::EntryType::Fifo => "a FIFO",
        tar::EntryType::Continuous => "a contiguous file",
        tar::EntryType::GNUSparse => "a sparse file",
        tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {
            "a GNU long-name header (site names are short; write bundles with `consentry-publish bundle` or plain GNU/ustar tar)"
        }
        tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
            "a pax extended header (write bundles with `consentry-publish bundle` or `tar --format=gnu`)"
        }
        _ => "of an unknown entry type",
    }
}

/// A compressed bundle is refused by its magic bytes, with what to do: tar
/// would otherwise report a "numeric field" error from the middle of it.
fn refuse_compressed(loc: &str, file: &mut File) -> Result<(), Rejection> {
    use std::io::{Read, Seek};
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).map_err(|e| io_error(loc, &e))?;
    file.rewind().map_err(|e| io_error(loc, &e))?;
    let m = &magic[..n];
    let what = if m.starts_with(&[0x1f, 0x8b]) {
        Some(("gzip", "gunzip -k FILE"))
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(("zstd", "zstd -d FILE"))
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(("xz", "xz -dk FILE"))
    } else if m.starts_with(b"BZh") {
        Some(("bzip2", "bzip2 -dk FILE"))
    } else {
        None
    };
    match what {
        Some((kind, cmd)) => Err(reject(
            loc,
            Code::BadBundle,
            format!(
                "is {kind}-compressed; a bundle is a plain tar: decompress it first ({cmd}) and import the .tar"
            ),
        )),
        None => Ok(()),
    }
}

/// Check a bundle's entries and write the accepted files into `dest` (a fresh,
/// empty directory). All-or-nothing: on any refusal the caller discards `dest`.
pub fn unpack(tar_path: &Path, dest: &Path, limits: &Limits) -> Result<Unpacked, Rejection> {
    let tloc = tar_path.display().to_string();
    let mut file = File::open(tar_path).map_err(|e| io_error(&tloc, &e))?;
    refuse_compressed(&tloc, &mut file)?;
    let mut ar = tar::Archive::new(BufReader::new(file));
    let entries = ar
        .entries()
        .map_err(|e| reject(&tloc, Code::BadBundle, format!("is not a tar archive: {e}")))?
        .raw(true);
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Unpacked::default();
    let mut count: u64 = 0;
    for entry in entries {
        count += 1;
        let mut entry = entry.map_err(|e| {
            reject(
                &tloc,
                Code::BadBundle,
                format!("entry {count} cannot be read: {e}"),
            )
        })?;
        if count > limits.max_bundle_entries {
            return Err(reject(
                &tloc,
                Code::LimitExceeded,
                format!("has more than {} entries", limits.max_bundle_entries),
            ));
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |why: &str| {
            reject(
                &tloc,
                Code::BadBundle,
                format!("entry {count} {name:?} {why}"),
            )
        };
        if std::str::from_utf8(&raw_name).is_err() {
            return Err(refuse("has a name that is not UTF-8"));
        }
        if name.starts_with('/') {
            return Err(refuse("is an absolute path"));
        }
        if name.split('/').any(|c| c == "..") {
            return Err(refuse("contains `..`"));
        }
        let rel = name.strip_prefix("./").unwrap_or(&name);
        let et = entry.header().entry_type();
        if et == tar::EntryType::Directory {
            let d = rel.strip_suffix('/').unwrap_or(rel);
            if d.is_empty() || d == "." || SITE_DIRS.contains(&d) {
                continue;
            }
            return Err(refuse("is a directory other than the site's own"));
        }
        if et != tar::EntryType::Regular {
            return Err(refuse(&format!("is {}", entry_kind(et))));
        }
        let Some(kind) = SiteFile::parse(rel) else {
            return Err(refuse(
                "is not a site file (head.cbor, root/N.cbor, manifest/V.HEX.cbor, shard|layer|prefix/HEX.zst)",
            ));
        };
        if !seen.insert(rel.to_string()) {
            return Err(refuse("appears twice"));
        }
        let size = entry
            .header()
            .entry_size()
            .map_err(|e| refuse(&format!("has a bad size field: {e}")))?;
        let max = max_size(kind, limits);
        if size > max {
            return Err(reject(
                &tloc,
                Code::LimitExceeded,
                format!(
                    "entry {count} {name:?} is {size} bytes; at most {max} are accepted for it"
                ),
            ));
        }
        out.bytes = out.bytes.saturating_add(size);
        if out.bytes > limits.max_bundle_bytes {
            return Err(reject(
                &tloc,
                Code::LimitExceeded,
                format!("holds more than {} bytes of files", limits.max_bundle_bytes),
            ));
        }
        if let Some(d) = kind.dir() {
            let p = dest.join(d);
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(&p.display().to_string(), &e)),
            }
        }
        let target = dest.join(rel);
        let loc = target.display().to_string();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&target)
            .map_err(|e| io_error(&loc, &e))?;
        let copied = io::copy(&mut (&mut entry).take(size), &mut f)
            .map_err(|e| refuse(&format!("cannot be read: {e}")))?;
        if copied != size {
            return Err(refuse("is truncated"));
        }
        f.flush().map_err(|e| io_error(&loc, &e))?;
        out.files += 1;
    }
    Ok(out)
}

/// The unpacked bundle as a source; messages name `bundle.tar:entry`.
struct BundleFetch {
    dir: DirFetch,
    tar: String,
}

impl Fetch for BundleFetch {
    fn get(&self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Rejection> {
        self.dir.get(path, max_len).map_err(|e| Rejection {
            file: self.location(path),
            ..e
        })
    }

    fn location(&self, path: &str) -> String {
        format!("{}:{path}", self.tar)
    }
}

/// Import a tar bundle into `store`: check and stage its entries, then sync
/// from them exactly as from a mirror (SPEC.md §7). The store changes only if
/// everything verifies.
pub fn import(store: &Store, tar_path: &Path, opts: &SyncOptions) -> Result<SyncReport, Rejection> {
    let _lock = store.lock()?;
    store.remove_leftovers();
    let staging = staging_dir(store)?;
    unpack(tar_path, staging.path(), store.limits())?;
    let source = BundleFetch {
        dir: DirFetch::new(staging.path()),
        tar: tar_path.display().to_string(),
    };
    let report = sync_locked(store, &source, opts);
    store.reporter().finish();
    drop(staging);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsite::{self, NOW, Opts, TestSite};
    use crate::verify::Expiry;

    #[test]
    fn a_gzip_or_zstd_compressed_bundle_is_refused_with_decompress_first() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("b.tgz", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0]),
            ("b.tar.zst", zstd::encode_all(&b"not a tar"[..], 3).unwrap()),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = unpack(&p, &dir.path().join("out"), &Limits::DEFAULT).unwrap_err();
            assert_eq!(e.code, Code::BadBundle, "{name}");
            assert!(e.detail.contains("decompress it first"), "{e}");
        }
    }

    struct Entry {
        name: Vec<u8>,
        kind: tar::EntryType,
        data: Vec<u8>,
        link: Option<&'static str>,
    }

    fn file(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            link: None,
        }
    }

    fn special(name: &str, kind: tar::EntryType) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            data: Vec::new(),
            link: None,
        }
    }

    /// Write entries with raw headers (the tar crate's safe path setters
    /// refuse `..` and absolute names, which these tests need).
    fn write_tar(path: &Path, entries: &[Entry]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            {
                let old = h.as_old_mut();
                old.name = [0; 100];
                old.name[..e.name.len()].copy_from_slice(&e.name);
            }
            h.set_entry_type(e.kind);
            h.set_size(e.data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = e.link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, e.data.as_slice()).unwrap();
        }
        b.finish().unwrap();
    }

    fn site_entries(site: &TestSite, prefix: &str) -> Vec<Entry> {
        let mut v = Vec::new();
        if !prefix.is_empty() {
            v.push(special(prefix, tar::EntryType::Directory));
        }
        for d in SITE_DIRS {
            if site.dir.join(d).exists() {
                v.push(special(&format!("{prefix}{d}/"), tar::EntryType::Directory));
            }
        }
        for f in site.files() {
            v.push(file(
                &format!("{prefix}{f}"),
                &std::fs::read(site.path(&f)).unwrap(),
            ));
        }
        v
    }

    struct Env {
        tmp: tempfile::TempDir,
        site: TestSite,
        store: Store,
    }

    fn env() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        site.publish(&testsite::example_records(), &Opts::default());
        let (store, _) = Store::init(tmp.path().join("store"), site.root_bytes(1), false).unwrap();
        Env { tmp, site, store }
    }

    fn opts() -> SyncOptions {
        SyncOptions {
            now: NOW,
            expiry: Expiry::Enforce,
            keep_history: None,
        }
    }

    fn no_staging_left(store: &Store) -> bool {
        std::fs::read_dir(store.dir().join("local"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("staging-"))
    }

    #[test]
    fn a_bundle_imports_with_or_without_dot_slash() {
        for prefix in ["", "./"] {
            let e = env();
            let tar = e.tmp.path().join("b.tar");
            write_tar(&tar, &site_entries(&e.site, prefix));
            let rep = import(&e.store, &tar, &opts()).unwrap();
            assert_eq!(rep.to, 1);
            let snap = e.store.current(NOW, Expiry::Enforce).unwrap();
            assert_eq!(snap.manifest.version, 1);
            assert!(no_staging_left(&e.store));
        }
    }

    #[test]
    fn a_bundle_with_a_tampered_file_changes_nothing() {
        let e = env();
        let tar = e.tmp.path().join("b.tar");
        let mut entries = site_entries(&e.site, "");
        let shard = entries
            .iter_mut()
            .find(|x| x.name.starts_with(b"shard/") && x.kind == tar::EntryType::Regular)
            .unwrap();
        shard.data[5] ^= 1;
        write_tar(&tar, &entries);
        let err = import(&e.store, &tar, &opts()).unwrap_err();
        assert_eq!(err.code, Code::HashMismatch);
        assert!(err.file.starts_with(&tar.display().to_string()), "{err}");
        assert!(err.file.contains(":shard/"), "{err}");
        assert!(!e.store.dir().join("head.cbor").exists());
        assert!(no_staging_left(&e.store));
    }

    #[test]
    fn every_bad_entry_kind_is_refused_by_name() {
        let e = env();
        let head = std::fs::read(e.site.path("head.cbor")).unwrap();
        let h = "ab".repeat(32);
        let mut link = special("root/2.cbor", tar::EntryType::Symlink);
        link.link = Some("/etc/passwd");
        let mut hard = special("root/3.cbor", tar::EntryType::Link);
        hard.link = Some("head.cbor");
        let cases: Vec<(Entry, &str)> = vec![
            (file("../head.cbor", &head), "`..`"),
            (file("root/../../x", &head), "`..`"),
            (file("/head.cbor", &head), "absolute"),
            (link, "symbolic link"),
            (hard, "hard link"),
            (
                special("shard/dev", tar::EntryType::Char),
                "character device",
            ),
            (special("shard/blk", tar::EntryType::Block), "block device"),
            (special("fifo", tar::EntryType::Fifo), "FIFO"),
            (special("x", tar::EntryType::XHeader), "pax"),
            (special("x", tar::EntryType::GNULongName), "long-name"),
            (file("README", b"hi"), "not a site file"),
            (
                file(&format!("shard/{}.zst", h.to_uppercase()), b"x"),
                "not a site file",
            ),
            (file("root/01.cbor", b"x"), "not a site file"),
            (special("etc/", tar::EntryType::Directory), "directory"),
            (
                special("shard/sub/", tar::EntryType::Directory),
                "directory",
            ),
        ];
        for (entry, want) in cases {
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            let tar = e.tmp.path().join("bad.tar");
            write_tar(&tar, &[file("head.cbor", &head), entry]);
            let err = import(&e.store, &tar, &opts()).unwrap_err();
            assert_eq!(err.code, Code::BadBundle, "{name}: {err}");
            assert!(err.detail.contains(want), "{name}: {err}");
            assert!(err.detail.contains(&format!("{name:?}")), "{name}: {err}");
            assert!(no_staging_left(&e.store));
            assert!(!e.store.dir().join("head.cbor").exists());
        }
        // Duplicates, with and without ./
        let tar = e.tmp.path().join("dup.tar");
        write_tar(
            &tar,
            &[file("head.cbor", &head), file("./head.cbor", &head)],
        );
        let err = import(&e.store, &tar, &opts()).unwrap_err();
        assert!(err.detail.contains("appears twice"), "{err}");
    }

    #[test]
    fn sizes_and_counts_are_capped_before_reading() {
        let e = env();
        let tar = e.tmp.path().join("big.tar");
        let big = vec![0u8; (Limits::DEFAULT.max_head_bytes + 1) as usize];
        write_tar(&tar, &[file("head.cbor", &big)]);
        let err = import(&e.store, &tar, &opts()).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded, "{err}");
        assert!(err.detail.contains("head.cbor"), "{err}");

        let limits = Limits {
            max_bundle_entries: 3,
            ..Limits::DEFAULT
        };
        let store = Store::open(e.store.dir()).unwrap().with_limits(limits);
        let tar = e.tmp.path().join("many.tar");
        write_tar(&tar, &site_entries(&e.site, ""));
        let err = import(&store, &tar, &opts()).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded, "{err}");

        let limits = Limits {
            max_bundle_bytes: 100,
            ..Limits::DEFAULT
        };
        let store = Store::open(e.store.dir()).unwrap().with_limits(limits);
        let err = import(&store, &tar, &opts()).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded, "{err}");
        assert!(err.detail.contains("bytes of files"), "{err}");

        let junk = e.tmp.path().join("junk.tar");
        std::fs::write(&junk, vec![7u8; 1024]).unwrap();
        assert_eq!(
            import(&e.store, &junk, &opts()).unwrap_err().code,
            Code::BadBundle
        );
    }

    #[test]
    fn a_bundle_from_gnu_tar_imports() {
        // GNU tar, when present, writes `./`, the directories and the files.
        let e = env();
        let tar = e.tmp.path().join("gnu.tar");
        let ok = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&e.site.dir)
            .arg(".")
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            return;
        }
        import(&e.store, &tar, &opts()).unwrap();
        assert_eq!(
            e.store
                .current(NOW, Expiry::Enforce)
                .unwrap()
                .manifest
                .version,
            1
        );
    }
}
