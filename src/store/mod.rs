//! The only sled user. Sees opaque keys and values, never keys-as-in-crypto or
//! plaintext. Every vault operation lands as one atomic `Batch`; `flush` makes
//! everything applied before it durable, and `Durability` says whether each
//! batch is flushed on its own or in groups by a committer thread. sled is
//! the patched 0.34.7 of vendor/sled (its truncation deadlock fixed), so
//! writers need no lock of ours.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::time::{Duration, Instant};

mod compact;
mod overlay;
mod recover;
mod segments;
pub use compact::{Compacted, compact};
use overlay::{Merged, Overlay};
pub use recover::{Recovered, RecoveredFrom, copy_segments, log_damage, recover};
pub use segments::{Location, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, Segments, file_name as segment_name};
#[cfg(any(test, feature = "internals"))]
pub use segments::SEGMENT_BYTES;

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

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value(v.into())
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

/// When an applied batch becomes durable (docs/SEMANTICS.md, "Durability").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every batch is on disk before `apply` returns: `-o sync`, and every
    /// command that opens a store without mounting it.
    EachBatch,
    /// Batches are written to disk in groups, the oldest at most this long
    /// after it was applied; `flush` makes everything applied durable at once.
    Grouped(Duration),
}

/// The store: one sled database, its default tree.
pub struct Store {
    shared: Arc<Shared>,
    /// Writers hold it shared, a `Frozen` view exclusively: a snapshot waits
    /// for the batches in flight and holds back new ones, while writers never
    /// wait for each other here (sled orders batches itself).
    gate: RwLock<()>,
    /// Set while a `Frozen` view holds the gate (see `Store::is_frozen`).
    frozen: AtomicBool,
    /// 0: `Durability::EachBatch`; otherwise the commit interval in ms.
    commit_ms: AtomicU64,
    /// The thread that hands grouped batches to sled and commits, while `Grouped`.
    committer: Mutex<Option<Committer>>,
}

/// What the store and its committer thread share.
struct Shared {
    db: sled::Db,
    /// Grouped batches not yet handed to sled (overlay.rs).
    overlay: Overlay,
    /// One hand-over at a time, so that they reach sled in order.
    handing_over: Mutex<()>,
    disk: Disk,
    /// Bulk values beside sled; synced before sled may learn of them.
    segments: Segments,
    /// Commits done by the committer thread (for tests and status).
    commits: AtomicU64,
}

impl Shared {
    /// Hands everything in the overlay to sled, as one atomic batch per set.
    fn drain(&self) -> Result<()> {
        let _one = self.handing_over.lock().unwrap_or_else(|p| p.into_inner());
        // At most two sets: one a failed hand-over left, then the pending one.
        for _ in 0..2 {
            let Some(set) = self.overlay.begin_drain() else { return Ok(()) };
            let mut b = sled::Batch::default();
            for (k, v) in set.iter() {
                match v {
                    Some(v) => b.insert(&k[..], v.clone()),
                    None => b.remove(&k[..]),
                }
            }
            // Records before the index that points at them; on failure the
            // set stays visible and is tried again first.
            self.segments.sync()?;
            self.db.apply_batch(b)?;
            self.overlay.end_drain();
        }
        Ok(())
    }

    /// Makes everything applied so far durable, against power loss too.
    fn commit(&self) -> Result<()> {
        self.drain()?;
        self.segments.sync()?;
        self.db.flush()?;
        self.disk.sync()
    }
}

/// sled's files, for commits. sled 0.34's `flush` only waits until its log
/// buffers went through `sync_file_range`: that pushes the data to the
/// device but neither the file's size nor the device's cache, and its blob
/// files (oversized tree nodes) are never synced at all. A commit adds what
/// power loss needs: `fdatasync` of the log file and of each new blob file,
/// then of the blob directory.
struct Disk {
    log: std::fs::File,
    blobs: PathBuf,
    /// Blob files already synced (sled writes each once, then deletes it).
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
}

impl Disk {
    fn open(dir: &Path) -> Result<Disk> {
        let log = std::fs::File::open(dir.join("db"))
            .map_err(|e| Error::Io(format!("cannot open {} for syncing: {e}", dir.join("db").display())))?;
        Ok(Disk { log, blobs: dir.join("blobs"), synced_blobs: Mutex::default() })
    }

