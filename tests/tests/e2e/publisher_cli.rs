//! The publisher's command line as people and pipelines meet it (issue 16):
//! `--json` schemas, `-q`, `-v`, help text, environment variables, gc
//! listings, root rotation re-runs, import from stdin and compressed files,
//! progress bars on a terminal only, refused values, completions and man
//! pages. Every test runs the real `consentry-publish` binary.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use consentry_tests::{Run, bin_dir, data, run_plain, run_with};

use super::fixture::{Backend, Fixture, T0, on_both_backends, walk};

/// The one JSON object a `--json` run printed, and the names of its fields.
#[track_caller]
fn one_object(run: &Run) -> (serde_json::Value, BTreeSet<String>) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "one line of JSON: {}",
        run.stdout
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let keys = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    (v, keys)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn every_command_prints_one_json_object_with_the_documented_fields() {
    let d = tempfile::tempdir().unwrap();
    let p = |args: &[&str]| consentry_tests::publish(args, d.path());
    let csv = data("declarations.csv");
    let csv = csv.to_str().unwrap();

    let (v, k) = one_object(&p(&["init", "--db", "reg.db", "--json"]));
    assert_eq!(k, set(&["db", "backend", "schema_version", "outcome"]));
    assert_eq!(v["db"], "reg.db");
    assert_eq!(
        (&v["backend"], &v["outcome"]),
        (&serde_json::json!("sqlite"), &serde_json::json!("created"))
    );

    let (v, k) = one_object(&p(&[
        "import",
        "--db",
        "reg.db",
        csv,
        "--recorded-at",
        T0,
        "--json",
    ]));
    assert_eq!(
        k,
        set(&[
            "added",
            "unchanged",
            "updated",
            "files",
            "rows",
            "inputs",
            "recorded_at"
        ])
    );
    assert_eq!(
        (v["added"].as_u64(), v["rows"].as_u64()),
        (Some(16), Some(16))
    );
    assert_eq!(v["recorded_at"], T0);

    let mut keyids = Vec::new();
    for role in ["root", "manifest", "head"] {
        let out = format!("keys/{role}-1");
        let (v, k) = one_object(&p(&["keygen", "--role", role, "--out", &out, "--json"]));
        assert_eq!(k, set(&["role", "keyid", "secret_key", "public_key"]));
        assert_eq!(v["role"], role);
        assert!(d.path().join(v["secret_key"].as_str().unwrap()).exists());
        assert!(d.path().join(v["public_key"].as_str().unwrap()).exists());
        keyids.push(v["keyid"].as_str().unwrap().to_string());
    }

    let root_fields = set(&[
        "kind",
        "version",
        "path",
        "sha256",
        "expires",
        "signatures",
        "roles",
    ]);
    let (v, k) = one_object(&p(&[
        "root", "init", "--keys", "keys", "--site", "site", "--now", T0, "--json",
    ]));
    assert_eq!(k, root_fields);
    assert_eq!((&v["kind"], &v["signatures"]), (&"root".into(), &1.into()));
    assert_eq!(v["version"], 1);
    assert_eq!(v["expires"], "2027-11-01T00:00:00Z");
    let root_bytes = std::fs::read(d.path().join("site/root/1.cbor")).unwrap();
    assert_eq!(
        v["sha256"],
        hex::encode(consentry::envelope::sha256(&root_bytes))
    );
    for (i, role) in ["root", "manifest", "head"].iter().enumerate() {
        assert_eq!(v["roles"][i]["role"], *role);
        assert_eq!(v["roles"][i]["threshold"], 1);
        assert_eq!(v["roles"][i]["keyids"][0], keyids[i].as_str());
    }

    let publish_fields = set(&[
        "version",
        "previous_version",
        "mode",
        "entries",
        "ranges",
        "upserts",
        "deletions",
        "files_written",
        "files_reused",
        "bytes_written",
        "manifest_sha256",
        "state_root",
        "expires",
        "head_expires",
        "written",
    ]);
    let (v, k) = one_object(&p(&[
        "publish", "--db", "reg.db", "--keys", "keys", "--site", "site", "--json",
    ]));
    assert_eq!(k, publish_fields);
    assert_eq!(
        (v["version"].as_u64(), v["mode"].as_str()),
        (Some(1), Some("first_base"))
    );
    assert!(v["previous_version"].is_null());
    let written = v["written"].as_array().unwrap();
    assert_eq!(written.len() as u64, v["files_written"].as_u64().unwrap());
    let mut bytes = 0;
    for w in written {
        let file = d.path().join("site").join(w["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            w["bytes"].as_u64().unwrap()
        );
        bytes += w["bytes"].as_u64().unwrap();
    }
    assert_eq!(bytes, v["bytes_written"].as_u64().unwrap());
    let manifest = v["manifest_sha256"].as_str().unwrap().to_string();
    // The verifier's name for the same thing agrees.
    consentry_tests::verifier(
        &["--store", "store", "init", "--root", "site/root/1.cbor"],
        d.path(),
    )
    .ok();
    let sync =
        consentry_tests::verifier(&["--store", "store", "--now", T0, "sync", "site"], d.path())
            .ok();
    assert!(sync.stdout.contains(&manifest), "{}", sync.stdout);

    // Nothing changed: the same schema, mode "unchanged".
    let (v, k) = one_object(&p(&[
        "publish", "--db", "reg.db", "--keys", "keys", "--site", "site", "--json",
    ]));
    assert_eq!(k, publish_fields);
    assert_eq!(v["mode"], "unchanged");
    assert_eq!(v["manifest_sha256"], manifest.as_str());

    let (v, k) = one_object(&p(&[
        "refresh", "--keys", "keys", "--site", "site", "--now", T0, "--json",
    ]));
    assert_eq!(
        k,
        set(&["version", "manifest_sha256", "head_version", "expires"])
    );
    assert_eq!(
        (v["version"].as_u64(), v["head_version"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(v["expires"], "2026-11-04T00:00:00Z");

    let (v, k) = one_object(&p(&[
        "bundle", "--site", "site", "--out", "b.tar", "--json",
    ]));
    assert_eq!(k, set(&["path", "files", "bytes", "version"]));
    assert_eq!(v["version"], 1);
    assert!(d.path().join("b.tar").exists());

    let (v, k) = one_object(&p(&["gc", "--site", "site", "--json"]));
    assert_eq!(
        k,
        set(&[
            "dry_run",
            "keep",
            "kept_manifests",
            "removed_files",
            "removed_bytes",
            "removed"
        ])
    );
    assert_eq!(
        (v["dry_run"].as_bool(), v["keep"].as_u64()),
        (Some(false), Some(2))
    );

    let (v, k) = one_object(&p(&[
        "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0, "--force", "--json",
    ]));
    assert_eq!(k, root_fields);
    assert_eq!(v["version"], 2);

    let (v, k) = one_object(&p(&["init", "--db", "gen.db", "--json"]));
    assert_eq!(k, set(&["db", "backend", "schema_version", "outcome"]));
    drop(v);
    let (v, k) = one_object(&p(&[
        "generate",
        "--db",
        "gen.db",
        "--records",
        "500",
        "--recorded-at",
        T0,
        "--json",
    ]));
    assert_eq!(
        k,
        set(&[
            "declarations",
            "prefixes",
            "supersessions",
            "artists",
            "first_seq",
            "last_seq"
        ])
    );
    assert_eq!(v["first_seq"], 1);
    assert_eq!(
        v["last_seq"].as_u64().unwrap(),
        v["declarations"].as_u64().unwrap()
    );
    let (v, k) = one_object(&p(&[
        "generate",
        "--db",
        "gen.db",
        "--churn",
        "0.01",
        "--recorded-at",
        T0,
        "--json",
    ]));
    assert_eq!(k, set(&["churn", "releases", "changes", "revocations"]));
    assert_eq!(v["churn"], 0.01);

    let (v, k) = one_object(&p(&["man", "--out", "man", "--json"]));
    assert_eq!(k, set(&["dir", "pages"]));
    assert!(v["pages"].as_array().unwrap().len() > 10);

    // The walkthrough has no machine output, and says so.
    let demo = p(&["demo", "demo-dir", "--json"]).expect_code(2);
    assert!(demo.stdout.is_empty());
    assert!(demo.stderr.contains("hint:"), "{}", demo.stderr);
    assert!(!d.path().join("demo-dir").exists());
}

/// A registry with real (not INSECURE) keys, so that nothing needs a
/// warning-printing override, run without the test harness's flags.
fn real_keys_site(d: &Path, quiet: &[&str]) -> Vec<Run> {
    let p = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(quiet);
        run_plain("consentry-publish", &all, d)
    };
    let csv = data("declarations.csv");
    let mut runs = vec![
        p(&["init", "--db", "reg.db"]),
        p(&["import", "--db", "reg.db", csv.to_str().unwrap()]),
    ];
    for role in ["root", "manifest", "head"] {
        runs.push(p(&[
            "keygen",
            "--role",
            role,
            "--out",
            &format!("keys/{role}-1"),
        ]));
    }
    runs.extend([
        p(&["root", "init", "--keys", "keys", "--site", "site"]),
        p(&[
            "publish", "--db", "reg.db", "--keys", "keys", "--site", "site",
        ]),
        p(&["refresh", "--keys", "keys", "--site", "site"]),
        p(&["gc", "--site", "site"]),
        p(&["gc", "--site", "site", "--dry-run"]),
        p(&["bundle", "--site", "site", "--out", "b.tar"]),
        p(&["init", "--db", "gen.db"]),
        p(&["generate", "--db", "gen.db", "--records", "300"]),
    ]);
    runs
}

#[test]
fn quiet_publish_prints_nothing() {
    let d = tempfile::tempdir().unwrap();
    for run in real_keys_site(d.path(), &["-q"]) {
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout, "", "{run:?}");
        assert_eq!(run.stderr, "", "{run:?}");
    }
    // It did the work: the site verifies.
    assert!(d.path().join("site/head.cbor").exists());
    assert!(d.path().join("b.tar").exists());
    // And without -q, the same commands talk.
    let d = tempfile::tempdir().unwrap();
    let runs = real_keys_site(d.path(), &[]);
    assert!(
        runs.iter().all(|r| r.code == 0 && !r.stdout.is_empty()),
        "{runs:?}"
    );
}

#[test]
fn verbose_publish_lists_each_file_written() {
    let f = Fixture::unpublished();
    let quiet = f.publish_next(&[]).ok();
    assert!(!quiet.stdout.contains("wrote"), "{}", quiet.stdout);
    f.publish_change(17, &[]);
    let files_before = f.site_files();
    f.import_rows(
        "more.csv",
        "D18,18,declare,,GBNWR2600018,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-01T05:00:00Z,active\n",
        "2026-11-01T05:00:00Z",
    )
    .ok();
    let run = f.publish_next(&["-v"]).ok();
    let wrote: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("wrote"))
        .map(|l| l.trim().split(' ').next().unwrap())
        .collect();
    let after = f.site_files();
    let new: Vec<&String> = after
        .keys()
        .filter(|k| files_before.get(*k) != after.get(*k))
        .collect();
    assert!(wrote.len() >= 3, "{}", run.stdout);
    for w in &wrote {
        assert!(after.contains_key(*w), "{w} listed but not in the site");
    }
    for n in new {
        assert!(
            wrote.contains(&n.as_str()),
            "{n} written but not listed:\n{}",
            run.stdout
        );
    }
    assert_eq!(wrote.last(), Some(&"head.cbor"));
}

/// The option and argument lines of `--help` text that carry no description
/// (neither after the flag on the same line nor on the next line).
fn undocumented(help: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let is_flag = t.starts_with("--")
            || (t.starts_with('-') && t.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()));
        if !(is_flag || (t.starts_with('<') && line.starts_with("  "))) {
            continue;
        }
        let same_line = t.find("  ").is_some_and(|j| !t[j..].trim().is_empty());
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if !same_line && (next.is_empty() || next.starts_with('-')) {
            bad.push((*line).to_string());
        }
    }
    bad
}

