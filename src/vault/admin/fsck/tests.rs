use super::*;
use crate::crypto::{KdfParams, Key32};
use crate::format::Factor;
use crate::store::{Batch, Store};
use crate::vault::{Caller, FileKind, InitOptions, NewNode, Unlocked, level_dir};

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };

fn pass() -> Passphrase {
    Passphrase::new(b"pw".to_vec())
}

fn file() -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 }
}

fn dir_spec() -> NewNode {
    NewNode { kind: FileKind::Dir, perm: 0o755, uid: 0, gid: 0, rdev: 0 }
}

fn new_vault() -> (tempfile::TempDir, Vault<Unlocked>) {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: 4096 }).unwrap();
    let v = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
    (dir, v)
}

fn no_factors(_: &[Factor]) -> std::result::Result<Vec<Key32>, String> {
    Err("no factors in this test".into())
}

fn fsck_with(dir: &std::path::Path, opts: &FsckOptions, secrets: &mut FactorSecrets) -> FsckReport {
    let mut last = (0, 0);
    let r = Vault::open(dir).unwrap().fsck(&pass(), opts, secrets, &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last.0, last.1, "progress ends at its total");
    r
}

fn fsck(dir: &std::path::Path, repair: bool) -> FsckReport {
    fsck_with(dir, &FsckOptions { repair, factor_levels: vec![] }, &mut no_factors)
}

fn kinds(r: &FsckReport) -> Vec<&'static str> {
    let mut k: Vec<_> = r.problems.iter().map(|p| p.kind.name()).collect();
    k.sort();
    k
}

/// Re-seals inode `ino` (a user inode of level 1, or a fixed directory)
/// with its record changed by `edit`, as damage that still authenticates.
fn reseal(dir: &std::path::Path, ino: u64, edit: impl FnOnce(&mut crate::format::InodeRecord)) {
    let v = Vault::open(dir).unwrap();
    let ring = keyring::unlock(&pass(), v.header()).unwrap();
    let id = v.header().vault_id;
    let store = &v.0.store;
    let value = store.get(&keys::inode(ino)).unwrap().unwrap();
    let mk = if value[0] == crate::meta::VAULT_LEVEL {
        ring.vault_meta.clone()
    } else {
        ring.levels.read().unwrap()[value[0] as usize].clone().unwrap()
    };
    let mut rec = mk.open_inode(&id, ino, &value).unwrap();
    edit(&mut rec);
    let mut b = Batch::default();
    b.put(&keys::inode(ino)[..], mk.seal_inode(&id, ino, &rec).unwrap());
    store.apply(b).unwrap();
}

fn raw(dir: &std::path::Path, edit: impl FnOnce(&Store)) {
    let s = Store::open(dir, false).unwrap();
    edit(&s);
    s.flush().unwrap();
}

#[test]
fn link_counts_of_files_and_directories_are_fixed_when_certain() {
    let (dir, v) = new_vault();
    let d = v.create(level_dir(1), b"d", dir_spec()).unwrap().ino;
    v.create(d, b"inner", dir_spec()).unwrap();
    let f = v.create(d, b"f", file()).unwrap().ino;
    v.sync().unwrap();
    drop(v);
    assert_eq!(fsck(dir.path(), false).status, FsckStatus::Clean);
    reseal(dir.path(), f, |r| r.nlink = 5);
    reseal(dir.path(), d, |r| r.nlink = 2);
    reseal(dir.path(), level_dir(1), |r| r.nlink = 9);
    let r = fsck(dir.path(), false);
    assert_eq!(kinds(&r), ["link_count"; 3]);
    assert!(r.problems.iter().all(|p| p.repair == RepairState::Available));
    let r = fsck(dir.path(), true);
    assert_eq!(r.status, FsckStatus::Repaired);
    assert_eq!(fsck(dir.path(), false).status, FsckStatus::Clean);
    let v = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
    assert_eq!(v.getattr(f).unwrap().nlink, 1);
    assert_eq!(v.getattr(d).unwrap().nlink, 3);
    assert_eq!(v.getattr(level_dir(1)).unwrap().nlink, 3);
}

#[test]
fn a_damaged_entry_makes_its_level_uncertain() {
    let (dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file()).unwrap().ino;
    v.sync().unwrap();
    drop(v);
    // f's only entry no longer authenticates, and f claims no links: it may
    // be the inode that entry names, so it is not removed.
    raw(dir.path(), |s| {
        let (k, v) = s.scan_prefix(&[keys::DIRENT, 1]).next().unwrap().unwrap();
        let mut v = v.to_vec();
        v[30] ^= 4;
        let mut b = Batch::default();
        b.put(k, v);
        s.apply(b).unwrap();
    });
    reseal(dir.path(), f, |r| r.nlink = 0);
    let r = fsck(dir.path(), true);
    assert_eq!(kinds(&r), ["entry_damaged", "orphan_inode"]);
    assert!(r.problems.iter().all(|p| p.repair == RepairState::None), "{:?}", r.problems);
    assert_eq!(r.status, FsckStatus::Damaged);
    assert!(Store::open(dir.path(), false).unwrap().contains(&keys::inode(f)).unwrap());
}

