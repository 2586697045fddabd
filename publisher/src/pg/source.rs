//! PostgreSQL as a snapshot [`Source`], read inside one `REPEATABLE READ`
//! snapshot. The full scan of live entries streams `COPY … (FORMAT binary)`.

use std::io::{BufReader, Read};

use anyhow::{Result, anyhow, bail};
use consentry::Scope;
use consentry::columns::{PolicySet, Rows};
use consentry::declaration::Record;

use super::{PgDb, db_err, to_i64, to_u64};
use crate::db::scan::{Scan, merge_scans};
use crate::db::{BlobInterner, PolicyCache};
use crate::registry::{ChangeKind, fold_changes, wanted_keys};
use crate::source::{Change, Publication, Source};

/// How many keys one `records` query asks for.
const RECORDS_CHUNK: usize = 100_000;

/// A reader of `COPY … TO STDOUT (FORMAT binary)`: one tuple at a time, its
/// fields borrowed from one reused buffer.
pub(crate) struct BinaryTuples<R> {
    r: R,
    buf: Vec<u8>,
    /// Per field: `(start, len)`, or `None` for NULL.
    fields: Vec<Option<(usize, usize)>>,
}

impl<R: Read> BinaryTuples<R> {
    pub(crate) fn new(mut r: R) -> Result<BinaryTuples<R>> {
        let mut head = [0u8; 19];
        r.read_exact(&mut head)
            .map_err(|e| anyhow!("PostgreSQL COPY: {e}"))?;
        if &head[..11] != b"PGCOPY\n\xff\r\n\0" {
            bail!("PostgreSQL COPY: not the binary format");
        }
        let ext = u32::from_be_bytes([head[15], head[16], head[17], head[18]]);
        std::io::copy(&mut (&mut r).take(u64::from(ext)), &mut std::io::sink())
            .map_err(|e| anyhow!("PostgreSQL COPY: {e}"))?;
        Ok(BinaryTuples {
            r,
            buf: Vec::new(),
            fields: Vec::new(),
        })
    }

    /// The next tuple, or `false` at the end.
    pub(crate) fn next(&mut self) -> Result<bool> {
        let mut n = [0u8; 2];
        self.r
            .read_exact(&mut n)
            .map_err(|e| anyhow!("PostgreSQL COPY: {e}"))?;
        let n = i16::from_be_bytes(n);
        if n < 0 {
            return Ok(false);
        }
        self.buf.clear();
        self.fields.clear();
        for _ in 0..n {
            let mut len = [0u8; 4];
            self.r
                .read_exact(&mut len)
                .map_err(|e| anyhow!("PostgreSQL COPY: {e}"))?;
            let len = i32::from_be_bytes(len);
            let Ok(len) = usize::try_from(len) else {
                self.fields.push(None);
                continue;
            };
            let start = self.buf.len();
            self.buf.resize(start + len, 0);
            self.r
                .read_exact(&mut self.buf[start..])
                .map_err(|e| anyhow!("PostgreSQL COPY: {e}"))?;
            self.fields.push(Some((start, len)));
        }
        Ok(true)
    }

    pub(crate) fn bytes(&self, i: usize) -> Result<&[u8]> {
        match self.fields.get(i) {
            Some(Some((s, l))) => Ok(&self.buf[*s..s + l]),
            _ => bail!("corrupt registry database: field {i} of a row is NULL or missing"),
        }
    }

    pub(crate) fn int8(&self, i: usize) -> Result<i64> {
        let b: [u8; 8] = self
            .bytes(i)?
            .try_into()
            .map_err(|_| anyhow!("corrupt registry database: field {i} is not a BIGINT"))?;
        Ok(i64::from_be_bytes(b))
    }

    pub(crate) fn text(&self, i: usize) -> Result<&str> {
        std::str::from_utf8(self.bytes(i)?)
            .map_err(|_| anyhow!("corrupt registry database: field {i} is not UTF-8"))
    }
}

