//! The checks: one pass per key type, in the order that lets each use what
//! the previous ones learned (inodes, then entries, blocks, xattrs, markers,
//! tombstones, single keys), then link counts and the audit log. Nothing
//! here writes; repairable problems carry the fix `repair` will apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{
    AuditReport, Fix, FsckOptions, FsckReport, HostAuditReport, LevelAccess, LevelReport, Problem,
    ProblemKind,
};
use super::{RepairState, Tally};
use crate::audit::log::Log;
use crate::block::{FileBlocks, entry_span};
use crate::crypto::{Key32, SigningKey};
use crate::format::segment::IndexEntry;
use crate::format::{DirentRecord, FileKind, Header, SLOT_KIND_FACTORS, hex, keys};
use crate::meta::{self, MetaKeys, VAULT_LEVEL};
use crate::store::Store;
use crate::vault::error::Result;
use crate::vault::keyring::{FactorSecrets, Keyring};
use crate::vault::node::{Node, check_name};
use crate::vault::types::{FIRST_USER_INO, LEVEL_COUNT, ROOT_INO, level_dir, level_of_dir};

/// The keys of one level, or why there are none.
pub(super) enum Access {
    Open(Arc<MetaKeys>),
    Closed(LevelAccess, String),
}

/// Which levels' keys fsck has: the passphrase levels, the factor levels it
/// was asked to open (and could), none for level 0 (its key is per mount).
pub(super) fn level_keys(
    header: &Header,
    ring: &Keyring,
    opts: &FsckOptions,
    rotating: &[u8],
    secrets: &mut FactorSecrets,
) -> [Access; 6] {
    let levels = ring.levels.read().unwrap_or_else(|p| p.into_inner()).clone();
    std::array::from_fn(|l| {
        let level = l as u8;
        if level == 0 {
            return Access::Closed(
                LevelAccess::Ephemeral,
                "its key lived only while mounted; leftovers are purged at the next unlock".into(),
            );
        }
        if rotating.contains(&level) {
            return Access::Closed(
                LevelAccess::Rotating,
                "its key rotation was interrupted: its records are under two keys until `vaultfs rotate` finishes it"
                    .into(),
            );
        }
        if let Some(mk) = &levels[l] {
            return Access::Open(mk.clone());
        }
        if !header.slots.iter().any(|s| s.level == level && s.kind == SLOT_KIND_FACTORS) {
            return Access::Closed(LevelAccess::NoKey, "the level has no key slot".into());
        }
        if !opts.factor_levels.contains(&level) {
            return Access::Closed(
                LevelAccess::Locked,
                format!("opens only with its hardware factor (`--level {level}` to use it)"),
            );
        }
        match ring.unlock_factor_level(header, level, secrets) {
            Ok(mk) => Access::Open(Arc::new(mk)),
            Err(e) => Access::Closed(LevelAccess::Locked, e.message),
        }
    })
}

/// What fsck knows about one stored inode.
struct Ino {
    /// Level byte of the stored value.
    level_byte: u8,
    /// The record, if it authenticated.
    node: Option<Node>,
    /// Authenticated entries naming it (outside dangling ones).
    refs: u32,
    /// Authenticated entries inside it, and those of them that are directories.
    children: u32,
    subdirs: u32,
    /// Blocks stored for it within its size.
    blocks: u64,
    /// An orphan marker is stored for it.
    marker: bool,
}

impl Ino {
    /// The level whose keys its records need (None: the vault level, always open).
    fn level(&self) -> Option<u8> {
        (self.level_byte != VAULT_LEVEL).then_some(self.level_byte)
    }
}

pub(super) struct Checker<'a> {
    store: &'a Store,
    header: &'a Header,
    ring: &'a Keyring,
    access: &'a [Access; 6],
    inodes: BTreeMap<u64, Ino>,
    /// An entry of this level failed authentication: it may name any inode
    /// of the level, so link counts there are not certain.
    uncertain: [bool; 6],
    /// Records of each level that could not be authenticated.
    not_checked: [u64; 6],
    report: FsckReport,
    /// The highest block version in any index entry (every level: versions
    /// are not sealed), which the version counter must not be below.
    max_version: u64,
    progress: &'a mut dyn FnMut(u64, u64),
    done: u64,
    total: u64,
}

/// How often (in store entries) progress is reported.
const PROGRESS_EVERY: u64 = 64;

impl<'a> Checker<'a> {
    pub(super) fn new(
        store: &'a Store,
        header: &'a Header,
        ring: &'a Keyring,
        access: &'a [Access; 6],
        report: FsckReport,
        progress: &'a mut dyn FnMut(u64, u64),
    ) -> Self {
        Checker {
            store,
            header,
            ring,
            access,
            inodes: BTreeMap::new(),
            max_version: 0,
            uncertain: [false; 6],
            not_checked: [0; 6],
            report,
            progress,
            done: 0,
            total: 0,
        }
    }

