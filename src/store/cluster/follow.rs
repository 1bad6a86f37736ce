//! A read-only mount's memory of the holder's keys, kept right by a watch
//! of the vault: etcd delivers every committed change in revision order,
//! so a value read once answers later lookups until the watch brings its
//! change. An open or a lookup first waits until the watch has delivered
//! every change committed before it began (`Shared::catch_up`), which keeps
//! close-to-open across hosts; between those, `stat` and reads of an open
//! file answer from memory.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cache::ReadCache;
use super::etcd::News;
use crate::format::keys;
use crate::store::{EntriesHeard, Heard, Value};

#[derive(Default)]
pub struct Follower {
    /// Every change of the vault up to this revision is in the cache (0:
    /// the watch is down, and nothing of the holder's is kept).
    seen: Mutex<i64>,
    moved: Condvar,
    /// Memory answers only once `seen` reaches this: the target of a
    /// catch-up that stopped waiting for the watch.
    behind: AtomicI64,
    /// Told of every directory entry the watch brings a change of, before
    /// a catch-up can return past it.
    entries: OnceLock<EntriesHeard>,
    /// Changes of the vault's keys up to this revision were made by this
    /// process, which kept them in memory as it made them: the watch
    /// bringing them later must not put back an older one of its own
    /// (a mount that shares writing, while it holds the vault).
    own_through: AtomicI64,
    /// Told of every change of a key outside the store's keys (the full
    /// etcd key, and whether it is there now): the hold's (handover.rs).
    meta: OnceLock<MetaHeard>,
}

/// Who hears of changes of keys outside the store's: (etcd key, present).
pub type MetaHeard = Box<dyn Fn(&[u8], bool) + Send + Sync>;

impl Follower {
    fn seen(&self) -> std::sync::MutexGuard<'_, i64> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what the watch of the vault's keys says. `keys`: the etcd
    /// prefix of the holder's store keys (`vaultfs/VAULT/k/`); `own`: the
    /// kinds of store key that are this reader's own (kept by its writes,
    /// never by the holder's changes); `shared`: kinds every host writes.
    pub fn hear(&self, news: News, cache: &ReadCache, keys: &[u8], own: &[u8], shared: &[u8]) {
        match news {
            News::From(revision) => {
                // Changes while the watch was down were not heard.
                cache.clear();
                self.tell(Heard::All);
                *self.seen() = revision;
            }
            News::Changes(revision, changes) => {
                if let Some(told) = self.meta.get() {
                    for (key, value, _) in changes.iter().filter(|(key, ..)| !key.starts_with(keys)) {
                        told(key, value.is_some());
                    }
                }
                let own_through = self.own_through.load(Ordering::SeqCst);
                let holders: Vec<_> = changes
                    .into_iter()
                    .filter_map(|(key, value, at)| {
                        let k = key.strip_prefix(keys)?;
                        let kind = *k.first()?;
                        let kept_when_made = at <= own_through && !shared.contains(&kind);
                        (!own.contains(&kind) && !kept_when_made).then(|| (k.to_vec(), value.map(Value::from)))
                    })
                    .collect();
                let entries: Vec<Vec<u8>> =
                    holders.iter().filter(|(k, _)| k.first() == Some(&keys::DIRENT)).map(|(k, _)| k.clone()).collect();
                // Memory first, then who is told: whatever reads after
                // hearing of a change reads the changed value.
                cache.changed(holders);
                for k in &entries {
                    self.tell(Heard::Entry(k));
                }
                let mut seen = self.seen();
                *seen = (*seen).max(revision);
            }
            News::Lost => {
                *self.seen() = 0;
                cache.clear();
                self.tell(Heard::All);
            }
        }
        self.moved.notify_all();
    }

    /// Who is told of changes of directory entries from now on (one only).
    pub fn on_entries(&self, told: EntriesHeard) {
        let _ = self.entries.set(told);
    }

    /// This process wrote the vault's keys at `revision` and keeps what it
    /// wrote (its changes up to it are not to be taken from the watch).
    pub fn made(&self, revision: i64) {
        self.own_through.fetch_max(revision, Ordering::SeqCst);
    }

