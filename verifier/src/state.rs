//! The published state and its commitments (SPEC.md §6): a leaf hash per key
//! range over the canonical entry stream, and an RFC 6962 Merkle tree head over
//! the prefix table's hash and the range leaves.
//!
//! Because the leaves commit to entries rather than to file bytes, a verifier
//! that applied delta layers to its own copy proves it holds exactly the
//! published state without fetching any base shard again.

use sha2::{Digest, Sha256};

use crate::cbor;
use crate::columns::{PolicySet, Rows};
use crate::declaration::Record;
use crate::docs::Manifest;
use crate::error::{Code, VResult, reject};
use crate::isrc::Scope;
use crate::model::Policy;

pub use crate::merkle::{
    MerkleTree, audit_path, leaf_hash, merkle_root, node_hash, root_from_path, verify_inclusion,
};

/// Domain tag of a range leaf.
pub const RANGE_TAG: &[u8] = b"consentry-range-v2\0";
/// Domain tag of a chunk hash.
pub const CHUNK_TAG: &[u8] = b"consentry-chunk-v1\0";
/// Domain tag of the prefix leaf (leaf 0 of the state root).
pub const PREFIX_TAG: &[u8] = b"consentry-prefixes-v1\0";
/// Entries per chunk (the last chunk of a range may hold fewer). Small, so a
/// receipt carries ~1 KB of entries per proven key (SPEC.md §13), and the
/// index verifies a first lookup by hashing 16 entries; the chunk hash list
/// it keeps costs 2 bytes per entry.
pub const CHUNK: usize = 16;
/// Bytes of an entry besides its id: key, seq, id length, policy hash.
pub const ENTRY_FIXED: usize = 8 + 8 + 1 + 32;

/// SHA-256 of a policy's canonical CBOR.
pub fn policy_hash(p: &Policy) -> [u8; 32] {
    Sha256::digest(cbor::to_vec(p)).into()
}

/// The canonical entry stream of a range: for each row, key ‖ seq ‖ len(id) ‖
/// id ‖ policy hash, integers as 8-byte big-endian and `len(id)` as one byte.
/// The verifier's local index stores exactly these bytes, so checking an index
/// chunk against the signed manifest is one hash.
pub fn entry_stream(rows: &Rows, policy_hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(rows.len() * 56);
    for i in 0..rows.len() {
        buf.extend_from_slice(&rows.keys[i].to_be_bytes());
        buf.extend_from_slice(&rows.seqs[i].to_be_bytes());
        let id = rows.id(i).as_bytes();
        buf.push(id.len() as u8);
        buf.extend_from_slice(id);
        buf.extend_from_slice(&policy_hashes[rows.pol[i] as usize]);
    }
    buf
}

/// Byte offsets in `stream` where each chunk of [`CHUNK`] entries starts, plus
/// the stream length at the end (so chunk `c` is `ends[c]..ends[c + 1]`).
/// `None` when the stream does not parse as whole entries.
pub fn chunk_bounds(stream: &[u8]) -> Option<Vec<usize>> {
    let mut bounds = vec![0usize];
    let mut s = 0usize;
    let mut n = 0usize;
    // Each iteration consumes at least ENTRY_FIXED bytes.
    while s < stream.len() {
        if stream.len() - s < ENTRY_FIXED {
            return None;
        }
        s += ENTRY_FIXED + usize::from(stream[s + 16]);
        if s > stream.len() {
            return None;
        }
        n += 1;
        if n.is_multiple_of(CHUNK) && s < stream.len() {
            bounds.push(s);
        }
    }
    if !stream.is_empty() {
        bounds.push(stream.len());
    }
    Some(bounds)
}

/// Number of chunks of a range holding `count` entries.
pub fn chunk_count(count: u64) -> u64 {
    count.div_ceil(CHUNK as u64)
}

/// Hash of one chunk: SHA-256(chunk tag ‖ the chunk's entry-stream bytes).
pub fn chunk_hash(bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHUNK_TAG);
    h.update(bytes);
    h.finalize().into()
}

