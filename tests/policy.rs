//! The policy file on real mounts (docs/POLICY.md): approval timeout and
//! cooldown, relock after idle, per-uid open rate limits, the ephemeral
//! purge, lockdown from the policy, and live reloads that can only tighten.
//! Each leaves its audit records.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::control::*;
use common::{Mount, wait_for};

/// A vault mounted with `policy` as its STORE/policy.toml.
fn mounted_with(policy: &str) -> Mount {
    let mut m = Mount::new();
    m.unmount();
    fs::write(m.store.join("policy.toml"), policy).unwrap();
    m.mount();
    m
}

/// Writes a new policy text the way an editor does (write, then rename over).
fn edit_policy(m: &Mount, text: &str) {
    let tmp = m.store.join(".policy.toml.tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, m.store.join("policy.toml")).unwrap();
}

/// The `policy` records so far: (result, path field).
fn policy_records(m: &Mount) -> Vec<(i64, String)> {
    audit_ops(m).into_iter().filter(|(op, ..)| op == "policy").map(|(_, _, r, p)| (r, p)).collect()
}

fn wait_policy_records(m: &Mount, n: usize) -> Vec<(i64, String)> {
    let mut recs = Vec::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            recs = policy_records(m);
            recs.len() >= n
        }),
        "expected {n} policy records, have {recs:?}"
    );
    recs
}

fn relock_after(m: &Mount, level: usize) -> Option<u64> {
    status(m)["levels"][level]["relock_after_seconds"].as_u64()
}

#[test]
fn approval_times_out_and_cooldown_refuses_at_once() {
    let m =
        mounted_with("[levels.3]\napproval_timeout = \"1s\"\napproval_window = \"0s\"\ncooldown = \"1h\"\n");
    fs::write(m.path("3-sealed/plan.md"), "sealed").unwrap();

    // Nobody answers: EACCES after the timeout, and the mount kept serving.
    let t0 = Instant::now();
    let reader = open_in_thread(m.path("3-sealed/plan.md"));
    wait_pending(&m);
    fs::write(m.path("1-working/meanwhile"), "served").unwrap();
    assert_eq!(errno(reader.join().unwrap()), libc::EACCES);
    assert!(t0.elapsed() >= Duration::from_secs(1), "gave up before the timeout");
    assert_eq!(status(&m)["pending"], 0);

    // An approved open; then the level cools down for an hour: the next
    // open is refused at once, without waiting for a human.
    let reader = open_in_thread(m.path("3-sealed/plan.md"));
    wait_pending(&m);
    ok(&vaultfs(&m, &["approve", mnt(&m)]));
    assert_eq!(reader.join().unwrap().unwrap(), "sealed");
    let t1 = Instant::now();
    assert_eq!(errno(fs::read_to_string(m.path("3-sealed/plan.md"))), libc::EACCES);
    assert!(t1.elapsed() < Duration::from_secs(1), "a cooling-down open should not wait");
    assert_eq!(status(&m)["pending"], 0);

    let opens: Vec<i64> = audit_ops(&m)
        .into_iter()
        .filter(|(op, _, _, p)| op == "open" && p == "/3-sealed/plan.md")
        .map(|(_, _, r, _)| r)
        .collect();
    assert_eq!(opens, vec![13, 0, 13], "timeout, approved, cooldown");
    assert!(audit_ops(&m).iter().any(|(op, l, r, _)| op == "approve" && *l == Some(3) && *r == 0));
}

