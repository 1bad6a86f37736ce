//! Human approval of opens at gated levels (`vaultfs approve`): an open
//! waits, holding only its own thread, until someone approves or denies it
//! or its time runs out. An approval covers that process and file for a
//! window; after it the level cools down before the next approval.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::{ErrorKind, Result, err};
use super::rules::rules;
use super::types::LEVEL_COUNT;
use super::{AuditOp, Caller, Record, Unlocked, Vault};

/// The rules one level's approvals follow (from the policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalRules {
    pub required: bool,
    /// How long an open waits for a decision.
    pub timeout: Duration,
    /// How long an approval lets the same process reopen the same file.
    pub window: Duration,
    /// Minimum time between two approvals at this level.
    pub cooldown: Duration,
}

/// An open waiting for a decision, as `vaultfs pending` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOpen {
    pub id: u64,
    pub level: u8,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub path: String,
    pub ino: u64,
    /// Why the caller says it needs the file (empty: it gave no reason).
    pub justification: String,
    /// How long it has waited.
    pub waited: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    Waiting,
    Approved,
    Denied,
}

struct Entry {
    open: PendingOpen,
    since: Instant,
    decision: Decision,
}

struct Grant {
    pid: u32,
    ino: u64,
    until: Instant,
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: BTreeMap<u64, Entry>,
    grants: Vec<Grant>,
    last_approval: [Option<Instant>; 6],
}

#[derive(Default)]
pub struct Approvals {
    state: Mutex<State>,
    changed: Condvar,
    /// The policy's `approval_notify` command, run as each open starts waiting.
    notify: Mutex<Option<Vec<String>>>,
}

