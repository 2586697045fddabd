//! Operated as users operate it (issue 12): read-only and full stores,
//! clocks that differ, publisher commands overlapping from cron, processes
//! killed mid-write, output piped into `head`, a store served as a mirror,
//! and the README tour and the demo's suggestions run exactly as printed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use consentry::docs::paths;
use consentry_tests::attack::assert_refused;
use consentry_tests::tamper::{Site, copy_dir};
use consentry_tests::{bin_dir, data, run_plain};

use super::fixture::{EARLIER, Fixture, LATER, NOW, RUN_LIMIT, T0, walk};

/// Every file under `dir`: relative path → (bytes, mtime).
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if md.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), md.modified().unwrap()));
                stack.push(p);
            } else {
                out.insert(rel, (std::fs::read(&p).unwrap(), md.modified().unwrap()));
            }
        }
    }
    out
}

/// Whether this machine lets us make a private mount namespace (root in a
/// sandbox that allows it). Where it does not, the tests that need one say
/// so on stderr and check what they can without it.
fn can_unshare_mounts() -> bool {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `script` with `sh -e` in a private mount namespace, in `cwd`, with
/// `$C` the verifier binary.
fn in_mount_namespace(script: &str, cwd: &Path) -> consentry_tests::Run {
    let c = bin_dir().join("consentry");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec", script])
        .current_dir(cwd)
        .env("C", c)
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .env_remove("CONSENTRY_DB")
        .env_remove("CONSENTRY_KEYS")
        .env_remove("CONSENTRY_SITE")
        .output()
        .unwrap();
    consentry_tests::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---- item 1, 12: reads never write -------------------------------------------------

#[test]
fn check_status_verify_and_receipts_on_a_read_only_store_answer_and_write_nothing() {
    let f = Fixture::synced();
    let before = f.answers();
    if !can_unshare_mounts() {
        eprintln!("SKIPPED: no private mount namespace here (unshare -m refused)");
        return;
    }
    let lookups = data("lookups.csv");
    let files = snapshot(&f.path("store"));
    // Make sure the clocks cannot hide a rewrite that keeps the same bytes.
    std::thread::sleep(Duration::from_millis(20));
    let script = format!(
        r#"mount --bind store store
mount -o remount,bind,ro store
if touch store/probe 2>/dev/null; then echo "store is writable" >&2; exit 99; fi
mkdir -p out
"$C" --store store --now {NOW} check --input {lookups} --csv > out/check.csv
"$C" --store store --now {NOW} status > out/status.txt
"$C" --store store --now {NOW} status --json > out/status.json
"$C" --store store --now {NOW} verify > out/verify.txt
"$C" --store store --now {NOW} check GBNWR2500017 --receipt out/one.receipt.cbor > /dev/null
"$C" --store store receipt verify out/one.receipt.cbor > out/receipt.txt
"$C" --store store --now {NOW} check GBNWR2500017 --as-of {NOW} > /dev/null
"#,
        lookups = lookups.display()
    );
    let run = in_mount_namespace(&script, f.root());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(f.path("out/check.csv")).unwrap(),
        before
    );
    assert!(
        std::fs::read_to_string(f.path("out/verify.txt"))
            .unwrap()
            .contains("index intact")
    );
    assert!(
        std::fs::read_to_string(f.path("out/receipt.txt"))
            .unwrap()
            .contains("valid")
    );
    assert_eq!(
        snapshot(&f.path("store")),
        files,
        "a read-only command wrote"
    );

    // Without its index, a read-only store still answers (from a temporary
    // index, with a warning) and `verify` reports the index, exit 1.
    let idx = std::fs::read_dir(f.path("store/local/index"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(&idx).unwrap();
    let files = snapshot(&f.path("store"));
    let script = format!(
        r#"mount --bind store store
mount -o remount,bind,ro store
"$C" --store store --now {NOW} check --input {lookups} --csv > out/check2.csv 2> out/check2.err
set +e
"$C" --store store --now {NOW} verify > out/verify2.txt
echo $? > out/verify2.code
"#,
        lookups = lookups.display()
    );
    let run = in_mount_namespace(&script, f.root());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(f.path("out/check2.csv")).unwrap(),
        before
    );
    let err = std::fs::read_to_string(f.path("out/check2.err")).unwrap();
    assert!(
        err.contains("is missing") && err.contains("verify --repair"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("out/verify2.code"))
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(snapshot(&f.path("store")), files);
}

#[test]
fn lookups_answer_from_a_store_whose_filesystem_is_full() {
    let f = Fixture::synced();
    let before = f.answers();
    if !can_unshare_mounts() {
        eprintln!("SKIPPED: no private mount namespace here (unshare -m refused)");
        return;
    }
    let lookups = data("lookups.csv");
    // A 2 MiB tmpfs holding a copy of the store, then filled to the last byte.
    let script = format!(
        r#"mkdir -p full out
mount -t tmpfs -o size=2m tmpfs full
cp -a store full/store
dd if=/dev/zero of=full/filler bs=4k 2>/dev/null || true
if echo x > full/probe 2>/dev/null; then echo "the filesystem is not full" >&2; exit 99; fi
"$C" --store full/store --now {NOW} check --input {lookups} --csv > out/full.csv
"$C" --store full/store --now {NOW} status > /dev/null
"$C" --store full/store --now {NOW} verify > /dev/null
"#,
        lookups = lookups.display()
    );
    let run = in_mount_namespace(&script, f.root());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(f.path("out/full.csv")).unwrap(),
        before
    );
}

// ---- item 2: the clock floor is a signed time -------------------------------------

#[test]
fn a_mistaken_future_now_is_not_remembered() {
    let f = Fixture::synced();
    let before = f.answers();
    // Someone runs with a wrong, later time (here: past the head's expiry).
    assert_refused(&f.answers_at(LATER, &[]), "expired");
    f.answers_at(LATER, &["--allow-expired"]).ok();
    f.verifier_at("2027-06-01", &["status"]).ok();
    // The right time works again at once: nothing was recorded.
    assert_eq!(f.answers(), before);
    f.verifier(&["sync", "site"]).ok();
    assert!(!f.path("store/local/clock.json").exists());
}

#[test]
fn status_reports_a_clock_behind_the_snapshot_and_never_fails() {
    let f = Fixture::synced();
    let run = f.verifier_at(EARLIER, &["status"]).ok();
    assert!(run.stdout.contains("clock        WRONG"), "{}", run.stdout);
    let json = f.verifier_at(EARLIER, &["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        v["clock_problem"].as_str().unwrap().contains("behind"),
        "{v}"
    );
    let ok = f.verifier(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    assert!(v["clock_problem"].is_null(), "{v}");
}

#[test]
fn a_clock_seconds_behind_the_publisher_is_tolerated() {
    // The fixture's snapshot is signed as created at T0; this machine's
    // clock reads five seconds earlier.
    let f = Fixture::published();
    let behind = "2026-10-31T23:59:55Z";
    f.verifier_at(behind, &["init", "--root", "site/root/1.cbor"])
        .ok();
    f.verifier_at(behind, &["sync", "site"]).ok();
    f.verifier_at(behind, &["check", "GBNWR2500017"]).ok();
    // A store synced elsewhere and copied here behaves the same.
    copy_dir(&f.path("store"), &f.path("copied"));
    let run = consentry_tests::run_bounded(
        "consentry",
        &[
            "--store",
            "copied",
            "--now",
            behind,
            "check",
            "GBNWR2500017",
        ],
        f.root(),
        RUN_LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Beyond the tolerance it is refused, with advice.
    let run = f.verifier_at(EARLIER, &["check", "GBNWR2500017"]);
    assert_refused(&run, "clock_backwards");
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

// ---- item 3: one writer per site ---------------------------------------------------

#[test]
fn publish_refresh_and_gc_in_parallel_never_move_a_syncing_store_backwards() {
    let f = Fixture::synced();
    let root = f.root().to_path_buf();
    let publish =
        |args: &[&str]| consentry_tests::run_bounded("consentry-publish", args, &root, RUN_LIMIT);
    let verify_at = |args: &[&str]| {
        let mut a = vec!["--store", "store", "--now", NOW];
        a.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &a, &root, RUN_LIMIT)
    };
    let head_versions = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..20 {
                publish(&["refresh", "--keys", "keys", "--site", "site", "--now", NOW]).ok();
            }
        });
        s.spawn(|| {
            for n in 17..23 {
                f.publish_change(n, if n == 20 { &["--compact"] } else { &[] });
            }
        });
        s.spawn(|| {
            for _ in 0..6 {
                publish(&["gc", "--site", "site", "--keep", "3"]).ok();
            }
        });
        s.spawn(|| {
            for _ in 0..25 {
                let run = verify_at(&["sync", "site"]);
                // A sync racing a gc may find a file gone (`not_found`: retry
                // later); it must never see a version go backwards.
                if run.code != 0 {
                    assert!(
                        run.stderr.contains("[not_found]"),
                        "sync failed:\n{}",
                        run.stderr
                    );
                    continue;
                }
                let v: u64 = run
                    .stdout
                    .split("head version ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("no head version in {}", run.stdout));
                head_versions.lock().unwrap().push(v);
            }
        });
    });
    let seen = head_versions.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "head versions: {seen:?}"
    );
    // The final state verifies from a fresh store and from the synced one.
    f.verifier(&["sync", "site"]).ok();
    f.verifier(&["verify"]).ok();
    let fresh = |args: &[&str]| {
        let mut a = vec!["--store", "fresh", "--now", NOW];
        a.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &a, &root, RUN_LIMIT)
    };
    fresh(&["init", "--root", "site/root/1.cbor"]).ok();
    fresh(&["sync", "site"]).ok();
    fresh(&["verify"]).ok();
    let head = Site::new(&f.path("site")).head();
    // 1 publish + 20 refreshes + 6 publishes: every head version was used once.
    assert_eq!(head.version, 27, "head versions were lost or reused");
    assert_eq!(head.manifest.version, 7);
}

