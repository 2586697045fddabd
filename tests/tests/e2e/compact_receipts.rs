//! Compact receipts (SPEC.md §13.4, issue 19): a store that follows a
//! witnessed log writes receipts anchored in the cosigned checkpoint — the
//! manifest's log entry and its inclusion proof instead of the head and
//! the manifest — which verify with nothing but the pinned root. Adversarial
//! tests are named for the defect they plant.

use consentry::receipt::{AnyReceipt, CompactReceipt};
use consentry_tests::attack::assert_refused;

use super::fixture::Fixture;
use super::receipts::{assert_refused_precisely, golden_isrcs, verify_with_the_root_alone};
use super::witnesses::{cosign_all, publish_change, witnessed};

/// A witnessed registry at version 2 (two cosigned checkpoints), synced.
fn synced() -> Fixture {
    let f = witnessed();
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    f
}

fn read(f: &Fixture, name: &str) -> CompactReceipt {
    match AnyReceipt::from_bytes(name, &std::fs::read(f.path(name)).unwrap()).unwrap() {
        AnyReceipt::Compact(r) => r,
        AnyReceipt::Full(_) => panic!("{name} is a full receipt"),
    }
}

fn write(f: &Fixture, name: &str, r: &CompactReceipt) {
    std::fs::write(f.path(name), AnyReceipt::Compact(r.clone()).to_bytes()).unwrap();
}

fn verify(f: &Fixture, file: &str) -> consentry_tests::Run {
    f.verifier(&["receipt", "verify", file])
}

/// Batch and single compact receipts of the golden questions.
fn receipts(f: &Fixture) -> String {
    let mut args = vec!["check", "--receipt", "rc/"];
    args.extend(golden_isrcs());
    let answers = f.verifier(&args).ok().stdout;
    let mut args = vec!["check", "--receipt", "batch.cbor"];
    args.extend(golden_isrcs());
    assert_eq!(f.verifier(&args).ok().stdout, answers);
    answers
}

#[test]
fn compact_receipts_verify_offline_from_the_pinned_root_without_the_manifest() {
    let f = synced();
    let answers = receipts(&f);
    let single = "rc/1-GBNWR2500017.receipt.cbor";
    let r = read(&f, single);
    assert_eq!(r.format, "consentry-receipt-v2");
    assert_eq!(r.entry.version, 2);
    // Root 2 names the witnesses; the pinned root 1 is not carried.
    assert_eq!(r.roots.len(), 1);
    assert!(String::from_utf8_lossy(&r.checkpoint).contains("w2.example"));
    let full_len = {
        f.verifier(&[
            "check",
            "--receipt",
            "full.cbor",
            "--receipt-format",
            "full",
            "GBNWR2500017",
        ])
        .ok();
        std::fs::read(f.path("full.cbor")).unwrap().len()
    };
    let compact_len = std::fs::read(f.path(single)).unwrap().len();
    assert!(
        compact_len < 4096 && compact_len < full_len,
        "compact {compact_len} B, full {full_len} B"
    );

    // Nothing but the pinned root, in a directory with no store.
    let out = verify_with_the_root_alone(&f, "batch.cbor").ok().stdout;
    assert!(
        out.contains("from snapshot version 2")
            && out.contains("cosigned by w1.example, w2.example"),
        "{out}"
    );
    for line in answers.lines() {
        let mut cols = line.split('\t');
        let (input, decision) = (cols.next().unwrap(), cols.next().unwrap());
        assert!(
            out.lines()
                .any(|l| l.contains(input) && l.contains(decision)),
            "{input} {decision} missing from\n{out}"
        );
    }
    let json = f.verifier(&["receipt", "show", single]).ok().stdout;
    for k in [
        "\"checkpoint\"",
        "\"inclusion\"",
        "\"entry\"",
        "\"state_root\"",
    ] {
        assert!(json.contains(k), "{k} missing from the JSON rendering");
    }
}

#[test]
fn compact_receipts_with_any_flipped_byte_are_refused() {
    let f = synced();
    receipts(&f);
    for name in [
        "batch.cbor",
        "rc/1-GBNWR2500017.receipt.cbor",
        "rc/8-invalid.receipt.cbor",
    ] {
        let good = std::fs::read(f.path(name)).unwrap();
        let step = (good.len() / 60).max(1);
        let mut at = 0;
        while at < good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(f.path("flipped.cbor"), &bad).unwrap();
            assert_refused_precisely(
                &verify(&f, "flipped.cbor"),
                &format!("{name} byte {at} of {}", good.len()),
            );
            at += step;
        }
    }
}

