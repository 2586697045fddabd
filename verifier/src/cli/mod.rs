//! The `consentry` command line (feature `cli`): argument parsing (clap) and
//! one module per subcommand, each a thin call into the library. stdout
//! carries only data; progress, warnings and errors go to stderr. Exit
//! codes: 0 success, 1 a test answered "no" (`check --require allow` found an
//! answer that is not `allow`; `verify` found the index missing or damaged),
//! 2 any error, 141 when stdout's reader went away.
//!
//! `check`, `export`, `verify`, `status` and `import` never open a network socket: only
//! `sync` with an http(s) SOURCE does.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};

use crate::error::{Code, Rejection, reject};
use crate::store::{Reporter, Store};
use crate::time::{format_timestamp, parse_timestamp};
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

    /// Print nothing on success: no summaries, progress or notes (warnings
    /// and errors still appear on stderr)
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print each file as it is fetched or checked, on stderr
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the registry's root (obtained out of band) as the store's trust anchor
    Init(init::InitArgs),
    /// Fetch and verify the current snapshot from a URL or a mirror directory
    Sync(sync::SyncArgs),
    /// Import a tar bundle (no network)
    Import(import::ImportArgs),
    /// Re-check the whole store from the pinned root; writes nothing (exit 1
    /// if the local index is missing or damaged)
    Verify(verify::VerifyArgs),
    /// Show the snapshot, its expiry, the keys and the store's size
    Status(status::StatusArgs),
    /// Answer consent questions for ISRCs
    Check(check::CheckArgs),
    /// Serve the store as a read-only mirror over HTTP: only published site
    /// files, never local/ (for the rest of a cluster to `sync` from)
    Serve(serve::ServeArgs),
    /// Consent receipts
    Receipt(receipt::ReceiptArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(docs::CompletionsArgs),
    /// Write man pages (consentry.1 and one per subcommand) into a directory
    Man(docs::ManArgs),
    /// Write the verified state, answered for one question, as Parquet, CSV
    /// or JSON lines files (entries and prefixes) for DuckDB, Spark or pandas
    Export(export::ExportArgs),
    /// Witness a registry's manifest log: keygen, init, cosign (SPEC.md §15)
    Witness(witness::WitnessArgs),
    /// Compare the log checkpoints two stores hold: prove or disprove a
    /// split view offline (exit 1: a split view)
    CompareCheckpoints(witness::CompareArgs),
}

mod check;
mod docs;
mod export;
mod import;
mod init;
mod receipt;
mod serve;
mod status;
mod sync;
mod verify;
mod witness;

pub use check::{CSV_HEADER, Require};
pub use receipt::ReceiptCommand;

/// What every subcommand runs with: the parsed command line, the one time of
/// the run, the expiry rule, the store directory and the stderr reporter.
pub(super) struct Ctx<'a> {
    pub cli: &'a Cli,
    pub now: i64,
    pub expiry: Expiry,
    pub dir: PathBuf,
    pub reporter: Arc<dyn Reporter>,
}

impl Ctx<'_> {
    /// The store, reporting to stderr.
    fn open(&self) -> Result<Store, Rejection> {
        Ok(Store::open(&self.dir)?.with_reporter(self.reporter.clone()))
    }
}

