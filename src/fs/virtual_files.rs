//! The files the mount shows but the store does not hold: `.audit` (the
//! log, docs/AUDIT.md), `.stats` (the metrics, docs/ADMIN.md "Metrics and
//! health") and the `.backup/` directory with its archive (`backup.rs`).
//!
//! They have fixed inode numbers below the first user inode (archives count
//! down from the top), are read-only, and are for the mounting uid alone:
//! the log names every file touched, and an archive is the whole vault.
//! `.audit` and `.stats` are text snapshots taken at open and held per file
//! handle, so a reader sees one consistent text. What is recorded about
//! these accesses is the adapter's to decide (`record.rs`); this module only
//! answers.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use fuser::Errno;

use super::backup::{Archive, ArchiveMaker, BackupFiles};
use super::errno::{Res, e};
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

/// The most records `.audit` shows: its text is built in the daemon's
/// memory (about 400 bytes a record, held twice while a snapshot is taken),
/// so a log past this refuses (EFBIG) rather than take gigabytes; its older
/// records belong in archives (ADMIN.md, "Audit archives").
const MAX_AUDIT_TEXT_RECORDS: u64 = 1_000_000;

/// `.audit` may show `shown` records. Silent: a stat of a log too large
/// to show is answered as empty, and only a refused open is logged.
fn audit_text_fits(shown: u64) -> Res<()> {
    if shown > MAX_AUDIT_TEXT_RECORDS { Err(Errno::EFBIG) } else { Ok(()) }
}

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

pub struct VirtualFiles {
    vault: Vault<Unlocked>,
    /// `.audit` and `.stats` snapshots, by file handle.
    texts: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    /// The `.audit` leaf lines rendered so far, so a stat or open decrypts
    /// only what is new: (first leaf shown, the archive base; leaves
    /// covered; their lines).
    lines: Mutex<(u64, u64, Vec<u8>)>,
    backups: BackupFiles,
}

impl VirtualFiles {
    /// `backup` makes the archives of `.backup/` (None: the directory is empty).
    pub fn new(vault: Vault<Unlocked>, backup: Option<ArchiveMaker>) -> Self {
        VirtualFiles {
            vault,
            texts: Mutex::default(),
            lines: Mutex::default(),
            backups: BackupFiles::new(backup),
        }
    }

    fn texts(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Vec<u8>>>> {
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
                Some(t) => t.len() as u64,
                // Too large to show: it still lists and stats (as empty), so
                // `ls` of the root works; opening it says why it cannot.
                None => match self.text(ino) {
                    Err(Errno::EFBIG) => 0,
                    t => t?.len() as u64,
                },
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
            let text = self.text(ino).inspect_err(|&e| {
                if e == Errno::EFBIG {
                    tracing::error!(
                        ".audit refused: the log holds {} records since its archive base, more than \
                         the {MAX_AUDIT_TEXT_RECORDS} its text is built from in memory; archive the \
                         older ones (vaultfs audit archive STORE --before ..., or policy [audit] keep)",
                        self.vault.audit_size().saturating_sub(self.vault.audit_base_size())
                    );
                }
            })?;
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
            let t = self.texts().get(&fh).cloned().ok_or(Errno::EBADF)?;
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(t.len());
            let end = start.saturating_add(size as usize).min(t.len());
            return Ok(t[start..end].to_vec());
        }
        self.backups.by_handle(fh).ok_or(Errno::EBADF)?.read(offset, size)
    }

    /// The size of the file open as `fh`.
    pub fn size(&self, ino: u64, fh: u64) -> Res<u64> {
        if is_root_text(ino) {
            return self.texts().get(&fh).map(|t| t.len() as u64).ok_or(Errno::EBADF);
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
        let archive = self.backups.by_handle(fh).ok_or(Errno::EBADF)?;
        let dir = self.backup_dir_attr();
        if offset < 1 && add(BACKUP_DIR_INO, 1, FileKind::Dir, OsStr::new("."), dir.clone())? {
            return Ok(());
        }
        let root = Attr { ino: ROOT_INO, ..dir };
        if offset < 2 && add(ROOT_INO, 2, FileKind::Dir, OsStr::new(".."), root)? {
            return Ok(());
        }
        if offset < ARCHIVE_COOKIE {
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

    /// The text of `.audit` or `.stats` now.
    fn text(&self, ino: u64) -> Res<Arc<Vec<u8>>> {
        if ino == STATS_INO {
            return Ok(Arc::new(self.vault.metrics().render(&self.vault.figures()).into_bytes()));
        }
        self.audit_text()
    }

    /// The current `.audit` text: the base line if the log is archived, the
    /// cached leaf lines, the new ones, and a checkpoint over all of them.
    fn audit_text(&self) -> Res<Arc<Vec<u8>>> {
        audit_text_fits(self.vault.audit_size().saturating_sub(self.vault.audit_base_size()))?;
        let mut cache = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut tail) = self.vault.audit_export_since(cache.1).map_err(e)? else {
            return Ok(Arc::new(Vec::new()));
        };
        // Archived since the cache was filled: its lines start too early.
        if tail.first != cache.0 {
            *cache = (tail.first, tail.first, Vec::new());
            let Some(t) = self.vault.audit_export_since(tail.first).map_err(e)? else {
                return Ok(Arc::new(Vec::new()));
            };
            tail = t;
        }
        cache.2.extend_from_slice(&tail.lines);
        cache.1 = tail.size;
        let mut text = Vec::with_capacity(tail.head.len() + cache.2.len() + tail.checkpoint_line.len());
        text.extend_from_slice(tail.head.as_bytes());
        text.extend_from_slice(&cache.2);
        text.extend_from_slice(tail.checkpoint_line.as_bytes());
        Ok(Arc::new(text))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_log_too_large_to_show_is_refused_not_built() {
        assert!(audit_text_fits(0).is_ok());
        assert!(audit_text_fits(MAX_AUDIT_TEXT_RECORDS).is_ok());
        assert_eq!(audit_text_fits(MAX_AUDIT_TEXT_RECORDS + 1).unwrap_err(), Errno::EFBIG);
    }
}
