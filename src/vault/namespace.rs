//! Namespace operations: lookup, create, link, unlink, rmdir, rename, readdir,
//! symlinks, and eviction of unlinked inodes.

use std::sync::MutexGuard;

use crate::crypto;
use crate::format::{DirentRecord, FileKind, InodeRecord, MAX_SYMLINK_LEN, RawKey, TombstoneRecord, keys};
use crate::meta::VAULT_LEVEL;

use super::audit::Ticket;
use super::error::{ErrorKind, Result, err};
use super::node::{Node, Txn, check_name};
use super::rules::rules;
use super::types::*;
use super::{Core, Unlocked, Vault};

const S_ISGID: u16 = 0o2000;
/// Bound on directory depth when checking that a directory is not moved
/// into itself; deeper means a corrupted parent chain.
const MAX_DEPTH: usize = 100_000;

impl Core {
    pub(super) fn namespace_lock(&self) -> MutexGuard<'_, ()> {
        self.namespace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads a directory that can take new entries, and the level they get.
    fn writable_dir(&self, txn: &mut Txn, ino: u64) -> Result<u8> {
        let dir = txn.get(ino)?;
        if !dir.is_dir() {
            return Err(err(ErrorKind::NotDir, format!("inode {ino} is not a directory")));
        }
        if dir.rec.nlink == 0 {
            return Err(err(ErrorKind::NotFound, "directory was removed"));
        }
        let dir = dir.clone();
        self.child_level(&dir)
            .ok_or_else(|| err(ErrorKind::NotPermitted, "the root holds only the six level directories"))
    }

    /// The error for removing or replacing `name` in the root.
    fn root_entry_error(name: &[u8]) -> super::Error {
        if LEVEL_NAMES.iter().any(|n| n.as_bytes() == name) {
            err(ErrorKind::NotPermitted, "level directories cannot be removed or renamed")
        } else {
            err(ErrorKind::NotFound, "no such entry in the root")
        }
    }

    fn make(
        &self,
        ticket: Option<&Ticket>,
        parent: u64,
        name: &[u8],
        spec: &NewNode,
        target: Vec<u8>,
    ) -> Result<Attr> {
        check_name(name)?;
        let _ns = self.namespace_lock();
        let _g = self.locks.write(parent);
        let mut txn = Txn::new(self, ticket);
        let level = self.writable_dir(&mut txn, parent)?;
        let dir = txn.get(parent)?.clone();
        if self.find_entry(&dir, name)?.is_some() {
            return Err(err(ErrorKind::Exists, "name exists"));
        }
        let ino = self.alloc_ino()?;
        if self.store.contains(&keys::inode(ino))? {
            return Err(err(
                ErrorKind::Corrupt,
                format!("inode {ino} is already in use: the inode counter was rolled back"),
            ));
        }
        let now = Timestamp::now();
        let mut perm = spec.perm & 0o7777;
        let mut gid = spec.gid;
        if dir.rec.perm & S_ISGID != 0 {
            gid = dir.rec.gid;
            if spec.kind == FileKind::Dir {
                perm |= S_ISGID;
            }
        }
        let is_dir = spec.kind == FileKind::Dir;
        let rec = InodeRecord {
            kind: spec.kind,
            perm,
            uid: spec.uid,
            gid,
            nlink: if is_dir { 2 } else { 1 },
            rdev: spec.rdev,
            size: target.len() as u64,
            blocks: 0,
            generation: u64::from_be_bytes(crypto::random_array()?),
            parent: if is_dir { parent } else { 0 },
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            flags: 0,
            file_key: RawKey(crypto::random_array()?),
            symlink: target,
        };
        let node = Node { ino, sealed_level: level, rec };
        let mk = self.meta_keys(level)?;
        let key = mk.dirent_key(parent, name);
        let d = DirentRecord { ino, kind: spec.kind, name: name.to_vec() };
        txn.batch.put(&key[..], mk.seal_dirent(self.vault_id(), &key, &d)?);
        let attr = self.attr(&node);
        txn.insert(node);
        let dir = txn.get(parent)?;
        dir.rec.mtime = now;
        dir.rec.ctime = now;
        if is_dir {
            dir.rec.nlink += 1;
        }
        txn.touch(parent);
        txn.commit()?;
        Ok(attr)
    }

    /// Whether `ino` is `ancestor` or lies below it.
    fn is_within(&self, ino: u64, ancestor: u64) -> Result<bool> {
        let mut cur = ino;
        for _ in 0..MAX_DEPTH {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            cur = self.load(cur)?.rec.parent;
        }
        Err(err(ErrorKind::Corrupt, "directory parent chain does not reach the root"))
    }

