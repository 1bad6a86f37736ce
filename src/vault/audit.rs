//! What the vault writes to its audit log, and when (docs/AUDIT.md, "What
//! the mount logs"). The adapter describes each access as a `Record`; the
//! vault stamps the time, and either lets the record ride in the batch of
//! the operation it describes (`audited`, through `Txn::commit`) or appends
//! it on its own. No access without a record: a record that cannot be
//! appended fails the access.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{Error, ErrorKind, Result};
use super::{Caller, Core, Unlocked, Vault};
use crate::audit::leaf::Leaf;
pub use crate::audit::leaf::Op as AuditOp;
use crate::audit::merkle::Hash;
use crate::audit::verify::ChainReport;
use crate::store::Batch;

/// One access, as the adapter saw it.
#[derive(Debug)]
pub struct Record {
    pub who: Caller,
    /// The calling process's name (`/proc/PID/comm`), at most 16 bytes.
    pub comm: Vec<u8>,
    pub op: AuditOp,
    pub level: Option<u8>,
    pub ino: u64,
    /// Path inside the mount, as far as the adapter knows it.
    pub path: Vec<u8>,
    pub offset: u64,
    pub len: u64,
    /// The caller's justification for the access (empty: none).
    pub note: Vec<u8>,
}

impl Record {
    /// This process's own work on a closed vault (`fsck --repair`, `rotate`).
    pub(super) fn offline(
        op: AuditOp,
        comm: &[u8],
        level: Option<u8>,
        ino: u64,
        path: Vec<u8>,
        len: u64,
    ) -> Self {
        let who = Caller {
            uid: crate::sys::effective_uid(),
            gid: crate::sys::effective_gid(),
            pid: std::process::id(),
        };
        Record { who, comm: comm.to_vec(), op, level, ino, path, offset: 0, len, note: Vec::new() }
    }

    pub(super) fn leaf(self, result: i32) -> Leaf {
        let time_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Leaf {
            seq: 0,
            time_ns,
            uid: self.who.uid,
            gid: self.who.gid,
            pid: self.who.pid,
            comm: self.comm,
            op: self.op,
            level: self.level,
            ino: self.ino,
            path: self.path,
            offset: self.offset,
            len: self.len,
            result,
            note: self.note,
        }
    }
}

/// The record of the access an operation runs for, carried by the vault
/// `audited` hands to the operation, until the batch that carries the
/// operation's change takes it (`Txn::commit`). An operation that writes
/// nothing leaves it for `audited` to append with the operation's result.
pub(super) struct Ticket(Mutex<Option<Leaf>>);

