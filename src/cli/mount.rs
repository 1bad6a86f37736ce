//! `vaultfs mount STORE MOUNTPOINT`: unlock, mount, serve. By default the
//! command starts a daemon copy of itself, hands it the passphrase over a
//! pipe, and returns once the daemon reports the mount ready (or its error).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::args::{MountArgs, PassphraseArgs};
use super::exit::{self, Code, Exit};
use super::mountinfo::PID_FILE;
use super::passphrase::{self, Confirm};
use crate::fs::MountOptions;
use crate::policy::PolicyWatcher;
use crate::vault::{Anchors, Durability, ErrorKind, Unlocked, Vault, Witness};

/// What `-o` decided.
struct Decided {
    opts: MountOptions,
    /// `-o nonempty`: mount over a directory that holds files (hiding them).
    nonempty: bool,
    passphrase_file: Option<PathBuf>,
    durability: Durability,
    cache_mib: u32,
    /// `-o memory=MIB`: the daemon's resident memory ceiling.
    memory_mib: u32,
    /// The rollback anchor's witness file (absolute).
    witness: Option<PathBuf>,
    /// `-o no_tpm_anchor`: do not check or keep the anchor in the TPM.
    no_tpm_anchor: bool,
    /// `-o reanchor`: accept a store older than its anchors (recorded).
    reanchor: bool,
    /// `--metrics`: where to serve /metrics and /health.
    metrics: Option<std::net::SocketAddr>,
    /// `-o shared`: a cluster vault written from this host beside others
    /// (docs/CLUSTER.md, "Several hosts writing").
    shared: bool,
}

/// The store's page cache by default, MiB (`-o cache=MIB`): at most half
/// the memory ceiling.
const DEFAULT_CACHE_MIB: u32 = 128;

/// The daemon's memory ceiling by default, MiB (`-o memory=MIB`;
/// store::memory), and the least accepted.
const DEFAULT_MEMORY_MIB: u32 = 256;
const MIN_MEMORY_MIB: u32 = 32;

/// Inodes the kernel may keep looked up (`-o inodes=N`): about 100 bytes of
/// the daemon's memory each, whatever the vault's size (docs/PERFORMANCE.md).
const DEFAULT_KNOWN_INODES: usize = 100_000;
/// A handful: below it the kernel would be asked to forget the files in use.
const MIN_KNOWN_INODES: usize = 16;
const MAX_KNOWN_INODES: usize = 10_000_000;

/// glibc malloc arenas for the daemon (`sys::limit_malloc_arenas`).
const MALLOC_ARENAS: i32 = 2;

/// The mount's readahead by default (`-o readahead=KIB`, where the daemon
/// may set it: fs::session's `raise_readahead`), and the most accepted.
const DEFAULT_READAHEAD_KIB: u32 = 4096;
const MAX_READAHEAD_KIB: u32 = 65_536;

/// How long a change may wait for its group commit by default (`-o commit=MS`).
const DEFAULT_COMMIT_MS: u32 = 1000;
/// The longest commit interval accepted: a minute, as the most a user could
/// mean; beyond it a crash could silently lose more than anyone expects.
const MAX_COMMIT_MS: u32 = 60_000;