#[test]
fn factor_levels_are_not_checked_without_their_factor() {
    let (dir, v) = new_vault();
    drop(v);
    // A software "TPM" factor for level 4: the test holds its secret.
    let secret = [7u8; 32];
    {
        let locked = Vault::open(dir.path()).unwrap();
        let factor = (Factor::Tpm(vec![1, 2, 3]), Key32::from_bytes(secret));
        let h = keyring::enroll(&pass(), locked.header(), 4, &[factor], &mut no_factors).unwrap().header;
        locked.0.store.put(keys::HEADER, h.encode()).unwrap();
    }
    let mut answer = |_: &[Factor]| Ok(vec![Key32::from_bytes(secret)]);
    let v = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
    let me = Caller { uid: 0, gid: 0, pid: 1 };
    v.unlock_level(me, b"test", 4, None, &mut answer).unwrap();
    let f = v.create(level_dir(4), b"vaulted", file()).unwrap().ino;
    v.write(f, 0, b"behind the TPM").unwrap();
    v.sync().unwrap();
    drop(v);

    let r = fsck(dir.path(), false);
    assert_eq!(r.status, FsckStatus::Incomplete, "{:?}", r.problems);
    assert_eq!(r.levels[4].access, LevelAccess::Locked);
    assert_eq!(r.levels[4].not_checked, 3, "inode, entry and block");
    assert!(r.levels[4].note.contains("--level 4"));
    // Structure is still checked: a block of a vanished level-4 inode is found.
    raw(dir.path(), |s| {
        let mut b = Batch::default();
        b.put(&keys::block(777_777, 0)[..], vec![0; 4136]);
        s.apply(b).unwrap();
    });
    assert_eq!(kinds(&fsck(dir.path(), false)), ["orphan_block"]);
    assert_eq!(fsck(dir.path(), true).status, FsckStatus::Incomplete, "repaired, level 4 still unchecked");

    let opts = FsckOptions { repair: false, factor_levels: vec![4] };
    let r = fsck_with(dir.path(), &opts, &mut answer);
    assert_eq!(r.status, FsckStatus::Clean, "{:?}", r.problems);
    assert_eq!(r.levels[4].access, LevelAccess::Checked);
    assert_eq!(r.counts.blocks.authenticated, 1);
    let mut wrong = |_: &[Factor]| Ok(vec![Key32::from_bytes([8; 32])]);
    let r = fsck_with(dir.path(), &opts, &mut wrong);
    assert_eq!(r.status, FsckStatus::Incomplete);
    assert!(r.levels[4].note.contains("does not open"), "{}", r.levels[4].note);
}

#[test]
fn a_header_that_fails_its_mac_stops_the_check() {
    let (dir, v) = new_vault();
    drop(v);
    raw(dir.path(), |s| {
        let mut h = s.get(keys::HEADER).unwrap().unwrap().to_vec();
        let n = h.len();
        h[n - 1] ^= 1;
        s.put(keys::HEADER, h).unwrap();
    });
    let r = fsck(dir.path(), true);
    assert_eq!(r.status, FsckStatus::Damaged);
    assert!(!r.header_authenticated);
    assert_eq!(kinds(&r), ["header"]);
    assert!(r.levels.is_empty());
}

#[test]
fn repair_is_refused_while_the_audit_log_does_not_verify() {
    let (dir, v) = new_vault();
    v.audit_checkpoint().unwrap();
    drop(v);
    raw(dir.path(), |s| {
        let (k, v) = s.scan_prefix(&[keys::AUDIT_LEAVES]).next().unwrap().unwrap();
        let mut v = v.to_vec();
        v[26] ^= 1;
        let mut b = Batch::default();
        b.put(k, v);
        b.put(&keys::orphan(5000)[..], Vec::new());
        s.apply(b).unwrap();
    });
    let r = fsck(dir.path(), true);
    assert_eq!(kinds(&r), ["audit", "orphan_marker"]);
    let marker = r.problems.iter().find(|p| p.kind == ProblemKind::OrphanMarker).unwrap();
    assert_eq!(marker.repair, RepairState::Refused);
    assert!(Store::open(dir.path(), false).unwrap().contains(&keys::orphan(5000)).unwrap());
}

