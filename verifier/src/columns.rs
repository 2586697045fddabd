//! Data files: shards, delta layers and the prefix table (SPEC.md §5).
//!
//! Shards and layers are column-wise: keys delta-coded as LEB128 varints (the
//! low bytes of large deltas split off into their own column), sequence
//! numbers as zigzag deltas from the row before, ids derived from a per-file
//! prefix and the seq where they can be (`CR-1234` costs one zero byte), and a
//! small index into a per-file table of distinct policies. zstd then squeezes
//! the runs that clustered ISRCs produce.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::declaration::Record;
use crate::envelope::sha256;
use crate::error::{Code, VResult, reject};
use crate::isrc::{KEY_SPACE, Scope};
use crate::limits::Limits;
use crate::model::Policy;

/// zstd level for every data file. Fixed, because the same state must give the
/// same bytes. Level 6 gives the sizes of 9–12 on shard columns (BENCHMARKS.md)
/// at a lower compression cost.
pub const ZSTD_LEVEL: i32 = 6;
/// Largest zstd window a reader accepts (2^27 = 128 MiB), bounding decoder memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Longest declaration id (its length is one byte in the state encoding).
pub const MAX_ID_LEN: usize = 255;

/// A table of distinct policies shared by many rows.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub list: Vec<Policy>,
    map: HashMap<Policy, u32>,
}

impl PolicySet {
    pub fn intern(&mut self, p: &Policy) -> u32 {
        if let Some(&i) = self.map.get(p) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(p.clone());
        self.map.insert(p.clone(), i);
        i
    }

    pub fn get(&self, i: u32) -> &Policy {
        &self.list[i as usize]
    }
}

/// Exact-scope entries sorted by `(key, seq)`, column-wise in memory. `pol`
/// indexes a [`PolicySet`] held by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub keys: Vec<u64>,
    pub seqs: Vec<u64>,
    id_buf: Vec<u8>,
    id_end: Vec<usize>,
    pub pol: Vec<u32>,
}

impl Rows {
    /// Empty rows with room for `rows` rows and `id_bytes` bytes of ids.
    pub fn with_capacity(rows: usize, id_bytes: usize) -> Rows {
        Rows {
            keys: Vec::with_capacity(rows),
            seqs: Vec::with_capacity(rows),
            id_buf: Vec::with_capacity(id_bytes),
            id_end: Vec::with_capacity(rows),
            pol: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn id(&self, i: usize) -> &str {
        // Ids are checked to be ASCII when they enter a Rows.
        std::str::from_utf8(self.id_bytes(i)).unwrap_or("")
    }

    /// The bytes of row `i`'s id.
    pub fn id_bytes(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.id_end[i - 1] };
        &self.id_buf[start..self.id_end[i]]
    }

    pub fn push(&mut self, key: u64, seq: u64, id: &str, pol: u32) {
        self.keys.push(key);
        self.seqs.push(seq);
        self.id_buf.extend_from_slice(id.as_bytes());
        self.id_end.push(self.id_buf.len());
        self.pol.push(pol);
    }

    /// Push a row whose id is `a` ‖ `b` (printable ASCII, checked by the caller).
    fn push_parts(&mut self, key: u64, seq: u64, a: &[u8], b: &[u8], pol: u32) {
        self.keys.push(key);
        self.seqs.push(seq);
        self.id_buf.extend_from_slice(a);
        self.id_buf.extend_from_slice(b);
        self.id_end.push(self.id_buf.len());
        self.pol.push(pol);
    }

    /// Append all of `other`'s rows (which must sort after ours).
    pub fn append(&mut self, other: &Rows) {
        let base = self.id_buf.len();
        self.keys.extend_from_slice(&other.keys);
        self.seqs.extend_from_slice(&other.seqs);
        self.id_buf.extend_from_slice(&other.id_buf);
        self.id_end.extend(other.id_end.iter().map(|e| e + base));
        self.pol.extend_from_slice(&other.pol);
    }

    fn push_from(&mut self, other: &Rows, i: usize) {
        self.keys.push(other.keys[i]);
        self.seqs.push(other.seqs[i]);
        self.id_buf.extend_from_slice(other.id_bytes(i));
        self.id_end.push(self.id_buf.len());
        self.pol.push(other.pol[i]);
    }

    /// Rows `[a, b)` as a new `Rows`.
    #[must_use]
    pub fn slice(&self, a: usize, b: usize) -> Rows {
        let base = if a == 0 { 0 } else { self.id_end[a - 1] };
        let end = if b == 0 { 0 } else { self.id_end[b - 1] };
        Rows {
            keys: self.keys[a..b].to_vec(),
            seqs: self.seqs[a..b].to_vec(),
            id_buf: self.id_buf[base..end.max(base)].to_vec(),
            id_end: self.id_end[a..b].iter().map(|e| e - base).collect(),
            pol: self.pol[a..b].to_vec(),
        }
    }

    /// First row index whose key is ≥ `key`.
    pub fn lower_bound(&self, key: u64) -> usize {
        self.keys.partition_point(|&k| k < key)
    }

    /// Apply sorted deletions and upserts (SPEC.md §7 step 8). A deletion of a
    /// row that does not exist is refused: a layer must describe exactly the
    /// change between two states.
    pub fn apply(&self, dels: &[(u64, u64)], puts: &Rows, file: &str) -> VResult<Rows> {
        let mut out = Rows::with_capacity(
            self.len() + puts.len(),
            self.id_buf.len() + puts.id_buf.len(),
        );
        let (mut i, mut d, mut p) = (0, 0, 0);
        loop {
            let cur = (i < self.len()).then(|| (self.keys[i], self.seqs[i]));
            let del = dels.get(d).copied();
            let put = (p < puts.len()).then(|| (puts.keys[p], puts.seqs[p]));
            let Some(next) = [cur, del, put].into_iter().flatten().min() else {
                break;
            };
            let has_cur = cur == Some(next);
            if del == Some(next) {
                if !has_cur {
                    return Err(reject(
                        file,
                        Code::LayerMismatch,
                        format!(
                            "deletes ({}, seq {}), which the previous state does not hold",
                            crate::isrc::Isrc::from_key(next.0)
                                .map_or_else(|| next.0.to_string(), crate::isrc::Isrc::compact),
                            next.1
                        ),
                    ));
                }
                d += 1;
                i += 1;
                continue;
            }
            if put == Some(next) {
                out.push_from(puts, p);
                p += 1;
                if has_cur {
                    i += 1;
                }
                continue;
            }
            out.push_from(self, i);
            i += 1;
        }
        Ok(out)
    }
}

/// Column encoding on the wire (SPEC.md §5.3). Field order is the canonical
/// CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Per row: varint 0 when the id is `id_prefix` ‖ decimal seq, else
    /// varint(len) ‖ the id.
    #[serde(with = "serde_bytes")]
    pub ids: Vec<u8>,
    /// Per row: varint of the key delta shifted right by 8 × (low bytes).
    #[serde(with = "serde_bytes")]
    pub keys: Vec<u8>,
    /// Per row: zigzag varint of seq − previous seq (mod 2^64).
    #[serde(with = "serde_bytes")]
    pub seqs: Vec<u8>,
    pub count: u64,
    /// Per row: varint index into `policies`.
    #[serde(with = "serde_bytes")]
    pub policy: Vec<u8>,
    /// Per row: the low bytes of the key delta, little-endian; the same
    /// number (0–7) for every row, so its length is a multiple of `count`.
    #[serde(with = "serde_bytes")]
    pub key_low: Vec<u8>,
    pub policies: Vec<Policy>,
    /// The prefix of derived ids (empty when no row's id is derived).
    pub id_prefix: String,
}