    pub(super) fn run(&mut self) -> Result<()> {
        self.census()?;
        self.inodes()?;
        self.entries()?;
        self.blocks()?;
        self.xattrs()?;
        self.markers()?;
        self.tombstones()?;
        self.single_keys()?;
        self.segments()?;
        self.links();
        self.audit();
        (self.progress)(self.total, self.total);
        Ok(())
    }

    pub(super) fn finish(mut self) -> FsckReport {
        self.report.levels = (0..LEVEL_COUNT)
            .map(|level| {
                let (access, note) = match &self.access[level as usize] {
                    Access::Open(_) => (LevelAccess::Checked, String::new()),
                    Access::Closed(a, why) => (*a, why.clone()),
                };
                LevelReport { level, access, note, not_checked: self.not_checked[level as usize] }
            })
            .collect();
        self.report
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.done % PROGRESS_EVERY == 0 {
            (self.progress)(self.done.min(self.total), self.total);
        }
    }

    fn open_level(&self, level: u8) -> Option<Arc<MetaKeys>> {
        if level == VAULT_LEVEL {
            return Some(self.ring.vault_meta.clone());
        }
        match self.access.get(level as usize)? {
            Access::Open(mk) => Some(mk.clone()),
            Access::Closed(..) => None,
        }
    }

    fn problem(&mut self, kind: ProblemKind, key: &[u8], at: (Option<u64>, Option<u64>), message: String) {
        self.push(kind, key, at, message, None);
    }

    fn push(
        &mut self,
        kind: ProblemKind,
        key: &[u8],
        (ino, block): (Option<u64>, Option<u64>),
        message: String,
        fix: Option<Fix>,
    ) {
        let count = match &fix {
            Some(Fix::Delete(keys)) => keys.len() as u64,
            _ => 1,
        };
        let repair = if fix.is_some() { RepairState::Available } else { RepairState::None };
        // The level of the record: an entry's from its key, others' from their inode.
        let level = if key.len() == 34 && key[0] == keys::DIRENT {
            Some(key[1])
        } else {
            ino.and_then(|i| match self.inodes.get(&i) {
                Some(info) if info.level_byte != VAULT_LEVEL => Some(info.level_byte),
                Some(_) => level_of_dir(i),
                None => None,
            })
        };
        let level = level.filter(|l| *l < LEVEL_COUNT);
        let key = hex(key);
        self.report.problems.push(Problem { kind, key, ino, block, level, count, message, repair, fix });
    }

    /// A record that could not be authenticated for want of its level's key
    /// (or because its inode failed authentication: `level` None).
    fn skipped(&mut self, tally: fn(&mut FsckReport) -> &mut Tally, level: Option<u8>) {
        tally(&mut self.report).not_checked += 1;
        if let Some(l) = level.filter(|l| *l < LEVEL_COUNT) {
            self.not_checked[l as usize] += 1;
        }
    }

    /// Counts every key (the progress total) and reports keys vaultfs never writes.
    fn census(&mut self) -> Result<()> {
        let mut unknown = Vec::new();
        for entry in self.store.iter() {
            let (k, _) = entry?;
            self.total += 1;
            match k.first() {
                Some(&keys::INODE | &keys::DIRENT | &keys::BLOCK | &keys::XATTR | &keys::ORPHAN)
                | Some(&keys::TOMBSTONE) => {}
                Some(&keys::ROTATION) if k.len() == 2 && (1..=5).contains(&k[1]) => {
                    self.report.counts.other_keys += 1;
                    self.done += 1;
                }
                Some(
                    &keys::AUDIT_LEAF
                    | &keys::AUDIT_LEAVES
                    | &keys::AUDIT_SLOT
                    | &keys::AUDIT_NODE
                    | &keys::AUDIT_CHECKPOINT,
                ) => self.report.counts.audit_keys += 1,
                Some(_) if k == keys::AUDIT_FRONTIER || k == keys::AUDIT_BASE => {
                    self.report.counts.audit_keys += 1
                }
                Some(_)
                    if k == keys::HEADER
                        || k == keys::INODE_COUNTER
                        || k == keys::LOCKDOWN
                        || k == keys::VAULT_POLICY
                        || k == keys::WILL
                        || k == keys::VERSION_COUNTER =>
                {
                    self.report.counts.other_keys += 1;
                    self.done += 1;
                }
                _ => {
                    self.report.counts.other_keys += 1;
                    unknown.push(k);
                }
            }
        }
        (self.progress)(0, self.total);
        for k in unknown {
            self.done += 1;
            let known_single = [
                keys::HEADER,
                keys::INODE_COUNTER,
                keys::AUDIT_FRONTIER,
                keys::LOCKDOWN,
                keys::VAULT_POLICY,
                keys::WILL,
                keys::VERSION_COUNTER,
            ];
            let (kind, why) = if known_single.iter().any(|s| k.first() == s.first()) {
                (ProblemKind::Malformed, "a one-byte key type with trailing bytes")
            } else {
                (ProblemKind::UnknownKey, "a key type vaultfs never writes; left alone")
            };
            self.problem(kind, &k, (None, None), format!("key {}: {why}", hex(&k)));
        }
        Ok(())
    }

