//! Real tools against a real mount: cp -a, rsync, git, sqlite3, tar, an
//! editor-style save loop, and mount(8)/fstab through mount-helpers/. Each
//! test has its own vault and mount (tests/common); trees are compared
//! entry by entry (mode, size, mtime, kind, links, owner, symlink target,
//! hard-link groups), by xattr dump (getfattr) and byte for byte.
//!
//! Needs root, /dev/fuse, and rsync, sqlite3, git, tar, getfattr/setfattr.
//! The mount(8) test installs mount-helpers/ into /sbin (idempotently) and
//! leaves it installed.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Mount, PASSPHRASE, is_mounted, sh, wait_for};

// ---------------------------------------------------------------- helpers

/// Prints how long a test took (visible with --nocapture).
struct Timed(&'static str, Instant);

impl Timed {
    fn new(name: &'static str) -> Timed {
        Timed(name, Instant::now())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        eprintln!("[tools] {}: {:.2?}", self.0, self.1.elapsed());
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    check(cmd, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(cmd: &Command, out: &Output) {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `path` single-quoted for sh.
fn shq(path: &Path) -> String {
    format!("'{}'", path.to_str().expect("utf-8 path").replace('\'', r"'\''"))
}

/// `dir` with a trailing slash (rsync: "the contents of").
fn slash(dir: &Path) -> String {
    format!("{}/", dir.display())
}

/// A tree with what copy tools must preserve: modes 0644/0600/0755/0444/
/// 0640/0700, an owner other than root, a subdirectory two deep, an empty
/// directory and file, a 1 MiB random file, a sparse file, symlinks
/// (relative, to a directory, upward, dangling), a hard-link pair, a file
/// with xattrs user.a and user.b (one binary), and mtimes in the past with
/// sub-second parts.
const TREE_SCRIPT: &str = r#"
set -e
umask 022
mkdir -p sub/deeper empty_dir
printf 'hello\n' > plain;                   chmod 0644 plain
printf 'secret\n' > private;                chmod 0600 private
printf '#!/bin/sh\necho hi\n' > script;     chmod 0755 script
printf 'read only\n' > readonly;            chmod 0444 readonly
printf 'group\n' > sub/inner;               chmod 0640 sub/inner
printf 'deep\n' > sub/deeper/leaf;          chmod 0700 sub/deeper
: > empty
head -c 1048583 /dev/urandom > big
truncate -s 3M sparse; printf 'tail' >> sparse
printf 'tagged\n' > tagged
setfattr -n user.a -v alpha tagged
setfattr -n user.b -v 0x00ff10 tagged
ln private private.hardlink
ln -s plain plain.symlink
ln -s sub/deeper deeper.symlink
ln -s ../plain sub/up.symlink
ln -s does-not-exist dangling.symlink
chown 1234:5678 sub/inner
touch -d '2001-02-03 04:05:06.123456789' plain private script readonly sub/inner sub/deeper/leaf empty big sparse tagged
touch -h -d '2002-03-04 05:06:07.5' plain.symlink deeper.symlink sub/up.symlink dangling.symlink
touch -d '2003-04-05 06:07:08.25' empty_dir sub/deeper sub .
"#;

fn make_tree(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    sh(TREE_SCRIPT, dir);
}

/// Every entry under `root` (root first, as ""), not following symlinks.
fn walk(root: &Path) -> Vec<(String, PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()))
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in names.into_iter().rev() {
                let r = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
                stack.push((r, path.join(&n)));
            }
        }
        out.push((rel, path, md));
    }
    out
}

/// `stat -c '%n %a %s %Y %F %h %u:%g'`-like lines for every entry under
/// `root` (relative names, root as "."), plus symlink targets and hard-link
/// groups. Directory sizes are left out (file-system specific). `ns`: compare
/// mtimes to the nanosecond, else to the second.
fn listing(root: &Path, ns: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut groups: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for (rel, path, md) in walk(root) {
        let name = if rel.is_empty() { ".".to_string() } else { rel.clone() };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_file() {
            "regular"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "other"
        };
        let size = if ft.is_dir() { "-".to_string() } else { md.size().to_string() };
        let mtime =
            if ns { format!("{}.{:09}", md.mtime(), md.mtime_nsec()) } else { md.mtime().to_string() };
        let mut line = format!(
            "{name} {:o} {size} {mtime} {kind} {} {}:{}",
            md.mode() & 0o7777,
            md.nlink(),
            md.uid(),
            md.gid()
        );
        if ft.is_symlink() {
            line += &format!(" -> {}", fs::read_link(&path).unwrap().display());
        }
        if !ft.is_dir() && md.nlink() > 1 {
            groups.entry((md.dev(), md.ino())).or_default().push(name);
        }
        lines.push(line);
    }
    let mut g: Vec<String> = groups
        .into_values()
        .map(|mut v| {
            v.sort();
            format!("hard links: {}", v.join(" "))
        })
        .collect();
    g.sort();
    lines.extend(g);
    lines
}

/// `getfattr -d -R` dump of `root` (user.* and POSIX ACL attributes), one
/// block per file with paths relative to `root`, sorted.
fn xattr_dump(root: &Path) -> Vec<String> {
    let out = Command::new("getfattr")
        .args(["-d", "-h", "-R", "--absolute-names", "-m", r"^(user\.|system\.posix_acl_)"])
        .arg(root)
        .output()
        .expect("run getfattr");
    check(&Command::new("getfattr"), &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("# file: {}", root.display());
    let mut blocks: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let b = b.strip_prefix(&prefix).unwrap_or_else(|| panic!("unexpected getfattr block {b:?}"));
            format!("# file: .{b}")
        })
        .collect();
    blocks.sort();
    blocks
}

