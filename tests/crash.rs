//! Crash safety: kill -9 the mount daemon while writes are in flight, then
//! remount. Everything fsync'd before the kill must be intact, the store must
//! open, and every file must read back without an authentication error.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Mount, is_mounted, wait_for};

fn pattern(i: usize) -> Vec<u8> {
    let len = 1000 + (i * 7919) % 90_000;
    (0..len).map(|k| ((k * 17 + i * 29) % 253) as u8).collect()
}

/// Writes files until the mount dies; returns the indices whose fsync returned.
fn write_until_dead(dir: std::path::PathBuf, stop: Arc<AtomicBool>) -> Vec<usize> {
    let mut durable = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let r = (|| -> std::io::Result<()> {
            let mut f = File::create(dir.join(format!("f{i}")))?;
            f.write_all(&pattern(i))?;
            if i % 3 != 0 {
                f.sync_all()?;
            }
            Ok(())
        })();
        match r {
            Ok(()) if i % 3 != 0 => durable.push(i),
            Ok(()) => {}
            Err(_) => break,
        }
    }
    durable
}

#[test]
fn kill_dash_nine_loses_nothing_fsynced() {
    let mut m = Mount::new();
    for round in 0..3u64 {
        let dir = m.path("1-working").join(format!("round{round}"));
        fs::create_dir(&dir).unwrap();
        let pid = m.daemon_pid().expect("daemon pid file");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || write_until_dead(dir, stop))
        };
        std::thread::sleep(Duration::from_millis(600 + 500 * round));
        Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        stop.store(true, Ordering::Relaxed);
        let durable = writer.join().unwrap();
        assert!(!durable.is_empty(), "round {round}: nothing was written before the kill");
        // The kernel keeps a dead FUSE mount until it is detached.
        Command::new("umount").arg("-l").arg(&m.mnt).status().unwrap();
        assert!(wait_for(Duration::from_secs(10), || !is_mounted(&m.mnt)));
        assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
        m.mounted = false;
        m.mount();
        for &i in &durable {
            let got =
                fs::read(dir.join(format!("f{i}"))).unwrap_or_else(|e| panic!("round {round}: f{i}: {e}"));
            assert_eq!(got, pattern(i), "round {round}: fsync'd file f{i} damaged");
        }
        // Files not fsync'd may be missing or shorter, but must read without error.
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let i: usize = p.file_name().unwrap().to_str().unwrap()[1..].parse().unwrap();
            let want = pattern(i);
            assert!(
                got.len() <= want.len() && got[..] == want[..got.len()],
                "{} holds foreign bytes",
                p.display()
            );
        }
    }
}
