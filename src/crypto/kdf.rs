//! Key derivation: Argon2id for passphrases, HKDF-SHA-256 for the key tree,
//! keyed BLAKE3 for lookup tags.

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use sha2::Sha256;

use super::{Error, Key32};

/// Argon2id cost parameters as recorded in the vault header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub passes: u32,
    /// Lanes (degree of parallelism).
    pub lanes: u32,
}

/// Derives the 32-byte key-encryption key from a passphrase.
/// Bounds are the caller's job (format::header checks them on read).
pub fn argon2id(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Key32, Error> {
    let p = Params::new(params.memory_kib, params.passes, params.lanes, Some(32))
        .map_err(|e| Error::Kdf(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| Error::Kdf(e.to_string()))?;
    Ok(Key32::from_bytes(out))
}

/// HKDF-SHA-256(salt, ikm) expanded with `label` to 32 bytes.
/// `ikm` may be several secrets concatenated by the caller.
pub fn hkdf(ikm: &[u8], salt: &[u8], label: &[u8]) -> Key32 {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(label, &mut out)
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    Key32::from_bytes(out)
}

/// Keyed BLAKE3: a PRF for directory and xattr tags, so the store shows no names.
pub struct KeyedHash(blake3::Hasher);

impl KeyedHash {
    pub fn new(key: &Key32) -> Self {
        KeyedHash(blake3::Hasher::new_keyed(key.as_bytes()))
    }

    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    pub fn finalize16(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.0.finalize().as_bytes()[..16]);
        out
    }

    pub fn finalize32(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_is_deterministic_and_salted() {
        let p = KdfParams { memory_kib: 64, passes: 1, lanes: 1 };
        let a = argon2id(b"pw", b"saltsaltsaltsalt", p).unwrap();
        let b = argon2id(b"pw", b"saltsaltsaltsalt", p).unwrap();
        let c = argon2id(b"pw", b"othersaltothersa", p).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
    }

    #[test]
    fn hkdf_labels_separate_keys() {
        let a = hkdf(b"ikm", b"salt", b"vaultfs/v1/level/1");
        let b = hkdf(b"ikm", b"salt", b"vaultfs/v1/level/2");
        assert_ne!(a.as_bytes(), b.as_bytes());
    }
}
