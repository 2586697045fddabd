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
use crate::error::{VResult, reject};
use crate::model::Policy;

/// Domain tag of a range leaf.
pub const RANGE_TAG: &[u8] = b"consentry-range-v1\0";

/// SHA-256 of a policy's canonical CBOR.
pub fn policy_hash(p: &Policy) -> [u8; 32] {
    Sha256::digest(cbor::to_vec(p)).into()
}

/// The canonical entry stream of a range: for each row, key ‖ seq ‖ len(id) ‖
/// id ‖ policy hash, integers as 8-byte big-endian and `len(id)` as one byte.
/// The verifier's local index stores exactly these bytes, so checking an index
/// block against the signed manifest is one hash.
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

/// Leaf hash of `[lo, hi)` given its entry stream: SHA-256(tag ‖ lo ‖ hi ‖ stream).
pub fn range_leaf_stream(lo: u64, hi: u64, stream: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RANGE_TAG);
    h.update(lo.to_be_bytes());
    h.update(hi.to_be_bytes());
    h.update(stream);
    h.finalize().into()
}

/// Leaf hash of the range `[lo, hi)` holding `rows` (see [`entry_stream`]).
pub fn range_leaf(lo: u64, hi: u64, rows: &Rows, policy_hashes: &[[u8; 32]]) -> [u8; 32] {
    range_leaf_stream(lo, hi, &entry_stream(rows, policy_hashes))
}

/// RFC 6962 Merkle tree head: leaf = SHA-256(0x00 ‖ d), node = SHA-256(0x01 ‖ l ‖ r),
/// split at the largest power of two below n.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(leaves[0]);
            h.finalize().into()
        }
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_root(&leaves[..k]));
            h.update(merkle_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// The leaves a manifest commits to: the prefix table's SHA-256, then each
/// range's leaf in order.
pub fn leaves_of(m: &Manifest) -> Vec<[u8; 32]> {
    std::iter::once(m.prefixes.sha256)
        .chain(m.ranges.iter().map(|r| r.leaf))
        .collect()
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
                "state_mismatch",
                "range count differs from the manifest",
            ));
        }
        let hashes = self.policy_hashes();
        for (i, ((lo, hi, rows), r)) in self.ranges.iter().zip(&m.ranges).enumerate() {
            if (*lo, *hi) != m.range_bounds(i) {
                return Err(reject(
                    file,
                    "state_mismatch",
                    format!("range {i} bounds differ from the manifest"),
                ));
            }
            if rows.len() as u64 != r.count {
                return Err(reject(
                    file,
                    "state_mismatch",
                    format!(
                        "range {i} holds {} entries after applying the layers; the manifest says {}",
                        rows.len(),
                        r.count
                    ),
                ));
            }
            if range_leaf(*lo, *hi, rows, &hashes) != r.leaf {
                return Err(reject(
                    file,
                    "state_mismatch",
                    format!(
                        "range {i}: the entries do not hash to the manifest's leaf (a layer or shard does not produce the published state)"
                    ),
                ));
            }
        }
        Ok(())
    }
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
}
