//! Store key layout: one byte of type prefix, then fixed-width big-endian
//! fields, so related keys sort together and prefix scans find them.
//!
//! | key | layout |
//! |---|---|
//! | header | `H` |
//! | inode counter | `C` |
//! | block version counter | `V` |
//! | inode | `I` ‖ ino u64 |
//! | dirent | `D` ‖ level u8 ‖ dir tag(16) ‖ name tag(16) |
//! | block | `B` ‖ ino u64 ‖ block u64 |
//! | xattr | `X` ‖ ino u64 ‖ name tag(16) |
//! | orphan | `O` ‖ ino u64 |
//! | audit leaf (vaults written before chunks; read, never written) | `A` ‖ seq u64 |
//! | audit leaf chunk | `R` ‖ first seq u64 ‖ count u32 |
//! | audit slot (the newest changes' records, not yet packed) | `S` ‖ slot u16 |
//! | audit tree node | `N` ‖ level u8 ‖ index u64 |
//! | audit frontier | `F` |
//! | audit archive base (the log's leaves before it are in archive files) | `E` |
//! | audit checkpoint | `K` ‖ tree size u64 |
//! | lockdown marker | `L` (value: ms since the epoch when it began) |
//! | tombstone | `T` ‖ seq u64 |
//! | rotation in progress | `P` ‖ level u8 |
//! | the owner's will (dead-man succession) | `W` |

pub const HEADER: &[u8] = b"H";
pub const INODE_COUNTER: &[u8] = b"C";
/// Block version counter: u64, every version below it may be in use.
pub const VERSION_COUNTER: &[u8] = b"V";
pub const INODE: u8 = b'I';
pub const DIRENT: u8 = b'D';
pub const BLOCK: u8 = b'B';
pub const XATTR: u8 = b'X';
pub const ORPHAN: u8 = b'O';
pub const AUDIT_LEAF: u8 = b'A';
pub const AUDIT_LEAVES: u8 = b'R';
pub const AUDIT_SLOT: u8 = b'S';
pub const AUDIT_NODE: u8 = b'N';
pub const AUDIT_FRONTIER: &[u8] = b"F";
pub const AUDIT_CHECKPOINT: u8 = b'K';
pub const AUDIT_BASE: &[u8] = b"E";
pub const LOCKDOWN: &[u8] = b"L";
/// The vault's policy (cluster vaults, docs/POLICY.md): sealed TOML text,
/// absent without one.
pub const VAULT_POLICY: &[u8] = b"G";
/// Kinds of key that every host's mount of a cluster vault may write, read
/// ones too: the lockdown marker and the vault's policy (docs/FORMAT.md
/// section 12).
pub const VAULT_WIDE_KINDS: &[u8] = b"LG";
/// The owner's will (`vaultfs succession setup`): sealed, absent without one.
pub const WILL: &[u8] = b"W";
pub const TOMBSTONE: u8 = b'T';
/// Every kind of key the audit log keeps: a read-only mount of a cluster
/// vault keeps these of its own (docs/FORMAT.md section 12).
pub const AUDIT_KINDS: &[u8] = &[AUDIT_LEAF, AUDIT_LEAVES, AUDIT_SLOT, AUDIT_NODE, b'F', AUDIT_CHECKPOINT, b'E'];
/// A key rotation in progress (`vaultfs rotate`): `P` ‖ level ("pending").
pub const ROTATION: u8 = b'P';

pub fn rotation(level: u8) -> [u8; 2] {
    [ROTATION, level]
}

pub fn tombstone(seq: u64) -> [u8; 9] {
    prefixed_u64(TOMBSTONE, seq)
}

pub fn audit_leaf(seq: u64) -> [u8; 9] {
    prefixed_u64(AUDIT_LEAF, seq)
}

/// Key of the chunk holding leaves `first .. first + count`.
pub fn audit_leaves(first: u64, count: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&prefixed_u64(AUDIT_LEAVES, first));
    k[9..].copy_from_slice(&count.to_be_bytes());
    k
}

