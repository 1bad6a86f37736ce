//! Finding our mounts in /proc/self/mountinfo, and the daemon's pid file.

use std::path::{Path, PathBuf};

use super::exit::Exit;
use crate::vault::{ErrorKind, Locked, Vault};

/// File in the store directory holding the serving daemon's pid.
pub const PID_FILE: &str = "mount.pid";

/// The source (store path) of the vaultfs mount at `mountpoint`, if any.
pub fn store_of(mountpoint: &Path) -> Option<PathBuf> {
    // A FUSE mount whose daemon died cannot be resolved (ENOTCONN): match it
    // by the path as given, made absolute.
    let target = mountpoint.canonicalize().or_else(|_| std::path::absolute(mountpoint)).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = unescape(left.split(' ').nth(4)?);
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?, r.next()?);
        let source = PathBuf::from(unescape(source));
        let ours = matches!(fstype, "fuse" | "fuse.vaultfs") && crate::store::Store::exists(&source);
        (ours && Path::new(&point) == target).then_some(source)
    })
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
