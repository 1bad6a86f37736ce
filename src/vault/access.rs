//! Who may do what to a file: POSIX mode bits and the owner rules of
//! chmod, chown and utimes, as Linux's `generic_permission` and
//! `setattr_prepare` decide them, on the attributes as the mount presents
//! them (`OwnerMap`). The daemon checks them itself: a mount for the
//! mounting uid alone runs without the kernel's `default_permissions`, so
//! that every refusal reaches the daemon and is recorded (docs/AUDIT.md);
//! with `allow_other` the kernel checks first (its check is the only one
//! that reaches FIFOs, sockets and device nodes) and this one again. The
//! kernel also enforces what it checks outside `inode_permission` (protected
//! links, trusted.* xattrs). The level gate (who may enter a level at all)
//! and the whole order of an open's checks are here too; the rules per
//! level are in `rules.rs`. Everything here is decided without a mount
//! (tests below and in vault/tests.rs).

use std::cell::OnceCell;

use super::approval::OpenRequest;
use super::error::{Error, ErrorKind, Result, err};
use super::rules::rules;
use super::types::{Attr, FileKind, ROOT_INO, level_of_dir};
use super::{Unlocked, Vault};

pub const MAY_READ: u16 = 4;
pub const MAY_WRITE: u16 = 2;
pub const MAY_EXEC: u16 = 1;

/// Why a check failed, as the kernel would say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Mode bits do not grant the access (EACCES).
    Access,
    /// Only the owner (or root) may do this (EPERM).
    NotOwner,
}

/// The caller of one request. Supplementary groups are read from /proc
/// only when a check needs them (rarely: the owner and the primary group
/// decide most checks).
pub struct Who {
    pub uid: u32,
    pub gid: u32,
    pid: u32,
    groups: OnceCell<Vec<u32>>,
}

impl Who {
    pub fn new(uid: u32, gid: u32, pid: u32) -> Who {
        Who { uid, gid, pid, groups: OnceCell::new() }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid
            || self.groups.get_or_init(|| crate::sys::supplementary_groups(self.pid)).contains(&gid)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::Access => err(ErrorKind::AccessDenied, "permission denied by the file's mode"),
            Refusal::NotOwner => err(ErrorKind::NotPermitted, "only the owner may do this"),
        }
    }
}

/// The owner every file shows on the mount (`-o uid=,gid=`; None: its own).
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnerMap {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The owner and mode a check sees (the attributes as presented, after
/// any `-o uid=,gid=` mapping).
#[derive(Clone, Copy, Debug)]
struct Mode {
    uid: u32,
    gid: u32,
    perm: u16,
    kind: FileKind,
}

impl Mode {
    fn of(a: &Attr, map: OwnerMap) -> Mode {
        Mode { uid: map.uid.unwrap_or(a.uid), gid: map.gid.unwrap_or(a.gid), perm: a.perm, kind: a.kind }
    }
}

/// `generic_permission`: may `who` access a file of mode `m` for `want`
/// (a mask of MAY_READ, MAY_WRITE, MAY_EXEC)?
fn check(who: &Who, m: Mode, want: u16) -> std::result::Result<(), Refusal> {
    let want = want & 0o7;
    if who.is_root() {
        // Root reads and writes anything; it executes a non-directory only
        // if someone may.
        let exec_ok = m.kind == FileKind::Dir || m.perm & 0o111 != 0;
        return if want & MAY_EXEC == 0 || exec_ok { Ok(()) } else { Err(Refusal::Access) };
    }
    let (group, other) = ((m.perm >> 3) & 0o7, m.perm & 0o7);
    let granted = if who.uid == m.uid {
        (m.perm >> 6) & 0o7
    } else if (group ^ other) & want == 0 {
        // Group and other agree on what is asked: membership cannot matter.
        other
    } else if who.in_group(m.gid) {
        group
    } else {
        other
    };
    if want & !granted == 0 { Ok(()) } else { Err(Refusal::Access) }
}

/// What a setattr asks for, as the checks see it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttrChange {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// A size change without an open file handle (truncate(2), not ftruncate).
    pub size_by_path: bool,
    /// Times set to explicit values.
    pub times_explicit: bool,
    /// Times set to "now" only.
    pub times_now: bool,
}

/// `setattr_prepare`: may `who` make `change` to a file of mode `m`? Returns
/// the mode to store when a chmod must drop the set-group-ID bit (a caller
/// outside the file's group), as Linux does silently.
fn check_setattr(who: &Who, m: Mode, change: &AttrChange) -> std::result::Result<Option<u16>, Refusal> {
    let owner = who.is_root() || who.uid == m.uid;
    if change.uid.is_some_and(|u| u != m.uid) && !who.is_root() {
        return Err(Refusal::NotOwner);
    }
    if let Some(g) = change.gid
        && g != m.gid
        && !(who.is_root() || (who.uid == m.uid && who.in_group(g)))
    {
        return Err(Refusal::NotOwner);
    }
    if change.uid.is_some() || change.gid.is_some() {
        // chown to the same ids: the owner may.
        if !owner {
            return Err(Refusal::NotOwner);
        }
    }
    let mut mode = change.mode;
    if let Some(p) = change.mode {
        // After a write by someone else, the kernel clears the set-ID bits
        // with a setattr in the writer's name: a writer may do just that.
        let clears_set_id_only = p != m.perm && p == m.perm & !0o6000;
        if !owner && clears_set_id_only {
            check(who, m, MAY_WRITE)?;
        } else if !owner {
            return Err(Refusal::NotOwner);
        }
        let group = change.gid.unwrap_or(m.gid);
        if p & 0o2000 != 0 && !who.is_root() && !who.in_group(group) {
            mode = Some(p & !0o2000);
        }
    }
    if change.times_explicit && !owner {
        return Err(Refusal::NotOwner);
    }
    if change.times_now && !owner {
        check(who, m, MAY_WRITE)?;
    }
    if change.size_by_path {
        check(who, m, MAY_WRITE)?;
    }
    Ok(mode)
}

/// One caller's permission checks against the vault.
pub struct Access<'v> {
    vault: &'v Vault<Unlocked>,
    who: Who,
    map: OwnerMap,
}

