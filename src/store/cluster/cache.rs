//! Values of etcd keys kept in memory. The holder is the only writer of
//! its keys, so what it read or wrote stays the store's value for as long
//! as it surely holds the vault (the caller checks the lease); a reader
//! keeps the holder's keys while a watch brings their changes (follow.rs).
//! A point read then costs no round trip to etcd. Ranges read whole are
//! kept too, as *known* ranges: every key inside one is kept (present or
//! absent), so a lookup or scan inside it needs no round trip either (a
//! file's index entries, read once, answer every later read of the file).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::store::Value;

/// Past this many bytes of keys and values the cache starts over.
const CACHE_BYTES: usize = 32 << 20;
/// Past this many known ranges, likewise.
const RANGES: usize = 4096;

#[derive(Default)]
pub struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Store key -> its value (None: known absent).
    values: BTreeMap<Vec<u8>, Option<Value>>,
    /// Known ranges, start -> end (exclusive; None: the end of the store):
    /// every key inside one is in `values`, or absent from the store.
    known: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
    /// Moves on every write: a value read from etcd before a write to its
    /// key and offered after it is not taken (it may be the older one).
    generation: u64,
}

fn size(key: &[u8], value: &Option<Value>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + 64
}

/// Whether `[from, to)` lies inside `[start, end)` (None: unbounded).
fn inside(start: &[u8], end: Option<&[u8]>, from: &[u8], to: Option<&[u8]>) -> bool {
    start <= from
        && match (end, to) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(end), Some(to)) => to <= end,
        }
}

/// The least key greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    [key, &[0]].concat()
}

impl Inner {
    fn clear(&mut self) {
        self.values.clear();
        self.known.clear();
        self.bytes = 0;
    }

    fn insert(&mut self, key: Vec<u8>, value: Option<Value>) {
        let added = size(&key, &value);
        if self.bytes + added > CACHE_BYTES {
            self.clear();
        }
        let key_len = key.len();
        if let Some(old) = self.values.insert(key, value) {
            self.bytes = self.bytes.saturating_sub(key_len + old.as_ref().map_or(0, |v| v.len()) + 64);
        }
        self.bytes += added;
    }

    /// Forgets `key`, and every known range it is in.
    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.values.remove(key) {
            self.bytes = self.bytes.saturating_sub(size(key, &old));
        }
        let holding: Vec<Vec<u8>> = self
            .known
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .filter(|(start, end)| inside(start, end.as_deref(), key, Some(&successor(key))))
            .map(|(start, _)| start.clone())
            .collect();
        for start in holding {
            self.known.remove(&start);
        }
    }

    /// Whether `[from, to)` is inside one known range.
    fn covers(&self, from: &[u8], to: Option<&[u8]>) -> bool {
        // Ranges may overlap: any that starts at or before `from` may hold it.
        self.known
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(from)))
            .any(|(start, end)| inside(start, end.as_deref(), from, to))
    }
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Some(value) if `key` is known (None inside: known absent).
    pub fn get(&self, key: &[u8]) -> Option<Option<Value>> {
        let inner = self.lock();
        match inner.values.get(key) {
            Some(v) => Some(v.clone()),
            None if inner.covers(key, Some(&successor(key))) => Some(None),
            None => None,
        }
    }

    /// The entries of `[from, to)` (to: None, the end of the store), in key
    /// order, if the whole range is known.
    pub fn range(&self, from: &[u8], to: Option<&[u8]>) -> Option<Vec<(Vec<u8>, Value)>> {
        let inner = self.lock();
        if !inner.covers(from, to) {
            return None;
        }
        let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = inner.values.range::<[u8], _>((Bound::Included(from), hi));
        Some(entries.filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect())
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

    /// Keeps `entries` as all the keys of `[from, to)` (to: None, the end of
    /// the store), read from etcd after `generation` was read, unless a
    /// write came in between.
    pub fn fill_range(&self, generation: u64, from: &[u8], to: Option<&[u8]>, entries: &[(Vec<u8>, Value)]) {
        let range_bytes = from.len() + to.map_or(0, |t| t.len()) + 64;
        let added = range_bytes + entries.iter().map(|(k, v)| k.len() + v.len() + 64).sum::<usize>();
        let mut inner = self.lock();
        if inner.generation != generation || added > CACHE_BYTES / 4 {
            return;
        }
        // Room first: a range is known only with all its entries kept.
        if inner.bytes + added > CACHE_BYTES || inner.known.len() >= RANGES {
            inner.clear();
        }
        for (k, v) in entries {
            inner.insert(k.clone(), Some(v.clone()));
        }
        inner.bytes += range_bytes;
        inner.known.insert(from.to_vec(), to.map(|t| t.to_vec()));
    }

    /// A write of `ops` (key -> new value, None: deleted): kept if it was
    /// `applied`, otherwise the keys are forgotten, with the known ranges
    /// they are in.
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

    /// Changes another process made (key -> new value, None: deleted):
    /// each replaces what memory knows of its key; keys memory does not
    /// know stay unknown.
    pub fn changed(&self, changes: impl IntoIterator<Item = (Vec<u8>, Option<Value>)>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for (key, value) in changes {
            if inner.values.contains_key(&key) || inner.covers(&key, Some(&successor(&key))) {
                inner.insert(key, value);
            }
        }
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.clear();
    }
}

