//! The vault: the only composer of the layers below. `Vault<Locked>` can only
//! be unlocked; `Vault<Unlocked>` offers the filesystem operations the FUSE
//! adapter calls. Thread-safe: clone it into every worker.

mod access;
mod admin;
mod anchor;
mod approval;
mod approval_board;
mod audit;
mod content;
mod enforce;
mod error;
mod factors;
mod filelocks;
mod gc;
mod keyring;
mod levels;
mod locks;
mod namespace;
mod node;
mod rules;
mod snapshot;
mod types;
mod wide_policy;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use crate::format::TombstoneRecord;
pub use crate::store::{Durability, EntriesHeard, Heard};
pub use access::{Access, AttrChange, MAY_EXEC, MAY_READ, MAY_WRITE, OwnerMap, Who};
pub use admin::archive::{ArchiveMade, Cut, compact_if_due, compact_store};
pub use admin::enroll::{FactorKind, SlotInfo};
pub use admin::escrow::EscrowSplit;
pub use admin::fsck::{
    AuditReport, Counts, FsckOptions, FsckReport, FsckStatus, HostAuditReport, LevelAccess, LevelReport,
    Problem, ProblemKind, RepairState, Tally,
};
pub use admin::rotate::RotateReport;
pub use admin::salvage::{SalvageReport, describe_key, salvage};
pub use admin::succession::{Claimed, SuccessionChange, WillInfo};
pub use anchor::{ANCHOR_EVERY, Anchoring, Anchors, TPM_ANCHOR_EVERY, Witness};
pub use approval::{ApprovalRules, OpenRequest, PendingOpen, rules_from};
pub use audit::{AuditOp, COMMIT_EVERY, Record};
pub use enforce::{ExportState, SecretSeen, Upkeep};
pub use error::{Error, ErrorKind, Result};
pub use factors::{FIDO2_RP_ID, FactorAccess};
pub use filelocks::{Holder as LockHolder, Kind as LockKind, Outcome as LockOutcome, Request as LockRequest};
pub use keyring::FactorSecrets;
pub use levels::LevelState;
pub use namespace::Remover;
pub use rules::{LEVEL_RULES, LevelRules, rules};
pub use snapshot::Snapshot;
pub use types::*;

use crate::crypto::{Passphrase, SigningKey};
use crate::format::{Header, InodeRecord, keys};
use crate::meta::{self, MetaKeys, VAULT_LEVEL};
use crate::store::{Address, Batch, ClusterAddress, DataAddress, Store};
use audit::Ticket;
use error::err;
use locks::LockTable;

/// Type-state: a vault whose keys are not loaded.
pub struct Locked {
    dir: PathBuf,
    store: Store,
    header: Header,
}

/// Type-state: a vault whose keys are loaded (shared between threads).
pub struct Unlocked {
    core: Arc<Core>,
    /// Set on the vault `audited` hands to an operation: the record of the
    /// access, for the batch that carries the operation's change.
    ticket: Option<Ticket>,
}

/// A clone shares the keys and the store, never a ticket: a record rides in
/// exactly one batch.
impl Clone for Unlocked {
    fn clone(&self) -> Self {
        Unlocked { core: Arc::clone(&self.core), ticket: None }
    }
}

#[derive(Clone)]
pub struct Vault<S>(S);

