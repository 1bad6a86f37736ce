//! Backup and restore on real mounts: `.backup/` copied with real tools while
//! writers keep going, restored into a new store that mounts and verifies;
//! archives that are damaged, truncated, forged, from another vault, or
//! older than a kept checkpoint are refused before anything is written.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mount, PASSPHRASE, all_files, sh, vaultfs};
use vaultfs::audit::checkpoint::{Checkpoint, vault_origin};
use vaultfs::backup::archive::{self, Preamble, Reader};
use vaultfs::backup::{Expect, verify_bytes};
use vaultfs::crypto::{Key32, SigningKey, VerifyingKey};

const CANARY_CONTENT: &[u8] = b"CANARY-CONTENT-q7Zk3";
const CANARY_NAME: &str = "CANARY-NAME-w8Jd2";
const CANARY_XATTR: &[u8] = b"CANARY-XATTR-p4Lm9";

fn pattern(t: usize, i: usize) -> Vec<u8> {
    let len = 500 + (i * 7919 + t * 104_729) % 40_000;
    (0..len).map(|k| ((k * 31 + i * 17 + t * 101) % 251) as u8).collect()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed ({:?}): {}", out.status, text(&out));
    text(&out)
}

fn pubkey(store: &Path) -> String {
    // While mounted it says on stderr that it read the key file beside the store.
    String::from_utf8(ok_stdout(vaultfs(&["audit", "pubkey", store.to_str().unwrap()])))
        .unwrap()
        .trim()
        .to_string()
}

/// A restored store, mounted like `Mount` (same passphrase).
fn mount_existing(store: &Path) -> Mount {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let passfile = dir.path().join("pass");
    fs::create_dir(&mnt).unwrap();
    fs::write(&passfile, format!("{PASSPHRASE}\n")).unwrap();
    let mut m = Mount {
        dir,
        store: store.to_path_buf(),
        mnt,
        passfile,
        mounted: false,
        options: vec![],
        env: vec![],
    };
    m.mount();
    m
}

/// `vaultfs restore ARCHIVE TARGET EXTRA...`.
fn restore(archive: &Path, target: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["restore", archive.to_str().unwrap(), target.to_str().unwrap()];
    args.extend_from_slice(extra);
    vaultfs(&args)
}

/// The single archive in a copied `.backup` directory.
fn the_archive(dir: &Path) -> PathBuf {
    let files = all_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("vault-") && name.ends_with(".vfsbak"), "{name}");
    files[0].clone()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn copy_of_backup_during_writes_restores_every_fsynced_file() {
    let m = Mount::new();
    let w = m.path("1-working");
    fs::write(w.join(CANARY_NAME), CANARY_CONTENT).unwrap();
    xattr_set(&w.join(CANARY_NAME), "user.note", CANARY_XATTR);
    fs::create_dir(m.path("2-private/notes")).unwrap();
    fs::write(m.path("2-private/notes/secret.md"), CANARY_CONTENT.repeat(300)).unwrap();
    fs::create_dir(w.join("agents")).unwrap();

    // Four writers, each recording the files whose fsync returned.
    let stop = Arc::new(AtomicBool::new(false));
    let durable: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (dir, stop, durable) = (w.join("agents"), stop.clone(), durable.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut f = File::create(dir.join(format!("w{t}-{i}"))).unwrap();
                    f.write_all(&pattern(t, i)).unwrap();
                    f.sync_all().unwrap();
                    durable.lock().unwrap().push((t, i));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // Everything fsync'd before the copy starts must be in the snapshot.
    let before: Vec<(usize, usize)> = durable.lock().unwrap().clone();
    let copy = m.dir.path().join("copy");
    sh(&format!("cp -r {} {}", m.path(".backup").display(), copy.display()), m.dir.path());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|h| h.join().unwrap());
    let after = durable.lock().unwrap().len();
    assert!(
        before.len() >= 4 && after > before.len(),
        "writers made no progress: {} then {after}",
        before.len()
    );

    let archive = the_archive(&copy);
    let bytes = fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"VFSBACK\0"));
    for canary in [CANARY_CONTENT, CANARY_NAME.as_bytes(), CANARY_XATTR, b"secret.md", b"agents"] {
        assert!(!contains(&bytes, canary), "{} appears in the archive", String::from_utf8_lossy(canary));
    }
    // Its open is on the record, under its name.
    let audit = fs::read_to_string(m.path(".audit")).unwrap();
    let name = archive.file_name().unwrap().to_str().unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"op\":\"backup_read\"") && l.contains(&format!("/.backup/{name}"))),
        "no backup_read record of {name}"
    );

    let key = pubkey(&m.store);
    let target = m.dir.path().join("restored");
    let report = ok(restore(&archive, &target, &["--pubkey", &key]));
    assert!(report.contains("the key given with --pubkey"), "{report}");
    let r = mount_existing(&target);
    let rw = r.path("1-working");
    assert_eq!(fs::read(rw.join(CANARY_NAME)).unwrap(), CANARY_CONTENT);
    assert_eq!(xattr_get(&rw.join(CANARY_NAME), "user.note"), CANARY_XATTR);
    assert_eq!(fs::read(r.path("2-private/notes/secret.md")).unwrap(), CANARY_CONTENT.repeat(300));
    for (t, i) in &before {
        let got = fs::read(rw.join(format!("agents/w{t}-{i}"))).unwrap_or_else(|e| panic!("w{t}-{i}: {e}"));
        assert_eq!(got, pattern(*t, *i), "fsync'd file w{t}-{i} differs after restore");
    }
    // Files written after the snapshot began are absent or a clean prefix.
    for e in fs::read_dir(rw.join("agents")).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_str().unwrap()[1..].to_string();
        let (t, i) = n.split_once('-').unwrap();
        let want = pattern(t.parse().unwrap(), i.parse().unwrap());
        let got = fs::read(&p).unwrap();
        assert!(got.len() <= want.len() && got[..] == want[..got.len()], "{} is inconsistent", p.display());
    }
    let mut r = r;
    r.unmount();
    let verify = vaultfs(&[
        "audit",
        "verify",
        target.to_str().unwrap(),
        "--passphrase-file",
        r.passfile.to_str().unwrap(),
    ]);
    assert!(ok(verify).contains("ok:"));
}

