//! Mounting and serving: builds the fuser session, reports readiness, and
//! unmounts cleanly on SIGTERM/SIGINT/SIGHUP after flushing the store.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionACL};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::adapter::VaultFs;
use super::handles::InodeTable;
use crate::vault::OwnerMap;
use crate::vault::{Unlocked, Vault};

/// Mount options, as decided by the CLI.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub read_only: bool,
    /// Let other users reach the mount (levels >= 2 still answer only the owner).
    pub allow_other: bool,
    /// Report every inode as owned by this uid / gid (like sshfs or vfat).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// FUSE worker threads.
    pub threads: usize,
    /// Shown as the mount's source in /proc/mounts (the store path).
    pub fsname: String,
    /// Inodes the kernel may keep looked up before cold ones are dropped
    /// from its cache (`handles::InodeTable`).
    pub known_inodes: usize,
    /// The kernel's readahead for the mount in KiB (`raise_readahead`);
    /// 0 leaves it as the kernel sets it.
    pub readahead_kib: u32,
}

/// Mounts `vault` at `mountpoint` and serves it until unmounted. Calls
/// `ready` once the kernel has accepted the mount. `backup` makes the
/// archives `.backup/` shows (None: it stays empty).
pub fn mount(
    vault: Vault<Unlocked>,
    mountpoint: &Path,
    opts: &MountOptions,
    backup: Option<super::ArchiveMaker>,
    ready: impl FnOnce(),
) -> Result<(), String> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        // As a kernel option, so that the direct mount(2) path (root) also
        // shows the type as fuse.vaultfs; fuser's Subtype only reaches fusermount.
        MountOption::CUSTOM("subtype=vaultfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        if opts.read_only { MountOption::RO } else { MountOption::RW },
    ];
    if opts.allow_other {
        cfg.acl = SessionACL::All;
        // Other uids: the kernel opens FIFOs, device nodes and connects to
        // sockets without asking the daemon, so only its own mode check
        // enforces their modes (docs/SEMANTICS.md, "Permissions"). The
        // daemon still checks too (vault/access.rs) and records what reaches it.
        cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    // A mount only the mounting uid may use: the daemon checks mode bits
    // itself (vault/access.rs), so that every refusal reaches it and is recorded.
    cfg.n_threads = Some(opts.threads.max(1));
    let flusher = vault.clone();
    let owner = OwnerMap { uid: opts.uid, gid: opts.gid };
    let fs = VaultFs::new(vault, owner, backup, opts.allow_other, opts.known_inodes);
    let inodes = fs.inode_table();
    let pages = fs.reader_pages();
    let names = fs.reader_names();
    let mut session = Session::new(fs, mountpoint, &cfg)
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    pages.set_notifier(session.notifier());
    names.set_notifier(session.notifier());
    let serving = Arc::new(AtomicBool::new(true));
    let trimmer = spawn_trimmer(inodes, session.notifier(), Arc::clone(&serving));
    let mut unmounter = session.unmount_callable();
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| format!("signal setup: {e}"))?;
    let handle = signals.handle();
    let target: PathBuf = mountpoint.to_path_buf();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!("signal {sig}: flushing and unmounting");
            if let Err(e) = flusher.sync() {
                tracing::error!("flush before unmount failed: {e}");
            }
            if let Err(e) = unmounter.unmount() {
                // Busy (open files): detach now, finish when the last user closes.
                tracing::warn!("unmount failed ({e}); detaching lazily");
                if let Err(e) = crate::sys::lazy_unmount(&target) {
                    tracing::error!("lazy unmount failed: {e}");
                }
            }
        }
    });
    if opts.readahead_kib > 0 {
        raise_readahead(mountpoint.to_path_buf(), opts.readahead_kib);
    }
    ready();
    let result = session.run().map_err(|e| format!("FUSE session ended with an error: {e}"));
    handle.close();
    serving.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let _ = trimmer.join();
    names.stop();
    result
}

/// Sets the mount's readahead (its backing device's `read_ahead_kb`) to
/// `kib`. FUSE starts every mount at 128 KiB and lets a file system only
/// lower it; that is too little to keep two cores opening records in a
/// sequential read (docs/PERFORMANCE.md, session 21). Only root may write
/// the value: elsewhere the kernel's stays and the log says how to raise it.
/// From a thread of its own, not joined: the `stat` that names the device
/// is answered once the session has handled the kernel's INIT, which sets
/// the value this replaces.
fn raise_readahead(mountpoint: PathBuf, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    std::thread::spawn(move || {
        let dev = match std::fs::metadata(&mountpoint) {
            Ok(m) => m.dev(),
            Err(e) => return tracing::debug!("readahead left as it is: {}: {e}", mountpoint.display()),
        };
        let (major, minor) = crate::sys::device_numbers(dev);
        let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        match std::fs::write(&knob, kib.to_string()) {
            Ok(()) => tracing::debug!("readahead {kib} KiB ({knob})"),
            Err(e) => tracing::info!(
                "readahead stays at the kernel's (writing {knob}: {e}); as root: echo {kib} > {knob}"
            ),
        }
    });
}

/// Keeps the table of known inodes within its limit: asks the kernel to drop
/// the names of files not used lately, so that it forgets their inodes (a
/// FORGET each, which removes them from the table). From a thread of its own:
/// the kernel takes the directory's lock for an invalidation, which a request
/// thread may be holding.
fn spawn_trimmer(inodes: Arc<InodeTable>, notifier: Notifier, serving: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while serving.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let cold = inodes.cold_names();
            if cold.is_empty() {
                continue;
            }
            tracing::debug!("asked the kernel to forget {} files not used lately", cold.len());
            for (parent, name) in cold {
                // ENOENT (renamed or gone since) and a finished session are
                // both fine: the kernel forgets, or there is nothing to trim.
                let _ = notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(&name));
            }
        }
    })
}
