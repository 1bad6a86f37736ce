//! Loading and sealing inodes, and a small transaction that gathers the
//! inodes an operation changes and writes them in one batch.

use std::collections::BTreeMap;

use crate::block::FileBlocks;
use crate::crypto::Key32;
use crate::format::{DirentRecord, FileKind, InodeRecord, MAX_NAME_LEN, keys};
use crate::meta::{self, VAULT_LEVEL};
use crate::store::Batch;

use super::Core;
use super::audit::Ticket;
use super::error::{ErrorKind, Result, err};
use super::types::{Attr, LEVEL_COUNT, ROOT_INO, level_of_dir};

/// A decrypted inode with its number and classification level.
#[derive(Clone, Debug)]
pub struct Node {
    pub ino: u64,
    /// Level byte it is sealed under (VAULT_LEVEL for root and level dirs).
    pub sealed_level: u8,
    pub rec: InodeRecord,
}

impl Node {
    /// Classification level of this inode (None for the root).
    pub fn level(&self) -> Option<u8> {
        if self.sealed_level == VAULT_LEVEL { level_of_dir(self.ino) } else { Some(self.sealed_level) }
    }

    pub fn is_dir(&self) -> bool {
        self.rec.kind == FileKind::Dir
    }
}

impl Core {
    pub(super) fn load(&self, ino: u64) -> Result<Node> {
        let v = self
            .store
            .get(&keys::inode(ino))?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("inode {ino} does not exist")))?;
        let level =
            meta::inode_level(&v).ok_or_else(|| err(ErrorKind::Corrupt, format!("inode {ino} is empty")))?;
        if level >= LEVEL_COUNT && level != VAULT_LEVEL {
            return Err(err(
                ErrorKind::Corrupt,
                format!("inode {ino} failed authentication (level byte {level})"),
            ));
        }
        // Only the root and the level directories may be sealed at vault level,
        // and they must be: otherwise a swapped record could change a file's level.
        let fixed = ino == ROOT_INO || level_of_dir(ino).is_some();
        if fixed != (level == VAULT_LEVEL) {
            return Err(err(
                ErrorKind::Corrupt,
                format!("inode {ino} failed authentication (wrong level byte)"),
            ));
        }
        let rec = self.meta_keys(level)?.open_inode(self.vault_id(), ino, &v)?;
        Ok(Node { ino, sealed_level: level, rec })
    }

    pub(super) fn seal(&self, node: &Node) -> Result<Vec<u8>> {
        Ok(self.meta_keys(node.sealed_level)?.seal_inode(self.vault_id(), node.ino, &node.rec)?)
    }

    /// The level new children of `dir` belong to; None for the root, which
    /// holds only the fixed level directories.
    pub(super) fn child_level(&self, dir: &Node) -> Option<u8> {
        if dir.ino == ROOT_INO { None } else { dir.level() }
    }

    /// Runs `f` over the content blocks of `node`, with its file key unwrapped
    /// into a zeroizing key for the duration.
    pub(super) fn with_blocks<T>(&self, node: &Node, f: impl FnOnce(&FileBlocks) -> T) -> T {
        let key = Key32::from_bytes(node.rec.file_key.0);
        let blocks = FileBlocks::new(
            &self.store,
            &key,
            self.vault_id(),
            (node.ino, node.rec.generation),
            self.block_size,
            Some(&self.space),
        );
        f(&blocks)
    }

    /// Finds `name` in directory `dir` (which must already be loaded).
    pub(super) fn find_entry(&self, dir: &Node, name: &[u8]) -> Result<Option<(Vec<u8>, DirentRecord)>> {
        let level = self.child_level(dir).ok_or_else(|| err(ErrorKind::NotFound, "not in the root"))?;
        let mk = self.meta_keys(level)?;
        let key = mk.dirent_key(dir.ino, name).to_vec();
        match self.store.get(&key)? {
            None => Ok(None),
            Some(v) => {
                let d = mk.open_dirent(self.vault_id(), &key, &v)?;
                if d.name != name {
                    return Err(err(
                        ErrorKind::Corrupt,
                        "directory entry failed authentication (name mismatch)",
                    ));
                }
                Ok(Some((key, d)))
            }
        }
    }

    pub(super) fn attr(&self, node: &Node) -> Attr {
        let r = &node.rec;
        let bs = self.block_size;
        Attr {
            ino: node.ino,
            generation: r.generation,
            level: node.level(),
            parent: if node.ino == ROOT_INO { ROOT_INO } else { r.parent },
            kind: r.kind,
            perm: r.perm,
            nlink: r.nlink,
            uid: r.uid,
            gid: r.gid,
            rdev: r.rdev,
            size: r.size,
            blocks: r.blocks * (bs as u64 / 512),
            blksize: bs,
            atime: r.atime,
            mtime: r.mtime,
            ctime: r.ctime,
            crtime: r.crtime,
        }
    }
}

/// Checks a name for create/link/rename targets.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(err(
            ErrorKind::NameTooLong,
            format!("name is {} bytes (at most {MAX_NAME_LEN})", name.len()),
        ));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(err(
            ErrorKind::InvalidName,
            "invalid name (empty, \".\", \"..\", or containing '/' or NUL)",
        ));
    }
    Ok(())
}

/// Inodes loaded by one operation, the changes to them, and the batch that
/// will carry everything to the store at once.
pub struct Txn<'a> {
    core: &'a Core,
    /// The record of the access this change is for, taken into the batch.
    ticket: Option<&'a Ticket>,
    nodes: BTreeMap<u64, Node>,
    dirty: Vec<u64>,
    pub batch: Batch,
}

impl<'a> Txn<'a> {
    pub fn new(core: &'a Core, ticket: Option<&'a Ticket>) -> Self {
        Txn { core, ticket, nodes: BTreeMap::new(), dirty: Vec::new(), batch: Batch::default() }
    }

    pub fn get(&mut self, ino: u64) -> Result<&mut Node> {
        if !self.nodes.contains_key(&ino) {
            let n = self.core.load(ino)?;
            self.nodes.insert(ino, n);
        }
        Ok(self.nodes.get_mut(&ino).expect("inserted above"))
    }

    /// Marks an inode changed; it is sealed into the batch at commit.
    pub fn touch(&mut self, ino: u64) {
        if !self.dirty.contains(&ino) {
            self.dirty.push(ino);
        }
    }

    /// Un-marks an inode: it is deleted by this batch, not rewritten.
    pub fn forget(&mut self, ino: u64) {
        self.dirty.retain(|i| *i != ino);
    }

    /// Adds a node that does not exist in the store yet.
    pub fn insert(&mut self, node: Node) {
        let ino = node.ino;
        self.nodes.insert(ino, node);
        self.touch(ino);
    }

    pub fn node(&self, ino: u64) -> &Node {
        &self.nodes[&ino]
    }

    pub fn commit(mut self) -> Result<()> {
        for ino in std::mem::take(&mut self.dirty) {
            let node = &self.nodes[&ino];
            self.batch.put(&keys::inode(ino)[..], self.core.seal(node)?);
        }
        self.core.apply(self.batch, self.ticket.and_then(Ticket::take))
    }
}