struct Core {
    dir: PathBuf,
    store: Store,
    /// What never changes while unlocked, copied out of the header.
    vault_id: [u8; 16],
    block_size: u32,
    /// The key header as last written: its slots change while mounted
    /// (`passwd` through the control socket), so it is read, never kept.
    header: RwLock<Arc<Header>>,
    keys: keyring::Keyring,
    locks: LockTable,
    /// File locks of this host's processes on a cluster vault (filelocks/).
    file_locks: filelocks::FileLocks,
    /// Serializes namespace changes (create, link, unlink, rename...): held
    /// only around metadata work, never around content-block crypto.
    namespace: Mutex<()>,
    inode_alloc: Mutex<InodeAlloc>,
    owner_uid: u32,
    audit: crate::audit::log::Log,
    gates: levels::LevelGates,
    approvals: approval::Approvals,
    enforce: enforce::Enforcement,
    /// The vault's policy, on a cluster vault (wide_policy.rs).
    vault_policy: wide_policy::VaultPolicyState,
    /// Block versions and segment garbage hints (block::Space).
    space: crate::block::Space,
    /// The rollback anchor in the TPM, for a vault with a TPM factor
    /// mounted with its TPM (anchor.rs).
    tpm_anchor: Option<anchor::TpmAnchor>,
    /// What monitoring sees (docs/ADMIN.md, "Metrics and health").
    metrics: Arc<crate::metrics::Metrics>,
    /// A change to the file system (not only records) was applied since
    /// the last `publish`: a close then has something to show other hosts.
    changed: std::sync::atomic::AtomicBool,
    /// One `publish` at a time: a close that finds `changed` cleared by
    /// another close must not return before that close's commit, which
    /// may hold its changes, is done.
    publishing: Mutex<()>,
}

/// Inode numbers are never reused: the persisted counter is reserved ahead in
/// steps, so it only ever grows even when batches land out of order.
struct InodeAlloc {
    next: u64,
    reserved: u64,
}

const INODE_RESERVE_STEP: u64 = 1024;

