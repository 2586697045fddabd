//! Writing the registry: the registry clock, the change log, declaration
//! rows one at a time or in bulk.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use consentry::Scope;
use consentry::declaration::{Action, Declaration};
use consentry::model::{Policy, Use};
use consentry::time::format_date;
use rusqlite::{Connection, OptionalExtension, params};

use super::{letter, to_i64};

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

pub(super) fn insert_declaration(
    tx: &Connection,
    d: &Declaration,
    recorded_at: i64,
    superseded_by: Option<&str>,
) -> Result<()> {
    let p = &d.policy;
    insert_row(
        tx,
        &RowRef {
            id: &d.id,
            seq: d.seq,
            action: d.action,
            supersedes: d.supersedes.as_deref(),
            scope: d.scope,
            declared_at: d.declared_at,
            policy: p,
        },
        &consentry::cbor::to_vec(p),
        recorded_at,
        superseded_by,
    )?;
    tx.prepare_cached(
        "INSERT INTO declarants (id, name, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role",
    )?
    .execute(params![p.declarant.id, p.declarant.name, p.declarant.role])?;
    Ok(())
}

/// The fields of one declaration row, borrowed.
pub(super) struct RowRef<'a> {
    id: &'a str,
    seq: u64,
    action: Action,
    supersedes: Option<&'a str>,
    scope: Scope,
    declared_at: i64,
    policy: &'a Policy,
}

/// Insert one declaration row (and its change-log insert when it is live).
/// `blob` is the canonical CBOR of `d.policy`.
pub(super) fn insert_row(
    tx: &Connection,
    d: &RowRef<'_>,
    blob: &[u8],
    recorded_at: i64,
    superseded_by: Option<&str>,
) -> Result<()> {
    let p = d.policy;
    let uses: Vec<Option<&str>> = Use::ALL.iter().map(|u| letter(p.uses[u.index()])).collect();
    let seq = to_i64(d.seq, "seq")?;
    let scope_lo = to_i64(d.scope.key_range().0, "key")?;
    let exact = matches!(d.scope, Scope::Exact(_));
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
        d.id,
        seq,
        match d.action {
            Action::Declare => "declare",
            Action::Revoke => "revoke",
        },
        d.supersedes,
        d.scope.canonical(),
        scope_lo,
        d.scope.specificity(),
        exact,
        p.declarant.id,
        p.declarant.name,
        p.declarant.role,
        uses[0],
        uses[1],
        uses[2],
        uses[3],
        uses[4],
        p.terms.as_ref().map(|t| t.url.as_str()),
        p.terms.as_ref().and_then(|t| t.sha256).map(hex::encode),
        p.include.join(" "),
        p.exclude.join(" "),
        p.from.map(format_date),
        p.until.map(format_date),
        d.declared_at,
        recorded_at,
        p.status,
        live,
        superseded_by,
        blob,
    ])
    .with_context(|| format!("recording declaration {}", d.id))?;
    if live {
        log_change(tx, d.id, scope_lo, seq, exact, "insert", recorded_at)?;
    }
    Ok(())
}

/// Writes generated declarations in bulk inside [`Db::bulk_insert`]'s
/// transaction: prepared statements, policies encoded once per distinct
/// policy, declarants recorded once at the end.
#[derive(Debug)]
pub struct BulkWriter<'a> {
    pub(super) tx: &'a Connection,
    pub(super) recorded_at: i64,
    pub(super) blobs: HashMap<*const Policy, (std::rc::Rc<Policy>, Vec<u8>)>,
    pub(super) declarants: BTreeMap<String, (String, String)>,
    /// Ids added in this bulk that a later one will supersede, with the id
    /// named as their successor.
    pub(super) pending: HashMap<String, String>,
    pub(super) added: u64,
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
        insert_row(
            self.tx,
            &RowRef {
                id,
                seq,
                action,
                supersedes,
                scope,
                declared_at,
                policy,
            },
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
