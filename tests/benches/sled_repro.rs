//! Plain sled 0.34, no vaultfs: the two store behaviours docs/PERFORMANCE.md
//! cites for the audit log's storage ("Store growth", "Audit cost").
//!
//!   cargo bench --bench sled_repro -- growth MODE [BATCHES]
//!   cargo bench --bench sled_repro -- deletes MODE [FILES]
//!
//! `growth`: 256 keys of 4 KiB (a 1 MiB file) overwritten at random, 1–16
//! consecutive keys per batch, a flush after each batch (as vaultfs's write
//! gate does); prints the store's size at each quarter. MODE adds to every
//! batch: `none`; `new-key` one new 200-byte key, never deleted; `delete-later`
//! the same, each deleted 64 batches later; `big-key` instead one 32 KB key
//! every 250 batches.
//!
//! `deletes`: the store side of deleting small files: per file one batch
//! removing its name and rewriting two inodes, one removing the inode and
//! its 4 KiB block, each flushed; every 250 files a commit writing the open
//! 32 KiB-bounded chunk. MODE adds per file: `none`; `pack` a new small key
//! that the next commit deletes; `slot` an overwrite of one of 256 fixed
//! keys. Prints the time taken; run the modes in turns and compare.
//!
//! sled is used directly here, outside `src/store`, on purpose: this shows
//! sled's behaviour, not ours.

use std::time::Instant;

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn open(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(256 << 20)
        .segment_size(512 * 1024)
        .flush_every_ms(None)
        .open()
        .expect("open sled")
}

fn key(prefix: u8, n: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn growth(mode: &str, batches: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut state: u64 = 12345;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 1..=batches {
        let start = rnd() % 256;
        let n = 1 + rnd() % 16;
        let mut b = sled::Batch::default();
        for k in start..(start + n).min(256) {
            let mut v = vec![0u8; 4096 + 40];
            v[..8].copy_from_slice(&rnd().to_le_bytes());
            b.insert(key(b'B', k), v);
        }
        match mode {
            "new-key" | "delete-later" => {
                b.insert(key(b'R', i), vec![7u8; 200]);
                if mode == "delete-later" && i > 64 {
                    b.remove(key(b'R', i - 64));
                }
            }
            "big-key" if i % 250 == 0 => b.insert(key(b'R', i), vec![7u8; 32_000]),
            _ => {}
        }
        db.apply_batch(b).expect("batch");
        db.flush().expect("flush");
        if i % (batches / 4).max(1) == 0 {
            println!("growth {mode}: {} MB after {i} batches", dir_size(dir.path()) >> 20);
        }
    }
}

fn deletes(mode: &str, files: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    for chunk in 0..files.div_ceil(1000) {
        let mut b = sled::Batch::default();
        for i in chunk * 1000..((chunk + 1) * 1000).min(files) {
            b.insert(key(b'D', i), vec![1u8; 60]);
            b.insert(key(b'I', i), vec![2u8; 160]);
            b.insert(key(b'B', i), vec![3u8; 4136]);
        }
        db.apply_batch(b).expect("batch");
    }
    db.flush().expect("flush");
    let t0 = Instant::now();
    let mut small = Vec::new();
    let (mut first, mut tail, mut tail_len) = (0u64, None::<Vec<u8>>, 0usize);
    for i in 0..files {
        let mut b = sled::Batch::default();
        b.remove(key(b'D', i));
        b.insert(b"Iparent".to_vec(), vec![4u8; 160]);
        b.insert(key(b'I', i), vec![5u8; 160]);
        match mode {
            "pack" => {
                b.insert(key(b'R', i), vec![6u8; 140]);
                small.push(key(b'R', i));
            }
            "slot" => b.insert(key(b'S', i % 256), vec![6u8; 140]),
            _ => {}
        }
        db.apply_batch(b).expect("batch");
        db.flush().expect("flush");
        let mut b = sled::Batch::default();
        b.remove(key(b'I', i));
        b.remove(key(b'B', i));
        db.apply_batch(b).expect("batch");
        db.flush().expect("flush");
        if mode != "none" && i % 250 == 249 {
            let mut b = sled::Batch::default();
            for k in small.drain(..) {
                b.remove(k);
            }
            if let Some(k) = tail.take() {
                b.remove(k);
            }
            tail_len += 250 * 120;
            let mut k = key(b'C', first);
            k.extend_from_slice(&((i + 1 - first) as u32).to_be_bytes());
            b.insert(k.clone(), vec![7u8; tail_len]);
            if tail_len >= 32 * 1024 {
                (first, tail_len) = (i + 1, 0);
            } else {
                tail = Some(k);
            }
            db.apply_batch(b).expect("batch");
            db.flush().expect("flush");
        }
    }
    println!("deletes {mode}: {files} files in {:.3} s", t0.elapsed().as_secs_f64());
}

fn main() {
    // `cargo bench` passes `--bench`; take the words after it.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n = |d: u64| args.get(2).and_then(|s| s.parse().ok()).unwrap_or(d);
    match (args.first().map(String::as_str), args.get(1).map(String::as_str)) {
        (Some("growth"), Some(mode)) => growth(mode, n(8000)),
        (Some("deletes"), Some(mode)) => deletes(mode, n(20_000)),
        _ => eprintln!(
            "usage: cargo bench --bench sled_repro -- growth|deletes MODE [N] (see the file's header)"
        ),
    }
}