/// The chunk hashes of an entry stream (`None` if it does not parse).
pub fn chunk_hashes_of_stream(stream: &[u8]) -> Option<Vec<[u8; 32]>> {
    let b = chunk_bounds(stream)?;
    Some(
        b.windows(2)
            .map(|w| chunk_hash(&stream[w[0]..w[1]]))
            .collect(),
    )
}

/// The chunk hashes of `rows` (see [`entry_stream`]), built one chunk at a
/// time in a reused buffer (no whole-range stream, no re-parse).
pub fn chunk_hashes(rows: &Rows, policy_hashes: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(rows.len().div_ceil(CHUNK));
    let mut buf = Vec::with_capacity(CHUNK * (ENTRY_FIXED + 16));
    let mut start = 0;
    while start < rows.len() {
        let end = (start + CHUNK).min(rows.len());
        buf.clear();
        for i in start..end {
            buf.extend_from_slice(&rows.keys[i].to_be_bytes());
            buf.extend_from_slice(&rows.seqs[i].to_be_bytes());
            let id = rows.id_bytes(i);
            buf.push(id.len() as u8);
            buf.extend_from_slice(id);
            buf.extend_from_slice(&policy_hashes[rows.pol[i] as usize]);
        }
        out.push(chunk_hash(&buf));
        start = end;
    }
    out
}

/// Leaf hash of `[lo, hi)` holding `count` entries whose chunk hashes are
/// `chunks`: SHA-256(tag ‖ lo ‖ hi ‖ count ‖ MTH(chunks)).
pub fn range_leaf_of_chunks(lo: u64, hi: u64, count: u64, chunks: &[[u8; 32]]) -> [u8; 32] {
    range_leaf_of_root(lo, hi, count, &merkle_root(chunks))
}

/// Leaf hash of a range given the MTH of its chunk hashes.
pub fn range_leaf_of_root(lo: u64, hi: u64, count: u64, chunk_root: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RANGE_TAG);
    h.update(lo.to_be_bytes());
    h.update(hi.to_be_bytes());
    h.update(count.to_be_bytes());
    h.update(chunk_root);
    h.finalize().into()
}

/// Leaf hash of the range `[lo, hi)` holding `rows` (see [`entry_stream`]).
pub fn range_leaf(lo: u64, hi: u64, rows: &Rows, policy_hashes: &[[u8; 32]]) -> [u8; 32] {
    range_leaf_of_chunks(
        lo,
        hi,
        rows.len() as u64,
        &chunk_hashes(rows, policy_hashes),
    )
}

/// The prefix table as an entry stream (SPEC.md §6): each entry keyed
/// `4 · lo + specificity` of its scope, so entries of one scope are
/// consecutive and sorted like the table itself, and the ones covering an
/// ISRC lie between two keys a receipt can bracket.
pub fn prefix_key(scope: Scope) -> u64 {
    scope.key_range().0 * 4 + u64::from(scope.specificity())
}

/// The scope whose [`prefix_key`] is `k`, if any.
pub fn prefix_scope(k: u64) -> Option<Scope> {
    let lo = k / 4;
    let scope = match k % 4 {
        1 => Scope::registrant_of(lo),
        2 => Scope::registrant_year_of(lo),
        _ => return None,
    };
    (lo < crate::isrc::KEY_SPACE && prefix_key(scope) == k).then_some(scope)
}

/// The chunk hashes of the prefix table's entry stream (`records` in table
/// order, which is `(prefix_key, seq)` order).
pub fn prefix_chunk_hashes(records: &[Record]) -> Vec<[u8; 32]> {
    let mut rows = Rows::with_capacity(records.len(), 0);
    let mut set = PolicySet::default();
    for r in records {
        let p = set.intern(&r.policy);
        rows.push(prefix_key(r.scope), r.seq, &r.id, p);
    }
    let hashes: Vec<[u8; 32]> = set.list.iter().map(policy_hash).collect();
    chunk_hashes(&rows, &hashes)
}

/// Leaf 0 given the prefix table's entry count and the MTH of its chunk
/// hashes: SHA-256(tag ‖ u64be(count) ‖ MTH).
pub fn prefix_leaf_of_root(count: u64, chunk_root: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PREFIX_TAG);
    h.update(count.to_be_bytes());
    h.update(chunk_root);
    h.finalize().into()
}