fn decide(a: &MountArgs) -> Result<Decided, Exit> {
    let default_threads = std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(2).max(2);
    let store = super::mountinfo::source_name(&a.store)
        .map_err(|e| Exit::usage(format!("{}: {e}", a.store.display())))?;
    let mut opts = MountOptions {
        read_only: false,
        allow_other: false,
        uid: None,
        gid: None,
        threads: a.threads.unwrap_or(default_threads),
        fsname: store.to_string_lossy().into_owned(),
        known_inodes: DEFAULT_KNOWN_INODES,
        readahead_kib: DEFAULT_READAHEAD_KIB,
    };
    let mut passphrase_file = None;
    let mut witness = a.witness.clone();
    let (mut nonempty, mut shared) = (false, false);
    let (mut no_tpm_anchor, mut reanchor) = (false, false);
    let (mut sync, mut commit_ms, mut cache_mib) = (false, DEFAULT_COMMIT_MS, None);
    let mut memory_mib = DEFAULT_MEMORY_MIB;
    let number =
        |k: &str, v: &str| v.parse::<u32>().map_err(|_| Exit::usage(format!("-o {k}={v}: not a number")));
    for opt in a.options.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k {
            "ro" => opts.read_only = true,
            "rw" => opts.read_only = false,
            "allow_other" => opts.allow_other = true,
            "uid" => opts.uid = Some(number(k, v)?),
            "gid" => opts.gid = Some(number(k, v)?),
            "threads" => opts.threads = number(k, v)? as usize,
            "passphrase_file" => passphrase_file = Some(PathBuf::from(v)),
            "witness" => witness = Some(PathBuf::from(v)),
            "no_tpm_anchor" => no_tpm_anchor = true,
            "reanchor" => reanchor = true,
            "sync" => sync = true,
            "async" => sync = false,
            "commit" => commit_ms = number(k, v)?,
            "cache" => cache_mib = Some(number(k, v)?),
            "memory" => memory_mib = number(k, v)?,
            "inodes" => opts.known_inodes = number(k, v)? as usize,
            "readahead" => opts.readahead_kib = number(k, v)?,
            "nonempty" => nonempty = true,
            "shared" => shared = true,
            // Accepted for fstab compatibility and ignored: the daemon checks
            // permissions itself, so that refusals are recorded.
            "default_permissions" => {}
            // fstab and mount(8) bookkeeping, meaningless to us.
            "auto" | "noauto" | "user" | "nouser" | "users" | "nofail" | "_netdev" | "defaults" | "dev"
            | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "atime" | "noatime" | "relatime" => {}
            _ if k.starts_with("x-") || k.starts_with("comment=") => {}
            _ => return Err(Exit::usage(format!("unknown mount option {opt:?}"))),
        }
    }
    if opts.threads == 0 || opts.threads > 256 {
        return Err(Exit::usage("threads must be between 1 and 256"));
    }
    if commit_ms == 0 || commit_ms > MAX_COMMIT_MS {
        return Err(Exit::usage(format!("commit must be between 1 and {MAX_COMMIT_MS} ms")));
    }
    if !(MIN_KNOWN_INODES..=MAX_KNOWN_INODES).contains(&opts.known_inodes) {
        return Err(Exit::usage(format!("inodes must be between {MIN_KNOWN_INODES} and {MAX_KNOWN_INODES}")));
    }
    if opts.readahead_kib > MAX_READAHEAD_KIB {
        return Err(Exit::usage(format!(
            "readahead must be at most {MAX_READAHEAD_KIB} KiB (0: the kernel's)"
        )));
    }
    if memory_mib < MIN_MEMORY_MIB {
        return Err(Exit::usage(format!("memory must be at least {MIN_MEMORY_MIB} MiB")));
    }
    let cache_mib = cache_mib.unwrap_or(DEFAULT_CACHE_MIB.min(memory_mib / 2));
    if !(8..=65_536).contains(&cache_mib) {
        return Err(Exit::usage("cache must be between 8 and 65536 MiB"));
    }
    if cache_mib >= memory_mib {
        return Err(Exit::usage(format!(
            "cache={cache_mib} must be below the memory ceiling ({memory_mib} MiB; -o memory=MIB)"
        )));
    }
    if shared && opts.read_only {
        return Err(Exit::usage("-o shared is for mounts that write; -o ro mounts beside writers as it is"));
    }
    if shared && !crate::store::Address::is_cluster(&a.store) {
        return Err(Exit::usage(
            "-o shared: only a cluster vault (etcd://...) is written from several hosts",
        ));
    }
    let durability = match sync {
        true => Durability::EachBatch,
        false => Durability::Grouped(std::time::Duration::from_millis(commit_ms.into())),
    };
    let witness = witness
        .filter(|w| !w.as_os_str().is_empty())
        .map(|w| std::path::absolute(&w).map_err(|e| Exit::usage(format!("witness {}: {e}", w.display()))))
        .transpose()?;
    let metrics = a.metrics.as_deref().map(metrics_addr).transpose()?;
    Ok(Decided {
        opts,
        nonempty,
        passphrase_file,
        durability,
        cache_mib,
        memory_mib,
        witness,
        no_tpm_anchor,
        reanchor,
        metrics,
        shared,
    })
}

/// `--metrics PORT` (loopback) or `HOST:PORT`.
fn metrics_addr(s: &str) -> Result<std::net::SocketAddr, Exit> {
    let bad =
        || Exit::usage(format!("--metrics {s:?}: expected PORT or HOST:PORT, e.g. 9464 or 127.0.0.1:9464"));
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().map_err(|_| bad())?.next().ok_or_else(bad)
}

