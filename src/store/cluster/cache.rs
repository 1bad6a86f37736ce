//! Values of etcd keys kept in memory by the process that holds the vault.
//! Only the holder writes, so what it read or wrote stays the store's value
//! for as long as it surely holds the vault (the caller checks the lease);
//! a point read then costs no round trip to etcd.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::Value;

/// Past this many bytes of keys and values the cache starts over.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
pub struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Store key -> its value (None: known absent).
    values: HashMap<Vec<u8>, Option<Value>>,
    bytes: usize,
    /// Moves on every write: a value read from etcd before a write to its
    /// key and offered after it is not taken (it may be the older one).
    generation: u64,
}

fn size(key: &[u8], value: &Option<Value>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + 64
}

impl Inner {
    fn insert(&mut self, key: Vec<u8>, value: Option<Value>) {
        let added = size(&key, &value);
        if self.bytes + added > CACHE_BYTES {
            self.values.clear();
            self.bytes = 0;
        }
        let key_len = key.len();
        if let Some(old) = self.values.insert(key, value) {
            self.bytes = self.bytes.saturating_sub(key_len + old.as_ref().map_or(0, |v| v.len()) + 64);
        }
        self.bytes += added;
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.values.remove(key) {
            self.bytes = self.bytes.saturating_sub(size(key, &old));
        }
    }
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Some(value) if `key` is known (None inside: known absent).
    pub fn get(&self, key: &[u8]) -> Option<Option<Value>> {
        self.lock().values.get(key).cloned()
    }

    /// To be read before fetching a value that `fill` is then offered.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `value`, fetched from etcd for `key` after `generation` was
    /// read, unless a write came in between.
    pub fn fill(&self, generation: u64, key: &[u8], value: Option<Value>) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.insert(key.to_vec(), value);
        }
    }

    /// A write of `ops` (key -> new value, None: deleted): kept if it was
    /// `applied`, otherwise the keys are forgotten.
    pub fn wrote(&self, ops: impl IntoIterator<Item = (Vec<u8>, Option<Value>)>, applied: bool) {
        let mut inner = self.lock();
        inner.generation += 1;
        for (key, value) in ops {
            if applied {
                inner.insert(key, value);
            } else {
                inner.remove(&key);
            }
        }
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.values.clear();
        inner.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<Value> {
        Some(Value::from(s.as_bytes().to_vec()))
    }

    fn ops(pairs: &[(&str, Option<&str>)]) -> Vec<(Vec<u8>, Option<Value>)> {
        pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| Value::from(v.as_bytes().to_vec())))).collect()
    }

    fn seen(c: &ReadCache, key: &str) -> Option<Option<Vec<u8>>> {
        c.get(key.as_bytes()).map(|v| v.map(|v| v.to_vec()))
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let c = ReadCache::default();
        let g = c.generation();
        c.wrote(ops(&[("k", Some("new"))]), true);
        c.fill(g, b"k", v("old"));
        assert_eq!(seen(&c, "k"), Some(Some(b"new".to_vec())));
        c.fill(c.generation(), b"absent", None);
        assert_eq!(seen(&c, "absent"), Some(None));
    }

    #[test]
    fn a_write_that_may_have_failed_is_forgotten() {
        let c = ReadCache::default();
        c.fill(c.generation(), b"k", v("old"));
        c.wrote(ops(&[("k", Some("maybe")), ("gone", None)]), false);
        assert_eq!(seen(&c, "k"), None);
        c.wrote(ops(&[("k", None)]), true);
        assert_eq!(seen(&c, "k"), Some(None));
    }

    #[test]
    fn memory_stays_bounded() {
        let c = ReadCache::default();
        let big = "x".repeat(1 << 20);
        for i in 0..100 {
            c.wrote(ops(&[(&format!("k{i}"), Some(big.as_str()))]), true);
            c.wrote(ops(&[(&format!("k{i}"), Some(big.as_str()))]), true);
        }
        let inner = c.lock();
        assert!(inner.bytes <= CACHE_BYTES, "{} bytes", inner.bytes);
        let counted: usize = inner.values.iter().map(|(k, v)| size(k, v)).sum();
        assert_eq!(counted, inner.bytes);
    }
}
