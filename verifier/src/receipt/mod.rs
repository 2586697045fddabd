//! Consent receipts (SPEC.md §13): self-contained, offline proofs of what the
//! registry said. A receipt carries the signed documents (root chain, head,
//! manifest) and, for each answer, the 16-entry chunk(s) of the exact entries
//! around the ISRC and of the prefix entries around its registrant and
//! registrant-year, with RFC 6962 audit paths up to the manifest's state root. Verifying needs nothing but a pinned root: the answer is
//! recomputed with [`crate::lookup::lookup`] and must equal the recorded one.
//!
//! Core module: no I/O. The same format holds one answer or a batch; in a
//! batch, documents, ranges, chunks and policies are stored once.
//!
//! Two formats share the proofs: the full receipt (v1, §13.1) carries the
//! head and the manifest; the compact receipt (v2, §13.4) replaces them
//! with the witnessed log's cosigned checkpoint, the manifest's log entry
//! and its inclusion proof, so its size no longer grows with the manifest
//! (a few kilobytes at 10^8 records, where a manifest is ~115 KB).
//!
//! `build` assembles a receipt from a verified store's index; `check`
//! verifies one against a pinned root (no store needed); this module holds the
//! format both share.

mod build;
mod check;
pub mod chunk;

pub use build::{Builder, LogProof, RangeHit};
pub use check::{ChunkEntry, Verified, VerifiedAnswer, parse_chunk, verify};

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::cbor;
use crate::declaration::Record;
use crate::docs::{Manifest, Role, Root};
use crate::envelope::{Envelope, MANIFEST_TYPE, sha256};
use crate::error::{Code, VResult, reject};
use crate::isrc::{Isrc, Scope};
use crate::limits::Limits;
use crate::lookup::{Answer, Question};
use crate::model::{Entry, Policy, Use, parse_territory};
use crate::state::{
    CHUNK, ENTRY_FIXED, MerkleTree, chunk_count, chunk_hash, leaves_of, merkle_root, policy_hash,
    prefix_chunk_hashes, prefix_key, prefix_leaf_of_root, prefix_scope, range_leaf_of_root,
    root_from_path, verify_inclusion,
};
use crate::time::{format_date, parse_date};
use crate::tlog::LogEntry;
use crate::verify::{self, Expiry};

/// The `format` field of a full receipt (§13.1).
pub const FORMAT: &str = "consentry-receipt-v1";
/// The `format` field of a compact receipt (§13.4).
pub const FORMAT_COMPACT: &str = "consentry-receipt-v2";
/// Largest receipt file `receipt verify` reads.
pub const MAX_RECEIPT_BYTES: u64 = 4 << 30;

/// A receipt (canonical CBOR; field order is the canonical key order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The head envelope current when the receipt was made (informational).
    pub head: ByteBuf,
    /// Root envelopes, consecutive versions, from the pinned root (or the one
    /// after it) to the root that signs the manifest.
    pub roots: Vec<ByteBuf>,
    /// SHA-256 of the canonical CBOR of `answers`: binds the questions (which
    /// nothing signs) to the receipt, so an edited question is refused. It is
    /// a checksum, not a signature.
    #[serde(with = "crate::cbor::bytes32")]
    pub digest: [u8; 32],
    /// [`FORMAT`].
    pub format: String,
    /// Range proofs, by increasing range index.
    pub ranges: Vec<RangeProof>,
    /// The answers, in the order asked.
    pub answers: Vec<AnswerRecord>,
    /// The manifest envelope the answers come from.
    pub manifest: ByteBuf,
    /// Canonical CBOR of each policy an entry covering a question uses.
    pub policies: Vec<ByteBuf>,
    /// Chunks of the prefix table (leaf 0 of the state root).
    pub prefixes: PrefixProof,
}

/// A compact receipt (SPEC.md §13.4; canonical CBOR, fields in canonical key
/// order): the proofs of a full receipt, anchored in a cosigned checkpoint
/// of the witnessed log instead of a head and a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactReceipt {
    /// The log entry of the manifest the answers come from (§15.1).
    pub entry: LogEntry,
    /// Root envelopes, consecutive versions, from the pinned root (or the
    /// one after it) to the root whose keys signed the checkpoint; empty
    /// when that is the pinned root.
    pub roots: Vec<ByteBuf>,
    #[serde(with = "crate::cbor::bytes32")]
    pub digest: [u8; 32],
    /// [`FORMAT_COMPACT`].
    pub format: String,
    pub ranges: Vec<RangeProof>,
    pub answers: Vec<AnswerRecord>,
    pub policies: Vec<ByteBuf>,
    pub prefixes: PrefixProof,
    /// Audit path of `entry` (leaf `version − 1`) to the checkpoint's root.
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub inclusion: Vec<[u8; 32]>,
    /// The checkpoint note, bytes as served: the log's signature and the
    /// witnesses' cosignatures.
    pub checkpoint: ByteBuf,
}

