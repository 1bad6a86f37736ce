//! `vaultfs escrow split | recover` through the real binary: any T of N
//! shares set a new passphrase and levels 1-3 open with it; T-1 shares, a
//! mistyped share and shares of an earlier split are refused with a clear
//! message; an escrowed level 4 (software FIDO2 factor) gets a new factor
//! with the shares once its authenticator is lost. No mount needed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::PASSPHRASE;
use common::control::ok;
use vaultfs::crypto::Passphrase;
use vaultfs::gate::fido2::soft::{PresenceMode, SoftAuthenticator};
use vaultfs::vault::{FileKind, NewNode, level_dir};
use vaultfs::{ErrorKind, Vault};

struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    pass: PathBuf,
    env: Vec<(String, String)>,
}

impl Fixture {
    /// A closed vault (cheap KDF) with a note at levels 1 and 3.
    fn new() -> Fixture {
        Fixture::with_init(&[]).0
    }

    /// As `new`, with more `vaultfs init` arguments; also what init printed.
    fn with_init(extra: &[&str]) -> (Fixture, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let pass = write(dir.path(), "pass", PASSPHRASE);
        let f = Fixture { dir, store, pass, env: Vec::new() };
        let (st, pf) = (f.store_str(), f.pass_str());
        let mut args = vec!["init", &st, "--passphrase-file", &pf, "--kdf-memory", "8", "--kdf-passes", "1"];
        args.extend_from_slice(extra);
        let printed = ok(&f.run(&args));
        let v = Vault::open(&f.store).unwrap().unlock(&Passphrase::new(PASSPHRASE.into())).unwrap();
        for level in [1, 3] {
            let node = NewNode { kind: FileKind::File, perm: 0o600, uid: 0, gid: 0, rdev: 0 };
            let n = v.create(level_dir(level), b"note", node).unwrap();
            v.write(n.ino, 0, format!("level {level}").as_bytes()).unwrap();
        }
        v.sync().unwrap();
        (f, printed)
    }

    fn store_str(&self) -> String {
        self.store.to_string_lossy().into_owned()
    }

