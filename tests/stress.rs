//! Concurrency through a real mount: parallel writers, parallel appenders to
//! one file, and a timed mixed load that must finish (no deadlock) with every
//! file's content intact.

mod common;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Mount;

/// Deterministic content for writer `t`, round `r`.
fn pattern(t: usize, r: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + t * 7 + r * 13) % 251) as u8).collect()
}

/// Panics if `f` does not finish within `limit` (a deadlock would hang CI).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("did not finish within {limit:?}: deadlock?"))
}

#[test]
fn eight_writers_and_four_appenders() {
    let mut m = Mount::new();
    let dir = m.path("1-working");
    let d = dir.clone();
    within(Duration::from_secs(120), move || {
        let mut handles = Vec::new();
        for t in 0..8 {
            let d = d.clone();
            handles.push(std::thread::spawn(move || {
                for r in 0..20 {
                    let data = pattern(t, r, 50_000 + r * 1000);
                    let p = d.join(format!("w{t}"));
                    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&p).unwrap();
                    f.write_all(&data).unwrap();
                }
            }));
        }
        for t in 0..4 {
            let d = d.clone();
            handles.push(std::thread::spawn(move || {
                let mut f = OpenOptions::new().create(true).append(true).open(d.join("log")).unwrap();
                for r in 0..250 {
                    // One write(2) per record, so records never interleave.
                    f.write_all(format!("appender {t} record {r:04}\n").as_bytes()).unwrap();
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let check = |dir: &PathBuf| {
        for t in 0..8 {
            assert_eq!(fs::read(dir.join(format!("w{t}"))).unwrap(), pattern(t, 19, 50_000 + 19 * 1000));
        }
        let log = fs::read_to_string(dir.join("log")).unwrap();
        let mut counts: HashMap<usize, Vec<usize>> = HashMap::new();
        for line in log.lines() {
            let w: Vec<&str> = line.split(' ').collect();
            assert_eq!(w.len(), 4, "torn record {line:?}");
            counts.entry(w[1].parse().unwrap()).or_default().push(w[3].parse().unwrap());
        }
        for t in 0..4 {
            assert_eq!(counts[&t], (0..250).collect::<Vec<_>>(), "appender {t} records lost or reordered");
        }
    };
    check(&dir);
    m.remount();
    check(&dir);
}

#[test]
fn mixed_load_finishes_and_stays_consistent() {
    let secs: u64 = std::env::var("VAULTFS_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut m = Mount::new();
    let root = m.path("1-working");
    fs::create_dir(root.join("shared")).unwrap();
    let r = root.clone();
    // Each worker owns its files; the expected final content is tracked per file.
    let expected = within(Duration::from_secs(secs + 120), move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let workers: Vec<_> = (0..6)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut mine: HashMap<String, Vec<u8>> = HashMap::new();
                    let mut i = 0usize;
                    while Instant::now() < deadline {
                        i += 1;
                        let name = format!("t{t}-{}", i % 17);
                        let p = r.join("shared").join(&name);
                        match i % 7 {
                            0..=2 => {
                                let data = pattern(t, i, 1 + (i * 977) % 70_000);
                                fs::write(&p, &data).unwrap();
                                mine.insert(name, data);
                            }
                            3 => {
                                if let Some(want) = mine.get(&name) {
                                    assert_eq!(&fs::read(&p).unwrap(), want, "{name}");
                                }
                            }
                            4 => {
                                if mine.remove(&name).is_some() {
                                    fs::remove_file(&p).unwrap();
                                }
                            }
                            5 => {
                                // Rename-over within the shared directory.
                                let tmp = r.join("shared").join(format!(".tmp-{t}"));
                                let data = pattern(t, i + 1, 3000);
                                fs::write(&tmp, &data).unwrap();
                                fs::rename(&tmp, &p).unwrap();
                                mine.insert(name, data);
                            }
                            _ => {
                                let n = fs::read_dir(r.join("shared")).unwrap().count();
                                assert!(n > 0 || mine.is_empty());
                                let d = r.join(format!("dir-{t}-{}", i % 5));
                                let _ = fs::create_dir(&d);
                                let _ = fs::remove_dir(&d);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all = HashMap::new();
        for w in workers {
            all.extend(w.join().unwrap());
        }
        all
    });
    let check = |root: &PathBuf| {
        let mut on_disk: Vec<String> = fs::read_dir(root.join("shared"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut want: Vec<String> = expected.keys().cloned().collect();
        want.sort();
        assert_eq!(on_disk, want);
        for (name, data) in &expected {
            assert_eq!(&fs::read(root.join("shared").join(name)).unwrap(), data, "{name}");
        }
    };
    check(&root);
    m.remount();
    check(&root);
}
