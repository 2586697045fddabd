//! The registry as a snapshot [`Source`]: live entries, prefixes and net
//! changes since a publication, read inside one consistent snapshot.

use anyhow::{Result, anyhow};
use consentry::Scope;
use consentry::columns::{PolicySet, Rows};
use consentry::declaration::Record;
use rusqlite::{OptionalExtension, params};

use super::scan::{SPLIT_SCAN_MIN_ROWS, Scan, merge_scans, scan_live_exact};
use super::write::{read_clock, scan_registry_time};
use super::{BlobInterner, Db, PolicyCache, records_from_query, to_i64, to_u64};
use crate::registry::{ChangeKind, fold_changes, wanted_keys};
use crate::source::{Change, Publication, Source};

impl Source for Db {
    fn registry_time(&self) -> Result<i64> {
        // Every write keeps it in `meta`; a registry written before that
        // scans its tables.
        match read_clock(&self.conn)? {
            Some(t) => Ok(t),
            None => scan_registry_time(&self.conn),
        }
    }

    fn last_change(&self) -> Result<u64> {
        let v: Option<i64> =
            self.conn
                .query_row("SELECT MAX(change_id) FROM change_log", [], |r| r.get(0))?;
        to_u64(v.unwrap_or(0), "change id")
    }

    fn live_exact(&self, set: &mut PolicySet) -> Result<Rows> {
        // A full scan in rowid order and a sort in memory: walking the
        // (exact, live, scope_lo, seq) index instead fetches every row by a
        // random B-tree descent, four times slower. The scan is most of a
        // full publish, so its second half runs on a second connection in
        // another thread (see `second_reader`); each half is sorted on its
        // own thread and the two are merged.
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT MIN(rowid), MAX(rowid) FROM declarations", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Rows::default());
        };
        let second = if hi - lo >= SPLIT_SCAN_MIN_ROWS {
            self.second_reader()?
        } else {
            None
        };
        let Some(other) = second else {
            return merge_scans(&[scan_live_exact(&self.conn, lo, hi)?], set);
        };
        let mid = lo + (hi - lo) / 2;
        let (a, b) = std::thread::scope(|s| {
            let h = s.spawn(move || -> Result<Scan> {
                other.execute_batch("BEGIN DEFERRED")?;
                let r = scan_live_exact(&other, mid + 1, hi);
                other.execute_batch("COMMIT")?;
                r
            });
            let a = scan_live_exact(&self.conn, lo, mid);
            let b = h
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the registry scan thread panicked")));
            (a, b)
        });
        merge_scans(&[a?, b?], set)
    }

    fn live_prefixes(&self) -> Result<Vec<Record>> {
        let mut stmt = self.conn.prepare(
            "SELECT scope, seq, id, policy FROM declarations
             WHERE exact = 0 AND live = 1 ORDER BY scope_lo, specificity, seq",
        )?;
        let mut out = Vec::new();
        records_from_query(&mut stmt, [], &mut PolicyCache::default(), &mut out)?;
        Ok(out)
    }

    fn exact_changes(&self, after: u64, upto: u64) -> Result<Vec<Change>> {
        let mut stmt = self.conn.prepare(
            "SELECT scope_lo, seq, kind FROM change_log
             WHERE exact = 1 AND change_id > ?1 AND change_id <= ?2 ORDER BY change_id",
        )?;
        let mut rows = stmt.query(params![
            to_i64(after, "change id")?,
            to_i64(upto, "change id")?
        ])?;
        let mut read = Vec::new();
        while let Some(row) = rows.next()? {
            read.push(Ok((
                to_u64(row.get(0)?, "key")?,
                to_u64(row.get(1)?, "seq")?,
                ChangeKind::parse(row.get_ref(2)?.as_str()?)?,
            )));
        }
        fold_changes(read)
    }

    fn prefixes_changed(&self, after: u64, upto: u64) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM change_log
                            WHERE exact = 0 AND change_id > ?1 AND change_id <= ?2)",
            params![to_i64(after, "change id")?, to_i64(upto, "change id")?],
            |r| r.get(0),
        )?)
    }

    fn records(&self, keys: &[(Scope, u64)], set: &mut PolicySet) -> Result<Rows> {
        // One indexed point lookup per entry (seq is unique): O(n log N), with
        // no statement-size limits, so 10^5 keys are a fraction of a second.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, policy FROM declarations
             WHERE seq = ?1 AND scope_lo = ?2 AND exact = 1 AND live = 1",
        )?;
        let mut interned = BlobInterner::default();
        let wanted = wanted_keys(keys);
        let mut out = Rows::default();
        for (key, seq) in wanted {
            let Ok(seq_i) = i64::try_from(seq) else {
                continue; // no such entry can exist
            };
            let mut rows = stmt.query(params![seq_i, to_i64(key, "key")?])?;
            while let Some(row) = rows.next()? {
                let id = row.get_ref(0)?.as_str()?;
                let pol = interned.get(row.get_ref(1)?.as_blob()?, id, set)?;
                out.push(key, seq, id, pol);
            }
        }
        Ok(out)
    }

    fn publication(&self, version: u64) -> Result<Option<Publication>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT change_id, manifest_sha256 FROM publications WHERE version = ?1",
                [v],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(change_id, sha)| {
            Ok(Publication {
                version,
                change_id: to_u64(change_id, "change id")?,
                manifest_sha256: sha.try_into().map_err(|_| {
                    anyhow!("corrupt registry database: manifest hash of version {version}")
                })?,
            })
        })
        .transpose()
    }

    fn begin_snapshot(&mut self) -> Result<()> {
        // DEFERRED: a read snapshot from the first read on; the one write
        // (record_publication) upgrades it, waiting on the busy timeout.
        self.conn.execute_batch("BEGIN DEFERRED")?;
        Ok(())
    }

    fn end_snapshot(&mut self, ok: bool) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch(if ok { "COMMIT" } else { "ROLLBACK" })?;
        Ok(())
    }

    fn record_publication(&mut self, p: &Publication) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO publications (version, change_id, manifest_sha256)
             VALUES (?1, ?2, ?3)",
            params![
                to_i64(p.version, "version")?,
                to_i64(p.change_id, "change id")?,
                &p.manifest_sha256[..]
            ],
        )?;
        Ok(())
    }
}
