//! The cluster store: the store's keys and values in etcd, its records
//! (sealed blocks) as objects in an S3 bucket (docs/CLUSTER.md, and
//! docs/FORMAT.md section 9 for the layout).
//!
//! In etcd, under `vaultfs/VAULT/`:
//! - `data`: where the records live (`s3://HOST[:PORT]/BUCKET`); its
//!   presence is the vault's;
//! - `holder`: `HOST PID` of the process that has the vault open, bound to
//!   that process's lease;
//! - `objects`: object numbers below it may be in use (8-byte big-endian);
//! - `k/` followed by a store key: that key's value;
//! - `locks/INO/`: what each mounted process's host holds of a file's
//!   locks (locks.rs);
//! - `readers-seen`: the revision up to which the holder has seen every
//!   reader's key, and publishes for them (readers.rs).
//!
//! One process holds a vault at a time. Every write is a transaction
//! guarded by the holder key's creation revision, so a process that lost
//! its lease (etcd unreachable for longer than the lease, or the process
//! paused) cannot write after another took the vault over: its writes
//! fail instead of diverging.
//!
//! Beside it, any number of readers (read-only mounts, one per host) read
//! the vault's keys as the holder commits them, never from memory, and
//! write only their own audit log: keys of the kinds the vault names
//! (`Role::Reader`) live under `hosts/HOST/k/`, guarded by the reader's
//! own leased key `readers/HOST`.
//!
//! Records are objects `VAULT/seg/NUMBER` (16 hex digits): a segment
//! header and records back to back, each object written whole before any
//! batch that points into it, so the block layer's locations, headers and
//! collection are those of segment files. Under grouped durability
//! (group.rs) an object gathers the records of many writes and a commit
//! stores it, then writes the batches gathered meanwhile as one
//! transaction; otherwise each record run is an object and each batch a
//! transaction of its own.

mod approvals;
mod cache;
mod etcd;
mod follow;
mod group;
mod handover;
mod locks;
mod readers;
mod readahead;
mod s3;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use self::cache::ReadCache;
use self::etcd::{Background, Etcd, Guard, Kv, LeaseState, Op};
use self::follow::Follower;
pub use self::approvals::WaitingOpen;
pub use self::handover::HoldGuard;
pub use self::locks::LockClaim;
#[cfg(feature = "internals")]
pub use self::etcd::HOLD_WATCH_WHILE;
use self::group::{Committer, Group};
use self::readahead::Readahead;
use self::s3::Objects;
use super::overlay::Merged;
use super::segments::{Location, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, parse_name};
use crate::format::keys;

use super::{Batch, ClusterAddress, DataAddress, Durability, EntriesHeard, Error, Result, Value, prefix_end};

/// How long the holder's lease lasts without renewal: a host that dies
/// releases the vault after this; one cut off from etcd stops writing.
const LEASE_SECONDS: i64 = 5;
/// How long an open waits for the vault while another holder has it (a
/// holder that just died frees it within LEASE_SECONDS).
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(LEASE_SECONDS as u64 + 3);
/// Object numbers reserved per transaction.
const OBJECT_RESERVE: u64 = 4096;
/// Keys per range request while scanning.
const PAGE: i64 = 512;
/// The transaction a mount tries before grouping commits: beyond etcd's
/// default limits, well inside the ones docs/CLUSTER.md asks for.
const PROBE_OPS: usize = 1000;
const PROBE_BYTES: usize = 2 << 20;
/// A scan gathers up to this many bytes of entries to keep its range as
/// known once read to its end; a larger one is not kept.
const SCAN_KEPT_BYTES: usize = 4 << 20;
/// Entries read by a lookup of the first key in a range that memory does
/// not know, kept for the lookups after it.
const FIRST_IN_PAGE: i64 = 64;
/// A point read memory misses reads up to this many of its neighbours
/// (`read_around`): a directory's entries, or the keys of the next
/// `AROUND_INODES` inode numbers.
const AROUND_ENTRIES: i64 = 256;
const AROUND_INODES: u64 = 64;
/// Values read from etcd are served from memory while the lease was
/// renewed within this: well inside the lease, so that etcd cannot have let
/// it lapse (and another host write) before this process notices.
const CACHE_WHILE_RENEWED_WITHIN: Duration = Duration::from_millis(LEASE_SECONDS as u64 * 1000 / 2);

/// How a process has a cluster vault open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The one process that writes the vault.
    Holder,
    /// A read-only mount on `host` (1-64 of `[A-Za-z0-9._-]`): keys whose
    /// first byte is in `own` (the audit log's) are its own, under
    /// `hosts/HOST/k/`; keys of the kinds in `shared` (the lockdown marker)
    /// are the vault's, which any host may write; every other key is the
    /// holder's, read, never written.
    Reader { host: String, own: &'static [u8], shared: &'static [u8] },
    /// A mount on `host` that shares writing with others (handover.rs): a
    /// reader, with keys as `Reader`'s, that takes the vault's hold for
    /// the time of each operation that changes the vault's keys.
    Writer { host: String, own: &'static [u8], shared: &'static [u8] },
    /// No hold at all: `host`'s keys of the kinds in `own` as a reader on
    /// it sees them, read-only (checking the audit logs of other hosts).
    LogOf { host: String, own: &'static [u8] },
}

/// How long a reader's catch-up waits for the watch to bring the changes
/// etcd committed before it, before it touches a key of its own to be
/// sure there are some to bring; and then how long for that touch.
const HEAR_WITHIN: Duration = Duration::from_millis(50);
const CATCH_UP_WITHIN: Duration = Duration::from_secs(1);

/// An open cluster vault, and its committer while durability is grouped.
pub struct Cluster {
    shared: Arc<Shared>,
    committer: Mutex<Option<Committer>>,
    /// `discard` removed the vault: nothing is committed at close.
    discarded: bool,
}

