//! Builds the test vectors of SPEC.md §12 (`verifier/tests/vectors/`) from the
//! example registry and the INSECURE keys, and checks the committed ones are
//! exactly what this produces. The verifier's own test
//! (`verifier/tests/vectors.rs`) then checks each vector's expectation.
//! Regenerate after a deliberate format change with
//! `CONSENTRY_REGENERATE_VECTORS=1 cargo test -p consentry-tests vectors`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use consentry::cbor;
use consentry::columns::{LayerDoc, PrefixDoc, PrefixRow};
use consentry::docs::{LayerRef, paths};
use consentry::model::{MAX_DAY, Terms};
use consentry_tests::tamper::{self, Site, key};
use consentry_tests::{compare_or_regenerate, insecure_keys_dir, publish, publish_example, tree};

const T: &str = "2026-11-01T00:00:00Z";
const NOW: &str = "2026-11-01T12:00:00Z";

struct Vector {
    name: &'static str,
    expect: &'static str,
    /// The §7 step that rejects it ("" for a valid vector).
    step: &'static str,
    now: &'static str,
    about: &'static str,
    checks: &'static [&'static str],
}

/// The example registry published at T with the INSECURE keys (head valid 72 h).
fn base(dir: &Path) {
    publish_example(dir, T, None);
}

fn change(dir: &Path) {
    change_with(dir, &[]);
}

/// Version 2 (D17 supersedes D2), published with `extra` publish flags.
fn change_with(dir: &Path, extra: &[&str]) {
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
    let mut args = vec![
        "publish",
        "--db",
        "reg.db",
        "--keys",
        k.to_str().unwrap(),
        "--site",
        "site",
        "--now",
        T,
    ];
    args.extend_from_slice(extra);
    publish(&args, dir).ok();
}

/// Edit the prefix table's rows and re-sign the manifest naming the new
/// table (its `prefix_leaf` recomputed when the rows still decode, so that
/// only the planted defect can fail). The old table file is removed.
fn edit_prefixes(s: &Site, mk: &KeyPair, hk: &KeyPair, edit: impl FnOnce(&mut Vec<PrefixRow>)) {
    let (mut m, _) = s.manifest();
    let old = paths::prefixes(&m.prefixes.sha256);
    let mut doc: PrefixDoc = cbor::from_slice_canonical(&s.raw(&old)).unwrap();
    edit(&mut doc.rows);
    let raw = cbor::to_vec(&doc);
    let count = doc.rows.len() as u64;
    if let Ok(recs) =
        consentry::columns::decode_prefixes("p", &raw, count, &consentry::limits::Limits::DEFAULT)
    {
        m.prefix_leaf = consentry::state::prefix_leaf(&recs);
    }
    m.prefixes = s.put_data("prefix", &raw, count);
    s.remove(&old);
    tamper::reroot(&mut m);
    s.put_manifest(&m, &[mk], &[hk]);
}

/// The prefix row with id `id`.
fn row<'a>(rows: &'a mut [PrefixRow], id: &str) -> &'a mut PrefixRow {
    rows.iter_mut().find(|r| r.id == id).unwrap()
}

