//! Human approval of opens at gated levels (`vaultfs approve`): an open
//! waits, holding only its own thread, until someone approves or denies it
//! or its time runs out. An approval covers that process and file for a
//! window; after it the level cools down before the next approval.
//!
//! On a cluster vault the waiting opens are also published on a board
//! (approval_board.rs: etcd, sealed) so that any host's mount can list and
//! decide them; the waiter looks for such a decision every `BOARD_POLL`.

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

/// How often an open waiting on a cluster vault looks for a decision made
/// on another host.
const BOARD_POLL: Duration = Duration::from_millis(200);

/// An open waiting for a decision, as `vaultfs pending` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOpen {
    /// The host it waits on; None: this mount.
    pub host: Option<String>,
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

/// A decision made on another host's mount, as the waiting host learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDecision {
    pub approve: bool,
    pub host: String,
    pub uid: u32,
    pub pid: u32,
    pub comm: String,
}

/// Where a cluster vault's mounts publish their waiting opens and decide
/// each other's (approval_board.rs; an in-memory one in the tests).
pub(super) trait ApprovalBoard {
    /// Publishes this mount's open, which starts waiting.
    fn publish(&self, open: &PendingOpen) -> Result<()>;
    /// The decision another host made on this mount's open `id`, if any.
    fn decision(&self, id: u64) -> Result<Option<RemoteDecision>>;
    /// Takes this mount's open `id` off the board (decided or given up).
    fn withdraw(&self, id: u64) -> Result<()>;
    /// When an open at `level` was last approved on any host (ms since
    /// the epoch), for the cooldown.
    fn last_approval(&self, level: u8) -> Result<Option<u64>>;
    /// Notes an approval at `level` now, for every host's cooldown.
    fn note_approval(&self, level: u8) -> Result<()>;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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

/// Whether a grant still in its window covers `req` (dropping expired ones).
fn granted(st: &mut State, req: &OpenRequest, now: Instant) -> bool {
    st.grants.retain(|g| g.until > now);
    st.grants.iter().any(|g| g.pid == req.pid && g.ino == req.ino)
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until `req` is approved (Ok), denied, timed out or refused by
    /// the cooldown (AccessDenied, with the reason); with a `board`, the
    /// decision may come from another host's mount (returned beside).
    pub(super) fn request(
        &self,
        req: &OpenRequest,
        rules: ApprovalRules,
        board: Option<&dyn ApprovalBoard>,
    ) -> (Result<()>, Option<(u64, RemoteDecision)>) {
        if !rules.required {
            return (Ok(()), None);
        }
        let (result, remote, id) = self.wait_for_decision(req, rules, board);
        if let (Some(b), Some(id)) = (board, id) {
            if let Err(e) = b.withdraw(id) {
                tracing::warn!("taking open {id} off the other hosts' list: {e}");
            }
            if result.is_ok()
                && !rules.cooldown.is_zero()
                && let Err(e) = b.note_approval(req.level)
            {
                tracing::warn!("telling other hosts of an approval at level {}: {e}", req.level);
            }
        }
        (result, remote.zip(id).map(|(d, id)| (id, d)))
    }

    fn wait_for_decision(
        &self,
        req: &OpenRequest,
        rules: ApprovalRules,
        board: Option<&dyn ApprovalBoard>,
    ) -> (Result<()>, Option<RemoteDecision>, Option<u64>) {
        // An open inside a grant's window asks nobody, and reads nothing.
        if granted(&mut self.lock(), req, Instant::now()) {
            return (Ok(()), None, None);
        }
        // The cooldown counts approvals on every host: the last one's time,
        // read outside the state lock (it is a store read).
        let elsewhere = match board.filter(|_| !rules.cooldown.is_zero()).map(|b| b.last_approval(req.level))
        {
            // A time further ahead than the cooldown is a clock gone wrong,
            // not an approval: it would refuse every open for as long.
            Some(Ok(Some(ms))) if ms <= now_ms().saturating_add(rules.cooldown.as_millis() as u64) => {
                Some(Duration::from_millis(now_ms().saturating_sub(ms)))
            }
            Some(Err(e)) => {
                tracing::warn!("the last approval at level {} on other hosts is unknown: {e}", req.level);
                None
            }
            _ => None,
        };
        let now = Instant::now();
        let mut st = self.lock();
        if granted(&mut st, req, now) {
            return (Ok(()), None, None);
        }
        let since_last = st.last_approval[req.level as usize]
            .map(|last| now.duration_since(last))
            .into_iter()
            .chain(elsewhere)
            .min();
        if let Some(since) = since_last
            && since < rules.cooldown
        {
            let left = rules.cooldown - since;
            let why = format!("level {} is cooling down for {} ms more", req.level, left.as_millis());
            return (Err(err(ErrorKind::AccessDenied, why)), None, None);
        }
        st.next_id += 1;
        let id = st.next_id;
        let open = PendingOpen {
            host: None,
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
        if let Some(b) = board {
            drop(st);
            if let Err(e) = b.publish(&announce) {
                tracing::warn!("open {id} waits for approval on this host only: {e}");
            }
            st = self.lock();
        }
        let deadline = now + rules.timeout;
        let mut remote = None;
        let mut board_failed = false;
        loop {
            let decision = st.pending.get(&id).map_or(Decision::Denied, |e| e.decision);
            match decision {
                Decision::Approved => {
                    st.pending.remove(&id);
                    let now = Instant::now();
                    st.grants.push(Grant { pid: req.pid, ino: req.ino, until: now + rules.window });
                    st.last_approval[req.level as usize] = Some(now);
                    return (Ok(()), remote, Some(id));
                }
                Decision::Denied => {
                    st.pending.remove(&id);
                    let why = err(ErrorKind::AccessDenied, format!("open {id} was denied"));
                    return (Err(why), remote, Some(id));
                }
                Decision::Waiting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                st.pending.remove(&id);
                let why = format!("open {id} was not approved within {} s", rules.timeout.as_secs());
                return (Err(err(ErrorKind::AccessDenied, why)), None, Some(id));
            }
            let wait = if board.is_some() { (deadline - now).min(BOARD_POLL) } else { deadline - now };
            st = self.changed.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
            let still_waiting = st.pending.get(&id).is_some_and(|e| e.decision == Decision::Waiting);
            if let (Some(b), true) = (board, still_waiting) {
                drop(st);
                let found = b.decision(id);
                st = self.lock();
                match found {
                    Ok(Some(d)) => {
                        if let Some(e) = st.pending.get_mut(&id).filter(|e| e.decision == Decision::Waiting) {
                            e.decision = if d.approve { Decision::Approved } else { Decision::Denied };
                            remote = Some(d);
                        }
                    }
                    Ok(None) => {}
                    Err(e) if !board_failed => {
                        board_failed = true;
                        tracing::warn!("open {id}: cannot look for a decision made on another host: {e}");
                    }
                    Err(_) => {}
                }
            }
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

    /// Waits for a human decision on `req` if its level needs one (on a
    /// cluster vault, made on any host's mount; recorded here too when it
    /// was made elsewhere).
    pub fn await_approval(&self, req: &OpenRequest) -> Result<()> {
        let board = self.approval_board();
        let board_ref = board.as_ref().map(|b| b as &dyn ApprovalBoard);
        let (result, remote) = self.core().approvals.request(req, self.approval_rules(req.level), board_ref);
        if let Some((id, d)) = remote {
            self.record_decision_from(req, id, &d)?;
        }
        result
    }

    pub fn pending_opens(&self) -> Vec<PendingOpen> {
        self.core().approvals.pending()
    }

    /// Approves or denies pending open `id` (None: the oldest) of this
    /// mount, or of another host's mount named `host` (a cluster vault),
    /// recorded as `approve`/`reject` by `who` on the waiting open's file.
    pub fn decide_open(
        &self,
        who: Caller,
        comm: &[u8],
        host: Option<&str>,
        id: Option<u64>,
        approve: bool,
    ) -> Result<PendingOpen> {
        // This mount's own name means this mount's open.
        if let Some(host) = host.filter(|h| self.approval_board().is_none_or(|b| b.host() != *h)) {
            let id =
                id.ok_or_else(|| err(ErrorKind::InvalidArgument, "an open on another host needs its id"))?;
            return self.decide_elsewhere(who, comm, host, id, approve);
        }
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
        let waiter = std::thread::spawn(move || b.request(&req(7, 20), rules(10_000, 60_000, 0), None).0);
        let p = wait_pending(&a);
        assert_eq!((p.pid, p.path.as_str(), p.comm.as_str()), (7, "/3-sealed/f", "cat"));
        assert_eq!(a.decide(None, true).unwrap().id, p.id);
        waiter.join().unwrap().unwrap();
        // Same process, same file: inside the window, no new wait.
        a.request(&req(7, 20), rules(1, 60_000, 0), None).0.unwrap();
        // Another process or file waits again (and times out here).
        assert_eq!(
            a.request(&req(8, 20), rules(20, 60_000, 0), None).0.unwrap_err().kind(),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            a.request(&req(7, 21), rules(20, 60_000, 0), None).0.unwrap_err().kind(),
            ErrorKind::AccessDenied
        );
        assert!(a.pending().is_empty(), "timed-out opens leave the queue");
    }

    #[test]
    fn deny_and_cooldown_refuse() {
        let a = Arc::new(Approvals::default());
        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 30), rules(10_000, 0, 0), None).0);
        let p = wait_pending(&a);
        a.decide(Some(p.id), false).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::AccessDenied);
        assert_eq!(a.decide(Some(p.id), true).unwrap_err().kind(), ErrorKind::NotFound);

        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 30), rules(10_000, 0, 60_000), None).0);
        wait_pending(&a);
        a.decide(None, true).unwrap();
        waiter.join().unwrap().unwrap();
        let e = a.request(&req(2, 31), rules(10_000, 0, 60_000), None).0.unwrap_err();
        assert!(e.to_string().contains("cooling down"), "{e}");
    }

    /// A board shared by two hosts' mounts, in memory.
    #[derive(Default)]
    struct MemoryBoard {
        published: Mutex<Vec<u64>>,
        withdrawn: Mutex<Vec<u64>>,
        decisions: Mutex<BTreeMap<u64, RemoteDecision>>,
        approved: Mutex<BTreeMap<u8, u64>>,
        /// How often the last approval was read.
        asked: std::sync::atomic::AtomicUsize,
    }

    impl ApprovalBoard for MemoryBoard {
        fn publish(&self, open: &PendingOpen) -> Result<()> {
            self.published.lock().unwrap().push(open.id);
            Ok(())
        }
        fn decision(&self, id: u64) -> Result<Option<RemoteDecision>> {
            Ok(self.decisions.lock().unwrap().get(&id).cloned())
        }
        fn withdraw(&self, id: u64) -> Result<()> {
            self.withdrawn.lock().unwrap().push(id);
            Ok(())
        }
        fn last_approval(&self, level: u8) -> Result<Option<u64>> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.approved.lock().unwrap().get(&level).copied())
        }
        fn note_approval(&self, level: u8) -> Result<()> {
            self.approved.lock().unwrap().insert(level, now_ms());
            Ok(())
        }
    }

    #[test]
    fn a_decision_made_on_another_host_releases_the_waiter() {
        let a = Arc::new(Approvals::default());
        let board = Arc::new(MemoryBoard::default());
        let (b, bb) = (a.clone(), board.clone());
        let waiter = std::thread::spawn(move || b.request(&req(7, 20), rules(10_000, 60_000, 0), Some(&*bb)));
        let p = wait_pending(&a);
        assert_eq!(*board.published.lock().unwrap(), [p.id]);
        let d =
            RemoteDecision { approve: true, host: "host-a".into(), uid: 0, pid: 99, comm: "vaultfs".into() };
        board.decisions.lock().unwrap().insert(p.id, d.clone());
        let (result, remote) = waiter.join().unwrap();
        result.unwrap();
        assert_eq!(remote, Some((p.id, d)));
        assert_eq!(*board.withdrawn.lock().unwrap(), [p.id], "a decided open stays on the board");
        // The grant covers the window on this host, as a local approval.
        a.request(&req(7, 20), rules(1, 60_000, 0), None).0.unwrap();

        // Denied elsewhere: refused; timed out: withdrawn all the same.
        let (b, bb) = (a.clone(), board.clone());
        let waiter = std::thread::spawn(move || b.request(&req(8, 21), rules(10_000, 0, 0), Some(&*bb)));
        let p = wait_pending(&a);
        let no = RemoteDecision { approve: false, host: "host-a".into(), uid: 0, pid: 99, comm: "x".into() };
        board.decisions.lock().unwrap().insert(p.id, no);
        let (result, remote) = waiter.join().unwrap();
        assert_eq!(result.unwrap_err().kind(), ErrorKind::AccessDenied);
        assert!(remote.is_some_and(|(_, d)| !d.approve));
        let (result, remote) = a.request(&req(9, 22), rules(50, 0, 0), Some(&*board));
        assert!(result.is_err() && remote.is_none());
        assert_eq!(board.withdrawn.lock().unwrap().len(), 3);
    }

    #[test]
    fn the_cooldown_counts_approvals_on_every_host() {
        let board = MemoryBoard::default();
        // Approved on another host a moment ago: this host cools down too.
        board.approved.lock().unwrap().insert(3, now_ms());
        let a = Approvals::default();
        let (r, _) = a.request(&req(1, 40), rules(10_000, 0, 60_000), Some(&board));
        assert!(r.unwrap_err().to_string().contains("cooling down"));
        // Long ago, or a clock far ahead: no cooldown.
        board.approved.lock().unwrap().insert(3, now_ms() - 120_000);
        assert!(
            a.request(&req(1, 40), rules(20, 0, 60_000), Some(&board))
                .0
                .unwrap_err()
                .to_string()
                .contains("within")
        );
        board.approved.lock().unwrap().insert(3, now_ms() + 3_600_000);
        assert!(
            a.request(&req(1, 40), rules(20, 0, 60_000), Some(&board))
                .0
                .unwrap_err()
                .to_string()
                .contains("within")
        );
        // An approval here is noted for the others.
        let a = Arc::new(a);
        let board = Arc::new(board);
        let (b, bb) = (a.clone(), board.clone());
        board.approved.lock().unwrap().clear();
        let waiter =
            std::thread::spawn(move || b.request(&req(2, 41), rules(10_000, 0, 60_000), Some(&*bb)).0);
        wait_pending(&a);
        a.decide(None, true).unwrap();
        waiter.join().unwrap().unwrap();
        assert!(board.approved.lock().unwrap().contains_key(&3), "the approval was not noted");

        // Opened again inside its approval's window: granted, and the other
        // hosts' last approval is not read (it would be a store read).
        let a = Arc::new(Approvals::default());
        let (b, bb) = (a.clone(), board.clone());
        board.approved.lock().unwrap().clear();
        let waiter =
            std::thread::spawn(move || b.request(&req(3, 42), rules(10_000, 60_000, 60_000), Some(&*bb)).0);
        wait_pending(&a);
        a.decide(None, true).unwrap();
        waiter.join().unwrap().unwrap();
        let asked = board.asked.load(std::sync::atomic::Ordering::SeqCst);
        a.request(&req(3, 42), rules(10_000, 60_000, 60_000), Some(&*board)).0.unwrap();
        assert_eq!(
            board.asked.load(std::sync::atomic::Ordering::SeqCst),
            asked,
            "a granted open read the board"
        );
    }

    #[test]
    fn not_required_passes_and_revoke_denies_waiters() {
        let a = Arc::new(Approvals::default());
        a.request(&req(1, 1), ApprovalRules { required: false, ..rules(0, 0, 0) }, None).0.unwrap();
        let b = a.clone();
        let waiter = std::thread::spawn(move || b.request(&req(1, 2), rules(10_000, 0, 0), None).0);
        wait_pending(&a);
        a.revoke_all();
        assert!(waiter.join().unwrap().is_err());
    }
}