impl std::ops::Deref for Cluster {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What the store and its committer thread share.
pub struct Shared {
    addr: ClusterAddress,
    etcd: Etcd,
    objects: Objects,
    /// `vaultfs/VAULT/`.
    prefix: Vec<u8>,
    /// Where this process's own keys are: `prefix` for the holder, and
    /// `prefix ‖ hosts/HOST/` for a reader.
    own: Vec<u8>,
    /// Key kinds (first bytes) that are a reader's own; None: the holder.
    reader_owns: Option<&'static [u8]>,
    /// Key kinds of the holder's that a reader may write too.
    reader_shares: &'static [u8],
    /// A reader's host name.
    host: Option<String>,
    /// The key this process holds under its lease: `holder`, or a reader's
    /// `readers/HOST`.
    hold_key: Vec<u8>,
    /// That key's creation revision: every write is guarded by it.
    held_at: i64,
    /// On the holder: whether readers may be mounted, and its locks.
    ledger: Mutex<readers::Ledger>,
    /// The holder's watch of the readers' keys (readers.rs).
    readers_watch: OnceLock<Background>,
    lease: i64,
    /// The lease's renewals; `lost` is set for good once it may have
    /// lapsed: writes are refused.
    held: Arc<LeaseState>,
    _keep_alive: Option<Background>,
    /// Point reads and known ranges: of this process's own keys, served
    /// from memory while it surely holds them; of the holder's keys on a
    /// reader, while `follower` says the watch has brought every change.
    cache: Arc<ReadCache>,
    /// A reader's watch of the vault (None: the holder, or a view).
    follower: Option<Arc<Follower>>,
    _watch: Option<Background>,
    /// On a mount that shares writing: where the vault's hold is.
    handover: Option<Arc<handover::Handover>>,
    /// Object numbers: the next to use, and the end of the reserved range.
    numbers: Mutex<(u64, u64)>,
    /// The vault's objects as number -> bytes: listed from the bucket once
    /// (None: not yet, or to be listed again), then kept by this process,
    /// the only one that adds or removes them. The collector looks at them
    /// twice a second; a listing each time would be an S3 LIST of every
    /// object, paged XML, twice a second for as long as the vault is mounted.
    listed: Mutex<Option<BTreeMap<u64, u64>>>,
    /// Batches and records not yet in etcd and the bucket (grouped durability).
    group: Group,
    /// Chunks of objects read in order, kept (readahead.rs).
    readahead: Readahead,
}

/// Whether `host` may name a reader: it becomes part of etcd keys and of
/// its audit log's origin (docs/AUDIT.md), which allows no space or `+`.
fn valid_host(host: &str) -> bool {
    (1..=64).contains(&host.len()) && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Why a process that would hold the vault alone is refused.
fn shared_elsewhere(at: &ClusterAddress, writer: &str) -> Error {
    Error::Unusable(format!(
        "{at} is mounted with -o shared on {writer}: mount it with -o shared here too, \
         or unmount every such mount first"
    ))
}

/// A vault's etcd keys.
fn prefix_of(vault: &str) -> Vec<u8> {
    format!("vaultfs/{vault}/").into_bytes()
}

impl Cluster {
    /// Creates vault `at` with its records in `data`, then opens it.
    pub fn create(at: &ClusterAddress, data: &DataAddress) -> Result<Cluster> {
        let etcd = Etcd::connect(&at.endpoints)?;
        let objects = Objects::open(data)?;
        // A bucket with another vault's objects under this name would mix
        // two vaults' segment numbers.
        if let Some((name, _)) = objects.list(&format!("{}/", at.vault))?.into_iter().next() {
            return Err(Error::Unusable(format!(
                "{} already holds objects of a vault named {:?} ({name}): choose another name, or delete them",
                objects.shown(),
                at.vault
            )));
        }
        let key = [prefix_of(&at.vault), b"data".to_vec()].concat();
        let created = etcd.txn(vec![Guard::Created(key.clone(), 0)], vec![Op::Put(key, data.to_string().into_bytes())])?;
        if !created {
            return Err(Error::Exists(format!("{at} already holds a vault; refusing to overwrite it")));
        }
        drop(etcd);
        Cluster::open(at, Role::Holder)
    }

    /// Opens vault `at` as `role`, waiting up to WAIT_FOR_HOLDER for
    /// another process holding the same key (the holder's, or this host's
    /// reader's).
    pub fn open(at: &ClusterAddress, role: Role) -> Result<Cluster> {
        let etcd = Etcd::connect(&at.endpoints)?;
        let prefix = prefix_of(&at.vault);
        let key = |k: &str| [&prefix[..], k.as_bytes()].concat();
        let host = match &role {
            Role::Holder => None,
            Role::Reader { host, .. } | Role::Writer { host, .. } | Role::LogOf { host, .. } => Some(host.clone()),
        };
        if let Some(host) = &host
            && !valid_host(host)
        {
            return Err(Error::Unusable(format!(
                "{host:?} is not a host name a reader can use (1-64 of A-Z a-z 0-9 . _ -): set VAULTFS_HOST"
            )));
        }
        let (hold_key, own, reader_owns, reader_shares) = match &role {
            Role::Holder => (key("holder"), prefix.clone(), None, &[][..]),
            Role::Reader { host, own, shared } | Role::Writer { host, own, shared } => {
                (key(&format!("readers/{host}")), key(&format!("hosts/{host}/")), Some(*own), *shared)
            }
            Role::LogOf { host, own } => (Vec::new(), key(&format!("hosts/{host}/")), Some(*own), &[][..]),
        };
        let Some(data) = etcd.get(&key("data"))? else {
            return Err(Error::Missing(format!("{at}: etcd holds no vault named {:?}", at.vault)));
        };
        let data = std::str::from_utf8(&data.value)
            .ok()
            .and_then(|s| DataAddress::parse(s).ok())
            .ok_or_else(|| Error::Corrupt(format!("{at}: the object store's address in etcd is not one")))?;
        let objects = Objects::open(&data)?;
        let held = LeaseState::new();
        if hold_key.is_empty() {
            // Holds nothing: every write is refused, nothing is kept in memory.
            held.lost.store(true, Ordering::SeqCst);
            let shared =
                Shared::new(at, etcd, objects, prefix, own, (reader_owns, reader_shares, host), hold_key, 0, held, None);
            return Ok(Cluster { shared: Arc::new(shared), committer: Mutex::new(None), discarded: false });
        }
        let lease = etcd.grant(LEASE_SECONDS)?;
        // Renewed while waiting for another holder, too (that can take
        // longer than the lease lasts).
        let keep_alive = etcd.keep_alive(lease, Duration::from_secs(LEASE_SECONDS as u64), held.clone());
        let mut me = format!("{} {}", crate::sys::hostname(), std::process::id());
        if matches!(role, Role::Writer { .. }) {
            // Its `readers/HOST` key says so: no one holds the vault alone
            // while it is mounted.
            me.push_str(handover::SHARING);
        }
        let started = Instant::now();
        let held_at = loop {
            // While a mount shares writing, no process holds the vault
            // alone (one that just unmounted lets go within its lease).
            let sharing = match role {
                Role::Holder => handover::sharing_mount(&etcd, &prefix)?,
                _ => None,
            };
            let took = sharing.is_none()
                && etcd.txn(
                    vec![Guard::Created(hold_key.clone(), 0)],
                    vec![Op::PutLeased(hold_key.clone(), me.clone().into_bytes(), lease)],
                )?;
            let holder = etcd.get(&hold_key)?;
            let waited = started.elapsed() >= WAIT_FOR_HOLDER;
            match holder {
                Some(Kv { lease: l, create_revision, .. }) if took && l == lease => break create_revision,
                // Mounts that share writing pass the hold among themselves.
                Some(Kv { value, .. }) if waited && role == Role::Holder && handover::shares(&value) => {
                    drop(keep_alive);
                    etcd.revoke(lease);
                    return Err(shared_elsewhere(at, &String::from_utf8_lossy(&value)));
                }
                _ if waited && sharing.is_some() => {
                    drop(keep_alive);
                    etcd.revoke(lease);
                    return Err(shared_elsewhere(at, &sharing.unwrap_or_default()));
                }
                Some(Kv { value, .. }) if waited => {
                    drop(keep_alive);
                    etcd.revoke(lease);
                    let what = match &role {
                        Role::Holder => "a mount or a command",
                        Role::Reader { .. } | Role::Writer { .. } | Role::LogOf { .. } => {
                            "a mount beside the holder of this host's name"
                        }
                    };
                    return Err(Error::Unusable(format!(
                        "{at} is open on {} ({what}; a host that died releases it within {LEASE_SECONDS} s)",
                        String::from_utf8_lossy(&value)
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        };
        held.holding(hold_key.clone(), held_at);
        if role == Role::Holder
            && let Some(writer) = handover::sharing_mount(&etcd, &prefix)?
        {
            drop(keep_alive);
            etcd.revoke(lease);
            return Err(shared_elsewhere(at, &writer));
        }
        // A holder alone would never hand the hold over: every change here
        // would wait, then fail. A command lets go soon; a mount does not.
        while matches!(role, Role::Writer { .. })
            && let Some(alone) = etcd.get(&[&prefix[..], b"holder"].concat())?
            && !handover::shares(&alone.value)
        {
            if started.elapsed() >= WAIT_FOR_HOLDER {
                drop(keep_alive);
                etcd.revoke(lease);
                return Err(Error::Unusable(format!(
                    "{at} is held alone by {} (a mount without -o shared, or a command): \
                     unmount it, then mount with -o shared on every host that writes",
                    String::from_utf8_lossy(&alone.value)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if reader_owns.is_some() {
            // From the holder's word on: its closes commit, its locks are
            // published (readers.rs).
            if let Err(e) = readers::wait_until_seen(&etcd, &prefix, held_at) {
                drop(keep_alive);
                etcd.revoke(lease);
                return Err(e);
            }
        }
        let reader = (reader_owns, reader_shares, host);
        let mut shared =
            Shared::new(at, etcd, objects, prefix, own, reader, hold_key, held_at, held, Some((lease, keep_alive)));
        if matches!(role, Role::Writer { .. }) {
            shared.handover = Some(Arc::default());
        }
        let shared = Arc::new(shared);
        if shared.reader_owns.is_none() {
            Shared::watch_readers(&shared);
        }
        if let (Some(f), Some(h)) = (&shared.follower, &shared.handover) {
            // The watch wakes whoever waits for the hold, or is asked for it.
            let (h, holder, wants, mine) =
                (h.clone(), shared.holder_key(), shared.meta_key("wants/"), shared.wants_key());
            f.on_meta(Box::new(move |key, present| {
                if key == holder && !present {
                    h.nudge(false);
                } else if key.starts_with(&wants) && key != mine && present {
                    h.nudge(true);
                }
            }));
            Shared::hand_over_when_asked(&shared);
        }
        Ok(Cluster { shared, committer: Mutex::new(None), discarded: false })
    }

    /// The hosts whose read-only mounts keep an audit log in this vault
    /// (`hosts/HOST/`), in name order, each with whether it is mounted now
    /// (its `readers/HOST` key is there): two etcd requests per host.
    pub fn hosts_with_logs(&self) -> Result<Vec<(String, bool)>> {
        let base = self.meta_key("hosts/");
        let end = prefix_end(&base).unwrap_or_default();
        let mut hosts = Vec::new();
        let mut from = base.clone();
        while let Some(kv) = self.etcd.range(&from, &end, 1, 0, false, true)?.kvs.into_iter().next() {
            let rest = &kv.key[base.len()..];
            let name = rest.split(|&b| b == b'/').next().unwrap_or_default();
            let host = String::from_utf8(name.to_vec())
                .ok()
                .filter(|h| valid_host(h))
                .ok_or_else(|| Error::Corrupt(format!("{}: etcd key {:?} names no host", self.addr, String::from_utf8_lossy(&kv.key))))?;
            from = prefix_end(&[&base[..], name, b"/"].concat()).unwrap_or_default();
            let mounted = self.etcd.get(&self.meta_key(&format!("readers/{host}")))?.is_some();
            hosts.push((host, mounted));
        }
        Ok(hosts)
    }

    /// Chooses when applied batches become durable: each before `apply`
    /// returns, or grouped (group.rs) with a committer thread. Switching
    /// back to each batch commits what is pending first.
    pub fn set_durability(&self, d: Durability) -> Result<()> {
        let mut committer = self.committer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = committer.take() {
            c.stop();
        }
        match d.as_ms() {
            0 => {
                self.group.commit_ms.store(0, Ordering::SeqCst);
                self.commit()
            }
            ms => {
                self.check_limits()?;
                *committer = Some(Committer::start(self.shared.clone(), Duration::from_millis(ms))?);
                self.group.commit_ms.store(ms, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn durability(&self) -> Durability {
        Durability::from_ms(self.group.commit_ms.load(Ordering::SeqCst))
    }

    /// Commits that wrote a transaction so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn group_commits(&self) -> u64 {
        self.group.commits.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn etcd_requests(&self) -> u64 {
        self.etcd.requests()
    }

    /// Makes everything applied so far durable (fsync, unmount).
    pub fn flush(&self) -> Result<()> {
        self.commit()
    }

    /// Removes the whole vault, which this process holds: its objects, then
    /// every etcd key under its name (the holder key with them), dropping
    /// whatever was not committed. For a restore that failed: the vault it
    /// was writing must not stay behind half-written. On an error the rest
    /// is still tried; the first error is returned.
    pub fn discard(mut self) -> Result<()> {
        self.not_reader()?;
        if let Some(c) = self.committer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            c.stop();
        }
        self.discarded = true;
        let mut first = None;
        match self.objects.list(&format!("{}/", self.addr.vault)) {
            Ok(objects) => {
                for (name, _) in objects {
                    if let Err(e) = self.objects.delete(&name) {
                        first.get_or_insert(e);
                    }
                }
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
        let guard = Guard::Created(self.hold_key.clone(), self.held_at);
        match self.etcd.txn(vec![guard], vec![Op::DeletePrefix(self.prefix.clone())]) {
            Ok(true) => {}
            Ok(false) => {
                first.get_or_insert(self.lost_error());
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Grouped commits make large transactions. An etcd left at its own
    /// limits (128 operations, 1.5 MiB) would refuse most of them, which
    /// the user would learn only at fsync or unmount; so one transaction
    /// beyond those limits is tried first (and undone), and its refusal
    /// refuses the mount.
    fn check_limits(&self) -> Result<()> {
        let keys: Vec<Vec<u8>> = (0..PROBE_OPS).map(|i| self.own_key(&format!("probe/{i:04}"))).collect();
        let value = vec![0u8; PROBE_BYTES / PROBE_OPS];
        let puts = keys.iter().map(|k| Op::Put(k.clone(), value.clone())).collect();
        let too_small = |e: Error| match e {
            Error::Io(m) if ["too many operations", "too large", "larger than max"].iter().any(|t| m.contains(t)) => {
                Error::Unusable(format!(
                    "{}: etcd refused a transaction of {PROBE_OPS} operations and {} MiB ({m}); \
                     grouped commits need larger ones: start etcd with --max-txn-ops 100000 \
                     --max-request-bytes 33554432 (docs/CLUSTER.md), or mount with -o sync",
                    self.addr,
                    PROBE_BYTES >> 20
                ))
            }
            e => e,
        };
        self.write(puts).map_err(too_small)?;
        self.write(keys.into_iter().map(Op::Delete).collect()).map(|_| ())
    }
}

impl Shared {
    /// `reader`: the key kinds a reader owns and shares, and its host (all
    /// None or empty for the holder); `lease`: the lease and its renewals
    /// (None: a view that holds nothing).
    #[allow(clippy::too_many_arguments)]
    fn new(
        at: &ClusterAddress,
        etcd: Etcd,
        objects: Objects,
        prefix: Vec<u8>,
        own: Vec<u8>,
        reader: (Option<&'static [u8]>, &'static [u8], Option<String>),
        hold_key: Vec<u8>,
        held_at: i64,
        held: Arc<LeaseState>,
        lease: Option<(i64, Background)>,
    ) -> Shared {
        let (reader_owns, reader_shares, host) = reader;
        let (lease, keep_alive) = match lease {
            Some((id, k)) => (id, Some(k)),
            None => (0, None),
        };
        let cache = Arc::new(ReadCache::default());
        let (follower, watch) = match (reader_owns, &keep_alive) {
            (Some(own), Some(_)) => {
                let follower = Arc::new(Follower::default());
                let (f, c, keys) = (follower.clone(), cache.clone(), [&prefix[..], b"k/"].concat());
                let watch = etcd.watch(prefix.clone(), move |news| {
                    #[cfg(feature = "internals")]
                    etcd::hold_back_for_tests();
                    f.hear(news, &c, &keys, own, reader_shares)
                });
                (Some(follower), Some(watch))
            }
            _ => (None, None),
        };
        Shared {
            addr: at.clone(),
            etcd,
            objects,
            prefix,
            own,
            reader_owns,
            reader_shares,
            host,
            hold_key,
            held_at,
            ledger: Mutex::new(readers::Ledger::default()),
            readers_watch: OnceLock::new(),
            lease,
            held,
            _keep_alive: keep_alive,
            cache,
            follower,
            _watch: watch,
            handover: None,
            numbers: Mutex::new((0, 0)),
            listed: Mutex::new(None),
            group: Group::default(),
            readahead: Readahead::default(),
        }
    }

    fn meta_key(&self, k: &str) -> Vec<u8> {
        [&self.prefix[..], k.as_bytes()].concat()
    }

    /// A key of this process's own (a reader's are under `hosts/HOST/`).
    fn own_key(&self, k: &str) -> Vec<u8> {
        [&self.own[..], k.as_bytes()].concat()
    }

    /// Whether store key `k` is this process's to write (and to keep in
    /// memory): every key for the holder, a reader's own kinds for a reader.
    fn is_own(&self, k: &[u8]) -> bool {
        self.reader_owns.is_none_or(|own| k.first().is_some_and(|t| own.contains(t)))
    }

    /// Where store key `k` is in etcd: `prefix`, or a reader's own.
    fn space(&self, k: &[u8]) -> &[u8] {
        if self.reader_owns.is_some() && self.is_own(k) { &self.own } else { &self.prefix }
    }

    /// The etcd key of store key `k`.
    fn key(&self, k: &[u8]) -> Vec<u8> {
        [self.space(k), b"k/", k].concat()
    }

    /// The etcd keys bounding store keys `[from, to)` (to: None, the end of
    /// the store's keys), and how many bytes precede a store key in them.
    /// A reader reads one kind of key at a time, in the space it is in: a
    /// range is cut at the end of its first key's kind.
    fn bounds(&self, from: &[u8], to: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>, usize)> {
        let space = self.space(from);
        let base = [space, b"k/"].concat();
        let end = match (self.reader_owns, to) {
            (None, Some(to)) => [&base[..], to].concat(),
            (None, None) => prefix_end(&base).unwrap_or_default(),
            (Some(_), _) => {
                let Some(&kind) = from.first() else {
                    return Err(Error::Unusable(format!(
                        "{}: a read-only mount reads the vault one kind of key at a time (no whole-store scans: \
                         fsck and backups run where the vault is held)",
                        self.addr
                    )));
                };
                match to {
                    Some(to) if to.first() == Some(&kind) => [&base[..], to].concat(),
                    _ => prefix_end(&[&base[..], &[kind]].concat()).unwrap_or_default(),
                }
            }
        };
        Ok(([&base[..], from].concat(), end, base.len()))
    }

    /// Records appended now go into the object a commit stores.
    pub fn gathers_records(&self) -> bool {
        self.group.grouped()
    }

    pub fn address(&self) -> &ClusterAddress {
        &self.addr
    }

    /// A reader's host name (None: the holder).
    pub fn reader_host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Refuses what only the holder does.
    fn not_reader(&self) -> Result<()> {
        match self.reader_owns {
            None => Ok(()),
            Some(_) => Err(Error::Unusable(format!(
                "{}: this is a read-only mount; changes are made where the vault is held",
                self.addr
            ))),
        }
    }

    /// Refuses what only the holder does, unless this is a mount that
    /// shares writing and the calling thread's operation holds the hold.
    fn may_write_vault(&self) -> Result<()> {
        match &self.handover {
            Some(h) if h.this_thread_holds() => Ok(()),
            Some(_) => Err(Error::Unusable(format!(
                "{}: a change of the vault's keys outside an operation that holds the vault (a bug)",
                self.addr
            ))),
            None => self.not_reader(),
        }
    }

    /// Whether store key `k` is the vault's (not this process's own, nor
    /// a kind every host writes): on a mount that shares writing, written
    /// only under the hold.
    fn is_vaults(&self, k: &[u8]) -> bool {
        !self.is_own(k) && !k.first().is_some_and(|t| self.reader_shares.contains(t))
    }

    /// The guard a write of the vault's keys adds on a mount that shares
    /// writing: the holder key is still the one it created.
    fn vault_guards(&self) -> Result<Vec<Guard>> {
        match &self.handover {
            None => Ok(Vec::new()),
            Some(h) => match h.held_at() {
                Some(at) => Ok(vec![Guard::Created(self.holder_key(), at)]),
                None => Err(Error::Unusable(format!(
                    "{}: a commit of the vault's keys without the vault's hold (a bug)",
                    self.addr
                ))),
            },
        }
    }

    /// Whether this process held the vault (or its reader's key) and may
    /// have lost it: for good, nothing it writes is stored any more.
    pub fn hold_lost(&self) -> bool {
        self.lease != 0 && self.held.lost.load(Ordering::SeqCst)
    }

    /// Refuses writes once the lease may have lapsed.
    fn still_held(&self) -> Result<()> {
        match self.held.lost.load(Ordering::SeqCst) {
            false => Ok(()),
            true => Err(self.lost_error()),
        }
    }

    fn lost_error(&self) -> Error {
        Error::Unusable(format!(
            "this process no longer holds {} in etcd (its lease lapsed or another host took the vault): \
             writes are refused; unmount and mount again",
            self.addr
        ))
    }

    /// A transaction guarded by our hold on the vault; the store's
    /// revision after it.
    fn write(&self, ops: Vec<Op>) -> Result<i64> {
        self.write_guarded(Vec::new(), ops)
    }

    /// As `write`, with more guards.
    fn write_guarded(&self, mut guards: Vec<Guard>, ops: Vec<Op>) -> Result<i64> {
        self.still_held()?;
        guards.push(Guard::Created(self.hold_key.clone(), self.held_at));
        match self.etcd.txn_at(guards, ops)? {
            Some(revision) => Ok(revision),
            None => {
                self.held.lost.store(true, Ordering::SeqCst);
                Err(self.lost_error())
            }
        }
    }

    /// Whether memory may answer for store key `k`: this process's own
    /// while the cache is valid; the holder's on a reader while the watch
    /// has brought every change.
    fn cached(&self, k: &[u8]) -> bool {
        match &self.follower {
            Some(f) if !self.is_own(k) => f.answers() && !self.hold_lost(),
            _ => self.is_own(k) && self.cache_valid(),
        }
    }

    /// Whether a value of `k` that etcd returned at revision `read_at` may
    /// be kept (follow.rs: on a reader, once every change up to it was heard).
    fn may_keep(&self, k: &[u8], read_at: i64) -> bool {
        match &self.follower {
            Some(f) if !self.is_own(k) => f.may_keep(read_at),
            _ => true,
        }
    }

    /// On a read-only mount: returns once memory holds every change etcd
    /// had committed when this was called, or has stopped answering until
    /// it does (follow.rs). An open or lookup that follows sees what the
    /// holder closed before it: close-to-open across hosts. Nothing for
    /// the holder.
    pub fn catch_up(&self) -> Result<()> {
        let Some(f) = &self.follower else { return Ok(()) };
        if self.handover.as_ref().is_some_and(|h| h.held_at().is_some()) {
            // While this process holds the vault no one else changes it.
            return Ok(());
        }
        self.lease_alive()?;
        if !f.watching() {
            // Memory answers for nothing of the holder's: etcd does.
            return Ok(());
        }
        let now = self.etcd.revision(&self.prefix)?;
        if f.wait_for(now, HEAR_WITHIN) {
            return Ok(());
        }
        // Revisions of keys outside the vault (another vault in the same
        // etcd) bring no change to hear: a new revision of this reader's
        // own key does, after every change before it.
        let touched = self.write(vec![Op::Touch(self.hold_key.clone())])?;
        if !f.wait_for(touched, CATCH_UP_WITHIN) {
            tracing::debug!("etcd: the watch of the vault lags; reading from etcd until it catches up");
            f.fall_behind(touched);
        }
        Ok(())
    }

    /// The holder commits at a close for readers only while their keys are
    /// there (readers.rs), which is while their leases live: before a
    /// catch-up, this mount's lease must surely still live (renewed within
    /// half its time, so etcd cannot have let it lapse and the holder
    /// stopped committing for it unseen). Waits up to the lease's time for
    /// a renewal that is late (an etcd member failing over), then fails.
    fn lease_alive(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(LEASE_SECONDS as u64);
        while !self.held.renewed_within(CACHE_WHILE_RENEWED_WITHIN) {
            self.still_held()?;
            if Instant::now() >= until {
                return Err(Error::Io(format!(
                    "{}: this mount's etcd lease was not renewed for {LEASE_SECONDS} s: \
                     what the holder closed may not have been committed for it",
                    self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// On a reader: `told` hears of the holder's changes of directory
    /// entries (follow.rs).
    pub fn on_entries_heard(&self, told: EntriesHeard) {
        if let Some(f) = &self.follower {
            f.on_entries(told);
        }
    }

    /// Whether values in memory are still the store's: this process holds
    /// the vault alone, and surely still does.
    fn cache_valid(&self) -> bool {
        let valid = self.held.renewed_within(CACHE_WHILE_RENEWED_WITHIN);
        if !valid && self.held.lost.load(Ordering::SeqCst) {
            self.cache.clear();
        }
        valid
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        if let Some(entry) = self.group.overlay.lookup(key) {
            return Ok(entry.map(Value));
        }
        let cached = self.cached(key);
        if cached && let Some(v) = self.cache.get(key) {
            return Ok(v);
        }
        let generation = self.cache.generation();
        if cached && let Some(v) = self.read_around(key, generation)? {
            return Ok(v);
        }
        let (kv, read_at) = self.etcd.get_at(&self.key(key))?;
        let value = kv.map(|kv| Value::from(kv.value));
        if cached && self.may_keep(key, read_at) {
            self.cache.fill(generation, key, value.clone());
        }
        Ok(value)
    }

    /// A miss of a key whose neighbours are likely read next reads them in
    /// the same request and keeps them as a known range: a directory's
    /// entries (all of them, up to a page: a lookup in a directory is
    /// often followed by lookups of its other names), or the inode records
    /// and block index entries of the next inode numbers (files made
    /// together are numbered together, and read together: `ls -l`, `cp
    /// -a`, `grep -r`). Some(answer) when the page covers `key` (kept if
    /// the watch allows); None: not a key with neighbours, or past the page.
    fn read_around(&self, key: &[u8], generation: u64) -> Result<Option<Option<Value>>> {
        let (from, to, limit) = match (key.first(), keys::ino_of(key)) {
            (Some(&keys::DIRENT), _) if key.len() == keys::DIRENT_KEY_LEN => {
                let dir = &key[..keys::DIRENT_PREFIX_LEN];
                (dir.to_vec(), prefix_end(dir), AROUND_ENTRIES)
            }
            (Some(&kind @ (keys::INODE | keys::BLOCK)), Some(ino)) => {
                let next = [&[kind][..], &ino.saturating_add(AROUND_INODES).to_be_bytes()].concat();
                (key.to_vec(), Some(next), AROUND_ENTRIES)
            }
            _ => return Ok(None),
        };
        let (start, end, skip) = self.bounds(&from, to.as_deref())?;
        let page = self.etcd.range(&start, &end, limit, 0, false, false)?;
        let entries: Vec<(Vec<u8>, Value)> =
            page.kvs.into_iter().map(|kv| (kv.key[skip..].to_vec(), Value::from(kv.value))).collect();
        let known = cache::known_end(to.as_deref(), page.more, entries.last().map(|(k, _)| &k[..]));
        // The page answers for `key` even when memory may not keep it: no
        // second request for the one key.
        let covered = known.as_deref().is_none_or(|end| key < end);
        let answer = covered.then(|| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()));
        if self.may_keep(key, page.revision) {
            self.cache.fill_range(generation, &from, known.as_deref(), &entries);
        }
        Ok(answer)
    }

    /// As `get`, never from the read cache: for a key another host may
    /// have written (the lockdown marker, which readers write too).
    pub fn get_fresh(&self, key: &[u8]) -> Result<Option<Value>> {
        if let Some(entry) = self.group.overlay.lookup(key) {
            return Ok(entry.map(Value));
        }
        Ok(self.etcd.get(&self.key(key))?.map(|kv| Value::from(kv.value)))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Applies `batch` atomically: as a transaction of its own, or into the
    /// overlay for the next commit (grouped durability).
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let under_hold = self.handover.as_ref().is_some_and(|h| h.this_thread_holds());
        let writable = |k: &[u8]| under_hold || !self.is_vaults(k);
        if let Some((k, _)) = batch.ops.iter().find(|(k, _)| !writable(k)) {
            return Err(Error::Unusable(format!(
                "{}: a read-only mount cannot change key {:?}: changes are made where the vault is held",
                self.addr,
                String::from_utf8_lossy(&k[..1])
            )));
        }
        if self.group.grouped() {
            self.still_held()?;
            if self.group.must_commit_before(0) {
                self.commit()?;
            }
            self.group.overlay.insert(batch.ops);
            return Ok(());
        }
        // etcd refuses a key twice in one transaction: the batch's last
        // operation on a key is the one that counts.
        let last: BTreeMap<Vec<u8>, Option<Value>> =
            batch.ops.into_iter().map(|(k, v)| (k, v.map(Value::from))).collect();
        self.write_and_cache(&last)
    }

    /// One guarded transaction of `ops` (key -> value, None: deleted).
    fn write_and_cache(&self, ops: &BTreeMap<Vec<u8>, Option<Value>>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = ops
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Op::Put(self.key(k), v.to_vec()),
                None => Op::Delete(self.key(k)),
            })
            .collect();
        let guards = match ops.keys().any(|k| self.is_vaults(k)) {
            true => self.vault_guards()?,
            false => Vec::new(),
        };
        let written = self.write_guarded(guards, txn);
        // Applied: memory has the new values. Failed or unknown (a timeout
        // may still have applied it): memory forgets these keys. A reader's
        // write of a vault-wide key is forgotten too: the watch brings it
        // back in order with other hosts' writes of it. A mount that shares
        // writing keeps the vault's keys it wrote under the hold (no one
        // else writes them meanwhile), and the watch does not bring its
        // own older values back over them (follow.rs).
        let (own, others): (Vec<_>, Vec<_>) =
            ops.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| self.is_own(k));
        let (vaults, vault_wide): (Vec<_>, Vec<_>) = others.into_iter().partition(|(k, _)| self.is_vaults(k));
        self.cache.wrote(own, written.is_ok());
        match (&written, &self.follower) {
            (Ok(revision), Some(f)) if self.shares_writes() => {
                f.made(*revision);
                self.cache.wrote(vaults, true);
            }
            _ if !vaults.is_empty() => self.cache.wrote(vaults, false),
            _ => {}
        }
        if !vault_wide.is_empty() {
            self.cache.wrote(vault_wide, false);
        }
        written.map(|_| ())
    }

    /// Commits now if this is the holder and a reader may be mounted (a
    /// close on the holder; readers.rs: from before any reader serves):
    /// what was written and closed here is then what a reader's next open
    /// sees, as on one host. A commit that fails fails
    /// the close (EIO, as NFS reports a failed flush at close).
    pub fn publish(&self) -> Result<()> {
        // A commit in flight (the interval's) may hold this close's
        // changes: settled only once etcd has them; `commit` waits for it.
        let nothing_new = self.group.overlay.settled();
        let reads_only = self.reader_owns.is_some() && !self.shares_writes();
        if reads_only || !self.group.grouped() || nothing_new {
            return Ok(());
        }
        // A mount that shares writing always has others beside it.
        let readers = self.shares_writes() || self.ledger().readers;
        if readers { self.commit() } else { Ok(()) }
    }

    /// Stores the objects built so far, then writes the batches gathered
    /// before them as one transaction (group.rs). On failure everything
    /// stays in memory, readable, and the next commit tries again.
    fn commit(&self) -> Result<()> {
        let _one = self.group.committing();
        // At most two sets: one a failed commit left, then the pending one.
        for _ in 0..2 {
            let set = self.group.overlay.begin_drain();
            // After taking the set: every record it points at is sealed now.
            self.group.seal();
            for (id, body) in self.group.sealed() {
                self.still_held()?;
                self.put_object(id, &body)?;
                self.group.stored(id);
            }
            let Some(set) = set else { return Ok(()) };
            let ops: BTreeMap<Vec<u8>, Option<Value>> =
                set.iter().map(|(k, v)| (k.clone(), v.clone().map(Value))).collect();
            self.still_held()?;
            self.write_and_cache(&ops)?;
            self.group.overlay.end_drain();
            self.group.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The next object number, reserving more in etcd when the range is used up.
    fn next_number(&self) -> Result<u64> {
        self.may_write_vault()?;
        let mut n = self.numbers.lock().unwrap_or_else(|p| p.into_inner());
        if n.0 >= n.1 {
            let key = self.meta_key("objects");
            let (stored, rev) = match self.etcd.get(&key)? {
                Some(kv) => {
                    let v = <[u8; 8]>::try_from(&kv.value[..])
                        .map_err(|_| Error::Corrupt(format!("{}: the object counter is not 8 bytes", self.addr)))?;
                    (u64::from_be_bytes(v), kv.mod_revision)
                }
                None => (1, 0),
            };
            let end = stored
                .checked_add(OBJECT_RESERVE)
                .ok_or_else(|| Error::Corrupt(format!("{}: the object counter is exhausted", self.addr)))?;
            // Only the holder moves the counter: losing this race means
            // losing the vault.
            let mut guards = self.vault_guards()?;
            guards.push(Guard::Modified(key.clone(), rev));
            self.write_guarded(guards, vec![Op::Put(key, end.to_be_bytes().to_vec())])?;
            *n = (stored, end);
        }
        n.0 += 1;
        Ok(n.0 - 1)
    }

    fn object_name(&self, id: u64) -> String {
        format!("{}/seg/{}", self.addr.vault, super::segment_name(id))
    }

    /// Appends `bytes` as one record run: to the object being built
    /// (grouped durability), or as an object of its own, stored now.
    pub fn append_record(&self, bytes: &[u8]) -> Result<Location> {
        self.may_write_vault()?;
        self.still_held()?;
        if self.group.grouped() {
            if self.group.must_commit_before(bytes.len()) {
                self.commit()?;
            }
            return self.group.append(bytes, || self.next_number());
        }
        let id = self.next_number()?;
        let mut body = Vec::with_capacity(SEGMENT_HEADER_LEN as usize + bytes.len());
        body.extend_from_slice(SEGMENT_MAGIC);
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(bytes);
        self.put_object(id, &body)?;
        Ok(Location { segment: id, offset: SEGMENT_HEADER_LEN })
    }

    /// Stores object `id` whole, and keeps the list of objects up to date.
    fn put_object(&self, id: u64, body: &[u8]) -> Result<()> {
        let put = self.objects.put(&self.object_name(id), body);
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        match (&put, listed.as_mut()) {
            (Ok(()), Some(known)) => {
                known.insert(id, body.len() as u64);
            }
            // It may be stored or not: the next look lists the bucket.
            (Err(_), _) => *listed = None,
            (Ok(()), None) => {}
        }
        put
    }

    pub fn read_record(&self, at: Location, buf: &mut [u8]) -> Result<()> {
        if let Some(read) = self.group.read(at, buf) {
            return read;
        }
        let name = self.object_name(at.segment);
        self.readahead.read(at.segment, at.offset, buf, |offset, len| self.objects.read_upto(&name, offset, len))
    }

    pub fn segment_header(&self, id: u64) -> Result<[u8; SEGMENT_HEADER_LEN as usize]> {
        let mut h = [0; SEGMENT_HEADER_LEN as usize];
        self.objects.read(&self.object_name(id), 0, &mut h)?;
        Ok(h)
    }

    /// Every object of the vault as (number, bytes); no object takes appends.
    pub fn segments(&self) -> Result<(Vec<(u64, u64)>, u64)> {
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        if listed.is_none() {
            let prefix = format!("{}/seg/", self.addr.vault);
            let found = self
                .objects
                .list(&prefix)?
                .into_iter()
                .filter_map(|(name, size)| Some((parse_name(name.strip_prefix(&prefix)?)?, size)))
                .collect();
            *listed = Some(found);
        }
        let known = listed.as_ref().map(|l| l.iter().map(|(&id, &len)| (id, len)).collect());
        Ok((known.unwrap_or_default(), u64::MAX))
    }

    pub fn remove_segment(&self, id: u64) -> Result<()> {
        self.may_write_vault()?;
        self.still_held()?;
        let removed = self.objects.delete(&self.object_name(id));
        self.readahead.forget(id);
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        match (&removed, listed.as_mut()) {
            (Ok(()), Some(known)) => {
                known.remove(&id);
            }
            (Err(_), _) => *listed = None,
            (Ok(()), None) => {}
        }
        removed
    }

    /// Entries of `[from, to)` (to: None, the end of the store's keys).
    fn pages(&self, from: &[u8], to: Option<&[u8]>) -> Pages<'_> {
        let (next, end, skip, refused) = match self.bounds(from, to) {
            Ok((next, end, skip)) => (next, end, skip, None),
            Err(e) => (Vec::new(), Vec::new(), 0, Some(e)),
        };
        // A scan that fits one page is kept as a known range.
        let fill = self.cached(from).then(|| (self.cache.generation(), from.to_vec(), to.map(|t| t.to_vec())));
        let done = refused.is_some();
        let (gathered, gathered_bytes) = (Vec::new(), 0);
        Pages { cluster: self, next, end, skip, revision: 0, buffered: VecDeque::new(), done, refused, fill, gathered, gathered_bytes }
    }

    /// Entries of `[from, to)`, with the overlay's over them: from memory
    /// when the range is known (cache.rs), else from etcd.
    fn merged<'a>(&'a self, from: &[u8], to: Option<&[u8]>) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<'a> {
        let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
        let over = self.group.overlay.range(Bound::Included(from), hi);
        let known = if self.cached(from) { self.cache.range(from, to) } else { None };
        let backend: Box<dyn Iterator<Item = Result<(Vec<u8>, sled::IVec)>> + 'a> = match known {
            Some(entries) => Box::new(entries.into_iter().map(|(k, v)| Ok((k, v.0)))),
            None => Box::new(self.pages(from, to).map(|r| r.map(|(k, v)| (k, v.0)))),
        };
        Merged::new(over, backend).map(|r| r.map(|(k, v)| (k, Value(v))))
    }

    /// The first entry of `[from, to)` in etcd (not the overlay). A miss
    /// reads up to FIRST_IN_PAGE entries and keeps them as a known range:
    /// the lookups that follow (the next index entries of a file being
    /// read) are then answered from memory.
    fn etcd_first_in(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, sled::IVec)>> {
        let cached = self.cached(from);
        if cached && let Some(entries) = self.cache.range(from, Some(to)) {
            return Ok(entries.into_iter().next().map(|(k, v)| (k, v.0)));
        }
        let generation = self.cache.generation();
        let limit = if cached { FIRST_IN_PAGE } else { 1 };
        let (start, end, skip) = self.bounds(from, Some(to))?;
        let page = self.etcd.range(&start, &end, limit, 0, false, false)?;
        let entries: Vec<(Vec<u8>, Value)> =
            page.kvs.into_iter().map(|kv| (kv.key[skip..].to_vec(), Value::from(kv.value))).collect();
        if cached && self.may_keep(from, page.revision) {
            let end = cache::known_end(Some(to), page.more, entries.last().map(|(k, _)| &k[..]));
            self.cache.fill_range(generation, from, end.as_deref(), &entries);
        }
        Ok(entries.into_iter().next().map(|(k, v)| (k, v.0)))
    }

    pub fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<'a> {
        self.merged(prefix, prefix_end(prefix).as_deref())
    }

    pub fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + use<'a> {
        self.merged(from, Some(to))
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Value)>> + '_ {
        self.merged(b"", None)
    }

    pub fn first_in(&self, from: &[u8], to: &[u8]) -> Result<Option<(Vec<u8>, Value)>> {
        let first = self.group.overlay.first_over(from, to, |lo| self.etcd_first_in(lo, to))?;
        Ok(first.map(|(k, v)| (k, Value(v))))
    }

    pub fn last_key_in(&self, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        self.last_key(from, Some(to))
    }

    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        self.last_key(prefix, prefix_end(prefix).as_deref())
    }

    /// The greatest live key in `[from, to)` (to: None, the end of the
    /// store's keys): the overlay's, or etcd's that the overlay does not delete.
    fn last_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let (start, end, skip) = self.bounds(from, to)?;
        // etcd's keys in the range, greatest first, one request each: the
        // overlay rarely deletes more than the first.
        let mut end = Some(end);
        let down = std::iter::from_fn(|| {
            let page = match self.etcd.range(&start, &end.take()?, 1, 0, true, true) {
                Ok(page) => page,
                Err(e) => return Some(Err(e)),
            };
            let kv = page.kvs.into_iter().next()?;
            let key = kv.key[skip..].to_vec();
            end = Some(kv.key);
            Some(Ok(key))
        });
        let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
        self.group.overlay.last_key_over(Bound::Included(from), hi, down)
    }

    /// Bytes of the vault's objects.
    #[cfg(any(test, feature = "internals"))]
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.segments()?.0.iter().map(|s| s.1).sum())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = self.committer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            c.stop();
        }
        // Whatever the mode, a vault closed in order loses nothing it can
        // keep (one discarded has nothing to keep).
        if !self.discarded
            && let Err(e) = self.commit()
        {
            tracing::error!("cluster commit at close failed: {e}");
        }
        // Frees the vault for the next holder at once, not after the lease.
        if self.lease != 0 {
            self.etcd.revoke(self.lease);
        }
    }
}

/// A scan, a page of keys at a time; every page is read at the revision
/// of the first, so the scan sees one state of the store.
pub struct Pages<'a> {
    cluster: &'a Shared,
    next: Vec<u8>,
    end: Vec<u8>,
    /// Bytes before the store key in each etcd key.
    skip: usize,
    revision: i64,
    buffered: VecDeque<Kv>,
    done: bool,
    /// Why the scan cannot be made (`Shared::bounds`), returned once.
    refused: Option<Error>,
    /// The cache's generation and the range in store keys, to keep the
    /// range as known once the scan read all of it (a listing read again
    /// is then answered from memory), with the entries read so far.
    fill: Option<(u64, Vec<u8>, Option<Vec<u8>>)>,
    gathered: Vec<(Vec<u8>, Value)>,
    gathered_bytes: usize,
}

impl Iterator for Pages<'_> {
    type Item = Result<(Vec<u8>, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.refused.take() {
            return Some(Err(e));
        }
        if self.buffered.is_empty() && !self.done {
            match self.cluster.etcd.range(&self.next, &self.end, PAGE, self.revision, false, false) {
                Ok(page) => {
                    if self.fill.is_some() {
                        let skip = self.skip;
                        for kv in &page.kvs {
                            self.gathered_bytes += kv.key.len() + kv.value.len() + 64;
                            self.gathered.push((kv.key[skip..].to_vec(), Value::from(kv.value.clone())));
                        }
                        if self.gathered_bytes > SCAN_KEPT_BYTES {
                            self.fill = None;
                            self.gathered = Vec::new();
                        }
                    }
                    if !page.more
                        && let Some((generation, from, to)) = self.fill.take()
                        && self.cluster.may_keep(&from, page.revision)
                    {
                        let entries = std::mem::take(&mut self.gathered);
                        self.cluster.cache.fill_range(generation, &from, to.as_deref(), &entries);
                    }
                    self.revision = page.revision;
                    self.done = !page.more;
                    if let Some(last) = page.kvs.last() {
                        self.next = [&last.key[..], &[0]].concat();
                    }
                    self.buffered.extend(page.kvs);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let kv = self.buffered.pop_front()?;
        Some(Ok((kv.key[self.skip..].to_vec(), Value::from(kv.value))))
    }
}