/// `verbose`: the `-v` count, passed on to the daemon.
pub fn run(a: MountArgs, verbose: u8) -> exit::Result {
    let d = decide(&a)?;
    check_mountpoint(&a.mountpoint, d.nonempty)?;
    let source = match &d.passphrase_file {
        Some(f) => PassphraseArgs { passphrase_file: Some(f.clone()), passphrase_fd: None },
        None => PassphraseArgs {
            passphrase_file: a.passphrase.passphrase_file.clone(),
            passphrase_fd: a.passphrase.passphrase_fd,
        },
    };
    if a.foreground || a.daemon_child {
        return serve(&a, &d, &source);
    }
    let pass = passphrase::obtain(&source, "Vault passphrase: ", Confirm::Once)?;
    spawn_daemon(&a, &pass, verbose)
}

/// Refuses a mount point that would hide or stack: not a directory, a live
/// vault mount (a second vault on top would take the agents' writes), a
/// directory with files in it (hidden while mounted) unless `nonempty`, or
/// a FUSE mount whose daemon is gone.
fn check_mountpoint(mnt: &std::path::Path, nonempty: bool) -> exit::Result {
    let refuse = |message: String| Err(Exit { code: Code::MountPoint, message });
    let shown = mnt.display();
    match std::fs::metadata(mnt) {
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
            return refuse(format!(
                "{shown} is a FUSE mount whose daemon is gone (\"transport endpoint is not connected\"): \
                 clean it up with `vaultfs umount {shown}` (or `fusermount3 -u {shown}`), then mount again"
            ));
        }
        Err(e) => return refuse(format!("mount point {shown}: {e}")),
        Ok(m) if !m.is_dir() => return refuse(format!("mount point {shown} is not a directory")),
        Ok(_) => {}
    }
    if let Some(store) = super::mountinfo::store_of(mnt) {
        return refuse(format!(
            "{shown} is already the mount of vault {}: unmount it first (`vaultfs umount {shown}`)",
            store.display()
        ));
    }
    let has_files = std::fs::read_dir(mnt)
        .map_err(|e| Exit { code: Code::MountPoint, message: format!("mount point {shown}: {e}") })?
        .next()
        .is_some();
    if has_files && !nonempty {
        return refuse(format!(
            "mount point {shown} is not empty: its files would be hidden while the vault is mounted \
             (-o nonempty to mount over them anyway)"
        ));
    }
    Ok(())
}

/// The name a read-only mount of a cluster vault, or one that shares
/// writing, goes by (its audit log's, docs/CLUSTER.md): `VAULTFS_HOST`,
/// else the host name.
fn reader_host() -> String {
    crate::sys::host_name()
}

