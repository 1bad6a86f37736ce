//! The audit log's life cycle through real mounts and the real binary
//! (docs/AUDIT.md, "Archives"): `vaultfs audit archive` moves the oldest
//! records into a file that verifies with the public key alone, the store
//! goes on from the archived tree, archives and a later `.audit` copy
//! verify as one log, and a policy makes the mount archive on its own.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::control::ok;
use common::{Mount, vaultfs, wait_for};

fn pubkey(m: &Mount) -> String {
    let out = vaultfs(&["audit", "pubkey", m.store.to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `vaultfs ARGS`: (exit code, stdout + stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = vaultfs(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Some accesses, each a record or two.
fn use_vault(m: &Mount, tag: &str, n: usize) {
    for i in 0..n {
        let p = m.path(&format!("1-working/{tag}-{i}.md"));
        fs::write(&p, format!("{tag} {i}")).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("{tag} {i}"));
    }
}

fn archive(m: &Mount, before: &str, out: &Path) -> (i32, String) {
    let (st, pf) = (m.store.to_str().unwrap(), m.passfile.to_str().unwrap());
    run(&["audit", "archive", st, "--before", before, out.to_str().unwrap(), "--passphrase-file", pf])
}

fn verify_files(files: &[&Path], key: &str) -> (i32, String) {
    let mut args = vec!["audit", "verify"];
    for f in files {
        args.extend_from_slice(&["--file", f.to_str().unwrap()]);
    }
    args.extend_from_slice(&["--pubkey", key]);
    run(&args)
}

#[test]
fn archives_leave_the_store_and_verify_with_it_as_one_log() {
    let mut m = Mount::new();
    let key = pubkey(&m);
    let dir = m.dir.path().to_path_buf();
    use_vault(&m, "a", 40);
    m.unmount();
    let (st, pf) = (m.store.to_str().unwrap().to_string(), m.passfile.to_str().unwrap().to_string());
    // A checkpoint an admin kept from before the archive (a witness).
    let out = vaultfs(&["audit", "checkpoint", &st, "--passphrase-file", &pf]);
    let early = dir.join("early.note");
    fs::write(&early, &out.stdout).unwrap();

    let a1 = dir.join("one.vfsaudit");
    let (code, text) = archive(&m, "100", &a1);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("archived records 0..100"), "{text}");
    // The store is compacted after the cut: sled's files hold the live keys only.
    let sizes: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("store compacted: "))
        .map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).take(2).collect())
        .unwrap_or_default();
    assert!(sizes.len() == 2 && sizes[1] < sizes[0], "{text}");
    assert_eq!(
        fs::metadata(&a1).unwrap().permissions().mode() & 0o777,
        0o600,
        "records in clear: owner only"
    );
    let (code, text) = verify_files(&[&a1], &key);
    assert_eq!(code, 0, "{text}");
    // An archive is never replaced, and a cut that is not a record or date is a usage error.
    let (code, text) = archive(&m, "200", &a1);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("exists"), "{text}");
    let (code, text) = archive(&m, "yesterday", &dir.join("x"));
    assert_eq!(code, 2, "{text}");
    // The store verifies from its base, with fsck, and with the archive.
    let (code, text) = run(&["audit", "verify", &st, "--passphrase-file", &pf]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("records before 100 are in 1 archive files"), "{text}");
    let (code, text) = run(&["fsck", &st, "--passphrase-file", &pf]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("(the first 100 in archive files)"), "{text}");
    let (code, text) = run(&["compact", &st]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["fsck", &st, "--passphrase-file", &pf]);
    assert_eq!(code, 0, "after compact: {text}");

    // The mount goes on; its witness predates the archive base (a copy:
    // the mount moves its witness forward).
    let witness = dir.join("witness.note");
    fs::copy(&early, &witness).unwrap();
    m.options = vec![format!("witness={}", witness.display())];
    m.mount();
    use_vault(&m, "b", 20);
    let live1 = dir.join("live1.audit");
    fs::copy(m.path(".audit"), &live1).unwrap();
    let head = fs::read_to_string(&live1).unwrap();
    assert!(head.starts_with("{\"base\":100,"), "{}", &head[..200]);
    assert!(head.lines().next().unwrap().contains("\"file\":\"one.vfsaudit\""));
    let (code, text) = verify_files(&[&a1, &live1], &key);
    assert_eq!(code, 0, "{text}");
    m.unmount();

    // Everything stamped before a date far ahead: the whole log so far.
    let a2 = dir.join("two.vfsaudit");
    let (code, text) = archive(&m, "2099-01-01", &a2);
    assert_eq!(code, 0, "{text}");
    m.mount();
    use_vault(&m, "c", 5);
    let live2 = dir.join("live2.audit");
    fs::copy(m.path(".audit"), &live2).unwrap();
    m.unmount();
    let (code, text) = verify_files(&[&a1, &a2, &live2], &key);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("3 files, leaves 0.."), "{text}");
    // Out of order, or with one missing in the middle: named, exit 5.
    let (code, text) = verify_files(&[&a2, &a1, &live2], &key);
    assert_eq!(code, 5, "{text}");
    let (code, text) = verify_files(&[&a1, &live2], &key);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("starts at leaf"), "{text}");
    // A copy of `.audit` with its front cut off and a forged base line does
    // not verify: no archive record accounts for it.
    let full = fs::read_to_string(&live1).unwrap();
    let forged = dir.join("forged.audit");
    fs::write(
        &forged,
        full.replacen(
            "\"archives\":[{",
            "\"archives\":[{\"first\":0,\"end\":1,\"file\":\"x\",\"blake3\":\"00\"},{",
            1,
        ),
    )
    .unwrap();
    let (code, _) = verify_files(&[&forged], &key);
    assert_eq!(code, 5);

    // The store with its archives; the early witness checked in them.
    let (a1s, a2s, earlys) = (a1.to_str().unwrap(), a2.to_str().unwrap(), early.to_str().unwrap());
    let with_archives =
        ["audit", "verify", &st, "--passphrase-file", &pf, "--archive", a1s, "--archive", a2s];
    let (code, text) = run(&with_archives);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("checked in 2 archive files"), "{text}");
    let (code, text) = run(&[&with_archives[..], &["--since", earlys]].concat());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("in the archives"), "{text}");
    let (code, text) = run(&["audit", "verify", &st, "--passphrase-file", &pf, "--since", earlys]);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("give the archives"), "{text}");
    // An altered archive is named by the store's record of it.
    let bad = dir.join("bad.vfsaudit");
    let altered = fs::read_to_string(&a1).unwrap().replace("/a-1.md\"", "/a-9.md\"");
    assert_ne!(altered.as_bytes(), &fs::read(&a1).unwrap()[..]);
    fs::write(&bad, altered).unwrap();
    let (code, _) = run(&[
        "audit",
        "verify",
        &st,
        "--passphrase-file",
        &pf,
        "--archive",
        bad.to_str().unwrap(),
        "--archive",
        a2s,
    ]);
    assert_eq!(code, 5);

    // A backup of the archived vault verifies and restores, not older than
    // the early witness (checked by size: it predates the base).
    let bak = dir.join("vault.vfsbak");
    ok(&vaultfs(&["backup", &st, bak.to_str().unwrap(), "--passphrase-file", &pf]));
    let target = dir.join("restored");
    let (code, text) = run(&[
        "restore",
        bak.to_str().unwrap(),
        target.to_str().unwrap(),
        "--pubkey",
        &key,
        "--not-older-than",
        earlys,
    ]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["audit", "verify", target.to_str().unwrap(), "--passphrase-file", &pf]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn the_mount_archives_by_policy() {
    let mut m = Mount::new();
    let key = pubkey(&m);
    m.unmount();
    let archives = m.dir.path().join("archives");
    fs::create_dir(&archives).unwrap();
    fs::set_permissions(&archives, fs::Permissions::from_mode(0o700)).unwrap();
    let policy = format!("[audit]\narchive_dir = \"{}\"\nkeep = \"2s\"\n", archives.display());
    fs::write(m.store.join("policy.toml"), policy).unwrap();
    m.mount();
    use_vault(&m, "old", 20);
    std::thread::sleep(Duration::from_secs(3));
    use_vault(&m, "new", 5);
    // Archives in the order of their first record.
    let listed = || {
        let mut files: Vec<(u64, std::path::PathBuf)> = fs::read_dir(&archives)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                // A file still being written is `.NAME.partial`.
                if name.starts_with('.') {
                    return None;
                }
                let first = name.split("-audit-").nth(1)?.split('-').next()?.parse().ok()?;
                Some((first, p))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
    };
    let holds_old = |files: &[std::path::PathBuf]| {
        files.iter().any(|f| fs::read_to_string(f).unwrap_or_default().contains("old-19.md"))
    };
    // An archive file is renamed into place (and synced) before the store
    // is cut: wait for the cut too.
    let live_holds_old = || fs::read_to_string(m.path(".audit")).unwrap_or_default().contains("old-19.md");
    let cut = || holds_old(&listed()) && !live_holds_old();
    assert!(wait_for(Duration::from_secs(20), cut), "{}", m.log());
    let copy = m.dir.path().join("live.audit");
    fs::copy(m.path(".audit"), &copy).unwrap();
    let text = fs::read_to_string(&copy).unwrap();
    // The chain ends at the newest archive the live log's base names: one the
    // mount may have renamed into place since is not cut yet.
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let mut files = listed();
    let base = text.lines().next().unwrap_or_default().to_string();
    let upto = files.iter().rposition(|f| base.contains(&name(f))).expect("the base names a listed archive");
    files.truncate(upto + 1);
    let last = name(files.last().unwrap());
    assert!(last.ends_with(".vfsaudit"), "{last}");
    assert!(
        text.starts_with("{\"base\":") && text.lines().next().unwrap().contains(&last),
        "{}",
        &text[..300]
    );
    assert!(!text.contains("old-19.md"), "archived records left the live log");
    assert!(text.contains("\"op\":\"archive\""), "the archive is recorded");
    let mut chain: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    chain.push(&copy);
    let (code, out) = verify_files(&chain, &key);
    assert_eq!(code, 0, "{out}");
    m.unmount();
    // The next mount compacts the store first (sled keeps the archived
    // records' space until its files are rewritten).
    assert!(m.store.join("compact.due").exists());
    m.mount();
    assert!(!m.store.join("compact.due").exists());
    assert!(fs::read_to_string(m.path(".audit")).unwrap().starts_with("{\"base\":"));
    m.unmount();
    let (st, pf) = (m.store.to_str().unwrap(), m.passfile.to_str().unwrap());
    let (code, out) = run(&["fsck", st, "--passphrase-file", pf]);
    assert_eq!(code, 0, "{out}");
}
