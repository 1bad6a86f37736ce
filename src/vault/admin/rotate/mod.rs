//! Key rotation on a closed vault (`vaultfs rotate`, docs/ADMIN.md
//! "rotate"): a level gets a new key, each of its files a new file key, and
//! every record of the level is re-sealed: content blocks under the new file
//! keys, inodes, entries and xattrs under the new level's metadata keys.
//!
//! Resumable: the new keys wait in the rotation record (`P` ‖ level) until
//! the end, and every record opens under exactly one of the two key sets,
//! so a rerun skips what an interrupted run finished. A file's blocks move
//! first, then its xattrs and inode in one batch: an inode under the new key
//! means its file is done. The last batch re-wraps the level's key slots,
//! deletes the record and appends the audit leaf, together. The vault does
//! not mount while a rotation is pending.

use std::collections::HashMap;

use crate::block::{FileBlocks, Space};
use crate::crypto::{Key32, Passphrase};
use crate::format::{Header, InodeRecord, RawKey, keys};
use crate::meta::{self, MetaKeys};
use crate::store::{Batch, Store};
use crate::vault::error::Result;
use crate::vault::keyring::{self, Rotation};
use crate::vault::{
    AuditOp, FIRST_USER_INO, FactorSecrets, FileKind, LEVEL_NAMES, Locked, Record, Vault, level_dir,
};

/// Content bytes re-encrypted per store batch: bounded, so one huge file
/// never becomes one huge batch.
const BATCH_BYTES: u64 = 4 << 20;
/// Directory entries re-keyed per store batch.
const ENTRY_BATCH: usize = 512;
/// The `comm` of rotation leaves.
const COMM: &[u8] = b"vaultfs-rotate";

/// What one level's rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    pub level: u8,
    /// It finished a rotation an earlier run left interrupted.
    pub resumed: bool,
    /// Records re-sealed by this run (an interrupted run's share is not counted).
    pub inodes: u64,
    pub blocks: u64,
    pub entries: u64,
    pub xattrs: u64,
    /// Records that authenticate under neither key, left exactly as they
    /// were (they were unreadable before the rotation too): `vaultfs fsck`
    /// reports them.
    pub damaged: Vec<String>,
}

impl Vault<Locked> {
    /// Levels whose rotation was interrupted (`vaultfs rotate` finishes it).
    pub fn rotations_pending(&self) -> Result<Vec<u8>> {
        pending_rotations(&self.0.store)
    }

    /// The levels `vaultfs rotate` without `--level` rotates: every level
    /// with a key (1 to 3 always, 4 and 5 once a factor is enrolled).
    pub fn levels_with_keys(&self) -> Vec<u8> {
        (1..=5u8).filter(|l| self.0.header.slots.iter().any(|s| s.level == *l)).collect()
    }

    /// Gives `level` a new key and re-encrypts everything stored under it.
    /// Every key slot of the level must answer (`secrets`), since each is
    /// re-wrapped; nothing is written before they have. `progress` gets
    /// (records done, records to do).
    pub fn rotate(
        &mut self,
        pass: &Passphrase,
        level: u8,
        secrets: &mut FactorSecrets,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<RotateReport> {
        let pending = self.0.store.get(&keys::rotation(level))?;
        let rot = Rotation::begin(pass, &self.0.header, level, pending.as_deref(), secrets)?;
        super::succession::refuse_rotation(&self.0.store, rot.master(), &self.0.header, level)?;
        let ring = keyring::unlock_with_master(rot.master(), &self.0.header)?;
        // Open the log before anything is written: a rotation that could
        // not be recorded is not started.
        let log = ring.open_log(&self.0.store, self.0.header.vault_id)?;
        if !rot.resumed {
            self.0.store.put(&keys::rotation(level), rot.record(&self.0.header.vault_id)?)?;
            self.0.store.flush()?;
        }
        let space = Space::load(&self.0.store)?;
        let report = Rekey::new(&self.0.store, &self.0.header, &rot, &space)?.run(progress)?;
        // The re-sealed blocks are in segment files: older builds must refuse the vault.
        let mut marked = self.0.header.clone();
        marked.features |= crate::format::FEATURE_SEGMENTS | crate::format::FEATURE_RUNS;
        let header = rot.finish(&marked)?;
        let mut batch = Batch::default();
        batch.put(keys::HEADER, header.encode());
        batch.delete(&keys::rotation(level)[..]);
        let changed = report.inodes + report.blocks + report.entries + report.xattrs;
        let path = format!("/{}{}", LEVEL_NAMES[level as usize], if rot.resumed { " (resumed)" } else { "" });
        let record =
            Record::offline(AuditOp::Rotate, COMM, Some(level), level_dir(level), path.into_bytes(), changed);
        log.append_with(&self.0.store, record.leaf(0), batch)?;
        self.0.store.flush()?;
        self.0.header = header;
        // The rotation is done and recorded; a checkpoint over it is signed
        // here when possible, else by the next mount.
        if let Err(e) = log.checkpoint(&self.0.store, false) {
            tracing::warn!("rotation of level {level} done; its checkpoint waits for the next mount: {e}");
        }
        Ok(report)
    }
}

/// Levels with a rotation record in `store` (a key of another shape is not
/// one: fsck reports it as unknown).
pub(in crate::vault) fn pending_rotations(store: &Store) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in store.scan_prefix(&[keys::ROTATION]) {
        let (k, _) = entry?;
        if let [keys::ROTATION, level @ 1..=5] = k[..] {
            out.push(level);
        }
    }
    Ok(out)
}