/// Leaf 0 of the state root: the prefix table's entries, chunked like a range.
pub fn prefix_leaf(records: &[Record]) -> [u8; 32] {
    prefix_leaf_of_root(
        records.len() as u64,
        &merkle_root(&prefix_chunk_hashes(records)),
    )
}

/// The leaves a manifest commits to ([`Manifest::leaves`]).
pub fn leaves_of(m: &Manifest) -> Vec<[u8; 32]> {
    m.leaves()
}

/// A [`PolicySet`] and the hashes of its policies, kept in step as the set
/// grows: workers that decode shards in parallel each intern into their own
/// copy and hash only the policies their shards added.
#[derive(Debug, Clone, Default)]
pub struct HashedPolicies {
    pub set: PolicySet,
    hashes: Vec<[u8; 32]>,
}

impl HashedPolicies {
    pub fn new(set: &PolicySet) -> HashedPolicies {
        let mut h = HashedPolicies {
            set: set.clone(),
            hashes: Vec::new(),
        };
        h.hashes();
        h
    }

    /// The hashes of every policy in the set, in set order.
    pub fn hashes(&mut self) -> &[[u8; 32]] {
        let have = self.hashes.len();
        self.hashes
            .extend(self.set.list[have..].iter().map(policy_hash));
        &self.hashes
    }
}

/// A full state in memory: the exact-scope rows split by the manifest's ranges,
/// a shared policy table and the prefix entries.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// `(lo, hi, rows)` per range, in key order.
    pub ranges: Vec<(u64, u64, Rows)>,
    pub policies: PolicySet,
    pub prefixes: Vec<Record>,
}

impl State {
    /// Policy hashes aligned with `self.policies.list`.
    pub fn policy_hashes(&self) -> Vec<[u8; 32]> {
        self.policies.list.iter().map(policy_hash).collect()
    }

    /// All rows in one sorted `Rows`.
    pub fn flatten(&self) -> Rows {
        let mut all = Rows::default();
        for (_, _, r) in &self.ranges {
            all.append(r);
        }
        all
    }

    /// Re-split sorted rows at the manifest's range boundaries.
    pub fn split(rows: &Rows, m: &Manifest) -> Vec<(u64, u64, Rows)> {
        (0..m.ranges.len())
            .map(|i| {
                let (lo, hi) = m.range_bounds(i);
                let (a, b) = (rows.lower_bound(lo), rows.lower_bound(hi));
                (lo, hi, rows.slice(a, b))
            })
            .collect()
    }

    /// SPEC.md §7 step 9: every range's count and leaf must equal the manifest's.
    pub fn check_against(&self, m: &Manifest, file: &str) -> VResult<()> {
        if self.ranges.len() != m.ranges.len() {
            return Err(reject(
                file,
                Code::StateMismatch,
                "range count differs from the manifest",
            ));
        }
        let hashes = self.policy_hashes();
        for (i, (lo, hi, rows)) in self.ranges.iter().enumerate() {
            if (*lo, *hi) != m.range_bounds(i) {
                return Err(reject(
                    file,
                    Code::StateMismatch,
                    format!("range {i} bounds differ from the manifest"),
                ));
            }
            check_range(
                m,
                i,
                rows.len() as u64,
                || chunk_hashes(rows, &hashes),
                file,
            )?;
        }
        check_prefix_leaf(m, &self.prefixes, file)
    }
}

/// SPEC.md §7 step 9 for range `i` of `m`: it holds `count` entries whose
/// chunk hashes (computed only when the count matches) give its leaf.
pub fn check_range(
    m: &Manifest,
    i: usize,
    count: u64,
    chunks: impl FnOnce() -> Vec<[u8; 32]>,
    file: &str,
) -> VResult<()> {
    let r = &m.ranges[i];
    if count != r.count {
        return Err(reject(
            file,
            Code::StateMismatch,
            format!(
                "range {i} holds {count} entries after applying the layers; the manifest says {}",
                r.count
            ),
        ));
    }
    let (lo, hi) = m.range_bounds(i);
    if range_leaf_of_chunks(lo, hi, count, &chunks()) != r.leaf {
        return Err(reject(
            file,
            Code::StateMismatch,
            format!(
                "range {i}: the entries do not hash to the manifest's leaf (a layer or shard does not produce the published state)"
            ),
        ));
    }
    Ok(())
}

