//! Writing the registry: the registry clock, the change log, declaration
//! rows one at a time or in bulk.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use consentry::Scope;
use consentry::declaration::{Action, Declaration};
use consentry::model::Policy;
use rusqlite::{Connection, OptionalExtension, params};

use super::to_i64;
use crate::registry::RowFields;

/// The `meta` key caching the registry's clock (the latest `recorded_at` in
/// `declarations` and `change_log`), raised by every write so that a publish
/// does not scan both tables for it.
pub(super) const CLOCK_KEY: &str = "registry_time";

pub(super) fn read_clock(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [CLOCK_KEY], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The latest `recorded_at` of both tables (0 for an empty registry). A status
/// update changes what is published without adding a declaration, so the
/// change log's times count as well.
pub(super) fn scan_registry_time(conn: &Connection) -> Result<i64> {
    let t: Option<i64> = conn.query_row(
        "SELECT MAX(t) FROM (SELECT MAX(recorded_at) AS t FROM declarations
                             UNION ALL SELECT MAX(recorded_at) FROM change_log)",
        [],
        |r| r.get(0),
    )?;
    Ok(t.unwrap_or(0))
}

/// Raise the cached clock to at least `t` after a write that recorded rows at
/// `t` (a missing cache is first computed from the tables).
pub(super) fn advance_clock(conn: &Connection, t: i64) -> Result<()> {
    let cur = match read_clock(conn)? {
        Some(v) => v,
        None => scan_registry_time(conn)?,
    };
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![CLOCK_KEY, cur.max(t)],
    )?;
    Ok(())
}

pub(super) fn log_change(
    tx: &Connection,
    id: &str,
    scope_lo: i64,
    seq: i64,
    exact: bool,
    kind: &str,
    recorded_at: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO change_log (declaration_id, scope_lo, seq, exact, kind, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, scope_lo, seq, exact, kind, recorded_at])?;
    Ok(())
}

/// Insert a new declaration and record its declarant's latest name and
/// role; the change log is the caller's (see `write_plan`).
pub(super) fn insert_declaration(
    tx: &Connection,
    d: &Declaration,
    recorded_at: i64,
    superseded_by: Option<&str>,
) -> Result<()> {
    let p = &d.policy;
    insert_row(
        tx,
        &RowFields::of(d),
        &consentry::cbor::to_vec(p),
        recorded_at,
        superseded_by,
        false,
    )?;
    upsert_declarant(tx, &p.declarant.id, &p.declarant.name, &p.declarant.role)
}

pub(super) fn upsert_declarant(tx: &Connection, id: &str, name: &str, role: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO declarants (id, name, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role",
    )?
    .execute(params![id, name, role])?;
    Ok(())
}

/// Insert one declaration row, and with `log` its change-log insert when it
/// is live. `blob` is the canonical CBOR of the policy.
pub(super) fn insert_row(
    tx: &Connection,
    f: &RowFields<'_>,
    blob: &[u8],
    recorded_at: i64,
    superseded_by: Option<&str>,
    log: bool,
) -> Result<()> {
    let seq = to_i64(f.seq, "seq")?;
    let scope_lo = to_i64(f.scope_lo, "key")?;
    let live = superseded_by.is_none();
    tx.prepare_cached(
        "INSERT INTO declarations (id, seq, action, supersedes, scope, scope_lo, specificity,
             exact, declarant_id, declarant_name, declarant_role, all_use, train_ai, train_genai,
             ai_use, search, policy_url, policy_sha256, territories_include, territories_exclude,
             valid_from, valid_until, declared_at, recorded_at, status, live, superseded_by,
             policy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
    )?
    .execute(params![
        f.id,
        seq,
        f.action,
        f.supersedes,
        f.scope,
        scope_lo,
        f.specificity,
        f.exact,
        f.declarant_id,
        f.declarant_name,
        f.declarant_role,
        f.uses[0],
        f.uses[1],
        f.uses[2],
        f.uses[3],
        f.uses[4],
        f.policy_url,
        f.policy_sha256,
        f.territories_include,
        f.territories_exclude,
        f.valid_from,
        f.valid_until,
        f.declared_at,
        recorded_at,
        f.status,
        live,
        superseded_by,
        blob,
    ])
    .with_context(|| format!("recording declaration {}", f.id))?;
    if live && log {
        log_change(tx, f.id, scope_lo, seq, f.exact, "insert", recorded_at)?;
    }
    Ok(())
}

