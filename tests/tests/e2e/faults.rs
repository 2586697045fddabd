//! Reliability: processes killed with SIGKILL mid-sync and mid-publish, write
//! errors in the store, a store moved to another directory, a corrupted local
//! index, and malformed registry input. Nothing may be lost: the last good
//! snapshot keeps answering, the last published site keeps verifying, and bad
//! input changes nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use consentry::docs::paths;
use consentry::isrc::Isrc;
use consentry_tests::attack::assert_refused;
use consentry_tests::tamper::{Site, copy_dir};
use consentry_tests::{Fault, Server, bin_dir};

use super::fixture::{Fixture, NOW, RUN_LIMIT, T0};

/// Start `consentry --store store --now NOW ARGS…` in the fixture, quietly.
fn spawn_verifier(f: &Fixture, store: &str, args: &[&str]) -> std::process::Child {
    Command::new(bin_dir().join("consentry"))
        .args(["--store", store, "--now", NOW])
        .args(args)
        .current_dir(f.root())
        .env("NO_COLOR", "1")
        .env_remove("CONSENTRY_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consentry")
}

/// Wait `ms` (bounded), then SIGKILL the child unless it already exited.
/// Returns whether it was killed.
fn kill_after(child: &mut std::process::Child, ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    let killed = child.try_wait().expect("try_wait").is_none();
    if killed {
        child.kill().expect("SIGKILL");
    }
    child.wait().expect("reap");
    killed
}

fn reset_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    copy_dir(from, to);
}

/// `verify` exits 0: the whole store re-checks from the pinned root, index
/// intact.
#[track_caller]
fn verifies(f: &Fixture) {
    let out = f.verifier(&["verify"]);
    assert_eq!(
        out.code, 0,
        "verify after a kill:\n{}{}",
        out.stdout, out.stderr
    );
}

// ---- SIGKILL during sync ------------------------------------------------------

#[test]
fn sigkill_during_a_slow_sync_leaves_the_previous_snapshot_answering() {
    let f = Fixture::synced();
    let before = f.answers();
    f.publish_change(17, &[]);
    // One byte per millisecond: head, manifest, layer and prefix table take
    // about two seconds in all, so the kills land in different files.
    let mut phases = Vec::new();
    for ms in [80, 600, 1300] {
        let server = Server::serve_with(&f.path("site"), Fault::Trickle(Duration::from_millis(1)));
        let mut child = spawn_verifier(&f, "store", &["sync", &server.url]);
        let killed = kill_after(&mut child, ms);
        let asked = server.requests();
        drop(server);
        assert!(
            killed,
            "the trickled sync finished within {ms} ms: {asked:?}"
        );
        phases.push(asked.last().cloned().unwrap_or_default());
        assert_eq!(
            f.answers(),
            before,
            "killed at {ms} ms while fetching {asked:?}"
        );
        verifies(&f);
    }
    assert!(
        phases.iter().any(|p| p == paths::HEAD) && phases.iter().any(|p| p != paths::HEAD),
        "kills landed in the head and later: {phases:?}"
    );
    // The next sync cleans up and completes.
    f.verifier(&["sync", "site"]).ok();
    assert_ne!(f.answers(), before);
    f.assert_no_staging_left();
    verifies(&f);
}

