//! The prefix table as the index holds it: block `n_ranges`, chunked and
//! proven like a range (against the manifest's prefix_leaf), so an ISRC's
//! covering entries cost two chunk lookups and opening reads none of it.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One prefix entry, read from the verified prefix block; `policy` indexes
/// the index's policy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRow {
    pub scope: Scope,
    pub seq: u64,
    pub id: String,
    pub policy: u32,
}

/// A prefix entry that covers an ISRC, borrowed from its verified chunk.
#[derive(Debug, Clone)]
pub struct PrefixHit {
    pub(super) scope: Scope,
    pub(super) chunk: Arc<Chunk>,
    pub(super) at: usize,
}

impl PrefixHit {
    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn seq(&self) -> u64 {
        self.chunk.entry(self.at).1
    }

    pub fn id(&self) -> &str {
        self.chunk.entry(self.at).2
    }

    /// The entry's place in the index's policy table.
    pub fn policy(&self) -> u32 {
        self.chunk.entry(self.at).3
    }
}

/// The two prefix scopes that can cover `isrc` (its registrant's and its
/// registrant-year's) with their prefix keys, in table order.
pub(super) fn cover_scopes(isrc: Isrc) -> [(Scope, u64); 2] {
    let k = isrc.key();
    let reg = Scope::registrant_of(k - k % REGISTRANT_SPAN);
    let year = Scope::registrant_year_of(k - k % REGISTRANT_YEAR_SPAN);
    [(reg, prefix_key(reg)), (year, prefix_key(year))]
}

impl Index {
    /// The chunks of the prefix block that hold the entries of prefix key
    /// `pk` (and its neighbours), each proven once and then kept.
    fn prefix_chunks_for(&self, pk: u64) -> Result<Vec<Arc<Chunk>>, Rejection> {
        let i = self.n_ranges;
        let t = self.table(i)?;
        let load = |c: usize| -> Result<Arc<Chunk>, Rejection> {
            if let Some(ch) = self.prefix_chunks.borrow().get(&c) {
                return Ok(ch.clone());
            }
            if c >= t.len() {
                return Err(corrupt(&self.path, format!("block {i} has no chunk {c}")));
            }
            let ch = Arc::new(self.load_chunk(i, &t, c, false)?);
            self.prefix_chunks.borrow_mut().insert(c, ch.clone());
            Ok(ch)
        };
        Ok(self.chunks_around(i, &t, pk, load)?.1)
    }

    /// The entries of the prefix table that cover `isrc` (of its
    /// registrant and of its registrant-year scope), their chunks proven
    /// against the manifest's prefix_leaf.
    pub fn covering(&self, isrc: Isrc) -> Result<Vec<PrefixHit>, Rejection> {
        let mut out = Vec::new();
        for (scope, pk) in cover_scopes(isrc) {
            for c in self.prefix_chunks_for(pk)? {
                for at in 0..c.len() {
                    if c.key(at) == pk {
                        out.push(PrefixHit {
                            scope,
                            chunk: c.clone(),
                            at,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Which prefix entries cover `isrc`, as an opaque pair: two ISRCs with
    /// equal pairs are covered by exactly the same prefix entries (the
    /// prefix keys of its scopes that have entries; `u64::MAX` for one that
    /// has none).
    pub fn cover_key(&self, isrc: Isrc) -> Result<(u64, u64), Rejection> {
        let [(_, k1), (_, k2)] = cover_scopes(isrc);
        let has = |pk: u64| -> Result<u64, Rejection> {
            let chunks = self.prefix_chunks_for(pk)?;
            let any = chunks.iter().any(|c| (0..c.len()).any(|j| c.key(j) == pk));
            Ok(if any { pk } else { u64::MAX })
        };
        Ok((has(k1)?, has(k2)?))
    }

    /// The prefix table (every chunk verified), in table order.
    pub fn prefix_rows(&self) -> Result<Vec<PrefixRow>, Rejection> {
        let i = self.n_ranges;
        let t = self.verified_table(i)?;
        let mut out = Vec::with_capacity(t.len() * CHUNK);
        for c in 0..t.len() {
            let ch = self.load_chunk(i, &t, c, true)?;
            for j in 0..ch.len() {
                let (key, seq, id, policy) = ch.entry(j);
                let scope = prefix_scope(key)
                    .ok_or_else(|| corrupt(&self.path, "a prefix entry has no prefix scope"))?;
                out.push(PrefixRow {
                    scope,
                    seq,
                    id: id.to_string(),
                    policy,
                });
            }
        }
        Ok(out)
    }

    /// The prefix table as records, every policy decoded.
    pub fn prefix_records(&self) -> Result<Vec<Record>, Rejection> {
        self.prefix_rows()?
            .into_iter()
            .map(|r| {
                Ok(Record {
                    scope: r.scope,
                    seq: r.seq,
                    id: r.id,
                    policy: self.policy(r.policy)?.clone(),
                })
            })
            .collect()
    }
}
