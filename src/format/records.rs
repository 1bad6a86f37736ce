//! Plaintext records sealed inside store values (docs/FORMAT.md, "Records").
//! Inode:  ver u8 ‖ kind u8 ‖ perm u16 ‖ uid u32 ‖ gid u32 ‖ nlink u32 ‖ rdev u32 ‖
//!         size u64 ‖ blocks u64 ‖ generation u64 ‖ parent u64 ‖ 4×(secs i64 ‖ nanos u32) ‖
//!         flags u32 ‖ file key(32) ‖ symlink len u16 ‖ symlink target
//! Dirent: ino u64 ‖ kind u8 ‖ name len u8 ‖ name ‖ zero padding to a multiple of 32
//! Xattr:  name len u8 ‖ name ‖ value

use zeroize::Zeroizing;

use super::codec::{Reader, Writer};
use super::{Error, invalid};

pub const MAX_NAME_LEN: usize = 255;
pub const MAX_SYMLINK_LEN: usize = 4095;
pub const MAX_XATTR_VALUE_LEN: usize = 65536;
const INODE_RECORD_VERSION: u8 = 1;
const DIRENT_PAD: usize = 32;

/// The type of an inode, as stored (values are part of the format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

impl FileKind {
    pub fn from_u8(v: u8) -> Result<Self, Error> {
        Ok(match v {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::Socket,
            6 => FileKind::CharDevice,
            7 => FileKind::BlockDevice,
            _ => return Err(invalid("file kind", format!("unknown value {v}"))),
        })
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Timestamp { secs: -(d.as_secs() as i64), nanos: 0 }
                } else {
                    Timestamp { secs: -(d.as_secs() as i64) - 1, nanos: 1_000_000_000 - d.subsec_nanos() }
                }
            }
        }
    }
}

/// A raw 32-byte key inside a record: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RawKey(pub [u8; 32]);

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawKey(<redacted>)")
    }
}

/// An inode as sealed in the store. `file_key` is the per-inode content key;
/// sealing the record under the level key is what "wraps" it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeRecord {
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub size: u64,
    /// Number of content blocks stored (for st_blocks and fsck).
    pub blocks: u64,
    pub generation: u64,
    /// Parent directory (directories only; 0 for other kinds).
    pub parent: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    pub flags: u32,
    pub file_key: RawKey,
    pub symlink: Vec<u8>,
}

impl InodeRecord {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(150 + self.symlink.len());
        w.u8(INODE_RECORD_VERSION)
            .u8(self.kind as u8)
            .u16(self.perm)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.nlink)
            .u32(self.rdev)
            .u64(self.size)
            .u64(self.blocks)
            .u64(self.generation)
            .u64(self.parent);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            w.i64(t.secs).u32(t.nanos);
        }
        w.u32(self.flags).bytes(&self.file_key.0).u16(self.symlink.len() as u16).bytes(&self.symlink);
        Zeroizing::new(w.into_vec())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "inode record");
        let version = r.u8()?;
        if version != INODE_RECORD_VERSION {
            return Err(invalid("inode record", format!("unknown record version {version}")));
        }
        let kind = FileKind::from_u8(r.u8()?)?;
        let perm = r.u16()?;
        if perm & !0o7777 != 0 {
            return Err(invalid("inode perm", format!("{perm:#o} has bits outside 0o7777")));
        }
        let (uid, gid, nlink, rdev) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let (size, blocks, generation, parent) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut times = [Timestamp::default(); 4];
        for t in &mut times {
            *t = Timestamp { secs: r.i64()?, nanos: r.u32()? };
            if t.nanos >= 1_000_000_000 {
                return Err(invalid("inode time", format!("{} nanoseconds", t.nanos)));
            }
        }
        let flags = r.u32()?;
        let file_key = RawKey(r.array()?);
        let len = r.u16()? as usize;
        if len > MAX_SYMLINK_LEN {
            return Err(invalid("symlink", format!("{len} bytes (at most {MAX_SYMLINK_LEN})")));
        }
        let symlink = r.bytes(len)?.to_vec();
        r.finish()?;
        if kind != FileKind::Symlink && !symlink.is_empty() {
            return Err(invalid("symlink", "target on a non-symlink inode"));
        }
        Ok(InodeRecord {
            kind,
            perm,
            uid,
            gid,
            nlink,
            rdev,
            size,
            blocks,
            generation,
            parent,
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            crtime: times[3],
            flags,
            file_key,
            symlink,
        })
    }
}

/// A directory entry: which inode a name points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirentRecord {
    pub ino: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
}