// ---- item 4: nothing signed already expired ---------------------------------------

/// `consentry-publish ARGS` exactly as given (no test overrides).
fn publish_plain(f: &Fixture, args: &[&str]) -> consentry_tests::Run {
    run_plain("consentry-publish", args, f.root())
}

#[test]
fn publishing_an_already_expired_snapshot_is_refused_and_writes_nothing() {
    let f = Fixture::published();
    f.publish_change(17, &[]);
    let site = walk(&f.path("site"));
    f.import_rows(
        "late.csv",
        "D90,90,declare,,GBNWR2600090,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-02T00:00:00Z,active\n",
        "2026-11-02T00:00:00Z",
    )
    .ok();
    // The registry's own time (after a quiet weekend: long past).
    for now in ["registry", T0] {
        let run = publish_plain(
            &f,
            &[
                "publish",
                "--db",
                "reg.db",
                "--keys",
                "keys",
                "--site",
                "site",
                "--now",
                now,
                "--insecure-test-keys",
            ],
        );
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("refusing to sign"), "{}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
        assert_eq!(walk(&f.path("site")), site, "--now {now}: the site changed");
    }
    // The default is the wall clock: accepted, and signed as created now.
    publish_plain(
        &f,
        &[
            "publish",
            "--db",
            "reg.db",
            "--keys",
            "keys",
            "--site",
            "site",
            "--insecure-test-keys",
        ],
    )
    .ok();
    let (m, _) = Site::new(&f.path("site")).manifest();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        m.created + 600 > wall && m.created <= wall,
        "created {}",
        m.created
    );
}

