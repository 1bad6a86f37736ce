//! Per-mount bookkeeping the kernel expects of us: lookup counts (so an
//! unlinked inode is evicted only once the kernel forgets it) and the level
//! each known inode belongs to (for access checks without a store read).

use std::collections::HashMap;
use std::sync::Mutex;

struct Known {
    lookups: u64,
    level: Option<u8>,
}

#[derive(Default)]
pub struct InodeTable {
    map: Mutex<HashMap<u64, Known>>,
}

impl InodeTable {
    /// The kernel now holds one more reference to `ino`.
    pub fn remember(&self, ino: u64, level: Option<u8>) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let k = m.entry(ino).or_insert(Known { lookups: 0, level });
        k.lookups += 1;
        k.level = level;
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
