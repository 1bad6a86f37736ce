//! `vaultfs fsck` on real stores: a vault is built through the library,
//! damaged through `vaultfs::store::Store` (as tests/tamper.rs does), then
//! checked and repaired with the real binary. Each damage must be found and
//! named; `--repair` must leave a store that checks clean, with every
//! untouched file byte-identical and every repair in the audit log.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use std::os::unix::fs::FileExt;
use tempfile::TempDir;
use vaultfs::crypto::{KdfParams, Passphrase};
use vaultfs::format::{hex, keys};

use vaultfs::format::segment::IndexEntry;
use vaultfs::store::{Batch, Store, segment_name};
use vaultfs::vault::{FileKind, InitOptions, NewNode, RenameFlags, SetAttr, XattrFlags, level_dir};
use vaultfs::{Unlocked, Vault};

const FAST_KDF: KdfParams = KdfParams { memory_kib: 8192, passes: 1, lanes: 1 };
const BS: usize = 4096;
const PASS: &str = "fsck-passphrase";

fn pass() -> Passphrase {
    Passphrase::new(PASS.as_bytes().to_vec())
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 0x20).collect()
}

fn unlock(dir: &Path) -> Vault<Unlocked> {
    Vault::open(dir).unwrap().unlock(&pass()).unwrap()
}

/// A vault with a bit of everything the namespace can hold, and the files
/// (inode, content) that must survive every repair byte for byte.
struct Fixture {
    dir: TempDir,
    store: PathBuf,
    passfile: PathBuf,
    files: Vec<(&'static str, u64, Vec<u8>)>,
}

impl Fixture {
    fn store(&self) -> &Path {
        &self.store
    }

    fn ino(&self, name: &str) -> u64 {
        self.files.iter().find(|f| f.0 == name).unwrap().1
    }

    /// Applies `edit` to the raw store (the vault is closed).
    fn damage(&self, edit: impl FnOnce(&Store)) {
        let s = Store::open(self.store(), false).unwrap();
        edit(&s);
        s.flush().unwrap();
    }

