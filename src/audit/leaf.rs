//! One audit record and its canonical encoding (docs/AUDIT.md, "Leaf encoding"):
//! version(1) ‖ seq(8) ‖ time_ns(8) ‖ uid(4) ‖ gid(4) ‖ pid(4) ‖ op(1) ‖ level(1)
//! ‖ ino(8) ‖ offset(8) ‖ len(8) ‖ result(4) ‖ comm_len(2) ‖ comm ‖ path_len(2) ‖ path,
//! integers big-endian, level 0xFF = none. Every leaf has exactly one encoding.

use super::Error;

/// The leaf format version this code writes and reads.
pub const LEAF_VERSION: u8 = 1;
/// The version of a leaf that carries a note (a justification): version 1's
/// fields, then the note. Leaves without a note stay version 1.
pub const LEAF_VERSION_NOTE: u8 = 2;
/// Longest note, in bytes (longer is cut by `encode`).
pub const MAX_NOTE: usize = 1024;
/// Longest `comm` (the kernel's TASK_COMM_LEN is 16 including the NUL).
pub const MAX_COMM: usize = 16;
/// Longest `path` (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Highest classification level.
pub const MAX_LEVEL: u8 = 5;
/// `level` byte meaning "no level" (the mount root, or a vault-wide event).
pub const NO_LEVEL: u8 = 0xFF;
/// Bytes before `comm`: every fixed-width field plus comm's length.
#[cfg(any(test, feature = "internals"))]
pub const FIXED_LEN: usize = 61;

/// What was done (or refused). The byte values are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Op {
    Open = 1,
    Read = 2,
    Write = 3,
    Create = 4,
    Mkdir = 5,
    Mknod = 6,
    Unlink = 7,
    Rmdir = 8,
    Rename = 9,
    Link = 10,
    Symlink = 11,
    Setattr = 12,
    Setxattr = 13,
    Removexattr = 14,
    /// An access refused before any operation ran (locked level, wrong uid…).
    Denied = 15,
    /// A level was unlocked.
    Unlock = 16,
    /// Every level above 1 was closed at once.
    Lockdown = 17,
    /// The `.audit` view was opened (logged once per open).
    AuditRead = 18,
    /// A signed checkpoint was issued.
    Checkpoint = 19,
    /// A level was locked again (by command or after idle time).
    Lock = 20,
    /// A human approved a pending open (`vaultfs approve`).
    Approve = 21,
    /// A human refused a pending open (`vaultfs deny`), or it timed out.
    Reject = 22,
    /// A directory was listed.
    Readdir = 23,
    /// Files were purged (ephemeral max age) or crypto-shredded.
    Purge = 24,
    /// A mount accepted a store older than its rollback anchor (`-o
    /// reanchor`); the unlock record marks every other mount.
    Mount = 25,
    /// The vault was unmounted.
    Unmount = 26,
    /// A policy file was applied (result 0) or refused (path: file, newline, reason).
    Policy = 27,
    /// `vaultfs fsck --repair` removed or rewrote store entries (one leaf per repair).
    Repair = 28,
    /// A backup archive was opened for reading (`.backup/`, once per open) or
    /// written by `vaultfs backup`.
    BackupRead = 29,
    /// `vaultfs rotate` gave a level a new key and re-encrypted its records
    /// (one leaf per level, in the batch that switches the header).
    Rotate = 30,
    /// The key header of a closed vault was rewritten: `passwd`, `enroll`,
    /// `unenroll`, `escrow split` or `escrow recover` (the path says which).
    Header = 31,
    /// `vaultfs fsck` checked a mounted vault, read-only, through its
    /// control socket (`len` = problems found).
    Check = 32,
    /// A write to level 0 or 1 held a credential by a secret-scanning rule
    /// (the note names the rule); what was written is unchanged.
    Secret = 33,
    /// A step of dead-man succession: `setup`, `checkin`, `cancel`,
    /// `release`, `claim` (the path says which, and the will's id).
    Succession = 34,
    /// `vaultfs audit archive` (or the policy's `archive_after`) moved the
    /// oldest records into an archive file and out of the store (`offset`
    /// = first record moved, `len` = how many).
    Archive = 35,
}

