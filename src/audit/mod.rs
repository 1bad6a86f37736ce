//! The tamper-evident audit log, specified byte for byte in docs/AUDIT.md.
//!
//! - [`merkle`]: the RFC 9162 tree over BLAKE3, its frontier and proofs.
//! - [`leaf`]: one record ([`leaf::Leaf`]) and its canonical encoding.
//! - [`checkpoint`]: C2SP signed-note checkpoints, Ed25519 over the tree head.
//! - [`export`]: the `.audit` text (one JSON object per line).
//! - [`archive`]: the base line of an export that starts after leaf 0 (the
//!   live part of an archived log, or an archive file).
//! - [`verify`]: the offline verifier of an export, and the chain check a
//!   store-side verifier runs over every stored leaf and checkpoint.
//!
//! - [`log`]: the log as stored in the vault: sealed leaves, tree nodes,
//!   frontier and signed checkpoints, appended in O(log n).
//!
//! All but `log` are pure: bytes in, bytes or verdicts out. Deciding what
//! to log belongs to the layers above.

pub mod archive;
pub mod checkpoint;
pub mod export;
pub mod leaf;
pub mod log;
pub mod merkle;
pub mod verify;

#[cfg(test)]
mod vectors;

/// What can go wrong in the audit layer. Messages are meant for a human
/// reading `vaultfs audit verify` output, so each names where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are not a canonical leaf encoding.
    #[error("bad leaf encoding: {0}")]
    LeafEncoding(&'static str),
    /// A checkpoint note that does not follow the signed-note format.
    #[error("checkpoint: malformed note: {0}")]
    NoteMalformed(&'static str),
    /// A checkpoint for another vault than the one expected.
    #[error("checkpoint: origin is {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    /// No signature line names our key.
    #[error("checkpoint: no signature by key {0:?}")]
    SignatureMissing(String),
    /// Signature lines name our key but carry another key's id.
    #[error("checkpoint: wrong key id for key {0:?}")]
    KeyIdMismatch(String),
    /// The signature by our key does not verify over the note's body.
    #[error("checkpoint: signature invalid")]
    SignatureInvalid,
    /// The input is not an `.audit` export at all (empty, not text, not JSON lines).
    #[error("not an audit export: {0}")]
    NotExport(String),
    /// The leaf at this position (0-based, = its expected index) is wrong.
    #[error("leaf {index}: {problem}")]
    Leaf { index: u64, problem: String },
    /// The export's checkpoint line is missing, misplaced or malformed.
    #[error("checkpoint: {0}")]
    CheckpointLine(String),
    /// The checkpoint does not commit to exactly the leaves present.
    #[error("checkpoint covers {covered} leaves but the file has {present}")]
    Coverage { covered: u64, present: u64 },
    /// The checkpoint's root is not the root recomputed from the leaves.
    #[error("checkpoint: root does not match the {size} leaves")]
    RootMismatch { size: u64 },
    /// One file of a chain of archives and `.audit` copies is wrong.
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
    /// Checkpoint number `position` (0-based) of a chain is inconsistent with the leaves.
    #[error("checkpoint {position} (size {size}): {problem}")]
    Chain { position: usize, size: u64, problem: String },
}