impl Source for PgDb {
    fn registry_time(&self) -> Result<i64> {
        if let Some(t) = self.meta_value(super::write::CLOCK_KEY)? {
            return t
                .parse()
                .map_err(|_| anyhow!("corrupt registry database: registry_time `{t}`"));
        }
        let t: Option<i64> = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT GREATEST((SELECT MAX(recorded_at) FROM declarations),
                                 (SELECT MAX(recorded_at) FROM change_log))",
                &[],
            )
            .map_err(db_err)?
            .get(0);
        Ok(t.unwrap_or(0))
    }

    fn last_change(&self) -> Result<u64> {
        let v: i64 = self
            .client
            .borrow_mut()
            .query_one("SELECT COALESCE(MAX(change_id), 0) FROM change_log", &[])
            .map_err(db_err)?
            .get(0);
        to_u64(v, "change id")
    }

    fn live_exact(&self, set: &mut PolicySet) -> Result<Rows> {
        // Streamed in the binary COPY format and sorted in memory, as the
        // SQLite scan does: an ORDER BY would make the server sort 10^8 rows
        // on disk before sending the first. A large table inside a publish's
        // snapshot is read in two halves of its heap (TID range scans), the
        // second on a second connection that imported the same snapshot, each
        // parsed and sorted on its own thread, then merged.
        let (rows, blocks): (i64, i64) = {
            let r = self
                .client
                .borrow_mut()
                .query_one(
                    "SELECT GREATEST(reltuples, 0)::bigint,
                            (pg_relation_size('declarations') / current_setting('block_size')::bigint)
                     FROM pg_class WHERE oid = 'declarations'::regclass",
                    &[],
                )
                .map_err(db_err)?;
            (r.get(0), r.get(1))
        };
        let cap = |n: i64| usize::try_from(n.clamp(0, 1 << 28)).unwrap_or(0);
        let second = match &self.snapshot_id {
            Some(id) if rows >= SPLIT_SCAN_MIN_ROWS && blocks >= 2 => {
                let mut c = self.config.connect(postgres::NoTls).map_err(db_err)?;
                c.batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                    id.replace('\'', "")
                ))
                .map_err(db_err)?;
                Some(c)
            }
            _ => None,
        };
        let Some(mut other) = second else {
            let mut c = self.client.borrow_mut();
            let scan = scan_copy(&mut c, "", cap(rows))?;
            return merge_scans(&[scan], set);
        };
        let mid = blocks / 2;
        let (a, b) = std::thread::scope(|s| {
            let h = s.spawn(move || -> Result<Scan> {
                let r = scan_copy(
                    &mut other,
                    &format!("AND ctid >= '({mid},0)'::tid"),
                    cap(rows / 2),
                );
                let _ = other.batch_execute("COMMIT");
                r
            });
            let a = {
                let mut c = self.client.borrow_mut();
                scan_copy(
                    &mut c,
                    &format!("AND ctid < '({mid},0)'::tid"),
                    cap(rows / 2),
                )
            };
            let b = h
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the registry scan thread panicked")));
            (a, b)
        });
        merge_scans(&[a?, b?], set)
    }

    fn live_prefixes(&self) -> Result<Vec<Record>> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT scope, seq, id, policy FROM declarations
                 WHERE NOT exact AND live ORDER BY scope_lo, specificity, seq",
                &[],
            )
            .map_err(db_err)?;
        let mut cache = PolicyCache::default();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(2).map_err(db_err)?;
            let scope = Scope::parse(row.try_get::<_, &str>(0).map_err(db_err)?)
                .map_err(|e| anyhow!("corrupt registry database: scope of {id}: {e}"))?;
            let seq = to_u64(row.try_get(1).map_err(db_err)?, "seq")?;
            let policy = cache.get(row.try_get::<_, &[u8]>(3).map_err(db_err)?, &id)?;
            out.push(Record {
                scope,
                seq,
                id,
                policy,
            });
        }
        Ok(out)
    }

    fn exact_changes(&self, after: u64, upto: u64) -> Result<Vec<Change>> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT scope_lo, seq, kind FROM change_log
                 WHERE exact AND change_id > $1 AND change_id <= $2 ORDER BY change_id",
                &[&to_i64(after, "change id")?, &to_i64(upto, "change id")?],
            )
            .map_err(db_err)?;
        fold_changes(rows.iter().map(|r| {
            Ok((
                to_u64(r.try_get(0).map_err(db_err)?, "key")?,
                to_u64(r.try_get(1).map_err(db_err)?, "seq")?,
                ChangeKind::parse(r.try_get(2).map_err(db_err)?)?,
            ))
        }))
    }

    fn prefixes_changed(&self, after: u64, upto: u64) -> Result<bool> {
        Ok(self
            .client
            .borrow_mut()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM change_log
                                WHERE NOT exact AND change_id > $1 AND change_id <= $2)",
                &[&to_i64(after, "change id")?, &to_i64(upto, "change id")?],
            )
            .map_err(db_err)?
            .get(0))
    }

    fn records(&self, keys: &[(Scope, u64)], set: &mut PolicySet) -> Result<Rows> {
        // One query per chunk of keys, joined against the (exact, live,
        // scope_lo, seq) index; rows come back sorted by (key, seq).
        let wanted: Vec<(i64, i64)> = wanted_keys(keys)
            .into_iter()
            .filter_map(|(k, s)| Some((i64::try_from(k).ok()?, i64::try_from(s).ok()?)))
            .collect();
        let mut interned = BlobInterner::default();
        let mut out = Rows::default();
        let mut c = self.client.borrow_mut();
        for chunk in wanted.chunks(RECORDS_CHUNK) {
            let ks: Vec<i64> = chunk.iter().map(|w| w.0).collect();
            let ss: Vec<i64> = chunk.iter().map(|w| w.1).collect();
            let rows = c
                .query(
                    "SELECT d.scope_lo, d.seq, d.id, d.policy
                     FROM unnest($1::bigint[], $2::bigint[]) AS k(key, seq)
                     JOIN declarations d
                       ON d.exact AND d.live AND d.scope_lo = k.key AND d.seq = k.seq
                     ORDER BY d.scope_lo, d.seq",
                    &[&ks, &ss],
                )
                .map_err(db_err)?;
            for row in rows {
                let id: &str = row.try_get(2).map_err(db_err)?;
                let pol = interned.get(row.try_get::<_, &[u8]>(3).map_err(db_err)?, id, set)?;
                out.push(
                    to_u64(row.try_get(0).map_err(db_err)?, "key")?,
                    to_u64(row.try_get(1).map_err(db_err)?, "seq")?,
                    id,
                    pol,
                );
            }
        }
        Ok(out)
    }

    fn publication(&self, version: u64) -> Result<Option<Publication>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT change_id, manifest_sha256 FROM publications WHERE version = $1",
                &[&v],
            )
            .map_err(db_err)?;
        row.map(|r| {
            let sha: Vec<u8> = r.try_get(1).map_err(db_err)?;
            Ok(Publication {
                version,
                change_id: to_u64(r.try_get(0).map_err(db_err)?, "change id")?,
                manifest_sha256: sha.try_into().map_err(|_| {
                    anyhow!("corrupt registry database: manifest hash of version {version}")
                })?,
            })
        })
        .transpose()
    }

    fn record_publication(&mut self, p: &Publication) -> Result<()> {
        if self.in_snapshot {
            // The snapshot is read only: written when it ends.
            self.pending.push(p.clone());
            return Ok(());
        }
        self.write_publication(p)
    }

    fn begin_snapshot(&mut self) -> Result<()> {
        let mut c = self.client.borrow_mut();
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .map_err(db_err)?;
        self.snapshot_id = Some(
            c.query_one("SELECT pg_export_snapshot()", &[])
                .map_err(db_err)?
                .get(0),
        );
        drop(c);
        self.in_snapshot = true;
        self.pending.clear();
        Ok(())
    }

    fn end_snapshot(&mut self, ok: bool) -> Result<()> {
        if !self.in_snapshot {
            return Ok(());
        }
        self.in_snapshot = false;
        self.snapshot_id = None;
        let pending = std::mem::take(&mut self.pending);
        self.client
            .borrow_mut()
            .batch_execute(if ok { "COMMIT" } else { "ROLLBACK" })
            .map_err(db_err)?;
        if ok {
            for p in &pending {
                self.write_publication(p)?;
            }
        }
        Ok(())
    }
}

