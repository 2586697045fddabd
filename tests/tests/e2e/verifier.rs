//! `consentry` through its binary, against sites published by the real
//! publisher and served by a real HTTP server on 127.0.0.1.

use consentry_tests::{Server, data, verifier};

use super::fixture::{Backend, Fixture, NOW, on_both_backends};

/// Parse `check --csv` output into rows of (input, decision, reason, decided_by).
fn csv_answers(stdout: &str) -> Vec<(String, String, String, String)> {
    let mut r = csv::Reader::from_reader(stdout.as_bytes());
    let h = r.headers().unwrap().clone();
    let col = |name: &str| {
        h.iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {h:?}"))
    };
    let (i, d, re, by) = (
        col("input"),
        col("decision"),
        col("reason"),
        col("decided_by"),
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[i].to_string(),
                rec[d].to_string(),
                rec[re].to_string(),
                rec[by].to_string(),
            )
        })
        .collect()
}

on_both_backends!(golden_lookups_come_back_exactly_through_publish_http_sync_and_batch_check);

fn golden_lookups_come_back_exactly_through_publish_http_sync_and_batch_check(b: Backend) {
    let f = Fixture::published_on(b);
    let server = Server::serve(&f.path("site"));
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    let out = f.verifier(&["sync", &server.url]).ok();
    assert!(
        out.stderr.contains('1') || out.stdout.contains('1'),
        "{out:?}"
    );
    let out = f
        .verifier(&[
            "check",
            "--input",
            data("lookups.csv").to_str().unwrap(),
            "--csv",
        ])
        .ok();
    let got = csv_answers(&out.stdout);
    let mut want = csv::Reader::from_path(data("lookups.csv")).unwrap();
    let want: Vec<csv::StringRecord> = want.records().map(Result::unwrap).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "one answer per question, in input order"
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, &w[0], "input order");
        assert_eq!(
            (g.1.as_str(), g.2.as_str(), g.3.as_str()),
            (&w[4], &w[5], &w[6]),
            "question {w:?}"
        );
    }
}

#[test]
fn check_answers_name_the_snapshot_and_require_allow_sets_the_exit_code() {
    let f = Fixture::published();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    let out = f
        .verifier(&[
            "check",
            "GBNWR2500017",
            "--use",
            "train-ai",
            "--json",
            "--require",
            "allow",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["decided_by"], serde_json::json!(["D2"]));
    assert_eq!(v["snapshot_version"], 1);
    assert_eq!(v["manifest_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["expired"], false);
    // One answer that is not allow → exit 1, and every answer still printed.
    let out = f
        .verifier(&[
            "check",
            "GBNWR2500017",
            "GBNWR2500001",
            "--require",
            "allow",
        ])
        .expect_code(1);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    // An invalid ISRC is an answer, not an error.
    let out = f.verifier(&["check", "NOTANISRC", "--json"]).ok();
    assert!(out.stdout.contains("invalid_isrc"), "{}", out.stdout);
}

#[test]
fn a_published_change_syncs_as_one_delta_layer_and_reaches_the_state_root() {
    let f = Fixture::published();
    let server = Server::serve(&f.path("site"));
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &server.url]).ok();
    let before = server.requests().len();
    f.import_rows(
        "change.csv",
        "D17,17,declare,D2,GBNWR2500017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-01T06:00:00Z,active\n",
        "2026-11-01T06:00:00Z",
    )
    .ok();
    f.publish_next(&[]).ok();
    f.verifier(&["sync", &server.url]).ok();
    let fetched: Vec<String> = server.requests()[before..].to_vec();
    assert!(
        fetched.iter().any(|p| p.starts_with("layer/")),
        "{fetched:?}"
    );
    assert!(
        !fetched.iter().any(|p| p.starts_with("shard/")),
        "no base shard travels: {fetched:?}"
    );
    let out = f.verifier(&["check", "GBNWR2500017", "--json"]).ok();
    assert!(
        out.stdout.contains("\"D17\"") && out.stdout.contains("\"snapshot_version\":2"),
        "{}",
        out.stdout
    );
    f.verifier(&["verify"]).ok();
}

#[test]
fn after_a_compaction_an_up_to_date_store_derives_the_base_instead_of_downloading_it() {
    let f = Fixture::published();
    let server = Server::serve(&f.path("site"));
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", &server.url]).ok();
    f.import_rows(
        "change.csv",
        "D17,17,declare,,GBNWR2500018,Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,2026-11-01T06:00:00Z,active\n",
        "2026-11-01T06:00:00Z",
    )
    .ok();
    let before = server.requests().len();
    f.publish_next(&["--compact"]).ok();
    f.verifier(&["sync", &server.url]).ok();
    let fetched: Vec<String> = server.requests()[before..].to_vec();
    assert!(
        !fetched.iter().any(|p| p.starts_with("shard/")),
        "base derived locally: {fetched:?}"
    );
    // The store is a complete mirror: another verifier syncs from it as a directory.
    let out = verifier(
        &[
            "--store",
            "store2",
            "--now",
            NOW,
            "init",
            "--root",
            "site/root/1.cbor",
        ],
        f.root(),
    )
    .ok();
    drop(out);
    verifier(
        &["--store", "store2", "--now", NOW, "sync", "store"],
        f.root(),
    )
    .ok();
    verifier(&["--store", "store2", "--now", NOW, "verify"], f.root()).ok();
}

#[test]
fn bundle_import_and_check_need_no_network() {
    let f = Fixture::published();
    f.publish(&["bundle", "--site", "site", "--out", "snap.tar"])
        .ok();
    // Run the verifier in a network namespace with no interfaces when the
    // machine allows it; the commands must not need any network either way.
    let isolated = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let run = |args: &[&str]| -> consentry_tests::Run {
        let mut full: Vec<&str> = vec!["--store", "store", "--now", NOW];
        full.extend_from_slice(args);
        if isolated {
            let bin = consentry_tests::bin_dir().join("consentry");
            let mut a: Vec<&str> = vec!["-n", bin.to_str().unwrap()];
            a.extend_from_slice(&full);
            consentry_tests::run_program("unshare", &a, f.root())
        } else {
            verifier(&full, f.root())
        }
    };
    run(&["init", "--root", "site/root/1.cbor"]).ok();
    run(&["import", "snap.tar"]).ok();
    let out = run(&["check", "USQZ92400123", "--use", "train-genai", "--csv"]).ok();
    let a = csv_answers(&out.stdout);
    assert_eq!(
        (a[0].1.as_str(), a[0].2.as_str(), a[0].3.as_str()),
        ("disallow", "conflict", "D3 D4")
    );
    run(&["verify"]).ok();
    run(&["status"]).ok();
}
