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
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fuser::Errno;

use super::errno::Res;
use super::virtual_files::ARCHIVE_INO_BASE;
use crate::vault::{Timestamp, Unlocked, Vault};
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
    pub made_at: Timestamp,
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
    /// When the directory came to be (its times, which never change).
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

    /// Whether this mount makes archives (a read-only mount of a cluster
    /// vault does not: its `.backup/` is empty).
    pub fn can_make(&self) -> bool {
        self.maker.is_some()
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
