//! Per-mount bookkeeping the kernel expects of us: lookup counts (so an
//! unlinked inode is evicted only once the kernel forgets it) and the level
//! each known inode belongs to (for access checks without a store read).

use std::collections::HashMap;
use std::sync::Mutex;

struct Known {
    lookups: u64,
    level: Option<u8>,
    /// The parent and name the kernel last reached it by (for audit paths).
    name: Option<(u64, Vec<u8>)>,
}

#[derive(Default)]
pub struct InodeTable {
    map: Mutex<HashMap<u64, Known>>,
}

impl InodeTable {
    /// The kernel now holds one more reference to `ino`.
    pub fn remember(&self, ino: u64, level: Option<u8>) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let k = m.entry(ino).or_insert(Known { lookups: 0, level, name: None });
        k.lookups += 1;
        k.level = level;
    }

    /// Notes that `ino` is reachable as `parent/name` (kept while known).
    pub fn name(&self, ino: u64, parent: u64, name: &[u8]) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = m.get_mut(&ino) {
            k.name = Some((parent, name.to_vec()));
        }
    }

    /// The path of `ino` from the root, as far as names are known; an
    /// unknown stretch shows as `<ino N>`.
    pub fn path(&self, ino: u64, root: u64) -> Vec<u8> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
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
            match m.get(&at).and_then(|k| k.name.as_ref()) {
                Some((parent, name)) => {
                    parts.push(name);
                    at = *parent;
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
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
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

    pub fn level(&self, ino: u64) -> Option<Option<u8>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&ino).map(|k| k.level)
    }

    /// Every inode the kernel still references (evicted at unmount).
    pub fn drain(&self) -> Vec<u64> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(ino, _)| ino).collect()
    }
}