#[test]
fn hostile_store_content_is_reported_never_a_panic() {
    let (dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file()).unwrap().ino;
    v.write(f, 0, b"x").unwrap();
    v.sync().unwrap();
    drop(v);
    raw(dir.path(), |s| {
        let mut b = Batch::default();
        b.put(&keys::inode(900)[..], Vec::new());
        b.put(&keys::inode(901)[..], vec![3]);
        b.put(&keys::inode(902)[..], vec![0xFF, 1, 2]);
        b.put(&keys::inode(ROOT)[..], vec![1; 200]);
        b.put(vec![keys::INODE, 1], vec![1]);
        b.put(vec![keys::DIRENT, 9, 9], vec![]);
        b.put(keys::dirent(1, &[1; 16], &[2; 16]).to_vec(), vec![0; 10]);
        b.put(vec![keys::BLOCK, 1], vec![]);
        b.put(&keys::block(f, 0)[..], vec![0; 3]);
        b.put(vec![keys::XATTR, 0], vec![]);
        b.put(keys::xattr(f, &[0; 16]).to_vec(), vec![]);
        b.put(vec![keys::ORPHAN], vec![]);
        b.put(&keys::tombstone(0)[..], vec![1, 2, 3]);
        b.put(vec![keys::TOMBSTONE], vec![]);
        b.put(&b"Zzz"[..], vec![]);
        b.put(&b"Hx"[..], vec![]);
        b.put(keys::LOCKDOWN, vec![1]);
        b.put(keys::VAULT_POLICY, b"[levels.3]\nrequire_approval = false\n".to_vec());
        b.put(keys::INODE_COUNTER, vec![1, 2]);
        s.apply(b).unwrap();
    });
    for repair in [false, true] {
        let r = fsck(dir.path(), repair);
        assert_eq!(r.status, FsckStatus::Damaged);
        for k in [
            "inode_damaged",
            "malformed",
            "unknown_key",
            "entry_damaged",
            "block_damaged",
            "xattr_damaged",
            "tombstone_damaged",
        ] {
            assert!(kinds(&r).contains(&k), "{k} missing in {:?}", kinds(&r));
        }
        let policy = r.problems.iter().find(|p| p.message.contains("the vault's policy"));
        let policy = policy.expect("the forged vault policy is reported");
        assert!(policy.message.contains("failed authentication"), "{}", policy.message);
        assert_eq!(policy.repair, RepairState::None, "repair must not drop a policy");
        if repair {
            assert!(
                r.problems.iter().any(|p| p.kind == ProblemKind::Counter && p.repair == RepairState::Done)
            );
        }
    }
}

const ROOT: u64 = crate::vault::ROOT_INO;

#[test]
fn an_unnamed_inode_without_links_or_marker_is_deleted_with_its_content() {
    let (dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file()).unwrap().ino;
    v.write(f, 0, &[5; 9000]).unwrap();
    v.setxattr(f, b"user.a", b"1", crate::vault::XattrFlags::default()).unwrap();
    v.sync().unwrap();
    drop(v);
    raw(dir.path(), |s| {
        let (k, _) = s.scan_prefix(&[keys::DIRENT, 1]).next().unwrap().unwrap();
        let mut b = Batch::default();
        b.delete(k);
        s.apply(b).unwrap();
    });
    // Its name is gone and it claims none: deleted, whatever its block count says.
    reseal(dir.path(), f, |r| {
        r.nlink = 0;
        r.blocks = 99;
    });
    let r = fsck(dir.path(), false);
    assert_eq!(kinds(&r), ["orphan_inode"]);
    assert_eq!(fsck(dir.path(), true).status, FsckStatus::Repaired);
    assert_eq!(fsck(dir.path(), false).status, FsckStatus::Clean);
    let s = Store::open(dir.path(), false).unwrap();
    for prefix in [keys::inode(f), keys::block_prefix(f), keys::xattr_prefix(f)] {
        assert!(s.scan_prefix(&prefix).next().is_none());
    }
}

/// A damaged block version counter stops the mount (no write could get a
/// version); fsck names it, and `--repair` sets it past every stored
/// version, after which the vault mounts and writes again.
#[test]
fn a_damaged_version_counter_is_repaired_past_every_stored_version() {
    for bad in [vec![1, 2, 3], 5u64.to_be_bytes().to_vec()] {
        let (dir, v) = new_vault();
        let f = v.create(level_dir(1), b"f", file()).unwrap().ino;
        v.write(f, 0, &[5; 9000]).unwrap();
        v.sync().unwrap();
        drop(v);
        let stored = {
            let s = Store::open(dir.path(), false).unwrap();
            let (_, e) = s.scan_prefix(&keys::block_prefix(f)).next().unwrap().unwrap();
            crate::format::segment::IndexEntry::decode(&e).unwrap().version
        };
        raw(dir.path(), |s| s.put(keys::VERSION_COUNTER, bad.clone()).unwrap());
        let r = fsck(dir.path(), false);
        assert_eq!(kinds(&r), ["counter"], "{bad:?}");
        assert_eq!(r.problems[0].key, crate::format::hex(keys::VERSION_COUNTER));
        assert_eq!(fsck(dir.path(), true).status, FsckStatus::Repaired);
        assert_eq!(fsck(dir.path(), false).status, FsckStatus::Clean);
        let s = Store::open(dir.path(), false).unwrap();
        let v = s.get(keys::VERSION_COUNTER).unwrap().unwrap();
        assert!(u64::from_be_bytes(v[..].try_into().unwrap()) > stored);
        drop(s);
        let v = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
        v.write(f, 0, b"again").unwrap();
        assert_eq!(&v.read(f, 0, 5).unwrap(), b"again");
    }
}
