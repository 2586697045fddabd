//! Verifying a receipt with nothing but a pinned root: the SPEC.md §13 steps.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    /// A full receipt's head version.
    pub head_version: Option<u64>,
    /// A compact receipt's checkpoint: its tree size and the witnesses
    /// whose cosignatures verified (sorted).
    pub checkpoint: Option<(u64, Vec<String>)>,
    pub answers: Vec<VerifiedAnswer>,
}

pub(super) fn invalid(file: &str, d: impl Into<String>) -> crate::error::Rejection {
    reject(file, Code::ReceiptInvalid, d)
}

pub(super) fn mismatch(file: &str, d: impl Into<String>) -> crate::error::Rejection {
    reject(file, Code::ProofMismatch, d)
}

/// Chunks by index, each parsed into its entries.
pub(super) type ChunkMap = BTreeMap<u64, Vec<ChunkEntry>>;

/// SPEC.md §13.2 step 7 for one chunked tree (a range, or the prefix table)
/// of `count` entries in `total` chunks: each carried chunk, by its audit path
/// or its place in `hashes`, leads to one MTH of the chunk hashes, which is
/// returned; each holds the right number of entries, strictly increasing by
/// (key, seq), every key accepted by `key_ok`.
pub(super) fn verify_chunks(
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
pub(super) fn check_run(
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

/// Walk the receipt's roots from the pinned root. A full receipt carries at
/// least one root; a compact one may carry none (the pinned root signed).
pub(super) fn root_chain(
    file: &str,
    roots: &[ByteBuf],
    may_be_empty: bool,
    pinned: &[u8],
    limits: &Limits,
) -> VResult<Root> {
    let pinned_root = verify::verify_pinned_root(&format!("{file}: pinned root"), pinned, limits)?;
    let Some(first) = roots.first() else {
        return if may_be_empty {
            Ok(pinned_root)
        } else {
            Err(invalid(file, "the receipt carries no root"))
        };
    };
    if roots.len() as u64 > limits.max_root_rotations + 1 {
        return Err(invalid(file, "the receipt carries too many roots"));
    }
    // `roots[0]` may be the pinned root's exact bytes; every other root is a
    // rotation, walked as in SPEC.md §7 step 2.
    let skip = usize::from(first.as_slice() == pinned);
    let mut carried = roots.iter().enumerate().skip(skip).peekable();
    let walk = verify::walk_roots(
        pinned_root,
        roots.len() as u64,
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

/// What a receipt's answers are proven against: a manifest (full receipts,
/// whose leaves it lists) or a state root over a number of leaves that a
/// cosigned log entry names (compact receipts, which prove each leaf by its
/// audit path alone).
enum Anchor<'a> {
    Manifest(&'a Manifest),
    State { root: [u8; 32], leaves: u64 },
}

impl Anchor<'_> {
    fn state_root(&self) -> [u8; 32] {
        match self {
            Anchor::Manifest(m) => m.state_root,
            Anchor::State { root, .. } => *root,
        }
    }

    fn leaves(&self) -> u64 {
        match self {
            Anchor::Manifest(m) => m.ranges.len() as u64 + 1,
            Anchor::State { leaves, .. } => *leaves,
        }
    }
}

/// Verify a receipt of either format with nothing but a pinned root (the
/// bytes of a root file). Expiry is not checked: a receipt proves what was
/// signed, later.
pub fn verify(file: &str, bytes: &[u8], pinned: &[u8], limits: &Limits) -> VResult<Verified> {
    match AnyReceipt::from_bytes(file, bytes)? {
        AnyReceipt::Full(r) => verify_full(file, &r, pinned, limits),
        AnyReceipt::Compact(r) => verify_compact(file, &r, pinned, limits),
    }
}

/// SPEC.md §13.2 steps 1–4 (root chain, manifest, head), then the proofs.
fn verify_full(file: &str, r: &Receipt, pinned: &[u8], limits: &Limits) -> VResult<Verified> {
    let root = root_chain(file, &r.roots, false, pinned, limits)?;

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
    let answers = verify_proofs(
        file,
        &Anchor::Manifest(&m),
        &r.prefixes,
        &r.policies,
        &r.ranges,
        &r.answers,
        &r.digest,
    )?;
    Ok(Verified {
        root_version: root.version,
        manifest_version: m.version,
        manifest_sha256: msha,
        created: m.created,
        head_version: Some(head.version),
        checkpoint: None,
        answers,
    })
}

/// SPEC.md §13.4 steps 1–4 (root chain, checkpoint and its cosignatures,
/// the entry's inclusion), then the proofs against the entry's state root.
fn verify_compact(
    file: &str,
    r: &CompactReceipt,
    pinned: &[u8],
    limits: &Limits,
) -> VResult<Verified> {
    let root = root_chain(file, &r.roots, true, pinned, limits)?;
    let cloc = format!("{file}: checkpoint");
    let Some(policy) = &root.witnesses else {
        return Err(invalid(
            &cloc,
            format!(
                "root version {} names no witnesses: a compact receipt needs a witnessed log",
                root.version
            ),
        ));
    };
    if r.checkpoint.len() > crate::note::MAX_NOTE_BYTES {
        return Err(reject(
            &cloc,
            Code::MalformedCheckpoint,
            "the checkpoint is larger than 16 KiB",
        ));
    }
    let (note, cp) = crate::tlog::check_note(&root, policy, &r.checkpoint)
        .map_err(|e| reject(&cloc, e.code, e.detail))?;
    let cos = crate::tlog::witnessed(policy, &note, &cp, &cloc)?;
    let e = &r.entry;
    let eloc = format!("{file}: entry");
    if e.version == 0 || e.version > cp.size {
        return Err(mismatch(
            &eloc,
            format!(
                "manifest version {} is not in the checkpoint's tree of {} versions",
                e.version, cp.size
            ),
        ));
    }
    if !verify_inclusion(&e.hash(), e.version - 1, cp.size, &r.inclusion, &cp.root) {
        return Err(mismatch(
            &eloc,
            "the entry's inclusion proof does not lead to the checkpoint's root",
        ));
    }
    let max_leaves = limits.max_ranges.saturating_add(1);
    if e.leaves < 2 || e.leaves > max_leaves {
        return Err(invalid(
            &eloc,
            format!("{} state leaves is outside 2…{}", e.leaves, max_leaves),
        ));
    }
    // Chunks travel in the compact encoding: decoded to their canonical
    // entry streams (only the canonical encoding is accepted), then proven
    // exactly as a full receipt's.
    let decode = |loc: &str, cs: &mut Vec<ChunkProof>| -> VResult<()> {
        for c in cs {
            let b = super::chunk::decode(&c.bytes).ok_or_else(|| {
                invalid(
                    &format!("{loc} chunk {}", c.index),
                    "not a canonical compact chunk encoding",
                )
            })?;
            c.bytes = ByteBuf::from(b);
        }
        Ok(())
    };
    let mut ranges = r.ranges.clone();
    for (i, rp) in ranges.iter_mut().enumerate() {
        decode(&format!("{file}: ranges[{i}]"), &mut rp.chunks)?;
    }
    let mut prefixes = r.prefixes.clone();
    decode(&format!("{file}: prefixes"), &mut prefixes.chunks)?;
    let answers = verify_proofs(
        file,
        &Anchor::State {
            root: e.state_root,
            leaves: e.leaves,
        },
        &prefixes,
        &r.policies,
        &ranges,
        &r.answers,
        &r.digest,
    )?;
    Ok(Verified {
        root_version: root.version,
        manifest_version: e.version,
        manifest_sha256: e.manifest,
        created: e.created,
        head_version: None,
        checkpoint: Some((cp.size, cos.into_iter().map(|(n, _)| n).collect())),
        answers,
    })
}

/// The proofs both formats carry (§13.2 steps 5–9): the prefix table, the
/// policies, the ranges and each answer by the lookup rule.
#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
fn verify_proofs(
    file: &str,
    anchor: &Anchor<'_>,
    pp: &PrefixProof,
    policy_bytes: &[ByteBuf],
    range_proofs: &[RangeProof],
    answer_records: &[AnswerRecord],
    digest: &[u8; 32],
) -> VResult<Vec<VerifiedAnswer>> {
    let n_leaves = anchor.leaves();
    let state_root = anchor.state_root();
    // The prefix table: leaf 0, proven by its carried chunks.
    let ploc = format!("{file}: prefixes");
    let any_valid = answer_records
        .iter()
        .any(|a| Isrc::parse(&a.question.input).is_ok());
    let mut prefix_chunks = ChunkMap::new();
    match anchor {
        Anchor::Manifest(m) => {
            if pp.count != m.prefixes.count || pp.total != chunk_count(pp.count) {
                return Err(mismatch(
                    &ploc,
                    "count or total differ from the manifest's prefix table",
                ));
            }
            // No answer needs the prefix table (every input was invalid):
            // nothing of it is carried, not even its path.
            let unused = pp.total > 0 && pp.chunks.is_empty() && pp.hashes.is_empty();
            if unused {
                if !pp.path.is_empty() {
                    return Err(invalid(&ploc, "a path is carried without any chunk"));
                }
            } else {
                if !verify_inclusion(&m.prefix_leaf, 0, n_leaves, &pp.path, &state_root) {
                    return Err(mismatch(
                        &ploc,
                        "the prefix leaf's audit path does not lead to the manifest's state root",
                    ));
                }
                let (proot, chunks) = prefix_proof_chunks(&ploc, pp)?;
                if prefix_leaf_of_root(pp.count, &proot) != m.prefix_leaf {
                    return Err(mismatch(
                        &ploc,
                        "the prefix chunks do not hash to the manifest's prefix leaf (a proof from another manifest, or altered entries)",
                    ));
                }
                prefix_chunks = chunks;
            }
        }
        Anchor::State { .. } => {
            if any_valid {
                if pp.total != chunk_count(pp.count) {
                    return Err(invalid(&ploc, "total is not ceil(count / 16)"));
                }
                let (proot, chunks) = prefix_proof_chunks(&ploc, pp)?;
                let leaf = prefix_leaf_of_root(pp.count, &proot);
                if !verify_inclusion(&leaf, 0, n_leaves, &pp.path, &state_root) {
                    return Err(mismatch(
                        &ploc,
                        "the prefix table's leaf and audit path do not lead to the entry's state root (altered entries, or a proof from another snapshot)",
                    ));
                }
                prefix_chunks = chunks;
            } else {
                // Nothing is carried, and says so: an empty proof.
                if pp.count != 0
                    || pp.total != 0
                    || !pp.path.is_empty()
                    || !pp.chunks.is_empty()
                    || !pp.hashes.is_empty()
                {
                    return Err(invalid(
                        &ploc,
                        "no answer names a valid ISRC, so the prefix proof must be empty",
                    ));
                }
            }
        }
    }
    // Policies, each used by some exact entry of a question.
    let mut policies: HashMap<[u8; 32], (Policy, bool)> = HashMap::new();
    let mut prev: Option<[u8; 32]> = None;
    for (i, b) in policy_bytes.iter().enumerate() {
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
    let mut parsed: Vec<BTreeMap<u64, Vec<ChunkEntry>>> = Vec::with_capacity(range_proofs.len());
    let mut prev_range: Option<u64> = None;
    for (pi, rp) in range_proofs.iter().enumerate() {
        let loc = format!("{file}: ranges[{pi}] (range {})", rp.index);
        if prev_range.is_some_and(|x| x >= rp.index) {
            return Err(invalid(&loc, "ranges are not in increasing index order"));
        }
        prev_range = Some(rp.index);
        // The leaf the range's proof must reach: the manifest's (full), or
        // the one its own fields and chunks give (compact).
        let listed = match anchor {
            Anchor::Manifest(m) => {
                let Some(mr) = m.ranges.get(rp.index as usize) else {
                    return Err(invalid(&loc, "the manifest has no such range"));
                };
                if m.range_bounds(rp.index as usize) != (rp.lo, rp.hi) || mr.count != rp.count {
                    return Err(mismatch(
                        &loc,
                        "lo, hi or count differ from the manifest's range",
                    ));
                }
                Some(mr.leaf)
            }
            Anchor::State { .. } => {
                if rp.index.saturating_add(1) >= n_leaves || rp.lo >= rp.hi {
                    return Err(invalid(
                        &loc,
                        "the range index or bounds are impossible for the state",
                    ));
                }
                None
            }
        };
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
        if let Some(leaf) = listed
            && !verify_inclusion(&leaf, rp.index + 1, n_leaves, &rp.path, &state_root)
        {
            return Err(mismatch(
                &loc,
                "the range leaf's audit path does not lead to the manifest's state root",
            ));
        }
        let (root_c, entries) =
            verify_chunks(&loc, rp.count, rp.total, &rp.chunks, &rp.hashes, |k| {
                (rp.lo..rp.hi).contains(&k)
            })?;
        let leaf = range_leaf_of_root(rp.lo, rp.hi, rp.count, &root_c);
        let proven = match listed {
            Some(l) => leaf == l,
            None => verify_inclusion(&leaf, rp.index + 1, n_leaves, &rp.path, &state_root),
        };
        if !proven {
            return Err(mismatch(
                &loc,
                "the chunks do not hash to the range leaf the state root holds (a proof from another snapshot, or altered entries)",
            ));
        }
        parsed.push(entries);
    }

    // Each answer follows from the recorded entries by the lookup rule.
    let mut answers = Vec::with_capacity(answer_records.len());
    if answer_records.is_empty() {
        return Err(invalid(file, "the receipt holds no answer"));
    }
    for (ai, a) in answer_records.iter().enumerate() {
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
                let Some(pos) = a.range else {
                    return Err(invalid(&loc, "no range proof for a valid ISRC"));
                };
                let Some(rp) = range_proofs.get(pos as usize) else {
                    return Err(invalid(&loc, "range points past the receipt's ranges"));
                };
                // Ranges partition the key space: the proven range whose
                // bounds hold the key is the key's range.
                let holds = match anchor {
                    Anchor::Manifest(m) => m.range_of(key) as u64 == rp.index,
                    Anchor::State { .. } => (rp.lo..rp.hi).contains(&key),
                };
                if !holds {
                    return Err(mismatch(
                        &loc,
                        format!(
                            "the proof is for range {} [{}, {}), which does not hold {isrc}",
                            rp.index, rp.lo, rp.hi
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
    if let Some(i) = policy_bytes
        .iter()
        .position(|b| policies.get(&sha256(b)).is_some_and(|(_, used)| !used))
    {
        return Err(invalid(file, format!("policies[{i}] is used by no answer")));
    }
    if &sha256(&cbor::to_vec(&answer_records)) != digest {
        return Err(invalid(
            file,
            "the answers do not hash to the receipt's digest: a question or answer was edited",
        ));
    }
    Ok(answers)
}

/// The prefix table's carried chunks (§13.2 step 7 with prefix keys: every
/// key k with k mod 4 ∈ {1, 2} and k div 4 < `KEY_SPACE`).
fn prefix_proof_chunks(loc: &str, pp: &PrefixProof) -> VResult<([u8; 32], ChunkMap)> {
    verify_chunks(loc, pp.count, pp.total, &pp.chunks, &pp.hashes, |k| {
        matches!(k % 4, 1 | 2) && k / 4 < crate::isrc::KEY_SPACE
    })
}