impl Vault<Locked> {
    /// Creates a new vault in `dir` (which must not hold one) and leaves it closed.
    pub fn init(dir: &Path, pass: &Passphrase, opts: InitOptions) -> Result<()> {
        if Address::is_cluster(dir) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: a cluster vault is created with its object store (--data s3://...)",
                    dir.display()
                ),
            ));
        }
        if Store::exists(dir) {
            return Err(err(
                ErrorKind::VaultExists,
                format!("{} already holds a vault; refusing to overwrite it", dir.display()),
            ));
        }
        let first = Self::first_batch(pass, opts)?;
        std::fs::create_dir_all(dir).map_err(|e| err(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
        let store = Store::open(dir, true)?;
        store.apply(first)?;
        store.flush()?;
        Ok(())
    }

    /// Creates the cluster vault `at` (which etcd must not hold yet), its
    /// records to go to `data`, and leaves it closed (docs/CLUSTER.md).
    pub fn init_cluster(
        at: &ClusterAddress,
        data: &DataAddress,
        pass: &Passphrase,
        opts: InitOptions,
    ) -> Result<()> {
        let first = Self::first_batch(pass, opts)?;
        let store = Store::create_cluster(at, data)?;
        if let Err(e) = store.apply(first) {
            // A name taken with no header in it would refuse the next init
            // ("already holds a vault") and open as no vault: give it back.
            if let Err(d) = store.discard_cluster() {
                tracing::warn!("{at}: removing the vault whose first write failed: {d}");
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// What a new vault's store starts with: the header, the root and level
    /// directories, the inode counter.
    fn first_batch(pass: &Passphrase, opts: InitOptions) -> Result<Batch> {
        if pass.is_empty() {
            return Err(err(ErrorKind::InvalidArgument, "empty passphrase"));
        }
        let header = keyring::new_header(pass, opts.kdf, opts.block_size)?;
        let ring = keyring::unlock(pass, &header)?;
        let mut batch =
            fixed_dirs(&ring, &header, &(0..=LEVEL_COUNT as u64).map(|i| i + ROOT_INO).collect::<Vec<_>>())?;
        batch.put(keys::INODE_COUNTER, FIRST_USER_INO.to_be_bytes().to_vec());
        batch.put(keys::HEADER, header.encode());
        Ok(batch)
    }

    /// Opens the vault in `dir` and checks its header's format (not its keys).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, crate::store::DEFAULT_CACHE_BYTES)
    }

    /// As `open`, with the store's cache capped at `cache_bytes` (the mount's `-o cache=MIB`).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        if !Store::exists(dir) {
            return Err(err(ErrorKind::NotFound, format!("{} holds no vault", dir.display())));
        }
        Self::open_store(dir, Store::open_with_cache(dir, false, cache_bytes)?)
    }

    /// Opens the cluster vault at `dir` read-only, as host `host`, beside
    /// the process that holds it (docs/CLUSTER.md, "Read-only mounts on
    /// other hosts"): it reads what the holder committed and keeps its own
    /// audit log of what it was asked for.
    pub fn open_reader(dir: &Path, host: &str) -> Result<Self> {
        Self::open_store(dir, Store::open_reader(dir, host, keys::AUDIT_KINDS, keys::VAULT_WIDE_KINDS)?)
    }

    /// Opens the cluster vault at `dir` as a mount on `host` that shares
    /// writing with other hosts' (docs/CLUSTER.md, "Several hosts writing").
    pub fn open_writer(dir: &Path, host: &str) -> Result<Self> {
        Self::open_store(dir, Store::open_writer(dir, host, keys::AUDIT_KINDS, keys::VAULT_WIDE_KINDS)?)
    }

    fn open_store(dir: &Path, store: Store) -> Result<Self> {
        // A cluster vault's local files (control socket, exports) live in
        // its state directory.
        let dir = Address::of(dir)?.local_dir();
        if store.is_cluster() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| err(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
        }
        let raw =
            store.get(keys::HEADER)?.ok_or_else(|| err(ErrorKind::Corrupt, "vault header is missing"))?;
        let header = Header::decode(&raw)?;
        Ok(Vault(Locked { dir, store, header }))
    }

    pub fn header(&self) -> &Header {
        &self.0.header
    }

    /// Derives the keys from `pass`. Wrong passphrase: `ErrorKind::WrongPassphrase`, nothing changed.
    pub fn unlock(self, pass: &Passphrase) -> Result<Vault<Unlocked>> {
        self.unlock_anchored(pass, &Anchors::default())
    }

    /// `unlock`, refusing (before anything is written) a store whose audit
    /// log does not hold the tree of one of `anchors` (see `anchor::check_all`).
    pub fn unlock_anchored(self, pass: &Passphrase, anchors: &Anchors) -> Result<Vault<Unlocked>> {
        let Locked { dir, store, header } = self.0;
        // Records of a level in rotation are under two keys: finish first.
        if let Some(level) = admin::rotate::pending_rotations(&store)?.first() {
            return Err(err(
                ErrorKind::RotationPending,
                format!(
                    "the key rotation of level {level} was interrupted; finish it with \
                     `vaultfs rotate {} --level {level}` before mounting",
                    dir.display()
                ),
            ));
        }
        let master = keyring::master_key(pass, &header)?;
        let keys = keyring::unlock_with_master(&master, &header)?;
        let counter = match store.get(keys::INODE_COUNTER)? {
            Some(v) => u64::from_be_bytes(
                v[..].try_into().map_err(|_| err(ErrorKind::Corrupt, "inode counter has a bad length"))?,
            ),
            None => return Err(err(ErrorKind::Corrupt, "inode counter is missing")),
        };
        // Never hand out a number that is in use, even if the (unauthenticated)
        // counter was rolled back: start past the highest number any key
        // holds (an inode, or what a lost inode left: blocks, xattrs, a marker).
        let mut highest = 0;
        for kind in [keys::INODE, keys::ORPHAN, keys::BLOCK, keys::XATTR] {
            let last = store.last_key_with_prefix(&[kind])?.and_then(|k| keys::ino_of(&k));
            highest = highest.max(last.unwrap_or(0));
        }
        let counter = counter.max(highest.saturating_add(1));
        let audit = keys.open_log(&store, header.vault_id)?;
        let reader = store.reader_host().is_some();
        // The anchors hold the vault's own log's checkpoints, which only its
        // holder keeps moving; a reader's log is its own.
        let (tpm_anchor, accepted) = match reader {
            false => anchor::check_all(anchors, &audit, &store, &header, &master)?,
            true if anchors.witness.is_some() || anchors.reanchor => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "rollback anchors (-o witness, -o reanchor) are kept by the mount that holds the vault, \
                     not by a read-only one",
                ));
            }
            true => (None, None),
        };
        let header = mark_features(&store, &audit, &master, header)?;
        let header = match &tpm_anchor {
            Some(t) => anchor::establish(t, &store, &audit, &master, header)?,
            None => header,
        };
        drop(master);
        let space = crate::block::Space::load(&store)?;
        let core = Core {
            dir,
            store,
            vault_id: header.vault_id,
            block_size: header.block_size,
            header: RwLock::new(Arc::new(header)),
            keys,
            locks: LockTable::new(),
            file_locks: Default::default(),
            namespace: Mutex::new(()),
            inode_alloc: Mutex::new(InodeAlloc { next: counter.max(FIRST_USER_INO), reserved: counter }),
            owner_uid: crate::sys::effective_uid(),
            audit,
            gates: Default::default(),
            approvals: Default::default(),
            enforce: Default::default(),
            vault_policy: Default::default(),
            space,
            tpm_anchor,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            changed: Default::default(),
            publishing: Mutex::new(()),
        };
        // What only the vault's one writer does: removing the ephemeral
        // level's files left from before (beside other writers they may be
        // theirs, and open). Collecting garbage: on a mount that shares
        // writing too, while it holds the vault (gc.rs).
        if !reader {
            core.purge_unreachable()?;
        }
        core.load_lockdown()?;
        let core = Arc::new(core);
        audit::spawn_committer(Arc::downgrade(&core));
        if !reader || core.store.shares_writes() {
            gc::spawn_collector(Arc::downgrade(&core));
        }
        let vault = Vault(Unlocked { core, ticket: None });
        let me = Caller { uid: vault.owner_uid(), gid: 0, pid: std::process::id() };
        let unlock = Record {
            who: me,
            comm: b"vaultfs".to_vec(),
            op: AuditOp::Unlock,
            level: None,
            ino: ROOT_INO,
            path: b"/".to_vec(),
            offset: 0,
            len: 0,
            note: Vec::new(),
        };
        vault.record(unlock, 0, true)?;
        if let Some(why) = accepted {
            tracing::warn!("-o reanchor: mounting a store older than its rollback anchor: {why}");
            let path = format!("reanchor: {why}").into_bytes();
            vault.record(Record::offline(AuditOp::Mount, b"vaultfs", None, ROOT_INO, path, 0), 0, true)?;
        }
        Ok(vault)
    }

    /// Whether `pass` opens this vault (and its header authenticates), without
    /// unlocking anything or writing to the store.
    pub fn check_passphrase(&self, pass: &Passphrase) -> Result<()> {
        keyring::check_passphrase(pass, &self.0.header)
    }

    /// Re-wraps the master key under `new`; the old passphrase stops working.
    pub fn change_passphrase(&mut self, old: &Passphrase, new: &Passphrase) -> Result<()> {
        let new = keyring::change_passphrase(old, new, &self.0.header)?;
        self.write_header(new, "passwd".into())
    }
}

