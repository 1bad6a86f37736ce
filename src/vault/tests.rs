use super::*;
use crate::crypto::KdfParams;

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.as_bytes().to_vec())
}

fn new_vault() -> (tempfile::TempDir, Vault<Unlocked>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions { kdf: FAST_KDF, block_size: 4096 };
    Vault::init(dir.path(), &pass("pw"), opts).unwrap();
    let v = Vault::open(dir.path()).unwrap().unlock(&pass("pw")).unwrap();
    (dir, v)
}

fn file(uid: u32) -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid, gid: uid, rdev: 0 }
}

fn dir_spec() -> NewNode {
    NewNode { kind: FileKind::Dir, perm: 0o755, uid: 0, gid: 0, rdev: 0 }
}

#[test]
fn create_write_read_reopen() {
    let (dir, v) = new_vault();
    let a = v.create(level_dir(1), b"prefs.md", file(1000)).unwrap();
    assert_eq!(a.level, Some(1));
    v.write(a.ino, 0, b"user prefers tabs\n").unwrap();
    assert_eq!(v.read(a.ino, 0, 100).unwrap(), b"user prefers tabs\n");
    drop(v);
    let v = Vault::open(dir.path()).unwrap().unlock(&pass("pw")).unwrap();
    let b = v.lookup(level_dir(1), b"prefs.md").unwrap();
    assert_eq!(b.ino, a.ino);
    assert_eq!(b.size, 18);
    assert_eq!(v.read(b.ino, 5, 7).unwrap(), b"prefers");
}

#[test]
fn wrong_passphrase_is_refused() {
    let (dir, v) = new_vault();
    drop(v);
    let e = Vault::open(dir.path()).unwrap().unlock(&pass("nope")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
}

#[test]
fn refuses_to_overwrite() {
    let (dir, v) = new_vault();
    drop(v);
    let e = Vault::init(dir.path(), &pass("x"), InitOptions { kdf: FAST_KDF, block_size: 4096 }).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VaultExists);
}

