//! The Merkle proof verifiers never panic on any sizes, indices and proof
//! hashes, and never accept a proof for the wrong leaf or a tampered proof.
//!
//! Each input is read two ways: as arbitrary (mostly nonsense) arguments to
//! `verify_inclusion` / `verify_consistency`, and as the recipe for a real
//! tree of up to 300 leaves whose genuine proofs must verify and whose proofs
//! with one input-chosen hash altered must not.
#![no_main]

use std::collections::HashMap;
use std::convert::Infallible;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vaultfs::audit::merkle::{
    self, Frontier, Hash, NodeId, Nodes, consistency_proof, inclusion_proof, verify_consistency,
    verify_inclusion,
};

struct Mem(HashMap<NodeId, Hash>);

impl Nodes for Mem {
    type Error = Infallible;
    fn node(&self, id: NodeId) -> std::result::Result<Hash, Infallible> {
        Ok(self.0[&id])
    }
}

fn nonsense(u: &mut Unstructured) -> Result<()> {
    let (a, b): (u64, u64) = (u.arbitrary()?, u.arbitrary()?);
    let (h1, h2): (Hash, Hash) = (u.arbitrary()?, u.arbitrary()?);
    let n = u.int_in_range(0..=80usize)?;
    let proof: Vec<Hash> = (0..n).map(|_| u.arbitrary()).collect::<Result<_>>()?;
    let _ = verify_inclusion(&h1, a, b, &proof, &h2);
    let _ = verify_consistency(a, b, &h1, &h2, &proof);
    Ok(())
}

fn real_tree(u: &mut Unstructured) -> Result<()> {
    let n = u.int_in_range(1..=300u64)?;
    let mut f = Frontier::default();
    let mut mem = Mem(HashMap::new());
    let mut leaves = Vec::new();
    let mut roots = vec![f.root()];
    for i in 0..n {
        let h = merkle::leaf_hash(&i.to_be_bytes());
        leaves.push(h);
        mem.0.extend(f.append(h));
        roots.push(f.root());
    }
    let size = u.int_in_range(1..=n)?;
    let index = u.int_in_range(0..=size - 1)?;
    let old = u.int_in_range(0..=size)?;
    let root = roots[size as usize];

    let mut p = inclusion_proof(&mem, index, size).expect("in-memory nodes cannot fail");
    assert!(verify_inclusion(&leaves[index as usize], index, size, &p, &root));
    let mut c = consistency_proof(&mem, old, size).expect("in-memory nodes cannot fail");
    assert!(verify_consistency(old, size, &roots[old as usize], &root, &c));

    let (at, bit): (usize, u8) = (u.arbitrary()?, u.int_in_range(0..=7)?);
    if !p.is_empty() {
        let i = at % p.len();
        p[i][at % 32] ^= 1 << bit;
        assert!(
            !verify_inclusion(&leaves[index as usize], index, size, &p, &root),
            "tampered inclusion proof"
        );
    }
    if !c.is_empty() {
        let i = at % c.len();
        c[i][at % 32] ^= 1 << bit;
        assert!(
            !verify_consistency(old, size, &roots[old as usize], &root, &c),
            "tampered consistency proof"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = nonsense(&mut Unstructured::new(data));
    let _ = real_tree(&mut Unstructured::new(data));
});
