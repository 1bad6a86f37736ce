//! The locks this host's processes hold, and the waits for them. With a
//! `Board` (a cluster vault) every change of what this host holds on a file
//! is published for the other hosts' mounts first, and a lock is granted
//! only if no other host holds a conflicting one.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::ranges::{self, Held, Kind, Span};
use crate::vault::Result;

/// How often a waiter looks at other hosts' locks again (their releases
/// are not announced to it).
const POLL_OTHER_HOSTS: Duration = Duration::from_millis(50);
/// How often a waiter for a lock of this host looks again even unwoken
/// (and whether its process was signalled meanwhile).
const POLL_HERE: Duration = Duration::from_millis(100);
/// How many waiters a deadlock check follows, as Linux does.
const MAX_WAIT_CHAIN: usize = 10;
/// Claims lost to other hosts' changes before a request gives up for now
/// (a waiter then waits and tries again; a non-waiting one hears EAGAIN).
const CLAIM_TRIES: usize = 8;

/// Where hosts publish what they hold on each file.
pub trait Board {
    /// Every other host's locks on `ino`, and a token that changes whenever
    /// one of them takes more.
    fn others(&self, ino: u64) -> Result<(Vec<Span>, i64)>;
    /// Publishes `ours` as this host's locks on `ino` if no host took more
    /// since `token` was read (in one round trip either way).
    fn claim(&self, ino: u64, token: i64, ours: &[Span]) -> Result<Claimed>;
    /// Publishes `ours`, which holds less than what was published before.
    fn shrink(&self, ino: u64, ours: &[Span]) -> Result<()>;
}

/// What a claim came to.
pub enum Claimed {
    /// Published; the token now.
    Won(i64),
    /// Another host took more since the token: every other host's locks
    /// now, and the token to claim with next.
    Lost(Vec<Span>, i64),
}

/// Other hosts' locks on a file as last read, and the token they were read
/// at. Still a superset of what they hold while the token is unchanged
/// (a host taking more moves it; releases and lapsed leases only remove),
/// so a claim needs no read first: the next lock on a file costs one
/// round trip, not two.
type View = (Vec<Span>, i64);

/// Files whose views are kept at most (then all are dropped).
const KEPT_VIEWS: usize = 4096;

/// Who holds what a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A process of this host (its pid).
    Here(Span, u32),
    /// Another host's mount (no pid that means anything here).
    Elsewhere(Span),
}

/// What became of a lock request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Busy(Holder),
    /// Its owner closed the file while it waited (`drop_owner`), or its
    /// process was signalled.
    Cancelled,
    /// Waiting would close a cycle of this host's waiters: each waits for
    /// a lock the next holds, and the last for one this owner holds (EDEADLK).
    Deadlock,
}

/// One try at a request.
enum Attempt {
    Done,
    Here(Held),
    Elsewhere(Span),
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Vec<Held>>,
    /// Per (inode, owner) with waiters: how many, and how many times its
    /// locks were dropped (a waiter seeing that move gives up).
    waiting: HashMap<(u64, u64), (usize, u64)>,
    /// What each waiting owner waits for (its latest wait), for deadlock checks.
    blocked: HashMap<u64, Request>,
}

#[derive(Default)]
pub struct FileLocks {
    state: Mutex<State>,
    changed: Condvar,
    /// Orders this host's publications: what etcd holds for a file is what
    /// this host held after its last change, never an older picture. Holds
    /// the views of other hosts' locks, per file.
    publishing: Mutex<HashMap<u64, View>>,
}

/// A lock request: `owner` wants `start..=end` as `kind` (None: unlocked).
#[derive(Clone, Copy)]
pub struct Request {
    pub ino: u64,
    pub owner: u64,
    pub pid: u32,
    pub start: u64,
    pub end: u64,
    pub kind: Option<Kind>,
}

impl FileLocks {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// F_GETLK: who holds something that `r` would conflict with, if anyone.
    pub fn test(&self, r: Request, board: Option<&dyn Board>) -> Result<Option<Holder>> {
        let Some(kind) = r.kind else { return Ok(None) };
        if let Some(h) = self.local_conflict(&r, kind) {
            return Ok(Some(h));
        }
        Ok(match board {
            Some(b) => remote_conflict(&b.others(r.ino)?.0, &r, kind).map(Holder::Elsewhere),
            None => None,
        })
    }

