//! `vaultfs fsck`: authenticates every record of a closed vault, finds what
//! is damaged, orphaned, dangling or miscounted, and with `repair` removes
//! only what is provably orphaned, recording each repair as an audit leaf.
//! docs/ADMIN.md ("fsck") describes the checks and the report; this module
//! keeps to it.
//!
//! A closed vault is checked through `Vault<Locked>`, never running the
//! unlock path (which purges level-0 content and orphans, and appends an
//! `unlock` record): a check without `repair` writes nothing. A mounted one
//! is checked read-only on a frozen view of its store, and the check is
//! recorded. `check` reads and judges, `repair`
//! applies the fixes `check` planned; the report is plain data.

mod check;
mod repair;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto::Passphrase;
use crate::format::{Header, hex, keys};
use crate::store::Store;
use crate::vault::error::{ErrorKind, Result};
use crate::vault::keyring::{self, FactorSecrets};
use crate::vault::{AuditOp, Caller, Locked, ROOT_INO, Record, Unlocked, Vault};

/// A unit enum's stable names (JSON, audit leaves): `name()`, and serde by
/// name both ways (the report crosses the control socket of a mount).
macro_rules! named {
    ($t:ident { $($v:ident => $n:literal,)* }) => {
        impl $t {
            pub fn name(self) -> &'static str {
                match self {
                    $($t::$v => $n,)*
                }
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                match name.as_str() {
                    $($n => Ok($t::$v),)*
                    other => Err(serde::de::Error::unknown_variant(other, &[$($n),*])),
                }
            }
        }
    };
}

/// What `fsck` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// Apply the planned repairs (the vault must not be mounted: the store's
    /// lock guarantees it, since fsck holds the store open).
    pub repair: bool,
    /// Levels with hardware-factor slots to open (their factors are asked
    /// through the `secrets` callback); others with only factor slots stay
    /// "not checked: locked".
    pub factor_levels: Vec<u8>,
}

/// The verdict, from worst to best. Exit codes are the CLI's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsckStatus {
    /// At least one problem is left (not repairable, or repair not asked).
    Damaged,
    /// Nothing damaged was found, but records of a locked level (or of a
    /// level without a key) could not be authenticated.
    Incomplete,
    /// Problems were found and every one was repaired.
    Repaired,
    /// Everything authenticated; nothing to report.
    Clean,
}

named!(FsckStatus {
    Damaged => "damaged",
    Incomplete => "incomplete",
    Repaired => "repaired",
    Clean => "clean",
});

/// Whether a level's records could be authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelAccess {
    /// Its key was derived: its records were authenticated.
    Checked,
    /// It opens only with hardware factors that were not asked for, or failed.
    Locked,
    /// It has no key slot (levels 4 and 5 before `vaultfs enroll`).
    NoKey,
    /// Level 0: its key lived only while the vault was mounted; leftovers
    /// are unreadable by design and purged at the next unlock.
    Ephemeral,
    /// An interrupted `vaultfs rotate` left its records under two keys.
    Rotating,
}

named!(LevelAccess {
    Checked => "checked",
    Locked => "locked",
    NoKey => "no_key",
    Ephemeral => "ephemeral",
    Rotating => "rotating",
});

/// One classification level.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LevelReport {
    pub level: u8,
    pub access: LevelAccess,
    /// Why the level was not checked (empty when checked).
    pub note: String,
    /// Its inodes, entries, blocks and xattrs that could not be authenticated.
    pub not_checked: u64,
}

/// Records of one kind.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Keys of this kind in the store.
    pub stored: u64,
    /// Values that authenticated (and parsed) under their key.
    pub authenticated: u64,
    /// Values not authenticated for want of a key (locked level, level 0,
    /// or an inode that itself failed authentication).
    pub not_checked: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    pub inodes: Tally,
    pub entries: Tally,
    pub blocks: Tally,
    pub xattrs: Tally,
    pub tombstones: Tally,
    /// Orphan markers (`O` keys): present only for open-unlinked inodes.
    pub orphan_markers: u64,
    /// Inodes unlinked while open (no links, no entry, an orphan marker):
    /// not damage; the next unlock deletes them, as after any crash.
    pub pending_deletion: u64,
    /// Audit keys (leaves, nodes, frontier, checkpoints), checked as a whole.
    pub audit_keys: u64,
    /// Header, inode counter, lockdown marker, rotation records, and keys vaultfs never writes.
    pub other_keys: u64,
    pub segments: SegmentCounts,
}

