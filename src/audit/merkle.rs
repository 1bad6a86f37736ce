//! The log's Merkle tree: RFC 9162 (Certificate Transparency 2.0) shape with
//! BLAKE3 as the hash. leaf hash = BLAKE3(0x00 ‖ leaf), node = BLAKE3(0x01 ‖ l ‖ r),
//! a tree of n > 1 leaves splits at the largest power of two below n, and the
//! empty tree's hash is BLAKE3 of the empty string.
//!
//! Appends are O(log n) with a frontier (the roots of the perfect subtrees
//! that make up the tree). Every perfect subtree an append completes is
//! returned, so a store can keep them and answer proofs with O(log n) lookups.

use crate::crypto::{Blake3, blake3_of};

pub type Hash = [u8; 32];

pub fn empty_root() -> Hash {
    blake3_of(b"")
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Blake3::new();
    h.update(&[0x00]);
    h.update(leaf);
    h.finalize()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Blake3::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    h.finalize()
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// The frontier of a tree of `size` leaves: one hash per set bit of `size`,
/// largest subtree first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub hashes: Vec<Hash>,
}

impl Frontier {
    /// Appends a leaf hash; returns every perfect subtree this completed
    /// (the leaf itself at level 0, then each merge).
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut done = vec![(NodeId { level: 0, index }, leaf)];
        let mut h = leaf;
        let mut level = 0u8;
        // Each trailing 1 bit of the old size is a subtree of the new one's size to merge with.
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self.hashes.pop().expect("a well-formed frontier has one hash per set bit of size");
            h = node_hash(&left, &h);
            level += 1;
            done.push((NodeId { level, index: index >> level }, h));
            n >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
        done
    }

    /// The tree head (MTH of all leaves so far).
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }

    /// Whether `hashes` has one entry per set bit of `size` (check after decoding).
    pub fn is_well_formed(&self) -> bool {
        self.hashes.len() == self.size.count_ones() as usize
    }
}

/// Where proofs get perfect-subtree hashes from (a store, or memory in tests).
pub trait Nodes {
    type Error;
    fn node(&self, id: NodeId) -> Result<Hash, Self::Error>;
}

/// MTH of leaves `[start, end)` from perfect subtrees: O(log n) lookups when
/// `start` is aligned, as it always is in RFC 9162 proofs.
pub fn subtree<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end - start;
    if n.is_power_of_two() && start % n == 0 {
        return nodes.node(NodeId { level: n.trailing_zeros() as u8, index: start / n });
    }
    let k = split(n);
    Ok(node_hash(&subtree(nodes, start, start + k)?, &subtree(nodes, start + k, end)?))
}

/// Inclusion proof of leaf `index` in the tree of the first `size` leaves
/// (RFC 9162 section 2.1.3.1).
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<N: Nodes>(nodes: &N, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), N::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        path(nodes, m - k, start + k, end, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

/// Consistency proof between the trees of `old` and `new` leaves
/// (RFC 9162 section 2.1.4.1). Empty when `old` is 0 or equals `new`.
pub fn consistency_proof<N: Nodes>(nodes: &N, old: u64, new: u64) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<N: Nodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
#[cfg(any(test, feature = "internals"))]
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
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
    s == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2).
#[cfg(any(test, feature = "internals"))]
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
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
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use proptest::prelude::*;

    use super::*;

    /// The definition, straight from RFC 9162 section 2.1.1.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    struct Mem(HashMap<NodeId, Hash>);

    impl Nodes for Mem {
        type Error = Infallible;
        fn node(&self, id: NodeId) -> Result<Hash, Infallible> {
            Ok(self.0[&id])
        }
    }

    /// Leaves, the in-memory node store, and the root after each append.
    fn build(n: u64) -> (Vec<Hash>, Mem, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::default();
        let mut mem = Mem(HashMap::new());
        let mut roots = vec![f.root()];
        for l in &leaves {
            mem.0.extend(f.append(*l));
            assert!(f.is_well_formed());
            roots.push(f.root());
        }
        (leaves, mem, roots)
    }

    #[test]
    fn frontier_root_matches_the_definition() {
        let (leaves, _, roots) = build(70);
        for (n, root) in roots.iter().enumerate() {
            assert_eq!(*root, mth(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn every_proof_up_to_64_leaves() {
        let (leaves, mem, roots) = build(64);
        for n in 1..=64u64 {
            for i in 0..n {
                let p = inclusion_proof(&mem, i, n).unwrap();
                assert!(verify_inclusion(&leaves[i as usize], i, n, &p, &roots[n as usize]), "{i} in {n}");
                if n > 1 {
                    let other = &leaves[((i + 1) % n) as usize];
                    assert!(!verify_inclusion(other, i, n, &p, &roots[n as usize]));
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&mem, m, n).unwrap();
                assert!(verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p), "{m}->{n}");
                if m > 0 && m < n {
                    let mut bad = roots[m as usize];
                    bad[0] ^= 1;
                    assert!(!verify_consistency(m, n, &bad, &roots[n as usize], &p));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn proofs_hold_for_trees_up_to_3000(n in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
            let (leaves, mem, roots) = build(n);
            let i = a % n;
            let p = inclusion_proof(&mem, i, n).unwrap();
            prop_assert!(verify_inclusion(&leaves[i as usize], i, n, &p, &roots[n as usize]));
            if n > 1 {
                prop_assert!(!verify_inclusion(&leaves[((i + 1) % n) as usize], i, n, &p, &roots[n as usize]));
            }
            let m = b % (n + 1);
            let c = consistency_proof(&mem, m, n).unwrap();
            prop_assert!(verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &c));
            if !c.is_empty() {
                let mut bad = c.clone();
                bad[0][5] ^= 0x40;
                prop_assert!(!verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &bad));
            }
        }
    }
}