impl Op {
    /// Every op, in byte order.
    pub const ALL: [Op; 35] = [
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Create,
        Op::Mkdir,
        Op::Mknod,
        Op::Unlink,
        Op::Rmdir,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Setattr,
        Op::Setxattr,
        Op::Removexattr,
        Op::Denied,
        Op::Unlock,
        Op::Lockdown,
        Op::AuditRead,
        Op::Checkpoint,
        Op::Lock,
        Op::Approve,
        Op::Reject,
        Op::Readdir,
        Op::Purge,
        Op::Mount,
        Op::Unmount,
        Op::Policy,
        Op::Repair,
        Op::BackupRead,
        Op::Rotate,
        Op::Header,
        Op::Check,
        Op::Secret,
        Op::Succession,
        Op::Archive,
    ];

    /// The lowercase name used in `.audit` and in docs/AUDIT.md.
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Create => "create",
            Op::Mkdir => "mkdir",
            Op::Mknod => "mknod",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Symlink => "symlink",
            Op::Setattr => "setattr",
            Op::Setxattr => "setxattr",
            Op::Removexattr => "removexattr",
            Op::Denied => "denied",
            Op::Unlock => "unlock",
            Op::Lockdown => "lockdown",
            Op::AuditRead => "audit_read",
            Op::Checkpoint => "checkpoint",
            Op::Lock => "lock",
            Op::Approve => "approve",
            Op::Reject => "reject",
            Op::Readdir => "readdir",
            Op::Purge => "purge",
            Op::Mount => "mount",
            Op::Unmount => "unmount",
            Op::Policy => "policy",
            Op::Repair => "repair",
            Op::BackupRead => "backup_read",
            Op::Rotate => "rotate",
            Op::Header => "header",
            Op::Check => "check",
            Op::Secret => "secret",
            Op::Succession => "succession",
            Op::Archive => "archive",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Op> {
        // ALL is in byte order starting at 1, so the byte indexes it.
        let op = *Op::ALL.get(usize::from(b).checked_sub(1)?)?;
        debug_assert_eq!(op.byte(), b);
        Some(op)
    }
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Position in the log, from 0; equals the leaf's index in the tree.
    pub seq: u64,
    /// Wall-clock time, nanoseconds since the Unix epoch (UTC).
    pub time_ns: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The calling process's comm, at most [`MAX_COMM`] bytes (longer is truncated by `encode`).
    pub comm: Vec<u8>,
    pub op: Op,
    /// Classification level 0..=5, or none.
    pub level: Option<u8>,
    /// Inode number, 0 when there is none.
    pub ino: u64,
    /// Path from the mount root as raw bytes, at most [`MAX_PATH`] (longer is truncated by `encode`).
    pub path: Vec<u8>,
    /// Byte offset of a read or write, else 0.
    pub offset: u64,
    /// Byte count of a read or write (or new size of a truncate), else 0.
    pub len: u64,
    /// 0 on success, else the positive errno returned to the caller.
    pub result: i32,
    /// Why the caller says it needs the access (`user.vault.justification`,
    /// docs/GATES.md), at most [`MAX_NOTE`] bytes; empty for none.
    pub note: Vec<u8>,
}

