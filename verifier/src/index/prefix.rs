//! The prefix table as a lookup structure: two hash probes per ISRC.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The prefix table, indexed by (specificity, scope start) so each lookup is
/// two hash probes: the ISRC's registrant and its registrant-year.
#[derive(Debug, Default)]
pub struct PrefixTable {
    pub(super) rows: Vec<PrefixRow>,
    /// (specificity, scope start) → the run `start..end` of its entries in `rows`.
    pub(super) by_scope: HashMap<(u8, u64), (u32, u32), FastHash>,
}

/// One prefix entry; `policy` indexes the index's policy table.
#[derive(Debug, Clone)]
pub struct PrefixRow {
    pub scope: Scope,
    pub seq: u64,
    pub id: String,
    pub policy: u32,
}

impl PrefixTable {
    /// The table over `rows`, put in table order (by [`prefix_key`], stably)
    /// so each scope's entries are one run.
    pub fn new(mut rows: Vec<PrefixRow>) -> PrefixTable {
        rows.sort_by_key(|r| prefix_key(r.scope));
        let mut by_scope: HashMap<(u8, u64), (u32, u32), FastHash> =
            HashMap::with_capacity_and_hasher(rows.len(), FastHash::default());
        let mut start = 0;
        // Each pass ends one run: at most rows.len() passes.
        while start < rows.len() {
            let scope = rows[start].scope;
            let end = start + rows[start..].partition_point(|r| r.scope == scope);
            by_scope.insert(
                (scope.specificity(), scope.key_range().0),
                (start as u32, end as u32),
            );
            start = end;
        }
        PrefixTable { rows, by_scope }
    }

    /// From rows keyed by prefix key (SPEC.md §6); `None` if a key is not
    /// `4 · lo + specificity` of a registrant or registrant-year scope.
    pub(super) fn from_rows(rows: &Rows) -> Option<PrefixTable> {
        let mut out = Vec::with_capacity(rows.len());
        for i in 0..rows.len() {
            let scope = prefix_scope(rows.keys[i])?;
            out.push(PrefixRow {
                scope,
                seq: rows.seqs[i],
                id: rows.id(i).to_string(),
                policy: rows.pol[i],
            });
        }
        Some(PrefixTable::new(out))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Which prefix entries cover `isrc`, as an opaque pair (the groups of its
    /// registrant and of its registrant-year; `u32::MAX` for none): two ISRCs
    /// with equal pairs are covered by exactly the same prefix entries.
    pub fn cover_key(&self, isrc: Isrc) -> (u32, u32) {
        let k = isrc.key();
        let group = |p: (u8, u64)| self.by_scope.get(&p).map_or(u32::MAX, |r| r.0);
        (
            group((1, k - k % REGISTRANT_SPAN)),
            group((2, k - k % REGISTRANT_YEAR_SPAN)),
        )
    }

    /// The prefix entries whose scope covers `isrc`.
    pub fn covering(&self, isrc: Isrc) -> impl Iterator<Item = &PrefixRow> {
        let k = isrc.key();
        let probes = [
            (1u8, k - k % REGISTRANT_SPAN),
            (2u8, k - k % REGISTRANT_YEAR_SPAN),
        ];
        probes
            .into_iter()
            .filter_map(|p| self.by_scope.get(&p))
            .flat_map(|&(a, b)| &self.rows[a as usize..b as usize])
            .filter(move |r| !matches!(r.scope, Scope::Exact(_)) && r.scope.covers(isrc))
    }
}
