//! `fuser::Filesystem` for the vault: convert, call, reply. No logic beyond
//! argument conversion, access gating by level, and lookup-count bookkeeping.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::attr::{file_attr, file_type, kind_from_mode, open_mask, timestamp};
use super::backup::ArchiveMaker;
use super::errno::{Res, e};
use super::handles::InodeTable;
use super::names::ReaderNames;
use super::pages::ReaderPages;
use super::record::{At, Range, Recorder};
use super::virtual_files::{
    AUDIT_INO, BACKUP_DIR_INO, ROOT_ENTRIES, VirtualFiles, is_reserved, is_root_text, is_virtual,
};
use crate::metrics::Timed;
use crate::vault::{
    Access, Attr, AttrChange, AuditOp, ErrorKind, FallocMode, FileKind, LockHolder, LockKind, LockOutcome,
    LockRequest, MAY_EXEC, MAY_READ, MAY_WRITE, NewNode, OwnerMap, ROOT_INO, RenameFlags as VRename, SetAttr,
    TimeSet, Unlocked, Vault, Who, XattrFlags, level_of_dir, rules,
};

/// How long the kernel may cache attributes and entries. Short, because other
/// processes' changes come through this same mount anyway.
const TTL: Duration = Duration::from_secs(1);
/// Entries fetched from the vault per readdir round.
const READDIR_CHUNK: usize = 128;
/// `.audit` grows with every access: its size must never come from a cache.
const NO_CACHE: Duration = Duration::ZERO;

/// Largest copy_file_range chunk moved in one vault read/write.
const COPY_CHUNK: usize = 1 << 20;

pub struct VaultFs {
    vault: Vault<Unlocked>,
    inodes: Arc<InodeTable>,
    owner: OwnerMap,
    /// Other uids are admitted (`allow_other`): cached names must not let
    /// one uid skip a search-permission check that another passed.
    shared: bool,
    /// What other hosts' mounts of a cluster vault change (docs/CLUSTER.md).
    hosts: Hosts,
    next_fh: AtomicU64,
    files: VirtualFiles,
    /// On a read-only mount: when the kernel may keep a file's pages.
    pages: ReaderPages,
    /// On a read-only mount: which directory names the kernel keeps are stale.
    names: ReaderNames,
}

/// Whether other hosts change or read the vault beside this mount.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// A store directory: every change comes through this mount.
    One,
    /// A cluster vault's holder: read-only mounts elsewhere see what it
    /// commits, so a close commits first when one is mounted.
    Holder,
    /// A read-only mount of a cluster vault: the holder changes it, so the
    /// kernel keeps no attributes and no names but directories' (names.rs):
    /// every stat, open and last component of a path asks again.
    Reader,
    /// A mount that shares writing a cluster vault: it follows the other
    /// hosts' changes as a reader does, and commits its own as the holder
    /// does.
    Writer,
}

impl Hosts {
    /// Other hosts change the vault under this mount: it catches up before
    /// lookups and opens, and the kernel keeps little (as on a reader).
    fn follows(self) -> bool {
        matches!(self, Hosts::Reader | Hosts::Writer)
    }

    /// Other hosts read what this mount changes: closes and changes of
    /// names commit for them.
    fn publishes(self) -> bool {
        matches!(self, Hosts::Holder | Hosts::Writer)
    }
}

fn who(req: &Request) -> Who {
    Who::new(req.uid(), req.gid(), req.pid())
}

/// Does the caller lack CAP_FSETID, as far as the daemon can tell? The kernel
/// leaves dropping set-id bits on truncate and fallocate to us
/// (FUSE_HANDLE_KILLPRIV_V2) without saying who holds the capability; root
/// stands for it, as it does for every other permission check here.
fn unprivileged(req: &Request) -> bool {
    req.uid() != 0
}

/// What a listing shows for an entry whose inode record fails
/// authentication: its kind, no permissions, no size. The kernel keeps it
/// for no time, so every access asks again and gets EIO.
fn damaged_attr(ino: u64, kind: FileKind, level: Option<u8>) -> Attr {
    Attr {
        ino,
        generation: 0,
        level,
        parent: 0,
        kind,
        perm: 0,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime: Default::default(),
        mtime: Default::default(),
        ctime: Default::default(),
        crtime: Default::default(),
    }
}

/// How long the kernel may keep a virtual inode's attributes: `.backup/`
/// never changes; the files' sizes change with every access or archive.
fn attr_ttl(ino: u64) -> Duration {
    if ino == BACKUP_DIR_INO { TTL } else { NO_CACHE }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timestamp(t)),
    }
}

/// The kernel's largest file offset: "to the end of the file".
const OFFSET_MAX: u64 = i64::MAX as u64;

/// A lock call's arguments as a vault lock request; only files of the
/// vault take locks (not `.audit`, `.stats` or `.backup/`).
fn lock_request(ino: u64, owner: LockOwner, start: u64, end: u64, typ: i32, pid: u32) -> Res<LockRequest> {
    if is_virtual(ino) {
        return Err(Errno::ENOLCK);
    }
    let kind = match typ {
        libc::F_RDLCK => Some(LockKind::Shared),
        libc::F_WRLCK => Some(LockKind::Exclusive),
        libc::F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    if start > end {
        return Err(Errno::EINVAL);
    }
    Ok(LockRequest { ino, owner: owner.0, pid, start, end, kind })
}

/// What a lock request's outcome tells the caller.
fn lock_result(r: crate::vault::Result<LockOutcome>) -> Res<()> {
    match r.map_err(e)? {
        LockOutcome::Granted => Ok(()),
        LockOutcome::Busy(_) => Err(Errno::EAGAIN),
        LockOutcome::Cancelled => Err(Errno::EINTR),
        LockOutcome::Deadlock => Err(Errno::EDEADLK),
    }
}

fn fcntl_type(kind: LockKind) -> i32 {
    match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    }
}

