//! The verifier's command line as people and pipelines use it: filtering a
//! real dataset manifest, monitoring, cron-quiet runs, re-runs that must be
//! harmless. Every test runs the real binary on a published fixture.

use consentry_tests::run_with_stdin;

use super::fixture::{Fixture, NOW};

/// `check` on `stdin` with the fixture's store and clock.
fn check_stdin(f: &Fixture, args: &[&str], input: &str) -> consentry_tests::Run {
    let mut full = vec!["--store", "store", "--now", NOW, "check"];
    full.extend_from_slice(args);
    run_with_stdin("consentry", &full, f.root(), input.as_bytes())
}

fn csv_rows(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let h = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (h, rows)
}

/// A training-set manifest as TSV: its ISRC column is `track_isrc`, with
/// other columns that must survive the filter.
const MANIFEST_TSV: &str = "clip_id\ttrack_isrc\ttitle\n\
c1\tUSQZ92400500\tMidnight Drive\n\
c2\tGBNWR2500001\tHarbour Lights\n\
c3\tnot an isrc\tUnknown\n\
c4\tGBNWR2500017\tSalt Air\n";

#[test]
fn check_filters_a_tsv_manifest_by_its_isrc_column_keeping_its_other_columns() {
    let f = Fixture::synced();
    std::fs::write(f.path("manifest.tsv"), MANIFEST_TSV).unwrap();
    let out = f
        .verifier(&[
            "check",
            "--input",
            "manifest.tsv",
            "--column",
            "Track_ISRC",
            "--keep",
            "allow",
            "--csv",
        ])
        .ok();
    let (h, rows) = csv_rows(&out.stdout);
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    // Only the allowed clips, with their own columns passed through.
    let kept: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[col("clip_id")].as_str(),
                r[col("title")].as_str(),
                r[col("decision")].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("c1", "Midnight Drive", "allow"),
            ("c4", "Salt Air", "allow")
        ],
        "{}",
        out.stdout
    );
    // JSON lines carry the same fields.
    let out = f
        .verifier(&[
            "check",
            "--input",
            "manifest.tsv",
            "--column",
            "track_isrc",
            "--json",
        ])
        .ok();
    let first: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["clip_id"], "c1");
    assert_eq!(first["title"], "Midnight Drive");
    assert_eq!(first["decision"], "allow");
}

#[test]
fn a_tsv_manifest_without_the_isrc_column_is_refused_with_a_hint_not_answered() {
    let f = Fixture::synced();
    std::fs::write(f.path("manifest.tsv"), MANIFEST_TSV).unwrap();
    let out = f
        .verifier(&["check", "--input", "manifest.tsv"])
        .expect_code(2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("manifest.tsv:1"), "{}", out.stderr);
    assert!(out.stderr.contains("--column"), "{}", out.stderr);
}

#[test]
fn a_bad_row_is_answered_and_counted_and_the_rest_still_answered() {
    let f = Fixture::synced();
    let input = "isrc,use\nGBNWR2500001,train-ai\nGBNWR2500001,bogus\nUSQZ92400500,TRAIN-AI\n";
    let out = check_stdin(&f, &["--csv"], input).ok();
    let (h, rows) = csv_rows(&out.stdout);
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[col("decision")].as_str(), r[col("reason")].as_str()))
        .collect();
    // The use name is case-insensitive; "bogus" is not a use.
    assert_eq!(
        got,
        [
            ("disallow", "declared"),
            ("unknown", "bad_input"),
            ("allow", "declared")
        ]
    );
    assert!(rows[1][col("error")].contains("bogus"), "{rows:?}");
    assert!(
        out.stderr.contains("1 of 3 rows could not be asked"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("stdin:3"), "{}", out.stderr);
    // --strict stops at it.
    let out = check_stdin(&f, &["--csv", "--strict", "-"], input).expect_code(2);
    assert!(out.stderr.contains("stdin:3"), "{}", out.stderr);
}

