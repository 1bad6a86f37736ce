//! Model-based test: random sequences of filesystem operations run against a
//! real `Vault<Unlocked>` (on sled, in a temp dir) and against a plain
//! in-memory model; after every operation the whole observable state must agree
//! (file contents, sizes, st_blocks, nlink, directory listings, lookups, and
//! NotFound for every inode that was removed and evicted).
//!
//! A name removed by unlink, rmdir or a replacing rename is usually evicted
//! at once (what the FUSE layer does when the kernel forgets the inode);
//! sometimes the inode stays open as an orphan (nlink 0, still readable and
//! writable by number) until a later `Forget` op or a Reopen, which purges it.
//!
//! Levels 0, 1 and 3 are used. Level 0 content vanishes on Reopen, and
//! renames/links across levels must fail with `CrossLevel`.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use vaultfs::crypto::{KdfParams, Passphrase};
use vaultfs::vault::{
    Attr, FileKind, InitOptions, NewNode, ROOT_INO, RenameFlags, SetAttr, level_dir, level_of_dir,
};
use vaultfs::{ErrorKind, Unlocked, Vault};

const BS: u64 = 4096;
const FAST_KDF: KdfParams = KdfParams { memory_kib: 8192, passes: 1, lanes: 1 };
const LEVELS: [u8; 3] = [0, 1, 3];
const PASS: &str = "model-passphrase";

fn pass() -> Passphrase {
    Passphrase::new(PASS.as_bytes().to_vec())
}

/// A small name space so that operations collide often; one name is the
/// longest allowed (255 bytes).
fn name(i: u8) -> Vec<u8> {
    match i % 5 {
        0 => b"a".to_vec(),
        1 => b"b".to_vec(),
        2 => b"c".to_vec(),
        3 => b"d".to_vec(),
        _ => vec![b'L'; 255],
    }
}

fn show(n: &[u8]) -> String {
    if n.len() > 8 { format!("L*{}", n.len()) } else { String::from_utf8_lossy(n).into_owned() }
}

/// Deterministic, never-zero content so holes are distinguishable from data.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed | 1).collect()
}

/// Which name an operation acts on: mostly an existing entry (so renames and
/// removals mostly succeed), sometimes any name in any directory.
#[derive(Clone, Copy, Debug)]
enum Ent {
    /// Index into the existing entries (of the required level, if any).
    Existing(usize),
    /// Index into the directories (of the required level), and a name.
    Any { dir: usize, name: u8 },
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: u8,
    },
    Mkdir {
        dir: usize,
        name: u8,
    },
    Write {
        file: usize,
        off: u64,
        len: usize,
        seed: u8,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    /// The target is in the same level as the source.
    /// mode: 0 plain, 1 RENAME_NOREPLACE, 2 RENAME_EXCHANGE.
    /// `evict`: evict a replaced inode at once (else it stays an orphan).
    Rename {
        from: Ent,
        to: Ent,
        mode: u8,
        evict: bool,
    },
    /// The target directory is in another level: always CrossLevel.
    CrossRename {
        from: Ent,
        dir2: usize,
        name2: u8,
        mode: u8,
    },
    /// `dir` indexes all directories (CrossLevel when the level differs).
    Link {
        file: usize,
        dir: usize,
        name: u8,
    },
    /// The bool: evict at once (else the inode stays an orphan).
    Unlink(Ent, bool),
    Rmdir(Ent, bool),
    /// The kernel forgets an orphan: evict it.
    Forget(usize),
    Read {
        file: usize,
        off: u64,
        len: usize,
    },
    Reopen,
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..200 * 1024,
        1 => (0u64..50).prop_map(|b| b * BS),
        1 => (1u64..50).prop_map(|b| b * BS - 1),
        1 => 0u64..64,
    ]
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..20 * 1024,
        1 => Just(BS as usize),
        1 => (1usize..5).prop_map(|n| n * BS as usize),
        1 => 1usize..16,
    ]
}

fn ent() -> impl Strategy<Value = Ent> {
    prop_oneof![
        3 => (0usize..1000).prop_map(Ent::Existing),
        1 => (0usize..1000, 0u8..5).prop_map(|(dir, name)| Ent::Any { dir, name }),
    ]
}

fn evict_now() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.75)
}