    fn inodes(&mut self) -> Result<()> {
        for entry in self.store.scan_prefix(&[keys::INODE]) {
            let (k, v) = entry?;
            self.tick();
            self.report.counts.inodes.stored += 1;
            let Some(ino) = keys::ino_of(&k).filter(|_| k.len() == 9) else {
                self.problem(
                    ProblemKind::Malformed,
                    &k,
                    (None, None),
                    "inode key of the wrong length".into(),
                );
                continue;
            };
            let Some(level_byte) = meta::inode_level(&v) else {
                self.problem(
                    ProblemKind::InodeDamaged,
                    &k,
                    (Some(ino), None),
                    format!("inode {ino}: empty value"),
                );
                self.inodes.insert(ino, Ino::new(VAULT_LEVEL));
                continue;
            };
            let mut info = Ino::new(level_byte);
            // The rules of `Core::load`: only the root and the level
            // directories are sealed at vault level, and they must be.
            let fixed = ino == ROOT_INO || level_of_dir(ino).is_some();
            let why = if level_byte >= LEVEL_COUNT && level_byte != VAULT_LEVEL {
                Some(format!("inode {ino}: level byte {level_byte} is not a level"))
            } else if fixed != (level_byte == VAULT_LEVEL) {
                Some(format!("inode {ino}: level byte {level_byte:#x} is wrong for this inode number"))
            } else {
                None
            };
            if let Some(why) = why {
                // Its blocks and xattrs are not checked: no level to read them with.
                info.level_byte = VAULT_LEVEL;
                self.inodes.insert(ino, info);
                self.problem(ProblemKind::InodeDamaged, &k, (Some(ino), None), why);
                continue;
            }
            match self.open_level(level_byte) {
                None => self.skipped(|r| &mut r.counts.inodes, Some(level_byte)),
                Some(mk) => match mk.open_inode(&self.header.vault_id, ino, &v) {
                    Ok(rec) => {
                        self.report.counts.inodes.authenticated += 1;
                        if fixed && rec.kind != FileKind::Dir {
                            let msg =
                                format!("inode {ino}: the root and level directories must be directories");
                            self.problem(ProblemKind::InodeDamaged, &k, (Some(ino), None), msg);
                        }
                        info.node = Some(Node { ino, sealed_level: level_byte, rec });
                    }
                    Err(e) => {
                        let msg = format!("{e} (level {})", level_name(level_byte));
                        self.problem(ProblemKind::InodeDamaged, &k, (Some(ino), None), msg);
                    }
                },
            }
            self.inodes.insert(ino, info);
        }
        for ino in std::iter::once(ROOT_INO).chain((0..LEVEL_COUNT).map(level_dir)) {
            if !self.inodes.contains_key(&ino) {
                let what =
                    level_of_dir(ino).map_or("the root".to_string(), |l| format!("level {l}'s directory"));
                let msg = format!("inode {ino} ({what}) is missing; not recreated");
                self.problem(ProblemKind::MissingInode, &keys::inode(ino), (Some(ino), None), msg);
            }
        }
        Ok(())
    }