/// Every command's path (`" root init"`) into `names`, every argument
/// without help into `missing`.
fn walk_commands(
    cmd: &clap::Command,
    path: &str,
    missing: &mut Vec<String>,
    names: &mut Vec<String>,
) {
    names.push(path.to_string());
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if a.get_help().is_none() && a.get_long_help().is_none() {
            missing.push(format!("{path} {id}"));
        }
    }
    for s in cmd.get_subcommands() {
        walk_commands(s, &format!("{path} {}", s.get_name()), missing, names);
    }
}

#[test]
fn every_publisher_flag_has_help() {
    use clap::CommandFactory;
    let d = tempfile::tempdir().unwrap();
    // Through clap's model: every argument of every command has help text.
    let (mut missing, mut names) = (Vec::new(), Vec::new());
    let cmd = consentry_publish::cli::Cli::command();
    walk_commands(&cmd, "", &mut missing, &mut names);
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
    // Through the binary: the printed help of every command.
    for name in &names {
        let mut args: Vec<&str> = name.split_whitespace().collect();
        if args.first() == Some(&"help") {
            continue;
        }
        args.push("--help");
        let run = run_plain("consentry-publish", &args, d.path()).ok();
        let bad = undocumented(&run.stdout);
        assert!(bad.is_empty(), "`{name} --help`: {bad:?}\n{}", run.stdout);
    }
    let help = |args: &[&str]| run_plain("consentry-publish", args, d.path()).ok().stdout;
    let publish = help(&["publish", "--help"]);
    for env in ["CONSENTRY_DB", "CONSENTRY_KEYS", "CONSENTRY_SITE"] {
        assert!(
            publish.contains(&format!("[env: {env}=")),
            "{env}\n{publish}"
        );
    }
    for said in [
        "RFC 3339",
        "YYYY-MM-DD",
        "registry",
        "clock",
        "--json",
        "--quiet",
        "--verbose",
    ] {
        assert!(publish.contains(said), "{said}\n{publish}");
    }
    let keygen = help(&["keygen", "-h"]);
    assert!(
        keygen.contains("[possible values: root, manifest, head]"),
        "{keygen}"
    );
    let import = help(&["import", "-h"]);
    assert!(import.contains("[possible values: csv, jsonl]"), "{import}");
    let rotate = help(&["root", "rotate", "--help"]);
    assert!(!rotate.contains("init only"), "{rotate}");
    assert!(rotate.contains("same keys"), "{rotate}");
    let init = help(&["root", "init", "--help"]);
    assert!(init.contains("Replace an existing root/1.cbor"), "{init}");
    for (args, env) in [
        (&["refresh", "--help"][..], "CONSENTRY_SITE"),
        (&["gc", "--help"][..], "CONSENTRY_SITE"),
        (&["bundle", "--help"][..], "CONSENTRY_SITE"),
        (&["import", "--help"][..], "CONSENTRY_DB"),
        (&["generate", "--help"][..], "CONSENTRY_DB"),
        (&["init", "--help"][..], "CONSENTRY_DB"),
        (&["root", "init", "--help"][..], "CONSENTRY_KEYS"),
    ] {
        assert!(help(args).contains(&format!("[env: {env}=")), "{args:?}");
    }
}

