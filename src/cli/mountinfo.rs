//! Finding our mounts in /proc/self/mountinfo, and the daemon's pid file.

use std::path::{Path, PathBuf};

use super::exit::Exit;
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

/// Opens the store; a store held by a mount daemon gets a clear message.
pub fn open_unmounted(store: &Path) -> Result<Vault<Locked>, Exit> {
    Vault::open(store).map_err(|e| {
        let pid = std::fs::read_to_string(store.join(PID_FILE)).ok();
        match pid {
            Some(pid) if e.kind() == ErrorKind::Io => Exit::failure(format!(
                "{} is mounted (daemon pid {}): unmount it first ({e})",
                store.display(),
                pid.trim()
            )),
            _ => e.into(),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_octal() {
        assert_eq!(super::unescape("/mnt/my\\040vault"), "/mnt/my vault");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
