//! The on-disk format, pure encode/decode with no I/O and no keys: the vault
//! header, the plaintext records sealed inside store values, the store key
//! layout and the AAD constructions. docs/FORMAT.md is the byte-level spec;
//! every layout here repeats its table in one comment line.

pub mod approval;
mod codec;
mod factors;
mod header;
pub mod keys;
mod records;
pub mod segment;
mod share;
pub mod succession;
pub mod time;

pub use codec::{Reader, Writer, hex, unhex, unhex_array};
pub use factors::{Factor, Fido2Factor, decode_factors, encode_factors};
#[cfg(any(test, feature = "internals"))]
pub use factors::{FACTOR_FIDO2, FACTOR_RECOVERY, FACTOR_TPM};
pub use header::{FEATURE_RUNS, FEATURE_SEGMENTS, FEATURE_TPM_ANCHOR, FORMAT_VERSION, Header, KDF_LIMITS, KeySlot, MAX_SLOTS, PASSPHRASE_LEVELS, RecoverySlot, SLOT_KIND_FACTORS, SLOT_KIND_PASSPHRASE, WRAPPED_KEY_LEN, validate_block_size};
#[cfg(any(test, feature = "internals"))]
pub use header::{FEATURE_RECOVERY, FEATURES_KNOWN, HEADER_MAGIC, KdfLimits};
pub use records::{
    DirentRecord, FileKind, InodeRecord, MAX_NAME_LEN, MAX_SYMLINK_LEN, MAX_XATTR_VALUE_LEN, RawKey,
    Timestamp, TombstoneRecord, XattrRecord,
};
pub use share::EscrowShare;
#[cfg(any(test, feature = "internals"))]
pub use share::SHARE_PREFIX;

