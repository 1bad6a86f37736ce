//! Exit codes: the only place they exist (README.md and docs/ADMIN.md list them).

use crate::vault::{Error, ErrorKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Anything not listed below.
    Failure = 1,
    /// Bad command line (clap also uses 2).
    Usage = 2,
    /// The passphrase does not unlock the vault.
    WrongPassphrase = 3,
    /// A vault exists where init was asked to create one, or none where one was expected.
    VaultPresence = 4,
    /// Stored data failed authentication or does not parse: damage or tampering
    /// (fsck: problems are left).
    Corrupt = 5,
    /// The vault was written by a newer vaultfs (version or feature flags).
    Unsupported = 6,
    /// A level stays locked: no factor enrolled, the factor failed, or lockdown
    /// (fsck: nothing damaged found, but a locked level's records were not authenticated).
    Locked = 7,
    /// fsck --repair found problems and repaired every one (a new fsck is clean).
    Repaired = 8,
    /// The mount point cannot be used: not a directory, already a vault's
    /// mount, not empty (without `-o nonempty`), or a dead FUSE mount.
    MountPoint = 9,
    /// The store is served by a running mount, and the command needs it
    /// unmounted.
    Mounted = 10,
    /// The store is older than its rollback anchor (`--witness`): a copy of
    /// the store directory was put back.
    RolledBack = 11,
    /// `succession release`: the owner checked in within the will's period.
    NotDue = 12,
}

/// A command's failure: what to print and how to exit.
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    pub message: String,
}

impl Code {
    pub const ALL: [Code; 12] = [
        Code::Failure,
        Code::Usage,
        Code::WrongPassphrase,
        Code::VaultPresence,
        Code::Corrupt,
        Code::Unsupported,
        Code::Locked,
        Code::Repaired,
        Code::MountPoint,
        Code::Mounted,
        Code::RolledBack,
        Code::NotDue,
    ];

    /// The code with this number (a daemon reports its exit as a number).
    pub fn from_u8(n: u8) -> Option<Code> {
        Self::ALL.into_iter().find(|c| *c as u8 == n)
    }

    /// What the code means, for vaultfs(1)'s EXIT STATUS.
    pub fn meaning(self) -> &'static str {
        match self {
            Code::Failure => "anything not listed below",
            Code::Usage => "bad command line, or a bad mount option",
            Code::WrongPassphrase => "the passphrase does not unlock the vault",
            Code::VaultPresence => {
                "a vault exists where init was asked to create one, or none where one was expected \
                 (also: not a mounted vault)"
            }
            Code::Corrupt => {
                "stored data failed authentication or does not parse: damage or tampering (fsck: problems are left)"
            }
            Code::Unsupported => "the vault was written by a newer vaultfs (version or feature flags)",
            Code::Locked => {
                "a level stays locked: no factor enrolled, the factor failed, or lockdown (fsck: nothing \
                 damaged found, but a locked level's records were not authenticated)"
            }
            Code::Repaired => "fsck --repair found problems and repaired every one (a new fsck is clean)",
            Code::MountPoint => {
                "the mount point cannot be used: not a directory, already a vault's mount, not empty \
                 (without -o nonempty), or a dead FUSE mount"
            }
            Code::Mounted => "the store is served by a running mount and the command needs it unmounted",
            Code::RolledBack => {
                "the store is older than its rollback anchor (the --witness file): a copy of the store was put back"
            }
            Code::NotDue => "succession release: the owner checked in within the will's period (not due yet)",
        }
    }
}

impl Exit {
    pub fn usage(message: impl Into<String>) -> Self {
        Exit { code: Code::Usage, message: message.into() }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Exit { code: Code::Failure, message: message.into() }
    }
}

impl From<Error> for Exit {
    fn from(e: Error) -> Self {
        let code = match e.kind() {
            ErrorKind::WrongPassphrase => Code::WrongPassphrase,
            ErrorKind::VaultExists | ErrorKind::NotFound => Code::VaultPresence,
            ErrorKind::Corrupt => Code::Corrupt,
            ErrorKind::RolledBack => Code::RolledBack,
            ErrorKind::NotDue => Code::NotDue,
            ErrorKind::Unsupported => Code::Unsupported,
            ErrorKind::InvalidArgument => Code::Usage,
            ErrorKind::NotEnrolled
            | ErrorKind::FactorFailed
            | ErrorKind::Lockdown
            | ErrorKind::AccessDenied => Code::Locked,
            _ => Code::Failure,
        };
        Exit { code, message: e.message }
    }
}

pub type Result = std::result::Result<(), Exit>;

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn every_code_round_trips_through_its_number() {
        for n in 1..=12u8 {
            assert_eq!(Code::from_u8(n).map(|c| c as u8), Some(n));
        }
        assert_eq!(Code::from_u8(0), None);
        assert_eq!(Code::from_u8(13), None);
    }
}
