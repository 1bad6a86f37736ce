//! sled 0.34.7 writes a snapshot of its page table whenever an open finds
//! the log advanced: to `snap.<lsn>.generating`, fsync'd, then renamed to
//! `snap.<lsn>`. A process killed before the rename (passwd killed while it
//! opens the store, found by tests/passwd_crash.rs) left the `.generating`
//! file, which sled then read as the newest snapshot and refused to open
//! ("Read corrupted data at file offset None"). And because the file was
//! opened without truncation, a longer leftover of the same lsn put its tail
//! after the new checksum. The patch in vendor/sled fixes both
//! (vendor/README.md); these tests fail without it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Opens as vaultfs does (no flusher thread). A database just dropped may
/// still hold its file lock for a moment (sled's pool finishing a write),
/// so the lock alone is waited for.
fn open(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("sled refuses {}: {e}", dir.display()),
        }
    }
}

/// A database with some content, closed, whose next open writes a snapshot.
fn written(dir: &Path, n: u32) {
    let db = open(dir);
    for i in 0..n {
        db.insert(i.to_be_bytes(), vec![i as u8; 100]).unwrap();
    }
    db.flush().unwrap();
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("snap."))
        .collect();
    v.sort();
    v
}

fn check(dir: &Path, n: u32) {
    let db = open(dir);
    assert_eq!(db.len(), n as usize);
    for i in 0..n {
        assert_eq!(db.get(i.to_be_bytes()).unwrap().as_deref(), Some(&vec![i as u8; 100][..]));
    }
}

#[test]
fn a_snapshot_left_half_written_by_a_killed_open_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 500);
    check(dir.path(), 500); // writes snap.<lsn>
    // What a kill mid-write leaves: a name that sorts after every complete
    // snapshot, with a part of one in it.
    let complete = snapshots(dir.path()).pop().expect("a snapshot");
    let bytes = std::fs::read(&complete).unwrap();
    let torn = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    check(dir.path(), 500);
    check(dir.path(), 500);
}

#[test]
fn a_longer_leftover_of_the_same_lsn_does_not_spoil_the_next_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 500);
    // Which snapshot the next open writes: learn it on a copy.
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, copy.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let before = snapshots(copy.path());
    drop(open(copy.path()));
    let next =
        snapshots(copy.path()).into_iter().find(|p| !before.contains(p)).expect("the open writes a snapshot");
    // A killed earlier writer of that same snapshot left a longer file.
    let leftover = dir.path().join(format!("{}.generating", next.file_name().unwrap().to_string_lossy()));
    std::fs::write(&leftover, vec![0xA5; 1 << 20]).unwrap();
    check(dir.path(), 500); // writes the snapshot over the leftover
    assert!(!leftover.exists(), "the leftover was renamed into place");
    check(dir.path(), 500); // reads it
}
