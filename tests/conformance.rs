//! The standard conformance tools against real mounts (docs/SEMANTICS.md,
//! "Conformance"):
//!
//! - pjdfstest 0.2.2, the POSIX file system test suite, run as root in
//!   `1-working` of a mount with `-o allow_other`: it switches to the users
//!   nobody and tests, whose requests the kernel checks
//!   (`default_permissions`) and the daemon again (src/vault/access.rs).
//! - fsx 0.3.2, which applies random reads, writes, mmap, truncates, holes,
//!   fallocate and copy_file_range to one file and checks every byte it
//!   reads back against its own copy.
//!
//! - stress-ng 0.15 (Debian's), thirty-two of its file system stressors at
//!   once with `--verify`, then `vaultfs fsck` of the store: clean, with the
//!   audit log verified.
//! - fio (Debian's) writing with checksums and reading them back: psync and
//!   O_DIRECT libaio, block sizes from 512 bytes to 256 KiB, verifying
//!   while writing and across fsyncs.
//!
//! pjdfstest, fsx and stress-ng run on a cluster vault's holder too (etcd
//! and SeaweedFS on loopback, tests/common/cluster.rs).
//!
//! tests/conformance/install-tools.sh installs the first two (.ci/test runs it before
//! `cargo test`; the first test here runs it too, so a fresh checkout works).
//! `VAULTFS_FSX_OPS=N` and `VAULTFS_FSX_SEEDS=1,2,...` lengthen the fsx runs.

mod common;
#[path = "common/cluster.rs"]
mod servers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use common::{Mount, PASSPHRASE};
use servers::{Etcd, ObjectStore};

/// pjdfstest cases skipped in the main run besides the EROFS ones (which get
/// a run of their own), each with pjdfstest's reason.
const EXPECTED_SKIPS: &[(&str, &str)] =
    &[("link::link_count_max", "LINK_MAX is unknown: pathconf(_PC_LINK_MAX) has no value for FUSE")];

/// The fsx seeds, unless the environment says otherwise.
const FSX_SEEDS: &[u64] = &[1];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance").join(name)
}

/// The tools' bin directory, under the target directory, installed once per run.
fn tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("conformance-tools");
        let out = Command::new("bash").arg(data("install-tools.sh")).arg(&root).output().unwrap();
        assert!(out.status.success(), "install-tools.sh failed:\n{}", text(&out));
        root.join("bin")
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `cmd` for at most `secs` seconds (then kills it).
fn bounded(secs: u32, cmd: &mut Command) -> Output {
    let mut t = Command::new("timeout");
    t.args(["--kill-after=10", &secs.to_string()]).arg(cmd.get_program()).args(cmd.get_args());
    t.env("NO_COLOR", "1").output().unwrap()
}

/// One pjdfstest run's cases by outcome ("ok", "skipped", "FAILED", ...).
struct Outcome {
    status: bool,
    output: String,
    cases: Vec<(String, String)>,
}

impl Outcome {
    fn names(&self, status: &str) -> BTreeSet<&str> {
        self.cases.iter().filter(|(_, s)| s == status).map(|(n, _)| n.as_str()).collect()
    }

    fn summary(&self) -> &str {
        self.output.lines().find(|l| l.starts_with("Summary:")).unwrap_or("(no summary line)")
    }

    fn problems(&self) -> String {
        // Failing cases with the lines pjdfstest printed under them.
        let mut out = String::new();
        let mut in_failure = false;
        for l in self.output.lines() {
            if !l.starts_with([' ', '\t']) {
                in_failure = l.ends_with("FAILED") || l.ends_with("PASSED UNEXPECTEDLY");
            }
            if in_failure && !l.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn pjdfstest(m: &Mount, config: &Path, patterns: &[&str]) -> Outcome {
    let start = Instant::now();
    let mut cmd = Command::new(tools().join("pjdfstest"));
    // The EXDEV cases need a "secondary file system": another level, where
    // renames and links from 1-working are EXDEV too.
    cmd.arg("-c").arg(config).arg("-p").arg(m.path("1-working")).arg("-s").arg(m.path("2-private"));
    cmd.args(patterns);
    let out = bounded(600, &mut cmd);
    let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let cases = output
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']) && l.contains("::"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            Some((name.to_string(), rest.trim().to_string()))
        })
        .collect();
    let o = Outcome { status: out.status.success(), output, cases };
    println!("pjdfstest {patterns:?}: {} ({:.1}s)", o.summary(), start.elapsed().as_secs_f64());
    o
}

/// pjdfstest's EROFS cases remount with mount(8), which runs
/// /sbin/mount.fuse.vaultfs when one is installed: install this build's
/// helper, as tests/tools.rs does, so an older one cannot be in the way.
fn install_mount_helper() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helpers/install.sh");
    let out = Command::new("bash").arg(script).env("VAULTFS_BIN", common::bin()).output().unwrap();
    assert!(out.status.success(), "mount-helpers/install.sh failed:\n{}", text(&out));
}

