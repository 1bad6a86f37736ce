//! Cryptographic primitives, pure and small: the AEAD, the key derivations and
//! the secret types. Nothing here knows about files, inodes or the store.
//!
//! Owns the crates chacha20poly1305, argon2, hkdf, hmac, sha2, blake3 (keyed hashing),
//! ed25519-dalek, getrandom and zeroize's wrappers for secrets; `shamir` owns
//! vsss-rs and rand_core; `heir` owns hpke (sealing to an heir's X25519 key).

mod aead;
mod digest;
mod heir;
mod kdf;
mod secret;
pub mod shamir;
mod sign;

pub use aead::{SEALED_OVERHEAD, open, open_in_place, seal, seal_into, seal_to};
#[cfg(any(test, feature = "internals"))]
pub use aead::{NONCE_LEN, TAG_LEN};
pub use digest::{Blake3, HashingWriter, blake3_of, sha256, tags_equal};
#[cfg(any(test, feature = "internals", feature = "soft-fido2"))]
pub use digest::hmac_sha256;
pub use heir::{HEIR_OVERHEAD, HeirPublic, HeirSecret, open_as_heir, seal_to_heir};
pub use kdf::{KdfParams, KeyedHash, argon2id, hkdf};
pub use secret::{Key32, Passphrase, random_array, random_bytes};
pub use sign::{SigningKey, VerifyingKey, verify};

/// What can go wrong in a primitive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The AEAD tag did not verify: wrong key, wrong AAD, or altered bytes.
    #[error("authentication failed")]
    Auth,
    /// A sealed value is shorter than nonce + tag, or not the expected length.
    #[error("sealed value has a bad length ({0} bytes)")]
    Length(usize),
    /// Argon2id refused its parameters.
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// A signature or public key did not verify.
    #[error("signature invalid")]
    Signature,
    /// Secret sharing refused its parameters or shares.
    #[error("secret sharing: {0}")]
    Sharing(String),
}