/// A zstd frame of `raw` whose header carries a Dictionary_ID field holding
/// 0 (single segment, 8-byte content size, raw blocks): libzstd decodes it;
/// SPEC.md §5.1 refuses it.
fn frame_with_dictionary_id_zero(raw: &[u8]) -> Vec<u8> {
    let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0b1110_0001, 0x00];
    f.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    let mut blocks = raw.chunks(128 * 1024).peekable();
    while let Some(b) = blocks.next() {
        let header = u32::from(blocks.peek().is_none()) | ((b.len() as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(b);
    }
    f
}

use consentry_publish::keys::KeyPair;

fn k(role: &str) -> KeyPair {
    key(&insecure_keys_dir().join(format!("INSECURE-{role}-1.key")))
}

/// Build one vector's site into `dir/site` (and, where the pinned root is
/// not the site's, `dir/pin`). Returns the site file the rejection must
/// name, where the vector says which one.
#[allow(clippy::too_many_lines)]
fn build(name: &str, dir: &Path) -> Option<String> {
    base(dir);
    let s = Site::new(&dir.join("site"));
    let (mk, hk, rk) = (k("manifest"), k("head"), k("root"));
    let mut file = None;
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
            )
            .unwrap();
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
                .unwrap()
                .to_bytes(),
            );
        }
        "43-root-non-canonical-key" => {
            // y + p for the smallest y whose point is valid and not of small
            // order: decodes to the same point as y, but is not its encoding.
            let alias = (2u8..19)
                .find_map(|y| {
                    let mut c = [0u8; 32];
                    c[0] = y;
                    let k = ed25519_dalek::VerifyingKey::from_bytes(&c).ok()?;
                    (!k.is_weak()).then(|| {
                        let mut a = [0xffu8; 32];
                        a[0] = 0xed + y;
                        a[31] = 0x7f;
                        a
                    })
                })
                .unwrap();
            let mut r = s.root(1);
            r.version = 2;
            r.keys.push(alias);
            r.keys.sort_by_key(consentry::envelope::key_id);
            s.put_root(&r, &[&rk]);
        }
        "42-root-expired" => {
            let mut r = s.root(1);
            r.version = 2;
            r.expires = 1_700_000_000;
            s.put_root(&r, &[&rk]);
        }
        "04-valid-site-root-differs-from-pin" => {
            let pin = dir.join("pin/1.cbor");
            std::fs::create_dir_all(pin.parent().unwrap()).unwrap();
            std::fs::write(&pin, s.read(&paths::root(1))).unwrap();
            let mut r = s.root(1);
            r.expires += 86_400;
            s.put_root(&r, &[&rk]);
        }
        "05-valid-compacted-base-with-delta" => change_with(dir, &["--compact"]),
        "06-valid-shared-decider-id" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D3").id = "D4".into();
        }),
        "07-valid-policy-at-every-bound" => edit_prefixes(&s, &mk, &hk, |rows| {
            let p = &mut row(rows, "D16").policy;
            p.declarant.name = format!("{}x", "é".repeat(127));
            p.declarant.id = format!("isni:{}", "0".repeat(250));
            p.terms = Some(Terms {
                url: format!("https://t.example/{}", "a".repeat(2048 - 18)),
                sha256: None,
            });
            p.from = Some(0);
            p.until = Some(MAX_DAY);
            row(rows, "D5").id = format!("D5-{}", "x".repeat(252));
        }),
        "15-head-too-many-signatures" | "16-head-too-many-signatures-not-canonical" => {
            let mut env = s.envelope(paths::HEAD);
            env.signatures = vec![env.signatures[0].clone(); 33];
            let mut b = env.to_bytes();
            if name.starts_with("16") {
                b.push(0);
            }
            s.write(paths::HEAD, &b);
        }
        "23-manifest-trailing-byte" => {
            let (_, rel) = s.manifest();
            let mut b = s.read(&rel);
            b.push(0);
            s.write(&rel, &b);
        }
        "34-shard-trailing-byte" => {
            let (m, _) = s.manifest();
            let rel = paths::shard(&m.ranges[0].shard.sha256);
            let mut b = s.read(&rel);
            b.push(0);
            s.write(&rel, &b);
            file = Some(rel);
        }
        "35-shard-dictionary-id-zero" => {
            let (mut m, _) = s.manifest();
            let old = paths::shard(&m.ranges[0].shard.sha256);
            let raw = s.raw(&old);
            let f = frame_with_dictionary_id_zero(&raw);
            assert_eq!(
                zstd::decode_all(f.as_slice()).unwrap(),
                raw,
                "libzstd decodes it"
            );
            m.ranges[0].shard =
                s.put_data_bytes("shard", &f, raw.len() as u64, m.ranges[0].shard.count);
            s.remove(&old);
            s.put_manifest(&m, &[&mk], &[&hk]);
            file = Some(paths::shard(&m.ranges[0].shard.sha256));
        }
        "36-prefix-count-over-limit" => {
            let (mut m, _) = s.manifest();
            let over = consentry::limits::Limits::DEFAULT.max_records_per_file + 1;
            m.entries = m.entries - m.prefixes.count + over;
            m.prefixes.count = over;
            s.put_manifest(&m, &[&mk], &[&hk]);
            file = Some(paths::prefixes(&m.prefixes.sha256));
        }
        "37-compacted-delta-wrong-versions" => {
            change_with(dir, &["--compact"]);
            let (mut m, _) = s.manifest();
            let d = m.delta.clone().unwrap();
            assert!(m.layers.is_empty() && m.base == m.version);
            let old = paths::layer(&d.sha256);
            let mut doc: LayerDoc = cbor::from_slice_canonical(&s.raw(&old)).unwrap();
            (doc.from, doc.to) = (doc.from + 1, doc.to + 1);
            let f = s.put_data("layer", &cbor::to_vec(&doc), d.count);
            s.remove(&old);
            m.delta = Some(LayerRef {
                count: f.count,
                length: f.length,
                sha256: f.sha256,
                version: d.version,
                raw_length: f.raw_length,
            });
            s.put_manifest(&m, &[&mk], &[&hk]);
            file = Some(paths::layer(&f.sha256));
        }
        "38-shard-and-prefix-defects" => {
            let (mut m, _) = s.manifest();
            m.prefixes.count += 1;
            m.entries += 1;
            s.put_manifest(&m, &[&mk], &[&hk]);
            let rel = paths::shard(&m.ranges[0].shard.sha256);
            let mut b = s.read(&rel);
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            s.write(&rel, &b);
            file = Some(rel);
        }
        "39-layer-and-prefix-defects" => {
            change(dir);
            let (mut m, _) = s.manifest();
            m.layers[0].count += 1;
            m.delta = Some(m.layers[0].clone());
            s.put_manifest(&m, &[&mk], &[&hk]);
            let rel = paths::prefixes(&m.prefixes.sha256);
            let mut b = s.read(&rel);
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            s.write(&rel, &b);
            file = Some(paths::layer(&m.layers[0].sha256));
        }
        "50-policy-declarant-id-without-scheme" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.declarant.id = "PADPIDA2016080812X".into();
        }),
        "51-policy-declarant-name-256-bytes" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.declarant.name = format!("{}xx", "é".repeat(127));
        }),
        "52-policy-terms-url-not-http" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.terms = Some(Terms {
                url: "ftp://t.example/terms".into(),
                sha256: None,
            });
        }),
        "53-policy-from-before-1970" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.from = Some(-1);
        }),
        "54-policy-empty-include" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.include.clear();
        }),
        "55-prefix-entry-id-256-bytes" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D5").id = format!("D5-{}", "x".repeat(253));
        }),
        "56-policy-terms-url-2049-bytes" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.terms = Some(Terms {
                url: format!("https://t.example/{}", "a".repeat(2049 - 18)),
                sha256: None,
            });
        }),
        "57-policy-until-after-9999" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.until = Some(MAX_DAY + 1);
        }),
        "58-policy-declarant-id-256-bytes" => edit_prefixes(&s, &mk, &hk, |rows| {
            row(rows, "D16").policy.declarant.id = format!("isni:{}", "0".repeat(251));
        }),
        other => panic!("unknown vector {other}"),
    }
    file
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "01-valid-base",
        expect: "valid",
        step: "",
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
        step: "",
        now: NOW,
        about: "Version 2 = version 1's base plus one delta layer (D17 supersedes D2).",
        checks: &["GBNWR2500017 train-ai disallow declared D17"],
    },
    Vector {
        name: "03-valid-root-rotation",
        expect: "valid",
        step: "",
        now: NOW,
        about: "root/2.cbor (same keys, version 2) signed by root 1's key, which is also root 2's.",
        checks: &["GBNWR2500001 train-ai disallow declared D1"],
    },
    Vector {
        name: "04-valid-site-root-differs-from-pin",
        expect: "valid",
        step: "",
        now: NOW,
        about: "pin/1.cbor is the root pinned out of band; the site's root/1.cbor is another validly signed root version 1 (one day longer expiry). Roots at or below the trusted version are never fetched or compared (§7 step 1).",
        checks: &["GBNWR2500001 train-ai disallow declared D1"],
    },
    Vector {
        name: "05-valid-compacted-base-with-delta",
        expect: "valid",
        step: "",
        now: NOW,
        about: "Version 2 published as a new base (base = version = 2, no layers) that still carries the delta from version 1; a verifier fetches and decodes that delta as the layer 1 -> 2 (§4.3).",
        checks: &["GBNWR2500017 train-ai disallow declared D17"],
    },
    Vector {
        name: "06-valid-shared-decider-id",
        expect: "valid",
        step: "",
        now: NOW,
        about: "The prefix entry D3 (US-QZ9-24) is published with the id D4, which the exact entry D4 also carries: both decide, the id is listed once (§8.1).",
        checks: &[
            "USQZ92400123 train-genai disallow conflict D4",
            "USQZ92400500 train-ai allow declared D4",
        ],
    },
    Vector {
        name: "07-valid-policy-at-every-bound",
        expect: "valid",
        step: "",
        now: NOW,
        about: "Prefix entry D16's policy sits on every upper or lower bound of §3.2 (declarant name 255 bytes of UTF-8, party id 255 bytes, terms URL 2048 bytes, from 1970-01-01, until 9999-12-31) and D5's entry id is 255 bytes.",
        checks: &[
            "BRXK40012345 train-ai disallow declared D16",
            "FRAB10012345 train-ai disallow declared D5-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ],
    },
    Vector {
        name: "10-head-expired",
        expect: "reject expired",
        step: "3",
        now: "2026-11-04T00:00:00Z",
        about: "The head expired at 2026-11-04T00:00:00Z; 'now' is that instant (expiry is at or after).",
        checks: &[],
    },
    Vector {
        name: "11-head-payload-altered",
        expect: "reject threshold_not_met",
        step: "3",
        now: NOW,
        about: "One payload byte of head.cbor flipped after signing: the signature covers other bytes.",
        checks: &[],
    },
    Vector {
        name: "12-head-wrong-payload-type",
        expect: "reject wrong_payload_type",
        step: "3",
        now: NOW,
        about: "head signed (validly) under payload type application/vnd.consentry.head+cbor;v=2; step 3 accepts only ;v=1.",
        checks: &[],
    },
    Vector {
        name: "13-head-signed-by-manifest-key",
        expect: "reject threshold_not_met",
        step: "3",
        now: NOW,
        about: "head signed by the manifest role's key: a key of the wrong role does not count.",
        checks: &[],
    },
    Vector {
        name: "14-head-trailing-byte",
        expect: "reject malformed_envelope",
        step: "3",
        now: NOW,
        about: "head.cbor with one byte appended: not canonical CBOR.",
        checks: &[],
    },
    Vector {
        name: "15-head-too-many-signatures",
        expect: "reject too_many_signatures",
        step: "3",
        now: NOW,
        about: "head.cbor is a canonical envelope with 33 copies of its valid signature: more than 32 signatures (§4.0.1).",
        checks: &[],
    },
    Vector {
        name: "16-head-too-many-signatures-not-canonical",
        expect: "reject malformed_envelope",
        step: "3",
        now: NOW,
        about: "head.cbor with 33 signatures and one byte appended: the envelope is decoded canonically before its signatures are counted (§4.0.1).",
        checks: &[],
    },
    Vector {
        name: "20-manifest-hash-mismatch",
        expect: "reject not_found",
        step: "4",
        now: NOW,
        about: "head names a manifest hash no file has (the manifest file name carries the hash).",
        checks: &[],
    },
    Vector {
        name: "21-manifest-bad-state-root",
        expect: "reject malformed_document",
        step: "4",
        now: NOW,
        about: "manifest re-signed with a state_root that is not the Merkle root of its leaves.",
        checks: &[],
    },
    Vector {
        name: "22-manifest-expired",
        expect: "reject expired",
        step: "4",
        now: NOW,
        about: "manifest re-signed to expire one hour after creation; 'now' is 12 hours after.",
        checks: &[],
    },
    Vector {
        name: "23-manifest-trailing-byte",
        expect: "reject limit_exceeded",
        step: "4",
        now: NOW,
        about: "one byte appended to the manifest file the head names: the reader stops at the head's length + 1 (§7 step 4).",
        checks: &[],
    },
    Vector {
        name: "30-shard-flipped-byte",
        expect: "reject hash_mismatch",
        step: "7",
        now: NOW,
        about: "one byte of the base shard flipped: its SHA-256 no longer matches the manifest.",
        checks: &[],
    },
    Vector {
        name: "31-shard-count-mismatch",
        expect: "reject count_mismatch",
        step: "7",
        now: NOW,
        about: "manifest re-signed claiming one more entry in the shard than it holds.",
        checks: &[],
    },
    Vector {
        name: "32-shard-two-zstd-frames",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "shard file = the real frame plus an empty second frame, hash re-signed: exactly one frame is allowed.",
        checks: &[],
    },
    Vector {
        name: "33-layer-state-mismatch",
        expect: "reject state_mismatch",
        step: "9",
        now: NOW,
        about: "version 2 manifest re-signed with a range leaf the base plus layer do not produce.",
        checks: &[],
    },
    Vector {
        name: "34-shard-trailing-byte",
        expect: "reject limit_exceeded",
        step: "7",
        now: NOW,
        about: "one byte appended to the base shard (manifest untouched): the reader stops at the signed length + 1 (§7 step 7).",
        checks: &[],
    },
    Vector {
        name: "35-shard-dictionary-id-zero",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "the shard's zstd frame carries a Dictionary_ID field holding 0 (libzstd decodes it), re-signed: no dictionary id field is allowed (§5.1).",
        checks: &[],
    },
    Vector {
        name: "36-prefix-count-over-limit",
        expect: "reject limit_exceeded",
        step: "7",
        now: NOW,
        about: "manifest re-signed claiming 2^24 + 1 prefix entries: the count is bounded before the table is decoded (§5.5 step 1), not reported as a count mismatch.",
        checks: &[],
    },
    Vector {
        name: "37-compacted-delta-wrong-versions",
        expect: "reject layer_mismatch",
        step: "7",
        now: NOW,
        about: "version 2 is a compacted base carrying a delta whose file goes from 2 to 3, re-signed: the delta must go from version - 1 to version (§4.3, §7 step 7).",
        checks: &[],
    },
    Vector {
        name: "38-shard-and-prefix-defects",
        expect: "reject hash_mismatch",
        step: "7",
        now: NOW,
        about: "two defects: a shard byte flipped (hash_mismatch) and the prefix count re-signed one too high (count_mismatch); shards are checked before the prefix table (§7 step 7), so the shard is reported.",
        checks: &[],
    },
    Vector {
        name: "39-layer-and-prefix-defects",
        expect: "reject count_mismatch",
        step: "7",
        now: NOW,
        about: "two defects: version 2's layer re-signed with one change too many (count_mismatch) and a prefix table byte flipped (hash_mismatch); layers are checked before the prefix table (§7 step 7), so the layer is reported.",
        checks: &[],
    },
    Vector {
        name: "40-root-not-signed-by-old-root",
        expect: "reject threshold_not_met",
        step: "2",
        now: NOW,
        about: "root/2.cbor replaces the root key but is signed only by the new key, not root 1's.",
        checks: &[],
    },
    Vector {
        name: "41-root-skipped-version",
        expect: "reject root_version",
        step: "2",
        now: NOW,
        about: "root/2.cbor holds version 3 (properly signed): versions must step by exactly one.",
        checks: &[],
    },
    Vector {
        name: "42-root-expired",
        expect: "reject expired",
        step: "2",
        now: NOW,
        about: "root/2.cbor is valid but expired (2023-11-14); the final root may not be expired.",
        checks: &[],
    },
    Vector {
        name: "50-policy-declarant-id-without-scheme",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's declarant.id is PADPIDA2016080812X, without a ddex:, ipi: or isni: scheme (§3.2 rule 5). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "51-policy-declarant-name-256-bytes",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's declarant.name is 256 bytes of UTF-8 (129 characters): at most 255 bytes (§3.2 rule 4). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "52-policy-terms-url-not-http",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's terms.url is ftp://t.example/terms: only https:// or http:// (§3.2 rule 7). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "53-policy-from-before-1970",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's from is day -1 (1969-12-31): days run from 1970-01-01 (§3.2 rule 6). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "54-policy-empty-include",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16 is a declaration (not a revocation) with an empty include: it must cover a territory (§3.2 rule 11). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "55-prefix-entry-id-256-bytes",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D5's id is 256 bytes: ids are 1-255 bytes (§5.5 step 4). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "56-policy-terms-url-2049-bytes",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's terms.url is 2049 bytes: at most 2048 (§3.2 rule 7). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "57-policy-until-after-9999",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's until is the day after 9999-12-31 (§3.2 rule 6). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "58-policy-declarant-id-256-bytes",
        expect: "reject malformed_data",
        step: "7",
        now: NOW,
        about: "prefix entry D16's declarant.id is isni: and 251 digits, 256 bytes: at most 255 (§3.2 rule 5). Manifest re-signed.",
        checks: &[],
    },
    Vector {
        name: "43-root-non-canonical-key",
        expect: "reject malformed_document",
        step: "2",
        now: NOW,
        about: "root/2.cbor (signed by root 1's key) also lists a public key whose bytes encode y + p: a valid point, but not its canonical encoding (§4.1 rule 4).",
        checks: &[],
    },
];

fn readme(v: &Vector, file: Option<&str>) -> String {
    let mut s = format!("vector: {}\nexpect: {}\n", v.name, v.expect);
    if !v.step.is_empty() {
        let _ = writeln!(s, "step: {}", v.step);
    }
    if let Some(f) = file {
        let _ = writeln!(s, "file: {f}");
    }
    let pin = if v.name.starts_with("04-") {
        "pin/1.cbor"
    } else {
        "site/root/1.cbor"
    };
    let _ = write!(s, "now: {}\npin: {pin}\nabout: {}\n", v.now, v.about);
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
        assert_eq!(
            v.expect == "valid",
            v.step.is_empty(),
            "{}: a rejected vector names its step",
            v.name
        );
        let tmp = tempfile::tempdir().unwrap();
        let file = build(v.name, tmp.path());
        for sub in ["site", "pin"] {
            for (rel, bytes) in tree(&tmp.path().join(sub)) {
                built.insert(format!("{}/{sub}/{rel}", v.name), bytes);
            }
        }
        built.insert(
            format!("{}/README", v.name),
            readme(v, file.as_deref()).into_bytes(),
        );
    }
    compare_or_regenerate(&built, &out_dir, "CONSENTRY_REGENERATE_VECTORS");
}
