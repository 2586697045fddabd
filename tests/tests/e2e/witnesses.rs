//! The witnessed manifest log (issue 19, SPEC.md §15): a root naming two
//! witnesses (threshold 2), checkpoints written by the publisher, cosigned
//! by `consentry witness` processes with keys of their own, required by
//! `sync`, compared across stores. Adversarial tests are named for the
//! defect they plant.

use std::path::Path;

use consentry_tests::attack::assert_refused as assert_refused_with;

use super::fixture::{Fixture, NOW, RUN_LIMIT, T0};

const ORIGIN: &str = "registry.example.org/consentry";

pub(super) fn consentry(dir: &Path, args: &[&str]) -> consentry_tests::Run {
    let mut full = vec!["--now", NOW];
    full.extend_from_slice(args);
    consentry_tests::run_bounded("consentry", &full, dir, RUN_LIMIT)
}

/// The INSECURE fixture, its root rotated to name witnesses w1 and w2
/// (threshold 2), version 1 published; the witnesses' keys made and
/// pinned to root 1 in `w1-state`, `w2-state`; a store pinned to root 1.
pub(super) fn witnessed() -> Fixture {
    let f = Fixture::unpublished();
    let d = f.root();
    for w in ["w1", "w2"] {
        consentry(
            d,
            &[
                "witness",
                "keygen",
                "--name",
                &format!("{w}.example"),
                "--out",
                w,
            ],
        )
        .ok();
    }
    f.publish(&[
        "root",
        "rotate",
        "--keys",
        "keys",
        "--site",
        "site",
        "--now",
        T0,
        "--expires-in",
        "3650d",
        "--force",
        "--witness",
        "w1.vkey",
        "--witness",
        "w2.vkey",
        "--witness-threshold",
        "2",
        "--log-origin",
        ORIGIN,
    ])
    .ok();
    f.publish_next(&[]).ok();
    assert!(f.path("site/log/checkpoint").exists() && f.path("site/log/leaves").exists());
    for w in ["w1", "w2"] {
        consentry(
            d,
            &[
                "witness",
                "init",
                "--state",
                &format!("{w}-state"),
                "--root",
                "site/root/1.cbor",
            ],
        )
        .ok();
    }
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f
}

/// Witness `w` (state `state`) cosigns `site`'s checkpoint into `out`.
fn cosign(f: &Fixture, w: &str, state: &str, site: &str, out: &str) -> consentry_tests::Run {
    witness_cosign(f, w, state, &[site], out)
}

/// `consentry witness cosign` by `w` with its state, key and `out`, and
/// the rest of the arguments.
fn witness_cosign(
    f: &Fixture,
    w: &str,
    state: &str,
    rest: &[&str],
    out: &str,
) -> consentry_tests::Run {
    let key = format!("{w}.key");
    let mut args = vec!["witness", "cosign", "--state", state, "--key", &key];
    args.extend_from_slice(rest);
    args.extend_from_slice(&["--out", out]);
    consentry(f.root(), &args)
}

/// Both witnesses cosign `site` (their default states) and the publisher
/// adds the lines.
pub(super) fn cosign_all(f: &Fixture, site: &str) {
    for w in ["w1", "w2"] {
        cosign(f, w, &format!("{w}-state"), site, &format!("{w}.sig")).ok();
    }
    f.publish(&["log", "cosign", "--site", site, "w1.sig", "w2.sig"])
        .ok();
}

/// Publish one more declaration (number `n`) into `db`/`site`.
pub(super) fn publish_change(f: &Fixture, db: &str, site: &str, n: u32, at: &str) {
    let header = consentry::declaration::COLUMNS.join(",");
    std::fs::write(
        f.path("change.csv"),
        format!("{header}\nD{n},{n},declare,,GBNWR25{n:05},Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,{at},active\n"),
    )
    .unwrap();
    f.publish(&["import", "--db", db, "change.csv", "--recorded-at", at])
        .ok();
    f.publish(&["publish", "--db", db, "--keys", "keys", "--site", site])
        .ok();
}

