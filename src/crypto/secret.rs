//! Secret holders: zeroized on drop, never shown by `Debug`, best-effort mlocked.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::Error;

/// A 32-byte symmetric key. Heap-boxed so its address is stable for `mlock`
/// and moves do not leave copies behind.
pub struct Key32(Box<[u8; 32]>);

impl Key32 {
    /// Takes ownership of key bytes; the caller's copy should be zeroized.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let boxed = Box::new(bytes);
        bytes.zeroize();
        crate::sys::lock_memory(boxed.as_ptr(), 32);
        Key32(boxed)
    }

    /// A fresh key from the operating system's random source.
    pub fn random() -> Result<Self, Error> {
        let mut k = Key32(Box::new([0u8; 32]));
        crate::sys::lock_memory(k.0.as_ptr(), 32);
        getrandom::fill(&mut k.0[..]).map_err(|_| Error::Random)?;
        Ok(k)
    }

    /// Reads a key out of a decrypted buffer (exactly 32 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Length(bytes.len()))?;
        Ok(Self::from_bytes(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Clone for Key32 {
    fn clone(&self) -> Self {
        Key32::from_bytes(*self.0)
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// A passphrase as typed by the user; zeroized on drop.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    pub fn new(bytes: Vec<u8>) -> Self {
        Passphrase(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// `N` random bytes (nonces, salts, ids: not secrets).
pub fn random_array<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Random)?;
    Ok(out)
}

/// Fills `out` with random bytes.
pub fn random_bytes(out: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(out).map_err(|_| Error::Random)
}