    /// `vaultfs fsck STORE --json ARGS`: exit code and the report.
    fn fsck(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(common::bin())
            .arg("fsck")
            .arg(self.store())
            .arg("--json")
            .arg("--passphrase-file")
            .arg(&self.passfile)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("fsck printed no JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        });
        assert_eq!(stdout.trim().lines().count(), 1, "one JSON object on one line");
        (out.status.code().unwrap(), report)
    }

    /// Every fixture file reads back exactly as written.
    fn check_files(&self, except: &[u64]) {
        let v = unlock(self.store());
        for (name, ino, data) in self.files.iter().filter(|f| !except.contains(&f.1)) {
            let got = v.read(*ino, 0, data.len() + 1).unwrap_or_else(|e| panic!("read {name}: {e}"));
            assert!(got == *data, "{name} changed");
        }
    }
}

/// A fresh vault in a temporary directory: (dir, store, passphrase file).
fn new_vault() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let passfile = dir.path().join("pass");
    std::fs::write(&passfile, format!("{PASS}\n")).unwrap();
    Vault::init(&store, &pass(), InitOptions { kdf: FAST_KDF, block_size: BS as u32 }).unwrap();
    (dir, store, passfile)
}

fn fixture() -> Fixture {
    let (dir, store, passfile) = new_vault();
    let v = unlock(&store);
    let file = NewNode { kind: FileKind::File, perm: 0o644, uid: 1000, gid: 1000, rdev: 0 };
    let dspec = NewNode { kind: FileKind::Dir, perm: 0o755, uid: 1000, gid: 1000, rdev: 0 };
    let mut files = Vec::new();
    let mut add = |parent: u64, name: &'static str, data: Vec<u8>| -> u64 {
        let ino = v.create(parent, name.as_bytes(), file.clone()).unwrap().ino;
        // One write per block: one-block index entries the tests address
        // one by one (`a_damaged_run_is_named_by_its_blocks` has a run).
        for (i, chunk) in data.chunks(BS).enumerate() {
            v.write(ino, (i * BS) as u64, chunk).unwrap();
        }
        files.push((name, ino, data));
        ino
    };
    let w = level_dir(1);
    let notes = add(w, "notes.md", content(1, 10_000));
    add(w, "other.txt", content(2, 9_000));
    let sub = v.create(w, b"sub", dspec.clone()).unwrap().ino;
    let x = add(sub, "x", content(3, 5));
    // The only entry of its directory, so a test can find its key.
    let links = v.create(w, b"links", dspec.clone()).unwrap().ino;
    v.link(x, links, b"x-link").unwrap();
    add(level_dir(2), "private.txt", content(4, 4_097));
    add(level_dir(3), "sealed.txt", content(5, 5_000));
    // Sparse, then truncated: block 3 goes, block 0 stays.
    let sparse = v.create(w, b"sparse", file.clone()).unwrap().ino;
    v.write(sparse, 0, &content(6, 100)).unwrap();
    v.write(sparse, 3 * BS as u64 + 10, &content(7, 100)).unwrap();
    v.setattr(sparse, &SetAttr { size: Some(2 * BS as u64 + 5), ..Default::default() }).unwrap();
    let mut sp = content(6, 100);
    sp.resize(2 * BS + 5, 0);
    files.push(("sparse", sparse, sp));
    v.symlink(w, b"link", b"notes.md", 1000, 1000).unwrap();
    v.setxattr(notes, b"user.tag", b"kept", XattrFlags::default()).unwrap();
    // History: a rename, a removed directory, a shredded level-3 file, level-0 scratch.
    v.rename(w, b"other.txt", sub, b"renamed.txt", RenameFlags::default()).unwrap();
    v.create(w, b"gone", dspec).unwrap();
    v.rmdir(w, b"gone").unwrap();
    let shred = v.create(level_dir(3), b"shred.txt", file.clone()).unwrap().ino;
    v.write(shred, 0, b"secret").unwrap();
    v.unlink(level_dir(3), b"shred.txt").unwrap();
    let scratch = v.create(level_dir(0), b"scratch", file).unwrap().ino;
    v.write(scratch, 0, b"ephemeral").unwrap();
    v.sync().unwrap();
    drop(v);
    Fixture { dir, store, passfile, files }
}

fn problems(r: &Value) -> Vec<&Value> {
    r["problems"].as_array().unwrap().iter().collect()
}

fn kinds(r: &Value) -> Vec<String> {
    problems(r).iter().map(|p| p["kind"].as_str().unwrap().to_string()).collect()
}

/// The audit log's `repair` records, as `.audit` JSON lines.
fn repair_leaves(store: &Path) -> Vec<Value> {
    let v = unlock(store);
    let lines = v.audit_lines(0, v.audit_size()).unwrap();
    lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|l| l["op"] == "repair").collect()
}

