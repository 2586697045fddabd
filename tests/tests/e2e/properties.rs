//! Properties: any mutation of a signed document's bytes fails verification
//! (the library's verify functions, on files the real publisher wrote), and
//! lookup answers do not depend on where the publisher cuts shards.

use consentry::Limits;
use consentry::docs::{Head, paths};
use consentry::envelope::sha256;
use consentry::verify::{self, Expiry};
use consentry_tests::tamper::Site;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::fixture::{Fixture, NOW};

/// One change to a byte string: flip bits of a byte, insert a byte, delete a
/// byte, or cut the tail.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Xor(i, x)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Delete),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match m {
        Mutation::Xor(i, x) => {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        Mutation::Insert(i, v) => b.insert(i.index(b.len() + 1), *v),
        Mutation::Delete(i) => {
            b.remove(i.index(b.len()));
        }
        Mutation::Truncate(i) => b.truncate(i.index(b.len())),
    }
    b
}

fn now() -> i64 {
    consentry::time::parse_timestamp(NOW).unwrap()
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn any_mutation_of_a_signed_root_fails_verification() {
    let f = Fixture::published();
    let site = Site::new(&f.path("site"));
    let good = site.read("root/1.cbor");
    let l = Limits::DEFAULT;
    verify::verify_pinned_root("root/1.cbor", &good, &l).unwrap();
    runner()
        .run(&mutation(), |m| {
            let bad = apply(&good, &m);
            prop_assume!(bad != good);
            prop_assert!(verify::verify_pinned_root("root/1.cbor", &bad, &l).is_err());
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_mutation_of_a_signed_head_fails_verification() {
    let f = Fixture::published();
    let site = Site::new(&f.path("site"));
    let root = site.root(1);
    let good = site.read(paths::HEAD);
    let l = Limits::DEFAULT;
    verify::verify_head(&root, "head.cbor", &good, now(), Expiry::Enforce, &l).unwrap();
    runner()
        .run(&mutation(), |m| {
            let bad = apply(&good, &m);
            prop_assume!(bad != good);
            // Even with expiry ignored, nothing but the signed bytes verifies.
            let r = verify::verify_head(&root, "head.cbor", &bad, now(), Expiry::AllowExpired, &l);
            prop_assert!(r.is_err(), "{m:?} verified: {r:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_mutation_of_a_signed_manifest_fails_verification() {
    let f = Fixture::published();
    let site = Site::new(&f.path("site"));
    let root = site.root(1);
    let head = site.head();
    let (_, rel) = site.manifest();
    let good = site.read(&rel);
    let l = Limits::DEFAULT;
    verify::verify_manifest(&root, &head, &rel, &good, now(), Expiry::Enforce, &l).unwrap();
    runner()
        .run(&mutation(), |m| {
            let bad = apply(&good, &m);
            prop_assume!(bad != good);
            // The strongest attacker here also controls the head: it names
            // the mutated bytes' exact length and hash, so only the
            // manifest's own signature and structure can refuse them.
            let h = Head {
                manifest: consentry::docs::ManifestRef {
                    length: bad.len() as u64,
                    sha256: sha256(&bad),
                    version: head.manifest.version,
                },
                ..head.clone()
            };
            let r = verify::verify_manifest(&root, &h, &rel, &bad, now(), Expiry::AllowExpired, &l);
            prop_assert!(r.is_err(), "{m:?} verified");
            Ok(())
        })
        .unwrap();
}

/// The golden answers of a registry published with `--shard-rows rows`, as
/// CSV rows without the manifest hash (which names the files), and the
/// number of ranges the manifest has.
fn answers_with_shard_rows(rows: &str) -> (Vec<Vec<String>>, usize, String) {
    let f = Fixture::unpublished();
    f.publish(&[
        "publish",
        "--db",
        "reg.db",
        "--keys",
        "keys",
        "--site",
        "site",
        "--shard-rows",
        rows,
    ])
    .ok();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    // And a delta on top: the layer crosses the boundaries as they are.
    f.publish_change(17, &["--shard-rows", rows]);
    f.verifier(&["sync", "site"]).ok();
    let (m, _) = Site::new(&f.path("site")).manifest();
    let out = f.answers();
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let h = r.headers().unwrap().clone();
    let skip = h.iter().position(|c| c == "manifest_sha256").unwrap();
    let answers = r
        .records()
        .map(|rec| {
            rec.unwrap()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect();
    let new = f
        .verifier(&["check", "GBNWR2600017", "--csv"])
        .ok()
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .take(8)
        .collect::<Vec<_>>()
        .join(",");
    (answers, m.ranges.len(), new)
}

#[test]
fn lookup_answers_do_not_depend_on_shard_boundaries() {
    let (one, n1, new1) = answers_with_shard_rows("1");
    let (two, n2, new2) = answers_with_shard_rows("2");
    let (big, n3, new3) = answers_with_shard_rows("1000");
    assert!(n1 > n2 && n2 > n3 && n3 == 1, "ranges: {n1} {n2} {n3}");
    assert_eq!(one, big);
    assert_eq!(two, big);
    assert_eq!(new1, new3);
    assert_eq!(new2, new3);
    assert!(new3.contains("disallow"), "{new3}");
}
