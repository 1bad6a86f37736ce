//! Changes applied but not yet handed to sled (`Durability::Grouped`).
//!
//! sled 0.34 pays per batch: every `apply_batch` seals two log buffers,
//! each written with `pwrite` + `sync_file_range` (docs/PERFORMANCE.md).
//! So under grouped durability a batch first lands here, in memory, where
//! every read of the store sees it at once; the store's committer hands
//! what has gathered to sled as *one* batch every few milliseconds. Each
//! hand-over is atomic and they happen in order, so after a crash sled
//! holds a prefix of the applied batches, each whole: the durability
//! contract's promise, with the loss bounded by the commit interval.
//!
//! Two sets: `pending` takes new writes; `draining` is the set being
//! written to sled, still visible to readers until sled has it.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A key's newest value here; `None`: deleted here.
pub(super) type Entry = Option<sled::IVec>;
pub(super) type Set = BTreeMap<Vec<u8>, Entry>;

#[derive(Default)]
pub(super) struct Overlay {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    pending: Set,
    /// Bytes of keys and values put into `pending` (overwrites count again).
    pending_bytes: usize,
    draining: Option<Arc<Set>>,
}

impl Overlay {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `ops` in order, all visible at once.
    pub(super) fn insert(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        // Values become sled's own buffers here, outside the lock.
        let ops: Vec<(Vec<u8>, Entry)> = ops.into_iter().map(|(k, v)| (k, v.map(sled::IVec::from))).collect();
        let mut st = self.write();
        for (k, v) in ops {
            st.pending_bytes += k.len() + v.as_ref().map_or(0, |v| v.len());
            st.pending.insert(k, v);
        }
    }

    /// Whether every change applied here has been handed over: nothing
    /// pending and no set on its way (a hand-over in flight is not done).
    pub(super) fn settled(&self) -> bool {
        let st = self.read();
        st.pending.is_empty() && st.draining.is_none()
    }

    /// Keys waiting in `pending`.
    pub(super) fn pending_len(&self) -> usize {
        self.read().pending.len()
    }

    /// Bytes waiting in `pending`.
    pub(super) fn pending_bytes(&self) -> usize {
        self.read().pending_bytes
    }

    /// What the overlay says of `key`: None if it does not know it,
    /// Some(None) if deleted, Some(Some(v)) if set.
    pub(super) fn lookup(&self, key: &[u8]) -> Option<Entry> {
        let st = self.read();
        if let Some(e) = st.pending.get(key) {
            return Some(e.clone());
        }
        st.draining.as_ref().and_then(|d| d.get(key).cloned())
    }

    /// Every entry with a key in `(lo, hi)`, in key order, pending over draining.
    pub(super) fn range(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Vec<(Vec<u8>, Entry)> {
        let st = self.read();
        let pending = st.pending.range::<[u8], _>((lo, hi));
        let Some(draining) = &st.draining else {
            return pending.map(|(k, v)| (k.clone(), v.clone())).collect();
        };
        let mut merged: Set =
            draining.range::<[u8], _>((lo, hi)).map(|(k, v)| (k.clone(), v.clone())).collect();
        merged.extend(pending.map(|(k, v)| (k.clone(), v.clone())));
        merged.into_iter().collect()
    }

    /// The first entry with a key in `(lo, hi)`, pending over draining:
    /// `range`'s first item without copying the rest.
    pub(super) fn first(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Option<(Vec<u8>, Entry)> {
        let st = self.read();
        let pending = st.pending.range::<[u8], _>((lo, hi)).next();
        let draining = st.draining.as_ref().and_then(|d| d.range::<[u8], _>((lo, hi)).next());
        let (k, v) = match (pending, draining) {
            (Some(p), Some(d)) if d.0 < p.0 => d,
            (Some(p), _) => p,
            (None, d) => d?,
        };
        Some((k.clone(), v.clone()))
    }

    /// Starts handing a set to sled: the one a failed hand-over left, else
    /// everything pending (which becomes `draining`). None: nothing to do.
    pub(super) fn begin_drain(&self) -> Option<Arc<Set>> {
        let mut st = self.write();
        if let Some(d) = &st.draining {
            return Some(d.clone());
        }
        if st.pending.is_empty() {
            return None;
        }
        let set = Arc::new(std::mem::take(&mut st.pending));
        st.pending_bytes = 0;
        st.draining = Some(set.clone());
        Some(set)
    }

    /// sled holds the draining set now: readers find it there.
    pub(super) fn end_drain(&self) {
        self.write().draining = None;
    }
}

/// Merges overlay entries (sorted, newer) with a backend's iterator over
/// the same range (sorted): overlay values win, overlay deletions hide the
/// backend's.
pub(super) struct Merged<I: Iterator> {
    overlay: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Entry)>>,
    backend: std::iter::Peekable<I>,
}

impl<I, K, E> Merged<I>
where
    I: Iterator<Item = Result<(K, sled::IVec), E>>,
    K: AsRef<[u8]>,
{
    pub(super) fn new(overlay: Vec<(Vec<u8>, Entry)>, backend: I) -> Self {
        Merged { overlay: overlay.into_iter().peekable(), backend: backend.peekable() }
    }
}

impl<I, K, E> Iterator for Merged<I>
where
    I: Iterator<Item = Result<(K, sled::IVec), E>>,
    K: AsRef<[u8]>,
{
    type Item = Result<(Vec<u8>, sled::IVec), E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            use std::cmp::Ordering::{Equal, Greater, Less};
            let order = match (self.overlay.peek(), self.backend.peek()) {
                (None, None) => return None,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                // An error from the backend comes out in its turn.
                (Some(_), Some(Err(_))) => Greater,
                (Some((ok, _)), Some(Ok((bk, _)))) => ok.as_slice().cmp(bk.as_ref()),
            };
            if order == Equal {
                // The overlay's entry replaces the backend's.
                self.backend.next();
            }
            if order != Greater {
                let (k, v) = self.overlay.next()?;
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            return Some(self.backend.next()?.map(|(k, v)| (k.as_ref().to_vec(), v)));
        }
    }
}

