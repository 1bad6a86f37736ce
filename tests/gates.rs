//! Gated levels on real mounts: hardware factors against a real software TPM
//! (swtpm, one per test) and the software FIDO2 authenticator (no HID device
//! exists on these machines), approvals, lockdown and tombstones, each
//! leaving its audit records.

mod common;
#[path = "common/swtpm.rs"]
mod swtpm;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::control::*;
use common::{Mount, PASSPHRASE};
use swtpm::Swtpm;
use vaultfs::gate::fido2::soft::{PresenceMode, SoftAuthenticator};

/// A software FIDO2 device whose presence test passes at once.
fn soft_device(path: &Path, presence: PresenceMode) {
    let dev = SoftAuthenticator::open(path).unwrap();
    dev.set_presence(presence, Duration::from_millis(1500)).unwrap();
}

/// A mounted vault (unmounted first, so factors can be enrolled) whose
/// daemon and commands see `tpm` and the software FIDO2 device at `fido`.
fn gated(tpm: &Swtpm) -> (Mount, PathBuf) {
    let mut m = Mount::new();
    m.unmount();
    let fido = m.dir.path().join("fido2.state");
    soft_device(&fido, PresenceMode::Always);
    m.env = vec![
        ("TPM2TOOLS_TCTI".into(), tpm.tcti()),
        ("VAULTFS_FIDO2_SOFT".into(), fido.to_string_lossy().into_owned()),
    ];
    (m, fido)
}

#[test]
fn tpm_gates_level_4_and_approval_releases_one_open() {
    let mut tpm = Swtpm::start();
    let (mut m, _) = gated(&tpm);
    m.mount();
    assert_eq!(level_state(&m, 4), "not enrolled");
    assert_eq!(errno(fs::read_dir(m.path("4-vaulted"))), libc::EACCES);
    let msg = refused(&vaultfs(&m, &["unlock", mnt(&m), "4"]), 7);
    assert!(msg.contains("no hardware factor enrolled"), "{msg}");
    m.unmount();

    let out = ok(&vaultfs(&m, &["enroll", "tpm", store(&m), "--level", "4", "--passphrase-file", pass(&m)]));
    assert!(out.contains("level 4 now opens with tpm"), "{out}");
    let info = ok(&vaultfs(&m, &["info", store(&m)]));
    assert!(info.contains("level 4 opens with tpm"), "{info}");

    m.mount();
    assert_eq!(level_state(&m, 4), "locked");
    assert_eq!(errno(fs::read_dir(m.path("4-vaulted"))), libc::EACCES);
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4-vaulted"]));
    assert_eq!(level_state(&m, 4), "open");
    fs::write(m.path("4-vaulted/secret.md"), "the launch code").unwrap();

    // Opening it waits for a human; other requests keep being served.
    let reader = open_in_thread(m.path("4-vaulted/secret.md"));
    let st = wait_pending(&m);
    assert_eq!(st["pending"], 1);
    let listing = ok(&vaultfs(&m, &["pending", mnt(&m)]));
    assert!(listing.contains("/4-vaulted/secret.md") && listing.contains("level 4"), "{listing}");
    fs::write(m.path("1-working/meanwhile"), "served").unwrap();
    ok(&vaultfs(&m, &["approve", mnt(&m)]));
    assert_eq!(reader.join().unwrap().unwrap(), "the launch code");

    ok(&vaultfs(&m, &["lock", mnt(&m), "4"]));
    assert_eq!(errno(fs::read_dir(m.path("4-vaulted"))), libc::EACCES);

    // The TPM gone: a clear error, and the level stays locked.
    tpm.stop();
    let msg = refused(&vaultfs(&m, &["unlock", mnt(&m), "4"]), 7);
    assert!(msg.contains("tpm"), "{msg}");
    assert_eq!(level_state(&m, 4), "locked");

    let ops = audit_ops(&m);
    let has = |op: &str, level: u64, result: i64| {
        ops.iter().any(|(o, l, r, _)| o == op && *l == Some(level) && *r == result)
    };
    assert!(has("unlock", 4, 0), "successful unlock recorded");
    assert!(has("unlock", 4, 13), "failed unlock recorded");
    assert!(has("approve", 4, 0), "approval recorded");
    assert!(has("lock", 4, 0), "lock recorded");
    assert!(ops.iter().any(|(o, _, r, p)| o == "open" && *r == 0 && p == "/4-vaulted/secret.md"));
    assert!(ops.iter().any(|(_, _, r, p)| *r == 13 && p.starts_with("/4-vaulted")), "denial recorded");
}

