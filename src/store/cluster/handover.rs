//! The vault's hold, passed between mounts that share writing
//! (docs/CLUSTER.md, "Several hosts writing"). Such a mount is a reader
//! (its memory of the vault's keys kept right by the watch, its audit log
//! its own) that takes the `holder` key for the time of its writes: every
//! operation that changes the vault's keys holds a `HoldGuard` from before
//! its first read to after its last write, and the hold is taken, when not
//! here, before the guard is given. Another mount that wants the hold puts
//! `wants/HOST`; the holder then lets no new operation begin, waits for
//! those under way, commits everything they changed, and deletes `holder`.
//! The next one creates it, and its memory hears every change before that
//! (the watch brings them in order) before its operation reads anything.
//! One writer at a time, so what an operation read is what it changes,
//! and a grouped commit is never undone by another host's.
//!
//! A holder keeps the hold for at least SLICE once it has it, so two busy
//! hosts take turns of that length rather than one per operation.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::etcd::{Guard, Op};
use super::{CATCH_UP_WITHIN, Error, LEASE_SECONDS, Result, Shared, WAIT_FOR_HOLDER, prefix_end};

/// The least time a mount keeps the hold once it took it, when another
/// wants it.
const SLICE: Duration = Duration::from_millis(100);
/// How long an operation waits for the hold from another mount that shares
/// writing (it lets go within SLICE of being asked, unless its commit
/// fails; one that died, within the lease).
const WAIT_FOR_SHARER: Duration = Duration::from_secs(30);
/// How often a waiter tries again with no word from the watch, and how
/// often the holder looks for askers itself (a watch that broke may have
/// missed them).
const RETRY_EVERY: Duration = Duration::from_millis(250);
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A take of the hold that waited this long is logged.
const SLOW_TAKE: Duration = Duration::from_secs(2);
/// The holder key's value ends with this on a mount that shares writing:
/// one without it (a mount or a command that holds the vault alone) never
/// lets go when asked.
pub(super) const SHARING: &str = " shares";

/// Whether a holder key's value names a mount that shares writing.
pub(super) fn shares(value: &[u8]) -> bool {
    value.ends_with(SHARING.as_bytes())
}

/// A mount that shares writing the vault (by its `readers/HOST` key's
/// value), if any, as "HOST (MACHINE PID shares)": while one is mounted,
/// no process holds the vault alone.
pub(super) fn sharing_mount(etcd: &super::etcd::Etcd, prefix: &[u8]) -> Result<Option<String>> {
    let from = [prefix, b"readers/"].concat();
    let page = etcd.range(&from, &prefix_end(&from).unwrap_or_default(), 0, 0, false, false)?;
    let host = |kv: &super::etcd::Kv| String::from_utf8_lossy(&kv.key[from.len()..]).into_owned();
    let named = |kv: &super::etcd::Kv| format!("{} ({})", host(kv), String::from_utf8_lossy(&kv.value));
    Ok(page.kvs.iter().find(|kv| shares(&kv.value)).map(named))
}

/// Where the hold is, as this process knows it.
#[derive(Default)]
pub(super) struct Handover {
    state: Mutex<Hold>,
    moved: Condvar,
}

#[derive(Default)]
struct Hold {
    /// The `holder` key's creation revision while this process holds it
    /// (0: it does not).
    at: i64,
    since: Option<Instant>,
    /// Guards given out.
    active: usize,
    /// Letting go: no new guard until the hold is back.
    yielding: bool,
    /// A thread is taking the hold.
    taking: bool,
    /// Another mount asked for the hold.
    asked: bool,
}

thread_local! {
    /// The handovers (by address) this thread holds guards of, and how many.
    static HELD: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// The hold kept for one operation. Not `Send`: the calling thread's
/// count of guards (`HELD`) is what lets its nested operations through.
pub struct HoldGuard<'a> {
    handover: &'a Handover,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        let me = self.handover.id();
        let last = HELD.with(|h| {
            let mut h = h.borrow_mut();
            let i = h.iter().position(|(id, _)| *id == me)?;
            h[i].1 -= 1;
            (h[i].1 == 0).then(|| h.swap_remove(i))
        });
        if last.is_some() {
            let mut s = self.handover.state();
            s.active -= 1;
            if s.active == 0 {
                self.handover.moved.notify_all();
            }
        }
    }
}

