//! Segment files: the bulk values kept beside sled (key-value separation,
//! docs/FORMAT.md section 6). The store appends opaque records and reads
//! them back by (segment, offset); what a record holds is the block
//! layer's business, and sled keeps the index that points here.
//!
//! `STORE/seg/` holds files named by their segment number as 16 hex digits.
//! A file is `"VAULTSEG" ‖ segment number u64` (16 bytes) and then records
//! back to back. Only the process that created a segment appends to it: a
//! new open starts a new segment, so a torn tail a crash left is never
//! written after, only collected.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{Error, Result};

/// A segment file's first bytes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"VAULTSEG";
/// Header length: magic ‖ segment number.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// A segment takes appends until it holds this many bytes; a record never
/// spans two segments. Small enough that collecting one is a short job,
/// large enough that a big vault has few files.
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// Open files kept for reads; past it the cache starts over (a vault of
/// 8 GiB has 256 segments).
const OPEN_FILES: usize = 256;

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
}

/// The segment files of one store.
pub struct Segments {
    dir: PathBuf,
    active: Mutex<Active>,
    files: RwLock<HashMap<u64, Arc<File>>>,
    dirty: Mutex<Dirty>,
}

/// The segment appends go to; created at the first append.
struct Active {
    id: u64,
    file: Option<Arc<File>>,
    len: u64,
}

/// What the next `sync` must make durable.
#[derive(Default)]
struct Dirty {
    segments: BTreeSet<u64>,
    /// A segment file (or the directory itself) was created.
    directory: bool,
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// `seg/` file name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:016x}")
}

/// Segment number of a `seg/` file name, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    (name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

