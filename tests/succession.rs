//! Dead-man succession (docs/ADMIN.md "Dead-man succession") on real
//! mounts: an heir's key pair, a will with a short period, releases refused
//! while the owner checks in, a release once the period has passed, and the
//! heir's claim (new passphrase, levels 1-3 and a bequeathed level 4 behind
//! a software FIDO2 factor); wrong keys, tampered and spent releases, and
//! bad requests refused; every step in the audit log.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::control::{audit_ops, mnt, ok, open_in_thread, pass, refused, store, vaultfs, wait_pending};
use common::{Mount, wait_for};
use vaultfs::gate::fido2::soft::{PresenceMode, SoftAuthenticator};

fn soft_device(path: &Path) {
    let dev = SoftAuthenticator::open(path).unwrap();
    dev.set_presence(PresenceMode::Always, Duration::from_millis(1500)).unwrap();
}

fn keygen(m: &Mount, name: &str) -> (String, String) {
    let key = m.dir.path().join(name);
    let public = ok(&vaultfs(m, &["succession", "keygen", "--out", key.to_str().unwrap()]));
    let mode = fs::metadata(&key).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    (key.to_string_lossy().into_owned(), public.trim().to_string())
}

#[test]
fn the_heir_claims_a_vault_whose_owner_stopped_checking_in() {
    let mut m = Mount::new();
    m.unmount();
    let fido = m.dir.path().join("fido2.state");
    soft_device(&fido);
    m.env = vec![("VAULTFS_FIDO2_SOFT".into(), fido.to_string_lossy().into_owned())];
    ok(&vaultfs(&m, &["enroll", "fido2", store(&m), "--level", "4", "--passphrase-file", pass(&m)]));
    m.mount();
    ok(&vaultfs(&m, &["unlock", mnt(&m), "4"]));
    fs::write(m.path("1-working/notes.md"), "plans").unwrap();
    fs::write(m.path("4-vaulted/keys.md"), "the launch code").unwrap();

    let (heir_key, heir_pub) = keygen(&m, "heir.key");
    assert!(heir_pub.starts_with("vaultfs-heir-1-"), "{heir_pub}");
    let pubfile = format!("{heir_key}.pub");
    let setup = [
        "succession",
        "setup",
        store(&m),
        "--heir",
        &pubfile,
        "--period",
        "4s",
        "--levels",
        "4",
        "--passphrase-file",
        pass(&m),
    ];
    let out = ok(&vaultfs(&m, &setup));
    assert!(out.contains(&heir_pub) && out.contains("levels:        1-3,4"), "{out}");
    // One will at a time.
    let err = refused(&vaultfs(&m, &setup), 2);
    assert!(err.contains("--replace"), "{err}");
    let status = ok(&vaultfs(&m, &["succession", "status", store(&m)]));
    assert!(status.contains("release from:"), "{status}");

    // The owner is here: no release.
    let err = refused(&vaultfs(&m, &["succession", "release", store(&m)]), 12);
    assert!(err.contains("checked in at"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    ok(&vaultfs(&m, &["checkin", store(&m), "--passphrase-file", pass(&m)]));
    std::thread::sleep(Duration::from_secs(2));
    refused(&vaultfs(&m, &["succession", "release", store(&m)]), 12);
    // A check-in needs the owner's passphrase.
    let wrong = m.dir.path().join("wrong");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    refused(&vaultfs(&m, &["checkin", store(&m), "--passphrase-file", wrong.to_str().unwrap()]), 3);

    // A whole period without one: the mount records it, then gives the release.
    let due = || {
        audit_ops(&m)
            .iter()
            .any(|(o, _, r, p)| o == "succession" && *r == 0 && p.starts_with("succession due "))
    };
    assert!(!due(), "not due yet");
    assert!(wait_for(Duration::from_secs(10), due), "the missed check-in is recorded");
    let release = m.dir.path().join("release");
    ok(&vaultfs(&m, &["succession", "release", store(&m), "--out", release.to_str().unwrap()]));
    let text = fs::read_to_string(&release).unwrap();
    assert!(text.starts_with("vaultfs-release-1-"), "{text}");
    let ops = audit_ops(&m);
    let steps: Vec<(i64, &str)> =
        ops.iter().filter(|(o, ..)| o == "succession").map(|(_, _, r, p)| (*r, p.as_str())).collect();
    let step = |result: i64, prefix: &str| steps.iter().any(|(r, p)| *r == result && p.starts_with(prefix));
    assert!(step(0, "succession setup ") && step(0, "succession due "), "{steps:?}");
    assert!(step(22, "succession setup refused"), "{steps:?}");
    assert!(step(13, "succession release ") && step(0, "succession checkin "), "{steps:?}");
    assert!(step(13, "succession checkin refused"), "{steps:?}");
    assert!(steps.last().is_some_and(|(r, p)| *r == 0 && p.starts_with("succession release ")), "{steps:?}");
    m.unmount();
    // A rotation of a bequeathed level would leave the heir an old key.
    let err = refused(&vaultfs(&m, &["rotate", store(&m), "--level", "4", "--passphrase-file", pass(&m)]), 2);
    assert!(err.contains("bequeathed by the will"), "{err}");

    // Claims that must fail, leaving the vault as it was.
    let newpass = m.dir.path().join("newpass");
    fs::write(&newpass, "the heir's own passphrase\n").unwrap();
    let claim = |key: &str, rel: &Path| {
        vaultfs(
            &m,
            &[
                "succession",
                "claim",
                store(&m),
                "--heir-key",
                key,
                "--release",
                rel.to_str().unwrap(),
                "--new-passphrase-file",
                newpass.to_str().unwrap(),
            ],
        )
    };
    let (other_key, _) = keygen(&m, "other.key");
    let err = refused(&claim(&other_key, &release), 3);
    assert!(err.contains("does not open this release"), "{err}");
    let err = refused(&claim(&pubfile, &release), 2);
    assert!(err.contains("public key"), "{err}");
    let tampered = m.dir.path().join("tampered");
    let mut bytes = text.trim().as_bytes().to_vec();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&tampered, &bytes).unwrap();
    let err = refused(&claim(&heir_key, &tampered), 2);
    assert!(err.contains("checksum"), "{err}");

    // The heir's claim.
    let out = ok(&claim(&heir_key, &release));
    assert!(out.contains("opens levels 1-3 and 4"), "{out}");
    let err = refused(&claim(&heir_key, &release), 2);
    assert!(err.contains("already claimed"), "{err}");
    // The owner's passphrase no longer opens the vault; the heir's does, level 4 included.
    refused(&m.try_mount(&[]), 3);
    fs::copy(&newpass, &m.passfile).unwrap();
    m.mount();
    assert_eq!(fs::read_to_string(m.path("1-working/notes.md")).unwrap(), "plans");
    let names: Vec<String> = fs::read_dir(m.path("4-vaulted"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["keys.md"]);
    let reader = open_in_thread(m.path("4-vaulted/keys.md"));
    wait_pending(&m);
    ok(&vaultfs(&m, &["approve", mnt(&m)]));
    assert_eq!(reader.join().unwrap().unwrap(), "the launch code");
    let ops = audit_ops(&m);
    assert!(
        ops.iter().any(|(o, _, r, p)| o == "succession" && *r == 0 && p.starts_with("succession claim ")),
        "claim recorded"
    );
    let status = ok(&vaultfs(&m, &["succession", "status", store(&m)]));
    assert!(status.contains("no will"), "{status}");
    m.unmount();
    ok(&vaultfs(&m, &["audit", "verify", store(&m), "--passphrase-file", pass(&m)]));
}

#[test]
fn a_will_on_a_closed_vault_and_bad_requests() {
    let mut m = Mount::new();
    m.unmount();
    let (_, heir_pub) = keygen(&m, "heir.key");
    let st = store(&m).to_string();
    let pf = pass(&m).to_string();
    let setup = |extra: &[&str]| {
        let mut args = vec!["succession", "setup", st.as_str(), "--heir", heir_pub.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--passphrase-file", pf.as_str()]);
        vaultfs(&m, &args)
    };
    for (period, why) in [
        ("0", "positive"),
        ("3w", "unit"),
        ("x", "unit"),
        ("1.5d", "positive"),
        ("99999999999999999d", "positive"),
    ] {
        let err = refused(&setup(&["--period", period]), 2);
        assert!(err.contains(why), "{period}: {err}");
    }
    let err = refused(&setup(&["--period", "1d", "--levels", "3"]), 2);
    assert!(err.contains("not a hardware factor level"), "{err}");
    let err = refused(&setup(&["--period", "1d", "--levels", "4"]), 2);
    assert!(err.contains("no key yet"), "{err}");
    let err = refused(
        &vaultfs(&m, &["succession", "setup", &st, "--heir", "vaultfs-heir-1-00-00", "--period", "1d"]),
        2,
    );
    assert!(err.contains("--heir"), "{err}");
    let err = refused(&vaultfs(&m, &["checkin", &st, "--passphrase-file", &pf]), 2);
    assert!(err.contains("no will"), "{err}");

    let out = ok(&setup(&["--period", "30d"]));
    assert!(out.contains("period:        30 day(s)"), "{out}");
    ok(&setup(&["--period", "12h", "--replace"]));
    let out = ok(&vaultfs(&m, &["succession", "status", &st, "--passphrase-file", &pf]));
    assert!(out.contains("12 hour(s)"), "{out}");
    let out = ok(&vaultfs(&m, &["checkin", &st, "--passphrase-file", &pf]));
    assert!(out.contains("next release possible at"), "{out}");
    let err = refused(&vaultfs(&m, &["succession", "release", &st]), 2);
    assert!(err.contains("not mounted"), "{err}");
    // fsck and a backup archive know the will's key.
    ok(&vaultfs(&m, &["fsck", &st, "--passphrase-file", &pf]));
    ok(&vaultfs(&m, &["succession", "cancel", &st, "--passphrase-file", &pf]));
    let out = ok(&vaultfs(&m, &["succession", "status", &st, "--passphrase-file", &pf]));
    assert!(out.contains("no will"), "{out}");
    let err = refused(&vaultfs(&m, &["succession", "cancel", &st, "--passphrase-file", &pf]), 2);
    assert!(err.contains("no will"), "{err}");
    // The steps of a closed vault are recorded too.
    m.mount();
    let steps: Vec<String> =
        audit_ops(&m).into_iter().filter(|(o, ..)| o == "succession").map(|(.., p)| p).collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(
        steps[0].starts_with("succession setup ") && steps[3].starts_with("succession cancel "),
        "{steps:?}"
    );
}
