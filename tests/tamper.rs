//! Tampering with a vault at rest, on the real sled store: every altered,
//! moved, swapped or truncated value must be refused with a clear error kind
//! (Corrupt, or WrongPassphrase/Unsupported for the header), never a panic and
//! never wrong plaintext. Also: hostile names and offsets are refused with
//! nothing written.
//!
//! The fixture vault is built once per test, then every variant works on its
//! own copy of the vault directory, edited through `vaultfs::store::Store`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use vaultfs::block::MAX_FILE_SIZE;
use vaultfs::crypto::{KdfParams, Passphrase};
use vaultfs::format::keys;
use vaultfs::format::segment::{IndexEntry, RUN_ENTRY_LEN};
use vaultfs::store::{Batch, Store, segment_name};
use vaultfs::vault::{
    FallocMode, FileKind, InitOptions, NewNode, ROOT_INO, RenameFlags, SetAttr, XattrFlags, level_dir,
};
use vaultfs::{ErrorKind, Unlocked, Vault};

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8192, passes: 1, lanes: 1 };
const BS: usize = 4096;
const PASS: &str = "tamper-passphrase";

fn pass() -> Passphrase {
    Passphrase::new(PASS.as_bytes().to_vec())
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 0x40).collect()
}

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;
/// A stored key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// One named file or directory of the fixture.
#[derive(Clone, Debug)]
struct Item {
    parent: u64,
    name: &'static str,
    ino: u64,
    /// File content (None for directories).
    data: Option<Vec<u8>>,
}

struct Fixture {
    dir: TempDir,
    items: Vec<Item>,
    kv: Kv,
}

impl Fixture {
    fn ino(&self, name: &str) -> u64 {
        self.items.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no item {name}")).ino
    }

    fn item_by_ino(&self, ino: u64) -> Option<&Item> {
        self.items.iter().find(|i| i.ino == ino)
    }

    fn dirs(&self) -> Vec<u64> {
        let mut d = vec![level_dir(1), level_dir(3)];
        d.extend(self.items.iter().filter(|i| i.data.is_none()).map(|i| i.ino));
        d
    }

    /// A fresh copy of the fixture vault with `edit` applied to its raw store.
    fn variant(&self, edit: impl FnOnce(&Store)) -> TempDir {
        let t = tempfile::tempdir().unwrap();
        copy_dir(self.dir.path(), t.path());
        let s = Store::open(t.path(), false).unwrap();
        edit(&s);
        s.flush().unwrap();
        drop(s);
        t
    }

    /// The values stored under keys starting with `prefix`.
    fn keys_with(&self, prefix: u8) -> Vec<Pair> {
        self.kv.iter().filter(|(k, _)| k[0] == prefix).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Builds the fixture vault:
/// 1-working/notes.md (10000 bytes, xattr user.tag), 1-working/other.txt
/// (9000 bytes), 1-working/sparse (blocks 0 and 3 stored, 1-2 holes),
/// 1-working/sub/{x,y}, 3-sealed/sealed.txt (5000 bytes), 1-working/run.bin
/// (five blocks written at once: one run entry).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    let v = unlock(dir.path()).unwrap();
    let file = NewNode { kind: FileKind::File, perm: 0o644, uid: 1000, gid: 1000, rdev: 0 };
    let dspec = NewNode { kind: FileKind::Dir, perm: 0o755, uid: 1000, gid: 1000, rdev: 0 };
    let mut items = Vec::new();
    let mut add = |parent: u64, name: &'static str, data: Option<Vec<u8>>| -> u64 {
        let spec = if data.is_some() { file.clone() } else { dspec.clone() };
        let ino = v.create(parent, name.as_bytes(), spec).unwrap().ino;
        // One write per block: one-block index entries, which the tests
        // below move one by one (runs are tampered with in their own test).
        for (i, chunk) in data.iter().flat_map(|d| d.chunks(BS)).enumerate() {
            v.write(ino, (i * BS) as u64, chunk).unwrap();
        }
        items.push(Item { parent, name, ino, data });
        ino
    };
    let w = level_dir(1);
    let notes = add(w, "notes.md", Some(content(1, 10_000)));
    add(w, "other.txt", Some(content(2, 9_000)));
    let sub = add(w, "sub", None);
    add(sub, "x", Some(content(3, 5)));
    add(sub, "y", Some(content(4, 7)));
    add(level_dir(3), "sealed.txt", Some(content(5, 5_000)));
    let sparse = add(w, "sparse", Some(Vec::new()));
    v.write(sparse, 0, &content(6, 100)).unwrap();
    v.write(sparse, 3 * BS as u64 + 10, &content(7, 100)).unwrap();
    let mut sp = content(6, 100);
    sp.resize(3 * BS + 10, 0);
    sp.extend(content(7, 100));
    items.iter_mut().find(|i| i.ino == sparse).unwrap().data = Some(sp);
    // One write of five blocks: one index entry for all of them (a run).
    let run = v.create(w, b"run.bin", file.clone()).unwrap().ino;
    let run_data = content(8, 5 * BS);
    v.write(run, 0, &run_data).unwrap();
    items.push(Item { parent: w, name: "run.bin", ino: run, data: Some(run_data) });
    v.setxattr(notes, b"user.tag", b"tampered?", XattrFlags::default()).unwrap();
    v.sync().unwrap();
    drop(v);
    let kv = snapshot(dir.path());
    Fixture { dir, items, kv }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every key/value pair of the raw store.
/// Every store entry except the audit log's (each unlock appends a record;
/// the log has its own tamper tests in tests/audit.rs and src/audit/log.rs).
fn snapshot(dir: &Path) -> Kv {
    let s = Store::open(dir, false).unwrap();
    let audit = [
        keys::AUDIT_LEAF,
        keys::AUDIT_LEAVES,
        keys::AUDIT_SLOT,
        keys::AUDIT_NODE,
        keys::AUDIT_FRONTIER[0],
        keys::AUDIT_CHECKPOINT,
    ];
    let kv = s
        .iter()
        .map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap())
        .filter(|(k, _)| !audit.contains(&k[0]))
        .collect();
    drop(s);
    kv
}

