//! Consent receipts (SPEC.md §13) and `check --as-of` through the real
//! binaries: receipts verify from a pinned root alone; any edit is refused
//! with a precise code; as-of answers follow the published history.

use consentry::receipt::{Receipt, parse_chunk};

use super::fixture::{Fixture, NOW};

pub(super) const CODES: &[&str] = &[
    "receipt_invalid",
    "proof_mismatch",
    "answer_mismatch",
    "threshold_not_met",
    "malformed_envelope",
    "malformed_document",
    "wrong_payload_type",
    "too_many_signatures",
    "root_version",
    "hash_mismatch",
    "length_mismatch",
    "malformed_data",
    "count_mismatch",
    "unsorted_keys",
    "limit_exceeded",
    "malformed_checkpoint",
    "witness_threshold_not_met",
];

pub(super) fn golden_isrcs() -> Vec<&'static str> {
    vec![
        "GBNWR2500017",
        "USQZ92400123",
        "USQZ92300500",
        "FRAB10012345",
        "DEXY12300001",
        "JPAB02500010",
        "ZZABC0000000",
        "NOTANISRC",
    ]
}

/// `receipt verify FILE` with the store's pinned root.
fn verify(f: &Fixture, file: &str) -> consentry_tests::Run {
    f.verifier(&["receipt", "verify", file])
}

#[track_caller]
pub(super) fn assert_refused_precisely(run: &consentry_tests::Run, what: &str) {
    assert_eq!(
        run.code, 2,
        "{what}: accepted\n{}{}",
        run.stdout, run.stderr
    );
    assert!(
        CODES.iter().any(
            |c| run.stderr.contains(&format!("[{c}]")) || run.stderr.contains(&format!("{c}:"))
        ),
        "{what}: no precise code in\n{}",
        run.stderr
    );
}

/// `receipt verify` of `file` in another directory that holds nothing but
/// a copy of the pinned root (and the receipt): no store.
pub(super) fn verify_with_the_root_alone(f: &Fixture, file: &str) -> consentry_tests::Run {
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(f.path("site/root/1.cbor"), bare.path().join("root.cbor")).unwrap();
    std::fs::copy(f.path(file), bare.path().join("r.cbor")).unwrap();
    consentry_tests::run_bounded(
        "consentry",
        &[
            "--store",
            "nostore",
            "receipt",
            "verify",
            "--root",
            "root.cbor",
            "r.cbor",
        ],
        bare.path(),
        super::fixture::RUN_LIMIT,
    )
}

fn write_receipt(f: &Fixture, name: &str, r: &Receipt) -> String {
    std::fs::write(f.path(name), r.to_bytes()).unwrap();
    name.to_string()
}

/// Re-seal the digest so only the targeted check can fire.
fn reseal(r: &mut Receipt) {
    r.digest = consentry::envelope::sha256(&consentry::cbor::to_vec(&r.answers));
}

fn read_receipt(f: &Fixture, name: &str) -> Receipt {
    Receipt::from_bytes(name, &std::fs::read(f.path(name)).unwrap()).unwrap()
}