#[test]
fn refreshing_a_head_over_an_expired_manifest_is_refused() {
    let f = Fixture::published();
    let before = std::fs::read(f.path("site/head.cbor")).unwrap();
    // The manifest was signed at T0 for 30 days; the wall clock is later.
    let run = publish_plain(
        &f,
        &[
            "refresh",
            "--keys",
            "keys",
            "--site",
            "site",
            "--insecure-test-keys",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("manifest"), "{}", run.stderr);
    assert!(
        run.stderr.contains("consentry-publish publish"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(f.path("site/head.cbor")).unwrap(), before);
}

#[test]
fn durations_without_a_unit_are_refused() {
    let f = Fixture::published();
    let before = walk(&f.path("site"));
    for args in [
        &[
            "refresh",
            "--keys",
            "keys",
            "--site",
            "site",
            "--head-ttl",
            "72",
        ][..],
        &[
            "root",
            "rotate",
            "--keys",
            "keys",
            "--site",
            "site",
            "--expires-in",
            "365",
        ][..],
        &[
            "publish",
            "--db",
            "reg.db",
            "--keys",
            "keys",
            "--site",
            "site",
            "--manifest-ttl",
            "30",
        ][..],
    ] {
        let run = f.publish(args);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stderr.contains("has no unit"), "{}", run.stderr);
    }
    assert_eq!(walk(&f.path("site")), before);
}

#[test]
fn a_root_expiring_within_the_hour_is_refused() {
    let f = Fixture::published();
    let run = publish_plain(
        &f,
        &[
            "root",
            "init",
            "--keys",
            "keys",
            "--site",
            "other",
            "--expires-in",
            "10m",
            "--insecure-test-keys",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("refusing to sign root version 1"),
        "{}",
        run.stderr
    );
    assert!(!f.path("other/root/1.cbor").exists());
}

// ---- item 5: the INSECURE test keys are never trusted by accident ------------------

#[test]
fn a_root_trusting_the_insecure_test_keys_is_refused() {
    let f = Fixture::unpublished();
    // New real keys beside the committed INSECURE ones, as in a checkout.
    for role in ["root", "manifest", "head"] {
        publish_plain(
            &f,
            &["keygen", "--role", role, "--out", &format!("keys/{role}-1")],
        )
        .ok();
    }
    let run = publish_plain(&f, &["root", "init", "--keys", "keys", "--site", "tour"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("INSECURE"), "{}", run.stderr);
    assert!(!f.path("tour/root/1.cbor").exists());
    // Signing for a site whose root already trusts them is refused too.
    let run = publish_plain(
        &f,
        &[
            "publish", "--db", "reg.db", "--keys", "keys", "--site", "site",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("INSECURE"), "{}", run.stderr);
    assert!(!f.path("site/head.cbor").exists());
}

/// The shell block of README.md's "A five-minute tour".
fn readme_tour() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let tour = readme
        .split("## A five-minute tour")
        .nth(1)
        .expect("README has a tour");
    let block = tour.split("```sh\n").nth(1).expect("a sh block");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn readme_tour_runs_verbatim_in_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &readme_tour()])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README tour failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It used its own keys, the root key apart from the online ones.
    let root = std::fs::read(dir.path().join("tour/site/root/1.cbor")).unwrap();
    let env =
        consentry::envelope::Envelope::parse("root", &root, &consentry::limits::Limits::DEFAULT)
            .unwrap();
    let r: consentry::docs::Root = consentry::cbor::from_slice_canonical(&env.payload).unwrap();
    let insecure = consentry_publish::guard::insecure_key_ids();
    assert!(
        r.keys
            .iter()
            .all(|k| !insecure.contains(&consentry::envelope::key_id(k)))
    );
    assert!(!dir.path().join("tour/online-keys/root-1.key").exists());
}

// ---- item 6: verify checks every file the manifest names --------------------------

#[test]
fn damaged_delta_beside_a_compacted_base_is_found_by_verify() {
    let f = Fixture::synced();
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    f.verifier(&["sync", "site"]).ok();
    let (m, _) = Site::new(&f.path("store")).manifest();
    assert_eq!(m.base, m.version, "compacted");
    assert!(m.layers.is_empty());
    let delta = m.delta.expect("a compacted base carries its delta");
    let rel = paths::layer(&delta.sha256);
    let good = std::fs::read(f.path("store").join(&rel)).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    std::fs::write(f.path("store").join(&rel), &bad).unwrap();
    let run = f.verifier(&["verify"]);
    assert_refused(&run, "hash_mismatch");
    assert!(run.stderr.contains(&rel), "{}", run.stderr);
    std::fs::remove_file(f.path("store").join(&rel)).unwrap();
    assert_refused(&f.verifier(&["verify"]), "store_incomplete");
    // Sync fetches it again; a mirror of this store then serves it whole.
    f.verifier(&["sync", "site"]).ok();
    assert_eq!(std::fs::read(f.path("store").join(&rel)).unwrap(), good);
    f.verifier(&["verify"]).ok();
}

// ---- item 7: the demo's suggestions run as printed --------------------------------

#[test]
fn demo_try_next_commands_all_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let run = consentry_tests::run_bounded(
        "consentry-publish",
        &["demo", "demo-dir", "--records", "300"],
        dir.path(),
        RUN_LIMIT,
    )
    .ok();
    let next = run
        .stdout
        .split("try next")
        .nth(1)
        .expect("a try-next step");
    let mut ran = 0;
    for line in next
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("consentry"))
    {
        assert!(!line.contains(&*dir.path().to_string_lossy()), "{line}");
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = run_plain(words[0], &words[1..], dir.path());
        assert_eq!(
            out.code, 0,
            "`{line}` failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        ran += 1;
    }
    assert_eq!(ran, 8, "{next}");
}