/// Repairs, then checks that a second fsck is clean, the files intact and
/// the log verifying with a record of each repair. Returns the repair report.
fn repair_and_recheck(fx: &Fixture, except: &[u64]) -> Value {
    let (code, fixed) = fx.fsck(&["--repair"]);
    assert_eq!(code, 8, "every problem repaired: {fixed:#}");
    assert_eq!(fixed["status"], "repaired");
    assert!(problems(&fixed).iter().all(|p| p["repair"] == "done"));
    let (code, again) = fx.fsck(&[]);
    assert_eq!(code, 0, "clean after repair: {again:#}");
    assert_eq!(again["status"], "clean");
    fx.check_files(except);
    let leaves = repair_leaves(fx.store());
    for p in problems(&fixed) {
        let kind = p["kind"].as_str().unwrap();
        let action = match kind {
            "link_count" | "block_count" => "rewrite",
            "counter" => "set",
            _ => "delete",
        };
        let path = format!("fsck:{action}:{kind}:{}", p["key"].as_str().unwrap());
        assert!(leaves.iter().any(|l| l["path"] == path.as_str()), "no audit record {path} in {leaves:#?}");
    }
    let out = common::vaultfs(&[
        "audit",
        "verify",
        fx.store().to_str().unwrap(),
        "--passphrase-file",
        fx.passfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "audit verify after repair: {}", String::from_utf8_lossy(&out.stderr));
    fixed
}

#[test]
fn clean_vault_is_clean() {
    let fx = fixture();
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "clean");
    assert!(problems(&r).is_empty());
    let c = &r["counts"];
    for kind in ["inodes", "entries", "blocks", "xattrs", "tombstones"] {
        assert!(c[kind]["stored"].as_u64().unwrap() > 0, "{kind}: the fixture stores some");
    }
    // Level 0's leftover is unreadable by design; everything else authenticated.
    for kind in ["inodes", "entries", "blocks"] {
        assert_eq!(c[kind]["not_checked"], 1, "{kind}: the level-0 scratch file only");
        let (s, a) = (c[kind]["stored"].as_u64().unwrap(), c[kind]["authenticated"].as_u64().unwrap());
        assert_eq!(a + 1, s, "{kind}");
    }
    // `gone/` was removed but never evicted (no kernel here): as after a
    // crash with it open, it waits for the next unlock. Not damage.
    assert_eq!(c["pending_deletion"], 1);
    assert_eq!(r["levels"][0]["access"], "ephemeral");
    assert_eq!(r["levels"][1]["access"], "checked");
    assert_eq!(r["levels"][4]["access"], "no_key");
    assert_eq!(r["audit"]["verified"], true);
    assert!(r["audit"]["leaves"].as_u64().unwrap() >= 1, "the unlock records");
    // A check writes nothing: the audit log has not grown.
    let (_, again) = fx.fsck(&[]);
    assert_eq!(again["audit"]["leaves"], r["audit"]["leaves"]);
    // --repair on a clean vault changes nothing and records nothing.
    let (code, _) = fx.fsck(&["--repair"]);
    assert_eq!(code, 0);
    assert!(repair_leaves(fx.store()).is_empty());
    // The human report ends with the verdict.
    let out = common::vaultfs(&[
        "fsck",
        fx.store().to_str().unwrap(),
        "--passphrase-file",
        fx.passfile.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("status: clean"));
}

#[test]
fn flipped_block_byte_is_found_and_never_repaired() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let key = keys::block(notes, 1);
    // One byte of the block's record, in its segment file.
    let mut entry = None;
    fx.damage(|s| entry = Some(IndexEntry::decode(&s.get(&key).unwrap().unwrap()).unwrap()));
    let e = entry.unwrap();
    let seg = fx.store().join("seg").join(segment_name(e.segment));
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, e.offset + 100).unwrap();
    f.write_all_at(&[byte[0] ^ 1], e.offset + 100).unwrap();
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    assert_eq!(r["status"], "damaged");
    assert_eq!(kinds(&r), ["block_damaged"]);
    let p = problems(&r)[0];
    assert_eq!(p["ino"], notes);
    assert_eq!(p["block"], 1);
    assert_eq!(p["key"], hex(&key));
    assert_eq!(p["repair"], "none");
    assert!(p["message"].as_str().unwrap().contains(&format!("block 1 of inode {notes}")));
    // Repair never guesses: the block stays, the verdict too.
    let (code, r) = fx.fsck(&["--repair"]);
    assert_eq!(code, 5);
    assert_eq!(problems(&r)[0]["repair"], "none");
    assert!(repair_leaves(fx.store()).is_empty());
    fx.check_files(&[notes]);
}

