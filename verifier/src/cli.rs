//! The `consentry` command line: argument parsing (clap) and the commands,
//! as thin calls into the library. stdout carries only data; progress,
//! warnings and errors go to stderr. Exit codes: 0 success, 1 a test answered
//! "no" (`check --require allow` found an answer that is not `allow`;
//! `verify` found a defect and repaired it), 2 any error.
//!
//! `check`, `verify`, `status` and `import` never open a network socket: only
//! `sync` with an http(s) SOURCE does.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::error::{Code, Rejection, reject};
use crate::fetch::{DirFetch, Fetch, HttpFetch, Timeouts};
use crate::lookup::{Answer, Question};
use crate::model::{Use, parse_territory};
use crate::store::{IndexCheck, Reader, Reporter, SnapshotInfo, Store, role_summary};
use crate::sync::{SyncOptions, SyncReport};
use crate::time::{Day, day_of, format_date, format_timestamp, parse_timestamp};
use crate::verify::Expiry;

/// Verify signed AI-training consent snapshots and answer ISRC lookups offline.
#[derive(Debug, Parser)]
#[command(name = "consentry", version, propagate_version = true)]
pub struct Cli {
    /// Store directory [default: $XDG_DATA_HOME/consentry or ~/.local/share/consentry]
    #[arg(long, global = true, env = "CONSENTRY_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Use this time instead of the system clock (RFC 3339 or YYYY-MM-DD), for
    /// air-gapped clocks and tests; logged on stderr
    #[arg(long, global = true, value_name = "TIME")]
    pub now: Option<String>,

    /// Accept an expired root, head or manifest (loud: every answer is marked)
    #[arg(long, global = true)]
    pub allow_expired: bool,

    /// Print no progress or notes on stderr (warnings and errors still appear)
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the registry's root (obtained out of band) as the store's trust anchor
    Init {
        /// The root file (root/N.cbor from the registry)
        #[arg(long, value_name = "FILE")]
        root: PathBuf,
        /// Re-pin an already initialized store
        #[arg(long)]
        force: bool,
    },
    /// Fetch and verify the current snapshot from a URL or a mirror directory
    Sync {
        /// http(s) URL of the published site, or a directory laid out like one
        source: String,
        /// Overall time limit per HTTP request, in seconds [default: 120]
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Keep the files of the N most recent manifests, remove older ones
        #[arg(long, value_name = "N")]
        keep_history: Option<usize>,
    },
    /// Import a tar bundle (no network)
    Import {
        /// The bundle (.tar)
        file: PathBuf,
        /// Keep the files of the N most recent manifests, remove older ones
        #[arg(long, value_name = "N")]
        keep_history: Option<usize>,
    },
    /// Re-check the whole store from the pinned root; writes nothing (exit 1
    /// if the local index is missing or damaged)
    Verify {
        /// Rebuild a missing or damaged local index from the verified files
        /// and remove leftovers of killed runs (the one write verify makes)
        #[arg(long)]
        repair: bool,
    },
    /// Show the snapshot, its expiry, the keys and the store's size
    Status {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Answer consent questions for ISRCs
    Check {
        /// ISRCs to check (any spelling: hyphens, spaces, lower case, ISRC prefix)
        #[arg(value_name = "ISRC")]
        isrcs: Vec<String>,
        /// The use asked about: all, train-ai, train-genai, ai-use, search
        #[arg(long = "use", value_name = "USE", default_value = "train-ai")]
        use_: String,
        /// Territory (ISO 3166-1 alpha-2) [default: any]
        #[arg(long, value_name = "CC")]
        territory: Option<String>,
        /// When the use happens (YYYY-MM-DD or RFC 3339) [default: now]
        #[arg(long, value_name = "DATE|TIME")]
        at: Option<String>,
        /// JSON lines output
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV output
        #[arg(long)]
        csv: bool,
        /// Read questions from FILE ("-" for stdin): one ISRC per line, CSV with
        /// an isrc column (optional use, territory, at columns), or JSON lines
        #[arg(long, value_name = "FILE|-")]
        input: Option<String>,
        /// Exit 1 unless every answer is this decision
        #[arg(long, value_enum, value_name = "DECISION")]
        require: Option<Require>,
        /// Write consent receipts (SPEC.md §13): into a directory, one file per
        /// answer ({n}-{ISRC}.receipt.cbor); to a file, one batch receipt
        #[arg(long, value_name = "DIR|FILE")]
        receipt: Option<PathBuf>,
        /// Answer from the kept snapshot that was current at this date
        /// (YYYY-MM-DD or RFC 3339; see sync --keep-history)
        #[arg(long, value_name = "DATE|TIME")]
        as_of: Option<String>,
    },
    /// Serve the store as a read-only mirror over HTTP: only published site
    /// files, never local/ (for the rest of a cluster to `sync` from)
    Serve {
        /// Address to listen on (port 0 picks a free one; the URL is printed)
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        listen: String,
    },
    /// Consent receipts
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
}

/// `consentry receipt …`
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify receipts with nothing but a pinned root
    Verify {
        /// Receipt files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The pinned root file [default: the store's pinned root]
        #[arg(long, value_name = "FILE")]
        root: Option<PathBuf>,
        /// JSON lines output (one line per verified answer)
        #[arg(long)]
        json: bool,
    },
    /// Print a receipt's JSON rendering
    Show { file: PathBuf },
}

/// Decisions `--require` can demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Require {
    Allow,
}

/// The system clock in Unix seconds, read once per run, here at the edge:
/// the library takes the time as an argument and never reads a clock.
fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What to do about an error code: printed after the error as `hint:`. A
/// damaged data file is advised on by where it was read (the store at
/// `store`, or the source), see [`Code::hint`].
pub fn hint(code: Code, file: &str, store: Option<&Path>) -> Option<&'static str> {
    code.hint(store.is_some_and(|s| Path::new(file).starts_with(s)))
}

/// Print an error and its hint on `err`.
pub fn print_error(e: &Rejection, store: Option<&Path>, err: &mut dyn Write) {
    let _ = writeln!(err, "error: {}: {} ({})", e.code, e.detail, e.file);
    if let Some(h) = hint(e.code, &e.file, store) {
        let _ = writeln!(err, "hint: {h}");
    }
}

fn usage(what: &str, detail: impl Into<String>) -> Rejection {
    reject(what, Code::Usage, detail)
}