#[test]
fn level_5_needs_a_fido2_touch_and_the_level_4_factor() {
    let tpm = Swtpm::start();
    let (mut m, fido) = gated(&tpm);
    let (st, pf) = (store(&m).to_string(), pass(&m).to_string());
    let enroll5 = ["enroll", "fido2", st.as_str(), "--level", "5", "--passphrase-file", pf.as_str()];
    let msg = refused(&vaultfs(&m, &enroll5), 2);
    assert!(msg.contains("enroll level 4 first"), "{msg}");
    ok(&vaultfs(&m, &["enroll", "tpm", store(&m), "--level", "4", "--passphrase-file", pass(&m)]));
    let out = ok(&vaultfs(&m, &enroll5));
    assert!(out.contains("level 5 now opens with fido2+tpm"), "{out}");

    // A backup key: a second software device, enrolled while the first is
    // also plugged in (it answers for the slot that exists).
    let backup = m.dir.path().join("backup.state");
    soft_device(&backup, PresenceMode::Always);
    let mut with_backup = m.env.clone();
    with_backup[1].1 = format!("{}:{}", backup.display(), fido.display());
    let env = std::mem::replace(&mut m.env, with_backup);
    ok(&vaultfs(&m, &enroll5));
    m.env = env;

    // Presence by touch: no touch, no key.
    soft_device(&fido, PresenceMode::Touch);
    m.mount();
    let msg = refused(&vaultfs(&m, &["unlock", mnt(&m), "5"]), 7);
    assert!(msg.contains("touch"), "{msg}");
    assert_eq!(level_state(&m, 5), "locked");
    let touch = PathBuf::from(format!("{}.touch", fido.display()));
    let toucher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        fs::write(touch, "").unwrap();
    });
    ok(&vaultfs(&m, &["unlock", mnt(&m), "5-black"]));
    toucher.join().unwrap();
    assert_eq!(level_state(&m, 5), "open");
    fs::write(m.path("5-black/key.md"), "black").unwrap();
    m.unmount();

    // The backup key alone (with the TPM) opens level 5 too.
    m.env[1].1 = backup.to_string_lossy().into_owned();
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "5"]));
    let names: Vec<_> = fs::read_dir(m.path("5-black")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["key.md"]);
}

#[test]
fn without_the_factor_the_passphrase_and_store_do_not_open_level_4() {
    let mut tpm = Swtpm::start();
    let (mut m, _) = gated(&tpm);
    ok(&vaultfs(&m, &["enroll", "tpm", store(&m), "--level", "4", "--passphrase-file", pass(&m)]));
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    fs::write(m.path("4-vaulted/x"), "gated content").unwrap();
    m.unmount();
    tpm.stop();

    // The library, the passphrase, the whole store: no TPM, no level-4 key.
    let v = vaultfs::Vault::open(&m.store).unwrap();
    let v = v.unlock(&vaultfs::crypto::Passphrase::new(PASSPHRASE.as_bytes().to_vec())).unwrap();
    assert_eq!(v.level_state(4), vaultfs::vault::LevelState::Locked);
    let dir = vaultfs::vault::level_dir(4);
    assert_eq!(v.lookup(dir, b"x").unwrap_err().kind(), vaultfs::ErrorKind::AccessDenied);
    let who = vaultfs::vault::Caller { uid: 0, gid: 0, pid: 1 };
    // Guessing the factor's secret does not open the slot either.
    let mut guess = |f: &[vaultfs::format::Factor]| {
        Ok(f.iter().map(|_| vaultfs::crypto::Key32::random().unwrap()).collect())
    };
    let e = v.unlock_level(who, b"test", 4, None, &mut guess).unwrap_err();
    assert_eq!(e.kind(), vaultfs::ErrorKind::FactorFailed, "{e}");
    assert_eq!(v.level_state(4), vaultfs::vault::LevelState::Locked);
}