// ---- item 8: a closed stdout ends quietly -----------------------------------------

/// Run `name args` with its stdout a pipe whose reader is already closed.
fn with_closed_stdout(name: &str, args: &[&str], cwd: &Path) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(bin_dir().join(name))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn both_binaries_end_quietly_on_a_closed_stdout() {
    let f = Fixture::synced();
    let lookups = data("lookups.csv");
    let runs = [
        (
            "consentry",
            vec![
                "--store",
                "store",
                "--now",
                NOW,
                "--quiet",
                "check",
                "--input",
                lookups.to_str().unwrap(),
                "--csv",
            ],
        ),
        (
            "consentry",
            vec!["--store", "store", "--now", NOW, "status"],
        ),
        ("consentry-publish", vec!["init", "--db", "other.db"]),
        ("consentry-publish", vec!["gc", "--site", "site"]),
        (
            "consentry-publish",
            vec!["keygen", "--role", "head", "--out", "k/h"],
        ),
    ];
    for (name, args) in runs {
        let (code, err) = with_closed_stdout(name, &args, f.root());
        assert_eq!(code, 141, "{name} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{name} {args:?}: {err}");
        assert!(!err.contains("error"), "{name} {args:?}: {err}");
    }
}

// ---- item 9: a store served as a mirror exposes no local state --------------------

