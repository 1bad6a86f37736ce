//! The only sled user. Sees opaque keys and values, never keys-as-in-crypto or
//! plaintext. Every vault operation lands as one atomic `Batch`; `flush` makes
//! everything applied before it durable.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// A storage error, with sled's message; the vault maps it to EIO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("store is corrupted: {0}")]
    Corrupt(String),
    #[error("store is in use or unusable: {0}")]
    Unusable(String),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => Error::Corrupt(e.to_string()),
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                Error::Unusable("another process has this store open".into())
            }
            // sled reports a held file lock as a plain I/O error with this text.
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                Error::Unusable("another process has this store open (is it mounted?)".into())
            }
            sled::Error::Io(_) => Error::Io(e.to_string()),
            other => Error::Unusable(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A value read from the store (zero-copy view of sled's buffer).
#[derive(Clone)]
pub struct Value(sled::IVec);

impl std::ops::Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A set of puts and deletes applied atomically.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push((key.into(), Some(value)));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// The store: one sled database, its default tree.
pub struct Store {
    db: sled::Db,
    watch: Arc<Watch>,
    watchdog: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// Progress of writes, for the watchdog.
#[derive(Default)]
struct Watch {
    in_flight: AtomicUsize,
    completed: AtomicU64,
}

/// Marks one write (batch or flush) in flight while alive.
struct InFlight<'a>(&'a Watch);

impl<'a> InFlight<'a> {
    fn new(w: &'a Watch) -> Self {
        w.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(w)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often the watchdog looks, and how long writes may make no progress
/// before it acts.
const WATCH_EVERY: Duration = Duration::from_millis(250);
const STALL_AFTER: Duration = Duration::from_secs(2);

/// sled 0.34 can deadlock: its segment accountant waits, under its lock, for a
/// log-file truncation that sits in sled's thread-pool queue behind I/O tasks
/// that wait for that same lock; the pool only grows when more than seven
/// tasks are queued (fixed upstream after 0.34, sled PR #1269). We have seen
/// it hang a mount under a mixed load. When writes are in flight but none has
/// completed for STALL_AFTER, the watchdog queues a few cheap flush tasks
/// (sled's public `flush_async`, polled once), which makes the pool start a
/// new thread; it takes the oldest queued task first, so the truncation runs
/// and the accountant is released.
fn watchdog(db: sled::Db, watch: Arc<Watch>, stop: mpsc::Receiver<()>) {
    let mut last = watch.completed.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WATCH_EVERY) {
        let done = watch.completed.load(Ordering::SeqCst);
        if done != last || watch.in_flight.load(Ordering::SeqCst) == 0 {
            last = done;
            since = Instant::now();
            continue;
        }
        if since.elapsed() >= STALL_AFTER {
            tracing::warn!("store writes stalled for {:?}: waking sled's thread pool", since.elapsed());
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..8 {
                let mut flush = Box::pin(db.flush_async());
                let _ = flush.as_mut().poll(&mut cx);
            }
            since = Instant::now();
        }
    }
}

/// Subdirectory of the vault directory holding sled's files.
const DB_DIR: &str = "db";

impl Store {
    /// Opens the store under `dir` (created if absent when `create`).
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        let path = dir.join(DB_DIR);
        if !create && !path.is_dir() {
            return Err(Error::Unusable(format!("{} does not exist", path.display())));
        }
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(256 * 1024 * 1024)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .segment_size(existing_segment_size(&path).unwrap_or(SEGMENT_SIZE));
        // A process that just closed the store (or exited) may hold sled's
        // file lock for a moment longer: retry briefly before reporting it.
        let mut tries = 0;
        loop {
            match config.open().map_err(Error::from) {
                Err(Error::Unusable(_)) if tries < LOCK_RETRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => {
                    let db = r?;
                    let watch = Arc::new(Watch::default());
                    let (tx, rx) = mpsc::channel();
                    let (d, w) = (db.clone(), watch.clone());
                    let handle = std::thread::Builder::new()
                        .name("store-watchdog".into())
                        .spawn(move || watchdog(d, w, rx))
                        .map_err(|e| Error::Io(format!("starting the store watchdog: {e}")))?;
                    return Ok(Store { db, watch, watchdog: Some((tx, handle)) });
                }
            }
        }
    }

    /// Whether `dir` already holds a store.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_DIR).exists()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.db.get(key)?.map(Value))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.db.contains_key(key)?)
    }

    /// Writes one key outside a batch (used only for the inode counter and the
    /// header, whose single-key writes are atomic on their own).
    pub fn put(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.db.insert(key, value)?;
        Ok(())
    }

    /// Applies all operations of `batch` atomically.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let _in_flight = InFlight::new(&self.watch);
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.db.scan_prefix(prefix).map(|r| r.map(|(k, v)| (k.to_vec(), Value(v))).map_err(Error::from))
    }

    /// The greatest key starting with `prefix`, if any.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.scan_prefix(prefix).next_back().transpose()?.map(|(k, _)| k.to_vec()))
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.db
            .range(from.to_vec()..to.to_vec())
            .map(|r| r.map(|(k, v)| (k.to_vec(), Value(v))).map_err(Error::from))
    }

    /// Keys only, `from <= key < to` (no value copies).
    pub fn range_keys(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.range(from, to).map(|r| r.map(|(k, _)| k))
    }

    /// Every entry, in key order (fsck, backup, tests).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.db.iter().map(|r| r.map(|(k, v)| (k.to_vec(), Value(v))).map_err(Error::from))
    }

    /// Makes everything applied so far durable.
    pub fn flush(&self) -> Result<()> {
        let _in_flight = InFlight::new(&self.watch);
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// sled's segment (I/O buffer) size for new stores: sled's own default, the
/// configuration sled is most exercised with. Larger segments keep 16 KiB
/// blocks out of sled's blob files (sled inlines a log item only up to a
/// quarter of a segment); with the default 4 KiB blocks they are not needed
/// (docs/PERFORMANCE.md).
const SEGMENT_SIZE: usize = 512 * 1024;

/// The segment size an existing store was created with (sled refuses to open
/// a store with another one), read from sled's `conf` file.
fn existing_segment_size(db: &Path) -> Option<usize> {
    let conf = std::fs::read(db.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    text.lines().find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
}

/// Open attempts (50 ms apart) while another handle still holds the lock.
const LOCK_RETRIES: u32 = 100;

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel wakes the watchdog at once; joining it releases
        // its handle on the database before the store is reported closed.
        if let Some((tx, handle)) = self.watchdog.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// sled's background flush interval: the bound on what an unsynced crash loses.
pub const FLUSH_EVERY_MS: u64 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_atomic_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), true).unwrap();
        let mut b = Batch::default();
        b.put(&b"a"[..], b"1".to_vec());
        b.put(&b"b"[..], b"2".to_vec());
        b.delete(&b"a"[..]);
        s.apply(b).unwrap();
        assert!(s.get(b"a").unwrap().is_none());
        assert_eq!(&*s.get(b"b").unwrap().unwrap(), b"2");
        let keys: Vec<_> = s.scan_prefix(b"").map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![b"b".to_vec()]);
        s.flush().unwrap();
    }

    #[test]
    fn open_missing_is_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open(&dir.path().join("nope"), false).is_err());
    }
}
