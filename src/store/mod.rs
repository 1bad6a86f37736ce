//! The store: opaque keys and values, never keys-as-in-crypto or plaintext,
//! plus bulk records (sealed blocks) kept beside them. Every vault operation
//! lands as one atomic `Batch`; `flush` makes everything applied before it
//! durable. Two backends behind one interface:
//! - `local`: a directory, sled and segment files (the default);
//! - `cluster`: etcd for the keys and an S3 bucket for the records
//!   (docs/CLUSTER.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use std::path::Path;

mod address;
mod cluster;
mod compact;
mod local;
pub mod memory;
mod overlay;
mod recover;
mod segments;
pub use address::{Address, ClusterAddress, DataAddress};
pub use cluster::{LockClaim, WaitingOpen};
/// Tests only: the watches of this process's cluster stores hand on
/// nothing while the file this names exists (as `VAULTFS_TEST_HOLD_WATCH`).
#[cfg(feature = "internals")]
pub use cluster::HOLD_WATCH_WHILE;
pub use compact::{Compacted, compact};
use local::{DB_DIR, Local, SEGMENT_SIZE, existing_segment_size};
pub use local::{DEFAULT_CACHE_BYTES, SEGMENTS_DIR};
pub use recover::{Recovered, RecoveredFrom, copy_segments, log_damage, recover};
pub use segments::{Location, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, file_name as segment_name};
#[cfg(any(test, feature = "internals"))]
pub use segments::SEGMENT_BYTES;

/// A storage error, with the backend's message; the vault maps it to EIO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("store is corrupted: {0}")]
    Corrupt(String),
    #[error("store is in use or unusable: {0}")]
    Unusable(String),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Exists(String),
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


/// What a read-only mount's watch heard of directory entries (the
/// holder's changes of names), told before a catch-up returns past it.
pub enum Heard<'a> {
    /// This entry's key (`D…`, FORMAT.md) was put or deleted.
    Entry(&'a [u8]),
    /// Changes may have been missed (the watch broke, or began again):
    /// any entry may have changed.
    All,
}

/// Who is told what the watch heard of directory entries.
pub type EntriesHeard = Box<dyn Fn(Heard<'_>) + Send + Sync>;

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

impl Durability {
    /// As backends keep it: 0 for `EachBatch`, else the commit interval in
    /// ms (at least 1).
    fn as_ms(self) -> u64 {
        match self {
            Durability::EachBatch => 0,
            Durability::Grouped(every) => every.as_millis().clamp(1, u128::from(u64::MAX)) as u64,
        }
    }

    #[cfg(any(test, feature = "internals"))]
    fn from_ms(ms: u64) -> Durability {
        match ms {
            0 => Durability::EachBatch,
            ms => Durability::Grouped(std::time::Duration::from_millis(ms)),
        }
    }
}

/// An operation's hold on the vault (`Store::hold_for_write`).
pub struct WriteHold<'a>(#[allow(dead_code)] Option<cluster::HoldGuard<'a>>);

/// Entries in key order, as scans return them.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Value)>> + 'a>;

/// An open store.
pub struct Store {
    backend: Backend,
    /// Writers hold it shared, a `Frozen` view exclusively: a snapshot waits
    /// for the batches in flight and holds back new ones, while writers never
    /// wait for each other here (the backend orders batches itself).
    gate: RwLock<()>,
    /// Set while a `Frozen` view holds the gate (see `Store::is_frozen`).
    frozen: AtomicBool,
    /// The thread holding that view, which must never wait for it.
    freezer: Mutex<Option<std::thread::ThreadId>>,
}

enum Backend {
    Local(Local),
    // Boxed: the etcd client and its runtime are large, and rare.
    Cluster(Box<cluster::Cluster>),
}

/// Calls the same method on whichever backend the store has.
macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match &$self.backend {
            Backend::Local($b) => $e,
            Backend::Cluster($b) => $e,
        }
    };
}

impl Store {
    fn with(backend: Backend) -> Store {
        Store { backend, gate: RwLock::new(()), frozen: AtomicBool::new(false), freezer: Mutex::new(None) }
    }

