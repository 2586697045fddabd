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
use std::time::Duration;

use crate::error::{Code, Rejection, reject};

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
}

/// The subdirectories of a site.
pub const SITE_DIRS: [&str; 5] = ["root", "manifest", "shard", "layer", "prefix"];

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
        }
    }
}

fn checked_name(path: &str, location: &str) -> Result<SiteFile, Rejection> {
    SiteFile::parse(path).ok_or_else(|| {
        reject(
            location,
            Code::BadPath,
            format!("{path:?} is not a site file name"),
        )
    })
}

fn too_long(location: &str, max_len: u64) -> Rejection {
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

/// Timeouts of [`HttpFetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the TCP (and TLS) connection.
    pub connect: Duration,
    /// Longest wait for the response headers after the request is sent (a
    /// server that accepts and says nothing fails here).
    pub read: Duration,
    /// The whole request, from connecting to the last body byte: a server that
    /// trickles data fails here.
    pub overall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            overall: Duration::from_mins(2),
        }
    }
}

/// How many times a request is tried (connection failures and 5xx only).
pub const HTTP_ATTEMPTS: u32 = 3;
/// First pause between attempts; doubled each time.
pub const HTTP_BACKOFF: Duration = Duration::from_millis(250);
/// A site served over HTTP or HTTPS.
#[derive(Debug, Clone)]
pub struct HttpFetch {
    base: String,
    timeouts: Timeouts,
    agent: ureq::Agent,
}

enum Attempt {
    Done(Option<Vec<u8>>),
    /// Worth trying again (connection failure, 5xx).
    Retry(Rejection),
    /// Final.
    Fail(Rejection),
}

impl HttpFetch {
    /// `base` is the site's URL, with or without a trailing `/`.
    pub fn new(base: &str, timeouts: Timeouts) -> Result<HttpFetch, Rejection> {
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(reject(
                base,
                Code::BadSource,
                "is not an http:// or https:// URL",
            ));
        }
        let mut base = base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        // ureq enforces these on the socket itself: the overall deadline
        // covers connecting, the headers and every body byte, so a server
        // that trickles data fails at `overall` however it paces itself.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(timeouts.connect))
            .timeout_recv_response(Some(timeouts.read))
            .timeout_global(Some(timeouts.overall))
            .http_status_as_error(false)
            .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpFetch {
            base,
            timeouts,
            agent,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One request: status, then at most `max_len + 1` body bytes.
    fn attempt(&self, url: &str, max_len: u64) -> Attempt {
        let failed = |e: &ureq::Error| -> Rejection {
            let msg = match e {
                ureq::Error::Timeout(_) => format!(
                    "timed out ({e}); the server is too slow or stalled (overall timeout {} s)",
                    self.timeouts.overall.as_secs()
                ),
                _ => e.to_string(),
            };
            reject(url, Code::FetchFailed, msg)
        };
        let mut resp = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(
                e
                @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_)),
            ) if transient(&e) => {
                return Attempt::Retry(failed(&e));
            }
            Err(e) => return Attempt::Fail(failed(&e)),
        };
        let code = resp.status().as_u16();
        match code {
            404 => return Attempt::Done(None),
            500..=599 => {
                return Attempt::Retry(reject(
                    url,
                    Code::FetchFailed,
                    format!("server error: HTTP status {code}"),
                ));
            }
            200..=299 => {}
            _ => {
                return Attempt::Fail(reject(
                    url,
                    Code::FetchFailed,
                    format!("HTTP status {code}"),
                ));
            }
        }
        let declared = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_len) {
            return Attempt::Fail(too_long(url, max_len));
        }
        let mut body = Vec::new();
        let read = resp
            .body_mut()
            .as_reader()
            .take(max_len.saturating_add(1))
            .read_to_end(&mut body);
        match read {
            Ok(_) if body.len() as u64 > max_len => Attempt::Fail(too_long(url, max_len)),
            Ok(_) => Attempt::Done(Some(body)),
            Err(e) => {
                let msg = if e.kind() == io::ErrorKind::TimedOut
                    || e.to_string().contains("timeout")
                {
                    format!(
                        "timed out reading the body ({e}); the server is too slow or stalled (overall timeout {} s)",
                        self.timeouts.overall.as_secs()
                    )
                } else {
                    e.to_string()
                };
                Attempt::Fail(reject(url, Code::FetchFailed, msg))
            }
        }
    }
}

/// A connection that could not be made or was cut before any response:
/// worth another attempt.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

