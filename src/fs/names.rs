//! What a read-only mount of a cluster vault lets the kernel keep of
//! names: directories' names, so that a path walk asks the mount only for
//! its last component (and catches up with the holder there), where
//! keeping none would cost a catch-up per component.
//!
//! The holder renames and removes directories without this kernel
//! knowing. The mount's watch of the vault tells `heard` of every entry
//! the holder changes, before a catch-up returns past the change; a name
//! the kernel keeps is then stale. A lookup under a directory reached
//! through a stale name (its own, or an ancestor's) answers ESTALE, and
//! the kernel walks the path again asking the mount for every component
//! (LOOKUP_REVAL): what the walk finds is what the holder committed before
//! it began, as if no name were kept. The kernel is also told to drop the
//! stale name (FUSE notify), from a thread of its own: the kernel takes
//! the directory's lock for that, which a request waiting for the watch
//! may hold.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use fuser::{INodeNo, Notifier};

use crate::vault::Heard;

/// Deepest chain of directories a freshness check follows (a cycle in
/// what the kernel was told would otherwise never end).
const MAX_DEPTH: usize = 4096;

/// A directory name the kernel keeps.
struct Kept {
    parent: u64,
    name: Box<[u8]>,
    /// Its entry's store key (None: an entry of the root, never changed).
    key: Option<Vec<u8>>,
    /// The clock when the mount read what it gave the kernel last.
    given: u64,
    /// The clock when the watch last told of a change of its entry.
    changed: u64,
}

#[derive(Default)]
struct Inner {
    /// Counts what the watch told; read before a lookup reads the store.
    clock: u64,
    /// Every name given before this is stale (changes may have been missed).
    all_changed: u64,
    dirs: HashMap<u64, Kept>,
    by_key: HashMap<Vec<u8>, u64>,
}

impl Inner {
    fn drop_key(&mut self, ino: u64) {
        if let Some(old) = self.dirs.get(&ino).and_then(|k| k.key.clone())
            && self.by_key.get(&old) == Some(&ino)
        {
            self.by_key.remove(&old);
        }
    }
}

/// A name for the kernel to drop: the directory it is in, and itself.
type Name = (u64, Box<[u8]>);

#[derive(Clone, Default)]
pub(super) struct ReaderNames {
    inner: Arc<Mutex<Inner>>,
    /// Names for the kernel to drop, to the thread that tells it.
    to_drop: Arc<Mutex<Option<Sender<Name>>>>,
}

impl ReaderNames {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock now: taken after a lookup's catch-up, before it reads.
    pub(super) fn now(&self) -> u64 {
        self.lock().clock
    }

    /// The kernel was given directory `ino` as `parent/name` (entry store
    /// key `key`), from what was read after the clock said `at`.
    pub(super) fn given(&self, ino: u64, parent: u64, name: &[u8], key: Option<Vec<u8>>, at: u64) {
        let mut m = self.lock();
        m.drop_key(ino);
        if let Some(k) = &key {
            m.by_key.insert(k.clone(), ino);
        }
        let changed = m.dirs.get(&ino).map_or(0, |k| k.changed);
        let given = m
            .dirs
            .get(&ino)
            .filter(|k| k.parent == parent && *k.name == *name)
            .map_or(at, |k| k.given.max(at));
        m.dirs.insert(ino, Kept { parent, name: name.into(), key, given, changed });
    }