fn xattr_set(p: &Path, name: &str, value: &[u8]) {
    sh(&format!("setfattr -n {name} -v {} {}", String::from_utf8_lossy(value), p.display()), Path::new("/"));
}

fn xattr_get(p: &Path, name: &str) -> Vec<u8> {
    sh(&format!("getfattr --only-values -n {name} {}", p.display()), Path::new("/")).into_bytes()
}

#[test]
fn backup_directory_is_read_only_and_real_tools_copy_it() {
    let m = Mount::new();
    fs::write(m.path("1-working/a.md"), b"alpha").unwrap();
    // Levels 2 and up locked: a backup needs no level key.
    ok(vaultfs(&["lock", m.mnt.to_str().unwrap()]));
    assert!(fs::read_dir(m.path("2-private")).is_err());

    let listed: Vec<String> =
        fs::read_dir(m.path("")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(listed.contains(&".backup".to_string()), "{listed:?}");
    let dir_meta = fs::metadata(m.path(".backup")).unwrap();
    assert!(dir_meta.is_dir());
    assert_eq!(dir_meta.permissions().mode() & 0o7777, 0o500);
    let names: Vec<String> = fs::read_dir(m.path(".backup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let file = m.path(".backup").join(&names[0]);
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
    let data = fs::read(&file).unwrap();
    assert_eq!(meta.len(), data.len() as u64, "stat size differs from the bytes read");

    // Nothing can be made, changed or removed there.
    let refused = |r: std::io::Result<()>| {
        let e = r.expect_err("must be refused");
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::EEXIST)),
            "{e}"
        );
    };
    refused(fs::write(m.path(".backup/new"), b"x"));
    refused(fs::create_dir(m.path(".backup/d")));
    refused(fs::write(&file, b"x"));
    refused(fs::remove_file(&file));
    refused(fs::rename(&file, m.path("1-working/x")));
    refused(fs::remove_dir(m.path(".backup")));
    refused(fs::create_dir(m.path(".backup")));
    refused(fs::set_permissions(&file, fs::Permissions::from_mode(0o644)));

    // tar and rsync read a consistent file (tar complains if the size moves).
    let dir = m.dir.path();
    sh(&format!("tar -C {} -cf {}/b.tar .backup", m.mnt.display(), dir.display()), dir);
    sh(&format!("mkdir {0}/untar && tar -C {0}/untar -xf {0}/b.tar", dir.display()), dir);
    let untarred = the_archive(&dir.join("untar/.backup"));
    sh(&format!("rsync -a {}/ {}/rsynced/", m.path(".backup").display(), dir.display()), dir);
    let rsynced = the_archive(&dir.join("rsynced"));
    let key = VerifyingKey(hex32(&pubkey(&m.store)));
    for copy in [untarred, rsynced] {
        let bytes = fs::read(&copy).unwrap();
        let v = verify_bytes(&bytes, &Expect { pubkey: Some(key), not_older_than: None })
            .unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert_eq!(
            copy.file_name().unwrap().to_str().unwrap(),
            format!("vault-{}.vfsbak", v.checkpoint.size)
        );
    }
}

