//! sled 0.34.7 writes a snapshot of its page table whenever an open finds
//! the log advanced: to `snap.<lsn>.generating`, fsync'd, then renamed to
//! `snap.<lsn>`. A process killed before the rename (passwd killed while it
//! opens the store, found by tests/passwd_crash.rs) left the `.generating`
//! file, which sled then read as the newest snapshot and refused to open
//! ("Read corrupted data at file offset None"). And because the file was
//! opened without truncation, a longer leftover of the same lsn put its tail
//! after the new checksum. The patch in vendor/sled fixes both
//! (vendor/README.md); these tests fail without it.
//!
//! Every open runs in a process of its own, as in the case it models (a
//! process killed, another opening after it): this test binary runs itself
//! with only `child_opens_the_database` selected. (Within one process a
//! closed database's file can stay locked: sled frees some of what it
//! holds only as threads go on working with it.)

use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = "SLED_SNAPSHOT_DIR";
const WRITE: &str = "SLED_SNAPSHOT_WRITE";
const EXPECT: &str = "SLED_SNAPSHOT_EXPECT";

/// The child's half: opens the database in `$SLED_SNAPSHOT_DIR` as vaultfs
/// does (no flusher thread), writes `$SLED_SNAPSHOT_WRITE` keys if set,
/// checks that `$SLED_SNAPSHOT_EXPECT` keys are there if set, and closes it.
#[test]
#[ignore = "run by the other tests, in a process of its own"]
fn child_opens_the_database() {
    let dir = PathBuf::from(std::env::var_os(DIR).expect("run by the other tests"));
    let number = |var: &str| std::env::var(var).ok().map(|v| v.parse::<u32>().unwrap());
    let db = sled::Config::new()
        .path(&dir)
        .flush_every_ms(None)
        .open()
        .unwrap_or_else(|e| panic!("sled refuses {}: {e}", dir.display()));
    if let Some(n) = number(WRITE) {
        for i in 0..n {
            db.insert(i.to_be_bytes(), vec![i as u8; 100]).unwrap();
        }
    }
    if let Some(n) = number(EXPECT) {
        assert_eq!(db.len(), n as usize);
        for i in 0..n {
            assert_eq!(db.get(i.to_be_bytes()).unwrap().as_deref(), Some(&vec![i as u8; 100][..]));
        }
    }
    db.flush().unwrap();
}

/// Opens `dir` in a new process, with the child's variables `vars`.
fn open_in_child(dir: &Path, vars: &[(&str, u32)]) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_opens_the_database", "--ignored", "--nocapture", "--test-threads=1"]);
    c.env(DIR, dir);
    for (k, v) in vars {
        c.env(k, v.to_string());
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child's open of {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn written(dir: &Path, n: u32) {
    open_in_child(dir, &[(WRITE, n)]);
}

fn check(dir: &Path, n: u32) {
    open_in_child(dir, &[(EXPECT, n)]);
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
    check(copy.path(), 500);
    let next =
        snapshots(copy.path()).into_iter().find(|p| !before.contains(p)).expect("the open writes a snapshot");
    // A killed earlier writer of that same snapshot left a longer file.
    let leftover = dir.path().join(format!("{}.generating", next.file_name().unwrap().to_string_lossy()));
    std::fs::write(&leftover, vec![0xA5; 1 << 20]).unwrap();
    check(dir.path(), 500); // writes the snapshot over the leftover
    assert!(!leftover.exists(), "the leftover was renamed into place");
    check(dir.path(), 500); // reads it
}