/// The segment files (docs/FORMAT.md section 6).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub files: u64,
    pub bytes: u64,
    /// Bytes of records some block's index entry points at.
    pub live_bytes: u64,
    /// Bytes of records nothing points at: overwritten or deleted blocks,
    /// and appends a crash cut off. Not damage: a mount collects them.
    pub garbage_bytes: u64,
}

/// The audit log a read-only mount on `host` keeps in a cluster vault.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostAuditReport {
    pub host: String,
    /// Mounted read-only while fsck ran: its log is being written, so it
    /// was not checked (`audit` is empty).
    #[serde(default)]
    pub mounted: bool,
    #[serde(flatten)]
    pub audit: AuditReport,
}

/// The audit log as `vaultfs audit verify STORE` sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditReport {
    /// Whether the whole log verified (leaves, nodes, frontier, checkpoints).
    pub verified: bool,
    pub leaves: u64,
    pub checkpoints: u64,
    /// Root of the whole tree (hex), when verified.
    pub root: Option<String>,
    /// Records before the archive base: in archive files, not in the store
    /// (docs/AUDIT.md, "Archives"); counted in `leaves`.
    #[serde(default)]
    pub archived: u64,
}

/// What was found wrong. The names are stable (JSON, audit leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The header's MAC does not verify (or a key it wraps does not open).
    Header,
    /// A key of a known type with the wrong length or shape, or a value of the wrong size.
    Malformed,
    /// A key whose type byte vaultfs never writes.
    UnknownKey,
    /// The root or a level directory is missing.
    MissingInode,
    /// An inode record fails authentication or does not parse.
    InodeDamaged,
    /// A directory entry fails authentication, or its name does not hash to its key.
    EntryDamaged,
    /// A directory entry names an inode that does not exist.
    DanglingEntry,
    /// An authenticated entry whose directory does not exist.
    EntryWithoutDirectory,
    /// Entry and inode disagree (kind, level, parent, directory with several names).
    EntryMismatch,
    /// An inode's link count differs from the entries naming it.
    LinkCount,
    /// An inode with links that no entry names.
    UnreachableInode,
    /// An inode with no links and no entry (unlinked while open, never evicted).
    OrphanInode,
    /// An inode's stored-block count differs from the blocks stored for it.
    BlockCount,
    /// A content block fails authentication or has the wrong length.
    BlockDamaged,
    /// A block of an inode that does not exist, is not a regular file, or lies beyond its end.
    OrphanBlock,
    /// An extended attribute fails authentication, or its name does not hash to its key.
    XattrDamaged,
    /// An extended attribute of an inode that does not exist.
    OrphanXattr,
    /// An orphan marker for an inode that does not exist or still has links.
    OrphanMarker,
    /// A tombstone fails authentication.
    TombstoneDamaged,
    /// The inode counter is missing, malformed, or below a stored inode.
    Counter,
    /// The audit log does not verify (first bad leaf, node, frontier or checkpoint).
    Audit,
    /// A segment file whose header is not its own (renamed, swapped or damaged).
    Segment,
}

named!(ProblemKind {
    Header => "header",
    Malformed => "malformed",
    UnknownKey => "unknown_key",
    MissingInode => "missing_inode",
    InodeDamaged => "inode_damaged",
    EntryDamaged => "entry_damaged",
    DanglingEntry => "dangling_entry",
    EntryWithoutDirectory => "entry_without_directory",
    EntryMismatch => "entry_mismatch",
    LinkCount => "link_count",
    UnreachableInode => "unreachable_inode",
    OrphanInode => "orphan_inode",
    BlockCount => "block_count",
    BlockDamaged => "block_damaged",
    OrphanBlock => "orphan_block",
    XattrDamaged => "xattr_damaged",
    OrphanXattr => "orphan_xattr",
    OrphanMarker => "orphan_marker",
    TombstoneDamaged => "tombstone_damaged",
    Counter => "counter",
    Audit => "audit",
    Segment => "segment",
});

