//! Building receipts from what a verified store's index supplies.

#[allow(clippy::wildcard_imports)]
use super::*;

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
pub(super) struct RangeAcc {
    pub(super) tree: MerkleTree,
    pub(super) hashes: Vec<[u8; 32]>,
    pub(super) chunks: BTreeMap<usize, Vec<u8>>,
}

impl RangeAcc {
    /// The carried chunks `need`, with audit paths or, when that is smaller,
    /// with every chunk hash of the tree listed once.
    pub(super) fn proofs(
        &self,
        need: &std::collections::BTreeSet<usize>,
    ) -> (Vec<ChunkProof>, Vec<[u8; 32]>) {
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
pub(super) struct PrefixAcc {
    pub(super) acc: RangeAcc,
    /// `prefix_key` of each entry, in order.
    pub(super) keys: Vec<u64>,
    /// Policy hash of each entry, in order.
    pub(super) policies: Vec<[u8; 32]>,
}

/// What a compact receipt (§13.4) needs from the store's witnessed log.
#[derive(Debug, Clone)]
pub struct LogProof {
    /// The store's checkpoint note, as verified by sync.
    pub checkpoint: Vec<u8>,
    /// The log entry of the builder's manifest.
    pub entry: LogEntry,
    /// Audit path of the entry to the checkpoint's root.
    pub inclusion: Vec<[u8; 32]>,
}

/// The proofs both receipt formats carry, for some answers.
struct Parts {
    ranges: Vec<RangeProof>,
    answers: Vec<AnswerRecord>,
    policies: Vec<ByteBuf>,
    prefixes: PrefixProof,
}

/// Collects answers into one receipt (a batch) or one receipt per answer.
#[derive(Debug)]
pub struct Builder {
    pub(super) roots: Vec<Vec<u8>>,
    pub(super) head: Vec<u8>,
    pub(super) manifest_bytes: Vec<u8>,
    pub(super) manifest: Manifest,
    pub(super) prefix: PrefixAcc,
    pub(super) leaves: MerkleTree,
    pub(super) ranges: BTreeMap<usize, RangeAcc>,
    pub(super) policies: BTreeMap<[u8; 32], Vec<u8>>,
    pub(super) answers: Vec<(AnswerRecord, Option<usize>)>,
    pub(super) log: Option<LogProof>,
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
            log: None,
        }
    }

    /// Allow compact receipts: the store's witnessed log covers the
    /// manifest (`log.entry` is its entry).
    #[must_use]
    pub fn with_log(mut self, log: LogProof) -> Builder {
        self.log = Some(log);
        self
    }

    /// Whether compact receipts can be made (the store has a witnessed log).
    pub fn can_compact(&self) -> bool {
        self.log.is_some()
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

    /// The compact receipt holding every answer added so far; `None`
    /// without a witnessed log ([`Builder::with_log`]).
    pub fn finish_compact(&self) -> Option<CompactReceipt> {
        self.compact_for(&(0..self.answers.len()).collect::<Vec<_>>())
    }

    /// One compact receipt per answer, in order; `None` without a log.
    pub fn singles_compact(&self) -> Option<Vec<CompactReceipt>> {
        (0..self.answers.len())
            .map(|i| self.compact_for(&[i]))
            .collect()
    }

    /// Every answer as receipts of the chosen format: one batch, or one
    /// per answer (`singles`).
    pub fn build(&self, compact: bool, singles: bool) -> Option<Vec<AnyReceipt>> {
        Some(match (compact, singles) {
            (false, false) => vec![AnyReceipt::Full(self.finish())],
            (false, true) => self.singles().into_iter().map(AnyReceipt::Full).collect(),
            (true, false) => vec![AnyReceipt::Compact(self.finish_compact()?)],
            (true, true) => self
                .singles_compact()?
                .into_iter()
                .map(AnyReceipt::Compact)
                .collect(),
        })
    }

    fn compact_for(&self, which: &[usize]) -> Option<CompactReceipt> {
        let log = self.log.as_ref()?;
        let mut p = self.parts(which);
        // Nothing of the prefix table is carried when no answer names a
        // valid ISRC; a compact receipt then says so with an empty proof
        // (its count is not otherwise proven).
        if which
            .iter()
            .all(|&i| self.answers[i].0.question.isrc.is_none())
        {
            p.prefixes = PrefixProof {
                path: Vec::new(),
                count: 0,
                total: 0,
                chunks: Vec::new(),
                hashes: Vec::new(),
            };
        }
        // Chunks in the compact encoding (§13.4): the same entries, each
        // distinct policy hash once, keys as deltas.
        let compact = |cs: &mut Vec<ChunkProof>| {
            for c in cs {
                if let Some(b) = super::chunk::encode(&c.bytes) {
                    c.bytes = ByteBuf::from(b);
                }
            }
        };
        for r in &mut p.ranges {
            compact(&mut r.chunks);
        }
        compact(&mut p.prefixes.chunks);
        Some(CompactReceipt {
            entry: log.entry,
            // The pinned root itself is not carried: the verifier has it.
            roots: self
                .roots
                .iter()
                .skip(1)
                .cloned()
                .map(ByteBuf::from)
                .collect(),
            digest: sha256(&cbor::to_vec(&p.answers)),
            format: FORMAT_COMPACT.into(),
            ranges: p.ranges,
            answers: p.answers,
            policies: p.policies,
            prefixes: p.prefixes,
            inclusion: log.inclusion.clone(),
            checkpoint: ByteBuf::from(log.checkpoint.clone()),
        })
    }

    pub(super) fn receipt_for(&self, which: &[usize]) -> Receipt {
        let p = self.parts(which);
        Receipt {
            head: ByteBuf::from(self.head.clone()),
            roots: self.roots.iter().cloned().map(ByteBuf::from).collect(),
            digest: sha256(&cbor::to_vec(&p.answers)),
            format: FORMAT.into(),
            ranges: p.ranges,
            answers: p.answers,
            manifest: ByteBuf::from(self.manifest_bytes.clone()),
            policies: p.policies,
            prefixes: p.prefixes,
        }
    }

    fn parts(&self, which: &[usize]) -> Parts {
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
        Parts {
            ranges,
            answers,
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