#[test]
fn env_vars_stand_in_for_db_keys_and_site() {
    let f = Fixture::unpublished();
    let env = [
        ("CONSENTRY_DB", "reg.db"),
        ("CONSENTRY_KEYS", "keys"),
        ("CONSENTRY_SITE", "site"),
    ];
    let run = run_with(
        "consentry-publish",
        &["publish", "--json"],
        f.root(),
        b"",
        &env,
    );
    let (v, _) = one_object(&run);
    assert_eq!(v["version"], 1);
    let run = run_with(
        "consentry-publish",
        &["gc", "--dry-run"],
        f.root(),
        b"",
        &env[2..],
    )
    .ok();
    assert!(
        run.stdout.contains("would remove 0 file(s)"),
        "{}",
        run.stdout
    );
    // A flag wins over the variable.
    let run = run_with(
        "consentry-publish",
        &["gc", "--site", "nowhere"],
        f.root(),
        b"",
        &env[2..],
    )
    .expect_code(2);
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
    // Without either, clap names the flag and the variable.
    let run = run_plain("consentry-publish", &["gc"], f.root()).expect_code(2);
    assert!(run.stderr.contains("--site"), "{}", run.stderr);
}

/// A site with three versions (a delta, then a compaction), so that
/// `--keep 1` leaves garbage.
fn site_with_garbage() -> Fixture {
    let f = Fixture::published();
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    f
}