impl Ticket {
    pub(super) fn take(&self) -> Option<Leaf> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    #[cfg(test)]
    pub(super) fn holds_record(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// How long a record of a read, open or denial may wait in memory before
/// the committer stores it (records of writes are stored with the write).
pub const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Bytes of records that may wait in memory while a backup snapshot holds
/// the store (about 80,000 records).
pub const MAX_FROZEN_BACKLOG: usize = 8 << 20;

impl Core {
    /// No access without a record: a cluster mount that lost its hold on
    /// the vault can store no record again, so it serves nothing (reads
    /// included) until it is mounted again.
    fn recordable(&self) -> Result<()> {
        match self.store.hold_lost() {
            false => Ok(()),
            true => Err(super::error::err(
                ErrorKind::Io,
                "this mount lost its hold on the vault in etcd: no access it serves could be recorded, \
                 so it serves none; unmount and mount again",
            )),
        }
    }

    /// While a backup snapshot holds the store (`Store::freeze`), records
    /// cannot be stored and wait in memory. Past `MAX_FROZEN_BACKLOG` the
    /// recording thread waits for the snapshot to end too: a long snapshot
    /// under a storm of reads pauses the readers, as it pauses writers,
    /// rather than grow the daemon without bound.
    pub(super) fn bound_frozen_backlog(&self) {
        if self.store.is_frozen() && self.audit.pending_bytes() > MAX_FROZEN_BACKLOG {
            self.store.wait_unfrozen();
        }
    }

    /// Applies `batch`, with the record of the access it is for, if any.
    pub(super) fn apply(&self, batch: Batch, record: Option<Leaf>) -> Result<()> {
        match record {
            Some(leaf) => self.audit.append_with(&self.store, leaf, batch).map(drop)?,
            None => self.store.apply(batch)?,
        }
        // After the batch is in: a close that sees the flag commits it. Read
        // first: on the write path, a line every writer thread stores to
        // would bounce between cores (a store directory never clears it).
        if !self.changed.load(std::sync::atomic::Ordering::SeqCst) {
            self.changed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Stores queued records every COMMIT_EVERY and signs a checkpoint at least
/// every second while the log grows, until the vault is dropped.
pub(super) fn spawn_committer(core: Weak<Core>) {
    let spawned = std::thread::Builder::new().name("audit-commit".into()).spawn(move || {
        loop {
            std::thread::sleep(COMMIT_EVERY);
            let Some(core) = core.upgrade() else { return };
            // A backup snapshot is being copied: storing now would wait for it
            // holding the log's lock, and stall every read's record with it.
            if core.store.is_frozen() {
                continue;
            }
            if let Err(e) = core.audit.checkpoint(&core.store, true) {
                tracing::error!("audit commit failed: {e}");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the audit committer: {e}; records are stored with writes and at sync");
    }
}

/// Whether an access of this kind may change files (and so, on a mount that
/// shares writing, holds the vault).
fn changes_files(op: AuditOp) -> bool {
    use AuditOp::*;
    matches!(
        op,
        Write
            | Create
            | Mkdir
            | Mknod
            | Unlink
            | Rmdir
            | Rename
            | Link
            | Symlink
            | Setattr
            | Setxattr
            | Removexattr
            | Purge
    )
}

impl Vault<Unlocked> {
    /// Runs `op`, recording it as `rec`. `op` is handed a vault that
    /// carries the record: if `op` writes through it, the record lands in
    /// its batch; otherwise it is appended after, with the result `code`
    /// gives for `op`'s error (0 on success), and stored before returning
    /// when `durable`. The outer error: the record could not be appended,
    /// and the access must fail (what `op` did, if it wrote, is unrecorded
    /// only if its own batch failed, in which case it did not happen).
    pub fn audited<T, E>(
        &self,
        rec: Record,
        durable: bool,
        code: impl Fn(&E) -> i32,
        op: impl FnOnce(&Vault<Unlocked>) -> std::result::Result<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        if cfg!(feature = "bench-no-audit") {
            return Ok(op(self));
        }
        self.core().recordable()?;
        // Beside other hosts writing, a change holds the vault from before
        // it reads anything until its batch is applied (store/cluster/handover.rs).
        let _hold = match changes_files(rec.op) {
            true => Some(self.core().store.hold_for_write()?),
            false => None,
        };
        let op_name = rec.op.name();
        let ticket = Ticket(Mutex::new(Some(rec.leaf(0))));
        let carrier = Vault(Unlocked { core: Arc::clone(&self.0.core), ticket: Some(ticket) });
        let out = op(&carrier);
        let unconsumed = carrier.ticket().and_then(Ticket::take);
        let core = self.core();
        // Not taken by a batch: the operation wrote nothing; append its record
        // now, with the result it had.
        let result = out.as_ref().err().map_or(0, &code);
        core.metrics.count_op(op_name, result);
        if let Some(mut leaf) = unconsumed {
            leaf.result = result;
            core.audit.append(leaf);
            core.bound_frozen_backlog();
        }
        if durable {
            core.audit.make_durable(&core.store)?;
        }
        Ok(out)
    }

    /// Appends a record of an access that changes nothing (or was refused).
    pub fn record(&self, rec: Record, result: i32, durable: bool) -> Result<()> {
        if cfg!(feature = "bench-no-audit") {
            return Ok(());
        }
        let core = self.core();
        core.recordable()?;
        core.metrics.count_op(rec.op.name(), result);
        core.audit.append(rec.leaf(result));
        core.bound_frozen_backlog();
        if durable {
            core.audit.make_durable(&core.store)?;
        }
        Ok(())
    }

    /// The last record of a mount, once its FUSE session has ended and before
    /// the final checkpoint: a log that ends without one was not unmounted
    /// cleanly (a crash, a kill).
    pub fn record_unmount(&self) -> Result<()> {
        let rec = Record::offline(AuditOp::Unmount, b"vaultfs", None, super::ROOT_INO, b"/".to_vec(), 0);
        self.record(rec, 0, true)
    }

    /// A snapshot of `.audit` now (see `Log::text`); None for an empty log.
    pub fn audit_text(&self) -> Result<Option<crate::audit::log::AuditText>> {
        Ok(self.core().audit.text(&self.core().store)?)
    }

    /// Up to `len` bytes of the snapshot `text` from `offset`.
    pub fn audit_text_read(
        &self,
        text: &crate::audit::log::AuditText,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        Ok(self.core().audit.read_text(&self.core().store, text, offset, len)?)
    }

    /// The newest checkpoint note, signed now if the log grew, and durable
    /// in the store before this returns (so it may go into an anchor, and
    /// the records it covers may leave the machine).
    pub fn durable_checkpoint(&self) -> Result<Option<String>> {
        let note = self.audit_checkpoint()?;
        self.sync()?;
        Ok(note)
    }

    /// How many records are durable under a signed checkpoint (see
    /// `durable_checkpoint`): the records an exporter may send.
    pub fn durable_audit_size(&self) -> Result<u64> {
        let Some(note) = self.durable_checkpoint()? else { return Ok(0) };
        let key = self.audit_key().verifying_key();
        let cp = crate::audit::checkpoint::Checkpoint::parse_and_verify(&note, None, &key)
            .map_err(|e| Error::new(ErrorKind::Corrupt, format!("the checkpoint just signed: {e}")))?;
        Ok(cp.size)
    }

    /// Stores pending records and signs a checkpoint over them; the newest note.
    pub fn audit_checkpoint(&self) -> Result<Option<String>> {
        Ok(self.core().audit.checkpoint(&self.core().store, false)?)
    }

    /// Recomputes the tree from every stored leaf and checks every checkpoint.
    pub fn audit_verify(&self) -> Result<ChainReport> {
        Ok(self.core().audit.verify_store(&self.core().store)?)
    }

    /// `audit_verify` for the log each read-only mount of this cluster
    /// vault keeps of its own accesses: (host, its verdict; None: mounted
    /// now, not checked), in host order.
    pub fn verify_host_logs(&self) -> Result<Vec<(String, Option<Result<ChainReport>>)>> {
        let core = self.core();
        verify_host_logs(&core.store, &core.keys, core.vault_id)
    }

    pub fn audit_size(&self) -> u64 {
        self.core().audit.size()
    }

    pub fn audit_root(&self, size: u64) -> Result<Hash> {
        Ok(self.core().audit.root(&self.core().store, size)?)
    }

    pub fn audit_inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        Ok(self.core().audit.inclusion_proof(&self.core().store, index, size)?)
    }

    pub fn audit_consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        Ok(self.core().audit.consistency_proof(&self.core().store, old, new)?)
    }

    /// Stored leaves `from..to` as `.audit` lines (for `vaultfs audit tail`),
    /// from the archive base on.
    pub fn audit_lines(&self, from: u64, to: u64) -> Result<Vec<String>> {
        let core = self.core();
        core.audit.commit(&core.store)?;
        let mut out = Vec::new();
        // Records before the archive base are in archive files.
        let from = from.max(core.audit.base_size());
        for entry in core.audit.leaves(&core.store, from, to.max(from)) {
            let (_, bytes) = entry?;
            out.push(
                crate::audit::export::leaf_line_from_bytes(&bytes)
                    .map_err(crate::audit::log::LogError::from)?,
            );
        }
        Ok(out)
    }
}

/// Each read-only mount's own audit log in `store` (a cluster vault),
/// verified as `Vault::audit_verify` verifies the vault's: (host, verdict),
/// the verdict None for a host mounted now (its log is being written, and
/// reads of it would not all see one commit). Listing the hosts failing is
/// the error; one host's log failing is its verdict.
pub(super) fn verify_host_logs(
    store: &crate::store::Store,
    ring: &super::keyring::Keyring,
    vault_id: [u8; 16],
) -> Result<Vec<(String, Option<Result<ChainReport>>)>> {
    let verify = |host: &str| -> Result<ChainReport> {
        let view = store.host_log(host, crate::format::keys::AUDIT_KINDS)?;
        let log = ring.open_log(&view, vault_id)?;
        Ok(log.verify_store(&view)?)
    };
    Ok(store
        .hosts_with_logs()?
        .into_iter()
        .map(|(h, mounted)| {
            let verdict = (!mounted).then(|| verify(&h));
            (h, verdict)
        })
        .collect())
}
