//! File content and attributes: read, write, truncate, fallocate, seek,
//! setattr and extended attributes.

use crate::block;
use crate::format::{FileKind, MAX_NAME_LEN, MAX_XATTR_VALUE_LEN, XattrRecord, keys};
use crate::store::Batch;

use super::error::{ErrorKind, Result, err};
use super::node::{Node, Txn};
use super::types::*;
use super::{Core, Unlocked, Vault};

const S_ISUID: u16 = 0o4000;
/// `system.posix_acl_access` and `system.posix_acl_default`.
const POSIX_ACL_PREFIX: &[u8] = b"system.posix_acl_";
const S_ISGID: u16 = 0o2000;
const S_IXGRP: u16 = 0o0010;

fn regular(node: &Node) -> Result<()> {
    match node.rec.kind {
        FileKind::File => Ok(()),
        FileKind::Dir => Err(err(ErrorKind::IsDir, "is a directory")),
        _ => Err(err(ErrorKind::InvalidArgument, "not a regular file")),
    }
}

/// What a write by an unprivileged caller (or a chown) does to a regular
/// file's mode, as local filesystems do: set-user-ID goes, and set-group-ID
/// too when group execute is set (without it the bit means mandatory locking).
fn drop_setid(node: &mut Node) {
    if node.rec.kind != FileKind::Dir {
        node.rec.perm &= !S_ISUID;
        if node.rec.perm & S_IXGRP != 0 {
            node.rec.perm &= !S_ISGID;
        }
    }
}

fn resolve(t: TimeSet, now: Timestamp) -> Timestamp {
    match t {
        TimeSet::Now => now,
        TimeSet::At(t) => t,
    }
}

impl Core {
    /// Resizes a loaded file node within `batch` (truncate up or down).
    fn resize(&self, node: &mut Node, size: u64, batch: &mut Batch) -> Result<()> {
        block::check_range(size, 0)?;
        let delta = self.with_blocks(node, |b| b.truncate(node.rec.size, size, batch))?;
        node.rec.blocks = node.rec.blocks.saturating_add_signed(delta);
        node.rec.size = size;
        Ok(())
    }
}