/// GET `path` from `base` (http://127.0.0.1:PORT/): status and body.
fn http_get(base: &str, path: &str) -> (u16, Vec<u8>) {
    consentry_tests::http_request(base, "GET", path, &[])
}

#[test]
fn serving_a_store_exposes_only_site_files_and_a_cluster_syncs_from_it() {
    let f = Fixture::synced();
    let before = f.answers();
    std::fs::write(f.path("store/.tmp-left"), b"junk").unwrap();
    let mut child = Command::new(bin_dir().join("consentry"))
        .args([
            "--store",
            "store",
            "--now",
            NOW,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(f.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = Vec::new();
    let mut out = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let url = String::from_utf8(line).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    for hidden in [
        "/local/trust.json",
        "/local/lock",
        "/local/index/",
        "/.tmp-left",
        "/local/../head.cbor",
    ] {
        assert_eq!(http_get(&url, hidden).0, 404, "{hidden}");
    }
    let (code, head) = http_get(&url, "/head.cbor");
    assert_eq!(code, 200);
    assert_eq!(head, std::fs::read(f.path("store/head.cbor")).unwrap());
    // Another machine of the cluster syncs from the mirror.
    let other = |args: &[&str]| {
        let mut a = vec!["--store", "node2", "--now", NOW];
        a.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &a, f.root(), RUN_LIMIT)
    };
    other(&["init", "--root", "site/root/1.cbor"]).ok();
    other(&["sync", &url]).ok();
    let input = data("lookups.csv");
    let answers = other(&["check", "--input", input.to_str().unwrap(), "--csv"]).ok();
    assert_eq!(answers.stdout, before);
    let _ = child.kill();
    let _ = child.wait();
}

// ---- item 10: leftovers of killed runs are removed by the next run ----------------

#[test]
fn temp_files_left_by_killed_runs_are_removed_by_the_next_run() {
    let f = Fixture::synced();
    let site_tmp = [
        ".tmpA1b2C3",
        "shard/.tmpX",
        "layer/.tmpY",
        "manifest/.tmpZ",
        "root/.tmpR",
    ];
    let plant = |base: &str, names: &[&str]| {
        for n in names {
            let p = f.path(base).join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"partial").unwrap();
        }
    };
    plant("site", &site_tmp);
    f.publish(&["refresh", "--keys", "keys", "--site", "site", "--now", NOW])
        .ok();
    for n in site_tmp {
        assert!(!f.path("site").join(n).exists(), "refresh left {n}");
    }
    plant("site", &site_tmp);
    f.publish(&["gc", "--site", "site"]).ok();
    for n in site_tmp {
        assert!(!f.path("site").join(n).exists(), "gc left {n}");
    }
    plant("site", &site_tmp);
    f.publish_change(17, &[]);
    for n in site_tmp {
        assert!(!f.path("site").join(n).exists(), "publish left {n}");
    }
    let store_tmp = [
        ".tmp-a",
        "shard/.tmp-b",
        "manifest/.tmp-c",
        "local/.tmp-d",
        "local/index/.tmp-e",
        "local/staging-x/shard/f.zst",
    ];
    plant("store", &store_tmp);
    f.verifier(&["sync", "site"]).ok();
    for n in store_tmp {
        assert!(!f.path("store").join(n).exists(), "sync left {n}");
    }
    assert!(!f.path("store/local/staging-x").exists());
    plant("store", &store_tmp[..5]);
    f.verifier(&["verify", "--repair"]).ok();
    for n in &store_tmp[..5] {
        assert!(
            !f.path("store").join(n).exists(),
            "verify --repair left {n}"
        );
    }
    f.verifier(&["verify"]).ok();
}
