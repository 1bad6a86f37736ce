//! File locks (`fcntl` record locks and `flock`) on a cluster vault's
//! mounts: held in this process for this host's processes and published in
//! etcd, sealed, for the other hosts' (docs/CLUSTER.md, "Locks across
//! hosts"). A store directory leaves locks to the kernel.

mod ranges;
mod table;

pub use ranges::{Kind, Span};
pub use table::{FileLocks, Holder, Outcome, Request};

use self::table::{Board, Claimed};
use super::{Core, Error, ErrorKind, Result, Unlocked, Vault};
use crate::store::LockClaim;

/// The store as the board hosts publish their locks on; values sealed under
/// the vault metadata key, bound to the vault and the inode.
struct StoreBoard<'a>(&'a Core);

impl Board for StoreBoard<'_> {
    fn others(&self, ino: u64) -> Result<(Vec<Span>, i64)> {
        let (values, token) = self.0.store.host_locks(ino)?;
        Ok((self.open_all(ino, values)?, token))
    }

    fn claim(&self, ino: u64, token: i64, ours: &[Span]) -> Result<Claimed> {
        Ok(match self.0.store.claim_host_locks(ino, token, self.seal(ino, ours)?)? {
            LockClaim::Won(token) => Claimed::Won(token),
            LockClaim::Lost(values, token) => Claimed::Lost(self.open_all(ino, values)?, token),
        })
    }

    fn shrink(&self, ino: u64, ours: &[Span]) -> Result<()> {
        Ok(self.0.store.set_host_locks(ino, self.seal(ino, ours)?)?)
    }
}

impl StoreBoard<'_> {
    /// Other hosts' published values for `ino`, opened: every span they hold.
    fn open_all(&self, ino: u64, values: Vec<Vec<u8>>) -> Result<Vec<Span>> {
        let mut spans = Vec::new();
        for v in values {
            let plain = self.0.keys.vault_meta.open_file_locks(&self.0.vault_id, ino, &v)?;
            let list = ranges::decode(&plain).ok_or_else(|| {
                Error::new(ErrorKind::Corrupt, format!("another host's locks on inode {ino} do not parse"))
            })?;
            spans.extend(list);
        }
        Ok(spans)
    }

    /// None: nothing held, so nothing to publish.
    fn seal(&self, ino: u64, spans: &[Span]) -> Result<Option<Vec<u8>>> {
        if spans.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.0.keys.vault_meta.seal_file_locks(&self.0.vault_id, ino, &ranges::encode(spans))?))
    }
}

impl Vault<Unlocked> {
    /// Whether this vault's mounts hold file locks themselves (a cluster
    /// vault: locks hold across hosts) rather than leaving them to the kernel.
    pub fn holds_file_locks(&self) -> bool {
        self.core().store.is_cluster()
    }

    fn board(&self) -> Option<StoreBoard<'_>> {
        self.holds_file_locks().then(|| StoreBoard(self.core()))
    }

    /// F_GETLK: who holds what `r` would conflict with, on any host.
    pub fn test_file_lock(&self, r: Request) -> Result<Option<Holder>> {
        let board = self.board();
        self.core().file_locks.test(r, board.as_ref().map(|b| b as &dyn Board))
    }

    /// F_SETLK, or F_SETLKW when `wait` (given up once `interrupted`
    /// says so). Before a lock is let go, what was written is committed for
    /// other hosts, so that whoever takes the lock next, anywhere, reads it
    /// (as NFS writes back before an unlock).
    pub fn set_file_lock(&self, r: Request, wait: bool, interrupted: &dyn Fn() -> bool) -> Result<Outcome> {
        if r.kind.is_none() {
            self.publish()?;
        }
        let board = self.board();
        self.core().file_locks.set(r, wait, board.as_ref().map(|b| b as &dyn Board), interrupted)
    }

    /// At a close: `owner`'s locks on `ino` go (after a commit, as at an
    /// unlock), and its waits there end.
    pub fn drop_file_locks(&self, ino: u64, owner: u64) -> Result<()> {
        if self.core().file_locks.any_on(ino) {
            self.publish()?;
        }
        let board = self.board();
        self.core().file_locks.drop_owner(ino, owner, board.as_ref().map(|b| b as &dyn Board))
    }
}