/// From the approver's side: `pending --json` lists what waits, and
/// `approve` without an id is refused while two opens wait (it could
/// release the wrong one), names them, and works once one is left.
#[test]
fn approve_without_an_id_needs_exactly_one_waiting_open() {
    let m =
        mounted_with("[levels.3]\napproval_timeout = \"30s\"\napproval_window = \"0s\"\ncooldown = \"0s\"\n");
    fs::write(m.path("3-sealed/a.md"), "first").unwrap();
    fs::write(m.path("3-sealed/b.md"), "second").unwrap();
    let none = vaultfs(&m, &["approve", mnt(&m)]);
    assert_eq!(none.status.code(), Some(1), "nothing waits");
    let a = open_in_thread(m.path("3-sealed/a.md"));
    let b = open_in_thread(m.path("3-sealed/b.md"));
    let mut list = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            list = serde_json::from_str(&ok(&vaultfs(&m, &["pending", mnt(&m), "--json"]))).unwrap();
            list.as_array().is_some_and(|l| l.len() == 2)
        }),
        "two opens wait: {list}"
    );
    let entry = |path: &str| list.as_array().unwrap().iter().find(|p| p["path"] == path).unwrap().clone();
    let (ea, eb) = (entry("/3-sealed/a.md"), entry("/3-sealed/b.md"));
    for e in [&ea, &eb] {
        assert_eq!(e["level"], 3);
        assert!(e["pid"].as_u64().is_some() && e["comm"].is_string() && e["waited_ms"].is_u64(), "{e}");
    }
    let two = vaultfs(&m, &["approve", mnt(&m)]);
    let err = String::from_utf8_lossy(&two.stderr).to_string();
    assert_eq!(two.status.code(), Some(2), "{err}");
    assert!(err.contains("2 opens are waiting") && err.contains("/3-sealed/b.md"), "{err}");
    let id_b = eb["id"].as_u64().unwrap().to_string();
    ok(&vaultfs(&m, &["approve", mnt(&m), &id_b]));
    assert_eq!(b.join().unwrap().unwrap(), "second");
    ok(&vaultfs(&m, &["approve", mnt(&m)]));
    assert_eq!(a.join().unwrap().unwrap(), "first");
}

#[test]
fn idle_level_relocks_and_its_key_is_gone() {
    let m = mounted_with("[levels.3]\nrelock_after = \"2s\"\n[levels.2]\nrelock_after = \"1h\"\n");
    assert_eq!(relock_after(&m, 3), Some(2));
    assert_eq!(level_state(&m, 3), "open");
    fs::create_dir(m.path("3-sealed/notes")).unwrap();
    assert!(wait_for(Duration::from_secs(15), || level_state(&m, 3) == "locked"), "level 3 never relocked");
    assert_eq!(level_state(&m, 2), "open", "level 2 relocks after an hour, not now");
    assert_eq!(errno(fs::read_dir(m.path("3-sealed"))), libc::EACCES);
    let lock = audit_ops(&m).into_iter().find(|(op, l, ..)| op == "lock" && *l == Some(3));
    assert!(lock.is_some_and(|(_, _, r, _)| r == 0), "relock recorded");

    // The passphrase opens it again.
    ok(&vaultfs(&m, &["unlock", mnt(&m), "3", "--passphrase-file", pass(&m)]));
    assert!(fs::metadata(m.path("3-sealed/notes")).unwrap().is_dir());
}

#[test]
fn rate_limit_per_uid_refuses_opens_over_budget() {
    let m = mounted_with("[rate_limit]\nopens_per_minute = 5\n");
    fs::write(m.path("1-working/a.md"), "a").unwrap(); // creat: one open
    for _ in 0..4 {
        assert_eq!(fs::read_to_string(m.path("1-working/a.md")).unwrap(), "a");
    }
    let e = fs::read_to_string(m.path("1-working/a.md")).expect_err("sixth open in a minute");
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}");
    // Metadata is not rate-limited.
    assert!(fs::metadata(m.path("1-working/a.md")).is_ok());
    let refused_opens = audit_ops(&m)
        .into_iter()
        .filter(|(op, _, r, p)| op == "open" && *r == i64::from(libc::EAGAIN) && p == "/1-working/a.md")
        .count();
    assert_eq!(refused_opens, 1);
}

