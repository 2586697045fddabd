//! The registry behind `--db`: SQLite (a file path, [`crate::db`]) or
//! PostgreSQL (a `postgres://` URL, [`crate::pg`]).
//!
//! One set of registry rules runs over both: import planning
//! (`import::plan`), [`apply`] (which declarations become live, which stop
//! being live, what the change log records, in which order), churn, and the
//! change-log fold ([`fold_changes`]). A backend supplies only storage
//! primitives: point reads, [`Backend::entries`], and
//! [`Backend::write_plan`], which writes a [`WritePlan`] this module built.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use consentry::Scope;
use consentry::declaration::Declaration;
use consentry::model::{Policy, Use};
use consentry::time::format_date;

use crate::db::{Batch, BulkWriter, Counts, Db};
use crate::pg::PgDb;
use crate::source::{Change, Source};

/// What a live-set change did to one entry, as the change log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// An entry became live.
    Insert,
    /// A live entry was superseded or revoked.
    Delete,
    /// A live entry's policy changed (its status).
    Update,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Delete => "delete",
            ChangeKind::Update => "update",
        }
    }

    pub fn parse(s: &str) -> Result<ChangeKind> {
        match s {
            "insert" => Ok(ChangeKind::Insert),
            "delete" => Ok(ChangeKind::Delete),
            "update" => Ok(ChangeKind::Update),
            other => bail!("corrupt registry database: change kind `{other}`"),
        }
    }
}

/// Where a recorded declaration sits: what [`apply`] needs to know about a
/// declaration it updates or retires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub scope_lo: u64,
    pub seq: u64,
    pub exact: bool,
    pub live: bool,
}

/// One change-log row, before the backend numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRow<'a> {
    pub id: &'a str,
    pub scope_lo: u64,
    pub seq: u64,
    pub exact: bool,
    pub kind: ChangeKind,
}

/// Everything one [`apply`] writes, decided before anything is written. A
/// backend writes it in one transaction (or savepoint), numbering `log` in
/// order after the newest change id.
#[derive(Debug, Default)]
pub struct WritePlan<'a> {
    pub recorded_at: i64,
    /// Recorded declarations whose status (and so policy) changed.
    pub status: Vec<&'a Declaration>,
    /// New declarations in `seq` order, with the id of the declaration of
    /// the same batch that supersedes them (then they are written not live).
    pub inserts: Vec<(&'a Declaration, Option<&'a str>)>,
    /// Recorded declarations that stop being live: `(id, superseded_by)`.
    pub retire: Vec<(&'a str, &'a str)>,
    /// The change log rows, in change-id order.
    pub log: Vec<LogRow<'a>>,
    /// Whether the registry clock moves to `recorded_at`.
    pub stamped: bool,
}

/// The stored columns of one declaration row, computed once for either
/// backend from the declaration (the policy blob is the source of truth; the
/// other columns are for people and queries).
#[derive(Debug)]
pub struct RowFields<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub action: &'static str,
    pub supersedes: Option<&'a str>,
    pub scope: String,
    pub scope_lo: u64,
    pub specificity: u8,
    pub exact: bool,
    pub declarant_id: &'a str,
    pub declarant_name: &'a str,
    pub declarant_role: &'a str,
    /// `all_use`, `train_ai`, `train_genai`, `ai_use`, `search`.
    pub uses: [Option<&'static str>; 5],
    pub policy_url: Option<&'a str>,
    pub policy_sha256: Option<String>,
    pub territories_include: String,
    pub territories_exclude: String,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub declared_at: i64,
    pub status: &'a str,
}

impl<'a> RowFields<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &'a str,
        seq: u64,
        action: consentry::declaration::Action,
        supersedes: Option<&'a str>,
        scope: Scope,
        declared_at: i64,
        p: &'a Policy,
    ) -> RowFields<'a> {
        let mut uses = [None; 5];
        for u in Use::ALL {
            uses[u.index()] = crate::db::letter(p.uses[u.index()]);
        }
        RowFields {
            id,
            seq,
            action: match action {
                consentry::declaration::Action::Declare => "declare",
                consentry::declaration::Action::Revoke => "revoke",
            },
            supersedes,
            scope: scope.canonical(),
            scope_lo: scope.key_range().0,
            specificity: scope.specificity(),
            exact: matches!(scope, Scope::Exact(_)),
            declarant_id: &p.declarant.id,
            declarant_name: &p.declarant.name,
            declarant_role: &p.declarant.role,
            uses,
            policy_url: p.terms.as_ref().map(|t| t.url.as_str()),
            policy_sha256: p.terms.as_ref().and_then(|t| t.sha256).map(hex::encode),
            territories_include: p.include.join(" "),
            territories_exclude: p.exclude.join(" "),
            valid_from: p.from.map(format_date),
            valid_until: p.until.map(format_date),
            declared_at,
            status: &p.status,
        }
    }

    pub fn of(d: &'a Declaration) -> RowFields<'a> {
        RowFields::new(
            &d.id,
            d.seq,
            d.action,
            d.supersedes.as_deref(),
            d.scope,
            d.declared_at,
            &d.policy,
        )
    }
}