#[test]
fn pjdfstest_passes() {
    tools();
    install_mount_helper();
    let m = Mount::with_options(&["allow_other"]);
    let config = data("pjdfstest.toml");

    let all = pjdfstest(&m, &config, &[]);
    assert!(all.names("FAILED").is_empty() && all.status, "pjdfstest failed:\n{}", all.problems());
    assert!(all.names("ok").len() > 300, "pjdfstest ran too few cases:\n{}", all.output);
    let skipped = all.names("skipped");
    let erofs: BTreeSet<&str> = skipped.iter().copied().filter(|n| n.contains("erofs")).collect();
    let others: BTreeSet<&str> = skipped.difference(&erofs).copied().collect();
    let expected: BTreeSet<&str> = EXPECTED_SKIPS.iter().map(|(n, _)| *n).collect();
    assert_eq!(others, expected, "unexpected skips:\n{}", all.output);

    // The EROFS cases alone, with remounts allowed (pjdfstest.toml says why apart).
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nallow_remount = false\n"));
    let erofs_config = m.dir.path().join("pjdfstest-erofs.toml");
    std::fs::write(&erofs_config, text.replace("\nallow_remount = false\n", "\nallow_remount = true\n"))
        .unwrap();
    let ro = pjdfstest(&m, &erofs_config, &["erofs"]);
    assert!(ro.status, "pjdfstest's EROFS cases failed:\n{}", ro.problems());
    let passed = ro.names("ok");
    assert_eq!(passed, erofs, "EROFS cases:\n{}", ro.output);
}

/// pjdfstest as uid 65534 through `-o allow_other`, in a directory of its
/// own in `1-working`: what an unprivileged agent sharing a vault meets.
/// The cases that need root skip; every other one must pass.
#[test]
fn pjdfstest_passes_as_a_non_root_user() {
    tools();
    let m = Mount::with_options(&["allow_other"]);
    // The user reaches the mount point and the configuration through the test's directory.
    let dir = m.dir.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.join("pjdfstest.toml");
    std::fs::copy(data("pjdfstest.toml"), &config).unwrap();
    // The EXDEV cases' "secondary file system": another level the user may use.
    let (home, second) = (m.path("1-working/nobody"), m.path("0-ephemeral/nobody"));
    for d in [&home, &second] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let start = Instant::now();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(tools().join("pjdfstest"));
    cmd.arg("-c").arg(&config).arg("-p").arg(&home).arg("-s").arg(&second);
    cmd.current_dir("/");
    let out = bounded(600, &mut cmd);
    let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut reasons = BTreeSet::new();
    for l in output.lines() {
        if l.starts_with('\t') {
            if cases.last().is_some_and(|(_, s)| s == "skipped") {
                reasons.insert(l.trim().to_string());
            }
        } else if let Some((name, rest)) = l.split_once(' ').filter(|_| l.contains("::")) {
            cases.push((name.to_string(), rest.trim().to_string()));
        }
    }
    let o = Outcome { status: out.status.success(), output, cases };
    println!("pjdfstest as uid 65534: {} ({:.1}s)", o.summary(), start.elapsed().as_secs_f64());
    assert!(o.names("FAILED").is_empty() && o.status, "pjdfstest as uid 65534 failed:\n{}", o.problems());
    assert!(o.names("ok").len() > 200, "pjdfstest ran too few cases:\n{}", o.output);
    let allowed = [
        "requires root privileges",
        "process doesn't have the CAP_SYS_ADMIN cap to mount the dummy file system",
        "Remounts (allow_remount) are not allowed in the configuration file",
        "Cannot get value for LINK_MAX: filesystem limit is unknown",
    ];
    let unexpected: Vec<&String> = reasons.iter().filter(|r| !allowed.contains(&r.as_str())).collect();
    assert!(unexpected.is_empty(), "unexpected skip reasons {unexpected:?}:\n{}", o.output);
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn fsx_ops(default: u64) -> u64 {
    std::env::var("VAULTFS_FSX_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fsx_seeds() -> Vec<u64> {
    match std::env::var("VAULTFS_FSX_SEEDS") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().expect("VAULTFS_FSX_SEEDS: numbers")).collect(),
        Err(_) => FSX_SEEDS.to_vec(),
    }
}