#[test]
fn old_ephemeral_files_are_purged() {
    let m = mounted_with("ephemeral_max_age = \"3s\"\n");
    fs::create_dir(m.path("0-ephemeral/scratch")).unwrap();
    fs::write(m.path("0-ephemeral/scratch/old.txt"), "old").unwrap();
    fs::write(m.path("1-working/kept.md"), "kept").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || !m.path("0-ephemeral/scratch/old.txt").exists()),
        "old ephemeral file never purged"
    );
    // A file written now is young: it stays (the check follows at once).
    fs::write(m.path("0-ephemeral/fresh.txt"), "fresh").unwrap();
    assert_eq!(fs::read_to_string(m.path("0-ephemeral/fresh.txt")).unwrap(), "fresh");
    assert_eq!(fs::read_to_string(m.path("1-working/kept.md")).unwrap(), "kept");
    assert!(
        audit_ops(&m).iter().any(|(op, l, r, p)| op == "purge"
            && *l == Some(0)
            && *r == 0
            && p == "/0-ephemeral/scratch/old.txt"),
        "purge recorded"
    );
}

#[test]
fn reload_tightens_refuses_looser_and_garbage_keeping_the_last_good() {
    let m = mounted_with("[levels.3]\nrelock_after = \"30m\"\n");
    assert_eq!(relock_after(&m, 3), Some(1800));
    assert_eq!(policy_records(&m).len(), 1, "the policy read at mount is recorded");

    edit_policy(&m, "[levels.3]\nrelock_after = \"20m\"\n");
    let recs = wait_policy_records(&m, 2);
    assert_eq!(recs[1].0, 0, "tightening applied: {recs:?}");
    assert_eq!(relock_after(&m, 3), Some(1200));

    edit_policy(&m, "[levels.3]\nrelock_after = \"25m\"\n");
    let recs = wait_policy_records(&m, 3);
    assert_eq!(recs[2].0, i64::from(libc::EPERM), "{recs:?}");
    assert!(recs[2].1.contains("levels.3.relock_after: 20m -> 25m"), "{}", recs[2].1);
    assert_eq!(relock_after(&m, 3), Some(1200), "the last good policy stays");

    edit_policy(&m, "[levels.3]\nrelock_after = \"5x\"\n");
    let recs = wait_policy_records(&m, 4);
    assert_eq!(recs[3].0, i64::from(libc::EINVAL), "{recs:?}");
    assert!(recs[3].1.contains("line 2"), "{}", recs[3].1);
    assert_eq!(relock_after(&m, 3), Some(1200));
    // `vaultfs status` says the last edit was refused, and why.
    let st = status(&m);
    assert!(st["policy_refused"]["reason"].as_str().unwrap().contains("line 2"), "{st}");
    assert!(st["policy_refused"]["time_ns"].as_u64().unwrap() > 0);
    let text = ok(&vaultfs(&m, &["status", mnt(&m)]));
    assert!(text.contains("REFUSED") && text.contains("line 2"), "{text}");
    // An acceptable edit clears it.
    edit_policy(&m, "[levels.3]\nrelock_after = \"15m\"\n");
    let recs = wait_policy_records(&m, 5);
    assert_eq!(recs[4].0, 0, "{recs:?}");
    assert!(status(&m).get("policy_refused").is_none(), "cleared by an accepted edit");

    // The daemon log says the same.
    let log = m.log();
    assert!(log.contains("refused"), "{log}");
}

#[test]
fn lockdown_from_the_policy_holds_until_the_file_and_the_admin_agree() {
    let m = mounted_with("");
    fs::write(m.path("2-private/diary.md"), "dear diary").unwrap();
    edit_policy(&m, "lockdown = true\n");
    assert!(
        wait_for(Duration::from_secs(10), || status(&m)["lockdown"].as_bool() == Some(true)),
        "policy lockdown never applied"
    );
    assert_eq!(errno(fs::read_to_string(m.path("2-private/diary.md"))), libc::EACCES);

    // The file still says lockdown: exit is refused until it is edited.
    let exit = ["lockdown", mnt(&m), "--exit", "--passphrase-file", pass(&m)];
    let msg = refused(&vaultfs(&m, &exit), 7);
    assert!(msg.contains("policy file says lockdown = true"), "{msg}");
    // Lifting it in the file alone is a loosening: refused, recorded.
    edit_policy(&m, "lockdown = false\n");
    let recs = wait_policy_records(&m, 3);
    assert_eq!(recs[2].0, i64::from(libc::EPERM), "{recs:?}");
    assert!(status(&m)["lockdown"].as_bool().unwrap());
    ok(&vaultfs(&m, &exit));
    assert!(!status(&m)["lockdown"].as_bool().unwrap());
    assert_eq!(fs::read_to_string(m.path("2-private/diary.md")).unwrap(), "dear diary");
}