fn out_err(e: &io::Error) -> Rejection {
    if e.kind() == io::ErrorKind::BrokenPipe {
        reject("stdout", Code::BrokenPipe, "the reader went away")
    } else {
        reject("stdout", Code::IoError, e.to_string())
    }
}

/// The store directory from `--store`, `CONSENTRY_STORE` or the XDG default.
pub fn store_dir(cli: &Cli) -> Result<PathBuf, Rejection> {
    if let Some(s) = &cli.store {
        return Ok(s.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("consentry"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(h).join(".local/share/consentry"));
    }
    Err(usage(
        "--store",
        "no store directory: pass --store DIR or set CONSENTRY_STORE",
    ))
}

/// Progress and warnings on stderr; a spinner only when stderr is a terminal.
struct Stderr {
    quiet: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    tty: bool,
    fetched: Mutex<(u64, u64)>,
}

impl Stderr {
    fn print(&self, line: &str) {
        let bar = self.bar.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Reporter for Stderr {
    fn info(&self, msg: &str) {
        if !self.quiet {
            self.print(&format!("note: {msg}"));
        }
    }

    fn warn(&self, msg: &str) {
        self.print(&format!("warning: {msg}"));
    }

    fn start(&self, what: &str, _files: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let b =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
            b.set_style(style);
        }
        b.set_message(format!("{what}…"));
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(b);
        }
    }

    fn advance(&self, file: &str, bytes: u64) {
        let (n, total) = {
            let Ok(mut f) = self.fetched.lock() else {
                return;
            };
            f.0 += 1;
            f.1 += bytes;
            *f
        };
        if let Some(b) = self.bar.lock().ok().and_then(|b| b.clone()) {
            b.set_message(format!("fetched {n} files, {total} bytes ({file})"));
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}

/// Run a parsed command line. Returns the exit code (0 or 1); errors are for
/// the caller to print (exit 2).
pub fn run(cli: &Cli, stdout: &mut dyn Write) -> Result<i32, Rejection> {
    use std::io::IsTerminal;
    let reporter: Arc<dyn Reporter> = Arc::new(Stderr {
        quiet: cli.quiet,
        bar: Mutex::new(None),
        tty: std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb"),
        fetched: Mutex::new((0, 0)),
    });
    let now = match &cli.now {
        Some(t) => {
            let secs = parse_timestamp(t).map_err(|e| usage("--now", e))?;
            if !cli.quiet {
                eprintln!(
                    "note: using --now {} instead of the system clock",
                    format_timestamp(secs)
                );
            }
            secs
        }
        None => system_clock(),
    };
    let expiry = if cli.allow_expired {
        eprintln!(
            "warning: --allow-expired: expired roots, heads and manifests are accepted; answers may be stale and are marked expired"
        );
        Expiry::AllowExpired
    } else {
        Expiry::Enforce
    };
    let dir = store_dir(cli)?;
    let open =
        || -> Result<Store, Rejection> { Ok(Store::open(&dir)?.with_reporter(reporter.clone())) };
    let w = |stdout: &mut dyn Write, s: String| -> Result<(), Rejection> {
        stdout.write_all(s.as_bytes()).map_err(|e| out_err(&e))
    };

    match &cli.command {
        Command::Init { root, force } => {
            let bytes = std::fs::read(root)
                .map_err(|e| crate::fetch::io_error(&root.display().to_string(), &e))?;
            let (_, r) = Store::init(&dir, &bytes, *force)?;
            let mut s = format!(
                "pinned root version {} (sha256 {}) in {}\nexpires {}\n",
                r.version,
                hex::encode(crate::envelope::sha256(&bytes)),
                dir.display(),
                format_timestamp(r.expires as i64)
            );
            for role in role_summary(&r) {
                let _ = writeln!(
                    s,
                    "{:<9} threshold {} of {}: {}",
                    role.role,
                    role.threshold,
                    role.keyids.len(),
                    role.keyids.join(" ")
                );
            }
            w(stdout, s)?;
            Ok(0)
        }
        Command::Sync {
            source,
            timeout,
            keep_history,
        } => {
            let store = open()?;
            let fetch: Box<dyn Fetch> = source_of(source, *timeout)?;
            let opts = SyncOptions {
                now,
                expiry,
                keep_history: *keep_history,
            };
            let rep = crate::sync::sync(&store, &*fetch, &opts)?;
            w(stdout, sync_summary(&rep, "synced"))?;
            Ok(0)
        }
        Command::Import { file, keep_history } => {
            let store = open()?;
            let opts = SyncOptions {
                now,
                expiry,
                keep_history: *keep_history,
            };
            let rep = crate::bundle::import(&store, file, &opts)?;
            w(stdout, sync_summary(&rep, "imported"))?;
            Ok(0)
        }
        Command::Verify { repair } => {
            let store = open()?;
            let v = if *repair {
                store.verify_and_repair(now, expiry)?
            } else {
                store.verify(now, expiry)?
            };
            let index = match &v.index {
                IndexCheck::Intact => "index intact".to_string(),
                IndexCheck::Missing => {
                    "index MISSING: lookups build a temporary one each run; `consentry verify --repair` rebuilds it".to_string()
                }
                IndexCheck::Corrupt(why) => format!(
                    "index DAMAGED ({why}): lookups build a temporary one each run; `consentry verify --repair` rebuilds it"
                ),
                IndexCheck::Built => "index was missing: built".to_string(),
                IndexCheck::Rebuilt(why) => format!("index was corrupt ({why}): rebuilt"),
            };
            w(
                stdout,
                format!(
                    "verified snapshot version {} (manifest {}){}\n  root chain to version {}\n  {} files ({} bytes) re-hashed and decoded\n  state rebuilt from base and layers matches every signed leaf ({} entries)\n  {index}\n",
                    v.version,
                    v.manifest_sha256,
                    if v.expired { " [EXPIRED]" } else { "" },
                    v.root_version,
                    v.files_checked,
                    v.bytes_checked,
                    v.entries
                ),
            )?;
            Ok(i32::from(v.index != IndexCheck::Intact))
        }
        Command::Status { json } => {
            let store = open()?;
            let st = store.status(now)?;
            if *json {
                let mut s = serde_json::to_string_pretty(&st).unwrap_or_default();
                s.push('\n');
                w(stdout, s)?;
            } else {
                w(stdout, status_text(&st))?;
            }
            Ok(0)
        }
        Command::Check {
            isrcs,
            use_,
            territory,
            at,
            json,
            csv,
            input,
            require,
            receipt,
            as_of,
        } => {
            if isrcs.is_empty() && input.is_none() {
                return Err(usage(
                    "check",
                    "give ISRCs as arguments or --input FILE (- for stdin)",
                ));
            }
            let defaults = Defaults {
                use_: Use::parse(crate::text::trim(use_)).map_err(|e| usage("--use", e))?,
                territory: territory
                    .as_deref()
                    .map(parse_territory)
                    .transpose()
                    .map_err(|e| usage("--territory", e))?,
                at: match at {
                    Some(a) => {
                        day_of(parse_timestamp(crate::text::trim(a)).map_err(|e| usage("--at", e))?)
                    }
                    None => day_of(now),
                },
            };
            let store = open()?;
            let reader = match as_of {
                Some(d) => {
                    let d = crate::text::trim(d);
                    let t = parse_timestamp(d).map_err(|e| usage("--as-of", e))?;
                    // A date means the end of that day.
                    let t = if d.len() == 10 { t + 86_399 } else { t };
                    let r = store.reader_as_of(now, expiry, t)?;
                    eprintln!(
                        "note: answering as of {}: snapshot version {} (created {}, manifest {})",
                        format_timestamp(t),
                        r.snap().manifest.version,
                        format_timestamp(r.snap().manifest.created as i64),
                        r.snapshot().manifest_sha256
                    );
                    r
                }
                None => store.reader(now, expiry)?,
            };
            let mut builder = match receipt {
                Some(_) => Some(reader.receipt_builder()?),
                None => None,
            };
            if reader.snapshot().expired {
                eprintln!(
                    "warning: answering from an EXPIRED snapshot (version {}); every answer is marked expired",
                    reader.snapshot().version
                );
            }
            let format = if *json {
                Format::Json
            } else if *csv {
                Format::Csv
            } else {
                Format::Text
            };
            let mut out = Output::new(format, stdout)?;
            let mut all_allow = true;
            let mut ask = |row: Row, out: &mut Output| -> Result<(), Rejection> {
                let a = match builder.as_mut() {
                    None => answer(&reader, &row)?,
                    Some(b) => {
                        let q = crate::lookup::parse_for_lookup(&row.input)
                            .ok()
                            .map(|isrc| Question {
                                isrc,
                                use_: row.use_,
                                territory: row.territory.clone(),
                                at: row.at,
                            });
                        reader.answer_into(
                            b,
                            &row.input,
                            row.use_,
                            row.territory.as_deref(),
                            row.at,
                            q.as_ref(),
                        )?
                    }
                };
                all_allow &= a.decision == crate::model::Decision::Allow;
                out.write(&row, &a, reader.snapshot())
            };
            for i in isrcs {
                ask(
                    Row {
                        input: crate::text::trim(i).to_string(),
                        use_: defaults.use_,
                        territory: defaults.territory.clone(),
                        at: defaults.at,
                    },
                    &mut out,
                )?;
            }
            if let Some(src) = input {
                let (name, r): (String, Box<dyn Read>) = if src == "-" {
                    ("stdin".into(), Box::new(io::stdin().lock()))
                } else {
                    let f =
                        std::fs::File::open(src).map_err(|e| crate::fetch::io_error(src, &e))?;
                    (src.clone(), Box::new(f))
                };
                read_rows(&name, BufReader::new(r), &defaults, &mut |row| {
                    ask(row, &mut out)
                })?;
            }
            out.finish()?;
            if let (Some(path), Some(b)) = (receipt, builder.as_ref()) {
                write_receipts(path, b)?;
            }
            Ok(i32::from(require.is_some() && !all_allow))
        }
        Command::Serve { listen } => {
            let store = open()?;
            // Refuse to mirror a store that does not verify.
            let snap = store.current(now, expiry)?;
            let m = crate::serve::Mirror::start(store.dir(), listen, store.limits())?;
            w(stdout, format!("{}\n", m.url))?;
            stdout.flush().map_err(|e| out_err(&e))?;
            if !cli.quiet {
                eprintln!(
                    "note: serving snapshot version {} of {} at {} (site files only; local/ is never served); stop with Ctrl-C",
                    snap.manifest.version,
                    store.dir().display(),
                    m.url
                );
            }
            m.wait();
            Ok(0)
        }
        Command::Receipt { command } => match command {
            ReceiptCommand::Show { file } => {
                let loc = file.display().to_string();
                let bytes = read_capped(file, crate::receipt::MAX_RECEIPT_BYTES)?;
                let r = crate::receipt::Receipt::from_bytes(&loc, &bytes)?;
                let mut s = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default();
                s.push('\n');
                w(stdout, s)?;
                Ok(0)
            }
            ReceiptCommand::Verify { files, root, json } => {
                let pinned = match root {
                    Some(f) => read_capped(
                        f,
                        Store::open(&dir)
                            .map_or(crate::limits::Limits::DEFAULT.max_root_bytes, |s| {
                                s.limits().max_root_bytes
                            }),
                    )?,
                    None => open()?.pinned_root_bytes().map_err(|e| {
                        reject(
                            e.file,
                            e.code,
                            format!("{} (give --root FILE to verify without a store)", e.detail),
                        )
                    })?,
                };
                let limits = crate::limits::Limits::DEFAULT;
                for f in files {
                    let loc = f.display().to_string();
                    let bytes = read_capped(f, crate::receipt::MAX_RECEIPT_BYTES)?;
                    let v = crate::receipt::verify(&loc, &bytes, &pinned, &limits)?;
                    let mut s = String::new();
                    if *json {
                        for a in &v.answers {
                            let j = serde_json::json!({
                                "receipt": loc, "valid": true,
                                "input": a.input, "isrc": a.isrc, "use": a.use_,
                                "territory": a.territory, "at": a.at,
                                "decision": a.answer.decision.name(),
                                "reason": a.answer.reason.name(),
                                "decided_by": a.answer.decided_by,
                                "snapshot": {"version": v.manifest_version,
                                    "manifest_sha256": hex::encode(v.manifest_sha256),
                                    "created": format_timestamp(v.created as i64)},
                                "root_version": v.root_version,
                            });
                            let _ = writeln!(s, "{j}");
                        }
                    } else {
                        let _ = writeln!(
                            s,
                            "{loc}: valid: {} answer(s) from snapshot version {} (manifest {}, created {}), signed under root version {}",
                            v.answers.len(),
                            v.manifest_version,
                            hex::encode(v.manifest_sha256),
                            format_timestamp(v.created as i64),
                            v.root_version
                        );
                        for a in &v.answers {
                            let by = if a.answer.decided_by.is_empty() {
                                "-".to_string()
                            } else {
                                a.answer.decided_by.join(" ")
                            };
                            let _ = writeln!(
                                s,
                                "  {}\t{}\t{}\t{}\t{}\t{}\t{}",
                                a.input,
                                a.use_,
                                a.territory.as_deref().unwrap_or("-"),
                                a.at,
                                a.answer.decision.name(),
                                a.answer.reason.name(),
                                by
                            );
                        }
                    }
                    w(stdout, s)?;
                }
                Ok(0)
            }
        },
    }
}

/// Read a whole file of at most `max` bytes.
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, Rejection> {
    let loc = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| crate::fetch::io_error(&loc, &e))?;
    if buf.len() as u64 > max {
        return Err(reject(
            loc,
            Code::LimitExceeded,
            format!("is larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// Write a batch receipt to a file, or one receipt per answer into a directory.
fn write_receipts(path: &Path, b: &crate::receipt::Builder) -> Result<(), Rejection> {
    let loc = path.display().to_string();
    let as_dir = path.is_dir() || loc.ends_with('/');
    let path = &std::path::absolute(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
    if as_dir {
        std::fs::create_dir_all(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
        for (n, r) in b.singles().iter().enumerate() {
            let name = r
                .answers
                .first()
                .and_then(|a| a.question.isrc.as_deref())
                .and_then(|i| crate::isrc::Isrc::parse(i).ok())
                .map_or_else(|| "invalid".to_string(), crate::isrc::Isrc::compact);
            let f = path.join(format!("{}-{name}.receipt.cbor", n + 1));
            crate::fsio::write_atomic(&f, &r.to_bytes())?;
        }
    } else {
        crate::fsio::write_atomic(path, &b.finish().to_bytes())?;
    }
    Ok(())
}

/// Exit status when stdout's reader went away (`consentry check … | head`):
/// quiet, and the status a shell reports for a process ended by SIGPIPE
/// (128 + 13), so `set -o pipefail` pipelines see what they expect.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Parse, run, print errors; the process exit code.
pub fn main_exit(cli: &Cli) -> i32 {
    let stdout = io::stdout();
    let mut lock = io::BufWriter::new(stdout.lock());
    let r = run(cli, &mut lock);
    let flushed = lock.flush();
    match r {
        Ok(code) => match flushed {
            Ok(()) => code,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_BROKEN_PIPE,
            Err(e) => {
                print_error(&out_err(&e), None, &mut io::stderr());
                2
            }
        },
        Err(e) if e.code == Code::BrokenPipe => EXIT_BROKEN_PIPE,
        Err(e) => {
            let store = store_dir(cli).ok();
            print_error(&e, store.as_deref(), &mut io::stderr());
            2
        }
    }
}

fn source_of(source: &str, timeout: Option<u64>) -> Result<Box<dyn Fetch>, Rejection> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let mut t = Timeouts::default();
        if let Some(s) = timeout {
            if s == 0 {
                return Err(usage("--timeout", "must be at least 1 second"));
            }
            t.overall = std::time::Duration::from_secs(s);
        }
        return Ok(Box::new(HttpFetch::new(source, t)?));
    }
    if source.contains("://") {
        return Err(reject(
            source,
            Code::BadSource,
            "only http:// and https:// URLs are supported",
        ));
    }
    let p = Path::new(source);
    if !p.is_dir() {
        return Err(reject(
            source,
            Code::BadSource,
            "is neither an http(s) URL nor a directory",
        ));
    }
    Ok(Box::new(DirFetch::new(p)))
}

fn sync_summary(r: &SyncReport, verb: &str) -> String {
    let from = r
        .from
        .map_or_else(|| "nothing".to_string(), |v| format!("version {v}"));
    let mut s = format!(
        "{verb}: {from} -> version {} ({}); head version {}\n",
        r.to,
        r.mode.name(),
        r.head_version
    );
    if !r.roots_added.is_empty() {
        let v: Vec<String> = r.roots_added.iter().map(u64::to_string).collect();
        let _ = writeln!(s, "  root rotated to version {}", v.join(", "));
    }
    let _ = writeln!(
        s,
        "  fetched {} files ({} bytes), reused {}, derived {}, layers applied {}",
        r.files_fetched, r.bytes_fetched, r.files_reused, r.files_derived, r.layers_applied
    );
    if r.files_pruned > 0 {
        let _ = writeln!(s, "  pruned {} old files", r.files_pruned);
    }
    let _ = writeln!(s, "  manifest {}", r.manifest_sha256);
    s
}

fn status_text(st: &crate::store::Status) -> String {
    let mut s = format!("store        {}\n", st.store);
    let _ = writeln!(
        s,
        "root         version {} (pinned {}), expires {}{}",
        st.root_version,
        st.pinned_root_version,
        st.root_expires,
        if st.root_expired { " [EXPIRED]" } else { "" }
    );
    for r in &st.roles {
        let _ = writeln!(
            s,
            "  {:<10} threshold {} of {}: {}",
            r.role,
            r.threshold,
            r.keyids.len(),
            r.keyids.join(" ")
        );
    }
    match &st.snapshot {
        Some(n) => {
            let exp = |b: bool| if b { " [EXPIRED]" } else { "" };
            let _ = writeln!(
                s,
                "snapshot     version {}, created {}\n  manifest   {} expires {}{}\n  head       version {} expires {}{}\n  entries    {} in {} ranges (base {}, {} layers)",
                n.version,
                n.created,
                n.manifest_sha256,
                n.manifest_expires,
                exp(n.manifest_expired),
                n.head_version,
                n.head_expires,
                exp(n.head_expired),
                n.entries,
                n.ranges,
                n.base,
                n.layers
            );
        }
        None => {
            let _ = writeln!(
                s,
                "snapshot     none ({})",
                st.snapshot_problem.as_deref().unwrap_or("not synced")
            );
        }
    }
    if let Some(c) = &st.clock_problem {
        let _ = writeln!(
            s,
            "clock        WRONG: the snapshot {c}; lookups are refused until the clock is right (or pass --now)"
        );
    }
    let _ = writeln!(s, "store size   {} bytes", st.store_bytes);
    s
}

// ---- check: questions in, answers out ------------------------------------

/// Flag values that rows may override.
#[derive(Debug, Clone)]
struct Defaults {
    use_: Use,
    territory: Option<String>,
    at: Day,
}

/// One question as asked.
#[derive(Debug, Clone)]
struct Row {
    input: String,
    use_: Use,
    territory: Option<String>,
    at: Day,
}

fn answer(reader: &Reader<'_>, row: &Row) -> Result<Answer, Rejection> {
    match crate::lookup::parse_for_lookup(&row.input) {
        Err(_) => Ok(Answer::invalid_isrc()),
        Ok(isrc) => reader.answer(&Question {
            isrc,
            use_: row.use_,
            territory: row.territory.clone(),
            at: row.at,
        }),
    }
}

/// Apply a row's optional overrides; errors name `where_`. Every value is
/// trimmed with [`crate::text::trim`] (SPEC.md §3.1), the one whitespace rule
/// of every entry point; an empty override means the command's default.
fn row_of(
    where_: &str,
    input: &str,
    use_: Option<&str>,
    territory: Option<&str>,
    at: Option<&str>,
    d: &Defaults,
) -> Result<Row, Rejection> {
    fn given(v: Option<&str>) -> Option<&str> {
        v.map(crate::text::trim).filter(|s| !s.is_empty())
    }
    let bad = |e: String| reject(where_, Code::BadInput, e);
    let use_ = match given(use_) {
        Some(u) => Use::parse(u).map_err(bad)?,
        None => d.use_,
    };
    let territory = match given(territory) {
        Some(t) => Some(parse_territory(t).map_err(bad)?),
        None => d.territory.clone(),
    };
    let at = match given(at) {
        Some(a) => day_of(parse_timestamp(a).map_err(bad)?),
        None => d.at,
    };
    Ok(Row {
        input: crate::text::trim(input).to_string(),
        use_,
        territory,
        at,
    })
}

/// The question columns of a CSV input header (SPEC.md §8.1).
const INPUT_COLUMNS: [&str; 4] = ["isrc", "use", "territory", "at"];

/// Read questions from `r`, streaming each to `f` in input order (SPEC.md
/// §8.1, "Batch input"). A UTF-8 byte order mark at the very start is
/// removed; blank lines (empty or ASCII whitespace only) are skipped; the
/// first other line picks the format: JSON lines if it starts with `{`, CSV
/// if one of its comma-separated names is `isrc`, else one ISRC per line.
fn read_rows(
    name: &str,
    mut r: impl BufRead,
    d: &Defaults,
    f: &mut dyn FnMut(Row) -> Result<(), Rejection>,
) -> Result<(), Rejection> {
    let io = |e: &io::Error| crate::fetch::io_error(name, e);
    let at_line = |n: usize| format!("{name}:{n}");
    let mut first = String::new();
    // Skip leading blank lines, keeping count for line numbers.
    let mut skipped = 0usize;
    loop {
        first.clear();
        if r.read_line(&mut first).map_err(|e| io(&e))? == 0 {
            return Ok(());
        }
        if skipped == 0
            && let Some(rest) = first.strip_prefix('\u{feff}')
        {
            first = rest.to_string();
        }
        if !crate::text::is_blank(&first) {
            break;
        }
        skipped += 1;
    }
    let head = crate::text::trim(&first).to_string();
    if head.starts_with('{') {
        let mut lineno = skipped;
        let mut line = first;
        loop {
            lineno += 1;
            if !crate::text::is_blank(&line) {
                f(json_row(&at_line(lineno), &line, d)?)?;
            }
            line.clear();
            if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
                return Ok(());
            }
        }
    }
    let header_name =
        |h: &str| crate::text::trim(crate::text::trim(h).trim_matches('"')).to_ascii_lowercase();
    let fields: Vec<String> = head.split(',').map(header_name).collect();
    if fields.iter().any(|h| h == "isrc") {
        let chained = io::Cursor::new(first).chain(r);
        let mut c = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(chained);
        let headers: Vec<String> = c
            .headers()
            .map_err(|e| reject(at_line(skipped + 1), Code::BadInput, e.to_string()))?
            .iter()
            .map(|h| crate::text::trim(h).to_ascii_lowercase())
            .collect();
        for q in INPUT_COLUMNS {
            if headers.iter().filter(|h| *h == q).count() > 1 {
                return Err(reject(
                    at_line(skipped + 1),
                    Code::BadInput,
                    format!("the header names the column {q:?} twice; keep one"),
                ));
            }
        }
        let col = |n: &str| headers.iter().position(|h| h == n);
        let (ci, cu, ct, ca) = (col("isrc"), col("use"), col("territory"), col("at"));
        let Some(ci) = ci else {
            return Err(reject(
                at_line(skipped + 1),
                Code::BadInput,
                "the CSV header has no isrc column",
            ));
        };
        for rec in c.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map_or(0, csv::Position::line) as usize + skipped;
                reject(at_line(line), Code::BadInput, e.to_string())
            })?;
            let line = rec.position().map_or(0, csv::Position::line) as usize + skipped;
            // A blank line is one blank field: skipped, as in the other formats.
            if rec.len() == 1 && crate::text::is_blank(&rec[0]) {
                continue;
            }
            if rec.len() != headers.len() {
                return Err(reject(
                    at_line(line),
                    Code::BadInput,
                    format!(
                        "has {} fields; the header has {} columns",
                        rec.len(),
                        headers.len()
                    ),
                ));
            }
            let get = |i: Option<usize>| i.and_then(|i| rec.get(i));
            f(row_of(
                &at_line(line),
                rec.get(ci).unwrap_or(""),
                get(cu),
                get(ct),
                get(ca),
                d,
            )?)?;
        }
        return Ok(());
    }
    if fields.len() > 1 {
        return Err(reject(
            at_line(skipped + 1),
            Code::BadInput,
            "looks like CSV but has no isrc column in its header",
        ));
    }
    let mut lineno = skipped;
    let mut line = first;
    loop {
        lineno += 1;
        if !crate::text::is_blank(&line) {
            f(row_of(&at_line(lineno), &line, None, None, None, d)?)?;
        }
        line.clear();
        if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
            return Ok(());
        }
    }
}

/// One JSON line: an object whose `isrc` is a string; `use`, `territory`
/// and `at` are strings or null; other keys are ignored.
fn json_row(where_: &str, line: &str, d: &Defaults) -> Result<Row, Rejection> {
    let bad = |e: String| reject(where_, Code::BadInput, e);
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("each line must be a JSON object".into()))?;
    let text = |k: &str| -> Result<Option<&str>, Rejection> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(format!("{k} must be a string"))),
        }
    };
    let isrc = text("isrc")?.ok_or_else(|| bad("the object has no isrc string".into()))?;
    row_of(
        where_,
        isrc,
        text("use")?,
        text("territory")?,
        text("at")?,
        d,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Serialize)]
