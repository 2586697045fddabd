//! Builds the test vectors of SPEC.md §12 (`verifier/tests/vectors/`) from the
//! example registry and the INSECURE keys, and checks the committed ones are
//! exactly what this produces. The verifier's own test
//! (`verifier/tests/vectors.rs`) then checks each vector's expectation.
//! Regenerate after a deliberate format change with
//! `CONSENTRY_REGENERATE_VECTORS=1 cargo test -p consentry-tests vectors`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use consentry::docs::paths;
use consentry_tests::tamper::{self, Site, key};
use consentry_tests::{compare_or_regenerate, insecure_keys_dir, publish, publish_example, tree};

const T: &str = "2026-11-01T00:00:00Z";
const NOW: &str = "2026-11-01T12:00:00Z";

struct Vector {
    name: &'static str,
    expect: &'static str,
    now: &'static str,
    about: &'static str,
    checks: &'static [&'static str],
}

/// The example registry published at T with the INSECURE keys (head valid 72 h).
fn base(dir: &Path) {
    publish_example(dir, T, None);
}

fn change(dir: &Path) {
    let header = consentry::declaration::COLUMNS.join(",");
    std::fs::write(
        dir.join("change.csv"),
        format!("{header}\nD17,17,declare,D2,GBNWR2500017,Northwind Records,ddex:PADPIDA2014021201U,label,,n,,,,,,WW,,,,2026-11-01T01:00:00Z,active\n"),
    )
    .unwrap();
    publish(
        &[
            "import",
            "--db",
            "reg.db",
            "change.csv",
            "--recorded-at",
            "2026-11-01T01:00:00Z",
        ],
        dir,
    )
    .ok();
    let k = insecure_keys_dir();
    publish(
        &[
            "publish",
            "--db",
            "reg.db",
            "--keys",
            k.to_str().unwrap(),
            "--site",
            "site",
            "--now",
            T,
        ],
        dir,
    )
    .ok();
}

fn k(role: &str) -> consentry_publish::keys::KeyPair {
    key(&insecure_keys_dir().join(format!("INSECURE-{role}-1.key")))
}