#[test]
fn deny_lockdown_and_tombstones() {
    let mut m = Mount::new();
    fs::write(m.path("3-sealed/plan.md"), "sealed plan").unwrap();

    // A denied open fails with EACCES.
    let reader = open_in_thread(m.path("3-sealed/plan.md"));
    let id = {
        wait_pending(&m);
        let p = ok(&m.run(&["pending", mnt(&m)]));
        p.split_whitespace().next().unwrap().parse::<u64>().unwrap()
    };
    ok(&m.run(&["deny", mnt(&m), &id.to_string()]));
    assert_eq!(reader.join().unwrap().unwrap_err().raw_os_error(), Some(libc::EACCES));

    // Lockdown closes every level above 1, survives a remount, and refuses unlock.
    ok(&m.run(&["lockdown", mnt(&m)]));
    assert_eq!(errno(fs::read_dir(m.path("2-private"))), libc::EACCES);
    assert!(fs::read_dir(m.path("1-working")).is_ok());
    m.remount();
    assert!(status(&m)["lockdown"].as_bool().unwrap());
    assert_eq!(errno(fs::read_dir(m.path("3-sealed"))), libc::EACCES);
    let msg = refused(&m.run(&["unlock", mnt(&m), "3", "--passphrase-file", pass(&m)]), 7);
    assert!(msg.contains("lockdown"), "{msg}");
    let bad = m.dir.path().join("bad");
    fs::write(&bad, "wrong\n").unwrap();
    refused(&m.run(&["lockdown", mnt(&m), "--exit", "--passphrase-file", bad.to_str().unwrap()]), 3);
    ok(&m.run(&["lockdown", mnt(&m), "--exit", "--passphrase-file", pass(&m)]));
    assert!(fs::read_dir(m.path("2-private")).is_ok());

    // Unlink at level 3 shreds at once and leaves a tombstone.
    fs::remove_file(m.path("3-sealed/plan.md")).unwrap();
    let st = status(&m);
    let t = &st["tombstones"][0];
    assert_eq!(t["path"], "/3-sealed/plan.md");
    assert_eq!(t["level"], 3);
    let ops = audit_ops(&m);
    for op in ["reject", "lockdown", "unlink"] {
        assert!(ops.iter().any(|(o, _, _, _)| o == op), "{op} recorded");
    }
    m.unmount();
    // The tombstone outlives the mount; the content does not.
    let v = vaultfs::Vault::open(&m.store).unwrap();
    let v = v.unlock(&vaultfs::crypto::Passphrase::new(PASSPHRASE.as_bytes().to_vec())).unwrap();
    assert_eq!(v.tombstones().unwrap().len(), 1);
    assert!(v.lookup(vaultfs::vault::level_dir(3), b"plan.md").is_err());
}

#[test]
fn pcr_bound_enrollment_stops_opening_once_the_pcr_changes() {
    let tpm = Swtpm::start();
    let (mut m, _) = gated(&tpm);
    ok(&vaultfs(
        &m,
        &["enroll", "tpm", store(&m), "--level", "4", "--tpm-pcrs", "16", "--passphrase-file", pass(&m)],
    ));
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    fs::write(m.path("4-vaulted/bound.md"), "measured boot only").unwrap();
    ok(&vaultfs(&m, &["lock", mnt(&m), "4"]));

    // Something else "booted": PCR 16 moves, and the sealed secret stays sealed.
    let cfg = vaultfs::gate::tpm::TpmConfig::resolve(Some(&tpm.tcti()), vec![]);
    vaultfs::gate::tpm::extend_pcr(&cfg, 16, b"another kernel").unwrap();
    let msg = refused(&vaultfs(&m, &["unlock", mnt(&m), "4"]), 7);
    assert!(msg.contains("PCRs 16 changed since enrollment"), "{msg}");
    assert_eq!(level_state(&m, 4), "locked");
    assert_eq!(errno(fs::read_dir(m.path("4-vaulted"))), libc::EACCES);
}