    /// Opens the store under `dir` (created if absent when `create`); `dir`
    /// may be a cluster address (`Address::of`).
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        Store::open_with_cache(dir, create, DEFAULT_CACHE_BYTES)
    }

    /// As `open`, with the local store's page cache capped at `cache_bytes`
    /// (the daemon's memory is this plus a bounded rest: docs/PERFORMANCE.md).
    pub fn open_with_cache(dir: &Path, create: bool, cache_bytes: u64) -> Result<Store> {
        match Address::of(dir)? {
            Address::Local(dir) => Ok(Store::with(Backend::Local(Local::open(&dir, create, cache_bytes)?))),
            Address::Cluster(c) if create => Err(Error::Unusable(format!(
                "{c}: a cluster vault is created with its object store (`vaultfs init {c} --data s3://...`)"
            ))),
            Address::Cluster(c) => {
                Ok(Store::with(Backend::Cluster(Box::new(cluster::Cluster::open(&c, cluster::Role::Holder)?))))
            }
        }
    }

    /// Opens the cluster vault at `dir` as a read-only mount on `host`
    /// (docs/CLUSTER.md, "Read-only mounts on other hosts"), beside the
    /// holder: keys whose first byte is in `own` (the audit log's) are this
    /// host's own and writable, those in `shared` (the lockdown marker) are
    /// the vault's and writable by every host, every other key is read as
    /// the holder committed it and never written. A store directory has no
    /// readers.
    pub fn open_reader(dir: &Path, host: &str, own: &'static [u8], shared: &'static [u8]) -> Result<Store> {
        let role = cluster::Role::Reader { host: host.to_string(), own, shared };
        Store::open_beside(dir, role, "mounted read-only beside its holder")
    }

    /// Opens the cluster vault at `dir` as a mount on `host` that shares
    /// writing with others (docs/CLUSTER.md, "Several hosts writing"): keys
    /// as `open_reader`'s, and the vault's keys written by operations that
    /// hold the vault (`hold_for_write`).
    pub fn open_writer(dir: &Path, host: &str, own: &'static [u8], shared: &'static [u8]) -> Result<Store> {
        let role = cluster::Role::Writer { host: host.to_string(), own, shared };
        Store::open_beside(dir, role, "written by several hosts")
    }

    /// Opens the cluster vault at `dir` as `role`; a store directory is
    /// refused (`what` only a cluster vault is).
    fn open_beside(dir: &Path, role: cluster::Role, what: &str) -> Result<Store> {
        match Address::of(dir)? {
            Address::Local(dir) => {
                Err(Error::Unusable(format!("{}: only a cluster vault is {what}", dir.display())))
            }
            Address::Cluster(c) => Ok(Store::with(Backend::Cluster(Box::new(cluster::Cluster::open(&c, role)?)))),
        }
    }

    /// Whether this is a mount that shares writing (`open_writer`).
    pub fn shares_writes(&self) -> bool {
        matches!(&self.backend, Backend::Cluster(c) if c.shares_writes())
    }

    /// The vault's hold for one operation that changes it, from before its
    /// first read to after its last write: on a mount that shares writing,
    /// taken from another mount if it has it, and not let go while this
    /// lives (a thread that holds one gets another at once). Nothing for
    /// any other store, which is the only writer of its keys.
    pub fn hold_for_write(&self) -> Result<WriteHold<'_>> {
        match &self.backend {
            Backend::Cluster(c) if c.shares_writes() => Ok(WriteHold(Some(c.hold_for_write()?))),
            _ => Ok(WriteHold(None)),
        }
    }

    /// As `hold_for_write`, for work that can wait for another time (the
    /// collector): None on a mount that shares writing and does not hold
    /// the vault now, or is letting go of it.
    pub fn try_hold_for_write(&self) -> Option<WriteHold<'_>> {
        match &self.backend {
            Backend::Cluster(c) if c.shares_writes() => c.try_hold_for_write().map(|g| WriteHold(Some(g))),
            _ => Some(WriteHold(None)),
        }
    }

    /// A mount that shares writing lets go of the vault's hold (at unmount,
    /// after its last change), so that the other hosts do not wait for its
    /// lease to lapse. Nothing for any other store.
    pub fn release_hold(&self) -> Result<()> {
        match &self.backend {
            Backend::Cluster(c) => c.release_hold(),
            Backend::Local(_) => Ok(()),
        }
    }

    /// Creates the cluster vault `at` with its records in `data`, and opens
    /// it. Fails if etcd already holds a vault of that name.
    pub fn create_cluster(at: &ClusterAddress, data: &DataAddress) -> Result<Store> {
        Ok(Store::with(Backend::Cluster(Box::new(cluster::Cluster::create(at, data)?))))
    }

    /// Removes the cluster vault this store created and holds: its objects
    /// and every etcd key under its name (a restore that failed). A store
    /// directory is removed with its directory instead.
    pub fn discard_cluster(self) -> Result<()> {
        match self.backend {
            Backend::Cluster(c) => c.discard(),
            Backend::Local(_) => Err(Error::Unusable("a store directory is removed with its directory".into())),
        }
    }

    /// Whether `dir` already holds a store. A cluster address is taken at
    /// its word (whether etcd holds the vault, opening it tells).
    pub fn exists(dir: &Path) -> bool {
        Address::is_cluster(dir) || Local::exists(dir)
    }

    /// Whether this is a cluster store.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// Whether appended records gather into objects committed together (a
    /// cluster store under grouped durability): then moving many small
    /// runs makes one object, where under `-o sync` each is one again.
    pub fn gathers_records(&self) -> bool {
        matches!(&self.backend, Backend::Cluster(c) if c.gathers_records())
    }

    /// The host name of a store opened by `open_reader` (None: any other).
    pub fn reader_host(&self) -> Option<&str> {
        match &self.backend {
            Backend::Cluster(c) => c.reader_host(),
            Backend::Local(_) => None,
        }
    }

    /// The hosts whose read-only mounts keep an audit log in this cluster
    /// vault, in name order, each with whether it is mounted now (none for
    /// a store directory).
    pub fn hosts_with_logs(&self) -> Result<Vec<(String, bool)>> {
        match &self.backend {
            Backend::Cluster(c) => c.hosts_with_logs(),
            Backend::Local(_) => Ok(Vec::new()),
        }
    }

    /// `host`'s own keys (the kinds in `own`: its audit log) as the read-only
    /// mount on it sees them, without holding anything: for checking them.
    /// Every write to it is refused.
    pub fn host_log(&self, host: &str, own: &'static [u8]) -> Result<Store> {
        match &self.backend {
            Backend::Cluster(c) => {
                let role = cluster::Role::LogOf { host: host.to_string(), own };
                Ok(Store::with(Backend::Cluster(Box::new(cluster::Cluster::open(c.address(), role)?))))
            }
            Backend::Local(_) => Err(Error::Missing("a store directory keeps no other host's audit log".into())),
        }
    }

    /// Whether this cluster store lost its hold on the vault for good (its
    /// lease lapsed, or its key was deleted or replaced): nothing it
    /// writes is stored any more. Never for a store directory.
    pub fn hold_lost(&self) -> bool {
        matches!(&self.backend, Backend::Cluster(c) if c.hold_lost())
    }

    /// At a close that followed writes: a cluster vault's holder commits
    /// now if a reader is mounted, so that the reader's next open sees what
    /// was closed (close-to-open across hosts). Nothing otherwise.
    pub fn publish(&self) -> Result<()> {
        match &self.backend {
            Backend::Cluster(c) => c.publish(),
            Backend::Local(_) => Ok(()),
        }
    }

    /// On a read-only mount of a cluster vault: returns once what it
    /// keeps in memory of the holder's keys holds every change committed
    /// before the call (or memory stops answering until it does), so that
    /// an open or lookup sees what the holder closed before it. Nothing
    /// for any other store.
    pub fn catch_up(&self) -> Result<()> {
        match &self.backend {
            Backend::Cluster(c) => c.catch_up(),
            Backend::Local(_) => Ok(()),
        }
    }

    /// On a read-only mount of a cluster vault: `told` hears of every
    /// change of a directory entry the watch brings, before a catch-up
    /// returns past it. Nothing for any other store (nothing changes
    /// names but this process).
    pub fn on_entries_heard(&self, told: EntriesHeard) {
        if let Backend::Cluster(c) = &self.backend {
            c.on_entries_heard(told);
        }
    }

    /// Cluster vaults: the locks other mounted processes published for
    /// inode `ino`, and a token for `claim_host_locks` (cluster/locks.rs).
    pub fn host_locks(&self, ino: u64) -> Result<(Vec<Vec<u8>>, i64)> {
        self.cluster("file locks across hosts")?.host_locks(ino)
    }

    /// Publishes this process's locks on `ino` (None: none) unless another
    /// process took more since `token` (then what the others hold now).
    pub fn claim_host_locks(&self, ino: u64, token: i64, value: Option<Vec<u8>>) -> Result<LockClaim> {
        self.cluster("file locks across hosts")?.claim_host_locks(ino, token, value)
    }

    /// Publishes this process's locks on `ino` after they shrank.
    pub fn set_host_locks(&self, ino: u64, value: Option<Vec<u8>>) -> Result<()> {
        self.cluster("file locks across hosts")?.set_host_locks(ino, value)
    }

    /// Publishes this process's open `id` as waiting for approval
    /// (cluster/approvals.rs).
    pub fn publish_waiting_open(&self, id: u64, value: Vec<u8>) -> Result<()> {
        self.cluster("approvals across hosts")?.publish_waiting_open(id, value)
    }

    /// Removes this process's waiting open `id`, and a decision on it.
    pub fn withdraw_waiting_open(&self, id: u64) -> Result<()> {
        self.cluster("approvals across hosts")?.withdraw_waiting_open(id)
    }

    /// Another host's decision on this process's open `id`, if made.
    pub fn decision_on(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.cluster("approvals across hosts")?.decision_on(id)
    }

    /// Every open waiting for approval on any host's mount.
    pub fn waiting_opens(&self) -> Result<Vec<WaitingOpen>> {
        self.cluster("approvals across hosts")?.waiting_opens()
    }

    /// Decides `lease`'s waiting open `id` (created at `created`) unless it
    /// no longer waits or was decided: whether the decision was stored.
    pub fn decide_waiting_open(&self, lease: i64, id: u64, created: i64, value: Vec<u8>) -> Result<bool> {
        self.cluster("approvals across hosts")?.decide_waiting_open(lease, id, created, value)
    }

    /// When an open at `level` was last approved on any host of a cluster
    /// vault (a sealed value), for the cooldown.
    pub fn last_approval(&self, level: u8) -> Result<Option<Vec<u8>>> {
        self.cluster("approvals across hosts")?.last_approval(level)
    }

    /// Notes the last approval at `level` for every host.
    pub fn set_last_approval(&self, level: u8, value: Vec<u8>) -> Result<()> {
        self.cluster("approvals across hosts")?.set_last_approval(level, value)
    }

    /// The etcd lease of this process (cluster vaults; 0 otherwise).
    pub fn lease_id(&self) -> i64 {
        self.cluster("leases").map_or(0, |c| c.lease_id())
    }

    fn cluster(&self, what: &str) -> Result<&cluster::Cluster> {
        match &self.backend {
            Backend::Cluster(c) => Ok(c),
            Backend::Local(_) => Err(Error::Unusable(format!("{what}: only a cluster vault has them"))),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        each!(self, b => b.get(key))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        each!(self, b => b.contains(key))
    }

    /// As `get`, for a key that another host's mount of a cluster vault
    /// may have written: never from a cache.
    pub fn get_fresh(&self, key: &[u8]) -> Result<Option<Value>> {
        match &self.backend {
            Backend::Local(l) => l.get(key),
            Backend::Cluster(c) => c.get_fresh(key),
        }
    }

    /// Writes one key outside a batch (used only for the inode counter and the
    /// header, whose single-key writes are atomic on their own).
    pub fn put(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        let mut b = Batch::default();
        b.put(key, value);
        self.apply(b)
    }

    /// Chooses when applied batches become durable.
    pub fn set_durability(&self, d: Durability) -> Result<()> {
        each!(self, b => b.set_durability(d))
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn durability(&self) -> Durability {
        each!(self, b => b.durability())
    }

    /// Commits the committer thread has made so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn group_commits(&self) -> u64 {
        each!(self, b => b.group_commits())
    }

    /// Requests this process sent etcd for a cluster vault (0 for a
    /// directory): what memory saved is what a test counts.
    #[cfg(any(test, feature = "internals"))]
    pub fn etcd_requests(&self) -> u64 {
        match &self.backend {
            Backend::Cluster(c) => c.etcd_requests(),
            Backend::Local(_) => 0,
        }
    }

    /// Shared hold on the gate for one write.
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        // The gate guards no data: a panic while it was held changes nothing.
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies all operations of `batch` atomically, in order. Under
    /// `Durability::EachBatch` it is durable when this returns; under
    /// `Grouped` every read sees it at once, and the disk has it after the
    /// next commit or `flush`.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let _gate = self.writing();
        each!(self, b => b.apply(batch))
    }

    /// Appends `bytes` as one record run (the block layer's records);
    /// durable before any batch applied after this returns.
    pub fn append_record(&self, bytes: &[u8]) -> Result<Location> {
        each!(self, b => b.append_record(bytes))
    }

    /// Reads `buf.len()` bytes of record data at `at`.
    pub fn read_record(&self, at: Location, buf: &mut [u8]) -> Result<()> {
        each!(self, b => b.read_record(at, buf))
    }

    /// The first SEGMENT_HEADER_LEN bytes of segment `id` (fsck).
    pub fn segment_header(&self, id: u64) -> Result<[u8; SEGMENT_HEADER_LEN as usize]> {
        each!(self, b => b.segment_header(id))
    }

    /// Every segment as (number, bytes), and the one appends go to (a
    /// cluster store has none: every object is written whole).
    pub fn segments(&self) -> Result<(Vec<(u64, u64)>, u64)> {
        each!(self, b => b.segments())
    }

    /// Deletes a collected segment. Waits while a frozen view may read it;
    /// the caller has made the batches that moved its records durable.
    pub fn remove_segment(&self, id: u64) -> Result<()> {
        let _gate = self.writing();
        each!(self, b => b.remove_segment(id))
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Entries<'_> {
        match &self.backend {
            Backend::Local(l) => Box::new(l.scan_prefix(prefix)),
            Backend::Cluster(c) => Box::new(c.scan_prefix(prefix)),
        }
    }

    /// The greatest key starting with `prefix`, if any.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        each!(self, b => b.last_key_with_prefix(prefix))
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Entries<'_> {
        match &self.backend {
            Backend::Local(l) => Box::new(l.range(from, to)),
            Backend::Cluster(c) => Box::new(c.range(from, to)),
        }
    }

    /// The entry with the smallest key `from <= key < to`, if any.
    pub fn first_in(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Value)>> {
        each!(self, b => b.first_in(from, to))
    }

    /// The greatest key with `from <= key < to`, if any.
    pub fn last_key_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        each!(self, b => b.last_key_in(from, to))
    }

    /// Keys only, `from <= key < to`.
    #[cfg(any(test, feature = "internals"))]
    pub fn range_keys(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.range(from, to).map(|r| r.map(|(k, _)| k))
    }

    /// Every entry, in key order (fsck, backup, tests).
    pub fn iter(&self) -> Entries<'_> {
        match &self.backend {
            Backend::Local(l) => Box::new(l.iter()),
            Backend::Cluster(c) => Box::new(c.iter()),
        }
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
        *self.freezer.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current().id());
        self.frozen.store(true, Ordering::SeqCst);
        // Best effort: a failed hand-over leaves the overlay in place, and
        // the view's reads merge it anyway.
        if let Backend::Local(l) = &self.backend
            && let Err(e) = l.drain()
        {
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

    /// Waits until no frozen view holds the store: at once if none does, or
    /// if the caller is the thread holding it (which would wait forever).
    pub fn wait_unfrozen(&self) {
        let me = Some(std::thread::current().id());
        if self.is_frozen() && *self.freezer.lock().unwrap_or_else(|p| p.into_inner()) != me {
            drop(self.writing());
        }
    }

    /// Makes everything applied so far durable (fsync, unmount). Needs no
    /// gate: it changes nothing a frozen view could see.
    pub fn flush(&self) -> Result<()> {
        each!(self, b => b.flush())
    }

    /// Sets the page cache's size while open (`memory.rs`). A cluster
    /// store's read cache has a fixed bound of its own: nothing to set.
    pub fn set_cache_capacity(&self, bytes: u64) {
        if let Backend::Local(l) = &self.backend {
            l.set_cache_capacity(bytes);
        }
    }

    /// The page cache's capacity now (None: a cluster store, whose read
    /// cache has a fixed bound).
    pub fn cache_capacity(&self) -> Option<u64> {
        match &self.backend {
            Backend::Local(l) => Some(l.cache_capacity()),
            Backend::Cluster(_) => None,
        }
    }

    /// Bytes the store occupies on disk (a cluster store: its objects).
    #[cfg(any(test, feature = "internals"))]
    pub fn size_on_disk(&self) -> Result<u64> {
        each!(self, b => b.size_on_disk())
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
        *self.store.freezer.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
    pub fn iter(&self) -> Entries<'_> {
        self.store.iter()
    }
}

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