/// The end of what a page of a range read makes known: `to` if the page
/// was the whole range, else just past its last key.
pub fn known_end(to: Option<&[u8]>, more: bool, last: Option<&[u8]>) -> Option<Vec<u8>> {
    match (more, last) {
        (true, Some(last)) => Some(successor(last)),
        _ => to.map(|t| t.to_vec()),
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

    fn entries(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Value)> {
        pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), Value::from(v.as_bytes().to_vec()))).collect()
    }

    fn keys(found: Option<Vec<(Vec<u8>, Value)>>) -> Option<Vec<String>> {
        found.map(|e| e.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect())
    }

    #[test]
    fn a_range_read_whole_answers_lookups_and_scans_inside_it() {
        let c = ReadCache::default();
        c.fill_range(c.generation(), b"b", Some(b"m"), &entries(&[("c", "1"), ("k", "2")]));
        assert_eq!(seen(&c, "c"), Some(Some(b"1".to_vec())));
        assert_eq!(seen(&c, "d"), Some(None), "inside the range and not in it: absent");
        assert_eq!(seen(&c, "m"), None, "past the range: unknown");
        assert_eq!(seen(&c, "a"), None);
        assert_eq!(keys(c.range(b"c", Some(b"l"))), Some(vec!["c".into(), "k".into()]));
        assert_eq!(keys(c.range(b"d", Some(b"k"))), Some(vec![]));
        assert_eq!(keys(c.range(b"a", Some(b"l"))), None, "starts before the range");
        assert_eq!(keys(c.range(b"c", None)), None, "runs past it");
        // Writes keep it right: a new key inside, a deletion.
        c.wrote(ops(&[("e", Some("3")), ("k", None)]), true);
        assert_eq!(keys(c.range(b"b", Some(b"m"))), Some(vec!["c".into(), "e".into()]));
        // A write that may have failed makes its range unknown again.
        c.wrote(ops(&[("f", Some("4"))]), false);
        assert_eq!(keys(c.range(b"b", Some(b"m"))), None);
        assert_eq!(seen(&c, "g"), None);
        assert_eq!(seen(&c, "c"), Some(Some(b"1".to_vec())), "kept values stay");
    }

    #[test]
    fn a_range_that_raced_a_write_is_not_kept() {
        let c = ReadCache::default();
        let g = c.generation();
        c.wrote(ops(&[("x", Some("new"))]), true);
        c.fill_range(g, b"a", None, &entries(&[("b", "old")]));
        assert_eq!(keys(c.range(b"a", None)), None);
        assert_eq!(seen(&c, "b"), None);
        // Unbounded ranges, and the end a partial page makes known.
        c.fill_range(c.generation(), b"a", None, &entries(&[("b", "1")]));
        assert_eq!(keys(c.range(b"q", None)), Some(vec!["x".into()]));
        assert_eq!(known_end(Some(b"z"), true, Some(b"k")), Some(b"k\0".to_vec()));
        assert_eq!(known_end(Some(b"z"), false, Some(b"k")), Some(b"z".to_vec()));
        assert_eq!(known_end(None, false, None), None);
    }
}
