//! RFC 6962 / RFC 9162 Merkle trees over 32-byte leaves: the tree head, a
//! level-by-level tree for audit paths, and the one inclusion verifier every
//! proof in the project goes through (the manifest's state root, the
//! index's stored trees, receipts). Hashing only: no other module needed.

use sha2::{Digest, Sha256};

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ d).
pub fn leaf_hash(d: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(d);
    h.finalize().into()
}

/// RFC 6962 interior node: SHA-256(0x01 ‖ l ‖ r).
pub fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// An RFC 6962 tree kept level by level, for audit paths in O(log n). The
/// tree of RFC 6962 §2.1 pairs nodes left to right at each level and carries
/// an unpaired last node up unchanged, which is what the levels hold.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    pub fn new(leaves: &[[u8; 32]]) -> MerkleTree {
        let mut levels = vec![leaves.iter().map(leaf_hash).collect::<Vec<_>>()];
        // Each level halves (rounding up) the one below: at most 64 levels.
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        node_hash(&p[0], &p[1])
                    } else {
                        p[0]
                    }
                })
                .collect();
            levels.push(up);
        }
        MerkleTree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The levels bottom up: leaf hashes first, the root's level last.
    pub fn levels(&self) -> &[Vec<[u8; 32]>] {
        &self.levels
    }

    /// The tree head (MTH); SHA-256("") for no leaves.
    pub fn root(&self) -> [u8; 32] {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) => *r,
            None => Sha256::digest([]).into(),
        }
    }

    /// RFC 6962 audit path of leaf `m` (bottom up); empty if `m` is out of range.
    pub fn path(&self, m: usize) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        if m >= self.len() {
            return out;
        }
        let mut i = m;
        for level in &self.levels[..self.levels.len() - 1] {
            let sib = i ^ 1;
            if sib < level.len() {
                out.push(level[sib]);
            }
            i >>= 1;
        }
        out
    }
}

/// The RFC 6962 audit path of leaf `m` in the tree over `leaves`.
pub fn audit_path(leaves: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    MerkleTree::new(leaves).path(m)
}

/// RFC 9162 §2.1.3.2: the tree head that leaf data `d` at index `m` of a tree
/// of `n` leaves with audit path `path` implies; `None` if the path has the
/// wrong length for (m, n).
#[allow(clippy::many_single_char_names)]
pub fn root_from_path(d: &[u8; 32], m: u64, n: u64, path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if m >= n {
        return None;
    }
    let (mut f, mut s) = (m, n - 1);
    let mut r = leaf_hash(d);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            // At most 64 shifts.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// Whether `path` proves leaf data `d` at index `m` of `n` under `root`.
pub fn verify_inclusion(d: &[u8; 32], m: u64, n: u64, path: &[[u8; 32]], root: &[u8; 32]) -> bool {
    root_from_path(d, m, n, path).is_some_and(|r| &r == root)
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