/// One level's re-encryption: the work between the rotation record and the
/// header switch.
struct Rekey<'a> {
    store: &'a Store,
    vid: [u8; 16],
    block_size: u32,
    /// Versions for the re-sealed blocks' records.
    space: &'a Space,
    rot: &'a Rotation,
    old: MetaKeys,
    new: MetaKeys,
    /// Inodes still under the old key (numbers only: records are re-read one at a time).
    pending: Vec<u64>,
    /// Directory tags of the level's directories, under either key, to their inode.
    dirs: HashMap<[u8; 16], u64>,
    report: RotateReport,
    done: u64,
    total: u64,
}

impl<'a> Rekey<'a> {
    /// Finds the level's inodes and which key each is under.
    fn new(store: &'a Store, h: &Header, rot: &'a Rotation, space: &'a Space) -> Result<Self> {
        let level = rot.level;
        let old = MetaKeys::derive(level, &rot.old, &h.vault_id);
        let new = MetaKeys::derive(level, &rot.new, &h.vault_id);
        let mut pending = Vec::new();
        let mut dirs = HashMap::new();
        let ld = level_dir(level);
        dirs.insert(old.dir_tag(ld), ld);
        dirs.insert(new.dir_tag(ld), ld);
        let mut total = 0;
        let mut damaged = Vec::new();
        for entry in store.scan_prefix(&[keys::INODE]) {
            let (k, v) = entry?;
            let Some(ino) = keys::ino_of(&k).filter(|i| *i >= FIRST_USER_INO) else { continue };
            if meta::inode_level(&v) != Some(level) {
                continue;
            }
            let (rec, done) = match old.open_inode(&h.vault_id, ino, &v) {
                Ok(rec) => (rec, false),
                Err(_) => match new.open_inode(&h.vault_id, ino, &v) {
                    Ok(rec) => (rec, true),
                    Err(_) => {
                        damaged.push(format!("inode {ino}"));
                        continue;
                    }
                },
            };
            if rec.kind == FileKind::Dir {
                dirs.insert(old.dir_tag(ino), ino);
                dirs.insert(new.dir_tag(ino), ino);
            }
            if !done {
                total += 1 + rec.blocks;
                pending.push(ino);
            }
        }
        total += store.scan_prefix(&[keys::DIRENT, level]).count() as u64;
        Ok(Rekey {
            store,
            vid: h.vault_id,
            block_size: h.block_size,
            space,
            rot,
            old,
            new,
            pending,
            dirs,
            report: RotateReport { level, resumed: rot.resumed, damaged, ..Default::default() },
            done: 0,
            total,
        })
    }