fn unlock(dir: &Path) -> Result<Vault<Unlocked>, vaultfs::Error> {
    Vault::open(dir)?.unlock(&pass())
}

fn flip(v: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut v = v.to_vec();
    v[at] ^= mask;
    v
}

/// Interesting byte positions of a sealed value: start, middle, end.
fn positions(len: usize) -> Vec<usize> {
    let mut p = vec![0, 1, len / 2, len - 1];
    p.dedup();
    p
}

fn kind<T>(r: Result<T, vaultfs::Error>) -> Result<T, ErrorKind> {
    r.map_err(|e| e.kind())
}

/// Everything of the fixture the edit did not touch must read back intact;
/// `hit` lists inodes whose reads may fail with Corrupt (never give wrong data).
fn check_rest(fx: &Fixture, v: &Vault<Unlocked>, hit: &[u64], ctx: &str) {
    for it in &fx.items {
        if hit.contains(&it.ino) {
            continue;
        }
        let a = v
            .getattr(it.ino)
            .unwrap_or_else(|e| panic!("{ctx}: getattr({}) of untouched {}: {e}", it.ino, it.name));
        if let Some(d) = &it.data {
            assert_eq!(a.size, d.len() as u64, "{ctx}: size of {}", it.name);
            let got =
                v.read(it.ino, 0, d.len() + 1).unwrap_or_else(|e| panic!("{ctx}: read {}: {e}", it.name));
            assert!(got == *d, "{ctx}: content of untouched {} changed", it.name);
        }
    }
}

/// Reads of `ino` must fail with Corrupt, or give exactly the original bytes.
fn read_is_corrupt_or_right(fx: &Fixture, v: &Vault<Unlocked>, ino: u64, ctx: &str) -> bool {
    let want = fx.item_by_ino(ino).and_then(|i| i.data.clone()).unwrap_or_default();
    match v.read(ino, 0, want.len() + 1) {
        Ok(got) => {
            assert!(got == want, "{ctx}: read of inode {ino} returned altered plaintext");
            false
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{ctx}: read of inode {ino}: {e}");
            true
        }
    }
}

// ---------------------------------------------------------------- passphrase

#[test]
fn wrong_passphrase_changes_nothing() {
    let fx = fixture();
    let before = snapshot(fx.dir.path());
    for wrong in ["", "tamper-passphrasE", "nope"] {
        let r = Vault::open(fx.dir.path()).unwrap().unlock(&Passphrase::new(wrong.as_bytes().to_vec()));
        assert_eq!(kind(r).err(), Some(ErrorKind::WrongPassphrase), "passphrase {wrong:?}");
    }
    assert!(snapshot(fx.dir.path()) == before, "a failed unlock changed the store");
    let v = unlock(fx.dir.path()).unwrap();
    check_rest(&fx, &v, &[], "after wrong passphrases");
}

// -------------------------------------------------------------- single flips

#[test]
fn flipped_inode_bytes_are_corrupt() {
    let fx = fixture();
    for (k, val) in fx.keys_with(keys::INODE) {
        let ino = keys::ino_of(&k).unwrap();
        // Position 0 is the plaintext level byte: see the level-byte tests.
        for at in positions(val.len()).into_iter().filter(|&p| p > 0) {
            for mask in [0x01, 0x80] {
                let ctx = format!("inode {ino}, byte {at} ^ {mask:#x}");
                let t = fx.variant(|s| s.put(&k, flip(&val, at, mask)).unwrap());
                let v = match unlock(t.path()) {
                    // Level 0's directory is loaded by unlock itself.
                    Err(e) if ino == level_dir(0) => {
                        assert_eq!(e.kind(), ErrorKind::Corrupt, "{ctx}: {e}");
                        continue;
                    }
                    r => r.unwrap_or_else(|e| panic!("{ctx}: unlock: {e}")),
                };
                assert_eq!(kind(v.getattr(ino)).err(), Some(ErrorKind::Corrupt), "{ctx}: getattr");
                if let Some(it) = fx.item_by_ino(ino) {
                    assert_eq!(
                        kind(v.lookup(it.parent, it.name.as_bytes())).err(),
                        Some(ErrorKind::Corrupt),
                        "{ctx}: lookup"
                    );
                    if it.data.is_some() {
                        assert_eq!(kind(v.read(ino, 0, 10)).err(), Some(ErrorKind::Corrupt), "{ctx}: read");
                    }
                }
                check_rest(&fx, &v, &[ino], &ctx);
            }
        }
    }
}

/// Rewrites the plaintext level byte of inode values to each of `levels`;
/// returns the cases where getattr did not report Corrupt.
/// `fixed`: the root and the level directories (sealed at vault level 0xFF);
/// otherwise the fixture's user inodes (levels 1 and 3).
fn level_byte_failures(fx: &Fixture, fixed: bool, levels: &[u8]) -> Vec<String> {
    let targets: Vec<Pair> = fx
        .keys_with(keys::INODE)
        .into_iter()
        .filter(|(k, _)| {
            let ino = keys::ino_of(k).unwrap();
            let is_fixed = ino == ROOT_INO || (level_dir(0)..=level_dir(5)).contains(&ino);
            // Level 0's directory is loaded by unlock itself (covered below).
            is_fixed == fixed && ino != level_dir(0)
        })
        .collect();
    let mut failures = Vec::new();
    for (k, val) in targets {
        let ino = keys::ino_of(&k).unwrap();
        for &level in levels {
            if level == val[0] {
                continue;
            }
            let ctx = format!("inode {ino}: level byte {:#x} -> {level:#x}", val[0]);
            let mut bad = val.clone();
            bad[0] = level;
            let t = fx.variant(|s| s.put(&k, bad).unwrap());
            let v = match unlock(t.path()) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{ctx}: unlock failed: {:?} {e}", e.kind()));
                    continue;
                }
            };
            match kind(v.getattr(ino)) {
                Err(ErrorKind::Corrupt) => {}
                // Relabelled to a level that has no key here (4 and 5 before
                // enrollment): it cannot even be tried, so it stays closed.
                Err(ErrorKind::AccessDenied) if level == 4 || level == 5 => {}
                other => {
                    failures.push(format!("{ctx}: getattr gives {:?}, want Corrupt", other.map(|a| a.ino)))
                }
            }
            drop(v);
            // Nothing may have been deleted because of an unauthenticated byte.
            let after = snapshot(t.path());
            let lost: Vec<String> = fx
                .kv
                .keys()
                .filter(|key| !after.contains_key(*key))
                .map(|key| format!("{}{:?}", key[0] as char, keys::ino_of(key)))
                .collect();
            if !lost.is_empty() {
                failures.push(format!("{ctx}: unlock deleted {lost:?}"));
            }
        }
    }
    failures
}

