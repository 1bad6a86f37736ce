//! Archives of a real vault (no mount): round trip through restore, and
//! consistency of snapshots taken while writers keep going.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::crypto::{KdfParams, Passphrase, VerifyingKey};
use crate::vault::{AuditOp, Caller, FileKind, InitOptions, NewNode, Record, Unlocked, Vault, level_dir};

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };

fn pass() -> Passphrase {
    Passphrase::new(b"pw".to_vec())
}

fn new_vault() -> (tempfile::TempDir, Vault<Unlocked>) {
    let dir = tempfile::tempdir().unwrap();
    Vault::init(dir.path(), &pass(), InitOptions { kdf: FAST_KDF, block_size: 4096 }).unwrap();
    let v = Vault::open(dir.path()).unwrap().unlock(&pass()).unwrap();
    (dir, v)
}

fn file() -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 }
}

fn archive_of(v: &Vault<Unlocked>) -> (Vec<u8>, Made) {
    let mut out = Vec::new();
    let made = write_archive(v, &mut out, &mut |_, _| {}).unwrap();
    assert_eq!(made.bytes, out.len() as u64);
    (out, made)
}

fn pinned(v: &Vault<Unlocked>) -> Expect {
    Expect { pubkey: Some(VerifyingKey(v.header().audit_public)), not_older_than: None }
}

#[test]
fn archive_restores_to_an_equal_vault() {
    let (dir, v) = new_vault();
    let a = v.create(level_dir(1), b"a.md", file()).unwrap();
    v.write(a.ino, 0, b"alpha").unwrap();
    let b = v.create(level_dir(2), b"b.bin", file()).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    v.write(b.ino, 0, &big).unwrap();
    // Recorded changes: their records wait in audit slots until the
    // snapshot's commit packs them (the archive carries the stale slots).
    for i in 0..3u64 {
        let rec = Record {
            who: Caller { uid: 0, gid: 0, pid: 1 },
            comm: b"test".to_vec(),
            op: AuditOp::Write,
            level: Some(1),
            ino: a.ino,
            path: b"/1-working/a.md".to_vec(),
            offset: i,
            len: 1,
            note: Vec::new(),
        };
        v.audited(rec, false, |_: &crate::vault::Error| 5, |v| v.write(a.ino, 5 + i, b"!")).unwrap().unwrap();
    }
    let (bytes, made) = archive_of(&v);
    let (mut reader, _) = archive::Reader::open(&bytes[..]).unwrap();
    let mut slots = 0;
    while let Some((k, _)) = reader.next_record().unwrap() {
        slots += usize::from(k[0] == crate::format::keys::AUDIT_SLOT);
    }
    // The three above and the unlock's (stored at once: `make_durable`).
    assert_eq!(slots, 4);
    let checked = verify_bytes(&bytes, &pinned(&v)).unwrap();
    assert_eq!(checked.checkpoint.size, made.tree_size);
    assert_eq!(checked.trailer.count, made.records);
    assert!(!bytes.windows(5).any(|w| w == b"alpha") && !bytes.windows(4).any(|w| w == b"a.md"));

    let path = dir.path().join("a.vfsbak");
    std::fs::write(&path, &bytes).unwrap();
    let target = dir.path().join("restored");
    let r = restore(&path, Target::Directory(&target), &pinned(&v), &mut |_, _, _| {}).unwrap();
    assert_eq!(r.records, made.records);
    let w = Vault::open(&target).unwrap().unlock(&pass()).unwrap();
    let a2 = w.lookup(level_dir(1), b"a.md").unwrap();
    assert_eq!(w.read(a2.ino, 0, 100).unwrap(), b"alpha!!!");
    let b2 = w.lookup(level_dir(2), b"b.bin").unwrap();
    assert_eq!(w.read(b2.ino, 0, big.len() + 1).unwrap(), big);
    // The restored log is the archived one plus the restored vault's unlock.
    assert_eq!(w.audit_verify().unwrap().leaves, made.tree_size + 1);
    // Never over a vault.
    assert!(matches!(restore(&path, Target::Directory(&target), &pinned(&v), &mut |_, _, _| {}), Err(Error::Exists(_))));
}

#[test]
fn snapshots_under_concurrent_writers_are_consistent() {
    let (dir, v) = new_vault();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u8)
        .map(|t| {
            let (v, stop) = (v.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{t}-{i}");
                    let a = v.create(level_dir(1), name.as_bytes(), file()).unwrap();
                    v.write(a.ino, 0, &vec![t; 9000]).unwrap();
                    v.sync().unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut last = None;
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (bytes, made) = archive_of(&v);
        // Frontier, stored checkpoints and leaf count all agree with the
        // signed checkpoint: the store did not move during the copy.
        let checked = verify_bytes(&bytes, &pinned(&v)).unwrap();
        assert_eq!(checked.checkpoint.size, made.tree_size);
        last = Some(bytes);
    }
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    let path = dir.path().join("last.vfsbak");
    std::fs::write(&path, last.unwrap()).unwrap();
    let target = dir.path().join("restored");
    restore(&path, Target::Directory(&target), &Expect::default(), &mut |_, _, _| {}).unwrap();
    let w = Vault::open(&target).unwrap().unlock(&pass()).unwrap();
    // Every leaf, node and checkpoint recomputes (and every file reads whole).
    w.audit_verify().unwrap();
    for t in 0..4u8 {
        for i in 0.. {
            let Ok(a) = w.lookup(level_dir(1), format!("w{t}-{i}").as_bytes()) else { break };
            let data = w.read(a.ino, 0, 10_000).unwrap();
            assert!(data.is_empty() || data == vec![t; 9000], "w{t}-{i}: {} bytes", data.len());
        }
    }
}

/// The snapshot's pause and the archive's size for a vault of about 100 MiB
/// (docs/ADMIN.md). `cargo test --release --lib backup::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_snapshot_pause() {
    let (dir, v) = new_vault();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for f in 0..100 {
        let a = v.create(level_dir(1), format!("f{f}").as_bytes(), file()).unwrap();
        v.write(a.ino, 0, &chunk).unwrap();
    }
    for f in 0..2000 {
        let a = v.create(level_dir(1), format!("small{f}").as_bytes(), file()).unwrap();
        v.write(a.ino, 0, &chunk[..2000]).unwrap();
    }
    v.sync().unwrap();
    let on_disk = dir.path().join("db");
    for round in 0..3 {
        let file = tempfile::tempfile_in(dir.path()).unwrap();
        let t = std::time::Instant::now();
        let made = write_archive(&v, &file, &mut |_, _| {}).unwrap();
        println!(
            "round {round}: {} records, archive {} bytes, store {} bytes on disk, pause {:?}, total {:?}",
            made.records,
            made.bytes,
            du(&on_disk),
            made.pause,
            t.elapsed()
        );
    }
}

fn du(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}
