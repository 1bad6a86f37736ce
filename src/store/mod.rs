//! The only sled user. Sees opaque keys and values, never keys-as-in-crypto or
//! plaintext. Every vault operation lands as one atomic `Batch`; `flush` makes
//! everything applied before it durable.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

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
}

/// The write gate. sled 0.34.7 can deadlock under concurrent writes: its
/// segment accountant waits, holding its lock, for a log-file truncation
/// queued in sled's process-wide thread pool behind log writes that each end
/// by taking that lock; the pool (seven threads) does not grow while they are
/// busy. Fixed upstream after 0.34 (sled PR #1269), never released. A write
/// load on a small churning data set (overwrites and deletes) hangs it within
/// seconds. The cure: every sled write in this process passes this one gate
/// and is flushed before the gate opens again, and sled's own flusher is off.
/// So when a write starts no log write is in flight, and one batch seals far
/// fewer I/O buffers than the pool has threads: the truncation always finds
/// one. Process-wide because sled's pool is. A side effect users can count on:
/// every acknowledged change is on disk. docs/PERFORMANCE.md has the numbers.
static WRITE_GATE: Mutex<()> = Mutex::new(());

/// Set while a `Frozen` view holds the gate (see `Store::is_frozen`).
static FROZEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn gate() -> MutexGuard<'static, ()> {
    // The gate guards no data: a panic while it was held changes nothing.
    WRITE_GATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
            // Every write is flushed under the gate (WRITE_GATE).
            .flush_every_ms(None)
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
                r => return r.map(|db| Store { db }),
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
        let _gate = gate();
        self.db.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Applies all operations of `batch` atomically and durably.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        let _gate = gate();
        self.db.apply_batch(b)?;
        self.db.flush()?;
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
    pub fn range(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<'_> {
        self.db
            .range(from.to_vec()..to.to_vec())
            .map(|r| r.map(|(k, v)| (k.to_vec(), Value(v))).map_err(Error::from))
    }

    /// The greatest key with `from <= key < to`, if any.
    pub fn last_key_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.range(from.to_vec()..to.to_vec()).next_back().transpose()?.map(|(k, _)| k.to_vec()))
    }

    /// Keys only, `from <= key < to` (no value copies).
    pub fn range_keys(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.range(from, to).map(|r| r.map(|(k, _)| k))
    }

    /// Every entry, in key order (fsck, backup, tests).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.db.iter().map(|r| r.map(|(k, v)| (k.to_vec(), Value(v))).map_err(Error::from))
    }

    /// A point-in-time view of the whole store: while the returned value
    /// lives, every write of this process (`put`, `apply`, `flush`) waits at
    /// the write gate, so iterating it sees exactly the state at the call.
    /// sled 0.34 has no snapshot of its own and its iterators are not
    /// point-in-time; this is the snapshot (docs/ADMIN.md measures the pause).
    /// The holder must not write to the store (it would wait for itself)
    /// nor wait for anything that writes; it should copy what it needs and
    /// drop the view.
    pub fn freeze(&self) -> Frozen<'_> {
        let gate = gate();
        FROZEN.store(true, std::sync::atomic::Ordering::SeqCst);
        Frozen { store: self, _gate: gate }
    }

    /// Whether a frozen view holds writes back right now: a background
    /// writer that can wait (the audit committer) skips its turn rather
    /// than queue behind the snapshot holding its own locks.
    pub fn is_frozen(&self) -> bool {
        FROZEN.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes everything applied so far durable.
    pub fn flush(&self) -> Result<()> {
        let _gate = gate();
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// See [`Store::freeze`]: the store as it was when frozen, until dropped.
pub struct Frozen<'a> {
    store: &'a Store,
    _gate: MutexGuard<'static, ()>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // Before the gate opens (fields drop after this).
        FROZEN.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Frozen<'_> {
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.store.get(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.store.iter()
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

    /// The load that hangs bare sled 0.34.7 within seconds (WRITE_GATE):
    /// six writers rewriting a small set of "files" of 4 KiB blocks, each
    /// rewrite one batch that also deletes the blocks past the new end.
    #[test]
    fn churning_writers_never_stall() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{Duration, Instant};
        const WRITERS: u64 = 6;
        const BATCHES: u64 = 5000;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), true).unwrap());
        let done = Arc::new(AtomicU64::new(0));
        for t in 0..WRITERS {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut x = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for _ in 0..BATCHES {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (file, blocks) = (x % 17, (x >> 20) % 18);
                    let mut b = Batch::default();
                    for blk in 0..18u64 {
                        let key = [t.to_be_bytes(), file.to_be_bytes(), blk.to_be_bytes()].concat();
                        if blk < blocks {
                            b.put(key, vec![x as u8; 4136]);
                        } else {
                            b.delete(key);
                        }
                    }
                    store.apply(b).unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let (mut last, mut since) = (0, Instant::now());
        while last < WRITERS * BATCHES {
            std::thread::sleep(Duration::from_millis(100));
            let now = done.load(Ordering::SeqCst);
            if now != last {
                (last, since) = (now, Instant::now());
            }
            // A stuck sled never recovers; the threads are left behind.
            assert!(since.elapsed() < Duration::from_secs(20), "store writes stalled after {last} batches");
        }
    }

    /// A frozen view holds every writer back, and sees none of their writes.
    #[test]
    fn freeze_is_point_in_time() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), true).unwrap());
        store.put(b"a", b"1".to_vec()).unwrap();
        let wrote = Arc::new(AtomicBool::new(false));
        let frozen = store.freeze();
        let writer = {
            let (store, wrote) = (store.clone(), wrote.clone());
            std::thread::spawn(move || {
                let mut b = Batch::default();
                b.put(&b"b"[..], b"2".to_vec());
                b.delete(&b"a"[..]);
                store.apply(b).unwrap();
                wrote.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!wrote.load(Ordering::SeqCst), "a write passed a frozen store");
        let seen: Vec<_> = frozen.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(seen, vec![b"a".to_vec()]);
        assert!(store.is_frozen());
        drop(frozen);
        writer.join().unwrap();
        assert!(!store.is_frozen());
        let seen: Vec<_> = store.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(seen, vec![b"b".to_vec()]);
    }

    #[test]
    fn open_missing_is_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open(&dir.path().join("nope"), false).is_err());
    }
}