fn assert_no_failures(f: Vec<String>) {
    assert!(f.is_empty(), "{} failures:\n{}", f.len(), f.join("\n"));
}

#[test]
fn inode_level_byte_relabelled_to_another_valid_level_is_corrupt() {
    let fx = fixture();
    let mut f = level_byte_failures(&fx, false, &[1, 2, 3, 4, 5, 0xFF]);
    f.extend(level_byte_failures(&fx, true, &[1, 2, 3, 4, 5, 6, 0x80, 0xFE]));
    assert_no_failures(f);
    // Level 0's directory is loaded by unlock, which then refuses.
    for level in [0u8, 1, 5, 6, 0x80] {
        let k = keys::inode(level_dir(0));
        let mut bad = fx.kv[&k[..]].clone();
        bad[0] = level;
        let t = fx.variant(|s| s.put(&k, bad).unwrap());
        assert_eq!(kind(unlock(t.path())).err(), Some(ErrorKind::Corrupt), "level 0 dir, level byte {level}");
    }
}

/// A level byte that names no level (6..=0xFE) is damage, not a locked level.
#[test]
fn inode_level_byte_out_of_range_is_corrupt() {
    let fx = fixture();
    assert_no_failures(level_byte_failures(&fx, false, &[6, 0x42, 0x80, 0xFE]));
}

/// Unlock purges level-0 inodes by their unauthenticated level byte, so one
/// rewritten byte makes unlock delete a level-1 file (its inode, blocks and
/// xattrs; or a level directory, or the root) for good instead of reporting
/// the damage.
#[test]
fn inode_level_byte_zero_is_corrupt_not_purged() {
    let fx = fixture();
    let mut f = level_byte_failures(&fx, false, &[0]);
    f.extend(level_byte_failures(&fx, true, &[0]));
    assert_no_failures(f);
}

#[test]
fn flipped_dirent_bytes_are_corrupt() {
    let fx = fixture();
    let dirents = fx.keys_with(keys::DIRENT);
    assert_eq!(dirents.len(), fx.items.len(), "one dirent per item");
    for (k, val) in dirents {
        for at in positions(val.len()) {
            let ctx = format!("dirent {:02x?}.., byte {at}", &k[..6]);
            let t = fx.variant(|s| s.put(&k, flip(&val, at, 0x01)).unwrap());
            let v = unlock(t.path()).unwrap_or_else(|e| panic!("{ctx}: unlock: {e}"));
            let mut corrupt = Vec::new();
            for it in &fx.items {
                match kind(v.lookup(it.parent, it.name.as_bytes())) {
                    Ok(a) => assert_eq!(a.ino, it.ino, "{ctx}: lookup {} gives another inode", it.name),
                    Err(ErrorKind::Corrupt) => corrupt.push(it.clone()),
                    Err(e) => panic!("{ctx}: lookup {}: {e:?}", it.name),
                }
            }
            assert_eq!(corrupt.len(), 1, "{ctx}: exactly the altered entry fails: {corrupt:?}");
            // Listings leave the altered entry out and list every other one.
            for d in fx.dirs() {
                let listed: Vec<u64> = v
                    .readdir(d, 0, 100)
                    .unwrap_or_else(|e| panic!("{ctx}: readdir({d}): {e}"))
                    .iter()
                    .map(|e| e.ino)
                    .collect();
                let mut want: Vec<u64> = fx
                    .items
                    .iter()
                    .filter(|i| i.parent == d && i.ino != corrupt[0].ino)
                    .map(|i| i.ino)
                    .collect();
                let mut got = listed.clone();
                got.sort();
                want.sort();
                assert_eq!(got, want, "{ctx}: readdir({d})");
            }
            // The inode itself is intact and still reachable by number.
            check_rest(&fx, &v, &[], &ctx);
        }
    }
}

#[test]
fn flipped_block_bytes_are_corrupt() {
    let fx = fixture();
    // One-block entries here; run entries in `tampered_run_entries_are_corrupt`.
    let singles = fx.keys_with(keys::BLOCK).into_iter().filter(|(_, v)| v.len() != RUN_ENTRY_LEN);
    for (k, val) in singles {
        let ino = keys::ino_of(&k).unwrap();
        let b = keys::block_number(&k).unwrap();
        for at in positions(val.len()) {
            let ctx = format!("block {b} of inode {ino}, byte {at}");
            let t = fx.variant(|s| s.put(&k, flip(&val, at, 0x01)).unwrap());
            let v = unlock(t.path()).unwrap_or_else(|e| panic!("{ctx}: unlock: {e}"));
            let size = fx.item_by_ino(ino).unwrap().data.as_ref().unwrap().len() as u64;
            assert_eq!(
                kind(v.read(ino, 0, size as usize)).err(),
                Some(ErrorKind::Corrupt),
                "{ctx}: whole read"
            );
            assert_eq!(
                kind(v.read(ino, b * BS as u64, 1)).err(),
                Some(ErrorKind::Corrupt),
                "{ctx}: read of that block"
            );
            // A partial write into the block must authenticate it first.
            assert_eq!(
                kind(v.write(ino, b * BS as u64 + 1, b"zz")).err(),
                Some(ErrorKind::Corrupt),
                "{ctx}: partial write"
            );
            // Other blocks of the same file still read correctly.
            let data = fx.item_by_ino(ino).unwrap().data.clone().unwrap();
            for other in 0..(size as usize).div_ceil(BS) as u64 {
                if other != b {
                    let lo = other as usize * BS;
                    let hi = (lo + BS).min(data.len());
                    assert_eq!(v.read(ino, lo as u64, BS).unwrap(), data[lo..hi], "{ctx}: block {other}");
                }
            }
            check_rest(&fx, &v, &[ino], &ctx);
            drop(v);
            // The refused write left nothing behind.
            let mut want = fx.kv.clone();
            want.insert(k.clone(), flip(&val, at, 0x01));
            assert!(snapshot(t.path()) == want, "{ctx}: refused write changed the store");
        }
    }
}

