//! The read-only `.backup/` directory at the mount root (docs/ADMIN.md,
//! "Backup and restore"). It holds one file, `vault-<tree size>.vfsbak`: a
//! signed, ciphertext-only archive of the whole store taken at one instant.
//!
//! An archive is made when the directory is opened (listed) and none younger
//! than `REFRESH` exists, streamed into an unlinked temporary file in the
//! store directory, and kept while a handle uses it or for `KEEP` after its
//! last use. Each archive has its own inode number, so a `stat` and the
//! `open` that follows it always see the same snapshot and size. Opening it
//! is recorded (`backup_read`, once per open); reading it needs no level key.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fuser::Errno;

use super::adapter::VaultFs;
use super::audit::{At, Range};
use super::errno::Res;
use crate::vault::{Attr, AuditOp, FileKind, ROOT_INO, Timestamp, Unlocked, Vault};

/// The `.backup` directory's inode number: below the first user inode, never stored.
pub const BACKUP_DIR_INO: u64 = 9;
pub const BACKUP_NAME: &[u8] = b".backup";
/// Archive files take inode numbers from here up (never stored; user inodes
/// count up from 16 and never come near).
pub const ARCHIVE_INO_BASE: u64 = 1 << 63;
/// A listing younger than this reuses the current archive.
const REFRESH: Duration = Duration::from_secs(2);
/// An archive no one has used for this long is dropped (its file with it).
const KEEP: Duration = Duration::from_secs(60);

/// Writes an archive of the vault into the file; returns the audit tree size
/// it covers. Handed in by the command line (the backup module is its peer).
pub type ArchiveMaker = Arc<dyn Fn(&Vault<Unlocked>, &File) -> Result<u64, String> + Send + Sync>;

/// One archive: its file, name and inode.
pub struct Archive {
    pub ino: u64,
    pub name: Vec<u8>,
    pub size: u64,
    file: File,
    made: Instant,
    made_at: Timestamp,
    last_used: Mutex<Instant>,
}

impl Archive {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// Up to `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u32) -> Res<Vec<u8>> {
        self.touch();
        let end = offset.saturating_add(size as u64).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            tracing::error!("reading backup archive {}: {e}", String::from_utf8_lossy(&self.name));
            Errno::EIO
        })?;
        Ok(buf)
    }
}

/// The archives of this mount: the current one and those open handles hold.
pub struct BackupFiles {
    maker: Option<ArchiveMaker>,
    state: Arc<Mutex<State>>,
    /// Makes one archive at a time (a second lister waits and shares it).
    making: Mutex<()>,
    next_ino: AtomicU64,
    /// The directory's times: fixed, so that tools that compare a
    /// directory's times before and after reading it (tar) see no change.
    pub started: Timestamp,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Archive>>,
    /// Open files and listings of `.backup`, by file handle.
    handles: HashMap<u64, Arc<Archive>>,
}

