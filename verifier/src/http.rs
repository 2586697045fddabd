//! Site files over HTTP(S): [`HttpFetch`], a [`Fetch`] with length caps,
//! socket timeouts (ureq 3) and bounded retries (SPEC.md §7: nothing it
//! returns is trusted; the caller verifies every byte).

use std::io::{self, Read};
use std::time::Duration;

use crate::error::{Code, Rejection, reject};
use crate::fetch::{Fetch, checked_name, too_long};

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

/// The source of a sync, as `consentry sync SOURCE` takes it: an `http://`
/// or `https://` URL (fetched with `timeouts`), or an existing directory laid
/// out like a site. Any other scheme, or a path that is not a directory, is
/// `bad_source`. The CLI and the language bindings both call this.
pub fn open_source(source: &str, timeouts: Timeouts) -> Result<Box<dyn Fetch>, Rejection> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Box::new(HttpFetch::new(source, timeouts)?));
    }
    if source.contains("://") {
        return Err(reject(
            source,
            Code::BadSource,
            "only http:// and https:// URLs are supported",
        ));
    }
    let p = std::path::Path::new(source);
    if !p.is_dir() {
        return Err(reject(
            source,
            Code::BadSource,
            "is neither an http(s) URL nor a directory",
        ));
    }
    Ok(Box::new(crate::fetch::DirFetch::new(p)))
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