/// Runs the mount in this process until it is unmounted.
fn serve(a: &MountArgs, d: &Decided, source: &PassphraseArgs) -> exit::Result {
    let report = |e: Exit| -> Exit {
        if a.daemon_child {
            println!("error {} {}", e.code as u8, e.message);
        }
        e
    };
    let pass = passphrase::obtain(source, "Vault passphrase: ", Confirm::Once).map_err(report)?;
    crate::sys::limit_malloc_arenas(MALLOC_ARENAS);
    let witness = d.witness.as_deref().map(Witness::new);
    let note = witness.as_ref().map(|w| w.read()).transpose().map_err(|e| report(e.into()))?.flatten();
    let tpm = crate::gate::tpm::TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new());
    let anchors = Anchors {
        witness: note
            .clone()
            .zip(witness.as_ref().map(|w| format!("the witness file {}", w.path().display()))),
        tpm: (!d.no_tpm_anchor).then(|| tpm.clone()),
        reanchor: d.reanchor,
    };
    // Audit records a mount archived by policy: their disk comes back now,
    // while nothing has the store open (ADMIN.md, "Audit archives").
    match crate::vault::compact_if_due(&a.store) {
        Ok(Some(c)) => tracing::info!("store compacted: {} -> {} bytes", c.bytes_before, c.bytes_after),
        Ok(None) => {}
        Err(e) => tracing::warn!("compacting the store before mounting: {e} (mounting it as it is)"),
    }
    let (memory, cache) = (u64::from(d.memory_mib) << 20, u64::from(d.cache_mib) << 20);
    // `-o ro` on a cluster vault: a read-only mount beside its holder.
    let reader = d.opts.read_only && crate::store::Address::is_cluster(&a.store);
    let opened = match (reader, d.shared) {
        (true, _) => Vault::open_reader(&a.store, &reader_host()),
        (false, true) => Vault::open_writer(&a.store, &reader_host()),
        (false, false) => Vault::open_with_cache(&a.store, crate::store::memory::initial(memory, cache)),
    };
    let vault = opened
        .and_then(|v| v.unlock_anchored(&pass, &anchors))
        .and_then(|v| v.set_durability(d.durability).map(|()| v))
        .map_err(|e| {
            if e.kind() == ErrorKind::RolledBack {
                tracing::error!("refusing to mount {}: {e}", a.store.display());
            }
            report(e.into())
        })?;
    if let Some(w) = &witness
        && note.is_none()
    {
        tracing::warn!(
            "the witness file {} did not exist: it anchors the vault from now on",
            w.path().display()
        );
    }
    let _anchoring = vault.start_anchoring(witness).map_err(|e| report(e.into()))?;
    // Idle unless the policy names exports; follows its reloads.
    let _exporter = crate::export::Exporter::start(vault.clone())
        .map_err(|e| report(Exit::failure(format!("cannot start the audit exporter: {e}"))))?;
    let _monitor = match d.metrics {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    "metrics on {addr}, beyond this machine: they show operation counts and timing"
                );
            }
            let mnt = std::path::absolute(&a.mountpoint).unwrap_or_else(|_| a.mountpoint.clone());
            let m = crate::monitor::Monitor::start(addr, vault.clone(), &mnt)
                .map_err(|e| report(Exit::usage(format!("--metrics: {e}"))))?;
            tracing::info!("metrics and health at http://{}/metrics and /health", m.addr());
            Some(m)
        }
        None => None,
    };
    super::audit::write_pubkey_file(&a.store, &vault.header().audit_public);
    drop(pass);
    let local = super::mountinfo::local_dir(&a.store);
    let socket = local.join(crate::control::SOCKET_NAME);
    let _control = crate::control::server::ControlServer::start(&socket, vault.clone(), tpm)
        .map_err(|e| report(Exit::failure(format!("control socket {}: {e}", socket.display()))))?;
    let _policy = follow_policy(a, &vault).map_err(report)?;
    let _upkeep = vault.start_upkeep().map_err(|e| report(e.into()))?;
    let _memory = vault.start_memory_governor(memory, cache).map_err(|e| report(e.into()))?;
    let pid_file = local.join(PID_FILE);
    // A reader, or a mount that shares writing, sees the vault's keys one
    // kind at a time, never the whole store at one instant: backups are
    // made where the vault is held alone.
    let maker = (!reader && !d.shared).then(super::backup::archive_maker);
    let closing = vault.clone();
    let result = crate::fs::mount(vault, &a.mountpoint, &d.opts, maker, || {
        let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
        tracing::info!("mounted {} on {}", a.store.display(), a.mountpoint.display());
        if a.daemon_child {
            println!("ready");
            let _ = std::io::stdout().flush();
        }
    });
    let _ = std::fs::remove_file(&pid_file);
    // The last record: after the threads that record (control requests,
    // policy reloads, upkeep) stop, before the exporter and the anchors
    // take their last look (dropped on return).
    drop((_control, _policy, _upkeep));
    if let Err(e) = closing.record_unmount() {
        tracing::error!("audit record of the unmount: {e}");
    }
    if let Err(e) = closing.release_hold() {
        tracing::warn!("letting go of the vault's hold at unmount: {e} (it goes when the lease lapses)");
    }
    result.map_err(|m| report(Exit::failure(m)))
}

/// The policy file: `--policy`, else `STORE/policy.toml`.
fn policy_path(a: &MountArgs) -> Result<PathBuf, Exit> {
    let p = a.policy.clone().unwrap_or_else(|| super::mountinfo::local_dir(&a.store).join("policy.toml"));
    std::path::absolute(&p).map_err(|e| Exit::usage(format!("policy file {}: {e}", p.display())))
}

/// Watches the policy file (before its first read, so no change falls
/// between) and applies it; a bad file at mount refuses the mount.
fn follow_policy(a: &MountArgs, vault: &Vault<Unlocked>) -> Result<PolicyWatcher, Exit> {
    let path = policy_path(a)?;
    let v = vault.clone();
    let watcher = PolicyWatcher::start(&path, move |read| {
        v.reload_policy(read);
    })
    .map_err(|e| Exit::usage(e.to_string()))?;
    vault.use_policy_file(&path)?;
    Ok(watcher)
}