/// Where a [`BulkWriter`] puts its rows: one backend's insert path.
pub trait RowSink {
    /// Write one declaration row (and, when it is live, its change-log
    /// insert, now or when the bulk ends). `blob` is the policy's CBOR.
    fn row(
        &mut self,
        f: &RowFields<'_>,
        blob: &[u8],
        recorded_at: i64,
        superseded_by: Option<&str>,
    ) -> Result<()>;
}

/// SQLite's bulk rows: prepared inserts inside `bulk_insert`'s transaction.
pub(super) struct SqliteSink<'c>(pub(super) &'c Connection);

impl RowSink for SqliteSink<'_> {
    fn row(
        &mut self,
        f: &RowFields<'_>,
        blob: &[u8],
        recorded_at: i64,
        superseded_by: Option<&str>,
    ) -> Result<()> {
        insert_row(self.0, f, blob, recorded_at, superseded_by, true)
    }
}

/// Writes generated declarations in bulk inside a backend's `bulk_insert`
/// transaction: policies encoded once per distinct policy, declarants
/// recorded once at the end, relations checked as rows arrive.
pub struct BulkWriter<'a> {
    pub(crate) sink: &'a mut dyn RowSink,
    pub(crate) recorded_at: i64,
    pub(crate) blobs: HashMap<*const Policy, (std::rc::Rc<Policy>, Vec<u8>)>,
    pub(crate) declarants: BTreeMap<String, (String, String)>,
    /// Ids added in this bulk that a later one will supersede, with the id
    /// named as their successor.
    pub(crate) pending: HashMap<String, String>,
    pub(crate) added: u64,
}

impl std::fmt::Debug for BulkWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkWriter")
            .field("recorded_at", &self.recorded_at)
            .field("added", &self.added)
            .finish_non_exhaustive()
    }
}

impl<'a> BulkWriter<'a> {
    pub(crate) fn new(sink: &'a mut dyn RowSink, recorded_at: i64) -> BulkWriter<'a> {
        BulkWriter {
            sink,
            recorded_at,
            blobs: HashMap::new(),
            declarants: BTreeMap::new(),
            pending: HashMap::new(),
            added: 0,
        }
    }

    /// The bulk's end: every declaration named as a successor was added.
    pub(crate) fn finish(&self) -> Result<()> {
        if let Some((id, by)) = self.pending.iter().next() {
            bail!("{id} was added as superseded by {by}, which was never added");
        }
        Ok(())
    }
}

impl BulkWriter<'_> {
    /// Add one declaration. `superseded_by` names the declaration added later
    /// in the same bulk that supersedes or revokes it: it is written as not
    /// live and never enters the change log. A declaration that supersedes
    /// must name one added earlier with this declaration as its successor.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        id: &str,
        seq: u64,
        action: Action,
        supersedes: Option<&str>,
        scope: Scope,
        declared_at: i64,
        policy: &std::rc::Rc<Policy>,
        superseded_by: Option<&str>,
    ) -> Result<()> {
        if let Some(t) = supersedes
            && self.pending.remove(t).as_deref() != Some(id)
        {
            bail!("{id} supersedes {t}, which this bulk did not add as superseded by {id}");
        }
        if let Some(by) = superseded_by {
            self.pending.insert(id.to_string(), by.to_string());
        }
        let key = std::rc::Rc::as_ptr(policy);
        let blob = &self
            .blobs
            .entry(key)
            .or_insert_with(|| (policy.clone(), consentry::cbor::to_vec(&**policy)))
            .1;
        self.sink.row(
            &RowFields::new(id, seq, action, supersedes, scope, declared_at, policy),
            blob,
            self.recorded_at,
            superseded_by,
        )?;
        self.added += 1;
        let d = &policy.declarant;
        if self
            .declarants
            .get(&d.id)
            .is_none_or(|(n, r)| *n != d.name || *r != d.role)
        {
            self.declarants
                .insert(d.id.clone(), (d.name.clone(), d.role.clone()));
        }
        Ok(())
    }
}