/// Keys of deleted rows on the wire: `keys`, `seqs` and `key_low` as in
/// [`Columns`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyColumns {
    #[serde(with = "serde_bytes")]
    pub keys: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub seqs: Vec<u8>,
    pub count: u64,
    #[serde(with = "serde_bytes")]
    pub key_low: Vec<u8>,
}

/// A base shard: the entries of `[lo, hi)` at the base version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardDoc {
    pub hi: u64,
    pub lo: u64,
    pub rows: Columns,
}

/// A delta layer from version `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerDoc {
    pub to: u64,
    pub dels: KeyColumns,
    pub from: u64,
    pub puts: Columns,
}

/// One prefix-scope entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRow {
    pub id: String,
    pub seq: u64,
    pub scope: String,
    pub policy: Policy,
}

/// The prefix table: every entry whose scope is `CC-XXX` or `CC-XXX-YY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixDoc {
    pub rows: Vec<PrefixRow>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads minimal LEB128 varints from a blob.
struct VarintReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl VarintReader<'_> {
    fn next(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // Minimal: a final byte of zero is only allowed as the sole byte.
                if b == 0 && shift > 0 {
                    return None;
                }
                return Some(v);
            }
        }
        None
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

fn valid_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// Build the sorted, unique per-file policy table and the remapping.
fn file_table(pols: &[u32], set: &PolicySet) -> (Vec<Policy>, HashMap<u32, u64>) {
    let mut used: Vec<u32> = pols.to_vec();
    used.sort_unstable();
    used.dedup();
    let mut with_bytes: Vec<(Vec<u8>, u32)> = used
        .into_iter()
        .map(|i| (cbor::to_vec(set.get(i)), i))
        .collect();
    with_bytes.sort();
    let mut remap = HashMap::new();
    let mut table = Vec::new();
    for (n, (_, i)) in with_bytes.into_iter().enumerate() {
        remap.insert(i, n as u64);
        table.push(set.get(i).clone());
    }
    (table, remap)
}

fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// Decimal digits of `v` (no leading zeros) into `buf`; returns the used tail.
fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Whether `id` is `prefix` ‖ decimal `seq`.
fn is_derived(id: &[u8], prefix: &[u8], seq: u64) -> bool {
    let mut buf = [0u8; 20];
    let d = decimal(seq, &mut buf);
    id.len() == prefix.len() + d.len() && id.starts_with(prefix) && id.ends_with(d)
}

/// The publisher's choice of `id_prefix` (SPEC.md §5.3): the prefix `P` for
/// which the most rows have the id `P` ‖ decimal seq, the bytewise smallest
/// among equals; empty when no id ends in its seq.
fn choose_prefix<'a>(rows: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
    let mut counts: HashMap<&[u8], u64> = HashMap::new();
    let mut last: Option<&[u8]> = None;
    for (id, seq) in rows {
        let mut buf = [0u8; 20];
        let d = decimal(seq, &mut buf);
        // Fast path: the same prefix as the row before.
        if let Some(p) = last
            && is_derived(id, p, seq)
        {
            *counts.entry(p).or_default() += 1;
            continue;
        }
        if id.len() > d.len() && id.ends_with(d) {
            let p = &id[..id.len() - d.len()];
            *counts.entry(p).or_default() += 1;
            last = Some(p);
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(p, _)| p.to_vec())
        .unwrap_or_default()
}

/// Low bytes per key delta (SPEC.md §5.3): ⌊bit length of the median delta /
/// 8⌋, at most 7. Clustered keys (small deltas) stay pure varints; uniformly
/// spread keys move their incompressible low bytes into `key_low`, leaving
/// `keys` small numbers that compress.
fn choose_low_bytes(keys: &[u64]) -> usize {
    if keys.is_empty() {
        return 0;
    }
    let mut deltas: Vec<u64> = Vec::with_capacity(keys.len());
    let mut prev = 0;
    for &k in keys {
        deltas.push(k - prev);
        prev = k;
    }
    let mid = deltas.len() / 2;
    let median = *deltas.select_nth_unstable(mid).1;
    (((64 - median.leading_zeros()) / 8) as usize).min(7)
}