/// Bytes of the segment files themselves (docs/FORMAT.md 6.1): a flipped
/// byte anywhere in a record (header, nonce, ciphertext, tag) is an error on
/// read, never other bytes; a record swapped with another block's record, a
/// segment file cut short, or one gone are errors naming what is wrong.
#[test]
fn flipped_segment_bytes_are_corrupt() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let rec = vaultfs::format::segment::record_len(BS as u32);
    let entry = |b: u64| IndexEntry::decode(&fx.kv[&keys::block(notes, b)[..]]).unwrap();
    let seg_path = |dir: &Path, e: &IndexEntry| dir.join("seg").join(segment_name(e.segment));
    let edit = |e: &IndexEntry, f: &dyn Fn(&mut Vec<u8>)| {
        let t = fx.variant(|_| {});
        let path = seg_path(t.path(), e);
        let mut bytes = std::fs::read(&path).unwrap();
        f(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        t
    };
    let e1 = entry(1);
    for at in positions(rec) {
        let ctx = format!("record of block 1, byte {at}");
        let t = edit(&e1, &|b| b[e1.offset as usize + at] ^= 0x01);
        let v = unlock(t.path()).unwrap();
        assert_eq!(kind(v.read(notes, BS as u64, 10)).err(), Some(ErrorKind::Corrupt), "{ctx}");
        assert_eq!(
            v.read(notes, 0, BS).unwrap(),
            fx.item_by_ino(notes).unwrap().data.as_ref().unwrap()[..BS]
        );
        check_rest(&fx, &v, &[notes], &ctx);
    }
    // Blocks 0 and 1 swapped inside the segment.
    let e0 = entry(0);
    let t = edit(&e0, &|b| {
        let (x, y) = (e0.offset as usize, e1.offset as usize);
        let r0 = b[x..x + rec].to_vec();
        let r1 = b[y..y + rec].to_vec();
        b[x..x + rec].copy_from_slice(&r1);
        b[y..y + rec].copy_from_slice(&r0);
    });
    let v = unlock(t.path()).unwrap();
    for b in [0, 1] {
        let e = kind(v.read(notes, b * BS as u64, 10)).err();
        assert_eq!(e, Some(ErrorKind::Corrupt), "swapped record {b}");
    }
    drop(v);
    // Cut short, and gone.
    let t = edit(&e1, &|b| b.truncate(e1.offset as usize + rec - 1));
    let v = unlock(t.path()).unwrap();
    let e = v.read(notes, BS as u64, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("ends before"), "{e}");
    drop(v);
    let t = fx.variant(|_| {});
    std::fs::remove_file(seg_path(t.path(), &e1)).unwrap();
    let v = unlock(t.path()).unwrap();
    let e = v.read(notes, BS as u64, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn flipped_xattr_bytes_are_corrupt() {
    let fx = fixture();
    let xattrs = fx.keys_with(keys::XATTR);
    assert_eq!(xattrs.len(), 1);
    let notes = fx.ino("notes.md");
    for (k, val) in xattrs {
        assert_eq!(keys::ino_of(&k), Some(notes));
        for at in positions(val.len()) {
            let ctx = format!("xattr byte {at}");
            let t = fx.variant(|s| s.put(&k, flip(&val, at, 0x01)).unwrap());
            let v = unlock(t.path()).unwrap();
            assert_eq!(
                kind(v.getxattr(notes, b"user.tag")).err(),
                Some(ErrorKind::Corrupt),
                "{ctx}: getxattr"
            );
            assert_eq!(kind(v.listxattr(notes)).err(), Some(ErrorKind::Corrupt), "{ctx}: listxattr");
            check_rest(&fx, &v, &[], &ctx);
        }
    }
}

/// Byte offset of the header's slot count; slots (76 bytes each) follow it.
const SLOT_COUNT_AT: usize = 8 + 2 + 8 + 16 + 4 + 45 + 72 + 32 + 72;
const SLOT_LEN: usize = 4 + 72;
/// A new vault has passphrase slots for levels 1 to 3 (4 and 5 wait for enrollment).
const SLOTS: usize = 3;

/// Every single-byte change of the header must keep the vault closed:
/// refused when parsed (Corrupt/Unsupported), by the key unwrap
/// (WrongPassphrase) or by the header MAC (Corrupt). Never unlocked.
/// Each byte is flipped in its low bit; the parsed fields (magic, version,
/// features, id, block size, KDF, slot count and slot headers) also get
/// their high bit flipped and every bit inverted.
#[test]
fn flipped_header_bytes_never_unlock() {
    let fx = fixture();
    let header = fx.kv[keys::HEADER].clone();
    assert_eq!(header.len(), SLOT_COUNT_AT + 1 + SLOTS * SLOT_LEN + 32, "header layout");
    let parsed = |p: usize| {
        p < KDF_MEMORY_AT + 12
            || p == SLOT_COUNT_AT
            || (p > SLOT_COUNT_AT
                && p < SLOT_COUNT_AT + 1 + SLOTS * SLOT_LEN
                && (p - SLOT_COUNT_AT - 1) % SLOT_LEN < 4)
    };
    let mut cases: Vec<(usize, u8)> = (0..header.len()).map(|p| (p, 0x01)).collect();
    for p in (0..header.len()).filter(|&p| parsed(p)) {
        cases.push((p, 0x80));
        cases.push((p, 0xFF));
    }
    let threads = 2;
    let fx = &fx;
    let header = &header;
    let cases = &cases;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let dir = fx.variant(|_| {});
                for &(at, mask) in cases.iter().skip(t).step_by(threads) {
                    let ctx = format!("header byte {at} ^ {mask:#x}");
                    let st = Store::open(dir.path(), false).unwrap();
                    st.put(keys::HEADER, flip(header, at, mask)).unwrap();
                    drop(st);
                    let start = Instant::now();
                    match unlock(dir.path()) {
                        Ok(_) => panic!("{ctx}: the vault unlocked with a modified header"),
                        Err(e) => assert!(
                            matches!(
                                e.kind(),
                                ErrorKind::Corrupt | ErrorKind::Unsupported | ErrorKind::WrongPassphrase
                            ),
                            "{ctx}: unexpected error {:?}: {e}",
                            e.kind()
                        ),
                    }
                    assert!(start.elapsed() < Duration::from_secs(20), "{ctx}: took {:?}", start.elapsed());
                }
                let st = Store::open(dir.path(), false).unwrap();
                st.put(keys::HEADER, header.clone()).unwrap();
                drop(st);
                unlock(dir.path()).expect("the restored header unlocks again");
            });
        }
    });
}

