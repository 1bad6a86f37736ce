//! The embedded store: one sled database (metadata, block index, audit
//! log) and segment files beside it (block data). sled is the patched
//! 0.34.7 of vendor/sled (its truncation deadlock fixed), so writers need
//! no lock of ours. The only sled user.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::overlay::{Merged, Overlay};
use super::segments::{Location, SEGMENT_HEADER_LEN, Segments};
use super::{Batch, Durability, Error, Result, Value, prefix_end};

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

/// A store directory opened: sled, its overlay, the segment files, and the
/// committer while durability is grouped.
pub struct Local {
    shared: Arc<Shared>,
    /// 0: `Durability::EachBatch`; otherwise the commit interval in ms.
    commit_ms: AtomicU64,
    /// The thread that hands grouped batches to sled and commits, while `Grouped`.
    committer: Mutex<Option<Committer>>,
    /// sled's page cache capacity now (`set_cache_capacity`).
    cache_bytes: AtomicU64,
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

impl Drop for Local {
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
pub(super) const DB_DIR: &str = "db";
/// Subdirectory holding the segment files (segments.rs).
pub const SEGMENTS_DIR: &str = "seg";

type SledPair = sled::Result<(sled::IVec, sled::IVec)>;

impl Local {
    /// Opens the store under `dir` (created if absent when `create`), with
    /// sled's page cache capped at `cache_bytes` (the daemon's memory is
    /// this plus a bounded rest: docs/PERFORMANCE.md).
    pub fn open(dir: &Path, create: bool, cache_bytes: u64) -> Result<Local> {
        super::compact::finish_interrupted(dir)?;
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
                    return Ok(Local {
                        shared: Arc::new(shared),
                        commit_ms: AtomicU64::new(0),
                        committer: Mutex::new(None),
                        cache_bytes: AtomicU64::new(cache_bytes),
                    });
                }
            }
        }
    }

    /// Whether `dir` already holds a store.
    pub fn exists(dir: &Path) -> bool {
        // Or a compaction stopped between its renames (compact.rs).
        dir.join(DB_DIR).exists() || super::compact::interrupted(dir)
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

    /// Chooses when applied batches become durable. Switching to `Grouped`
    /// starts the committer thread; switching back commits first.
    pub fn set_durability(&self, d: Durability) -> Result<()> {
        let mut committer = self.committer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = committer.take() {
            c.stop();
        }
        match d.as_ms() {
            0 => {
                self.commit_ms.store(0, Ordering::SeqCst);
                self.flush()?;
            }
            ms => {
                *committer = Some(Committer::start(self.shared.clone(), Duration::from_millis(ms))?);
                self.commit_ms.store(ms, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn durability(&self) -> Durability {
        Durability::from_ms(self.commit_ms.load(Ordering::SeqCst))
    }

    /// Commits the committer thread has made so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn group_commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Applies all operations of `batch` atomically, in order. Under
    /// `Durability::EachBatch` it is durable when this returns; under
    /// `Grouped` every read sees it at once, sled gets it with the next
    /// hand-over, and the disk with the next commit or `flush`.
    pub fn apply(&self, batch: Batch) -> Result<()> {
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

    /// Deletes a collected segment.
    pub fn remove_segment(&self, id: u64) -> Result<()> {
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

    /// The entry with the smallest key `from <= key < to`, if any.
    pub fn first_in(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Value)>> {
        let first = self.shared.overlay.first_over(from, to, |lo| {
            self.db().range(lo.to_vec()..to.to_vec()).next().transpose().map(|e| e.map(|(k, v)| (k.to_vec(), v)))
        })?;
        Ok(first.map(|(k, v)| (k, Value(v))))
    }

    /// The greatest key with `from <= key < to`, if any.
    pub fn last_key_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        self.last_key(Bound::Included(from), Bound::Excluded(to), self.db().range(from.to_vec()..to.to_vec()))
    }

    /// The greatest live key in `(lo, hi)`, the overlay's or sled's.
    fn last_key(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        sled: impl DoubleEndedIterator<Item = SledPair>,
    ) -> Result<Option<Vec<u8>>> {
        let keys = sled.rev().map(|e| e.map(|(k, _)| k.to_vec()));
        Ok(self.shared.overlay.last_key_over(lo, hi, keys)?)
    }

    /// Every entry, in key order (fsck, backup, tests).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.merged(Bound::Unbounded, Bound::Unbounded, self.db().iter())
    }

    /// Hands the overlay to sled (before a frozen view is taken).
    pub fn drain(&self) -> Result<()> {
        self.shared.drain()
    }

    /// Makes everything applied so far durable (fsync, unmount).
    pub fn flush(&self) -> Result<()> {
        self.shared.commit()
    }

    /// Sets sled's page cache capacity while open.
    pub fn set_cache_capacity(&self, bytes: u64) {
        self.db().set_cache_capacity(bytes);
        self.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn cache_capacity(&self) -> u64 {
        self.cache_bytes.load(Ordering::Relaxed)
    }

    /// Bytes the store occupies on disk.
    #[cfg(any(test, feature = "internals"))]
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db().size_on_disk()? + self.shared.segments.bytes()?)
    }
}

/// sled's segment (I/O buffer) size for new stores: sled's own default, the
/// configuration sled is most exercised with. Larger segments keep 16 KiB
/// blocks out of sled's blob files (sled inlines a log item only up to a
/// quarter of a segment); with the default 4 KiB blocks they are not needed
/// (docs/PERFORMANCE.md).
pub(super) const SEGMENT_SIZE: usize = 512 * 1024;

/// The segment size an existing store was created with (sled refuses to open
/// a store with another one), read from sled's `conf` file.
pub(super) fn existing_segment_size(db: &Path) -> Option<usize> {
    let conf = std::fs::read(db.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    text.lines().find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
}

/// Open attempts (50 ms apart) while another handle still holds the lock.
const LOCK_RETRIES: u32 = 100;
