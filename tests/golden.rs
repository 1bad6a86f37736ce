//! Golden vault: a vault written by format v1 (sled 0.34 store) is committed
//! under tests/golden/v1/vault, and every later build must still open it and
//! read back exactly what tests/golden/v1/MANIFEST describes.
//!
//! Regenerate it (only when the format deliberately changes, together with a
//! new vN directory) with:
//!
//!     VAULTFS_WRITE_GOLDEN=1 cargo test --test golden -- --ignored write_golden_v1
//!
//! The committed copy is never opened in place (sled writes on open): the
//! check works on a copy in a temporary directory.

use std::path::{Path, PathBuf};

use vaultfs::crypto::{KdfParams, Passphrase};
use vaultfs::vault::{FileKind, InitOptions, NewNode, SetAttr, TimeSet, Timestamp, XattrFlags, level_dir};
use vaultfs::{Unlocked, Vault};

const PASSPHRASE: &str = "golden-passphrase";
const KDF: KdfParams = KdfParams { memory_kib: 8192, passes: 1, lanes: 1 };
const BLOCK_SIZE: u32 = 16384;
const UID: u32 = 1000;
const GID: u32 = 1000;
/// 2025-01-01T00:00:00Z, set as atime and mtime of every user inode.
const TIME: Timestamp = Timestamp { secs: 1_735_689_600, nanos: 123_456_789 };

const NOTES: &[u8] = b"user prefers tabs\n";
const NESTED_LEN: usize = 40_000;
const SECRET: &[u8] = b"level 2: private memory\n";
const SEALED: &[u8] = b"level 3: sealed memory\n";
const SPARSE_AT: u64 = 1 << 20;
const SPARSE_BYTE: u8 = 0x5A;
const XATTR_NAME: &[u8] = b"user.tag";
const XATTR_VALUE: &[u8] = b"golden";

/// Byte i of 1-working/dir/nested.txt.
fn nested_byte(i: usize) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

fn nested_content() -> Vec<u8> {
    (0..NESTED_LEN).map(nested_byte).collect()
}

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

fn pass() -> Passphrase {
    Passphrase::new(PASSPHRASE.as_bytes().to_vec())
}

fn manifest() -> String {
    format!(
        "\
vaultfs golden vault, format v1
===============================

Written by tests/golden.rs (write_golden_v1); checked by golden_v1_reads_back.
Regenerate only for a deliberate format change, into a new directory:
    VAULTFS_WRITE_GOLDEN=1 cargo test --test golden -- --ignored write_golden_v1
Never open vault/ in place: sled rewrites its files on open; copy it first.

passphrase   {PASSPHRASE}
kdf          argon2id, memory {} KiB, {} pass, {} lane
block size   {BLOCK_SIZE}
owner        uid {UID}, gid {GID}; files 0644, directories 0755
atime/mtime  {}.{:09} (2025-01-01T00:00:00.123456789Z) on every user inode

path                        kind     level  content
1-working/notes.md          file     1      \"user prefers tabs\\n\" (18 bytes), xattr user.tag = \"golden\", nlink 2
1-working/hard              file     1      hard link to notes.md (same inode)
1-working/link              symlink  1      -> notes.md
1-working/dir               dir      1
1-working/dir/nested.txt    file     1      {NESTED_LEN} bytes, byte i = (i*7 + i/251) % 256
1-working/sparse            file     1      {} bytes: zeros, then 0x{SPARSE_BYTE:02X} at offset {SPARSE_AT} (one stored block)
2-private/secret.txt        file     2      {:?}
3-sealed/sealed.txt         file     3      {:?}

vault/ holds only sled's files (vault/db/...); sled's empty db/blobs/ is
left out (git keeps no empty directories) and sled recreates it on open.
",
        KDF.memory_kib,
        KDF.passes,
        KDF.lanes,
        TIME.secs,
        TIME.nanos,
        SPARSE_AT + 1,
        String::from_utf8_lossy(SECRET),
        String::from_utf8_lossy(SEALED),
    )
}

fn file() -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid: UID, gid: GID, rdev: 0 }
}

fn dir() -> NewNode {
    NewNode { kind: FileKind::Dir, perm: 0o755, uid: UID, gid: GID, rdev: 0 }
}

fn set_times(v: &Vault<Unlocked>, ino: u64) {
    let t = SetAttr { atime: Some(TimeSet::At(TIME)), mtime: Some(TimeSet::At(TIME)), ..Default::default() };
    v.setattr(ino, &t).unwrap();
}