    fn entries(&mut self) -> Result<()> {
        // Directory tags of every stored inode number under each open level's
        // names key: an entry's tag that matches none belongs to a directory
        // that does not exist.
        let mut tags: [HashMap<[u8; 16], u64>; 6] = Default::default();
        for level in 0..LEVEL_COUNT {
            if let Some(mk) = self.open_level(level) {
                tags[level as usize] = self.inodes.keys().map(|&ino| (mk.dir_tag(ino), ino)).collect();
            }
        }
        let vault_id = self.header.vault_id;
        for entry in self.store.scan_prefix(&[keys::DIRENT]) {
            let (k, v) = entry?;
            self.tick();
            self.report.counts.entries.stored += 1;
            if k.len() != 34 || k[1] >= LEVEL_COUNT {
                if let Some(&l) = k.get(1).filter(|l| **l < LEVEL_COUNT) {
                    self.uncertain[l as usize] = true;
                }
                let msg = "directory entry key of the wrong length or level".into();
                self.problem(ProblemKind::Malformed, &k, (None, None), msg);
                continue;
            }
            let level = k[1];
            let Some(mk) = self.open_level(level) else {
                self.skipped(|r| &mut r.counts.entries, Some(level));
                continue;
            };
            let damaged = |this: &mut Self, why: String| {
                this.uncertain[level as usize] = true;
                this.problem(
                    ProblemKind::EntryDamaged,
                    &k,
                    (None, None),
                    format!("directory entry at level {level}: {why}"),
                );
            };
            let d = match mk.open_dirent(&vault_id, &k, &v) {
                Ok(d) => d,
                Err(e) => {
                    damaged(self, e.to_string());
                    continue;
                }
            };
            let tag: [u8; 16] = k[2..18].try_into().expect("34-byte key");
            let parent = tags[level as usize].get(&tag).copied();
            if check_name(&d.name).is_err() {
                damaged(self, "its name is not a valid file name".into());
                continue;
            }
            if let Some(p) = parent
                && k[..] != mk.dirent_key(p, &d.name)[..]
            {
                damaged(self, format!("its name does not hash to its key (directory {p})"));
                continue;
            }
            self.report.counts.entries.authenticated += 1;
            let at = (Some(d.ino), None);
            if !self.inodes.contains_key(&d.ino) {
                let dir = parent
                    .map_or("a directory that does not exist".to_string(), |p| format!("directory {p}"));
                let msg = format!("entry in {dir} names inode {}, which does not exist", d.ino);
                self.push(ProblemKind::DanglingEntry, &k, at, msg, Some(Fix::Delete(vec![k.clone()])));
                continue;
            }
            let mismatch = self.tally_entry(&k, level, parent, &d);
            if !mismatch.is_empty() {
                let msg = format!("entry naming inode {}: {}", d.ino, mismatch.join("; "));
                self.problem(ProblemKind::EntryMismatch, &k, at, msg);
            }
        }
        Ok(())
    }

    /// Counts entry `k` (of inode `d.ino`, at `level`, in directory
    /// `parent` if it exists) for its directory and its inode, and says what
    /// about it disagrees with either.
    fn tally_entry(&mut self, k: &[u8], level: u8, parent: Option<u64>, d: &DirentRecord) -> Vec<String> {
        let at = (Some(d.ino), None);
        let mut mismatch = Vec::new();
        match parent {
            None => {
                let msg = format!(
                    "entry names inode {} but its directory does not exist; kept (it is the inode's name)",
                    d.ino
                );
                self.problem(ProblemKind::EntryWithoutDirectory, k, at, msg);
            }
            Some(p) => {
                let dir = self.inodes.get_mut(&p).expect("tags come from stored inodes");
                dir.children += 1;
                if d.kind == FileKind::Dir {
                    dir.subdirs += 1;
                }
                if p == ROOT_INO {
                    mismatch.push("the root holds no stored entries".to_string());
                } else if let Some(n) = &dir.node {
                    if !n.is_dir() {
                        mismatch.push(format!("it lies in inode {p}, which is not a directory"));
                    } else if n.level() != Some(level) {
                        mismatch.push(format!("it is a level-{level} entry in a directory of another level"));
                    }
                }
            }
        }
        if d.ino < FIRST_USER_INO {
            mismatch.push(format!("it names the fixed inode {}", d.ino));
        }
        let target = self.inodes.get_mut(&d.ino).expect("checked above");
        target.refs += 1;
        if let Some(n) = &target.node {
            if n.rec.kind != d.kind {
                mismatch.push(format!("it says {:?}, inode {} is {:?}", d.kind, d.ino, n.rec.kind));
            }
            if n.sealed_level != level {
                mismatch.push(format!("inode {} is not at level {level}", d.ino));
            }
            if n.is_dir()
                && let Some(p) = parent
                && n.rec.parent != p
            {
                mismatch.push(format!("directory {} says its parent is {}, not {p}", d.ino, n.rec.parent));
            }
        }
        mismatch
    }