/// What happens about a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairState {
    /// Reported only: repairing it would mean guessing.
    None,
    /// `repair` would fix it (not asked).
    Available,
    /// Fixed, and recorded in the audit log.
    Done,
    /// Repairable, but repair was refused (the audit log does not verify,
    /// so a repair could not be recorded).
    Refused,
}

named!(RepairState {
    None => "none",
    Available => "available",
    Done => "done",
    Refused => "refused",
});

/// How a repairable problem is fixed (planned by `check`, applied by `repair`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fix {
    /// Delete these keys.
    Delete(Vec<Vec<u8>>),
    /// Delete an inode with its blocks, xattrs and orphan marker.
    DeleteInode(u64),
    /// Re-seal an authenticated inode record with these fields changed.
    Rewrite { ino: u64, nlink: Option<u32>, blocks: Option<u64> },
    /// Store this counter (the inode or the block version counter) at `key`.
    SetCounter { key: &'static [u8], value: u64 },
}

/// One problem: its kind, where (the store key in hex), and a sentence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The store key in hex (for a group of blocks, the `B ‖ ino` prefix they share).
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The classification level of the record concerned, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Store keys the problem covers (more than 1 for a group of orphan blocks).
    pub count: u64,
    pub message: String,
    pub repair: RepairState,
    #[serde(skip)]
    pub(crate) fix: Option<Fix>,
}

/// Everything fsck found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FsckReport {
    pub status: FsckStatus,
    /// Vault id (hex).
    pub vault_id: String,
    pub block_size: u32,
    /// Whether the header's MAC verified (if not, nothing else was checked).
    pub header_authenticated: bool,
    /// Whether repairs were asked for.
    pub repair: bool,
    pub levels: Vec<LevelReport>,
    pub counts: Counts,
    pub audit: AuditReport,
    /// The logs of read-only mounts on other hosts (cluster vaults).
    #[serde(default)]
    pub host_audits: Vec<HostAuditReport>,
    pub problems: Vec<Problem>,
}