    /// Who is told of changes of keys outside the store's (one only).
    pub fn on_meta(&self, told: MetaHeard) {
        let _ = self.meta.set(told);
    }

    fn tell(&self, heard: Heard<'_>) {
        if let Some(told) = self.entries.get() {
            told(heard);
        }
    }

    /// Whether memory may answer for the holder's keys now.
    pub fn answers(&self) -> bool {
        let seen = *self.seen();
        seen > 0 && seen >= self.behind.load(Ordering::SeqCst)
    }

    /// Whether a value etcd returned at revision `read_at` may be kept:
    /// every change up to it has been heard, so none that arrives later
    /// is older than it.
    pub fn may_keep(&self, read_at: i64) -> bool {
        *self.seen() >= read_at
    }

    /// Whether the watch is up.
    pub fn watching(&self) -> bool {
        *self.seen() > 0
    }

    /// Waits up to `within` until every change up to `revision` has been
    /// heard; whether it has (false too if the watch is down).
    pub fn wait_for(&self, revision: i64, within: Duration) -> bool {
        let until = Instant::now() + within;
        let mut seen = self.seen();
        loop {
            if *seen >= revision {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if *seen == 0 || left.is_zero() {
                return false;
            }
            seen = self.moved.wait_timeout(seen, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Memory stops answering until the watch has heard `revision`.
    pub fn fall_behind(&self, revision: i64) {
        self.behind.fetch_max(revision, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> (Vec<u8>, Option<Vec<u8>>, i64) {
        (format!("v/k/{key}").into_bytes(), Some(value.as_bytes().to_vec()), 12)
    }

    fn seen(c: &ReadCache, key: &str) -> Option<Option<Vec<u8>>> {
        c.get(key.as_bytes()).map(|v| v.map(|v| v.to_vec()))
    }

    #[test]
    fn changes_heard_replace_what_was_kept_and_a_lost_watch_forgets_it_all() {
        let (f, c) = (Follower::default(), ReadCache::default());
        assert!(!f.answers() && !f.may_keep(1), "nothing before the watch is up");
        f.hear(News::From(10), &c, b"v/k/", b"A", b"L");
        assert!(f.answers() && f.may_keep(10) && !f.may_keep(11));
        c.fill(c.generation(), b"Ix", Some(Value::from(b"old".to_vec())));
        c.fill(c.generation(), b"Agone", None);
        // A change of a kept key replaces it; the reader's own kinds and
        // keys outside the holder's are not taken from the watch.
        let (from_holder, audit_a) = (put("Ix", "new"), put("Agone", "holder's"));
        f.hear(News::Changes(12, vec![from_holder, audit_a, put("Iy", "unread"), put("../x", "y")]), &c, b"v/k/", b"A", b"L");
        assert_eq!(seen(&c, "Ix"), Some(Some(b"new".to_vec())));
        assert_eq!(seen(&c, "Agone"), Some(None));
        assert_eq!(seen(&c, "Iy"), None, "a key never read is not kept");
        assert!(f.may_keep(12) && f.wait_for(12, Duration::ZERO));
        // A catch-up that stopped waiting: memory answers again once heard.
        f.fall_behind(14);
        assert!(!f.answers());
        f.hear(News::Changes(14, vec![(b"v/k/Ix".to_vec(), None, 14)]), &c, b"v/k/", b"A", b"L");
        assert!(f.answers());
        assert_eq!(seen(&c, "Ix"), Some(None));
        f.hear(News::Lost, &c, b"v/k/", b"A", b"L");
        assert!(!f.answers() && !f.wait_for(1, Duration::from_secs(5)), "a lost watch waits for nothing");
        assert_eq!(seen(&c, "Agone"), None);
    }

    #[test]
    fn a_waiter_wakes_when_the_change_it_waits_for_is_heard() {
        let (f, c) = (std::sync::Arc::new(Follower::default()), ReadCache::default());
        f.hear(News::From(1), &c, b"v/k/", b"", b"");
        let waiter = {
            let f = f.clone();
            std::thread::spawn(move || f.wait_for(5, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        f.hear(News::Changes(5, Vec::new()), &c, b"v/k/", b"", b"");
        assert!(waiter.join().unwrap());
        assert!(!f.wait_for(6, Duration::from_millis(10)));
    }
}
