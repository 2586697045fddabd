//! A site or store as a read-only HTTP mirror (`consentry serve`). Only site
//! files (SPEC.md §2, exact names: `head.cbor`, `root/N.cbor`,
//! `manifest/V.HEX.cbor`, `shard|layer|prefix/HEX.zst`) are ever served; a
//! store's `local/` (the pinned trust, the index, staging), temp files and
//! anything else answer 404, so pointing a cluster at a store's mirror
//! exposes nothing but the published, verifiable files. Files are read
//! through [`DirFetch`]: symlinks are refused, reads are bounded.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Code, Rejection, reject};
use crate::fetch::{DirFetch, Fetch, SiteFile};
use crate::limits::Limits;

/// Requests answered at once.
const WORKERS: usize = 4;

/// A running mirror; stops when dropped.
#[derive(Debug)]
pub struct Mirror {
    /// `http://ADDR/`, the base URL to sync from.
    pub url: String,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Mirror {
    /// Serve the site files under `dir` on `listen` (`127.0.0.1:0` picks a
    /// free port; the URL says which).
    pub fn start(dir: &Path, listen: &str, limits: &Limits) -> Result<Mirror, Rejection> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| reject(listen, Code::IoError, format!("cannot listen: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| reject(listen, Code::IoError, "is not an IP address"))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(DirFetch::new(dir));
        let max = limits.max_file_bytes;
        let workers = (0..WORKERS)
            .map(|_| {
                let (server, stop, files) = (server.clone(), stop.clone(), files.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                            answer(req, &files, max);
                        }
                    }
                })
            })
            .collect();
        Ok(Mirror {
            url: format!("http://{addr}/"),
            stop,
            workers,
        })
    }

    /// Serve until the process is stopped.
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The site file a request names, if it names exactly one.
fn site_file(url: &str) -> Option<SiteFile> {
    let path = url.split(['?', '#']).next()?.strip_prefix('/')?;
    SiteFile::parse(path)
}

fn answer(req: tiny_http::Request, files: &DirFetch, max: u64) {
    use tiny_http::{Header, Method, Response};
    let header = |k: &str, v: &str| Header::from_bytes(k.as_bytes(), v.as_bytes()).ok();
    if !matches!(req.method(), Method::Get | Method::Head) {
        let mut resp = Response::empty(405);
        if let Some(h) = header("Allow", "GET, HEAD") {
            resp.add_header(h);
        }
        let _ = req.respond(resp);
        return;
    }
    let Some(file) = site_file(req.url()) else {
        let _ = req.respond(Response::empty(404));
        return;
    };
    let name = file.name();
    match files.get(&name, max) {
        Ok(Some(bytes)) => {
            // SPEC.md §2: only the head and the log's two files change;
            // every other name is written once.
            let cache = match file {
                SiteFile::Head | SiteFile::Checkpoint | SiteFile::Leaves => "public, max-age=60",
                _ => "public, max-age=31536000, immutable",
            };
            let mut resp = Response::from_data(bytes);
            for h in [
                header("Content-Type", "application/octet-stream"),
                header("Cache-Control", cache),
            ]
            .into_iter()
            .flatten()
            {
                resp.add_header(h);
            }
            let _ = req.respond(resp);
        }
        Ok(None) => {
            // A root that does not exist yet will: never cache its absence.
            let mut resp = Response::empty(404);
            if let Some(h) = header("Cache-Control", "no-store") {
                resp.add_header(h);
            }
            let _ = req.respond(resp);
        }
        Err(_) => {
            let _ = req.respond(Response::empty(403));
        }
    }
}