impl Handover {
    fn state(&self) -> MutexGuard<'_, Hold> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self) -> usize {
        self as *const Handover as usize
    }

    /// The holder key's creation revision while this process holds it.
    pub(super) fn held_at(&self) -> Option<i64> {
        Some(self.state().at).filter(|&at| at != 0)
    }

    /// Whether the calling thread holds a guard (its writes of the
    /// vault's keys are under the hold).
    pub(super) fn this_thread_holds(&self) -> bool {
        let me = self.id();
        HELD.with(|h| h.borrow().iter().any(|(id, _)| *id == me))
    }

    /// A guard for a thread that holds one already: never waits (the hold
    /// cannot be let go under it).
    fn again(&self) -> Option<HoldGuard<'_>> {
        let me = self.id();
        let nested = HELD.with(|h| {
            let mut h = h.borrow_mut();
            let entry = h.iter_mut().find(|(id, _)| *id == me)?;
            entry.1 += 1;
            Some(())
        });
        nested.map(|()| HoldGuard { handover: self, _this_thread: std::marker::PhantomData })
    }

    fn given(&self, s: &mut Hold) -> HoldGuard<'_> {
        s.active += 1;
        HELD.with(|h| h.borrow_mut().push((self.id(), 1)));
        HoldGuard { handover: self, _this_thread: std::marker::PhantomData }
    }

    /// The watch heard another mount ask for the hold, or the holder key
    /// go: whoever waits looks again.
    pub(super) fn nudge(&self, asked: bool) {
        let mut s = self.state();
        s.asked |= asked;
        self.moved.notify_all();
    }
}

impl Shared {
    /// Whether this is a mount that shares writing.
    pub fn shares_writes(&self) -> bool {
        self.handover.is_some()
    }

    /// The hold for one operation that changes the vault's keys, taken
    /// first if another mount has it. Only on a mount that shares writing.
    pub fn hold_for_write(&self) -> Result<HoldGuard<'_>> {
        let Some(h) = &self.handover else {
            return Err(Error::Unusable(format!("{}: this mount does not share writing", self.addr)));
        };
        if let Some(guard) = h.again() {
            return Ok(guard);
        }
        let mut s = h.state();
        loop {
            self.still_held()?;
            if s.at != 0 && !s.yielding {
                return Ok(h.given(&mut s));
            }
            if s.at == 0 && !s.taking {
                s.taking = true;
                drop(s);
                let took = self.take_hold();
                s = h.state();
                s.taking = false;
                h.moved.notify_all();
                // `asked` stays as the watch left it: a mount that asked
                // while this one waited (after it, in line) waits now.
                (s.at, s.since) = (took?, Some(Instant::now()));
                continue;
            }
            s = h.moved.wait_timeout(s, RETRY_EVERY).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// As `hold_for_write`, only if this process holds the vault now and
    /// is not letting go of it.
    pub fn try_hold_for_write(&self) -> Option<HoldGuard<'_>> {
        let h = self.handover.as_ref()?;
        if let Some(guard) = h.again() {
            return Some(guard);
        }
        let mut s = h.state();
        let lost = self.held.lost.load(std::sync::atomic::Ordering::SeqCst);
        (s.at != 0 && !s.yielding && !lost).then(|| h.given(&mut s))
    }

    pub(super) fn holder_key(&self) -> Vec<u8> {
        self.meta_key("holder")
    }

    pub(super) fn wants_key(&self) -> Vec<u8> {
        self.meta_key(&format!("wants/{}", self.host.as_deref().unwrap_or_default()))
    }