// ------------------------------------------------------- moves and truncation

#[test]
fn moved_blocks_are_corrupt() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let other = fx.ino("other.txt");
    let sparse = fx.ino("sparse");
    let sealed = fx.ino("sealed.txt");
    let block = |ino, b| {
        fx.kv.get(&keys::block(ino, b)[..]).unwrap_or_else(|| panic!("no block {b} of {ino}")).clone()
    };
    // (what, destination key, value, inode read, block read)
    type Move = (&'static str, [u8; 17], Vec<u8>, u64, u64);
    let cases: Vec<Move> = vec![
        ("same file, other position", keys::block(notes, 1), block(notes, 0), notes, 1),
        ("same file, swapped with the next", keys::block(notes, 2), block(notes, 1), notes, 2),
        ("same file, into a hole", keys::block(sparse, 1), block(sparse, 0), sparse, 1),
        ("same file, last to first", keys::block(sparse, 0), block(sparse, 3), sparse, 0),
        ("other file, same position", keys::block(other, 0), block(notes, 0), other, 0),
        ("other file, other position", keys::block(other, 2), block(notes, 1), other, 2),
        ("other level's file", keys::block(notes, 0), block(sealed, 0), notes, 0),
    ];
    for (what, key, val, ino, b) in cases {
        let t = fx.variant(|s| s.put(&key, val.clone()).unwrap());
        let v = unlock(t.path()).unwrap();
        assert_eq!(
            kind(v.read(ino, b * BS as u64, BS)).err(),
            Some(ErrorKind::Corrupt),
            "{what}: block read"
        );
        assert!(read_is_corrupt_or_right(&fx, &v, ino, what), "{what}: whole-file read succeeded");
        check_rest(&fx, &v, &[ino], what);
    }
}

/// A run's index entry (docs/FORMAT.md 6.1): any flipped bit, the entry
/// moved to end at another block, or put under another file, makes every
/// block it covered an error, never other bytes.
#[test]
fn tampered_run_entries_are_corrupt() {
    let fx = fixture();
    let run = fx.ino("run.bin");
    let key = keys::block(run, 4);
    let val = fx.kv[&key[..]].clone();
    assert_eq!(val.len(), RUN_ENTRY_LEN, "one entry for five blocks");
    let every_block_corrupt = |v: &Vault<Unlocked>, ctx: &str| {
        for b in 0..5u64 {
            assert_eq!(
                kind(v.read(run, b * BS as u64, 10)).err(),
                Some(ErrorKind::Corrupt),
                "{ctx}: block {b}"
            );
        }
    };
    for at in 0..val.len() {
        for mask in [0x01, 0x80] {
            let ctx = format!("run entry byte {at} ^ {mask:#x}");
            let t = fx.variant(|s| s.put(&key, flip(&val, at, mask)).unwrap());
            let v = unlock(t.path()).unwrap();
            every_block_corrupt(&v, &ctx);
            check_rest(&fx, &v, &[run], &ctx);
        }
    }
    let moved = |to: u64| {
        fx.variant(|s| {
            let mut b = Batch::default();
            b.delete(&key[..]);
            b.put(&keys::block(run, to)[..], val.clone());
            s.apply(b).unwrap();
        })
    };
    // Ending one block later: all five (and the one after) are errors.
    let t = moved(5);
    let v = unlock(t.path()).unwrap();
    every_block_corrupt(&v, "moved to end at block 5");
    // Ending one block earlier: blocks 0-3 are errors; block 4 has no
    // entry and reads as a hole, as any deleted entry does (THREAT_MODEL.md).
    let t = moved(3);
    let v = unlock(t.path()).unwrap();
    for b in 0..4u64 {
        assert_eq!(kind(v.read(run, b * BS as u64, 10)).err(), Some(ErrorKind::Corrupt), "moved to 3: {b}");
    }
    assert!(kind(v.read(run, 0, 5 * BS)).is_err(), "a whole-file read is an error");
    // Under another file, in place of its last block's entry.
    let other = fx.ino("other.txt");
    let t = fx.variant(|s| s.put(&keys::block(other, 2), val.clone()).unwrap());
    let v = unlock(t.path()).unwrap();
    assert_eq!(kind(v.read(other, 2 * BS as u64, 10)).err(), Some(ErrorKind::Corrupt), "under other.txt");
    assert_eq!(kind(v.read(other, 0, 9000)).err(), Some(ErrorKind::Corrupt), "under other.txt, whole");
    check_rest(&fx, &v, &[other], "under other.txt");
}