/// Build one vector's site into `dir/site`.
fn build(name: &str, dir: &Path) {
    base(dir);
    let s = Site::new(&dir.join("site"));
    let (mk, hk, rk) = (k("manifest"), k("head"), k("root"));
    match name {
        "01-valid-base" | "10-head-expired" => {}
        "02-valid-delta" => change(dir),
        "03-valid-root-rotation" => {
            let mut r = s.root(1);
            r.version = 2;
            s.put_root(&r, &[&rk]);
        }
        "11-head-payload-altered" => {
            let mut env = s.envelope(paths::HEAD);
            let last = env.payload.len() - 1;
            env.payload[last] ^= 1;
            s.write(paths::HEAD, &env.to_bytes());
        }
        "12-head-wrong-payload-type" => {
            let h = s.head();
            let env = consentry_publish::keys::sign_envelope(
                "application/vnd.consentry.head+cbor;v=2",
                consentry::cbor::to_vec(&h),
                &[&hk],
            );
            s.write(paths::HEAD, &env.to_bytes());
        }
        "13-head-signed-by-manifest-key" => s.put_head(&s.head(), &[&mk]),
        "14-head-trailing-byte" => {
            let mut b = s.read(paths::HEAD);
            b.push(0);
            s.write(paths::HEAD, &b);
        }
        "20-manifest-hash-mismatch" => {
            let mut h = s.head();
            h.manifest.sha256[0] ^= 1;
            s.put_head(&h, &[&hk]);
        }
        "21-manifest-bad-state-root" => {
            let (mut m, _) = s.manifest();
            m.state_root[0] ^= 1;
            s.put_manifest(&m, &[&mk], &[&hk]);
        }
        "22-manifest-expired" => {
            let (mut m, _) = s.manifest();
            m.expires = m.created + 3600;
            s.put_manifest(&m, &[&mk], &[&hk]);
        }
        "30-shard-flipped-byte" => {
            let (m, _) = s.manifest();
            let rel = paths::shard(&m.ranges[0].shard.sha256);
            let mut b = s.read(&rel);
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            s.write(&rel, &b);
        }
        "31-shard-count-mismatch" => {
            let (mut m, _) = s.manifest();
            m.ranges[0].shard.count += 1;
            m.ranges[0].count += 1;
            m.entries += 1;
            s.put_manifest(&m, &[&mk], &[&hk]);
        }
        "32-shard-two-zstd-frames" => {
            let (mut m, _) = s.manifest();
            let rel = paths::shard(&m.ranges[0].shard.sha256);
            let mut b = s.read(&rel);
            b.extend(consentry::columns::compress(b""));
            let r = s.put_data_bytes(
                "shard",
                &b,
                m.ranges[0].shard.raw_length,
                m.ranges[0].shard.count,
            );
            m.ranges[0].shard = r;
            s.put_manifest(&m, &[&mk], &[&hk]);
        }
        "33-layer-state-mismatch" => {
            change(dir);
            let (mut m, _) = s.manifest();
            m.ranges[0].leaf[0] ^= 1;
            tamper::reroot(&mut m);
            s.put_manifest(&m, &[&mk], &[&hk]);
        }
        "40-root-not-signed-by-old-root" => {
            let other = consentry_publish::keys::write_keypair(
                &dir.join("other-root"),
                consentry::docs::Role::Root,
                [7; 32],
                true,
            )
            .unwrap();
            let mut r = s.root(1);
            r.version = 2;
            r.keys.push(other.public());
            r.keys.sort_by_key(consentry::envelope::key_id);
            r.roles.root.keyids = vec![other.id()];
            s.put_root(&r, &[&other]);
        }
        "41-root-skipped-version" => {
            let mut r = s.root(1);
            r.version = 3;
            s.write(
                &paths::root(2),
                &consentry_publish::keys::sign_envelope(
                    consentry::envelope::ROOT_TYPE,
                    consentry::cbor::to_vec(&r),
                    &[&rk],
                )
                .to_bytes(),
            );
        }
        "42-root-expired" => {
            let mut r = s.root(1);
            r.version = 2;
            r.expires = 1_700_000_000;
            s.put_root(&r, &[&rk]);
        }
        other => panic!("unknown vector {other}"),
    }
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "01-valid-base",
        expect: "valid",
        now: NOW,
        about: "The example registry, version 1, one base shard.",
        checks: &[
            "GBNWR2500017 train-ai allow declared D2",
            "USQZ92400123 train-genai disallow conflict D3 D4",
        ],
    },
    Vector {
        name: "02-valid-delta",
        expect: "valid",
        now: NOW,
        about: "Version 2 = version 1's base plus one delta layer (D17 supersedes D2).",
        checks: &["GBNWR2500017 train-ai disallow declared D17"],
    },
    Vector {
        name: "03-valid-root-rotation",
        expect: "valid",
        now: NOW,
        about: "root/2.cbor (same keys, version 2) signed by root 1's key, which is also root 2's.",
        checks: &["GBNWR2500001 train-ai disallow declared D1"],
    },
    Vector {
        name: "10-head-expired",
        expect: "reject expired",
        now: "2026-11-04T00:00:00Z",
        about: "The head expired at 2026-11-04T00:00:00Z; 'now' is that instant (expiry is at or after).",
        checks: &[],
    },
    Vector {
        name: "11-head-payload-altered",
        expect: "reject threshold_not_met",
        now: NOW,
        about: "One payload byte of head.cbor flipped after signing: the signature covers other bytes.",
        checks: &[],
    },
    Vector {
        name: "12-head-wrong-payload-type",
        expect: "reject wrong_payload_type",
        now: NOW,
        about: "head signed (validly) under payload type application/vnd.consentry.head+cbor;v=2; step 3 accepts only ;v=1.",
        checks: &[],
    },
    Vector {
        name: "13-head-signed-by-manifest-key",
        expect: "reject threshold_not_met",
        now: NOW,
        about: "head signed by the manifest role's key: a key of the wrong role does not count.",
        checks: &[],
    },
    Vector {
        name: "14-head-trailing-byte",
        expect: "reject malformed_envelope",
        now: NOW,
        about: "head.cbor with one byte appended: not canonical CBOR.",
        checks: &[],
    },
    Vector {
        name: "20-manifest-hash-mismatch",
        expect: "reject not_found",
        now: NOW,
        about: "head names a manifest hash no file has (the manifest file name carries the hash).",
        checks: &[],
    },
    Vector {
        name: "21-manifest-bad-state-root",
        expect: "reject malformed_document",
        now: NOW,
        about: "manifest re-signed with a state_root that is not the Merkle root of its leaves.",
        checks: &[],
    },
    Vector {
        name: "22-manifest-expired",
        expect: "reject expired",
        now: NOW,
        about: "manifest re-signed to expire one hour after creation; 'now' is 12 hours after.",
        checks: &[],
    },
    Vector {
        name: "30-shard-flipped-byte",
        expect: "reject hash_mismatch",
        now: NOW,
        about: "one byte of the base shard flipped: its SHA-256 no longer matches the manifest.",
        checks: &[],
    },
    Vector {
        name: "31-shard-count-mismatch",
        expect: "reject count_mismatch",
        now: NOW,
        about: "manifest re-signed claiming one more entry in the shard than it holds.",
        checks: &[],
    },
    Vector {
        name: "32-shard-two-zstd-frames",
        expect: "reject malformed_data",
        now: NOW,
        about: "shard file = the real frame plus an empty second frame, hash re-signed: exactly one frame is allowed.",
        checks: &[],
    },
    Vector {
        name: "33-layer-state-mismatch",
        expect: "reject state_mismatch",
        now: NOW,
        about: "version 2 manifest re-signed with a range leaf the base plus layer do not produce.",
        checks: &[],
    },
    Vector {
        name: "40-root-not-signed-by-old-root",
        expect: "reject threshold_not_met",
        now: NOW,
        about: "root/2.cbor replaces the root key but is signed only by the new key, not root 1's.",
        checks: &[],
    },
    Vector {
        name: "41-root-skipped-version",
        expect: "reject root_version",
        now: NOW,
        about: "root/2.cbor holds version 3 (properly signed): versions must step by exactly one.",
        checks: &[],
    },
    Vector {
        name: "42-root-expired",
        expect: "reject expired",
        now: NOW,
        about: "root/2.cbor is valid but expired (2023-11-14); the final root may not be expired.",
        checks: &[],
    },
];

fn readme(v: &Vector) -> String {
    let mut s = format!(
        "vector: {}\nexpect: {}\nnow: {}\npin: site/root/1.cbor\nabout: {}\n",
        v.name, v.expect, v.now, v.about
    );
    for c in v.checks {
        let _ = writeln!(s, "check: {c}");
    }
    s
}

#[test]
fn test_vectors_are_reproducible() {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/vectors");
    let mut built: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for v in VECTORS {
        let tmp = tempfile::tempdir().unwrap();
        build(v.name, tmp.path());
        for (rel, bytes) in tree(&tmp.path().join("site")) {
            built.insert(format!("{}/site/{rel}", v.name), bytes);
        }
        built.insert(format!("{}/README", v.name), readme(v).into_bytes());
    }
    compare_or_regenerate(&built, &out_dir, "CONSENTRY_REGENERATE_VECTORS");
}