#[test]
fn sync_requires_the_witnesses_cosignatures_on_the_checkpoint() {
    let f = witnessed();
    // Nobody cosigned yet: refused, the store still empty.
    let out = f.verifier(&["sync", "site"]);
    assert_refused_with(&out, "witness_threshold_not_met");
    assert!(!f.path("store/head.cbor").exists());
    // One of two witnesses, its line offered twice: still one witness.
    cosign(&f, "w1", "w1-state", "site", "w1.sig").ok();
    std::fs::write(
        f.path("w1-twice.sig"),
        std::fs::read_to_string(f.path("w1.sig")).unwrap().repeat(2),
    )
    .unwrap();
    f.publish(&["log", "cosign", "--site", "site", "w1-twice.sig"])
        .ok();
    let note = std::fs::read_to_string(f.path("site/log/checkpoint")).unwrap();
    assert_eq!(note.matches("w1.example").count(), 1, "{note}");
    assert_refused_with(&f.verifier(&["sync", "site"]), "witness_threshold_not_met");
    // The second witness: accepted, and the store keeps the checkpoint.
    cosign(&f, "w2", "w2-state", "site", "w2.sig").ok();
    f.publish(&["log", "cosign", "--site", "site", "w2.sig"])
        .ok();
    f.verifier(&["sync", "site"]).ok();
    assert_eq!(
        std::fs::read(f.path("store/log/checkpoint")).unwrap(),
        std::fs::read(f.path("site/log/checkpoint")).unwrap()
    );
    let check = f
        .verifier(&["check", "GBNWR2500001", "--at", "2026-11-25"])
        .ok();
    assert!(
        check.stdout.contains("\tdisallow\tdeclared\tD1\t"),
        "{}",
        check.stdout
    );
    // status --json shows the checkpoint and who cosigned it.
    let st = f.verifier(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["log"]["origin"], ORIGIN);
    assert_eq!(v["log"]["size"], 1);
    assert_eq!(v["log"]["witness_threshold"], 2);
    let names: Vec<&str> = v["log"]["cosigners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1.example", "w2.example"]);
    // The next version: a new checkpoint, cosigned again, synced.
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    assert_refused_with(&f.verifier(&["sync", "site"]), "witness_threshold_not_met");
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
}

/// Site A and a copy B of it after version 1, each given a different
/// version 2 by the same keys: two histories.
fn forked() -> Fixture {
    let f = witnessed();
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    consentry_tests::tamper::copy_dir(&f.path("site"), &f.path("site-b"));
    std::fs::copy(f.path("reg.db"), f.path("reg-b.db")).unwrap();
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    publish_change(&f, "reg-b.db", "site-b", 18, "2026-11-01T01:00:00Z");
    f
}

#[test]
fn a_witness_asked_to_cosign_a_fork_refuses() {
    let f = forked();
    cosign(&f, "w1", "w1-state", "site", "w1.sig").ok();
    let state = std::fs::read(f.path("w1-state/checkpoint")).unwrap();
    let out = cosign(&f, "w1", "w1-state", "site-b", "w1-b.sig");
    assert_refused_with(&out, "log_fork");
    assert!(!f.path("w1-b.sig").exists(), "nothing signed");
    assert_eq!(std::fs::read(f.path("w1-state/checkpoint")).unwrap(), state);
}