fn hex32(s: &str) -> [u8; 32] {
    let v: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// A vault with a few files, unmounted, and its offline archive.
struct Fixture {
    m: Mount,
    archive: PathBuf,
    key: String,
}

fn fixture() -> Fixture {
    let mut m = Mount::new();
    fs::write(m.path("1-working/a.md"), CANARY_CONTENT).unwrap();
    fs::create_dir(m.path("2-private/d")).unwrap();
    fs::write(m.path("2-private/d/b.bin"), vec![7u8; 100_000]).unwrap();
    m.unmount();
    let archive = m.dir.path().join("offline.vfsbak");
    let out = vaultfs(&[
        "backup",
        m.store.to_str().unwrap(),
        archive.to_str().unwrap(),
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
    ]);
    ok(out);
    let key = pubkey(&m.store);
    Fixture { m, archive, key }
}

#[test]
fn offline_backup_is_the_same_format_and_restores() {
    let mut f = fixture();
    let bytes = fs::read(&f.archive).unwrap();
    let key = VerifyingKey(hex32(&f.key));
    let offline = verify_bytes(&bytes, &Expect { pubkey: Some(key), not_older_than: None }).unwrap();
    // The mount's .backup of the same vault: same format, same vault, later log.
    f.m.mount();
    let copy = f.m.dir.path().join("mounted");
    sh(&format!("cp -r {} {}", f.m.path(".backup").display(), copy.display()), f.m.dir.path());
    let mounted_bytes = fs::read(the_archive(&copy)).unwrap();
    let mounted = verify_bytes(&mounted_bytes, &Expect { pubkey: Some(key), not_older_than: None }).unwrap();
    assert_eq!(offline.preamble.vault_id, mounted.preamble.vault_id);
    assert_eq!(offline.preamble.header, mounted.preamble.header);
    assert!(mounted.checkpoint.size > offline.checkpoint.size);
    assert!(!contains(&bytes, CANARY_CONTENT));
    f.m.unmount();

    let target = f.m.dir.path().join("restored");
    let report = ok(restore(&f.archive, &target, &[]));
    assert!(report.contains("checked only against the key in the archive's own header"), "{report}");
    assert_eq!(fs::read_to_string(target.join("audit.pub")).unwrap().trim(), f.key);
    let mut r = mount_existing(&target);
    assert_eq!(fs::read(r.path("1-working/a.md")).unwrap(), CANARY_CONTENT);
    assert_eq!(fs::read(r.path("2-private/d/b.bin")).unwrap(), vec![7u8; 100_000]);
    let audit = fs::read_to_string(r.path(".audit")).unwrap();
    assert!(
        audit.contains("\"op\":\"backup_read\",\"level\":null,\"ino\":0,\"path\":\"/.backup\""),
        "{audit}"
    );
    r.unmount();
    ok(vaultfs(&[
        "audit",
        "verify",
        target.to_str().unwrap(),
        "--passphrase-file",
        r.passfile.to_str().unwrap(),
    ]));
    // Never over an existing vault.
    let again = restore(&f.archive, &target, &[]);
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    assert!(text(&again).contains("restore never overwrites"), "{}", text(&again));
}

/// Restore must refuse with exit 5 (or 6 for a version), a message containing
/// one of `expect`, and leave no target behind.
fn refused(f: &Fixture, name: &str, bytes: &[u8], extra: &[&str], expect: &[&str]) {
    let path = f.m.dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    let target = f.m.dir.path().join(format!("{name}.target"));
    let out = restore(&path, &target, extra);
    let msg = text(&out);
    assert!(matches!(out.status.code(), Some(5) | Some(6)), "{name}: exit {:?}: {msg}", out.status.code());
    assert!(expect.iter().any(|e| msg.contains(e)), "{name}: expected one of {expect:?} in {msg}");
    assert!(msg.contains("nothing was written"), "{name}: {msg}");
    assert!(!msg.contains("panicked"), "{name}: {msg}");
    assert!(!target.exists(), "{name}: {} was created", target.display());
    let leftovers: Vec<_> = fs::read_dir(f.m.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".restoring-"))
        .collect();
    assert!(leftovers.is_empty(), "{name}: staging directory left behind");
}