impl Leaf {
    /// The canonical encoding. Infallible so that logging can never fail on
    /// a field: `comm` and `path` beyond their limits are cut to their first
    /// [`MAX_COMM`] / [`MAX_PATH`] bytes (the inode still names the file), and
    /// a level above 5 is recorded as none. For any leaf within limits,
    /// `decode(encode(l)) == l`.
    #[cfg(any(test, feature = "internals"))]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + self.comm.len() + 2 + self.path.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out` (the log builds its chunks in place).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let comm = &self.comm[..self.comm.len().min(MAX_COMM)];
        let path = &self.path[..self.path.len().min(MAX_PATH)];
        let level = match self.level {
            Some(l) if l <= MAX_LEVEL => l,
            _ => NO_LEVEL,
        };
        let note = &self.note[..self.note.len().min(MAX_NOTE)];
        out.push(if note.is_empty() { LEAF_VERSION } else { LEAF_VERSION_NOTE });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ns.to_be_bytes());
        out.extend_from_slice(&self.uid.to_be_bytes());
        out.extend_from_slice(&self.gid.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        out.push(self.op.byte());
        out.push(level);
        out.extend_from_slice(&self.ino.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.result.to_be_bytes());
        // Lengths fit u16: both limits are below 65536.
        out.extend_from_slice(&(comm.len() as u16).to_be_bytes());
        out.extend_from_slice(comm);
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path);
        if !note.is_empty() {
            out.extend_from_slice(&(note.len() as u16).to_be_bytes());
            out.extend_from_slice(note);
        }
    }

    /// Decodes a canonical encoding; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, Error> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != LEAF_VERSION && version != LEAF_VERSION_NOTE {
            return Err(Error::LeafEncoding("unknown version"));
        }
        let seq = r.u64()?;
        let time_ns = r.u64()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let pid = r.u32()?;
        let op = Op::from_byte(r.u8()?).ok_or(Error::LeafEncoding("unknown op"))?;
        let level = match r.u8()? {
            NO_LEVEL => None,
            l if l <= MAX_LEVEL => Some(l),
            _ => return Err(Error::LeafEncoding("level out of range")),
        };
        let ino = r.u64()?;
        let offset = r.u64()?;
        let len = r.u64()?;
        let result = i32::from_be_bytes(r.array()?);
        let comm = r.bytes(MAX_COMM, "comm longer than 16 bytes")?.to_vec();
        let path = r.bytes(MAX_PATH, "path longer than 4096 bytes")?.to_vec();
        let note = if version == LEAF_VERSION_NOTE {
            let note = r.bytes(MAX_NOTE, "note longer than 1024 bytes")?.to_vec();
            if note.is_empty() {
                // One encoding per record: no note is version 1.
                return Err(Error::LeafEncoding("empty note in a version-2 leaf"));
            }
            note
        } else {
            Vec::new()
        };
        if !r.0.is_empty() {
            return Err(Error::LeafEncoding("trailing bytes"));
        }
        Ok(Leaf { seq, time_ns, uid, gid, pid, comm, op, level, ino, path, offset, len, result, note })
    }

    /// The Merkle leaf hash of the canonical encoding.
    #[cfg(any(test, feature = "internals"))]
    pub fn hash(&self) -> super::merkle::Hash {
        super::merkle::leaf_hash(&self.encode())
    }
}