#[test]
fn a_forked_log_shown_to_two_stores_is_proved_by_comparing_them() {
    let f = forked();
    let d = f.root();
    // Witnesses that each saw only one history: their state for B is a
    // copy taken at version 1, before A's version 2.
    for w in ["w1", "w2"] {
        consentry_tests::tamper::copy_dir(
            &f.path(&format!("{w}-state")),
            &f.path(&format!("{w}-state-b")),
        );
    }
    cosign_all(&f, "site");
    for w in ["w1", "w2"] {
        cosign(
            &f,
            w,
            &format!("{w}-state-b"),
            "site-b",
            &format!("{w}-b.sig"),
        )
        .ok();
    }
    f.publish(&["log", "cosign", "--site", "site-b", "w1-b.sig", "w2-b.sig"])
        .ok();
    // Store A already holds version 1; it syncs A's version 2. Store B, a
    // fresh store pinned to the same root, syncs B's.
    f.verifier(&["sync", "site"]).ok();
    consentry(
        d,
        &["--store", "store-b", "init", "--root", "site/root/1.cbor"],
    )
    .ok();
    consentry(d, &["--store", "store-b", "sync", "site-b"]).ok();
    let out = consentry(d, &["compare-checkpoints", "store", "store-b"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("split view"), "{}", out.stdout);
    // A store of the same history agrees.
    consentry(
        d,
        &["--store", "store-c", "init", "--root", "site/root/1.cbor"],
    )
    .ok();
    consentry(d, &["--store", "store-c", "sync", "site"]).ok();
    let same = consentry(d, &["compare-checkpoints", "store", "store-c"]).ok();
    assert!(same.stdout.starts_with("consistent"), "{}", same.stdout);
    // And store A, shown B's history, refuses it (its manifest chain and
    // its log both say so).
    let out = f.verifier(&["sync", "site-b"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
}

#[test]
fn a_log_whose_history_was_rewritten_is_refused_as_a_fork() {
    let f = witnessed();
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    cosign_all(&f, "site");
    // The registry (it holds the manifest key) rewrites leaf 0 and re-signs
    // a checkpoint over the new leaves.
    let evil = f.copy_site("evil");
    let mut leaves = std::fs::read(f.path("evil/log/leaves")).unwrap();
    leaves[0] ^= 0xff;
    std::fs::write(f.path("evil/log/leaves"), &leaves).unwrap();
    let parsed = consentry::note::parse_leaves(&leaves).unwrap();
    let cp = consentry::note::Checkpoint {
        origin: ORIGIN.into(),
        size: parsed.len() as u64,
        root: consentry::merkle::merkle_root(&parsed),
    };
    let text = cp.text();
    let mk = f.key("manifest");
    let sig = mk.sign(text.as_bytes()).unwrap();
    let note = consentry::note::Note {
        text,
        sigs: vec![consentry::note::log_signature_line(
            ORIGIN,
            &mk.public(),
            &sig,
        )],
    };
    std::fs::write(f.path("evil/log/checkpoint"), note.to_bytes()).unwrap();
    drop(evil);
    assert_refused_with(&f.verifier(&["sync", "evil"]), "log_fork");
    // A witness that cosigned the true history refuses it too.
    assert_refused_with(
        &cosign(&f, "w1", "w1-state", "evil", "w1-evil.sig"),
        "log_fork",
    );
}

#[test]
fn a_rolled_back_checkpoint_is_refused() {
    let f = witnessed();
    cosign_all(&f, "site");
    let old = f.copy_site("old");
    drop(old);
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    // The current snapshot, but the log files of version 1.
    consentry_tests::tamper::copy_dir(&f.path("site"), &f.path("stale"));
    for name in ["log/checkpoint", "log/leaves"] {
        std::fs::copy(
            f.path(&format!("old/{name}")),
            f.path(&format!("stale/{name}")),
        )
        .unwrap();
    }
    assert_refused_with(&f.verifier(&["sync", "stale"]), "rollback");
}

/// `consentry-publish log request --old OLD` for `site`, into `out`.
fn request(f: &Fixture, site: &str, old: u64, out: &str) {
    f.publish(&[
        "log",
        "request",
        "--site",
        site,
        "--old",
        &old.to_string(),
        "--out",
        out,
    ])
    .ok();
}

/// Witness `w` (state `state`) answers the add-checkpoint request `req`,
/// following the registry's root chain through a directory that holds
/// nothing but `site`'s root files: no leaves, no checkpoint.
fn cosign_request(f: &Fixture, w: &str, state: &str, req: &str, out: &str) -> consentry_tests::Run {
    let _ = std::fs::remove_dir_all(f.path("roots-only"));
    consentry_tests::tamper::copy_dir(&f.path("site/root"), &f.path("roots-only/root"));
    witness_cosign(f, w, state, &["--request", req, "roots-only"], out)
}

#[test]
fn witnesses_cosign_from_consistency_proofs_without_the_leaves() {
    let f = witnessed();
    for (size, old) in [(1, 0), (2, 1)] {
        if size == 2 {
            publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
        }
        request(&f, "site", old, "req");
        let body = std::fs::read_to_string(f.path("req")).unwrap();
        assert!(body.starts_with(&format!("old {old}\n")), "{body}");
        for w in ["w1", "w2"] {
            cosign_request(&f, w, &format!("{w}-state"), "req", &format!("{w}.sig")).ok();
        }
        f.publish(&["log", "cosign", "--site", "site", "w1.sig", "w2.sig"])
            .ok();
        f.verifier(&["sync", "site"]).ok();
        let st = f.verifier(&["status", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
        assert_eq!(v["log"]["size"], size);
    }
}

#[test]
fn an_inconsistent_consistency_proof_is_refused_and_nothing_is_signed() {
    let f = witnessed();
    request(&f, "site", 0, "req0");
    cosign_request(&f, "w1", "w1-state", "req0", "w1.sig").ok();
    let state = std::fs::read(f.path("w1-state/checkpoint")).unwrap();
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    request(&f, "site", 1, "req1");
    // The proof's one hash replaced by another valid-looking hash.
    let body = std::fs::read_to_string(f.path("req1")).unwrap();
    let mut lines: Vec<String> = body.split_inclusive('\n').map(str::to_string).collect();
    assert!(lines[1].len() == 45, "one proof hash expected: {body}");
    lines[1] = format!("{}\n", "A".repeat(43) + "=");
    std::fs::write(f.path("bad-proof"), lines.concat()).unwrap();
    let out = cosign_request(&f, "w1", "w1-state", "bad-proof", "w1-bad.sig");
    assert_refused_with(&out, "log_fork");
    // A request that claims the witness never cosigned (old 0).
    request(&f, "site", 0, "req-zero");
    let out = cosign_request(&f, "w1", "w1-state", "req-zero", "w1-zero.sig");
    assert_refused_with(&out, "checkpoint_mismatch");
    assert!(
        out.stderr.contains("last cosigned tree size 1"),
        "{}",
        out.stderr
    );
    assert!(!f.path("w1-bad.sig").exists() && !f.path("w1-zero.sig").exists());
    assert_eq!(std::fs::read(f.path("w1-state/checkpoint")).unwrap(), state);
    // The honest request still goes through.
    cosign_request(&f, "w1", "w1-state", "req1", "w1.sig").ok();
}

#[test]
fn a_witness_given_a_forked_checkpoint_by_request_refuses() {
    let f = forked();
    request(&f, "site", 1, "req-a");
    request(&f, "site-b", 1, "req-b");
    cosign_request(&f, "w1", "w1-state", "req-a", "w1.sig").ok();
    // B's tree of the same size, from the size the witness now holds.
    request(&f, "site-b", 2, "req-b2");
    let out = cosign_request(&f, "w1", "w1-state", "req-b2", "w1-b.sig");
    assert_refused_with(&out, "log_fork");
    assert!(!f.path("w1-b.sig").exists());
}

/// `consentry witness serve` for `w` in the background: the child and the
/// URL it printed (`http://127.0.0.1:PORT/add-checkpoint`).
fn serve_witness(f: &Fixture, w: &str) -> (std::process::Child, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(consentry_tests::bin_dir().join("consentry"))
        .args([
            "witness",
            "serve",
            "--state",
            &format!("{w}-state"),
            "--key",
            &format!("{w}.key"),
            "--listen",
            "127.0.0.1:0",
            "site",
        ])
        .current_dir(f.root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut line, mut b) = (Vec::new(), [0u8; 1]);
    while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    (child, String::from_utf8(line).unwrap())
}

#[test]
fn a_witness_served_over_http_answers_add_checkpoint_as_tlog_witness_says() {
    let f = witnessed();
    let (mut child, url) = serve_witness(&f, "w1");
    assert!(url.ends_with("/add-checkpoint"), "{url}");
    let post = |file: &str| {
        let body = std::fs::read(f.path(file)).unwrap();
        consentry_tests::http_request(&url, "POST", "/add-checkpoint", &body)
    };
    // A new witness: old 0, 200 and a cosignature line.
    request(&f, "site", 0, "req0");
    let (code, body) = post("req0");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let line = String::from_utf8(body).unwrap();
    assert!(line.starts_with("— w1.example "), "{line}");
    std::fs::write(f.path("w1.sig"), &line).unwrap();
    // The same request again: the witness now holds size 1, so old 0 is a
    // conflict answered with that size.
    let (code, body) = post("req0");
    assert_eq!((code, body.as_slice()), (409, &b"1\n"[..]));
    // The next version, with a forged proof: 422, nothing cosigned; then
    // the honest proof: 200.
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    request(&f, "site", 1, "req1");
    let honest = std::fs::read_to_string(f.path("req1")).unwrap();
    let forged = honest.replacen(honest.lines().nth(1).unwrap(), &("A".repeat(43) + "="), 1);
    std::fs::write(f.path("forged"), forged).unwrap();
    assert_eq!(post("forged").0, 422);
    let (code, body) = post("req1");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Another log's checkpoint: 404. Another path or method: 404, 405.
    let other = honest.replace(ORIGIN, "other.example/log");
    std::fs::write(f.path("other"), other).unwrap();
    assert_eq!(post("other").0, 404);
    assert_eq!(
        consentry_tests::http_request(&url, "POST", "/add-checkpoint/x", b"").0,
        404
    );
    assert_eq!(
        consentry_tests::http_request(&url, "GET", "/add-checkpoint", b"").0,
        405
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_publisher_collects_cosignatures_from_witness_services_over_http() {
    let f = witnessed();
    let (mut c1, u1) = serve_witness(&f, "w1");
    let (mut c2, u2) = serve_witness(&f, "w2");
    for version in [1, 2] {
        if version == 2 {
            publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
        }
        // The prefix form of one URL and the endpoint form of the other;
        // at version 2 each witness answers old 0 with 409 and its size,
        // and the publisher resends the proof from that size.
        let prefix = u1.trim_end_matches("add-checkpoint");
        f.publish(&[
            "log",
            "cosign",
            "--site",
            "site",
            "--witness-url",
            prefix,
            "--witness-url",
            &u2,
        ])
        .ok();
        f.verifier(&["sync", "site"]).ok();
    }
    // A witness that cannot be reached is named, and the checkpoint is
    // left as it was.
    let before = std::fs::read(f.path("site/log/checkpoint")).unwrap();
    let out = f.publish(&[
        "log",
        "cosign",
        "--site",
        "site",
        "--witness-url",
        "http://127.0.0.1:9/",
    ]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("127.0.0.1:9"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(f.path("site/log/checkpoint")).unwrap(),
        before
    );
    for c in [&mut c1, &mut c2] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