    /// Asks for the hold and waits for it: the holder key, created under
    /// this process's lease; its creation revision once memory has heard
    /// every change committed before it.
    ///
    /// Mounts take the hold in the order they asked for it (by their
    /// `wants` keys' creation revisions): a mount that just let go cannot
    /// take the hold straight back, again and again, from one that waits.
    fn take_hold(&self) -> Result<i64> {
        let (holder, wants) = (self.holder_key(), self.wants_key());
        let me = format!("{} {}{SHARING}", self.host.as_deref().unwrap_or_default(), std::process::id());
        let asked_at = self.ask_for_hold(&wants)?;
        let all_wants = self.meta_key("wants/");
        let first_in_line =
            Guard::NoneCreatedBefore(all_wants.clone(), prefix_end(&all_wants).unwrap_or_default(), asked_at);
        let started = Instant::now();
        let h = self.handover.as_ref().expect("only a mount that shares writing takes the hold");
        loop {
            self.still_held()?;
            let guards = vec![
                Guard::Created(self.hold_key.clone(), self.held_at),
                Guard::Created(holder.clone(), 0),
                first_in_line.clone(),
            ];
            let ops = vec![Op::PutLeased(holder.clone(), me.clone().into_bytes(), self.lease), Op::Delete(wants.clone())];
            if let Some(at) = self.etcd.txn_at(guards, ops)? {
                // Objects the other writers stored are listed again.
                *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.hear_up_to(at)?;
                if started.elapsed() >= SLOW_TAKE {
                    tracing::info!("took the vault's hold after {:.1} s", started.elapsed().as_secs_f64());
                }
                return Ok(at);
            }
            let waited = started.elapsed();
            if let Some(kv) = self.etcd.get(&holder)? {
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                let shares = shares(&kv.value);
                if waited >= WAIT_FOR_SHARER || (!shares && waited >= WAIT_FOR_HOLDER) {
                    let _ = self.write(vec![Op::Delete(wants)]);
                    let why = match shares {
                        true => "which shares writing, but did not let go",
                        false => "a mount or a command that holds it alone",
                    };
                    return Err(Error::Unusable(format!(
                        "{} is held by {value} ({why}; waited {} s; a host that died lets go within {LEASE_SECONDS} s)",
                        self.addr,
                        waited.as_secs()
                    )));
                }
            } else if waited >= WAIT_FOR_SHARER {
                // Free, but mounts that asked first never took it.
                let _ = self.write(vec![Op::Delete(wants)]);
                return Err(Error::Unusable(format!(
                    "{}: mounts that asked for the hold before this one did not take it (waited {} s)",
                    self.addr,
                    waited.as_secs()
                )));
            }
            let s = h.state();
            drop(h.moved.wait_timeout(s, RETRY_EVERY).unwrap_or_else(|p| p.into_inner()).0);
        }
    }

    /// Puts this mount's `wants` key (under its lease); its creation
    /// revision, this mount's place in line. One request, unless the key
    /// is there already (a take that failed left it).
    fn ask_for_hold(&self, wants: &[u8]) -> Result<i64> {
        for _ in 0..3 {
            self.still_held()?;
            let put = vec![Op::PutLeased(wants.to_vec(), Vec::new(), self.lease)];
            let guards =
                vec![Guard::Created(self.hold_key.clone(), self.held_at), Guard::Created(wants.to_vec(), 0)];
            if let Some(at) = self.etcd.txn_at(guards, put)? {
                return Ok(at);
            }
            if let Some(kv) = self.etcd.get(wants)? {
                return Ok(kv.create_revision);
            }
            // Neither: this mount's own key went (its lease lapsed: the
            // write below says so), or the wants key went in between.
            self.write(Vec::new())?;
        }
        Err(Error::Unusable(format!("{}: this mount's request for the hold keeps being deleted", self.addr)))
    }

    /// Waits until memory has heard every change up to `revision`, or
    /// stops answering until it has (as a catch-up does).
    pub(super) fn hear_up_to(&self, revision: i64) -> Result<()> {
        if let Some(f) = &self.follower
            && f.watching()
            && !f.wait_for(revision, CATCH_UP_WITHIN)
        {
            tracing::debug!("etcd: the watch of the vault lags; reading from etcd until it catches up");
            f.fall_behind(revision);
        }
        Ok(())
    }

    /// Whether another mount asked for the hold (read from etcd).
    fn others_want(&self) -> Result<bool> {
        let from = self.meta_key("wants/");
        let page = self.etcd.range(&from, &prefix_end(&from).unwrap_or_default(), 0, 0, false, true)?;
        let mine = self.wants_key();
        Ok(page.kvs.iter().any(|kv| kv.key != mine))
    }