    fn dir_is_empty(&self, dir: &Node) -> Result<bool> {
        let Some(level) = self.child_level(dir) else { return Ok(false) };
        let prefix = self.meta_keys(level)?.dirent_prefix(dir.ino);
        Ok(self.store.scan_prefix(&prefix).next().transpose()?.is_none())
    }

    /// Drops one link to `ino` within `txn`; marks it orphaned at zero.
    fn drop_link(txn: &mut Txn, ino: u64, now: Timestamp) -> Result<()> {
        let n = txn.get(ino)?;
        n.rec.nlink = if n.is_dir() { 0 } else { n.rec.nlink.saturating_sub(1) };
        n.rec.ctime = now;
        if n.rec.nlink == 0 {
            txn.batch.put(&keys::orphan(ino)[..], Vec::new());
        }
        txn.touch(ino);
        Ok(())
    }
}

/// Who removes a file, for its tombstone.
#[derive(Clone, Debug, Default)]
pub struct Remover {
    pub uid: u32,
    pub pid: u32,
    pub comm: Vec<u8>,
    pub path: Vec<u8>,
}

fn cookie_of(dirent_key: &[u8]) -> u64 {
    let prefix = u64::from_be_bytes(dirent_key[18..26].try_into().expect("dirent keys are 34 bytes"));
    (prefix >> 2) + 3
}