#[test]
fn compact_receipt_whose_checkpoint_is_not_cosigned_is_rejected() {
    let f = synced();
    receipts(&f);
    let mut r = read(&f, "rc/1-GBNWR2500017.receipt.cbor");
    // Keep the log's signature, drop one witness's cosignature.
    let text = String::from_utf8(r.checkpoint.to_vec()).unwrap();
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| !l.contains("w2.example"))
        .collect();
    r.checkpoint = kept.into_bytes().into();
    write(&f, "one-witness.cbor", &r);
    assert_refused(&verify(&f, "one-witness.cbor"), "witness_threshold_not_met");
}

#[test]
fn compact_receipt_for_a_manifest_outside_the_log_is_rejected() {
    let f = synced();
    receipts(&f);
    let good = read(&f, "rc/1-GBNWR2500017.receipt.cbor");
    // Another state root (a snapshot the log never held), a wrong inclusion
    // path, and a version past the tree: each refused.
    let mut other_state = good.clone();
    other_state.entry.state_root[0] ^= 1;
    let mut bad_path = good.clone();
    bad_path.inclusion[0][0] ^= 1;
    let mut past = good.clone();
    past.entry.version = 3;
    for (name, r) in [
        ("other-state.cbor", other_state),
        ("bad-path.cbor", bad_path),
        ("past.cbor", past),
    ] {
        write(&f, name, &r);
        assert_refused(&verify(&f, name), "proof_mismatch");
    }
    // Impossible numbers are refused as such, never wrapped around.
    let mut huge_index = good.clone();
    huge_index.ranges[0].index = u64::MAX;
    let mut huge_version = good.clone();
    huge_version.entry.version = u64::MAX;
    let mut huge_leaves = good.clone();
    huge_leaves.entry.leaves = u64::MAX;
    for (name, r, code) in [
        ("huge-index.cbor", huge_index, "receipt_invalid"),
        ("huge-version.cbor", huge_version, "proof_mismatch"),
        ("huge-leaves.cbor", huge_leaves, "proof_mismatch"),
    ] {
        write(&f, name, &r);
        assert_refused(&verify(&f, name), code);
    }
}

#[test]
fn compact_receipt_with_the_answer_of_an_older_snapshot_is_rejected() {
    // GBNWR2500017 changes at version 2 (declaration D17): the version-1
    // chunks spliced under the version-2 entry must not verify.
    let f = witnessed();
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    f.verifier(&["check", "--receipt", "v1.cbor", "GBNWR2500017"])
        .ok();
    let old = read(&f, "v1.cbor");
    assert_eq!(old.entry.version, 1);
    publish_change(&f, "reg.db", "site", 17, "2026-11-01T01:00:00Z");
    cosign_all(&f, "site");
    f.verifier(&["sync", "site"]).ok();
    f.verifier(&["check", "--receipt", "v2.cbor", "GBNWR2500017"])
        .ok();
    let new = read(&f, "v2.cbor");
    let mut spliced = new.clone();
    spliced.ranges = old.ranges.clone();
    spliced.answers = old.answers.clone();
    spliced.policies = old.policies.clone();
    spliced.digest = old.digest;
    write(&f, "spliced.cbor", &spliced);
    assert_refused(&verify(&f, "spliced.cbor"), "proof_mismatch");
    // The version-1 receipt itself still verifies: it proves what version 1
    // said, in a log whose later checkpoint extends it.
    let out = verify(&f, "v1.cbor").ok().stdout;
    assert!(out.contains("from snapshot version 1"), "{out}");
}

#[test]
fn compact_receipts_need_a_witnessed_log_and_full_ones_stay_available() {
    let f = Fixture::synced();
    let out = f.verifier(&[
        "check",
        "--receipt",
        "c.cbor",
        "--receipt-format",
        "compact",
        "GBNWR2500017",
    ]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("--receipt-format full"),
        "{}",
        out.stderr
    );
    assert!(!f.path("c.cbor").exists());
    // auto: full receipts when the root names no witnesses.
    f.verifier(&["check", "--receipt", "a.cbor", "GBNWR2500017"])
        .ok();
    let any = AnyReceipt::from_bytes("a.cbor", &std::fs::read(f.path("a.cbor")).unwrap()).unwrap();
    assert!(matches!(any, AnyReceipt::Full(_)));
}