    /// Lets go of the hold (every operation under it has ended): commits
    /// what they changed, then deletes the holder key if it is still this
    /// process's. Whether the hold is gone.
    fn let_go(&self, at: i64) -> Result<bool> {
        self.commit()?;
        let holder = self.holder_key();
        match self.etcd.txn(vec![Guard::Created(holder.clone(), at)], vec![Op::Delete(holder.clone())]) {
            // Deleted now, or not this process's any more.
            Ok(_) => Ok(true),
            // Deleted or not: etcd says which.
            Err(e) => match self.etcd.get(&holder) {
                Ok(kv) => Ok(kv.is_none_or(|kv| kv.create_revision != at)),
                Err(_) => Err(e),
            },
        }
    }

    /// Lets go of the hold if this process has it (at unmount, after the
    /// last change): the other mounts need not wait for its lease.
    pub fn release_hold(&self) -> Result<()> {
        match &self.handover {
            Some(h) if h.held_at().is_some() => self.give_up(h),
            _ => Ok(()),
        }
    }

    /// Lets no new operation take the hold, waits for those under way,
    /// then lets go of it (`let_go`); if that fails, keeps it and tries
    /// again after SLICE.
    fn give_up(&self, h: &Handover) -> Result<()> {
        let mut s = h.state();
        if s.at == 0 || s.yielding {
            return Ok(());
        }
        s.yielding = true;
        while s.active > 0 {
            s = h.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        let at = s.at;
        drop(s);
        let gone = self.let_go(at);
        let mut s = h.state();
        s.yielding = false;
        match gone {
            Ok(true) => (s.at, s.since, s.asked) = (0, None, false),
            Ok(false) | Err(_) => s.since = Some(Instant::now()),
        }
        h.moved.notify_all();
        gone.map(|_| ())
    }

    /// A mount that shares writing: lets go of the hold when another mount
    /// asks, once it had it for SLICE, for as long as the store lives.
    pub(super) fn hand_over_when_asked(shared: &Arc<Shared>) {
        let Some(h) = shared.handover.clone() else { return };
        let weak = Arc::downgrade(shared);
        let spawned = std::thread::Builder::new().name("vaultfs-handover".into()).spawn(move || hand_over(h, weak));
        if let Err(e) = spawned {
            tracing::warn!("no thread to hand the vault's hold over in: {e}; other hosts wait for this mount's unmount");
        }
    }
}

/// The handing-over thread: waits on `h` (never keeping the store alive
/// while it waits), lets go when asked.
fn hand_over(h: Arc<Handover>, weak: Weak<Shared>) {
    let mut last_look = Instant::now();
    loop {
        let s = h.state();
        if s.at == 0 || s.yielding {
            drop(h.moved.wait_timeout(s, LOOK_EVERY).unwrap_or_else(|p| p.into_inner()).0);
        } else if !s.asked && last_look.elapsed() >= LOOK_EVERY {
            drop(s);
            last_look = Instant::now();
            let Some(shared) = weak.upgrade() else { return };
            let asked = shared.others_want().unwrap_or(false);
            h.state().asked |= asked;
            continue;
        } else {
            let held_for = s.since.map_or(SLICE, |t| t.elapsed());
            if !s.asked || held_for < SLICE {
                let wait = if s.asked { SLICE - held_for } else { LOOK_EVERY };
                drop(h.moved.wait_timeout(s, wait).unwrap_or_else(|p| p.into_inner()).0);
            } else {
                drop(s);
                let Some(shared) = weak.upgrade() else { return };
                if let Err(e) = shared.give_up(&h) {
                    // A commit that failed: what it holds needs the hold.
                    tracing::warn!("handing the vault's hold over: {e}; trying again");
                }
            }
        }
        match weak.upgrade() {
            Some(shared) if !shared.hold_lost() => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_holds_one_count_however_deep_its_guards_nest() {
        let h = Handover::default();
        assert!(!h.this_thread_holds() && h.again().is_none(), "no guard yet");
        h.state().at = 7;
        let outer = h.given(&mut h.state());
        let inner = h.again().expect("a nested guard is given at once");
        assert!(h.this_thread_holds());
        assert_eq!(h.state().active, 1, "one thread, one count");
        // Another thread holds nothing of this one's.
        std::thread::scope(|s| s.spawn(|| assert!(!h.this_thread_holds())).join().unwrap());
        drop(inner);
        assert!(h.this_thread_holds() && h.state().active == 1);
        drop(outer);
        assert!(!h.this_thread_holds() && h.state().active == 0);
        assert_eq!(h.held_at(), Some(7));
    }
}