#[test]
fn sigkill_at_many_points_of_a_sync_never_breaks_the_store() {
    let f = Fixture::synced();
    let before = f.answers();
    copy_dir(&f.path("store"), &f.path("store-v1"));
    // A new base (version 3) reached from version 1: every kind of file is
    // fetched, staged, moved, and the index and head written.
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    f.verifier(&["sync", "site"]).ok();
    let after = f.answers();
    let mut outcomes = (0, 0);
    for ms in (0..60).step_by(4) {
        reset_dir(&f.path("store-v1"), &f.path("store"));
        let mut child = spawn_verifier(&f, "store", &["sync", "site"]);
        kill_after(&mut child, ms);
        let now = f.answers();
        if now == before {
            outcomes.0 += 1;
        } else {
            assert_eq!(
                now, after,
                "killed at {ms} ms: neither the old nor the new snapshot"
            );
            outcomes.1 += 1;
        }
        verifies(&f);
        // And the interrupted store always finishes the job.
        f.verifier(&["sync", "site"]).ok();
        assert_eq!(f.answers(), after, "killed at {ms} ms, then synced");
        f.assert_no_staging_left();
    }
    eprintln!("kills before / after the switch: {outcomes:?}");
    assert!(
        outcomes.0 > 0,
        "no kill landed before the switch: {outcomes:?}"
    );
}

// ---- SIGKILL during publish ---------------------------------------------------------