/// What two trees must agree on.
#[derive(Clone, Copy)]
struct Same {
    /// mtimes to the nanosecond (else the second).
    ns: bool,
    /// xattr dumps.
    xattrs: bool,
}

const EXACT: Same = Same { ns: true, xattrs: true };

/// Differences between `want` and `got`, described; empty if none.
fn diff_trees(what: &str, want: &Path, got: &Path, same: Same) -> Vec<String> {
    let mut problems = Vec::new();
    let (a, b) = (listing(want, same.ns), listing(got, same.ns));
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        problems.push(format!(
            "{what}: listings differ\n  expected (from {}):\n    {}\n  got (in {}):\n    {}",
            want.display(),
            only_a.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n    "),
            got.display(),
            only_b.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n    ")
        ));
    }
    if same.xattrs {
        let (a, b) = (xattr_dump(want), xattr_dump(got));
        if a != b {
            problems.push(format!(
                "{what}: xattr dumps differ\n  expected:\n{}\n  got:\n{}",
                a.join("\n"),
                b.join("\n")
            ));
        }
    }
    for (rel, path, md) in walk(want) {
        if !md.is_file() {
            continue;
        }
        let other = got.join(&rel);
        let x = fs::read(&path).unwrap();
        match fs::read(&other) {
            Ok(y) if x == y => {}
            Ok(y) => {
                let at = x.iter().zip(&y).position(|(p, q)| p != q).unwrap_or(x.len().min(y.len()));
                problems.push(format!(
                    "{what}: {rel}: contents differ at byte {at} (sizes {} and {})",
                    x.len(),
                    y.len()
                ));
            }
            Err(e) => problems.push(format!("{what}: {rel}: cannot read copy: {e}")),
        }
    }
    problems
}

