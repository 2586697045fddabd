//! Harness for the workspace end-to-end tests: the real binaries, a real HTTP
//! server on 127.0.0.1, real SQLite files and temp directories.
//!
//! Test-support code: a panic *is* how it reports a broken expectation.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    clippy::return_self_not_must_use,
    clippy::needless_pass_by_value,
    clippy::many_single_char_names
)]

pub mod attack;
pub mod tamper;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Directory holding the built binaries (`target/debug`). Unless
/// `CONSENTRY_TESTS_NO_BUILD` is set (CI builds them first), the binaries are
/// brought up to date once per test process, so a test never runs a stale one.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/debug/deps/e2e-… → target/debug
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let missing = ["consentry", "consentry-publish"]
            .iter()
            .any(|b| !dir.join(b).exists());
        if missing || std::env::var_os("CONSENTRY_TESTS_NO_BUILD").is_none() {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "--bins",
                    "-p",
                    "consentry",
                    "-p",
                    "consentry-publish",
                ])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    })
    .clone()
}

/// Path of the shared example data (`tests/data`).
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// The result of running a binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panic with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        self.expect_code(0)
    }
}

/// The arguments a test run passes: for `consentry-publish`, the signing
/// commands get the overrides every fixture needs — the fixtures are dated
/// 2026-11 and signed with the public INSECURE keys, which the publisher
/// otherwise refuses (`--allow-short-expiry`, `--insecure-test-keys`), and
/// `publish` without `--now` signs at the registry's time, so a fixture's
/// bytes do not depend on the day the tests run. Tests of those refusals
/// run the binary through [`run_plain`].
pub fn test_args(name: &str, args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    if name != "consentry-publish" {
        return out;
    }
    let signs = matches!(
        args,
        ["publish" | "refresh", ..] | ["root", "init" | "rotate" | "assemble", ..]
    );
    if signs {
        for flag in ["--allow-short-expiry", "--insecure-test-keys"] {
            if !args.contains(&flag) {
                out.push(flag.to_string());
            }
        }
    }
    if args.first() == Some(&"publish") && !args.contains(&"--now") {
        out.extend(["--now".to_string(), "registry".to_string()]);
    }
    out
}

/// `name` (a workspace binary) with exactly `args`, in `cwd`, with a clean
/// environment for the project's variables.
fn command(name: &str, args: &[String], cwd: &Path) -> Command {
    let mut c = Command::new(bin_dir().join(name));
    c.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .env_remove("CONSENTRY_DB")
        .env_remove("CONSENTRY_KEYS")
        .env_remove("CONSENTRY_SITE")
        .env_remove("CONSENTRY_PUBLISH_FAILPOINT")
        .env_remove("CONSENTRY_PUSH_STOP_AFTER")
        .env_remove("CONSENTRY_PUSH_PAUSE_AFTER");
    c
}

/// Run `name` with exactly `args` (no test overrides; see [`test_args`]).
pub fn run_plain(name: &str, args: &[&str], cwd: &Path) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    Run::from(command(name, &args, cwd).output().expect("spawn binary"))
}

/// Run `name` (a workspace binary) with `args` in `cwd`.
pub fn run(name: &str, args: &[&str], cwd: &Path) -> Run {
    Run::from(
        command(name, &test_args(name, args), cwd)
            .output()
            .expect("spawn binary"),
    )
}

/// Run `name` like [`run`], with `stdin` as its standard input and `env`
/// set (the project's variables are otherwise cleared).
pub fn run_with(name: &str, args: &[&str], cwd: &Path, stdin: &[u8], env: &[(&str, &str)]) -> Run {
    use std::io::Write;
    let mut c = command(name, &test_args(name, args), cwd);
    c.envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn binary");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The binary may stop reading early (a refusal): not the test's error.
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait for binary");
    feeder.join().expect("stdin thread");
    Run::from(out)
}