impl VaultFs {
    /// `backup` makes the archives of `.backup/` (None: the directory is empty);
    /// `shared`: other uids are admitted (`allow_other`); `known_inodes`:
    /// how many inodes the kernel may keep before cold ones are dropped.
    pub fn new(
        vault: Vault<Unlocked>,
        owner: OwnerMap,
        backup: Option<ArchiveMaker>,
        shared: bool,
        known_inodes: usize,
    ) -> Self {
        let hosts = match (vault.is_cluster(), vault.reader_host(), vault.shares_writes()) {
            (false, _, _) => Hosts::One,
            (true, None, _) => Hosts::Holder,
            (true, Some(_), false) => Hosts::Reader,
            (true, Some(_), true) => Hosts::Writer,
        };
        let names = ReaderNames::default();
        if hosts.follows() {
            let told = names.clone();
            vault.on_entries_heard(Box::new(move |heard| told.heard(heard)));
        }
        VaultFs {
            names,
            inodes: Arc::new(InodeTable::with_limit(known_inodes)),
            owner,
            shared,
            hosts,
            next_fh: AtomicU64::new(1),
            files: VirtualFiles::new(vault.clone(), backup),
            pages: ReaderPages::default(),
            vault,
        }
    }

    /// Describes and records this request's access.
    fn rec(&self) -> Recorder<'_> {
        Recorder { vault: &self.vault, inodes: &self.inodes, files: &self.files }
    }

    /// The table of inodes the kernel knows (the session trims it).
    pub(super) fn inode_table(&self) -> Arc<InodeTable> {
        Arc::clone(&self.inodes)
    }

    /// What a read-only mount lets the kernel keep (the session gives it
    /// its notifier).
    pub(super) fn reader_pages(&self) -> ReaderPages {
        self.pages.clone()
    }

    /// Which names a read-only mount's kernel keeps (the session gives it
    /// its notifier).
    pub(super) fn reader_names(&self) -> ReaderNames {
        self.names.clone()
    }

    /// May the caller look inside directory `dir` (lookup, readdir, create...)?
    fn check_inside(&self, req: &Request, dir: u64) -> Res<()> {
        if dir == ROOT_INO {
            return Ok(());
        }
        // Nothing is made, removed or renamed in (or as) `.audit` and `.backup`.
        if is_virtual(dir) {
            return Err(Errno::EPERM);
        }
        let level = self.rec().level_of(dir)?;
        self.access(req).enter(level).map_err(e)
    }

    /// May the caller touch inode `ino` itself? The root and the level
    /// directories are visible to everyone the mount admits.
    fn check_node(&self, req: &Request, ino: u64) -> Res<()> {
        if ino == ROOT_INO || level_of_dir(ino).is_some() {
            return Ok(());
        }
        self.check_inside(req, ino)
    }

    /// The caller's permission checks (mode bits, sticky directories, the
    /// owner rules of setattr: `vault::Access`).
    fn access(&self, req: &Request) -> Access<'_> {
        self.vault.access(who(req), self.owner)
    }

    /// Mode bits: may the caller access inode `ino` for `want`
    /// (MAY_READ | MAY_WRITE | MAY_EXEC)? `.audit` and `.backup` have their own rules.
    fn permit(&self, req: &Request, ino: u64, want: u16) -> Res<()> {
        if is_virtual(ino) {
            return Ok(());
        }
        self.access(req).permit(ino, want).map_err(e)
    }

    /// How long the kernel may keep names. With other uids
    /// admitted, a cached name would skip the next walker's search-permission
    /// check, and a `chmod` or `chown` of a directory above it would reach
    /// walkers only when the name expires: so no name is cached, and every
    /// walker's lookup of every component is checked here, as ext4 checks it.
    fn entry_ttl(&self) -> Duration {
        if self.shared || self.hosts.follows() { NO_CACHE } else { TTL }
    }

    /// On a read-only mount, the kernel keeps a directory's name (names.rs)
    /// when other uids are not admitted: given as `parent/name` from what
    /// was read after the clock said `at`.
    fn keeps_dir_name(&self, a: &Attr, parent: u64, name: &[u8], at: u64) -> bool {
        if self.shared || a.kind != FileKind::Dir {
            return false;
        }
        match self.vault.entry_key(parent, name) {
            Ok(key) => {
                self.names.given(a.ino, parent, name, key, at);
                true
            }
            Err(err) => {
                tracing::debug!("directory {}: no entry key, so no name kept: {err}", a.ino);
                false
            }
        }
    }

    /// On a read-only mount, after the catch-up: whether every directory
    /// name the kernel walked to `dir` is still the holder's (names.rs); a
    /// walk through a stale one is walked again (ESTALE).
    fn walked_fresh(&self, dir: u64) -> Res<()> {
        if !self.hosts.follows() || self.names.fresh(dir, ROOT_INO) { Ok(()) } else { Err(Errno::ESTALE) }
    }

    /// How long the kernel may keep a file's attributes: not at all on a
    /// read-only mount beside a cluster vault's holder, whose changes it
    /// would otherwise miss.
    fn attr_ttl(&self) -> Duration {
        if self.hosts.follows() { NO_CACHE } else { TTL }
    }

    /// On a read-only mount beside a cluster vault's holder, before a
    /// lookup or an open: what the holder closed before it is what it
    /// sees (docs/CLUSTER.md); between them, `stat` and reads answer from
    /// the mount's memory of the vault, which its watch keeps up to date.
    fn catch_up(&self) -> Res<()> {
        if self.hosts.follows() { self.vault.catch_up().map_err(e) } else { Ok(()) }
    }

    /// After a change of names on a cluster vault's holder (create by
    /// mknod, mkdir, symlink, link; unlink, rmdir, rename), which no close
    /// may follow: commits it now if a reader is mounted, so that a
    /// reader's next lookup sees it, as after a close. A commit that fails
    /// fails nothing here: the change is made, and the next commit stores it.
    fn published<T>(&self, r: Res<T>) -> Res<T> {
        if r.is_ok()
            && self.hosts.publishes()
            && let Err(err) = self.vault.publish()
        {
            tracing::warn!("committing a change of names for other hosts' mounts failed: {err}");
        }
        r
    }

    /// user.* attributes follow the file's read/write bits; the kernel
    /// itself guards trusted.* and security.*.
    fn permit_xattr(&self, req: &Request, ino: u64, name: &OsStr, want: u16) -> Res<()> {
        if name.as_bytes().starts_with(b"user.") { self.permit(req, ino, want) } else { Ok(()) }
    }

    fn fh(&self) -> FileHandle {
        FileHandle(self.next_fh.fetch_add(1, Ordering::Relaxed))
    }

    fn reply_entry(&self, reply: ReplyEntry, r: Res<Attr>, parent: u64, name: &[u8]) {
        self.reply_entry_read_at(reply, r, parent, name, None);
    }

    /// `reply_entry` of a lookup; on a read-only mount `at` is the names
    /// clock before it read (names.rs).
    fn reply_entry_read_at(
        &self,
        reply: ReplyEntry,
        r: Res<Attr>,
        parent: u64,
        name: &[u8],
        at: Option<u64>,
    ) {
        match r {
            Ok(a) => {
                self.inodes.remember(a.ino, a.level, a.kind == FileKind::Dir, parent, name);
                let kept = at.is_some_and(|at| self.keeps_dir_name(&a, parent, name, at));
                let entry_ttl = if kept { TTL } else { self.entry_ttl() };
                reply.entry_with_ttls(
                    &self.attr_ttl(),
                    &entry_ttl,
                    &file_attr(&a, self.owner),
                    Generation(a.generation),
                );
            }
            Err(err) => reply.error(err),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        kind: FileKind,
        mode: u32,
        rdev: u32,
    ) -> Res<Attr> {
        let op = match kind {
            FileKind::Dir => AuditOp::Mkdir,
            FileKind::File => AuditOp::Create,
            _ => AuditOp::Mknod,
        };
        self.rec().logged(req, op, At::Entry(parent, name.as_bytes()), Range::default(), |v| {
            self.check_inside(req, parent)?;
            self.access(req).change_in(parent).map_err(e)?;
            if is_reserved(parent, name.as_bytes()) {
                return Err(Errno::EEXIST);
            }
            if kind == FileKind::File {
                // creat(2) opens the file it makes.
                self.vault.admit_open(req.uid()).map_err(e)?;
            }
            let spec = NewNode { kind, perm: (mode & 0o7777) as u16, uid: req.uid(), gid: req.gid(), rdev };
            v.create(parent, name.as_bytes(), spec).map_err(e)
        })
    }

    fn do_setattr(&self, req: &Request, ino: u64, mut set: SetAttr, by_handle: bool) -> Res<Attr> {
        // A truncate records its new size in `len` (docs/AUDIT.md).
        let range = Range { offset: 0, len: set.size.unwrap_or(0) };
        self.rec().logged(req, AuditOp::Setattr, At::Node(ino), range, |v| {
            if is_virtual(ino) {
                return Err(Errno::EPERM);
            }
            self.check_node(req, ino)?;
            let times = [set.atime, set.mtime];
            let change = AttrChange {
                mode: set.perm,
                uid: set.uid,
                gid: set.gid,
                size_by_path: set.size.is_some() && !by_handle,
                times_explicit: times.iter().any(|t| matches!(t, Some(TimeSet::At(_)))),
                times_now: times.iter().any(|t| matches!(t, Some(TimeSet::Now))),
            };
            set.perm = self.access(req).setattr(ino, &change).map_err(e)?;
            v.setattr(ino, &set).map_err(e)
        })
    }

    fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
        if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(data);
        }
    }

    /// Walks directory `dir` from the kernel's `offset`: "." (cookie 1), ".."
    /// (cookie 2), then the entries. `add` returns true once the reply buffer
    /// is full, which ends the walk.
    fn walk_dir(
        &self,
        dir: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileKind, &OsStr) -> Res<bool>,
    ) -> Res<()> {
        let attr = self.vault.getattr(dir).map_err(e)?;
        if offset < 1 && add(dir, 1, FileKind::Dir, OsStr::new("."))? {
            return Ok(());
        }
        if offset < 2 && add(attr.parent, 2, FileKind::Dir, OsStr::new(".."))? {
            return Ok(());
        }
        let mut after = offset.max(2);
        loop {
            let page = self.vault.readdir(dir, after, READDIR_CHUNK).map_err(e)?;
            if page.is_empty() {
                // `.stats`, `.audit` and `.backup` come last in the root.
                if dir == ROOT_INO {
                    for (cookie, ino, kind, name) in ROOT_ENTRIES {
                        if offset < cookie && add(ino, cookie, kind, OsStr::from_bytes(name))? {
                            return Ok(());
                        }
                    }
                }
                return Ok(());
            }
            for d in page {
                if add(d.ino, d.cookie, d.kind, OsStr::from_bytes(&d.name))? {
                    return Ok(());
                }
                after = d.cookie;
            }
        }
    }
}