/// Where chunks starting at `first` sort (a bound for range scans).
pub fn audit_leaves_from(first: u64) -> [u8; 9] {
    prefixed_u64(AUDIT_LEAVES, first)
}

/// (first seq, count) of a chunk key.
pub fn audit_leaves_range(key: &[u8]) -> Option<(u64, u32)> {
    if key.len() == 13 && key[0] == AUDIT_LEAVES {
        Some((u64::from_be_bytes(key[1..9].try_into().ok()?), u32::from_be_bytes(key[9..].try_into().ok()?)))
    } else {
        None
    }
}

/// Key of audit slot `slot` (a ring of fixed keys; the value says which
/// leaves it holds).
pub fn audit_slot(slot: u16) -> [u8; 3] {
    let s = slot.to_be_bytes();
    [AUDIT_SLOT, s[0], s[1]]
}

pub fn audit_node(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = AUDIT_NODE;
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

pub fn audit_checkpoint(size: u64) -> [u8; 9] {
    prefixed_u64(AUDIT_CHECKPOINT, size)
}

/// The u64 after the type byte of an `A` or `K` key.
pub fn audit_number(key: &[u8]) -> Option<u64> {
    if key.len() == 9 && matches!(key[0], AUDIT_LEAF | AUDIT_CHECKPOINT) {
        Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
    } else {
        None
    }
}

pub fn inode(ino: u64) -> [u8; 9] {
    prefixed_u64(INODE, ino)
}

pub fn orphan(ino: u64) -> [u8; 9] {
    prefixed_u64(ORPHAN, ino)
}

pub fn block_prefix(ino: u64) -> [u8; 9] {
    prefixed_u64(BLOCK, ino)
}

pub fn block(ino: u64, block: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = BLOCK;
    k[1..9].copy_from_slice(&ino.to_be_bytes());
    k[9..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Block number from a block key (None if it is not a block key).
pub fn block_number(key: &[u8]) -> Option<u64> {
    if key.len() == 17 && key[0] == BLOCK {
        Some(u64::from_be_bytes(key[9..].try_into().ok()?))
    } else {
        None
    }
}

/// Inode number from an `I`, `O`, `B` or `X` key.
pub fn ino_of(key: &[u8]) -> Option<u64> {
    if key.len() >= 9 && matches!(key[0], INODE | ORPHAN | BLOCK | XATTR) {
        Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
    } else {
        None
    }
}

pub fn xattr_prefix(ino: u64) -> [u8; 9] {
    prefixed_u64(XATTR, ino)
}

pub fn xattr(ino: u64, name_tag: &[u8; 16]) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&xattr_prefix(ino));
    k[9..].copy_from_slice(name_tag);
    k
}

/// Bytes of a directory's entry-key prefix (`D`, level, directory tag),
/// and of a whole entry key (the name tag after it).
pub const DIRENT_PREFIX_LEN: usize = 18;
pub const DIRENT_KEY_LEN: usize = 34;

pub fn dirent_prefix(level: u8, dir_tag: &[u8; 16]) -> [u8; DIRENT_PREFIX_LEN] {
    let mut k = [0u8; DIRENT_PREFIX_LEN];
    k[0] = DIRENT;
    k[1] = level;
    k[2..].copy_from_slice(dir_tag);
    k
}

pub fn dirent(level: u8, dir_tag: &[u8; 16], name_tag: &[u8; 16]) -> [u8; DIRENT_KEY_LEN] {
    let mut k = [0u8; DIRENT_KEY_LEN];
    k[..DIRENT_PREFIX_LEN].copy_from_slice(&dirent_prefix(level, dir_tag));
    k[DIRENT_PREFIX_LEN..].copy_from_slice(name_tag);
    k
}

fn prefixed_u64(prefix: u8, v: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&v.to_be_bytes());
    k
}
