//! Per-mount bookkeeping the kernel expects of us: lookup counts (so an
//! unlinked inode is evicted only once the kernel forgets it), the level
//! each known inode belongs to (for access checks without a store read) and
//! the name it was reached by (for audit paths).
//!
//! The kernel keeps every inode it has looked up until memory pressure makes
//! it forget them, so on a large vault this table would grow with the vault.
//! It is bounded instead: past `limit` entries, `cold_names` picks files not
//! used since the last sweep (a clock) for the session to invalidate in the
//! kernel, which then forgets them (docs/PERFORMANCE.md, "Memory").

use std::collections::HashMap;
use std::sync::Mutex;

/// `Known::level` for an inode without a level (the root).
const NO_LEVEL: u8 = u8::MAX;

struct Known {
    lookups: u64,
    /// The parent the kernel last reached it by; its name below.
    parent: u64,
    name: Box<[u8]>,
    level: u8,
    dir: bool,
    /// Used since the last sweep of `cold_names`.
    used: bool,
}

pub struct InodeTable {
    map: Mutex<HashMap<u64, Known>>,
    limit: usize,
}

impl InodeTable {
    pub fn with_limit(limit: usize) -> Self {
        InodeTable { map: Mutex::default(), limit: limit.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Known>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kernel now holds one more reference to `ino`, reached as
    /// `parent/name`.
    pub fn remember(&self, ino: u64, level: Option<u8>, dir: bool, parent: u64, name: &[u8]) {
        let mut m = self.lock();
        let level = level.unwrap_or(NO_LEVEL);
        let k = m.entry(ino).or_insert_with(|| Known {
            lookups: 0,
            parent,
            name: name.into(),
            level,
            dir,
            used: true,
        });
        k.lookups += 1;
        k.level = level;
        k.used = true;
        if k.parent != parent || *k.name != *name {
            k.parent = parent;
            k.name = name.into();
        }
    }

    /// Notes that `ino` is now reachable as `parent/name` (a rename).
    pub fn name(&self, ino: u64, parent: u64, name: &[u8]) {
        if let Some(k) = self.lock().get_mut(&ino) {
            k.parent = parent;
            k.name = name.into();
        }
    }

    /// The path of `ino` from the root, as far as names are known; an
    /// unknown stretch shows as `<ino N>`.
    pub fn path(&self, ino: u64, root: u64) -> Vec<u8> {
        let m = self.lock();
        // Borrowed from the table while it is locked: every audited request
        // names its path, so no copy per component.
        let mut parts: Vec<&[u8]> = Vec::new();
        let unknown;
        let mut at = ino;
        // Bounded: names can be stale, and stale names can form a loop.
        for _ in 0..256 {
            if at == root {
                break;
            }
            match m.get(&at).map(|k| (k.parent, &*k.name)) {
                Some((parent, name)) => {
                    parts.push(name);
                    at = parent;
                }
                None => {
                    unknown = format!("<ino {at}>");
                    parts.push(unknown.as_bytes());
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for p in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }

    /// Drops `n` references; true when the kernel holds none any more.
    pub fn forget(&self, ino: u64, n: u64) -> bool {
        let mut m = self.lock();
        match m.get_mut(&ino) {
            Some(k) if k.lookups > n => {
                k.lookups -= n;
                false
            }
            Some(_) => {
                m.remove(&ino);
                true
            }
            None => false,
        }
    }

    /// The level of `ino` (None: not known here); counts as a use.
    pub fn level(&self, ino: u64) -> Option<Option<u8>> {
        self.lock().get_mut(&ino).map(|k| {
            k.used = true;
            (k.level != NO_LEVEL).then_some(k.level)
        })
    }

    /// Past the limit: the names (parent, name) of files not used since the
    /// last sweep, enough to bring the table back to three quarters of its
    /// limit once the kernel forgets them. Directories are never picked
    /// (invalidating one would drop its whole subtree from the kernel's
    /// cache, and detach anything mounted below it).
    pub fn cold_names(&self) -> Vec<(u64, Box<[u8]>)> {
        let mut m = self.lock();
        if m.len() <= self.limit {
            return Vec::new();
        }
        let want = m.len() - self.limit * 3 / 4;
        let mut out = Vec::with_capacity(want);
        for k in m.values_mut() {
            if k.dir {
                continue;
            }
            if k.used {
                k.used = false;
            } else if out.len() < want {
                out.push((k.parent, k.name.clone()));
            }
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Every inode the kernel still references (evicted at unmount).
    pub fn drain(&self) -> Vec<u64> {
        self.lock().drain().map(|(ino, _)| ino).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_count_down_to_the_last_forget() {
        let t = InodeTable::with_limit(1000);
        t.remember(5, Some(1), false, 1, b"a");
        t.remember(5, Some(1), false, 1, b"a");
        assert!(!t.forget(5, 1));
        assert_eq!(t.level(5), Some(Some(1)));
        assert!(t.forget(5, 1));
        assert_eq!(t.level(5), None);
        assert!(!t.forget(5, 1), "an unknown inode is not evicted twice");
    }

    #[test]
    fn paths_follow_parents_and_renames() {
        let t = InodeTable::with_limit(1000);
        t.remember(2, Some(1), true, 1, b"1-working");
        t.remember(3, Some(1), false, 2, b"f");
        assert_eq!(t.path(3, 1), b"/1-working/f");
        t.name(3, 2, b"g");
        assert_eq!(t.path(3, 1), b"/1-working/g");
        assert_eq!(t.path(9, 1), b"/<ino 9>");
        assert_eq!(t.level(1), None);
    }

    #[test]
    fn cold_files_are_picked_past_the_limit_and_used_ones_spared() {
        let t = InodeTable::with_limit(8);
        t.remember(2, Some(1), true, 1, b"d");
        for i in 10..20 {
            t.remember(i, Some(1), false, 2, format!("f{i}").as_bytes());
        }
        assert_eq!(t.len(), 11);
        // The first sweep only clears the marks: everything was just used.
        assert!(t.cold_names().is_empty());
        t.level(10);
        t.level(11);
        let cold = t.cold_names();
        // 11 known, back to 6: five names, never the directory or a used file.
        assert_eq!(cold.len(), 5);
        for (parent, name) in &cold {
            assert_eq!(*parent, 2);
            assert!(name.as_ref() != b"f10" && name.as_ref() != b"f11" && name.as_ref() != b"d");
        }
        // Within the limit, nothing is picked.
        for (i, _) in (12..20).zip(0..5) {
            t.forget(i, 1);
        }
        assert!(t.cold_names().is_empty());
    }
}