/// A cursor that fails instead of panicking when the input runs out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::LeafEncoding("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A u16-length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, max: usize, too_long: &'static str) -> Result<&'a [u8], Error> {
        let n = usize::from(u16::from_be_bytes(self.array()?));
        if n > max {
            return Err(Error::LeafEncoding(too_long));
        }
        self.take(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn arb_op() -> impl Strategy<Value = Op> {
        proptest::sample::select(Op::ALL.to_vec())
    }

    /// Any leaf within the format's limits.
    pub(crate) fn arb_leaf() -> impl Strategy<Value = Leaf> {
        (
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
            proptest::collection::vec(any::<u8>(), 0..=MAX_COMM),
            arb_op(),
            proptest::option::of(0..=MAX_LEVEL),
            any::<u64>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                "[/a-z0-9 é.\\-]{0,80}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), MAX_PATH - 2..=MAX_PATH),
            ],
            (any::<u64>(), any::<u64>(), any::<i32>()),
            prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 1..=MAX_NOTE)],
        )
            .prop_map(
                |((seq, time_ns, uid, gid, pid), comm, op, level, ino, path, (offset, len, result), note)| {
                    Leaf {
                        seq,
                        time_ns,
                        uid,
                        gid,
                        pid,
                        comm,
                        op,
                        level,
                        ino,
                        path,
                        offset,
                        len,
                        result,
                        note,
                    }
                },
            )
    }

    pub(crate) fn sample() -> Leaf {
        Leaf {
            seq: 7,
            time_ns: 1_700_000_000_123_456_789,
            uid: 1000,
            gid: 1000,
            pid: 4242,
            comm: b"cat".to_vec(),
            op: Op::Read,
            level: Some(2),
            ino: 42,
            path: b"/2-private/notes.md".to_vec(),
            offset: 4096,
            len: 512,
            result: 0,
            note: Vec::new(),
        }
    }

    #[test]
    fn op_bytes_and_names_are_unique_and_stable() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.byte() as usize, i + 1);
            assert_eq!(Op::from_byte(op.byte()), Some(*op));
            assert_eq!(Op::from_name(op.name()), Some(*op));
            assert_eq!(op.name(), op.name().to_lowercase());
        }
        assert_eq!(Op::from_byte(0), None);
        assert_eq!(Op::from_byte(Op::ALL.len() as u8 + 1), None);
        assert_eq!(Op::from_byte(255), None);
        assert_eq!(Op::from_name("Open"), None);
    }

    #[test]
    fn layout_matches_the_doc() {
        let l = sample();
        let b = l.encode();
        assert_eq!(b.len(), FIXED_LEN + 3 + 2 + l.path.len());
        assert_eq!(b[0], 1);
        assert_eq!(b[1..9], 7u64.to_be_bytes());
        assert_eq!(b[29], Op::Read as u8);
        assert_eq!(b[30], 2);
        assert_eq!(b[55..59], 0i32.to_be_bytes());
        assert_eq!(b[59..61], 3u16.to_be_bytes());
        assert_eq!(&b[61..64], b"cat");
    }

    #[test]
    fn strict_decoding() {
        let good = sample().encode();
        let bad = |f: &dyn Fn(&mut Vec<u8>), why: &'static str| {
            let mut b = good.clone();
            f(&mut b);
            assert_eq!(Leaf::decode(&b), Err(Error::LeafEncoding(why)));
        };
        bad(&|b| b[0] = 3, "unknown version");
        // Version 2 needs a note after the path: a v1 body is cut short.
        bad(&|b| b[0] = 2, "truncated");
        bad(&|b| b.extend_from_slice(&[0, 0]), "trailing bytes");
        bad(
            &|b| {
                b[0] = 2;
                b.extend_from_slice(&[0, 0]);
            },
            "empty note in a version-2 leaf",
        );
        bad(
            &|b| {
                b[0] = 2;
                b.extend_from_slice(&1025u16.to_be_bytes());
            },
            "note longer than 1024 bytes",
        );
        bad(&|b| b[29] = 0, "unknown op");
        bad(&|b| b[29] = 200, "unknown op");
        bad(&|b| b[30] = 6, "level out of range");
        bad(&|b| b[30] = 0xFE, "level out of range");
        bad(&|b| b[59..61].copy_from_slice(&17u16.to_be_bytes()), "comm longer than 16 bytes");
        bad(&|b| b[64..66].copy_from_slice(&4097u16.to_be_bytes()), "path longer than 4096 bytes");
        bad(&|b| b.push(0), "trailing bytes");
        bad(&|b| b.truncate(b.len() - 1), "truncated");
        bad(&|b| b.clear(), "truncated");
        for n in 0..good.len() {
            assert!(Leaf::decode(&good[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn a_note_makes_a_version_2_leaf() {
        let l = Leaf { note: b"why".to_vec(), ..sample() };
        let b = l.encode();
        let v1 = sample().encode();
        assert_eq!(b[0], LEAF_VERSION_NOTE);
        assert_eq!(b[1..], [&v1[1..], &3u16.to_be_bytes()[..], b"why"].concat()[..]);
        assert_eq!(Leaf::decode(&b), Ok(l));
        let long = Leaf { note: vec![b'n'; 2000], ..sample() };
        assert_eq!(Leaf::decode(&long.encode()).unwrap().note.len(), MAX_NOTE);
    }

    #[test]
    fn level_none_and_negative_result_roundtrip() {
        let l = Leaf { level: None, result: -1, comm: vec![], path: vec![], ..sample() };
        let b = l.encode();
        assert_eq!(b[30], NO_LEVEL);
        assert_eq!(Leaf::decode(&b), Ok(l));
    }

    #[test]
    fn oversized_fields_are_cut_not_fatal() {
        let l = Leaf { comm: vec![b'x'; 40], path: vec![b'p'; 5000], level: Some(9), ..sample() };
        let d = Leaf::decode(&l.encode()).unwrap();
        assert_eq!(d.comm.len(), MAX_COMM);
        assert_eq!(d.path.len(), MAX_PATH);
        assert_eq!(d.level, None);
    }

    proptest! {
        #[test]
        fn roundtrip(l in arb_leaf()) {
            let b = l.encode();
            prop_assert_eq!(Leaf::decode(&b), Ok(l.clone()));
            prop_assert_eq!(l.hash(), crate::audit::merkle::leaf_hash(&b));
        }

        #[test]
        fn decode_never_panics_and_accepts_only_canonical(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(l) = Leaf::decode(&b) {
                prop_assert_eq!(l.encode(), b);
            }
        }
    }
}