fn op() -> impl Strategy<Value = Op> {
    let idx = || 0usize..1000;
    let nm = || 0u8..5;
    prop_oneof![
        4 => (idx(), nm()).prop_map(|(dir, name)| Op::Create { dir, name }),
        3 => (idx(), nm()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        5 => (idx(), offset(), length(), any::<u8>()).prop_map(|(file, off, len, seed)| Op::Write { file, off, len, seed }),
        2 => (idx(), prop_oneof![0u64..220 * 1024, (0u64..55).prop_map(|b| b * BS), (1u64..55).prop_map(|b| b * BS + 1)])
            .prop_map(|(file, size)| Op::Truncate { file, size }),
        5 => (ent(), ent(), 0u8..3, evict_now()).prop_map(|(from, to, mode, evict)| Op::Rename { from, to, mode, evict }),
        1 => (ent(), idx(), nm(), 0u8..3).prop_map(|(from, dir2, name2, mode)| Op::CrossRename { from, dir2, name2, mode }),
        2 => (idx(), idx(), nm()).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        3 => (ent(), evict_now()).prop_map(|(e, now)| Op::Unlink(e, now)),
        2 => (ent(), evict_now()).prop_map(|(e, now)| Op::Rmdir(e, now)),
        1 => idx().prop_map(Op::Forget),
        2 => (idx(), 0u64..220 * 1024, 0usize..30 * 1024).prop_map(|(file, off, len)| Op::Read { file, off, len }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug)]
enum MNode {
    File { data: Vec<u8>, nlink: u32, blocks: BTreeSet<u64>, level: u8 },
    Dir { entries: BTreeMap<Vec<u8>, u64>, parent: u64, level: u8 },
}

#[derive(Debug)]
struct Model {
    nodes: BTreeMap<u64, MNode>,
    /// Inodes removed and evicted (or purged): getattr must say NotFound.
    dead: BTreeSet<u64>,
    /// Inodes with no name left, not yet evicted (still in `nodes`).
    orphans: BTreeSet<u64>,
}

type Expect<T> = Result<T, ErrorKind>;

impl Model {
    fn new() -> Self {
        let nodes = LEVELS
            .iter()
            .map(|&l| (level_dir(l), MNode::Dir { entries: BTreeMap::new(), parent: ROOT_INO, level: l }))
            .collect();
        Model { nodes, dead: BTreeSet::new(), orphans: BTreeSet::new() }
    }

    /// Directories that still have a name (orphaned ones take no entries).
    fn dirs(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(i, n)| matches!(n, MNode::Dir { .. }) && !self.orphans.contains(i))
            .map(|(&i, _)| i)
            .collect()
    }

    fn files(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, n)| matches!(n, MNode::File { .. })).map(|(&i, _)| i).collect()
    }

    /// The (directory, name) an `Ent` designates, within `level` if given.
    fn resolve(&self, e: Ent, level: Option<u8>) -> (u64, Vec<u8>) {
        let dirs: Vec<u64> =
            self.dirs().into_iter().filter(|&d| level.is_none_or(|l| self.level(d) == l)).collect();
        let existing: Vec<(u64, Vec<u8>)> =
            dirs.iter().flat_map(|&d| self.entries(d).keys().map(move |n| (d, n.clone()))).collect();
        match e {
            Ent::Existing(i) if !existing.is_empty() => existing[i % existing.len()].clone(),
            Ent::Existing(i) => (dirs[i % dirs.len()], name(i as u8)),
            Ent::Any { dir, name: n } => (dirs[dir % dirs.len()], name(n)),
        }
    }

    fn level(&self, ino: u64) -> u8 {
        match &self.nodes[&ino] {
            MNode::File { level, .. } | MNode::Dir { level, .. } => *level,
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.nodes[&ino], MNode::Dir { .. })
    }

    fn entries(&self, dir: u64) -> &BTreeMap<Vec<u8>, u64> {
        match &self.nodes[&dir] {
            MNode::Dir { entries, .. } => entries,
            MNode::File { .. } => panic!("model: {dir} is not a directory"),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> &mut BTreeMap<Vec<u8>, u64> {
        match self.nodes.get_mut(&dir).expect("model: no such dir") {
            MNode::Dir { entries, .. } => entries,
            MNode::File { .. } => panic!("model: {dir} is not a directory"),
        }
    }

    fn set_parent(&mut self, dir: u64, to: u64) {
        if let Some(MNode::Dir { parent, .. }) = self.nodes.get_mut(&dir) {
            *parent = to;
        }
    }

    fn dir_nlink(&self, dir: u64) -> u32 {
        if self.orphans.contains(&dir) {
            return 0;
        }
        2 + self.entries(dir).values().filter(|&&c| self.is_dir(c)).count() as u32
    }

    /// Whether `ino` is `anc` or below it.
    fn within(&self, ino: u64, anc: u64) -> bool {
        let mut cur = ino;
        loop {
            if cur == anc {
                return true;
            }
            if level_of_dir(cur).is_some() {
                return false;
            }
            match &self.nodes[&cur] {
                MNode::Dir { parent, .. } => cur = *parent,
                MNode::File { .. } => return false,
            }
        }
    }

    fn bury(&mut self, ino: u64) {
        self.nodes.remove(&ino);
        self.orphans.remove(&ino);
        self.dead.insert(ino);
    }

    /// What `evict(ino)` does: deletes an orphan, ignores a linked inode.
    fn evict(&mut self, ino: u64) {
        if self.orphans.contains(&ino) {
            self.bury(ino);
        }
    }

    /// Drops one link of `ino` (a replaced or unlinked name).
    fn drop_link(&mut self, ino: u64) {
        let gone = match self.nodes.get_mut(&ino).expect("model: drop_link of a missing inode") {
            MNode::Dir { .. } => true,
            MNode::File { nlink, .. } => {
                *nlink -= 1;
                *nlink == 0
            }
        };
        if gone {
            self.orphans.insert(ino);
        }
    }

    fn add_entry(&self, dir: u64, name: &[u8]) -> Expect<()> {
        if self.entries(dir).contains_key(name) { Err(ErrorKind::Exists) } else { Ok(()) }
    }

    fn insert(&mut self, dir: u64, name: &[u8], ino: u64, is_dir: bool) {
        let level = self.level(dir);
        let node = if is_dir {
            MNode::Dir { entries: BTreeMap::new(), parent: dir, level }
        } else {
            MNode::File { data: Vec::new(), nlink: 1, blocks: BTreeSet::new(), level }
        };
        self.nodes.insert(ino, node);
        self.entries_mut(dir).insert(name.to_vec(), ino);
    }

    fn write(&mut self, ino: u64, off: u64, bytes: &[u8]) {
        let Some(MNode::File { data, blocks, .. }) = self.nodes.get_mut(&ino) else {
            panic!("model: write to non-file")
        };
        let end = off as usize + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[off as usize..end].copy_from_slice(bytes);
        blocks.extend(off / BS..=(end as u64 - 1) / BS);
    }

    fn truncate(&mut self, ino: u64, size: u64) {
        let Some(MNode::File { data, blocks, .. }) = self.nodes.get_mut(&ino) else {
            panic!("model: truncate of non-file")
        };
        if (size as usize) < data.len() {
            let keep = size.div_ceil(BS);
            blocks.retain(|&b| b < keep);
        }
        data.resize(size as usize, 0);
    }

    fn link(&mut self, ino: u64, dir: u64, name: &[u8]) -> Expect<()> {
        if self.orphans.contains(&ino) {
            return Err(ErrorKind::NotFound);
        }
        if self.level(ino) != self.level(dir) {
            return Err(ErrorKind::CrossLevel);
        }
        self.add_entry(dir, name)?;
        self.entries_mut(dir).insert(name.to_vec(), ino);
        if let Some(MNode::File { nlink, .. }) = self.nodes.get_mut(&ino) {
            *nlink += 1;
        }
        Ok(())
    }

    /// Returns the inode whose name was removed.
    fn unlink(&mut self, dir: u64, name: &[u8]) -> Expect<u64> {
        let c = *self.entries(dir).get(name).ok_or(ErrorKind::NotFound)?;
        if self.is_dir(c) {
            return Err(ErrorKind::IsDir);
        }
        self.entries_mut(dir).remove(name);
        let shreds = vaultfs::vault::rules(Some(self.level(c))).shredded;
        self.drop_link(c);
        // Levels 3 and up: the last unlink destroys the inode (and its key) at once.
        if shreds && self.orphans.remove(&c) {
            self.nodes.remove(&c);
        }
        Ok(c)
    }

    fn rmdir(&mut self, dir: u64, name: &[u8]) -> Expect<u64> {
        let c = *self.entries(dir).get(name).ok_or(ErrorKind::NotFound)?;
        if !self.is_dir(c) {
            return Err(ErrorKind::NotDir);
        }
        if !self.entries(c).is_empty() {
            return Err(ErrorKind::NotEmpty);
        }
        self.entries_mut(dir).remove(name);
        self.drop_link(c);
        Ok(c)
    }

    /// rename(2)/renameat2 semantics, checks in the order the vault makes
    /// them. Returns the inode that lost a name (to evict), if any.
    fn rename(&mut self, p: u64, n: &[u8], np: u64, nn: &[u8], f: RenameFlags) -> Expect<Option<u64>> {
        if self.level(p) != self.level(np) {
            return Err(ErrorKind::CrossLevel);
        }
        let src = *self.entries(p).get(n).ok_or(ErrorKind::NotFound)?;
        let dst = self.entries(np).get(nn).copied();
        if f.exchange && dst.is_none() {
            return Err(ErrorKind::NotFound);
        }
        if f.no_replace && dst.is_some() {
            return Err(ErrorKind::Exists);
        }
        if dst == Some(src) {
            return Ok(None);
        }
        if self.is_dir(src) && self.within(np, src) {
            return Err(ErrorKind::InvalidArgument);
        }
        if f.exchange {
            let d = dst.expect("checked");
            if self.is_dir(d) && self.within(p, d) {
                return Err(ErrorKind::InvalidArgument);
            }
            self.entries_mut(p).insert(n.to_vec(), d);
            self.entries_mut(np).insert(nn.to_vec(), src);
            self.set_parent(src, np);
            self.set_parent(d, p);
            return Ok(None);
        }
        if let Some(d) = dst {
            match (self.is_dir(src), self.is_dir(d)) {
                (true, false) => return Err(ErrorKind::NotDir),
                (false, true) => return Err(ErrorKind::IsDir),
                (true, true) if !self.entries(d).is_empty() => return Err(ErrorKind::NotEmpty),
                _ => {}
            }
            self.drop_link(d);
        }
        self.entries_mut(p).remove(n);
        self.entries_mut(np).insert(nn.to_vec(), src);
        self.set_parent(src, np);
        Ok(dst)
    }

    /// What a restart does: level-0 content and orphans are gone.
    fn reopen(&mut self) {
        let doomed: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|&i| i != level_dir(0) && (self.level(i) == 0 || self.orphans.contains(&i)))
            .collect();
        for ino in doomed {
            self.bury(ino);
        }
        self.entries_mut(level_dir(0)).clear();
    }
}

