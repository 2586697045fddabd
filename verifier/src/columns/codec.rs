//! The column codec (SPEC.md §5.3): keys as LEB128 deltas with split-off low
//! bytes, seqs as zigzag deltas, ids derived from a per-file prefix, policies
//! as indexes into a per-file table; and the strict decoder that refuses every
//! second encoding.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads minimal LEB128 varints from a blob.
pub(crate) struct VarintReader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> VarintReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> VarintReader<'a> {
        VarintReader { buf, pos: 0 }
    }

    pub(crate) fn next(&mut self) -> Option<u64> {
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

    pub(super) fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

pub(super) fn valid_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// Build the sorted, unique per-file policy table and the remapping.
pub(super) fn file_table(pols: &[u32], set: &PolicySet) -> (Vec<Policy>, HashMap<u32, u64>) {
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

pub(super) fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

pub(super) fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// Decimal digits of `v` (no leading zeros) into `buf`; returns the used tail.
pub(super) fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
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
pub(super) fn is_derived(id: &[u8], prefix: &[u8], seq: u64) -> bool {
    let mut buf = [0u8; 20];
    let d = decimal(seq, &mut buf);
    id.len() == prefix.len() + d.len() && id.starts_with(prefix) && id.ends_with(d)
}

/// The publisher's choice of `id_prefix` (SPEC.md §5.3): the prefix `P` for
/// which the most rows have the id `P` ‖ decimal seq, the bytewise smallest
/// among equals; empty when no id ends in its seq.
pub(super) fn choose_prefix<'a>(rows: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
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
pub(super) fn choose_low_bytes(keys: &[u64]) -> usize {
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
pub(super) fn put_keys(
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

pub(super) fn encode_keys(keys: &[(u64, u64)]) -> KeyColumns {
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
    let mut ir = VarintReader::new(&c.ids);
    let mut pr = VarintReader::new(&c.policy);
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

pub(super) fn raw_keys(
    keys: &[u8],
    key_low: &[u8],
    seqs: &[u8],
    count: u64,
) -> Option<Vec<(u64, u64)>> {
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
pub(super) fn low_bytes_of(key_low: &[u8], count: u64) -> Result<usize, &'static str> {
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
pub(super) fn delta_of(high: u64, key_low: &[u8], low: usize, i: usize) -> Option<u64> {
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
pub(super) fn decode_keys(
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
    let mut ir = VarintReader::new(&c.ids);
    let mut pr = VarintReader::new(&c.policy);
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
