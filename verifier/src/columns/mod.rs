//! Data files: shards, delta layers and the prefix table (SPEC.md §5).
//!
//! Shards and layers are column-wise: keys delta-coded as LEB128 varints (the
//! low bytes of large deltas split off into their own column), sequence
//! numbers as zigzag deltas from the row before, ids derived from a per-file
//! prefix and the seq where they can be (`CR-1234` costs one zero byte), and a
//! small index into a per-file table of distinct policies. zstd then squeezes
//! the runs that clustered ISRCs produce.
//!
//! Split by concern: `rows` holds rows in memory, `codec` the column blobs
//! (§5.3), `file` the compressed file around a payload (§5.1, §7 step 7);
//! this module the documents (shards, layers, the prefix table) built from
//! them.

mod codec;
mod file;
mod rows;

#[allow(clippy::wildcard_imports)]
use codec::*;
pub use codec::{
    RawRow, columns_from_raw, decode_columns, encode_columns, key_columns_from_raw, raw_of_columns,
    raw_of_key_columns,
};
pub(crate) use codec::{VarintReader, put_varint};
use file::check_count;
#[cfg(feature = "zstd-c")]
pub use file::compress;
pub use file::open_file;
pub use rows::{PolicySet, Rows};

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
