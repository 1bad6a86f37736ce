//! Crash safety of `vaultfs passwd`: the real binary is killed with SIGKILL
//! at points spread over its whole run (store open, both Argon2id runs, the
//! header write and sled's flush, exit). After every kill the vault must open
//! with the old passphrase or the new one, never neither, and never as
//! damaged; across the iterations both outcomes must occur. The header is
//! one sled key rewritten by one insert and flushed (docs/CRYPTO.md), so an
//! interrupted write leaves the old value or the new one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vaultfs::crypto::Passphrase;
use vaultfs::vault::{FileKind, NewNode, level_dir};
use vaultfs::{ErrorKind, Vault};

const ITERATIONS: usize = 30;
/// Iterations whose kill points are spread over the whole run; the rest
/// aim at the boundary between "old" and "new" outcomes.
const SPREAD: usize = 16;

/// xorshift64*: enough to spread kill points; the seed is printed.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn passfile(dir: &Path, name: &str, pass: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pass}\n")).unwrap();
    p
}

fn passwd(store: &Path, old: &Path, new: &Path) -> Command {
    let mut c = Command::new(common::bin());
    c.arg("passwd")
        .arg(store)
        .arg("--passphrase-file")
        .arg(old)
        .arg("--new-passphrase-file")
        .arg(new)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Which of `candidates` opens the vault; panics if none does or the store
/// or header is damaged.
fn opens_with<'a>(store: &Path, candidates: &[&'a str], what: &str) -> &'a str {
    let v = Vault::open(store).unwrap_or_else(|e| panic!("{what}: the vault does not open: {e}"));
    for c in candidates {
        match v.check_passphrase(&Passphrase::new(c.as_bytes().to_vec())) {
            Ok(()) => return c,
            Err(e) if e.kind() == ErrorKind::WrongPassphrase => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
    panic!("{what}: neither {candidates:?} opens the vault");
}

#[test]
fn passwd_killed_anywhere_leaves_the_old_or_the_new_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let first = "passphrase 0";
    let pf = passfile(dir.path(), "p0", first);
    let init = common::vaultfs(&[
        "init",
        store.to_str().unwrap(),
        "--passphrase-file",
        pf.to_str().unwrap(),
        "--kdf-memory",
        "8",
        "--kdf-passes",
        "1",
    ]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    {
        let v = Vault::open(&store).unwrap().unlock(&Passphrase::new(first.into())).unwrap();
        let node = NewNode { kind: FileKind::File, perm: 0o600, uid: 0, gid: 0, rdev: 0 };
        let n = v.create(level_dir(3), b"note", node).unwrap();
        v.write(n.ino, 0, b"sealed note").unwrap();
        v.sync().unwrap();
    }

    // How long an uninterrupted passwd takes here: the median of five (the
    // first runs pay for cold caches, and the machine is shared).
    let mut current = first.to_string();
    let mut runs = Vec::new();
    for i in 1..=5 {
        let new = format!("passphrase warm-up {i}");
        let (old_f, new_f) = (passfile(dir.path(), "old", &current), passfile(dir.path(), "new", &new));
        let start = Instant::now();
        let out = passwd(&store, &old_f, &new_f).output().unwrap();
        runs.push(start.elapsed());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        current = new;
    }
    runs.sort();
    let runtime = runs[runs.len() / 2];

    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("passwd runtime {runtime:?}; kill-point seed {seed:#x}");
    let mut rng = Rng(seed);
    let (mut killed_old, mut killed_new, mut finished) = (0, 0, 0);
    // The latest kill that left the old passphrase, the earliest that found the new one.
    let (mut last_old, mut first_new) = (Duration::ZERO, runtime.mul_f64(1.1));
    for i in 0..ITERATIONS {
        let new = format!("passphrase {}", i + 1);
        let (old_f, new_f) = (passfile(dir.path(), "old", &current), passfile(dir.path(), "new", &new));
        let at = if i < SPREAD {
            // Stratified: iteration i kills somewhere in its own slice of
            // [0, 1.1 × runtime], so the whole run is covered, the end included.
            runtime.mul_f64(1.1 * (i as f64 + rng.next_f64()) / SPREAD as f64)
        } else {
            // Then around the boundary seen so far, where the header is
            // written and flushed and the store closed: the risky part. Run
            // times vary on a shared machine, so the two ends may cross.
            let lo = last_old.min(first_new).mul_f64(0.8);
            let hi = last_old.max(first_new).mul_f64(1.2);
            lo + (hi - lo).mul_f64(rng.next_f64())
        };
        let mut child = passwd(&store, &old_f, &new_f).spawn().unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL; fails only if it already exited
        let out = child.wait_with_output().unwrap();
        let killed = !out.status.success() && out.status.code().is_none();
        assert!(
            killed || out.status.success(),
            "iteration {i}: passwd failed on its own: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let what = format!("iteration {i} (kill at {at:?}, seed {seed:#x})");
        let opened = opens_with(&store, &[&current, &new], &what).to_string();
        match (killed, opened == new) {
            (true, false) => killed_old += 1,
            (true, true) => killed_new += 1,
            (false, true) => finished += 1,
            (false, false) => panic!("{what}: passwd succeeded but the old passphrase still opens"),
        }
        if opened == new {
            first_new = first_new.min(at);
        } else {
            last_old = last_old.max(at);
        }
        current = opened;
    }
    eprintln!(
        "killed, old passphrase kept: {killed_old}; killed after the change: {killed_new}; finished: {finished}; \
         boundary between {last_old:?} and {first_new:?}"
    );
    assert!(killed_old > 0, "no kill landed before the header write: spread the kill points earlier");
    assert!(killed_new + finished > 0, "no run got as far as the new header");

    // The data is intact and readable with whichever passphrase is current.
    let v = Vault::open(&store).unwrap().unlock(&Passphrase::new(current.clone().into_bytes())).unwrap();
    let n = v.lookup(level_dir(3), b"note").unwrap();
    assert_eq!(v.read(n.ino, 0, 100).unwrap(), b"sealed note");
    // Every change that took effect left its audit record, and no other did
    // (the record shares the header's store write): 5 warm-up runs + the rest.
    let records = v.audit_lines(0, v.audit_size()).unwrap();
    let passwd_records = records
        .iter()
        .filter(|l| l.contains("\"op\":\"header\"") && l.contains("\"path\":\"passwd\""))
        .count();
    assert_eq!(passwd_records, 5 + killed_new + finished);
}