fn write_file(v: &Vault<Unlocked>, parent: u64, name: &str, data: &[u8]) -> u64 {
    let a = v.create(parent, name.as_bytes(), file()).unwrap();
    v.write(a.ino, 0, data).unwrap();
    a.ino
}

fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push((e.path(), e.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

fn remove_empty_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            remove_empty_dirs(&e.path());
            if std::fs::read_dir(e.path()).unwrap().next().is_none() {
                std::fs::remove_dir(e.path()).unwrap();
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
#[ignore = "writes tests/golden/v1; run explicitly with VAULTFS_WRITE_GOLDEN=1"]
fn write_golden_v1() {
    if std::env::var("VAULTFS_WRITE_GOLDEN").as_deref() != Ok("1") {
        eprintln!("set VAULTFS_WRITE_GOLDEN=1 to (re)write {}", golden_root().display());
        return;
    }
    let root = golden_root();
    let vault_dir = root.join("vault");
    if vault_dir.exists() {
        std::fs::remove_dir_all(&vault_dir).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    Vault::init(&vault_dir, &pass(), InitOptions { kdf: KDF, block_size: BLOCK_SIZE }).unwrap();
    let v = Vault::open(&vault_dir).unwrap().unlock(&pass()).unwrap();
    let w = level_dir(1);
    let notes = write_file(&v, w, "notes.md", NOTES);
    v.setxattr(notes, XATTR_NAME, XATTR_VALUE, XattrFlags::default()).unwrap();
    let d = v.create(w, b"dir", dir()).unwrap().ino;
    let nested = write_file(&v, d, "nested.txt", &nested_content());
    let link = v.symlink(w, b"link", b"notes.md", UID, GID).unwrap().ino;
    let secret = write_file(&v, level_dir(2), "secret.txt", SECRET);
    let sealed = write_file(&v, level_dir(3), "sealed.txt", SEALED);
    v.link(notes, w, b"hard").unwrap();
    let sparse = write_file(&v, w, "sparse", &[]);
    v.write(sparse, SPARSE_AT, &[SPARSE_BYTE]).unwrap();
    for ino in [notes, d, nested, link, secret, sealed, sparse] {
        set_times(&v, ino);
    }
    v.sync().unwrap();
    drop(v);
    // git keeps no empty directories (sled's db/blobs/ is empty here): drop
    // them now so the check below sees exactly what a checkout holds.
    remove_empty_dirs(&vault_dir);
    // Nothing but sled's files, all under vault/db/.
    let names: Vec<_> = std::fs::read_dir(&vault_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("db")], "vault dir holds only db/");
    let files = files_under(&vault_dir);
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    for (p, n) in &files {
        eprintln!("{:>9}  {}", n, p.strip_prefix(&root).unwrap().display());
    }
    eprintln!("{total:>9}  total");
    assert!(total < 2 << 20, "golden vault is {total} bytes");
    std::fs::write(root.join("MANIFEST"), manifest()).unwrap();
    // The freshly written vault passes the check.
    check(&vault_dir_copy(&vault_dir));
}

fn vault_dir_copy(from: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_dir(from, t.path());
    t
}

#[test]
fn golden_v1_reads_back() {
    let root = golden_root();
    let vault_dir = root.join("vault");
    assert!(
        vault_dir.join("db").is_dir(),
        "{} is missing: the golden vault must be committed",
        vault_dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("MANIFEST")).unwrap(),
        manifest(),
        "MANIFEST differs from what the test checks"
    );
    check(&vault_dir_copy(&vault_dir));
}

fn check(copy: &tempfile::TempDir) {
    let locked = Vault::open(copy.path()).unwrap();
    let h = locked.header();
    assert_eq!((h.version, h.features, h.block_size, h.kdf), (1, 0, BLOCK_SIZE, KDF));
    drop(locked);
    let e = Vault::open(copy.path()).unwrap().unlock(&Passphrase::new(b"not-golden".to_vec())).err().unwrap();
    assert_eq!(e.kind(), vaultfs::ErrorKind::WrongPassphrase);
    let v = Vault::open(copy.path()).unwrap().unlock(&pass()).unwrap();
    let w = level_dir(1);
    let look = |parent: u64, name: &str| {
        v.lookup(parent, name.as_bytes()).unwrap_or_else(|e| panic!("lookup {name}: {e}"))
    };

    // Listings.
    let names = |ino: u64| {
        let mut n: Vec<String> =
            v.readdir(ino, 0, 100).unwrap().into_iter().map(|e| String::from_utf8(e.name).unwrap()).collect();
        n.sort();
        n
    };
    assert_eq!(names(w), ["dir", "hard", "link", "notes.md", "sparse"]);
    assert_eq!(names(level_dir(2)), ["secret.txt"]);
    assert_eq!(names(level_dir(3)), ["sealed.txt"]);
    for l in [0, 4, 5] {
        assert!(names(level_dir(l)).is_empty(), "level {l} is empty");
    }

    // notes.md, its hard link and its xattr.
    let notes = look(w, "notes.md");
    assert_eq!(
        (notes.kind, notes.level, notes.size, notes.nlink),
        (FileKind::File, Some(1), NOTES.len() as u64, 2)
    );
    assert_eq!((notes.perm, notes.uid, notes.gid, notes.mtime, notes.atime), (0o644, UID, GID, TIME, TIME));
    assert_eq!(v.read(notes.ino, 0, 100).unwrap(), NOTES);
    let hard = look(w, "hard");
    assert_eq!(hard.ino, notes.ino, "hard link shares the inode");
    assert_eq!(hard.nlink, 2);
    assert_eq!(v.getxattr(notes.ino, XATTR_NAME).unwrap(), XATTR_VALUE);
    assert_eq!(v.listxattr(notes.ino).unwrap(), vec![XATTR_NAME.to_vec()]);

    // Symlink.
    let link = look(w, "link");
    assert_eq!((link.kind, link.level, link.size), (FileKind::Symlink, Some(1), 8));
    assert_eq!(v.readlink(link.ino).unwrap(), b"notes.md");

    // Nested file: spans three 16 KiB blocks.
    let d = look(w, "dir");
    assert_eq!((d.kind, d.level, d.nlink, d.perm), (FileKind::Dir, Some(1), 2, 0o755));
    let nested = look(d.ino, "nested.txt");
    assert_eq!(
        (nested.level, nested.size, nested.blocks),
        (Some(1), NESTED_LEN as u64, 3 * (BLOCK_SIZE as u64 / 512))
    );
    assert!(v.read(nested.ino, 0, NESTED_LEN + 1).unwrap() == nested_content(), "nested.txt content");
    assert_eq!(
        v.read(nested.ino, 16383, 3).unwrap(),
        [nested_byte(16383), nested_byte(16384), nested_byte(16385)]
    );

    // Sparse file: one stored block.
    let sparse = look(w, "sparse");
    assert_eq!((sparse.level, sparse.size, sparse.blocks), (Some(1), SPARSE_AT + 1, BLOCK_SIZE as u64 / 512));
    let data = v.read(sparse.ino, 0, SPARSE_AT as usize + 10).unwrap();
    assert_eq!(data.len() as u64, SPARSE_AT + 1);
    assert!(data[..SPARSE_AT as usize].iter().all(|&b| b == 0), "the hole reads as zeros");
    assert_eq!(data[SPARSE_AT as usize], SPARSE_BYTE);
    assert_eq!(v.seek_data(sparse.ino, 0).unwrap(), Some(SPARSE_AT));
    assert_eq!(v.seek_hole(sparse.ino, 0).unwrap(), Some(0));

    // The other levels.
    let secret = look(level_dir(2), "secret.txt");
    assert_eq!((secret.level, secret.size), (Some(2), SECRET.len() as u64));
    assert_eq!(v.read(secret.ino, 0, 100).unwrap(), SECRET);
    let sealed = look(level_dir(3), "sealed.txt");
    assert_eq!((sealed.level, sealed.size), (Some(3), SEALED.len() as u64));
    assert_eq!(v.read(sealed.ino, 0, 100).unwrap(), SEALED);
    for a in [&notes, &d, &nested, &link, &secret, &sealed, &sparse] {
        assert_eq!((a.uid, a.gid, a.mtime), (UID, GID, TIME), "owner and mtime of inode {}", a.ino);
    }

    // The vault stays writable: new inode numbers do not collide.
    let n = v.create(w, b"new", file()).unwrap();
    assert!(![notes.ino, d.ino, nested.ino, link.ino, secret.ino, sealed.ino, sparse.ino].contains(&n.ino));
    v.write(n.ino, 0, b"still writable").unwrap();
    drop(v);
    let v = Vault::open(copy.path()).unwrap().unlock(&pass()).unwrap();
    let n2 = v.lookup(w, b"new").unwrap();
    assert_eq!(v.read(n2.ino, 0, 100).unwrap(), b"still writable");
    assert_eq!(v.read(notes.ino, 0, 100).unwrap(), NOTES);
    // Its audit log goes on in the chunks of today's format (docs/AUDIT.md,
    // storage) and verifies as one tree.
    v.sync().unwrap();
    let report = v.audit_verify().unwrap();
    assert!(report.leaves > 0);
    assert_eq!(report.leaves, v.audit_size());
}