impl Vault<Unlocked> {
    /// The checks of caller `who` on a mount presenting owners through `map`.
    pub fn access(&self, who: Who, map: OwnerMap) -> Access<'_> {
        Access { vault: self, who, map }
    }
}

impl Access<'_> {
    /// The level gate: may the caller enter content at `level` (None: the
    /// root)? An owner-only level answers only the uid that unlocked the
    /// vault; a closed level (locked, in lockdown, its factor absent)
    /// answers no one. Entering counts as use (idle relocking).
    pub fn enter(&self, level: Option<u8>) -> Result<()> {
        let Some(l) = level else { return Ok(()) };
        let owner = self.vault.owner_uid();
        if rules(Some(l)).owner_only && self.who.uid != owner {
            return Err(err(ErrorKind::AccessDenied, format!("level {l} is private to uid {owner}")));
        }
        let core = self.vault.core();
        if !core.level_open(l) {
            return Err(err(
                ErrorKind::AccessDenied,
                format!("level {l} is {}", self.vault.level_state(l).name()),
            ));
        }
        core.touch_level(l);
        Ok(())
    }

    /// Every rule an open of vault file `ino` (at `level`, for `want`)
    /// must pass, in this order: the level gate (the root and the level
    /// directories are visible to everyone the mount admits), mode bits,
    /// the policy's demand for a justification, the caller's open budget,
    /// and a human's approval where the level needs one (`describe` names
    /// the caller's process and the file's path for that human: called only
    /// then).
    pub fn open(
        &self,
        ino: u64,
        level: Option<u8>,
        want: u16,
        justification: &[u8],
        describe: impl FnOnce() -> (Vec<u8>, Vec<u8>),
    ) -> Result<()> {
        if ino != ROOT_INO && level_of_dir(ino).is_none() {
            self.enter(level)?;
        }
        self.permit(ino, want)?;
        if justification.is_empty() && level.is_some_and(|l| self.vault.needs_justification(l)) {
            return Err(err(
                ErrorKind::AccessDenied,
                "the policy wants a justification for opens at this level",
            ));
        }
        self.vault.admit_open(self.who.uid)?;
        if let Some(level) = level.filter(|l| self.vault.needs_approval(*l)) {
            let (comm, path) = describe();
            let who = &self.who;
            let open = OpenRequest {
                level,
                pid: who.pid,
                uid: who.uid,
                comm: &comm,
                path: &path,
                ino,
                justification,
            };
            self.vault.await_approval(&open)?;
        }
        Ok(())
    }

    fn mode(&self, ino: u64) -> Result<Mode> {
        Ok(Mode::of(&self.vault.getattr(ino)?, self.map))
    }

    /// May the caller access inode `ino` for `want` (MAY_READ | MAY_WRITE |
    /// MAY_EXEC)? Root reads and writes anything, without loading the inode.
    pub fn permit(&self, ino: u64, want: u16) -> Result<()> {
        if self.who.is_root() && want & MAY_EXEC == 0 {
            return Ok(());
        }
        Ok(check(&self.who, self.mode(ino)?, want)?)
    }

    /// Search (plus `also`) on directory `dir`; root may always search a
    /// directory, so its requests skip the inode load.
    pub fn search(&self, dir: u64, also: u16) -> Result<()> {
        if self.who.is_root() {
            return Ok(());
        }
        self.permit(dir, MAY_EXEC | also)
    }

    /// Adding a name to `dir` needs write and search on it.
    pub fn change_in(&self, dir: u64) -> Result<()> {
        self.search(dir, MAY_WRITE)
    }

    /// Removing (or replacing) `name` in `dir`: write and search on it, and
    /// in a sticky directory only the owner of the entry or of the
    /// directory (or root) may.
    pub fn remove(&self, dir: u64, name: &[u8]) -> Result<()> {
        self.change_in(dir)?;
        let d = self.mode(dir)?;
        if d.perm & 0o1000 == 0 || self.who.is_root() || d.uid == self.who.uid {
            return Ok(());
        }
        match self.vault.lookup(dir, name) {
            Ok(v) if Mode::of(&v, self.map).uid != self.who.uid => Err(Refusal::NotOwner.into()),
            _ => Ok(()),
        }
    }

    /// May the caller make `change` to `ino`? The mode to store when a
    /// chmod must drop the set-group-ID bit (see `check_setattr`).
    pub fn setattr(&self, ino: u64, change: &AttrChange) -> Result<Option<u16>> {
        Ok(check_setattr(&self.who, self.mode(ino)?, change)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, gid: u32, perm: u16) -> Mode {
        Mode { uid, gid, perm, kind: FileKind::File }
    }

    fn who(uid: u32, gid: u32) -> Who {
        let w = Who::new(uid, gid, 0);
        // No /proc lookups in unit tests: no supplementary groups.
        w.groups.set(vec![]).unwrap();
        w
    }

    #[test]
    fn owner_class_decides_even_when_others_have_more() {
        assert_eq!(check(&who(1, 1), m(1, 1, 0o077), MAY_READ), Err(Refusal::Access));
        assert_eq!(check(&who(2, 1), m(1, 1, 0o070), MAY_READ), Ok(()));
        assert_eq!(check(&who(2, 1), m(1, 1, 0o707), MAY_READ), Err(Refusal::Access));
        assert_eq!(check(&who(3, 3), m(1, 1, 0o004), MAY_READ), Ok(()));
        assert_eq!(check(&who(3, 3), m(1, 1, 0o644), MAY_WRITE), Err(Refusal::Access));
    }

    #[test]
    fn supplementary_groups_count() {
        let w = Who::new(5, 5, 0);
        w.groups.set(vec![7]).unwrap();
        assert_eq!(check(&w, m(1, 7, 0o060), MAY_READ | MAY_WRITE), Ok(()));
        assert_eq!(check(&w, m(1, 8, 0o060), MAY_READ), Err(Refusal::Access));
    }

    #[test]
    fn root_needs_an_x_bit_to_execute_a_file() {
        assert_eq!(check(&who(0, 0), m(1, 1, 0o000), MAY_READ | MAY_WRITE), Ok(()));
        assert_eq!(check(&who(0, 0), m(1, 1, 0o600), MAY_EXEC), Err(Refusal::Access));
        assert_eq!(check(&who(0, 0), m(1, 1, 0o001), MAY_EXEC), Ok(()));
        let dir = Mode { kind: FileKind::Dir, ..m(1, 1, 0) };
        assert_eq!(check(&who(0, 0), dir, MAY_EXEC), Ok(()));
    }

    #[test]
    fn setattr_owner_rules() {
        let file = m(1, 1, 0o666);
        let chmod = AttrChange { mode: Some(0o600), ..Default::default() };
        assert_eq!(check_setattr(&who(2, 2), file, &chmod), Err(Refusal::NotOwner));
        let kill_suid = AttrChange { mode: Some(0o757), ..Default::default() };
        assert_eq!(check_setattr(&who(2, 2), m(1, 1, 0o4757), &kill_suid), Ok(Some(0o757)), "a writer");
        assert_eq!(
            check_setattr(
                &who(2, 2),
                m(1, 1, 0o4755),
                &AttrChange { mode: Some(0o755), ..Default::default() }
            ),
            Err(Refusal::Access)
        );
        assert_eq!(check_setattr(&who(1, 1), file, &chmod), Ok(Some(0o600)));
        let chown = AttrChange { uid: Some(2), ..Default::default() };
        assert_eq!(check_setattr(&who(1, 1), file, &chown), Err(Refusal::NotOwner));
        assert_eq!(check_setattr(&who(0, 0), file, &chown), Ok(None));
        let chgrp = AttrChange { gid: Some(9), ..Default::default() };
        assert_eq!(check_setattr(&who(1, 1), file, &chgrp), Err(Refusal::NotOwner));
        let sgid = AttrChange { mode: Some(0o2755), ..Default::default() };
        assert_eq!(check_setattr(&who(1, 5), file, &sgid), Ok(Some(0o755)), "not in the group");
        assert_eq!(check_setattr(&who(1, 1), file, &sgid), Ok(Some(0o2755)));
        let touch = AttrChange { times_now: true, ..Default::default() };
        assert_eq!(check_setattr(&who(2, 2), file, &touch), Ok(()).map(|()| None), "writable: may touch");
        assert_eq!(check_setattr(&who(2, 2), m(1, 1, 0o644), &touch), Err(Refusal::Access));
        let utimes = AttrChange { times_explicit: true, ..Default::default() };
        assert_eq!(check_setattr(&who(2, 2), file, &utimes), Err(Refusal::NotOwner));
        let truncate = AttrChange { size_by_path: true, ..Default::default() };
        assert_eq!(check_setattr(&who(2, 2), m(1, 1, 0o644), &truncate), Err(Refusal::Access));
    }
}