fn pick(list: &[u64], i: usize) -> Option<u64> {
    (!list.is_empty()).then(|| list[i % list.len()])
}

fn kind_of<T>(r: vaultfs::vault::Result<T>) -> Expect<T> {
    r.map_err(|e| e.kind())
}

fn flags(mode: u8) -> RenameFlags {
    match mode % 3 {
        0 => RenameFlags::default(),
        1 => RenameFlags { no_replace: true, exchange: false },
        _ => RenameFlags { no_replace: false, exchange: true },
    }
}

fn file_spec() -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid: 1000, gid: 1000, rdev: 0 }
}

fn dir_spec() -> NewNode {
    NewNode { kind: FileKind::Dir, perm: 0o755, uid: 1000, gid: 1000, rdev: 0 }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Compares two byte strings without printing megabytes on a mismatch.
fn same_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<(), TestCaseError> {
    if got == want {
        return Ok(());
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    Err(fail(format!(
        "{what}: got {} bytes, want {}; first difference at {:?} (got {:?}, want {:?})",
        got.len(),
        want.len(),
        first,
        first.map(|i| got[i]),
        first.map(|i| want[i]),
    )))
}

fn readdir_all(v: &Vault<Unlocked>, ino: u64) -> Result<Vec<vaultfs::vault::DirEntry>, TestCaseError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = v.readdir(ino, after, 3).map_err(|e| fail(format!("readdir({ino}): {e}")))?;
        let Some(last) = page.last() else { break };
        if last.cookie <= after {
            return Err(fail(format!(
                "readdir({ino}): cookie {} does not advance past {after}",
                last.cookie
            )));
        }
        after = last.cookie;
        out.extend(page);
        if out.len() > 1000 {
            return Err(fail(format!("readdir({ino}) does not terminate")));
        }
    }
    Ok(out)
}