/// Bytes of the regular files under `dir` (the store on disk), best effort.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some(if m.is_dir() { dir_bytes(&e.path()) } else { m.len() })
        })
        .sum()
}

/// Sets the segment-files and runs features on a vault written before
/// them, so that a build without them refuses the vault instead of reading
/// its block index entries as damaged blocks. Recorded in the audit log.
fn mark_features(
    store: &Store,
    audit: &crate::audit::log::Log,
    master: &crate::crypto::Key32,
    header: Header,
) -> Result<Header> {
    use crate::format::{FEATURE_RUNS, FEATURE_SEGMENTS};
    let what: &[u8] = match (header.features & FEATURE_SEGMENTS != 0, header.features & FEATURE_RUNS != 0) {
        (true, true) => return Ok(header),
        (false, _) => b"format: file blocks in segment files, runs of blocks per index entry, from now on",
        (true, false) => b"format: runs of blocks per index entry from now on",
    };
    if store.reader_host().is_some() {
        return Err(err(
            ErrorKind::InvalidArgument,
            "this vault's format is marked by its first read-write mount: mount it read-write once first",
        ));
    }
    let header = keyring::with_features(master, &header, FEATURE_SEGMENTS | FEATURE_RUNS);
    let mut batch = Batch::default();
    batch.put(keys::HEADER, header.encode());
    let record = Record::offline(AuditOp::Header, b"vaultfs", None, ROOT_INO, what.to_vec(), 0);
    audit.append_with(store, record.leaf(0), batch)?;
    store.flush()?;
    Ok(header)
}