#[test]
fn receipts_verify_offline_and_every_flipped_byte_is_refused() {
    let f = Fixture::synced();
    let mut args = vec!["check", "--receipt", "rc/"];
    args.extend(golden_isrcs());
    let answers = f.verifier(&args).ok().stdout;
    let mut args = vec!["check", "--receipt", "batch.receipt.cbor"];
    args.extend(golden_isrcs());
    assert_eq!(f.verifier(&args).ok().stdout, answers);

    let mut singles: Vec<String> = std::fs::read_dir(f.path("rc"))
        .unwrap()
        .map(|e| format!("rc/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    singles.sort();
    assert_eq!(singles.len(), golden_isrcs().len());
    assert!(
        singles
            .iter()
            .any(|s| s == "rc/1-GBNWR2500017.receipt.cbor")
    );
    assert!(singles.iter().any(|s| s == "rc/8-invalid.receipt.cbor"));
    for s in &singles {
        let out = verify(&f, s).ok().stdout;
        assert!(
            out.contains("valid: 1 answer(s) from snapshot version 1"),
            "{out}"
        );
    }
    let out = verify(&f, "batch.receipt.cbor").ok().stdout;
    for line in answers.lines() {
        let mut cols = line.split('\t');
        let (input, decision) = (cols.next().unwrap(), cols.next().unwrap());
        assert!(
            out.lines()
                .any(|l| l.contains(input) && l.contains(decision)),
            "{input} {decision} missing from\n{out}"
        );
    }

    // With nothing but the pinned root: another directory, no store.
    verify_with_the_root_alone(&f, "batch.receipt.cbor").ok();

    // The JSON rendering names every part.
    let json = f
        .verifier(&["receipt", "show", "batch.receipt.cbor"])
        .ok()
        .stdout;
    for k in [
        "\"roots\"",
        "\"manifest\"",
        "\"prefix_chunks\"",
        "\"chunks\"",
        "\"digest\"",
    ] {
        assert!(json.contains(k), "{k} missing from the JSON rendering");
    }

    // Flip one bit at ~50 positions spread over the batch receipt and a single one.
    for name in ["batch.receipt.cbor", "rc/1-GBNWR2500017.receipt.cbor"] {
        let good = std::fs::read(f.path(name)).unwrap();
        let step = (good.len() / 50).max(1);
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
        // Truncated and extended.
        std::fs::write(f.path("flipped.cbor"), &good[..good.len() - 1]).unwrap();
        assert_refused_precisely(&verify(&f, "flipped.cbor"), "truncated");
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(f.path("flipped.cbor"), &longer).unwrap();
        assert_refused_precisely(&verify(&f, "flipped.cbor"), "extended");
    }
}

#[test]
fn edited_answers_records_and_foreign_proofs_are_refused_by_name() {
    let f = Fixture::synced();
    f.verifier(&["check", "GBNWR2500017", "USQZ92300500", "--receipt", "v1/"])
        .ok();
    let good = read_receipt(&f, "v1/1-GBNWR2500017.receipt.cbor");

    // The answer changed (digest re-sealed so the lookup check fires).
    let mut r = good.clone();
    assert_eq!(r.answers[0].answer.decision, "allow");
    r.answers[0].answer.decision = "disallow".into();
    reseal(&mut r);
    let run = verify(&f, &write_receipt(&f, "changed-answer.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "answer_mismatch");
    assert!(
        run.stderr
            .contains("the recorded entries give allow declared [D2]"),
        "{}",
        run.stderr
    );

    // The answer changed without re-sealing: the digest catches it.
    let mut r = good.clone();
    r.answers[0].answer.decided_by = vec!["D1".into()];
    let run = verify(&f, &write_receipt(&f, "unsealed.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "answer_mismatch");

    // The question changed to another ISRC: the proof does not bracket it.
    let mut r = good.clone();
    r.answers[0].question.input = "USQZ92300500".into();
    r.answers[0].question.isrc = Some("USQZ92300500".into());
    reseal(&mut r);
    let run = verify(&f, &write_receipt(&f, "other-isrc.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "answer_mismatch");

    // A record swapped inside the chunk (D2's id replaced): the chunk no
    // longer hashes to the signed leaf.
    let mut r = good.clone();
    let bytes = r.ranges[0].chunks[0].bytes.to_vec();
    let pos = bytes.windows(2).position(|w| w == b"D2").unwrap();
    let mut swapped = bytes.clone();
    swapped[pos + 1] = b'9';
    r.ranges[0].chunks[0].bytes = swapped.into();
    let run = verify(&f, &write_receipt(&f, "swapped.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");
    assert!(run.stderr.contains("range leaf"), "{}", run.stderr);

    // A record dropped from the chunk: wrong entry count for the signed range.
    let mut r = good.clone();
    let es = parse_chunk(&bytes).unwrap();
    let first_len = 49 + es[0].id.len();
    r.ranges[0].chunks[0].bytes = bytes[first_len..].to_vec().into();
    let run = verify(&f, &write_receipt(&f, "dropped.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");

    // A proof from another manifest: version 2 changes range 0.
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site"]).ok();
    f.verifier(&["check", "GBNWR2500017", "--receipt", "v2/"])
        .ok();
    let v2 = read_receipt(&f, "v2/1-GBNWR2500017.receipt.cbor");
    assert!(
        verify(&f, "v2/1-GBNWR2500017.receipt.cbor")
            .ok()
            .stdout
            .contains("snapshot version 2")
    );
    let mut r = good.clone();
    r.ranges = v2.ranges.clone();
    let run = verify(&f, &write_receipt(&f, "foreign.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");
    // And v2's manifest and head under v1's proofs.
    let mut r = good.clone();
    r.manifest = v2.manifest.clone();
    r.head = v2.head.clone();
    let run = verify(&f, &write_receipt(&f, "foreign-manifest.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");
    // The version 1 receipts still verify after the store moved on.
    verify(&f, "v1/1-GBNWR2500017.receipt.cbor").ok();
}

/// A registry large enough for ranges of many chunks.
fn generated(records: &str) -> Fixture {
    let f = Fixture::unpublished();
    f.publish(&["init", "--db", "gen.db"]).ok();
    f.publish(&[
        "generate",
        "--db",
        "gen.db",
        "--records",
        records,
        "--keys",
        "uniform",
        "--recorded-at",
        super::fixture::T0,
    ])
    .ok();
    f.publish(&[
        "publish", "--db", "gen.db", "--keys", "keys", "--site", "site",
    ])
    .ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    f
}

#[test]
fn absence_proofs_must_bracket_the_key_with_adjacent_neighbours() {
    let f = generated("1000");
    // The store's own index tells us the keys of each chunk.
    let store = consentry::store::Store::open(f.path("store")).unwrap();
    let now = consentry::time::parse_timestamp(NOW).unwrap();
    let snap = store
        .current(now, consentry::verify::Expiry::Enforce)
        .unwrap();
    let ix = consentry::index::Index::open(
        &store.index_path(&snap.manifest_sha256),
        &snap.manifest,
        &snap.manifest_sha256,
        store.limits(),
    )
    .unwrap()
    .unwrap();
    let (range, t) = (0..snap.manifest.ranges.len())
        .map(|i| (i, ix.table(i).unwrap()))
        .find(|(_, t)| t.len() >= 4)
        .expect("a range with 4 chunks");
    let c1 = 1;
    let key_of = |c: usize, j: usize| {
        let ch = ix.chunk(range, c).unwrap();
        ch.key(j)
    };
    let isrc = |k: u64| consentry::Isrc::from_key(k).unwrap().compact();
    let last1 = key_of(c1, consentry::state::CHUNK - 1);
    let in_c2 = key_of(c1 + 1, 10);
    let first3 = key_of(c1 + 2, 0);
    assert!(last1 < in_c2 && in_c2 < first3);
    drop(t);

    // A true absence receipt: a key between two entries.
    let between = (key_of(c1, 10) + 1..key_of(c1, 11)).next().unwrap();
    if between < key_of(c1, 11) {
        f.verifier(&["check", &isrc(between), "--receipt", "absent.cbor"])
            .ok();
        let out = verify(&f, "absent.cbor").ok().stdout;
        assert!(out.contains("no_record"), "{out}");
    }
    // Keys below the first and above the last entry: the range boundary.
    f.verifier(&[
        "check",
        "AAAAA0000000",
        "ZZZZZ9999999",
        "--receipt",
        "ends.cbor",
    ])
    .ok();
    verify(&f, "ends.cbor").ok();

    // A batch holding chunks c1 and c1+2 (not c1+1).
    f.verifier(&[
        "check",
        &isrc(key_of(c1, consentry::state::CHUNK - 2)),
        &isrc(key_of(c1 + 2, 1)),
        "--receipt",
        "pair.cbor",
    ])
    .ok();
    let pair = read_receipt(&f, "pair.cbor");
    assert_eq!(pair.ranges.len(), 1);
    let idx: Vec<u64> = pair.ranges[0].chunks.iter().map(|c| c.index).collect();
    assert!(!idx.contains(&(c1 as u64 + 1)), "{idx:?}");

    // Forge: "in_c2 has no record", proven by chunk c1 alone, whose last
    // entry is below in_c2 — the neighbours (last of c1, first of c1+2) are
    // not adjacent: chunk c1+1 lies between them.
    let mut r = pair.clone();
    r.answers.truncate(1);
    r.answers[0].question.input = isrc(in_c2);
    r.answers[0].question.isrc = Some(consentry::Isrc::from_key(in_c2).unwrap().to_string());
    r.answers[0].answer.decision = "unknown".into();
    r.answers[0].answer.reason = "no_record".into();
    r.answers[0].answer.decided_by.clear();
    r.answers[0].chunks = vec![c1 as u64, c1 as u64 + 1];
    r.policies.clear();
    reseal(&mut r);
    let run = verify(&f, &write_receipt(&f, "gap.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");
    assert!(
        run.stderr.contains("neighbours are not adjacent"),
        "{}",
        run.stderr
    );
    // The same with the run claimed as [c1+2, c1+3): it does not start below the key.
    r.answers[0].chunks = vec![c1 as u64 + 2, c1 as u64 + 3];
    reseal(&mut r);
    let run = verify(&f, &write_receipt(&f, "gap2.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "proof_mismatch");
    assert!(
        run.stderr.contains("neighbours are not adjacent"),
        "{}",
        run.stderr
    );
    // A chunk index the receipt does not carry.
    r.answers[0].chunks = vec![c1 as u64, c1 as u64 + 3];
    reseal(&mut r);
    let run = verify(&f, &write_receipt(&f, "gap3.cbor", &r));
    consentry_tests::attack::assert_refused(&run, "receipt_invalid");
}

#[test]
fn as_of_answers_follow_three_published_versions() {
    let f = Fixture::synced();
    f.verifier(&["sync", "site", "--keep-history", "5"]).ok();
    // v2 declares GBNWR2600017 (recorded 00:07), v3 GBNWR2600018 (00:14).
    f.publish_change(17, &[]);
    f.verifier(&["sync", "site", "--keep-history", "5"]).ok();
    f.publish_change(18, &[]);
    f.verifier(&["sync", "site", "--keep-history", "5"]).ok();

    let ask = |as_of: &str| -> String {
        f.verifier(&[
            "check",
            "GBNWR2600017",
            "GBNWR2600018",
            "GBNWR2500017",
            "--as-of",
            as_of,
        ])
        .ok()
        .stdout
    };
    let v1 = ask("2026-11-01T00:03:00Z");
    let v2 = ask("2026-11-01T00:10:00Z");
    let v3 = ask("2026-11-01T00:20:00Z");
    let now = f
        .verifier(&["check", "GBNWR2600017", "GBNWR2600018", "GBNWR2500017"])
        .ok()
        .stdout;
    let line = |out: &str, isrc: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(isrc))
            .unwrap()
            .to_string()
    };
    assert!(
        line(&v1, "GBNWR2600017").contains("disallow\tdeclared\tD1\tv1:"),
        "{v1}"
    );
    assert!(
        line(&v1, "GBNWR2600018").contains("disallow\tdeclared\tD1\tv1:"),
        "{v1}"
    );
    assert!(
        line(&v2, "GBNWR2600017").contains("disallow\tdeclared\tD17\tv2:"),
        "{v2}"
    );
    assert!(
        line(&v2, "GBNWR2600018").contains("disallow\tdeclared\tD1\tv2:"),
        "{v2}"
    );
    assert!(
        line(&v3, "GBNWR2600017").contains("disallow\tdeclared\tD17\tv3:"),
        "{v3}"
    );
    assert!(
        line(&v3, "GBNWR2600018").contains("disallow\tdeclared\tD18\tv3:"),
        "{v3}"
    );
    assert_eq!(v3, now);
    for out in [&v1, &v2, &v3] {
        assert!(
            line(out, "GBNWR2500017").contains("allow\tdeclared\tD2"),
            "{out}"
        );
    }
    // A whole day means its end: the newest version that day.
    assert_eq!(ask("2026-11-01"), v3);
    // Before version 1: no snapshot.
    let run = f.verifier(&["check", "GBNWR2600017", "--as-of", "2026-10-01"]);
    consentry_tests::attack::assert_refused(&run, "no_snapshot");

    // A receipt as of version 1 verifies and says so, while the head names v3.
    f.verifier(&[
        "check",
        "GBNWR2600017",
        "--as-of",
        "2026-11-01T00:03:00Z",
        "--receipt",
        "asof.cbor",
    ])
    .ok();
    let out = verify(&f, "asof.cbor").ok().stdout;
    assert!(out.contains("snapshot version 1 "), "{out}");
    assert!(out.contains("disallow\tdeclared\tD1"), "{out}");

    // With only the newest kept, older dates cannot be answered.
    f.verifier(&["sync", "site", "--keep-history", "1"]).ok();
    let run = f.verifier(&["check", "GBNWR2600017", "--as-of", "2026-11-01T00:03:00Z"]);
    consentry_tests::attack::assert_refused(&run, "no_snapshot");
}