/// Either receipt format, as read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyReceipt {
    Full(Receipt),
    Compact(CompactReceipt),
}

impl AnyReceipt {
    /// Decode either format by its `format` field, refusing anything but
    /// the canonical encoding of that format.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> VResult<AnyReceipt> {
        #[derive(Deserialize)]
        struct Peek {
            format: String,
        }
        let peek: Option<Peek> = ciborium::de::from_reader(bytes).ok();
        match peek.as_ref().map(|p| p.format.as_str()) {
            Some(FORMAT_COMPACT) => {
                let r: CompactReceipt = cbor::from_slice_canonical(bytes).map_err(|e| {
                    reject(file, Code::ReceiptInvalid, format!("the receipt is {e}"))
                })?;
                Ok(AnyReceipt::Compact(r))
            }
            _ => Receipt::from_bytes(file, bytes).map(AnyReceipt::Full),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            AnyReceipt::Full(r) => r.to_bytes(),
            AnyReceipt::Compact(r) => cbor::to_vec(r),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AnyReceipt::Full(r) => r.to_json(),
            AnyReceipt::Compact(r) => r.to_json(),
        }
    }

    /// The answers, in the order asked.
    pub fn answers(&self) -> &[AnswerRecord] {
        match self {
            AnyReceipt::Full(r) => &r.answers,
            AnyReceipt::Compact(r) => &r.answers,
        }
    }
}

impl CompactReceipt {
    /// The JSON rendering (byte strings as lower-case hex; the checkpoint
    /// as its text).
    pub fn to_json(&self) -> serde_json::Value {
        let hx = |b: &[u8]| serde_json::Value::String(hex::encode(b));
        let mut j = body_json(&self.prefixes, &self.policies, &self.ranges, &self.answers);
        j["format"] = self.format.clone().into();
        j["digest"] = hx(&self.digest);
        j["roots"] = self.roots.iter().map(|b| hx(b)).collect();
        j["checkpoint"] = String::from_utf8_lossy(&self.checkpoint)
            .into_owned()
            .into();
        j["inclusion"] = self.inclusion.iter().map(|b| hx(b)).collect();
        j["entry"] = serde_json::json!({
            "version": self.entry.version,
            "created": self.entry.created,
            "manifest": hx(&self.entry.manifest),
            "state_root": hx(&self.entry.state_root),
            "leaves": self.entry.leaves,
        });
        j
    }
}

/// Leaf 0 of the state root and some chunks of the prefix entry stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixProof {
    /// Audit path of the prefix leaf (leaf 0) to the state root.
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub path: Vec<[u8; 32]>,
    /// Entries in the prefix table.
    pub count: u64,
    /// Chunks in the prefix table: ceil(count / 16).
    pub total: u64,
    /// The chunks carried, by increasing chunk index.
    pub chunks: Vec<ChunkProof>,
    /// Empty, or all `total` chunk hashes (each chunk's path is then empty).
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub hashes: Vec<[u8; 32]>,
}

/// One range of the manifest and some of its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeProof {
    pub hi: u64,
    pub lo: u64,
    /// Audit path of the range leaf (leaf `index + 1`) to the state root.
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub path: Vec<[u8; 32]>,
    /// Entries in the range.
    pub count: u64,
    /// The range's index in the manifest.
    pub index: u64,
    /// Chunks in the range: ceil(count / 16).
    pub total: u64,
    /// The chunks carried, by increasing chunk index.
    pub chunks: Vec<ChunkProof>,
    /// Either empty (each chunk carries its audit path) or all `total` chunk
    /// hashes of the range (each chunk's path is then empty).
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub hashes: Vec<[u8; 32]>,
}

/// One chunk: its entry-stream bytes and its audit path to the range's chunk MTH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkProof {
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub path: Vec<[u8; 32]>,
    pub bytes: ByteBuf,
    pub index: u64,
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRecord {
    /// Position in `ranges` of the key's range; null for an invalid ISRC.
    pub range: Option<u64>,
    pub answer: AnswerText,
    /// `[first, end)` chunk indexes of the range that bracket the key.
    pub chunks: Vec<u64>,
    pub question: QuestionText,
    /// `[first, end)` chunk indexes of the prefix table that bracket the
    /// ISRC's registrant and registrant-year scopes; empty for an invalid
    /// ISRC or an empty prefix table.
    pub prefix_chunks: Vec<u64>,
}