/// The replay THREAT_MODEL.md §2 used to list: an older genuine record of a
/// block put back where the current one is. Its version is not the one the
/// authenticated index entry names, so it is damage, not the old content.
#[test]
fn an_older_record_put_back_is_found() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let key = keys::block(notes, 0);
    let entry = |fx: &Fixture| {
        let mut e = None;
        fx.damage(|s| e = Some(IndexEntry::decode(&s.get(&key).unwrap().unwrap()).unwrap()));
        e.unwrap()
    };
    let old = entry(&fx);
    let v = unlock(fx.store());
    v.write(notes, 0, b"a newer first line").unwrap();
    drop(v);
    let new = entry(&fx);
    assert!(new.version > old.version);
    let record_len = vaultfs::format::segment::record_len(BS as u32);
    let read = |segment: u64, offset: u64| {
        let f = std::fs::File::open(fx.store().join("seg").join(segment_name(segment))).unwrap();
        let mut buf = vec![0u8; record_len];
        f.read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    let old_record = read(old.segment, old.offset);
    let seg = fx.store().join("seg").join(segment_name(new.segment));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&old_record, new.offset).unwrap();
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    assert_eq!(kinds(&r), ["block_damaged"]);
    let msg = problems(&r)[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&format!("not version {}", new.version)), "{msg}");
}

/// A write of several blocks is one index entry (a run): damage to one of
/// its records names the run's blocks, and the other files stay clean.
#[test]
fn a_damaged_run_is_named_by_its_blocks() {
    let fx = fixture();
    let v = unlock(fx.store());
    let spec = NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 };
    let big = v.create(level_dir(1), b"big.bin", spec).unwrap().ino;
    v.write(big, 0, &vec![5u8; 6 * BS]).unwrap();
    drop(v);
    let key = keys::block(big, 5);
    let mut entry = None;
    fx.damage(|s| entry = Some(IndexEntry::decode(&s.get(&key).unwrap().unwrap()).unwrap()));
    let e = entry.unwrap();
    assert_eq!(e.count, 6, "one write, one entry");
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["counts"]["blocks"]["authenticated"].as_u64().unwrap() % 6, 0);
    let seg = fx.store().join("seg").join(segment_name(e.segment));
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    let at = e.offset + 3 * vaultfs::format::segment::record_len(BS as u32) as u64 + 200;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 1], at).unwrap();
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    assert_eq!(kinds(&r), ["block_damaged"]);
    let p = problems(&r)[0];
    assert_eq!((p["ino"].as_u64(), p["block"].as_u64()), (Some(big), Some(0)));
    assert_eq!(p["key"], hex(&key));
    assert!(p["message"].as_str().unwrap().contains(&format!("block 3 of inode {big}")), "{p}");
    fx.check_files(&[]);
}

