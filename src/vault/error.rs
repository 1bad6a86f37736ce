//! The vault's error: one type for the whole crate API, with a kind that the
//! front ends map to errno (fs) or exit codes (cli), and a message that names
//! what failed.

use std::fmt;

use crate::{block, crypto, format, meta, store};

/// What went wrong, in terms a front end can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such file, directory or attribute holder.
    NotFound,
    /// The name already exists.
    Exists,
    /// A directory to remove or replace is not empty.
    NotEmpty,
    /// A directory where a non-directory was needed.
    IsDir,
    /// A non-directory where a directory was needed.
    NotDir,
    /// A rename or link across classification levels.
    CrossLevel,
    /// The operation is never allowed here (root entries, level directories).
    NotPermitted,
    /// Access refused (wrong uid, locked level).
    AccessDenied,
    /// The level has no hardware factor enrolled, so no key to unlock.
    NotEnrolled,
    /// A hardware factor did not yield its secret (absent, refused, wrong PIN,
    /// PCRs changed): the level stays locked.
    FactorFailed,
    /// Lockdown is on: no level above 1 unlocks until `lockdown --exit`.
    Lockdown,
    /// The caller's uid is over its open rate limit (policy): try later.
    RateLimited,
    /// A name that is empty, ".", "..", or contains '/' or NUL.
    InvalidName,
    /// A name over 255 bytes, or a symlink target over 4095.
    NameTooLong,
    /// An offset or size past the maximum file size.
    FileTooLarge,
    /// A bad argument (renaming a directory into itself, bad flags...).
    InvalidArgument,
    /// No such extended attribute.
    NoData,
    /// An extended attribute value too large.
    TooLarge,
    /// The passphrase does not unlock this vault.
    WrongPassphrase,
    /// A stored value failed authentication or does not parse: tampering or damage.
    Corrupt,
    /// The vault's format is newer or otherwise unsupported.
    Unsupported,
    /// A vault already exists where one was to be created.
    VaultExists,
    /// A key rotation was interrupted: `vaultfs rotate` must finish it first.
    RotationPending,
    /// The store is older than its rollback anchor (a copy put back).
    RolledBack,
    /// A succession release asked while the owner's check-in is within its period.
    NotDue,
    /// Storage or operating-system I/O failed.
    Io,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        let kind = match e {
            store::Error::Corrupt(_) => ErrorKind::Corrupt,
            store::Error::Missing(_) => ErrorKind::NotFound,
            store::Error::Exists(_) => ErrorKind::VaultExists,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<block::Error> for Error {
    fn from(e: block::Error) -> Self {
        match e {
            block::Error::Store(s) => s.into(),
            block::Error::TooLarge(_) => Error::new(ErrorKind::FileTooLarge, e.to_string()),
            block::Error::Random | block::Error::ReadOnly => Error::new(ErrorKind::Io, e.to_string()),
            _ => Error::new(ErrorKind::Corrupt, e.to_string()),
        }
    }
}

impl From<meta::Error> for Error {
    fn from(e: meta::Error) -> Self {
        let kind = match e {
            meta::Error::Random => ErrorKind::Io,
            _ => ErrorKind::Corrupt,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<format::Error> for Error {
    fn from(e: format::Error) -> Self {
        let kind = match e {
            format::Error::UnsupportedVersion(_) | format::Error::UnknownFeatures(_) => {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Corrupt,
        };
        Error::new(kind, format!("vault header: {e}"))
    }
}

impl From<crate::audit::log::LogError> for Error {
    fn from(e: crate::audit::log::LogError) -> Self {
        use crate::audit::log::LogError;
        let kind = match e {
            LogError::Store(ref s) if !matches!(s, store::Error::Corrupt(_)) => ErrorKind::Io,
            LogError::Range(_) => ErrorKind::InvalidArgument,
            LogError::Write(_) => ErrorKind::Io,
            _ => ErrorKind::Corrupt,
        };
        Error::new(kind, format!("audit log: {e}"))
    }
}

impl From<crypto::Error> for Error {
    fn from(e: crypto::Error) -> Self {
        let kind = match e {
            crypto::Error::Sharing(_) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

pub(crate) fn err(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message)
}