/// `approval_notify` runs when an open starts waiting, with the request in
/// its environment, so the approver can act on the id it was given; from a
/// policy file other users could write, the command is refused.
#[test]
fn approval_notify_tells_of_a_waiting_open_and_needs_a_trusted_file() {
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("heard");
    let script = format!(
        "echo \"$VAULTFS_REQUEST_ID $VAULTFS_LEVEL $VAULTFS_PATH $VAULTFS_UID\" > {}.tmp && mv {0}.tmp {0}",
        heard.display()
    );
    let policy = format!(
        "approval_notify = [\"/bin/sh\", \"-c\", {script:?}]\n[levels.3]\napproval_timeout = \"30s\"\n"
    );
    let mut m = mounted_with(&policy);
    fs::write(m.path("3-sealed/n.md"), "noted").unwrap();
    let opener = open_in_thread(m.path("3-sealed/n.md"));
    assert!(wait_for(Duration::from_secs(10), || heard.exists()), "the command did not run");
    let said = fs::read_to_string(&heard).unwrap();
    let fields: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(&fields[1..], ["3", "/3-sealed/n.md", "0"], "{said}");
    ok(&vaultfs(&m, &["approve", mnt(&m), fields[0]]));
    assert_eq!(opener.join().unwrap().unwrap(), "noted");

    // The same file, writable by everyone: the mount is refused, saying why.
    m.unmount();
    let file = m.store.join("policy.toml");
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let msg = refused(&m.run(&["mount", store(&m), mnt(&m), "--passphrase-file", pass(&m)]), 2);
    assert!(msg.contains("approval_notify refused") && msg.contains("writable by group or others"), "{msg}");
}

#[test]
fn a_bad_policy_refuses_the_mount_with_its_reason() {
    let mut m = Mount::new();
    m.unmount();
    fs::write(m.store.join("policy.toml"), "[levels.4]\ncooldown = \"1s\"\n").unwrap();
    let out = m.run(&["mount", store(&m), mnt(&m), "--passphrase-file", pass(&m)]);
    let msg = refused(&out, 2);
    assert!(msg.contains("levels.4.cooldown") && msg.contains("floor"), "{msg}");
    fs::write(m.store.join("policy.toml"), "[levels.3\n").unwrap();
    let msg = refused(&m.run(&["mount", store(&m), mnt(&m), "--passphrase-file", pass(&m)]), 2);
    assert!(msg.contains("line 1"), "{msg}");
    assert!(!common::is_mounted(&m.mnt));
}

/// `status` names the policy file only while there is one.
#[test]
fn status_shows_the_policy_file_only_when_it_exists() {
    let m = Mount::new();
    assert!(status(&m)["policy_file"].is_null(), "{}", status(&m));
    let text = String::from_utf8_lossy(&m.run(&["status", mnt(&m)]).stdout).to_string();
    assert!(text.contains("policy: none"), "{text}");
    edit_policy(&m, "[levels.3]\napproval_timeout = \"30s\"\n");
    assert!(
        wait_for(Duration::from_secs(10), || status(&m)["policy_file"]
            .as_str()
            .is_some_and(|p| p.ends_with("policy.toml"))),
        "{}",
        status(&m)
    );
}