/// A decode error: what was being decoded and why it is unacceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the named field.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// Bytes were left after the last field.
    #[error("{0}: {1} trailing bytes")]
    Trailing(&'static str, usize),
    /// Not a vaultfs header.
    #[error("not a vaultfs vault (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// Feature flags this build does not know; refusing is the only safe choice.
    #[error("unknown feature flags {0:#x}; a newer vaultfs wrote this vault")]
    UnknownFeatures(u64),
    /// A field holds a value outside its allowed range.
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

pub(crate) fn invalid(field: &'static str, why: impl Into<String>) -> Error {
    Error::Invalid { field, why: why.into() }
}

/// AAD domain labels: each sealed object kind has its own, so a value of one
/// kind can never authenticate as another.
pub mod aad {
    use super::FORMAT_VERSION;

    pub const MASTER: &[u8] = b"vaultfs/v1/aad/master";
    pub const LEVEL_KEY: &[u8] = b"vaultfs/v1/aad/level-key";
    pub const AUDIT_KEY: &[u8] = b"vaultfs/v1/aad/audit-key";
    pub const INODE: &[u8] = b"vaultfs/v1/aad/inode";
    pub const DIRENT: &[u8] = b"vaultfs/v1/aad/dirent";
    pub const XATTR: &[u8] = b"vaultfs/v1/aad/xattr";
    pub const BLOCK: &[u8] = b"vaultfs/v1/aad/block";
    /// Blocks in segment files (feature `FEATURE_SEGMENTS`).
    pub const BLOCK_V2: &[u8] = b"vaultfs/v2/aad/block";
    pub const AUDIT_LEAF: &[u8] = b"vaultfs/v1/aad/audit-leaf";
    pub const AUDIT_LEAVES: &[u8] = b"vaultfs/v1/aad/audit-leaves";
    /// The list of archive files under the audit archive base (`E`).
    pub const AUDIT_ARCHIVES: &[u8] = b"vaultfs/v1/aad/audit-archives";
    pub const TOMBSTONE: &[u8] = b"vaultfs/v1/aad/tombstone";
    /// The master key wrapped under the escrow recovery key.
    pub const RECOVERY: &[u8] = b"vaultfs/v1/aad/recovery";
    pub const ROTATION: &[u8] = b"vaultfs/v1/aad/rotation";
    /// The owner's will (`W`, dead-man succession).
    pub const SUCCESSION: &[u8] = b"vaultfs/v1/aad/succession";
    /// What one host holds of a file's locks, published in etcd (cluster vaults).
    pub const FILE_LOCKS: &[u8] = b"vaultfs/v1/aad/file-locks";
    pub const VAULT_POLICY: &[u8] = b"vaultfs/v1/aad/vault-policy";
    /// An open waiting for approval on one host, and a decision on it made
    /// on another (cluster vaults).
    pub const APPROVAL_REQUEST: &[u8] = b"vaultfs/v1/aad/approval-request";
    pub const APPROVAL_DECISION: &[u8] = b"vaultfs/v1/aad/approval-decision";
    /// When an open at a level was last approved, on any host (cooldowns).
    pub const APPROVAL_COOLDOWN: &[u8] = b"vaultfs/v1/aad/approval-cooldown";

    /// `label ‖ u16 version ‖ parts...` with every part fixed-length or
    /// length-prefixed by the caller, so the encoding is injective.
    pub fn build(label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(label);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    /// Block AAD: `BLOCK ‖ version ‖ vault id (16) ‖ ino (8) ‖ generation (8) ‖ block number (8)`.
    pub fn block(vault_id: &[u8; 16], ino: u64, generation: u64, block: u64) -> [u8; 62] {
        let mut out = [0u8; 62];
        out[..20].copy_from_slice(BLOCK);
        out[20..22].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[22..38].copy_from_slice(vault_id);
        out[38..46].copy_from_slice(&ino.to_be_bytes());
        out[46..54].copy_from_slice(&generation.to_be_bytes());
        out[54..62].copy_from_slice(&block.to_be_bytes());
        out
    }

    /// Segment block AAD: `BLOCK_V2 ‖ u16 2 ‖ vault id (16) ‖ ino (8) ‖
    /// generation (8) ‖ block number (8) ‖ version (8)`.
    pub fn block_v2(vault_id: &[u8; 16], ino: u64, generation: u64, block: u64, version: u64) -> [u8; 70] {
        let mut out = [0u8; 70];
        out[..20].copy_from_slice(BLOCK_V2);
        out[20..22].copy_from_slice(&2u16.to_be_bytes());
        out[22..38].copy_from_slice(vault_id);
        out[38..46].copy_from_slice(&ino.to_be_bytes());
        out[46..54].copy_from_slice(&generation.to_be_bytes());
        out[54..62].copy_from_slice(&block.to_be_bytes());
        out[62..70].copy_from_slice(&version.to_be_bytes());
        out
    }
}

/// HKDF labels of the key tree (docs/CRYPTO.md).
pub mod labels {
    pub const VAULT_META: &[u8] = b"vaultfs/v1/vault-meta";
    pub const HEADER_MAC: &[u8] = b"vaultfs/v1/header-mac";
    pub const AUDIT_WRAP: &[u8] = b"vaultfs/v1/audit-wrap";
    pub const AUDIT_LEAF: &[u8] = b"vaultfs/v1/audit-leaf";
    pub const LEVEL_META: &[u8] = b"vaultfs/v1/level-meta";
    pub const LEVEL_NAMES: &[u8] = b"vaultfs/v1/level-names";
    /// Recovery key -> the key that wraps the master key in the recovery section.
    pub const RECOVERY: &[u8] = b"vaultfs/v1/recovery";
    /// Recovery key -> the secret of a recovery factor (levels escrowed with it).
    pub const RECOVERY_FACTOR: &[u8] = b"vaultfs/v1/recovery-factor";
    /// Master key -> the authorization value of the vault's TPM NV anchor.
    pub const TPM_ANCHOR: &[u8] = b"vaultfs/v1/tpm-anchor";
    /// Master key -> the key that seals the will (`W`).
    pub const SUCCESSION: &[u8] = b"vaultfs/v1/succession";
    /// Master key -> the key of a bequest's check (keyed BLAKE3).
    pub const SUCCESSION_CHECK: &[u8] = b"vaultfs/v1/succession-check";
    /// HPKE `info` of a bequest: this ‖ vault id ‖ will id.
    pub const SUCCESSION_INFO: &[u8] = b"vaultfs/v1/succession-bequest";
    /// Old level key -> the key that seals a pending rotation record (`P`).
    pub const ROTATION: &[u8] = b"vaultfs/v1/rotation";
    /// File key -> the key of its block index tags (BLAKE3-keyed, not HKDF:
    /// derived once per file operation, on the hot path).
    pub const BLOCK_INDEX: &[u8] = b"vaultfs/v2/block-index";

    /// `vaultfs/v1/rotated-file-key/` ‖ ino u64 ‖ generation u64: the new
    /// file key of an inode, from its level's rotation seed.
    pub fn rotated_file_key(ino: u64, generation: u64) -> Vec<u8> {
        let mut l = b"vaultfs/v1/rotated-file-key/".to_vec();
        l.extend_from_slice(&ino.to_be_bytes());
        l.extend_from_slice(&generation.to_be_bytes());
        l
    }

    /// `vaultfs/v1/level-factors/N`: a factor slot's wrapping key for level N.
    pub fn level_factors(n: u8) -> Vec<u8> {
        format!("vaultfs/v1/level-factors/{n}").into_bytes()
    }

    /// `vaultfs/v1/level/N`: the level-N wrapping key.
    pub fn level(n: u8) -> Vec<u8> {
        format!("vaultfs/v1/level/{n}").into_bytes()
    }
}
