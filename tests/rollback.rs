//! The rollback anchors on real mounts: a store directory put back from an
//! older copy does not mount against its witness file or its TPM anchor
//! (exit 11), a forged or foreign witness is refused (exit 5), a crash never
//! makes the genuine store look rolled back, and `restore --witness` and
//! `-o reanchor` move the anchors deliberately.

mod common;
#[path = "common/swtpm.rs"]
mod swtpm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Mount, vaultfs};

/// `vaultfs mount` of `m`'s store with `witness` given by `--witness`.
fn mount_with_witness(m: &Mount, witness: &Path) -> Output {
    m.try_mount(&["--witness", witness.to_str().unwrap()])
}

/// An unmounted vault whose level 4 opens with `tpm`, its commands and
/// daemon pointed at it.
fn tpm_enrolled(tpm: &swtpm::Swtpm) -> Mount {
    let mut m = Mount::new();
    m.unmount();
    m.env = vec![("TPM2TOOLS_TCTI".into(), tpm.tcti())];
    let (st, pf) = (m.store.to_str().unwrap(), m.passfile.to_str().unwrap());
    let out = m.run(&["enroll", "tpm", st, "--level", "4", "--passphrase-file", pf]);
    assert!(out.status.success(), "{}", stderr(&out));
    m
}

