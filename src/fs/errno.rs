//! The one place vault errors become errno values.

use fuser::Errno;

use crate::vault::{Error, ErrorKind};

/// What the adapter's helpers return: a value or the errno to reply with.
pub type Res<T> = std::result::Result<T, Errno>;

/// A vault error as the errno the caller sees. EIO says nothing of its
/// cause, so the cause goes to the log.
pub fn e(err: Error) -> Errno {
    let errno = errno(&err);
    if errno == Errno::EIO {
        tracing::warn!("an access fails with EIO: {err}");
    }
    errno
}

pub fn errno(e: &Error) -> Errno {
    match e.kind() {
        ErrorKind::NotFound => Errno::ENOENT,
        ErrorKind::Exists | ErrorKind::VaultExists => Errno::EEXIST,
        ErrorKind::NotEmpty => Errno::ENOTEMPTY,
        ErrorKind::IsDir => Errno::EISDIR,
        ErrorKind::NotDir => Errno::ENOTDIR,
        ErrorKind::CrossLevel => Errno::EXDEV,
        ErrorKind::NotPermitted => Errno::EPERM,
        ErrorKind::AccessDenied
        | ErrorKind::NotEnrolled
        | ErrorKind::FactorFailed
        | ErrorKind::Lockdown
        | ErrorKind::NotDue => Errno::EACCES,
        ErrorKind::RateLimited => Errno::EAGAIN,
        ErrorKind::InvalidName | ErrorKind::InvalidArgument => Errno::EINVAL,
        ErrorKind::NameTooLong => Errno::ENAMETOOLONG,
        ErrorKind::FileTooLarge => Errno::EFBIG,
        ErrorKind::NoData => Errno::ENODATA,
        ErrorKind::TooLarge => Errno::E2BIG,
        ErrorKind::Unsupported => Errno::EOPNOTSUPP,
        ErrorKind::WrongPassphrase
        | ErrorKind::Corrupt
        | ErrorKind::RotationPending
        | ErrorKind::RolledBack
        | ErrorKind::Io => Errno::EIO,
    }
}
