//! The store-side verifier: every stored leaf, node, frontier and checkpoint
//! checked in one pass (what `vaultfs audit verify STORE` and fsck run).

use super::*;

/// Vaults written before chunks also hold nodes from this level up; they
/// are never read, but checked where present.
pub(super) const LEGACY_NODE_LEVEL: u8 = 4;

impl Log {
    /// Recomputes the whole tree from the stored leaves and checks every
    /// stored checkpoint (signature, key, size stored under, root), the
    /// consistency between them, and the stored frontier and nodes.
    pub fn verify_store(&self, store: &Store) -> Result<ChainReport> {
        let key = self.public_key();
        let mut checkpoints = Vec::new();
        for (size, note) in Self::checkpoint_notes(store)? {
            let cp = Checkpoint::parse_and_verify(&note, Some(&self.origin), &key)
                .map_err(|e| corrupt(format!("checkpoint stored for size {size}: {e}")))?;
            if cp.size != size {
                return Err(corrupt(format!("checkpoint stored for size {size} says size {}", cp.size)));
            }
            checkpoints.push(cp);
        }
        let stored = match store.get(keys::AUDIT_FRONTIER)? {
            Some(v) => decode_frontier(&v)?,
            None => Frontier::default(),
        };
        // An archived log starts from its base: the tree of the archived
        // leaves, which the checkpoint kept at its size must sign, and which
        // an `archive` record in the live part must account for (cutting the
        // front off a log without the keys leaves no such record).
        let base = self.base.read().unwrap_or_else(|p| p.into_inner()).frontier.clone();
        if base.size > 0 && checkpoints.first().map(|c| c.size) != Some(base.size) {
            return Err(corrupt(format!(
                "the log is archived up to leaf {} but no checkpoint of that size is stored (the oldest kept)",
                base.size
            )));
        }
        let mut accounted = base.size == 0;
        let mut chain = crate::audit::verify::ChainVerifier::starting(&checkpoints, base.clone())?;
        let mut frontier = base;
        let mut frontier_ok = stored == frontier;
        let n0 = frontier.size;
        for entry in self.leaves(store, n0, u64::MAX) {
            let (seq, bytes) = entry?;
            let leaf = Leaf::decode(&bytes).map_err(|e| corrupt(format!("leaf {seq}: {e}")))?;
            if leaf.seq != seq {
                return Err(corrupt(format!("leaf {seq}: stored under {seq} but says seq {}", leaf.seq)));
            }
            accounted |= leaf.op == crate::audit::leaf::Op::Archive
                && leaf.result == 0
                && leaf.offset.checked_add(leaf.len) == Some(n0);
            let h = merkle::leaf_hash(&bytes);
            for (id, want) in frontier.append(h).into_iter().filter(|(id, _)| id.level >= LEGACY_NODE_LEVEL) {
                match store.get(&keys::audit_node(id.level, id.index))? {
                    Some(v) if v[..] == want[..] => {}
                    None if id.level < STORED_NODE_LEVEL => {}
                    _ => {
                        return Err(corrupt(format!(
                            "leaf {seq}: tree node {}/{} is wrong or missing",
                            id.level, id.index
                        )));
                    }
                }
            }
            chain.push(h)?;
            frontier_ok |= stored == frontier;
        }
        // The stored frontier may lag, but must be the tree of its size.
        if !frontier_ok {
            return Err(corrupt(format!(
                "stored frontier (size {}) is not the tree of the first {} of the {} leaves",
                stored.size, stored.size, frontier.size
            )));
        }
        if !accounted {
            return Err(corrupt(format!(
                "the log starts at leaf {n0} but no archive record moved the leaves before it out"
            )));
        }
        Ok(chain.finish()?)
    }
}
