//! The canonical CBOR encoder is serde's: a struct's fields are written in
//! declaration order, and that order must be the canonical key order of
//! SPEC.md §4.0 (RFC 8949 §4.2.1: bytewise order of the encoded keys, so for
//! these short text keys shorter first, then bytewise) with exactly the keys
//! the SPEC lists. One test per CBOR document type: each encodes a value with
//! every optional field present and every list non-empty, walks every map of
//! the encoding and compares its keys, in order, with the SPEC's table.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use ciborium::Value;
use consentry::cbor;
use consentry::columns::{Columns, KeyColumns, LayerDoc, PrefixDoc, PrefixRow, ShardDoc};
use consentry::docs::{
    FileRef, Head, LayerRef, Manifest, ManifestRef, Range, RoleKeys, Roles, Root,
};
use consentry::envelope::{Envelope, Sig};
use consentry::model::{Declarant, Policy, Terms};
use consentry::receipt::{
    AnswerRecord, AnswerText, ChunkProof, PrefixProof, QuestionText, RangeProof, Receipt,
};
use serde_bytes::ByteBuf;

/// Every map in `v` by its path (`[]` for an array element): its keys in
/// encoded order. Also asserts each map's keys are text and strictly
/// increasing in canonical order.
fn maps(v: &Value, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
    match v {
        Value::Map(entries) => {
            let mut keys = Vec::new();
            let mut prev: Option<Vec<u8>> = None;
            for (k, val) in entries {
                let Value::Text(name) = k else {
                    panic!("{path}: a map key is not text: {k:?}");
                };
                let enc = cbor::to_vec(k);
                if let Some(p) = &prev {
                    assert!(
                        *p < enc,
                        "{path}: key {name:?} comes after {:?} but sorts before it",
                        keys.last().unwrap()
                    );
                }
                prev = Some(enc);
                keys.push(name.clone());
                maps(val, &format!("{path}.{name}"), out);
            }
            if let Some(old) = out.insert(path.to_string(), keys.clone()) {
                assert_eq!(old, keys, "{path}: two maps at one path differ");
            }
        }
        Value::Array(items) => {
            for i in items {
                maps(i, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn check<T: serde::Serialize + serde::de::DeserializeOwned>(
    name: &str,
    doc: &T,
    expected: &[(&str, &[&str])],
) {
    let bytes = cbor::to_vec(doc);
    // The encoding is the canonical one the strict decoder accepts.
    assert!(cbor::from_slice_canonical::<T>(&bytes).is_ok());
    let v: Value = ciborium::de::from_reader(bytes.as_slice()).unwrap();
    let mut got = BTreeMap::new();
    maps(&v, name, &mut got);
    let want: BTreeMap<String, Vec<String>> = expected
        .iter()
        .map(|(p, keys)| {
            (
                (*p).to_string(),
                keys.iter().map(|k| (*k).to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(got, want, "{name}: maps and keys differ from SPEC.md");
}

fn policy() -> Policy {
    Policy {
        from: Some(1),
        uses: [0, 3, 0, 0, 0],
        terms: Some(Terms {
            url: "https://t.example/".into(),
            sha256: Some([1; 32]),
        }),
        until: Some(2),
        revoke: false,
        status: "active".into(),
        exclude: vec!["FR".into()],
        include: vec!["WW".into()],
        declarant: Declarant {
            id: "ddex:P".into(),
            name: "N".into(),
            role: "label".into(),
        },
    }
}

const POLICY: &[&str] = &[
    "from",
    "uses",
    "terms",
    "until",
    "revoke",
    "status",
    "exclude",
    "include",
    "declarant",
];
const TERMS: &[&str] = &["url", "sha256"];
const DECLARANT: &[&str] = &["id", "name", "role"];
const FILEREF: &[&str] = &["count", "length", "sha256", "raw_length"];
const LAYERREF: &[&str] = &["count", "length", "sha256", "version", "raw_length"];
const COLUMNS: &[&str] = &[
    "ids",
    "keys",
    "seqs",
    "count",
    "policy",
    "key_low",
    "policies",
    "id_prefix",
];

fn columns() -> Columns {
    Columns {
        ids: vec![0],
        keys: vec![1],
        seqs: vec![2],
        count: 1,
        policy: vec![0],
        key_low: vec![],
        policies: vec![policy()],
        id_prefix: "D".into(),
    }
}

#[test]
fn envelope_keys_are_in_canonical_order() {
    let env = Envelope {
        payload: vec![0xa0],
        signatures: vec![Sig {
            sig: vec![0; 64],
            keyid: [2; 32],
        }],
        payload_type: "t".into(),
    };
    check(
        "envelope",
        &env,
        &[
            ("envelope", &["payload", "signatures", "payload_type"]),
            ("envelope.signatures[]", &["sig", "keyid"]),
        ],
    );
}

#[test]
fn root_keys_are_in_canonical_order() {
    let rk = RoleKeys {
        keyids: vec![[1; 32]],
        threshold: 1,
    };
    let root = Root {
        keys: vec![[9; 32]],
        roles: Roles {
            head: rk.clone(),
            root: rk.clone(),
            manifest: rk,
        },
        expires: 1,
        version: 1,
        witnesses: None,
    };
    let role: &[&str] = &["keyids", "threshold"];
    check(
        "root",
        &root,
        &[
            ("root", &["keys", "roles", "expires", "version"]),
            ("root.roles", &["head", "root", "manifest"]),
            ("root.roles.head", role),
            ("root.roles.root", role),
            ("root.roles.manifest", role),
        ],
    );
}

#[test]
fn head_keys_are_in_canonical_order() {
    let head = Head {
        expires: 1,
        version: 1,
        manifest: ManifestRef {
            length: 1,
            sha256: [1; 32],
            version: 1,
        },
    };
    check(
        "head",
        &head,
        &[
            ("head", &["expires", "version", "manifest"]),
            ("head.manifest", &["length", "sha256", "version"]),
        ],
    );
}

#[test]
fn manifest_keys_are_in_canonical_order() {
    let fr = FileRef {
        count: 1,
        length: 2,
        sha256: [3; 32],
        raw_length: 4,
    };
    let lr = LayerRef {
        count: 1,
        length: 2,
        sha256: [3; 32],
        version: 2,
        raw_length: 4,
    };
    let m = Manifest {
        base: 1,
        delta: Some(lr.clone()),
        layers: vec![lr],
        ranges: vec![Range {
            lo: 0,
            leaf: [4; 32],
            count: 1,
            shard: fr.clone(),
        }],
        created: 1,
        entries: 2,
        expires: 9,
        version: 2,
        prefixes: fr,
        previous: Some([6; 32]),
        state_root: [0; 32],
        prefix_leaf: [5; 32],
    };
    check(
        "manifest",
        &m,
        &[
            (
                "manifest",
                &[
                    "base",
                    "delta",
                    "layers",
                    "ranges",
                    "created",
                    "entries",
                    "expires",
                    "version",
                    "prefixes",
                    "previous",
                    "state_root",
                    "prefix_leaf",
                ],
            ),
            ("manifest.delta", LAYERREF),
            ("manifest.layers[]", LAYERREF),
            ("manifest.ranges[]", &["lo", "leaf", "count", "shard"]),
            ("manifest.ranges[].shard", FILEREF),
            ("manifest.prefixes", FILEREF),
        ],
    );
}

#[test]
fn shard_keys_are_in_canonical_order() {
    let shard = ShardDoc {
        hi: 2,
        lo: 1,
        rows: columns(),
    };
    check(
        "shard",
        &shard,
        &[
            ("shard", &["hi", "lo", "rows"]),
            ("shard.rows", COLUMNS),
            ("shard.rows.policies[]", POLICY),
            ("shard.rows.policies[].terms", TERMS),
            ("shard.rows.policies[].declarant", DECLARANT),
        ],
    );
}

#[test]
fn layer_keys_are_in_canonical_order() {
    let layer = LayerDoc {
        to: 2,
        dels: KeyColumns {
            keys: vec![1],
            seqs: vec![2],
            count: 1,
            key_low: vec![],
        },
        from: 1,
        puts: columns(),
    };
    check(
        "layer",
        &layer,
        &[
            ("layer", &["to", "dels", "from", "puts"]),
            ("layer.dels", &["keys", "seqs", "count", "key_low"]),
            ("layer.puts", COLUMNS),
            ("layer.puts.policies[]", POLICY),
            ("layer.puts.policies[].terms", TERMS),
            ("layer.puts.policies[].declarant", DECLARANT),
        ],
    );
}

#[test]
fn prefix_table_keys_are_in_canonical_order() {
    let doc = PrefixDoc {
        rows: vec![PrefixRow {
            id: "D1".into(),
            seq: 1,
            scope: "GB-NWR".into(),
            policy: policy(),
        }],
    };
    check(
        "prefixes",
        &doc,
        &[
            ("prefixes", &["rows"]),
            ("prefixes.rows[]", &["id", "seq", "scope", "policy"]),
            ("prefixes.rows[].policy", POLICY),
            ("prefixes.rows[].policy.terms", TERMS),
            ("prefixes.rows[].policy.declarant", DECLARANT),
        ],
    );
}

#[test]
fn policy_keys_are_in_canonical_order() {
    check(
        "policy",
        &policy(),
        &[
            ("policy", POLICY),
            ("policy.terms", TERMS),
            ("policy.declarant", DECLARANT),
        ],
    );
}

#[test]
fn receipt_keys_are_in_canonical_order() {
    let chunk = ChunkProof {
        path: vec![[1; 32]],
        bytes: ByteBuf::from(vec![1]),
        index: 0,
    };
    let r = Receipt {
        head: ByteBuf::from(vec![1]),
        roots: vec![ByteBuf::from(vec![2])],
        digest: [3; 32],
        format: "consentry-receipt-v1".into(),
        ranges: vec![RangeProof {
            hi: 2,
            lo: 1,
            path: vec![[4; 32]],
            count: 1,
            index: 0,
            total: 1,
            chunks: vec![chunk.clone()],
            hashes: vec![[5; 32]],
        }],
        answers: vec![AnswerRecord {
            range: Some(0),
            answer: AnswerText {
                reason: "declared".into(),
                decision: "allow".into(),
                decided_by: vec!["D1".into()],
            },
            chunks: vec![0, 1],
            question: QuestionText {
                at: "2026-11-25".into(),
                use_: "train-ai".into(),
                isrc: Some("GBNWR2500017".into()),
                input: "GBNWR2500017".into(),
                territory: Some("FR".into()),
            },
            prefix_chunks: vec![0, 1],
        }],
        manifest: ByteBuf::from(vec![6]),
        policies: vec![ByteBuf::from(vec![7])],
        prefixes: PrefixProof {
            path: vec![[8; 32]],
            count: 1,
            total: 1,
            chunks: vec![chunk],
            hashes: vec![[9; 32]],
        },
    };
    let chunk_keys: &[&str] = &["path", "bytes", "index"];
    check(
        "receipt",
        &r,
        &[
            (
                "receipt",
                &[
                    "head", "roots", "digest", "format", "ranges", "answers", "manifest",
                    "policies", "prefixes",
                ],
            ),
            (
                "receipt.ranges[]",
                &[
                    "hi", "lo", "path", "count", "index", "total", "chunks", "hashes",
                ],
            ),
            ("receipt.ranges[].chunks[]", chunk_keys),
            (
                "receipt.answers[]",
                &["range", "answer", "chunks", "question", "prefix_chunks"],
            ),
            (
                "receipt.answers[].answer",
                &["reason", "decision", "decided_by"],
            ),
            (
                "receipt.answers[].question",
                &["at", "use", "isrc", "input", "territory"],
            ),
            (
                "receipt.prefixes",
                &["path", "count", "total", "chunks", "hashes"],
            ),
            ("receipt.prefixes.chunks[]", chunk_keys),
        ],
    );
}
