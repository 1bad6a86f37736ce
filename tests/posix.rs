//! POSIX operations and their error cases through a real mount, with std::fs,
//! libc and small python3 snippets for the calls std does not expose.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use common::{Mount, sh};

fn errno(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().unwrap_or_else(|| panic!("no errno in {e}")),
    }
}

fn py(code: &str, cwd: &Path) -> String {
    sh(&format!("python3 -c '{code}'"), cwd)
}

#[test]
fn root_holds_the_six_levels_audit_and_backup_and_refuses_changes() {
    let m = Mount::new();
    let mut names: Vec<String> =
        fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
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
    assert_eq!(errno(fs::create_dir(m.path("new"))), libc::EPERM);
    assert_eq!(errno(File::create(m.path("file"))), libc::EPERM);
    assert_eq!(errno(fs::remove_dir(m.path("1-working"))), libc::EPERM);
    assert_eq!(errno(fs::rename(m.path("1-working"), m.path("work"))), libc::EPERM);
    assert_eq!(
        errno(fs::set_permissions(m.path("2-private"), fs::Permissions::from_mode(0o777))),
        libc::EPERM
    );
    fs::set_permissions(m.path("1-working"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(fs::metadata(m.path("1-working")).unwrap().mode() & 0o7777, 0o750);
}

#[test]
fn files_directories_links_and_attributes() {
    let m = Mount::new();
    let w = m.path("1-working");
    fs::write(w.join("a.txt"), b"hello").unwrap();
    assert_eq!(fs::read(w.join("a.txt")).unwrap(), b"hello");
    // Append, overwrite in the middle, truncate down and up.
    let mut f = OpenOptions::new().append(true).open(w.join("a.txt")).unwrap();
    f.write_all(b" world").unwrap();
    drop(f);
    let f = OpenOptions::new().write(true).open(w.join("a.txt")).unwrap();
    f.write_at(b"J", 0).unwrap();
    f.set_len(3).unwrap();
    f.set_len(6).unwrap();
    drop(f);
    assert_eq!(fs::read(w.join("a.txt")).unwrap(), b"Jel\0\0\0");
    // O_TRUNC and O_EXCL.
    fs::write(w.join("a.txt"), b"new").unwrap();
    assert_eq!(fs::read(w.join("a.txt")).unwrap(), b"new");
    assert_eq!(errno(OpenOptions::new().write(true).create_new(true).open(w.join("a.txt"))), libc::EEXIST);
    // Directories and listing.
    fs::create_dir_all(w.join("d/e/f")).unwrap();
    assert_eq!(fs::metadata(w.join("d")).unwrap().nlink(), 3);
    let names: Vec<_> = fs::read_dir(w.join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["e"]);
    // Rename, rename over, hard link, symlink.
    fs::write(w.join("b.txt"), b"bee").unwrap();
    fs::rename(w.join("b.txt"), w.join("d/b2.txt")).unwrap();
    fs::write(w.join("c.txt"), b"sea").unwrap();
    fs::rename(w.join("c.txt"), w.join("d/b2.txt")).unwrap();
    assert_eq!(fs::read(w.join("d/b2.txt")).unwrap(), b"sea");
    fs::hard_link(w.join("d/b2.txt"), w.join("hard")).unwrap();
    assert_eq!(fs::metadata(w.join("hard")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(w.join("hard")).unwrap().ino(), fs::metadata(w.join("d/b2.txt")).unwrap().ino());
    symlink("d/b2.txt", w.join("sym")).unwrap();
    assert_eq!(fs::read_link(w.join("sym")).unwrap(), Path::new("d/b2.txt"));
    assert_eq!(fs::read(w.join("sym")).unwrap(), b"sea");
    // chmod, chown, utimens.
    fs::set_permissions(w.join("hard"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(w.join("hard")).unwrap().mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(w.join("hard"), Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(w.join("hard")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    sh("touch -m -d '2001-02-03 04:05:06.123456789' hard", &w);
    let md = fs::metadata(w.join("hard")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (981173106, 123456789));
    // xattrs.
    sh("setfattr -n user.note -v remembered hard && setfattr -n user.other -v 2 hard", &w);
    let dump = sh("getfattr -d --absolute-names hard", &w);
    assert!(dump.contains("user.note=\"remembered\"") && dump.contains("user.other=\"2\""), "{dump}");
    sh("setfattr -x user.other hard", &w);
    assert!(!sh("getfattr -d hard", &w).contains("user.other"));
    let out = Command::new("getfattr").args(["-n", "user.missing", "hard"]).current_dir(&w).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such attribute"));
    // FIFO via mknod.
    sh("mkfifo pipe", &w);
    assert!(fs::symlink_metadata(w.join("pipe")).unwrap().file_type().is_fifo_like());
    // Removal.
    fs::remove_file(w.join("hard")).unwrap();
    assert_eq!(fs::metadata(w.join("d/b2.txt")).unwrap().nlink(), 1);
    fs::remove_dir_all(w.join("d")).unwrap();
    assert!(!w.join("d").exists());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn error_cases_have_the_right_errno() {
    let m = Mount::new();
    let w = m.path("1-working");
    fs::write(w.join("f"), b"x").unwrap();
    fs::create_dir(w.join("d")).unwrap();
    fs::write(w.join("d/inner"), b"y").unwrap();
    assert_eq!(errno(File::open(w.join("missing"))), libc::ENOENT);
    assert_eq!(errno(fs::create_dir(w.join("d"))), libc::EEXIST);
    assert_eq!(errno(fs::remove_dir(w.join("d"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::write(w.join("d"), b"z")), libc::EISDIR);
    assert_eq!(errno(fs::remove_file(w.join("d"))), libc::EISDIR);
    assert_eq!(errno(File::open(w.join("f/below"))), libc::ENOTDIR);
    assert_eq!(errno(fs::remove_dir(w.join("f"))), libc::ENOTDIR);
    assert_eq!(errno(fs::rename(w.join("f"), m.path("2-private/f"))), libc::EXDEV);
    assert_eq!(errno(fs::hard_link(w.join("f"), m.path("3-sealed/f"))), libc::EXDEV);
    assert_eq!(errno(fs::rename(w.join("d"), w.join("d/inner2"))), libc::EINVAL);
    assert_eq!(errno(File::create(w.join("n".repeat(256)))), libc::ENAMETOOLONG);
    File::create(w.join("n".repeat(255))).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(w.join("f")).unwrap();
    assert_eq!(errno(f.write_at(b"x", (1u64 << 44) + 10)), libc::EFBIG);
    // A 1 TiB sparse offset is fine.
    f.write_at(b"far", 1u64 << 40).unwrap();
    assert_eq!(f.metadata().unwrap().len(), (1u64 << 40) + 3);
    let mut buf = [0u8; 3];
    f.read_at(&mut buf, 1u64 << 40).unwrap();
    assert_eq!(&buf, b"far");
    // renameat2 flags.
    fs::write(w.join("g"), b"g").unwrap();
    let noreplace = py(
        "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.renameat2(-100,b\"f\",-100,b\"g\",1); print(r, ctypes.get_errno())",
        &w,
    );
    assert_eq!(noreplace.trim(), format!("-1 {}", libc::EEXIST));
    let exchange = py(
        "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.renameat2(-100,b\"f\",-100,b\"g\",2); print(r)",
        &w,
    );
    assert_eq!(exchange.trim(), "0");
    // "g" is now the 1 TiB sparse file: check its first byte only.
    let mut first = [0u8; 1];
    File::open(w.join("g")).unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"x");
    assert_eq!(fs::read(w.join("f")).unwrap(), b"g");
}

#[test]
fn level_two_answers_only_the_mounting_uid() {
    let m = Mount::with_options(&["allow_other"]);
    fs::write(m.path("1-working/shared.txt"), b"shared").unwrap();
    fs::set_permissions(m.path("1-working/shared.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(m.path("2-private/own.txt"), b"mine").unwrap();
    fs::set_permissions(m.path("2-private"), fs::Permissions::from_mode(0o700)).unwrap();
    // Even a world-readable file inside level 2 stays private to the mounting uid.
    fs::set_permissions(m.path("2-private/own.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |cmd: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd])
            .current_dir("/")
            .output()
            .unwrap()
    };
    let ok = as_nobody(&format!("cat {}", m.path("1-working/shared.txt").display()));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(ok.stdout, b"shared");
    let denied = as_nobody(&format!("cat {}", m.path("2-private/own.txt").display()));
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"));
    // Level dirs still list in the root for everyone admitted.
    let ls = as_nobody(&format!("ls {}", m.mnt.display()));
    assert!(String::from_utf8_lossy(&ls.stdout).contains("2-private"));
}

/// The mount drops set-id bits itself (FUSE_HANDLE_KILLPRIV_V2): a write,
/// truncate or fallocate by an unprivileged caller clears set-user-ID, and
/// set-group-ID when group execute is set; root's writes keep both, as on ext4.
#[test]
fn set_id_bits_drop_when_an_unprivileged_caller_changes_the_file() {
    let m = Mount::with_options(&["allow_other"]);
    let f = m.path("1-working/tool");
    fs::write(&f, b"#!/bin/sh\n").unwrap();
    let mode = || fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
    let set = |bits: u32| fs::set_permissions(&f, fs::Permissions::from_mode(bits)).unwrap();
    let as_nobody = |cmd: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd])
            .current_dir("/")
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let path = f.display();
    for (what, cmd) in [
        ("write", format!("printf x >> {path}")),
        (
            "O_DIRECT write",
            format!("dd if=/dev/zero of={path} bs=4096 count=1 oflag=direct conv=notrunc status=none"),
        ),
        ("truncate", format!("truncate -s 100 {path}")),
        ("fallocate", format!("fallocate -l 65536 {path}")),
    ] {
        set(0o6777);
        as_nobody(&cmd);
        assert_eq!(mode(), 0o0777, "{what} by uid 65534");
    }
    // Without group execute, set-group-ID is not an executable's bit: it stays.
    set(0o6766);
    as_nobody(&format!("printf y >> {path}"));
    assert_eq!(mode(), 0o2766);
    // Root holds CAP_FSETID: its writes and truncations keep both bits.
    set(0o6777);
    OpenOptions::new().append(true).open(&f).unwrap().write_all(b"z").unwrap();
    OpenOptions::new().write(true).open(&f).unwrap().set_len(10).unwrap();
    assert_eq!(mode(), 0o6777);
}

#[test]
fn mmap_locks_seek_holes_copy_range_fallocate() {
    let m = Mount::new();
    let w = m.path("1-working");
    // mmap write then read back through read(2).
    fs::write(w.join("map"), vec![b'.'; 8192]).unwrap();
    py(
        "import mmap; f=open(\"map\",\"r+b\"); mm=mmap.mmap(f.fileno(),0); mm[100:105]=b\"HELLO\"; mm.flush(); mm.close(); f.close()",
        &w,
    );
    assert_eq!(&fs::read(w.join("map")).unwrap()[100..105], b"HELLO");
    let got = py(
        "import mmap; f=open(\"map\",\"rb\"); mm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); print(mm[100:105].decode())",
        &w,
    );
    assert_eq!(got.trim(), "HELLO");
    // flock and POSIX locks (kernel-local) behave.
    let locks = py(
        "import fcntl; a=open(\"map\",\"r+\"); fcntl.flock(a,fcntl.LOCK_EX); b=open(\"map\",\"r+\")\ntry:\n  fcntl.flock(b,fcntl.LOCK_EX|fcntl.LOCK_NB); print(\"no\")\nexcept BlockingIOError:\n  print(\"held\")\nfcntl.lockf(a,fcntl.LOCK_EX); print(\"posix\")",
        &w,
    );
    assert_eq!(locks.split_whitespace().collect::<Vec<_>>(), ["held", "posix"]);
    // SEEK_DATA / SEEK_HOLE on a sparse file.
    let f =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(w.join("sparse")).unwrap();
    f.write_at(b"data", 1 << 20).unwrap();
    drop(f);
    let seek = py(
        "import os; fd=os.open(\"sparse\",os.O_RDONLY); print(os.lseek(fd,0,os.SEEK_DATA), os.lseek(fd,0,os.SEEK_HOLE), os.lseek(fd,1<<20,os.SEEK_HOLE))",
        &w,
    );
    let v: Vec<u64> = seek.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert!(v[0] <= 1 << 20 && v[0] > 0, "{v:?}");
    assert_eq!(v[1], 0);
    assert_eq!(v[2], (1 << 20) + 4);
    let md = fs::metadata(w.join("sparse")).unwrap();
    assert!(md.blocks() * 512 < 1 << 20, "sparse file allocated {} blocks", md.blocks());
    // copy_file_range within the mount.
    fs::write(w.join("src"), (0..200_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
    let copied = py(
        "import os; a=os.open(\"src\",os.O_RDONLY); b=os.open(\"dst\",os.O_WRONLY|os.O_CREAT,0o644); n=0\nwhile True:\n  k=os.copy_file_range(a,b,1<<20)\n  n+=k\n  if k==0: break\nprint(n)",
        &w,
    );
    assert_eq!(copied.trim(), "200000");
    assert_eq!(fs::read(w.join("src")).unwrap(), fs::read(w.join("dst")).unwrap());
    // fallocate: extend, then punch a hole.
    sh("fallocate -l 100000 falloc && fallocate -p -o 0 -l 65536 dst", &w);
    assert_eq!(fs::metadata(w.join("falloc")).unwrap().len(), 100_000);
    let dst = fs::read(w.join("dst")).unwrap();
    assert!(dst[..65536].iter().all(|&b| b == 0));
    assert_eq!(dst[65536..], fs::read(w.join("src")).unwrap()[65536..]);
}

#[test]
fn seek_and_read_patterns_match_a_local_file() {
    let m = Mount::new();
    let local = m.dir.path().join("local");
    let remote = m.path("1-working/pattern");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    fs::write(&local, &data).unwrap();
    fs::write(&remote, &data).unwrap();
    let mut a = File::open(&local).unwrap();
    let mut b = File::open(&remote).unwrap();
    for (off, len) in [(0u64, 1usize), (16383, 2), (65535, 70000), (2_999_990, 100), (1_000_001, 1 << 20)] {
        let (mut x, mut y) = (vec![0; len], vec![0; len]);
        a.seek(SeekFrom::Start(off)).unwrap();
        b.seek(SeekFrom::Start(off)).unwrap();
        let n = a.read(&mut x).unwrap();
        let k = b.read(&mut y).unwrap();
        assert_eq!(x[..n], y[..k], "at {off}+{len}");
    }
    assert_eq!(fs::read(&remote).unwrap(), data);
}

#[test]
fn level_zero_is_gone_after_unmount_others_stay() {
    let mut m = Mount::new();
    fs::write(m.path("0-ephemeral/scratch"), b"forget me").unwrap();
    fs::write(m.path("1-working/keep"), b"keep me").unwrap();
    m.remount();
    assert_eq!(fs::read_dir(m.path("0-ephemeral")).unwrap().count(), 0);
    assert_eq!(fs::read(m.path("1-working/keep")).unwrap(), b"keep me");
}

#[test]
fn unmount_with_open_files_then_remount_keeps_data() {
    let mut m = Mount::new();
    let path = m.path("1-working/open.txt");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"written while open").unwrap();
    // Close the file shortly after umount starts: umount must wait, not lose data.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        f.write_all(b", and more").unwrap();
        drop(f);
    });
    m.unmount();
    closer.join().unwrap();
    assert!(!common::is_mounted(&m.mnt));
    m.mount();
    assert_eq!(fs::read(m.path("1-working/open.txt")).unwrap(), b"written while open, and more");
}

#[test]
fn no_plaintext_reaches_the_store() {
    let mut m = Mount::new();
    let content = "canary-content-7f3a9c1e5b";
    let name = "canary-name-2d8e4f6a0c";
    let xattr = "canary-xattr-9b1c3e5d7f";
    let dirname = "canary-dir-4a6c8e0b2d";
    // Levels 4 and 5 have no key until a factor is enrolled (tests/gates.rs).
    for level in ["1-working", "2-private", "3-sealed"] {
        let d = m.path(level).join(dirname);
        fs::create_dir(&d).unwrap();
        fs::write(d.join(name), content.repeat(1000)).unwrap();
        sh(&format!("setfattr -n user.k -v {xattr} {name}"), &d);
        symlink(format!("target-{name}"), d.join("link")).unwrap();
    }
    m.unmount();
    for file in common::all_files(&m.store) {
        let bytes = fs::read(&file).unwrap();
        for canary in [content, name, xattr, dirname, "1-working", "prefers"] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} found in {}",
                file.display()
            );
        }
    }
    m.mount();
}

#[test]
fn statfs_reports_space_and_name_limit() {
    let m = Mount::new();
    let out = sh(&format!("stat -f -c '%l %s %b' {}", m.mnt.display()), Path::new("/"));
    let v: Vec<u64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(v[0], 255);
    assert!(v[1] >= 4096 && v[2] > 0, "{out}");
}

/// With a tiny inode limit (`-o inodes=16`) the daemon keeps asking the
/// kernel to forget the files it knows (fs/handles.rs): contents, a hard
/// link, a rename, an unlinked file still open and the audit log's paths
/// must not notice, and the unlinked file is gone once closed.
#[test]
fn files_the_kernel_is_asked_to_forget_stay_whole() {
    let mut m = Mount::with_options(&["inodes=16"]);
    m.unmount();
    m.env.push(("VAULTFS_LOG".into(), "vaultfs=debug".into()));
    m.mount();
    let dir = m.path("1-working/many");
    fs::create_dir(&dir).unwrap();
    let content = |i: usize| -> Vec<u8> { (0..3000).map(|j| ((i * 7 + j * 31) % 251) as u8).collect() };
    let mut held =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("held")).unwrap();
    held.write_all(b"still here").unwrap();
    fs::remove_file(dir.join("held")).unwrap();
    for i in 0..300 {
        fs::write(dir.join(format!("f{i}")), content(i)).unwrap();
    }
    fs::hard_link(dir.join("f0"), dir.join("link0")).unwrap();
    fs::rename(dir.join("f1"), dir.join("renamed1")).unwrap();
    // Several sweeps pass (one every 100 ms) before anything is read back.
    std::thread::sleep(std::time::Duration::from_millis(800));
    for i in 2..300 {
        assert_eq!(fs::read(dir.join(format!("f{i}"))).unwrap(), content(i), "f{i}");
    }
    assert_eq!(fs::read(dir.join("link0")).unwrap(), content(0));
    assert_eq!(fs::read(dir.join("renamed1")).unwrap(), content(1));
    assert_eq!(fs::metadata(dir.join("f0")).unwrap().nlink(), 2);
    let mut back = String::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still here");
    assert!(m.log().contains("asked the kernel to forget"), "no trim logged: {}", m.log());

    // A file the kernel forgot and looked up again is recorded by its path.
    std::thread::sleep(std::time::Duration::from_millis(800));
    fs::write(dir.join("f7"), b"rewritten").unwrap();
    let out = m.run(&["audit", "tail", m.mnt.to_str().unwrap(), "-n", "4", "--json"]);
    let tail = String::from_utf8_lossy(&out.stdout);
    assert!(
        tail.contains("\"op\":\"write\",\"level\":1,\"ino\"")
            && tail.contains("\"path\":\"/1-working/many/f7\""),
        "{tail}"
    );

    drop(held);
    m.unmount();
    let store = m.store.to_str().unwrap().to_string();
    let out = m.run(&["fsck", &store, "--passphrase-file", m.passfile.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fsck: {report} {}", String::from_utf8_lossy(&out.stderr));
    m.mount();
    assert!(fs::read_dir(&dir).unwrap().all(|e| e.unwrap().file_name() != "held"));
}

/// The mount's readahead (its device's read_ahead_kb): raised from the
/// kernel's 128 KiB to 4 MiB by default when the daemon runs as root (as
/// these tests do), set by `-o readahead=KIB`, left alone with 0. A
/// sequential read still returns exactly the file.
#[test]
fn the_mount_sets_its_readahead() {
    let readahead = |m: &Mount| {
        let (major, minor) = {
            let dev = fs::metadata(&m.mnt).unwrap().dev();
            (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff))
        };
        let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        // Set by a thread of the daemon once the mount answers.
        let mut last = String::new();
        for _ in 0..50 {
            last = fs::read_to_string(&knob).unwrap().trim().to_string();
            if last != "128" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        last
    };
    for (options, want) in
        [(&[][..], "4096"), (&["readahead=1024"][..], "1024"), (&["readahead=0"][..], "128")]
    {
        let mut m = Mount::with_options(options);
        let data: Vec<u8> = (0..(6u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        fs::write(m.path("1-working/seq.bin"), &data).unwrap();
        // A new mount reads from the store, through the kernel's readahead.
        m.remount();
        assert_eq!(readahead(&m), want, "-o {options:?}");
        assert_eq!(fs::read(m.path("1-working/seq.bin")).unwrap(), data);
    }
}
