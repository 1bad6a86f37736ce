//! The audit log through a real mount: every access leaves a record before
//! the reply, `.audit` is a read-only file real tools can read, its copies
//! verify with the public key alone, and tampering is named.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::control::{mnt, ok, wait_pending};
use common::{Mount, sh, vaultfs};

/// The `op` and `path` fields of every leaf line, in order.
fn ops(text: &str) -> Vec<(String, String)> {
    let field = |line: &str, name: &str| -> String {
        let key = format!("\"{name}\":\"");
        line.find(&key)
            .map(|i| {
                let rest = &line[i + key.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .unwrap_or_default()
    };
    text.lines()
        .filter(|l| !l.starts_with("{\"checkpoint\""))
        .map(|l| (field(l, "op"), field(l, "path")))
        .collect()
}

fn pubkey(m: &Mount) -> String {
    let out = vaultfs(&["audit", "pubkey", m.store.to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `vaultfs audit verify --file F --pubkey K`: (exit code, stdout + stderr).
fn verify_copy(file: &Path, key: &str) -> (i32, String) {
    let out = vaultfs(&["audit", "verify", "--file", file.to_str().unwrap(), "--pubkey", key]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_access_is_recorded_and_a_copy_verifies() {
    let m = Mount::new();
    let w = m.path("1-working");
    fs::write(w.join("notes.md"), b"remember this").unwrap();
    assert_eq!(fs::read(w.join("notes.md")).unwrap(), b"remember this");
    fs::create_dir(w.join("dir")).unwrap();
    fs::rename(w.join("notes.md"), w.join("dir/notes.md")).unwrap();
    fs::set_permissions(w.join("dir/notes.md"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("notes.md", w.join("dir/link")).unwrap();
    fs::hard_link(w.join("dir/notes.md"), w.join("hard")).unwrap();
    fs::remove_file(w.join("hard")).unwrap();
    fs::remove_file(w.join("dir/link")).unwrap();
    fs::remove_file(w.join("dir/notes.md")).unwrap();
    fs::remove_dir(w.join("dir")).unwrap();

    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let got = ops(&text);
    let want = [
        ("unlock", "/"),
        ("create", "/1-working/notes.md"),
        ("write", "/1-working/notes.md"),
        ("open", "/1-working/notes.md"),
        ("read", "/1-working/notes.md"),
        ("mkdir", "/1-working/dir"),
        ("rename", "/1-working/notes.md"),
        ("setattr", "/1-working/dir/notes.md"),
        ("symlink", "/1-working/dir/link"),
        ("link", "/1-working/hard"),
        ("unlink", "/1-working/hard"),
        ("unlink", "/1-working/dir/link"),
        ("unlink", "/1-working/dir/notes.md"),
        ("rmdir", "/1-working/dir"),
    ];
    // In this order, possibly with other records (the kernel's own opens) between.
    let mut at = 0;
    for (op, path) in want {
        match got[at..].iter().position(|(o, p)| o == op && p == path) {
            Some(i) => at += i + 1,
            None => panic!("no {op} {path} after record {at} in:\n{text}"),
        }
    }
    assert!(text.lines().last().unwrap().starts_with("{\"checkpoint\":\"vaultfs/"), "{text}");
    // Reading .audit is one record per open (each snapshot includes its own
    // open), not per read: the second open, read in many chunks, adds one.
    let mut again = Vec::new();
    let mut f = fs::File::open(m.path(".audit")).unwrap();
    let mut chunk = [0u8; 100];
    loop {
        let n = std::io::Read::read(&mut f, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        again.extend_from_slice(&chunk[..n]);
    }
    let again = String::from_utf8(again).unwrap();
    assert_eq!(ops(&text).iter().filter(|(o, _)| o == "audit_read").count(), 1);
    assert_eq!(ops(&again).iter().filter(|(o, _)| o == "audit_read").count(), 2);

    let key = pubkey(&m);
    let copy = m.dir.path().join("audit.copy");
    sh(&format!("cp {} {}", m.path(".audit").display(), copy.display()), m.dir.path());
    let (code, out) = verify_copy(&copy, &key);
    assert_eq!(code, 0, "{out}");
    // Real tools: fstat's size is the bytes read; tail -c seeks from it.
    let py = format!(
        "import os; f = open('{}', 'rb'); n = os.fstat(f.fileno()).st_size; d = f.read(); print(n, len(d))",
        m.path(".audit").display()
    );
    let sizes = sh(&format!("python3 -c \"{py}\""), m.dir.path());
    let (stat, read) = sizes.trim().split_once(' ').unwrap();
    assert_eq!(stat, read, "fstat size and bytes read differ");
    let ops_by_jq = sh(&format!("jq -r 'select(.op) | .op' {}", m.path(".audit").display()), m.dir.path());
    assert!(ops_by_jq.lines().any(|l| l == "rename"), "{ops_by_jq}");
    let note = sh(&format!("tail -n 1 {} | jq -r .checkpoint", m.path(".audit").display()), m.dir.path());
    assert!(note.starts_with("vaultfs/"), "{note}");
    let last = sh(&format!("tail -c 200 {}", m.path(".audit").display()), m.dir.path());
    assert!(last.ends_with("\"}\n"), "{last}");
}

/// Each record names the process as it was at that access: a shell opens
/// the file for a redirection, then becomes `cat` (same pid) and reads it.
#[test]
fn records_name_the_process_at_each_access() {
    let m = Mount::new();
    let w = m.path("1-working");
    fs::write(w.join("pid.md"), b"same pid, two names").unwrap();
    let out = sh(&format!("sh -c 'echo $$; exec cat < {}'", w.join("pid.md").display()), m.dir.path());
    let (pid, content) = out.split_once('\n').unwrap();
    let pid: u64 = pid.parse().unwrap();
    assert_eq!(content, "same pid, two names");
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let json: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["op"].is_string())
        .collect();
    let by_pid = |op: &str| -> Vec<&str> {
        json.iter()
            .filter(|v| v["op"] == op && v["path"] == "/1-working/pid.md" && v["pid"] == pid)
            .map(|v| v["comm"].as_str().unwrap())
            .collect()
    };
    assert_eq!(by_pid("open"), ["sh"], "{text}");
    assert_eq!(by_pid("read"), ["cat"], "{text}");
}

#[test]
fn audit_file_is_read_only() {
    let m = Mount::new();
    let a = m.path(".audit");
    let meta = fs::metadata(&a).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
    assert!(meta.is_file());
    let listed: Vec<String> =
        fs::read_dir(m.path("")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(listed.contains(&".audit".to_string()), "{listed:?}");
    let refused = |r: std::io::Result<()>| {
        let e = r.expect_err("must be refused");
        assert!(matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)), "{e}");
    };
    refused(fs::write(&a, b"forged").map(drop));
    refused(fs::OpenOptions::new().append(true).open(&a).map(drop));
    let truncate = Command::new("truncate").args(["-s", "0"]).arg(&a).output().unwrap();
    assert!(!truncate.status.success());
    refused(fs::remove_file(&a));
    refused(fs::rename(&a, m.path("1-working/x")));
    refused(fs::set_permissions(&a, fs::Permissions::from_mode(0o644)));
    refused(fs::hard_link(&a, m.path("1-working/y")));
    // Still intact and verifiable.
    let copy = m.dir.path().join("copy");
    fs::copy(&a, &copy).unwrap();
    assert_eq!(verify_copy(&copy, &pubkey(&m)).0, 0);
}

#[test]
fn refusals_are_recorded_with_their_errno() {
    let m = Mount::new();
    // vaultfs refuses these itself (the kernel's own mode-bit checks happen
    // before a request reaches the daemon; AUDIT.md says what that hides).
    assert!(fs::create_dir(m.path("not-a-level")).is_err());
    assert!(fs::write(m.path(".audit"), b"x").is_err());
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let rec = |op: &str, path: &str| {
        text.lines().any(|l| {
            l.contains(&format!("\"op\":\"{op}\""))
                && l.contains(&format!("\"path\":\"{path}\""))
                && l.contains("\"result\":1,")
                || l.contains(&format!("\"op\":\"{op}\""))
                    && l.contains(&format!("\"path\":\"{path}\""))
                    && l.ends_with("\"result\":1}")
        })
    };
    assert!(rec("mkdir", "/not-a-level"), "no EPERM mkdir record in:\n{text}");
    assert!(rec("audit_read", "/.audit"), "no EPERM record of the write-open of .audit in:\n{text}");
}

#[test]
fn tampered_copies_are_named() {
    let m = Mount::new();
    for i in 0..5 {
        fs::write(m.path(&format!("1-working/f{i}")), b"x").unwrap();
    }
    let key = pubkey(&m);
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let dir = m.dir.path();
    let check = |name: &str, body: String, expect: &str| {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        let (code, out) = verify_copy(&p, &key);
        assert_ne!(code, 0, "{name} verified:\n{out}");
        assert!(out.contains(expect), "{name}: expected {expect:?} in {out:?}");
    };
    let join = |ls: Vec<&str>| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    // One byte of a leaf's encoding (its base64 payload).
    let mut flipped = lines.clone();
    let l2 = lines[2].replacen("\"leaf\":\"AQ", "\"leaf\":\"AR", 1);
    flipped[2] = &l2;
    check("flipped", join(flipped), "leaf 2");
    // A leaf deleted.
    let mut deleted = lines.clone();
    deleted.remove(3);
    check("deleted", join(deleted), "leaf 3");
    // Two leaves swapped.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    check("swapped", join(swapped), "leaf 1");
    // Truncated: the last leaves and the checkpoint gone.
    check("truncated", join(lines[..n - 3].to_vec()), "checkpoint");
    // A forged leaf appended before the checkpoint.
    let mut forged = lines.clone();
    forged.insert(n - 1, lines[1]);
    check("forged", join(forged), "leaf");
    // Checkpoint replaced by one from another vault.
    let other = Mount::new();
    let other_text = fs::read_to_string(other.path(".audit")).unwrap();
    let mut replaced = lines.clone();
    replaced[n - 1] = other_text.lines().last().unwrap();
    check("replaced", join(replaced), "checkpoint");
    // Garbage, an empty file, and the wrong key: clear errors, no panic.
    check("garbage", "\u{0}\u{1}not json at all\n".into(), "not");
    check("empty", String::new(), "");
    let p = dir.join("good");
    fs::write(&p, &text).unwrap();
    let (code, out) = verify_copy(&p, &pubkey(&other));
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("checkpoint"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn store_verification_catches_rollback() {
    let mut m = Mount::new();
    fs::write(m.path("1-working/a"), b"a").unwrap();
    m.unmount();
    let store = m.store.to_str().unwrap().to_string();
    let pass = m.passfile.to_str().unwrap().to_string();
    let old = m.dir.path().join("old-store");
    sh(&format!("cp -a {store} {}", old.display()), m.dir.path());
    m.mount();
    // A clean unmount is the first session's last record; this session opens
    // with the unlock.
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let unmount = ops(&text).iter().position(|(op, _)| op == "unmount").expect("an unmount record");
    assert_eq!(ops(&text)[unmount + 1].0, "unlock", "{text}");
    fs::write(m.path("1-working/b"), b"b").unwrap();
    m.unmount();
    // A checkpoint saved by the owner (a witness) after the second session.
    let out = vaultfs(&["audit", "checkpoint", &store, "--passphrase-file", &pass]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let note = m.dir.path().join("witness.note");
    fs::write(&note, &out.stdout).unwrap();
    let ok =
        vaultfs(&["audit", "verify", &store, "--passphrase-file", &pass, "--since", note.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // The store rolled back to the older copy: whole, self-consistent, and caught.
    sh(&format!("rm -rf {store} && cp -a {} {store}", old.display()), m.dir.path());
    let bad =
        vaultfs(&["audit", "verify", &store, "--passphrase-file", &pass, "--since", note.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("rolled back"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Every open is recorded. At levels 3-5 the kernel drops a file's page
/// cache at each open, so every open's reads reach the daemon and are
/// recorded; below, a second open of an unchanged file is served from the
/// page cache: its open is recorded, its reads are not (AUDIT.md).
#[test]
fn reads_are_recorded_per_open_from_level_three() {
    let m = Mount::new();
    // One process: drop the file's cached pages, then open and read it twice.
    let reader = |f: &str| {
        let path = m.path(f);
        fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
        let code = format!(
            "import os; p = \"{}\"; print(os.getpid(), flush=True)\n\
             fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)\n\
             for _ in range(2):\n    open(p, \"rb\").read()",
            path.display()
        );
        let child =
            Command::new("python3").args(["-c", &code]).stdout(std::process::Stdio::piped()).spawn().unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    };
    let working = reader("1-working/w.bin").join().unwrap();
    // Level 3 asks for an approval; one covers the process's later opens.
    let sealed = reader("3-sealed/s.bin");
    wait_pending(&m);
    let pending = ok(&m.run(&["pending", mnt(&m)]));
    ok(&m.run(&["approve", mnt(&m), pending.split_whitespace().next().unwrap()]));
    let sealed = sealed.join().unwrap();
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let json: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The ops of `pid` on `f`, from its last open on.
    let after_last_open = |f: &str, out: &std::process::Output| -> Vec<String> {
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
        let pid: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let ops: Vec<String> = json
            .iter()
            .filter(|v| v["path"] == format!("/{f}") && v["pid"] == pid)
            .map(|v| v["op"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ops.iter().filter(|o| *o == "open").count(), 3, "{f}: {text}");
        assert!(ops.iter().any(|o| o == "read"), "{f}: {text}");
        ops[ops.iter().rposition(|o| o == "open").unwrap()..].to_vec()
    };
    let last = after_last_open("3-sealed/s.bin", &sealed);
    assert!(last.iter().any(|o| o == "read"), "level 3: every open's reads are recorded: {text}");
    let last = after_last_open("1-working/w.bin", &working);
    assert_eq!(last, ["open"], "level 1: the second open is served from the page cache: {text}");
}

/// `truncate -s 3` is a `setattr` record with the new size in `len` and
/// `offset` 0, as AUDIT.md's encoding and its test vector say.
#[test]
fn a_truncate_records_its_new_size_in_len() {
    let m = Mount::new();
    let f = m.path("1-working/t.txt");
    fs::write(&f, b"0123456789").unwrap();
    let out = Command::new("truncate").args(["-s", "3"]).arg(&f).output().unwrap();
    assert!(out.status.success());
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    let rec: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["op"] == "setattr" && v["comm"] == "truncate")
        .unwrap_or_else(|| panic!("no setattr by truncate: {text}"));
    assert_eq!((rec["offset"].as_u64(), rec["len"].as_u64()), (Some(0), Some(3)), "{rec}");
}

/// `audit tail -n N --follow` starts with exactly the N newest records (its
/// own reads of `.audit` are not echoed), then prints new ones as they come.
#[test]
fn tail_follow_starts_with_exactly_n_records() {
    let m = Mount::new();
    for i in 0..5 {
        fs::write(m.path(&format!("1-working/f{i}")), b"x").unwrap();
    }
    let mut child = Command::new(common::bin())
        .args(["audit", "tail", m.mnt.to_str().unwrap(), "-n", "3", "--json", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fs::write(m.path("1-working/late"), b"y").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let got: Vec<(String, String)> = ops(&text);
    assert_eq!(
        got,
        [
            ("write".to_string(), "/1-working/f3".to_string()),
            ("create".to_string(), "/1-working/f4".to_string()),
            ("write".to_string(), "/1-working/f4".to_string()),
            ("create".to_string(), "/1-working/late".to_string()),
            ("write".to_string(), "/1-working/late".to_string()),
        ],
        "{text}"
    );
}

/// A log of thousands of records: `.audit` is rendered as it is read, a
/// group of records at a time, so reads at any offset through one handle
/// agree with reading it whole, and the copy verifies.
#[test]
fn a_long_log_reads_the_same_in_pieces_at_any_offset() {
    let m = Mount::new();
    let w = m.path("1-working");
    for i in 0..1500 {
        fs::write(w.join(format!("f{i}")), format!("note {i}")).unwrap();
    }
    // One handle: its snapshot read whole, then pieces of it at offsets
    // across the text (group boundaries fall every 256 lines).
    let py = format!(
        r#"
import os, random
f = os.open('{audit}', os.O_RDONLY)
size = os.fstat(f).st_size
whole = b''
while True:
    b = os.read(f, 65536)
    if not b: break
    whole += b
assert len(whole) == size, (len(whole), size)
rnd = random.Random(7)
for _ in range(300):
    at = rnd.randrange(0, size + 10)
    n = rnd.choice([1, 17, 4096, 70000, 300000])
    got = os.pread(f, n, at)
    assert got == whole[at:at + n], (at, n, len(got))
open('{copy}', 'wb').write(whole)
print(whole.count(b'\n'))
"#,
        audit = m.path(".audit").display(),
        copy = m.dir.path().join("audit.copy").display()
    );
    let lines: u64 =
        sh(&format!("python3 -c \"{}\"", py.replace('"', "\\\"")), m.dir.path()).trim().parse().unwrap();
    assert!(lines > 3000, "{lines} lines");
    let (code, out) = verify_copy(&m.dir.path().join("audit.copy"), &pubkey(&m));
    assert_eq!(code, 0, "{out}");
}