/// The storage a registry backend provides. Object safe: the CLI holds a
/// `&mut dyn Backend` whichever `--db` it was given.
pub trait Backend: Source {
    /// The largest `seq` recorded, or 0 for an empty registry.
    fn max_seq(&self) -> Result<u64>;
    /// The declaration with this id, if the registry has it.
    fn declaration(&self, id: &str) -> Result<Option<Declaration>>;
    /// The recorded declarations among `ids` (one round trip where the
    /// backend is a server).
    fn declarations(&self, ids: &[&str]) -> Result<HashMap<String, Declaration>> {
        let mut out = HashMap::new();
        for id in ids {
            if let Some(d) = self.declaration(id)? {
                out.insert(d.id.clone(), d);
            }
        }
        Ok(out)
    }
    /// The declarations that supersede or revoke `id`, in `seq` order.
    fn superseding(&self, id: &str) -> Result<Vec<Declaration>>;
    /// Every declaration ever recorded, in `seq` order.
    fn all_declarations(&self) -> Result<Vec<Declaration>>;
    /// The live exact-scope declaration with this seq, if there is one.
    fn live_exact_by_seq(&self, seq: u64) -> Result<Option<Declaration>>;
    /// The largest key of a live exact-scope entry in `[lo, hi)`.
    fn max_live_exact_key(&self, lo: u64, hi: u64) -> Result<Option<u64>>;
    /// Row counts for reports.
    fn counts(&self) -> Result<Counts>;
    /// The change log in change-id order: `(change_id, declaration id,
    /// kind)` (audits and tests: commit order is change-id order).
    fn change_log(&self) -> Result<Vec<(u64, String, ChangeKind)>>;
    /// A value from the `meta` table, as text.
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Where the recorded declarations among `ids` sit.
    fn entries(&self, ids: &[&str]) -> Result<HashMap<String, Entry>>;
    /// Write a plan built by [`apply`], all or nothing.
    fn write_plan(&mut self, plan: &WritePlan<'_>) -> Result<()>;
    /// Start the one write transaction of an import or churn: from here on
    /// no other writer changes the registry until [`Backend::end_write`].
    fn begin_write(&mut self) -> Result<()>;
    /// Commit (`commit`) or roll back the write transaction.
    fn end_write(&mut self, commit: bool) -> Result<()>;
    /// Write many new declarations in one transaction through a
    /// [`BulkWriter`] (the generator's path), all or nothing.
    fn bulk_insert(
        &mut self,
        recorded_at: i64,
        f: &mut dyn FnMut(&mut BulkWriter<'_>) -> Result<()>,
    ) -> Result<()>;
}

/// Run `f` inside one write transaction of `b`: committed when `f` returns
/// `Ok`, rolled back when it returns `Err`.
pub fn write_transaction<T, E: From<anyhow::Error>>(
    b: &mut dyn Backend,
    f: impl FnOnce(&mut dyn Backend) -> Result<T, E>,
) -> Result<T, E> {
    b.begin_write()?;
    match f(b) {
        Ok(v) => match b.end_write(true) {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = b.end_write(false);
                Err(e.context("cannot commit to the registry database").into())
            }
        },
        Err(e) => {
            let _ = b.end_write(false);
            Err(e)
        }
    }
}

/// Write a validated batch: status updates first, then new declarations in
/// `seq` order. A new declaration is live unless another declaration of the
/// batch supersedes it; a recorded declaration it supersedes stops being
/// live. The change log records every change of the live set. On any error
/// nothing is written.
pub(crate) fn apply(b: &mut dyn Backend, batch: &Batch) -> Result<()> {
    let mut adds: Vec<&Declaration> = batch.adds.iter().collect();
    adds.sort_by_key(|d| d.seq);
    let new_ids: HashSet<&str> = adds.iter().map(|d| d.id.as_str()).collect();
    // Recorded declarations this batch touches.
    let mut touched: Vec<&str> = batch.status_updates.iter().map(|d| d.id.as_str()).collect();
    touched.extend(
        adds.iter()
            .filter_map(|d| d.supersedes.as_deref())
            .filter(|t| !new_ids.contains(t)),
    );
    let mut entries = b.entries(&touched)?;
    let mut plan = WritePlan {
        recorded_at: batch.recorded_at,
        ..WritePlan::default()
    };
    for d in &batch.status_updates {
        let Some(e) = entries.get(&d.id) else {
            bail!("cannot update declaration {}: it is not recorded", d.id);
        };
        plan.status.push(d);
        if e.live {
            plan.log.push(LogRow {
                id: &d.id,
                scope_lo: e.scope_lo,
                seq: e.seq,
                exact: e.exact,
                kind: ChangeKind::Update,
            });
            plan.stamped = true;
        }
    }
    plan.stamped |= !adds.is_empty();
    // Which new declarations are superseded by another new one.
    let superseded_by: HashMap<&str, &str> = adds
        .iter()
        .filter_map(|d| {
            d.supersedes
                .as_deref()
                .filter(|t| new_ids.contains(t))
                .map(|t| (t, d.id.as_str()))
        })
        .collect();
    for d in adds {
        let by = superseded_by.get(d.id.as_str()).copied();
        plan.inserts.push((d, by));
        if by.is_none() {
            let f = RowFields::of(d);
            plan.log.push(LogRow {
                id: &d.id,
                scope_lo: f.scope_lo,
                seq: d.seq,
                exact: f.exact,
                kind: ChangeKind::Insert,
            });
        }
        let Some(target) = d.supersedes.as_deref() else {
            continue;
        };
        if new_ids.contains(target) {
            continue; // inserted above as not live
        }
        let Some(e) = entries.get_mut(target) else {
            bail!("{} supersedes {target}, which is not recorded", d.id);
        };
        plan.retire.push((target, &d.id));
        if e.live {
            plan.log.push(LogRow {
                id: target,
                scope_lo: e.scope_lo,
                seq: e.seq,
                exact: e.exact,
                kind: ChangeKind::Delete,
            });
            e.live = false;
        }
    }
    b.write_plan(&plan)
}

/// Fold change-log rows `(key, seq, kind)` of exact-scope entries, in
/// change-id order, into one net [`Change`] per entry, sorted by (key, seq).
pub fn fold_changes(
    rows: impl IntoIterator<Item = Result<(u64, u64, ChangeKind)>>,
) -> Result<Vec<Change>> {
    // (key, seq) -> (first kind, last kind)
    let mut fold: BTreeMap<(u64, u64), (ChangeKind, ChangeKind)> = BTreeMap::new();
    for row in rows {
        let (key, seq, kind) = row?;
        fold.entry((key, seq))
            .and_modify(|(_, last)| *last = kind)
            .or_insert((kind, kind));
    }
    let mut out = Vec::new();
    for ((key, seq), (first, last)) in fold {
        let existed_before = first != ChangeKind::Insert;
        let exists_after = last != ChangeKind::Delete;
        if !existed_before && !exists_after {
            continue;
        }
        let isrc = consentry::Isrc::from_key(key)
            .ok_or_else(|| anyhow!("corrupt registry database: change log key {key}"))?;
        out.push(Change {
            scope: Scope::Exact(isrc),
            seq,
            existed_before,
            exists_after,
        });
    }
    Ok(out)
}

/// The exact-scope `(key, seq)` pairs asked of [`Source::records`], sorted
/// and each once (a prefix scope has no exact record).
pub fn wanted_keys(keys: &[(Scope, u64)]) -> Vec<(u64, u64)> {
    let mut wanted: Vec<(u64, u64)> = keys
        .iter()
        .filter_map(|&(scope, seq)| match scope {
            Scope::Exact(isrc) => Some((isrc.key(), seq)),
            Scope::Registrant(..) | Scope::RegistrantYear(..) => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The registry `--db` names.
#[derive(Debug)]
pub enum Registry {
    Sqlite(Db),
    Postgres(Box<PgDb>),
}

/// Whether `--db` names a PostgreSQL server (a `postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// What `init` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new, empty registry.
    Created,
    /// An existing registry's schema was migrated from `from` to the current.
    Migrated { from: i64 },
    /// The registry was already at the current schema version.
    Current,
}

impl Registry {
    /// `init`: a SQLite file is created (never overwritten); a PostgreSQL
    /// database gets the schema, or its schema migrated to this build's.
    pub fn init(db: &Path) -> Result<(Registry, InitOutcome)> {
        match db.to_str().filter(|s| is_postgres(s)) {
            Some(url) => {
                let (pg, outcome) = PgDb::init(url)?;
                Ok((Registry::Postgres(Box::new(pg)), outcome))
            }
            None => Ok((Registry::Sqlite(Db::create(db)?), InitOutcome::Created)),
        }
    }

    /// Open an existing registry of this build's schema version.
    pub fn open(db: &Path) -> Result<Registry> {
        match db.to_str().filter(|s| is_postgres(s)) {
            Some(url) => Ok(Registry::Postgres(Box::new(PgDb::open(url)?))),
            None => Ok(Registry::Sqlite(Db::open(db)?)),
        }
    }

    /// The backend, whichever it is.
    pub fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Registry::Sqlite(d) => d,
            Registry::Postgres(p) => p.as_mut(),
        }
    }

    /// `sqlite` or `postgresql`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Registry::Sqlite(_) => "sqlite",
            Registry::Postgres(_) => "postgresql",
        }
    }
}
