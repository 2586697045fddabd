//! PostgreSQL as a registry [`Backend`]: writes under the advisory lock,
//! new rows and change-log rows by `COPY … (FORMAT binary)`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use consentry::declaration::Declaration;
use postgres::Client;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::{DECL_COLUMNS, INDEXES, LOCK_WAIT, PgDb, WRITE_LOCK, db_err, to_i64, to_u64};
use crate::db::{BulkWriter, Counts, RowSink};
use crate::registry::{Backend, ChangeKind, Entry, RowFields, WritePlan};

/// The `meta` key caching the registry's clock (as SQLite's).
pub(super) const CLOCK_KEY: &str = "registry_time";

const DECLARATION_COPY: &str = "COPY declarations (id, seq, action, supersedes, scope, scope_lo,
    specificity, exact, declarant_id, declarant_name, declarant_role, all_use, train_ai,
    train_genai, ai_use, search, policy_url, policy_sha256, territories_include,
    territories_exclude, valid_from, valid_until, declared_at, recorded_at, status, live,
    superseded_by, policy) FROM STDIN (FORMAT binary)";

const DECLARATION_TYPES: [Type; 28] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT2,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::BYTEA,
];

/// Declaration rows into one `COPY`.
struct PgSink<'a> {
    w: BinaryCopyInWriter<'a>,
}

impl RowSink for PgSink<'_> {
    fn row(
        &mut self,
        f: &RowFields<'_>,
        blob: &[u8],
        recorded_at: i64,
        superseded_by: Option<&str>,
    ) -> Result<()> {
        let seq = to_i64(f.seq, "seq")?;
        let scope_lo = to_i64(f.scope_lo, "key")?;
        let specificity = i16::from(f.specificity);
        let live = superseded_by.is_none();
        let values: [&(dyn ToSql + Sync); 28] = [
            &f.id,
            &seq,
            &f.action,
            &f.supersedes,
            &f.scope,
            &scope_lo,
            &specificity,
            &f.exact,
            &f.declarant_id,
            &f.declarant_name,
            &f.declarant_role,
            &f.uses[0],
            &f.uses[1],
            &f.uses[2],
            &f.uses[3],
            &f.uses[4],
            &f.policy_url,
            &f.policy_sha256,
            &f.territories_include,
            &f.territories_exclude,
            &f.valid_from,
            &f.valid_until,
            &f.declared_at,
            &recorded_at,
            &f.status,
            &live,
            &superseded_by,
            &blob,
        ];
        self.w
            .write(&values)
            .map_err(|e| db_err(e).context(format!("recording declaration {}", f.id)))
    }
}

fn upsert_declarants(c: &mut Client, d: &BTreeMap<String, (String, String)>) -> Result<()> {
    if d.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = d.keys().map(String::as_str).collect();
    let names: Vec<&str> = d.values().map(|v| v.0.as_str()).collect();
    let roles: Vec<&str> = d.values().map(|v| v.1.as_str()).collect();
    c.execute(
        "INSERT INTO declarants (id, name, role)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role",
        &[&ids, &names, &roles],
    )
    .map_err(db_err)?;
    Ok(())
}

fn advance_clock(c: &mut Client, t: i64) -> Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE
         SET value = GREATEST(meta.value::bigint, excluded.value::bigint)::text",
        &[&CLOCK_KEY, &t.to_string()],
    )
    .map_err(db_err)?;
    Ok(())
}

fn last_change(c: &mut Client) -> Result<i64> {
    Ok(
        c.query_one("SELECT COALESCE(MAX(change_id), 0) FROM change_log", &[])
            .map_err(db_err)?
            .get(0),
    )
}

impl Backend for PgDb {
    fn max_seq(&self) -> Result<u64> {
        let v: i64 = self
            .client
            .borrow_mut()
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM declarations", &[])
            .map_err(db_err)?
            .get(0);
        to_u64(v, "seq")
    }

    fn declaration(&self, id: &str) -> Result<Option<Declaration>> {
        Ok(self
            .query_declarations(
                &format!("SELECT {DECL_COLUMNS} FROM declarations WHERE id = $1"),
                &[&id],
            )?
            .pop())
    }

    fn declarations(&self, ids: &[&str]) -> Result<HashMap<String, Declaration>> {
        self.declarations_by_id(ids)
    }

    fn superseding(&self, id: &str) -> Result<Vec<Declaration>> {
        self.query_declarations(
            &format!("SELECT {DECL_COLUMNS} FROM declarations WHERE supersedes = $1 ORDER BY seq"),
            &[&id],
        )
    }