impl Vault<Unlocked> {
    fn core(&self) -> &Core {
        &self.0.core
    }

    /// The record this vault carries for its operation's batch (see `audited`).
    fn ticket(&self) -> Option<&Ticket> {
        self.0.ticket.as_ref()
    }

    /// The key header as last written (a `passwd` while mounted replaces it).
    pub fn header(&self) -> Arc<Header> {
        self.core().header()
    }

    pub fn dir(&self) -> &Path {
        &self.core().dir
    }

    /// The audit signing key (for checkpoints).
    pub fn audit_key(&self) -> &SigningKey {
        &self.core().keys.audit
    }

    /// The counters monitoring reads (`metrics.rs`).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.core().metrics
    }

    /// The vault's own figures now, for a scrape or `.stats`.
    pub fn figures(&self) -> crate::metrics::Figures {
        let core = self.core();
        let (segments, _) = core.store.segments().unwrap_or_default();
        crate::metrics::Figures {
            audit_leaves: core.audit.size(),
            checkpoint_age: Some(core.audit.checkpoint_age().as_secs_f64()),
            pending_approvals: self.pending_opens().len() as u64,
            levels_open: std::array::from_fn(|l| core.level_open(l as u8)),
            lockdown: self.lockdown_active(),
            store_bytes: dir_bytes(&core.dir),
            segments: segments.len() as u64,
            segment_bytes: segments.iter().map(|(_, len)| len).sum(),
            segment_dead_bytes: core.space.dead().values().sum(),
            resident_bytes: crate::sys::resident_bytes().unwrap_or(0),
            page_cache_bytes: core.store.cache_capacity().unwrap_or(0),
        }
    }

    /// The uid that owns this unlocked vault (the one that mounted it).
    pub fn owner_uid(&self) -> u32 {
        self.core().owner_uid
    }

    /// Whether the vault lives in etcd and an object store (docs/CLUSTER.md).
    pub fn is_cluster(&self) -> bool {
        self.core().store.is_cluster()
    }

    /// The host name of a mount of a cluster vault beside its holder, one
    /// that reads only or one that shares writing (None: the holder, or a
    /// store directory).
    pub fn reader_host(&self) -> Option<&str> {
        self.core().store.reader_host()
    }

    /// Whether this is a mount that shares writing the cluster vault with
    /// other hosts' (docs/CLUSTER.md, "Several hosts writing").
    pub fn shares_writes(&self) -> bool {
        self.core().store.shares_writes()
    }

    /// At unmount, after the last change: a mount that shares writing
    /// lets go of the vault's hold, so that the other hosts' changes need
    /// not wait for its lease to lapse.
    pub fn release_hold(&self) -> Result<()> {
        Ok(self.core().store.release_hold()?)
    }

    /// Before an open or a lookup on a read-only mount of a cluster vault:
    /// what the holder committed before this call is what they see
    /// (close-to-open across hosts). Nothing on any other mount.
    pub fn catch_up(&self) -> Result<()> {
        Ok(self.core().store.catch_up()?)
    }

    /// On a read-only mount of a cluster vault: `told` hears of every
    /// change of a directory entry the holder makes (its store key, as
    /// `entry_key` names it), before a catch-up returns past it.
    pub fn on_entries_heard(&self, told: EntriesHeard) {
        self.core().store.on_entries_heard(told);
    }

    /// At a close after writes: what was written becomes visible to
    /// read-only mounts on other hosts before the close returns (a cluster
    /// vault's holder commits if one is mounted; nothing otherwise).
    pub fn publish(&self) -> Result<()> {
        let core = self.core();
        let _one = core.publishing.lock().unwrap_or_else(|p| p.into_inner());
        // Records alone (of reads) need not reach other hosts before a close returns.
        if !core.changed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let published = core.store.publish();
        if published.is_err() {
            // Still to show: the next close tries again.
            core.changed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(published?)
    }

    /// Makes every operation applied so far durable (fsync), audit records included.
    pub fn sync(&self) -> Result<()> {
        Ok(self.core().audit.make_durable(&self.core().store)?)
    }

    /// When changes become durable: each before its reply (`-o sync`), or
    /// in groups within the commit interval (the mount's default).
    pub fn set_durability(&self, d: Durability) -> Result<()> {
        Ok(self.core().store.set_durability(d)?)
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let core = self.core();
        let space =
            crate::sys::fs_space(&core.dir).map_err(|e| err(ErrorKind::Io, format!("statfs: {e}")))?;
        let bs = core.block_size as u64;
        let scale = |n: u64| n.saturating_mul(space.block_size) / bs;
        let used = core.inode_alloc.lock().unwrap_or_else(|p| p.into_inner()).next;
        Ok(StatFs {
            block_size: core.block_size,
            blocks: scale(space.blocks),
            blocks_free: scale(space.blocks_free),
            blocks_avail: scale(space.blocks_avail),
            files: used + (1 << 32),
            files_free: 1 << 32,
            name_max: crate::format::MAX_NAME_LEN as u32,
        })
    }
}