/// A table smaller than this many rows is scanned on one connection.
const SPLIT_SCAN_MIN_ROWS: i64 = 1 << 16;

/// The live exact-scope rows (matching `filter`, an `AND …` clause), sorted.
fn scan_copy(c: &mut postgres::Client, filter: &str, capacity: usize) -> Result<Scan> {
    let reader = c
        .copy_out(&format!(
            "COPY (SELECT scope_lo, seq, id, policy FROM declarations WHERE exact AND live {filter})
             TO STDOUT (FORMAT binary)"
        ))
        .map_err(db_err)?;
    let mut t = BinaryTuples::new(BufReader::with_capacity(1 << 20, reader))?;
    let mut scan = Scan::with_capacity(capacity);
    let mut interned = BlobInterner::default();
    while t.next()? {
        let key = to_u64(t.int8(0)?, "key")?;
        let seq = to_u64(t.int8(1)?, "seq")?;
        let (id, blob) = (t.text(2)?, t.bytes(3)?);
        scan.push(key, seq, id, blob, &mut interned)?;
    }
    scan.sort();
    Ok(scan)
}

impl PgDb {
    fn write_publication(&mut self, p: &Publication) -> Result<()> {
        self.client
            .borrow_mut()
            .execute(
                "INSERT INTO publications (version, change_id, manifest_sha256)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (version) DO UPDATE
                 SET change_id = excluded.change_id, manifest_sha256 = excluded.manifest_sha256",
                &[
                    &to_i64(p.version, "version")?,
                    &to_i64(p.change_id, "change id")?,
                    &&p.manifest_sha256[..],
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }
}