macro_rules! reply_with {
    ($reply:expr, $r:expr, |$v:ident| $ok:expr) => {
        match $r {
            Ok($v) => $ok,
            Err(err) => $reply.error(err),
        }
    };
}

impl Filesystem for VaultFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is optional: keep what the kernel supports.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_BIG_WRITES,
            // We drop set-id bits on write, truncate and chown ourselves
            // (`kill_setid`), so the kernel stops asking for
            // security.capability before every write: one request instead
            // of two per write(2) (the mount is nosuid, so file
            // capabilities never take effect through it anyway).
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // A cluster vault's locks hold across hosts: this process holds them
        // (vault::filelocks). A store directory's stay the kernel's.
        if self.hosts != Hosts::One {
            let _ = config.add_capabilities(InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS);
        }
        // Readahead as large as the kernel allows: sequential readers get
        // whole-megabyte reads, which amortize per-request and per-block costs.
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        for ino in self.inodes.drain() {
            if let Err(err) = self.vault.evict(ino) {
                tracing::warn!("evicting inode {ino} at unmount: {err}");
            }
        }
        if let Err(err) = self.vault.audit_checkpoint() {
            tracing::error!("final audit checkpoint at unmount failed: {err}");
        }
        if let Err(err) = self.vault.sync() {
            tracing::error!("final flush at unmount failed: {err}");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT_INO
            && let Some(r) = self.files.root_entry(name.as_bytes())
        {
            // Not remembered: the kernel's forget of it is ignored.
            return reply_with!(reply, r, |a| reply.entry(
                &attr_ttl(a.ino),
                &file_attr(&a, self.owner),
                Generation(0)
            ));
        }
        if parent.0 == BACKUP_DIR_INO {
            let r = self.files.lookup_archive(req.uid(), name.as_bytes());
            let r = self.rec().note_denial(req, At::Entry(BACKUP_DIR_INO, name.as_bytes()), r);
            return reply_with!(reply, r, |a| reply.entry(
                &NO_CACHE,
                &file_attr(&a, self.owner),
                Generation(0)
            ));
        }
        let at = At::Entry(parent.0, name.as_bytes());
        let mut read_at = None;
        let r = self
            .catch_up()
            .and_then(|_| {
                if self.hosts.follows() {
                    read_at = Some(self.names.now());
                }
                self.walked_fresh(parent.0)
            })
            .and_then(|_| self.check_inside(req, parent.0))
            .and_then(|_| self.access(req).search(parent.0, 0).map_err(e))
            .and_then(|_| self.vault.lookup(parent.0, name.as_bytes()).map_err(e));
        let r = self.rec().note_denial(req, at, r);
        self.reply_entry_read_at(reply, r, parent.0, name.as_bytes(), read_at);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if !is_virtual(ino.0) && self.inodes.forget(ino.0, nlookup) {
            // Only a read-only mount looks at files' versions.
            if self.hosts.follows() {
                self.pages.forget(ino.0);
                self.names.forget(ino.0);
            }
            if let Err(err) = self.vault.evict(ino.0) {
                tracing::warn!("evicting inode {}: {err}", ino.0);
            }
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        if is_virtual(ino.0) {
            let r = self.files.getattr(ino.0, fh.map(|fh| fh.0));
            return reply_with!(reply, r, |a| reply.attr(&attr_ttl(a.ino), &file_attr(&a, self.owner)));
        }
        // A directory whose name the kernel keeps was not looked up on the
        // way here: `stat` of it catches up as a lookup would have.
        let kept = self.hosts.follows() && self.names.keeps(ino.0);
        let r = if kept { self.catch_up() } else { Ok(()) };
        let r =
            r.and_then(|_| self.check_node(req, ino.0)).and_then(|_| self.vault.getattr(ino.0).map_err(e));
        // Removed on the holder, which keeps the inode while its own kernel
        // knows it: the kept name is stale, and a `stat` by it walks again
        // (finding nothing), as a lookup would have.
        let r = match r {
            Ok(a) if kept && a.nlink == 0 => Err(Errno::ESTALE),
            r => r,
        };
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |a| reply.attr(&self.attr_ttl(), &file_attr(&a, self.owner)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            // fuser does not pass the kernel's FATTR_KILL_SUIDGID; truncation
            // by an unprivileged caller is exactly when the kernel sets it.
            kill_setid: size.is_some() && unprivileged(req),
        };
        let r = self.do_setattr(req, ino.0, set, fh.is_some());
        reply_with!(reply, r, |a| reply.attr(&self.attr_ttl(), &file_attr(&a, self.owner)));
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self.check_node(req, ino.0).and_then(|_| self.vault.readlink(ino.0).map_err(e));
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |t| reply.data(&t));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = match kind_from_mode(mode) {
            Some(
                k @ (FileKind::File
                | FileKind::Fifo
                | FileKind::Socket
                | FileKind::CharDevice
                | FileKind::BlockDevice),
            ) => self.make(req, parent.0, name, k, mode, rdev),
            _ => Err(Errno::EINVAL),
        };
        self.reply_entry(reply, self.published(r), parent.0, name.as_bytes());
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let r = self.make(req, parent.0, name, FileKind::Dir, mode, 0);
        self.reply_entry(reply, self.published(r), parent.0, name.as_bytes());
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.rec().logged(
            req,
            AuditOp::Unlink,
            At::Entry(parent.0, name.as_bytes()),
            Range::default(),
            |v| {
                self.check_inside(req, parent.0)?;
                refuse_audit_name(parent.0, name)?;
                self.access(req).remove(parent.0, name.as_bytes()).map_err(e)?;
                let who = self.rec().remover(req, parent.0, name.as_bytes());
                v.unlink_by(parent.0, name.as_bytes(), &who).map_err(e)
            },
        );
        let r = self.published(r);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.rec().logged(
            req,
            AuditOp::Rmdir,
            At::Entry(parent.0, name.as_bytes()),
            Range::default(),
            |v| {
                self.check_inside(req, parent.0)?;
                refuse_audit_name(parent.0, name)?;
                self.access(req).remove(parent.0, name.as_bytes()).map_err(e)?;
                v.rmdir(parent.0, name.as_bytes()).map_err(e)
            },
        );
        let r = self.published(r);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let at = At::Entry(parent.0, link_name.as_bytes());
        let r = self.rec().logged(req, AuditOp::Symlink, at, Range::default(), |v| {
            self.check_inside(req, parent.0)?;
            refuse_audit_name(parent.0, link_name)?;
            self.access(req).change_in(parent.0).map_err(e)?;
            v.symlink(parent.0, link_name.as_bytes(), target.as_os_str().as_bytes(), req.uid(), req.gid())
                .map_err(e)
        });
        self.reply_entry(reply, self.published(r), parent.0, link_name.as_bytes());
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.rec().logged(
            req,
            AuditOp::Rename,
            At::Entry(parent.0, name.as_bytes()),
            Range::default(),
            |v| {
                if flags.contains(RenameFlags::RENAME_WHITEOUT) {
                    return Err(Errno::EINVAL);
                }
                self.check_inside(req, parent.0)?;
                self.check_inside(req, newparent.0)?;
                refuse_audit_name(parent.0, name)?;
                refuse_audit_name(newparent.0, newname)?;
                self.access(req).remove(parent.0, name.as_bytes()).map_err(e)?;
                self.access(req).remove(newparent.0, newname.as_bytes()).map_err(e)?;
                if parent.0 != newparent.0 {
                    // A directory that changes parent has its ".." rewritten.
                    let moved = [(parent.0, name.as_bytes()), (newparent.0, newname.as_bytes())];
                    let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
                    for (i, (dir, n)) in moved.into_iter().enumerate() {
                        if (i == 0 || exchange)
                            && let Ok(a) = self.vault.lookup(dir, n)
                            && a.kind == FileKind::Dir
                        {
                            self.permit(req, a.ino, MAY_WRITE)?;
                        }
                    }
                }
                let f = VRename {
                    no_replace: flags.contains(RenameFlags::RENAME_NOREPLACE),
                    exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
                };
                v.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), f).map_err(e)
            },
        );
        if r.is_ok() {
            // The kernel moved its dentry; later records show the new path.
            if let Ok(a) = self.vault.lookup(newparent.0, newname.as_bytes()) {
                self.inodes.name(a.ino, newparent.0, newname.as_bytes());
            }
        }
        let r = self.published(r);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = self.rec().logged(
            req,
            AuditOp::Link,
            At::Entry(newparent.0, newname.as_bytes()),
            Range::default(),
            |v| {
                if is_virtual(ino.0) {
                    return Err(Errno::EPERM);
                }
                self.check_node(req, ino.0)?;
                self.check_inside(req, newparent.0)?;
                refuse_audit_name(newparent.0, newname)?;
                self.access(req).change_in(newparent.0).map_err(e)?;
                v.link(ino.0, newparent.0, newname.as_bytes()).map_err(e)
            },
        );
        self.reply_entry(reply, self.published(r), newparent.0, newname.as_bytes());
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timing = self.vault.metrics().time(Timed::Open);
        if is_virtual(ino.0) {
            let op = match ino.0 {
                AUDIT_INO => AuditOp::AuditRead,
                i if is_root_text(i) => AuditOp::Open,
                _ => AuditOp::BackupRead,
            };
            let text = is_root_text(ino.0);
            let fh = self.fh();
            let range = Range { offset: 0, len: self.files.archive_size(ino.0) };
            let r = self
                .rec()
                .logged(req, op, At::Node(ino.0), range, |_| {
                    self.files.check_open(req.uid(), flags.0)?;
                    // An archive gone since the lookup is this open's outcome.
                    if text { Ok(()) } else { self.files.open(ino.0, fh.0) }
                })
                // A text's snapshot is taken after this open's own record, so
                // an fstat on the open file (a fresh export while nothing
                // else happens) agrees with it.
                .and_then(|_| if text { self.files.open(ino.0, fh.0) } else { Ok(()) });
            return reply_with!(reply, r, |_v| reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO));
        }
        // Every open reaches the daemon and is recorded. Below
        // levels whose reads are recorded (`LevelRules`) the kernel may keep the file's page
        // cache from an earlier open (every change goes through this mount,
        // so the cache is never stale); above it the cache is dropped, so
        // every read of the new open comes here and is recorded.
        // Why the caller says it needs the file (levels 3-5): read before the
        // open's record is made, so the record carries it.
        let caught = self.catch_up();
        let level = self.rec().level_of(ino.0).ok().flatten();
        let why = self.vault.justification(ino.0, level);
        let r = self.rec().logged_with_note(
            req,
            AuditOp::Open,
            At::Node(ino.0),
            Range::default(),
            why.clone(),
            |_| {
                caught?;
                let describe = || self.rec().requester(req, ino.0);
                self.access(req).open(ino.0, level, open_mask(flags.0), &why, describe).map_err(e)?;
                self.rec().level_of(ino.0)
            },
        );
        reply_with!(reply, r, |level| {
            // A reader's cache may hold what the holder has since replaced:
            // kept only if the file is as it was at the reader's last open.
            let current = !self.hosts.follows() || self.pages.unchanged_since_last_look(&self.vault, ino.0);
            let keep = level.is_some() && !rules(level).reads_recorded && current;
            reply.opened(self.fh(), if keep { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() })
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if is_virtual(ino.0) {
            self.files.release(ino.0, fh.0);
        }
        // The last close of an open file that took flock locks: they go.
        if let Some(owner) = lock_owner
            && self.hosts != Hosts::One
            && let Err(err) = self.vault.drop_file_locks(ino.0, owner.0)
        {
            tracing::warn!("releasing the flock locks of inode {}: {err}", ino.0);
        }
        reply.ok();
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let r = lock_request(ino.0, lock_owner, start, end, typ, pid)
            .and_then(|r| self.vault.test_file_lock(r).map_err(e));
        reply_with!(reply, r, |holder| match holder {
            None => reply.locked(start, end, libc::F_UNLCK, pid),
            Some(LockHolder::Here(s, pid)) =>
                reply.locked(s.start, s.end.min(OFFSET_MAX), fcntl_type(s.kind), pid),
            // Another host's process: no pid that means anything here.
            Some(LockHolder::Elsewhere(s)) =>
                reply.locked(s.start, s.end.min(OFFSET_MAX), fcntl_type(s.kind), 0),
        });
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let r = match lock_request(ino.0, lock_owner, start, end, typ, pid) {
            Ok(r) => r,
            Err(err) => return reply.error(err),
        };
        // The kernel waits for this reply even if the caller is killed (the
        // FUSE interrupts that would tell us are not delivered by fuser):
        // a wait ends when the calling task has a signal to take, as an
        // interruptible wait in the kernel would.
        let task = req.pid();
        let interrupted = move || crate::sys::signal_pending(task);
        let reader = self.hosts.follows() && r.kind.is_some();
        match self.vault.set_file_lock(r, false, &interrupted) {
            Ok(LockOutcome::Busy(_)) if sleep => {
                // A wait may last: never on one of the session's threads,
                // which the unlock that ends it may need.
                let (vault, pages) = (self.vault.clone(), self.pages.clone());
                let wait = move || {
                    let res = lock_result(vault.set_file_lock(r, true, &interrupted));
                    if res.is_ok() && reader {
                        pages.revalidate(&vault, r.ino);
                    }
                    reply_with!(reply, res, |_v| reply.ok());
                };
                if let Err(err) = std::thread::Builder::new().name("vaultfs-lock-wait".into()).spawn(wait) {
                    tracing::error!("no thread to wait for a lock in: {err}");
                }
            }
            done => {
                let res = lock_result(done);
                if res.is_ok() && reader {
                    self.pages.revalidate(&self.vault, r.ino);
                }
                reply_with!(reply, res, |_v| reply.ok());
            }
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if is_virtual(ino.0) {
            // Recorded once, at open.
            let r = self.files.read(ino.0, fh.0, offset, size);
            return reply_with!(reply, r, |d| reply.data(&d));
        }
        let _timing = self.vault.metrics().time(Timed::Read);
        let range = Range { offset, len: size as u64 };
        let r = self.rec().logged(req, AuditOp::Read, At::Node(ino.0), range, |_| {
            self.vault.read(ino.0, offset, size as usize).map_err(e)
        });
        if let Ok(d) = &r {
            self.vault.metrics().add_read(d.len() as u64);
        }
        reply_with!(reply, r, |d| reply.data(&d));
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _timing = self.vault.metrics().time(Timed::Write);
        let range = Range { offset, len: data.len() as u64 };
        // The kernel judged the writer (no CAP_FSETID): drop the set-id bits.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let r = self.rec().logged(req, AuditOp::Write, At::Node(ino.0), range, |v| {
            if is_virtual(ino.0) {
                return Err(Errno::EPERM);
            }
            v.write_as(ino.0, offset, data, kill).map_err(e)
        });
        if let Ok(n) = &r {
            self.vault.metrics().add_written(*n as u64);
            self.rec().note_secrets(req, ino.0, offset, data);
        }
        reply_with!(reply, r, |n| reply.written(n as u32));
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing is buffered here: every write reached the store before it
        // was acknowledged, and a store directory's locks are the kernel's.
        // ENOSYS tells the kernel so: it stops sending FLUSH, one round trip
        // less per close(). A cluster vault's holder makes a close visible
        // to read-only mounts on other hosts first (close-to-open across
        // hosts); on every host of one, the closing process's locks go.
        let r = match self.hosts {
            Hosts::One => return reply.error(Errno::ENOSYS),
            Hosts::Holder | Hosts::Writer => self.vault.publish().map_err(e),
            Hosts::Reader => Ok(()),
        };
        let r = r.and_then(|_| self.vault.drop_file_locks(ino.0, lock_owner.0).map_err(e));
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let r = self.vault.sync().map_err(e);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == BACKUP_DIR_INO {
            // A listing shows one snapshot, made (or reused) now.
            let fh = self.fh();
            let r = self.files.open_backup_dir(req.uid(), fh.0);
            let r = self.rec().note_denial(req, At::Node(BACKUP_DIR_INO), r);
            return reply_with!(reply, r, |_v| reply.opened(fh, FopenFlags::empty()));
        }
        let r = self
            .catch_up()
            .and_then(|_| self.walked_fresh(ino.0))
            .and_then(|_| self.check_inside(req, ino.0))
            .and_then(|_| self.permit(req, ino.0, open_mask(flags.0)));
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |_v| reply.opened(self.fh(), FopenFlags::empty()));
    }

    fn readdir(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 == BACKUP_DIR_INO {
            let r = self.files.walk_backup_dir(fh.0, offset, |i, cookie, kind, name, _| {
                Ok(reply.add(INodeNo(i), cookie, file_type(kind), name))
            });
            return reply_with!(reply, r, |_v| reply.ok());
        }
        let r = self.check_inside(req, ino.0).and_then(|_| {
            self.walk_dir(ino.0, offset, |i, cookie, kind, name| {
                Ok(reply.add(INodeNo(i), cookie, file_type(kind), name))
            })
        });
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        if ino.0 == BACKUP_DIR_INO {
            let r = self.files.walk_backup_dir(fh.0, offset, |i, cookie, _kind, name, attr| {
                Ok(reply.add(
                    INodeNo(i),
                    cookie,
                    name,
                    &attr_ttl(i),
                    &file_attr(&attr, self.owner),
                    Generation(0),
                ))
            });
            return reply_with!(reply, r, |_v| reply.ok());
        }
        let dir_ttl = self.entry_ttl();
        let r = self.check_inside(req, ino.0).and_then(|_| {
            self.walk_dir(ino.0, offset, |i, cookie, kind, name| {
                let mut ttl = if is_virtual(i) { attr_ttl(i) } else { dir_ttl };
                let a = if is_virtual(i) {
                    self.files.getattr(i, None)?
                } else {
                    match self.vault.getattr(i) {
                        Ok(a) => a,
                        // A damaged inode costs that file, not the listing:
                        // its name lists, and every access to it (with
                        // nothing cached) fails with EIO, as on ext4.
                        Err(err) if err.kind() == ErrorKind::Corrupt => {
                            tracing::error!("inode {i} ({name:?} in directory {}): {err}", ino.0);
                            ttl = NO_CACHE;
                            damaged_attr(i, kind, self.rec().level_of(ino.0).ok().flatten())
                        }
                        Err(err) => return Err(e(err)),
                    }
                };
                let full = reply.add(
                    INodeNo(i),
                    cookie,
                    name,
                    &ttl,
                    &file_attr(&a, self.owner),
                    Generation(a.generation),
                );
                // Entries handed out count as lookups; "." and ".." do not.
                if !full && cookie > 2 && !is_virtual(i) {
                    self.inodes.remember(a.ino, a.level, a.kind == FileKind::Dir, ino.0, name.as_bytes());
                }
                Ok(full)
            })
        });
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        if ino.0 == BACKUP_DIR_INO {
            self.files.release(ino.0, fh.0);
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let r = self.vault.sync().map_err(e);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let r = self.vault.statfs().map_err(e);
        reply_with!(reply, r, |s| reply.statfs(
            s.blocks,
            s.blocks_free,
            s.blocks_avail,
            s.files,
            s.files_free,
            s.block_size,
            s.name_max,
            s.block_size
        ));
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let r = |v: &Vault<Unlocked>| {
            if position != 0 || flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
                return Err(Errno::EINVAL);
            }
            self.check_node(req, ino.0)?;
            self.permit_xattr(req, ino.0, name, MAY_WRITE)?;
            let f = XattrFlags {
                create: flags & libc::XATTR_CREATE != 0,
                replace: flags & libc::XATTR_REPLACE != 0,
            };
            v.setxattr(ino.0, name.as_bytes(), value, f).map_err(e)
        };
        let range = Range { offset: 0, len: value.len() as u64 };
        let r = self.rec().logged(req, AuditOp::Setxattr, At::Node(ino.0), range, |v| {
            if is_virtual(ino.0) {
                return Err(Errno::EPERM);
            }
            r(v)
        });
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if is_virtual(ino.0) {
            return reply.error(Errno::ENODATA);
        }
        let r = self
            .check_node(req, ino.0)
            .and_then(|_| self.permit_xattr(req, ino.0, name, MAY_READ))
            .and_then(|_| self.vault.getxattr(ino.0, name.as_bytes()).map_err(e));
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |v| Self::xattr_reply(reply, &v, size));
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if is_virtual(ino.0) {
            return Self::xattr_reply(reply, &[], size);
        }
        let r = self.check_node(req, ino.0).and_then(|_| self.vault.listxattr(ino.0).map_err(e));
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |names| {
            let mut buf = Vec::new();
            for n in names {
                buf.extend_from_slice(&n);
                buf.push(0);
            }
            Self::xattr_reply(reply, &buf, size)
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.rec().logged(req, AuditOp::Removexattr, At::Node(ino.0), Range::default(), |v| {
            if is_virtual(ino.0) {
                return Err(Errno::EPERM);
            }
            self.check_node(req, ino.0)?;
            self.permit_xattr(req, ino.0, name, MAY_WRITE)?;
            v.removexattr(ino.0, name.as_bytes()).map_err(e)
        });
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // access(2), faccessat(2) and chdir(2) (search permission).
        let want = (mask.bits() & 0o7) as u16;
        let r = if is_virtual(ino.0) {
            self.files.access(req.uid(), ino.0, want & MAY_WRITE != 0, want & MAY_EXEC != 0)
        } else {
            self.check_node(req, ino.0).and_then(|_| self.permit(req, ino.0, want))
        };
        let r = self.rec().note_denial(req, At::Node(ino.0), r);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _timing = self.vault.metrics().time(Timed::Create);
        let r = self.make(req, parent.0, name, FileKind::File, mode, 0);
        reply_with!(reply, r, |a| {
            self.inodes.remember(a.ino, a.level, a.kind == FileKind::Dir, parent.0, name.as_bytes());
            reply.created(
                &self.entry_ttl(),
                &file_attr(&a, self.owner),
                Generation(a.generation),
                self.fh(),
                FopenFlags::empty(),
            )
        });
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let known = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        let r = if mode & !known != 0 {
            Err(Errno::EOPNOTSUPP)
        } else {
            let m = FallocMode {
                keep_size: mode & libc::FALLOC_FL_KEEP_SIZE != 0,
                punch_hole: mode & libc::FALLOC_FL_PUNCH_HOLE != 0,
                zero_range: mode & libc::FALLOC_FL_ZERO_RANGE != 0,
                kill_setid: unprivileged(req),
            };
            let range = Range { offset, len: length };
            self.rec().logged(req, AuditOp::Write, At::Node(ino.0), range, |v| {
                if is_virtual(ino.0) {
                    return Err(Errno::EPERM);
                }
                v.fallocate(ino.0, offset, length, m).map_err(e)
            })
        };
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
            if is_virtual(ino.0) {
                // No holes: data from any offset below the size, a hole at the end.
                let size = self.files.size(ino.0, fh.0)?;
                return match whence {
                    _ if off >= size => Err(Errno::ENXIO),
                    libc::SEEK_DATA => Ok(off as i64),
                    libc::SEEK_HOLE => Ok(size as i64),
                    _ => Err(Errno::EINVAL),
                };
            }
            let found = match whence {
                libc::SEEK_DATA => self.vault.seek_data(ino.0, off).map_err(e)?,
                libc::SEEK_HOLE => self.vault.seek_hole(ino.0, off).map_err(e)?,
                _ => return Err(Errno::EINVAL),
            };
            found.map(|o| o as i64).ok_or(Errno::ENXIO)
        })();
        reply_with!(reply, r, |o| reply.offset(o));
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let r = if !flags.is_empty() {
            Err(Errno::EINVAL)
        } else if is_virtual(ino_in.0) || is_virtual(ino_out.0) {
            // Not a vault file: the caller falls back to read and write.
            Err(Errno::EXDEV)
        } else {
            self.rec()
                .logged(req, AuditOp::Read, At::Node(ino_in.0), Range { offset: offset_in, len }, |_| Ok(()))
                .and_then(|_| {
                    let range = Range { offset: offset_out, len };
                    self.rec().logged(req, AuditOp::Write, At::Node(ino_out.0), range, |v| {
                        copy_range(v, ino_in.0, offset_in, ino_out.0, offset_out, len, unprivileged(req))
                    })
                })
        };
        reply_with!(reply, r, |n| reply.written(n as u32));
    }
}

/// Copies up to `len` bytes through `vault` (whose batches carry the
/// record), a chunk at a time. `kill_setid`: the caller is unprivileged (see `unprivileged`).
fn copy_range(
    vault: &Vault<Unlocked>,
    from: u64,
    off_in: u64,
    to: u64,
    off_out: u64,
    len: u64,
    kill_setid: bool,
) -> Res<u64> {
    let mut done = 0u64;
    let len = len.min(u32::MAX as u64 & !(COPY_CHUNK as u64 - 1));
    while done < len {
        let want = (len - done).min(COPY_CHUNK as u64) as usize;
        let data = vault.read(from, off_in + done, want).map_err(e)?;
        if data.is_empty() {
            break;
        }
        vault.write_as(to, off_out + done, &data, kill_setid && done == 0).map_err(e)?;
        done += data.len() as u64;
        if data.len() < want {
            break;
        }
    }
    Ok(done)
}

/// `.audit`, `.stats` and `.backup` are not names anything can be unlinked, renamed or linked as.
fn refuse_audit_name(parent: u64, name: &OsStr) -> Res<()> {
    if is_reserved(parent, name.as_bytes()) { Err(Errno::EPERM) } else { Ok(()) }
}
