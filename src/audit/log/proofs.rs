//! Inclusion and consistency proofs and roots from the stored tree nodes, the
//! leaves, and the archive base.

use super::*;

/// Subtrees of `2^STORED_NODE_LEVEL` leaves and larger are stored; smaller
/// ones are recomputed from their (at most 256, one or two chunks of)
/// leaves when a proof needs them. Each stored node is a store key: from
/// level 4 they were 1/8 key per record, far more than the chunks.
pub const STORED_NODE_LEVEL: u8 = 8;

/// Node lookups for proofs: stored ones from the store, small ones rebuilt.
pub(super) struct StoredNodes<'a> {
    log: &'a Log,
    store: &'a Store,
}

impl Nodes for StoredNodes<'_> {
    type Error = LogError;
    fn node(&self, id: NodeId) -> Result<Hash> {
        let (start, end) = (id.index << id.level, (id.index + 1) << id.level);
        let base_size = self.log.base_size();
        // Archived leaves: the base frontier holds the largest subtrees
        // before the base, which are all a proof over a larger tree needs;
        // a small subtree across the base is rebuilt from its halves.
        if end <= base_size {
            return archive::base_node(&self.log.base.read().unwrap_or_else(|p| p.into_inner()).frontier, id);
        }
        if start < base_size && id.level < STORED_NODE_LEVEL {
            let left = self.node(NodeId { level: id.level - 1, index: id.index * 2 })?;
            let right = self.node(NodeId { level: id.level - 1, index: id.index * 2 + 1 })?;
            return Ok(merkle::node_hash(&left, &right));
        }
        if id.level < STORED_NODE_LEVEL {
            let (from, to) = (id.index << id.level, (id.index + 1) << id.level);
            let mut hashes = Vec::with_capacity((to - from) as usize);
            for entry in self.log.leaves(self.store, from, to) {
                hashes.push(merkle::leaf_hash(&entry?.1));
            }
            if hashes.len() as u64 != to - from {
                return Err(corrupt(format!("leaves {from}..{to} are not all stored")));
            }
            // A perfect subtree: pair up level by level.
            while hashes.len() > 1 {
                hashes = hashes.chunks(2).map(|p| merkle::node_hash(&p[0], &p[1])).collect();
            }
            return Ok(hashes[0]);
        }
        let v = self.store.get(&keys::audit_node(id.level, id.index))?;
        let v = v.ok_or_else(|| corrupt(format!("tree node {}/{} is missing", id.level, id.index)))?;
        v[..].try_into().map_err(|_| corrupt(format!("tree node {}/{} has a bad length", id.level, id.index)))
    }
}

impl Log {
    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, store: &Store, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.settle(store, size)?;
        if index >= size {
            return Err(LogError::Range(format!("leaf {index} is not in a tree of {size} leaves")));
        }
        merkle::inclusion_proof(&StoredNodes { log: self, store }, index, size)
    }

    /// Consistency proof between the trees of the first `old` and `new` leaves.
    pub fn consistency_proof(&self, store: &Store, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.settle(store, new)?;
        if old > new {
            return Err(LogError::Range(format!("tree size {old} is larger than {new}")));
        }
        merkle::consistency_proof(&StoredNodes { log: self, store }, old, new)
    }

    /// Root of the first `size` leaves.
    pub fn root(&self, store: &Store, size: u64) -> Result<Hash> {
        self.settle(store, size)?;
        merkle::subtree(&StoredNodes { log: self, store }, 0, size)
    }

    /// Stores what is pending and checks the log has `size` leaves.
    pub(super) fn settle(&self, store: &Store, size: u64) -> Result<()> {
        let mut st = self.state();
        self.write_pending(store, &mut st, Batch::default(), true)?;
        if size > st.frontier.size {
            return Err(LogError::Range(format!("the log has {} leaves, not {size}", st.frontier.size)));
        }
        Ok(())
    }
}