impl Overlay {
    /// The entry with the smallest key in `[from, to)` of the overlay over a
    /// backend: `backend(lo)` gives the backend's first entry in `[lo, to)`.
    /// A scan's first item, without gathering the overlay's whole range (a
    /// file being written has many entries there).
    pub(super) fn first_over<E>(
        &self,
        from: &[u8],
        to: &[u8],
        mut backend: impl FnMut(&[u8]) -> Result<Option<(Vec<u8>, sled::IVec)>, E>,
    ) -> Result<Option<(Vec<u8>, sled::IVec)>, E> {
        let mut lo = from.to_vec();
        loop {
            let over = self.first(Bound::Included(&lo), Bound::Excluded(to));
            let (key, entry) = match (over, backend(&lo)?) {
                (None, None) => return Ok(None),
                (Some(o), None) => o,
                (None, Some(b)) => return Ok(Some(b)),
                (Some(o), Some(b)) if b.0 < o.0 => return Ok(Some(b)),
                (Some(o), Some(_)) => o,
            };
            match entry {
                Some(v) => return Ok(Some((key, v))),
                // Deleted in the overlay: look past it.
                None => {
                    lo = key;
                    lo.push(0);
                }
            }
        }
    }

    /// The greatest live key in `(lo, hi)`: the overlay's greatest live key
    /// or the backend's greatest key the overlay does not delete, whichever
    /// is greater. `backend` gives the backend's keys in `(lo, hi)`, greatest first.
    pub(super) fn last_key_over<E>(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        backend: impl Iterator<Item = Result<Vec<u8>, E>>,
    ) -> Result<Option<Vec<u8>>, E> {
        let over = self.range(lo, hi);
        let deleted: HashSet<&[u8]> = over.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| &k[..]).collect();
        let from_overlay = over.iter().rev().find(|(_, v)| v.is_some()).map(|(k, _)| k.clone());
        let mut from_backend = None;
        for k in backend {
            let k = k?;
            if !deleted.contains(&k[..]) {
                from_backend = Some(k);
                break;
            }
        }
        Ok(from_overlay.max(from_backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_on_its_way_is_not_settled() {
        let o = Overlay::default();
        assert!(o.settled());
        o.insert(vec![(b"k".to_vec(), Some(b"v".to_vec()))]);
        assert!(!o.settled());
        let set = o.begin_drain().expect("a set to hand over");
        assert_eq!(o.pending_len(), 0);
        // Nothing pending, but the hand-over is not done: a close must wait.
        assert!(!o.settled());
        assert_eq!(o.lookup(b"k"), Some(Some(sled::IVec::from(b"v".to_vec()))));
        assert!(Arc::ptr_eq(&set, &o.begin_drain().unwrap()), "a failed hand-over is tried again");
        o.end_drain();
        assert!(o.settled());
    }
}
