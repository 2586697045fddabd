//! Consent receipts (SPEC.md §13): self-contained, offline proofs of what the
//! registry said. A receipt carries the signed documents (root chain, head,
//! manifest) and, for each answer, the 16-entry chunk(s) of the exact entries
//! around the ISRC and of the prefix entries around its registrant and
//! registrant-year, with RFC 6962 audit paths up to the manifest's state root. Verifying needs nothing but a pinned root: the answer is
//! recomputed with [`crate::lookup::lookup`] and must equal the recorded one.
//!
//! Core module: no I/O. The same format holds one answer or a batch; in a
//! batch, documents, ranges, chunks and policies are stored once.

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
use crate::verify::{self, Expiry};

/// The `format` field of every receipt.
pub const FORMAT: &str = "consentry-receipt-v1";
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
    /// Chunks in the range: ceil(count / 64).
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
        let hl = |v: &[[u8; 32]]| serde_json::Value::Array(v.iter().map(|b| hx(b)).collect());
        serde_json::json!({
            "format": self.format,
            "digest": hx(&self.digest),
            "roots": self.roots.iter().map(|b| hx(b)).collect::<Vec<_>>(),
            "head": hx(&self.head),
            "manifest": hx(&self.manifest),
            "prefixes": {
                "count": self.prefixes.count, "total": self.prefixes.total,
                "path": hl(&self.prefixes.path),
                "hashes": hl(&self.prefixes.hashes),
                "chunks": chunks_json(&self.prefixes.chunks),
            },
            "policies": self.policies.iter().map(|b| hx(b)).collect::<Vec<_>>(),
            "ranges": self.ranges.iter().map(|r| serde_json::json!({
                "index": r.index, "lo": r.lo, "hi": r.hi, "count": r.count, "total": r.total,
                "path": hl(&r.path),
                "hashes": hl(&r.hashes),
                "chunks": chunks_json(&r.chunks),
            })).collect::<Vec<_>>(),
            "answers": self.answers.iter().map(|a| serde_json::json!({
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

// ---- building ------------------------------------------------------------

/// What the local index supplies for one question's range.
#[derive(Debug)]
pub struct RangeHit<'a> {
    pub index: usize,
    /// All chunk hashes of the range (verified against its leaf).
    pub hashes: &'a [[u8; 32]],
    /// Index of the first chunk carried.
    pub first: usize,
    /// The carried chunks' bytes (verified against their hashes), consecutive.
    pub chunks: Vec<&'a [u8]>,
    /// The policies of the exact entries of the key.
    pub policies: Vec<&'a Policy>,
}

#[derive(Debug)]
struct RangeAcc {
    tree: MerkleTree,
    hashes: Vec<[u8; 32]>,
    chunks: BTreeMap<usize, Vec<u8>>,
}

impl RangeAcc {
    /// The carried chunks `need`, with audit paths or, when that is smaller,
    /// with every chunk hash of the tree listed once.
    fn proofs(&self, need: &std::collections::BTreeSet<usize>) -> (Vec<ChunkProof>, Vec<[u8; 32]>) {
        let total = self.hashes.len();
        let depth = usize::BITS - total.saturating_sub(1).leading_zeros();
        let all_hashes = need.len() * depth as usize > total;
        let chunks = need
            .iter()
            .map(|c| ChunkProof {
                path: if all_hashes {
                    Vec::new()
                } else {
                    self.tree.path(*c)
                },
                bytes: ByteBuf::from(self.chunks.get(c).cloned().unwrap_or_default()),
                index: *c as u64,
            })
            .collect();
        let hashes = if all_hashes {
            self.hashes.clone()
        } else {
            Vec::new()
        };
        (chunks, hashes)
    }
}

/// The prefix table as chunks of its entry stream, for proofs.
#[derive(Debug)]
struct PrefixAcc {
    acc: RangeAcc,
    /// `prefix_key` of each entry, in order.
    keys: Vec<u64>,
    /// Policy hash of each entry, in order.
    policies: Vec<[u8; 32]>,
}

/// Collects answers into one receipt (a batch) or one receipt per answer.
#[derive(Debug)]
pub struct Builder {
    roots: Vec<Vec<u8>>,
    head: Vec<u8>,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    prefix: PrefixAcc,
    leaves: MerkleTree,
    ranges: BTreeMap<usize, RangeAcc>,
    policies: BTreeMap<[u8; 32], Vec<u8>>,
    answers: Vec<(AnswerRecord, Option<usize>)>,
}

impl Builder {
    pub fn new(
        roots: Vec<Vec<u8>>,
        head: Vec<u8>,
        manifest_bytes: Vec<u8>,
        manifest: Manifest,
        prefixes: &[Record],
    ) -> Builder {
        let leaves = MerkleTree::new(&leaves_of(&manifest));
        let hashes = prefix_chunk_hashes(prefixes);
        let mut chunks = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for (c, part) in prefixes.chunks(CHUNK).enumerate() {
            let mut bytes = Vec::new();
            for r in part {
                let ph = policy_hash(&r.policy);
                bytes.extend_from_slice(&prefix_key(r.scope).to_be_bytes());
                bytes.extend_from_slice(&r.seq.to_be_bytes());
                bytes.push(r.id.len() as u8);
                bytes.extend_from_slice(r.id.as_bytes());
                bytes.extend_from_slice(&ph);
                policies
                    .entry(ph)
                    .or_insert_with(|| cbor::to_vec(&r.policy));
            }
            chunks.insert(c, bytes);
        }
        let prefix = PrefixAcc {
            acc: RangeAcc {
                tree: MerkleTree::new(&hashes),
                hashes,
                chunks,
            },
            keys: prefixes.iter().map(|r| prefix_key(r.scope)).collect(),
            policies: prefixes.iter().map(|r| policy_hash(&r.policy)).collect(),
        };
        Builder {
            roots,
            head,
            manifest_bytes,
            manifest,
            prefix,
            leaves,
            ranges: BTreeMap::new(),
            policies,
            answers: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Record one answer. `q` is `None` for input that is not an ISRC.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        input: &str,
        use_: Use,
        territory: Option<&str>,
        at: crate::time::Day,
        q: Option<&Question>,
        answer: &Answer,
        hit: Option<RangeHit<'_>>,
    ) {
        let question = QuestionText {
            at: format_date(at),
            use_: use_.name().into(),
            isrc: q.map(|q| q.isrc.to_string()),
            input: input.into(),
            territory: territory.map(str::to_string),
        };
        let mut rec = AnswerRecord {
            range: None,
            answer: AnswerText::of(answer),
            chunks: Vec::new(),
            question,
            prefix_chunks: Vec::new(),
        };
        if let Some(q) = q
            && !self.prefix.keys.is_empty()
        {
            let (t1, t2) = prefix_targets(q.isrc);
            let (s, e) = bracket(&self.prefix.keys, t1, t2);
            rec.prefix_chunks = vec![s as u64, e as u64];
        }
        let mut range = None;
        if let Some(h) = hit {
            let acc = self.ranges.entry(h.index).or_insert_with(|| RangeAcc {
                tree: MerkleTree::new(h.hashes),
                hashes: h.hashes.to_vec(),
                chunks: BTreeMap::new(),
            });
            for (k, c) in h.chunks.iter().enumerate() {
                acc.chunks.entry(h.first + k).or_insert_with(|| c.to_vec());
            }
            for p in h.policies {
                self.policies
                    .entry(policy_hash(p))
                    .or_insert_with(|| cbor::to_vec(p));
            }
            rec.chunks = vec![h.first as u64, (h.first + h.chunks.len()) as u64];
            range = Some(h.index);
        }
        self.answers.push((rec, range));
    }

    /// The receipt holding every answer added so far.
    pub fn finish(&self) -> Receipt {
        self.receipt_for(&(0..self.answers.len()).collect::<Vec<_>>())
    }

    /// One receipt per answer, in order.
    pub fn singles(&self) -> Vec<Receipt> {
        (0..self.answers.len())
            .map(|i| self.receipt_for(&[i]))
            .collect()
    }

    fn receipt_for(&self, which: &[usize]) -> Receipt {
        // The ranges, chunks and policies these answers need.
        let mut need: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();
        let mut need_prefix = std::collections::BTreeSet::new();
        let mut pols: std::collections::BTreeSet<[u8; 32]> = std::collections::BTreeSet::new();
        for &i in which {
            let (rec, range) = &self.answers[i];
            if let ([s, e], Some(isrc)) = (
                rec.prefix_chunks.as_slice(),
                rec.question
                    .isrc
                    .as_deref()
                    .and_then(|s| Isrc::parse(s).ok()),
            ) {
                need_prefix.extend(*s as usize..*e as usize);
                // Policies of the prefix entries that cover the ISRC.
                let (t1, t2) = prefix_targets(isrc);
                let first = (*s as usize) * CHUNK;
                let end = ((*e as usize) * CHUNK).min(self.prefix.keys.len());
                for j in first..end {
                    if self.prefix.keys[j] == t1 || self.prefix.keys[j] == t2 {
                        pols.insert(self.prefix.policies[j]);
                    }
                }
            }
            if let Some(r) = range {
                let set = need.entry(*r).or_default();
                if rec.chunks.len() == 2 {
                    set.extend(rec.chunks[0] as usize..rec.chunks[1] as usize);
                }
                // Policies of the key's exact entries in those chunks.
                if let (Some(acc), Some(isrc)) = (
                    self.ranges.get(r),
                    rec.question
                        .isrc
                        .as_deref()
                        .and_then(|s| Isrc::parse(s).ok()),
                ) {
                    for c in rec.chunks.first().copied().unwrap_or(0)
                        ..rec.chunks.get(1).copied().unwrap_or(0)
                    {
                        if let Some(bytes) = acc.chunks.get(&(c as usize)) {
                            for e in parse_chunk(bytes).unwrap_or_default() {
                                if e.key == isrc.key() {
                                    pols.insert(e.policy);
                                }
                            }
                        }
                    }
                }
            }
        }
        let pos: HashMap<usize, u64> = need
            .keys()
            .enumerate()
            .map(|(p, r)| (*r, p as u64))
            .collect();
        let ranges = need
            .iter()
            .map(|(r, chunks)| {
                let acc = &self.ranges[r];
                let (lo, hi) = self.manifest.range_bounds(*r);
                let (chunks, hashes) = acc.proofs(chunks);
                RangeProof {
                    hi,
                    lo,
                    path: self.leaves.path(r + 1),
                    count: self.manifest.ranges[*r].count,
                    index: *r as u64,
                    total: acc.hashes.len() as u64,
                    chunks,
                    hashes,
                }
            })
            .collect();
        let (pchunks, phashes) = self.prefix.acc.proofs(&need_prefix);
        let answers: Vec<AnswerRecord> = which
            .iter()
            .map(|&i| {
                let (rec, range) = &self.answers[i];
                let mut rec = rec.clone();
                rec.range = range.map(|r| pos[&r]);
                rec
            })
            .collect();
        Receipt {
            head: ByteBuf::from(self.head.clone()),
            roots: self.roots.iter().cloned().map(ByteBuf::from).collect(),
            digest: sha256(&cbor::to_vec(&answers)),
            format: FORMAT.into(),
            ranges,
            answers,
            manifest: ByteBuf::from(self.manifest_bytes.clone()),
            policies: pols
                .iter()
                .filter_map(|h| self.policies.get(h).cloned().map(ByteBuf::from))
                .collect(),
            prefixes: PrefixProof {
                path: if need_prefix.is_empty() && !self.prefix.keys.is_empty() {
                    Vec::new()
                } else {
                    self.leaves.path(0)
                },
                count: self.prefix.keys.len() as u64,
                total: self.prefix.acc.hashes.len() as u64,
                chunks: pchunks,
                hashes: phashes,
            },
        }
    }
}

// ---- verifying -----------------------------------------------------------

/// One parsed entry of a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkEntry {
    pub key: u64,
    pub seq: u64,
    pub id: String,
    pub policy: [u8; 32],
}

/// Parse a chunk's entry stream (no ordering checks).
pub fn parse_chunk(bytes: &[u8]) -> Option<Vec<ChunkEntry>> {
    let mut out = Vec::new();
    let mut s = 0usize;
    // Each iteration consumes at least ENTRY_FIXED bytes.
    while s < bytes.len() {
        if bytes.len() - s < ENTRY_FIXED {
            return None;
        }
        let n = usize::from(bytes[s + 16]);
        let end = s + ENTRY_FIXED + n;
        if end > bytes.len() {
            return None;
        }
        let id = std::str::from_utf8(&bytes[s + 17..s + 17 + n]).ok()?;
        out.push(ChunkEntry {
            key: u64::from_be_bytes(bytes[s..s + 8].try_into().ok()?),
            seq: u64::from_be_bytes(bytes[s + 8..s + 16].try_into().ok()?),
            id: id.to_string(),
            policy: bytes[s + 17 + n..end].try_into().ok()?,
        });
        s = end;
    }
    Some(out)
}

/// A verified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnswer {
    pub input: String,
    pub isrc: Option<String>,
    pub use_: String,
    pub territory: Option<String>,
    pub at: String,
    pub answer: Answer,
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub root_version: u64,
    pub manifest_version: u64,
    pub manifest_sha256: [u8; 32],
    /// Unix seconds, the manifest's `created`.
    pub created: u64,
    pub head_version: u64,
    pub answers: Vec<VerifiedAnswer>,
}

fn invalid(file: &str, d: impl Into<String>) -> crate::error::Rejection {
    reject(file, Code::ReceiptInvalid, d)
}

fn mismatch(file: &str, d: impl Into<String>) -> crate::error::Rejection {
    reject(file, Code::ProofMismatch, d)
}

/// Chunks by index, each parsed into its entries.
type ChunkMap = BTreeMap<u64, Vec<ChunkEntry>>;

/// SPEC.md §13.2 step 7 for one chunked tree (a range, or the prefix table)
/// of `count` entries in `total` chunks: each carried chunk, by its audit path
/// or its place in `hashes`, leads to one MTH of the chunk hashes, which is
/// returned; each holds the right number of entries, strictly increasing by
/// (key, seq), every key accepted by `key_ok`.
fn verify_chunks(
    loc: &str,
    count: u64,
    total: u64,
    chunks: &[ChunkProof],
    hashes: &[[u8; 32]],
    key_ok: impl Fn(u64) -> bool,
) -> VResult<([u8; 32], ChunkMap)> {
    let mut chunk_root: Option<[u8; 32]> = None;
    let listed = !hashes.is_empty();
    if listed {
        if hashes.len() as u64 != total {
            return Err(invalid(loc, "hashes does not list every chunk hash"));
        }
        chunk_root = Some(merkle_root(hashes));
    } else if total == 0 {
        chunk_root = Some(merkle_root(&[]));
    }
    let mut entries = BTreeMap::new();
    let mut prev_chunk: Option<u64> = None;
    for c in chunks {
        let cloc = format!("{loc} chunk {}", c.index);
        if prev_chunk.is_some_and(|x| x >= c.index) || c.index >= total {
            return Err(invalid(
                &cloc,
                "chunk indexes are out of order or out of range",
            ));
        }
        prev_chunk = Some(c.index);
        let h = chunk_hash(&c.bytes);
        let root_here = if listed {
            if !c.path.is_empty() {
                return Err(invalid(
                    &cloc,
                    "a chunk carries a path although all chunk hashes are listed",
                ));
            }
            if hashes[c.index as usize] != h {
                return Err(mismatch(
                    &cloc,
                    "the chunk does not hash to its listed chunk hash",
                ));
            }
            chunk_root
        } else {
            root_from_path(&h, c.index, total, &c.path)
        };
        let Some(rh) = root_here else {
            return Err(mismatch(
                &cloc,
                "the chunk's audit path has the wrong length",
            ));
        };
        if chunk_root.is_some_and(|x| x != rh) {
            return Err(mismatch(
                &cloc,
                "the chunks' audit paths lead to different roots",
            ));
        }
        chunk_root = Some(rh);
        let es = parse_chunk(&c.bytes)
            .ok_or_else(|| mismatch(&cloc, "the chunk is not a whole number of entries"))?;
        let want = if c.index + 1 < total {
            CHUNK as u64
        } else {
            count - (total - 1) * CHUNK as u64
        };
        if es.len() as u64 != want {
            return Err(mismatch(
                &cloc,
                format!("the chunk holds {} entries, not {want}", es.len()),
            ));
        }
        let sorted = es
            .windows(2)
            .all(|w| (w[0].key, w[0].seq) < (w[1].key, w[1].seq));
        if !sorted || es.iter().any(|e| !key_ok(e.key)) {
            return Err(mismatch(
                &cloc,
                "entries are out of order or outside the range",
            ));
        }
        entries.insert(c.index, es);
    }
    let Some(root) = chunk_root else {
        return Err(invalid(loc, "neither chunks nor chunk hashes are carried"));
    };
    Ok((root, entries))
}

/// SPEC.md §13.2 step 8's bracketing: `run` = `[s, e)` names carried chunks
/// of a tree of `total` chunks, and no entry with a key in `[t1, t2]` can lie
/// outside them — the first chunk starts below `t1` (or is chunk 0), the
/// last ends above `t2` (or is the last chunk). Returns `(s, e)`.
fn check_run(
    loc: &str,
    what: &str,
    run: &[u64],
    total: u64,
    chunks: &ChunkMap,
    (t1, t2): (u64, u64),
) -> VResult<(u64, u64)> {
    let (s, e) = match run {
        [s, e] if s < e && *e <= total => (*s, *e),
        [] if total == 0 => (0, 0),
        _ => {
            return Err(invalid(
                loc,
                format!("{what} must be [first, end) within its {total} chunks"),
            ));
        }
    };
    for c in s..e {
        if !chunks.contains_key(&c) {
            return Err(invalid(
                loc,
                format!("{what}: chunk {c} is not in the receipt"),
            ));
        }
    }
    if s > 0 && chunks[&s].first().is_none_or(|x| x.key >= t1) {
        return Err(mismatch(
            loc,
            format!(
                "the neighbours are not adjacent: {what} chunk {s} does not start below the key, so entries of it may precede the proof"
            ),
        ));
    }
    if e < total && chunks[&(e - 1)].last().is_none_or(|x| x.key <= t2) {
        return Err(mismatch(
            loc,
            format!(
                "the neighbours are not adjacent: {what} chunk {} does not end above the key, so entries of it may follow the proof",
                e - 1
            ),
        ));
    }
    Ok((s, e))
}

/// Walk the receipt's roots from the pinned root.
fn root_chain(file: &str, r: &Receipt, pinned: &[u8], limits: &Limits) -> VResult<Root> {
    let pinned_root = verify::verify_pinned_root(&format!("{file}: pinned root"), pinned, limits)?;
    if r.roots.is_empty() {
        return Err(invalid(file, "the receipt carries no root"));
    }
    if r.roots.len() as u64 > limits.max_root_rotations + 1 {
        return Err(invalid(file, "the receipt carries too many roots"));
    }
    // `roots[0]` may be the pinned root's exact bytes; every other root is a
    // rotation, walked as in SPEC.md §7 step 2.
    let skip = usize::from(r.roots[0].as_slice() == pinned);
    let mut carried = r.roots.iter().enumerate().skip(skip).peekable();
    let walk = verify::walk_roots(
        pinned_root,
        r.roots.len() as u64,
        limits,
        |want| {
            let Some((i, b)) = carried.next() else {
                return Ok(None);
            };
            let loc = format!("{file}: roots[{i}]");
            let (_, peek) = verify::parse_root(&loc, b, limits)?;
            let trusted = want - 1;
            if peek.version <= trusted {
                return Err(invalid(
                    &loc,
                    format!(
                        "root version {} is not after the pinned root (version {trusted}); the chain must start at the pinned root",
                        peek.version
                    ),
                ));
            }
            Ok(Some((loc, b.as_slice())))
        },
        |_, _| {},
    )?;
    // The walk ends early only at a root of version u64::MAX, which nothing
    // can follow.
    if let Some((i, _)) = carried.peek() {
        return Err(invalid(
            &format!("{file}: roots[{i}]"),
            format!(
                "follows root version {}, which has no successor",
                walk.root.version
            ),
        ));
    }
    Ok(walk.root)
}

/// Verify a receipt with nothing but a pinned root (the bytes of a root
/// file). Expiry is not checked: a receipt proves what was signed, later.
#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
pub fn verify(file: &str, bytes: &[u8], pinned: &[u8], limits: &Limits) -> VResult<Verified> {
    let r = Receipt::from_bytes(file, bytes)?;
    let root = root_chain(file, &r, pinned, limits)?;

    // The manifest, under the final root's manifest keys.
    let mloc = format!("{file}: manifest");
    let menv = Envelope::parse(&mloc, &r.manifest, limits)?;
    menv.verify(
        &mloc,
        MANIFEST_TYPE,
        &verify::role_keys(&root, Role::Manifest),
        root.role(Role::Manifest).threshold,
        "manifest",
    )?;
    let m: Manifest = cbor::from_slice_canonical(&menv.payload).map_err(|e| {
        reject(
            &mloc,
            Code::MalformedDocument,
            format!("manifest payload is {e}"),
        )
    })?;
    m.check(limits)
        .map_err(|e| reject(&mloc, Code::MalformedDocument, format!("manifest: {e}")))?;
    let msha = sha256(&r.manifest);

    // The head: signed by the head keys, naming this manifest or a later one.
    let hloc = format!("{file}: head");
    let head = verify::verify_head(&root, &hloc, &r.head, 0, Expiry::AllowExpired, limits)?;
    if head.manifest.version < m.version
        || (head.manifest.version == m.version
            && (head.manifest.sha256 != msha || head.manifest.length != r.manifest.len() as u64))
    {
        return Err(invalid(
            &hloc,
            format!(
                "the head names manifest version {} ({}), not version {} or later",
                head.manifest.version,
                hex::encode(&head.manifest.sha256[..8]),
                m.version
            ),
        ));
    }

    // The prefix table: leaf 0, proven by its carried chunks.
    let n_leaves = m.ranges.len() as u64 + 1;
    let pp = &r.prefixes;
    let ploc = format!("{file}: prefixes");
    if pp.count != m.prefixes.count || pp.total != chunk_count(pp.count) {
        return Err(mismatch(
            &ploc,
            "count or total differ from the manifest's prefix table",
        ));
    }
    // No answer needs the prefix table (every input was invalid): nothing
    // of it is carried, not even its path.
    let unused = pp.total > 0 && pp.chunks.is_empty() && pp.hashes.is_empty();
    let mut prefix_chunks = ChunkMap::new();
    if unused {
        if !pp.path.is_empty() {
            return Err(invalid(&ploc, "a path is carried without any chunk"));
        }
    } else {
        if !verify_inclusion(&m.prefix_leaf, 0, n_leaves, &pp.path, &m.state_root) {
            return Err(mismatch(
                &ploc,
                "the prefix leaf's audit path does not lead to the manifest's state root",
            ));
        }
        let (proot, chunks) =
            verify_chunks(&ploc, pp.count, pp.total, &pp.chunks, &pp.hashes, |k| {
                matches!(k % 4, 1 | 2) && k / 4 < crate::isrc::KEY_SPACE
            })?;
        if prefix_leaf_of_root(pp.count, &proot) != m.prefix_leaf {
            return Err(mismatch(
                &ploc,
                "the prefix chunks do not hash to the manifest's prefix leaf (a proof from another manifest, or altered entries)",
            ));
        }
        prefix_chunks = chunks;
    }

    // Policies, each used by some exact entry of a question.
    let mut policies: HashMap<[u8; 32], (Policy, bool)> = HashMap::new();
    let mut prev: Option<[u8; 32]> = None;
    for (i, b) in r.policies.iter().enumerate() {
        let loc = format!("{file}: policies[{i}]");
        let p: Policy = cbor::from_slice_canonical(b)
            .map_err(|e| invalid(&loc, format!("the policy is {e}")))?;
        p.validate()
            .map_err(|e| invalid(&loc, format!("the policy is invalid: {e}")))?;
        let h = sha256(b);
        if prev.is_some_and(|x| x >= h) {
            return Err(invalid(&loc, "policies are not in increasing hash order"));
        }
        prev = Some(h);
        policies.insert(h, (p, false));
    }

    // Ranges and chunks, each up to the state root.
    let mut parsed: Vec<BTreeMap<u64, Vec<ChunkEntry>>> = Vec::with_capacity(r.ranges.len());
    let mut prev_range: Option<u64> = None;
    for (pi, rp) in r.ranges.iter().enumerate() {
        let loc = format!("{file}: ranges[{pi}] (range {})", rp.index);
        if prev_range.is_some_and(|x| x >= rp.index) {
            return Err(invalid(&loc, "ranges are not in increasing index order"));
        }
        prev_range = Some(rp.index);
        let Some(mr) = m.ranges.get(rp.index as usize) else {
            return Err(invalid(&loc, "the manifest has no such range"));
        };
        if m.range_bounds(rp.index as usize) != (rp.lo, rp.hi) || mr.count != rp.count {
            return Err(mismatch(
                &loc,
                "lo, hi or count differ from the manifest's range",
            ));
        }
        if rp.total != chunk_count(rp.count) {
            return Err(invalid(
                &loc,
                format!(
                    "total is {}, a range of {} entries has {}",
                    rp.total,
                    rp.count,
                    chunk_count(rp.count)
                ),
            ));
        }
        if !verify_inclusion(&mr.leaf, rp.index + 1, n_leaves, &rp.path, &m.state_root) {
            return Err(mismatch(
                &loc,
                "the range leaf's audit path does not lead to the manifest's state root",
            ));
        }
        let (root_c, entries) =
            verify_chunks(&loc, rp.count, rp.total, &rp.chunks, &rp.hashes, |k| {
                (rp.lo..rp.hi).contains(&k)
            })?;
        if range_leaf_of_root(rp.lo, rp.hi, rp.count, &root_c) != mr.leaf {
            return Err(mismatch(
                &loc,
                "the chunks do not hash to the manifest's range leaf (a proof from another manifest, or altered entries)",
            ));
        }
        parsed.push(entries);
    }

    // Each answer follows from the recorded entries by the lookup rule.
    let mut answers = Vec::with_capacity(r.answers.len());
    if r.answers.is_empty() {
        return Err(invalid(file, "the receipt holds no answer"));
    }
    for (ai, a) in r.answers.iter().enumerate() {
        let loc = format!("{file}: answers[{ai}] ({})", a.question.input);
        let q = &a.question;
        let use_ = Use::parse(&q.use_).map_err(|e| invalid(&loc, e))?;
        if use_.name() != q.use_ {
            return Err(invalid(&loc, "use is not in canonical spelling"));
        }
        let at = parse_date(&q.at).map_err(|e| invalid(&loc, e))?;
        if format_date(at) != q.at {
            return Err(invalid(&loc, "at is not a canonical date"));
        }
        if let Some(t) = &q.territory
            && parse_territory(t).ok().as_deref() != Some(t.as_str())
        {
            return Err(invalid(
                &loc,
                "territory is not an upper-case ISO 3166-1 code",
            ));
        }
        let computed = match Isrc::parse(&q.input) {
            Err(_) => {
                if q.isrc.is_some()
                    || a.range.is_some()
                    || !a.chunks.is_empty()
                    || !a.prefix_chunks.is_empty()
                {
                    return Err(invalid(
                        &loc,
                        "the input is not an ISRC, yet the receipt names one or a proof",
                    ));
                }
                Answer::invalid_isrc()
            }
            Ok(isrc) => {
                if q.isrc.as_deref() != Some(isrc.to_string().as_str()) {
                    return Err(invalid(
                        &loc,
                        format!("isrc is not the normalized input ({isrc})"),
                    ));
                }
                let key = isrc.key();
                let ri = m.range_of(key) as u64;
                let Some(pos) = a.range else {
                    return Err(invalid(&loc, "no range proof for a valid ISRC"));
                };
                let Some(rp) = r.ranges.get(pos as usize) else {
                    return Err(invalid(&loc, "range points past the receipt's ranges"));
                };
                if rp.index != ri {
                    return Err(mismatch(
                        &loc,
                        format!(
                            "the proof is for range {}; {isrc} lies in range {ri}",
                            rp.index
                        ),
                    ));
                }
                let chunks = &parsed[pos as usize];
                let (s, e) = check_run(&loc, "chunks", &a.chunks, rp.total, chunks, (key, key))?;
                let targets = prefix_targets(isrc);
                let (ps, pe) = check_run(
                    &loc,
                    "prefix_chunks",
                    &a.prefix_chunks,
                    pp.total,
                    &prefix_chunks,
                    targets,
                )?;
                let mut exact = Vec::new();
                let mut prefix = Vec::new();
                let covering = (ps..pe)
                    .flat_map(|c| prefix_chunks[&c].iter())
                    .filter(|x| x.key == targets.0 || x.key == targets.1)
                    .filter_map(|x| Some((prefix_scope(x.key)?, x)));
                for (scope, en) in covering {
                    let Some((p, used)) = policies.get_mut(&en.policy) else {
                        return Err(invalid(
                            &loc,
                            format!("the policy of prefix entry {} is not in the receipt", en.id),
                        ));
                    };
                    *used = true;
                    prefix.push((scope, en.seq, en.id.clone(), p.clone()));
                }
                for c in s..e {
                    for en in chunks[&c].iter().filter(|x| x.key == key) {
                        let Some((p, used)) = policies.get_mut(&en.policy) else {
                            return Err(invalid(
                                &loc,
                                format!("the policy of entry {} is not in the receipt", en.id),
                            ));
                        };
                        *used = true;
                        exact.push((en.seq, en.id.clone(), p.clone()));
                    }
                }
                let question = Question {
                    isrc,
                    use_,
                    territory: q.territory.clone(),
                    at,
                };
                let ex = exact.iter().map(|(seq, id, p)| Entry {
                    scope: Scope::Exact(isrc),
                    seq: *seq,
                    id,
                    policy: p,
                });
                let pre = prefix.iter().map(|(scope, seq, id, p)| Entry {
                    scope: *scope,
                    seq: *seq,
                    id,
                    policy: p,
                });
                crate::lookup::lookup(&question, ex.chain(pre))
            }
        };
        if AnswerText::of(&computed) != a.answer {
            return Err(reject(
                &loc,
                Code::AnswerMismatch,
                format!(
                    "the receipt records {} {} [{}]; the recorded entries give {} {} [{}]",
                    a.answer.decision,
                    a.answer.reason,
                    a.answer.decided_by.join(" "),
                    computed.decision,
                    computed.reason,
                    computed.decided_by.join(" ")
                ),
            ));
        }
        answers.push(VerifiedAnswer {
            input: q.input.clone(),
            isrc: q.isrc.clone(),
            use_: q.use_.clone(),
            territory: q.territory.clone(),
            at: q.at.clone(),
            answer: computed,
        });
    }
    if let Some(i) = r
        .policies
        .iter()
        .position(|b| policies.get(&sha256(b)).is_some_and(|(_, used)| !used))
    {
        return Err(invalid(file, format!("policies[{i}] is used by no answer")));
    }
    if sha256(&cbor::to_vec(&r.answers)) != r.digest {
        return Err(invalid(
            file,
            "the answers do not hash to the receipt's digest: a question or answer was edited",
        ));
    }
    Ok(Verified {
        root_version: root.version,
        manifest_version: m.version,
        manifest_sha256: msha,
        created: m.created,
        head_version: head.version,
        answers,
    })
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