#[test]
fn rotation_rewraps_every_factor_slot_and_needs_each_to_answer() {
    let tpm = Swtpm::start();
    let (mut m, fido) = gated(&tpm);
    let (st, pf) = (store(&m).to_string(), pass(&m).to_string());
    ok(&vaultfs(&m, &["enroll", "tpm", &st, "--level", "4", "--passphrase-file", &pf]));
    let enroll5 = ["enroll", "fido2", st.as_str(), "--level", "5", "--passphrase-file", pf.as_str()];
    ok(&vaultfs(&m, &enroll5));
    let backup = m.dir.path().join("backup.state");
    soft_device(&backup, PresenceMode::Always);
    let both = format!("{}:{}", backup.display(), fido.display());
    m.env[1].1 = both.clone();
    ok(&vaultfs(&m, &enroll5));
    m.env[1].1 = fido.to_string_lossy().into_owned();
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    ok(&vaultfs(&m, &["unlock", mnt(&m), "5"]));
    fs::write(m.path("4-vaulted/a.md"), "four").unwrap();
    fs::write(m.path("5-black/b.md"), "five").unwrap();
    m.unmount();

    // Level 5's backup key is not plugged in: its slot could not be
    // re-wrapped, so nothing is changed.
    let header = || {
        let s = vaultfs::store::Store::open(&m.store, false).unwrap();
        s.get(vaultfs::format::keys::HEADER).unwrap().unwrap().to_vec()
    };
    let before = header();
    let rot5 = ["rotate", st.as_str(), "--level", "5", "--passphrase-file", pf.as_str()];
    let msg = refused(&vaultfs(&m, &rot5), 7);
    assert!(msg.contains("key slot") && msg.contains("did not answer"), "{msg}");
    assert_eq!(header(), before);

    m.env[1].1 = both;
    let out = ok(&vaultfs(&m, &["rotate", &st, "--level", "4", "--level", "5", "--passphrase-file", &pf]));
    for l in ["level 4 (4-vaulted): new key;", "level 5 (5-black): new key;"] {
        assert!(out.contains(l), "{out}");
    }
    assert_ne!(header(), before);

    // Each security key alone (with the TPM) opens the new level-5 key.
    for (i, dev) in [backup, fido].into_iter().enumerate() {
        m.env[1].1 = dev.to_string_lossy().into_owned();
        m.mount();
        ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
        ok(&vaultfs(&m, &["unlock", mnt(&m), "5"]));
        let names: Vec<_> =
            fs::read_dir(m.path("5-black")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["b.md"]);
        if i == 0 {
            // Each offline key change left its record, in order.
            let changes: Vec<(String, String)> = audit_ops(&m)
                .into_iter()
                .filter(|(op, ..)| op == "header" || op == "rotate")
                .map(|(op, _, _, path)| (op, path))
                .collect();
            // The first mount with the TPM anchored the vault there, once.
            let anchored: Vec<_> = changes.iter().filter(|(_, p)| p.starts_with("anchor: ")).collect();
            assert_eq!(anchored.len(), 1, "{changes:?}");
            let changes: Vec<_> = changes.into_iter().filter(|(_, p)| !p.starts_with("anchor: ")).collect();
            let want = [
                ("header", "enroll tpm level 4"),
                ("header", "enroll fido2+tpm level 5"),
                ("header", "enroll fido2+tpm level 5"),
                ("rotate", "/4-vaulted"),
                ("rotate", "/5-black"),
            ];
            assert_eq!(changes, want.map(|(o, p)| (o.to_string(), p.to_string())));
            for (path, want) in [("4-vaulted/a.md", "four"), ("5-black/b.md", "five")] {
                let reader = open_in_thread(m.path(path));
                wait_pending(&m);
                ok(&vaultfs(&m, &["approve", mnt(&m)]));
                assert_eq!(reader.join().unwrap().unwrap(), want);
            }
        }
        m.unmount();
    }
}