/// Runs fsx with `config` on a new file in `1-working` for each seed,
/// `ops` operations each (unless VAULTFS_FSX_OPS says otherwise).
fn fsx(m: &Mount, config: &str, name: &str, ops: u64) {
    let artifacts = m.dir.path().join("fsx-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let ops = fsx_ops(ops);
    for seed in fsx_seeds() {
        let start = Instant::now();
        let file = m.path(&format!("1-working/{name}.{seed}"));
        let out = bounded(
            3600,
            Command::new(tools().join("fsx"))
                .arg("-f")
                .arg(data(config))
                .args(["-N", &ops.to_string(), "-S", &seed.to_string(), "-P"])
                .arg(&artifacts)
                .arg(&file),
        );
        let log = text(&out);
        let tail: Vec<&str> = log.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        assert!(
            out.status.success() && log.contains("All operations completed A-OK!"),
            "fsx -f {config} -N {ops} -S {seed} failed ({}); reproduce with that seed. Last lines:\n{}\n\
             The daemon's log, last lines:\n{}",
            out.status,
            tail.join("\n"),
            last_lines(&m.log(), 60)
        );
        println!("fsx {config} seed {seed}: {ops} operations A-OK ({:.1}s)", start.elapsed().as_secs_f64());
    }
}

#[test]
fn fsx_with_mmap_on_4k_blocks() {
    let m = Mount::new();
    fsx(&m, "fsx.toml", "fsx-mmap", 40_000);
}

#[test]
fn fsx_large_writes_on_64k_blocks() {
    let m = Mount::with_init(&["--block-size", "65536"], &[]);
    // Each operation moves up to 1 MiB: fewer of them.
    fsx(&m, "fsx-large.toml", "fsx-large", 10_000);
}

/// What `vaultfs fsck` says of a mount's store once it is unmounted; panics
/// unless the store is clean and its audit log verifies.
fn fsck_clean(m: &mut Mount) -> String {
    m.unmount();
    let out = m.run(&["fsck", m.store.to_str().unwrap(), "--passphrase-file", m.passfile.to_str().unwrap()]);
    let report = text(&out);
    assert!(
        out.status.success() && report.contains("status: clean") && report.contains("verified"),
        "fsck after the run:\n{report}"
    );
    report
}

/// The file system stressors that apply to a FUSE mount, run together.
const STRESSORS: &[&str] = &[
    "access",
    "chmod",
    "chown",
    "copy-file",
    "dentry",
    "dir",
    "dirdeep",
    "dirmany",
    "dup",
    "fallocate",
    "filename",
    "flock",
    "fpunch",
    "fsize",
    "fstat",
    "getdent",
    "hdd",
    "io",
    "iomix",
    "link",
    "lockf",
    "mknod",
    "open",
    "readahead",
    "rename",
    "seek",
    "symlink",
    "sync-file",
    "touch",
    "utime",
    "xattr",
    "fcntl",
];

#[test]
fn stress_ng_file_system_stressors_verify_and_leave_a_clean_store() {
    stress_ng_then_fsck(&mut Mount::new());
}

/// STRESSORS together for 15 s with `--verify` in `1-working/stress`, then
/// fsck: no failure, no error in the daemon's log, a clean store.
fn stress_ng_then_fsck(m: &mut Mount) {
    stress_ng(m);
    fsck_clean(m);
}

/// stress-ng's file system stressors on `m`, verified, with nothing
/// logged as an error by the daemon.
fn stress_ng(m: &Mount) {
    let dir = m.path("1-working/stress");
    std::fs::create_dir(&dir).unwrap();
    let mut cmd = Command::new("stress-ng");
    for s in STRESSORS {
        cmd.args([&format!("--{s}"), "1"]);
    }
    cmd.args(["--timeout", "15", "--verify", "--temp-path"]).arg(&dir);
    let start = Instant::now();
    let out = bounded(300, &mut cmd);
    let log = text(&out);
    let problems: Vec<&str> = log.lines().filter(|l| l.contains("fail") || l.contains("error")).collect();
    assert!(out.status.success() && problems.is_empty(), "stress-ng ({}):\n{log}", out.status);
    println!(
        "stress-ng: {} stressors, 15 s, verified ({:.1}s)",
        STRESSORS.len(),
        start.elapsed().as_secs_f64()
    );
    // A reply the kernel no longer waits for (ENOENT: its caller, killed
    // at stress-ng's timeout, took the request back) is fuser's to log,
    // not the daemon's fault.
    let gone = "Failed to send FUSE reply: No such file or directory";
    assert!(
        m.log().lines().all(|l| !l.contains("ERROR") || l.contains(gone)),
        "the daemon logged errors:\n{}",
        m.log()
    );
}

#[test]
fn fio_verifies_what_it_wrote() {
    let mut m = Mount::new();
    let dir = m.path("1-working/fio");
    std::fs::create_dir(&dir).unwrap();
    let jobs: &[&[&str]] = &[
        &[
            "--name=psync",
            "--size=48m",
            "--nrfiles=4",
            "--rw=randwrite",
            "--bs=4k,64k",
            "--ioengine=psync",
            "--numjobs=2",
            "--verify=crc32c",
        ],
        &[
            "--name=direct",
            "--size=32m",
            "--rw=randrw",
            "--bs=512-128k",
            "--ioengine=libaio",
            "--direct=1",
            "--iodepth=8",
            "--verify=md5",
        ],
        &[
            "--name=backlog",
            "--size=48m",
            "--rw=randwrite",
            "--bs=4k-256k",
            "--ioengine=psync",
            "--numjobs=3",
            "--verify=sha256",
            "--verify_backlog=64",
            "--fsync=16",
        ],
    ];
    for job in jobs {
        let mut cmd = Command::new("fio");
        cmd.arg("--directory").arg(&dir).args(*job).args([
            "--verify_fatal=1",
            "--do_verify=1",
            "--group_reporting",
        ]);
        let out = bounded(300, &mut cmd);
        let log = text(&out);
        assert!(out.status.success() && log.contains("err= 0"), "fio {}:\n{log}", job[0]);
    }
    fsck_clean(&mut m);
}

/// A cluster vault's holder mount: metadata in an etcd, blocks in a
/// SeaweedFS bucket, both on loopback and living as long as the mount.
struct ClusterMount {
    // Dropped first: unmounted while the servers are still there.
    m: Mount,
    _etcd: Etcd,
    _objects: ObjectStore,
}

fn cluster_mount(options: &[&str]) -> ClusterMount {
    let (etcd, objects) = (Etcd::start(), ObjectStore::start());
    objects.create_bucket("vault-data");
    let dir = tempfile::tempdir().unwrap();
    let address = format!("etcd://{}/conformance", etcd.endpoint());
    let (mnt, passfile) = (dir.path().join("mnt"), dir.path().join("pass"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(&passfile, format!("{PASSPHRASE}\n")).unwrap();
    let mut env =
        vec![("VAULTFS_STATE_DIR".to_string(), dir.path().join("state").to_string_lossy().into_owned())];
    if options.contains(&"shared") {
        env.push(("VAULTFS_HOST".to_string(), "host-a".to_string()));
    }
    let data = format!("s3+http://{}/vault-data", objects.endpoint());
    let out = Command::new(common::bin())
        .args(["init", &address, "--data", &data, "--passphrase-file", passfile.to_str().unwrap()])
        .args(["--kdf-memory", "8", "--kdf-passes", "1"])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "init of a cluster vault: {}", text(&out));
    let options = options.iter().map(|s| s.to_string()).collect();
    let mut m = Mount { dir, store: PathBuf::from(address), mnt, passfile, mounted: false, options, env };
    m.mount();
    ClusterMount { m, _etcd: etcd, _objects: objects }
}

/// A whole pjdfstest run on a cluster vault passed as on a store
/// directory: nothing failed, and only the expected cases were skipped
/// (the EROFS ones, which remount, are left to the store directory's run).
fn passes_as_on_a_store_directory(all: &Outcome) {
    assert!(all.names("FAILED").is_empty() && all.status, "pjdfstest failed:\n{}", all.problems());
    assert!(all.names("ok").len() > 300, "pjdfstest ran too few cases:\n{}", all.output);
    let skipped = all.names("skipped");
    let others: BTreeSet<&str> = skipped.iter().copied().filter(|n| !n.contains("erofs")).collect();
    let expected: BTreeSet<&str> = EXPECTED_SKIPS.iter().map(|(n, _)| *n).collect();
    assert_eq!(others, expected, "unexpected skips:\n{}", all.output);
}

/// A second mount of `c`'s cluster vault that shares writing, as `host`
/// (its own state directory and mount point).
fn sharing_mount_on(c: &ClusterMount, host: &str) -> Mount {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, passfile) = (dir.path().join("mnt"), dir.path().join("pass"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::copy(&c.m.passfile, &passfile).unwrap();
    let env = vec![
        ("VAULTFS_STATE_DIR".to_string(), dir.path().join("state").to_string_lossy().into_owned()),
        ("VAULTFS_HOST".to_string(), host.to_string()),
    ];
    let options = vec!["shared".to_string()];
    let mut m = Mount { dir, store: c.m.store.clone(), mnt, passfile, mounted: false, options, env };
    m.mount();
    m
}

/// Sets its flag when dropped: a test that fails still stops its helpers
/// (a scope waits for its threads before the failure goes on).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Writes and removes small files on `m` until `stop`: another host's
/// changes, so that the mount beside it passes the vault's hold back and
/// forth all along.
fn busy_until(m: &Mount, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let dir = m.path("1-working/busy");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let f = dir.join(format!("f{}", n % 20));
        std::fs::write(&f, n.to_le_bytes()).unwrap();
        if n % 3 == 0 {
            std::fs::remove_file(&f).unwrap();
        }
        n += 1;
    }
    n
}

/// pjdfstest on a mount that shares writing a cluster vault, while a
/// second host's mount writes beside it: every case that passes on a
/// store directory passes here too.
#[test]
fn pjdfstest_passes_on_a_mount_that_shares_writing() {
    tools();
    let c = cluster_mount(&["allow_other", "shared"]);
    let mut b = sharing_mount_on(&c, "host-b");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let all = std::thread::scope(|s| {
        let busy = s.spawn(|| busy_until(&b, &stop));
        let stopping = StopOnDrop(&stop);
        let all = pjdfstest(&c.m, &data("pjdfstest.toml"), &[]);
        drop(stopping);
        println!("host-b made {} changes meanwhile", busy.join().unwrap());
        all
    });
    passes_as_on_a_store_directory(&all);
    b.unmount();
}

/// fsx on two hosts' mounts that share writing one cluster vault, at the
/// same time, each on its own file; then fsck: clean, every log verified.
#[test]
fn fsx_on_two_hosts_sharing_writing_then_fsck_is_clean() {
    let mut c = cluster_mount(&["shared"]);
    let mut b = sharing_mount_on(&c, "host-b");
    std::thread::scope(|s| {
        let other = s.spawn(|| fsx(&b, "fsx.toml", "fsx-host-b", 10_000));
        fsx(&c.m, "fsx.toml", "fsx-host-a", 10_000);
        other.join().unwrap();
    });
    b.unmount();
    let report = fsck_clean(&mut c.m);
    for host in ["host-a", "host-b"] {
        assert!(report.contains(&format!("host {host}")), "{host}'s audit log not checked:\n{report}");
    }
}

/// stress-ng on a mount that shares writing while a second host's mount
/// writes beside it; then fsck, clean.
#[test]
fn stress_ng_on_a_mount_that_shares_writing_leaves_it_clean() {
    let mut c = cluster_mount(&["shared"]);
    let mut b = sharing_mount_on(&c, "host-b");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let busy = s.spawn(|| busy_until(&b, &stop));
        let stopping = StopOnDrop(&stop);
        stress_ng(&c.m);
        drop(stopping);
        println!("host-b made {} changes meanwhile", busy.join().unwrap());
    });
    assert!(b.log().lines().all(|l| !l.contains("ERROR")), "host-b's daemon logged errors:\n{}", b.log());
    b.unmount();
    fsck_clean(&mut c.m);
}

/// pjdfstest on a cluster vault's holder: every case that passes on a
/// store directory passes here (the EROFS cases, which remount, are left
/// to the store directory's run).
#[test]
fn pjdfstest_passes_on_a_cluster_vault() {
    tools();
    let c = cluster_mount(&["allow_other"]);
    let all = pjdfstest(&c.m, &data("pjdfstest.toml"), &[]);
    passes_as_on_a_store_directory(&all);
}

/// fsx on a cluster vault's holder (records in objects, a commit every
/// interval), then fsck of the cluster vault: clean, its audit log verified.
#[test]
fn fsx_on_a_cluster_vault_then_fsck_is_clean() {
    let mut c = cluster_mount(&[]);
    fsx(&c.m, "fsx.toml", "fsx-cluster", 10_000);
    fsck_clean(&mut c.m);
}

/// stress-ng's file system stressors on a cluster vault's holder, then
/// fsck of the cluster vault.
#[test]
fn stress_ng_on_a_cluster_vault_leaves_it_clean() {
    stress_ng_then_fsck(&mut cluster_mount(&[]).m);
}