    fn sync(&self) -> Result<()> {
        let io = |what: &Path, e: std::io::Error| Error::Io(format!("syncing {}: {e}", what.display()));
        self.log.sync_data().map_err(|e| io(Path::new("the store's log file"), e))?;
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashSet::new();
        let mut new = false;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.blobs, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.blobs, e))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match std::fs::File::open(&path) {
                    Ok(f) => f.sync_data().map_err(|e| io(&path, e))?,
                    // Collected by sled meanwhile: nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&path, e)),
                }
                new = true;
            }
            seen.insert(name);
        }
        if new {
            std::fs::File::open(&self.blobs).and_then(|d| d.sync_all()).map_err(|e| io(&self.blobs, e))?;
        }
        *synced = seen;
        Ok(())
    }
}

/// How often the committer hands the overlay to sled: often enough that a
/// hand-over stays small and a `kill -9` loses little, rarely enough that
/// one sled batch carries many operations.
const HAND_OVER_EVERY: Duration = Duration::from_millis(10);

/// Past this many bytes in the overlay a writer hands it over itself
/// before adding more (back-pressure: the overlay's memory stays bounded).
const HAND_OVER_AT_BYTES: usize = 16 << 20;

/// Hands the overlay to sled every HAND_OVER_EVERY and commits every
/// interval, until told to stop.
struct Committer {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    fn start(shared: Arc<Shared>, every: Duration) -> Result<Committer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let tick = every.min(HAND_OVER_EVERY);
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                let mut last_commit = Instant::now();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    // The next hand-over, commit or fsync reports a failure to
                    // whoever waits for it; here there is no one.
                    if last_commit.elapsed() >= every {
                        last_commit = Instant::now();
                        match shared.commit() {
                            Ok(()) => {
                                shared.commits.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => tracing::error!("store commit failed: {e}"),
                        }
                    } else if let Err(e) = shared.drain() {
                        tracing::error!("store hand-over failed: {e}");
                    }
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the store's committer: {e}")))?;
        Ok(Committer { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(c) = self.committer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            c.stop();
        }
        // Whatever the mode, a store closed in order loses nothing.
        if let Err(e) = self.shared.commit() {
            tracing::error!("store commit at close failed: {e}");
        }
    }
}

/// sled's page cache by default: 128 MiB. At 256 MiB a mount's memory grew
/// past 300 MB on 50,000 small files; at 64 MiB random 4 KiB I/O on a
/// 128 MiB file lost a quarter of its rate (docs/PERFORMANCE.md, "Memory").
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// Subdirectory of the vault directory holding sled's files.
const DB_DIR: &str = "db";
/// Subdirectory holding the segment files (segments.rs).
pub const SEGMENTS_DIR: &str = "seg";

type SledPair = sled::Result<(sled::IVec, sled::IVec)>;

impl Store {
    /// Opens the store under `dir` (created if absent when `create`).
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        Store::open_with_cache(dir, create, DEFAULT_CACHE_BYTES)
    }

