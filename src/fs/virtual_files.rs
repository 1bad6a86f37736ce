//! The files the mount shows but the store does not hold: `.audit` (the
//! log, docs/AUDIT.md), `.stats` (the metrics, docs/ADMIN.md "Metrics and
//! health") and the `.backup/` directory with its archive (`backup.rs`).
//!
//! They have fixed inode numbers below the first user inode (archives count
//! down from the top), are read-only, and are for the mounting uid alone:
//! the log names every file touched, and an archive is the whole vault.
//! `.audit` and `.stats` are text snapshots taken at open and held per file
//! handle, so a reader sees one consistent text: `.stats` whole, `.audit`
//! as a tree size and checkpoint whose lines are rendered as they are read
//! (`audit::log::AuditText`), so a log of any length shows in bounded
//! memory. What is recorded about these accesses is the adapter's to decide
//! (`record.rs`); this module only answers.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use fuser::Errno;

use super::backup::{Archive, ArchiveMaker, BackupFiles};
use super::errno::{Res, e};
use crate::audit::log::AuditText;
use crate::vault::{Attr, FileKind, ROOT_INO, Timestamp, Unlocked, Vault};

/// The `.audit` file's inode number: below the first user inode, never stored.
pub const AUDIT_INO: u64 = 8;
pub const AUDIT_NAME: &[u8] = b".audit";
/// The `.backup` directory's inode number.
pub const BACKUP_DIR_INO: u64 = 9;
pub const BACKUP_NAME: &[u8] = b".backup";
/// The `.stats` file's inode number.
pub const STATS_INO: u64 = 10;
pub const STATS_NAME: &[u8] = b".stats";
/// Archive files take inode numbers from here up (never stored; user inodes
/// count up from 16 and never come near).
pub const ARCHIVE_INO_BASE: u64 = 1 << 63;

/// Cookie of the archive entry in a `.backup` listing.
const ARCHIVE_COOKIE: u64 = 3;

/// The root's own entries, listed after every level directory under cookies
/// no vault entry uses (entry cookies are at most 2^62 + 3), in this order.
pub const ROOT_ENTRIES: [(u64, u64, FileKind, &[u8]); 3] = [
    (u64::MAX - 3, STATS_INO, FileKind::File, STATS_NAME),
    (u64::MAX - 2, AUDIT_INO, FileKind::File, AUDIT_NAME),
    (u64::MAX - 1, BACKUP_DIR_INO, FileKind::Dir, BACKUP_NAME),
];

/// Whether `ino` is one of the files the mount shows but the store does not hold.
pub fn is_virtual(ino: u64) -> bool {
    is_root_text(ino) || ino == BACKUP_DIR_INO || ino >= ARCHIVE_INO_BASE
}

/// The root's read-only text files (`.audit`, `.stats`).
pub fn is_root_text(ino: u64) -> bool {
    ino == AUDIT_INO || ino == STATS_INO
}

/// Is `name` in the root one of the mount's own (so no file may take it)?
pub fn is_reserved(parent: u64, name: &[u8]) -> bool {
    parent == ROOT_INO && ROOT_ENTRIES.iter().any(|(_, _, _, n)| *n == name)
}