/// Write key deltas (split at `low` bytes) and zigzag seq deltas.
fn put_keys(
    pairs: impl Iterator<Item = (u64, u64)>,
    low: usize,
    keys: &mut Vec<u8>,
    key_low: &mut Vec<u8>,
    seqs: &mut Vec<u8>,
) {
    let (mut pk, mut ps) = (0u64, 0u64);
    for (key, seq) in pairs {
        let d = key.wrapping_sub(pk);
        pk = key;
        if low == 0 {
            put_varint(keys, d);
        } else {
            put_varint(keys, d >> (8 * low));
            key_low.extend_from_slice(&d.to_le_bytes()[..low]);
        }
        put_varint(seqs, zigzag(seq.wrapping_sub(ps)));
        ps = seq;
    }
}

/// Encode rows column-wise with their own policy table.
pub fn encode_columns(rows: &Rows, set: &PolicySet) -> Columns {
    let (policies, remap) = file_table(&rows.pol, set);
    let low = choose_low_bytes(&rows.keys);
    let prefix = choose_prefix((0..rows.len()).map(|i| (rows.id_bytes(i), rows.seqs[i])));
    let mut c = Columns {
        ids: Vec::with_capacity(rows.len()),
        keys: Vec::with_capacity(rows.len() * 2),
        seqs: Vec::with_capacity(rows.len() * 2),
        count: rows.len() as u64,
        policy: Vec::with_capacity(rows.len()),
        key_low: Vec::with_capacity(rows.len() * low),
        policies,
        id_prefix: String::from_utf8(prefix).unwrap_or_default(),
    };
    put_keys(
        (0..rows.len()).map(|i| (rows.keys[i], rows.seqs[i])),
        low,
        &mut c.keys,
        &mut c.key_low,
        &mut c.seqs,
    );
    let prefix = c.id_prefix.as_bytes();
    for i in 0..rows.len() {
        let id = rows.id_bytes(i);
        if is_derived(id, prefix, rows.seqs[i]) {
            c.ids.push(0);
        } else {
            put_varint(&mut c.ids, id.len() as u64);
            c.ids.extend_from_slice(id);
        }
        put_varint(&mut c.policy, remap[&rows.pol[i]]);
    }
    c
}

fn encode_keys(keys: &[(u64, u64)]) -> KeyColumns {
    let ks: Vec<u64> = keys.iter().map(|k| k.0).collect();
    key_columns_from_raw(keys, choose_low_bytes(&ks))
}

/// One row exactly as a column blob holds it: key, seq, id and the index
/// into the file's own policy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub key: u64,
    pub seq: u64,
    pub id: String,
    pub policy: u64,
}

/// Column blobs holding exactly `rows` in the given order — which may break
/// the order rules; tools and tests build defective files with it — with
/// `policies` as the table, `low` bytes of each key delta in `key_low`, and
/// `id_prefix` (ids equal to it ‖ decimal seq are written derived). Keys must
/// not decrease (they are delta-coded).
pub fn columns_from_raw(
    rows: &[RawRow],
    policies: Vec<Policy>,
    id_prefix: &str,
    low: usize,
) -> Columns {
    let mut c = Columns {
        ids: Vec::new(),
        keys: Vec::new(),
        seqs: Vec::new(),
        count: rows.len() as u64,
        policy: Vec::new(),
        key_low: Vec::new(),
        policies,
        id_prefix: id_prefix.to_string(),
    };
    put_keys(
        rows.iter().map(|r| (r.key, r.seq)),
        low,
        &mut c.keys,
        &mut c.key_low,
        &mut c.seqs,
    );
    for r in rows {
        if is_derived(r.id.as_bytes(), id_prefix.as_bytes(), r.seq) {
            c.ids.push(0);
        } else {
            put_varint(&mut c.ids, r.id.len() as u64);
            c.ids.extend_from_slice(r.id.as_bytes());
        }
        put_varint(&mut c.policy, r.policy);
    }
    c
}

/// The rows of a well-formed column blob in file order, without the order and
/// table checks of [`decode_columns`] (for tools and tests); `None` when the
/// blobs do not parse.
pub fn raw_of_columns(c: &Columns) -> Option<Vec<RawRow>> {
    let pairs = raw_keys(&c.keys, &c.key_low, &c.seqs, c.count)?;
    let mut ir = VarintReader {
        buf: &c.ids,
        pos: 0,
    };
    let mut pr = VarintReader {
        buf: &c.policy,
        pos: 0,
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (key, seq) in pairs {
        let n = usize::try_from(ir.next()?).ok()?;
        let id = if n == 0 {
            let mut buf = [0u8; 20];
            format!(
                "{}{}",
                c.id_prefix,
                std::str::from_utf8(decimal(seq, &mut buf)).ok()?
            )
        } else {
            let b = c.ids.get(ir.pos..ir.pos.checked_add(n)?)?;
            ir.pos += n;
            String::from_utf8(b.to_vec()).ok()?
        };
        out.push(RawRow {
            key,
            seq,
            id,
            policy: pr.next()?,
        });
    }
    Some(out)
}

/// A deletion column holding `dels` in the given order, `low` bytes of each
/// key delta in `key_low` (for tools and tests).
pub fn key_columns_from_raw(dels: &[(u64, u64)], low: usize) -> KeyColumns {
    let mut k = KeyColumns {
        keys: Vec::new(),
        seqs: Vec::new(),
        count: dels.len() as u64,
        key_low: Vec::new(),
    };
    put_keys(
        dels.iter().copied(),
        low,
        &mut k.keys,
        &mut k.key_low,
        &mut k.seqs,
    );
    k
}

/// The `(key, seq)` pairs of a well-formed deletion column, in file order.
pub fn raw_of_key_columns(k: &KeyColumns) -> Option<Vec<(u64, u64)>> {
    raw_keys(&k.keys, &k.key_low, &k.seqs, k.count)
}

fn raw_keys(keys: &[u8], key_low: &[u8], seqs: &[u8], count: u64) -> Option<Vec<(u64, u64)>> {
    let low = low_bytes_of(key_low, count).ok()?;
    let mut kr = VarintReader { buf: keys, pos: 0 };
    let mut sr = VarintReader { buf: seqs, pos: 0 };
    let (mut key, mut seq) = (0u64, 0u64);
    (0..count.min(keys.len() as u64) as usize)
        .map(|i| {
            key = key.wrapping_add(delta_of(kr.next()?, key_low, low, i)?);
            seq = seq.wrapping_add(unzigzag(sr.next()?));
            Some((key, seq))
        })
        .collect()
}

/// The low-byte count of a `key_low` blob for `count` rows: its length over
/// `count`, which must divide it exactly and be at most 7.
fn low_bytes_of(key_low: &[u8], count: u64) -> Result<usize, &'static str> {
    if count == 0 {
        return if key_low.is_empty() {
            Ok(0)
        } else {
            Err("key_low holds bytes but there are no rows")
        };
    }
    let len = key_low.len() as u64;
    if !len.is_multiple_of(count) || len / count > 7 {
        return Err("key_low is not 0-7 bytes per row");
    }
    Ok((len / count) as usize)
}

