//! Grouped durability for a cluster vault (docs/CLUSTER.md, "Durability").
//!
//! Each etcd transaction and each object PUT is a network round trip, so
//! under `Durability::Grouped` a batch first lands in an overlay (every read
//! merges it) and its records in one object built in memory. A commit, every
//! commit interval and at every `flush`, stores the objects built so far and
//! then writes the gathered batches as one transaction guarded by the hold.
//! Transactions land whole and in order, so etcd always holds a prefix of
//! the applied batches, each whole, and never a batch whose records are
//! not stored: the durability contract of a store directory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, mpsc};
use std::time::Duration;

use super::super::overlay::Overlay;
use super::super::segments::{Location, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use super::Shared;
use crate::store::{Error, Result};

/// An object takes appends up to about this size: large enough that a
/// sequential write is few PUTs, small enough that a commit's PUT is short.
pub(super) const OBJECT_BYTES: usize = 8 << 20;
/// Past this many bytes in the overlay, or of records not yet stored, a
/// writer commits itself before adding more (back-pressure: memory stays
/// bounded, and with etcd or the object store away writes fail with EIO).
pub(super) const PENDING_BYTES: usize = 16 << 20;
/// Keys in one commit at most, well inside the `--max-txn-ops` that
/// docs/CLUSTER.md asks etcd for (100,000).
pub(super) const PENDING_KEYS: usize = 20_000;
pub(super) const UNSTORED_BYTES: usize = 64 << 20;

#[derive(Default)]
pub(super) struct Group {
    /// Batches applied and not yet in etcd.
    pub overlay: Overlay,
    /// The object records are appended to: its number and bytes (header first).
    open: Mutex<Option<(u64, Vec<u8>)>>,
    /// Objects closed for appends and not yet stored, readable from here.
    sealed: RwLock<BTreeMap<u64, Arc<Vec<u8>>>>,
    /// One commit at a time, so that transactions land in order.
    committing: Mutex<()>,
    /// 0: every batch is a transaction of its own; else the commit interval in ms.
    pub commit_ms: AtomicU64,
    /// Commits that wrote a transaction (for tests and status).
    pub commits: AtomicU64,
}

impl Group {
    pub fn grouped(&self) -> bool {
        self.commit_ms.load(Ordering::Relaxed) != 0
    }

    fn open(&self) -> MutexGuard<'_, Option<(u64, Vec<u8>)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn committing(&self) -> MutexGuard<'_, ()> {
        self.committing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `more` bytes of records should wait for a commit first: the
    /// open object is full, or too much is held in memory.
    pub fn must_commit_before(&self, more: usize) -> bool {
        let open = self.open().as_ref().map_or(0, |(_, body)| body.len());
        let sealed: usize = self.sealed.read().unwrap_or_else(|p| p.into_inner()).values().map(|b| b.len()).sum();
        (open > SEGMENT_HEADER_LEN as usize && open + more > OBJECT_BYTES)
            || open + sealed + more > UNSTORED_BYTES
            || self.overlay.pending_bytes() >= PENDING_BYTES
            || self.overlay.pending_len() >= PENDING_KEYS
    }

    /// Appends `bytes` to the open object, opening one numbered by `number`
    /// if there is none.
    pub fn append(&self, bytes: &[u8], number: impl FnOnce() -> Result<u64>) -> Result<Location> {
        let mut open = self.open();
        if open.is_none() {
            let id = number()?;
            let mut body = Vec::with_capacity(OBJECT_BYTES.min(SEGMENT_HEADER_LEN as usize + bytes.len() * 8));
            body.extend_from_slice(SEGMENT_MAGIC);
            body.extend_from_slice(&id.to_be_bytes());
            *open = Some((id, body));
        }
        let (id, body) = open.as_mut().expect("an open object");
        let offset = body.len() as u64;
        body.extend_from_slice(bytes);
        Ok(Location { segment: *id, offset })
    }

    /// Closes the open object for appends; it stays readable until stored.
    /// Called after the batches to commit were taken: every record they
    /// point at is then in a sealed object or already stored.
    pub fn seal(&self) {
        let mut open = self.open();
        if let Some((id, body)) = open.take() {
            // Inserted while `open` is still locked: a reader never finds
            // the object in neither place.
            self.sealed.write().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::new(body));
        }
    }

    /// The sealed objects, oldest first.
    pub fn sealed(&self) -> Vec<(u64, Arc<Vec<u8>>)> {
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        sealed.iter().map(|(id, body)| (*id, body.clone())).collect()
    }

    /// Object `id` is stored: readers find it in the bucket now.
    pub fn stored(&self, id: u64) {
        self.sealed.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Reads record bytes at `at` if the object is still in memory.
    pub fn read(&self, at: Location, buf: &mut [u8]) -> Option<Result<()>> {
        let mut copy = |body: &[u8]| {
            let start = usize::try_from(at.offset).ok();
            match start.and_then(|s| body.get(s..s.checked_add(buf.len())?)) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(Error::Corrupt(format!(
                    "object {} is {} bytes: no {} bytes at offset {}",
                    at.segment,
                    body.len(),
                    buf.len(),
                    at.offset
                ))),
            }
        };
        if let Some((id, body)) = self.open().as_ref()
            && *id == at.segment
        {
            return Some(copy(body));
        }
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        sealed.get(&at.segment).map(|body| copy(body))
    }
}

/// Commits every interval until told to stop.
pub(super) struct Committer {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    pub fn start(shared: Arc<Shared>, every: Duration) -> Result<Committer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cluster-commit".into())
            .spawn(move || {
                // The next commit or fsync reports a failure to whoever waits
                // for it; here there is no one, so the log says it, once.
                let mut last_error = String::new();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match shared.commit() {
                        Ok(()) => last_error.clear(),
                        Err(e) => {
                            let e = e.to_string();
                            if e != last_error {
                                tracing::error!("cluster commit failed (tried again every interval): {e}");
                                last_error = e;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the cluster store's committer: {e}")))?;
        Ok(Committer { stop, thread })
    }

    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stay_readable_while_open_sealed_and_until_stored() {
        let g = Group::default();
        let a = g.append(b"first", || Ok(7)).unwrap();
        let b = g.append(b"second", || panic!("one object at a time")).unwrap();
        assert_eq!((a.segment, a.offset, b.offset), (7, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + 5));
        let read = |at: Location, n: usize| {
            let mut buf = vec![0; n];
            g.read(at, &mut buf).map(|r| r.map(|()| buf))
        };
        assert_eq!(read(b, 6).unwrap().unwrap(), b"second");
        g.seal();
        assert_eq!(read(a, 5).unwrap().unwrap(), b"first");
        let sealed = g.sealed();
        assert_eq!(sealed.len(), 1);
        assert_eq!(&sealed[0].1[..8], SEGMENT_MAGIC);
        assert_eq!(&sealed[0].1[8..16], &7u64.to_be_bytes());
        // Past the end is an error, never other bytes.
        assert!(matches!(read(b, 7), Some(Err(Error::Corrupt(_)))));
        let c = g.append(b"third", || Ok(8)).unwrap();
        assert_eq!(c.segment, 8);
        g.stored(7);
        assert!(read(a, 5).is_none(), "a stored object is read from the bucket");
        assert_eq!(read(c, 5).unwrap().unwrap(), b"third");
    }

    #[test]
    fn a_full_object_or_too_much_in_memory_asks_for_a_commit() {
        let g = Group::default();
        assert!(!g.must_commit_before(OBJECT_BYTES), "an empty object takes one record of any size");
        g.append(&vec![0; OBJECT_BYTES / 2], || Ok(1)).unwrap();
        assert!(!g.must_commit_before(1000));
        assert!(g.must_commit_before(OBJECT_BYTES / 2));
        for id in 2..1 + (UNSTORED_BYTES / (OBJECT_BYTES / 2)) as u64 {
            assert!(!g.must_commit_before(1000));
            g.seal();
            g.append(&vec![0; OBJECT_BYTES / 2], || Ok(id)).unwrap();
        }
        assert!(g.must_commit_before(1));
        for (id, _) in g.sealed() {
            g.stored(id);
        }
        assert!(!g.must_commit_before(1000));
    }
}