/// Who asks to open what.
pub struct OpenRequest<'a> {
    pub level: u8,
    pub pid: u32,
    pub uid: u32,
    pub comm: &'a [u8],
    pub path: &'a [u8],
    pub ino: u64,
    /// The caller's justification (`user.vault.justification`), if any.
    pub justification: &'a [u8],
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until `req` is approved (Ok), denied, timed out or refused by
    /// the cooldown (AccessDenied, with the reason).
    pub fn request(&self, req: &OpenRequest, rules: ApprovalRules) -> Result<()> {
        if !rules.required {
            return Ok(());
        }
        let now = Instant::now();
        let mut st = self.lock();
        st.grants.retain(|g| g.until > now);
        if st.grants.iter().any(|g| g.pid == req.pid && g.ino == req.ino) {
            return Ok(());
        }
        if let Some(last) = st.last_approval[req.level as usize]
            && now.duration_since(last) < rules.cooldown
        {
            let left = rules.cooldown - now.duration_since(last);
            return Err(err(
                ErrorKind::AccessDenied,
                format!("level {} is cooling down for {} ms more", req.level, left.as_millis()),
            ));
        }
        st.next_id += 1;
        let id = st.next_id;
        let open = PendingOpen {
            id,
            level: req.level,
            pid: req.pid,
            uid: req.uid,
            comm: String::from_utf8_lossy(req.comm).into_owned(),
            path: String::from_utf8_lossy(req.path).into_owned(),
            ino: req.ino,
            justification: String::from_utf8_lossy(req.justification).into_owned(),
            waited: Duration::ZERO,
        };
        let announce = open.clone();
        st.pending.insert(id, Entry { open, since: now, decision: Decision::Waiting });
        self.changed.notify_all();
        let notify = self.notify.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(argv) = notify {
            // Not under the state lock: starting a process takes a while.
            drop(st);
            run_notify(&argv, &announce);
            st = self.lock();
        }
        let deadline = now + rules.timeout;
        loop {
            let decision = st.pending.get(&id).map_or(Decision::Denied, |e| e.decision);
            match decision {
                Decision::Approved => {
                    st.pending.remove(&id);
                    let now = Instant::now();
                    st.grants.push(Grant { pid: req.pid, ino: req.ino, until: now + rules.window });
                    st.last_approval[req.level as usize] = Some(now);
                    return Ok(());
                }
                Decision::Denied => {
                    st.pending.remove(&id);
                    return Err(err(ErrorKind::AccessDenied, format!("open {id} was denied")));
                }
                Decision::Waiting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                st.pending.remove(&id);
                return Err(err(
                    ErrorKind::AccessDenied,
                    format!("open {id} was not approved within {} s", rules.timeout.as_secs()),
                ));
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The opens waiting now, oldest first.
    /// Sets (or clears) the command run as each open starts waiting.
    pub fn set_notify(&self, argv: Option<Vec<String>>) {
        *self.notify.lock().unwrap_or_else(|p| p.into_inner()) = argv;
    }

    pub fn pending(&self) -> Vec<PendingOpen> {
        let st = self.lock();
        st.pending
            .values()
            .filter(|e| e.decision == Decision::Waiting)
            .map(|e| PendingOpen { waited: e.since.elapsed(), ..e.open.clone() })
            .collect()
    }

    /// Decides pending open `id` (None: the oldest); returns what was decided.
    pub fn decide(&self, id: Option<u64>, approve: bool) -> Result<PendingOpen> {
        let mut st = self.lock();
        let entry = match id {
            Some(id) => st.pending.get_mut(&id).filter(|e| e.decision == Decision::Waiting),
            None => st.pending.values_mut().find(|e| e.decision == Decision::Waiting),
        };
        let Some(entry) = entry else {
            return Err(err(
                ErrorKind::NotFound,
                match id {
                    Some(id) => format!("no open {id} is waiting for approval"),
                    None => "no open is waiting for approval".to_string(),
                },
            ));
        };
        entry.decision = if approve { Decision::Approved } else { Decision::Denied };
        let open = entry.open.clone();
        self.changed.notify_all();
        Ok(open)
    }

    /// Forgets every grant (a lock or lockdown ends them) and denies
    /// everything waiting.
    pub fn revoke_all(&self) {
        let mut st = self.lock();
        st.grants.clear();
        for e in st.pending.values_mut() {
            e.decision = Decision::Denied;
        }
        self.changed.notify_all();
    }
}

/// How long a notification command may run before it is killed.
const NOTIFY_LIMIT: Duration = Duration::from_secs(30);

/// Runs the policy's `approval_notify` command for `open`, which waits: the
/// request's facts in its environment (`VAULTFS_REQUEST_ID`, `_LEVEL`,
/// `_PATH`, `_PID`, `_UID`, `_COMM`), no stdin, its output discarded. The
/// open never waits for it; a thread reaps it (killed past `NOTIFY_LIMIT`).
fn run_notify(argv: &[String], open: &PendingOpen) {
    use std::process::{Command, Stdio};
    let Some((program, args)) = argv.split_first() else { return };
    let spawned = Command::new(program)
        .args(args)
        .env("VAULTFS_REQUEST_ID", open.id.to_string())
        .env("VAULTFS_LEVEL", open.level.to_string())
        .env("VAULTFS_PATH", &open.path)
        .env("VAULTFS_PID", open.pid.to_string())
        .env("VAULTFS_UID", open.uid.to_string())
        .env("VAULTFS_COMM", &open.comm)
        .env("VAULTFS_JUSTIFICATION", &open.justification)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("approval_notify {program}: cannot start it: {e}");
            return;
        }
    };
    let id = open.id;
    let reaper = std::thread::Builder::new().name("approval-notify".into()).spawn(move || {
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    tracing::warn!("approval_notify for open {id} exited with {status}");
                    return;
                }
                Ok(Some(_)) => return,
                Ok(None) if start.elapsed() > NOTIFY_LIMIT => {
                    tracing::warn!(
                        "approval_notify for open {id} ran past {} s: killed",
                        NOTIFY_LIMIT.as_secs()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    tracing::warn!("approval_notify for open {id}: {e}");
                    return;
                }
            }
        }
    });
    if let Err(e) = reaper {
        tracing::warn!("approval_notify: no thread to reap it: {e}");
    }
}

/// The rules of `level` under `policy` (the vault starts from the policy
/// floor, docs/POLICY.md, which a policy file can only tighten).
pub fn rules_from(policy: &crate::policy::Policy, level: u8) -> ApprovalRules {
    let l = &policy.levels[level as usize];
    ApprovalRules {
        required: l.require_approval,
        timeout: l.approval_timeout,
        window: l.approval_window,
        cooldown: l.cooldown,
    }
}

impl Vault<Unlocked> {
    /// The approval rules of `level` under the policy in force.
    pub fn approval_rules(&self, level: u8) -> ApprovalRules {
        rules_from(&self.core().policy(), level)
    }

    /// Whether opens at `level` wait for a human.
    pub fn needs_approval(&self, level: u8) -> bool {
        self.approval_rules(level).required
    }

    /// Waits for a human decision on `req` if its level needs one.
    pub fn await_approval(&self, req: &OpenRequest) -> Result<()> {
        self.core().approvals.request(req, self.approval_rules(req.level))
    }

    pub fn pending_opens(&self) -> Vec<PendingOpen> {
        self.core().approvals.pending()
    }