/// Row `i`'s key delta from its varint `high` part and `low` bytes of
/// `key_low`; `None` when it does not fit in 64 bits.
fn delta_of(high: u64, key_low: &[u8], low: usize, i: usize) -> Option<u64> {
    if low == 0 {
        return Some(high);
    }
    if high >> (64 - 8 * low) != 0 {
        return None;
    }
    let mut b = [0u8; 8];
    b[..low].copy_from_slice(key_low.get(i * low..(i + 1) * low)?);
    Some((high << (8 * low)) | u64::from_le_bytes(b))
}

/// Decode key/seq columns, checking strict `(key, seq)` order and bounds.
fn decode_keys(
    file: &str,
    what: &str,
    k: (&[u8], &[u8], &[u8]),
    count: u64,
    range: (u64, u64),
) -> VResult<Vec<(u64, u64)>> {
    let (keys, key_low, seqs) = k;
    let bad = |d: String| reject(file, Code::MalformedData, format!("{what}: {d}"));
    // A varint takes at least one byte, so a count above the blob length is a lie
    // and is refused before any allocation.
    if count > keys.len() as u64 {
        return Err(bad("count exceeds the key column".into()));
    }
    let low = low_bytes_of(key_low, count).map_err(|e| bad(e.into()))?;
    let mut kr = VarintReader { buf: keys, pos: 0 };
    let mut sr = VarintReader { buf: seqs, pos: 0 };
    let mut out = Vec::with_capacity(count as usize);
    let mut prev: Option<(u64, u64)> = None;
    let (mut key, mut seq) = (0u64, 0u64);
    for i in 0..count as usize {
        let high = kr
            .next()
            .ok_or_else(|| bad("key column is truncated or not minimal LEB128".into()))?;
        let delta =
            delta_of(high, key_low, low, i).ok_or_else(|| bad("a key delta overflows".into()))?;
        key = key
            .checked_add(delta)
            .ok_or_else(|| bad("key overflows".into()))?;
        let z = sr
            .next()
            .ok_or_else(|| bad("seq column is truncated or not minimal LEB128".into()))?;
        seq = seq.wrapping_add(unzigzag(z));
        if seq == 0 {
            return Err(bad("seq 0 is not allowed".into()));
        }
        if key < range.0 || key >= range.1 {
            return Err(reject(
                file,
                Code::KeyOutOfRange,
                format!("{what}: key {key} is outside [{}, {})", range.0, range.1),
            ));
        }
        if prev.is_some_and(|p| p >= (key, seq)) {
            return Err(reject(
                file,
                Code::UnsortedKeys,
                format!("{what}: rows are not in strictly increasing (key, seq) order"),
            ));
        }
        prev = Some((key, seq));
        out.push((key, seq));
    }
    if !kr.done() || !sr.done() {
        return Err(bad("columns hold more data than count says".into()));
    }
    Ok(out)
}

/// Decode columns into rows, interning the file's policies into `set`.
pub fn decode_columns(
    file: &str,
    c: &Columns,
    range: (u64, u64),
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    let bad = |d: String| reject(file, Code::MalformedData, d);
    let over = |d: String| reject(file, Code::LimitExceeded, d);
    if c.count > limits.max_records_per_file {
        return Err(over(format!(
            "{} rows exceed the limit of {}",
            c.count, limits.max_records_per_file
        )));
    }
    if c.policies.len() as u64 > limits.max_policies {
        return Err(over(format!(
            "{} policies exceed the limit of {}",
            c.policies.len(),
            limits.max_policies
        )));
    }
    let mut prev_bytes: Option<Vec<u8>> = None;
    let mut ids_map = Vec::with_capacity(c.policies.len());
    for p in &c.policies {
        p.validate().map_err(|e| bad(format!("policy: {e}")))?;
        let b = cbor::to_vec(p);
        if prev_bytes.as_ref().is_some_and(|pb| *pb >= b) {
            return Err(bad("policy table is not sorted and unique".into()));
        }
        prev_bytes = Some(b);
        ids_map.push(set.intern(p));
    }
    let prefix = c.id_prefix.as_bytes();
    if prefix.len() > MAX_ID_LEN || !prefix.iter().all(u8::is_ascii_graphic) {
        return Err(bad(
            "id_prefix is longer than 255 bytes or not printable ASCII".into(),
        ));
    }
    let pairs = decode_keys(file, "rows", (&c.keys, &c.key_low, &c.seqs), c.count, range)?;
    let mut ir = VarintReader {
        buf: &c.ids,
        pos: 0,
    };
    let mut pr = VarintReader {
        buf: &c.policy,
        pos: 0,
    };
    let mut used = vec![false; c.policies.len()];
    let mut derived_any = false;
    let mut rows = Rows::with_capacity(pairs.len(), pairs.len() * (prefix.len() + 8));
    for (key, seq) in pairs {
        let n = ir
            .next()
            .ok_or_else(|| bad("id column is truncated or not minimal LEB128".into()))?;
        let pi = pr
            .next()
            .ok_or_else(|| bad("policy column is truncated or not minimal LEB128".into()))?;
        let slot = usize::try_from(pi)
            .ok()
            .filter(|&i| i < c.policies.len())
            .ok_or_else(|| bad(format!("policy index {pi} is outside the table")))?;
        used[slot] = true;
        if n == 0 {
            let mut buf = [0u8; 20];
            let digits = decimal(seq, &mut buf);
            if prefix.len() + digits.len() > MAX_ID_LEN {
                return Err(bad("a derived id is longer than 255 bytes".into()));
            }
            derived_any = true;
            rows.push_parts(key, seq, prefix, digits, ids_map[slot]);
            continue;
        }
        let start = ir.pos;
        let id = usize::try_from(n)
            .ok()
            .and_then(|n| c.ids.get(start..start.checked_add(n)?))
            .ok_or_else(|| bad("id column is truncated".into()))?;
        if !valid_id(id) {
            return Err(bad(
                "an id is longer than 255 bytes or not printable ASCII".into()
            ));
        }
        if is_derived(id, prefix, seq) {
            return Err(bad(
                "an id equal to id_prefix and its seq is written literally".into(),
            ));
        }
        ir.pos += id.len();
        rows.push_parts(key, seq, id, &[], ids_map[slot]);
    }
    if !ir.done() || !pr.done() {
        return Err(bad("columns hold more data than count says".into()));
    }
    if used.iter().any(|u| !u) {
        return Err(bad("policy table holds a policy no row uses".into()));
    }
    if !derived_any && !prefix.is_empty() {
        return Err(bad("id_prefix is set but no id is derived from it".into()));
    }
    Ok(rows)
}