    /// What the watch heard: the names it makes stale are stale from now.
    pub(super) fn heard(&self, heard: Heard<'_>) {
        let mut m = self.lock();
        m.clock += 1;
        let clock = m.clock;
        match heard {
            Heard::Entry(key) => {
                let Some(&ino) = m.by_key.get(key) else { return };
                let Some(kept) = m.dirs.get_mut(&ino) else { return };
                kept.changed = clock;
                let name = (kept.parent, kept.name.clone());
                drop(m);
                if let Some(tx) = self.to_drop.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    let _ = tx.send(name);
                }
            }
            Heard::All => m.all_changed = clock,
        }
    }

    /// Whether the names from `root` to directory `ino` the kernel may have
    /// walked are all as the mount last gave them (a directory the kernel
    /// was never given a kept name of was looked up by this walk).
    pub(super) fn fresh(&self, ino: u64, root: u64) -> bool {
        let m = self.lock();
        let mut at = ino;
        for _ in 0..MAX_DEPTH {
            if at == root {
                return true;
            }
            let Some(kept) = m.dirs.get(&at) else { return true };
            if kept.changed > kept.given || m.all_changed > kept.given {
                return false;
            }
            at = kept.parent;
        }
        false
    }

    /// Whether the kernel keeps a name of directory `ino` given by this mount.
    pub(super) fn keeps(&self, ino: u64) -> bool {
        self.lock().dirs.contains_key(&ino)
    }

    /// The kernel forgot `ino`.
    pub(super) fn forget(&self, ino: u64) {
        let mut m = self.lock();
        m.drop_key(ino);
        m.dirs.remove(&ino);
    }

    /// Starts the thread that has the kernel drop stale names.
    pub(super) fn set_notifier(&self, notifier: Notifier) {
        let (tx, rx) = channel();
        *self.to_drop.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        std::thread::spawn(move || drop_names(notifier, rx));
    }

    /// Stops that thread (at the session's end).
    pub(super) fn stop(&self) {
        self.to_drop.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

fn drop_names(notifier: Notifier, rx: Receiver<Name>) {
    for (parent, name) in rx {
        // ENOENT: the kernel no longer keeps it.
        if let Err(err) = notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(&name)) {
            tracing::debug!("dropping the kernel's name {parent}/{}: {err}", String::from_utf8_lossy(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: u64 = 1;

    /// root / level (2) / a (10) / b (11)
    fn kept() -> ReaderNames {
        let n = ReaderNames::default();
        let at = n.now();
        n.given(2, ROOT, b"1-working", None, at);
        n.given(10, 2, b"a", Some(b"Dkey-a".to_vec()), at);
        n.given(11, 10, b"b", Some(b"Dkey-b".to_vec()), at);
        n
    }

    #[test]
    fn a_change_of_any_name_on_the_way_makes_the_walk_stale() {
        let n = kept();
        assert!(n.fresh(11, ROOT) && n.fresh(10, ROOT));
        n.heard(Heard::Entry(b"Dkey-other"));
        assert!(n.fresh(11, ROOT), "an entry the kernel keeps no name of changes nothing");
        n.heard(Heard::Entry(b"Dkey-a"));
        assert!(!n.fresh(11, ROOT) && !n.fresh(10, ROOT), "an ancestor's rename reaches below it");
        assert!(n.fresh(2, ROOT));
        // Looked up again after the change: fresh.
        let at = n.now();
        n.given(10, 2, b"a", Some(b"Dkey-a".to_vec()), at);
        assert!(n.fresh(11, ROOT));
    }

    #[test]
    fn a_change_heard_after_the_lookup_read_its_clock_wins() {
        let n = kept();
        // A lookup reads the clock, then the watch tells of a change, then
        // the lookup's answer reaches the kernel: the name may be the old one.
        let at = n.now();
        n.heard(Heard::Entry(b"Dkey-b"));
        n.given(11, 10, b"b", Some(b"Dkey-b".to_vec()), at);
        assert!(!n.fresh(11, ROOT));
        // A new directory by the old name: its own key, the old one gone.
        n.given(12, 10, b"b", Some(b"Dkey-b".to_vec()), n.now());
        n.forget(11);
        assert!(n.fresh(12, ROOT));
        n.heard(Heard::Entry(b"Dkey-b"));
        assert!(!n.fresh(12, ROOT));
    }

    #[test]
    fn a_lost_watch_makes_every_name_given_before_it_stale() {
        let n = kept();
        n.heard(Heard::All);
        assert!(!n.fresh(11, ROOT) && !n.fresh(2, ROOT));
        let at = n.now();
        for (ino, parent, name) in [(2, ROOT, &b"1-working"[..]), (10, 2, b"a"), (11, 10, b"b")] {
            n.given(ino, parent, name, None, at);
        }
        assert!(n.fresh(11, ROOT));
    }

    #[test]
    fn a_cycle_is_never_fresh_and_never_hangs() {
        let n = ReaderNames::default();
        n.given(10, 11, b"a", None, 0);
        n.given(11, 10, b"b", None, 0);
        assert!(!n.fresh(10, ROOT));
    }

    #[test]
    fn forgotten_names_leave_nothing_behind() {
        let n = kept();
        n.forget(11);
        n.forget(10);
        let m = n.lock();
        assert!(!m.dirs.contains_key(&11) && !m.by_key.contains_key(&b"Dkey-a"[..]));
    }
}
