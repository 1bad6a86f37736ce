//! The load that deadlocked sled 0.34.7 (vendor/README.md), run on bare sled:
//! no vaultfs, no lock of ours around it. Six writers rewrite a small set of
//! "files" of 4 KiB blocks, each rewrite one batch that also deletes the
//! blocks past the new end, with sled's own flusher on: log segments keep
//! freeing up at the tip, so sled truncates its file again and again while
//! its thread pool is busy with log writes. Unpatched, this hung within
//! seconds (4 runs of 4); the patched copy in vendor/sled must never stall.
//! `FLUSH_MS` sets sled's flush interval (default 500, sled's own default).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: u64 = 6;
const BATCHES: u64 = 5000;
const ROUNDS: u64 = 3;
/// sled never recovers from the deadlock: a stall this long is one.
const STALL: Duration = Duration::from_secs(30);

fn flush_ms() -> u64 {
    std::env::var("FLUSH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

fn churn(round: u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 << 20)
        .segment_size(512 * 1024)
        .flush_every_ms(Some(flush_ms()))
        .open()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let (db, done) = (db.clone(), done.clone());
        writers.push(std::thread::spawn(move || {
            let mut x = (t + 1 + round * WRITERS).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for _ in 0..BATCHES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (file, blocks) = (x % 17, (x >> 20) % 18);
                let mut b = sled::Batch::default();
                for blk in 0..18u64 {
                    let key = [t.to_be_bytes(), file.to_be_bytes(), blk.to_be_bytes()].concat();
                    if blk < blocks {
                        b.insert(key, vec![x as u8; 4136]);
                    } else {
                        b.remove(key);
                    }
                }
                db.apply_batch(b).unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let (mut last, mut since) = (0, Instant::now());
    while last < WRITERS * BATCHES {
        std::thread::sleep(Duration::from_millis(100));
        let now = done.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        // A stuck sled never recovers; its threads are left behind.
        assert!(since.elapsed() < STALL, "round {round}: sled stalled after {last} batches");
    }
    for w in writers {
        w.join().unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn churning_writers_never_deadlock_bare_sled() {
    for round in 0..ROUNDS {
        churn(round);
    }
}
