//! Mode-bit permissions for other uids (`allow_other`): the kernel checks
//! them (`default_permissions`, the only check that reaches FIFOs, sockets
//! and device nodes) and so does the daemon. The same tree is built on the
//! mount and on a local filesystem, the same operations run as an
//! unprivileged uid with a supplementary group, and every outcome (errno)
//! must match the kernel's own.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::process::Command;

use common::Mount;

const UID: u32 = 1000;
const GROUP: u32 = 2000;

/// Builds the test tree under `root` (as root).
fn build(root: &Path) {
    let file = |rel: &str, mode: u32, uid: u32, gid: u32| {
        let p = root.join(rel);
        fs::write(&p, "content").unwrap();
        chown(&p, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = |rel: &str, mode: u32, uid: u32, gid: u32| {
        let p = root.join(rel);
        fs::create_dir(&p).unwrap();
        chown(&p, Some(uid), Some(gid)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    dir("d_rx", 0o755, 0, 0);
    file("d_rx/f", 0o644, 0, 0);
    dir("d_none", 0o700, 0, 0);
    file("d_none/g", 0o644, 0, 0);
    dir("d_x", 0o711, 0, 0);
    file("d_x/h", 0o644, 0, 0);
    file("f_rw", 0o666, 0, 0);
    file("f_ro", 0o644, 0, 0);
    file("f_none", 0o600, 0, 0);
    file("f_group", 0o660, 0, GROUP);
    file("f_group_denied", 0o604, 0, GROUP);
    file("f_mine", 0o600, UID, UID);
    file("f_mine_noread", 0o200, UID, UID);
    dir("d_sticky", 0o1777, 0, 0);
    file("d_sticky/victim", 0o666, 0, 0);
    dir("d_mine", 0o755, UID, UID);
    dir("d_group", 0o770, 0, GROUP);
}

/// Every operation, one per line: `name errno` (0 = success).
const SCRIPT: &str = r#"
import errno, os, sys
os.chdir(sys.argv[1])
def run(name, f):
    try:
        f()
        r = "0"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(name, r)
def opn(p, flags):
    return lambda: os.close(os.open(p, flags))
R, W, RW, T = os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_TRUNC
for p in ["f_rw", "f_ro", "f_none", "f_group", "f_group_denied", "f_mine", "f_mine_noread", "d_rx/f", "d_none/g", "d_x/h"]:
    run("read " + p, opn(p, R))
    run("write " + p, opn(p, W))
    run("trunc " + p, opn(p, W | T))
    run("stat " + p, lambda: os.stat(p))
    run("access-r " + p, lambda: os.access(p, os.R_OK) or (_ for _ in ()).throw(PermissionError(errno.EACCES, "")))
    run("access-w " + p, lambda: os.access(p, os.W_OK) or (_ for _ in ()).throw(PermissionError(errno.EACCES, "")))
    run("setxattr " + p, lambda: os.setxattr(p, "user.k", b"v"))
    run("getxattr " + p, lambda: os.getxattr(p, "user.k"))
for d in ["d_rx", "d_none", "d_x", "d_mine", "d_group", "d_sticky"]:
    run("list " + d, lambda: os.listdir(d))
    run("create " + d, opn(d + "/new", os.O_CREAT | W))
    run("mkdir " + d, lambda: os.mkdir(d + "/sub"))
    run("symlink " + d, lambda: os.symlink("x", d + "/ln"))
    run("link " + d, lambda: os.link("f_mine", d + "/hard"))
    run("chdir " + d, lambda: (os.chdir(d), os.chdir("..")))
run("unlink d_rx/f", lambda: os.unlink("d_rx/f"))
run("unlink d_sticky/victim", lambda: os.unlink("d_sticky/victim"))
run("rename d_rx/f", lambda: os.rename("d_rx/f", "moved"))
run("rename f_mine into d_rx", lambda: os.rename("f_mine", "d_rx/f_mine"))
run("rename d_mine into d_group", lambda: os.rename("d_mine", "d_group/d_mine"))
run("rmdir d_rx", lambda: os.rmdir("d_rx"))
run("chmod f_ro", lambda: os.chmod("f_ro", 0o666))
run("chmod f_mine", lambda: os.chmod("f_mine", 0o640))
run("chmod f_mine sgid foreign group", lambda: os.chmod("f_mine", 0o2640))
print("mode f_mine", oct(os.stat("f_mine").st_mode & 0o7777))
run("chown f_mine root", lambda: os.chown("f_mine", 0, -1))
run("chown f_mine same", lambda: os.chown("f_mine", 1000, -1))
run("chgrp f_mine member", lambda: os.chown("f_mine", -1, 2000))
run("chgrp f_mine other", lambda: os.chown("f_mine", -1, 3000))
run("chown f_ro same", lambda: os.chown("f_ro", 0, -1))
run("touch-now f_rw", lambda: os.utime("f_rw", None))
run("touch-now f_ro", lambda: os.utime("f_ro", None))
run("utimes f_rw", lambda: os.utime("f_rw", (1, 1)))
run("utimes f_mine", lambda: os.utime("f_mine", (1, 1)))
run("truncate f_ro", lambda: os.truncate("f_ro", 0))
run("truncate f_rw", lambda: os.truncate("f_rw", 1))
run("truncate f_mine_noread", lambda: os.truncate("f_mine_noread", 2))
run("removexattr f_ro", lambda: os.removexattr("f_ro", "user.k"))
"#;

/// Runs the Python `script` with `root` as its argument, as UID with the
/// supplementary group GROUP; its output.
fn run_as_user(script: &str, root: &Path) -> String {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            &format!("--groups={GROUP}"),
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(root)
        .current_dir("/")
        .output()
        .expect("run setpriv");
    assert!(out.status.success(), "script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A directory every uid can reach (temp dirs are created 0700).
fn open_dir(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn mode_bits_match_the_kernel_and_accesses_are_recorded() {
    let m = Mount::with_options(&["allow_other"]);
    open_dir(m.dir.path());
    let reference = tempfile::tempdir().unwrap();
    fs::set_permissions(reference.path(), fs::Permissions::from_mode(0o777)).unwrap();

    let on_mount = m.path("1-working/t");
    fs::create_dir(&on_mount).unwrap();
    fs::set_permissions(&on_mount, fs::Permissions::from_mode(0o777)).unwrap();
    build(&on_mount);
    build(reference.path());

    let want = run_as_user(SCRIPT, reference.path());
    let got = run_as_user(SCRIPT, &on_mount);
    let diffs: Vec<String> = want
        .lines()
        .zip(got.lines())
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("local: {w:<40} vaultfs: {g}"))
        .collect();
    assert_eq!(want.lines().count(), got.lines().count());
    assert!(diffs.is_empty(), "outcomes differ from the kernel's:\n{}", diffs.join("\n"));
    assert!(want.contains("write f_ro EACCES"), "the script exercises refusals:\n{want}");

    // What reaches the daemon is in the log with the caller's uid. With
    // other uids admitted the kernel makes the mode-bit refusals itself
    // (`default_permissions`), so those are not: docs/SEMANTICS.md.
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("op").is_some())
        .collect();
    let has = |op: &str, path: &str, result: i32| {
        records.iter().any(|r| r["op"] == op && r["path"] == path && r["uid"] == UID && r["result"] == result)
    };
    assert!(has("open", "/1-working/t/f_rw", 0), "an open for write of a 0666 file");
    assert!(has("create", "/1-working/t/d_mine/new", 0), "a create in the caller's directory");
    assert!(has("setattr", "/1-working/t/f_mine", 0), "a chmod of the caller's file");
    assert!(!has("open", "/1-working/t/f_ro", libc::EACCES), "the kernel refused this one");
}

/// A `chmod` that takes away search permission refuses other users at once,
/// at any depth above the file, even right after they walked the path (their
/// names were cached by the kernel before): ext4's behaviour, pjdfstest
/// chmod/05, open/05, truncate/05, link/06.
#[test]
fn revoked_search_permission_refuses_other_users_at_once() {
    let m = Mount::with_options(&["allow_other"]);
    let w = m.path("1-working");
    fs::create_dir_all(w.join("d1/d2/d3")).unwrap();
    for d in ["d1", "d1/d2", "d1/d2/d3"] {
        open_dir(&w.join(d));
    }
    let f = w.join("d1/d2/d3/f");
    fs::write(&f, b"shared").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
    // Each attempt is a fresh process of uid 65534; `ok` says whether it
    // may open, truncate and link the file.
    let attempt = |ok: bool| {
        let code = r#"
import os, sys
p = sys.argv[1]
errs = []
for what, op in [("open", lambda: os.close(os.open(p, os.O_RDONLY))),
                 ("truncate", lambda: os.truncate(p, 6)),
                 ("stat", lambda: os.stat(p))]:
    try:
        op()
        errs.append((what, 0))
    except OSError as e:
        errs.append((what, e.errno))
print(errs)
"#;
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code])
            .arg(&f)
            .current_dir("/")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let want = if ok {
            "[('open', 0), ('truncate', 0), ('stat', 0)]"
        } else {
            "[('open', 13), ('truncate', 13), ('stat', 13)]"
        };
        assert_eq!(text.trim(), want, "ok = {ok}");
    };
    for revoked in ["d1", "d1/d2/d3"] {
        attempt(true);
        fs::set_permissions(w.join(revoked), fs::Permissions::from_mode(0o700)).unwrap();
        attempt(false);
        open_dir(&w.join(revoked));
        attempt(true);
        fs::set_permissions(w.join(revoked), fs::Permissions::from_mode(0o644)).unwrap();
        attempt(false);
        open_dir(&w.join(revoked));
    }
}

/// FIFOs, sockets and device nodes whose mode bits refuse another uid. The
/// kernel opens them (and connects to sockets) without asking the daemon,
/// so only its own check, `default_permissions`, can enforce their modes:
/// every outcome must equal the kernel's on a local `nodev` filesystem (a
/// vault mounts `nodev`, so device nodes refuse everyone there too).
#[test]
fn special_files_modes_match_the_kernel() {
    let m = Mount::with_options(&["allow_other"]);
    open_dir(m.dir.path());
    let reference = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "nodev,mode=0777", "tmpfs"])
        .arg(reference.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount a nodev tmpfs for the reference");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(reference.path());
    let on_mount = m.path("1-working/s");
    fs::create_dir(&on_mount).unwrap();
    fs::set_permissions(&on_mount, fs::Permissions::from_mode(0o777)).unwrap();

    const BUILD: &str = r#"
import os, socket, stat, sys
os.chdir(sys.argv[1])
def own(p, mode, uid, gid):
    os.chown(p, uid, gid)
    os.chmod(p, mode)
for name, mode, uid, gid in [("p_root_600", 0o600, 0, 0), ("p_root_644", 0o644, 0, 0),
                             ("p_root_666", 0o666, 0, 0), ("p_group_660", 0o660, 0, 2000),
                             ("p_group_606", 0o606, 0, 2000), ("p_mine_600", 0o600, 1000, 1000)]:
    os.mkfifo(name)
    own(name, mode, uid, gid)
for name, mode in [("s_root_600", 0o600), ("s_root_666", 0o666), ("s_root_644", 0o644)]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.close()
    own(name, mode, 0, 0)
for name, mode in [("c_null_666", 0o666), ("c_null_600", 0o600)]:
    os.mknod(name, stat.S_IFCHR | mode, os.makedev(1, 3))
    own(name, mode, 0, 0)
"#;
    const PROBE: &str = r#"
import errno, os, socket, sys
os.chdir(sys.argv[1])
def run(name, f):
    try:
        f()
        r = "0"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(name, r)
def opn(p, flags):
    return lambda: os.close(os.open(p, flags))
NB = os.O_NONBLOCK
def connect(p):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
    finally:
        s.close()
for p in sorted(os.listdir(".")):
    run("stat " + p, lambda: os.stat(p))
    if p.startswith("s_"):
        run("connect " + p, lambda: connect(p))
        run("open " + p, opn(p, os.O_RDONLY))
        continue
    run("read " + p, opn(p, os.O_RDONLY | NB))
    run("write " + p, opn(p, os.O_WRONLY | NB))
    run("rdwr " + p, opn(p, os.O_RDWR | NB))
"#;
    for root in [on_mount.as_path(), reference.path()] {
        let out = Command::new("python3").args(["-c", BUILD]).arg(root).output().unwrap();
        assert!(
            out.status.success(),
            "build in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let want = run_as_user(PROBE, reference.path());
    let got = run_as_user(PROBE, &on_mount);
    assert!(want.contains("read p_root_600 EACCES") && want.contains("connect s_root_600 EACCES"), "{want}");
    let diffs: Vec<String> = want
        .lines()
        .zip(got.lines())
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("local: {w:<32} vaultfs: {g}"))
        .collect();
    assert_eq!(want.lines().count(), got.lines().count(), "local:\n{want}\nvaultfs:\n{got}");
    assert!(diffs.is_empty(), "outcomes differ from the kernel's:\n{}", diffs.join("\n"));
}