    fn pass_str(&self) -> String {
        self.pass.to_string_lossy().into_owned()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::bin()).args(args).envs(self.env.clone()).output().expect("run vaultfs")
    }

    fn split(&self, t: u8, n: u8, extra: &[&str]) -> Vec<String> {
        let (st, pf) = (self.store_str(), self.pass_str());
        let (t, n) = (t.to_string(), n.to_string());
        let mut args =
            vec!["escrow", "split", &st, "--shares", &n, "--threshold", &t, "--passphrase-file", &pf];
        args.extend_from_slice(extra);
        let out = ok(&self.run(&args));
        out.lines().map(str::to_string).collect()
    }

    /// `escrow recover` with each share in its own file.
    fn recover(&self, shares: &[&str], new_pass: &str) -> Output {
        let newfile = write(self.dir.path(), "newpass", new_pass);
        let files: Vec<PathBuf> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| write(self.dir.path(), &format!("share{i}"), &format!("# keeper {i}\n{s}\n")))
            .collect();
        let st = self.store_str();
        let nf = newfile.to_string_lossy().into_owned();
        let mut args: Vec<String> =
            ["escrow", "recover", &st, "--new-passphrase-file", &nf].iter().map(|s| s.to_string()).collect();
        for f in &files {
            args.push("--share-file".into());
            args.push(f.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// The level-`level` note, read with passphrase `pw`.
    fn note(&self, pw: &str, level: u8) -> Result<Vec<u8>, ErrorKind> {
        let v =
            Vault::open(&self.store).unwrap().unlock(&Passphrase::new(pw.into())).map_err(|e| e.kind())?;
        let n = v.lookup(level_dir(level), b"note").unwrap();
        Ok(v.read(n.ino, 0, 100).unwrap())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    p
}

fn refused(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}{}", String::from_utf8_lossy(&out.stdout));
    err
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn any_t_of_n_shares_recover_and_t_minus_1_do_not() {
    let f = Fixture::new();
    let shares = f.split(3, 5, &[]);
    assert_eq!(shares.len(), 5, "{shares:?}");
    for (i, s) in shares.iter().enumerate() {
        assert!(s.starts_with("vaultfs-share-1-"), "{s}");
        assert!(s.contains(&format!("-3of5-{}-", i + 1)), "{s}");
    }
    assert!(ok(&f.run(&["info", &f.store_str()])).contains("3 of 5 shares recover"));

    // Every 3 of the 5, in turn; each sets a new passphrase that opens levels 1 to 3.
    let mut current = PASSPHRASE.to_string();
    for (round, pick) in subsets(5, 3).into_iter().enumerate() {
        let chosen: Vec<&str> = pick.iter().map(|&i| shares[i].as_str()).collect();
        let new = format!("new passphrase {round}");
        let out = ok(&f.recover(&chosen, &new));
        assert!(out.contains("passphrase set"), "{out}");
        assert!(out.contains("levels 1,2,3 open with the new passphrase"), "{out}");
        assert_eq!(f.note(&current, 1), Err(ErrorKind::WrongPassphrase));
        assert_eq!(f.note(&new, 1).unwrap(), b"level 1");
        assert_eq!(f.note(&new, 3).unwrap(), b"level 3");
        current = new;
    }
    // All five work too.
    let all: Vec<&str> = shares.iter().map(String::as_str).collect();
    ok(&f.recover(&all, "all five"));
    assert_eq!(f.note("all five", 3).unwrap(), b"level 3");

    // Any 2 are refused before anything is asked or written.
    for pick in subsets(5, 2) {
        let chosen: Vec<&str> = pick.iter().map(|&i| shares[i].as_str()).collect();
        let err = refused(&f.recover(&chosen, "never"), 2);
        assert!(err.contains("2 different share(s) given; this vault's split needs 3 of 5"), "{err}");
    }
    // The same share twice is one share.
    let err = refused(&f.recover(&[&shares[0], &shares[0], &shares[1]], "never"), 2);
    assert!(err.contains("needs 3 of 5"), "{err}");
    assert_eq!(f.note("all five", 1).unwrap(), b"level 1");
}

#[test]
fn corrupted_and_foreign_shares_are_rejected() {
    let f = Fixture::new();
    let shares = f.split(2, 3, &[]);
    // One mistyped digit in the share value: the checksum catches it.
    let mut typo = shares[1].clone();
    let at = typo.len() - 20;
    let c = if &typo[at..at + 1] == "7" { "8" } else { "7" };
    typo.replace_range(at..at + 1, c);
    let err = refused(&f.recover(&[&shares[0], &typo], "never"), 2);
    assert!(err.contains("share1 line 2: share #2 fails its checksum: it is mistyped or damaged"), "{err}");
    // A truncated share, and something that is not a share.
    let err = refused(&f.recover(&[&shares[0], &shares[2][..60]], "never"), 2);
    assert!(err.contains("share1 line 2"), "{err}");
    let err = refused(&f.recover(&[&shares[0], "hello"], "never"), 2);
    assert!(err.contains("not a vaultfs share"), "{err}");
    // Typed from paper: upper case and spaces are fine.
    let typed = shares[2].to_uppercase().replacen('-', " - ", 3);
    ok(&f.recover(&[&shares[0], &typed], "typed"));
    assert_eq!(f.note("typed", 1).unwrap(), b"level 1");

    // A second split needs --replace, then the old shares stop working.
    let pf = f.pass.clone();
    std::fs::copy(f.dir.path().join("newpass"), &pf).unwrap();
    let (st, pfs) = (f.store_str(), f.pass_str());
    let err = refused(
        &f.run(&["escrow", "split", &st, "--shares", "3", "--threshold", "2", "--passphrase-file", &pfs]),
        2,
    );
    assert!(err.contains("--replace"), "{err}");
    let new_shares = f.split(2, 3, &["--replace"]);
    let err = refused(&f.recover(&[&shares[0], &shares[1]], "never"), 2);
    assert!(err.contains("not from this vault's current split"), "{err}");
    let err = refused(&f.recover(&[&shares[0], &new_shares[1]], "never"), 2);
    assert!(err.contains("not from this vault's current split"), "{err}");
    // Shares of another vault.
    let g = Fixture::new();
    let theirs = g.split(2, 3, &[]);
    let err = refused(&f.recover(&[&theirs[0], &theirs[1]], "never"), 2);
    assert!(err.contains("belongs to vault"), "{err}");
    // The current shares work, read from standard input this time.
    let newfile = write(f.dir.path(), "stdin-pass", "from stdin");
    let mut child = Command::new(common::bin())
        .args(["escrow", "recover", &st, "--new-passphrase-file", newfile.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}\n\n{}", new_shares[2], new_shares[0]).unwrap();
    ok(&child.wait_with_output().unwrap());
    assert_eq!(f.note("from stdin", 3).unwrap(), b"level 3");
}

#[test]
fn bad_split_requests_are_usage_errors() {
    let f = Fixture::new();
    let (st, pf) = (f.store_str(), f.pass_str());
    let split = |t: &str, n: &str, extra: &[&str]| {
        let mut a =
            vec!["escrow", "split", st.as_str(), "--shares", n, "--threshold", t, "--passphrase-file", &pf];
        a.extend_from_slice(extra);
        f.run(&a)
    };
    refused(&split("1", "3", &[]), 2);
    refused(&split("4", "3", &[]), 2);
    refused(&split("2", "300", &[]), 2);
    let err = refused(&split("2", "3", &["--escrow-levels", "2"]), 2);
    assert!(err.contains("level 2"), "{err}");
    let err = refused(&split("2", "3", &["--escrow-levels", "4"]), 2);
    assert!(err.contains("level 4 has no key yet"), "{err}");
    let wrong = write(f.dir.path(), "wrong", "not the passphrase");
    refused(
        &f.run(&[
            "escrow",
            "split",
            &st,
            "--shares",
            "3",
            "--threshold",
            "2",
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ]),
        3,
    );
    let err = refused(&f.recover(&["x"], "never"), 7);
    assert!(err.contains("no recovery key"), "{err}");
    assert!(ok(&f.run(&["info", &st])).contains("escrow:           none"));
}

fn soft_device(path: &Path) {
    let dev = SoftAuthenticator::open(path).unwrap();
    dev.set_presence(PresenceMode::Always, Duration::from_millis(1500)).unwrap();
}

#[test]
fn an_escrowed_level_gets_a_new_factor_with_the_shares() {
    let mut f = Fixture::new();
    let fido = f.dir.path().join("fido2.state");
    soft_device(&fido);
    f.env = vec![("VAULTFS_FIDO2_SOFT".into(), fido.to_string_lossy().into_owned())];
    let (st, pf) = (f.store_str(), f.pass_str());
    ok(&f.run(&["enroll", "fido2", &st, "--level", "4", "--passphrase-file", &pf]));
    let shares = f.split(2, 3, &["--escrow-levels", "4"]);
    let info = ok(&f.run(&["info", &st]));
    assert!(info.contains("level 4 opens with fido2"), "{info}");
    assert!(info.contains("level 4 opens with recovery"), "{info}");

    // The authenticator is lost: a new one cannot enroll without the shares...
    let lost = f.dir.path().join("fido2-new.state");
    soft_device(&lost);
    f.env = vec![("VAULTFS_FIDO2_SOFT".into(), lost.to_string_lossy().into_owned())];
    let err = refused(&f.run(&["enroll", "fido2", &st, "--level", "4", "--passphrase-file", &pf]), 7);
    assert!(err.contains("level 4 stays locked"), "{err}");
    // ...and can with them.
    let s0 = write(f.dir.path(), "s0", &shares[0]);
    let s2 = write(f.dir.path(), "s2", &shares[2]);
    let (s0, s2) = (s0.to_string_lossy().into_owned(), s2.to_string_lossy().into_owned());
    let enroll = ["enroll", "fido2", &st, "--level", "4", "--passphrase-file", &pf, "--share-file", &s0];
    let err = refused(&f.run(&enroll), 2);
    assert!(err.contains("needs 2 of 3"), "{err}");
    let mut enroll = enroll.to_vec();
    enroll.extend_from_slice(&["--share-file", &s2]);
    ok(&f.run(&enroll));
    let info = ok(&f.run(&["info", &st]));
    assert_eq!(info.matches("level 4 opens with fido2").count(), 2, "{info}");

    // recover says which levels the shares reach, and a split without
    // --escrow-levels drops level 4's escrow slot and says so.
    let out = ok(&f.recover(&[&shares[1], &shares[2]], "after loss"));
    assert!(out.contains("level 4 still unlocks with its hardware factor; it is escrowed"), "{out}");
    std::fs::copy(f.dir.path().join("newpass"), &f.pass).unwrap();
    let out = f.run(&[
        "escrow",
        "split",
        &st,
        "--shares",
        "2",
        "--threshold",
        "2",
        "--replace",
        "--passphrase-file",
        &pf,
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(err.contains("Level 4 is no longer escrowed"), "{err}");
    assert!(!ok(&f.run(&["info", &st])).contains("opens with recovery"));
}

/// `init --recovery-key` prints one recovery key (a 1-of-1 share, feature
/// bit 3): alone it sets a new passphrase that opens levels 1 to 3, as with
/// systemd-cryptenroll's recovery key; a mistyped copy is refused.
#[test]
fn a_recovery_key_from_init_sets_a_new_passphrase() {
    let (f, out) = Fixture::with_init(&["--recovery-key"]);
    let key =
        out.lines().find_map(|l| l.strip_prefix("recovery key: ")).expect("a recovery key line").to_string();
    assert!(key.starts_with("vaultfs-share-1-") && key.contains("-1of1-1-"), "{key}");
    assert!(ok(&f.run(&["info", &f.store_str()])).contains("1 of 1 shares recover"));

    let typo = key.replacen("-1of1-1-", "-1of1-1-0", 1);
    let err = refused(&f.recover(&[&typo], "never set"), 2);
    assert!(err.contains("share"), "{err}");
    ok(&f.recover(&[&key], "after recovery"));
    assert_eq!(f.note("after recovery", 3).unwrap(), b"level 3");
    assert_eq!(f.note(PASSPHRASE, 3).unwrap_err(), ErrorKind::WrongPassphrase);
}
