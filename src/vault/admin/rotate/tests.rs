use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;
use crate::crypto::KdfParams;
use crate::format::{Factor, KeySlot};
use crate::vault::{ErrorKind, InitOptions, NewNode, Unlocked, XattrFlags};

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };
const BS: usize = 4096;

fn pass() -> Passphrase {
    Passphrase::new(b"pw".to_vec())
}

fn node(kind: FileKind) -> NewNode {
    NewNode { kind, perm: if kind == FileKind::Dir { 0o755 } else { 0o644 }, uid: 0, gid: 0, rdev: 0 }
}

fn no_factors(_: &[Factor]) -> std::result::Result<Vec<Key32>, String> {
    Err("no factor here".into())
}

fn unlock(dir: &std::path::Path) -> Vault<Unlocked> {
    Vault::open(dir).unwrap().unlock(&pass()).unwrap()
}

/// Content of file `i`: distinct per file and per block; the last spans
/// more blocks than one rotation batch holds.
fn content(i: usize) -> Vec<u8> {
    let len = match i {
        0 => 0,
        1 => 10,
        2 => 3 * BS + 7,
        _ => 1100 * BS + i,
    };
    (0..len).map(|b| (b / BS * 31 + b * 7 + i * 13) as u8).collect()
}

/// Files, a directory, a hard link, a symlink and xattrs at `level`.
fn populate(v: &Vault<Unlocked>, level: u8) {
    let top = level_dir(level);
    let d = v.create(top, b"notes", node(FileKind::Dir)).unwrap();
    for i in 0..4 {
        let f = v.create(d.ino, format!("f{i}").as_bytes(), node(FileKind::File)).unwrap();
        v.write(f.ino, 0, &content(i)).unwrap();
        v.setxattr(f.ino, b"user.tag", format!("x{i}").as_bytes(), XattrFlags::default()).unwrap();
    }
    let f2 = v.lookup(d.ino, b"f2").unwrap();
    v.link(f2.ino, top, b"f2-link").unwrap();
    v.symlink(top, b"to-notes", b"notes/f1", 0, 0).unwrap();
}

fn check(v: &Vault<Unlocked>, level: u8) {
    let top = level_dir(level);
    let d = v.lookup(top, b"notes").unwrap();
    for i in 0..4 {
        let f = v.lookup(d.ino, format!("f{i}").as_bytes()).unwrap();
        assert_eq!(v.read(f.ino, 0, content(i).len() + 10).unwrap(), content(i), "level {level} f{i}");
        assert_eq!(v.getxattr(f.ino, b"user.tag").unwrap(), format!("x{i}").as_bytes());
    }
    let link = v.lookup(top, b"f2-link").unwrap();
    assert_eq!(link.ino, v.lookup(d.ino, b"f2").unwrap().ino);
    assert_eq!(link.nlink, 2);
    let s = v.lookup(top, b"to-notes").unwrap();
    assert_eq!(v.readlink(s.ino).unwrap(), b"notes/f1");
    let names: Vec<Vec<u8>> = v.readdir(top, 0, 100).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Every stored inode of `level` with its file key and generation, under `mk`.
fn file_keys(v: &Vault<Unlocked>, level: u8) -> Vec<(u64, u64, Key32)> {
    let core = v.core();
    let mk = core.keys.levels.read().unwrap()[level as usize].clone().unwrap();
    let vid = core.vault_id;
    core.store
        .scan_prefix(&[keys::INODE])
        .map(|e| e.unwrap())
        .filter(|(_, val)| meta::inode_level(val) == Some(level))
        .map(|(k, val)| {
            let ino = keys::ino_of(&k).unwrap();
            let rec = mk.open_inode(&vid, ino, &val).unwrap();
            (ino, rec.generation, Key32::from_bytes(rec.file_key.0))
        })
        .collect()
}

fn slot(v: &Vault<Locked>, level: u8) -> KeySlot {
    v.header().slots.iter().find(|s| s.level == level).unwrap().clone()
}

#[test]
fn an_interrupted_rotation_resumes_and_no_old_key_opens_anything() {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    let v = unlock(dir.path());
    for level in 1..=3 {
        populate(&v, level);
    }
    let old_files = file_keys(&v, 2);
    let old_meta = v.core().keys.levels.read().unwrap()[2].clone().unwrap();
    let vid = v.header().vault_id;
    drop(v);

    let mut locked = Vault::open(dir.path()).unwrap();
    let (slot1, slot2) = (slot(&locked, 1), slot(&locked, 2));
    // Interrupt the run in the middle of the big file: its first batch of
    // blocks has moved, its inode (old file key) has not.
    let interrupted = catch_unwind(AssertUnwindSafe(|| {
        locked.rotate(&pass(), 2, &mut no_factors, &mut |done, _| assert!(done < 1000, "interrupted"))
    }));
    assert!(interrupted.is_err());
    drop(locked);

    let locked = Vault::open(dir.path()).unwrap();
    assert_eq!(locked.rotations_pending().unwrap(), vec![2]);
    let e = locked.unlock(&pass()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::RotationPending);
    assert!(e.message.contains("--level 2"), "{}", e.message);

    // Some records moved, some not: the rerun finishes with the same keys.
    let mut locked = Vault::open(dir.path()).unwrap();
    let r = locked.rotate(&pass(), 2, &mut no_factors, &mut |_, _| {}).unwrap();
    assert!(r.resumed);
    assert_eq!(r.blocks, 1101 - 1024, "the interrupted run's batch of the big file is not redone");
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert!(locked.rotations_pending().unwrap().is_empty());
    assert_eq!(slot(&locked, 1), slot1, "level 1 was not asked for");
    assert_ne!(slot(&locked, 2).wrapped, slot2.wrapped);
    drop(locked);

    let v = unlock(dir.path());
    for level in 1..=3 {
        check(&v, level);
    }
    let new_files = file_keys(&v, 2);
    assert_eq!(new_files.len(), old_files.len());
    let core = v.core();
    let mut blocks = 0;
    for (ino, generation, old_key) in &old_files {
        let (_, _, new_key) = new_files.iter().find(|(i, ..)| i == ino).unwrap();
        assert_ne!(new_key.as_bytes(), old_key.as_bytes(), "inode {ino} kept its file key");
        let old_blocks = FileBlocks::new(&core.store, old_key, &vid, (*ino, *generation), BS as u32, None);
        for entry in core.store.scan_prefix(&keys::block_prefix(*ino)) {
            let (k, val) = entry.unwrap();
            let n = keys::block_number(&k).unwrap();
            assert!(old_blocks.read_entry(n, &val).is_err(), "block {n} of {ino} opens under its old key");
            let (first, last) = crate::block::entry_span(BS as u32, n, &val);
            blocks += last - first + 1;
        }
    }
    assert_eq!(blocks, 1 + 4 + 1101);
    // Nor does the old level key open any inode, entry or xattr of the level.
    for (k, val) in core.store.iter().map(|e| e.unwrap()) {
        match k[0] {
            keys::INODE if meta::inode_level(&val) == Some(2) => {
                assert!(old_meta.open_inode(&vid, keys::ino_of(&k).unwrap(), &val).is_err())
            }
            keys::DIRENT if k[1] == 2 => assert!(old_meta.open_dirent(&vid, &k, &val).is_err()),
            keys::XATTR => assert!(old_meta.open_xattr(&vid, &k, &val).is_err()),
            keys::ROTATION => panic!("the rotation record outlived the rotation"),
            _ => {}
        }
    }
    let leaves = v.audit_lines(0, v.audit_size()).unwrap();
    assert_eq!(leaves.iter().filter(|l| l.contains("\"op\":\"rotate\"")).count(), 1, "{leaves:?}");
    assert!(v.audit_verify().is_ok());
}

#[test]
fn rotating_every_level_twice_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    let v = unlock(dir.path());
    for level in 1..=3 {
        populate(&v, level);
    }
    drop(v);
    for _ in 0..2 {
        let mut locked = Vault::open(dir.path()).unwrap();
        assert_eq!(locked.levels_with_keys(), vec![1, 2, 3]);
        for level in locked.levels_with_keys() {
            let r = locked.rotate(&pass(), level, &mut no_factors, &mut |_, _| {}).unwrap();
            assert!(!r.resumed);
            assert_eq!((r.inodes, r.entries, r.xattrs), (6, 7, 4), "level {level}");
        }
    }
    let v = unlock(dir.path());
    for level in 1..=3 {
        check(&v, level);
    }
}