    fn blocks(&mut self) -> Result<()> {
        let bs = self.header.block_size as u64;
        let vault_id = self.header.vault_id;
        // Keys and block counts of entries whose inode does not exist.
        let mut missing: BTreeMap<u64, (Vec<Vec<u8>>, u64)> = BTreeMap::new();
        // Blocks come grouped by inode: keep the current file's key at hand.
        let mut current: Option<(u64, Key32)> = None;
        for entry in self.store.scan_prefix(&[keys::BLOCK]) {
            let (k, v) = entry?;
            self.tick();
            let (Some(ino), Some(n)) = (keys::ino_of(&k), keys::block_number(&k)) else {
                self.report.counts.blocks.stored += 1;
                self.problem(
                    ProblemKind::Malformed,
                    &k,
                    (None, None),
                    "block key of the wrong length".into(),
                );
                continue;
            };
            // An entry covers the blocks first..=n (a run, or one block).
            let (first, _) = entry_span(bs as u32, n, &v);
            let count = n - first + 1;
            self.report.counts.blocks.stored += count;
            if let Ok(e) = IndexEntry::decode(&v) {
                self.max_version = self.max_version.max(e.version.saturating_add(e.count - 1));
            }
            let at = (Some(ino), Some(first));
            let Some(info) = self.inodes.get_mut(&ino) else {
                let m = missing.entry(ino).or_default();
                m.0.push(k);
                m.1 += count;
                continue;
            };
            let Some(node) = &info.node else {
                let level = info.level();
                for _ in 0..count {
                    self.skipped(|r| &mut r.counts.blocks, level);
                }
                continue;
            };
            let blocks = if count == 1 { format!("block {n}") } else { format!("blocks {first}..={n}") };
            if node.rec.kind != FileKind::File {
                let msg = format!(
                    "{blocks} of inode {ino}, which is a {:?}: only files have blocks",
                    node.rec.kind
                );
                self.push(ProblemKind::OrphanBlock, &k, at, msg, Some(Fix::Delete(vec![k.clone()])));
                continue;
            }
            let (size, generation) = (node.rec.size, node.rec.generation);
            if first >= size.div_ceil(bs) {
                let msg = format!("{blocks} of inode {ino} lie beyond its end of file ({size} bytes)");
                self.push(ProblemKind::OrphanBlock, &k, at, msg, Some(Fix::Delete(vec![k.clone()])));
                continue;
            }
            if current.as_ref().is_none_or(|(i, _)| *i != ino) {
                current = Some((ino, Key32::from_bytes(node.rec.file_key.0)));
            }
            info.blocks += count;
            let (_, key) = current.as_ref().expect("set above");
            let file = FileBlocks::new(self.store, key, &vault_id, (ino, generation), bs as u32, None);
            match file.read_entry(n, &v) {
                Ok(_) if n >= size.div_ceil(bs) => {
                    let msg = format!("{blocks} of inode {ino} reach past its end of file ({size} bytes)");
                    self.problem(ProblemKind::BlockDamaged, &k, at, msg)
                }
                Ok(_) => self.report.counts.blocks.authenticated += count,
                Err(e) => self.problem(ProblemKind::BlockDamaged, &k, at, e.to_string()),
            }
        }
        for (ino, (keys, blocks)) in missing {
            let msg = format!("{blocks} block(s) of inode {ino}, which does not exist");
            self.push(
                ProblemKind::OrphanBlock,
                &keys::block_prefix(ino),
                (Some(ino), None),
                msg,
                Some(Fix::Delete(keys)),
            );
        }
        Ok(())
    }

    fn xattrs(&mut self) -> Result<()> {
        let vault_id = self.header.vault_id;
        for entry in self.store.scan_prefix(&[keys::XATTR]) {
            let (k, v) = entry?;
            self.tick();
            self.report.counts.xattrs.stored += 1;
            let Some(ino) = keys::ino_of(&k).filter(|_| k.len() == 25) else {
                self.problem(
                    ProblemKind::Malformed,
                    &k,
                    (None, None),
                    "xattr key of the wrong length".into(),
                );
                continue;
            };
            let at = (Some(ino), None);
            let Some(info) = self.inodes.get(&ino) else {
                let msg = format!("extended attribute of inode {ino}, which does not exist");
                self.push(ProblemKind::OrphanXattr, &k, at, msg, Some(Fix::Delete(vec![k.clone()])));
                continue;
            };
            let Some(sealed_level) = info.node.as_ref().map(|n| n.sealed_level) else {
                let level = info.level();
                self.skipped(|r| &mut r.counts.xattrs, level);
                continue;
            };
            let mk = self.open_level(sealed_level).expect("its inode authenticated under these keys");
            match mk.open_xattr(&vault_id, &k, &v) {
                Ok(x) if k[..] == keys::xattr(ino, &mk.xattr_tag(ino, &x.name))[..] => {
                    self.report.counts.xattrs.authenticated += 1
                }
                Ok(_) => {
                    let msg = format!("extended attribute of inode {ino}: its name does not hash to its key");
                    self.problem(ProblemKind::XattrDamaged, &k, at, msg);
                }
                Err(e) => self.problem(ProblemKind::XattrDamaged, &k, at, format!("{e} (inode {ino})")),
            }
        }
        Ok(())
    }