impl Vault<Unlocked> {
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let core = self.core();
        Ok(core.attr(&core.load(ino)?))
    }

    /// Finds `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        if name.len() > crate::format::MAX_NAME_LEN {
            return Err(err(ErrorKind::NameTooLong, "name too long"));
        }
        let core = self.core();
        if parent == ROOT_INO {
            let level = LEVEL_NAMES
                .iter()
                .position(|n| n.as_bytes() == name)
                .ok_or_else(|| err(ErrorKind::NotFound, "no such entry in the root"))?;
            return self.getattr(level_dir(level as u8));
        }
        let dir = core.load(parent)?;
        if !dir.is_dir() {
            return Err(err(ErrorKind::NotDir, "not a directory"));
        }
        let (_, d) = core.find_entry(&dir, name)?.ok_or_else(|| err(ErrorKind::NotFound, "no such entry"))?;
        self.getattr(d.ino)
    }

    /// The store key of entry `name` of directory `parent` (None: an
    /// entry of the root, which never changes).
    pub fn entry_key(&self, parent: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        if parent == ROOT_INO {
            return Ok(None);
        }
        let core = self.core();
        let dir = core.load(parent)?;
        let level = core.child_level(&dir).ok_or_else(|| err(ErrorKind::NotFound, "not in the root"))?;
        Ok(Some(core.meta_keys(level)?.dirent_key(parent, name).to_vec()))
    }

    /// Creates a regular file, directory, FIFO, socket or device node.
    pub fn create(&self, parent: u64, name: &[u8], spec: NewNode) -> Result<Attr> {
        if spec.kind == FileKind::Symlink {
            return Err(err(ErrorKind::InvalidArgument, "use symlink() for symbolic links"));
        }
        self.core().make(self.ticket(), parent, name, &spec, Vec::new())
    }

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Attr> {
        if target.len() > MAX_SYMLINK_LEN {
            return Err(err(ErrorKind::NameTooLong, "symlink target too long"));
        }
        if target.is_empty() || target.contains(&0) {
            return Err(err(ErrorKind::InvalidArgument, "symlink target empty or containing NUL"));
        }
        let spec = NewNode { kind: FileKind::Symlink, perm: 0o777, uid, gid, rdev: 0 };
        self.core().make(self.ticket(), parent, name, &spec, target.to_vec())
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let n = self.core().load(ino)?;
        if n.rec.kind != FileKind::Symlink {
            return Err(err(ErrorKind::InvalidArgument, "not a symbolic link"));
        }
        Ok(n.rec.symlink.clone())
    }

    /// Adds the name `new_name` in `new_parent` for inode `ino` (hard link).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Attr> {
        check_name(new_name)?;
        let core = self.core();
        let _ns = core.namespace_lock();
        let mut locks = core.locks.set();
        locks.add(ino);
        locks.add(new_parent);
        let mut txn = Txn::new(core, self.ticket());
        let level = core.writable_dir(&mut txn, new_parent)?;
        let node = txn.get(ino)?.clone();
        if node.is_dir() {
            return Err(err(ErrorKind::NotPermitted, "hard links to directories are not allowed"));
        }
        if node.rec.nlink == 0 {
            return Err(err(ErrorKind::NotFound, "file was removed"));
        }
        if node.level() != Some(level) {
            return Err(err(ErrorKind::CrossLevel, "hard links cannot cross classification levels"));
        }
        let dir = txn.get(new_parent)?.clone();
        if core.find_entry(&dir, new_name)?.is_some() {
            return Err(err(ErrorKind::Exists, "name exists"));
        }
        let now = Timestamp::now();
        let mk = core.meta_keys(level)?;
        let key = mk.dirent_key(new_parent, new_name);
        let d = DirentRecord { ino, kind: node.rec.kind, name: new_name.to_vec() };
        txn.batch.put(&key[..], mk.seal_dirent(core.vault_id(), &key, &d)?);
        let n = txn.get(ino)?;
        n.rec.nlink += 1;
        n.rec.ctime = now;
        txn.touch(ino);
        let dir = txn.get(new_parent)?;
        dir.rec.mtime = now;
        dir.rec.ctime = now;
        txn.touch(new_parent);
        let attr = core.attr(txn.node(ino));
        txn.commit()?;
        Ok(attr)
    }

    /// Removes a non-directory name. The inode lives on (orphaned) until
    /// `evict` if this was its last link.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove(parent, name, false, &Remover::default())
    }

    /// `unlink` by `who`, named in the tombstone if the file is shredded.
    pub fn unlink_by(&self, parent: u64, name: &[u8], who: &Remover) -> Result<()> {
        self.remove(parent, name, false, who)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove(parent, name, true, &Remover::default())
    }

    /// Tombstones of shredded files, oldest first.
    pub fn tombstones(&self) -> Result<Vec<TombstoneRecord>> {
        let core = self.core();
        let mut out = Vec::new();
        for entry in core.store.scan_prefix(&[keys::TOMBSTONE]) {
            let (k, v) = entry?;
            out.push(core.keys.vault_meta.open_tombstone(core.vault_id(), &k, &v)?);
        }
        Ok(out)
    }

    fn remove(&self, parent: u64, name: &[u8], want_dir: bool, who: &Remover) -> Result<()> {
        let core = self.core();
        if parent == ROOT_INO {
            return Err(Core::root_entry_error(name));
        }
        if name == b"." || name == b".." {
            return Err(err(
                if want_dir { ErrorKind::InvalidArgument } else { ErrorKind::IsDir },
                "cannot remove . or ..",
            ));
        }
        let _ns = core.namespace_lock();
        let mut locks = core.locks.set();
        locks.add(parent);
        let mut txn = Txn::new(core, self.ticket());
        let dir = txn.get(parent)?.clone();
        if !dir.is_dir() {
            return Err(err(ErrorKind::NotDir, "not a directory"));
        }
        let (key, d) =
            core.find_entry(&dir, name)?.ok_or_else(|| err(ErrorKind::NotFound, "no such entry"))?;
        locks.add(d.ino);
        let child = txn.get(d.ino)?.clone();
        match (want_dir, child.is_dir()) {
            (true, false) => return Err(err(ErrorKind::NotDir, "not a directory")),
            (false, true) => return Err(err(ErrorKind::IsDir, "is a directory")),
            (true, true) if !core.dir_is_empty(&child)? => {
                return Err(err(ErrorKind::NotEmpty, "directory not empty"));
            }
            _ => {}
        }
        let now = Timestamp::now();
        txn.batch.delete(key);
        Core::drop_link(&mut txn, d.ino, now)?;
        let gone = txn.node(d.ino);
        if let Some(level) =
            gone.level().filter(|l| rules(Some(*l)).shredded && gone.rec.nlink == 0 && !want_dir)
        {
            // Crypto-shred: the inode record holding the file key goes in
            // this batch, even if the file is still open; a tombstone stays.
            txn.forget(d.ino);
            core.delete_inode_data(d.ino, &mut txn.batch)?;
            let seq = core
                .store
                .last_key_with_prefix(&[keys::TOMBSTONE])?
                .and_then(|k| k.get(1..9).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))))
                .map_or(0, |s| s + 1);
            let tkey = keys::tombstone(seq);
            let rec = TombstoneRecord {
                time_ns: (now.secs.max(0) as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(now.nanos)),
                uid: who.uid,
                pid: who.pid,
                level,
                comm: who.comm.clone(),
                path: who.path.clone(),
            };
            txn.batch.put(&tkey[..], core.keys.vault_meta.seal_tombstone(core.vault_id(), &tkey, &rec)?);
        }
        let dir = txn.get(parent)?;
        dir.rec.mtime = now;
        dir.rec.ctime = now;
        if want_dir {
            dir.rec.nlink = dir.rec.nlink.saturating_sub(1);
        }
        txn.touch(parent);
        txn.commit()
    }

    /// Deletes an unlinked inode's content once nothing references it (the FUSE
    /// adapter calls this when the kernel forgets the inode). A no-op for
    /// inodes that still have links.
    pub fn evict(&self, ino: u64) -> Result<()> {
        let core = self.core();
        let _g = core.locks.write(ino);
        // Only an unlinked inode has anything to evict, and the batch that
        // dropped its last link marked it orphaned. A forgotten file that is
        // still linked is the common case (the kernel forgets cold files
        // all the time on a large vault): its record, likely out of the
        // cache, is not read for nothing.
        if !core.store.contains(&keys::orphan(ino))? {
            return Ok(());
        }
        // Beside other hosts writing: looked at again under the hold.
        drop(_g);
        let _hold = core.store.hold_for_write()?;
        let _g = core.locks.write(ino);
        if !core.store.contains(&keys::orphan(ino))? {
            return Ok(());
        }
        let node = match core.load(ino) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if node.rec.nlink != 0 || node.sealed_level == VAULT_LEVEL {
            return Ok(());
        }
        let mut batch = crate::store::Batch::default();
        core.delete_inode_data(ino, &mut batch)?;
        Ok(core.store.apply(batch)?)
    }

    /// Renames `parent/name` to `new_parent/new_name` (rename(2) and renameat2 flags).
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let core = self.core();
        if parent == ROOT_INO {
            return Err(Core::root_entry_error(name));
        }
        if new_parent == ROOT_INO {
            return Err(err(ErrorKind::NotPermitted, "the root holds only the six level directories"));
        }
        check_name(new_name)?;
        if flags.exchange && flags.no_replace {
            return Err(err(ErrorKind::InvalidArgument, "RENAME_EXCHANGE with RENAME_NOREPLACE"));
        }
        let _ns = core.namespace_lock();
        let mut locks = core.locks.set();
        locks.add(parent);
        locks.add(new_parent);
        let mut txn = Txn::new(core, self.ticket());
        let level = core.writable_dir(&mut txn, parent)?;
        let new_level = core.writable_dir(&mut txn, new_parent)?;
        if level != new_level {
            return Err(err(ErrorKind::CrossLevel, "rename across classification levels"));
        }
        let (pdir, npdir) = (txn.get(parent)?.clone(), txn.get(new_parent)?.clone());
        let (src_key, src) =
            core.find_entry(&pdir, name)?.ok_or_else(|| err(ErrorKind::NotFound, "no such entry"))?;
        let dst = core.find_entry(&npdir, new_name)?;
        if flags.exchange && dst.is_none() {
            return Err(err(ErrorKind::NotFound, "RENAME_EXCHANGE target does not exist"));
        }
        if flags.no_replace && dst.is_some() {
            return Err(err(ErrorKind::Exists, "target exists"));
        }
        if dst.as_ref().is_some_and(|(_, d)| d.ino == src.ino) {
            return Ok(()); // Same inode: POSIX says do nothing.
        }
        if src.kind == FileKind::Dir && core.is_within(new_parent, src.ino)? {
            return Err(err(ErrorKind::InvalidArgument, "cannot move a directory into itself"));
        }
        if let Some((_, d)) = &dst
            && flags.exchange
            && d.kind == FileKind::Dir
            && core.is_within(parent, d.ino)?
        {
            return Err(err(ErrorKind::InvalidArgument, "cannot move a directory into itself"));
        }
        locks.add(src.ino);
        if let Some((_, d)) = &dst {
            locks.add(d.ino);
        }
        let now = Timestamp::now();
        let mk = core.meta_keys(level)?;
        let new_key = mk.dirent_key(new_parent, new_name);
        let put_entry = |txn: &mut Txn, key: &[u8], ino: u64, kind: FileKind, name: &[u8]| -> Result<()> {
            let d = DirentRecord { ino, kind, name: name.to_vec() };
            txn.batch.put(key, mk.seal_dirent(core.vault_id(), key, &d)?);
            Ok(())
        };
        // Moves directory `ino` from `from` to `to`: parent pointer and link counts.
        let reparent = |txn: &mut Txn, ino: u64, from: u64, to: u64| -> Result<()> {
            if from == to {
                return Ok(());
            }
            txn.get(ino)?.rec.parent = to;
            txn.touch(ino);
            let f = txn.get(from)?;
            f.rec.nlink = f.rec.nlink.saturating_sub(1);
            txn.get(to)?.rec.nlink += 1;
            Ok(())
        };
        if flags.exchange {
            let (_, d) = dst.expect("checked above");
            put_entry(&mut txn, &src_key, d.ino, d.kind, name)?;
            put_entry(&mut txn, &new_key, src.ino, src.kind, new_name)?;
            if src.kind == FileKind::Dir {
                reparent(&mut txn, src.ino, parent, new_parent)?;
            }
            if d.kind == FileKind::Dir {
                reparent(&mut txn, d.ino, new_parent, parent)?;
            }
            let n = txn.get(d.ino)?;
            n.rec.ctime = now;
            txn.touch(d.ino);
        } else {
            if let Some((_, d)) = &dst {
                match (src.kind == FileKind::Dir, d.kind == FileKind::Dir) {
                    (true, false) => {
                        return Err(err(
                            ErrorKind::NotDir,
                            "cannot replace a non-directory with a directory",
                        ));
                    }
                    (false, true) => {
                        return Err(err(ErrorKind::IsDir, "cannot replace a directory with a non-directory"));
                    }
                    (true, true) => {
                        if !core.dir_is_empty(&txn.get(d.ino)?.clone())? {
                            return Err(err(ErrorKind::NotEmpty, "target directory not empty"));
                        }
                        let np = txn.get(new_parent)?;
                        np.rec.nlink = np.rec.nlink.saturating_sub(1);
                    }
                    (false, false) => {}
                }
                Core::drop_link(&mut txn, d.ino, now)?;
            }
            txn.batch.delete(src_key);
            put_entry(&mut txn, &new_key, src.ino, src.kind, new_name)?;
            if src.kind == FileKind::Dir {
                reparent(&mut txn, src.ino, parent, new_parent)?;
            }
        }
        txn.get(src.ino)?.rec.ctime = now;
        txn.touch(src.ino);
        for p in [parent, new_parent] {
            let d = txn.get(p)?;
            d.rec.mtime = now;
            d.rec.ctime = now;
            txn.touch(p);
        }
        txn.commit()
    }

    /// Lists up to `limit` entries of directory `ino` whose cookie is greater
    /// than `after` (0 starts at the beginning; "." and ".." are the caller's).
    pub fn readdir(&self, ino: u64, after: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let core = self.core();
        let dir = core.load(ino)?;
        if !dir.is_dir() {
            return Err(err(ErrorKind::NotDir, "not a directory"));
        }
        if ino == ROOT_INO {
            return Ok((0..LEVEL_COUNT)
                .map(|l| DirEntry {
                    ino: level_dir(l),
                    kind: FileKind::Dir,
                    name: LEVEL_NAMES[l as usize].as_bytes().to_vec(),
                    cookie: 3 + l as u64,
                })
                .filter(|e| e.cookie > after)
                .take(limit)
                .collect());
        }
        let level = core.child_level(&dir).expect("not the root");
        let mk = core.meta_keys(level)?;
        let prefix = mk.dirent_prefix(ino);
        let mut lo = prefix.to_vec();
        if after >= 3 {
            match (after - 3 + 1).checked_mul(4) {
                Some(p) => lo.extend_from_slice(&p.to_be_bytes()),
                None => return Ok(Vec::new()),
            }
        }
        let mut hi = prefix.to_vec();
        hi.push(0xFF);
        hi.extend_from_slice(&[0xFF; 16]);
        let mut out = Vec::new();
        for entry in core.store.range(&lo, &hi) {
            let (k, v) = entry?;
            if out.len() >= limit {
                break;
            }
            // A damaged entry costs that entry, not the listing: it is left
            // out and logged (fsck names it), and its neighbours still list.
            let d = match mk.open_dirent(core.vault_id(), &k, &v) {
                Ok(d) if k == mk.dirent_key(ino, &d.name) => d,
                Ok(_) | Err(_) => {
                    tracing::error!(
                        "directory {ino}: entry {} failed authentication; left out of the listing",
                        crate::format::hex(&k)
                    );
                    continue;
                }
            };
            out.push(DirEntry { ino: d.ino, kind: d.kind, name: d.name, cookie: cookie_of(&k) });
        }
        Ok(out)
    }
}