/// A justification (`user.vault.justification` on the level directory)
/// is shown to the approver, carried by the open's audit record, and
/// required where the policy says so.
#[test]
fn justifications_reach_the_approver_and_the_audit_record() {
    let m = mounted_with("[levels.3]\nrequire_justification = true\n");
    fs::write(m.path("3-sealed/contract.md"), "terms").unwrap();
    // No justification: refused at once, recorded.
    assert_eq!(errno(fs::read(m.path("3-sealed/contract.md"))), libc::EACCES);

    let why = "summarize the contract for ticket 42";
    common::sh(&format!("setfattr -n user.vault.justification -v '{why}' 3-sealed"), &m.mnt);
    let reader = open_in_thread(m.path("3-sealed/contract.md"));
    wait_pending(&m);
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&vaultfs(&m, &["pending", mnt(&m), "--json"]))).unwrap();
    assert_eq!(listing[0]["justification"], why, "{listing}");
    let text = ok(&vaultfs(&m, &["pending", mnt(&m)]));
    assert!(text.contains(&format!("why: {why}")), "{text}");
    ok(&vaultfs(&m, &["approve", mnt(&m)]));
    assert_eq!(reader.join().unwrap().unwrap(), "terms");

    let audit = fs::read_to_string(m.path(".audit")).unwrap();
    let opens: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "open" && v["path"] == "/3-sealed/contract.md")
        .collect();
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert_eq!((opens[0]["result"].as_i64(), opens[0].get("note")), (Some(13), None));
    assert_eq!((opens[1]["result"].as_i64(), opens[1]["note"].as_str()), (Some(0), Some(why)));
    // A version-2 leaf: the note is in the hashed bytes, and the copy verifies.
    let copy = m.dir.path().join("audit.copy");
    fs::write(&copy, &audit).unwrap();
    let key = ok(&vaultfs(&m, &["audit", "pubkey", store(&m)]));
    ok(&vaultfs(&m, &["audit", "verify", "--file", copy.to_str().unwrap(), "--pubkey", key.trim()]));
}

/// `[secrets] scan`: a credential written to 1-working is recorded (op
/// `secret`, the rule as its note) and shown by `status`, and the file is
/// written unchanged; 2-private is not scanned; a pattern that does not
/// compile is refused like any malformed policy.
#[test]
fn secrets_written_to_low_levels_are_recorded_not_altered() {
    let m = mounted_with("[secrets]\nscan = true\npatterns = [\"corp-[0-9a-f]{8}\"]\n");
    let text = "notes\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\nticket corp-deadbeef\n";
    fs::write(m.path("1-working/notes.md"), text).unwrap();
    fs::write(m.path("2-private/keys.md"), text).unwrap();
    fs::write(m.path("1-working/plain.md"), "nothing to see").unwrap();
    assert_eq!(fs::read_to_string(m.path("1-working/notes.md")).unwrap(), text);

    let audit = fs::read_to_string(m.path(".audit")).unwrap();
    let found: Vec<(String, String)> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "secret")
        .map(|v| (v["path"].as_str().unwrap().to_string(), v["note"].as_str().unwrap().to_string()))
        .collect();
    let want = [("/1-working/notes.md", "aws_access_key_id"), ("/1-working/notes.md", "policy.1")];
    assert_eq!(found, want.map(|(p, r)| (p.to_string(), r.to_string())));
    let st = status(&m);
    assert_eq!(st["secrets_found"], 2, "{st}");
    assert_eq!(st["last_secret"]["path"], "/1-working/notes.md", "{st}");
    let shown = ok(&vaultfs(&m, &["status", mnt(&m)]));
    assert!(shown.contains("secrets written to levels 0-1 since mount: 2"), "{shown}");

    edit_policy(&m, "[secrets]\nscan = true\npatterns = [\"(unclosed\"]\n");
    let recs = wait_policy_records(&m, 2);
    let (result, why) = recs.last().unwrap();
    assert_eq!(*result, 22, "{recs:?}");
    assert!(why.contains("secrets.patterns") && why.contains("does not compile"), "{why}");
    fs::write(m.path("1-working/later.md"), "AKIAIOSFODNN7EXAMPLE").unwrap();
    assert_eq!(status(&m)["secrets_found"], 3, "the policy in force still scans");
}