#[test]
fn truncated_or_padded_values_are_corrupt() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let cut = |v: &[u8], n: usize| v[..n].to_vec();
    let variants = |v: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = [0, 1, 24, v.len() / 2, v.len() - 16, v.len() - 1]
            .iter()
            .map(|&n| (format!("cut to {n}"), cut(v, n)))
            .collect();
        let mut longer = v.to_vec();
        longer.push(0);
        out.push(("one byte longer".into(), longer));
        out
    };
    // Blocks.
    let bkey = keys::block(notes, 1);
    for (what, val) in variants(&fx.kv[&bkey[..]]) {
        let t = fx.variant(|s| s.put(&bkey, val).unwrap());
        let v = unlock(t.path()).unwrap();
        assert_eq!(kind(v.read(notes, BS as u64, 10)).err(), Some(ErrorKind::Corrupt), "block {what}");
        check_rest(&fx, &v, &[notes], &format!("block {what}"));
    }
    // Inodes (a user file and a level directory).
    for ino in [notes, level_dir(1), fx.ino("sub")] {
        let ikey = keys::inode(ino);
        for (what, val) in variants(&fx.kv[&ikey[..]]) {
            let ctx = format!("inode {ino} {what}");
            let t = fx.variant(|s| s.put(&ikey, val).unwrap());
            let v = unlock(t.path()).unwrap_or_else(|e| panic!("{ctx}: unlock: {e}"));
            assert_eq!(kind(v.getattr(ino)).err(), Some(ErrorKind::Corrupt), "{ctx}");
            let hit: Vec<u64> =
                if ino == notes { vec![notes] } else { fx.items.iter().map(|i| i.ino).collect() };
            for it in fx.items.iter().filter(|i| hit.contains(&i.ino)) {
                // Under a damaged directory, lookups may fail, but only as Corrupt.
                if let Err(e) = kind(v.lookup(it.parent, it.name.as_bytes())) {
                    assert_eq!(e, ErrorKind::Corrupt, "{ctx}: lookup {}", it.name);
                }
            }
            check_rest(&fx, &v, &hit, &ctx);
        }
    }
    // Directory entries and the xattr.
    for prefix in [keys::DIRENT, keys::XATTR] {
        for (k, full) in fx.keys_with(prefix) {
            for (what, val) in variants(&full) {
                let ctx = format!("{} {what}", prefix as char);
                let t = fx.variant(|s| s.put(&k, val).unwrap());
                let v = unlock(t.path()).unwrap_or_else(|e| panic!("{ctx}: unlock: {e}"));
                if prefix == keys::XATTR {
                    assert_eq!(kind(v.getxattr(notes, b"user.tag")).err(), Some(ErrorKind::Corrupt), "{ctx}");
                } else {
                    let bad: Vec<_> = fx
                        .items
                        .iter()
                        .filter(|it| {
                            kind(v.lookup(it.parent, it.name.as_bytes())).err() == Some(ErrorKind::Corrupt)
                        })
                        .collect();
                    assert_eq!(bad.len(), 1, "{ctx}: exactly one lookup fails");
                }
                check_rest(&fx, &v, &[], &ctx);
            }
        }
    }
}

// --------------------------------------------------------------------- swaps

#[test]
fn swapped_dirents_are_corrupt() {
    let fx = fixture();
    // Group the entries by directory (key prefix: 'D' ‖ level ‖ dir tag).
    let mut groups: BTreeMap<Vec<u8>, Vec<Pair>> = BTreeMap::new();
    for (k, v) in fx.keys_with(keys::DIRENT) {
        groups.entry(k[..18].to_vec()).or_default().push((k, v));
    }
    let mut sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1, 2, 5], "3-sealed: 1 entry, sub: 2, 1-working: 5");
    let mut swapped_any = false;
    for group in groups.values().filter(|g| g.len() >= 2) {
        let ((ka, va), (kb, vb)) = (&group[0], &group[1]);
        let t = fx.variant(|s| {
            let mut b = Batch::default();
            b.put(ka.clone(), vb.clone());
            b.put(kb.clone(), va.clone());
            s.apply(b).unwrap();
        });
        let v = unlock(t.path()).unwrap();
        let mut corrupt = 0;
        for it in &fx.items {
            match kind(v.lookup(it.parent, it.name.as_bytes())) {
                Ok(a) => assert_eq!(a.ino, it.ino, "lookup {} resolved to another inode", it.name),
                Err(ErrorKind::Corrupt) => corrupt += 1,
                Err(e) => panic!("lookup {}: {e:?}", it.name),
            }
        }
        assert_eq!(corrupt, 2, "both swapped names fail");
        swapped_any = true;
    }
    assert!(swapped_any);
    // An entry moved from one directory into another (its value under the
    // other directory's key) fails as well.
    let (one, two): (Vec<_>, Vec<_>) = groups.values().partition(|g| g.len() == 1);
    let (k1, _) = &one[0][0];
    let (_, v2) = &two.iter().find(|g| g.len() == 2).unwrap()[0];
    let t = fx.variant(|s| s.put(k1, v2.clone()).unwrap());
    let v = unlock(t.path()).unwrap();
    assert_eq!(kind(v.lookup(level_dir(3), b"sealed.txt")).err(), Some(ErrorKind::Corrupt), "moved entry");
    // A listing leaves the moved entry out (logged) rather than fail whole.
    assert!(v.readdir(level_dir(3), 0, 10).unwrap().is_empty(), "moved entry left out of the listing");
}

#[test]
fn swapped_inodes_are_corrupt() {
    let fx = fixture();
    let pairs = [
        (fx.ino("notes.md"), fx.ino("other.txt")),
        (fx.ino("notes.md"), fx.ino("sealed.txt")),
        (fx.ino("sub"), fx.ino("x")),
        (level_dir(1), level_dir(2)),
        (ROOT_INO, level_dir(3)),
    ];
    for (a, b) in pairs {
        let (ka, kb) = (keys::inode(a), keys::inode(b));
        let t = fx.variant(|s| {
            let mut batch = Batch::default();
            batch.put(&ka[..], fx.kv[&kb[..]].clone());
            batch.put(&kb[..], fx.kv[&ka[..]].clone());
            s.apply(batch).unwrap();
        });
        let v = unlock(t.path()).unwrap();
        for ino in [a, b] {
            assert_eq!(
                kind(v.getattr(ino)).err(),
                Some(ErrorKind::Corrupt),
                "swap {a}<->{b}: getattr({ino})"
            );
            if fx.item_by_ino(ino).is_some_and(|i| i.data.is_some()) {
                assert_eq!(
                    kind(v.read(ino, 0, 10)).err(),
                    Some(ErrorKind::Corrupt),
                    "swap {a}<->{b}: read({ino})"
                );
            }
        }
        for it in &fx.items {
            if let Ok(got) = v.read(it.ino, 0, 100_000) {
                assert!(Some(&got) == it.data.as_ref(), "swap {a}<->{b}: {} reads other data", it.name);
            }
        }
        // Inodes are reached by number here, so everything else is intact.
        check_rest(&fx, &v, &[a, b], &format!("swap {a}<->{b}"));
    }
}

