//! Plain data the vault API takes and returns; no fuser or libc types.

use crate::crypto::KdfParams;
pub use crate::format::{FileKind, Timestamp};

/// Inode numbers fixed by the format.
pub const ROOT_INO: u64 = 1;
/// The level-N directory is inode `LEVEL_DIR_BASE + N`.
pub const LEVEL_DIR_BASE: u64 = 2;
/// First inode number handed to user files.
pub const FIRST_USER_INO: u64 = 16;
pub const LEVEL_COUNT: u8 = 6;

/// Names of the six classification directories, by level.
pub const LEVEL_NAMES: [&str; 6] =
    ["0-ephemeral", "1-working", "2-private", "3-sealed", "4-vaulted", "5-black"];

/// The inode of level `n`'s directory.
pub fn level_dir(n: u8) -> u64 {
    LEVEL_DIR_BASE + n as u64
}

/// Which level directory `ino` is, if it is one.
pub fn level_of_dir(ino: u64) -> Option<u8> {
    (LEVEL_DIR_BASE..LEVEL_DIR_BASE + LEVEL_COUNT as u64).contains(&ino).then(|| (ino - LEVEL_DIR_BASE) as u8)
}

/// Parameters of `init`.
#[derive(Clone, Copy, Debug)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub block_size: u32,
}

/// Default Argon2id cost: 256 MiB, 3 passes, 1 lane.
pub const DEFAULT_KDF: KdfParams = KdfParams { memory_kib: 256 * 1024, passes: 3, lanes: 1 };
/// Plaintext block size chosen by measurement (docs/FORMAT.md, "Block size").
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { kdf: DEFAULT_KDF, block_size: DEFAULT_BLOCK_SIZE }
    }
}

/// Attributes of an inode, as getattr reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub generation: u64,
    /// Classification level (0-5); None for the root.
    pub level: Option<u8>,
    /// Parent directory (directories only; the root is its own parent).
    pub parent: u64,
    pub kind: FileKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    pub blksize: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
}

/// A time to set: now, or a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timestamp),
}

/// Which attributes `setattr` changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// Drop set-user-ID (and set-group-ID with group execute) as a write
    /// by an unprivileged caller does: the mount handles it, not the kernel.
    pub kill_setid: bool,
}

/// What to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
}

/// One directory entry; `cookie` resumes a listing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
    pub cookie: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    pub no_replace: bool,
    pub exchange: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrFlags {
    pub create: bool,
    pub replace: bool,
}

/// fallocate modes (Linux semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FallocMode {
    pub keep_size: bool,
    pub punch_hole: bool,
    pub zero_range: bool,
    /// As in [`SetAttr::kill_setid`].
    pub kill_setid: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u32,
}

/// Who is asking: the FUSE request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}