    fn markers(&mut self) -> Result<()> {
        for entry in self.store.scan_prefix(&[keys::ORPHAN]) {
            let (k, _) = entry?;
            self.tick();
            self.report.counts.orphan_markers += 1;
            let Some(ino) = keys::ino_of(&k).filter(|_| k.len() == 9) else {
                self.problem(
                    ProblemKind::Malformed,
                    &k,
                    (None, None),
                    "orphan marker key of the wrong length".into(),
                );
                continue;
            };
            match self.inodes.get_mut(&ino) {
                Some(info) => info.marker = true,
                None => {
                    let msg = format!("orphan marker for inode {ino}, which does not exist");
                    self.push(
                        ProblemKind::OrphanMarker,
                        &k,
                        (Some(ino), None),
                        msg,
                        Some(Fix::Delete(vec![k.clone()])),
                    );
                }
            }
        }
        Ok(())
    }

    fn tombstones(&mut self) -> Result<()> {
        let vault_id = self.header.vault_id;
        for entry in self.store.scan_prefix(&[keys::TOMBSTONE]) {
            let (k, v) = entry?;
            self.tick();
            self.report.counts.tombstones.stored += 1;
            if k.len() != 9 {
                self.problem(
                    ProblemKind::Malformed,
                    &k,
                    (None, None),
                    "tombstone key of the wrong length".into(),
                );
                continue;
            }
            match self.ring.vault_meta.open_tombstone(&vault_id, &k, &v) {
                Ok(_) => self.report.counts.tombstones.authenticated += 1,
                Err(e) => self.problem(ProblemKind::TombstoneDamaged, &k, (None, None), e.to_string()),
            }
        }
        Ok(())
    }

    /// The inode counter and the lockdown marker (the header is checked by its MAC).
    fn single_keys(&mut self) -> Result<()> {
        let highest = self.inodes.keys().next_back().copied().unwrap_or(0);
        let want = (highest + 1).max(FIRST_USER_INO);
        let counter = self.store.get(keys::INODE_COUNTER)?;
        let why = match counter.as_deref().map(<[u8; 8]>::try_from) {
            None => Some("the inode counter is missing (the vault cannot be unlocked)".to_string()),
            Some(Err(_)) => {
                Some("the inode counter has a bad length (the vault cannot be unlocked)".to_string())
            }
            Some(Ok(c)) if u64::from_be_bytes(c) < want => {
                Some(format!("the inode counter {} is below stored inode {highest}", u64::from_be_bytes(c)))
            }
            Some(Ok(_)) => None,
        };
        self.counter_problem(keys::INODE_COUNTER, why, want);
        if let Some(v) = self.store.get(keys::LOCKDOWN)?
            && v.len() != 8
        {
            let msg = format!("the lockdown marker holds {} bytes, not 8 (lockdown stays on)", v.len());
            self.problem(ProblemKind::Malformed, keys::LOCKDOWN, (None, None), msg);
        }
        if let Some(v) = self.store.get(keys::VAULT_POLICY)? {
            let why = match self.ring.vault_meta.open_vault_policy(&self.header.vault_id, &v) {
                Err(e) => Some((ProblemKind::Malformed, format!("{e}: every mount refuses to start"))),
                Ok(text) => crate::policy::Policy::parse_vault_wide(&text)
                    .err()
                    .map(|e| (ProblemKind::Malformed, format!("the vault's policy does not parse: {e}"))),
            };
            if let Some((kind, msg)) = why {
                self.problem(kind, keys::VAULT_POLICY, (None, None), msg);
            }
        }
        // The version counter: a value no write can pass is one the mount
        // cannot start from; repair sets it past every stored version (and
        // past the clock, where the mount would start anyway).
        let want = (self.max_version + 1).max(now_ns());
        let why = match self.store.get(keys::VERSION_COUNTER)?.as_deref().map(<[u8; 8]>::try_from) {
            None => None,
            Some(Err(_)) => {
                Some("the block version counter has a bad length (the vault cannot be mounted)".into())
            }
            Some(Ok(c)) if u64::from_be_bytes(c) <= self.max_version => Some(format!(
                "the block version counter {} is not above stored version {}",
                u64::from_be_bytes(c),
                self.max_version
            )),
            Some(Ok(_)) => None,
        };
        self.counter_problem(keys::VERSION_COUNTER, why, want);
        Ok(())
    }

    /// A counter at `key` that is wrong for reason `why` (if any): repair
    /// stores `want`.
    fn counter_problem(&mut self, key: &'static [u8], why: Option<String>, want: u64) {
        if let Some(why) = why {
            let msg = format!("{why}; repair sets it to {want}");
            self.push(
                ProblemKind::Counter,
                key,
                (None, None),
                msg,
                Some(Fix::SetCounter { key, value: want }),
            );
        }
    }