    /// As `open`, with sled's page cache capped at `cache_bytes` (the
    /// daemon's memory is this plus a bounded rest: docs/PERFORMANCE.md).
    pub fn open_with_cache(dir: &Path, create: bool, cache_bytes: u64) -> Result<Store> {
        compact::finish_interrupted(dir)?;
        let path = dir.join(DB_DIR);
        if !create && !path.is_dir() {
            return Err(Error::Unusable(format!("{} does not exist", path.display())));
        }
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            // Flushes are ours: per batch, or by the committer (Durability).
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
                Err(e) => return Err(e),
                Ok(db) => {
                    let shared = Shared {
                        db,
                        overlay: Overlay::default(),
                        handing_over: Mutex::new(()),
                        disk: Disk::open(&path)?,
                        segments: Segments::open(&dir.join(SEGMENTS_DIR))?,
                        commits: AtomicU64::new(0),
                    };
                    return Ok(Store {
                        shared: Arc::new(shared),
                        gate: RwLock::new(()),
                        frozen: AtomicBool::new(false),
                        commit_ms: AtomicU64::new(0),
                        committer: Mutex::new(None),
                    });
                }
            }
        }
    }

    /// Whether `dir` already holds a store.
    pub fn exists(dir: &Path) -> bool {
        // Or a compaction stopped between its renames (compact.rs).
        dir.join(DB_DIR).exists() || compact::interrupted(dir)
    }

    fn db(&self) -> &sled::Db {
        &self.shared.db
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        match self.shared.overlay.lookup(key) {
            Some(entry) => Ok(entry.map(Value)),
            None => Ok(self.db().get(key)?.map(Value)),
        }
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        match self.shared.overlay.lookup(key) {
            Some(entry) => Ok(entry.is_some()),
            None => Ok(self.db().contains_key(key)?),
        }
    }

    /// Writes one key outside a batch (used only for the inode counter and the
    /// header, whose single-key writes are atomic on their own).
    pub fn put(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        let mut b = Batch::default();
        b.put(key, value);
        self.apply(b)
    }

    /// Chooses when applied batches become durable. Switching to `Grouped`
    /// starts the committer thread; switching back commits first.
    pub fn set_durability(&self, d: Durability) -> Result<()> {
        let mut committer = self.committer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = committer.take() {
            c.stop();
        }
        match d {
            Durability::EachBatch => {
                self.commit_ms.store(0, Ordering::SeqCst);
                self.flush()?;
            }
            Durability::Grouped(every) => {
                let ms = every.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
                *committer = Some(Committer::start(self.shared.clone(), Duration::from_millis(ms))?);
                self.commit_ms.store(ms, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn durability(&self) -> Durability {
        match self.commit_ms.load(Ordering::SeqCst) {
            0 => Durability::EachBatch,
            ms => Durability::Grouped(Duration::from_millis(ms)),
        }
    }

    /// Commits the committer thread has made so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn group_commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Shared hold on the gate for one write.
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        // The gate guards no data: a panic while it was held changes nothing.
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies all operations of `batch` atomically, in order. Under
    /// `Durability::EachBatch` it is durable when this returns; under
    /// `Grouped` every read sees it at once, sled gets it with the next
    /// hand-over, and the disk with the next commit or `flush`.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let _gate = self.writing();
        if self.commit_ms.load(Ordering::Relaxed) != 0 {
            if self.shared.overlay.pending_bytes() >= HAND_OVER_AT_BYTES {
                self.shared.drain()?;
            }
            self.shared.overlay.insert(batch.ops);
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.shared.segments.sync()?;
        self.db().apply_batch(b)?;
        self.shared.commit()
    }

    /// Appends `bytes` to the segment files as one write (the block layer's
    /// records); durable before any batch applied after this returns.
    pub fn append_record(&self, bytes: &[u8]) -> Result<Location> {
        self.shared.segments.append(bytes)
    }

    /// Reads `buf.len()` bytes of segment data at `at`.
    pub fn read_record(&self, at: Location, buf: &mut [u8]) -> Result<()> {
        self.shared.segments.read(at, buf)
    }

    /// The first SEGMENT_HEADER_LEN bytes of segment `id` (fsck).
    pub fn segment_header(&self, id: u64) -> Result<[u8; SEGMENT_HEADER_LEN as usize]> {
        self.shared.segments.header(id)
    }

    /// Every segment file as (number, bytes), and the one appends go to.
    pub fn segments(&self) -> Result<(Vec<(u64, u64)>, u64)> {
        Ok((self.shared.segments.list()?, self.shared.segments.active()))
    }

    /// Deletes a collected segment. Waits while a frozen view may read it;
    /// the caller has made the batches that moved its records durable.
    pub fn remove_segment(&self, id: u64) -> Result<()> {
        let _gate = self.writing();
        self.shared.segments.remove(id)
    }

    /// `(lo, hi)` of sled's and the overlay's entries, merged.
    fn merged<I: Iterator<Item = SledPair>>(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        sled: I,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<I> {
        Merged::new(self.shared.overlay.range(lo, hi), sled)
            .map(|r| r.map(|(k, v)| (k, Value(v))).map_err(Error::from))
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        let end = prefix_end(prefix);
        let hi = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.merged(Bound::Included(prefix), hi, self.db().scan_prefix(prefix))
    }

    /// The greatest key starting with `prefix`, if any.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        let end = prefix_end(prefix);
        let hi = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.last_key(Bound::Included(prefix), hi, self.db().scan_prefix(prefix))
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<'_> {
        self.merged(Bound::Included(from), Bound::Excluded(to), self.db().range(from.to_vec()..to.to_vec()))
    }

    /// The entry with the smallest key `from <= key < to`, if any: a range
    /// scan's first item, without gathering the overlay's whole range (a
    /// file being written has many entries there).
    pub fn first_in(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Value)>> {
        let mut lo = from.to_vec();
        loop {
            let over = self.shared.overlay.first(Bound::Included(&lo), Bound::Excluded(to));
            let sled = match self.db().range(lo.clone()..to.to_vec()).next() {
                Some(r) => Some(r?),
                None => None,
            };
            let (key, entry) = match (over, sled) {
                (None, None) => return Ok(None),
                (Some(o), None) => o,
                (None, Some((k, v))) => return Ok(Some((k.to_vec(), Value(v)))),
                (Some(o), Some((k, v))) if k[..] < o.0[..] => return Ok(Some((k.to_vec(), Value(v)))),
                (Some(o), Some(_)) => o,
            };
            match entry {
                Some(v) => return Ok(Some((key, Value(v)))),
                // Deleted in the overlay: look past it.
                None => {
                    lo = key;
                    lo.push(0);
                }
            }
        }
    }

    /// The greatest key with `from <= key < to`, if any.
    pub fn last_key_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        self.last_key(Bound::Included(from), Bound::Excluded(to), self.db().range(from.to_vec()..to.to_vec()))
    }

    /// The greatest live key in `(lo, hi)`: the overlay's greatest live key
    /// or sled's greatest key the overlay does not delete, whichever is greater.
    fn last_key(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        sled: impl DoubleEndedIterator<Item = SledPair>,
    ) -> Result<Option<Vec<u8>>> {
        let over = self.shared.overlay.range(lo, hi);
        let deleted: HashSet<&[u8]> = over.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| &k[..]).collect();
        let from_overlay = over.iter().rev().find(|(_, v)| v.is_some()).map(|(k, _)| k.clone());
        let mut from_sled = None;
        for entry in sled.rev() {
            let (k, _) = entry?;
            if !deleted.contains(&k[..]) {
                from_sled = Some(k.to_vec());
                break;
            }
        }
        Ok(from_overlay.max(from_sled))
    }

    /// Keys only, `from <= key < to`.
    #[cfg(any(test, feature = "internals"))]
    pub fn range_keys(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.range(from, to).map(|r| r.map(|(k, _)| k))
    }

    /// Every entry, in key order (fsck, backup, tests).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.merged(Bound::Unbounded, Bound::Unbounded, self.db().iter())
    }

    /// A point-in-time view of the whole store: while the returned value
    /// lives, every write of this process (`put`, `apply`) waits at the
    /// store's gate, so iterating it sees exactly the state at the call.
    /// sled 0.34 has no snapshot of its own and its iterators are not
    /// point-in-time; this is the snapshot (docs/ADMIN.md measures the pause).
    /// The holder must not write to the store (it would wait for itself)
    /// nor wait for anything that writes; it should copy what it needs and
    /// drop the view.
    pub fn freeze(&self) -> Frozen<'_> {
        let gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.frozen.store(true, Ordering::SeqCst);
        // Best effort: a failed hand-over leaves the overlay in place, and
        // the view's reads merge it anyway.
        if let Err(e) = self.shared.drain() {
            tracing::error!("store hand-over before a snapshot failed: {e}");
        }
        Frozen { store: self, _gate: gate }
    }

    /// Whether a frozen view holds writes back right now: a background
    /// writer that can wait (the audit committer) skips its turn rather
    /// than queue behind the snapshot holding its own locks.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Makes everything applied so far durable (fsync, unmount). Needs no
    /// gate: it changes nothing a frozen view could see.
    pub fn flush(&self) -> Result<()> {
        self.shared.commit()
    }

    /// Bytes the store occupies on disk.
    #[cfg(any(test, feature = "internals"))]
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db().size_on_disk()? + self.shared.segments.bytes()?)
    }
}

