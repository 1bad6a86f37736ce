//! What a read-only mount of a cluster vault lets the kernel keep of a
//! file's pages: the holder on another host changes files without this
//! kernel knowing. At an open, and when a lock is granted (sqlite reads
//! under a lock it takes again for every transaction, without reopening),
//! the file's change time, modification time and size are compared with
//! those of this mount's last look: equal, the pages stay (as an NFS client
//! keeps them when the attributes are unchanged); otherwise they go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fuser::{INodeNo, Notifier};

use crate::vault::{Unlocked, Vault};

/// What tells a file's content changed: writes and truncates set its
/// change time, which no caller can set back.
type Version = (i64, u32, i64, u32, u64);

#[derive(Clone, Default)]
pub(super) struct ReaderPages {
    /// Each file's version at this mount's last look, while the kernel knows it.
    seen: Arc<Mutex<HashMap<u64, Version>>>,
    /// Set once the session is up (`session::mount`).
    notifier: Arc<OnceLock<Notifier>>,
}

impl ReaderPages {
    pub(super) fn set_notifier(&self, n: Notifier) {
        let _ = self.notifier.set(n);
    }

    /// Whether `ino` is as it was at the last look, remembering how it is now.
    pub(super) fn unchanged_since_last_look(&self, vault: &Vault<Unlocked>, ino: u64) -> bool {
        let Ok(a) = vault.getattr(ino) else { return false };
        let now = (a.ctime.secs, a.ctime.nanos, a.mtime.secs, a.mtime.nanos, a.size);
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(ino, now) == Some(now)
    }

    /// After a lock on `ino` was granted: catches up with the holder and,
    /// if the file changed since the last look, has the kernel drop its
    /// pages and attributes of it before the lock's reply, so that what is
    /// read under the lock is what the holder wrote before its unlock.
    pub(super) fn revalidate(&self, vault: &Vault<Unlocked>, ino: u64) {
        if let Err(err) = vault.catch_up() {
            tracing::warn!("catching up after a lock on inode {ino}: {err}");
        }
        if self.unchanged_since_last_look(vault, ino) {
            return;
        }
        if let Some(n) = self.notifier.get()
            && let Err(err) = n.inval_inode(INodeNo(ino), 0, 0)
        {
            // ENOENT: the kernel has no pages of it to drop.
            tracing::debug!("dropping the kernel's pages of inode {ino}: {err}");
        }
    }

    pub(super) fn forget(&self, ino: u64) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
    }
}