impl FsckReport {
    fn new(vault_id: &[u8; 16], block_size: u32, repair: bool) -> Self {
        FsckReport {
            status: FsckStatus::Clean,
            vault_id: hex(vault_id),
            block_size,
            header_authenticated: true,
            repair,
            levels: Vec::new(),
            counts: Counts::default(),
            audit: AuditReport::default(),
            host_audits: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The status the problems and levels call for.
    fn verdict(&self) -> FsckStatus {
        let locked = |l: &LevelReport| {
            matches!(l.access, LevelAccess::Locked | LevelAccess::NoKey | LevelAccess::Rotating)
        };
        if self.problems.iter().any(|p| p.repair != RepairState::Done) {
            FsckStatus::Damaged
        } else if self.levels.iter().any(|l| locked(l) && l.not_checked > 0) {
            FsckStatus::Incomplete
        } else if !self.problems.is_empty() {
            FsckStatus::Repaired
        } else {
            FsckStatus::Clean
        }
    }

    /// Problems a `repair` run would fix (or has fixed).
    pub fn repairable(&self) -> usize {
        self.problems.iter().filter(|p| p.repair != RepairState::None).count()
    }
}

impl Vault<Locked> {
    /// Checks the whole vault (docs/ADMIN.md, "fsck"). `secrets` is asked for
    /// the factors of `opts.factor_levels` only; `progress(done, total)` is
    /// called as store entries are checked. A wrong passphrase is an error;
    /// damage of any kind is in the report, never a panic or an early error.
    pub fn fsck(
        &self,
        pass: &Passphrase,
        opts: &FsckOptions,
        secrets: &mut FactorSecrets,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FsckReport> {
        let Locked { store, header, .. } = &self.0;
        check_store(store, header, pass, opts, secrets, progress)
    }
}

impl Vault<Unlocked> {
    /// `vaultfs fsck` on a mounted vault, through its control socket: the
    /// same check, read-only, of the store as it is at one instant (every
    /// write of the mount waits meanwhile, as while `.backup/` copies it).
    /// The check is recorded (op `check`, the problems found in `len`) with
    /// the caller; a wrong passphrase is recorded with EACCES.
    pub fn fsck_mounted(
        &self,
        who: Caller,
        comm: &[u8],
        pass: &Passphrase,
        factor_levels: Vec<u8>,
        secrets: &mut FactorSecrets,
    ) -> Result<FsckReport> {
        let core = self.core();
        let header = core.header();
        let opts = FsckOptions { repair: false, factor_levels };
        // The KDF and the factors (a touch) before the store is frozen:
        // the mount's writes wait only for the reading.
        let checked = Keys::open(&core.store, &header, pass, &opts, secrets).and_then(|keys| match keys {
            Ok(keys) => {
                let (_, _, frozen) = core.audit.checkpoint_and_freeze(&core.store)?;
                keys.check(frozen.store(), &header, &opts, &mut |_, _| {})
            }
            Err(report) => Ok(report),
        });
        let (result, found) = match &checked {
            Ok(r) => (0, r.problems.len() as u64),
            Err(e) if e.kind() == ErrorKind::Io => (EIO, 0),
            Err(_) => (EACCES, 0),
        };
        let record = Record {
            who,
            comm: comm.to_vec(),
            op: AuditOp::Check,
            level: None,
            ino: ROOT_INO,
            path: b"/".to_vec(),
            offset: 0,
            len: found,
            note: Vec::new(),
        };
        self.record(record, result, true)?;
        checked
    }
}

/// errno recorded for a check refused (wrong passphrase) or failed in storage.
const EACCES: i32 = 13;
const EIO: i32 = 5;

/// The check of `store` under `header`, repairing when `opts` asks.
pub(in crate::vault) fn check_store(
    store: &Store,
    header: &Header,
    pass: &Passphrase,
    opts: &FsckOptions,
    secrets: &mut FactorSecrets,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FsckReport> {
    match Keys::open(store, header, pass, opts, secrets)? {
        Ok(keys) => keys.check(store, header, opts, progress),
        Err(report) => Ok(report),
    }
}

/// What a check opens before it reads the store: the keyring and the
/// levels' keys (passphrase KDF, factors).
struct Keys {
    ring: keyring::Keyring,
    access: [check::Access; 6],
}

impl Keys {
    /// The keys, or (`Ok(Err)`) the report of a header that does not
    /// authenticate, when nothing else can be checked.
    fn open(
        store: &Store,
        header: &Header,
        pass: &Passphrase,
        opts: &FsckOptions,
        secrets: &mut FactorSecrets,
    ) -> Result<std::result::Result<Keys, FsckReport>> {
        let ring = match keyring::unlock(pass, header) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let mut report = FsckReport::new(&header.vault_id, header.block_size, opts.repair);
                report.header_authenticated = false;
                report.problems.push(Problem {
                    kind: ProblemKind::Header,
                    key: hex(keys::HEADER),
                    ino: None,
                    block: None,
                    level: None,
                    count: 1,
                    message: format!("{}; nothing else can be trusted, so nothing else was checked", e),
                    repair: RepairState::None,
                    fix: None,
                });
                report.status = report.verdict();
                return Ok(Err(report));
            }
            Err(e) => return Err(e),
        };
        let rotating = super::rotate::pending_rotations(store)?;
        let access = check::level_keys(header, &ring, opts, &rotating, secrets);
        Ok(Ok(Keys { ring, access }))
    }

    fn check(
        &self,
        store: &Store,
        header: &Header,
        opts: &FsckOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FsckReport> {
        let report = FsckReport::new(&header.vault_id, header.block_size, opts.repair);
        let mut checker = check::Checker::new(store, header, &self.ring, &self.access, report, progress);
        checker.run()?;
        let mut report = checker.finish();
        if opts.repair {
            repair::apply(store, header, &self.ring, &self.access, &mut report)?;
        }
        report.status = report.verdict();
        Ok(report)
    }
}