/// Write data to stdout; a closed stdout is `broken_pipe`.
fn w(stdout: &mut dyn Write, s: &str) -> Result<(), Rejection> {
    stdout.write_all(s.as_bytes()).map_err(|e| out_err(&e))
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
    verbose: bool,
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

    fn start(&self, what: &str, files: u64) {
        if self.quiet || !self.tty {
            return;
        }
        // A bar with a count and an ETA when the number of files is known.
        let b = indicatif::ProgressBar::with_draw_target(
            (files > 0).then_some(files),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = if files > 0 {
            "{spinner} {prefix} [{bar:30}] {pos}/{len} files, {msg} (eta {eta})"
        } else {
            "{spinner} {prefix} {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(what.to_string());
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
        if self.verbose {
            self.print(&format!("fetched {file} ({bytes} bytes)"));
        }
        if let Some(b) = self.bar.lock().ok().and_then(|b| b.clone()) {
            b.set_position(n);
            b.set_message(format!("{} ({})", human_bytes(total), short_name(file)));
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}

/// `1.2 MB`-style sizes for progress lines.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A site file name with its 64-hex hash cut to 12 digits, for progress lines.
fn short_name(file: &str) -> String {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
    let stem = if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        &stem[..12]
    } else {
        stem
    };
    let sep = if dir.is_empty() { "" } else { "/" };
    let dot = if ext.is_empty() { "" } else { "." };
    format!("{dir}{sep}{stem}{dot}{ext}")
}

/// Run a parsed command line. Returns the exit code (0 or 1); errors are for
/// the caller to print (exit 2).
pub fn run(cli: &Cli, stdout: &mut dyn Write) -> Result<i32, Rejection> {
    use std::io::IsTerminal;
    let reporter: Arc<dyn Reporter> = Arc::new(Stderr {
        quiet: cli.quiet,
        verbose: cli.verbose,
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
    let ctx = Ctx {
        cli,
        now,
        expiry,
        dir,
        reporter,
    };
    match &cli.command {
        Command::Init(a) => init::run(&ctx, a, stdout),
        Command::Sync(a) => sync::run(&ctx, a, stdout),
        Command::Import(a) => import::run(&ctx, a, stdout),
        Command::Verify(a) => verify::run(&ctx, a, stdout),
        Command::Status(a) => status::run(&ctx, a, stdout),
        Command::Check(a) => check::run(&ctx, a, stdout),
        Command::Serve(a) => serve::run(&ctx, a, stdout),
        Command::Receipt(a) => receipt::run(&ctx, a, stdout),
        Command::Completions(a) => docs::completions(a, stdout),
        Command::Man(a) => docs::man(a, stdout),
        Command::Export(a) => export::run(&ctx, a, stdout),
        Command::Witness(a) => witness::run(&ctx, a, stdout),
        Command::CompareCheckpoints(a) => witness::compare(&ctx, a, stdout),
    }
}

/// Exit status when stdout's reader went away (`consentry check … | head`):
/// quiet, and the status a shell reports for a process ended by SIGPIPE
/// (128 + 13), so `set -o pipefail` pipelines see what they expect.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Parse, run, print errors; the process exit code.
pub fn main_exit(cli: &Cli) -> i32 {
    let stdout = io::stdout();
    let mut lock = io::BufWriter::with_capacity(1 << 16, stdout.lock());
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

#[cfg(test)]
mod tests {
    use super::sync::source_of;
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

    /// `--help` documents every flag and argument of every subcommand.
    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory;
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "consentry", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn init_prints_the_pinned_keys_and_is_idempotent() {
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
        // The same root twice (a provisioning script re-run) succeeds.
        assert_eq!(e.ok(&["init", "--root", &root]), out);
        e.ok(&["init", "--root", &root, "--force"]);
    }

    #[test]
    fn the_golden_lookups_file_feeds_check_directly() {
        let e = env();
        e.ready();
        let out = e.ok(&["--now", "2026-11-25", "check", "--csv", "--input", LOOKUPS]);
        let mut got = csv::Reader::from_reader(out.as_bytes());
        let header: Vec<String> = got.headers().unwrap().iter().map(String::from).collect();
        // The answer fields, then the file's other columns passed through
        // (its expected answers renamed input_NAME beside the real ones).
        assert_eq!(header[..CSV_HEADER.len()], CSV_HEADER);
        assert_eq!(
            header[CSV_HEADER.len()..],
            ["input_decision", "input_reason", "input_decided_by"]
        );
        let col = |n: &str| header.iter().position(|h| h == n).unwrap();
        let mut want = csv::Reader::from_path(LOOKUPS).unwrap();
        let mut n = 0;
        for (g, w) in got.records().zip(want.records()) {
            let (g, w) = (g.unwrap(), w.unwrap());
            assert_eq!(&g[col("input")], &w[0]);
            assert_eq!(
                (
                    &g[col("decision")],
                    &g[col("reason")],
                    &g[col("decided_by")]
                ),
                (&w[4], &w[5], &w[6]),
                "{w:?}"
            );
            assert_eq!(
                (&g[col("input_decision")], &g[col("input_reason")]),
                (&w[4], &w[5])
            );
            assert_eq!(&g[col("snapshot_version")], "1");
            assert_eq!(&g[col("expired")], "false");
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
        assert_eq!(lines[0]["snapshot_version"], 1);
        assert_eq!(lines[0]["expired"], false);
        assert_eq!(lines[0]["terms_url"], serde_json::json!([]));
        assert_eq!(lines[0]["error"], serde_json::Value::Null);
        assert_eq!(
            lines[0]["manifest_sha256"],
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
        std::fs::write(e.path("dup.csv"), "isrc,use,use\nGBNWR2500001,all,all\n").unwrap();
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("dup.csv"),
        ]);
        let err = r.unwrap_err();
        assert_eq!(err.code, Code::BadInput);
        assert!(err.file.ends_with("dup.csv:1"), "{err}");
        for (name, body, line) in [
            ("short.csv", "isrc,use\nGBNWR2500001,all\nGBNWR2500001\n", 3),
            ("long.csv", "isrc\nGBNWR2500001,all\n", 2),
        ] {
            std::fs::write(e.path(name), body).unwrap();
            // --strict: the first such row stops the run, naming its line.
            let (r, _) = e.run(&[
                "--now",
                "2026-11-25",
                "check",
                "--strict",
                "--input",
                &e.path(name),
            ]);
            let err = r.unwrap_err();
            assert_eq!(err.code, Code::BadInput, "{name}");
            assert!(err.file.ends_with(&format!("{name}:{line}")), "{err}");
            // Without it: answered unknown / bad_input, never allow.
            let out = e.ok(&[
                "--now",
                "2026-11-25",
                "check",
                "--json",
                "--input",
                &e.path(name),
            ]);
            let last: serde_json::Value =
                serde_json::from_str(out.lines().last().unwrap()).unwrap();
            assert_eq!(last["decision"], "unknown", "{name}");
            assert_eq!(last["reason"], "bad_input", "{name}");
            assert!(last["error"].as_str().unwrap().contains("fields"), "{name}");
        }
    }

    #[test]
    fn a_bad_row_is_answered_bad_input_or_stops_a_strict_run_naming_its_line() {
        let e = env();
        e.ready();
        std::fs::write(
            e.path("bad.csv"),
            "isrc,use\nGBNWR2500001,train-ai\nGBNWR2500001,training\nGBNWR2500001,all\n",
        )
        .unwrap();
        let (r, out) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--strict",
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
        // Without --strict every row gets an answer; the bad one says why.
        let out = e.ok(&[
            "--now",
            "2026-11-25",
            "check",
            "--input",
            &e.path("bad.csv"),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].starts_with("GBNWR2500001\tunknown\tbad_input\t-\t"),
            "{out}"
        );
        assert!(lines[1].contains("error: use: "), "{out}");
        assert!(lines[2].contains("\tdisallow\tdeclared\t"), "{out}");

        std::fs::write(
            e.path("bad.jsonl"),
            "{\"isrc\":\"X\"}\n{\"isrc\":\"Y\",\"territory\":\"XX\"}\n",
        )
        .unwrap();
        let (r, _) = e.run(&[
            "--now",
            "2026-11-25",
            "check",
            "--strict",
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
        assert!(out.lines().nth(1).unwrap().ends_with(",true,"), "{out}");
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
        assert_eq!(v["expired"], false);
        assert!(v["expires_in_s"].as_i64().unwrap() > 0);
        assert!(v["source"].as_str().unwrap().ends_with("site"), "{v}");
        assert!(v["store_bytes"].as_u64().unwrap() > 0);
        let text = e.ok(&["--now", "2026-11-25", "status"]);
        assert!(text.contains("snapshot     version 1"), "{text}");
        // -q (this harness's default): nothing on success.
        assert_eq!(e.ok(&["--now", "2026-11-25", "verify"]), "");
        let out = e.ok(&["--now", "2026-11-25", "verify", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["index"].as_str(), v["version"].as_u64()),
            (Some("intact"), Some(1))
        );
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