    /// Approves or denies pending open `id` (None: the oldest), recorded as
    /// `approve`/`reject` by `who` on the waiting open's file.
    pub fn decide_open(
        &self,
        who: Caller,
        comm: &[u8],
        id: Option<u64>,
        approve: bool,
    ) -> Result<PendingOpen> {
        let open = self.core().approvals.decide(id, approve)?;
        let rec = Record {
            who,
            comm: comm.to_vec(),
            op: if approve { AuditOp::Approve } else { AuditOp::Reject },
            level: Some(open.level),
            ino: open.ino,
            path: open.path.clone().into_bytes(),
            offset: open.id,
            len: u64::from(open.pid),
            note: Vec::new(),
        };
        self.record(rec, 0, true)?;
        Ok(open)
    }
}

/// The extended attribute an agent sets (on a file, or on its level
/// directory for every file there) to say why it opens files at levels 3-5
/// (docs/GATES.md, "Justifications").
pub const JUSTIFICATION_XATTR: &[u8] = b"user.vault.justification";

impl Vault<Unlocked> {
    /// Why the caller says it opens `ino` at `level`: the file's
    /// `user.vault.justification`, else its level directory's, at most
    /// `MAX_NOTE` bytes; empty below level 3, or when neither has one.
    pub fn justification(&self, ino: u64, level: Option<u8>) -> Vec<u8> {
        let Some(l) = level.filter(|l| *l < LEVEL_COUNT && rules(Some(*l)).justified) else {
            return Vec::new();
        };
        for holder in [ino, super::level_dir(l)] {
            if let Ok(mut v) = self.getxattr(holder, JUSTIFICATION_XATTR)
                && !v.is_empty()
            {
                v.truncate(crate::audit::leaf::MAX_NOTE);
                return v;
            }
        }
        Vec::new()
    }

    /// Whether the policy refuses opens at `level` that give no justification.
    pub fn needs_justification(&self, level: u8) -> bool {
        self.policy().levels.get(level as usize).is_some_and(|l| l.require_justification)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rules(timeout_ms: u64, window_ms: u64, cooldown_ms: u64) -> ApprovalRules {
        ApprovalRules {
            required: true,
            timeout: Duration::from_millis(timeout_ms),
            window: Duration::from_millis(window_ms),
            cooldown: Duration::from_millis(cooldown_ms),
        }
    }

    fn req(pid: u32, ino: u64) -> OpenRequest<'static> {
        OpenRequest { level: 3, pid, uid: 0, comm: b"cat", path: b"/3-sealed/f", ino, justification: b"" }
    }

    fn wait_pending(a: &Approvals) -> PendingOpen {
        for _ in 0..500 {
            if let Some(p) = a.pending().into_iter().next() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no pending open appeared");
    }

    #[test]
    fn approve_releases_the_waiter_and_grants_a_window() {
        let a = Arc::new(Approvals::default());
        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(7, 20), rules(10_000, 60_000, 0)));
        let p = wait_pending(&a);
        assert_eq!((p.pid, p.path.as_str(), p.comm.as_str()), (7, "/3-sealed/f", "cat"));
        assert_eq!(a.decide(None, true).unwrap().id, p.id);
        waiter.join().unwrap().unwrap();
        // Same process, same file: inside the window, no new wait.
        a.request(&req(7, 20), rules(1, 60_000, 0)).unwrap();
        // Another process or file waits again (and times out here).
        assert_eq!(a.request(&req(8, 20), rules(20, 60_000, 0)).unwrap_err().kind(), ErrorKind::AccessDenied);
        assert_eq!(a.request(&req(7, 21), rules(20, 60_000, 0)).unwrap_err().kind(), ErrorKind::AccessDenied);
        assert!(a.pending().is_empty(), "timed-out opens leave the queue");
    }

    #[test]
    fn deny_and_cooldown_refuse() {
        let a = Arc::new(Approvals::default());
        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 30), rules(10_000, 0, 0)));
        let p = wait_pending(&a);
        a.decide(Some(p.id), false).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::AccessDenied);
        assert_eq!(a.decide(Some(p.id), true).unwrap_err().kind(), ErrorKind::NotFound);

        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 30), rules(10_000, 0, 60_000)));
        wait_pending(&a);
        a.decide(None, true).unwrap();
        waiter.join().unwrap().unwrap();
        let e = a.request(&req(2, 31), rules(10_000, 0, 60_000)).unwrap_err();
        assert!(e.to_string().contains("cooling down"), "{e}");
    }

    #[test]
    fn not_required_passes_and_revoke_denies_waiters() {
        let a = Arc::new(Approvals::default());
        a.request(&req(1, 1), ApprovalRules { required: false, ..rules(0, 0, 0) }).unwrap();
        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 2), rules(10_000, 0, 0)));
        wait_pending(&a);
        a.revoke_all();
        assert!(waiter.join().unwrap().is_err());
    }
}