/// The least key greater than every key starting with `prefix` (None: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// See [`Store::freeze`]: the store as it was when frozen, until dropped.
pub struct Frozen<'a> {
    store: &'a Store,
    _gate: RwLockWriteGuard<'a, ()>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // Before the gate opens (fields drop after this).
        self.store.frozen.store(false, Ordering::SeqCst);
    }
}

impl<'a> Frozen<'a> {
    /// The store itself, for reads beside the view (segment records, which
    /// no write can remove while the view holds the gate).
    pub fn store(&self) -> &'a Store {
        self.store
    }

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

    /// The churning load of tests/sled_deadlock.rs (which runs it on bare
    /// sled, where unpatched 0.34.7 hung), here through the store as a mount
    /// uses it: six writers rewriting a small set of "files" of 4 KiB blocks,
    /// each rewrite one batch that also deletes the blocks past the new end,
    /// landing in the overlay while the committer hands it to sled every
    /// 10 ms and commits every 20 ms. Writers and hand-overs must never stall.
    #[test]
    fn churning_writers_never_stall() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{Duration, Instant};
        const WRITERS: u64 = 6;
        const BATCHES: u64 = 5000;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), true).unwrap());
        store.set_durability(Durability::Grouped(Duration::from_millis(20))).unwrap();
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

    /// Grouped: batches return without a flush, and the committer commits
    /// every interval while the store is open.
    #[test]
    fn grouped_commits_run_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), true).unwrap();
        assert_eq!(s.durability(), Durability::EachBatch);
        s.set_durability(Durability::Grouped(Duration::from_millis(20))).unwrap();
        assert_eq!(s.durability(), Durability::Grouped(Duration::from_millis(20)));
        let mut b = Batch::default();
        b.put(&b"k"[..], vec![7; 100]);
        s.apply(b).unwrap();
        let start = std::time::Instant::now();
        while s.group_commits() < 3 {
            assert!(start.elapsed() < Duration::from_secs(10), "no group commit in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        s.set_durability(Durability::EachBatch).unwrap();
        let after = s.group_commits();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(s.group_commits(), after, "the committer outlived its mode");
    }

    /// Under grouped durability every read merges the overlay with sled:
    /// random batches, hand-overs and reads agree with a plain map.
    mod overlay_model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            Batch(Vec<(u8, Option<u8>)>),
            HandOver,
            Read(u8, u8),
        }

        fn key(k: u8) -> Vec<u8> {
            // Two-byte keys under two prefixes, so prefix scans have work.
            vec![k >> 4, k & 0x0f]
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => proptest::collection::vec((0u8..64, proptest::option::of(any::<u8>())), 1..6).prop_map(Op::Batch),
                1 => Just(Op::HandOver),
                3 => (0u8..64, 0u8..64).prop_map(|(a, b)| Op::Read(a.min(b), a.max(b))),
            ]
        }

        fn check(s: &Store, model: &BTreeMap<Vec<u8>, Vec<u8>>, a: u8, b: u8) {
            let (from, to) = (key(a), key(b));
            for k in [a, b] {
                let want = model.get(&key(k));
                assert_eq!(s.get(&key(k)).unwrap().map(|v| v.to_vec()).as_ref(), want);
                assert_eq!(s.contains(&key(k)).unwrap(), want.is_some());
            }
            let got: Vec<_> = s.range(&from, &to).map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
            let want: Vec<_> =
                model.range(from.clone()..to.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(got, want, "range");
            assert_eq!(
                s.last_key_in(&from, &to).unwrap(),
                want.last().map(|(k, _)| k.clone()),
                "last_key_in"
            );
            let prefix = [a >> 4];
            let got: Vec<_> = s.scan_prefix(&prefix).map(|r| r.unwrap().0).collect();
            let want: Vec<_> = model.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
            assert_eq!(got, want, "scan_prefix");
            assert_eq!(
                s.last_key_with_prefix(&prefix).unwrap(),
                want.last().cloned(),
                "last_key_with_prefix"
            );
            let all: Vec<_> = s.iter().map(|r| r.unwrap().0).collect();
            assert_eq!(all, model.keys().cloned().collect::<Vec<_>>(), "iter");
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn reads_see_every_applied_batch(ops in proptest::collection::vec(op(), 1..60)) {
                let dir = tempfile::tempdir().unwrap();
                let s = Store::open(dir.path(), true).unwrap();
                // Long interval: hand-overs happen when the test says (and every 10 ms).
                s.set_durability(Durability::Grouped(Duration::from_secs(60))).unwrap();
                let mut model = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Batch(ops) => {
                            let mut b = Batch::default();
                            for (k, v) in ops {
                                match v {
                                    Some(v) => {
                                        b.put(key(k), vec![v; 1 + v as usize % 40]);
                                        model.insert(key(k), vec![v; 1 + v as usize % 40]);
                                    }
                                    None => {
                                        b.delete(key(k));
                                        model.remove(&key(k));
                                    }
                                }
                            }
                            s.apply(b).unwrap();
                        }
                        Op::HandOver => s.flush().unwrap(),
                        Op::Read(a, b) => check(&s, &model, a, b),
                    }
                }
                check(&s, &model, 0, 63);
                // Everything reaches sled and survives a reopen.
                drop(s);
                let s = Store::open(dir.path(), false).unwrap();
                check(&s, &model, 0, 63);
            }
        }
    }

    #[test]
    fn open_missing_is_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open(&dir.path().join("nope"), false).is_err());
    }
}
