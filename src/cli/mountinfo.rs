//! Finding our mounts in /proc/self/mountinfo, and the daemon's pid file.

use std::path::{Path, PathBuf};

use super::exit::{Code, Exit};
use crate::vault::{ErrorKind, Locked, Vault};

/// File in the store directory holding the serving daemon's pid.
pub const PID_FILE: &str = "mount.pid";

/// The source (store path) of the vaultfs mount at `mountpoint`, if any.
pub fn store_of(mountpoint: &Path) -> Option<PathBuf> {
    our_mount(mountpoint).map(|(_, source)| source)
}

/// The mount id and source of the vaultfs mount at `mountpoint`, if any.
fn our_mount(mountpoint: &Path) -> Option<(u64, PathBuf)> {
    // A FUSE mount whose daemon died cannot be resolved (ENOTCONN): match it
    // by the path as given, made absolute.
    let target = mountpoint.canonicalize().or_else(|_| std::path::absolute(mountpoint)).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let id: u64 = left.split(' ').next()?.parse().ok()?;
        let point = unescape(left.split(' ').nth(4)?);
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?, r.next()?);
        let source = PathBuf::from(unescape(source));
        let ours = matches!(fstype, "fuse" | "fuse.vaultfs") && crate::store::Store::exists(&source);
        (ours && Path::new(&point) == target).then_some((id, source))
    })
}

/// A process that keeps a mount busy, and how.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    /// "open files" or "working directory".
    pub what: &'static str,
}

/// The processes with a file open on the vault mounted at `mountpoint`, or
/// their working directory in it (as `fuser -m` finds them), from /proc
/// alone: the fds' `mnt_id` in fdinfo, so nothing is asked of the mount
/// itself. Our own process is left out.
pub fn holders(mountpoint: &Path) -> Vec<Holder> {
    let Some((id, _)) = our_mount(mountpoint) else { return Vec::new() };
    let target = mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf());
    let on_mount = |pid: &str, fd: &str| {
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        info.lines().any(|l| l.strip_prefix("mnt_id:").and_then(|v| v.trim().parse::<u64>().ok()) == Some(id))
    };
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<u32>() else { continue };
        if pid == me {
            continue;
        }
        let open = std::fs::read_dir(p.path().join("fd"))
            .map(|fds| fds.flatten().any(|fd| on_mount(&name, &fd.file_name().to_string_lossy())))
            .unwrap_or(false);
        let cwd = std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c.starts_with(&target));
        if open || cwd {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default().trim().to_string();
            found.push(Holder { pid, comm, what: if open { "open files" } else { "working directory" } });
        }
    }
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The running mount daemon serving `store`: its pid (from the pid file,
/// checked against /proc so that a stale file of a killed daemon does not
/// count) and where it is mounted, when /proc/self/mountinfo says.
pub struct Serving {
    pub pid: u32,
    pub mountpoint: Option<PathBuf>,
}

/// Where the local files of the store `store` names are (pid file, control
/// socket, policy, public key): the store directory itself, or a cluster
/// vault's state directory on this machine.
pub fn local_dir(store: &Path) -> PathBuf {
    crate::store::Address::of(store).map_or_else(|_| store.to_path_buf(), |a| a.local_dir())
}

/// The mount source (fsname) of a mount of `store`: the store directory,
/// absolute, or the cluster vault's address as given.
pub fn source_name(store: &Path) -> std::io::Result<PathBuf> {
    match crate::store::Address::is_cluster(store) {
        true => Ok(store.to_path_buf()),
        false => std::path::absolute(store),
    }
}

/// Whether `pid` has exited but not been reaped (a killed daemon whose
/// parent, init in a container, does not reap): it serves nothing.
fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised name, which may hold spaces.
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with(['Z', 'X']))
}

pub fn serving(store: &Path) -> Option<Serving> {
    let pid: u32 = std::fs::read_to_string(local_dir(store).join(PID_FILE)).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.contains("vaultfs") || is_zombie(pid) {
        return None;
    }
    let store = match crate::store::Address::is_cluster(store) {
        true => store.to_path_buf(),
        false => store.canonicalize().ok()?,
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mountpoint = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?, r.next()?);
        let ours = matches!(fstype, "fuse" | "fuse.vaultfs") && Path::new(&unescape(source)) == store;
        let point = left.split(' ').nth(4)?;
        ours.then(|| PathBuf::from(unescape(point)))
    });
    Some(Serving { pid, mountpoint })
}

/// Opens the store for `vaultfs COMMAND`, which needs it unmounted: a store
/// a mount daemon serves is refused at once (exit 10) with the pid, the
/// mount point and what to do, `meanwhile` (what works while mounted) added
/// when there is such a thing. Without this, sled's lock would be retried
/// for seconds and then reported as "in use or unusable".
pub fn open_unmounted(store: &Path, command: &str, meanwhile: &str) -> Result<Vault<Locked>, Exit> {
    if let Some(s) = serving(store) {
        return Err(mounted(store, &s, command, meanwhile));
    }
    Vault::open(store).map_err(|e| match serving(store) {
        // Mounted while we were opening it.
        Some(s) if e.kind() == ErrorKind::Io => mounted(store, &s, command, meanwhile),
        _ => e.into(),
    })
}

fn mounted(store: &Path, s: &Serving, command: &str, meanwhile: &str) -> Exit {
    let at = match &s.mountpoint {
        Some(m) => format!(" at {}", m.display()),
        None => String::new(),
    };
    let umount = match &s.mountpoint {
        Some(m) => format!("vaultfs umount {}", m.display()),
        None => "vaultfs umount MOUNTPOINT".to_string(),
    };
    let meanwhile = match (&s.mountpoint, meanwhile) {
        (_, "") => String::new(),
        (Some(m), text) => format!("; {}", text.replace("MOUNTPOINT", &m.display().to_string())),
        (None, text) => format!("; {text}"),
    };
    Exit {
        code: Code::Mounted,
        message: format!(
            "{} is mounted{at} (daemon pid {}): `vaultfs {command}` needs it unmounted: run `{umount}` first, \
             then this command again{meanwhile}",
            store.display(),
            s.pid
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_octal() {
        assert_eq!(super::unescape("/mnt/my\\040vault"), "/mnt/my vault");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