/// Run `name` like [`run`], but SIGKILL it and fail the test if it has not
/// exited within `limit`: an attack test must fail, never hang, when a
/// verifier waits on endless or trickled data.
pub fn run_bounded(name: &str, args: &[&str], cwd: &Path, limit: Duration) -> Run {
    use std::io::Read;
    let mut child = command(name, &test_args(name, args), cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{name} {}` still running after {limit:?}: killed",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().expect("stdout thread")).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().expect("stderr thread")).into_owned(),
    }
}

/// Run `consentry-publish`.
pub fn publish(args: &[&str], cwd: &Path) -> Run {
    run("consentry-publish", args, cwd)
}

/// Run `consentry`.
pub fn verifier(args: &[&str], cwd: &Path) -> Run {
    run("consentry", args, cwd)
}

/// How the test server misbehaves.
#[derive(Debug, Clone, Default)]
pub enum Fault {
    #[default]
    None,
    /// Send the body one byte per `Duration`.
    Trickle(Duration),
}

/// A static file server on 127.0.0.1 serving a directory, for as long as it
/// lives. Requests are logged so tests can assert what was fetched.
pub struct Server {
    pub url: String,
    stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
    http: Arc<tiny_http::Server>,
}

impl Server {
    pub fn serve(dir: &Path) -> Server {
        Server::serve_with(dir, Fault::None)
    }

    pub fn serve_with(dir: &Path, fault: Fault) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let server = Arc::new(tiny_http::Server::from_listener(listener, None).expect("server"));
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s2, stop2, log2, dir) = (server.clone(), stop.clone(), log.clone(), dir.to_path_buf());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok(Some(req)) = s2.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let path = req.url().trim_start_matches('/').to_string();
                log2.lock().expect("log").push(path.clone());
                let file = dir.join(&path);
                let ok_path = !path.split('/').any(|c| c == ".." || c.is_empty());
                match (ok_path, std::fs::read(&file)) {
                    (true, Ok(bytes)) => match &fault {
                        Fault::None => {
                            let _ = req.respond(tiny_http::Response::from_data(bytes));
                        }
                        Fault::Trickle(d) => {
                            let d = *d;
                            let reader = Trickle {
                                bytes,
                                pos: 0,
                                delay: d,
                                until: std::time::Instant::now() + Duration::from_secs(10),
                                stop: stop2.clone(),
                            };
                            let _ = req.respond(tiny_http::Response::new(
                                tiny_http::StatusCode(200),
                                vec![],
                                reader,
                                None,
                                None,
                            ));
                        }
                    },
                    _ => {
                        let _ = req.respond(tiny_http::Response::empty(404));
                    }
                }
            }
        });
        Server {
            url: format!("http://{addr}/"),
            stop,
            log,
            handle: Some(handle),
            http: server,
        }
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.http.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A body that dribbles out one byte per `delay`, giving up after `until`, or
/// as soon as its server is dropped, so a test server never outlives its test
/// for long.
struct Trickle {
    bytes: Vec<u8>,
    pos: usize,
    delay: Duration,
    until: std::time::Instant,
    stop: Arc<AtomicBool>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.bytes.len() || buf.is_empty() {
            return Ok(0);
        }
        if std::time::Instant::now() > self.until || self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("trickle deadline"));
        }
        std::thread::sleep(self.delay);
        buf[0] = self.bytes[self.pos];
        self.pos += 1;
        Ok(1)
    }
}

/// Run `name` like [`run`] with `input` on its stdin (a pipe).
pub fn run_with_stdin(name: &str, args: &[&str], cwd: &Path, input: &[u8]) -> Run {
    use std::io::Write as _;
    let mut child = command(name, &test_args(name, args), cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Written from a thread: a child that answers before reading it all
    // must not deadlock against a full pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for binary");
    let _ = writer.join();
    Run::from(out)
}

/// Run `name` with extra environment variables.
pub fn run_env(name: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Run {
    let mut c = command(name, &test_args(name, args), cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.output().expect("spawn binary"))
}

/// Run any program (e.g. `unshare`) with `args`.
pub fn run_program(program: &str, args: &[&str], cwd: &Path) -> Run {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .env_remove("CONSENTRY_DB")
        .env_remove("CONSENTRY_KEYS")
        .env_remove("CONSENTRY_SITE")
        .output()
        .expect("spawn program");
    Run::from(out)
}

/// The repository's INSECURE test keys (`keys/`).
pub fn insecure_keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys")
}

/// Publish the example registry (`tests/data/declarations.csv`) in `dir/site`
/// with the INSECURE keys, recorded and published at `at`; `ttl` sets the head
/// and manifest lifetimes (`None`: the publisher's defaults).
pub fn publish_example(dir: &Path, at: &str, ttl: Option<&str>) {
    let keys = insecure_keys_dir();
    let k = keys.to_str().unwrap();
    let csv = data("declarations.csv");
    publish(&["init", "--db", "reg.db"], dir).ok();
    publish(
        &[
            "import",
            "--db",
            "reg.db",
            csv.to_str().unwrap(),
            "--recorded-at",
            at,
        ],
        dir,
    )
    .ok();
    publish(
        &[
            "root",
            "init",
            "--keys",
            k,
            "--site",
            "site",
            "--now",
            at,
            "--expires-in",
            "3650d",
        ],
        dir,
    )
    .ok();
    let mut args = vec![
        "publish", "--db", "reg.db", "--keys", k, "--site", "site", "--now", at,
    ];
    if let Some(t) = ttl {
        args.extend(["--manifest-ttl", t, "--head-ttl", t]);
    }
    publish(&args, dir).ok();
}

/// Compare files built by a test (relative path → bytes) with a committed
/// tree; when `env_var` is set, rewrite the committed tree first. Used for
/// byte-reproducible artefacts (the example snapshot, the test vectors).
pub fn compare_or_regenerate(
    built: &std::collections::BTreeMap<String, Vec<u8>>,
    committed_dir: &Path,
    env_var: &str,
) {
    if std::env::var_os(env_var).is_some() {
        let _ = std::fs::remove_dir_all(committed_dir);
        for (rel, bytes) in built {
            let p = committed_dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
    let committed = tree(committed_dir);
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        built.keys().collect::<Vec<_>>(),
        "{} lists other files than a rebuild (regenerate with {env_var}=1 after a deliberate change)",
        committed_dir.display()
    );
    for (rel, bytes) in built {
        assert!(
            committed[rel] == *bytes,
            "{rel} differs from a rebuild (regenerate with {env_var}=1 after a deliberate change)"
        );
    }
}

/// Every file below `dir`: relative path → bytes.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The S3-compatible test server (`CONSENTRY_TEST_S3_ENDPOINT`, started by
/// `tests/s3-server`), or `None` with a `skipped:` line when it is not set;
/// with `CONSENTRY_REQUIRE_S3=1` (CI) a missing server fails the test.
pub fn s3_endpoint(test: &str) -> Option<String> {
    match std::env::var("CONSENTRY_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var("CONSENTRY_REQUIRE_S3").map_or(true, |v| v.is_empty() || v == "0"),
                "CONSENTRY_REQUIRE_S3 is set but CONSENTRY_TEST_S3_ENDPOINT is not: start one with `eval \"$(tests/s3-server start)\"`"
            );
            eprintln!(
                "skipped: {test}: no S3 server (set CONSENTRY_TEST_S3_ENDPOINT, e.g. eval \"$(tests/s3-server start)\")"
            );
            None
        }
    }
}

/// One HTTP/1.0 request to `base` (`http://127.0.0.1:PORT/…`), bounded by a
/// 10 s read timeout: the status and the body. For the project's own
/// servers on loopback (a mirror, a witness).
pub fn http_request(base: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |i| buf[i + 4..].to_vec());
    (status, body)
}
