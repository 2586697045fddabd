//! The full scan of live exact-scope entries (publish's largest cost): one
//! rowid span per connection, each sorted on its own thread, then merged.

use anyhow::{Result, anyhow};
use consentry::columns::{PolicySet, Rows};
use rusqlite::{Connection, params};

use super::{BlobInterner, to_u64};

/// A table smaller than this many rowids is scanned on one thread.
pub(super) const SPLIT_SCAN_MIN_ROWS: i64 = 1 << 16;

/// Live exact-scope rows of one rowid span, sorted by `(key, seq)`, with the
/// policies interned into the span's own set.
pub(crate) struct Scan {
    /// `(key, seq, id start, policy)`; the id ends where the next row's starts
    /// in scan order, which `id_end` records.
    order: Vec<(u64, u64, u32, u32)>,
    ids: Vec<u8>,
    id_end: Vec<usize>,
    set: PolicySet,
}

impl Scan {
    /// An empty scan with room for `rows` rows.
    pub(crate) fn with_capacity(rows: usize) -> Scan {
        Scan {
            order: Vec::with_capacity(rows),
            ids: Vec::with_capacity(rows * 16),
            id_end: Vec::with_capacity(rows),
            set: PolicySet::default(),
        }
    }

    /// Add one row; `blob` is its policy's CBOR, interned through `interned`.
    pub(crate) fn push(
        &mut self,
        key: u64,
        seq: u64,
        id: &str,
        blob: &[u8],
        interned: &mut BlobInterner,
    ) -> Result<()> {
        let pol = interned.get(blob, id, &mut self.set)?;
        let n = u32::try_from(self.order.len())
            .map_err(|_| anyhow!("more than 2^32 live entries: not supported"))?;
        self.order.push((key, seq, n, pol));
        self.ids.extend_from_slice(id.as_bytes());
        self.id_end.push(self.ids.len());
        Ok(())
    }

    /// Sort the rows by `(key, seq)` (once every row is in).
    pub(crate) fn sort(&mut self) {
        self.order.sort_unstable();
    }

    fn id(&self, n: u32) -> Result<&str> {
        let n = n as usize;
        let start = if n == 0 { 0 } else { self.id_end[n - 1] };
        std::str::from_utf8(&self.ids[start..self.id_end[n]])
            .map_err(|_| anyhow!("corrupt registry database: an id is not UTF-8"))
    }
}

pub(super) fn scan_live_exact(conn: &Connection, lo: i64, hi: i64) -> Result<Scan> {
    let mut stmt = conn.prepare(
        "SELECT scope_lo, seq, id, policy FROM declarations NOT INDEXED
         WHERE rowid >= ?1 AND rowid <= ?2 AND exact = 1 AND live = 1",
    )?;
    let mut rows = stmt.query(params![lo, hi])?;
    let mut interned = BlobInterner::default();
    // At most one row per rowid: reserving that up front saves the copies
    // (and the page faults) of growing vectors of hundreds of megabytes.
    let rows_max = usize::try_from((hi - lo).saturating_add(1).clamp(0, 1 << 28)).unwrap_or(0);
    let mut out = Scan::with_capacity(rows_max);
    while let Some(row) = rows.next()? {
        let id = row.get_ref(2)?.as_str()?;
        let key = to_u64(row.get(0)?, "key")?;
        let seq = to_u64(row.get(1)?, "seq")?;
        out.push(key, seq, id, row.get_ref(3)?.as_blob()?, &mut interned)?;
    }
    out.sort();
    Ok(out)
}

/// The rows of sorted scans, merged by `(key, seq)`, with their policies
/// interned into `set`.
pub(crate) fn merge_scans(parts: &[Scan], set: &mut PolicySet) -> Result<Rows> {
    let remaps: Vec<Vec<u32>> = parts
        .iter()
        .map(|s| s.set.list.iter().map(|p| set.intern(p)).collect())
        .collect();
    let total: usize = parts.iter().map(|s| s.order.len()).sum();
    let id_bytes: usize = parts.iter().map(|s| s.ids.len()).sum();
    let mut out = Rows::with_capacity(total, id_bytes);
    let mut next = vec![0usize; parts.len()];
    // Each pass takes one row: exactly `total` passes.
    for _ in 0..total {
        let Some(p) = (0..parts.len())
            .filter(|&p| next[p] < parts[p].order.len())
            .min_by_key(|&p| {
                let r = parts[p].order[next[p]];
                (r.0, r.1, p)
            })
        else {
            break;
        };
        let (key, seq, n, pol) = parts[p].order[next[p]];
        next[p] += 1;
        out.push(key, seq, parts[p].id(n)?, remaps[p][pol as usize]);
    }
    Ok(out)
}