#[test]
fn refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    populate(&unlock(dir.path()), 2);
    let mut locked = Vault::open(dir.path()).unwrap();
    let before = locked.header().encode();
    let wrong = Passphrase::new(b"nope".to_vec());
    let e = locked.rotate(&wrong, 2, &mut no_factors, &mut |_, _| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
    for (level, kind) in
        [(0, ErrorKind::InvalidArgument), (4, ErrorKind::NotEnrolled), (9, ErrorKind::InvalidArgument)]
    {
        assert_eq!(locked.rotate(&pass(), level, &mut no_factors, &mut |_, _| {}).unwrap_err().kind(), kind);
    }
    assert!(locked.rotations_pending().unwrap().is_empty());
    assert_eq!(locked.header().encode(), before);
    drop(locked);
    check(&unlock(dir.path()), 2);
}

#[test]
fn a_damaged_block_is_left_as_it_was_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    let v = unlock(dir.path());
    populate(&v, 2);
    let f = v.lookup(v.lookup(level_dir(2), b"notes").unwrap().ino, b"f3").unwrap();
    // The entry of blocks 768..=1023 (one write makes runs of 256 blocks).
    let key = keys::block(f.ino, 1023);
    let mut val = v.core().store.get(&key).unwrap().unwrap().to_vec();
    val[40] ^= 1;
    v.core().store.put(&key, val.clone()).unwrap();
    drop(v);
    let mut locked = Vault::open(dir.path()).unwrap();
    let r = locked.rotate(&pass(), 2, &mut no_factors, &mut |_, _| {}).unwrap();
    assert_eq!(r.damaged, vec![format!("blocks 768..=1023 of inode {}", f.ino)]);
    drop(locked);
    let v = unlock(dir.path());
    assert_eq!(&v.core().store.get(&key).unwrap().unwrap()[..], &val[..]);
    // The rest of the file moved and reads; the damaged block still fails.
    assert_eq!(v.read(f.ino, 0, BS).unwrap(), content(3)[..BS]);
    assert_eq!(v.read(f.ino, 1024 * BS as u64, BS).unwrap(), content(3)[1024 * BS..1025 * BS]);
    assert_eq!(v.read(f.ino, 800 * BS as u64, 10).unwrap_err().kind(), ErrorKind::Corrupt);
}