impl Segments {
    /// The segments under `dir` (which need not exist until the first append).
    pub fn open(dir: &Path) -> Result<Segments> {
        let next = Self::list_in(dir)?.last().map_or(1, |&(id, _)| id + 1);
        Ok(Segments {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active { id: next, file: None, len: 0 }),
            files: RwLock::default(),
            dirty: Mutex::default(),
        })
    }

    fn list_in(dir: &Path) -> Result<Vec<(u64, u64)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(dir.display(), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(dir.display(), e))?;
            let Some(id) = entry.file_name().to_str().and_then(parse_name) else { continue };
            let len = entry.metadata().map_err(|e| io(entry.path().display(), e))?.len();
            out.push((id, len));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every segment as (number, length in bytes), in order.
    pub fn list(&self) -> Result<Vec<(u64, u64)>> {
        Self::list_in(&self.dir)
    }

    /// The segment appends go to now (never collected while it is).
    pub fn active(&self) -> u64 {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).id
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Appends `bytes` as one write, all in one segment; returns where they start.
    pub fn append(&self, bytes: &[u8]) -> Result<Location> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if a.file.is_some() && a.len + bytes.len() as u64 > SEGMENT_BYTES {
            a.id += 1;
            a.file = None;
        }
        if a.file.is_none() {
            let (file, len) = self.create(a.id)?;
            a.file = Some(file);
            a.len = len;
        }
        let file = a.file.as_ref().expect("created above");
        let offset = a.len;
        file.write_all_at(bytes, offset).map_err(|e| io(self.path(a.id).display(), e))?;
        a.len += bytes.len() as u64;
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).segments.insert(a.id);
        Ok(Location { segment: a.id, offset })
    }

    /// Creates segment `id` with its header; returns it and its length.
    fn create(&self, id: u64) -> Result<(Arc<File>, u64)> {
        let created_dir = !self.dir.exists();
        std::fs::create_dir_all(&self.dir).map_err(|e| io(self.dir.display(), e))?;
        let path = self.path(id);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(path.display(), e))?;
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        header[..8].copy_from_slice(SEGMENT_MAGIC);
        header[8..].copy_from_slice(&id.to_be_bytes());
        file.write_all_at(&header, 0).map_err(|e| io(path.display(), e))?;
        let file = Arc::new(file);
        self.files.write().unwrap_or_else(|p| p.into_inner()).insert(id, file.clone());
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        dirty.directory = true;
        if created_dir {
            // The store directory must learn of `seg/` too.
            if let Some(parent) = self.dir.parent() {
                File::open(parent).and_then(|d| d.sync_all()).map_err(|e| io(parent.display(), e))?;
            }
        }
        Ok((file, SEGMENT_HEADER_LEN))
    }

    fn file(&self, id: u64) -> Result<Arc<File>> {
        if let Some(f) = self.files.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(f.clone());
        }
        let path = self.path(id);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Corrupt(format!("segment file {} is missing", path.display())));
            }
            Err(e) => return Err(io(path.display(), e)),
        };
        // Read before taking `files`: `append` holds `active` while it takes
        // `files`, so the opposite order could deadlock.
        let active = self.active();
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        if files.len() >= OPEN_FILES {
            files.retain(|&k, _| k == active);
        }
        files.insert(id, file.clone());
        Ok(file)
    }

    /// Reads exactly `buf.len()` bytes at `at`; a segment that is missing or
    /// too short is corruption (the index points at what is not there).
    pub fn read(&self, at: Location, buf: &mut [u8]) -> Result<()> {
        if at.offset < SEGMENT_HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "an index entry points into the header of segment {}",
                file_name(at.segment)
            )));
        }
        let file = self.file(at.segment)?;
        // An offset no file can reach (pread refuses it with EINVAL) is as
        // much the index's damage as one past the end.
        let beyond = at.offset.checked_add(buf.len() as u64).is_none_or(|end| end > i64::MAX as u64);
        let read = if beyond {
            Err(std::io::ErrorKind::UnexpectedEof.into())
        } else {
            file.read_exact_at(buf, at.offset)
        };
        read.map_err(|e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Corrupt(format!(
                "segment {} ends before offset {} + {} that its index names",
                file_name(at.segment),
                at.offset,
                buf.len()
            )),
            _ => io(self.path(at.segment).display(), e),
        })
    }

    /// Segment `id`'s header bytes, as they are.
    pub fn header(&self, id: u64) -> Result<[u8; SEGMENT_HEADER_LEN as usize]> {
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        self.file(id)?.read_exact_at(&mut h, 0).map_err(|e| io(self.path(id).display(), e))?;
        Ok(h)
    }

    /// Makes every append so far durable (before sled learns of it).
    pub fn sync(&self) -> Result<()> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        for id in &dirty.segments {
            // A segment collected meanwhile needs nothing.
            let Ok(f) = self.file(*id) else { continue };
            if let Err(e) = f.sync_data() {
                // Try again at the next sync: the records are not durable yet.
                self.dirty.lock().unwrap_or_else(|p| p.into_inner()).segments.extend(&dirty.segments);
                return Err(io(self.path(*id).display(), e));
            }
        }
        if dirty.directory {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                self.dirty.lock().unwrap_or_else(|p| p.into_inner()).directory = true;
                return Err(io(self.dir.display(), e));
            }
        }
        Ok(())
    }

    /// Deletes segment `id` (collected: nothing points into it any more).
    pub fn remove(&self, id: u64) -> Result<()> {
        if id == self.active() {
            return Err(Error::Unusable(format!("segment {} is being appended to", file_name(id))));
        }
        self.files.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).segments.remove(&id);
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path.display(), e)),
        }
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(self.dir.display(), e))
    }

    /// Bytes of all segment files.
    #[cfg(any(test, feature = "internals"))]
    pub fn bytes(&self) -> Result<u64> {
        Ok(self.list()?.iter().map(|&(_, len)| len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_roll_over_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("seg");
        let s = Segments::open(&seg).unwrap();
        assert!(!seg.exists(), "nothing is created before the first append");
        let a = s.append(b"hello").unwrap();
        assert_eq!(a, Location { segment: 1, offset: SEGMENT_HEADER_LEN });
        let b = s.append(&vec![7u8; SEGMENT_BYTES as usize - 10]).unwrap();
        assert_eq!(b.segment, 2, "a record never spans two segments");
        s.sync().unwrap();
        let mut buf = [0u8; 5];
        s.read(a, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let past = Location { segment: 1, offset: SEGMENT_HEADER_LEN + 3 };
        assert!(matches!(s.read(past, &mut buf), Err(Error::Corrupt(_))));
        drop(s);
        let s = Segments::open(&seg).unwrap();
        assert_eq!(s.list().unwrap().iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        let c = s.append(b"x").unwrap();
        assert_eq!(c.segment, 3, "a reopened store never appends to an old segment");
        s.remove(1).unwrap();
        assert!(matches!(s.read(a, &mut buf), Err(Error::Corrupt(m)) if m.contains("missing")));
        assert!(s.remove(3).is_err(), "the active segment is not removed");
        let header = std::fs::read(seg.join(file_name(3))).unwrap();
        assert_eq!(&header[..8], SEGMENT_MAGIC);
        assert_eq!(u64::from_be_bytes(header[8..16].try_into().unwrap()), 3);
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_name("00000000000000AB"), None);
        assert_eq!(parse_name("abc"), None);
        assert_eq!(parse_name("000000000000000g"), None);
    }
}