    fn all_declarations(&self) -> Result<Vec<Declaration>> {
        self.query_declarations(
            &format!("SELECT {DECL_COLUMNS} FROM declarations ORDER BY seq"),
            &[],
        )
    }

    fn live_exact_by_seq(&self, seq: u64) -> Result<Option<Declaration>> {
        Ok(self
            .query_declarations(
                &format!(
                    "SELECT {DECL_COLUMNS} FROM declarations WHERE seq = $1 AND exact AND live"
                ),
                &[&to_i64(seq, "seq")?],
            )?
            .pop())
    }

    fn max_live_exact_key(&self, lo: u64, hi: u64) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT MAX(scope_lo) FROM declarations
                 WHERE exact AND live AND scope_lo >= $1 AND scope_lo < $2",
                &[&to_i64(lo, "key")?, &to_i64(hi, "key")?],
            )
            .map_err(db_err)?
            .get(0);
        v.map(|k| to_u64(k, "key")).transpose()
    }

    fn counts(&self) -> Result<Counts> {
        self.count_rows()
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.meta_value(key)
    }

    fn change_log(&self) -> Result<Vec<(u64, String, ChangeKind)>> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT change_id, declaration_id, kind FROM change_log ORDER BY change_id",
                &[],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get(0).map_err(db_err)?, "change id")?,
                    r.try_get(1).map_err(db_err)?,
                    ChangeKind::parse(r.try_get(2).map_err(db_err)?)?,
                ))
            })
            .collect()
    }

    fn entries(&self, ids: &[&str]) -> Result<HashMap<String, Entry>> {
        let mut out = HashMap::new();
        let mut c = self.client.borrow_mut();
        for chunk in ids.chunks(50_000) {
            let rows = c
                .query(
                    "SELECT id, scope_lo, seq, exact, live FROM declarations WHERE id = ANY($1)",
                    &[&chunk],
                )
                .map_err(db_err)?;
            for r in rows {
                out.insert(
                    r.try_get::<_, String>(0).map_err(db_err)?,
                    Entry {
                        scope_lo: to_u64(r.try_get(1).map_err(db_err)?, "key")?,
                        seq: to_u64(r.try_get(2).map_err(db_err)?, "seq")?,
                        exact: r.try_get(3).map_err(db_err)?,
                        live: r.try_get(4).map_err(db_err)?,
                    },
                );
            }
        }
        Ok(out)
    }

    fn write_plan(&mut self, plan: &WritePlan<'_>) -> Result<()> {
        let own = !self.in_write;
        if own {
            self.begin_write()?;
        }
        let r = self.write_plan_in_transaction(plan);
        if own {
            self.end_write(r.is_ok())?;
        }
        r
    }

    fn begin_write(&mut self) -> Result<()> {
        let mut c = self.client.borrow_mut();
        c.batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .map_err(db_err)?;
        if let Err(e) = c.query("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]) {
            let _ = c.batch_execute("ROLLBACK");
            return Err(crate::advise!(
                "another writer held the registry {} for more than {}: {}",
                "wait for the other import or generate to finish, then run this one again",
                self.name,
                LOCK_WAIT,
                db_err(e)
            ));
        }
        self.in_write = true;
        Ok(())
    }

    fn end_write(&mut self, commit: bool) -> Result<()> {
        if !self.in_write {
            return Ok(());
        }
        self.in_write = false;
        self.client
            .borrow_mut()
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .map_err(db_err)?;
        Ok(())
    }

    /// Into an empty registry, the secondary indexes are dropped first and
    /// built after the rows.
    fn bulk_insert(
        &mut self,
        recorded_at: i64,
        f: &mut dyn FnMut(&mut BulkWriter<'_>) -> Result<()>,
    ) -> Result<()> {
        self.begin_write()?;
        let r = self.bulk_in_transaction(recorded_at, f);
        let ended = self.end_write(r.is_ok());
        r?;
        ended
    }
}

