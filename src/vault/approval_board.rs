//! Approvals across the hosts of a cluster vault (docs/GATES.md,
//! "Approvals across hosts"): each mount publishes the opens waiting on its
//! host, sealed under the vault metadata key and bound to its lease, so
//! that `vaultfs pending` on any host's mount lists them and `vaultfs
//! approve MNT HOST:ID` there decides them. The waiting host records the
//! decision too, with who made it and where.

use super::approval::{ApprovalBoard, PendingOpen, RemoteDecision};
use super::error::{ErrorKind, Result, err};
use super::{AuditOp, Caller, Core, Record, Unlocked, Vault};
use crate::format::approval::{ApprovalDecision, ApprovalRequest};

/// The store as the board; `host` is this mount's name.
pub(super) struct StoreBoard<'a> {
    core: &'a Core,
    host: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ApprovalBoard for StoreBoard<'_> {
    fn publish(&self, open: &PendingOpen) -> Result<()> {
        let plain = ApprovalRequest {
            host: self.host.clone(),
            level: open.level,
            pid: open.pid,
            uid: open.uid,
            ino: open.ino,
            since_ms: now_ms(),
            comm: open.comm.clone(),
            path: open.path.clone(),
            justification: open.justification.clone(),
        }
        .encode();
        let (core, lease) = (self.core, self.core.store.lease_id());
        let sealed = core.keys.vault_meta.seal_approval(&core.vault_id, false, lease, open.id, &plain)?;
        Ok(core.store.publish_waiting_open(open.id, sealed)?)
    }

    fn decision(&self, id: u64) -> Result<Option<RemoteDecision>> {
        let core = self.core;
        let Some(value) = core.store.decision_on(id)? else { return Ok(None) };
        let lease = core.store.lease_id();
        let plain = core.keys.vault_meta.open_approval(&core.vault_id, true, lease, id, &value)?;
        let d = ApprovalDecision::decode(&plain)
            .map_err(|e| err(ErrorKind::Corrupt, format!("a decision on open {id}: {e}")))?;
        Ok(Some(RemoteDecision { approve: d.approve, host: d.host, uid: d.uid, pid: d.pid, comm: d.comm }))
    }

    fn withdraw(&self, id: u64) -> Result<()> {
        Ok(self.core.store.withdraw_waiting_open(id)?)
    }

    fn last_approval(&self, level: u8) -> Result<Option<u64>> {
        let core = self.core;
        let Some(value) = core.store.last_approval(level)? else { return Ok(None) };
        Ok(Some(core.keys.vault_meta.open_last_approval(&core.vault_id, level, &value)?))
    }

    fn note_approval(&self, level: u8) -> Result<()> {
        let core = self.core;
        let sealed = core.keys.vault_meta.seal_last_approval(&core.vault_id, level, now_ms())?;
        Ok(core.store.set_last_approval(level, sealed)?)
    }
}

/// One open waiting on another host, with what deciding it needs.
struct Theirs {
    open: PendingOpen,
    lease: i64,
    created: i64,
}

impl StoreBoard<'_> {
    /// This mount's name among the vault's hosts.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// Opens waiting on other hosts' mounts, oldest first. A value that
    /// fails authentication (not written by a holder of the vault's keys)
    /// is left out and logged: it names no open anyone may decide.
    fn others(&self) -> Result<Vec<Theirs>> {
        let core = self.core;
        let mut out = Vec::new();
        for w in core.store.waiting_opens()?.into_iter().filter(|w| !w.mine) {
            let opened = core.keys.vault_meta.open_approval(&core.vault_id, false, w.lease, w.id, &w.value);
            let req = match opened.map_err(super::Error::from).and_then(|p| {
                ApprovalRequest::decode(&p)
                    .map_err(|e| err(ErrorKind::Corrupt, format!("a waiting open: {e}")))
            }) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("a waiting open on another host is left out: {e}");
                    continue;
                }
            };
            let waited = std::time::Duration::from_millis(now_ms().saturating_sub(req.since_ms));
            let open = PendingOpen {
                host: Some(req.host),
                id: w.id,
                level: req.level,
                pid: req.pid,
                uid: req.uid,
                comm: req.comm,
                path: req.path,
                ino: req.ino,
                justification: req.justification,
                waited,
            };
            out.push(Theirs { open, lease: w.lease, created: w.created });
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.open.waited));
        Ok(out)
    }
}