/// Preamble, the offset where records start, and the archive's bytes.
fn split(bytes: &[u8]) -> (Preamble, usize) {
    let (r, p) = Reader::open(bytes).unwrap();
    (p, r.offset() as usize)
}

#[test]
fn damaged_archives_are_refused_before_anything_is_written() {
    let f = fixture();
    let good = fs::read(&f.archive).unwrap();
    let n = good.len();
    let (pre, records_at) = split(&good);
    let note_at = archive::FIXED_PREAMBLE + pre.header.len() + 4;
    let pin = ["--pubkey", f.key.as_str()];
    let flip = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 0x40;
        b
    };
    // Named fields: the message says what is wrong.
    let named: &[(usize, &[&str])] = &[
        (0, &["not a vaultfs backup archive"]),
        (7, &["not a vaultfs backup archive"]),
        (9, &["archive format version"]),
        (17, &["unknown flags"]),
        (20, &["differs from the vault header"]),
        (40, &["comes from another vault"]),
        (70, &["archive signature does not verify"]),
        (81, &["the preamble says"]),
        (archive::FIXED_PREAMBLE + 160, &["comes from another vault", "vault header"]),
        (note_at + 3, &["audit checkpoint does not verify"]),
        (note_at + pre.checkpoint.len() - 10, &["audit checkpoint does not verify"]),
        (
            records_at + (n - records_at) / 2,
            &["archive signature does not verify", "damaged at byte", "truncated"],
        ),
        (n - 64 - 3, &["damaged at byte"]),
        (n - 64, &["archive signature does not verify"]),
        (n - 1, &["archive signature does not verify"]),
    ];
    for (i, expect) in named {
        refused(&f, &format!("flip{i}"), &flip(*i), &pin, expect);
    }
    // Everywhere else, sampled: always refused, never written, never a panic.
    let any = [
        "not a vaultfs backup",
        "version",
        "flags",
        "truncated",
        "damaged at byte",
        "vault header",
        "differs from the vault header",
        "comes from another vault",
        "audit checkpoint does not verify",
        "archive signature does not verify",
        "inconsistent",
        "bytes after its signature",
        "the preamble says",
    ];
    let step = (n / 40).max(1);
    for i in (0..n).step_by(step).chain([82, 83, 84, 85, records_at, records_at + 1, records_at + 2]) {
        refused(&f, &format!("any{i}"), &flip(i), &pin, &any);
    }
    // Truncated anywhere, or with bytes appended.
    for cut in [0, 5, 60, records_at, records_at + 7, n / 2, n - 65, n - 64, n - 1] {
        refused(&f, &format!("cut{cut}"), &good[..cut], &[], &["truncated"]);
    }
    let mut long = good.clone();
    long.push(0);
    refused(&f, "appended", &long, &[], &["bytes after its signature"]);
    refused(&f, "empty", &[], &[], &["truncated"]);
    refused(&f, "text", b"hello, this is not an archive at all", &[], &["not a vaultfs backup archive"]);
    // The untouched archive still restores.
    let target = f.m.dir.path().join("good.target");
    ok(restore(&f.archive, &target, &pin));
}

/// The archive with its preamble replaced (records and signature kept).
fn with_preamble(bytes: &[u8], pre: &Preamble) -> Vec<u8> {
    let (_, records_at) = split(bytes);
    let mut out = pre.encode();
    out.extend_from_slice(&bytes[records_at..]);
    out
}

/// Re-signs `bytes` (every byte but the signature) with `key`.
fn resign(bytes: &mut [u8], key: &SigningKey) {
    let n = bytes.len();
    let mut h = vaultfs::crypto::Blake3::new();
    h.update(&bytes[..n - 64]);
    let sig = key.sign(&archive::signed_message(&h.finalize()));
    bytes[n - 64..].copy_from_slice(&sig);
}