/// SPEC.md §7 step 9 for the prefix table: its entries give `prefix_leaf`.
pub fn check_prefix_leaf(m: &Manifest, prefixes: &[Record], file: &str) -> VResult<()> {
    if prefix_leaf(prefixes) != m.prefix_leaf {
        return Err(reject(
            file,
            Code::StateMismatch,
            "the prefix table's entries do not hash to the manifest's prefix_leaf",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_matches_rfc6962_shape() {
        let l = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let leaf = |d: &[u8; 32]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(d);
            h.finalize().into()
        };
        let node = |a: [u8; 32], b: [u8; 32]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(a);
            h.update(b);
            h.finalize().into()
        };
        assert_eq!(
            merkle_root(&l),
            node(node(leaf(&l[0]), leaf(&l[1])), leaf(&l[2]))
        );
        assert_eq!(merkle_root(&l[..1]), leaf(&l[0]));
    }

    /// RFC 6962 §2.1.1 PATH(m, D[n]), straight from the definition.
    #[allow(clippy::many_single_char_names)]
    fn rfc_path(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m < k {
            let mut p = rfc_path(m, &d[..k]);
            p.push(merkle_root(&d[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &d[k..]);
            p.push(merkle_root(&d[..k]));
            p
        }
    }

    #[test]
    fn audit_paths_match_rfc6962_and_verify() {
        for n in 0..70usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| [i as u8; 32]).collect();
            let t = MerkleTree::new(&leaves);
            assert_eq!(t.root(), merkle_root(&leaves), "n={n}");
            for m in 0..n {
                let p = t.path(m);
                assert_eq!(p, rfc_path(m, &leaves), "n={n} m={m}");
                assert!(verify_inclusion(
                    &leaves[m],
                    m as u64,
                    n as u64,
                    &p,
                    &t.root()
                ));
                // Wrong index, wrong size, wrong leaf, shortened path: refused.
                if n > 1 {
                    assert!(!verify_inclusion(
                        &leaves[m],
                        ((m + 1) % n) as u64,
                        n as u64,
                        &p,
                        &t.root()
                    ));
                    assert!(!verify_inclusion(
                        &[0xEE; 32],
                        m as u64,
                        n as u64,
                        &p,
                        &t.root()
                    ));
                    assert!(!verify_inclusion(
                        &leaves[m],
                        m as u64,
                        n as u64,
                        &p[..p.len() - 1],
                        &t.root()
                    ));
                }
                assert!(!verify_inclusion(
                    &leaves[m],
                    m as u64,
                    n as u64 + 70,
                    &p,
                    &t.root()
                ));
            }
        }
    }

    #[test]
    fn prefix_keys_map_back_to_exactly_their_scopes() {
        for text in ["GB-NWR", "GB-NWR-25", "ZZ-ZZZ-99", "AA-000"] {
            let scope = Scope::parse(text).unwrap();
            assert_eq!(prefix_scope(prefix_key(scope)), Some(scope), "{text}");
        }
        let k = prefix_key(Scope::parse("GB-NWR").unwrap());
        for bad in [0, 3, k + 2, k + 4, crate::isrc::KEY_SPACE * 4 + 1] {
            assert_eq!(prefix_scope(bad), None, "{bad}");
        }
    }

    #[test]
    fn chunks_cut_every_16_entries() {
        let mut rows = Rows::default();
        for i in 0..34u64 {
            rows.push(1000 + i, 1, "X", 0);
        }
        let ph = [[7u8; 32]];
        let stream = entry_stream(&rows, &ph);
        let b = chunk_bounds(&stream).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(b[1], 16 * 50);
        assert_eq!(*b.last().unwrap(), stream.len());
        assert_eq!(chunk_hashes(&rows, &ph).len() as u64, chunk_count(34));
        assert_eq!(chunk_bounds(&[]).unwrap(), vec![0]);
        assert!(chunk_bounds(&stream[..stream.len() - 1]).is_none());
    }
}
