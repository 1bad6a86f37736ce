//! A consistent, point-in-time view of the whole store, for backups
//! (docs/ADMIN.md, "Backup and restore"). No level key is involved: the
//! view is ciphertext as stored, with a freshly ensured audit checkpoint
//! over exactly the log it contains.

use super::error::{Error, ErrorKind, Result};
use super::{Unlocked, Vault};
use crate::format::keys;
use crate::store::{Frozen, Value};

/// The store as it was at one instant. While it exists every store write of
/// this process waits: take what is needed and let it go.
pub struct Snapshot<'a> {
    frozen: Frozen<'a>,
    header: Vec<u8>,
    checkpoint: String,
    tree_size: u64,
    block_size: u32,
}

impl Snapshot<'_> {
    /// The stored vault header (`H`), byte for byte.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// The signed checkpoint note over the snapshot's whole audit log.
    pub fn checkpoint(&self) -> &str {
        &self.checkpoint
    }

    /// Leaves in the snapshot's audit log (the checkpoint's tree size).
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Every store entry, in key order, as stored; except that a block's
    /// index entry comes with the record it points at (`block::export_value`):
    /// an archive of the view holds the blocks, not pointers into segments.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.frozen.iter().map(|r| {
            let (k, v) = r.map_err(Error::from)?;
            if k.first() == Some(&keys::BLOCK) {
                if let Some(carried) = crate::block::export_value(self.frozen.store(), self.block_size, &v)? {
                    return Ok((k, Value::from(carried)));
                }
            }
            Ok((k, v))
        })
    }
}

impl Vault<Unlocked> {
    /// Runs `f` on a point-in-time view of the whole store whose audit log is
    /// covered by a signed checkpoint (stored in the view too). Every write
    /// waits while `f` runs, so `f` must only read the view: calling back
    /// into the vault from `f` can deadlock.
    pub fn snapshot<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Snapshot<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let core = self.core();
        let (checkpoint, tree_size, frozen) =
            core.audit.checkpoint_and_freeze(&core.store).map_err(Error::from)?;
        let header = frozen
            .get(keys::HEADER)
            .map_err(Error::from)?
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "vault header is missing"))?
            .to_vec();
        f(&Snapshot { frozen, header, checkpoint, tree_size, block_size: core.block_size })
    }
}