    /// Segment files: each header names its own file; live and garbage
    /// bytes (the records themselves were authenticated with their blocks).
    fn segments(&mut self) -> Result<()> {
        let live = crate::block::gc::live_bytes(self.store, self.header.block_size)?;
        let (segments, _) = self.store.segments()?;
        let c = &mut self.report.counts.segments;
        for &(id, len) in &segments {
            c.files += 1;
            c.bytes += len;
            let used = len.saturating_sub(crate::store::SEGMENT_HEADER_LEN);
            c.live_bytes += live.get(&id).copied().unwrap_or(0);
            c.garbage_bytes += used.saturating_sub(live.get(&id).copied().unwrap_or(0));
        }
        for (id, len) in segments {
            let name = crate::store::segment_name(id);
            let why = match self.store.segment_header(id) {
                Ok(h) if &h[..8] != crate::store::SEGMENT_MAGIC => {
                    Some("does not start with VAULTSEG".to_string())
                }
                Ok(h) if h[8..] != id.to_be_bytes() => Some(format!(
                    "is headed as segment {:016x}: moved or swapped",
                    u64::from_be_bytes(h[8..].try_into().expect("8 bytes"))
                )),
                Ok(_) => None,
                Err(e) => Some(format!("({len} bytes) cannot be read: {e}")),
            };
            if let Some(why) = why {
                let msg = format!("segment file seg/{name} {why}");
                self.problem(ProblemKind::Segment, name.as_bytes(), (None, None), msg);
            }
        }
        Ok(())
    }

    /// Link counts, orphan and unreachable inodes, stale markers, block counts.
    fn links(&mut self) {
        let mut found = Vec::new();
        let mut pending = 0;
        for (&ino, info) in &self.inodes {
            let Some(node) = &info.node else { continue };
            let key = keys::inode(ino);
            let at = (Some(ino), None);
            let nlink = node.rec.nlink;
            let rewrite = |nlink| Some(Fix::Rewrite { ino, nlink: Some(nlink), blocks: None });
            // The level whose entries name it (and, for directories, lie in it).
            let level = if ino == ROOT_INO { None } else { node.level() };
            let readable = level.is_none_or(|l| self.open_level(l).is_some());
            let certain = level.is_none_or(|l| !self.uncertain[l as usize]);
            let unsure = "not repaired: a damaged entry of its level may name it";
            // Deleted by a repair or by the next unlock: its counts do not matter.
            let mut going = false;
            if ino == ROOT_INO {
                let want = 2 + LEVEL_COUNT as u32;
                if nlink != want {
                    found.push((
                        ProblemKind::LinkCount,
                        key,
                        at,
                        format!("the root's link count is {nlink}, not {want}"),
                        rewrite(want),
                    ));
                }
            } else if level_of_dir(ino).is_some() {
                let want = 2 + info.subdirs;
                if readable && nlink != want {
                    let msg = format!(
                        "level directory {ino} has link count {nlink}, but 2 + {} subdirectories",
                        info.subdirs
                    );
                    let fix = if certain { rewrite(want) } else { None };
                    found.push((ProblemKind::LinkCount, key, at, with_note(msg, fix.is_none(), unsure), fix));
                }
            } else if readable {
                match (info.refs, nlink) {
                    (0, 0) if info.children > 0 => {
                        let msg = format!(
                            "directory {ino} has no name and no links but holds {} entries; kept",
                            info.children
                        );
                        found.push((ProblemKind::UnreachableInode, key, at, msg, None));
                    }
                    (0, 0) if info.marker => {
                        pending += 1;
                        going = true;
                    }
                    (0, 0) => {
                        going = certain;
                        let msg = format!(
                            "inode {ino} has no links, no entry names it, and no orphan marker (never deleted)"
                        );
                        let fix = certain.then_some(Fix::DeleteInode(ino));
                        found.push((
                            ProblemKind::OrphanInode,
                            key,
                            at,
                            with_note(msg, fix.is_none(), unsure),
                            fix,
                        ));
                    }
                    (0, n) => {
                        let msg = format!("inode {ino} has link count {n} but no entry names it; kept");
                        found.push((ProblemKind::UnreachableInode, key, at, msg, None));
                    }
                    (r, n) if node.is_dir() && r > 1 => {
                        let msg = format!("directory {ino} has {r} names (link count {n})");
                        found.push((ProblemKind::EntryMismatch, key, at, msg, None));
                    }
                    (r, n) => {
                        let want = if node.is_dir() { 2 + info.subdirs } else { r };
                        if n != want {
                            let msg = if node.is_dir() {
                                format!(
                                    "directory {ino} has link count {n}, but 2 + {} subdirectories",
                                    info.subdirs
                                )
                            } else {
                                format!("inode {ino} has link count {n}, but {r} entries name it")
                            };
                            let fix = if certain { rewrite(want) } else { None };
                            found.push((
                                ProblemKind::LinkCount,
                                key,
                                at,
                                with_note(msg, fix.is_none(), unsure),
                                fix,
                            ));
                        }
                    }
                }
            }
            if info.marker && readable && (nlink > 0 || info.refs > 0) {
                let msg = format!("orphan marker on inode {ino}, which still has links or names");
                found.push((
                    ProblemKind::OrphanMarker,
                    keys::orphan(ino),
                    at,
                    msg,
                    Some(Fix::Delete(vec![keys::orphan(ino).to_vec()])),
                ));
            }
            let want_blocks = if node.rec.kind == FileKind::File { info.blocks } else { 0 };
            if node.rec.blocks != want_blocks && !going {
                let msg =
                    format!("inode {ino} counts {} stored blocks, {want_blocks} are stored", node.rec.blocks);
                let fix = Some(Fix::Rewrite { ino, nlink: None, blocks: Some(want_blocks) });
                found.push((ProblemKind::BlockCount, key, at, msg, fix));
            }
        }
        self.report.counts.pending_deletion = pending;
        for (kind, key, at, msg, fix) in found {
            self.push(kind, &key, at, msg, fix);
        }
    }