// -------------------------------------------------------------------- header

/// Byte offsets of header fields (docs in src/format/header.rs).
const VERSION_AT: usize = 8;
const FEATURES_AT: usize = 10;
const KDF_MEMORY_AT: usize = 8 + 2 + 8 + 16 + 4 + 1;

fn with_header(fx: &Fixture, edit: impl FnOnce(&mut Vec<u8>)) -> TempDir {
    let mut h = fx.kv[keys::HEADER].clone();
    edit(&mut h);
    fx.variant(|s| s.put(keys::HEADER, h).unwrap())
}

fn open_err(dir: &Path) -> vaultfs::Error {
    match Vault::open(dir) {
        Ok(l) => match l.unlock(&pass()) {
            Ok(_) => panic!("the vault opened and unlocked"),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

#[test]
fn unknown_version_and_features_are_unsupported() {
    let fx = fixture();
    for version in [0u16, 2, 0xFFFF] {
        let t = with_header(&fx, |h| h[VERSION_AT..VERSION_AT + 2].copy_from_slice(&version.to_be_bytes()));
        let e = open_err(t.path());
        assert_eq!(e.kind(), ErrorKind::Unsupported, "version {version}: {e}");
        assert!(e.to_string().contains(&format!("version {version}")), "message names the version: {e}");
    }
    // Bits 0 (a recovery section follows), 1 (segment files), 2 (runs of
    // blocks per index entry), 3 (a single recovery key) and 4 (a rollback
    // anchor in a TPM) are known (docs/FORMAT.md); the rest are not.
    for bit in [5u32, 6, 40, 63] {
        let t = with_header(&fx, |h| {
            h[FEATURES_AT..FEATURES_AT + 8].copy_from_slice(&(1u64 << bit).to_be_bytes())
        });
        let e = open_err(t.path());
        assert_eq!(e.kind(), ErrorKind::Unsupported, "feature bit {bit}: {e}");
        assert!(e.to_string().contains(&format!("{:#x}", 1u64 << bit)), "message names the flag: {e}");
    }
    // Bit 3 means "the recovery section is 1 of 1": without a section it is damage.
    let t = with_header(&fx, |h| h[FEATURES_AT..FEATURES_AT + 8].copy_from_slice(&8u64.to_be_bytes()));
    assert_eq!(open_err(t.path()).kind(), ErrorKind::Corrupt);
}

#[test]
fn hostile_kdf_parameters_are_refused_without_allocating() {
    let fx = fixture();
    let set = |mem: u32, passes: u32, lanes: u32| {
        with_header(&fx, |h| {
            h[KDF_MEMORY_AT..KDF_MEMORY_AT + 4].copy_from_slice(&mem.to_be_bytes());
            h[KDF_MEMORY_AT + 4..KDF_MEMORY_AT + 8].copy_from_slice(&passes.to_be_bytes());
            h[KDF_MEMORY_AT + 8..KDF_MEMORY_AT + 12].copy_from_slice(&lanes.to_be_bytes());
        })
    };
    let hostile = [
        (64 * 1024 * 1024, 1, 1, "kdf memory"), // 64 GiB
        (u32::MAX, 1, 1, "kdf memory"),
        (0, 1, 1, "kdf memory"),
        (8192, u32::MAX, 1, "kdf passes"),
        (8192, 0, 1, "kdf passes"),
        (8192, 1, 0, "kdf lanes"),
        (8192, 1, 1 << 20, "kdf lanes"),
    ];
    for (mem, passes, lanes, field) in hostile {
        let t = set(mem, passes, lanes);
        let start = Instant::now();
        let e = open_err(t.path());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "({mem}, {passes}, {lanes}) took {:?}",
            start.elapsed()
        );
        assert!(
            matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported),
            "({mem}, {passes}, {lanes}): {:?} {e}",
            e.kind()
        );
        assert!(e.to_string().contains(field), "message names {field}: {e}");
    }
    // Acceptable but different parameters derive another key: refused, not opened.
    for (mem, passes, lanes) in [(16384, 1, 1), (8192, 2, 1), (8192, 1, 2)] {
        let e = open_err(set(mem, passes, lanes).path());
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase, "({mem}, {passes}, {lanes}): {e}");
    }
}

#[test]
fn missing_header_or_counter_is_corrupt() {
    let fx = fixture();
    let t = fx.variant(|s| {
        let mut b = Batch::default();
        b.delete(keys::HEADER);
        s.apply(b).unwrap();
    });
    assert_eq!(open_err(t.path()).kind(), ErrorKind::Corrupt);
    let t = fx.variant(|s| s.put(keys::INODE_COUNTER, vec![1, 2, 3]).unwrap());
    assert_eq!(open_err(t.path()).kind(), ErrorKind::Corrupt);
    let t = fx.variant(|s| {
        let mut b = Batch::default();
        b.delete(keys::INODE_COUNTER);
        s.apply(b).unwrap();
    });
    assert_eq!(open_err(t.path()).kind(), ErrorKind::Corrupt);
}

// ------------------------------------------------------- hostile arguments