#[test]
fn require_allow_says_how_many_answers_were_not_allowed_and_which() {
    let f = Fixture::synced();
    let out = f
        .verifier(&[
            "check",
            "--require",
            "allow",
            "USQZ92400500",
            "GBNWR2500001",
            "XX",
        ])
        .expect_code(1);
    assert!(
        out.stderr.contains("2 of 3 answers are not allow"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("GBNWR2500001 (disallow/declared)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("XX (unknown/invalid_isrc)"),
        "{}",
        out.stderr
    );
    f.verifier(&["check", "--require", "allow", "USQZ92400500"])
        .ok();
}

#[test]
fn constrained_answers_carry_their_terms_in_text_csv_and_json() {
    let f = Fixture::synced();
    let url = "https://klang.example/ai-licence-v2";
    let sha = "2f0c1b5a7d9e3f41c6a8b2d4e6f80a1c3e5b7d9f1a2c4e6b8d0f2a4c6e8b0d2f";
    let text = f.verifier(&["check", "DEXY12300001"]).ok().stdout;
    assert!(text.contains(&format!("\tterms {url}")), "{text}");
    let (h, rows) = csv_rows(&f.verifier(&["check", "--csv", "DEXY12300001"]).ok().stdout);
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    assert_eq!(rows[0][col("decision")], "constrained");
    assert_eq!(
        (
            rows[0][col("terms_url")].as_str(),
            rows[0][col("terms_sha256")].as_str()
        ),
        (url, sha)
    );
    let j: serde_json::Value =
        serde_json::from_str(&f.verifier(&["check", "--json", "DEXY12300001"]).ok().stdout)
            .unwrap();
    assert_eq!(j["terms_url"], serde_json::json!([url]));
    assert_eq!(j["terms_sha256"], serde_json::json!([sha]));
}

#[test]
fn piped_questions_and_dash_read_stdin_and_text_output_escapes_tabs() {
    let f = Fixture::synced();
    let piped = check_stdin(&f, &[], "GBNWR2500001\nUSQZ92400500\n").ok();
    assert_eq!(piped.stdout.lines().count(), 2, "{}", piped.stdout);
    let dash = check_stdin(&f, &["-"], "GBNWR2500001\nUSQZ92400500\n").ok();
    assert_eq!(dash.stdout, piped.stdout);
    // A tab inside an argument is echoed escaped: one answer, one line, five fields.
    let out = f.verifier(&["check", "GB\tX"]).ok().stdout;
    assert_eq!(out.lines().count(), 1);
    assert!(out.starts_with("GB\\tX\tunknown\tinvalid_isrc\t"), "{out}");
}

#[test]
fn a_receipt_file_is_not_overwritten_without_force() {
    let f = Fixture::synced();
    f.verifier(&["check", "--receipt", "r.cbor", "GBNWR2500001"])
        .ok();
    let before = std::fs::read(f.path("r.cbor")).unwrap();
    let out = f
        .verifier(&["check", "--receipt", "r.cbor", "USQZ92400500"])
        .expect_code(2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(std::fs::read(f.path("r.cbor")).unwrap(), before);
    f.verifier(&["check", "--receipt", "r.cbor", "--force", "USQZ92400500"])
        .ok();
    assert_ne!(std::fs::read(f.path("r.cbor")).unwrap(), before);
    // A directory of receipts: the same rule, checked before any is written.
    f.verifier(&["check", "--receipt", "rs/", "GBNWR2500001", "USQZ92400500"])
        .ok();
    let one = std::fs::read(f.path("rs/1-GBNWR2500001.receipt.cbor")).unwrap();
    let out = f
        .verifier(&["check", "--receipt", "rs/", "GBNWR2500001"])
        .expect_code(2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(f.path("rs/1-GBNWR2500001.receipt.cbor")).unwrap(),
        one
    );
}

#[test]
fn status_check_exits_ok_warning_or_critical_for_monitoring() {
    let f = Fixture::synced();
    // The head expires 72 h after T0; NOW is 12 h after it.
    let ok = f.verifier(&["status", "--check"]).ok();
    assert!(
        ok.stderr.contains("OK: snapshot version 1"),
        "{}",
        ok.stderr
    );
    let warn = f
        .verifier(&["status", "--check", "--warn-within", "3d"])
        .expect_code(1);
    assert!(
        warn.stderr.contains("WARNING: expires in"),
        "{}",
        warn.stderr
    );
    let crit = f
        .verifier_at("2026-11-20T00:00:00Z", &["status", "--check"])
        .expect_code(2);
    assert!(crit.stderr.contains("CRITICAL: expired"), "{}", crit.stderr);
    // JSON names the problem and the numbers a dashboard needs.
    let j: serde_json::Value = serde_json::from_str(
        &f.verifier_at("2026-11-20T00:00:00Z", &["status", "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(j["expired"], true);
    assert!(
        j["snapshot_problem"].as_str().unwrap().contains("expired"),
        "{j}"
    );
    assert!(j["expires_in_s"].as_i64().unwrap() < 0);
    assert!(j["last_sync"].is_string() && j["source"].is_string(), "{j}");
    // Prometheus textfile metrics.
    let prom = f.verifier(&["status", "--prometheus"]).ok().stdout;
    assert!(prom.contains("\nconsentry_status 0\n"), "{prom}");
    assert!(prom.contains("\nconsentry_snapshot_version 1\n"), "{prom}");
    assert!(prom.contains("consentry_expires_in_seconds "), "{prom}");
    // A store that never synced is critical.
    let f2 = Fixture::published();
    f2.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f2.verifier(&["status", "--check"]).expect_code(2);
}

#[test]
fn sync_remembers_its_source_and_quiet_runs_print_nothing() {
    let f = Fixture::published();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    // Before any sync there is nothing to remember.
    let out = f.verifier(&["sync"]).expect_code(2);
    assert!(
        out.stderr.contains("has not synced before"),
        "{}",
        out.stderr
    );
    f.verifier(&["-q", "sync", "site"]).ok();
    f.publish_change(17, &[]);
    // cron: no argument, -q: silent on success, the new version synced.
    let out = f.verifier(&["-q", "sync"]).ok();
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    let j: serde_json::Value =
        serde_json::from_str(&f.verifier(&["sync", "--json"]).ok().stdout).unwrap();
    assert_eq!(j["version"], 2);
    assert_eq!(j["from_version"], 2);
    let out = f.verifier(&["-q", "verify"]).ok();
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    let j: serde_json::Value =
        serde_json::from_str(&f.verifier(&["verify", "--json"]).ok().stdout).unwrap();
    assert_eq!(
        (j["version"].as_u64(), j["index"].as_str()),
        (Some(2), Some("intact"))
    );
}

#[test]
fn init_with_the_same_root_twice_is_harmless_and_another_root_is_refused() {
    let f = Fixture::synced();
    let before = f.verifier(&["check", "--csv", "GBNWR2500001"]).ok().stdout;
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    assert_eq!(
        f.verifier(&["check", "--csv", "GBNWR2500001"]).ok().stdout,
        before
    );
    // A different root is refused without --force: a root file with one
    // byte changed does not even verify, and the store keeps answering.
    let mut other = std::fs::read(f.path("site/root/1.cbor")).unwrap();
    let n = other.len() - 1;
    other[n] ^= 1;
    std::fs::write(f.path("other-root.cbor"), other).unwrap();
    f.verifier(&["init", "--root", "other-root.cbor"])
        .expect_code(2);
    assert_eq!(
        f.verifier(&["check", "--csv", "GBNWR2500001"]).ok().stdout,
        before
    );
}

#[test]
fn completions_and_man_pages_are_generated_from_the_real_flags() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = consentry_tests::run("consentry", &["completions", shell], dir.path()).ok();
        let flag = if shell == "fish" {
            "-l column"
        } else {
            "--column"
        };
        assert!(out.stdout.contains(flag), "{shell}: {}", out.stdout);
    }
    consentry_tests::run("consentry", &["completions", "tcsh"], dir.path()).expect_code(2);
    let out = consentry_tests::run("consentry", &["man", "--out", "man"], dir.path()).ok();
    assert!(out.stdout.contains("consentry-check.1"), "{}", out.stdout);
    let page = std::fs::read_to_string(dir.path().join("man/consentry-check.1")).unwrap();
    assert!(page.contains("keep"), "{page}");
    assert!(dir.path().join("man/consentry.1").is_file());
}

/// `consentry ARGS` with stderr on a pseudo-terminal (util-linux `script`),
/// stdout to a file; returns what the terminal showed.
fn on_a_terminal(f: &Fixture, args: &str) -> Option<String> {
    let bin = consentry_tests::bin_dir().join("consentry");
    let cmd = format!(
        "{} --store store --now {NOW} {args} > out.txt",
        bin.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(f.root())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn progress_shows_on_a_terminal_and_never_in_a_pipe() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let f = Fixture::published();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    let lines: Vec<String> = (0..20_000).map(|i| format!("GBNWR25{i:05}")).collect();
    let lines = lines.join("\n") + "\n";
    std::fs::write(f.path("many.txt"), lines).unwrap();
    let tty = on_a_terminal(&f, "sync site").unwrap();
    assert!(
        tty.contains("files"),
        "sync on a terminal showed no bar: {tty:?}"
    );
    let tty = on_a_terminal(&f, "check --input many.txt").unwrap();
    assert!(
        tty.contains("checked"),
        "check on a terminal showed no progress: {tty:?}"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("out.txt"))
            .unwrap()
            .lines()
            .count(),
        20_000
    );
    // Piped: nothing but data on stdout, no progress on stderr.
    let piped = f.verifier(&["check", "--input", "many.txt"]).ok();
    assert!(!piped.stderr.contains("checked"), "{}", piped.stderr);
    // -q on a terminal: nothing at all.
    let tty = on_a_terminal(&f, "-q check --input many.txt").unwrap();
    assert!(!tty.contains("checked"), "{tty:?}");
}

/// A program that keeps `consentry check -` open as a coprocess writes one
/// question and waits: the answer must come out before the next question
/// goes in, although answers are otherwise written in blocks.
#[test]
fn check_answers_a_piped_question_before_the_next_one_arrives() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    let f = Fixture::synced();
    let mut child = Command::new(consentry_tests::bin_dir().join("consentry"))
        .args(["--store", "store", "--now", NOW, "check", "-"])
        .current_dir(f.root())
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let limit = std::time::Duration::from_mins(1);
    for isrc in ["GBNWR2500001", "USQZ92400500"] {
        let alone = f.verifier(&["check", isrc]).ok().stdout;
        writeln!(stdin, "{isrc}").unwrap();
        stdin.flush().unwrap();
        let line = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no answer to {isrc} while the pipe stayed open"));
        assert_eq!(format!("{line}\n"), alone);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

/// More rows than one answer block, in an order that jumps around the key
/// space, with repeats and lines that are not ISRCs: every row is answered,
/// in input order, exactly as the same ISRC asked alone.
#[test]
fn check_answers_an_input_longer_than_a_block_in_input_order() {
    let f = Fixture::synced();
    let isrcs = [
        "USQZ92400500",
        "GBNWR2500001",
        "not an isrc",
        "GBNWR2500017",
        "GB-NWR-25-00002",
        "ZZZZZ9900001",
        "gbnwr2500001",
    ];
    let alone: Vec<String> = isrcs
        .iter()
        .map(|i| {
            let out = f.verifier(&["check", i]).stdout;
            out.lines().next().unwrap().to_string()
        })
        .collect();
    let n = 300_000;
    let mut input = String::new();
    let mut want = Vec::with_capacity(n);
    for k in 0..n {
        let i = (k * 7 + k / 3) % isrcs.len();
        input.push_str(isrcs[i]);
        input.push('\n');
        want.push(i);
    }
    std::fs::write(f.path("many.txt"), &input).unwrap();
    let out = f.verifier(&["check", "--input", "many.txt"]).stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), n);
    for (k, (line, i)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(*line, alone[*i], "row {k}");
    }
}