#[test]
fn forged_and_foreign_archives_are_refused() {
    let f = fixture();
    let good = fs::read(&f.archive).unwrap();
    let (pre, _) = split(&good);
    let pin = ["--pubkey", f.key.as_str()];
    let cp = Checkpoint::parse_and_verify(
        &pre.checkpoint,
        Some(&vault_origin(&pre.vault_id)),
        &VerifyingKey(pre.audit_public),
    )
    .unwrap();
    let mallory = SigningKey::from_seed(Key32::from_bytes([0x66; 32]));

    // The checkpoint re-signed by another key (same origin, size and root).
    let mut forged = pre.clone();
    forged.checkpoint = cp.sign(&mallory);
    let mut bytes = with_preamble(&good, &forged);
    refused(&f, "cp-other-key", &bytes, &pin, &["audit checkpoint does not verify", "wrong key id"]);
    resign(&mut bytes, &mallory);
    refused(&f, "cp-other-key-resigned", &bytes, &[], &["audit checkpoint does not verify"]);

    // A whole archive re-keyed and re-signed by an attacker: self-consistent,
    // so only the pinned key tells.
    let mut rekeyed = pre.clone();
    let mk = mallory.verifying_key().0;
    rekeyed.audit_public = mk;
    rekeyed.header[155..187].copy_from_slice(&mk);
    rekeyed.checkpoint = cp.sign(&mallory);
    let mut bytes = with_preamble(&good, &rekeyed);
    resign(&mut bytes, &mallory);
    refused(&f, "rekeyed", &bytes, &pin, &["comes from another vault"]);

    // An untouched archive of another vault, pinned to this vault's key.
    let other = fixture();
    refused(&f, "other-vault", &fs::read(&other.archive).unwrap(), &pin, &["comes from another vault"]);
    // Its body with our preamble: the signature does not cover it.
    let mut spliced = with_preamble(&fs::read(&other.archive).unwrap(), &pre);
    refused(&f, "spliced", &spliced, &pin, &["archive signature does not verify", "inconsistent"]);
    spliced.truncate(spliced.len() - 64);
    refused(&f, "spliced-cut", &spliced, &pin, &["truncated"]);
}

#[test]
fn not_older_than_catches_a_rollback() {
    let mut f = fixture();
    let store = f.m.store.to_str().unwrap().to_string();
    let pass = f.m.passfile.to_str().unwrap().to_string();
    let dir = f.m.dir.path().to_path_buf();
    let checkpoint = |name: &str| -> PathBuf {
        let out = vaultfs(&["audit", "checkpoint", &store, "--passphrase-file", &pass]);
        let p = dir.join(name);
        fs::write(&p, ok_stdout(out)).unwrap();
        p
    };
    // A checkpoint the admin kept before the archive was made... (the
    // fixture's archive is already made: make a second one after it)
    let early = checkpoint("early.note");
    let archive = dir.join("second.vfsbak");
    ok(vaultfs(&["backup", &store, archive.to_str().unwrap(), "--passphrase-file", &pass]));
    // ...and one after more use.
    f.m.mount();
    fs::write(f.m.path("1-working/later.md"), b"later").unwrap();
    let audit_copy = dir.join("audit.copy");
    fs::copy(f.m.path(".audit"), &audit_copy).unwrap();
    f.m.unmount();
    let late = checkpoint("late.note");

    let pin = ["--pubkey", f.key.as_str()];
    let target = dir.join("t-early");
    let report =
        ok(restore(&archive, &target, &["--not-older-than", early.to_str().unwrap(), pin[0], pin[1]]));
    assert!(report.contains("not older"), "{report}");
    for (name, witness) in [("late", &late), ("audit-copy", &audit_copy)] {
        let mut args = vec!["--not-older-than", witness.to_str().unwrap()];
        args.extend_from_slice(&pin);
        refused(&f, &format!("older-{name}"), &fs::read(&archive).unwrap(), &args, &["archive is older"]);
    }
    // A witness from another vault, or forged with another key, is refused too.
    let other = fixture();
    let other_note = dir.join("other.note");
    let out = vaultfs(&[
        "audit",
        "checkpoint",
        other.m.store.to_str().unwrap(),
        "--passphrase-file",
        other.m.passfile.to_str().unwrap(),
    ]);
    fs::write(&other_note, ok_stdout(out)).unwrap();
    refused(
        &f,
        "witness-other-vault",
        &fs::read(&archive).unwrap(),
        &["--not-older-than", other_note.to_str().unwrap()],
        &["is not a checkpoint of this vault"],
    );
    let (pre, _) = split(&fs::read(&archive).unwrap());
    let forged = Checkpoint { origin: vault_origin(&pre.vault_id), size: 1, root: [0; 32] }
        .sign(&SigningKey::from_seed(Key32::from_bytes([0x77; 32])));
    let forged_note = dir.join("forged.note");
    fs::write(&forged_note, forged).unwrap();
    refused(
        &f,
        "witness-forged",
        &fs::read(&archive).unwrap(),
        &["--not-older-than", forged_note.to_str().unwrap()],
        &["is not a checkpoint of this vault"],
    );
}

fn ok_stdout(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", text(&out));
    out.stdout
}