fn assert_no_problems(problems: &[String]) {
    assert!(problems.is_empty(), "{} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}

// ---------------------------------------------------------------- cp -a

#[test]
fn cp_a_round_trip() {
    let _t = Timed::new("cp_a_round_trip");
    let mut m = Mount::new();
    let local = tempdir();
    let src = local.path().join("src");
    make_tree(&src);
    let inside = m.path("1-working/tree");
    let mut problems = Vec::new();

    run(Command::new("cp").arg("-a").arg(&src).arg(&inside));
    problems.extend(diff_trees("cp -a in", &src, &inside, EXACT));
    let out = local.path().join("out");
    run(Command::new("cp").arg("-a").arg(&inside).arg(&out));
    problems.extend(diff_trees("cp -a out", &src, &out, EXACT));

    m.remount();
    problems.extend(diff_trees("after remount", &src, &inside, EXACT));
    let out2 = local.path().join("out2");
    run(Command::new("cp").arg("-a").arg(&inside).arg(&out2));
    problems.extend(diff_trees("cp -a out after remount", &src, &out2, EXACT));
    assert_no_problems(&problems);
}

/// Narrower than cp_a_round_trip: the mode cp -a gives a file in the mount,
/// and the mode it gives a copy taken out after a chmod inside the mount.
#[test]
fn cp_a_mode_survives_acl_xattrs() {
    let _t = Timed::new("cp_a_mode_survives_acl_xattrs");
    let m = Mount::new();
    let local = tempdir();
    let src = local.path().join("report.txt");
    fs::write(&src, "report\n").unwrap();
    sh("chmod 0644 report.txt", local.path());
    let inside = m.path("1-working/report.txt");
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    let mut problems = Vec::new();

    run(Command::new("cp").arg("-a").arg(&src).arg(&inside));
    if mode(&inside) != 0o644 {
        problems.push(format!("cp -a into the mount: mode {:o}, want 644", mode(&inside)));
    }
    // Made private inside the mount, then copied out: must stay private.
    sh(&format!("chmod 0600 {}", shq(&inside)), local.path());
    let out = local.path().join("out.txt");
    run(Command::new("cp").arg("-a").arg(&inside).arg(&out));
    if mode(&out) != 0o600 {
        problems.push(format!("chmod 0600 in the mount, then cp -a out: mode {:o}, want 600", mode(&out)));
    }
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------- rsync

/// rsync -aX plus -H: without -H rsync splits hard links by design, and the
/// tree has a hard-link pair.
fn rsync(from: &Path, to: &Path) -> String {
    run(Command::new("rsync").arg("-aHX").arg(slash(from)).arg(slash(to)))
}

#[test]
fn rsync_ahx_round_trip() {
    let _t = Timed::new("rsync_ahx_round_trip");
    let mut m = Mount::new();
    let local = tempdir();
    let src = local.path().join("src");
    make_tree(&src);
    let inside = m.path("1-working/tree");
    let mut problems = Vec::new();

    rsync(&src, &inside);
    problems.extend(diff_trees("rsync in", &src, &inside, EXACT));
    let out = local.path().join("out");
    rsync(&inside, &out);
    problems.extend(diff_trees("rsync out", &src, &out, EXACT));

    // An update: rsync writes a temporary file and renames it over the old.
    // (Only file contents: a deletion would leave the root's mtime at the
    // deletion time, by rsync's design, on any file system.)
    sh("printf 'hello again\\n' > plain && touch -d '2004-05-06 07:08:09.75' plain", &src);
    let before = fs::metadata(inside.join("plain")).unwrap().ino();
    run(Command::new("rsync").arg("-aHX").arg("--delete").arg(slash(&src)).arg(slash(&inside)));
    assert_ne!(
        fs::metadata(inside.join("plain")).unwrap().ino(),
        before,
        "rsync renamed a new file over plain"
    );
    problems.extend(diff_trees("rsync update", &src, &inside, EXACT));
    let itemized = run(Command::new("rsync")
        .args(["-aHXn", "--checksum", "--delete", "-i"])
        .arg(slash(&src))
        .arg(slash(&inside)));
    if !itemized.trim().is_empty() {
        problems.push(format!("rsync --checksum -n still finds differences:\n{itemized}"));
    }

    m.remount();
    problems.extend(diff_trees("after remount", &src, &inside, EXACT));
    let out2 = local.path().join("out2");
    rsync(&inside, &out2);
    problems.extend(diff_trees("rsync out after remount", &src, &out2, EXACT));
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------- git

fn git(repo: &Path, home: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C"))
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn git_commit_gc_remount() {
    let _t = Timed::new("git_commit_gc_remount");
    let mut m = Mount::new();
    let home = tempdir();
    let repo = m.path("1-working/repo");
    fs::create_dir(&repo).unwrap();
    let g = |args: &[&str]| git(&repo, home.path(), args);

    g(&["init", "-q", "-b", "main"]);
    g(&["config", "user.name", "Vault Tester"]);
    g(&["config", "user.email", "tester@example.invalid"]);
    g(&["config", "core.fsync", "all"]);
    g(&["config", "gc.auto", "0"]);
    fs::write(repo.join("README.md"), "# vault repo\n").unwrap();
    fs::create_dir_all(repo.join("src/nested")).unwrap();
    for i in 0..10 {
        fs::write(repo.join(format!("src/file{i}.txt")), format!("line {i}\n").repeat(50 + i)).unwrap();
    }
    fs::write(repo.join("src/nested/deep.rs"), "fn main() {}\n").unwrap();
    fs::write(repo.join("blob.bin"), pseudo_random(300_000, 7)).unwrap();
    fs::write(repo.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    sh("chmod 0755 run.sh", &repo);
    g(&["add", "-A"]);
    g(&["commit", "-q", "-m", "first"]);
    assert_eq!(g(&["log", "--oneline"]).lines().count(), 1);
    assert_eq!(g(&["status", "--porcelain"]), "", "clean after the first commit");
    assert!(g(&["ls-files", "-s", "run.sh"]).starts_with("100755 "), "executable bit recorded");
    g(&["fsck", "--full", "--strict"]);

    fs::write(repo.join("README.md"), "# vault repo\n\nedited\n").unwrap();
    fs::remove_file(repo.join("src/file3.txt")).unwrap();
    fs::write(repo.join("src/new.txt"), "new file\n").unwrap();
    g(&["add", "-A"]);
    g(&["commit", "-q", "-m", "second"]);
    let log = g(&["log", "--oneline"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    assert_eq!(g(&["status", "--porcelain"]), "");

    // gc packs every object (tmp file + fsync + rename over) and deletes the loose ones.
    g(&["gc", "--prune=now", "--quiet"]);
    let counts = g(&["count-objects", "-v"]);
    assert!(counts.lines().any(|l| l == "count: 0"), "loose objects left after gc:\n{counts}");
    assert!(counts.lines().any(|l| l == "packs: 1"), "not one pack after gc:\n{counts}");
    g(&["fsck", "--full", "--strict"]);
    assert_eq!(g(&["status", "--porcelain"]), "");
    let head = g(&["rev-parse", "HEAD"]);

    m.remount();
    assert_eq!(g(&["log", "--oneline"]), log, "both commits survive a remount");
    assert_eq!(g(&["rev-parse", "HEAD"]), head);
    assert_eq!(g(&["status", "--porcelain"]), "", "clean after remount");
    g(&["fsck", "--full", "--strict"]);
    assert_eq!(g(&["show", "HEAD:README.md"]), "# vault repo\n\nedited\n");
    assert_eq!(g(&["show", "HEAD~1:src/file3.txt"]), "line 3\n".repeat(53));
    assert_eq!(fs::read(repo.join("blob.bin")).unwrap(), pseudo_random(300_000, 7));
}

// ---------------------------------------------------------------- sqlite3

fn sqlite(db: &Path, sql: &str) -> String {
    let mut child = Command::new("sqlite3")
        .args(["-batch", "-bail"])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqlite3");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    check(&Command::new("sqlite3"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inserts(from: usize, n: usize) -> String {
    let mut sql = String::from("BEGIN;\n");
    for i in from..from + n {
        sql +=
            &format!("INSERT INTO t(name, payload) VALUES('row-{i}', randomblob({}));\n", 50 + i * 37 % 400);
    }
    sql + "COMMIT;\n"
}

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB);\n\
                      CREATE INDEX t_name ON t(name);\n";
const CHECK: &str = "SELECT count(*), sum(id) FROM t;\nPRAGMA integrity_check;\n";

#[test]
fn sqlite_rollback_and_wal() {
    let _t = Timed::new("sqlite_rollback_and_wal");
    let mut m = Mount::new();
    let db1 = m.path("1-working/rollback.db");
    let db2 = m.path("1-working/wal.db");

    let out = sqlite(&db1, &format!("{SCHEMA}{}{CHECK}", inserts(1, 1000)));
    assert_eq!(out, "1000|500500\nok\n");
    let out = sqlite(&db2, &format!("PRAGMA journal_mode=WAL;\n{SCHEMA}{}{CHECK}", inserts(1, 1000)));
    assert_eq!(out, "wal\n1000|500500\nok\n");
    // The rollback journal is deleted at commit; WAL and shm files at the last close.
    for leftover in ["rollback.db-journal", "wal.db-wal", "wal.db-shm"] {
        assert!(!m.path(&format!("1-working/{leftover}")).exists(), "{leftover} left behind");
    }

    m.remount();
    assert_eq!(sqlite(&db1, CHECK), "1000|500500\nok\n");
    assert_eq!(sqlite(&db2, &format!("PRAGMA journal_mode;\n{CHECK}")), "wal\n1000|500500\nok\n");
    // And both still take writes.
    let more = format!("{}{CHECK}", inserts(1001, 100));
    assert_eq!(sqlite(&db1, &more), "1100|605550\nok\n");
    assert_eq!(sqlite(&db2, &more), "1100|605550\nok\n");
    assert_eq!(sqlite(&db2, "SELECT name FROM t WHERE id = 777;\n"), "row-777\n");
}

// ---------------------------------------------------------------- tar

#[test]
fn tar_into_within_and_out_of_the_mount() {
    let _t = Timed::new("tar_into_within_and_out_of_the_mount");
    let m = Mount::new();
    let local = tempdir();
    let src = local.path().join("src");
    make_tree(&src);
    let work = m.path("1-working");
    let archive = work.join("tree.tar");
    let xattrs = ["--xattrs", "--xattrs-include=user.*"];
    let mut problems = Vec::new();

    // Local tree -> archive in the mount -> extracted inside the mount.
    run(Command::new("tar").args(xattrs).arg("-C").arg(&src).arg("-cf").arg(&archive).arg("."));
    let local_archive = local.path().join("local.tar");
    run(Command::new("tar").args(xattrs).arg("-C").arg(&src).arg("-cf").arg(&local_archive).arg("."));
    let listed = |a: &Path| run(Command::new("tar").args(["--full-time", "-tvf"]).arg(a));
    assert_eq!(listed(&archive), listed(&local_archive), "archive listing");
    let extracted = work.join("extracted");
    fs::create_dir(&extracted).unwrap();
    run(Command::new("tar").args(xattrs).arg("-C").arg(&extracted).arg("-xpf").arg(&archive));
    problems.extend(diff_trees("tar -x inside the mount", &src, &extracted, EXACT));

    // The whole level directory streamed out through a pipe (plain GNU format:
    // whole-second mtimes, no xattrs).
    let out = local.path().join("out");
    fs::create_dir(&out).unwrap();
    sh(&format!("tar -C {} -cf - . | tar -C {} -xf -", shq(&work), shq(&out)), local.path());
    problems.extend(diff_trees(
        "tar pipe out",
        &src,
        &out.join("extracted"),
        Same { ns: false, xattrs: false },
    ));
    if fs::read(out.join("tree.tar")).unwrap() != fs::read(&archive).unwrap() {
        problems.push("tar pipe out: tree.tar differs from the archive in the mount".into());
    }
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------- editor save

/// Saves like vim/emacs/VS Code with atomic save: write a temporary file in
/// the same directory, fsync it, rename it over the original, fsync the
/// directory.
fn atomic_save(dir: &Path, name: &str, content: &[u8], round: usize) {
    let tmp = dir.join(format!(".{name}.swp{round}"));
    let mut f = fs::File::create(&tmp).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::rename(&tmp, dir.join(name)).unwrap();
    fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn version(i: usize) -> Vec<u8> {
    let mut v = format!("version {i}\n").into_bytes();
    v.extend(pseudo_random(i * 997 % 20_000, i as u32));
    v
}

#[test]
fn editor_style_atomic_save() {
    let _t = Timed::new("editor_style_atomic_save");
    let mut m = Mount::new();
    let dir = m.path("1-working/docs");
    fs::create_dir(&dir).unwrap();
    let doc = dir.join("notes.txt");
    fs::write(&doc, b"original\n").unwrap();

    // A reader that opened the original keeps seeing it after the save.
    let mut reader = fs::File::open(&doc).unwrap();
    let mut inos = vec![fs::metadata(&doc).unwrap().ino()];
    for i in 0..50 {
        let content = version(i);
        atomic_save(&dir, "notes.txt", &content, i);
        assert_eq!(fs::read(&doc).unwrap(), content, "round {i}: content");
        let ino = fs::metadata(&doc).unwrap().ino();
        assert_ne!(ino, *inos.last().unwrap(), "round {i}: the rename replaced the inode");
        inos.push(ino);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [OsStr::new("notes.txt")], "round {i}: no temporary files left");
        if i == 0 {
            let mut old = String::new();
            reader.read_to_string(&mut old).unwrap();
            assert_eq!(old, "original\n", "the replaced file stays readable through an open descriptor");
        }
    }
    drop(reader);

    m.remount();
    assert_eq!(fs::read(&doc).unwrap(), version(49), "last save survives a remount");
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [OsStr::new("notes.txt")]);
}

// ---------------------------------------------------------------- mount(8)

/// The session asks for subtype "vaultfs", so /proc/self/mountinfo (and
/// findmnt, `umount -a -t fuse.vaultfs`, ...) should show "fuse.vaultfs".
#[test]
fn mount_type_is_fuse_vaultfs() {
    let _t = Timed::new("mount_type_is_fuse_vaultfs");
    let m = Mount::new();
    let (fstype, source) = mount_entry(&m.mnt).expect("mounted");
    assert_eq!(Path::new(&source), m.store);
    assert_eq!(fstype, "fuse.vaultfs");
}

fn helpers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helpers")
}

/// The helper's translation, against a stand-in binary that records its
/// arguments (no mount, no root needed).
#[test]
fn mount_helper_translates_arguments() {
    let _t = Timed::new("mount_helper_translates_arguments");
    let dir = tempdir();
    let log = dir.path().join("args");
    let fake = dir.path().join("fake-vaultfs");
    fs::write(
        &fake,
        format!("#!/bin/sh\nfor a; do printf '[%s]' \"$a\"; done > {}\nexit ${{FAKE_RC:-0}}\n", shq(&log)),
    )
    .unwrap();
    sh(&format!("chmod 0755 {}", shq(&fake)), dir.path());
    let helper = helpers_dir().join("mount.vaultfs");
    let call = |env: &[(&str, &OsStr)], args: &[&str]| -> (Option<i32>, String) {
        let _ = fs::remove_file(&log);
        let mut c = Command::new("sh");
        c.arg(&helper).args(args).env_remove("VAULTFS_BIN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.code(), fs::read_to_string(&log).unwrap_or_default())
    };
    let with_fake = [("VAULTFS_BIN", fake.as_os_str())];

    // mount(8)'s calling convention: source, target, flags, -o, -t.
    let (rc, args) = call(
        &with_fake,
        &[
            "/s",
            "/m",
            "-s",
            "-n",
            "-v",
            "-o",
            "rw,async,user=bob,noauto,passphrase_file=/p,x-systemd.automount",
            "-t",
            "fuse.vaultfs",
        ],
    );
    assert_eq!(rc, Some(0));
    assert_eq!(args, "[mount][/s][/m][-o][rw,noauto,passphrase_file=/p,x-systemd.automount]");
    // Repeated -o joined; flags before the operands; -oOPTS glued.
    let (_, args) = call(&with_fake, &["-sv", "-oro", "/my store", "/my mnt", "-o", "uid=1000"]);
    assert_eq!(args, "[mount][/my store][/my mnt][-o][ro,uid=1000]");
    // No options: no -o.
    let (_, args) = call(&with_fake, &["/s", "/m"]);
    assert_eq!(args, "[mount][/s][/m]");
    // Exit code passed through.
    let fake_rc = [("VAULTFS_BIN", fake.as_os_str()), ("FAKE_RC", OsStr::new("3"))];
    assert_eq!(call(&fake_rc, &["/s", "/m"]).0, Some(3));
    // -f: fake, nothing run.
    assert_eq!(call(&with_fake, &["/s", "/m", "-f", "-o", "ro"]), (Some(0), String::new()));
    // Bad invocations.
    assert_eq!(call(&with_fake, &["/s"]).0, Some(1));
    assert_eq!(call(&with_fake, &["/s", "/m", "-x"]).0, Some(1));

    // Without VAULTFS_BIN: a `vaultfs` next to the helper's resolved path.
    let bindir = dir.path().join("bin");
    fs::create_dir(&bindir).unwrap();
    fs::copy(&helper, bindir.join("mount.vaultfs")).unwrap();
    fs::copy(&fake, bindir.join("vaultfs")).unwrap();
    let link = dir.path().join("mount.fuse.vaultfs");
    std::os::unix::fs::symlink(bindir.join("mount.vaultfs"), &link).unwrap();
    let out = Command::new("sh")
        .arg(&link)
        .args(["/s", "/m", "-o", "rw"])
        .env_remove("VAULTFS_BIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(&log).unwrap(), "[mount][/s][/m][-o][rw]");
}

/// Unmounts on drop whatever the test left mounted.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = common::vaultfs(&["umount", self.0.to_str().unwrap()]);
        }
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The fstype and source /proc/self/mountinfo shows for `mnt`.
fn mount_entry(mnt: &Path) -> Option<(String, String)> {
    let canon = mnt.canonicalize().ok()?;
    fs::read_to_string("/proc/self/mountinfo").ok()?.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (Path::new(left.split(' ').nth(4)?) == canon).then(|| {
            let mut r = right.split(' ');
            (r.next().unwrap_or("").to_string(), r.next().unwrap_or("").to_string())
        })
    })
}

/// After umount(8), waits until the daemon has flushed and exited.
fn wait_daemon_gone(store: &Path) {
    let pid = store.join("mount.pid");
    assert!(
        wait_for(Duration::from_secs(10), || !pid.exists()),
        "daemon still running 10 s after umount ({} exists)",
        pid.display()
    );
}

#[test]
fn mount_helper_with_mount8_umount8_and_fstab() {
    let _t = Timed::new("mount_helper_with_mount8_umount8_and_fstab");
    run(Command::new("bash").arg(helpers_dir().join("install.sh")).env("VAULTFS_BIN", common::bin()));
    for h in ["/sbin/mount.fuse.vaultfs", "/sbin/mount.vaultfs"] {
        assert!(Path::new(h).exists(), "{h} installed");
    }
    // Idempotent: a second run changes nothing.
    let again =
        run(Command::new("bash").arg(helpers_dir().join("install.sh")).env("VAULTFS_BIN", common::bin()));
    assert!(!again.contains("installed:"), "second install changed something:\n{again}");

    let dir = tempdir();
    let store = dir.path().join("store");
    let mnt = dir.path().join("mnt");
    let pass = dir.path().join("pass");
    fs::create_dir(&mnt).unwrap();
    fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let out = common::vaultfs(&[
        "init",
        store.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--kdf-memory",
        "8",
        "--kdf-passes",
        "1",
    ]);
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    let _cleanup = Cleanup(mnt.clone());
    let opt = format!("passphrase_file={}", pass.display());
    let mount8 = || {
        run(Command::new("mount").args(["-t", "fuse.vaultfs"]).arg(&store).arg(&mnt).args(["-o", &opt]));
    };
    let umount8 = || {
        run(Command::new("umount").arg(&mnt));
        assert!(!is_mounted(&mnt), "umount(8) unmounted");
        wait_daemon_gone(&store);
    };

    mount8();
    assert!(is_mounted(&mnt));
    let (fstype, source) = mount_entry(&mnt).unwrap();
    // "fuse.vaultfs" is what it should be; see mount_type_is_fuse_vaultfs.
    assert!(matches!(fstype.as_str(), "fuse" | "fuse.vaultfs"), "fstype {fstype}");
    assert_eq!(Path::new(&source), store);
    let mut levels: Vec<_> =
        fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    levels.sort();
    assert_eq!(
        levels,
        [
            ".audit",
            ".backup",
            ".stats",
            "0-ephemeral",
            "1-working",
            "2-private",
            "3-sealed",
            "4-vaulted",
            "5-black"
        ]
    );
    let file = mnt.join("1-working/hello.txt");
    fs::write(&file, "written through mount(8)\n").unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "written through mount(8)\n");
    // `mount -o remount,ro|rw` reaches the helper too, which leaves the
    // daemon alone and has the kernel change the running mount's flags.
    run(Command::new("mount").args(["-o", "remount,ro"]).arg(&mnt));
    let refused = fs::write(mnt.join("1-working/ro.txt"), "x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(30), "EROFS after remount,ro: {refused}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "written through mount(8)\n");
    run(Command::new("mount").args(["-o", "remount,rw"]).arg(&mnt));
    fs::write(mnt.join("1-working/rw.txt"), "x").unwrap();
    umount8();

    // A wrong passphrase fails, through the helper's exit code (3), and mounts nothing.
    let wrong = dir.path().join("wrong");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    let out = Command::new("/sbin/mount.fuse.vaultfs")
        .arg(&store)
        .arg(&mnt)
        .arg("-o")
        .arg(format!("passphrase_file={}", wrong.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("mount")
        .args(["-t", "fuse.vaultfs"])
        .arg(&store)
        .arg(&mnt)
        .arg("-o")
        .arg(format!("passphrase_file={}", wrong.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "mount(8) with a wrong passphrase failed");
    assert!(!is_mounted(&mnt));

    mount8();
    assert_eq!(fs::read_to_string(&file).unwrap(), "written through mount(8)\n", "file survives umount(8)");
    fs::write(mnt.join("1-working/second.txt"), "second\n").unwrap();
    umount8();

    // fstab-style: mount by mount point from a private fstab.
    let fstab = dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\n{} {} fuse.vaultfs passphrase_file={},noauto 0 0\n",
            store.display(),
            mnt.display(),
            pass.display()
        ),
    )
    .unwrap();
    run(Command::new("mount").arg("-T").arg(&fstab).arg(&mnt));
    assert!(mount_entry(&mnt).is_some_and(|e| e.0.starts_with("fuse")));
    assert_eq!(fs::read_to_string(&file).unwrap(), "written through mount(8)\n");
    assert_eq!(fs::read_to_string(mnt.join("1-working/second.txt")).unwrap(), "second\n");
    umount8();

    // -t vaultfs goes through the /sbin/mount.vaultfs alias.
    run(Command::new("mount").args(["-t", "vaultfs"]).arg(&store).arg(&mnt).args(["-o", &opt]));
    assert_eq!(fs::read_to_string(&file).unwrap(), "written through mount(8)\n");
    umount8();
}

/// `vaultfs init` never mixes a vault into a directory that holds other
/// files (exit 4, nothing written), unless asked; over a vault it refuses.
#[test]
fn init_refuses_a_non_empty_directory_unless_asked() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let pass = dir.path().join("pass");
    fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    fs::create_dir(&store).unwrap();
    fs::write(store.join("notes.txt"), b"someone's file").unwrap();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            store.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--kdf-memory",
            "8",
        ];
        args.extend_from_slice(extra);
        common::vaultfs(&args)
    };
    let out = init(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("is not empty and holds no vault") && err.contains("--allow-non-empty"), "{err}");
    let names: Vec<_> = fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["notes.txt"], "nothing written");
    let out = init(&["--allow-non-empty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(store.join("notes.txt")).unwrap(), b"someone's file");
    let out = init(&["--allow-non-empty"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a vault"));
}

/// A weak new passphrase (init, passwd) gets a warning on stderr and still
/// works; a strong one gets none.
#[test]
fn weak_new_passphrases_are_warned_about() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let (weak, strong) = (dir.path().join("weak"), dir.path().join("strong"));
    fs::write(&weak, "password1\n").unwrap();
    fs::write(&strong, format!("{PASSPHRASE}\n")).unwrap();
    let s = store.to_str().unwrap();
    let out = common::vaultfs(&["init", s, "--passphrase-file", weak.to_str().unwrap(), "--kdf-memory", "8"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: this passphrase is weak"), "{err}");
    let out = common::vaultfs(&[
        "passwd",
        s,
        "--passphrase-file",
        weak.to_str().unwrap(),
        "--new-passphrase-file",
        strong.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("weak"), "{err}");
}

/// `vaultfs passwd` on a mounted vault goes through the daemon: the agents'
/// mount stays up, the new passphrase is the one that mounts next time, a
/// wrong current one is refused (exit 3) and both attempts are recorded.
#[test]
fn passwd_while_mounted_goes_through_the_daemon() {
    let mut m = Mount::new();
    fs::write(m.path("1-working/kept"), b"still here").unwrap();
    let new = m.dir.path().join("new");
    fs::write(&new, "a whole new passphrase for the vault\n").unwrap();
    let bad = m.dir.path().join("bad");
    fs::write(&bad, "not the passphrase at all\n").unwrap();
    let (store, pass) = (m.store.to_str().unwrap().to_string(), m.passfile.to_str().unwrap().to_string());
    let (store, pass, newf) = (store.as_str(), pass.as_str(), new.to_str().unwrap());
    let wrong =
        m.run(&["passwd", store, "--passphrase-file", bad.to_str().unwrap(), "--new-passphrase-file", newf]);
    assert_eq!(wrong.status.code(), Some(3), "{}", String::from_utf8_lossy(&wrong.stderr));
    let out = m.run(&["passwd", store, "--passphrase-file", pass, "--new-passphrase-file", newf]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("by the mount at"));
    assert_eq!(fs::read(m.path("1-working/kept")).unwrap(), b"still here", "the mount stayed up");
    let audit = fs::read_to_string(m.path(".audit")).unwrap();
    let headers: Vec<&str> = audit.lines().filter(|l| l.contains("\"op\":\"header\"")).collect();
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers[0].contains("\"result\":13") && headers[1].contains("\"result\":0"), "{headers:?}");
    assert!(headers.iter().all(|h| h.contains("\"path\":\"passwd\"")), "{headers:?}");
    m.unmount();
    let old = m.run(&["info", store]);
    assert!(old.status.success());
    let out = m.run(&["fsck", store, "--passphrase-file", pass]);
    assert_eq!(out.status.code(), Some(3), "the old passphrase no longer opens it");
    m.passfile = new.clone();
    m.mount();
    assert_eq!(fs::read(m.path("1-working/kept")).unwrap(), b"still here");
}

/// `vaultfs escrow split` on a mounted vault goes through the daemon too:
/// its shares recover the vault once unmounted, and a second split needs
/// `--replace` as it does offline.
#[test]
fn escrow_split_while_mounted_goes_through_the_daemon() {
    let mut m = Mount::new();
    fs::write(m.path("1-working/kept"), b"kept").unwrap();
    let (store, pass) = (m.store.to_str().unwrap().to_string(), m.passfile.to_str().unwrap().to_string());
    let split = |extra: &[&str]| {
        let mut args =
            vec!["escrow", "split", &store, "--shares", "3", "--threshold", "2", "--passphrase-file", &pass];
        args.extend_from_slice(extra);
        m.run(&args)
    };
    let out = split(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shares: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(shares.len(), 3, "{shares:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("made by the mount at"));
    let again = split(&[]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--replace"));
    let audit = fs::read_to_string(m.path(".audit")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"path\":\"escrow split 2of3 levels \"") && l.contains("\"result\":0"))
    );
    m.unmount();
    let dir = m.dir.path().to_path_buf();
    let share_file = dir.join("two-shares");
    fs::write(&share_file, format!("{}\n{}\n", shares[0], shares[2])).unwrap();
    let new = dir.join("recovered");
    fs::write(&new, "the passphrase after recovery\n").unwrap();
    let out = m.run(&[
        "escrow",
        "recover",
        &store,
        "--share-file",
        share_file.to_str().unwrap(),
        "--new-passphrase-file",
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.passfile = new;
    m.mount();
    assert_eq!(fs::read(m.path("1-working/kept")).unwrap(), b"kept");
}

/// `vaultfs mount` never stacks or hides (exit 9): not on a live vault
/// mount, not on a directory with files (unless `-o nonempty`), and after a
/// daemon was killed it names the dead mount, which `vaultfs umount` then
/// clears so that the vault mounts again.
#[test]
fn mount_refuses_a_live_mount_a_non_empty_directory_and_names_a_dead_one() {
    let mut m = Mount::new();
    let mut other = Mount::new();
    other.unmount();
    let mount_on = |mnt: &Path, extra: &[&str]| {
        let mut args = vec![
            "mount",
            other.store.to_str().unwrap(),
            mnt.to_str().unwrap(),
            "--passphrase-file",
            other.passfile.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        common::vaultfs(&args)
    };
    let refused = |out: Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(9), "{what}: {err}");
        err
    };
    // A second vault on top of a live one: refused, the first still serves.
    fs::write(m.path("1-working/mine"), b"first vault").unwrap();
    let err = refused(mount_on(&m.mnt, &[]), "over a live mount");
    assert!(err.contains("is already the mount of vault"), "{err}");
    assert_eq!(fs::read(m.path("1-working/mine")).unwrap(), b"first vault");
    // A directory with files in it: refused unless asked.
    let dir = tempdir();
    fs::write(dir.path().join("keep.txt"), b"hidden while mounted").unwrap();
    let err = refused(mount_on(dir.path(), &[]), "non-empty");
    assert!(err.contains("is not empty") && err.contains("-o nonempty"), "{err}");
    let out = mount_on(dir.path(), &["-o", "nonempty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("1-working").is_dir());
    assert!(common::vaultfs(&["umount", dir.path().to_str().unwrap()]).status.success());
    assert_eq!(fs::read(dir.path().join("keep.txt")).unwrap(), b"hidden while mounted");
    // Not a mounted vault: exit 4, as status, lock and pending say it.
    let out = common::vaultfs(&["umount", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    drop(other);
    // The daemon killed: the mount point is dead; mount says so, umount clears it.
    let pid = m.daemon_pid().unwrap();
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    assert!(wait_for(Duration::from_secs(10), || fs::metadata(&m.mnt).is_err()), "mount went dead");
    let out = common::vaultfs(&[
        "mount",
        m.store.to_str().unwrap(),
        m.mnt.to_str().unwrap(),
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
    ]);
    let err = refused(out, "dead mount");
    assert!(err.contains("daemon is gone") && err.contains("vaultfs umount"), "{err}");
    let out = common::vaultfs(&["umount", m.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "umount of a dead mount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.mnt) && m.mnt.is_dir(), "mount point free again");
    m.mount();
    assert_eq!(fs::read(m.path("1-working/mine")).unwrap(), b"first vault");
}

/// `vaultfs manpages` and `vaultfs completions` (what install.sh installs):
/// a page for every command that man(1) renders without a warning, an EXIT
/// STATUS section listing every code, and completion scripts that name
/// every command (bash's parses).
#[test]
fn manual_pages_and_completions_cover_every_command() {
    let help = run(Command::new(common::bin()).arg("--help"));
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 20, "commands parsed from --help: {commands:?}");
    let dir = tempdir();
    run(Command::new(common::bin()).arg("manpages").arg(dir.path()));
    let mut pages: Vec<String> = vec!["vaultfs.1".into(), "mount.vaultfs.8".into()];
    pages.extend(commands.iter().map(|c| format!("vaultfs-{c}.1")));
    for page in &pages {
        let path = dir.path().join(page);
        assert!(path.exists(), "{page} written");
        let out =
            Command::new("man").args(["--warnings", "-l"]).arg(&path).env("MANWIDTH", "80").output().unwrap();
        assert!(out.status.success(), "man -l {page} failed");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "man warns about {page}:\n{warnings}");
        assert!(!out.stdout.is_empty(), "{page} renders to nothing");
    }
    let main = String::from_utf8_lossy(
        &Command::new("man")
            .arg("-l")
            .arg(dir.path().join("vaultfs.1"))
            .env("MANWIDTH", "200")
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let exit_status = main.split("EXIT STATUS").nth(1).expect("an EXIT STATUS section");
    for code in 0..=10 {
        assert!(
            exit_status.lines().any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit code {code} is described:\n{exit_status}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = run(Command::new(common::bin()).args(["completions", shell]));
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completion names {c}");
        }
        if shell == "bash" {
            let path = dir.path().join("vaultfs.bash");
            fs::write(&path, &script).unwrap();
            run(Command::new("bash").arg("-n").arg(&path));
        }
    }
}

/// `vaultfs umount` of a busy mount says who holds it (as `fuser -m`
/// would), then finishes once they let go: a process with a file open on
/// the mount and one whose working directory is in it.
#[test]
fn umount_of_a_busy_mount_names_what_holds_it() {
    let mut m = Mount::new();
    fs::write(m.path("1-working/held.txt"), b"open while unmounting").unwrap();
    let file_holder = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<'{}'; sleep 3", m.path("1-working/held.txt").display()))
        .spawn()
        .unwrap();
    let cwd_holder = Command::new("sleep").arg("3").current_dir(m.path("1-working")).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = common::vaultfs(&["umount", m.mnt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "umount once they let go: {err}");
    assert!(err.contains("is busy"), "{err}");
    assert!(err.contains(&format!("pid {} (sh: open files)", file_holder.id())), "{err}");
    assert!(err.contains(&format!("pid {} (sleep: working directory)", cwd_holder.id())), "{err}");
    m.mounted = false;
    assert!(!is_mounted(&m.mnt));
    for mut child in [file_holder, cwd_holder] {
        child.wait().unwrap();
    }
}

/// The systemd unit passes `systemd-analyze verify` without a warning, and
/// its device policy lets the daemon reach what it may need: /dev/fuse, the
/// TPM and FIDO2 security keys (hidraw).
#[test]
fn systemd_unit_verifies_and_allows_the_factor_devices() {
    let unit = fs::read_to_string(helpers_dir().join("vaultfs@.service")).unwrap();
    for device in ["/dev/fuse rw", "/dev/tpmrm0 rw", "char-hidraw rw"] {
        assert!(unit.lines().any(|l| l == format!("DeviceAllow={device}")), "DeviceAllow={device}");
    }
    // verify checks that ExecStart= binaries exist: point them at this build.
    let dir = tempdir();
    let path = dir.path().join("vaultfs@srv-agent\\x2dmemory.service");
    fs::write(&path, unit.replace("/usr/local/bin/vaultfs", common::bin())).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

/// A daemonized mount without `--log` logs to the system log: one datagram
/// per event, `<PRI>vaultfs[PID]: message`, facility daemon, at the `-v`
/// level of the `vaultfs mount` that started it.
#[test]
fn a_daemonized_mount_without_a_log_file_logs_to_syslog() {
    let mut m = Mount::new();
    m.unmount();
    let sock_path = m.dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let out = Command::new(common::bin())
        .args(["-v", "mount"])
        .arg(&m.store)
        .arg(&m.mnt)
        .arg("--passphrase-file")
        .arg(&m.passfile)
        .env("VAULTFS_SYSLOG_SOCKET", &sock_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.mounted = true;
    let pid = m.daemon_pid().unwrap();
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("mounted")) {
        let n = sock.recv(&mut buf).expect("a syslog datagram within 10 s");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let mounted = lines.iter().find(|l| l.contains("mounted")).unwrap();
    // daemon (3) * 8 + info (6) = 30.
    assert!(mounted.starts_with(&format!("<30>vaultfs[{pid}]: ")), "{mounted}");
    assert!(!mounted.contains('\x1b'), "no terminal colours: {mounted:?}");
    m.unmount();
}

/// An unreachable TPM is one clear line on stderr (exit 7), not the TPM
/// stack's raw chatter ("ERROR:tcti:src/tss2-tcti/...") around it.
#[test]
fn an_unreachable_tpm_is_one_clear_error_line() {
    let mut m = Mount::new();
    m.unmount();
    let out = common::vaultfs(&[
        "enroll",
        "tpm",
        m.store.to_str().unwrap(),
        "--level",
        "4",
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
        "--tpm-tcti",
        "device:/dev/no-such-tpm",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(7), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{err}");
    assert!(lines[0].starts_with("vaultfs: ") && lines[0].contains("/dev/no-such-tpm"), "{err}");
}