#[test]
fn a_moved_segment_file_is_found() {
    let fx = fixture();
    let seg = fx.store().join("seg").join(segment_name(1));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&7u64.to_be_bytes(), 8).unwrap();
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    assert_eq!(kinds(&r), ["segment"]);
    assert!(problems(&r)[0]["message"].as_str().unwrap().contains("moved or swapped"));
    assert!(r["counts"]["segments"]["live_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn deleted_inode_with_live_entry_is_dangling() {
    let fx = fixture();
    let other = fx.ino("other.txt");
    fx.damage(|s| {
        let mut b = Batch::default();
        b.delete(&keys::inode(other)[..]);
        s.apply(b).unwrap();
    });
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(k, ["dangling_entry", "orphan_block"], "{r:#}");
    let dangling = problems(&r).into_iter().find(|p| p["kind"] == "dangling_entry").unwrap();
    assert_eq!(dangling["ino"], other);
    assert_eq!(dangling["level"], 1);
    assert_eq!(dangling["repair"], "available");
    let blocks = problems(&r).into_iter().find(|p| p["kind"] == "orphan_block").unwrap();
    assert_eq!(blocks["key"], hex(&keys::block_prefix(other)));
    assert_eq!(blocks["count"], 3, "9000 bytes are three blocks");
    let fixed = repair_and_recheck(&fx, &[other]);
    assert_eq!(fixed["problems"].as_array().unwrap().len(), 2);
    let v = unlock(fx.store());
    let sub = v.lookup(level_dir(1), b"sub").unwrap().ino;
    assert!(v.lookup(sub, b"renamed.txt").is_err(), "the dangling name is gone");
    assert!(v.readdir(sub, 0, 100).unwrap().iter().all(|e| e.ino != other));
}

#[test]
fn orphan_blocks_are_found_and_removed() {
    let fx = fixture();
    let notes = fx.ino("notes.md");
    let stray = 900_000u64;
    fx.damage(|s| {
        let v = s.get(&keys::block(notes, 0)).unwrap().unwrap().to_vec();
        let mut b = Batch::default();
        b.put(&keys::block(stray, 0)[..], v.clone());
        b.put(&keys::block(stray, 7)[..], v.clone());
        // notes.md is 10000 bytes: blocks 0-2. Block 5 lies beyond its end.
        b.put(&keys::block(notes, 5)[..], v);
        s.apply(b).unwrap();
    });
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    assert_eq!(kinds(&r), ["orphan_block", "orphan_block"], "{r:#}");
    let beyond = problems(&r).into_iter().find(|p| p["ino"] == notes).unwrap();
    assert_eq!(beyond["block"], 5);
    assert_eq!(beyond["key"], hex(&keys::block(notes, 5)));
    assert!(beyond["message"].as_str().unwrap().contains("beyond its end"));
    let strays = problems(&r).into_iter().find(|p| p["ino"] == stray).unwrap();
    assert_eq!(strays["count"], 2);
    assert!(strays["message"].as_str().unwrap().contains("does not exist"));
    repair_and_recheck(&fx, &[]);
    let s = Store::open(fx.store(), false).unwrap();
    assert!(s.scan_prefix(&keys::block_prefix(stray)).next().is_none());
    assert!(!s.contains(&keys::block(notes, 5)).unwrap());
}

#[test]
fn orphan_xattr_marker_and_link_count_are_repaired() {
    let fx = fixture();
    let (notes, x) = (fx.ino("notes.md"), fx.ino("x"));
    fx.damage(|s| {
        let xattr = s.scan_prefix(&keys::xattr_prefix(notes)).next().unwrap().unwrap();
        let mut b = Batch::default();
        // An xattr and an orphan marker of inodes that do not exist.
        b.put(keys::xattr(800_000, &[7; 16]).to_vec(), xattr.1.to_vec());
        b.put(&keys::orphan(800_001)[..], Vec::new());
        // Drop x's second name, `links/x-link`: the one level-1 directory
        // with a single entry. x keeps its link count of 2.
        let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> = Default::default();
        for e in s.scan_prefix(&[keys::DIRENT, 1]) {
            let k = e.unwrap().0;
            groups.entry(k[..18].to_vec()).or_default().push(k);
        }
        let single: Vec<_> = groups.values().filter(|g| g.len() == 1).collect();
        assert_eq!(single.len(), 1, "only links/ has one entry");
        b.delete(single[0][0].clone());
        s.apply(b).unwrap();
    });
    let (code, r) = fx.fsck(&[]);
    assert_eq!(code, 5, "{r:#}");
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(k, ["link_count", "orphan_marker", "orphan_xattr"], "{r:#}");
    let lc = problems(&r).into_iter().find(|p| p["kind"] == "link_count").unwrap();
    assert_eq!(lc["ino"], x);
    assert!(lc["message"].as_str().unwrap().contains("link count 2, but 1 entries"), "{lc}");
    repair_and_recheck(&fx, &[]);
    assert_eq!(unlock(fx.store()).getattr(x).unwrap().nlink, 1);
}

#[test]
fn wrong_passphrase_and_held_store_are_errors() {
    let fx = fixture();
    let bad = fx.dir.path().join("bad");
    std::fs::write(&bad, "not it\n").unwrap();
    let out =
        common::vaultfs(&["fsck", fx.store().to_str().unwrap(), "--passphrase-file", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    // Another process holds the store, and the pid file is stale (no mount
    // daemon has that pid): the store is reported busy, not mounted.
    std::fs::write(fx.store().join("mount.pid"), "4242\n").unwrap();
    let held = Store::open(fx.store(), false).unwrap();
    let out = common::vaultfs(&[
        "fsck",
        fx.store().to_str().unwrap(),
        "--repair",
        "--passphrase-file",
        fx.passfile.to_str().unwrap(),
    ]);
    drop(held);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in use") && !err.contains("4242"), "{err}");
}

/// Throughput on a 64 MiB vault (`cargo test --test fsck -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput() {
    let (_dir, store, passfile) = new_vault();
    let v = unlock(&store);
    let file = NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 };
    let chunk = content(9, 1 << 20);
    for i in 0..64 {
        let ino = v.create(level_dir(1), format!("f{i}").as_bytes(), file.clone()).unwrap().ino;
        v.write(ino, 0, &chunk).unwrap();
    }
    v.sync().unwrap();
    drop(v);
    let start = std::time::Instant::now();
    let out =
        common::vaultfs(&["fsck", store.to_str().unwrap(), "--passphrase-file", passfile.to_str().unwrap()]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    println!("fsck of 64 MiB (16384 blocks): {took:?}, {:.0} MiB/s", 64.0 / took.as_secs_f64());
}

/// A vault used through a real mount checks clean, mounted (through its
/// daemon, recorded) and unmounted; while it is mounted, `fsck --repair`
/// and the commands that need the store refuse with a clear message, and
/// `backup` copies the archive the mount serves.
#[test]
fn a_vault_used_through_the_mount_checks_clean() {
    let mut m = common::Mount::new();
    let w = m.path("1-working");
    std::fs::write(w.join("a.md"), content(1, 20_000)).unwrap();
    std::fs::create_dir(w.join("d")).unwrap();
    std::fs::write(w.join("d/b"), b"bee").unwrap();
    std::fs::hard_link(w.join("d/b"), w.join("b-link")).unwrap();
    std::os::unix::fs::symlink("a.md", w.join("s")).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(w.join("a.md")).unwrap();
    f.set_len(5_000).unwrap();
    // Unlinked while open, then closed: evicted by the daemon.
    let open = std::fs::File::open(w.join("d/b")).unwrap();
    std::fs::remove_file(w.join("d/b")).unwrap();
    drop(open);
    drop(f);
    std::fs::write(m.path("0-ephemeral/tmp"), b"gone at unmount").unwrap();
    std::fs::write(m.path("3-sealed/s.txt"), b"sealed").unwrap();
    std::fs::remove_file(m.path("3-sealed/s.txt")).unwrap();
    let _ = std::fs::read(m.path(".audit")).unwrap();
    let store = m.store.to_str().unwrap().to_string();
    let passfile = m.passfile.to_str().unwrap().to_string();
    // Every command that needs the store unmounted refuses at once, with
    // one message naming the daemon, the mount point and what to run.
    let mnt = m.mnt.to_str().unwrap().to_string();
    for args in [
        vec!["fsck", &store, "--repair", "--passphrase-file", &passfile],
        vec!["info", &store],
        vec!["audit", "verify", &store, "--passphrase-file", &passfile],
    ] {
        let out = common::vaultfs(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(10), "{args:?}: {err}");
        let pid = m.daemon_pid().unwrap();
        assert!(err.contains(&format!("is mounted at {mnt} (daemon pid {pid})")), "{args:?}: {err}");
        assert!(err.contains(&format!("run `vaultfs umount {mnt}` first")), "{args:?}: {err}");
    }

    // The mount checks itself, while an agent keeps writing.
    let writer_dir = w.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            std::fs::write(writer_dir.join(format!("w{i}")), content(i, 3_000)).unwrap();
        }
    });
    let out = common::vaultfs(&["fsck", &store, "--json", "--passphrase-file", &passfile]);
    writer.join().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{r:#} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(r["status"], "clean", "{r:#}");
    assert!(r["counts"]["inodes"]["authenticated"].as_u64().unwrap() >= 6, "{r:#}");
    assert_eq!(r["audit"]["verified"], true, "{r:#}");
    let text = common::vaultfs(&["fsck", &store, "--passphrase-file", &passfile]);
    assert_eq!(text.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&text.stdout).contains("status: clean"));
    let wrong = m.dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let out = common::vaultfs(&["fsck", &store, "--passphrase-file", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let ops = common::control::audit_ops(&m);
    let checks: Vec<i64> = ops.iter().filter(|(op, ..)| op == "check").map(|(_, _, r, _)| *r).collect();
    assert_eq!(checks, [0, 0, 13], "{ops:?}");

    // `backup` of a mounted vault: the archive `.backup/` serves, restorable.
    let backup_out = m.dir.path().join("b.vfsbak");
    let out = common::vaultfs(&["backup", &store, backup_out.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = m.dir.path().join("restored");
    let out = common::vaultfs(&["restore", backup_out.to_str().unwrap(), restored.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = common::vaultfs(&["fsck", restored.to_str().unwrap(), "--passphrase-file", &passfile]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    m.unmount();
    let out = common::vaultfs(&["fsck", &store, "--json", "--passphrase-file", &passfile]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert!(r["audit"]["checkpoints"].as_u64().unwrap() > 0);
}

/// One damaged inode record costs that file, not its directory: through the
/// mount the listing still shows every name, the damaged file's `stat` and
/// `open` fail with EIO, its neighbours read as before, and fsck names it.
#[test]
fn a_damaged_inode_costs_that_file_not_the_listing() {
    use std::os::unix::fs::MetadataExt;
    let mut m = common::Mount::new();
    let w = m.path("1-working");
    for name in ["a.md", "b.md", "c.md"] {
        std::fs::write(w.join(name), name.as_bytes()).unwrap();
    }
    let ino = std::fs::metadata(w.join("b.md")).unwrap().ino();
    m.unmount();
    {
        let s = Store::open(&m.store, false).unwrap();
        let mut v = s.get(&keys::inode(ino)).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x40;
        let mut b = Batch::default();
        b.put(&keys::inode(ino)[..], v);
        s.apply(b).unwrap();
        s.flush().unwrap();
    }
    m.mount();
    let w = m.path("1-working");
    let mut names: Vec<String> =
        std::fs::read_dir(&w).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a.md", "b.md", "c.md"]);
    for name in ["a.md", "c.md"] {
        assert_eq!(std::fs::read(w.join(name)).unwrap(), name.as_bytes());
    }
    let eio = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    assert_eq!(eio(std::fs::metadata(w.join("b.md")).map(|_| ())), Some(libc::EIO));
    assert_eq!(eio(std::fs::read(w.join("b.md")).map(|_| ())), Some(libc::EIO));
    let ls = Command::new("ls").arg("-l").arg(&w).output().unwrap();
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains("a.md") && text.contains("c.md"), "{text}");
    // The daemon names it in its log, which is plain text (no colour codes).
    let log = m.log();
    assert!(log.contains(&format!("inode {ino}")) && log.contains("b.md"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log file: {log:?}");
    m.unmount();
    let store = m.store.to_str().unwrap().to_string();
    let passfile = m.passfile.to_str().unwrap().to_string();
    let out = common::vaultfs(&["fsck", &store, "--json", "--passphrase-file", &passfile]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = r["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["kind"] == "inode_damaged" && p["ino"] == ino),
        "fsck names the damaged inode: {r:#}"
    );
}