    fn run(mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<RotateReport> {
        progress(0, self.total);
        for ino in std::mem::take(&mut self.pending) {
            let value = self.store.get(&keys::inode(ino))?;
            match value.map(|v| self.old.open_inode(&self.vid, ino, &v)) {
                Some(Ok(rec)) => self.file(ino, rec, progress)?,
                _ => self.report.damaged.push(format!("inode {ino} (changed while rotating)")),
            }
        }
        self.entries(progress)?;
        progress(self.total, self.total);
        Ok(self.report)
    }

    fn tick(&mut self, n: u64, progress: &mut dyn FnMut(u64, u64)) {
        self.done += n;
        progress(self.done.min(self.total), self.total);
    }

    /// One inode: its blocks in bounded batches, then its xattrs and the
    /// inode itself (new file key, new metadata key) in one batch.
    fn file(&mut self, ino: u64, mut rec: InodeRecord, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let old_key = Key32::from_bytes(rec.file_key.0);
        let new_key = self.rot.file_key(&self.vid, ino, rec.generation);
        let (store, vid) = (self.store, self.vid);
        let space = self.space;
        let blocks =
            |key| FileBlocks::new(store, key, &vid, (ino, rec.generation), self.block_size, Some(space));
        let (old_blocks, new_blocks) = (blocks(&old_key), blocks(&new_key));
        let per_batch = (BATCH_BYTES / self.block_size as u64).max(1);
        let mut batch = Batch::default();
        let mut moved = 0;
        for entry in self.store.scan_prefix(&keys::block_prefix(ino)) {
            let (k, v) = entry?;
            let Some(n) = keys::block_number(&k) else {
                self.report.damaged.push(format!("malformed block key {}", crate::format::hex(&k)));
                continue;
            };
            // Moved by an interrupted run: it opens under the new key.
            if new_blocks.read_entry(n, &v).is_ok() {
                continue;
            }
            let Ok((first, plain)) = old_blocks.read_entry(n, &v) else {
                let blocks = match crate::block::entry_span(self.block_size, n, &v) {
                    (first, last) if first < last => format!("blocks {first}..={last}"),
                    _ => format!("block {n}"),
                };
                self.report.damaged.push(format!("{blocks} of inode {ino}"));
                continue;
            };
            new_blocks.replace_entry(first, &v, &plain, &mut batch)?;
            moved += n - first + 1;
            if moved >= per_batch {
                self.store.apply(std::mem::take(&mut batch))?;
                self.report.blocks += moved;
                self.tick(moved, progress);
                moved = 0;
            }
        }
        self.report.blocks += moved;
        self.tick(moved, progress);
        for entry in self.store.scan_prefix(&keys::xattr_prefix(ino)) {
            let (k, v) = entry?;
            let Ok(x) = self.old.open_xattr(&self.vid, &k, &v) else {
                self.report.damaged.push(format!("an extended attribute of inode {ino}"));
                continue;
            };
            let new_k = keys::xattr(ino, &self.new.xattr_tag(ino, &x.name));
            batch.delete(k);
            batch.put(&new_k[..], self.new.seal_xattr(&self.vid, &new_k, &x)?);
            self.report.xattrs += 1;
        }
        rec.file_key = RawKey(*new_key.as_bytes());
        batch.put(&keys::inode(ino)[..], self.new.seal_inode(&self.vid, ino, &rec)?);
        self.store.apply(batch)?;
        self.report.inodes += 1;
        self.tick(1, progress);
        Ok(())
    }

    /// Every directory entry of the level, re-keyed under the new names key.
    fn entries(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let level = self.rot.level;
        let mut batch = Batch::default();
        let mut seen = 0;
        for entry in self.store.scan_prefix(&[keys::DIRENT, level]) {
            let (k, v) = entry?;
            seen += 1;
            if self.new.open_dirent(&self.vid, &k, &v).is_ok() {
                continue;
            }
            let Ok(rec) = self.old.open_dirent(&self.vid, &k, &v) else {
                self.report.damaged.push(format!("directory entry {}", crate::format::hex(&k)));
                continue;
            };
            let dir = k.get(2..18).and_then(|t| <[u8; 16]>::try_from(t).ok()).and_then(|t| self.dirs.get(&t));
            let Some(&dir) = dir else {
                // Its directory is gone (or damaged): nothing names the
                // entry's directory under the new key, so it stays as it is.
                self.report
                    .damaged
                    .push(format!("directory entry {} (its directory is gone)", crate::format::hex(&k)));
                continue;
            };
            let new_k = self.new.dirent_key(dir, &rec.name);
            batch.delete(k);
            batch.put(&new_k[..], self.new.seal_dirent(&self.vid, &new_k, &rec)?);
            self.report.entries += 1;
            if batch.len() >= 2 * ENTRY_BATCH {
                self.store.apply(std::mem::take(&mut batch))?;
                self.tick(seen, progress);
                seen = 0;
            }
        }
        self.store.apply(batch)?;
        self.tick(seen, progress);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