/// A witness answering C2SP `tlog-witness` add-checkpoint requests over
/// HTTP (SPEC.md §15.6, `consentry witness serve`): `POST /add-checkpoint`.
/// One worker answers one request at a time, so checking the old size and
/// storing the new checkpoint are atomic (the race tlog-witness warns of
/// cannot happen). Stops when dropped.
#[derive(Debug)]
pub struct WitnessService {
    /// `http://ADDR/`; requests go to `{url}add-checkpoint`.
    pub url: String,
    stop: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// Largest add-checkpoint body read (a 16 KiB note and 63 proof lines).
const MAX_REQUEST_BYTES: usize = 20 * 1024;

impl WitnessService {
    /// Listen on `listen`; each request is checked against the witness's
    /// state in `state` (following root rotations through the site
    /// `source`, a URL or directory, when given) and cosigned by `key` at
    /// the time it arrives.
    pub fn start(
        listen: &str,
        state: &Path,
        key: crate::witness::WitnessKey,
        source: Option<String>,
        limits: &Limits,
    ) -> Result<WitnessService, Rejection> {
        // Refuse to start without a pinned root that names witnesses, or
        // with a source that cannot be opened.
        let timeouts = crate::fetch::Timeouts::default();
        let probe = source
            .as_deref()
            .map(|s| crate::http::open_source(s, timeouts))
            .transpose()?;
        crate::witness::status(state, probe.as_deref(), limits)?;
        let server = tiny_http::Server::http(listen)
            .map_err(|e| reject(listen, Code::IoError, format!("cannot listen: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| reject(listen, Code::IoError, "is not an IP address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (state, limits, flag) = (state.to_path_buf(), *limits, stop.clone());
        let worker = std::thread::spawn(move || {
            let fetch = source
                .as_deref()
                .and_then(|s| crate::http::open_source(s, timeouts).ok());
            while !flag.load(Ordering::Relaxed) {
                if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                    witness_answer(req, &state, &key, fetch.as_deref(), &limits);
                }
            }
        });
        Ok(WitnessService {
            url: format!("http://{addr}/"),
            stop,
            worker: Some(worker),
        })
    }

    /// Serve until the process is stopped.
    pub fn wait(mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for WitnessService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// One add-checkpoint request, answered with tlog-witness's status codes:
/// 200 and the cosignature line; 400 malformed; 403 not signed by the log;
/// 404 another log (or another path); 409 and the size cosigned last when
/// the old size is not it; 422 when the consistency proof fails.
fn witness_answer(
    mut req: tiny_http::Request,
    state: &Path,
    key: &crate::witness::WitnessKey,
    source: Option<&dyn Fetch>,
    limits: &Limits,
) {
    use std::io::Read;
    use tiny_http::{Header, Method, Response};
    let text = |status: u16, body: String, ctype: &str| {
        let mut r = Response::from_string(body).with_status_code(status);
        if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
            r.add_header(h);
        }
        r
    };
    let path = req.url().split(['?', '#']).next().unwrap_or_default();
    if path != "/add-checkpoint" {
        let _ = req.respond(Response::empty(404));
        return;
    }
    if *req.method() != Method::Post {
        let _ = req.respond(Response::empty(405));
        return;
    }
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut body);
    if read.is_err() || body.len() > MAX_REQUEST_BYTES {
        let _ = req.respond(text(
            400,
            "request too large or unreadable\n".into(),
            "text/plain",
        ));
        return;
    }
    // Another log's checkpoint: 404, before anything is checked.
    let status = crate::witness::status(state, source, limits);
    if let (Ok((origin, _)), Ok(r)) = (&status, crate::note::AddCheckpoint::parse(&body))
        && let Ok(n) = crate::note::Note::parse(&r.note)
        && let Ok(cp) = crate::note::Checkpoint::parse_text(&n.text)
        && &cp.origin != origin
    {
        let _ = req.respond(text(
            404,
            format!("unknown log {:?}\n", cp.origin),
            "text/plain",
        ));
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let resp = match crate::witness::add_checkpoint(state, key, source, &body, now, limits) {
        Ok(c) => text(200, c.line, "text/plain; charset=utf-8"),
        Err(e) => match e.code {
            Code::CheckpointMismatch | Code::Rollback => {
                // Nothing was stored: the size read before still holds
                // (one worker answers one request at a time).
                let size = status.as_ref().map_or(0, |(_, s)| *s);
                text(409, format!("{size}\n"), "text/x.tlog.size")
            }
            Code::ThresholdNotMet => text(403, format!("{e}\n"), "text/plain"),
            Code::LogFork => text(422, format!("{e}\n"), "text/plain"),
            Code::MalformedCheckpoint => text(400, format!("{e}\n"), "text/plain"),
            _ => text(500, format!("{e}\n"), "text/plain"),
        },
    };
    let _ = req.respond(resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_site_names_are_served() {
        let h = "ab".repeat(32);
        assert!(site_file("/head.cbor").is_some());
        assert!(site_file("/head.cbor?x=1").is_some());
        assert!(site_file(&format!("/shard/{h}.zst")).is_some());
        assert!(site_file("/root/1.cbor").is_some());
        for bad in [
            "/local/trust.json",
            "/local/index/x.idx",
            "/.tmp-abc",
            "/shard/.tmp123",
            "/root/01.cbor",
            "/../head.cbor",
            "/%68ead.cbor",
            "head.cbor",
            "/",
        ] {
            assert!(site_file(bad).is_none(), "{bad}");
        }
    }
}
