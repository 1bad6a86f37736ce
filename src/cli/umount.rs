//! `vaultfs umount MOUNTPOINT`: asks the serving daemon to flush and unmount
//! (SIGTERM), then waits until it has exited, so every acknowledged write is
//! durable when this command returns.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::args::UmountArgs;
use super::exit::{self, Code, Exit};
use super::mountinfo::{Holder, PID_FILE, holders, store_of};

const WAIT: Duration = Duration::from_secs(60);

pub fn run(a: UmountArgs) -> exit::Result {
    // Exit 4, as `status`, `lock` and `pending` say it: no vault where one was expected.
    let store = store_of(&a.mountpoint).ok_or_else(|| Exit {
        code: Code::VaultPresence,
        message: format!("{} is not a mounted vault", a.mountpoint.display()),
    })?;
    match daemon_pid(&store).or_else(|| daemon_serving(&a.mountpoint)) {
        Some(pid) => stop(pid, &a.mountpoint)?,
        None => fallback_unmount(&a.mountpoint)?,
    }
    // A daemon killed with SIGKILL exits without unmounting: the mount stays,
    // dead, until it is taken down here. Success means the mount point is free.
    if store_of(&a.mountpoint).is_some() {
        fallback_unmount(&a.mountpoint)?;
    }
    match store_of(&a.mountpoint) {
        None => Ok(()),
        Some(_) => Err(Exit::failure(format!("{} is still mounted", a.mountpoint.display()))),
    }
}

/// The serving daemon's pid from the store's pid file, if that process runs
/// this same program (a pid file left by a killed daemon may name a pid
/// since reused by something else, which must not get our SIGTERM).
fn daemon_pid(store: &Path) -> Option<i32> {
    let pid: u32 = std::fs::read_to_string(super::mountinfo::local_dir(store).join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let ours = crate::sys::process_name(std::process::id());
    (!ours.is_empty() && crate::sys::process_name(pid) == ours).then_some(pid as i32)
}

/// The daemon serving `mountpoint`, found by its command line when the pid
/// file is not where this process looks (a cluster vault's pid file lives
/// in the state directory, which the mount may have been given another
/// VAULTFS_STATE_DIR for): without it the kernel's mount would go, but the
/// daemon's last commit would not be waited for.
fn daemon_serving(mountpoint: &Path) -> Option<i32> {
    let wanted = std::path::absolute(mountpoint).ok()?;
    let ours = crate::sys::process_name(std::process::id());
    let procs = std::fs::read_dir("/proc").ok()?;
    procs.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        // `vaultfs mount STORE MOUNTPOINT --daemon-child ...` (mount.rs,
        // which passes the mount point absolute).
        let daemon = args.get(1) == Some(&&b"mount"[..]) && args.contains(&&b"--daemon-child"[..]);
        let at = args.get(3).map(|m| Path::new(std::ffi::OsStr::from_bytes(m)));
        (daemon && at == Some(&wanted) && crate::sys::process_name(pid) == ours && !ours.is_empty())
            .then_some(pid as i32)
    })
}

fn stop(pid: i32, mountpoint: &Path) -> exit::Result {
    // Who holds the mount, found while it is still attached: once the
    // daemon detaches it, its files are reachable only through their fds.
    let held: Vec<Holder> = holders(mountpoint).into_iter().filter(|h| h.pid != pid as u32).collect();
    let alive = crate::sys::terminate_process(pid)
        .map_err(|e| Exit::failure(format!("cannot signal daemon {pid}: {e}")))?;
    if !alive {
        return fallback_unmount(mountpoint);
    }
    let start = Instant::now();
    let mut told = false;
    while start.elapsed() < WAIT {
        if !running(pid) {
            return Ok(());
        }
        if !told && !held.is_empty() && start.elapsed() > BUSY_AFTER {
            eprintln!(
                "vaultfs: {} is busy: {}; the daemon finishes when they let go (waiting up to {} s)",
                mountpoint.display(),
                describe(&held),
                WAIT.as_secs()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let who = if held.is_empty() { String::new() } else { format!(" ({})", describe(&held)) };
    Err(Exit::failure(format!(
        "daemon {pid} has detached the mount but still serves open files{who}; it exits when they are closed"
    )))
}

/// How long a busy unmount waits before saying who holds it.
const BUSY_AFTER: Duration = Duration::from_secs(1);

/// "pid 123 (python3: open files), pid 456 (bash: working directory)".
fn describe(held: &[Holder]) -> String {
    let each: Vec<String> = held.iter().map(|h| format!("pid {} ({}: {})", h.pid, h.comm, h.what)).collect();
    each.join(", ")
}

/// Whether `pid` is a live process. An exited daemon may linger as a zombie
/// until init reaps it; that counts as exited.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized command name.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// No daemon known: unmount directly (root) or through fusermount3.
fn fallback_unmount(mountpoint: &Path) -> exit::Result {
    let status = std::process::Command::new("fusermount3").arg("-u").arg(mountpoint).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => crate::sys::lazy_unmount(mountpoint)
            .map_err(|e| Exit::failure(format!("cannot unmount {}: {e}", mountpoint.display()))),
    }
}