    fn local_conflict(&self, r: &Request, kind: Kind) -> Option<Holder> {
        let st = self.state();
        let held = st.held.get(&r.ino)?;
        ranges::conflict(held, r.owner, r.start, r.end, kind).map(|h| Holder::Here(h.span, h.pid))
    }

    /// F_SETLK (and F_SETLKW when `wait`): sets, changes or removes `r`'s
    /// lock. A wait gives up when `interrupted` says so.
    pub fn set(
        &self,
        r: Request,
        wait: bool,
        board: Option<&dyn Board>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Outcome> {
        let first = self.try_set(r, board)?;
        if !wait {
            return Ok(outcome(first));
        }
        let key = (r.ino, r.owner);
        let drops = {
            let mut st = self.state();
            let w = st.waiting.entry(key).or_insert((0, 0));
            w.0 += 1;
            w.1
        };
        let mut attempt = first;
        let outcome = loop {
            let pause = match attempt {
                Attempt::Done => break Outcome::Granted,
                Attempt::Here(h) => {
                    let mut st = self.state();
                    if deadlocks(&st, r.owner, h.owner) {
                        break Outcome::Deadlock;
                    }
                    st.blocked.insert(r.owner, r);
                    POLL_HERE
                }
                Attempt::Elsewhere(_) => POLL_OTHER_HOSTS,
            };
            let st = self.state();
            if st.waiting.get(&key).map(|w| w.1) != Some(drops) {
                break Outcome::Cancelled;
            }
            let (st, _) = self.changed.wait_timeout(st, pause).unwrap_or_else(|p| p.into_inner());
            if st.waiting.get(&key).map(|w| w.1) != Some(drops) {
                break Outcome::Cancelled;
            }
            drop(st);
            if interrupted() {
                break Outcome::Cancelled;
            }
            attempt = match self.try_set(r, board) {
                Ok(a) => a,
                Err(err) => {
                    self.stop_waiting(key);
                    return Err(err);
                }
            };
        };
        self.stop_waiting(key);
        Ok(outcome)
    }

    fn stop_waiting(&self, key: (u64, u64)) {
        let mut st = self.state();
        st.blocked.remove(&key.1);
        if let Some(w) = st.waiting.get_mut(&key) {
            w.0 -= 1;
            if w.0 == 0 {
                st.waiting.remove(&key);
            }
        }
    }

    fn try_set(&self, r: Request, board: Option<&dyn Board>) -> Result<Attempt> {
        let mut views = board.map(|_| self.publishing.lock().unwrap_or_else(|p| p.into_inner()));
        let (now, next) = {
            let st = self.state();
            let now = st.held.get(&r.ino).cloned().unwrap_or_default();
            if let Some(kind) = r.kind
                && let Some(h) = ranges::conflict(&now, r.owner, r.start, r.end, kind)
            {
                return Ok(Attempt::Here(h));
            }
            let mut next = now.clone();
            ranges::set(&mut next, r.owner, r.pid, r.start, r.end, r.kind);
            (now, next)
        };
        let Some(b) = board else {
            self.install(r.ino, next);
            return Ok(Attempt::Done);
        };
        let (before, after) = (ranges::spans(&now), ranges::spans(&next));
        match r.kind {
            Some(kind) => {
                let views = views.as_deref_mut().expect("a board's requests hold the views");
                if after != before
                    && let Some(s) = claim(b, views, &r, kind, &after)?
                {
                    return Ok(Attempt::Elsewhere(s));
                }
                self.install(r.ino, next);
            }
            None => {
                // Let go here even if etcd is not told: another host then
                // waits for this one's lease, never for a lock no process holds.
                self.install(r.ino, next);
                if after != before {
                    b.shrink(r.ino, &after)?;
                }
            }
        }
        Ok(Attempt::Done)
    }

    fn install(&self, ino: u64, next: Vec<Held>) {
        let mut st = self.state();
        if next.is_empty() {
            st.held.remove(&ino);
        } else {
            st.held.insert(ino, next);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// At a close (POSIX locks: the process's; flock: the open file's):
    /// removes every lock `owner` holds on `ino`, and ends its waits there.
    pub fn drop_owner(&self, ino: u64, owner: u64, board: Option<&dyn Board>) -> Result<()> {
        {
            let mut st = self.state();
            if let Some(w) = st.waiting.get_mut(&(ino, owner)) {
                w.1 += 1;
            }
            let holds = st.held.get(&ino).is_some_and(|h| h.iter().any(|h| h.owner == owner));
            drop(st);
            self.changed.notify_all();
            if !holds {
                return Ok(());
            }
        }
        let all = Request { ino, owner, pid: 0, start: 0, end: u64::MAX, kind: None };
        self.try_set(all, board).map(|_| ())
    }

    /// Whether any process of this host holds a lock on `ino`.
    pub fn any_on(&self, ino: u64) -> bool {
        self.state().held.contains_key(&ino)
    }
}

fn outcome(a: Attempt) -> Outcome {
    match a {
        Attempt::Done => Outcome::Granted,
        Attempt::Here(h) => Outcome::Busy(Holder::Here(h.span, h.pid)),
        Attempt::Elsewhere(s) => Outcome::Busy(Holder::Elsewhere(s)),
    }
}

/// Whether `owner` waiting for a lock `holder` holds closes a cycle: the
/// holder waits for a lock whose holder waits... for one `owner` holds.
/// This host's waiters only (a cycle through another host is not seen).
fn deadlocks(st: &State, owner: u64, mut holder: u64) -> bool {
    for _ in 0..MAX_WAIT_CHAIN {
        if holder == owner {
            return true;
        }
        let Some(r) = st.blocked.get(&holder) else { return false };
        let Some(kind) = r.kind else { return false };
        let Some(next) = st.held.get(&r.ino).and_then(|h| ranges::conflict(h, holder, r.start, r.end, kind))
        else {
            return false;
        };
        holder = next.owner;
    }
    false
}

fn remote_conflict(others: &[Span], r: &Request, kind: Kind) -> Option<Span> {
    others.iter().find(|s| s.blocks(r.start, r.end, kind)).copied()
}

/// Publishes `ours` for a request that takes more, unless another host
/// holds what conflicts with it; what it holds, if one does. Starts from
/// the file's kept view of the other hosts; a conflict seen only there is
/// read again before it refuses.
fn claim(
    b: &dyn Board,
    views: &mut HashMap<u64, View>,
    r: &Request,
    kind: Kind,
    ours: &[Span],
) -> Result<Option<Span>> {
    let (mut others, mut token, mut fresh) = match views.remove(&r.ino) {
        Some((others, token)) => (others, token, false),
        None => {
            let (others, token) = b.others(r.ino)?;
            (others, token, true)
        }
    };
    if views.len() >= KEPT_VIEWS {
        views.clear();
    }
    for _ in 0..CLAIM_TRIES {
        if let Some(s) = remote_conflict(&others, r, kind) {
            if !fresh {
                (others, token) = b.others(r.ino)?;
                fresh = true;
                continue;
            }
            views.insert(r.ino, (others, token));
            return Ok(Some(s));
        }
        match b.claim(r.ino, token, ours)? {
            Claimed::Won(now) => {
                views.insert(r.ino, (others, now));
                return Ok(None);
            }
            Claimed::Lost(now, at) => (others, token, fresh) = (now, at, true),
        }
    }
    // Others kept changing what they hold: busy for now.
    Ok(Some(Span { start: r.start, end: r.end, kind: Kind::Exclusive }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A board hosts share in memory: what each host published, and a
    /// token moved by every claim (as etcd's revision of the file's key).
    /// Per (inode, host): its spans; per inode: the token.
    type Published = (HashMap<(u64, usize), Vec<Span>>, HashMap<u64, i64>);

    #[derive(Default)]
    struct Shared {
        hosts: Mutex<Published>,
        /// Claims that must fail as if another host got in first.
        lose: AtomicUsize,
        /// Reads of other hosts' locks (`others`) so far.
        reads: AtomicUsize,
    }

    struct Host(Arc<Shared>, usize);

    impl Board for Host {
        fn others(&self, ino: u64) -> Result<(Vec<Span>, i64)> {
            self.0.reads.fetch_add(1, Ordering::SeqCst);
            self.view(ino)
        }
        fn claim(&self, ino: u64, token: i64, ours: &[Span]) -> Result<Claimed> {
            let mut g = self.0.hosts.lock().unwrap();
            let lose = self.0.lose.load(Ordering::SeqCst) > 0;
            if lose {
                self.0.lose.fetch_sub(1, Ordering::SeqCst);
                *g.1.entry(ino).or_default() += 1;
            }
            if lose || g.1.get(&ino).copied().unwrap_or(0) != token {
                drop(g);
                let (others, token) = self.view(ino)?;
                return Ok(Claimed::Lost(others, token));
            }
            let now = g.1.entry(ino).or_default();
            *now += 1;
            let now = *now;
            g.0.insert((ino, self.1), ours.to_vec());
            Ok(Claimed::Won(now))
        }
        fn shrink(&self, ino: u64, ours: &[Span]) -> Result<()> {
            self.0.hosts.lock().unwrap().0.insert((ino, self.1), ours.to_vec());
            Ok(())
        }
    }

    impl Host {
        fn view(&self, ino: u64) -> Result<(Vec<Span>, i64)> {
            let g = self.0.hosts.lock().unwrap();
            let spans =
                g.0.iter()
                    .filter(|((i, h), _)| *i == ino && *h != self.1)
                    .flat_map(|(_, s)| s.clone())
                    .collect();
            Ok((spans, g.1.get(&ino).copied().unwrap_or(0)))
        }
    }

    fn req(owner: u64, start: u64, end: u64, kind: Option<Kind>) -> Request {
        Request { ino: 7, owner, pid: owner as u32 * 10, start, end, kind }
    }

    const X: Option<Kind> = Some(Kind::Exclusive);
    const S: Option<Kind> = Some(Kind::Shared);

    #[test]
    fn hosts_see_each_others_locks_and_releases() {
        let shared = Arc::new(Shared::default());
        let (a, b) = (Host(shared.clone(), 1), Host(shared.clone(), 2));
        let (ta, tb) = (FileLocks::default(), FileLocks::default());
        assert_eq!(ta.set(req(1, 0, 99, X), false, Some(&a), &|| false).unwrap(), Outcome::Granted);
        // Another host: busy for any overlap, free elsewhere; F_GETLK says so.
        assert!(matches!(
            tb.set(req(2, 50, 50, S), false, Some(&b), &|| false).unwrap(),
            Outcome::Busy(Holder::Elsewhere(_))
        ));
        assert_eq!(tb.set(req(2, 100, 199, X), false, Some(&b), &|| false).unwrap(), Outcome::Granted);
        assert!(matches!(tb.test(req(3, 0, 0, S), Some(&b)).unwrap(), Some(Holder::Elsewhere(_))));
        // The same host: its own process is named, with its pid.
        assert_eq!(
            ta.test(req(4, 10, 10, S), Some(&a)).unwrap(),
            Some(Holder::Here(Span { start: 0, end: 99, kind: Kind::Exclusive }, 10))
        );
        // Downgrade to shared: the other host may share it now.
        assert_eq!(ta.set(req(1, 0, 99, S), false, Some(&a), &|| false).unwrap(), Outcome::Granted);
        assert_eq!(tb.set(req(2, 50, 50, S), false, Some(&b), &|| false).unwrap(), Outcome::Granted);
        ta.drop_owner(7, 1, Some(&a)).unwrap();
        assert!(!ta.any_on(7));
        assert_eq!(tb.set(req(2, 0, 99, X), false, Some(&b), &|| false).unwrap(), Outcome::Granted);
    }

    #[test]
    fn a_claim_that_loses_a_race_looks_again() {
        let shared = Arc::new(Shared::default());
        let a = Host(shared.clone(), 1);
        let t = FileLocks::default();
        shared.lose.store(2, Ordering::SeqCst);
        assert_eq!(t.set(req(1, 0, 0, X), false, Some(&a), &|| false).unwrap(), Outcome::Granted);
        shared.lose.store(CLAIM_TRIES, Ordering::SeqCst);
        assert!(matches!(t.set(req(1, 5, 5, X), false, Some(&a), &|| false).unwrap(), Outcome::Busy(_)));
        // Nothing was installed for the request that gave up.
        assert!(t.test(req(2, 5, 5, X), None).unwrap().is_none());
    }

    #[test]
    fn a_waiter_gets_the_lock_when_a_local_or_remote_holder_lets_go() {
        let shared = Arc::new(Shared::default());
        let (ta, tb) = (Arc::new(FileLocks::default()), FileLocks::default());
        let b = Host(shared.clone(), 2);
        ta.set(req(1, 0, 0, X), false, Some(&Host(shared.clone(), 1)), &|| false).unwrap();
        assert!(matches!(tb.set(req(2, 0, 0, S), false, Some(&b), &|| false).unwrap(), Outcome::Busy(_)));
        let waiter = {
            let (ta, shared) = (ta.clone(), shared.clone());
            std::thread::spawn(move || {
                ta.set(req(3, 0, 0, X), true, Some(&Host(shared, 1)), &|| false).unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished());
        ta.set(req(1, 0, 0, None), false, Some(&Host(shared.clone(), 1)), &|| false).unwrap();
        assert_eq!(waiter.join().unwrap(), Outcome::Granted);
        // Across hosts: polled.
        let remote = std::thread::spawn(move || tb.set(req(2, 0, 0, S), true, Some(&b), &|| false).unwrap());
        std::thread::sleep(Duration::from_millis(150));
        assert!(!remote.is_finished());
        ta.drop_owner(7, 3, Some(&Host(shared.clone(), 1))).unwrap();
        assert_eq!(remote.join().unwrap(), Outcome::Granted);
    }

    #[test]
    fn closing_the_file_ends_its_owners_wait() {
        let t = Arc::new(FileLocks::default());
        t.set(req(1, 0, 0, X), false, None, &|| false).unwrap();
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.set(req(2, 0, 0, X), true, None, &|| false).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100));
        t.drop_owner(7, 2, None).unwrap();
        assert_eq!(waiter.join().unwrap(), Outcome::Cancelled);
        // The holder is untouched; the cancelled owner holds nothing.
        assert!(t.test(req(2, 0, 0, S), None).unwrap().is_some());
        t.drop_owner(7, 1, None).unwrap();
        assert!(!t.any_on(7));
    }

    #[test]
    fn a_wait_that_would_close_a_cycle_is_a_deadlock_and_a_signal_ends_a_wait() {
        let t = Arc::new(FileLocks::default());
        t.set(req(1, 0, 0, X), false, None, &|| false).unwrap();
        t.set(req(2, 5, 5, X), false, None, &|| false).unwrap();
        // 1 waits for 2's byte 5; 2 asking for 1's byte 0 would wait for ever.
        let one = {
            let t = t.clone();
            std::thread::spawn(move || t.set(req(1, 5, 5, X), true, None, &|| false).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(t.set(req(2, 0, 0, X), true, None, &|| false).unwrap(), Outcome::Deadlock);
        // A third owner waiting on 1 closes no cycle; a signal ends its wait.
        let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let three = {
            let (t, s) = (t.clone(), signalled.clone());
            std::thread::spawn(move || {
                t.set(req(3, 0, 0, S), true, None, &|| s.load(Ordering::SeqCst)).unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(!three.is_finished());
        signalled.store(true, Ordering::SeqCst);
        assert_eq!(three.join().unwrap(), Outcome::Cancelled);
        t.drop_owner(7, 2, None).unwrap();
        assert_eq!(one.join().unwrap(), Outcome::Granted);
    }

    #[test]
    fn a_claim_starts_from_the_last_view_of_other_hosts() {
        let shared = Arc::new(Shared::default());
        let (a, b) = (Host(shared.clone(), 1), Host(shared.clone(), 2));
        let (ta, tb) = (FileLocks::default(), FileLocks::default());
        let reads = || shared.reads.load(Ordering::SeqCst);
        let never = &|| false;
        ta.set(req(1, 0, 0, X), false, Some(&a), never).unwrap();
        assert_eq!(reads(), 1);
        // Let go and take again: the view is still good, no read.
        ta.set(req(1, 0, 0, None), false, Some(&a), never).unwrap();
        assert_eq!(ta.set(req(1, 0, 0, X), false, Some(&a), never).unwrap(), Outcome::Granted);
        assert_eq!(reads(), 1);
        // B takes more: A's claim fails on the token and gets B's locks in the same call.
        assert_eq!(tb.set(req(2, 100, 100, X), false, Some(&b), never).unwrap(), Outcome::Granted);
        assert_eq!(reads(), 2);
        assert_eq!(ta.set(req(1, 5, 5, X), false, Some(&a), never).unwrap(), Outcome::Granted);
        assert_eq!(reads(), 2);
        // A conflict in the view is read again before it refuses...
        assert!(matches!(ta.set(req(1, 100, 100, S), false, Some(&a), never).unwrap(), Outcome::Busy(_)));
        assert_eq!(reads(), 3);
        // ...and a release the view missed (no token move) is found so.
        tb.set(req(2, 100, 100, None), false, Some(&b), never).unwrap();
        assert_eq!(ta.set(req(1, 100, 100, S), false, Some(&a), never).unwrap(), Outcome::Granted);
        assert_eq!(reads(), 4);
        assert_eq!(shared.hosts.lock().unwrap().0[&(7, 1)].len(), 3);
    }
}