impl Fetch for HttpFetch {
    fn location(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Rejection> {
        let url = self.location(path);
        checked_name(path, &url)?;
        let mut pause = HTTP_BACKOFF;
        let mut last = None;
        for n in 1..=HTTP_ATTEMPTS {
            match self.attempt(&url, max_len) {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(r) => return Err(r),
                Attempt::Retry(r) => {
                    last = Some(r);
                    if n < HTTP_ATTEMPTS {
                        std::thread::sleep(pause);
                        pause *= 2;
                    }
                }
            }
        }
        let r = last.unwrap_or_else(|| reject(&url, Code::FetchFailed, "no attempt was made"));
        Err(Rejection {
            detail: format!("{} (after {HTTP_ATTEMPTS} attempts)", r.detail),
            ..r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

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

    /// A one-connection-at-a-time HTTP server; `handler` gets the request path
    /// and the connection count so far and writes the whole response.
    fn serve(
        handler: impl Fn(&str, usize, &mut TcpStream) + Send + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h2 = hits.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut hdr = String::new();
                    if r.read_line(&mut hdr).is_err() || hdr.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let n = h2.fetch_add(1, Ordering::SeqCst) + 1;
                handler(&path, n, &mut s);
                let _ = s.flush();
            }
        });
        (format!("http://{addr}"), hits)
    }

    fn respond(s: &mut TcpStream, status: &str, body: &[u8]) {
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(body);
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
            overall: Duration::from_secs(5),
        }
    }

    #[test]
    fn http_fetch_statuses_and_limits() {
        let (base, _) = serve(|path, _, s| match path {
            "/site/head.cbor" => respond(s, "200 OK", b"head-bytes"),
            "/site/root/1.cbor" => respond(s, "403 Forbidden", b"no"),
            "/site/root/2.cbor" => {
                // No Content-Length: the body runs until the connection closes.
                let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(&[7u8; 100]);
            }
            _ => respond(s, "404 Not Found", b""),
        });
        for b in [format!("{base}/site"), format!("{base}/site/")] {
            let f = HttpFetch::new(&b, quick()).unwrap();
            assert_eq!(f.get("head.cbor", 100).unwrap().unwrap(), b"head-bytes");
            assert_eq!(f.get("head.cbor", 9).unwrap_err().code, Code::LimitExceeded);
            assert_eq!(f.get("root/9.cbor", 100).unwrap(), None);
            let e = f.get("root/1.cbor", 100).unwrap_err();
            assert_eq!(e.code, Code::FetchFailed);
            assert!(e.detail.contains("403"), "{e}");
            assert!(e.file.ends_with("/site/root/1.cbor"), "{e}");
            assert_eq!(
                f.get("root/2.cbor", 99).unwrap_err().code,
                Code::LimitExceeded
            );
            assert_eq!(f.get("root/2.cbor", 100).unwrap().unwrap().len(), 100);
        }
        assert_eq!(
            HttpFetch::new("ftp://x", quick()).unwrap_err().code,
            Code::BadSource
        );
    }

    #[test]
    fn http_fetch_retries_server_errors() {
        let (base, hits) = serve(|_, n, s| {
            if n < 3 {
                respond(s, "503 Service Unavailable", b"busy");
            } else {
                respond(s, "200 OK", b"ok");
            }
        });
        let f = HttpFetch::new(&base, quick()).unwrap();
        assert_eq!(f.get("head.cbor", 100).unwrap().unwrap(), b"ok");
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        let (base, hits) = serve(|_, _, s| respond(s, "500 Internal Server Error", b""));
        let f = HttpFetch::new(&base, quick()).unwrap();
        let e = f.get("head.cbor", 100).unwrap_err();
        assert!(e.detail.contains("after 3 attempts"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn http_fetch_refuses_connection_failures_after_retries() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = HttpFetch::new(&format!("http://127.0.0.1:{port}/"), quick()).unwrap();
        let e = f.get("head.cbor", 100).unwrap_err();
        assert_eq!(e.code, Code::FetchFailed);
        assert!(e.detail.contains("attempts"), "{e}");
    }

    #[test]
    fn a_trickling_server_fails_within_the_timeout() {
        let (base, _) = serve(|_, _, s| {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
            );
            for _ in 0..1000 {
                if s.write_all(b"x").and_then(|()| s.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let t = Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
            overall: Duration::from_secs(2),
        };
        let f = HttpFetch::new(&base, t).unwrap();
        let start = Instant::now();
        let e = f.get("head.cbor", 10_000).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.code, Code::FetchFailed);
        assert!(e.detail.contains("timed out"), "{e}");
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }

    #[test]
    fn a_server_that_never_answers_fails_at_the_read_timeout() {
        let (base, _) = serve(|_, _, _s| {
            // Accept the request, then say nothing.
            std::thread::sleep(Duration::from_secs(8));
        });
        let t = Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(1),
            overall: Duration::from_mins(1),
        };
        let f = HttpFetch::new(&base, t).unwrap();
        let start = Instant::now();
        let e = f.get("head.cbor", 10_000).unwrap_err();
        assert!(e.detail.contains("timed out"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(4), "{e}");
    }

    #[test]
    fn a_server_stalled_mid_body_fails_at_the_overall_timeout() {
        let (base, _) = serve(|_, _, s| {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nabc"
            );
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(8));
        });
        let t = Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(1),
            overall: Duration::from_secs(2),
        };
        let f = HttpFetch::new(&base, t).unwrap();
        let start = Instant::now();
        let e = f.get("head.cbor", 10_000).unwrap_err();
        assert!(e.detail.contains("timed out"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(4), "{e}");
    }
}