#[test]
fn hostile_names_and_offsets_change_nothing() {
    let fx = fixture();
    let before = snapshot(fx.dir.path());
    let v = unlock(fx.dir.path()).unwrap();
    let w = level_dir(1);
    let notes = fx.ino("notes.md");
    let file = NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 };
    let dspec = NewNode { kind: FileKind::Dir, perm: 0o755, uid: 0, gid: 0, rdev: 0 };
    let long = vec![b'n'; 256];
    let cases: Vec<(&[u8], ErrorKind)> = vec![
        (b"", ErrorKind::InvalidName),
        (b".", ErrorKind::InvalidName),
        (b"..", ErrorKind::InvalidName),
        (b"a/b", ErrorKind::InvalidName),
        (b"/", ErrorKind::InvalidName),
        (b"a\0b", ErrorKind::InvalidName),
        (b"\0", ErrorKind::InvalidName),
        (&long, ErrorKind::NameTooLong),
    ];
    for (name, want) in &cases {
        let ctx = format!("name {:?}", String::from_utf8_lossy(&name[..name.len().min(8)]));
        assert_eq!(kind(v.create(w, name, file.clone())).err(), Some(*want), "{ctx}: create");
        assert_eq!(kind(v.create(w, name, dspec.clone())).err(), Some(*want), "{ctx}: mkdir");
        assert_eq!(kind(v.symlink(w, name, b"target", 0, 0)).err(), Some(*want), "{ctx}: symlink");
        assert_eq!(kind(v.link(notes, w, name)).err(), Some(*want), "{ctx}: link");
        assert_eq!(
            kind(v.rename(w, b"notes.md", w, name, RenameFlags::default())).err(),
            Some(*want),
            "{ctx}: rename"
        );
        let ex = RenameFlags { no_replace: false, exchange: true };
        assert_eq!(kind(v.rename(w, b"notes.md", w, name, ex)).err(), Some(*want), "{ctx}: rename exchange");
        // Hostile names never find anything to remove.
        assert!(v.unlink(w, name).is_err(), "{ctx}: unlink");
        assert!(v.rmdir(w, name).is_err(), "{ctx}: rmdir");
        assert!(v.lookup(w, name).is_err(), "{ctx}: lookup");
    }
    assert_eq!(kind(v.lookup(w, &long)).err(), Some(ErrorKind::NameTooLong));
    assert_eq!(kind(v.symlink(w, b"s", &vec![b't'; 4096], 0, 0)).err(), Some(ErrorKind::NameTooLong));
    // Offsets and sizes past the maximum file size.
    let big = [
        (MAX_FILE_SIZE, 1usize),
        (MAX_FILE_SIZE - 1, 2),
        (MAX_FILE_SIZE + 4096, 1),
        (u64::MAX, 1),
        (u64::MAX - 1, 5000),
    ];
    for (off, len) in big {
        assert_eq!(
            kind(v.write(notes, off, &vec![7; len])).err(),
            Some(ErrorKind::FileTooLarge),
            "write at {off}"
        );
        assert_eq!(
            kind(v.fallocate(notes, off, len as u64, FallocMode::default())).err(),
            Some(ErrorKind::FileTooLarge),
            "fallocate at {off}"
        );
        let punch = FallocMode { keep_size: true, punch_hole: true, ..Default::default() };
        assert_eq!(
            kind(v.fallocate(notes, off, len as u64, punch)).err(),
            Some(ErrorKind::FileTooLarge),
            "punch at {off}"
        );
    }
    for size in [MAX_FILE_SIZE + 1, u64::MAX] {
        let set = SetAttr { size: Some(size), perm: Some(0o600), ..Default::default() };
        assert_eq!(kind(v.setattr(notes, &set)).err(), Some(ErrorKind::FileTooLarge), "truncate to {size}");
    }
    // Reads past the end are empty, not errors.
    assert_eq!(v.read(notes, MAX_FILE_SIZE + 1, 10).unwrap(), b"");
    assert_eq!(v.read(notes, u64::MAX, 10).unwrap(), b"");
    assert_eq!(v.getattr(notes).unwrap().perm, 0o644, "a refused setattr applied its mode");
    check_rest(&fx, &v, &[], "after hostile arguments");
    drop(v);
    let after = snapshot(fx.dir.path());
    if after != before {
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| format!("{:02x?}", &k[..k.len().min(9)]))
            .chain(
                before
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("deleted {:02x?}", &k[..k.len().min(9)])),
            )
            .collect();
        panic!("refused operations changed the store: {changed:?}");
    }
}

#[test]
fn the_largest_offset_is_accepted() {
    let fx = fixture();
    let v = unlock(fx.dir.path()).unwrap();
    let notes = fx.ino("notes.md");
    v.write(notes, MAX_FILE_SIZE - 1, b"z").unwrap();
    assert_eq!(v.getattr(notes).unwrap().size, MAX_FILE_SIZE);
    assert_eq!(v.read(notes, MAX_FILE_SIZE - 2, 10).unwrap(), b"\0z");
    v.setattr(notes, &SetAttr { size: Some(MAX_FILE_SIZE), ..Default::default() }).unwrap();
    v.setattr(notes, &SetAttr { size: Some(10_000), ..Default::default() }).unwrap();
    check_rest(&fx, &v, &[], "after the largest write and truncating back");
}

// ------------------------------------------------------------- inode counter

/// The inode counter `C` is stored unauthenticated. Rolled back (one byte
/// changed), it must not make `create` hand out the number of a live inode
/// and overwrite that inode's record: either refuse (Corrupt) or skip it.
#[test]
fn rolled_back_inode_counter_never_reuses_a_live_inode() {
    let fx = fixture();
    let counter = fx.kv[keys::INODE_COUNTER].clone();
    let first_user = 16u64;
    let t = fx.variant(|s| s.put(keys::INODE_COUNTER, first_user.to_be_bytes().to_vec()).unwrap());
    assert_ne!(counter, first_user.to_be_bytes().to_vec());
    let v = unlock(t.path()).unwrap();
    let file = NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 };
    match kind(v.create(level_dir(1), b"fresh", file)) {
        Err(e) => assert_eq!(e, ErrorKind::Corrupt, "create refused, but not as Corrupt"),
        Ok(a) => {
            assert!(
                fx.item_by_ino(a.ino).is_none(),
                "create reused live inode {} ({:?})",
                a.ino,
                fx.item_by_ino(a.ino).map(|i| i.name)
            );
            check_rest(&fx, &v, &[], "after create with a rolled-back counter");
        }
    }
}

/// Orphan markers (`O` ‖ ino, empty value) are unauthenticated. One inserted
/// for a live, linked inode must not make unlock delete that file.
#[test]
fn injected_orphan_marker_does_not_delete_a_live_file() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let t = fx.variant(|s| s.put(&keys::orphan(notes), Vec::new()).unwrap());
    let v = unlock(t.path()).unwrap();
    match kind(v.getattr(notes)) {
        Ok(a) => assert_eq!(a.nlink, 1),
        Err(e) => panic!("notes.md after an injected orphan marker: {e:?} (want it intact, or Corrupt)"),
    }
    check_rest(&fx, &v, &[], "after an injected orphan marker");
}
