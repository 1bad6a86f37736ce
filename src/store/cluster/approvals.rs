//! Approvals across hosts (docs/CLUSTER.md, "Approvals across hosts"): a
//! mount publishes each open waiting for approval on its host under
//! `approvals/LEASE/ID` (16 hex digits each), bound to its lease, so a
//! mount that dies takes its waiting opens with it; another host's mount
//! decides one by writing `approvals/LEASE/ID/d`, bound to its own lease
//! (etcd lets a user attach keys only to a lease all of whose keys it may
//! write), in a transaction that succeeds only while that open still waits
//! and has no decision; the waiting mount deletes both once it has read
//! the decision. The values are opaque here (the vault seals them).

use super::etcd::{Guard, Op};
use super::{Result, Shared, prefix_end};

/// An open waiting on some host's mount, as published.
pub struct WaitingOpen {
    /// The waiting mount's lease, and the open's id there.
    pub lease: i64,
    pub id: u64,
    /// Whether this process published it.
    pub mine: bool,
    /// The key's creation revision: a decision is for this very request.
    pub created: i64,
    pub value: Vec<u8>,
}

impl Shared {
    fn approvals_prefix(&self) -> Vec<u8> {
        self.meta_key("approvals/")
    }

    fn approval_key(&self, lease: i64, id: u64) -> Vec<u8> {
        self.meta_key(&format!("approvals/{lease:016x}/{id:016x}"))
    }

    fn decision_key(&self, lease: i64, id: u64) -> Vec<u8> {
        [self.approval_key(lease, id), b"/d".to_vec()].concat()
    }

    fn cooldown_key(&self, level: u8) -> Vec<u8> {
        self.meta_key(&format!("cooldowns/{level}"))
    }

    /// When an open at `level` was last approved on any host (opaque).
    pub fn last_approval(&self, level: u8) -> Result<Option<Vec<u8>>> {
        self.still_held()?;
        Ok(self.etcd.get(&self.cooldown_key(level))?.map(|kv| kv.value))
    }

    /// Notes `value` as the last approval at `level`, for every host.
    pub fn set_last_approval(&self, level: u8, value: Vec<u8>) -> Result<()> {
        self.still_held()?;
        self.etcd.txn(Vec::new(), vec![Op::Put(self.cooldown_key(level), value)]).map(|_| ())
    }

    /// This process's lease: the one its waiting opens are bound to.
    pub fn lease_id(&self) -> i64 {
        self.lease
    }

    /// Publishes this process's open `id` as waiting.
    pub fn publish_waiting_open(&self, id: u64, value: Vec<u8>) -> Result<()> {
        self.still_held()?;
        let op = Op::PutLeased(self.approval_key(self.lease, id), value, self.lease);
        self.etcd.txn(Vec::new(), vec![op]).map(|_| ())
    }

    /// Removes this process's open `id` and any decision on it.
    pub fn withdraw_waiting_open(&self, id: u64) -> Result<()> {
        self.still_held()?;
        let key = self.approval_key(self.lease, id);
        self.etcd.txn(Vec::new(), vec![Op::DeletePrefix(key)]).map(|_| ())
    }

    /// The decision another host made on this process's open `id`, if any.
    pub fn decision_on(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.still_held()?;
        Ok(self.etcd.get(&self.decision_key(self.lease, id))?.map(|kv| kv.value))
    }

    /// Every open waiting on any host's mount, this one's too.
    pub fn waiting_opens(&self) -> Result<Vec<WaitingOpen>> {
        self.still_held()?;
        let prefix = self.approvals_prefix();
        let end = prefix_end(&prefix).unwrap_or_default();
        let page = self.etcd.range(&prefix, &end, 0, 0, false, false)?;
        let mut out = Vec::new();
        for kv in page.kvs {
            let Ok(rest) = std::str::from_utf8(&kv.key[prefix.len()..]) else { continue };
            let mut parts = rest.split('/');
            let (Some(lease), Some(id), None) = (parts.next(), parts.next(), parts.next()) else { continue };
            let (Ok(lease), Ok(id)) = (i64::from_str_radix(lease, 16), u64::from_str_radix(id, 16)) else {
                continue;
            };
            out.push(WaitingOpen { lease, id, mine: lease == self.lease, created: kv.create_revision, value: kv.value });
        }
        Ok(out)
    }

    /// Writes `value` as the decision on `lease`'s open `id` if that open,
    /// created at `created`, still waits without one: false if it does not.
    pub fn decide_waiting_open(&self, lease: i64, id: u64, created: i64, value: Vec<u8>) -> Result<bool> {
        self.still_held()?;
        let (key, decision) = (self.approval_key(lease, id), self.decision_key(lease, id));
        let guards = vec![Guard::Created(key, created), Guard::Created(decision.clone(), 0)];
        self.etcd.txn(guards, vec![Op::PutLeased(decision, value, self.lease)])
    }
}
