//! Backup archives of a whole vault: ciphertext only, consistent, signed
//! (docs/FORMAT.md §11, docs/ADMIN.md "Backup and restore").
//!
//! - [`archive`]: the bytes (encode, streaming decode of the framing).
//! - [`make`]: writes an archive of an unlocked vault from one point-in-time
//!   snapshot (`Vault::snapshot`), signed with the vault's audit key.
//! - [`verify`]: checks an archive from its own bytes (and an optional pinned
//!   key and witness checkpoint) without any vault key.
//! - [`restore`]: verifies, then writes a new store directory from it.
//!
//! A front end (L4): it knows no fuser, clap or sled types. The mount serves
//! archives through a maker the command line hands it; the command line
//! runs `make` and `restore` for `vaultfs backup` and `vaultfs restore`.

pub mod archive;
pub mod make;
pub mod restore;
pub mod verify;

use std::path::PathBuf;

pub use make::write_archive;
#[cfg(any(test, feature = "internals"))]
pub use make::Made;
pub use restore::{Phase, Target, restore};
#[cfg(any(test, feature = "internals"))]
pub use restore::Restored;
pub use verify::Expect;
#[cfg(any(test, feature = "internals"))]
pub use verify::{Verified, verify_bytes, verify_stream};

/// Why an archive was refused or could not be made. Each message names
/// what failed and where, for the person running `vaultfs restore`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// Not an archive at all.
    #[error("not a vaultfs backup archive (bad magic)")]
    NotArchive,
    /// An archive version this build cannot read.
    #[error("archive format version {0} is not supported (this build reads version 1)")]
    Version(u16),
    /// Flags this build does not know: a newer writer relied on them.
    #[error("archive has unknown flags {0:#x}; a newer vaultfs wrote it")]
    Flags(u64),
    /// The input ended inside a field.
    #[error("archive is truncated: it ends inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    /// A field that breaks the framing rules.
    #[error("archive is damaged at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    /// Bytes after the signature.
    #[error("archive has bytes after its signature (at byte {0}): damaged or appended to")]
    Trailing(u64),
    /// The vault header inside the archive does not decode.
    #[error("archive's vault header: {0}")]
    Header(crate::format::Error),
    /// The signature over the whole archive does not verify under its key.
    #[error(
        "archive signature does not verify: the archive was altered, or was not signed by the vault's audit key"
    )]
    Signature,
    /// The archive's own checkpoint does not verify.
    #[error("archive's audit checkpoint does not verify under the vault's audit key: {0}")]
    Checkpoint(String),
    /// Signed by another key than the one the admin pinned with --pubkey.
    #[error("archive comes from another vault: it is signed by audit key {found}, not {expected} (--pubkey)")]
    OtherVault { expected: String, found: String },
    /// Authentic-looking pieces that contradict each other.
    #[error("archive is inconsistent: {0}")]
    Inconsistent(String),
    /// The witness checkpoint (--not-older-than) is not one of this vault's.
    #[error("the checkpoint given with --not-older-than {0}")]
    Witness(String),
    /// The archive's log is shorter than the witness checkpoint's.
    #[error(
        "archive is older than the checkpoint given with --not-older-than: its audit log has {archive} records, the checkpoint signed {witness}; this is a rollback to an older state, refusing"
    )]
    Older { archive: u64, witness: u64 },
    /// The archive's log and the witness disagree about the same tree size.
    #[error(
        "archive's audit log does not extend the checkpoint given with --not-older-than: {0}; a different or rewritten history, refusing"
    )]
    Fork(String),
    /// The restore target exists.
    #[error("{} already exists and is not an empty directory; restore never overwrites", .0.display())]
    Exists(PathBuf),
    /// The vault refused (snapshot, header check of the restored store).
    #[error(transparent)]
    Vault(#[from] crate::vault::Error),
    /// A store error while writing the restored store.
    #[error("writing the restored store: {0}")]
    Store(#[from] crate::store::Error),
}

impl Error {
    /// Whether the archive itself is damaged, forged, from the wrong vault,
    /// or older than the witness (as opposed to an I/O or usage problem).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Error::Io(_) | Error::Exists(_) | Error::Vault(_) | Error::Store(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests;