impl Vault<Unlocked> {
    /// This mount's name among the vault's hosts: a reader's host name,
    /// else `VAULTFS_HOST` or the host name.
    fn host_name(&self) -> String {
        self.core().store.reader_host().map_or_else(crate::sys::host_name, str::to_string)
    }

    /// The board a cluster vault's approvals go through; None for a vault in
    /// a directory (one host).
    pub(super) fn approval_board(&self) -> Option<StoreBoard<'_>> {
        self.core().store.is_cluster().then(|| StoreBoard { core: self.core(), host: self.host_name() })
    }

    /// The opens waiting on every host: this mount's, then the others'.
    pub fn pending_opens_everywhere(&self) -> Result<Vec<PendingOpen>> {
        let mut all = self.pending_opens();
        if let Some(board) = self.approval_board() {
            all.extend(board.others()?.into_iter().map(|t| t.open));
        }
        Ok(all)
    }

    /// Decides open `id` waiting on another host's mount named `host`,
    /// recorded here as `approve`/`reject` with the note `for host HOST`.
    pub(super) fn decide_elsewhere(
        &self,
        who: Caller,
        comm: &[u8],
        host: &str,
        id: u64,
        approve: bool,
    ) -> Result<PendingOpen> {
        let Some(board) = self.approval_board() else {
            return Err(err(
                ErrorKind::NotFound,
                format!("no open {host}:{id}: a vault in a directory has one host"),
            ));
        };
        let mut theirs: Vec<Theirs> = board
            .others()?
            .into_iter()
            .filter(|t| t.open.host.as_deref() == Some(host) && t.open.id == id)
            .collect();
        let t = match theirs.len() {
            0 => {
                return Err(err(ErrorKind::NotFound, format!("no open {host}:{id} is waiting for approval")));
            }
            1 => theirs.remove(0),
            n => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!("{n} mounts named {host} have an open {id} waiting: give each host its own name"),
                ));
            }
        };
        let core = self.core();
        let plain = ApprovalDecision {
            approve,
            uid: who.uid,
            pid: who.pid,
            host: board.host.clone(),
            comm: String::from_utf8_lossy(comm).into_owned(),
        }
        .encode();
        let sealed = core.keys.vault_meta.seal_approval(&core.vault_id, true, t.lease, id, &plain)?;
        if !core.store.decide_waiting_open(t.lease, id, t.created, sealed)? {
            return Err(err(
                ErrorKind::NotFound,
                format!("open {host}:{id} no longer waits (decided, or given up, meanwhile)"),
            ));
        }
        let mut note = format!("for host {host}").into_bytes();
        note.truncate(crate::audit::leaf::MAX_NOTE);
        let rec = Record {
            who,
            comm: comm.to_vec(),
            op: if approve { AuditOp::Approve } else { AuditOp::Reject },
            level: Some(t.open.level),
            ino: t.open.ino,
            path: t.open.path.clone().into_bytes(),
            offset: id,
            len: u64::from(t.open.pid),
            note,
        };
        self.record(rec, 0, true)?;
        Ok(t.open)
    }

    /// Records, on the waiting host, a decision another host made on its
    /// open `id` (the decider's ids and comm, the note `on host HOST`).
    pub(super) fn record_decision_from(
        &self,
        open: &super::approval::OpenRequest,
        id: u64,
        d: &RemoteDecision,
    ) -> Result<()> {
        let mut note = format!("on host {}", d.host).into_bytes();
        note.truncate(crate::audit::leaf::MAX_NOTE);
        let rec = Record {
            who: Caller { uid: d.uid, gid: 0, pid: d.pid },
            comm: d.comm.clone().into_bytes(),
            op: if d.approve { AuditOp::Approve } else { AuditOp::Reject },
            level: Some(open.level),
            ino: open.ino,
            path: open.path.to_vec(),
            offset: id,
            len: u64::from(open.pid),
            note,
        };
        self.record(rec, 0, true)
    }
}