struct JsonSnapshot<'a> {
    version: u64,
    manifest_sha256: &'a str,
    expired: bool,
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    input: &'a str,
    isrc: Option<String>,
    #[serde(rename = "use")]
    use_: &'a str,
    territory: Option<&'a str>,
    at: String,
    decision: &'a str,
    reason: &'a str,
    decided_by: &'a [String],
    snapshot: JsonSnapshot<'a>,
}

/// CSV output header.
pub const CSV_HEADER: [&str; 11] = [
    "input",
    "isrc",
    "use",
    "territory",
    "at",
    "decision",
    "reason",
    "decided_by",
    "snapshot_version",
    "manifest_sha256",
    "expired",
];

struct Output<'w> {
    format: Format,
    out: Option<&'w mut dyn Write>,
    csv: Option<csv::Writer<&'w mut dyn Write>>,
}

impl<'w> Output<'w> {
    fn new(format: Format, out: &'w mut dyn Write) -> Result<Output<'w>, Rejection> {
        if format == Format::Csv {
            let mut o = Output {
                format,
                out: None,
                csv: Some(csv::Writer::from_writer(out)),
            };
            o.csv_row(&CSV_HEADER.map(str::to_string))?;
            return Ok(o);
        }
        Ok(Output {
            format,
            out: Some(out),
            csv: None,
        })
    }

    fn csv_row(&mut self, fields: &[String]) -> Result<(), Rejection> {
        let Some(w) = self.csv.as_mut() else {
            return Ok(());
        };
        w.write_record(fields).map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) => out_err(&io),
            other => reject("stdout", Code::IoError, format!("{other:?}")),
        })
    }

    fn text(&mut self, s: &str) -> Result<(), Rejection> {
        match self.out.as_mut() {
            Some(o) => o.write_all(s.as_bytes()).map_err(|e| out_err(&e)),
            None => Ok(()),
        }
    }

    fn write(&mut self, row: &Row, a: &Answer, snap: &SnapshotInfo) -> Result<(), Rejection> {
        let isrc = crate::isrc::Isrc::parse(&row.input)
            .ok()
            .map(crate::isrc::Isrc::compact);
        match self.format {
            Format::Text => {
                let by = if a.decided_by.is_empty() {
                    "-".to_string()
                } else {
                    a.decided_by.join(" ")
                };
                let mark = if snap.expired {
                    "\tEXPIRED-SNAPSHOT"
                } else {
                    ""
                };
                // Every answer names its snapshot: version and the manifest
                // hash's first 12 hex digits (the full hash is in --json/--csv).
                self.text(&format!(
                    "{}\t{}\t{}\t{}\tv{}:{}{}\n",
                    row.input,
                    a.decision.name(),
                    a.reason.name(),
                    by,
                    snap.version,
                    &snap.manifest_sha256[..snap.manifest_sha256.len().min(12)],
                    mark
                ))
            }
            Format::Json => {
                let j = JsonAnswer {
                    input: &row.input,
                    isrc,
                    use_: row.use_.name(),
                    territory: row.territory.as_deref(),
                    at: format_date(row.at),
                    decision: a.decision.name(),
                    reason: a.reason.name(),
                    decided_by: &a.decided_by,
                    snapshot: JsonSnapshot {
                        version: snap.version,
                        manifest_sha256: &snap.manifest_sha256,
                        expired: snap.expired,
                    },
                };
                let mut s = serde_json::to_string(&j).unwrap_or_default();
                s.push('\n');
                self.text(&s)
            }
            Format::Csv => self.csv_row(&[
                row.input.clone(),
                isrc.unwrap_or_default(),
                row.use_.name().to_string(),
                row.territory.clone().unwrap_or_default(),
                format_date(row.at),
                a.decision.name().to_string(),
                a.reason.name().to_string(),
                a.decided_by.join(" "),
                snap.version.to_string(),
                snap.manifest_sha256.clone(),
                snap.expired.to_string(),
            ]),
        }
    }

    fn finish(&mut self) -> Result<(), Rejection> {
        if let Some(w) = self.csv.as_mut() {
            w.flush().map_err(|e| out_err(&e))?;
        }
        match self.out.as_mut() {
            Some(o) => o.flush().map_err(|e| out_err(&e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsite::{self, DAY, NOW, Opts, TestSite};

    struct Env {
        tmp: tempfile::TempDir,
        site: TestSite,
    }

    fn env() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        site.publish(&testsite::example_records(), &Opts::default());
        std::fs::write(tmp.path().join("root.cbor"), site.root_bytes(1)).unwrap();
        Env { tmp, site }
    }

    impl Env {
        fn run(&self, args: &[&str]) -> (Result<i32, Rejection>, String) {
            let store = self.tmp.path().join("store");
            let mut all = vec!["consentry", "--quiet", "--store", store.to_str().unwrap()];
            all.extend_from_slice(args);
            let cli = Cli::try_parse_from(all).unwrap();
            let mut out = Vec::new();
            let r = run(&cli, &mut out);
            (r, String::from_utf8(out).unwrap())
        }

        fn ok(&self, args: &[&str]) -> String {
            let (r, out) = self.run(args);
            assert_eq!(r.unwrap(), 0, "{args:?}");
            out
        }

        fn path(&self, p: &str) -> String {
            self.tmp.path().join(p).display().to_string()
        }

        fn ready(&self) {
            let root = self.path("root.cbor");
            self.ok(&["init", "--root", &root]);
            let site = self.site.dir.display().to_string();
            self.ok(&["--now", "2026-11-25T00:00:00Z", "sync", &site]);
        }
    }

    const LOOKUPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/lookups.csv");

    #[test]
    fn init_prints_the_pinned_keys_and_refuses_twice() {
        let e = env();
        let root = e.path("root.cbor");
        let out = e.ok(&["init", "--root", &root]);
        assert!(out.contains("pinned root version 1"), "{out}");
        for role in ["root", "manifest", "head"] {
            assert!(
                out.contains(&format!("{role:<9} threshold 1 of 1: ")),
                "{out}"
            );
        }
        let (r, _) = e.run(&["init", "--root", &root]);
        assert_eq!(r.unwrap_err().code, Code::AlreadyInitialized);
        e.ok(&["init", "--root", &root, "--force"]);
    }

    #[test]
    fn the_golden_lookups_file_feeds_check_directly() {
        let e = env();
        e.ready();
        let out = e.ok(&["--now", "2026-11-25", "check", "--csv", "--input", LOOKUPS]);
        let mut got = csv::Reader::from_reader(out.as_bytes());
        assert_eq!(
            got.headers().unwrap().iter().collect::<Vec<_>>(),
            CSV_HEADER
        );
        let mut want = csv::Reader::from_path(LOOKUPS).unwrap();
        let mut n = 0;
        for (g, w) in got.records().zip(want.records()) {
            let (g, w) = (g.unwrap(), w.unwrap());
            assert_eq!(&g[0], &w[0]);
            assert_eq!((&g[5], &g[6], &g[7]), (&w[4], &w[5], &w[6]), "{w:?}");
            assert_eq!(&g[8], "1");
            assert_eq!(&g[10], "false");
            n += 1;
        }
        let total = csv::Reader::from_path(LOOKUPS).unwrap().records().count();
        assert_eq!(n, total);
        assert!(n > 20);
    }

    #[test]
    fn json_text_and_plain_inputs() {
        let e = env();
        e.ready();
        let out = e.ok(&[
            "--now",
            "2026-11-25",
            "check",
            "--json",
            "gb-nwr-25-00017",
            "NOT-AN-ISRC",
            "--territory",
            "fr",
        ]);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["input"], "gb-nwr-25-00017");
        assert_eq!(lines[0]["isrc"], "GBNWR2500017");
        assert_eq!(lines[0]["use"], "train-ai");
        assert_eq!(lines[0]["territory"], "FR");
        assert_eq!(lines[0]["at"], "2026-11-25");
        assert_eq!(lines[0]["decision"], "allow");
        assert_eq!(lines[0]["decided_by"], serde_json::json!(["D2"]));
        assert_eq!(lines[0]["snapshot"]["version"], 1);
        assert_eq!(lines[0]["snapshot"]["expired"], false);
        assert_eq!(
            lines[0]["snapshot"]["manifest_sha256"],
            hex::encode(e.site.history[0].manifest_sha256)
        );
        assert_eq!(lines[1]["isrc"], serde_json::Value::Null);
        assert_eq!(lines[1]["reason"], "invalid_isrc");

        let text = e.ok(&[
            "--now",
            "2026-11-25",
            "check",
            "GBNWR2500001",
            "USQZ92300500",
        ]);
        let snap = format!(
            "v1:{}",
            &hex::encode(e.site.history[0].manifest_sha256)[..12]
        );
        assert_eq!(
            text,
            format!(
                "GBNWR2500001\tdisallow\tdeclared\tD1\t{snap}\nUSQZ92300500\tunknown\tno_record\t-\t{snap}\n"
            )
        );

        std::fs::write(e.path("plain.txt"), "\nGBNWR2500001\n\n  USQZ92400500 \n").unwrap();
        let out = e.ok(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("plain.txt"),
        ]);
        assert_eq!(out.lines().count(), 2);
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with("USQZ92400500\tallow"),
            "{out}"
        );

        std::fs::write(
            e.path("q.jsonl"),
            "{\"isrc\":\"USQZ92400500\",\"use\":\"train-genai\"}\n\n{\"isrc\":\"FRAB10012345\",\"territory\":\"US\",\"at\":null}\n",
        )
        .unwrap();
        let out = e.ok(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("q.jsonl"),
        ]);
        assert_eq!(
            out,
            format!(
                "USQZ92400500\tdisallow\tdeclared\tD3\t{snap}\nFRAB10012345\tunknown\tterritory_not_covered\tD5\t{snap}\n"
            )
        );
    }

    #[test]
    fn args_plain_lines_csv_and_jsonl_give_the_same_answer_for_the_same_strings() {
        let e = env();
        e.ready();
        let inputs = [
            " GBNWR2500001 ",
            "\tgb-nwr-25-00001\r",
            "GBNWR2500001\u{0C}",
            " USKLH2201198\u{a0}",
            "\u{3000}GBNWR2500001",
            "ſEABC2200001",
            "ıTUZ82061826",
            "BRß71940766",
            "GB NWR 25 00017",
            "ISRC:GBNWR2500017",
            "GBNWR\u{0B}2500001",
        ];
        let answers = |out: String| -> Vec<serde_json::Value> {
            out.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let base = ["--now", "2026-11-25", "check", "--json"];
        let mut args = base.to_vec();
        args.extend(inputs);
        let from_args = answers(e.ok(&args));
        assert_eq!(from_args.len(), inputs.len());
        let run_file = |name: &str, body: String| {
            std::fs::write(e.path(name), body).unwrap();
            let mut a = base.to_vec();
            let p = e.path(name);
            a.extend(["--input", p.as_str()]);
            answers(e.ok(&a))
        };
        // Blank lines (empty or ASCII whitespace only) are skipped everywhere.
        let blank = "  \t\r\n";
        let plain: String = inputs.iter().map(|s| [s, "\n", blank].concat()).collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["isrc", "use"]).unwrap();
        for s in inputs {
            w.write_record([s, ""]).unwrap();
        }
        let csv_body = String::from_utf8(w.into_inner().unwrap())
            .unwrap()
            .replace('\n', &["\n", blank].concat());
        let jsonl: String = inputs
            .iter()
            .map(|s| {
                [
                    serde_json::json!({ "isrc": s }).to_string().as_str(),
                    "\n",
                    blank,
                ]
                .concat()
            })
            .collect();
        for (name, body) in [
            ("same.txt", plain),
            ("same.csv", csv_body),
            ("same.jsonl", jsonl),
        ] {
            assert_eq!(run_file(name, body), from_args, "{name}");
        }
        let reason = |i: usize| from_args[i]["reason"].as_str().unwrap().to_string();
        assert_eq!(from_args[0]["input"], "GBNWR2500001");
        assert_eq!(from_args[0]["decided_by"], serde_json::json!(["D1"]));
        for i in [0, 1, 2] {
            assert_eq!(reason(i), "declared", "{}", inputs[i]);
        }
        for i in [3, 4, 5, 6, 7, 10] {
            assert_eq!(reason(i), "invalid_isrc", "{:?}", inputs[i]);
        }
        assert_eq!(from_args[3]["input"], "USKLH2201198\u{a0}");
        assert_eq!(reason(8), "declared");
        assert_eq!(reason(9), "declared");

        // A byte order mark is removed only at the very start of the input.
        let out = run_file(
            "bom.txt",
            "\u{feff}GBNWR2500001\n\u{feff}GBNWR2500001\n".into(),
        );
        assert_eq!(out[0]["reason"], "declared");
        assert_eq!(out[1]["reason"], "invalid_isrc");
        let out = run_file("bom.csv", "\u{feff}ISRC,At\r\nGBNWR2500001,\r\n".into());
        assert_eq!(out[0]["reason"], "declared");
    }

    #[test]
    fn csv_input_with_a_repeated_question_column_or_a_short_row_is_refused() {
        let e = env();
        e.ready();
        for (name, body, line) in [
            ("dup.csv", "isrc,use,use\nGBNWR2500001,all,all\n", 1),
            ("short.csv", "isrc,use\nGBNWR2500001,all\nGBNWR2500001\n", 3),
            ("long.csv", "isrc\nGBNWR2500001,all\n", 2),
        ] {
            std::fs::write(e.path(name), body).unwrap();
            let (r, _) = e.run(&["--now", "2026-11-25", "check", "--input", &e.path(name)]);
            let err = r.unwrap_err();
            assert_eq!(err.code, Code::BadInput, "{name}");
            assert!(err.file.ends_with(&format!("{name}:{line}")), "{err}");
        }
    }

    #[test]
    fn a_bad_row_is_an_error_naming_its_line() {
        let e = env();
        e.ready();
        std::fs::write(
            e.path("bad.csv"),
            "isrc,use\nGBNWR2500001,train-ai\nGBNWR2500001,training\n",
        )
        .unwrap();
        let (r, out) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("bad.csv"),
        ]);
        let err = r.unwrap_err();
        assert_eq!(err.code, Code::BadInput);
        assert!(err.file.ends_with("bad.csv:3"), "{err}");
        assert_eq!(
            out.lines().count(),
            1,
            "answers before the bad line were written"
        );

        std::fs::write(
            e.path("bad.jsonl"),
            "{\"isrc\":\"X\"}\n{\"isrc\":\"Y\",\"territory\":\"XX\"}\n",
        )
        .unwrap();
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("bad.jsonl"),
        ]);
        assert!(r.unwrap_err().file.ends_with("bad.jsonl:2"));

        std::fs::write(e.path("nocol.csv"), "code,use\nGBNWR2500001,all\n").unwrap();
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("nocol.csv"),
        ]);
        assert_eq!(r.unwrap_err().code, Code::BadInput);

        let (r, _) = e.run(&["--now", "2026-11-25", "check", "--use", "x", "GBNWR2500001"]);
        assert_eq!(r.unwrap_err().code, Code::Usage);
    }

    #[test]
    fn require_allow_exits_one_unless_every_answer_allows() {
        let e = env();
        e.ready();
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--require",
            "allow",
            "GBNWR2500017",
        ]);
        assert_eq!(r.unwrap(), 0);
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--require",
            "allow",
            "GBNWR2500017",
            "GBNWR2500001",
        ]);
        assert_eq!(r.unwrap(), 1);
    }

    #[test]
    fn expired_snapshots_are_refused_or_loudly_marked() {
        let e = env();
        e.ready();
        let later = format_timestamp(NOW + 5 * DAY);
        let (r, _) = e.run(&["--now", &later, "check", "GBNWR2500001"]);
        assert_eq!(r.unwrap_err().code, Code::Expired);
        let out = e.ok(&["--now", &later, "--allow-expired", "check", "GBNWR2500001"]);
        assert!(out.ends_with("\tEXPIRED-SNAPSHOT\n"), "{out}");
        let out = e.ok(&[
            "--now",
            &later,
            "--allow-expired",
            "check",
            "--csv",
            "GBNWR2500001",
        ]);
        assert!(out.lines().nth(1).unwrap().ends_with(",true"), "{out}");
        // Running at `later` left no trace: the right time answers again.
        e.ok(&["--now", "2026-11-25", "check", "GBNWR2500001"]);
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn status_verify_and_import_through_the_cli() {
        let e = env();
        let (r, _) = e.run(&["status"]);
        assert_eq!(r.unwrap_err().code, Code::NotInitialized);
        e.ready();
        let out = e.ok(&["--now", "2026-11-25", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["snapshot"]["version"], 1);
        assert_eq!(v["root_version"], 1);
        assert!(v["store_bytes"].as_u64().unwrap() > 0);
        let text = e.ok(&["--now", "2026-11-25", "status"]);
        assert!(text.contains("snapshot     version 1"), "{text}");
        let out = e.ok(&["--now", "2026-11-25", "verify"]);
        assert!(out.contains("index intact"), "{out}");
        // A damaged index: verify repairs it and exits 1.
        let idx = e.tmp.path().join("store/local/index").join(format!(
            "{}.idx",
            hex::encode(e.site.history[0].manifest_sha256)
        ));
        let mut b = std::fs::read(&idx).unwrap();
        let n = b.len() - 3;
        b[n] ^= 1;
        std::fs::write(&idx, b).unwrap();
        let (r, out) = e.run(&["--now", "2026-11-25", "verify"]);
        assert_eq!(r.unwrap(), 1, "{out}");
        assert!(out.contains("rebuilt"), "{out}");

        // Import into a second store.
        let tar = e.path("b.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        for f in e.site.files() {
            b.append_path_with_name(e.site.path(&f), &f).unwrap();
        }
        b.finish().unwrap();
        let store2 = e.path("store2");
        let root = e.path("root.cbor");
        for args in [
            vec!["--store", &store2, "init", "--root", &root],
            vec!["--store", &store2, "--now", "2026-11-25", "import", &tar],
        ] {
            let mut all = vec!["consentry", "--quiet"];
            all.extend(args);
            let cli = Cli::try_parse_from(all).unwrap();
            assert_eq!(run(&cli, &mut Vec::new()).unwrap(), 0);
        }
    }

    #[test]
    fn sources_are_urls_or_directories() {
        assert_eq!(
            source_of("ftp://x", None).err().unwrap().code,
            Code::BadSource
        );
        assert_eq!(
            source_of("/no/such/dir", None).err().unwrap().code,
            Code::BadSource
        );
        assert!(source_of("https://example.invalid/site", Some(5)).is_ok());
        assert!(source_of("/", None).is_ok());
        assert!(
            hint(Code::HashMismatch, "/s/shard/x", Some(Path::new("/s")))
                .unwrap()
                .contains("fetches every damaged file again")
        );
        assert!(
            hint(
                Code::HashMismatch,
                "http://m/shard/x",
                Some(Path::new("/s"))
            )
            .unwrap()
            .contains("another mirror")
        );
    }
}