#[test]
fn level_zero_is_gone_after_reopen() {
    let (dir, v) = new_vault();
    let a = v.create(level_dir(0), b"scratch", file(0)).unwrap();
    v.write(a.ino, 0, b"temporary").unwrap();
    v.create(level_dir(0), b"sub", dir_spec()).unwrap();
    assert_eq!(v.getattr(level_dir(0)).unwrap().nlink, 3);
    drop(v);
    let v = Vault::open(dir.path()).unwrap().unlock(&pass("pw")).unwrap();
    assert_eq!(v.lookup(level_dir(0), b"scratch").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(v.readdir(level_dir(0), 0, 100).unwrap().is_empty());
    assert_eq!(v.getattr(level_dir(0)).unwrap().nlink, 2);
    assert_eq!(v.getattr(a.ino).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn namespace_rules() {
    let (_dir, v) = new_vault();
    let w = level_dir(1);
    let d = v.create(w, b"d", dir_spec()).unwrap();
    let f = v.create(d.ino, b"f", file(0)).unwrap();
    assert_eq!(v.create(d.ino, b"f", file(0)).unwrap_err().kind(), ErrorKind::Exists);
    assert_eq!(v.rmdir(w, b"d").unwrap_err().kind(), ErrorKind::NotEmpty);
    assert_eq!(v.unlink(w, b"d").unwrap_err().kind(), ErrorKind::IsDir);
    assert_eq!(v.rmdir(d.ino, b"f").unwrap_err().kind(), ErrorKind::NotDir);
    assert_eq!(
        v.rename(w, b"d", d.ino, b"x", RenameFlags::default()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        v.rename(d.ino, b"f", level_dir(2), b"f", RenameFlags::default()).unwrap_err().kind(),
        ErrorKind::CrossLevel
    );
    assert_eq!(v.link(f.ino, level_dir(3), b"f").unwrap_err().kind(), ErrorKind::CrossLevel);
    assert_eq!(v.create(ROOT_INO, b"x", file(0)).unwrap_err().kind(), ErrorKind::NotPermitted);
    assert_eq!(v.rmdir(ROOT_INO, b"1-working").unwrap_err().kind(), ErrorKind::NotPermitted);
    assert_eq!(
        v.rename(ROOT_INO, b"1-working", ROOT_INO, b"y", RenameFlags::default()).unwrap_err().kind(),
        ErrorKind::NotPermitted
    );
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert_eq!(v.create(w, bad, file(0)).unwrap_err().kind(), ErrorKind::InvalidName);
    }
    assert_eq!(v.create(w, &[b'a'; 256], file(0)).unwrap_err().kind(), ErrorKind::NameTooLong);
    v.create(w, &[b'a'; 255], file(0)).unwrap();
    assert_eq!(
        v.write(f.ino, crate::block::MAX_FILE_SIZE, b"x").unwrap_err().kind(),
        ErrorKind::FileTooLarge
    );
    // Hard link, then unlink both names: content lives until evict.
    v.link(f.ino, w, b"hard").unwrap();
    assert_eq!(v.getattr(f.ino).unwrap().nlink, 2);
    v.write(f.ino, 0, b"data").unwrap();
    v.unlink(d.ino, b"f").unwrap();
    v.unlink(w, b"hard").unwrap();
    assert_eq!(v.read(f.ino, 0, 10).unwrap(), b"data");
    v.evict(f.ino).unwrap();
    assert_eq!(v.getattr(f.ino).unwrap_err().kind(), ErrorKind::NotFound);
    v.rmdir(w, b"d").unwrap();
    assert_eq!(v.getattr(w).unwrap().nlink, 2);
}

#[test]
fn rename_replace_and_exchange() {
    let (_dir, v) = new_vault();
    let w = level_dir(1);
    let a = v.create(w, b"a", file(0)).unwrap();
    let b = v.create(w, b"b", file(0)).unwrap();
    let noreplace = RenameFlags { no_replace: true, exchange: false };
    assert_eq!(v.rename(w, b"a", w, b"b", noreplace).unwrap_err().kind(), ErrorKind::Exists);
    let exchange = RenameFlags { no_replace: false, exchange: true };
    v.rename(w, b"a", w, b"b", exchange).unwrap();
    assert_eq!(v.lookup(w, b"a").unwrap().ino, b.ino);
    assert_eq!(v.lookup(w, b"b").unwrap().ino, a.ino);
    v.rename(w, b"a", w, b"b", RenameFlags::default()).unwrap();
    assert_eq!(v.lookup(w, b"b").unwrap().ino, b.ino);
    assert_eq!(v.lookup(w, b"a").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(v.getattr(a.ino).unwrap().nlink, 0);
    let d1 = v.create(w, b"d1", dir_spec()).unwrap();
    let d2 = v.create(w, b"d2", dir_spec()).unwrap();
    v.rename(w, b"d1", d2.ino, b"d1", RenameFlags::default()).unwrap();
    assert_eq!(v.getattr(w).unwrap().nlink, 3);
    assert_eq!(v.getattr(d2.ino).unwrap().nlink, 3);
    assert_eq!(v.lookup(d2.ino, b"d1").unwrap().ino, d1.ino);
}

#[test]
fn readdir_pages_with_cookies() {
    let (_dir, v) = new_vault();
    let w = level_dir(1);
    for i in 0..50 {
        v.create(w, format!("f{i}").as_bytes(), file(0)).unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = v.readdir(w, after, 7).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().cookie;
        seen.extend(page.into_iter().map(|e| e.name));
    }
    seen.sort();
    let mut want: Vec<Vec<u8>> = (0..50).map(|i| format!("f{i}").into_bytes()).collect();
    want.sort();
    assert_eq!(seen, want);
    let root: Vec<_> = v.readdir(ROOT_INO, 0, 100).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(root.len(), 6);
}

#[test]
fn xattrs_and_setattr() {
    let (_dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file(0)).unwrap();
    v.setxattr(f.ino, b"user.k", b"v1", XattrFlags::default()).unwrap();
    let create = XattrFlags { create: true, replace: false };
    assert_eq!(v.setxattr(f.ino, b"user.k", b"v2", create).unwrap_err().kind(), ErrorKind::Exists);
    assert_eq!(v.getxattr(f.ino, b"user.k").unwrap(), b"v1");
    assert_eq!(v.listxattr(f.ino).unwrap(), vec![b"user.k".to_vec()]);
    // A file with none answers from one probe of its key range; its
    // neighbour's attributes are not its own; ACL names are refused first.
    let g = v.create(level_dir(1), b"g", file(0)).unwrap();
    assert_eq!(v.getxattr(g.ino, b"user.k").unwrap_err().kind(), ErrorKind::NoData);
    assert_eq!(v.getxattr(g.ino, b"security.selinux").unwrap_err().kind(), ErrorKind::NoData);
    assert_eq!(v.listxattr(g.ino).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(v.getxattr(g.ino, b"system.posix_acl_access").unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(v.getxattr(f.ino, b"user.other").unwrap_err().kind(), ErrorKind::NoData);
    v.removexattr(f.ino, b"user.k").unwrap();
    assert_eq!(v.getxattr(f.ino, b"user.k").unwrap_err().kind(), ErrorKind::NoData);
    assert_eq!(v.listxattr(f.ino).unwrap(), Vec::<Vec<u8>>::new());
    v.write(f.ino, 0, &[7u8; 10000]).unwrap();
    let a = v.setattr(f.ino, &SetAttr { size: Some(5000), ..Default::default() }).unwrap();
    assert_eq!(a.size, 5000);
    assert_eq!(a.blocks, 2 * 8);
    let a = v.setattr(f.ino, &SetAttr { size: Some(20000), ..Default::default() }).unwrap();
    assert_eq!(a.size, 20000);
    let data = v.read(f.ino, 0, 20000).unwrap();
    assert!(data[..5000].iter().all(|&b| b == 7) && data[5000..].iter().all(|&b| b == 0));
    let t = Timestamp { secs: 1_000_000_000, nanos: 123_456_789 };
    let a = v
        .setattr(f.ino, &SetAttr { mtime: Some(TimeSet::At(t)), perm: Some(0o600), ..Default::default() })
        .unwrap();
    assert_eq!((a.mtime, a.perm), (t, 0o600));
    assert_eq!(
        v.setattr(level_dir(2), &SetAttr { perm: Some(0o777), ..Default::default() }).unwrap_err().kind(),
        ErrorKind::NotPermitted
    );
    v.setattr(level_dir(1), &SetAttr { perm: Some(0o700), ..Default::default() }).unwrap();
}

#[test]
fn passphrase_change() {
    let (dir, v) = new_vault();
    drop(v);
    Vault::open(dir.path()).unwrap().change_passphrase(&pass("pw"), &pass("new")).unwrap();
    assert_eq!(
        Vault::open(dir.path()).unwrap().unlock(&pass("pw")).err().unwrap().kind(),
        ErrorKind::WrongPassphrase
    );
    Vault::open(dir.path()).unwrap().unlock(&pass("new")).unwrap();
}

/// fsx-style random overwrites of one file: once collected, the segment
/// files stay within 1.5x the live records plus the active segment, and
/// every byte reads back as written.
#[test]
fn random_overwrites_stay_within_the_space_bound() {
    let (_dir, v) = new_vault();
    let f = v.create(level_dir(1), b"churn", file(0)).unwrap();
    const SIZE: usize = 8 << 20;
    let mut model = vec![0u8; SIZE];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    v.write(f.ino, 0, &model).unwrap();
    for round in 0..1200u64 {
        let len = 1 + (next() % (128 << 10)) as usize;
        let off = (next() % (SIZE - len) as u64) as usize;
        let data: Vec<u8> = (0..len).map(|i| (round as usize + i) as u8).collect();
        v.write(f.ino, off as u64, &data).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    let core = v.core();
    core.collect_all().unwrap();
    let (segments, _) = core.store.segments().unwrap();
    // Collected here or by the mount's own collector thread meanwhile.
    let newest = segments.last().unwrap().0;
    assert!(newest > segments.len() as u64, "80 MiB of overwrites in {newest} segments, none collected");
    let total: u64 = segments.iter().map(|s| s.1).sum();
    let live: u64 = crate::block::gc::live_bytes(&core.store, 4096).unwrap().values().sum();
    assert!(
        total <= live + live / 2 + crate::store::SEGMENT_BYTES,
        "segments hold {total} bytes for {live} live bytes"
    );
    assert!(v.read(f.ino, 0, SIZE).unwrap() == model, "content changed by collection");
    drop(v);
}

#[test]
fn a_change_carries_its_record_into_its_batch() {
    let (_dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file(0)).unwrap();
    let rec = |op| Record::offline(op, b"test", Some(1), f.ino, b"/1-working/f".to_vec(), 0);
    let carried = |c: &Vault<Unlocked>| c.ticket().is_some_and(Ticket::holds_record);
    let code = |_: &Error| 5;
    let size = v.audit_size();

    // A write through the vault `audited` hands over takes the record into its batch.
    let still = v.audited(rec(AuditOp::Write), false, code, |c| c.write(f.ino, 0, b"x").map(|_| carried(c)));
    assert!(!still.unwrap().unwrap());
    assert_eq!(v.audit_size(), size + 1);

    // A write that fails leaves it, for `audited` to append with the result.
    let failed = |c: &Vault<Unlocked>| c.write(u64::MAX / 2, 0, b"x").map_err(|_| carried(c));
    let still = v.audited(rec(AuditOp::Write), false, |_: &bool| 5, failed);
    assert!(still.unwrap().unwrap_err());
    assert_eq!(v.audit_size(), size + 2);

    // Only the handed-over vault carries it: neither the vault it came from nor a clone.
    let still = v.audited(rec(AuditOp::Write), false, code, |c| {
        assert!(v.ticket().is_none() && c.clone().ticket().is_none());
        v.write(f.ino, 0, b"y").map(|_| carried(c))
    });
    assert!(still.unwrap().unwrap());
    assert_eq!(v.audit_size(), size + 3);
    assert!(v.audit_verify().is_ok());
}

#[test]
fn access_decides_mode_bits_sticky_directories_and_owner_rules() {
    let (_dir, v) = new_vault();
    let sticky = NewNode { perm: 0o1777, ..dir_spec() };
    let d = v.create(level_dir(1), b"tmp", sticky).unwrap();
    let f = v.create(d.ino, b"f", NewNode { perm: 0o640, ..file(1000) }).unwrap();
    let as_ = |uid, gid| v.access(Who::new(uid, gid, 0), OwnerMap::default());
    let kind = |r: Result<()>| r.map_err(|e| e.kind());

    assert_eq!(kind(as_(1001, 1001).permit(f.ino, MAY_READ)), Err(ErrorKind::AccessDenied));
    assert_eq!(kind(as_(1001, 1000).permit(f.ino, MAY_READ)), Ok(()), "the group may read");
    assert_eq!(kind(as_(1001, 1000).permit(f.ino, MAY_WRITE)), Err(ErrorKind::AccessDenied));
    assert_eq!(kind(as_(0, 0).permit(f.ino, MAY_READ | MAY_WRITE)), Ok(()));
    assert_eq!(kind(as_(0, 0).permit(f.ino, MAY_EXEC)), Err(ErrorKind::AccessDenied), "no x bit at all");

    // Anyone may add to the sticky directory; only the file's owner (or the directory's, or root) removes.
    assert_eq!(kind(as_(1001, 1001).change_in(d.ino)), Ok(()));
    assert_eq!(kind(as_(1001, 1001).remove(d.ino, b"f")), Err(ErrorKind::NotPermitted));
    assert_eq!(kind(as_(1000, 1000).remove(d.ino, b"f")), Ok(()));
    assert_eq!(kind(as_(0, 0).remove(d.ino, b"f")), Ok(()));

    let chmod = AttrChange { mode: Some(0o600), ..Default::default() };
    assert_eq!(as_(1001, 1000).setattr(f.ino, &chmod).unwrap_err().kind(), ErrorKind::NotPermitted);
    assert_eq!(as_(1000, 1000).setattr(f.ino, &chmod).unwrap(), Some(0o600));

    // `-o uid=`: the presented owner is the one the rules see.
    let mapped = v.access(Who::new(1001, 1001, 0), OwnerMap { uid: Some(1001), gid: None });
    assert_eq!(kind(mapped.permit(f.ino, MAY_READ | MAY_WRITE)), Ok(()));
    assert_eq!(kind(mapped.remove(d.ino, b"f")), Ok(()));
}

#[test]
fn an_open_passes_the_level_gate_mode_bits_justification_budget_and_approval_in_order() {
    let (_dir, v) = new_vault();
    let owner = v.owner_uid();
    let private = v.create(level_dir(2), b"p", NewNode { perm: 0o600, ..file(owner) }).unwrap();
    let sealed = v.create(level_dir(3), b"s", NewNode { perm: 0o600, ..file(owner) }).unwrap();
    let asked = std::cell::Cell::new(0);
    let open = |uid, a: &Attr, why: &[u8]| {
        let access = v.access(Who::new(uid, uid, 0), OwnerMap::default());
        let describe = || {
            asked.set(asked.get() + 1);
            (b"agent".to_vec(), b"/3-sealed/s".to_vec())
        };
        access.open(a.ino, a.level, MAY_READ, why, describe).map_err(|e| e.kind())
    };
    assert_eq!(open(owner, &private, b""), Ok(()));
    // Level 2 is the owner's alone: another uid is stopped at the gate, before its mode bits.
    assert_eq!(open(owner + 1, &private, b""), Err(ErrorKind::AccessDenied));

    let policy = "[levels.3]\nrequire_justification = true\napproval_timeout = \"1s\"\n\
                  [rate_limit]\nopens_per_minute = 3\n";
    assert_eq!(v.reload_policy(Ok(policy.into())), None);
    // No justification: refused before the budget or a human is asked.
    assert_eq!(open(owner, &sealed, b""), Err(ErrorKind::AccessDenied));
    assert_eq!(asked.get(), 0);
    // Justified: it spends one open of the budget, then waits for a human, who never answers.
    assert_eq!(open(owner, &sealed, b"summarize the notes"), Err(ErrorKind::AccessDenied));
    assert_eq!(asked.get(), 1);
    assert_eq!(open(owner, &private, b""), Ok(()));
    assert_eq!(open(owner, &private, b""), Ok(()));
    assert_eq!(open(owner, &private, b""), Err(ErrorKind::RateLimited), "three opens a minute");
}

#[test]
fn records_waiting_for_a_backup_snapshot_stay_bounded() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    const N: u64 = 400_000;
    let (_dir, v) = new_vault();
    let f = v.create(level_dir(1), b"f", file(0)).unwrap();
    let core = v.core();
    let read = || Record::offline(AuditOp::Read, b"reader", Some(1), f.ino, b"/1-working/f".to_vec(), 4096);
    let frozen = core.store.freeze();
    // The thread holding the snapshot is never held back by its own backlog.
    for _ in 0..3 {
        v.record(read(), 0, false).unwrap();
    }
    let appended = AtomicU64::new(0);
    std::thread::scope(|s| {
        let recorder = s.spawn(|| {
            for _ in 0..N {
                v.record(read(), 0, false).unwrap();
                appended.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Until the recorder is done or has stopped moving.
        let (mut seen, mut since) = (0, Instant::now());
        while appended.load(Ordering::SeqCst) < N && since.elapsed() < Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(10));
            let now = appended.load(Ordering::SeqCst);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
        // 400,000 records are some 30 MB: the recorder waits at the bound.
        assert!(appended.load(Ordering::SeqCst) < N, "the backlog grew without bound");
        assert!(core.audit.pending_bytes() <= audit::MAX_FROZEN_BACKLOG + 4096);
        drop(frozen);
        recorder.join().unwrap();
    });
    assert_eq!(appended.load(Ordering::SeqCst), N);
    v.sync().unwrap();
    assert_eq!(core.audit.pending_bytes(), 0);
    assert!(v.audit_verify().unwrap().leaves >= N);
}