#[test]
fn sigkill_during_publish_leaves_the_last_snapshot_valid() {
    let f = Fixture::synced();
    let before = f.answers();
    // A pending change, then a template of the registry and site to restart from.
    f.import_rows(
        "change.csv",
        "D17,17,declare,,GBNWR2600017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-01T06:00:00Z,active\n",
        "2026-11-01T06:00:00Z",
    )
    .ok();
    copy_dir(&f.path("site"), &f.path("tpl/site"));
    std::fs::copy(f.path("reg.db"), f.path("tpl/reg.db")).unwrap();
    copy_dir(&f.path("store"), &f.path("tpl/store"));
    let mut killed_any = false;
    for ms in [0, 3, 6, 10, 15, 20, 30, 45] {
        reset_dir(&f.path("tpl/site"), &f.path("site"));
        std::fs::copy(f.path("tpl/reg.db"), f.path("reg.db")).unwrap();
        reset_dir(&f.path("tpl/store"), &f.path("store"));
        let mut child = Command::new(bin_dir().join("consentry-publish"))
            .args(consentry_tests::test_args(
                "consentry-publish",
                &[
                    "publish", "--db", "reg.db", "--keys", "keys", "--site", "site",
                ],
            ))
            .current_dir(f.root())
            .env_remove("CONSENTRY_PUBLISH_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let killed = kill_after(&mut child, ms);
        killed_any |= killed;
        // The site's head names a complete, verifying snapshot (1 or 2)...
        let site = consentry_publish::site::Site::new(&f.path("site"));
        let cur = site
            .current(&site.root().unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("killed at {ms} ms: no current snapshot"));
        eprintln!(
            "publish killed at {ms} ms: {killed}, site at version {}, {} files",
            cur.manifest.version,
            super::fixture::walk(&f.path("site")).len()
        );
        consentry_publish::build::load_state(&site, &cur.manifest)
            .unwrap_or_else(|e| panic!("killed at {ms} ms: {e:#}"));
        // ...which the store syncs and answers from...
        f.verifier(&["sync", "site"]).ok();
        verifies(&f);
        if cur.manifest.version == 1 {
            assert_eq!(f.answers(), before, "killed at {ms} ms");
        }
        // ...a bundle of it imports into a fresh store...
        let _ = std::fs::remove_file(f.path("b.tar"));
        f.publish(&["bundle", "--site", "site", "--out", "b.tar"])
            .ok();
        let _ = std::fs::remove_dir_all(f.path("fresh"));
        consentry_tests::run_bounded(
            "consentry",
            &[
                "--store",
                "fresh",
                "--now",
                NOW,
                "init",
                "--root",
                "site/root/1.cbor",
            ],
            f.root(),
            RUN_LIMIT,
        )
        .ok();
        consentry_tests::run_bounded(
            "consentry",
            &["--store", "fresh", "--now", NOW, "import", "b.tar"],
            f.root(),
            RUN_LIMIT,
        )
        .ok();
        // ...and the next publish completes and the store follows it.
        f.publish_next(&[]).ok();
        f.verifier(&["sync", "site"]).ok();
        let out = f.verifier(&["check", "GBNWR2600017", "--json"]).ok();
        assert!(
            out.stdout.contains("\"D17\""),
            "killed at {ms} ms: {}",
            out.stdout
        );
    }
    assert!(killed_any, "no kill landed while publishing");
}

// ---- write errors -------------------------------------------------------------------

#[test]
fn write_error_at_each_step_of_a_sync_leaves_the_previous_snapshot_answering() {
    let f = Fixture::synced();
    let before = f.answers();
    copy_dir(&f.path("store"), &f.path("store-v1"));
    f.publish_change(17, &[]);
    let (_, mrel) = Site::new(&f.path("site")).manifest();
    let msha = Site::new(&f.path("site")).head().manifest.sha256;
    // Each obstacle makes exactly one write of the switch fail, as a full
    // disk would: a plain file where a directory must be created, or a
    // directory where a file must be renamed to.
    let obstacles: [(&str, String, bool); 3] = [
        ("the layer directory", "layer".to_string(), false),
        ("the manifest file", mrel, true),
        (
            "the index file",
            format!("local/index/{}.idx", hex::encode(msha)),
            true,
        ),
    ];
    for (what, rel, as_dir) in obstacles {
        reset_dir(&f.path("store-v1"), &f.path("store"));
        let p = f.path("store").join(&rel);
        if as_dir {
            std::fs::create_dir_all(p.join("blocker")).unwrap();
        } else {
            std::fs::write(&p, b"not a directory").unwrap();
        }
        let run = f.verifier(&["sync", "site"]);
        assert_refused(&run, "io_error");
        assert_eq!(
            f.answers(),
            before,
            "a write error at {what} changed the answers"
        );
        f.assert_no_staging_left();
        verifies(&f);
        // Once the disk is fixed, the same sync succeeds.
        if as_dir {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        f.verifier(&["sync", "site"]).ok();
        assert_ne!(f.answers(), before, "{what}");
    }
}

// ---- the store itself ---------------------------------------------------------------

#[test]
fn store_copied_to_another_directory_re_verifies() {
    let f = Fixture::synced();
    let before = f.answers();
    copy_dir(&f.path("store"), &f.path("elsewhere/copied-store"));
    std::fs::remove_dir_all(f.path("store")).unwrap();
    let run = |args: &[&str]| {
        let mut full = vec!["--store", "elsewhere/copied-store", "--now", NOW];
        full.extend_from_slice(args);
        consentry_tests::run_bounded("consentry", &full, f.root(), RUN_LIMIT)
    };
    let out = run(&["verify"]).ok();
    assert!(out.stdout.contains("index intact"), "{}", out.stdout);
    let input = consentry_tests::data("lookups.csv");
    let answers = run(&["check", "--input", input.to_str().unwrap(), "--csv"]).ok();
    assert_eq!(answers.stdout, before);
    run(&["sync", "site"]).ok();
    run(&["status"]).ok();
}

/// The store's one index file.
fn index_file(f: &Fixture) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(f.path("store/local/index"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn corrupted_local_index_is_detected_and_rebuilt_never_trusted() {
    let f = Fixture::synced();
    let before = f.answers();
    let idx = index_file(&f);
    let good = std::fs::read(&idx).unwrap();
    // GBNWR2500017's entry: key (8 bytes), seq (8), id length (1), id "D2".
    let key = Isrc::parse("GBNWR2500017").unwrap().key().to_be_bytes();
    let at = good
        .windows(8)
        .position(|w| w == key)
        .expect("entry in the index");
    assert_eq!(&good[at + 17..at + 19], b"D2");
    let mut renamed = good.clone();
    renamed[at + 17] = b'E'; // "E2": an answer no signed file holds
    let mut reseq = good.clone();
    reseq[at + 15] ^= 0x01;
    let corruptions: [(&str, Vec<u8>); 4] = [
        ("an id changed", renamed),
        ("a seq changed", reseq),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", vec![0x42; good.len()]),
    ];
    for (what, bytes) in corruptions {
        // `check` refuses to trust it and answers from verified files (a
        // temporary index), writing nothing to the store.
        std::fs::write(&idx, &bytes).unwrap();
        let out = f.answers_at(NOW, &[]).ok();
        assert_eq!(out.stdout, before, "index {what}");
        assert!(
            out.stderr.contains("corrupt") && out.stderr.contains("verify --repair"),
            "index {what}: no warning\n{}",
            out.stderr
        );
        assert_eq!(
            std::fs::read(&idx).unwrap(),
            bytes,
            "index {what}: check wrote"
        );
        // `verify` finds it too, says so, exits 1, and writes nothing...
        let out = f.verifier(&["verify"]).expect_code(1);
        assert!(out.stdout.contains("DAMAGED"), "{}", out.stdout);
        assert_eq!(
            std::fs::read(&idx).unwrap(),
            bytes,
            "index {what}: verify wrote"
        );
        // ...`verify --repair` rebuilds it, byte for byte as sync wrote it.
        let out = f.verifier(&["verify", "--repair"]).expect_code(1);
        assert!(out.stdout.contains("rebuilt"), "{}", out.stdout);
        assert_eq!(std::fs::read(&idx).unwrap(), good, "index {what} rebuilt");
        verifies(&f);
    }
    // A missing index: answers still come, from a temporary index...
    std::fs::remove_file(&idx).unwrap();
    assert_eq!(f.answers(), before);
    assert!(!idx.exists());
    // ...until `verify --repair` (or the next sync) builds it.
    let out = f.verifier(&["verify"]).expect_code(1);
    assert!(out.stdout.contains("MISSING"), "{}", out.stdout);
    f.verifier(&["verify", "--repair"]).expect_code(1);
    assert_eq!(std::fs::read(&idx).unwrap(), good);
    f.verifier(&["verify"]).ok();
}

// ---- malformed registry input -------------------------------------------------------

/// Import `bytes` as `name` into the published fixture: exit 2, every
/// `needle` (a `file:line:field` message) on stderr, the database unchanged.
#[track_caller]
fn import_refused(name: &str, bytes: &[u8], needles: &[&str]) {
    let f = Fixture::published();
    let db = std::fs::read(f.path("reg.db")).unwrap();
    std::fs::write(f.path(name), bytes).unwrap();
    let start = Instant::now();
    let out = f
        .publish(&["import", "--db", "reg.db", name, "--recorded-at", T0])
        .expect_code(2);
    assert!(start.elapsed() < Duration::from_secs(10));
    for n in needles {
        assert!(out.stderr.contains(n), "missing {n:?} in\n{}", out.stderr);
    }
    assert_eq!(
        db,
        std::fs::read(f.path("reg.db")).unwrap(),
        "database changed"
    );
    // And nothing was published from it.
    let again = f.publish_next(&[]).ok();
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
}

const HEADER: &str = "declaration_id,seq,action,supersedes,scope,declarant_name,declarant_id,declarant_role,all,train-ai,train-genai,ai-use,search,policy_url,policy_sha256,territories_include,territories_exclude,valid_from,valid_until,declared_at,status";

/// A valid CSV row (D20, seq 20, GBNWR2600020) with fields replaced.
fn row(id: &str, seq: u32, edit: &[(usize, &str)]) -> String {
    let mut f: Vec<String> = format!(
        "{id},{seq},declare,,GBNWR26000{seq},Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-02T00:00:00Z,active"
    )
    .split(',')
    .map(str::to_string)
    .collect();
    for (i, v) in edit {
        f[*i] = (*v).to_string();
    }
    f.join(",")
}

/// A CSV file: header, one good row, then `bad`.
fn csv_with(bad: &str) -> Vec<u8> {
    format!("{HEADER}\n{}\n{bad}\n", row("D20", 20, &[])).into_bytes()
}

#[test]
fn import_with_a_bad_isrc_is_refused_with_file_line_field() {
    import_refused(
        "bad.csv",
        &csv_with(&row("D21", 21, &[(4, "GBNWR26000X1")])),
        &["bad.csv:3:scope"],
    );
}

#[test]
fn import_with_an_unknown_use_value_is_refused_with_file_line_field() {
    import_refused(
        "bad.csv",
        &csv_with(&row("D21", 21, &[(10, "q")])),
        &["bad.csv:3:train-genai"],
    );
}

#[test]
fn import_with_an_unknown_use_column_is_refused_with_file_line_field() {
    let bytes = format!("{HEADER},train-robots\n{},n\n", row("D20", 20, &[]));
    import_refused("bad.csv", bytes.as_bytes(), &["bad.csv:1:train-robots"]);
}

#[test]
fn import_with_a_bad_territory_is_refused_with_file_line_field() {
    import_refused(
        "bad.csv",
        &csv_with(&row("D21", 21, &[(15, "FR ZZ")])),
        &["bad.csv:3:territories_include"],
    );
}

#[test]
fn import_with_dates_out_of_order_is_refused_with_file_line_field() {
    import_refused(
        "bad.csv",
        &csv_with(&row("D21", 21, &[(17, "2026-05-01"), (18, "2026-04-30")])),
        &["bad.csv:3:valid_until"],
    );
}

#[test]
fn import_with_duplicate_ids_is_refused_with_file_line_field() {
    import_refused(
        "bad.csv",
        &csv_with(&row("D20", 21, &[])),
        &["bad.csv:2:declaration_id", "bad.csv:3:declaration_id"],
    );
}

#[test]
fn import_of_non_utf8_input_is_refused_with_file_line_field() {
    let mut bytes = csv_with(&row("D21", 21, &[(5, "Caf\u{1}")]));
    for b in &mut bytes {
        if *b == 1 {
            *b = 0xE9; // Latin-1 é
        }
    }
    import_refused("bad.csv", &bytes, &["bad.csv:3:declarant_name"]);
    import_refused(
        "bad.jsonl",
        b"{\"declaration_id\": \"D21\xff\"}\n",
        &["bad.jsonl:1:"],
    );
}

#[test]
fn import_with_a_10_mb_line_is_refused_with_file_line_field() {
    let long = "a".repeat(10 << 20);
    import_refused("bad.csv", &csv_with(&long), &["bad.csv:3:"]);
    import_refused(
        "bad.jsonl",
        format!("{long}\n").as_bytes(),
        &["bad.jsonl:1:"],
    );
    // A 10 MB field inside an otherwise well-formed row.
    import_refused(
        "bad.csv",
        &csv_with(&row("D21", 21, &[(5, &long)])),
        &["bad.csv:3:"],
    );
}

#[test]
fn import_of_jsonl_with_a_bad_isrc_is_refused_with_file_line_field() {
    let good = r#"{"declaration_id":"D20","seq":20,"action":"declare","scope":"GBNWR2600020","declarant":{"name":"Northwind Records","id":"ddex:PADPIDA2014021201U","role":"label"},"preferences":{"train-ai":"n"},"declared_at":"2026-11-02T00:00:00Z"}"#;
    let bad = good
        .replace("D20", "D21")
        .replace("\"seq\":20", "\"seq\":21")
        .replace("GBNWR2600020", "GBNWR26000X1");
    import_refused(
        "bad.jsonl",
        format!("{good}\n{bad}\n").as_bytes(),
        &["bad.jsonl:2:scope"],
    );
}

#[test]
fn swapped_pinned_root_in_the_store_is_refused() {
    let f = Fixture::synced();
    // Another registry's root 1 (its own keys, validly self-signed) in place
    // of the pinned one.
    let g = Fixture::unpublished();
    std::fs::remove_dir_all(g.path("keys")).unwrap();
    for r in ["root", "manifest", "head"] {
        g.publish(&["keygen", "--role", r, "--out", &format!("keys/{r}-1")])
            .ok();
    }
    g.publish(&[
        "root", "init", "--keys", "keys", "--site", "site", "--now", T0, "--force",
    ])
    .ok();
    std::fs::copy(g.path("site/root/1.cbor"), f.path("store/root/1.cbor")).unwrap();
    assert_refused(&f.answers_at(NOW, &[]), "trust_mismatch");
    assert_refused(&f.verifier(&["sync", "site"]), "trust_mismatch");
    assert_refused(&f.verifier(&["verify"]), "trust_mismatch");
}

#[test]
fn shard_altered_in_place_is_named_by_verify_and_fetched_again_by_any_sync() {
    let f = Fixture::synced();
    let before = f.answers();
    let store = Site::new(&f.path("store"));
    let (m, _) = store.manifest();
    let rel = paths::shard(&m.ranges[0].shard.sha256);
    let good = store.read(&rel);
    let mut b = good.clone();
    b[5] ^= 0x40; // same length: only the hash can tell
    store.write(&rel, &b);
    let run = f.verifier(&["verify"]);
    assert_refused(&run, "hash_mismatch");
    assert!(run.stderr.contains(&rel), "{}", run.stderr);
    // Answers come from the verified index meanwhile, unchanged.
    assert_eq!(f.answers(), before);
    // The recovery the hint gives: sync, with nothing new, fetches it again.
    assert!(run.stderr.contains("consentry sync"), "{}", run.stderr);
    let out = f.verifier(&["sync", "site"]).ok();
    assert!(out.stdout.contains("(repair)"), "{}", out.stdout);
    assert_eq!(store.read(&rel), good);
    verifies(&f);
    assert_eq!(f.answers(), before);
    // A sync to the next version (a delta: the shard itself is not needed
    // to build the new state) repairs it too.
    store.write(&rel, &b);
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site"]).ok();
    assert_eq!(store.read(&rel), good, "the altered shard outlived a sync");
    verifies(&f);
}

// ---- concurrency ----------------------------------------------------------------------

#[test]
fn concurrent_syncs_never_corrupt_the_store() {
    let f = Fixture::synced();
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(bin_dir().join("consentry"))
                .args(["--store", "store", "--now", NOW, "sync", "site"])
                .current_dir(f.root())
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("store_busy"),
            "a concurrent sync failed otherwise:\n{err}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    f.verifier(&["sync", "site"]).ok();
    verifies(&f);
    let out = f.verifier(&["check", "GBNWR2600018", "--json"]).ok();
    assert!(out.stdout.contains("\"D18\""), "{}", out.stdout);
}

#[test]
fn checks_during_a_sync_answer_from_one_snapshot_or_the_other() {
    let f = Fixture::synced();
    let before = f.answers();
    copy_dir(&f.path("store"), &f.path("store-v1"));
    f.publish_change(17, &[]);
    f.publish_change(18, &["--compact"]);
    f.verifier(&["sync", "site"]).ok();
    let after = f.answers();
    let mut seen = (0, 0);
    for _ in 0..6 {
        reset_dir(&f.path("store-v1"), &f.path("store"));
        let mut sync = spawn_verifier(&f, "store", &["sync", "site"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = sync.try_wait().unwrap().is_some();
            let out = f.answers_at(NOW, &[]);
            assert_eq!(out.code, 0, "a check during a sync failed:\n{}", out.stderr);
            if out.stdout == before {
                seen.0 += 1;
            } else {
                assert_eq!(out.stdout, after, "a check mixed two snapshots");
                seen.1 += 1;
            }
            if done || Instant::now() > deadline {
                break;
            }
        }
        sync.kill().ok();
        sync.wait().unwrap();
    }
    eprintln!("checks answered from the old / new snapshot: {seen:?}");
    verifies(&f);
}