/// `enroll` and `unenroll` on a mounted vault go through its daemon, with the
/// daemon's TPM and security key; the new factors work at once, and each
/// change (a refused one too) is recorded with the caller.
#[test]
fn enroll_and_unenroll_while_mounted_go_through_the_daemon() {
    let tpm = Swtpm::start();
    let (mut m, _) = gated(&tpm);
    let (st, pf) = (store(&m).to_string(), pass(&m).to_string());
    m.mount();
    assert_eq!(level_state(&m, 4), "not enrolled");
    let out = ok(&vaultfs(&m, &["enroll", "tpm", &st, "--level", "4", "--passphrase-file", &pf]));
    assert!(out.contains("level 4 now opens with tpm"), "{out}");
    assert_eq!(level_state(&m, 4), "locked");
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    fs::write(m.path("4-vaulted/a.md"), "four").unwrap();

    let out = ok(&vaultfs(&m, &["enroll", "fido2", &st, "--level", "5", "--passphrase-file", &pf]));
    assert!(out.contains("level 5 now opens with fido2+tpm"), "{out}");
    ok(&vaultfs(&m, &["unlock", mnt(&m), "5"]));
    fs::write(m.path("5-black/b.md"), "five").unwrap();

    // A second level-4 slot (its first factor answers for it); a wrong
    // passphrase is refused and changes nothing.
    ok(&vaultfs(&m, &["enroll", "tpm", &st, "--level", "4", "--passphrase-file", &pf]));
    let wrong = m.dir.path().join("wrong");
    fs::write(&wrong, "not it").unwrap();
    let wrong = wrong.to_str().unwrap();
    refused(&vaultfs(&m, &["enroll", "tpm", &st, "--level", "4", "--passphrase-file", wrong]), 3);
    m.unmount();
    let info = ok(&vaultfs(&m, &["info", &st]));
    let level4: Vec<&str> = info.lines().filter(|l| l.contains("level 4 opens with tpm")).collect();
    assert_eq!(level4.len(), 2, "{info}");
    let slot = level4[1].trim().strip_prefix("slot ").unwrap().split(':').next().unwrap().to_string();

    m.mount();
    refused(&vaultfs(&m, &["unenroll", &st, "--slot", &slot, "--passphrase-file", wrong]), 3);
    let out = ok(&vaultfs(&m, &["unenroll", &st, "--slot", &slot, "--passphrase-file", &pf]));
    assert!(out.contains(&format!("key slot {slot} removed")), "{out}");
    let changes: Vec<(String, i64)> = audit_ops(&m)
        .into_iter()
        .filter(|(op, _, _, path)| op == "header" && !path.starts_with("anchor: "))
        .map(|(_, _, result, path)| (path, result))
        .collect();
    let want = [
        ("enroll tpm level 4".to_string(), 0),
        ("enroll fido2+tpm level 5".to_string(), 0),
        ("enroll tpm level 4".to_string(), 0),
        ("enroll tpm level 4".to_string(), 13),
        (format!("unenroll slot {slot} level 4"), 13),
        (format!("unenroll slot {slot} level 4"), 0),
    ];
    assert_eq!(changes, want);
    m.unmount();
    let info = ok(&vaultfs(&m, &["info", &st]));
    assert_eq!(info.lines().filter(|l| l.contains("level 4 opens with tpm")).count(), 1, "{info}");
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    ok(&vaultfs(&m, &["unlock", mnt(&m), "5"]));
    for (path, want) in [("4-vaulted/a.md", "four"), ("5-black/b.md", "five")] {
        let reader = open_in_thread(m.path(path));
        wait_pending(&m);
        ok(&vaultfs(&m, &["approve", mnt(&m)]));
        assert_eq!(reader.join().unwrap().unwrap(), want);
    }
}
