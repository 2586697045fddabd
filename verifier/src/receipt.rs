//! Consent receipts (SPEC.md §13): self-contained, offline proofs of what the
//! registry said. A receipt carries the signed documents (root chain, head,
//! manifest), the prefix table, and for each answer the chunk(s) of the exact
//! entries around the ISRC with RFC 6962 audit paths up to the manifest's
//! state root. Verifying needs nothing but a pinned root: the answer is
//! recomputed with [`crate::lookup::lookup`] and must equal the recorded one.
//!
//! Core module: no I/O. The same format holds one answer or a batch; in a
//! batch, documents, ranges, chunks and policies are stored once.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::cbor;
use crate::columns::decode_prefixes;
use crate::declaration::Record;
use crate::docs::{Manifest, Role, Root};
use crate::envelope::{Envelope, MANIFEST_TYPE, sha256};
use crate::error::{VResult, reject};
use crate::isrc::{Isrc, Scope};
use crate::limits::Limits;
use crate::lookup::{Answer, Question};
use crate::model::{Entry, Policy, Use, parse_territory};
use crate::state::{
    CHUNK, ENTRY_FIXED, MerkleTree, chunk_count, chunk_hash, leaves_of, merkle_root, policy_hash,
    range_leaf_of_root, root_from_path, verify_inclusion,
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
    /// Canonical CBOR of each policy an exact entry of a question uses.
    pub policies: Vec<ByteBuf>,
    /// The compressed prefix table file (leaf 0 of the state root).
    pub prefixes: ByteBuf,
    /// Audit path of leaf 0 (the prefix table's SHA-256) to the state root.
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub prefix_path: Vec<[u8; 32]>,
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
            .map_err(|e| reject(file, "receipt_invalid", format!("the receipt is {e}")))?;
        if r.format != FORMAT {
            return Err(reject(
                file,
                "receipt_invalid",
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
            "prefixes": hx(&self.prefixes),
            "prefix_path": hl(&self.prefix_path),
            "policies": self.policies.iter().map(|b| hx(b)).collect::<Vec<_>>(),
            "ranges": self.ranges.iter().map(|r| serde_json::json!({
                "index": r.index, "lo": r.lo, "hi": r.hi, "count": r.count, "total": r.total,
                "path": hl(&r.path),
                "hashes": hl(&r.hashes),
                "chunks": r.chunks.iter().map(|c| serde_json::json!({
                    "index": c.index, "bytes": hx(&c.bytes), "path": hl(&c.path),
                })).collect::<Vec<_>>(),
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
                "range": a.range, "chunks": a.chunks,
            })).collect::<Vec<_>>(),
        })
    }
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

/// Collects answers into one receipt (a batch) or one receipt per answer.
#[derive(Debug)]
pub struct Builder {
    roots: Vec<Vec<u8>>,
    head: Vec<u8>,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    prefixes: Vec<u8>,
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
        prefixes: Vec<u8>,
    ) -> Builder {
        let leaves = MerkleTree::new(&leaves_of(&manifest));
        Builder {
            roots,
            head,
            manifest_bytes,
            manifest,
            prefixes,
            leaves,
            ranges: BTreeMap::new(),
            policies: BTreeMap::new(),
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
        };
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
        let mut pols: std::collections::BTreeSet<[u8; 32]> = std::collections::BTreeSet::new();
        for &i in which {
            let (rec, range) = &self.answers[i];
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
                let total = acc.hashes.len();
                let depth = usize::BITS - total.saturating_sub(1).leading_zeros();
                let all_hashes = chunks.len() * depth as usize > total;
                RangeProof {
                    hi,
                    lo,
                    path: self.leaves.path(r + 1),
                    count: self.manifest.ranges[*r].count,
                    index: *r as u64,
                    total: total as u64,
                    chunks: chunks
                        .iter()
                        .map(|c| ChunkProof {
                            path: if all_hashes {
                                Vec::new()
                            } else {
                                acc.tree.path(*c)
                            },
                            bytes: ByteBuf::from(acc.chunks.get(c).cloned().unwrap_or_default()),
                            index: *c as u64,
                        })
                        .collect(),
                    hashes: if all_hashes {
                        acc.hashes.clone()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
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
            prefixes: ByteBuf::from(self.prefixes.clone()),
            prefix_path: self.leaves.path(0),
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
    reject(file, "receipt_invalid", d)
}

fn mismatch(file: &str, d: impl Into<String>) -> crate::error::Rejection {
    reject(file, "proof_mismatch", d)
}

/// Walk the receipt's roots from the pinned root.
fn root_chain(file: &str, r: &Receipt, pinned: &[u8], limits: &Limits) -> VResult<Root> {
    let mut root = verify::verify_pinned_root(&format!("{file}: pinned root"), pinned, limits)?;
    if r.roots.is_empty() {
        return Err(invalid(file, "the receipt carries no root"));
    }
    if r.roots.len() as u64 > limits.max_root_rotations + 1 {
        return Err(invalid(file, "the receipt carries too many roots"));
    }
    for (i, b) in r.roots.iter().enumerate() {
        let loc = format!("{file}: roots[{i}]");
        if i == 0 && b.as_slice() == pinned {
            continue;
        }
        let (_, peek) = verify::parse_root(&loc, b, limits)?;
        if peek.version <= root.version {
            return Err(invalid(
                &loc,
                format!(
                    "root version {} is not after the pinned root (version {}); the chain must start at the pinned root",
                    peek.version, root.version
                ),
            ));
        }
        root = verify::verify_next_root(&root, &loc, b, limits)?;
    }
    Ok(root)
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
            "malformed_document",
            format!("manifest payload is {e}"),
        )
    })?;
    m.check(limits)
        .map_err(|e| reject(&mloc, "malformed_document", format!("manifest: {e}")))?;
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

    // The prefix table: committed as leaf 0.
    let n_leaves = m.ranges.len() as u64 + 1;
    let ploc = format!("{file}: prefixes");
    if !verify_inclusion(
        &m.prefixes.sha256,
        0,
        n_leaves,
        &r.prefix_path,
        &m.state_root,
    ) {
        return Err(mismatch(
            &ploc,
            "the prefix table's audit path does not lead to the manifest's state root",
        ));
    }
    let raw = crate::columns::open_file(&ploc, &r.prefixes, &m.prefixes, limits)?;
    let prefixes: Vec<Record> = decode_prefixes(&ploc, &raw, m.prefixes.count, limits)?;

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
        let mut chunk_root: Option<[u8; 32]> = None;
        let listed = !rp.hashes.is_empty();
        if listed {
            if rp.hashes.len() as u64 != rp.total {
                return Err(invalid(&loc, "hashes does not list every chunk hash"));
            }
            chunk_root = Some(merkle_root(&rp.hashes));
        } else if rp.total == 0 {
            chunk_root = Some(merkle_root(&[]));
        }
        let mut entries = BTreeMap::new();
        let mut prev_chunk: Option<u64> = None;
        for c in &rp.chunks {
            let cloc = format!("{loc} chunk {}", c.index);
            if prev_chunk.is_some_and(|x| x >= c.index) || c.index >= rp.total {
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
                        "a chunk carries a path although the range lists all hashes",
                    ));
                }
                if rp.hashes[c.index as usize] != h {
                    return Err(mismatch(
                        &cloc,
                        "the chunk does not hash to its listed chunk hash",
                    ));
                }
                chunk_root
            } else {
                root_from_path(&h, c.index, rp.total, &c.path)
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
            let want = if c.index + 1 < rp.total {
                CHUNK as u64
            } else {
                rp.count - (rp.total - 1) * CHUNK as u64
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
            if !sorted || es.iter().any(|e| e.key < rp.lo || e.key >= rp.hi) {
                return Err(mismatch(
                    &cloc,
                    "entries are out of order or outside the range",
                ));
            }
            entries.insert(c.index, es);
        }
        let Some(root_c) = chunk_root else {
            return Err(invalid(
                &loc,
                "the range carries neither chunks nor chunk hashes",
            ));
        };
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
                if q.isrc.is_some() || a.range.is_some() || !a.chunks.is_empty() {
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
                let (s, e) = match a.chunks.as_slice() {
                    [s, e] if s < e && *e <= rp.total => (*s, *e),
                    [] if rp.total == 0 => (0, 0),
                    _ => {
                        return Err(invalid(
                            &loc,
                            "chunks must be [first, end) within the range",
                        ));
                    }
                };
                for c in s..e {
                    if !chunks.contains_key(&c) {
                        return Err(invalid(&loc, format!("chunk {c} is not in the receipt")));
                    }
                }
                // The carried run brackets the key: nothing of it lies outside.
                if s > 0 && chunks[&s].first().is_none_or(|x| x.key >= key) {
                    return Err(mismatch(
                        &loc,
                        format!(
                            "the neighbours are not adjacent: chunk {s} does not start below {isrc}, so entries of it may precede the proof"
                        ),
                    ));
                }
                if e < rp.total && chunks[&(e - 1)].last().is_none_or(|x| x.key <= key) {
                    return Err(mismatch(
                        &loc,
                        format!(
                            "the neighbours are not adjacent: chunk {} does not end above {isrc}, so entries of it may follow the proof",
                            e - 1
                        ),
                    ));
                }
                let mut exact = Vec::new();
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
                crate::lookup::lookup(&question, ex.chain(prefixes.iter().map(Record::entry)))
            }
        };
        if AnswerText::of(&computed) != a.answer {
            return Err(reject(
                &loc,
                "answer_mismatch",
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
