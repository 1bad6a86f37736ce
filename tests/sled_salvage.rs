//! The vendored sled's salvage reader (vendor/README.md, "Salvage
//! reader"): on an intact database it finds every key's final state; on
//! copies with flipped bits or cut short it never panics or fails, and
//! every value it reports for a key was written to that key.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use sled::salvage::{Salvaged, salvage};

const SEGMENT: usize = 512 * 1024;

/// splitmix64: deterministic, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The database at `path`, opened as vaultfs opens its store (and, as it
/// does, retrying while a just-dropped handle's threads still hold sled's
/// file lock).
fn open(path: &Path) -> sled::Db {
    let config =
        sled::Config::new().path(path).cache_capacity(16 << 20).flush_every_ms(None).segment_size(SEGMENT);
    for _ in 0..200 {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed locked", path.display());
}

/// Everything written: each key's every value, and its final state.
#[derive(Default)]
struct Written {
    ever: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    last: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Written {
    fn set(&mut self, db: &sled::Tree, key: &[u8], value: Vec<u8>) {
        db.insert(key, value.clone()).unwrap();
        self.ever.entry(key.to_vec()).or_default().insert(value.clone());
        self.last.insert(key.to_vec(), Some(value));
    }

    fn del(&mut self, db: &sled::Tree, key: &[u8]) {
        db.remove(key).unwrap();
        self.last.insert(key.to_vec(), None);
    }
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(100) {
        0 => 150_000 + rng.below(100_000), // over a quarter segment: a blob
        1..=4 => 16_384 + rng.below(48_000),
        5..=14 => 1_000 + rng.below(3_000),
        _ => 8 + rng.below(300),
    };
    rng.bytes(len as usize)
}

/// Keys sharing long prefixes (sled prefix-encodes them in nodes and
/// links), short binary ones, and a few of their own.
fn keys() -> Vec<Vec<u8>> {
    let mut keys = vec![];
    for i in 0..1_800_u32 {
        keys.push(format!("inode/{:08}", i * 7).into_bytes());
    }
    for i in 0..600_u32 {
        keys.push(format!("dir/{:04}/entry-{}", i / 10, i).into_bytes());
    }
    for i in 0..300_u64 {
        keys.push((i * 0x0101_0101).to_be_bytes().to_vec());
    }
    keys.push(b"a".to_vec());
    keys.push(vec![0xff; 40]);
    keys
}

/// A database written over three sessions (so segments are reused and the
/// log has the leftovers of earlier runs), flushed and closed.
fn build(dir: &Path, seed: u64) -> Written {
    build_in(dir, seed, true)
}

/// As `build`, in one session when not `reopen` (sled's snapshot file,
/// written when it opens a database, then says nothing of the log).
fn build_in(dir: &Path, seed: u64, reopen: bool) -> Written {
    let mut rng = Rng(seed);
    let mut w = Written::default();
    let keys = keys();
    let mut db = open(dir);
    let end_session = |db: sled::Db| {
        db.flush().unwrap();
        if reopen {
            drop(db);
            open(dir)
        } else {
            db
        }
    };

    for k in &keys {
        let v = value(&mut rng);
        w.set(&db, k, v);
    }
    db = end_session(db);

    for k in &keys {
        match rng.below(100) {
            0..=39 => {
                let v = value(&mut rng);
                w.set(&db, k, v);
            }
            40..=54 => w.del(&db, k),
            _ => {}
        }
    }
    db = end_session(db);

    for _ in 0..2_000 {
        let k = &keys[rng.below(keys.len() as u64) as usize];
        match rng.below(100) {
            0..=69 => {
                let v = value(&mut rng);
                w.set(&db, k, v);
            }
            _ => w.del(&db, k),
        }
    }
    db.flush().unwrap();
    drop(db);
    wait_released(dir);
    w
}

/// Waits until no sled handle holds the database at `dir` (sled's
/// threads outlive a dropped `Db` for a moment, still writing), without
/// opening it: its lock is an flock on the log file, which flock(1) tries.
fn wait_released(dir: &Path) {
    let db = dir.join("db");
    for _ in 0..400 {
        match std::process::Command::new("flock").arg("--nonblock").arg(&db).arg("true").status() {
            Ok(status) if status.success() => return,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(25)),
            // no flock(1): give sled's threads time instead
            Err(_) => return std::thread::sleep(std::time::Duration::from_secs(2)),
        }
    }
    panic!("{} stayed locked", db.display());
}

/// Every value reported for a key was written to it, and every key was
/// written. Returns (keys whose newest version is their final value,
/// keys with a final value).
fn check(s: &Salvaged, w: &Written, what: &str) -> (usize, usize) {
    for (k, versions) in &s.keys {
        let ever = w.ever.get(k).unwrap_or_else(|| panic!("{what}: key {k:?} never written"));
        assert!(!versions.is_empty(), "{what}: key {k:?} without versions");
        assert!(
            versions.windows(2).all(|p| p[0].lsn > p[1].lsn),
            "{what}: versions of {k:?} not newest first"
        );
        for v in versions {
            if let Some(value) = &v.value {
                assert!(ever.contains(value), "{what}: key {k:?} has a value never written to it");
            }
        }
    }
    let live: Vec<_> = w.last.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))).collect();
    let newest_ok =
        live.iter().filter(|(k, v)| s.keys.get(*k).is_some_and(|vs| vs[0].value.as_ref() == Some(v))).count();
    (newest_ok, live.len())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn tree_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = common::all_files(dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// On an intact database, written in one session (as the brief has it:
/// sled's snapshot file then says nothing of the log) or in three.
fn intact(reopen: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let w = build_in(&dir, 1, reopen);
    assert_eq!(sled::salvage::configured_segment_size(&dir), Some(SEGMENT));
    let before = tree_digest(&dir);
    // the segment size recorded in conf wins over a wrong guess
    let s = salvage(&dir, 4096).unwrap();
    assert_eq!(tree_digest(&dir), before, "salvage wrote to the database");
    assert_eq!(s.segment_size, SEGMENT);

    println!(
        "intact ({} session(s)): {} bytes, {} segments, {} messages, snapshot at {:?}, {} blobs gone, \
         {} links skipped, {} keys, {} versions",
        if reopen { 3 } else { 1 },
        std::fs::metadata(dir.join("db")).unwrap().len(),
        s.segments,
        s.messages_ok,
        s.snapshot_lsn,
        s.blobs_missing,
        s.links_skipped,
        s.keys.len(),
        s.keys.values().map(Vec::len).sum::<usize>()
    );
    assert_eq!(s.messages_damaged, 0, "{:?}", s.damaged_ranges);
    assert!(s.damaged_ranges.is_empty());
    assert_eq!(s.blobs_damaged, 0);
    assert_eq!(s.trees, vec![b"__sled__default".to_vec()]);

    let (newest_ok, live) = check(&s, &w, "intact");
    for (k, last) in &w.last {
        let newest = s.keys.get(k).map(|vs| &vs[0].value);
        match last {
            Some(v) => assert_eq!(newest, Some(&Some(v.clone())), "key {k:?}"),
            // a deleted key may also be gone without a trace
            None => assert!(matches!(newest, None | Some(None)), "deleted key {k:?} has a value"),
        }
    }
    assert_eq!(newest_ok, live);

    // and sled agrees with what was written
    let db = open(&dir);
    for (k, last) in &w.last {
        assert_eq!(db.get(k).unwrap().map(|v| v.to_vec()), *last);
    }
}

#[test]
fn intact_database_gives_every_final_state() {
    intact(false);
}

#[test]
fn intact_database_over_sessions_gives_every_final_state() {
    intact(true);
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Damages copies of two databases (one written in one session, one in
/// three) with `damage`, and checks what salvage finds in each. The
/// environment can ask for more: SLED_SALVAGE_SEEDS copies (48) of
/// databases built from SLED_SALVAGE_BUILD (2).
fn damaged_copies(what: &str, damage: impl Fn(&mut Rng, &mut Vec<u8>) -> String) {
    let seeds = env("SLED_SALVAGE_SEEDS", 48);
    let (mut survived, mut total, mut damaged) = (0.0, 0_u32, 0);
    for reopen in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        let w = build_in(&dir, env("SLED_SALVAGE_BUILD", 2), reopen);
        let original = std::fs::read(dir.join("db")).unwrap();
        for seed in 0..seeds / 2 {
            let copy = tmp.path().join(format!("copy-{seed}"));
            copy_dir(&dir, &copy);
            let mut rng = Rng(1_000 + seed);
            let mut bytes = original.clone();
            let how = damage(&mut rng, &mut bytes);
            std::fs::write(copy.join("db"), &bytes).unwrap();

            let s = salvage(&copy, SEGMENT).unwrap_or_else(|e| panic!("{what} {how}: {e}"));
            let (newest_ok, live) = check(&s, &w, &format!("{what} {how}"));
            println!(
                "{what} {how:>24}: {newest_ok:>4}/{live} keys at their final value, {:>4} keys found, \
                 {} messages ok, {} damaged in {} ranges, {} links skipped",
                s.keys.len(),
                s.messages_ok,
                s.messages_damaged,
                s.damaged_ranges.len(),
                s.links_skipped
            );
            survived += newest_ok as f64 / live as f64;
            total += 1;
            damaged += s.messages_damaged;
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    println!(
        "{what}: over {total} copies, on average {:.1} % of the keys with a value are found at \
         their final value ({damaged} damaged messages in all)",
        100.0 * survived / f64::from(total),
    );
}

#[test]
fn flipped_bits_never_give_a_wrong_value() {
    damaged_copies("flips", |rng, bytes| {
        let flips = 1 + rng.below(256);
        for _ in 0..flips {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        format!("{flips} bits flipped")
    });
}

#[test]
fn truncation_never_gives_a_wrong_value() {
    damaged_copies("truncated", |rng, bytes| {
        let len = rng.below(bytes.len() as u64 + 1) as usize;
        bytes.truncate(len);
        format!("cut to {len} bytes")
    });
}

#[test]
fn damaged_blobs_and_junk_never_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let w = build(&dir, 3);

    // blob files damaged or gone
    let mut blobs: Vec<_> =
        std::fs::read_dir(dir.join("blobs")).unwrap().map(|e| e.unwrap().path()).collect();
    blobs.sort();
    assert!(!blobs.is_empty(), "no value went to a blob file");
    for (i, blob) in blobs.iter().enumerate() {
        if i % 2 == 0 {
            let mut b = std::fs::read(blob).unwrap();
            let at = b.len() / 2;
            b[at] ^= 0x10;
            std::fs::write(blob, b).unwrap();
        } else {
            std::fs::remove_file(blob).unwrap();
        }
    }
    let s = salvage(&dir, SEGMENT).unwrap();
    let (newest_ok, live) = check(&s, &w, "blobs");
    println!("blobs damaged or removed: {newest_ok}/{live}, {} blobs damaged", s.blobs_damaged);
    assert!(s.blobs_damaged > 0);

    // junk of every kind, with and without conf
    let junk = tmp.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    let mut rng = Rng(7);
    let contents: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 19],
        vec![0; 3 * SEGMENT],
        vec![0xff; SEGMENT + 100],
        rng.bytes(2 * SEGMENT + 333),
        rng.bytes(50),
    ];
    for content in contents {
        std::fs::write(junk.join("db"), &content).unwrap();
        let s = salvage(&junk, SEGMENT).unwrap();
        assert!(s.keys.is_empty());
    }
    // a conf from elsewhere, damaged
    std::fs::write(junk.join("conf"), b"segment_size: 4096\nuse_compression: false\nversion: 0.34\n\0\0\0\0")
        .unwrap();
    assert_eq!(salvage(&junk, SEGMENT).unwrap().segment_size, SEGMENT);
    assert!(salvage(&junk, 1000).is_err(), "not a power of two");
    assert!(salvage(&tmp.path().join("nothing"), SEGMENT).is_err());
}

#[test]
fn only_the_default_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut rng = Rng(11);
    let mut w = Written::default();
    {
        let db = open(&dir);
        let other = db.open_tree("other").unwrap();
        for i in 0..3_000_u32 {
            let v = value(&mut rng);
            w.set(&db, format!("default/{i:06}").as_bytes(), v);
            other.insert(format!("other/{i:06}"), rng.bytes(100)).unwrap();
        }
        db.flush().unwrap();
    }
    let s = salvage(&dir, SEGMENT).unwrap();
    assert_eq!(s.trees, vec![b"__sled__default".to_vec(), b"other".to_vec()]);
    let (newest_ok, live) = check(&s, &w, "two trees");
    assert_eq!(newest_ok, live);
    assert_eq!(s.keys.len(), live);
}

/// A segment lost whole (the file cut at a segment boundary, a segment
/// zeroed) looks like one sled reused: links are then placed only on
/// keys known otherwise.
#[test]
fn lost_segments_never_give_a_wrong_value() {
    for reopen in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        let w = build_in(&dir, env("SLED_SALVAGE_BUILD", 2), reopen);
        let original = std::fs::read(dir.join("db")).unwrap();
        let slots = original.len() / SEGMENT;
        let mut kept = (0, 0);
        for k in 0..slots {
            for zero in [false, true] {
                let copy = tmp.path().join(format!("copy-{k}"));
                copy_dir(&dir, &copy);
                let mut bytes = original.clone();
                if zero {
                    bytes[k * SEGMENT..(k + 1) * SEGMENT].fill(0);
                } else {
                    bytes.truncate(k * SEGMENT);
                }
                std::fs::write(copy.join("db"), &bytes).unwrap();
                let s = salvage(&copy, SEGMENT).unwrap();
                let (ok, live) = check(&s, &w, &format!("segment {k} (zeroed: {zero})"));
                if zero {
                    kept.0 += ok;
                    kept.1 += live;
                }
                std::fs::remove_dir_all(&copy).unwrap();
            }
        }
        println!(
            "lost segments ({} session(s)): {slots} segments; with one zeroed, on average {:.1} % \
             of the keys with a value are found at their final value",
            if reopen { 3 } else { 1 },
            100.0 * kept.0 as f64 / kept.1 as f64
        );
    }
}