/// Compress a canonical payload.
#[cfg(feature = "zstd-c")]
pub fn compress(raw: &[u8]) -> Vec<u8> {
    crate::zframe::compress(raw, ZSTD_LEVEL)
}

/// SPEC.md §7 step 7, in its order: the signed length against the cap, the
/// file's length and hash against the signed ones (the *compressed* bytes,
/// before anything is decompressed), the signed decompressed length against
/// its cap, the zstd frame (§5.1), then decompression with a hard cap and the
/// exact signed decompressed length.
pub fn open_file(
    file: &str,
    bytes: &[u8],
    fref: &crate::docs::FileRef,
    limits: &Limits,
) -> VResult<Vec<u8>> {
    if fref.length > limits.max_file_bytes {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "declared length {} exceeds the limit {}",
                fref.length, limits.max_file_bytes
            ),
        ));
    }
    if bytes.len() as u64 != fref.length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!(
                "is {} bytes; the manifest says {}",
                bytes.len(),
                fref.length
            ),
        ));
    }
    if sha256(bytes) != fref.sha256 {
        return Err(reject(
            file,
            Code::HashMismatch,
            "SHA-256 differs from the manifest; the file was altered or belongs to another snapshot",
        ));
    }
    if fref.raw_length > limits.max_raw_bytes {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "declared decompressed length {} exceeds the limit {}",
                fref.raw_length, limits.max_raw_bytes
            ),
        ));
    }
    // Exactly one zstd frame, covering every byte: no skippable frames, no
    // second frame, nothing after it.
    match crate::zframe::frame_size(bytes) {
        Some(n) if n == bytes.len() => {}
        _ => {
            return Err(reject(
                file,
                Code::MalformedData,
                "is not exactly one zstd frame",
            ));
        }
    }
    check_frame_header(file, bytes, fref.raw_length)?;
    let raw = crate::zframe::decompress_capped(bytes, ZSTD_WINDOW_LOG_MAX, fref.raw_length)
        .map_err(|e| reject(file, Code::MalformedData, e))?;
    if raw.len() as u64 != fref.raw_length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!(
                "decompresses to {}{} bytes; the manifest says {}",
                raw.len(),
                if raw.len() as u64 > fref.raw_length {
                    "+"
                } else {
                    ""
                },
                fref.raw_length
            ),
        ));
    }
    Ok(raw)
}

/// SPEC.md §5.1: the zstd frame header must declare its content size, equal
/// to the signed decompressed length, and a window of at most 2^27 bytes. libzstd
/// ignores its window limit when a frame declares a size that fits the output,
/// so the header is read here rather than trusted to the decoder.
fn check_frame_header(file: &str, bytes: &[u8], raw_length: u64) -> VResult<()> {
    let bad = |d: String| reject(file, Code::MalformedData, format!("zstd frame header: {d}"));
    if bytes.len() < 6 || bytes[..4] != [0x28, 0xB5, 0x2F, 0xFD] {
        return Err(bad("missing zstd magic number".into()));
    }
    let fhd = bytes[4];
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return Err(bad("reserved bit is set".into()));
    }
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let mut pos = 5;
    let mut window: Option<u64> = None;
    if !single_segment {
        let wd = bytes[pos];
        let exponent = u32::from(wd >> 3);
        let base = 1u64 << (10 + exponent);
        window = Some(base + (base / 8) * u64::from(wd & 0x07));
        pos += 1;
    }
    if dict_len != 0 {
        return Err(bad("a dictionary id is not allowed".into()));
    }
    let fcs_len = match (fcs_flag, single_segment) {
        (0, true) => 1,
        (0, false) => 0,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let Some(field) = bytes.get(pos..pos + fcs_len).filter(|_| fcs_len > 0) else {
        return Err(bad("the content size is not declared".into()));
    };
    let mut fcs = field
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if fcs_len == 2 {
        fcs += 256;
    }
    if fcs != raw_length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!("zstd frame declares {fcs} decompressed bytes; the manifest says {raw_length}"),
        ));
    }
    let window = window.unwrap_or(fcs);
    if window > 1 << ZSTD_WINDOW_LOG_MAX {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!("zstd window of {window} bytes exceeds 2^{ZSTD_WINDOW_LOG_MAX}"),
        ));
    }
    Ok(())
}

/// A data file's signed entry count must not exceed `max_records_per_file`
/// (`limit_exceeded`); checked before its payload is decoded.
fn check_count(file: &str, count: u64, limits: &Limits) -> VResult<()> {
    if count > limits.max_records_per_file {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!(
                "the manifest declares {count} entries; at most {} are accepted per file",
                limits.max_records_per_file
            ),
        ));
    }
    Ok(())
}

