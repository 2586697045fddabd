//! The registry as the snapshot builder sees it. SQLite implements it today
//! (`db.rs`); PostgreSQL can follow without touching the builder.

use anyhow::Result;
use consentry::Scope;
use consentry::columns::{PolicySet, Rows};
use consentry::declaration::Record;

/// One entry's net change over a window of the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub scope: Scope,
    pub seq: u64,
    /// The entry was live before the window.
    pub existed_before: bool,
    /// The entry is live after the window.
    pub exists_after: bool,
}

/// A publication recorded in the registry: which change-log position a
/// published manifest version reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub version: u64,
    pub change_id: u64,
    pub manifest_sha256: [u8; 32],
}

/// What the snapshot builder needs from a registry.
pub trait Source {
    /// The registry's own clock: the latest `recorded_at` (Unix seconds), or 0
    /// for an empty registry. Publishing uses it instead of the system clock so
    /// the same database gives the same bytes.
    fn registry_time(&self) -> Result<i64>;

    /// The id of the newest change-log row (0 when the log is empty).
    fn last_change(&self) -> Result<u64>;

    /// All live exact-scope entries (ISRC scope), sorted by (key, seq),
    /// column-wise; each distinct policy is interned once into `set`, which the
    /// rows' policy indexes refer to.
    fn live_exact(&self, set: &mut PolicySet) -> Result<Rows>;

    /// All live prefix-scope entries (`CC-XXX`, `CC-XXX-YY`), in any order.
    fn live_prefixes(&self) -> Result<Vec<Record>>;

    /// Net changes of exact-scope entries with change id in `(after, upto]`,
    /// sorted by (key, seq), one per entry.
    fn exact_changes(&self, after: u64, upto: u64) -> Result<Vec<Change>>;

    /// Whether any prefix-scope entry changed in `(after, upto]`.
    fn prefixes_changed(&self, after: u64, upto: u64) -> Result<bool>;

    /// The live entries for the given exact scopes, sorted by (key, seq), each
    /// once, policies interned into `set`; entries that are not live are left
    /// out.
    fn records(&self, keys: &[(Scope, u64)], set: &mut PolicySet) -> Result<Rows>;

    /// [`Source::live_exact`] as owned records (tests and small tools; a
    /// publish never needs a policy per row).
    fn live_exact_records(&self) -> Result<Vec<Record>> {
        let mut set = PolicySet::default();
        let rows = self.live_exact(&mut set)?;
        Ok(to_records(&rows, &set))
    }

    /// The publication recorded for `version`, if any.
    fn publication(&self, version: u64) -> Result<Option<Publication>>;

    /// Record that `version` was published at change-log position `change_id`.
    fn record_publication(&mut self, p: &Publication) -> Result<()>;

    /// Start one consistent read for a whole publish, so an import committing
    /// meanwhile cannot put changes newer than `last_change()` into the base.
    fn begin_snapshot(&mut self) -> Result<()> {
        Ok(())
    }

    /// End the read started by [`Source::begin_snapshot`]: commit what
    /// `record_publication` wrote (`ok`), or roll everything back.
    fn end_snapshot(&mut self, ok: bool) -> Result<()> {
        let _ = ok;
        Ok(())
    }
}

/// Exact-scope rows and their policy table as owned records.
pub fn to_records(rows: &Rows, set: &PolicySet) -> Vec<Record> {
    (0..rows.len())
        .filter_map(|i| {
            Some(Record {
                scope: Scope::Exact(consentry::Isrc::from_key(rows.keys[i])?),
                seq: rows.seqs[i],
                id: rows.id(i).to_string(),
                policy: set.get(rows.pol[i]).clone(),
            })
        })
        .collect()
}
