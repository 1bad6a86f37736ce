//! `vaultfs salvage` (docs/ADMIN.md, "Salvage") on real stores: a vault is
//! filled through a real mount, damaged at rest (targeted: single records
//! through the store API; random: bit flips and truncation in sled's log
//! file, many seeds), salvaged into a new store, fsck'd and mounted. What
//! comes back must be exactly what was written, file by file; what does not
//! must be named; the old store is never written; nothing panics.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Output;

use common::{Mount, vaultfs};
use vaultfs::format::keys;
use vaultfs::store::Store;

/// The files written, by path under the mount.
fn fill(m: &Mount) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    fs::create_dir(m.path("1-working/sub")).unwrap();
    for i in 0..60u32 {
        let rel = if i % 3 == 0 { format!("1-working/sub/g{i}") } else { format!("1-working/f{i}") };
        let len = [10usize, 3000, 20_000, 70_000][i as usize % 4];
        let data: Vec<u8> = (0..len).map(|j| (j as u32 * 31 + i * 7) as u8).collect();
        fs::write(m.path(&rel), &data).unwrap();
        files.insert(rel, data);
    }
    for i in 0..5u32 {
        let rel = format!("2-private/p{i}");
        let data = format!("private {i}").into_bytes();
        fs::write(m.path(&rel), &data).unwrap();
        files.insert(rel, data);
    }
    files
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn salvage(m: &Mount, from: &Path, to: &Path) -> Output {
    vaultfs(&[
        "salvage",
        from.to_str().unwrap(),
        to.to_str().unwrap(),
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
    ])
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Mounts the store at `dir` on a fresh mount point and reads every file of
/// `files` back: (exact, missing or unreadable). A file that reads back
/// different from what was written fails the test.
fn read_back(m: &Mount, dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> (usize, Vec<String>) {
    read_back_with_holes(m, dir, files, &[])
}

/// `read_back`, where the files of `holed` (paths under the mount) may read
/// zeros where blocks were lost, and must carry the salvage xattr.
fn read_back_with_holes(
    m: &Mount,
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    holed: &[String],
) -> (usize, Vec<String>) {
    read_back_states(m, dir, files, holed, false)
}

/// `read_back_with_holes`; with `earlier`, a file may also read empty (its
/// state when created, before it was written: an older, authentic version).
fn read_back_states(
    m: &Mount,
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    holed: &[String],
    earlier: bool,
) -> (usize, Vec<String>) {
    let mnt = dir.with_extension("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let out = vaultfs(&[
        "mount",
        dir.to_str().unwrap(),
        mnt.to_str().unwrap(),
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "mount of the salvaged store: {}", text(&out));
    // Unmounted however this ends (a failed check must not leave a mount behind).
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
    }
    let _guard = Unmount(&mnt);
    let mut exact = 0;
    let mut gone = Vec::new();
    for (rel, data) in files {
        match fs::read(mnt.join(rel)) {
            Ok(got) if holed.iter().any(|h| h.trim_start_matches('/') == rel) => {
                assert_eq!(got.len(), data.len(), "{rel}: size");
                assert!(
                    got.iter().zip(data).all(|(g, d)| g == d || *g == 0),
                    "{rel}: other content than zeros"
                );
                let mark = xattr_of(&mnt.join(rel), "user.vault.salvage");
                assert!(mark.is_some_and(|v| v.starts_with(b"salvage:")), "{rel}: not marked");
                gone.push(rel.clone());
            }
            Ok(got) if earlier && got.is_empty() => gone.push(rel.clone()),
            Ok(got) => {
                assert!(
                    got == *data,
                    "{rel} came back with other content ({} bytes, wrote {})",
                    got.len(),
                    data.len()
                );
                exact += 1;
            }
            Err(_) => gone.push(rel.clone()),
        }
    }
    let out = vaultfs(&["umount", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "umount: {}", text(&out));
    (exact, gone)
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out =
        std::process::Command::new("getfattr").args(["--only-values", "-n", name]).arg(path).output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// The paths a salvage report lists under `holes`.
fn holes_in(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("holes           "))
        .filter_map(|l| l.split(": lost blocks").next())
        .map(str::to_string)
        .collect()
}

fn tree_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let digest = vaultfs::crypto::sha256(&fs::read(e.path()).unwrap());
                out.push((e.path().display().to_string(), digest.to_vec()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn an_intact_store_salvages_whole() {
    let mut m = Mount::new();
    let files = fill(&m);
    m.unmount();
    let before = tree_digest(&m.store);
    let new = m.dir.path().join("new");
    let out = salvage(&m, &m.store, &new);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("sled opened the store") && t.contains(" 0 lost") && t.contains("status: clean"),
        "{t}"
    );
    assert_eq!(tree_digest(&m.store), before, "the old store is only read");
    let (exact, gone) = read_back(&m, &new, &files);
    assert_eq!((exact, gone.len()), (files.len(), 0));
    // Into a vault: refused.
    let again = salvage(&m, &m.store, &new);
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
}

#[test]
fn damaged_records_cost_their_files_only() {
    let mut m = Mount::new();
    let files = fill(&m);
    m.unmount();
    let damaged = m.dir.path().join("damaged");
    copy_dir(&m.store, &damaged);
    // Flip a byte in two inode records, a block index entry of a third
    // file and a directory entry. The inodes are the last two files made
    // (level 2), the entry one at level 1: never the entry of a file
    // whose inode is lost too (the entries' order follows keyed tags, so
    // a chosen entry could otherwise name a damaged inode, and nothing be
    // adopted).
    let ino_of = |k: &[u8]| u64::from_be_bytes(k[1..9].try_into().unwrap());
    let hit = {
        let s = Store::open(&damaged, false).unwrap();
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            s.iter().map(|e| e.unwrap()).map(|(k, v)| (k, v.to_vec())).collect();
        let inodes: Vec<&(Vec<u8>, Vec<u8>)> =
            all.iter().filter(|(k, _)| k[0] == keys::INODE && ino_of(k) >= 16).rev().take(2).collect();
        let block = all
            .iter()
            .find(|(k, _)| k[0] == keys::BLOCK && inodes.iter().all(|(i, _)| ino_of(i) != ino_of(k)))
            .unwrap();
        let dirent = all.iter().filter(|(k, _)| k[0] == keys::DIRENT && k[1] == 1).nth(7).unwrap();
        // The inode counter rolled back to the lower lost inode (an older
        // version of it, as a log scan may find): the lost inodes' entries
        // still name those numbers, which lost+found must not take.
        // Their blocks gone too: only their entries name those numbers.
        let rolled_back = ino_of(&inodes[1].0);
        s.put(keys::INODE_COUNTER, rolled_back.to_be_bytes().to_vec()).unwrap();
        let mut blocks = vaultfs::store::Batch::default();
        let lost = |k: &[u8]| inodes.iter().any(|(i, _)| ino_of(i) == ino_of(k));
        for (k, _) in all.iter().filter(|(k, _)| k[0] == keys::BLOCK && lost(k)) {
            blocks.delete(k.clone());
        }
        s.apply(blocks).unwrap();
        let mut hit = Vec::new();
        for (k, v) in inodes.into_iter().chain([block, dirent]) {
            let mut v = v.clone();
            let at = v.len() - 5;
            v[at] ^= 0x40;
            s.put(k, v).unwrap();
            hit.push(k.clone());
        }
        s.flush().unwrap();
        hit
    };
    assert_eq!(hit.len(), 4);
    let new = m.dir.path().join("new");
    let out = salvage(&m, &damaged, &new);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(" 4 lost"), "{t}");
    assert_eq!(t.matches("lost            inode ").count(), 2, "{t}");
    assert!(
        t.contains("lost            blocks of inode") && t.contains("lost            a directory entry"),
        "{t}"
    );
    // The file whose entry was lost is adopted by lost+found, whole.
    assert!(t.contains("adopted         /1-working/lost+found/#"), "{t}");
    assert!(t.contains("status: clean"), "{t}");
    let holed = holes_in(&t);
    assert_eq!(holed.len(), 1, "{t}");
    let (exact, gone) = read_back_with_holes(&m, &new, &files, &holed);
    // Two files lost their inode, one its blocks' index entry, one its name:
    // at most four files are gone, every other one is exact.
    assert!(!gone.is_empty() && gone.len() <= 4, "gone: {gone:?}");
    assert_eq!(exact + gone.len(), files.len());
}

#[test]
fn a_wrong_passphrase_or_no_store_is_refused() {
    let mut m = Mount::new();
    m.unmount();
    let wrong = m.dir.path().join("wrong");
    fs::write(&wrong, "nope\n").unwrap();
    let new = m.dir.path().join("new");
    let out = vaultfs(&[
        "salvage",
        m.store.to_str().unwrap(),
        new.to_str().unwrap(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let nothing = m.dir.path().join("nothing");
    fs::create_dir(&nothing).unwrap();
    let out = salvage(&m, &nothing, &new);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
}

/// Random damage to sled's log file (bit flips, many seeds, 1 to 256 of
/// them; and truncation), the case where sled refuses the whole store:
/// salvage never panics, and what it brings back is exactly what was
/// written, or named (a hole, a lost record); fsck of the damaged store
/// reports instead of failing with one line.
#[test]
fn random_damage_to_the_log_salvages_what_is_intact() {
    let mut m = Mount::new();
    let files = fill(&m);
    m.unmount();
    let db = m.store.join("db/db");
    let size = fs::metadata(&db).unwrap().len();
    let mut refused_by_sled = 0;
    let mut recovered = 0;
    let mut scanned = 0;
    let mut intact = 0;
    let cases: Vec<(u64, u32)> = (1..=16u64)
        .map(|seed| (seed, [4, 16, 64, 256, 1024][seed as usize % 5]))
        .chain([(100, 0), (101, 0)])
        .collect();
    for (seed, flips) in cases {
        let case = m.dir.path().join(format!("case-{seed}"));
        let damaged = case.join("store");
        copy_dir(&m.store, &damaged);
        let mut bytes = fs::read(damaged.join("db/db")).unwrap();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        if flips == 0 {
            bytes.truncate((next() % size) as usize);
        } else {
            for _ in 0..flips {
                let at = (next() % size) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
        }
        fs::write(damaged.join("db/db"), &bytes).unwrap();
        let ctx = format!("seed {seed}, {flips} flips");

        let fsck =
            vaultfs(&["fsck", damaged.to_str().unwrap(), "--passphrase-file", m.passfile.to_str().unwrap()]);
        let ft = text(&fsck);
        assert_ne!(fsck.status.code(), Some(101), "{ctx}: fsck panicked: {ft}");
        assert!(!ft.contains("panicked"), "{ctx}: {ft}");
        if ft.contains("cannot be read whole") {
            refused_by_sled += 1;
            assert!(ft.contains("status: damaged") || fsck.status.code() == Some(5), "{ctx}: {ft}");
        }

        let new = case.join("new");
        let out = salvage(&m, &damaged, &new);
        let t = text(&out);
        assert_ne!(out.status.code(), Some(101), "{ctx}: salvage panicked: {t}");
        assert!(!t.contains("panicked"), "{ctx}: {t}");
        if !out.status.success() {
            // Only a lost header may stop it, and it must say so.
            assert!(t.contains("no authentic vault header"), "{ctx}: {t}");
            println!("{ctx}: {}", t.lines().last().unwrap_or(""));
            continue;
        }
        recovered += 1;
        if t.contains("from a scan of sled's log") {
            scanned += 1;
        }
        // From a log scan, a record's newest intact version may be older than
        // the last written: a file may also come back as it was at creation (empty).
        let (exact, gone) = read_back_states(&m, &new, &files, &holes_in(&t), true);
        assert_eq!(exact + gone.len(), files.len(), "{ctx}");
        intact += exact;
        fs::remove_dir_all(&case).unwrap();
    }
    println!(
        "fsck found {refused_by_sled} of 18 damaged stores unreadable as a whole; salvage recovered {recovered} \
         ({scanned} by scanning sled's log), {intact} files exact of {}",
        18 * files.len()
    );
    assert!(scanned >= 4, "only {scanned} stores went through the log scan: the damage is too light");
    assert!(recovered >= 12, "salvage recovered only {recovered} of 18 damaged stores");
}