/// Encode a shard payload.
pub fn encode_shard(lo: u64, hi: u64, rows: &Rows, set: &PolicySet) -> Vec<u8> {
    cbor::to_vec(&ShardDoc {
        hi,
        lo,
        rows: encode_columns(rows, set),
    })
}

/// Decode a shard payload for range `[lo, hi)` holding `count` rows.
pub fn decode_shard(
    file: &str,
    raw: &[u8],
    lo: u64,
    hi: u64,
    count: u64,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    // SPEC.md §5.3: the signed count is bounded before the payload is decoded.
    check_count(file, count, limits)?;
    let doc: ShardDoc = cbor::from_slice_canonical(raw)
        .map_err(|e| reject(file, Code::MalformedData, format!("shard is {e}")))?;
    if doc.lo != lo || doc.hi != hi {
        return Err(reject(
            file,
            Code::RangeMismatch,
            format!(
                "shard covers [{}, {}), the manifest's range is [{lo}, {hi})",
                doc.lo, doc.hi
            ),
        ));
    }
    if doc.rows.count != count {
        return Err(reject(
            file,
            Code::CountMismatch,
            format!(
                "shard holds {} rows; the manifest says {count}",
                doc.rows.count
            ),
        ));
    }
    decode_columns(file, &doc.rows, (lo, hi), limits, set)
}

/// A decoded layer.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub from: u64,
    pub to: u64,
    pub dels: Vec<(u64, u64)>,
    pub puts: Rows,
}

impl Layer {
    /// The part of the layer inside `[lo, hi)`, or `None` when it changes
    /// nothing there.
    pub fn part(&self, lo: u64, hi: u64) -> Option<(&[(u64, u64)], Rows)> {
        let d0 = self.dels.partition_point(|&(k, _)| k < lo);
        let d1 = self.dels.partition_point(|&(k, _)| k < hi);
        let (p0, p1) = (self.puts.lower_bound(lo), self.puts.lower_bound(hi));
        (d0 < d1 || p0 < p1).then(|| (&self.dels[d0..d1], self.puts.slice(p0, p1)))
    }
}

