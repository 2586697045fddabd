//! SQLite as a registry [`Backend`]: point reads, the write plan of
//! [`crate::registry::apply`] in a savepoint, bulk inserts.

use std::collections::HashMap;

use anyhow::{Context, Result};
use consentry::declaration::Declaration;
use rusqlite::{OptionalExtension, params};

use super::write::{SqliteSink, advance_clock, insert_declaration, log_change, upsert_declarant};
use super::{Counts, DECL_COLUMNS, Db, INDEXES, declaration_from_row, to_i64, to_u64};
use crate::db::BulkWriter;
use crate::registry::{Backend, ChangeKind, Entry, WritePlan};

impl Backend for Db {
    /// The live exact-scope declaration with this seq, if there is one.
    fn live_exact_by_seq(&self, seq: u64) -> Result<Option<Declaration>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DECL_COLUMNS} FROM declarations WHERE seq = ?1 AND exact = 1 AND live = 1"
        ))?;
        let mut rows = stmt.query([to_i64(seq, "seq")?])?;
        rows.next()?.map(declaration_from_row).transpose()
    }

    /// The largest key of a live exact-scope entry in `[lo, hi)`.
    fn max_live_exact_key(&self, lo: u64, hi: u64) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT MAX(scope_lo) FROM declarations
                 WHERE exact = 1 AND live = 1 AND scope_lo >= ?1 AND scope_lo < ?2",
            )?
            .query_row(params![to_i64(lo, "key")?, to_i64(hi, "key")?], |r| {
                r.get(0)
            })?;
        v.map(|k| to_u64(k, "key")).transpose()
    }

    /// Every declaration ever recorded, live or not, in `seq` order.
    fn all_declarations(&self) -> Result<Vec<Declaration>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DECL_COLUMNS} FROM declarations ORDER BY seq"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(declaration_from_row(row)?);
        }
        Ok(out)
    }

    /// The declaration with this id, if the registry has it.
    fn declaration(&self, id: &str) -> Result<Option<Declaration>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DECL_COLUMNS} FROM declarations WHERE id = ?1"
        ))?;
        let mut rows = stmt.query([id])?;
        rows.next()?.map(declaration_from_row).transpose()
    }

    /// The declarations that supersede or revoke `id` (at most one in a
    /// consistent registry).
    fn superseding(&self, id: &str) -> Result<Vec<Declaration>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DECL_COLUMNS} FROM declarations WHERE supersedes = ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(declaration_from_row(row)?);
        }
        Ok(out)
    }

    /// The largest `seq` recorded, or 0 for an empty registry.
    fn max_seq(&self) -> Result<u64> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM declarations", [], |r| r.get(0))?;
        to_u64(v.unwrap_or(0), "seq")
    }

    /// Row counts for reports.
    fn counts(&self) -> Result<Counts> {
        let (declarations, live, exact): (i64, i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(live), 0), COALESCE(SUM(live * exact), 0)
             FROM declarations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let (declarations, live, exact) = (
            to_u64(declarations, "count")?,
            to_u64(live, "count")?,
            to_u64(exact, "count")?,
        );
        Ok(Counts {
            declarations,
            live,
            exact,
            prefix: live - exact,
        })
    }

    /// A value from the `meta` table, as text.
    fn meta(&self, key: &str) -> Result<Option<String>> {
        let v: Option<rusqlite::types::Value> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        Ok(v.map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Real(f) => f.to_string(),
            rusqlite::types::Value::Text(s) => s,
            rusqlite::types::Value::Blob(b) => hex::encode(b),
            rusqlite::types::Value::Null => String::new(),
        }))
    }

    fn change_log(&self) -> Result<Vec<(u64, String, ChangeKind)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT change_id, declaration_id, kind FROM change_log ORDER BY change_id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((
                to_u64(r.get(0)?, "change id")?,
                r.get(1)?,
                ChangeKind::parse(r.get_ref(2)?.as_str()?)?,
            ));
        }
        Ok(out)
    }

    fn entries(&self, ids: &[&str]) -> Result<HashMap<String, Entry>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT scope_lo, seq, exact, live FROM declarations WHERE id = ?1")?;
        let mut out = HashMap::new();
        for id in ids {
            let row: Option<(i64, i64, bool, bool)> = stmt
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            if let Some((scope_lo, seq, exact, live)) = row {
                out.insert(
                    (*id).to_string(),
                    Entry {
                        scope_lo: to_u64(scope_lo, "key")?,
                        seq: to_u64(seq, "seq")?,
                        exact,
                        live,
                    },
                );
            }
        }
        Ok(out)
    }

    fn write_plan(&mut self, plan: &WritePlan<'_>) -> Result<()> {
        // A savepoint: its own transaction when called alone, or part of the
        // caller's (see `write_transaction`).
        let tx = self.conn.savepoint()?;
        for d in &plan.status {
            tx.prepare_cached("UPDATE declarations SET status = ?1, policy = ?2 WHERE id = ?3")?
                .execute(params![
                    d.policy.status,
                    consentry::cbor::to_vec(&d.policy),
                    d.id
                ])?;
        }
        for (d, by) in &plan.inserts {
            insert_declaration(&tx, d, plan.recorded_at, *by)?;
        }
        for (target, by) in &plan.retire {
            tx.prepare_cached(
                "UPDATE declarations SET live = 0, superseded_by = ?1 WHERE id = ?2",
            )?
            .execute(params![by, target])?;
        }
        for l in &plan.log {
            log_change(
                &tx,
                l.id,
                to_i64(l.scope_lo, "key")?,
                to_i64(l.seq, "seq")?,
                l.exact,
                l.kind.as_str(),
                plan.recorded_at,
            )?;
        }
        if plan.stamped {
            advance_clock(&tx, plan.recorded_at)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn begin_write(&mut self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("cannot lock the registry database for writing")
    }

    fn end_write(&mut self, commit: bool) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })?;
        Ok(())
    }

    /// Into an empty registry, the secondary indexes are dropped first and
    /// rebuilt at the end (one sort instead of a random B-tree insert per
    /// row).
    fn bulk_insert(
        &mut self,
        recorded_at: i64,
        f: &mut dyn FnMut(&mut BulkWriter<'_>) -> Result<()>,
    ) -> Result<()> {
        self.write_transaction(|db| -> Result<()> {
            let empty: bool =
                db.conn
                    .query_row("SELECT NOT EXISTS (SELECT 1 FROM declarations)", [], |r| {
                        r.get(0)
                    })?;
            if empty {
                db.conn.execute_batch(
                    "DROP INDEX declarations_live; DROP INDEX declarations_supersedes;
                     DROP INDEX change_log_exact;",
                )?;
            }
            db.conn.execute_batch("PRAGMA cache_size = -1048576")?;
            let mut sink = SqliteSink(&db.conn);
            let mut w = BulkWriter::new(&mut sink, recorded_at);
            f(&mut w)?;
            w.finish()?;
            if w.added > 0 {
                advance_clock(&db.conn, recorded_at)?;
            }
            for (id, (name, role)) in &w.declarants {
                upsert_declarant(&db.conn, id, name, role)?;
            }
            if empty {
                for i in INDEXES {
                    db.conn.execute_batch(i)?;
                }
            }
            db.conn.execute_batch("PRAGMA cache_size = -65536")?;
            Ok(())
        })
    }
}