/// The question as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionText {
    /// Day of use, YYYY-MM-DD.
    pub at: String,
    #[serde(rename = "use")]
    pub use_: String,
    /// The normalized ISRC, or null when the input is not one.
    pub isrc: Option<String>,
    /// The ISRC as given.
    pub input: String,
    /// ISO 3166-1 alpha-2, or null for any territory.
    pub territory: Option<String>,
}

/// The recorded answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerText {
    pub reason: String,
    pub decision: String,
    pub decided_by: Vec<String>,
}

impl AnswerText {
    pub fn of(a: &Answer) -> AnswerText {
        AnswerText {
            reason: a.reason.name().into(),
            decision: a.decision.name().into(),
            decided_by: a.decided_by.clone(),
        }
    }
}

impl Receipt {
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::to_vec(self)
    }

    /// Decode, refusing anything but the canonical encoding.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> VResult<Receipt> {
        let r: Receipt = cbor::from_slice_canonical(bytes)
            .map_err(|e| reject(file, Code::ReceiptInvalid, format!("the receipt is {e}")))?;
        if r.format != FORMAT {
            return Err(reject(
                file,
                Code::ReceiptInvalid,
                format!("format is {:?}, expected {FORMAT:?}", r.format),
            ));
        }
        Ok(r)
    }

    /// The JSON rendering (byte strings as lower-case hex).
    pub fn to_json(&self) -> serde_json::Value {
        let hx = |b: &[u8]| serde_json::Value::String(hex::encode(b));
        let mut j = body_json(&self.prefixes, &self.policies, &self.ranges, &self.answers);
        j["format"] = self.format.clone().into();
        j["digest"] = hx(&self.digest);
        j["roots"] = self.roots.iter().map(|b| hx(b)).collect();
        j["head"] = hx(&self.head);
        j["manifest"] = hx(&self.manifest);
        j
    }
}

/// The JSON of the proofs both formats share.
fn body_json(
    prefixes: &PrefixProof,
    policies: &[ByteBuf],
    ranges: &[RangeProof],
    answers: &[AnswerRecord],
) -> serde_json::Value {
    let hx = |b: &[u8]| serde_json::Value::String(hex::encode(b));
    let hl = |v: &[[u8; 32]]| serde_json::Value::Array(v.iter().map(|b| hx(b)).collect());
    serde_json::json!({
        "prefixes": {
            "count": prefixes.count, "total": prefixes.total,
            "path": hl(&prefixes.path),
            "hashes": hl(&prefixes.hashes),
            "chunks": chunks_json(&prefixes.chunks),
        },
        "policies": policies.iter().map(|b| hx(b)).collect::<Vec<_>>(),
        "ranges": ranges.iter().map(|r| serde_json::json!({
            "index": r.index, "lo": r.lo, "hi": r.hi, "count": r.count, "total": r.total,
            "path": hl(&r.path),
            "hashes": hl(&r.hashes),
            "chunks": chunks_json(&r.chunks),
        })).collect::<Vec<_>>(),
        "answers": answers.iter().map(|a| serde_json::json!({
            "question": {
                "input": a.question.input, "isrc": a.question.isrc, "use": a.question.use_,
                "territory": a.question.territory, "at": a.question.at,
            },
            "answer": {
                "decision": a.answer.decision, "reason": a.answer.reason,
                "decided_by": a.answer.decided_by,
            },
            "range": a.range, "chunks": a.chunks, "prefix_chunks": a.prefix_chunks,
        })).collect::<Vec<_>>(),
    })
}