impl DirentRecord {
    /// Padded so the sealed length reveals the name length only to 32 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let unpadded = 10 + self.name.len();
        let padded = unpadded.div_ceil(DIRENT_PAD) * DIRENT_PAD;
        let mut w = Writer::with_capacity(padded);
        w.u64(self.ino).u8(self.kind as u8).u8(self.name.len() as u8).bytes(&self.name);
        let mut out = w.into_vec();
        out.resize(padded, 0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "dirent record");
        let ino = r.u64()?;
        let kind = FileKind::from_u8(r.u8()?)?;
        let len = r.u8()? as usize;
        let name = r.bytes(len)?.to_vec();
        if name.is_empty() {
            return Err(invalid("dirent name", "empty"));
        }
        let padding = r.bytes(r.remaining())?;
        if padding.len() >= DIRENT_PAD || padding.iter().any(|&b| b != 0) || bytes.len() % DIRENT_PAD != 0 {
            return Err(invalid("dirent padding", "not zero padding to a multiple of 32"));
        }
        Ok(DirentRecord { ino, kind, name })
    }
}

/// An extended attribute (name and value both sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrRecord {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl XattrRecord {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(1 + self.name.len() + self.value.len());
        w.u8(self.name.len() as u8).bytes(&self.name).bytes(&self.value);
        Zeroizing::new(w.into_vec())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "xattr record");
        let len = r.u8()? as usize;
        let name = r.bytes(len)?.to_vec();
        if name.is_empty() {
            return Err(invalid("xattr name", "empty"));
        }
        let value = r.bytes(r.remaining())?.to_vec();
        if value.len() > MAX_XATTR_VALUE_LEN {
            return Err(invalid("xattr value", format!("{} bytes", value.len())));
        }
        Ok(XattrRecord { name, value })
    }
}

/// What is kept of a file crypto-shredded by unlink at level 3 and above.
/// Layout: time ns u64 ‖ uid u32 ‖ pid u32 ‖ level u8 ‖ comm len u8 ‖ comm ‖
/// path len u16 ‖ path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TombstoneRecord {
    pub time_ns: u64,
    pub uid: u32,
    pub pid: u32,
    pub level: u8,
    pub comm: Vec<u8>,
    pub path: Vec<u8>,
}

impl TombstoneRecord {
    pub fn encode(&self) -> Vec<u8> {
        let comm = &self.comm[..self.comm.len().min(16)];
        let path = &self.path[..self.path.len().min(u16::MAX as usize)];
        let mut w = Writer::with_capacity(20 + comm.len() + path.len());
        w.u64(self.time_ns)
            .u32(self.uid)
            .u32(self.pid)
            .u8(self.level)
            .u8(comm.len() as u8)
            .bytes(comm)
            .u16(path.len() as u16)
            .bytes(path);
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "tombstone");
        let time_ns = r.u64()?;
        let uid = r.u32()?;
        let pid = r.u32()?;
        let level = r.u8()?;
        let n = r.u8()? as usize;
        let comm = r.bytes(n)?.to_vec();
        let n = r.u16()? as usize;
        let path = r.bytes(n)?.to_vec();
        r.finish()?;
        Ok(TombstoneRecord { time_ns, uid, pid, level, comm, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_round_trip() {
        let t = TombstoneRecord {
            time_ns: 1,
            uid: 2,
            pid: 3,
            level: 4,
            comm: b"rm".to_vec(),
            path: b"/4-vaulted/x".to_vec(),
        };
        let bytes = t.encode();
        assert_eq!(TombstoneRecord::decode(&bytes).unwrap(), t);
        for n in 0..bytes.len() {
            assert!(TombstoneRecord::decode(&bytes[..n]).is_err());
        }
    }

    fn inode() -> InodeRecord {
        InodeRecord {
            kind: FileKind::Symlink,
            perm: 0o777,
            uid: 1000,
            gid: 1000,
            nlink: 1,
            rdev: 0,
            size: 6,
            blocks: 0,
            generation: 42,
            parent: 0,
            atime: Timestamp { secs: 1, nanos: 2 },
            mtime: Timestamp { secs: -3, nanos: 4 },
            ctime: Timestamp { secs: 5, nanos: 6 },
            crtime: Timestamp { secs: 7, nanos: 999_999_999 },
            flags: 0,
            file_key: RawKey([5; 32]),
            symlink: b"target".to_vec(),
        }
    }

    #[test]
    fn inode_round_trip_and_truncation() {
        let bytes = inode().encode();
        assert_eq!(InodeRecord::decode(&bytes).unwrap(), inode());
        for n in 0..bytes.len() {
            assert!(InodeRecord::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn dirent_round_trip_and_padding() {
        let d = DirentRecord { ino: 9, kind: FileKind::File, name: b"notes.md".to_vec() };
        let bytes = d.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(DirentRecord::decode(&bytes).unwrap(), d);
        let long = DirentRecord { ino: 9, kind: FileKind::Dir, name: vec![b'a'; 255] };
        assert_eq!(long.encode().len(), 288);
        assert_eq!(DirentRecord::decode(&long.encode()).unwrap(), long);
        let mut bad = bytes.clone();
        bad[31] = 1;
        assert!(DirentRecord::decode(&bad).is_err());
    }

    #[test]
    fn xattr_round_trip() {
        let x = XattrRecord { name: b"user.k".to_vec(), value: vec![0, 1, 2] };
        assert_eq!(XattrRecord::decode(&x.encode()).unwrap(), x);
        assert!(XattrRecord::decode(&[]).is_err());
    }
}