impl Core {
    fn vault_id(&self) -> &[u8; 16] {
        &self.vault_id
    }

    /// The key header as last written.
    fn header(&self) -> Arc<Header> {
        Arc::clone(&self.header.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The metadata keys for inodes stored with level byte `level`.
    fn meta_keys(&self, level: u8) -> Result<Arc<MetaKeys>> {
        if level == VAULT_LEVEL {
            return Ok(self.keys.vault_meta.clone());
        }
        let levels = self.keys.levels.read().unwrap_or_else(|p| p.into_inner());
        levels
            .get(level as usize)
            .and_then(Option::clone)
            .ok_or_else(|| err(ErrorKind::AccessDenied, format!("level {level} is locked")))
    }

    fn alloc_ino(&self) -> Result<u64> {
        let mut a = self.inode_alloc.lock().unwrap_or_else(|p| p.into_inner());
        if a.next >= a.reserved {
            // Other hosts writing the vault reserve from the same counter:
            // past what they reserved (under the operation's hold, so no
            // one moves it meanwhile).
            if self.store.shares_writes() {
                let stored = self.store.get(keys::INODE_COUNTER)?.and_then(|v| v[..].try_into().ok());
                a.next = a.next.max(stored.map_or(0, u64::from_be_bytes));
            }
            let reserved = a.next + INODE_RESERVE_STEP;
            self.store.put(keys::INODE_COUNTER, reserved.to_be_bytes().to_vec())?;
            a.reserved = reserved;
        }
        let ino = a.next;
        a.next += 1;
        Ok(ino)
    }

    /// Removes what no one can reach after a restart: level-0 content (its key
    /// died with the last mount) and orphans (unlinked while open, then crashed).
    fn purge_unreachable(&self) -> Result<()> {
        let mut batch = Batch::default();
        let mut purged = std::collections::BTreeSet::new();
        for entry in self.store.scan_prefix(&[keys::INODE]) {
            let (k, v) = entry?;
            let Some(ino) = keys::ino_of(&k) else { continue };
            if ino < FIRST_USER_INO || !rules(meta::inode_level(&v)).ephemeral {
                continue;
            }
            // The level byte is not authenticated until the record is opened:
            // never destroy a record of another level relabelled 0 on an
            // attacker's behalf; leave it to fail authentication when used.
            if self.opens_under_another_level(ino, &v) {
                tracing::warn!("inode {ino} is labelled level 0 but sealed under another level: not purged");
                continue;
            }
            self.delete_inode_data(ino, &mut batch)?;
            purged.insert(ino);
        }
        for entry in self.store.scan_prefix(&[keys::ORPHAN]) {
            let (k, _) = entry?;
            let Some(ino) = keys::ino_of(&k) else { continue };
            if purged.contains(&ino) {
                continue;
            }
            // Only an authenticated record with no links left is deleted; a
            // marker is no more trustworthy than any other unsealed byte.
            match self.load(ino) {
                Ok(node) if node.rec.nlink == 0 && node.sealed_level != VAULT_LEVEL => {
                    self.delete_inode_data(ino, &mut batch)?;
                }
                Ok(_) => {
                    tracing::warn!("orphan marker on linked inode {ino}: marker removed, inode kept");
                    batch.delete(k);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => batch.delete(k),
                Err(e) => tracing::warn!("orphan inode {ino} left in place: {e}"),
            }
        }
        for entry in self.store.scan_prefix(&[keys::DIRENT, 0]) {
            batch.delete(entry?.0);
        }
        let level0 = level_dir(0);
        let mut dir = self.load(level0)?;
        if dir.rec.nlink != 2 {
            dir.rec.nlink = 2;
            batch.put(&keys::inode(level0)[..], self.seal(&dir)?);
        }
        if !batch.is_empty() {
            self.store.apply(batch)?;
        }
        Ok(())
    }

    /// Whether a record labelled level 0 authenticates under a stored level's keys.
    fn opens_under_another_level(&self, ino: u64, value: &[u8]) -> bool {
        (1..LEVEL_COUNT).chain([VAULT_LEVEL]).any(|level| {
            let Ok(mk) = self.meta_keys(level) else { return false };
            let mut relabelled = value.to_vec();
            relabelled[0] = level;
            mk.open_inode(self.vault_id(), ino, &relabelled).is_ok()
        })
    }

    /// Deletes an inode's record, blocks, xattrs and orphan marker.
    fn delete_inode_data(&self, ino: u64, batch: &mut Batch) -> Result<()> {
        batch.delete(&keys::inode(ino)[..]);
        batch.delete(&keys::orphan(ino)[..]);
        for prefix in [keys::block_prefix(ino), keys::xattr_prefix(ino)] {
            for entry in self.store.scan_prefix(&prefix) {
                batch.delete(entry?.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// The root (`ROOT_INO`) and level directories among `inos`, as `init`
/// makes them (owned by this process's uid and gid), sealed into a batch:
/// `init` makes all seven; `salvage` remakes the ones a damaged store lost.
fn fixed_dirs(ring: &keyring::Keyring, header: &Header, inos: &[u64]) -> Result<Batch> {
    let mut batch = Batch::default();
    let (uid, gid) = (crate::sys::effective_uid(), crate::sys::effective_gid());
    let now = Timestamp::now();
    for &ino in inos {
        let (perm, nlink) = match ino {
            ROOT_INO => (0o755, 2 + LEVEL_COUNT as u32),
            i if (level_dir(0)..=level_dir(1)).contains(&i) => (0o755, 2),
            i if (level_dir(2)..=level_dir(LEVEL_COUNT - 1)).contains(&i) => (0o700, 2),
            _ => continue,
        };
        let rec = InodeRecord {
            kind: FileKind::Dir,
            perm,
            uid,
            gid,
            nlink,
            rdev: 0,
            size: 0,
            blocks: 0,
            generation: u64::from_be_bytes(crate::crypto::random_array()?),
            parent: ROOT_INO,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            flags: 0,
            file_key: crate::format::RawKey(crate::crypto::random_array()?),
            symlink: Vec::new(),
        };
        batch.put(&keys::inode(ino)[..], ring.vault_meta.seal_inode(&header.vault_id, ino, &rec)?);
    }
    Ok(batch)
}
