//! Crash safety under the durability contract (docs/SEMANTICS.md,
//! "Durability"): kill -9 the mount daemon while writes are in flight, then
//! remount, and check
//! - everything fsync'd before the kill is intact;
//! - everything written more than a commit interval before the kill is
//!   intact, fsync'd or not;
//! - everything else is whole or absent: a file's one write is all there
//!   or not there at all, never half, never foreign bytes;
//! - the audit log verifies and records exactly the changes present: a file
//!   exists if and only if its create is recorded, holds data if and only if
//!   its write is recorded.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Mount, is_mounted, vaultfs, wait_for};

/// The mount's commit interval here: short, so "settled" comes soon.
const COMMIT_MS: u64 = 200;

fn pattern(i: usize) -> Vec<u8> {
    let len = 1000 + (i * 7919) % 90_000;
    (0..len).map(|k| ((k * 17 + i * 29) % 253) as u8).collect()
}

/// Writes `name` with one write (one FUSE request: below the 1 MiB request size).
fn write_file(dir: &Path, i: usize, fsync: bool) -> std::io::Result<()> {
    let mut f = File::create(dir.join(format!("f{i}")))?;
    f.write_all(&pattern(i))?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Writes files from `first` on until the mount dies; returns the indices
/// whose fsync returned.
fn write_until_dead(dir: PathBuf, first: usize, stop: Arc<AtomicBool>) -> Vec<usize> {
    let mut durable = Vec::new();
    for i in first.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let fsync = i % 3 != 0;
        match write_file(&dir, i, fsync) {
            Ok(()) if fsync => durable.push(i),
            Ok(()) => {}
            Err(_) => break,
        }
    }
    durable
}

/// Per path: (creates, writes) recorded with result 0, from `.audit` text.
fn recorded_changes(audit: &str) -> BTreeMap<String, (usize, Vec<u64>)> {
    let mut out: BTreeMap<String, (usize, Vec<u64>)> = BTreeMap::new();
    for line in audit.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("audit line is JSON");
        if v["result"] != 0 {
            continue;
        }
        let (Some(op), Some(path)) = (v["op"].as_str(), v["path"].as_str()) else { continue };
        let e = out.entry(path.to_string()).or_default();
        match op {
            "create" => e.0 += 1,
            "write" => e.1.push(v["len"].as_u64().unwrap()),
            _ => {}
        }
    }
    out
}

fn kill_and_remount(m: &mut Mount, pid: i32) {
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    // The kernel keeps a dead FUSE mount until it is detached.
    assert!(wait_for(Duration::from_secs(10), || !Path::new(&format!("/proc/{pid}")).exists()));
    Command::new("umount").arg("-l").arg(&m.mnt).status().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !is_mounted(&m.mnt)));
    m.mounted = false;
    m.mount();
}

#[test]
fn kill_dash_nine_keeps_the_durability_contract() {
    let commit = format!("commit={COMMIT_MS}");
    let mut m = Mount::with_options(&[&commit]);
    for round in 0..3usize {
        let rel = format!("1-working/round{round}");
        let dir = m.path(&rel);
        fs::create_dir(&dir).unwrap();
        let pid = m.daemon_pid().expect("daemon pid file");
        // Settled: written without fsync, then left for five commit intervals.
        const SETTLED: usize = 30;
        for i in 0..SETTLED {
            write_file(&dir, i, false).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5 * COMMIT_MS));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || write_until_dead(dir, SETTLED, stop))
        };
        std::thread::sleep(Duration::from_millis(400 + 300 * round as u64));
        stop.store(true, Ordering::Relaxed);
        kill_and_remount(&mut m, pid);
        let durable = writer.join().unwrap();
        assert!(!durable.is_empty(), "round {round}: nothing was fsync'd before the kill");

        for i in (0..SETTLED).chain(durable.iter().copied()) {
            let got =
                fs::read(dir.join(format!("f{i}"))).unwrap_or_else(|e| panic!("round {round}: f{i}: {e}"));
            assert_eq!(got, pattern(i), "round {round}: settled or fsync'd file f{i} damaged");
        }
        let audit = fs::read_to_string(m.path(".audit")).unwrap();
        let changes = recorded_changes(&audit);
        let mut present = 0;
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let i: usize = name[1..].parse().unwrap();
            let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(got.is_empty() || got == pattern(i), "round {round}: {name} is neither whole nor empty");
            let (creates, writes) = changes.get(&format!("/{rel}/{name}")).cloned().unwrap_or_default();
            assert_eq!(creates, 1, "round {round}: {name} exists, its create is recorded {creates} times");
            match got.is_empty() {
                true => {
                    assert!(writes.is_empty(), "round {round}: {name} is empty, writes recorded: {writes:?}")
                }
                false => assert_eq!(writes, vec![got.len() as u64], "round {round}: {name}'s write records"),
            }
            present += 1;
        }
        // And no recorded change is missing from the files.
        let prefix = format!("/{rel}/");
        let recorded = changes
            .iter()
            .filter(|(p, (creates, writes))| p.starts_with(&prefix) && (*creates > 0 || !writes.is_empty()))
            .count();
        assert_eq!(recorded, present, "round {round}: changes recorded for files that are not there");
        // The log itself verifies, as a copy would with the public key alone.
        let copy = m.dir.path().join(format!("audit-{round}.copy"));
        fs::write(&copy, &audit).unwrap();
        let key = String::from_utf8(vaultfs(&["audit", "pubkey", m.store.to_str().unwrap()]).stdout).unwrap();
        let out = vaultfs(&["audit", "verify", "--file", copy.to_str().unwrap(), "--pubkey", key.trim()]);
        assert!(
            out.status.success(),
            "round {round}: audit copy fails: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Changes written without fsync are on disk once a commit interval has
/// passed: a few small files, no fsync anywhere, then the kill. They sit
/// in the store's overlay until the committer hands them to sled; a
/// committer that never did would lose them here.
#[test]
fn changes_older_than_the_commit_interval_survive() {
    let commit = format!("commit={COMMIT_MS}");
    let mut m = Mount::with_options(&[&commit]);
    let dir = m.path("1-working/settled");
    fs::create_dir(&dir).unwrap();
    let pid = m.daemon_pid().expect("daemon pid file");
    for i in 0..8 {
        fs::write(dir.join(format!("s{i}")), format!("settled {i}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(5 * COMMIT_MS));
    kill_and_remount(&mut m, pid);
    for i in 0..8 {
        let got = fs::read_to_string(dir.join(format!("s{i}"))).unwrap_or_else(|e| panic!("s{i}: {e}"));
        assert_eq!(got, format!("settled {i}"));
    }
}

/// `-o sync`: every acknowledged change is on disk at its reply, fsync or not.
#[test]
fn with_sync_every_acknowledged_write_survives() {
    let mut m = Mount::with_options(&["sync"]);
    let dir = m.path("1-working/sync");
    fs::create_dir(&dir).unwrap();
    let pid = m.daemon_pid().expect("daemon pid file");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) || write_file(&dir, i, false).is_err() {
                    break;
                }
                acknowledged.push(i);
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    kill_and_remount(&mut m, pid);
    let acknowledged = writer.join().unwrap();
    assert!(!acknowledged.is_empty(), "nothing was written before the kill");
    for i in acknowledged {
        let got = fs::read(dir.join(format!("f{i}"))).unwrap_or_else(|e| panic!("f{i}: {e}"));
        assert_eq!(got, pattern(i), "acknowledged file f{i} damaged under -o sync");
    }
}
