//! `vaultfs rotate` on a vault written through a real mount with real tools:
//! the binary is killed with SIGKILL in the middle of a level, the vault
//! then refuses to mount and fsck says why, a rerun finishes the rotation,
//! and afterwards every file reads back byte for byte while the old header
//! (the old level keys) opens nothing of the rotated level.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::control::*;
use common::{Mount, PASSPHRASE, sh};
use vaultfs::crypto::Passphrase;
use vaultfs::format::keys;
use vaultfs::store::Store;
use vaultfs::vault::level_dir;
use vaultfs::{ErrorKind, Vault};

/// A tree of files for `cp -a`: a big file (many rotation batches), small
/// notes, a hard link, a symlink and xattrs.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    for i in 0..40 {
        std::fs::write(dir.join(format!("notes/n{i}.md")), format!("note {i}\n").repeat(i * 50 + 1)).unwrap();
    }
    sh(
        "ln notes/n7.md n7-link && ln -s notes/n3.md latest && setfattr -n user.topic -v rotation notes/n5.md",
        dir,
    );
}

fn rotate(m: &Mount, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.arg("rotate").arg(&m.store).args(args).arg("--passphrase-file").arg(&m.passfile);
    c
}

fn pending(m: &Mount) -> bool {
    ok(&vaultfs(m, &["info", store(m)])).contains("rotation:         level 2 interrupted")
}

#[test]
fn rotate_killed_mid_level_resumes_and_retires_the_old_keys() {
    let mut m = Mount::new();
    let src = m.dir.path().join("src");
    make_tree(&src);
    sh(&format!("cp -a {} {}", src.display(), m.path("2-private/tree").display()), Path::new("/"));
    sh(&format!("cp -a {} {}", src.display(), m.path("1-working/tree").display()), Path::new("/"));
    std::fs::write(m.path("3-sealed/plan.md"), "level three").unwrap();
    m.unmount();
    let old_header = Store::open(&m.store, false).unwrap().get(keys::HEADER).unwrap().unwrap().to_vec();

    // SIGKILL once the level is under way: after the key derivation (the
    // rotation record exists), before the 48 MiB are re-encrypted. Other
    // delays are tried if a kill landed before or after that window.
    let mut interrupted = false;
    for delay_ms in [40, 20, 80, 10, 150, 5] {
        let mut child =
            rotate(&m, &["--level", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("rotate: level 2 (2-private)"), "{line}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if pending(&m) {
            interrupted = true;
            break;
        }
    }
    assert!(interrupted, "no kill landed during the rotation");

    // Half-rotated: no mount (a clear message), fsck says which level.
    let out = Command::new(common::bin())
        .args(["mount", store(&m), mnt(&m), "--passphrase-file", pass(&m)])
        .output()
        .unwrap();
    let msg = refused(&out, 1);
    assert!(msg.contains("rotation of level 2 was interrupted") && msg.contains("vaultfs rotate"), "{msg}");
    let fsck = vaultfs(&m, &["fsck", store(&m), "--json", "--passphrase-file", pass(&m)]);
    assert_eq!(fsck.status.code(), Some(7), "{}", String::from_utf8_lossy(&fsck.stdout));
    let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(report["levels"][2]["access"], "rotating");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");

    // A rerun of every level finishes level 2 first, then rotates the rest.
    let out = rotate(&m, &[]).output().unwrap();
    let text = ok(&out);
    assert!(text.contains("level 2 (2-private): new key (interrupted rotation finished)"), "{text}");
    for l in ["level 1 (1-working): new key;", "level 3 (3-sealed): new key;"] {
        assert!(text.contains(l), "{text}");
    }
    assert!(!pending(&m));
    ok(&vaultfs(&m, &["fsck", store(&m), "--passphrase-file", pass(&m)]));

    m.mount();
    for level in ["1-working/tree", "2-private/tree"] {
        sh(
            &format!("diff -r --no-dereference {} {}", src.display(), m.path(level).display()),
            Path::new("/"),
        );
        let attr = sh("getfattr --only-values -n user.topic notes/n5.md", &m.path(level));
        assert_eq!(attr, "rotation");
        let (a, b) = (m.path(&format!("{level}/n7-link")), m.path(&format!("{level}/notes/n7.md")));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(a).unwrap().ino(), std::fs::metadata(b).unwrap().ino());
    }
    let rotations: Vec<_> = audit_ops(&m).into_iter().filter(|(op, ..)| op == "rotate").collect();
    assert_eq!(rotations.len(), 3, "{rotations:?}");
    m.unmount();
    ok(&vaultfs(&m, &["audit", "verify", store(&m), "--passphrase-file", pass(&m)]));

    // Level 3 through the library (its opens wait for approval on a mount).
    let pass = Passphrase::new(PASSPHRASE.as_bytes().to_vec());
    let v = Vault::open(&m.store).unwrap().unlock(&pass).unwrap();
    let plan = v.lookup(level_dir(3), b"plan.md").unwrap();
    assert_eq!(v.read(plan.ino, 0, 100).unwrap(), b"level three");
    drop(v);

    // Someone who kept the old header (and the passphrase) opens the vault
    // with the old level keys: nothing of any rotated level opens.
    let s = Store::open(&m.store, false).unwrap();
    s.put(keys::HEADER, old_header).unwrap();
    s.flush().unwrap();
    drop(s);
    let v = Vault::open(&m.store).unwrap().unlock(&pass).unwrap();
    for level in 1..=3 {
        assert!(
            v.readdir(level_dir(level), 0, 100).unwrap().is_empty(),
            "level {level} lists under the old key"
        );
    }
    assert_eq!(v.lookup(level_dir(2), b"tree").unwrap_err().kind(), ErrorKind::NotFound);
}
