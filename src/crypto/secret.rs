//! Secret holders: zeroized on drop, never shown by `Debug`, best-effort mlocked.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::Error;

/// A 32-byte symmetric key. Heap-boxed so its address is stable for `mlock`
/// and moves do not leave copies behind.
pub struct Key32(Option<Box<[u8; 32]>>);

/// Boxes already `mlock`ed and zeroized, kept per thread for the next key:
/// every FUSE request makes short-lived keys (a file key, its index key), and
/// an `mlock` syscall for each cost as much as decrypting the inode.
const SPARE_BOXES: usize = 8;

thread_local! {
    // Boxes, not values in the Vec: each box's page is the one that was locked.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<[u8; 32]>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A locked, zeroed box: a spare one, or a new one locked now.
fn locked_box() -> Box<[u8; 32]> {
    SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| {
        let b = Box::new([0u8; 32]);
        crate::sys::lock_memory(&b[..]);
        b
    })
}

impl Key32 {
    /// Takes ownership of key bytes; the caller's copy should be zeroized.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let mut boxed = locked_box();
        boxed.copy_from_slice(&bytes);
        bytes.zeroize();
        Key32(Some(boxed))
    }

    /// A fresh key from the operating system's random source.
    pub fn random() -> Result<Self, Error> {
        let mut k = Key32(Some(locked_box()));
        getrandom::fill(&mut k.bytes_mut()[..]).map_err(|_| Error::Random)?;
        Ok(k)
    }

    /// Reads a key out of a decrypted buffer (exactly 32 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Length(bytes.len()))?;
        Ok(Self::from_bytes(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_ref().expect("a key's box is taken only by drop")
    }

    fn bytes_mut(&mut self) -> &mut [u8; 32] {
        self.0.as_mut().expect("a key's box is taken only by drop")
    }
}

impl Clone for Key32 {
    fn clone(&self) -> Self {
        Key32::from_bytes(*self.as_bytes())
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        if let Some(mut b) = self.0.take() {
            b.zeroize();
            // Back to this thread's spares (still locked); freed when full.
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < SPARE_BOXES {
                    s.push(b);
                }
            });
        }
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
