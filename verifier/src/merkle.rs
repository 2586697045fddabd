//! RFC 6962 / RFC 9162 Merkle trees over 32-byte leaves: the tree head, a
//! level-by-level tree for audit paths, the one inclusion verifier every
//! proof in the project goes through (the manifest's state root, the
//! index's stored trees, receipts), and consistency proofs between two sizes
//! of one append-only tree (the witnessed log, SPEC.md §15.6). Hashing only:
//! no other module needed.

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

/// RFC 6962 §2.1.2 `PROOF(m, D[n])`: the consistency proof that the tree of
/// the first `m` leaves is a prefix of the tree of all of them. Empty for
/// `m == 0`, `m == leaves.len()`, or `m` beyond the leaves (no proof).
pub fn consistency_proof(leaves: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut out);
    }
    out
}

/// RFC 6962 `SUBPROOF(m, D[n], b)`, appending to `out`; recursion depth is
/// the tree's height (at most 64).
#[allow(clippy::many_single_char_names)]
fn subproof(m: usize, d: &[[u8; 32]], b: bool, out: &mut Vec<[u8; 32]>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(merkle_root(d));
        }
        return;
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m <= k {
        subproof(m, &d[..k], b, out);
        out.push(merkle_root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(merkle_root(&d[..k]));
    }
}

/// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of size `m` with
/// head `old` is a prefix of the tree of size `n` with head `new`. Equal
/// sizes need an empty proof and equal heads; size 0 is a prefix of
/// everything (empty proof); `m > n` never verifies.
#[allow(clippy::many_single_char_names)]
pub fn verify_consistency(
    m: u64,
    n: u64,
    old: &[u8; 32],
    new: &[u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    if m == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    // 2. A power-of-two old tree is itself the first node of the path.
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*old);
    }
    path.extend_from_slice(proof);
    // 3.–4.
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // 5.
    let (mut fr, mut sr) = (path[0], path[0]);
    // 6.
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // At most 64 shifts.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // 7.
    &fr == old && &sr == new && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u8) -> Vec<[u8; 32]> {
        (0..n).map(|i| [i; 32]).collect()
    }

    #[test]
    fn every_consistency_proof_up_to_40_leaves_verifies_and_no_altered_one_does() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let d = &all[..n];
            let new = merkle_root(d);
            for m in 0..=n {
                let old = merkle_root(&d[..m]);
                let p = consistency_proof(d, m);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &new, &p),
                    "{m} {n}"
                );
                // A wrong old head or new head, or any altered, dropped or
                // added proof hash fails. (The sizes come from signed
                // checkpoints; the algorithm does not authenticate them.)
                if m > 0 && m < n {
                    assert!(!verify_consistency(m as u64, n as u64, &new, &new, &p));
                    assert!(!verify_consistency(m as u64, n as u64, &old, &old, &p));
                    for i in 0..p.len() {
                        let mut q = p.clone();
                        q[i][0] ^= 1;
                        assert!(!verify_consistency(m as u64, n as u64, &old, &new, &q));
                        let mut q = p.clone();
                        q.remove(i);
                        assert!(!verify_consistency(m as u64, n as u64, &old, &new, &q));
                    }
                    let mut q = p.clone();
                    q.push(new);
                    assert!(!verify_consistency(m as u64, n as u64, &old, &new, &q));
                }
            }
        }
    }

    #[test]
    fn a_forked_tree_has_no_consistency_proof() {
        let a = leaves(7);
        let mut b = leaves(9);
        b[2][5] ^= 1;
        let old = merkle_root(&a[..5]);
        let p = consistency_proof(&b, 5);
        assert!(!verify_consistency(5, 9, &old, &merkle_root(&b), &p));
    }

    /// RFC 6962's example tree of seven leaves (§2.1.3): the proof between
    /// sizes 3 and 7 is [c, d, g, l] — four hashes.
    #[test]
    fn the_rfc_6962_example_proof_has_its_shape() {
        let d = leaves(7);
        let p = consistency_proof(&d, 3);
        assert_eq!(
            p,
            vec![
                MerkleTree::new(&d).levels()[0][2],
                MerkleTree::new(&d).levels()[0][3],
                merkle_root(&d[..2]),
                merkle_root(&d[4..]),
            ]
        );
        assert_eq!(consistency_proof(&d, 4), vec![merkle_root(&d[4..])]);
    }
}