impl BackupFiles {
    pub fn new(maker: Option<ArchiveMaker>) -> Self {
        BackupFiles {
            maker,
            state: Default::default(),
            making: Mutex::new(()),
            next_ino: AtomicU64::new(ARCHIVE_INO_BASE),
            started: Timestamp::now(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The archive with inode `ino` or name `name`, if still known.
    pub fn find(&self, ino: Option<u64>, name: Option<&[u8]>) -> Option<Arc<Archive>> {
        let st = self.state();
        let hit = |a: &&Arc<Archive>| ino.is_none_or(|i| a.ino == i) && name.is_none_or(|n| a.name == n);
        let found = st.current.iter().chain(st.handles.values()).find(hit).cloned();
        if let Some(a) = &found {
            a.touch();
        }
        found
    }

    pub fn by_handle(&self, fh: u64) -> Option<Arc<Archive>> {
        self.state().handles.get(&fh).cloned()
    }

    pub fn hold(&self, fh: u64, a: Arc<Archive>) {
        self.state().handles.insert(fh, a);
    }

    pub fn release(&self, fh: u64) {
        self.state().handles.remove(&fh);
    }

    /// The archive a listing shows: the current one if fresh, else a new one.
    pub fn fresh(&self, vault: &Vault<Unlocked>) -> Res<Arc<Archive>> {
        let _one = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = self.state().current.clone().filter(|a| a.made.elapsed() < REFRESH) {
            a.touch();
            return Ok(a);
        }
        let maker = self.maker.as_ref().ok_or(Errno::ENOSYS)?;
        let file = temp_file(vault)?;
        let started = Instant::now();
        let tree_size = maker(vault, &file).map_err(|e| {
            tracing::error!("making the backup archive failed: {e}");
            Errno::EIO
        })?;
        let size = file.metadata().map_err(|_| Errno::EIO)?.len();
        let archive = Arc::new(Archive {
            ino: self.next_ino.fetch_add(1, Ordering::Relaxed),
            name: format!("vault-{tree_size}.vfsbak").into_bytes(),
            size,
            file,
            made: Instant::now(),
            made_at: Timestamp::now(),
            last_used: Mutex::new(Instant::now()),
        });
        tracing::info!("backup archive of {size} bytes made in {:?}", started.elapsed());
        self.state().current = Some(archive.clone());
        reap_when_idle(Arc::downgrade(&self.state), Arc::downgrade(&archive));
        Ok(archive)
    }
}

/// Drops `archive` as the current one once it has been idle for `KEEP`.
fn reap_when_idle(state: Weak<Mutex<State>>, archive: Weak<Archive>) {
    let spawned = std::thread::Builder::new().name("backup-reaper".into()).spawn(move || {
        loop {
            std::thread::sleep(KEEP / 4);
            let (Some(state), Some(a)) = (state.upgrade(), archive.upgrade()) else { return };
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let is_current = st.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &a));
            if !is_current {
                return;
            }
            if a.idle() >= KEEP {
                st.current = None;
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the backup reaper ({e}): the archive stays until the next listing");
    }
}

/// An unlinked file in the store directory (same filesystem as the store,
/// so the space it takes is the store's; gone when closed, even after a crash).
fn temp_file(vault: &Vault<Unlocked>) -> Res<File> {
    let dir = vault.dir();
    for n in 0..100u32 {
        let path = dir.join(format!(".backup-{}-{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                tracing::error!("cannot create a backup file in {}: {e}", dir.display());
                return Err(Errno::EIO);
            }
        }
    }
    Err(Errno::EIO)
}

/// Whether `ino` is one of the files the mount shows but the store does not hold.
pub fn is_virtual(ino: u64) -> bool {
    super::stats::is_root_text(ino) || ino == BACKUP_DIR_INO || ino >= ARCHIVE_INO_BASE
}

impl VaultFs {
    pub fn backup_dir_attr(&self) -> Attr {
        let mut a = self.audit_attr(0);
        a.ino = BACKUP_DIR_INO;
        a.kind = FileKind::Dir;
        a.perm = 0o500;
        a.nlink = 2;
        a.blocks = 0;
        a.parent = ROOT_INO;
        let t = self.backup_files.started;
        (a.atime, a.mtime, a.ctime, a.crtime) = (t, t, t, t);
        a
    }

    pub fn archive_attr(&self, a: &Archive) -> Attr {
        let mut attr = self.audit_attr(a.size);
        attr.ino = a.ino;
        (attr.atime, attr.mtime, attr.ctime, attr.crtime) = (a.made_at, a.made_at, a.made_at, a.made_at);
        attr
    }
}

impl VaultFs {
    /// Only the mounting uid reads backups (as `.audit`): the archive is
    /// ciphertext, but it is the whole vault.
    pub fn check_backup_reader(&self, req: &fuser::Request) -> Res<()> {
        self.check_audit_reader(req)
    }

    /// Opens archive `ino`, recorded as `backup_read` (once per open).
    pub fn open_archive(&self, req: &fuser::Request, ino: u64, flags: fuser::OpenFlags) -> Res<Arc<Archive>> {
        let archive = self.backup_files.find(Some(ino), None);
        let range = Range { offset: 0, len: archive.as_ref().map_or(0, |a| a.size) };
        self.logged(req, AuditOp::BackupRead, At::Node(ino), range, || {
            self.check_backup_reader(req)?;
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
                return Err(Errno::EPERM);
            }
            archive.ok_or(Errno::ENOENT)
        })
    }

    /// "." and ".." then the archive of listing `fh`; `add` returns true once full.
    pub fn walk_backup_dir(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileKind, &OsStr, Attr) -> Res<bool>,
    ) -> Res<()> {
        let archive = self.backup_files.by_handle(fh).ok_or(Errno::EBADF)?;
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

    /// The size of a virtual file (`.audit`, `.stats` or an archive), as its handle sees it.
    pub fn virtual_size(&self, ino: u64, fh: u64) -> Res<u64> {
        if super::stats::is_root_text(ino) {
            return self.audit_files.get(fh).map(|t| t.len() as u64).ok_or(Errno::EBADF);
        }
        let held = self.backup_files.by_handle(fh).filter(|a| a.ino == ino);
        held.map(|a| a.size).ok_or(Errno::ENXIO)
    }

    /// The path an access to `.backup` or an archive is recorded under.
    pub fn backup_path(&self, ino: u64) -> Vec<u8> {
        let mut p = b"/.backup".to_vec();
        if ino != BACKUP_DIR_INO {
            p.push(b'/');
            match self.backup_files.find(Some(ino), None) {
                Some(a) => p.extend_from_slice(&a.name),
                None => p.extend_from_slice(format!("<ino {ino}>").as_bytes()),
            }
        }
        p
    }
}

/// Cookie of the archive entry in a `.backup` listing.
pub const ARCHIVE_COOKIE: u64 = 3;