/// Starts `vaultfs mount --daemon-child ...` detached, passes the passphrase
/// on its stdin, and waits for "ready" or an error line on its stdout.
fn spawn_daemon(a: &MountArgs, pass: &crate::crypto::Passphrase, verbose: u8) -> exit::Result {
    let exe =
        std::env::current_exe().map_err(|e| Exit::failure(format!("cannot find own executable: {e}")))?;
    let mut cmd = Command::new(exe);
    // Absolute: `vaultfs umount` may find the daemon by it (umount.rs).
    let mountpoint = std::path::absolute(&a.mountpoint).unwrap_or_else(|_| a.mountpoint.clone());
    cmd.arg("mount").arg(&a.store).arg(&mountpoint).arg("--daemon-child").args(["--passphrase-fd", "0"]);
    for o in &a.options {
        cmd.arg("-o").arg(o);
    }
    if let Some(t) = a.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.arg("--policy").arg(policy_path(a)?);
    if let Some(w) = &a.witness {
        cmd.arg("--witness").arg(std::path::absolute(w).unwrap_or_else(|_| w.clone()));
    }
    if let Some(m) = &a.metrics {
        cmd.arg("--metrics").arg(m);
    }
    if let Some(t) = &a.tpm.tpm_tcti {
        cmd.arg("--tpm-tcti").arg(t);
    }
    let stderr = match &a.log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Exit::usage(format!("log file {}: {e}", path.display())))?,
        ),
        None => Stdio::null(),
    };
    // The child's stderr is the log file already; naming it tells the child
    // not to log to the system log instead.
    if let Some(path) = &a.log {
        cmd.arg("--log").arg(path);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).process_group(0);
    // The user's -v reaches the daemon; a log file gets at least -v (info).
    for _ in 0..verbose.max(u8::from(a.log.is_some())) {
        cmd.arg("-v");
    }
    let mut child = cmd.spawn().map_err(|e| Exit::failure(format!("cannot start the mount daemon: {e}")))?;
    {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut line = pass.as_bytes().to_vec();
        line.push(b'\n');
        let r = stdin.write_all(&line);
        zeroize::Zeroize::zeroize(&mut line);
        r.map_err(|e| Exit::failure(format!("passing the passphrase to the daemon: {e}")))?;
    }
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    let _ = BufReader::new(stdout).read_line(&mut first);
    if first.trim_end() == "ready" {
        return Ok(());
    }
    let status = child.wait().map_err(|e| Exit::failure(format!("waiting for the daemon: {e}")))?;
    Err(parse_error(first.trim_end(), status.code()))
}

/// The daemon's "error CODE MESSAGE" line as our own exit.
fn parse_error(line: &str, status: Option<i32>) -> Exit {
    let rest = line.strip_prefix("error ").unwrap_or("");
    let (code, msg) = rest.split_once(' ').unwrap_or(("1", rest));
    let code =
        code.parse::<u8>().ok().or(status.map(|s| s as u8)).and_then(Code::from_u8).unwrap_or(Code::Failure);
    let message = if msg.is_empty() {
        format!("the mount daemon failed ({line:?}, status {status:?})")
    } else {
        msg.to_string()
    };
    Exit { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn decided(opts: &str) -> Result<Decided, Exit> {
        let cli =
            super::super::args::Cli::try_parse_from(["vaultfs", "mount", "/s", "/m", "-o", opts]).unwrap();
        match cli.command {
            super::super::args::Command::Mount(a) => decide(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn durability_and_cache_options() {
        let d = decided("rw").unwrap();
        assert_eq!(d.durability, Durability::Grouped(std::time::Duration::from_millis(1000)));
        assert_eq!(d.cache_mib, DEFAULT_CACHE_MIB);
        assert_eq!(decided("sync").unwrap().durability, Durability::EachBatch);
        assert_eq!(
            decided("sync,async").unwrap().durability,
            Durability::Grouped(std::time::Duration::from_secs(1))
        );
        let d = decided("commit=250,cache=128,inodes=5000,readahead=0").unwrap();
        assert_eq!(d.durability, Durability::Grouped(std::time::Duration::from_millis(250)));
        assert_eq!(d.cache_mib, 128);
        assert_eq!(d.opts.known_inodes, 5000);
        assert_eq!(d.opts.readahead_kib, 0);
        assert_eq!(decided("rw").unwrap().opts.known_inodes, DEFAULT_KNOWN_INODES);
        assert_eq!(decided("rw").unwrap().opts.readahead_kib, DEFAULT_READAHEAD_KIB);
        assert_eq!(decided("rw").unwrap().memory_mib, DEFAULT_MEMORY_MIB);
        // A lower ceiling halves the default cache; a given cache must fit below it.
        let d = decided("memory=64").unwrap();
        assert_eq!((d.memory_mib, d.cache_mib), (64, 32));
        assert_eq!(decided("memory=1024,cache=512").unwrap().cache_mib, 512);
        for bad in [
            "memory=31",
            "memory=x",
            "cache=256",
            "memory=64,cache=64",
            "commit=0",
            "commit=60001",
            "commit=x",
            "cache=4",
            "cache=70000",
            "inodes=15",
            "inodes=x",
            "readahead=65537",
            "readahead=x",
        ] {
            assert!(decided(bad).is_err(), "{bad} was accepted");
        }
    }
}