struct Harness {
    dir: tempfile::TempDir,
    vault: Option<Vault<Unlocked>>,
    model: Model,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
        let vault = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
        Harness { dir, vault: Some(vault), model: Model::new() }
    }

    fn v(&self) -> &Vault<Unlocked> {
        self.vault.as_ref().expect("vault is open")
    }

    /// Runs one operation on both sides; Err if they disagree.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let m = &mut self.model;
        let v = self.vault.as_ref().expect("vault is open");
        let dirs = m.dirs();
        let files = m.files();
        let agree = |what: String, got: Expect<()>, want: Expect<()>| -> Result<(), TestCaseError> {
            if got == want { Ok(()) } else { Err(fail(format!("{what}: vault {got:?}, model {want:?}"))) }
        };
        match *op {
            Op::Create { dir, name: ni } | Op::Mkdir { dir, name: ni } => {
                let is_dir = matches!(op, Op::Mkdir { .. });
                let d = pick(&dirs, dir).expect("level roots always exist");
                let n = name(ni);
                let want = m.add_entry(d, &n);
                let spec = if is_dir { dir_spec() } else { file_spec() };
                let got = kind_of(v.create(d, &n, spec));
                let what = format!("{}({d}, {})", if is_dir { "mkdir" } else { "create" }, show(&n));
                match (got, want) {
                    (Ok(a), Ok(())) => {
                        check_new(&what, &a, is_dir, m.level(d))?;
                        if m.nodes.contains_key(&a.ino) || m.dead.contains(&a.ino) {
                            return Err(fail(format!("{what}: inode number {} reused", a.ino)));
                        }
                        m.insert(d, &n, a.ino, is_dir);
                    }
                    (got, want) => agree(what, got.map(|_| ()), want)?,
                }
            }
            Op::Write { file, off, len, seed } => {
                let Some(f) = pick(&files, file) else { return Ok(()) };
                let data = pattern(seed, len);
                let got = kind_of(v.write(f, off, &data));
                if got != Ok(len) {
                    return Err(fail(format!("write({f}, {off}, {len}): {got:?}")));
                }
                m.write(f, off, &data);
            }
            Op::Truncate { file, size } => {
                let Some(f) = pick(&files, file) else { return Ok(()) };
                let a = kind_of(v.setattr(f, &SetAttr { size: Some(size), ..Default::default() }))
                    .map_err(|e| fail(format!("truncate({f}, {size}): {e:?}")))?;
                if a.size != size {
                    return Err(fail(format!("truncate({f}, {size}) returned size {}", a.size)));
                }
                m.truncate(f, size);
            }
            Op::Rename { from, to, mode, evict } => {
                let (p, n) = m.resolve(from, None);
                let (np, nn) = m.resolve(to, Some(m.level(p)));
                rename_both(m, v, p, &n, np, &nn, flags(mode), evict)?;
            }
            Op::CrossRename { from, dir2, name2, mode } => {
                let (p, n) = m.resolve(from, None);
                let other: Vec<u64> = dirs.iter().copied().filter(|&d| m.level(d) != m.level(p)).collect();
                let np = pick(&other, dir2).expect("other level roots exist");
                let nn = name(name2);
                let what = format!("cross-level rename({p}, {}, {np}, {})", show(&n), show(&nn));
                let got = kind_of(v.rename(p, &n, np, &nn, flags(mode)));
                // Both flags at once are refused before anything else; we never pass both.
                agree(what, got, Err(ErrorKind::CrossLevel))?;
                let _ = m.rename(p, &n, np, &nn, flags(mode)).expect_err("model: cross level");
            }
            Op::Link { file, dir, name: ni } => {
                let Some(f) = pick(&files, file) else { return Ok(()) };
                let d = pick(&dirs, dir).expect("roots exist");
                let n = name(ni);
                let want = m.link(f, d, &n);
                let got = kind_of(v.link(f, d, &n));
                let what = format!("link({f}, {d}, {})", show(&n));
                match (got, want) {
                    (Ok(a), Ok(())) => {
                        if a.ino != f {
                            return Err(fail(format!("{what}: returned inode {}", a.ino)));
                        }
                    }
                    (got, want) => agree(what, got.map(|_| ()), want)?,
                }
            }
            Op::Unlink(e, evict) | Op::Rmdir(e, evict) => {
                let is_rmdir = matches!(op, Op::Rmdir(..));
                let (d, n) = m.resolve(e, None);
                let want = if is_rmdir { m.rmdir(d, &n) } else { m.unlink(d, &n) };
                let got = kind_of(if is_rmdir { v.rmdir(d, &n) } else { v.unlink(d, &n) });
                let what = format!("{}({d}, {})", if is_rmdir { "rmdir" } else { "unlink" }, show(&n));
                agree(what.clone(), got, want.map(|_| ()))?;
                if let Ok(c) = want
                    && evict
                {
                    // The kernel forgets the inode: the FUSE layer evicts it
                    // (a no-op while other hard links remain).
                    v.evict(c).map_err(|e| fail(format!("{what}: evict({c}): {e}")))?;
                    m.evict(c);
                }
            }
            Op::Forget(i) => {
                let orphans: Vec<u64> = m.orphans.iter().copied().collect();
                let Some(o) = pick(&orphans, i) else { return Ok(()) };
                v.evict(o).map_err(|e| fail(format!("evict({o}): {e}")))?;
                m.evict(o);
            }
            Op::Read { file, off, len } => {
                let Some(f) = pick(&files, file) else { return Ok(()) };
                let got = kind_of(v.read(f, off, len))
                    .map_err(|e| fail(format!("read({f}, {off}, {len}): {e:?}")))?;
                let MNode::File { data, .. } = &m.nodes[&f] else { unreachable!() };
                let lo = (off as usize).min(data.len());
                let hi = (off as usize).saturating_add(len).min(data.len());
                same_bytes(&format!("read({f}, {off}, {len})"), &got, &data[lo..hi])?;
            }
            Op::Reopen => {
                drop(self.vault.take());
                let v = Vault::open(self.dir.path())
                    .and_then(|l| l.unlock(&pass()))
                    .map_err(|e| fail(format!("reopen: {e}")))?;
                self.vault = Some(v);
                self.model.reopen();
            }
        }
        Ok(())
    }

    /// Compares everything observable with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let v = self.v();
        let m = &self.model;
        for (&ino, node) in &m.nodes {
            let a = v.getattr(ino).map_err(|e| fail(format!("getattr({ino}): {e}")))?;
            match node {
                MNode::File { data, nlink, blocks, level } => {
                    let got = (a.kind, a.size, a.nlink, a.level, a.blocks);
                    let want = (
                        FileKind::File,
                        data.len() as u64,
                        *nlink,
                        Some(*level),
                        blocks.len() as u64 * (BS / 512),
                    );
                    if got != want {
                        return Err(fail(format!(
                            "getattr({ino}) (kind, size, nlink, level, blocks): {got:?}, want {want:?}"
                        )));
                    }
                    let content =
                        v.read(ino, 0, data.len() + 100).map_err(|e| fail(format!("read({ino}): {e}")))?;
                    same_bytes(&format!("content of {ino}"), &content, data)?;
                }
                MNode::Dir { entries, level, .. } => {
                    let got = (a.kind, a.nlink, a.level);
                    let want = (FileKind::Dir, m.dir_nlink(ino), Some(*level));
                    if got != want {
                        return Err(fail(format!(
                            "getattr({ino}) (kind, nlink, level): {got:?}, want {want:?}"
                        )));
                    }
                    let mut listed: Vec<(Vec<u8>, u64, FileKind)> =
                        readdir_all(v, ino)?.into_iter().map(|e| (e.name, e.ino, e.kind)).collect();
                    listed.sort_by(|a, b| a.0.cmp(&b.0));
                    let want: Vec<(Vec<u8>, u64, FileKind)> = entries
                        .iter()
                        .map(|(n, &c)| {
                            (n.clone(), c, if m.is_dir(c) { FileKind::Dir } else { FileKind::File })
                        })
                        .collect();
                    if listed != want {
                        let names = |l: &[(Vec<u8>, u64, FileKind)]| {
                            l.iter().map(|(n, i, k)| format!("{}:{i}:{k:?}", show(n))).collect::<Vec<_>>()
                        };
                        return Err(fail(format!(
                            "readdir({ino}): {:?}, want {:?}",
                            names(&listed),
                            names(&want)
                        )));
                    }
                    for (n, &c) in entries {
                        let a =
                            v.lookup(ino, n).map_err(|e| fail(format!("lookup({ino}, {}): {e}", show(n))))?;
                        if a.ino != c {
                            return Err(fail(format!("lookup({ino}, {}) = {}, want {c}", show(n), a.ino)));
                        }
                    }
                }
            }
        }
        for &ino in &m.dead {
            match v.getattr(ino) {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => {
                    return Err(fail(format!(
                        "removed inode {ino}: getattr gives {:?}",
                        other.map(|a| a.nlink)
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_new(what: &str, a: &Attr, is_dir: bool, level: u8) -> Result<(), TestCaseError> {
    let kind = if is_dir { FileKind::Dir } else { FileKind::File };
    let want = (kind, if is_dir { 2 } else { 1 }, Some(level), 0);
    let got = (a.kind, a.nlink, a.level, a.size);
    if got != want {
        return Err(fail(format!("{what}: (kind, nlink, level, size) {got:?}, want {want:?}")));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn rename_both(
    m: &mut Model,
    v: &Vault<Unlocked>,
    p: u64,
    n: &[u8],
    np: u64,
    nn: &[u8],
    f: RenameFlags,
    evict: bool,
) -> Result<(), TestCaseError> {
    let want = m.rename(p, n, np, nn, f);
    let got = kind_of(v.rename(p, n, np, nn, f));
    let what = format!("rename({p}, {}, {np}, {}, {f:?})", show(n), show(nn));
    if got != want.map(|_| ()) {
        return Err(fail(format!("{what}: vault {got:?}, model {want:?}")));
    }
    if let Ok(Some(d)) = want
        && evict
    {
        v.evict(d).map_err(|e| fail(format!("{what}: evict({d}): {e}")))?;
        m.evict(d);
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    h.check()?;
    for (i, op) in ops.iter().enumerate() {
        h.step(op).map_err(|e| fail(format!("op #{i} {op:?}: {e}")))?;
        h.check().map_err(|e| fail(format!("after op #{i} {op:?}: {e}")))?;
    }
    // Whatever happened, a restart must preserve it (minus level 0).
    h.step(&Op::Reopen)?;
    h.check().map_err(|e| fail(format!("after the final reopen: {e}")))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // No regression files: this suite must not write into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn vault_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}

/// A fixed sequence that exercises every operation at least once, so the
/// interesting paths run even if the random cases happen to miss them.
#[test]
fn scripted_sequence_matches_model() {
    use Op::*;
    let any = |dir, name| Ent::Any { dir, name };
    let ops = [
        Mkdir { dir: 1, name: 0 },  // 1-working/a
        Create { dir: 1, name: 1 }, // 1-working/b
        Write { file: 0, off: 10_000, len: 9_000, seed: 7 },
        Write { file: 0, off: 4096 * 30, len: 1, seed: 9 },
        Truncate { file: 0, size: 12_345 },
        Truncate { file: 0, size: 100_000 },
        Link { file: 0, dir: 1, name: 2 }, // 1-working/c -> b
        Link { file: 0, dir: 0, name: 2 }, // CrossLevel into level 0
        Create { dir: 2, name: 4 },        // 3-sealed/L*255
        Write { file: 1, off: 0, len: 5000, seed: 1 },
        Rename { from: any(1, 2), to: any(0, 3), mode: 0, evict: true }, // c -> d
        Rename { from: any(1, 1), to: any(0, 3), mode: 2, evict: true }, // b <-> d: same inode, no-op
        Rename { from: any(1, 0), to: any(1, 0), mode: 0, evict: true }, // a into itself
        Mkdir { dir: 1, name: 2 },                                       // 1-working/c
        Rename { from: any(1, 0), to: any(0, 2), mode: 2, evict: true }, // a <-> c (dirs)
        Rename { from: any(1, 1), to: any(0, 0), mode: 0, evict: true }, // file onto empty dir: IsDir
        CrossRename { from: any(1, 1), dir2: 0, name2: 1, mode: 0 },
        Create { dir: 0, name: 0 }, // 0-ephemeral/a
        Write { file: 2, off: 3, len: 3, seed: 3 },
        Unlink(any(1, 1), true),
        Rmdir(any(1, 0), false), // orphaned directory
        Forget(0),
        Read { file: 0, off: 4000, len: 9000 },
        Reopen,
        Unlink(any(1, 3), false), // orphan: still readable by number
        Write { file: 0, off: 1, len: 100, seed: 4 },
        Read { file: 0, off: 0, len: 200 },
        Link { file: 0, dir: 1, name: 0 }, // NotFound: no names left
        Rmdir(any(1, 0), true),
        Reopen,
    ];
    run(&ops).unwrap();
}