fn chunks_json(chunks: &[ChunkProof]) -> Vec<serde_json::Value> {
    chunks
        .iter()
        .map(|c| {
            serde_json::json!({
                "index": c.index,
                "bytes": hex::encode(&c.bytes),
                "path": c.path.iter().map(hex::encode).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The prefix keys (SPEC.md §6) of the two scopes that can cover `isrc`: its
/// registrant's and its registrant-year's. The first is below the second.
pub fn prefix_targets(isrc: Isrc) -> (u64, u64) {
    let k = isrc.key();
    let reg = Scope::registrant_of(k);
    let year = Scope::registrant_year_of(k);
    (prefix_key(reg), prefix_key(year))
}

/// The run of chunks `[s, e)` of a sorted key list cut into [`CHUNK`]-entry
/// chunks that brackets every key in `[t1, t2]`: the first chunk starts
/// below `t1` (or is chunk 0), the last ends above `t2` (or is the last).
pub fn bracket(keys: &[u64], t1: u64, t2: u64) -> (usize, usize) {
    let total = keys.len().div_ceil(CHUNK);
    let a = keys.partition_point(|&k| k < t1);
    let b = keys.partition_point(|&k| k <= t2);
    let s = if a == 0 { 0 } else { (a - 1) / CHUNK };
    let e = if b == keys.len() {
        total
    } else {
        b / CHUNK + 1
    };
    (s, e)
}

#[cfg(test)]
#[cfg(feature = "store")]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::testsite::{self, NOW, Opts, TestSite, policy, record};
    use crate::time::day_of;

    /// A site whose prefix table spans several chunks: registrants `AAA00` …
    /// with a registrant-wide and a 2025 declaration each, plus one exact
    /// entry under `AAA10`.
    fn site_with_many_prefixes() -> (tempfile::TempDir, Store, Vec<u8>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        let mut recs = Vec::new();
        let mut seq = 0;
        for n in 0..30u64 {
            for scope in [format!("GB-A{n:02}"), format!("GB-A{n:02}-25")] {
                seq += 1;
                recs.push(Record {
                    scope: Scope::parse(&scope).unwrap(),
                    seq,
                    id: format!("P{seq}"),
                    policy: policy(&format!("Label {n}"), n % 2 == 0),
                });
            }
        }
        recs.push(record("GBA102500001", 1000, "X1", policy("Artist", true)));
        site.publish(&recs, &Opts::default());
        let pinned = site.root_bytes(1).to_vec();
        let store = testsite::synced_store(&site, &tmp.path().join("store"));
        (tmp, store, pinned)
    }

    fn receipt_for(store: &Store, isrc: &str) -> Receipt {
        let reader = store.reader(NOW, Expiry::Enforce).unwrap();
        let mut b = reader.receipt_builder().unwrap();
        let q = Question {
            isrc: Isrc::parse(isrc).unwrap(),
            use_: Use::TrainAi,
            territory: None,
            at: day_of(NOW),
        };
        reader
            .answer_into(&mut b, isrc, Use::TrainAi, None, q.at, Some(&q))
            .unwrap();
        b.finish()
    }

    fn reseal(r: &mut Receipt) {
        r.digest = sha256(&cbor::to_vec(&r.answers));
    }

    #[test]
    fn a_single_receipt_carries_a_few_prefix_entries_not_the_table() {
        let (_tmp, store, pinned) = site_with_many_prefixes();
        let r = receipt_for(&store, "GBA152500007");
        assert_eq!(r.prefixes.count, 60);
        assert!(
            r.prefixes.chunks.len() <= 2,
            "{:?}",
            r.answers[0].prefix_chunks
        );
        let v = verify("r", &r.to_bytes(), &pinned, &Limits::default()).unwrap();
        // GB-A15-25 (seq 32, Label 15: disallow) is more specific than GB-A15.
        assert_eq!(v.answers[0].answer.decided_by, vec!["P32".to_string()]);
    }

    #[test]
    fn prefix_run_that_skips_the_covering_entries_is_rejected() {
        let (_tmp, store, pinned) = site_with_many_prefixes();
        // The registrant AAA15 entries sit in chunk 1 (entries 16..32).
        let good = receipt_for(&store, "GBA152500007");
        let far = receipt_for(&store, "GBA002500007");
        // Swap in chunk 0 (a valid chunk of the same table) and claim it is
        // the run: its entries all lie below GB-A15, so it is not adjacent.
        let mut r = good.clone();
        r.prefixes = far.prefixes.clone();
        r.answers[0].prefix_chunks = far.answers[0].prefix_chunks.clone();
        r.answers[0].answer.decision = "unknown".into();
        r.answers[0].answer.reason = "no_record".into();
        r.answers[0].answer.decided_by.clear();
        r.policies.clear();
        reseal(&mut r);
        let e = verify("r", &r.to_bytes(), &pinned, &Limits::default()).unwrap_err();
        assert_eq!(e.code, Code::ProofMismatch, "{e}");
        assert!(e.to_string().contains("neighbours are not adjacent"), "{e}");
    }

    #[test]
    fn prefix_chunk_with_a_dropped_entry_is_rejected() {
        let (_tmp, store, pinned) = site_with_many_prefixes();
        let mut r = receipt_for(&store, "GBA152500007");
        let c = &mut r.prefixes.chunks[0];
        let es = parse_chunk(&c.bytes).unwrap();
        c.bytes = ByteBuf::from(c.bytes[ENTRY_FIXED + es[0].id.len()..].to_vec());
        let e = verify("r", &r.to_bytes(), &pinned, &Limits::default()).unwrap_err();
        assert_eq!(e.code, Code::ProofMismatch, "{e}");
    }

    #[test]
    fn receipt_without_prefix_chunks_for_a_valid_isrc_is_rejected() {
        let (_tmp, store, pinned) = site_with_many_prefixes();
        let mut r = receipt_for(&store, "GBA152500007");
        r.answers[0].prefix_chunks.clear();
        reseal(&mut r);
        let e = verify("r", &r.to_bytes(), &pinned, &Limits::default()).unwrap_err();
        assert_eq!(e.code, Code::ReceiptInvalid, "{e}");
    }
}