/// The rows of one range: its base shard (`raw`, already opened and
/// hash-checked, at `loc`) decoded for `[lo, hi)` with `count` entries, then
/// each layer's part inside the range applied in order. Policies are
/// interned into `set`, which must already hold the layers' policies.
#[allow(clippy::too_many_arguments)]
pub fn range_rows(
    loc: &str,
    raw: &[u8],
    lo: u64,
    hi: u64,
    count: u64,
    layers: &[(String, Layer)],
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Rows> {
    let mut rows = decode_shard(loc, raw, lo, hi, count, limits, set)?;
    for (lloc, l) in layers {
        if let Some((dels, puts)) = l.part(lo, hi) {
            rows = rows.apply(dels, &puts, lloc)?;
        }
    }
    Ok(rows)
}

/// Encode a layer payload.
pub fn encode_layer(
    from: u64,
    to: u64,
    dels: &[(u64, u64)],
    puts: &Rows,
    set: &PolicySet,
) -> Vec<u8> {
    cbor::to_vec(&LayerDoc {
        to,
        dels: encode_keys(dels),
        from,
        puts: encode_columns(puts, set),
    })
}

/// Decode a layer payload; `count` is the manifest's change count.
pub fn decode_layer(
    file: &str,
    raw: &[u8],
    count: u64,
    limits: &Limits,
    set: &mut PolicySet,
) -> VResult<Layer> {
    let doc: LayerDoc = cbor::from_slice_canonical(raw)
        .map_err(|e| reject(file, Code::MalformedData, format!("layer is {e}")))?;
    if doc.from.checked_add(1) != Some(doc.to) {
        return Err(reject(
            file,
            Code::LayerMismatch,
            format!(
                "layer goes from {} to {}; layers span exactly one version",
                doc.from, doc.to
            ),
        ));
    }
    if doc.dels.count.checked_add(doc.puts.count) != Some(count) {
        return Err(reject(
            file,
            Code::CountMismatch,
            "layer's change count differs from the manifest",
        ));
    }
    if doc.dels.count > limits.max_records_per_file {
        return Err(reject(file, Code::LimitExceeded, "too many deletions"));
    }
    let dels = decode_keys(
        file,
        "dels",
        (&doc.dels.keys, &doc.dels.key_low, &doc.dels.seqs),
        doc.dels.count,
        (0, KEY_SPACE),
    )?;
    let puts = decode_columns(file, &doc.puts, (0, KEY_SPACE), limits, set)?;
    // A row is either deleted or put, never both.
    let mut j = 0;
    for &(k, s) in &dels {
        j += puts.keys[j..].partition_point(|&pk| pk < k);
        let mut t = j;
        while t < puts.len() && puts.keys[t] == k {
            if puts.seqs[t] == s {
                return Err(reject(
                    file,
                    Code::MalformedData,
                    "a row is both deleted and put",
                ));
            }
            t += 1;
        }
    }
    Ok(Layer {
        from: doc.from,
        to: doc.to,
        dels,
        puts,
    })
}

fn prefix_sort_key(r: &Record) -> (u64, u8, u64) {
    (r.scope.key_range().0, r.scope.specificity(), r.seq)
}

/// Encode the prefix table; `records` must all have prefix scopes.
pub fn encode_prefixes(records: &[Record]) -> Vec<u8> {
    let mut rows: Vec<&Record> = records.iter().collect();
    rows.sort_by_key(|r| prefix_sort_key(r));
    cbor::to_vec(&PrefixDoc {
        rows: rows
            .into_iter()
            .map(|r| PrefixRow {
                id: r.id.clone(),
                seq: r.seq,
                scope: r.scope.canonical(),
                policy: r.policy.clone(),
            })
            .collect(),
    })
}

/// Decode the prefix table holding `count` entries.
pub fn decode_prefixes(
    file: &str,
    raw: &[u8],
    count: u64,
    limits: &Limits,
) -> VResult<Vec<Record>> {
    let bad = |d: String| reject(file, Code::MalformedData, d);
    // SPEC.md §5.5 step 1: the signed count is bounded before the table is
    // decoded (a prefix row is a CBOR map; 1 GiB of them is not decoded).
    check_count(file, count, limits)?;
    let doc: PrefixDoc =
        cbor::from_slice_canonical(raw).map_err(|e| bad(format!("prefix table is {e}")))?;
    if doc.rows.len() as u64 != count {
        return Err(reject(
            file,
            Code::CountMismatch,
            format!(
                "prefix table holds {} entries; the manifest says {count}",
                doc.rows.len()
            ),
        ));
    }
    let mut out: Vec<Record> = Vec::with_capacity(doc.rows.len());
    for r in doc.rows {
        let scope = Scope::parse(&r.scope).map_err(|e| bad(format!("scope: {e}")))?;
        if matches!(scope, Scope::Exact(_)) || scope.canonical() != r.scope {
            return Err(bad(format!(
                "scope {:?} is not a canonical CC-XXX or CC-XXX-YY prefix",
                r.scope
            )));
        }
        if !valid_id(r.id.as_bytes()) || r.seq == 0 {
            return Err(bad("an entry has an invalid id or seq 0".into()));
        }
        r.policy
            .validate()
            .map_err(|e| bad(format!("policy: {e}")))?;
        let rec = Record {
            scope,
            seq: r.seq,
            id: r.id,
            policy: r.policy,
        };
        if out
            .last()
            .is_some_and(|p| prefix_sort_key(p) >= prefix_sort_key(&rec))
        {
            return Err(reject(
                file,
                Code::UnsortedKeys,
                "prefix entries are not sorted strictly by (scope start, specificity, seq)",
            ));
        }
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
#[cfg(feature = "store")]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal() {
        let mut b = Vec::new();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            b.clear();
            put_varint(&mut b, v);
            let mut r = VarintReader { buf: &b, pos: 0 };
            assert_eq!(r.next(), Some(v));
            assert!(r.done());
        }
        // 0 written in two bytes is refused.
        let mut r = VarintReader {
            buf: &[0x80, 0x00],
            pos: 0,
        };
        assert_eq!(r.next(), None);
        let mut r = VarintReader {
            buf: &[0xff; 11],
            pos: 0,
        };
        assert_eq!(r.next(), None);
    }

    fn policy(n: u8) -> Policy {
        crate::testsite::policy(&format!("Label {n}"), n.is_multiple_of(2))
    }

    /// Rows with the given (key, seq, id), policies cycling over three.
    fn rows(list: &[(u64, u64, &str)]) -> (Rows, PolicySet) {
        let mut set = PolicySet::default();
        let mut r = Rows::default();
        for (i, &(k, s, id)) in list.iter().enumerate() {
            r.push(k, s, id, set.intern(&policy((i % 3) as u8)));
        }
        (r, set)
    }

    fn decode(c: &Columns) -> VResult<Rows> {
        decode_columns(
            "f",
            c,
            (0, KEY_SPACE),
            &Limits::DEFAULT,
            &mut PolicySet::default(),
        )
    }

    fn code(c: &Columns) -> Option<Code> {
        decode(c).err().map(|e| e.code)
    }

    #[test]
    fn columns_round_trip_with_derived_ids_split_keys_and_seq_deltas() {
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for spread in [3u64, 1 << 20, 1 << 34, KEY_SPACE / 40] {
            let mut key = 0;
            let mut list: Vec<(u64, u64, String)> = Vec::new();
            for i in 0..32u64 {
                key += 1 + next() % spread;
                let seq = 1 + next() % 1_000_000;
                let id = if i % 4 == 0 {
                    format!("X{seq}")
                } else {
                    format!("CR-{seq}")
                };
                list.push((key, seq, id));
            }
            let refs: Vec<(u64, u64, &str)> =
                list.iter().map(|(k, s, i)| (*k, *s, i.as_str())).collect();
            let (r, set) = rows(&refs);
            let c = encode_columns(&r, &set);
            assert_eq!(c.id_prefix, "CR-");
            // 24 derived ids cost one byte each; the 8 others are written out.
            let literal: usize = (0..r.len())
                .filter(|&i| r.id(i).starts_with('X'))
                .map(|i| 1 + r.id(i).len())
                .sum();
            assert_eq!(c.ids.len(), 24 + literal);
            let low = c.key_low.len() / 32;
            assert_eq!(low, choose_low_bytes(&r.keys));
            assert!(spread > 1 << 16 || low == 0, "spread {spread} low {low}");
            let back = decode(&c).unwrap();
            assert_eq!(back.keys, r.keys);
            assert_eq!(back.seqs, r.seqs);
            for i in 0..r.len() {
                assert_eq!(back.id(i), r.id(i));
            }
            // The raw helpers read and write the same blobs.
            let raw = raw_of_columns(&c).unwrap();
            assert_eq!(
                columns_from_raw(&raw, c.policies.clone(), &c.id_prefix, low),
                c
            );
        }
        // Uniformly spread keys put three low bytes aside at 10^7 keys.
        let uniform: Vec<u64> = (1..=1000u64)
            .map(|i| i * (KEY_SPACE / 10_000_000))
            .collect();
        assert_eq!(choose_low_bytes(&uniform), 3);
        assert_eq!(choose_low_bytes(&[5, 6, 8, 9, 400_000]), 0);
        // Seq deltas wrap: any seq follows any other.
        for (a, b) in [(1u64, u64::MAX), (u64::MAX, 1), (5, 5 + (1 << 63))] {
            assert_eq!(a.wrapping_add(unzigzag(zigzag(b.wrapping_sub(a)))), b);
        }
        assert_eq!(
            [0, 1, 2, 3, 4].map(|d: i64| zigzag(d as u64)),
            [0, 2, 4, 6, 8]
        );
        assert_eq!(zigzag(u64::MAX), 1);
    }

    #[test]
    fn columns_refuse_every_second_encoding() {
        let (r, set) = rows(&[(10, 7, "CR-7"), (20, 8, "CR-8"), (30, 9, "D9")]);
        let good = encode_columns(&r, &set);
        assert_eq!(code(&good), None);
        // A derivable id written literally.
        let mut raw = raw_of_columns(&good).unwrap();
        let lit = columns_from_raw(&raw, good.policies.clone(), "", 0);
        let mut c = lit.clone();
        c.id_prefix = "CR-".into();
        assert_eq!(code(&c), Some(Code::MalformedData));
        // A prefix no row uses.
        raw[0].id = "A7".into();
        raw[1].id = "A8".into();
        let c = columns_from_raw(&raw, good.policies.clone(), "Z", 0);
        assert_eq!(code(&c), Some(Code::MalformedData));
        assert_eq!(
            code(&columns_from_raw(&raw, good.policies.clone(), "", 0)),
            None
        );
        // key_low not a whole number of bytes per row, or more than 7.
        let mut c = good.clone();
        c.key_low = vec![0; 4];
        assert_eq!(code(&c), Some(Code::MalformedData));
        let c8 = columns_from_raw(
            &raw_of_columns(&good).unwrap(),
            good.policies.clone(),
            "CR-",
            7,
        );
        assert_eq!(code(&c8), None);
        let mut c = c8.clone();
        c.key_low.extend([0; 3]);
        assert_eq!(code(&c), Some(Code::MalformedData));
        // A high part that does not fit once shifted.
        let mut c = c8.clone();
        c.keys.clear();
        put_varint(&mut c.keys, 1 << 8);
        put_varint(&mut c.keys, 0);
        put_varint(&mut c.keys, 0);
        assert_eq!(code(&c), Some(Code::MalformedData));
        // No rows but low bytes.
        let (e, eset) = rows(&[]);
        let mut c = encode_columns(&e, &eset);
        assert_eq!(code(&c), None);
        c.key_low = vec![1];
        assert_eq!(code(&c), Some(Code::MalformedData));
        // Prefixes: printable, and a derived id fits in 255 bytes.
        let mut c = good.clone();
        c.id_prefix = "CR -".into();
        assert_eq!(code(&c), Some(Code::MalformedData));
        let mut c = good.clone();
        c.id_prefix = "C".repeat(255);
        assert_eq!(code(&c), Some(Code::MalformedData));
        // Seq 0 reached through a delta.
        let mut c = good.clone();
        c.seqs[1] = zigzag(0u64.wrapping_sub(7)) as u8;
        assert_eq!(code(&c), Some(Code::MalformedData));
        // Deletion columns share the key and seq coding.
        let dels = [(5u64, 3u64), (1 << 40, 1), (1 << 41, 9)];
        let k = key_columns_from_raw(&dels, 2);
        assert_eq!(raw_of_key_columns(&k).unwrap(), dels);
        assert_eq!(encode_keys(&dels).key_low.len(), 3 * 5);
    }

    /// A one-block raw zstd frame of `content` with frame header descriptor
    /// `fhd` followed by `fields` (window descriptor, dictionary id, content
    /// size as the descriptor says).
    fn frame(fhd: u8, fields: &[u8], content: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, fhd];
        f.extend_from_slice(fields);
        let header = 1u32 | ((content.len() as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(content);
        f
    }

    fn open(f: &[u8], raw_length: u64) -> Option<Code> {
        let fref = crate::docs::FileRef {
            count: 0,
            length: f.len() as u64,
            sha256: sha256(f),
            raw_length,
        };
        open_file("f", f, &fref, &Limits::DEFAULT)
            .err()
            .map(|e| e.code)
    }

    #[test]
    fn a_dictionary_id_field_is_refused_even_when_it_holds_zero() {
        let c = b"hello";
        // Single segment, 1-byte content size, no dictionary id: accepted.
        assert_eq!(open(&frame(0x20, &[5], c), 5), None);
        // Dictionary_ID_flag 1, 2 and 3 with a dictionary id of 0.
        assert_eq!(open(&frame(0x21, &[0, 5], c), 5), Some(Code::MalformedData));
        assert_eq!(
            open(&frame(0x22, &[0, 0, 5], c), 5),
            Some(Code::MalformedData)
        );
        assert_eq!(
            open(&frame(0x23, &[0, 0, 0, 0, 5], c), 5),
            Some(Code::MalformedData)
        );
        // ... and with a non-zero one.
        assert_eq!(open(&frame(0x21, &[7, 5], c), 5), Some(Code::MalformedData));
    }

    #[test]
    fn frame_checks_run_in_the_specified_order() {
        let c = b"hello";
        // raw_length over its cap is limit_exceeded before the frame is read,
        // even when the frame is also malformed.
        let tight = Limits {
            max_raw_bytes: 4,
            ..Limits::DEFAULT
        };
        let f = frame(0x21, &[0, 5], c);
        let fref = crate::docs::FileRef {
            count: 0,
            length: f.len() as u64,
            sha256: sha256(&f),
            raw_length: 5,
        };
        assert_eq!(
            open_file("f", &f, &fref, &tight).unwrap_err().code,
            Code::LimitExceeded
        );
        // A signed length over its cap wins over a length mismatch.
        let tiny = Limits {
            max_file_bytes: 3,
            ..Limits::DEFAULT
        };
        let mut long = f.clone();
        long.push(0);
        assert_eq!(
            open_file("f", &long, &fref, &tiny).unwrap_err().code,
            Code::LimitExceeded
        );
        // Trailing bytes after the frame under a matching hash: malformed_data;
        // a declared content size that differs: length_mismatch.
        let mut two = frame(0x20, &[5], c);
        two.push(0);
        assert_eq!(open(&two, 5), Some(Code::MalformedData));
        assert_eq!(open(&frame(0x20, &[5], c), 6), Some(Code::LengthMismatch));
        // No content size at all (not single segment, FCS flag 0).
        assert_eq!(open(&frame(0x00, &[0x00], c), 5), Some(Code::MalformedData));
    }
}