impl Vault<Unlocked> {
    /// Reads up to `len` bytes at `offset`; fewer at end of file.
    pub fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let core = self.core();
        let _g = core.locks.read(ino);
        let node = core.load(ino)?;
        regular(&node)?;
        match core.with_blocks(&node, |b| b.read(offset, len, node.rec.size)) {
            // On a read-only mount of a cluster vault, the holder may have
            // rewritten these blocks and collected the object their old
            // index entries point into since this read looked them up: look
            // up once more (a store that is really damaged fails again).
            Err(e) if core.store.reader_host().is_some() => {
                tracing::debug!("read of inode {ino} on a read-only mount failed ({e}); looking up again");
                core.store.catch_up()?;
                let node = core.load(ino)?;
                regular(&node)?;
                Ok(core.with_blocks(&node, |b| b.read(offset, len, node.rec.size))?)
            }
            read => Ok(read?),
        }
    }

    /// Writes `data` at `offset`; returns the byte count written (all of it).
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_as(ino, offset, data, false)
    }

    /// [`Self::write`]; `kill_setid`: the writer is unprivileged, so the
    /// file's set-id bits go in the same transaction (`drop_setid`).
    pub fn write_as(&self, ino: u64, offset: u64, data: &[u8], kill_setid: bool) -> Result<usize> {
        let core = self.core();
        let end = block::check_range(offset, data.len() as u64)?;
        let _g = core.locks.write(ino);
        let mut txn = Txn::new(core, self.ticket());
        let node = txn.get(ino)?;
        regular(node)?;
        if data.is_empty() {
            return Ok(0);
        }
        let mut batch = Batch::default();
        let size = node.rec.size;
        let delta = core.with_blocks(node, |b| b.write(offset, data, size, &mut batch))?;
        let now = Timestamp::now();
        node.rec.blocks = node.rec.blocks.saturating_add_signed(delta);
        node.rec.size = node.rec.size.max(end);
        node.rec.mtime = now;
        node.rec.ctime = now;
        if kill_setid {
            drop_setid(node);
        }
        txn.batch = batch;
        txn.touch(ino);
        txn.commit()?;
        Ok(data.len())
    }

    /// Changes attributes; `size` truncates or extends a regular file.
    pub fn setattr(&self, ino: u64, set: &SetAttr) -> Result<Attr> {
        let core = self.core();
        let _g = core.locks.write(ino);
        let mut txn = Txn::new(core, self.ticket());
        let node = txn.get(ino)?;
        let now = Timestamp::now();
        if let Some(perm) = set.perm {
            let perm = perm & 0o7777;
            if level_of_dir(ino).is_some() || ino == ROOT_INO {
                // Fixed directories may only be tightened.
                if perm & !node.rec.perm != 0 {
                    return Err(err(
                        ErrorKind::NotPermitted,
                        "the root and level directories' modes can only be tightened",
                    ));
                }
            }
            node.rec.perm = perm;
        }
        if set.uid.is_some() || set.gid.is_some() {
            let changes =
                set.uid.is_some_and(|u| u != node.rec.uid) || set.gid.is_some_and(|g| g != node.rec.gid);
            if (level_of_dir(ino).is_some() || ino == ROOT_INO) && changes {
                return Err(err(
                    ErrorKind::NotPermitted,
                    "the root and level directories cannot change owner",
                ));
            }
            node.rec.uid = set.uid.unwrap_or(node.rec.uid);
            node.rec.gid = set.gid.unwrap_or(node.rec.gid);
            // As on local filesystems: chown drops set-id bits of non-directories.
            drop_setid(node);
        }
        if let Some(size) = set.size {
            regular(node)?;
            let mut batch = Batch::default();
            let mut n = node.clone();
            core.resize(&mut n, size, &mut batch)?;
            *txn.get(ino)? = n;
            txn.batch = batch;
            let node = txn.get(ino)?;
            node.rec.mtime = now;
        }
        let node = txn.get(ino)?;
        if set.kill_setid {
            drop_setid(node);
        }
        if let Some(t) = set.atime {
            node.rec.atime = resolve(t, now);
        }
        if let Some(t) = set.mtime {
            node.rec.mtime = resolve(t, now);
        }
        node.rec.ctime = now;
        txn.touch(ino);
        let attr = core.attr(txn.node(ino));
        txn.commit()?;
        Ok(attr)
    }

    /// fallocate(2): mode 0 extends the size (space is not reserved: the store
    /// is sparse); KEEP_SIZE alone is a no-op; PUNCH_HOLE and ZERO_RANGE zero.
    pub fn fallocate(&self, ino: u64, offset: u64, len: u64, mode: FallocMode) -> Result<()> {
        let core = self.core();
        if len == 0 {
            return Err(err(ErrorKind::InvalidArgument, "fallocate length 0"));
        }
        if mode.punch_hole && (!mode.keep_size || mode.zero_range) {
            return Err(err(
                ErrorKind::InvalidArgument,
                "PUNCH_HOLE needs KEEP_SIZE and excludes ZERO_RANGE",
            ));
        }
        let end = block::check_range(offset, len)?;
        let _g = core.locks.write(ino);
        let mut txn = Txn::new(core, self.ticket());
        let node = txn.get(ino)?;
        regular(node)?;
        let now = Timestamp::now();
        let mut batch = Batch::default();
        if mode.punch_hole || mode.zero_range {
            let size = node.rec.size;
            let delta = core.with_blocks(node, |b| b.punch_hole(offset, len, size, &mut batch))?;
            node.rec.blocks = node.rec.blocks.saturating_add_signed(delta);
            node.rec.mtime = now;
            node.rec.ctime = now;
        }
        if !mode.keep_size && end > node.rec.size {
            node.rec.size = end;
            node.rec.ctime = now;
        }
        if mode.kill_setid {
            drop_setid(node);
            node.rec.ctime = now;
        }
        txn.batch = batch;
        txn.touch(ino);
        txn.commit()
    }

    /// lseek SEEK_DATA: the next offset holding data, or None (ENXIO).
    pub fn seek_data(&self, ino: u64, offset: u64) -> Result<Option<u64>> {
        let core = self.core();
        let _g = core.locks.read(ino);
        let node = core.load(ino)?;
        regular(&node)?;
        Ok(core.with_blocks(&node, |b| b.next_data(offset, node.rec.size))?)
    }

    /// lseek SEEK_HOLE: the next hole at or after `offset`, or None past EOF (ENXIO).
    pub fn seek_hole(&self, ino: u64, offset: u64) -> Result<Option<u64>> {
        let core = self.core();
        let _g = core.locks.read(ino);
        let node = core.load(ino)?;
        regular(&node)?;
        if offset >= node.rec.size {
            return Ok(None);
        }
        Ok(Some(core.with_blocks(&node, |b| b.next_hole(offset, node.rec.size))?))
    }

    fn xattr_key(&self, node: &Node, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        let tag = self.core().meta_keys(node.sealed_level)?.xattr_tag(node.ino, name);
        Ok(keys::xattr(node.ino, &tag).to_vec())
    }

    /// Whether inode `ino` has any extended attribute: one probe of its key
    /// range, no inode opened. Most files have none, and `ls -l` asks every
    /// file for `security.selinux`, `cp -a` lists each file's twice.
    fn has_xattrs(&self, ino: u64) -> Result<bool> {
        Ok(self.core().store.scan_prefix(&keys::xattr_prefix(ino)).next().transpose()?.is_some())
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let core = self.core();
        check_xattr_name(name)?;
        if !self.has_xattrs(ino)? {
            return Err(err(ErrorKind::NoData, "no such attribute"));
        }
        let node = core.load(ino)?;
        let key = self.xattr_key(&node, name)?;
        let v = core.store.get(&key)?.ok_or_else(|| err(ErrorKind::NoData, "no such attribute"))?;
        let x = core.meta_keys(node.sealed_level)?.open_xattr(core.vault_id(), &key, &v)?;
        if x.name != name {
            return Err(err(ErrorKind::Corrupt, "xattr failed authentication (name mismatch)"));
        }
        Ok(x.value)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        let core = self.core();
        if value.len() > MAX_XATTR_VALUE_LEN {
            return Err(err(ErrorKind::TooLarge, "xattr value too large"));
        }
        let _g = core.locks.write(ino);
        let mut txn = Txn::new(core, self.ticket());
        let node = txn.get(ino)?.clone();
        let key = self.xattr_key(&node, name)?;
        let exists = core.store.contains(&key)?;
        if flags.create && exists {
            return Err(err(ErrorKind::Exists, "attribute exists"));
        }
        if flags.replace && !exists {
            return Err(err(ErrorKind::NoData, "no such attribute"));
        }
        let rec = XattrRecord { name: name.to_vec(), value: value.to_vec() };
        let sealed = core.meta_keys(node.sealed_level)?.seal_xattr(core.vault_id(), &key, &rec)?;
        txn.batch.put(key, sealed);
        txn.get(ino)?.rec.ctime = Timestamp::now();
        txn.touch(ino);
        txn.commit()
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let core = self.core();
        if !self.has_xattrs(ino)? {
            return Ok(Vec::new());
        }
        let node = core.load(ino)?;
        let mk = core.meta_keys(node.sealed_level)?;
        let mut names = Vec::new();
        for entry in core.store.scan_prefix(&keys::xattr_prefix(ino)) {
            let (k, v) = entry?;
            names.push(mk.open_xattr(core.vault_id(), &k, &v)?.name);
        }
        Ok(names)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let core = self.core();
        let _g = core.locks.write(ino);
        let mut txn = Txn::new(core, self.ticket());
        let node = txn.get(ino)?.clone();
        let key = self.xattr_key(&node, name)?;
        if !core.store.contains(&key)? {
            return Err(err(ErrorKind::NoData, "no such attribute"));
        }
        txn.batch.delete(key);
        txn.get(ino)?.rec.ctime = Timestamp::now();
        txn.touch(ino);
        txn.commit()
    }
}

/// A name `getxattr`, `setxattr` and `removexattr` may use.
fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(err(ErrorKind::InvalidArgument, "bad xattr name length"));
    }
    if name.starts_with(POSIX_ACL_PREFIX) {
        // Storing ACLs without enforcing them would make `cp -a` and
        // `setfacl` believe in permissions that do not hold; refusing makes
        // them fall back to chmod (docs/SEMANTICS.md).
        return Err(err(ErrorKind::Unsupported, "POSIX ACLs are not supported"));
    }
    Ok(())
}
