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