    /// The audit logs of read-only mounts on other hosts (a cluster vault).
    fn host_audits(&mut self) {
        let hosts = match crate::vault::audit::verify_host_logs(self.store, self.ring, self.header.vault_id) {
            Ok(hosts) => hosts,
            Err(e) => {
                let msg = format!("the audit logs of other hosts cannot be listed: {e}");
                return self.problem(ProblemKind::Audit, b"hosts/", (None, None), msg);
            }
        };
        for (host, verdict) in hosts {
            let Some(verdict) = verdict else {
                self.report.host_audits.push(HostAuditReport {
                    host,
                    mounted: true,
                    audit: AuditReport::default(),
                });
                continue;
            };
            let audit = match verdict {
                Ok(r) => AuditReport {
                    verified: true,
                    leaves: r.leaves,
                    checkpoints: r.checkpoints as u64,
                    root: Some(hex(&r.root)),
                    archived: 0,
                },
                Err(e) => {
                    let msg = format!("the audit log of host {host} does not verify: {e}");
                    self.problem(ProblemKind::Audit, format!("hosts/{host}/").as_bytes(), (None, None), msg);
                    AuditReport::default()
                }
            };
            self.report.host_audits.push(HostAuditReport { host, mounted: false, audit });
        }
    }

    fn audit(&mut self) {
        self.host_audits();
        let ring = self.ring;
        let leaf_key = Key32::from_bytes(*ring.audit_leaf.as_bytes());
        let signer = SigningKey::from_seed(Key32::from_bytes(*ring.audit.seed().as_bytes()));
        let verdict = Log::open(self.store, self.header.vault_id, leaf_key, signer)
            .and_then(|log| Ok((log.verify_store(self.store)?, log.base_size())));
        self.done += self.report.counts.audit_keys;
        match verdict {
            Ok((r, archived)) => {
                self.report.audit = AuditReport {
                    verified: true,
                    leaves: r.leaves,
                    checkpoints: r.checkpoints as u64,
                    root: Some(hex(&r.root)),
                    archived,
                }
            }
            Err(e) => {
                let chunked = self.store.scan_prefix(&[keys::AUDIT_LEAVES]).filter_map(|r| r.ok());
                let leaves = self.store.scan_prefix(&[keys::AUDIT_LEAF]).count() as u64
                    + chunked
                        .filter_map(|(k, _)| keys::audit_leaves_range(&k))
                        .map(|(_, n)| u64::from(n))
                        .sum::<u64>();
                let archived = self
                    .store
                    .get(keys::AUDIT_BASE)
                    .ok()
                    .flatten()
                    .and_then(|v| crate::audit::log::base_frontier(&v).ok())
                    .map_or(0, |f| f.size);
                self.report.audit = AuditReport {
                    verified: false,
                    leaves: leaves + archived,
                    checkpoints: 0,
                    root: None,
                    archived,
                };
                let msg = format!("the audit log does not verify: {e}");
                // Keyed by the chunk prefix, where the log is written (older single
                // leaves come first in the same check).
                self.problem(ProblemKind::Audit, &[keys::AUDIT_LEAVES], (None, None), msg);
            }
        }
    }
}

impl Ino {
    fn new(level_byte: u8) -> Self {
        Ino { level_byte, node: None, refs: 0, children: 0, subdirs: 0, blocks: 0, marker: false }
    }
}

fn level_name(level_byte: u8) -> String {
    if level_byte == VAULT_LEVEL { "vault".into() } else { level_byte.to_string() }
}

fn with_note(msg: String, add: bool, note: &str) -> String {
    if add { format!("{msg}; {note}") } else { msg }
}

/// Nanoseconds since 1970 (the clock the block version counter starts from).
fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