/// Only reading: a write or truncating open of a virtual file is refused.
fn read_only(flags: i32) -> Res<()> {
    if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// A snapshot of `.stats` or `.audit`, held by an open handle.
#[derive(Clone)]
enum Text {
    Stats(Arc<Vec<u8>>),
    /// None: the log is empty.
    Audit(Option<Arc<AuditText>>),
}

impl Text {
    fn len(&self) -> u64 {
        match self {
            Text::Stats(t) => t.len() as u64,
            Text::Audit(t) => t.as_ref().map_or(0, |t| t.len()),
        }
    }
}

pub struct VirtualFiles {
    vault: Vault<Unlocked>,
    /// `.audit` and `.stats` snapshots, by file handle.
    texts: Mutex<HashMap<u64, Text>>,
    backups: BackupFiles,
}

impl VirtualFiles {
    /// `backup` makes the archives of `.backup/` (None: the directory is empty).
    pub fn new(vault: Vault<Unlocked>, backup: Option<ArchiveMaker>) -> Self {
        VirtualFiles { vault, texts: Mutex::default(), backups: BackupFiles::new(backup) }
    }

    fn texts(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Text>> {
        self.texts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Only the mounting uid reads these files.
    pub fn check_reader(&self, uid: u32) -> Res<()> {
        if uid != self.vault.owner_uid() {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// access(2) on a virtual inode: read (and search), never write.
    pub fn access(&self, uid: u32, ino: u64, want_write: bool, want_exec: bool) -> Res<()> {
        self.check_reader(uid)?;
        if want_write || (want_exec && is_root_text(ino)) {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// The attributes of the root entry `name`, if it is one of ours.
    pub fn root_entry(&self, name: &[u8]) -> Option<Res<Attr>> {
        let &(_, ino, _, _) = ROOT_ENTRIES.iter().find(|(_, _, _, n)| *n == name)?;
        Some(self.getattr(ino, None))
    }

    /// Archive `name` in `.backup/`, for the mounting uid.
    pub fn lookup_archive(&self, uid: u32, name: &[u8]) -> Res<Attr> {
        self.check_reader(uid)?;
        let a = self.backups.find(None, Some(name)).ok_or(Errno::ENOENT)?;
        Ok(self.archive_attr(&a))
    }

    /// The attributes of virtual inode `ino`, as handle `fh` (if any) sees it.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Res<Attr> {
        if is_root_text(ino) {
            let size = match fh.and_then(|fh| self.texts().get(&fh).cloned()) {
                Some(t) => t.len(),
                None => self.text(ino)?.len(),
            };
            return Ok(Attr { ino, ..self.file_attr(size) });
        }
        if ino == BACKUP_DIR_INO {
            return Ok(self.backup_dir_attr());
        }
        let held = fh.and_then(|fh| self.backups.by_handle(fh)).filter(|a| a.ino == ino);
        let a = held.or_else(|| self.backups.find(Some(ino), None)).ok_or(Errno::ENOENT)?;
        Ok(self.archive_attr(&a))
    }

    /// May the caller open `ino` with `flags`? (The open is recorded by the
    /// adapter around this check; `open` then takes the snapshot.)
    pub fn check_open(&self, uid: u32, flags: i32) -> Res<()> {
        self.check_reader(uid)?;
        read_only(flags)
    }

    /// Opens `ino` as handle `fh`: a snapshot of a text file, or the
    /// archive it names (ENOENT once the archive is gone).
    pub fn open(&self, ino: u64, fh: u64) -> Res<()> {
        if is_root_text(ino) {
            let text = self.text(ino)?;
            self.texts().insert(fh, text);
            return Ok(());
        }
        let a = self.backups.find(Some(ino), None).ok_or(Errno::ENOENT)?;
        self.backups.hold(fh, a);
        Ok(())
    }

    /// An archive's size (0 when gone): the byte range its open records.
    pub fn archive_size(&self, ino: u64) -> u64 {
        self.backups.find(Some(ino), None).map_or(0, |a| a.size)
    }

    /// Up to `size` bytes at `offset` of the file open as `fh`.
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Res<Vec<u8>> {
        if is_root_text(ino) {
            return match self.texts().get(&fh).cloned().ok_or(Errno::EBADF)? {
                Text::Stats(t) => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(t.len());
                    let end = start.saturating_add(size as usize).min(t.len());
                    Ok(t[start..end].to_vec())
                }
                Text::Audit(None) => Ok(Vec::new()),
                // Whatever stops a line from rendering (records archived
                // since the open, damage) is an I/O error to the reader;
                // the log says which.
                Text::Audit(Some(t)) => self.vault.audit_text_read(&t, offset, size).map_err(|err| {
                    tracing::error!("reading .audit at {offset}: {err}");
                    Errno::EIO
                }),
            };
        }
        self.backups.by_handle(fh).ok_or(Errno::EBADF)?.read(offset, size)
    }

    /// The size of the file open as `fh`.
    pub fn size(&self, ino: u64, fh: u64) -> Res<u64> {
        if is_root_text(ino) {
            return self.texts().get(&fh).map(Text::len).ok_or(Errno::EBADF);
        }
        let held = self.backups.by_handle(fh).filter(|a| a.ino == ino);
        held.map(|a| a.size).ok_or(Errno::ENXIO)
    }

    /// Handle `fh` of a file or of a `.backup` listing is closed.
    pub fn release(&self, ino: u64, fh: u64) {
        if is_root_text(ino) {
            self.texts().remove(&fh);
        } else {
            self.backups.release(fh);
        }
    }

    /// Opens a listing of `.backup/` as `fh`: it shows one snapshot, made
    /// (or reused) now.
    pub fn open_backup_dir(&self, uid: u32, fh: u64) -> Res<()> {
        self.check_reader(uid)?;
        if !self.backups.can_make() {
            return Ok(());
        }
        let a = self.backups.fresh(&self.vault)?;
        self.backups.hold(fh, a);
        Ok(())
    }

    /// "." and ".." then the archive of listing `fh`; `add` returns true once full.
    pub fn walk_backup_dir(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileKind, &OsStr, Attr) -> Res<bool>,
    ) -> Res<()> {
        // A mount that makes no archives lists the directory empty.
        let archive = match self.backups.can_make() {
            true => Some(self.backups.by_handle(fh).ok_or(Errno::EBADF)?),
            false => None,
        };
        let dir = self.backup_dir_attr();
        if offset < 1 && add(BACKUP_DIR_INO, 1, FileKind::Dir, OsStr::new("."), dir.clone())? {
            return Ok(());
        }
        let root = Attr { ino: ROOT_INO, ..dir };
        if offset < 2 && add(ROOT_INO, 2, FileKind::Dir, OsStr::new(".."), root)? {
            return Ok(());
        }
        if let Some(archive) = archive
            && offset < ARCHIVE_COOKIE
        {
            let attr = self.archive_attr(&archive);
            add(archive.ino, ARCHIVE_COOKIE, FileKind::File, OsStr::from_bytes(&archive.name), attr)?;
        }
        Ok(())
    }

    /// The path an access to virtual inode `ino` is recorded under.
    pub fn path(&self, ino: u64) -> Vec<u8> {
        match ino {
            AUDIT_INO => b"/.audit".to_vec(),
            STATS_INO => b"/.stats".to_vec(),
            BACKUP_DIR_INO => b"/.backup".to_vec(),
            _ => {
                let mut p = b"/.backup/".to_vec();
                match self.backups.find(Some(ino), None) {
                    Some(a) => p.extend_from_slice(&a.name),
                    None => p.extend_from_slice(format!("<ino {ino}>").as_bytes()),
                }
                p
            }
        }
    }

    /// A snapshot of `.audit` or `.stats` now.
    fn text(&self, ino: u64) -> Res<Text> {
        if ino == STATS_INO {
            return Ok(Text::Stats(Arc::new(
                self.vault.metrics().render(&self.vault.figures()).into_bytes(),
            )));
        }
        let t = self.vault.audit_text().map_err(|err| {
            tracing::error!("taking a snapshot of .audit: {err}");
            e(err)
        })?;
        Ok(Text::Audit(t.map(Arc::new)))
    }

    /// A read-only file of the mounting uid, `size` bytes, dated now.
    fn file_attr(&self, size: u64) -> Attr {
        let now = Timestamp::now();
        Attr {
            ino: AUDIT_INO,
            generation: 0,
            level: None,
            parent: ROOT_INO,
            kind: FileKind::File,
            perm: 0o400,
            nlink: 1,
            uid: self.vault.owner_uid(),
            gid: 0,
            rdev: 0,
            size,
            blocks: size.div_ceil(512),
            blksize: 4096,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }

    /// `.backup/`: its times are fixed, so that tools that compare a
    /// directory's times before and after reading it (tar) see no change.
    fn backup_dir_attr(&self) -> Attr {
        let t = self.backups.started;
        Attr {
            ino: BACKUP_DIR_INO,
            kind: FileKind::Dir,
            perm: 0o500,
            nlink: 2,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            ..self.file_attr(0)
        }
    }

    fn archive_attr(&self, a: &Archive) -> Attr {
        let t = a.made_at;
        Attr { ino: a.ino, atime: t, mtime: t, ctime: t, crtime: t, ..self.file_attr(a.size) }
    }
}