/// `vaultfs mount` of `m`'s store with `-o` options.
fn mount_opts(m: &Mount, opts: &[&str]) -> Output {
    m.try_mount(&opts.iter().flat_map(|o| ["-o", *o]).collect::<Vec<_>>())
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

fn put_back(old: &Path, store: &Path) {
    std::fs::remove_dir_all(store).unwrap();
    copy_dir(old, store);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The tree size a witness note names (its second line).
fn witness_size(w: &Path) -> u64 {
    std::fs::read_to_string(w).unwrap().lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_store_put_back_from_an_older_copy_does_not_mount() {
    let side = tempfile::tempdir().unwrap();
    let witness = side.path().join("vault.witness");
    let w = witness.to_str().unwrap().to_string();
    let mut m = Mount::with_options(&[&format!("witness={w}")]);
    std::fs::write(m.path("1-working/a.md"), "first").unwrap();
    m.unmount();
    let first = witness_size(&witness);
    assert!(first > 0);
    let old: PathBuf = side.path().join("old-store");
    copy_dir(&m.store, &old);

    // An archive of this older state, for the deliberate restore below.
    m.mount();
    let archive = side.path().join("old.vfsbak");
    let out = vaultfs(&["backup", m.store.to_str().unwrap(), archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(m.path("1-working/b.md"), "second").unwrap();
    m.unmount();
    let second = witness_size(&witness);
    assert!(second > first, "the witness moved forward: {first} -> {second}");

    // The old copy put back: refused, with the reason, and nothing mounted.
    put_back(&old, &m.store);
    let out = mount_with_witness(&m, &witness);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(msg.contains(&w) && msg.contains("older than the vault last seen"), "{msg}");
    assert!(!common::is_mounted(&m.mnt));
    assert_eq!(witness_size(&witness), second, "a refused mount leaves the witness alone");

    // A forged witness, another vault's, or a truncated one: refused as damage.
    let other = Mount::with_options(&[&format!("witness={}", side.path().join("other.witness").display())]);
    drop(other);
    let genuine = std::fs::read_to_string(&witness).unwrap();
    for (what, text) in [
        ("forged", genuine.replacen(&second.to_string(), &(second + 1000).to_string(), 1)),
        ("another vault's", std::fs::read_to_string(side.path().join("other.witness")).unwrap()),
        ("truncated", genuine[..genuine.len() / 2].to_string()),
    ] {
        std::fs::write(&witness, text).unwrap();
        let out = mount_with_witness(&m, &witness);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("is not a checkpoint of this vault"), "{what}: {}", stderr(&out));
    }
    std::fs::write(&witness, &genuine).unwrap();

    // Restoring the old archive on purpose moves the anchor back with it.
    let restored = side.path().join("restored");
    let out = vaultfs(&["restore", archive.to_str().unwrap(), restored.to_str().unwrap(), "--witness", &w]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains(&format!("was {second} records")), "{said}");
    m.store = restored;
    let out = mount_with_witness(&m, &witness);
    assert!(out.status.success(), "{}", stderr(&out));
    m.mounted = true;
    assert_eq!(std::fs::read_to_string(m.path("1-working/a.md")).unwrap(), "first");
    assert!(!m.path("1-working/b.md").exists());
}

/// kill -9 in the middle of writing: the witness only ever names what is
/// durable in the store, so the store mounts again against it.
#[test]
fn a_crash_never_makes_the_store_look_rolled_back() {
    let side = tempfile::tempdir().unwrap();
    let witness = side.path().join("w");
    let mut m = Mount::with_options(&[&format!("witness={}", witness.display())]);
    let dir = m.path("1-working");
    let at_mount = witness_size(&witness);
    let start = std::time::Instant::now();
    let mut i = 0;
    // Past two anchor periods, so the witness moves while writes go on.
    while start.elapsed() < vaultfs::vault::ANCHOR_EVERY * 2 + std::time::Duration::from_millis(500) {
        std::fs::write(dir.join(format!("f{}", i % 50)), format!("{i}")).unwrap();
        i += 1;
    }
    let seen = witness_size(&witness);
    assert!(seen > at_mount, "the witness moved while writes went on ({at_mount} -> {seen})");
    m.abort();
    assert!(witness_size(&witness) >= seen);
    let out = mount_with_witness(&m, &witness);
    assert!(out.status.success(), "{}", stderr(&out));
    m.mounted = true;
    let out = vaultfs(&["umount", m.mnt.to_str().unwrap()]);
    assert!(out.status.success());
    m.mounted = false;
    let fsck =
        vaultfs(&["fsck", m.store.to_str().unwrap(), "--passphrase-file", m.passfile.to_str().unwrap()]);
    assert_eq!(fsck.status.code(), Some(0), "{}", String::from_utf8_lossy(&fsck.stdout));
}

/// A vault with a TPM factor keeps its anchor in the TPM's NV memory: an
/// older copy of the store is refused without any witness file, and so is
/// a vault whose anchor disappeared; `-o reanchor` accepts the store on
/// purpose (recorded), and `-o no_tpm_anchor` skips the check.
#[test]
fn the_tpm_anchor_catches_a_store_put_back() {
    let tpm = swtpm::Swtpm::start();
    let mut m = tpm_enrolled(&tpm);
    m.mount();
    std::fs::write(m.path("1-working/a.md"), "first").unwrap();
    m.unmount();
    let side = tempfile::tempdir().unwrap();
    let old = side.path().join("old");
    copy_dir(&m.store, &old);
    m.mount();
    std::fs::write(m.path("1-working/b.md"), "second").unwrap();
    m.unmount();

    put_back(&old, &m.store);
    let out = mount_opts(&m, &[]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("the TPM anchor (NV index"), "{}", stderr(&out));
    assert!(!common::is_mounted(&m.mnt));

    // Accepted on purpose: recorded, and the anchor follows this store.
    let out = mount_opts(&m, &["reanchor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    m.mounted = true;
    let ops = common::control::audit_ops(&m);
    assert!(ops.iter().any(|(op, _, _, p)| op == "mount" && p.starts_with("reanchor: ")), "{ops:?}");
    assert!(!m.path("1-working/b.md").exists());
    m.unmount();
    m.mount();
    m.unmount();

    // The anchor removed from the TPM: this vault was anchored there, so no.
    let cfg = vaultfs::gate::tpm::TpmConfig::resolve(Some(&tpm.tcti()), Vec::new());
    let header = vaultfs::store::Store::open(&m.store, false)
        .unwrap()
        .get(vaultfs::format::keys::HEADER)
        .unwrap()
        .unwrap()
        .to_vec();
    let id = vaultfs::format::Header::decode(&header).unwrap().vault_id;
    vaultfs::gate::tpm::remove_anchor(&cfg, vaultfs::gate::tpm::anchor_index(&id)).unwrap();
    let out = mount_opts(&m, &[]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("is gone"), "{}", stderr(&out));
    let out = mount_opts(&m, &["no_tpm_anchor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    m.mounted = true;
}

/// A vault with a TPM factor whose TPM does not answer: before the vault
/// was ever anchored there the mount goes on (the anchor waits for a mount
/// that reaches the TPM); once anchored, the mount refuses (exit 7) unless
/// `-o no_tpm_anchor` says to go without it.
#[test]
fn an_unreachable_tpm_postpones_a_first_anchor_and_blocks_an_established_one() {
    let mut tpm = swtpm::Swtpm::start();
    let mut m = tpm_enrolled(&tpm);
    tpm.stop();
    let out = mount_opts(&m, &[]);
    assert!(out.status.success(), "first anchor postponed: {}", stderr(&out));
    m.mounted = true;
    m.unmount();

    let tpm2 = swtpm::Swtpm::start();
    m.env = vec![("TPM2TOOLS_TCTI".into(), tpm2.tcti())];
    m.mount();
    m.unmount();
    drop(tpm2);
    let out = mount_opts(&m, &[]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_tpm_anchor"), "{}", stderr(&out));
    let out = mount_opts(&m, &["no_tpm_anchor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    m.mounted = true;
}