impl PgDb {
    fn bulk_in_transaction(
        &mut self,
        recorded_at: i64,
        f: &mut dyn FnMut(&mut BulkWriter<'_>) -> Result<()>,
    ) -> Result<()> {
        let prev_seq = to_i64(self.max_seq()?, "seq")?;
        let mut c = self.client.borrow_mut();
        let first_change = last_change(&mut c)?;
        let empty = prev_seq == 0
            && !c
                .query_one("SELECT EXISTS (SELECT 1 FROM declarations)", &[])
                .map_err(db_err)?
                .get::<_, bool>(0);
        if empty {
            c.batch_execute(
                "DROP INDEX declarations_live; DROP INDEX declarations_supersedes;
                 DROP INDEX change_log_exact;",
            )
            .map_err(db_err)?;
        }
        let (added, declarants) = {
            let writer = c.copy_in(DECLARATION_COPY).map_err(db_err)?;
            let mut sink = PgSink {
                w: BinaryCopyInWriter::new(writer, &DECLARATION_TYPES),
            };
            let mut w = BulkWriter::new(&mut sink, recorded_at);
            f(&mut w)?;
            w.finish()?;
            let out = (w.added, std::mem::take(&mut w.declarants));
            sink.w.finish().map_err(db_err)?;
            out
        };
        // Every live row of the bulk, in seq order (the order it was
        // added in), is a change-log insert.
        c.execute(
            "INSERT INTO change_log (change_id, declaration_id, scope_lo, seq, exact, kind,
                                     recorded_at)
             SELECT $1 + row_number() OVER (ORDER BY seq), id, scope_lo, seq, exact,
                    'insert', $2
             FROM declarations WHERE seq > $3 AND live",
            &[&first_change, &recorded_at, &prev_seq],
        )
        .map_err(db_err)?;
        upsert_declarants(&mut c, &declarants)?;
        if added > 0 {
            advance_clock(&mut c, recorded_at)?;
        }
        if empty {
            for i in INDEXES {
                c.batch_execute(i).map_err(db_err)?;
            }
        }
        c.batch_execute("ANALYZE declarations; ANALYZE change_log")
            .map_err(db_err)?;
        Ok(())
    }

    fn write_plan_in_transaction(&mut self, plan: &WritePlan<'_>) -> Result<()> {
        let mut c = self.client.borrow_mut();
        for d in &plan.status {
            c.execute(
                "UPDATE declarations SET status = $1, policy = $2 WHERE id = $3",
                &[&d.policy.status, &consentry::cbor::to_vec(&d.policy), &d.id],
            )
            .map_err(db_err)?;
        }
        if !plan.inserts.is_empty() {
            let mut declarants: BTreeMap<String, (String, String)> = BTreeMap::new();
            {
                let writer = c.copy_in(DECLARATION_COPY).map_err(db_err)?;
                let mut sink = PgSink {
                    w: BinaryCopyInWriter::new(writer, &DECLARATION_TYPES),
                };
                for (d, by) in &plan.inserts {
                    let p = &d.policy;
                    sink.row(
                        &RowFields::of(d),
                        &consentry::cbor::to_vec(p),
                        plan.recorded_at,
                        *by,
                    )?;
                    declarants.insert(
                        p.declarant.id.clone(),
                        (p.declarant.name.clone(), p.declarant.role.clone()),
                    );
                }
                sink.w.finish().map_err(db_err)?;
            }
            upsert_declarants(&mut c, &declarants)?;
        }
        if !plan.retire.is_empty() {
            let ids: Vec<&str> = plan.retire.iter().map(|r| r.0).collect();
            let by: Vec<&str> = plan.retire.iter().map(|r| r.1).collect();
            c.execute(
                "UPDATE declarations AS d SET live = false, superseded_by = v.by
                 FROM unnest($1::text[], $2::text[]) AS v(id, by) WHERE d.id = v.id",
                &[&ids, &by],
            )
            .map_err(db_err)?;
        }
        if !plan.log.is_empty() {
            let base = last_change(&mut c)?;
            let writer = c
                .copy_in(
                    "COPY change_log (change_id, declaration_id, scope_lo, seq, exact, kind,
                                      recorded_at) FROM STDIN (FORMAT binary)",
                )
                .map_err(db_err)?;
            let mut w = BinaryCopyInWriter::new(
                writer,
                &[
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::BOOL,
                    Type::TEXT,
                    Type::INT8,
                ],
            );
            for (i, l) in plan.log.iter().enumerate() {
                let id = base + to_i64(i as u64 + 1, "change id")?;
                w.write(&[
                    &id,
                    &l.id,
                    &to_i64(l.scope_lo, "key")?,
                    &to_i64(l.seq, "seq")?,
                    &l.exact,
                    &l.kind.as_str(),
                    &plan.recorded_at,
                ])
                .map_err(db_err)?;
            }
            w.finish().map_err(db_err)?;
        }
        if plan.stamped {
            advance_clock(&mut c, plan.recorded_at)?;
        }
        Ok(())
    }
}