/// The `path`s a gc run listed, from its JSON.
fn listed(run: &Run) -> BTreeSet<String> {
    let (v, _) = one_object(run);
    v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn gc_dry_run_lists_and_removes_nothing() {
    let f = site_with_garbage();
    let before = f.site_files();
    let text = f
        .publish(&["gc", "--site", "site", "--keep", "1", "--dry-run"])
        .ok();
    assert_eq!(f.site_files(), before, "a dry run removed files");
    let would: BTreeSet<String> = text
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("would remove "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(would.len() >= 4, "{}", text.stdout);
    assert!(
        text.stdout.contains("nothing was removed"),
        "{}",
        text.stdout
    );
    for w in &would {
        assert!(before.contains_key(w), "{w}");
        assert!(!w.starts_with("root/") && w != "head.cbor", "{w}");
    }
    assert!(would.contains("manifest/1.") || would.iter().any(|w| w.starts_with("manifest/1.")));
    let json = f
        .publish(&["gc", "--site", "site", "--keep", "1", "--dry-run", "--json"])
        .ok();
    assert_eq!(listed(&json), would);
    assert_eq!(f.site_files(), before);
}

#[test]
fn gc_lists_what_it_removed() {
    let f = site_with_garbage();
    let dry = listed(
        &f.publish(&["gc", "--site", "site", "--keep", "1", "--dry-run", "--json"])
            .ok(),
    );
    let before = f.site_files();
    let run = f.publish(&["gc", "--site", "site", "--keep", "1"]).ok();
    let removed: BTreeSet<String> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("removed "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(removed, dry, "{}", run.stdout);
    let after = f.site_files();
    let gone: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(gone, removed);
    // What is left still syncs and verifies.
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    f.verifier(&["verify"]).ok();
    // A second run finds nothing, and says so in JSON too.
    let again = f
        .publish(&["gc", "--site", "site", "--keep", "1", "--json"])
        .ok();
    assert!(listed(&again).is_empty());
}

#[test]
fn root_rotate_rerun_with_the_same_keys_is_refused_without_force() {
    let f = Fixture::published();
    let rotate = |extra: &[&str]| {
        let mut args = vec![
            "root", "rotate", "--keys", "keys", "--site", "site", "--now", T0,
        ];
        args.extend_from_slice(extra);
        f.publish(&args)
    };
    let before = f.site_files();
    let run = rotate(&[]).expect_code(2);
    assert!(
        run.stderr.contains("error: nothing to rotate"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint:") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(f.site_files(), before);
    // Re-issuing the same keys is possible, on purpose.
    rotate(&["--force", "--expires-in", "3650d"]).ok();
    assert!(f.path("site/root/2.cbor").exists());
    // And a re-run of that is refused again.
    rotate(&[]).expect_code(2);
    assert!(!f.path("site/root/3.cbor").exists());
    // A real rotation (a new head key) needs no --force.
    consentry_publish::keys::write_keypair(
        &f.path("keys/INSECURE-head-2"),
        consentry::docs::Role::Head,
        consentry_publish::keys::insecure_seed(consentry::docs::Role::Head, 2),
        false,
    )
    .unwrap();
    rotate(&[]).ok();
    assert!(f.path("site/root/3.cbor").exists());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Import into a new database; the JSON report.
fn import_into(dir: &Path, db: &str, args: &[&str], stdin: &[u8]) -> Run {
    consentry_tests::publish(&["init", "--db", db], dir).ok();
    let mut all = vec!["import", "--db", db, "--recorded-at", T0, "--json"];
    all.extend_from_slice(args);
    run_with("consentry-publish", &all, dir, stdin, &[])
}

on_both_backends!(
    import_reads_gzip_zstd_and_stdin,
    import_problems_name_file_line_and_field_in_compressed_and_stdin_input,
);

/// `name` (a SQLite file name) on backend `b`: the file, or a fresh
/// PostgreSQL database.
fn db_on(b: Backend, name: &str) -> String {
    match b {
        Backend::Sqlite => name.to_string(),
        Backend::Postgres => b.new_db(name).unwrap(),
    }
}

fn import_reads_gzip_zstd_and_stdin(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let csv = std::fs::read(data("declarations.csv")).unwrap();
    let jsonl = std::fs::read(data("declarations.jsonl")).unwrap();
    std::fs::write(d.path().join("decl.csv.gz"), gzip(&csv)).unwrap();
    std::fs::write(
        d.path().join("decl.jsonl.zst"),
        zstd::encode_all(&jsonl[..], 3).unwrap(),
    )
    .unwrap();
    std::fs::write(d.path().join("decl.data"), &jsonl).unwrap();
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        ("gz.db", vec!["decl.csv.gz"], Vec::new()),
        ("zst.db", vec!["decl.jsonl.zst"], Vec::new()),
        ("stdin-csv.db", vec!["-"], csv.clone()),
        ("stdin-jsonl.db", vec!["-"], jsonl.clone()),
        ("stdin-format.db", vec!["-", "--format", "csv"], csv.clone()),
        ("stdin-gz.db", vec!["-"], gzip(&jsonl)),
        (
            "stdin-zst.db",
            vec!["-"],
            zstd::encode_all(&csv[..], 3).unwrap(),
        ),
        (
            "named.db",
            vec!["decl.data", "--format", "jsonl"],
            Vec::new(),
        ),
    ];
    let mut dumps = Vec::new();
    for (n, (db, args, stdin)) in cases.iter().enumerate() {
        let db = &db_on(b, db);
        let (v, _) = one_object(&import_into(d.path(), db, args, stdin));
        assert_eq!(v["added"], 16, "{db}: {v}");
        let names = if args[0] == "-" { "<stdin>" } else { args[0] };
        assert_eq!(v["inputs"][0], names);
        // The same registry whatever the packaging: the same published bytes.
        let site = format!("site-{n}");
        consentry_publish::keys::write_insecure_keys(&d.path().join("keys"), true).unwrap();
        consentry_tests::publish(
            &[
                "root", "init", "--keys", "keys", "--site", &site, "--now", T0,
            ],
            d.path(),
        )
        .ok();
        consentry_tests::publish(
            &["publish", "--db", db, "--keys", "keys", "--site", &site],
            d.path(),
        )
        .ok();
        dumps.push(std::fs::read(d.path().join(&site).join("head.cbor")).unwrap());
    }
    assert!(dumps.windows(2).all(|w| w[0] == w[1]));
}

fn import_problems_name_file_line_and_field_in_compressed_and_stdin_input(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let csv = String::from_utf8(std::fs::read(data("declarations.csv")).unwrap()).unwrap();
    // Line 3 gets a scope that is no ISRC.
    let bad: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                l.replacen("GBNWR2500017", "NOT-AN-ISRC", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(bad, csv.trim_end());
    std::fs::write(d.path().join("bad.csv.gz"), gzip(bad.as_bytes())).unwrap();
    std::fs::write(
        d.path().join("bad.csv.zst"),
        zstd::encode_all(bad.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    for (db, args, stdin, want) in [
        (
            "a.db",
            vec!["bad.csv.gz"],
            Vec::new(),
            "bad.csv.gz:3:scope: ",
        ),
        (
            "b.db",
            vec!["bad.csv.zst"],
            Vec::new(),
            "bad.csv.zst:3:scope: ",
        ),
        (
            "c.db",
            vec!["-"],
            bad.clone().into_bytes(),
            "<stdin>:3:scope: ",
        ),
        ("d.db", vec!["-"], gzip(bad.as_bytes()), "<stdin>:3:scope: "),
    ] {
        let run = import_into(d.path(), &db_on(b, db), &args, &stdin).expect_code(2);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(run.stderr.contains(want), "{want}\n{}", run.stderr);
        assert!(
            run.stderr.contains("nothing was imported"),
            "{}",
            run.stderr
        );
    }
    // Input that says nothing about its format, and a broken archive.
    let run = import_into(d.path(), &db_on(b, "e.db"), &["-"], b"x,y\n1,2\n").expect_code(2);
    assert!(
        run.stderr.contains("<stdin>: cannot tell CSV from JSONL"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--format csv"), "{}", run.stderr);
    std::fs::write(d.path().join("broken.csv.gz"), b"this is not gzip").unwrap();
    let run = import_into(d.path(), &db_on(b, "f.db"), &["broken.csv.gz"], b"").expect_code(2);
    assert!(
        run.stderr
            .contains("broken.csv.gz: cannot be read (gzip data)"),
        "{}",
        run.stderr
    );
    let mut truncated = zstd::encode_all(csv.as_bytes(), 3).unwrap();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(d.path().join("cut.csv.zst"), truncated).unwrap();
    let run = import_into(d.path(), &db_on(b, "g.db"), &["cut.csv.zst"], b"").expect_code(2);
    assert!(run.stderr.contains("cut.csv.zst"), "{}", run.stderr);
    assert!(run.stderr.contains("zstd"), "{}", run.stderr);
    let run = import_into(d.path(), &db_on(b, "h.db"), &["-", "-"], b"").expect_code(2);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

/// Run `args` under a pseudo-terminal (util-linux `script`); everything the
/// terminal showed.
fn on_a_terminal(dir: &Path, args: &[&str]) -> String {
    let bin = bin_dir().join("consentry-publish");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = quote(bin.to_str().unwrap());
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `script` runs commands under a pseudo-terminal; install util-linux");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}: {text}");
    text
}

#[test]
fn progress_bars_appear_on_a_terminal_only() {
    let d = tempfile::tempdir().unwrap();
    consentry_tests::publish(&["init", "--db", "a.db"], d.path()).ok();
    let shown = on_a_terminal(
        d.path(),
        &[
            "generate",
            "--db",
            "a.db",
            "--records",
            "3000",
            "--recorded-at",
            T0,
        ],
    );
    assert!(shown.contains("generating declarations"), "{shown}");
    assert!(
        shown.contains("/3000") || shown.contains("/3,000"),
        "{shown}"
    );
    assert!(shown.contains('%'), "{shown}");
    assert!(shown.contains("generated "), "{shown}");
    // -q on a terminal: nothing at all.
    consentry_tests::publish(&["init", "--db", "b.db"], d.path()).ok();
    let quiet = on_a_terminal(
        d.path(),
        &[
            "generate",
            "--db",
            "b.db",
            "--records",
            "3000",
            "--recorded-at",
            T0,
            "-q",
        ],
    );
    assert_eq!(quiet.trim(), "", "{quiet}");
    // stderr piped: no bar, the summary alone on stdout.
    consentry_tests::publish(&["init", "--db", "c.db"], d.path()).ok();
    let piped = consentry_tests::publish(
        &[
            "generate",
            "--db",
            "c.db",
            "--records",
            "3000",
            "--recorded-at",
            T0,
        ],
        d.path(),
    )
    .ok();
    assert_eq!(piped.stderr, "");
    assert!(!piped.stdout.contains('%'), "{}", piped.stdout);
    // publish and import draw theirs on a terminal too.
    consentry_publish::keys::write_insecure_keys(&d.path().join("keys"), false).unwrap();
    consentry_tests::publish(
        &[
            "root", "init", "--keys", "keys", "--site", "site", "--now", T0,
        ],
        d.path(),
    )
    .ok();
    let shown = on_a_terminal(
        d.path(),
        &[
            "publish",
            "--db",
            "a.db",
            "--keys",
            "keys",
            "--site",
            "site",
            "--now",
            "registry",
            "--allow-short-expiry",
            "--insecure-test-keys",
        ],
    );
    assert!(shown.contains("writing files"), "{shown}");
    consentry_tests::publish(&["init", "--db", "i.db"], d.path()).ok();
    let csv = data("declarations.csv");
    let shown = on_a_terminal(
        d.path(),
        &[
            "import",
            "--db",
            "i.db",
            csv.to_str().unwrap(),
            "--recorded-at",
            T0,
        ],
    );
    assert!(shown.contains("reading"), "{shown}");
    assert!(shown.contains("imported 16 declarations"), "{shown}");
}

#[test]
fn zero_counts_and_overlong_durations_are_refused_in_plain_words() {
    let f = Fixture::published();
    let before = walk(&f.path("site"));
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "publish",
                "--db",
                "reg.db",
                "--keys",
                "keys",
                "--site",
                "site",
                "--shard-rows",
                "0",
            ],
            "at least 1 entry",
        ),
        (&["gc", "--site", "site", "--keep", "0"], "--keep"),
        (
            &["generate", "--db", "reg.db", "--records", "0"],
            "--records",
        ),
        (&["generate", "--db", "reg.db", "--churn", "0"], "fraction"),
        (
            &[
                "root",
                "rotate",
                "--keys",
                "keys",
                "--site",
                "site",
                "--threshold",
                "root=0",
            ],
            "at least 1",
        ),
        (
            &[
                "root",
                "rotate",
                "--keys",
                "keys",
                "--site",
                "site",
                "--threshold",
                "admin=1",
            ],
            "root, manifest or head",
        ),
        (
            &[
                "root",
                "rotate",
                "--keys",
                "keys",
                "--site",
                "site",
                "--expires-in",
                "99999999999999d",
            ],
            "longer than 100 years",
        ),
        (
            &[
                "root",
                "init",
                "--keys",
                "keys",
                "--site",
                "other",
                "--expires-in",
                "36526d",
            ],
            "longer than 100 years",
        ),
        (
            &[
                "refresh",
                "--keys",
                "keys",
                "--site",
                "site",
                "--head-ttl",
                "0h",
            ],
            "no lifetime",
        ),
        (
            &[
                "publish",
                "--db",
                "reg.db",
                "--keys",
                "keys",
                "--site",
                "site",
                "--manifest-ttl",
                "5y",
            ],
            "unknown unit `y`",
        ),
        (
            &[
                "refresh",
                "--keys",
                "keys",
                "--site",
                "site",
                "--now",
                "yesterday",
            ],
            "RFC 3339",
        ),
        (
            &["keygen", "--role", "admin", "--out", "k/x"],
            "root, manifest, head",
        ),
    ];
    for (args, want) in cases {
        let run = f.publish(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(want),
            "{args:?}: {want}\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        for debug in ["Some(", "Err(", "Ok(", "\\\"", "{ "] {
            assert!(
                !run.stderr.contains(debug),
                "{args:?} leaks Debug text: {}",
                run.stderr
            );
        }
    }
    assert_eq!(walk(&f.path("site")), before);
    assert!(!f.path("other").exists());
    assert!(!f.path("k").exists());
    // 100 years exactly is accepted.
    f.publish(&[
        "root",
        "init",
        "--keys",
        "keys",
        "--site",
        "other",
        "--now",
        T0,
        "--expires-in",
        "36525d",
    ])
    .ok();
}

#[test]
fn completions_and_man_pages_are_generated() {
    let d = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = run_plain("consentry-publish", &["completions", shell], d.path()).ok();
        assert!(run.stdout.contains("consentry-publish"), "{shell}");
        for word in ["publish", "rotate", "dry-run", "shard-rows"] {
            assert!(run.stdout.contains(word), "{shell}: {word}");
        }
        assert_eq!(run.stderr, "");
    }
    let run = run_plain("consentry-publish", &["completions", "tcsh"], d.path()).expect_code(2);
    assert!(run.stderr.contains("bash"), "{}", run.stderr);
    // bash accepts the script.
    let bash = run_plain("consentry-publish", &["completions", "bash"], d.path()).ok();
    std::fs::write(d.path().join("c.bash"), &bash.stdout).unwrap();
    let ok = std::process::Command::new("bash")
        .args(["-n", "c.bash"])
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(ok.success());

    let page = run_plain("consentry-publish", &["man"], d.path()).ok();
    assert!(
        page.stdout.starts_with(".ie") || page.stdout.contains(".TH"),
        "{}",
        page.stdout
    );
    let run = run_plain("consentry-publish", &["man", "--out", "man"], d.path()).ok();
    assert!(run.stdout.contains("man pages into"), "{}", run.stdout);
    for page in [
        "consentry-publish.1",
        "consentry-publish-publish.1",
        "consentry-publish-import.1",
        "consentry-publish-gc.1",
        "consentry-publish-root.1",
        "consentry-publish-root-init.1",
        "consentry-publish-root-rotate.1",
        "consentry-publish-completions.1",
    ] {
        let text = std::fs::read_to_string(d.path().join("man").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let gc = std::fs::read_to_string(d.path().join("man/consentry-publish-gc.1")).unwrap();
    assert!(gc.contains("dry"), "{gc}");
}
