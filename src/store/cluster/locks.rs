//! File locks across hosts (docs/CLUSTER.md, "Locks across hosts"): each
//! mounted process publishes what its host's processes hold of a file
//! under `locks/INO/h/LEASE` (16 hex digits each), bound to its lease, so a
//! host that dies lets go of its locks when its lease lapses. Every
//! publication that takes more also bumps `locks/INO/seq`, and succeeds
//! only if that key is as it was when the other hosts' locks were read:
//! of two hosts claiming conflicting locks at once, one wins and the
//! other reads again and sees the winner's. While no reader is mounted
//! the holder publishes nothing (readers.rs). The values are opaque here
//! (the vault seals them).

use super::etcd::{Guard, Kv, Op};
use super::readers::Ledger;
use super::{Result, Shared, prefix_end};

/// What a claim came to.
pub enum LockClaim {
    /// Published; `seq`'s revision now.
    Won(i64),
    /// Another process took more since the token: what the others hold
    /// now (sealed values), and the token to claim with next.
    Lost(Vec<Vec<u8>>, i64),
}

impl Shared {
    fn locks_prefix(&self, ino: u64) -> Vec<u8> {
        self.meta_key(&format!("locks/{ino:016x}/"))
    }

    pub(super) fn locks_seq(&self, ino: u64) -> Vec<u8> {
        [self.locks_prefix(ino), b"seq".to_vec()].concat()
    }

    pub(super) fn locks_mine(&self, ino: u64) -> Vec<u8> {
        [self.locks_prefix(ino), format!("h/{:016x}", self.lease).into_bytes()].concat()
    }

    /// Every other process's published locks on `ino`, and the revision
    /// of `seq` they were read with (0: never claimed, or its claimer gone).
    pub fn host_locks(&self, ino: u64) -> Result<(Vec<Vec<u8>>, i64)> {
        self.still_held()?;
        if self.alone() {
            return Ok((Vec::new(), 0));
        }
        let prefix = self.locks_prefix(ino);
        let end = prefix_end(&prefix).unwrap_or_default();
        let page = self.etcd.range(&prefix, &end, 0, 0, false, false)?;
        Ok(self.others_in(ino, page.kvs))
    }

    fn others_in(&self, ino: u64, kvs: Vec<Kv>) -> (Vec<Vec<u8>>, i64) {
        let (seq, mine) = (self.locks_seq(ino), self.locks_mine(ino));
        let hosts = [self.locks_prefix(ino), b"h/".to_vec()].concat();
        let mut token = 0;
        let mut others = Vec::new();
        for kv in kvs {
            if kv.key == seq {
                token = kv.mod_revision;
            } else if kv.key.starts_with(&hosts) && kv.key != mine {
                others.push(kv.value);
            }
        }
        (others, token)
    }

    /// Publishes `value` (None: nothing held) as this process's locks on
    /// `ino` if `seq` is still at `token`: then `seq`'s new revision;
    /// otherwise the other processes' locks and token as they are now, read
    /// in the same transaction.
    pub fn claim_host_locks(&self, ino: u64, token: i64, value: Option<Vec<u8>>) -> Result<LockClaim> {
        self.still_held()?;
        // Held across the round trip: a switch to publishing (readers.rs)
        // publishes this claim or comes after it.
        let mut ledger = self.ledger();
        if self.alone_in(&ledger) {
            ledger.note(ino, value.as_ref(), false);
            return Ok(LockClaim::Won(0));
        }
        let (prefix, seq) = (self.locks_prefix(ino), self.locks_seq(ino));
        let end = prefix_end(&prefix).unwrap_or_default();
        let ops = vec![self.publication(ino, value.clone()), Op::PutLeased(seq.clone(), Vec::new(), self.lease)];
        Ok(match self.etcd.txn_else_range(vec![Guard::Modified(seq, token)], ops, &prefix, &end)? {
            Ok(revision) => {
                ledger.note(ino, value.as_ref(), true);
                LockClaim::Won(revision)
            }
            Err(page) => {
                let (others, token) = self.others_in(ino, page.kvs);
                LockClaim::Lost(others, token)
            }
        })
    }

    /// Publishes `value`, which holds less than before: no other host can
    /// have been refused for it, so no guard.
    pub fn set_host_locks(&self, ino: u64, value: Option<Vec<u8>>) -> Result<()> {
        self.still_held()?;
        let mut ledger = self.ledger();
        if self.alone_in(&ledger) {
            ledger.note(ino, value.as_ref(), false);
            return Ok(());
        }
        let sent = self.etcd.txn(Vec::new(), vec![self.publication(ino, value.clone())]);
        // Held here is less either way (the vault lets go even if etcd was
        // not told): a later publication of everything must not bring the
        // old value back.
        ledger.note(ino, value.as_ref(), sent.is_ok());
        sent.map(|_| ())
    }

    /// Whether this is the holder and no reader is mounted: no other
    /// process holds a lock, and this one's stay here (readers.rs).
    fn alone(&self) -> bool {
        self.alone_in(&self.ledger())
    }

    fn alone_in(&self, ledger: &Ledger) -> bool {
        self.reader_owns.is_none() && !ledger.readers
    }

    fn publication(&self, ino: u64, value: Option<Vec<u8>>) -> Op {
        match value {
            Some(v) => Op::PutLeased(self.locks_mine(ino), v, self.lease),
            None => Op::Delete(self.locks_mine(ino)),
        }
    }
}
