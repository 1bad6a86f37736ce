//! Plain SHA-256 and HMAC-SHA-256, for formats that name them (the C2SP
//! signed-note key id; CTAP2 hmac-secret), and streaming unkeyed BLAKE3 (the
//! backup archive digest).

use std::io::Write;

use sha2::{Digest, Sha256};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA-256 of `data` under `key` (RFC 2104): the software FIDO2
/// authenticator's hmac-secret (a USB key computes its own).
#[cfg(any(test, feature = "internals", feature = "soft-fido2"))]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Unkeyed BLAKE3 (32-byte output) over data fed in pieces.
#[derive(Clone, Default)]
pub struct Blake3(blake3::Hasher);

impl Blake3 {
    pub fn new() -> Self {
        Blake3(blake3::Hasher::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finalize(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// Unkeyed BLAKE3 of `data`.
pub fn blake3_of(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// Compares two tags in time independent of where they differ.
pub fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Writes through to `inner`, hashing (BLAKE3) and counting what passes:
/// a file's digest computed as it is written (backup and audit archives).
pub struct HashingWriter<W> {
    inner: W,
    hash: Blake3,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hash: Blake3::new(), written: 0 }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn digest(&self) -> [u8; 32] {
        self.hash.finalize()
    }

    /// The inner writer, to append what is not hashed (the signature).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // FIPS 180-2 appendix B.1.
        let d = sha256(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(d[28..], [0xf2, 0x00, 0x15, 0xad]);
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let d = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(d[..4], [0x5b, 0xdc, 0xc1, 0x46]);
        assert_eq!(d[28..], [0x64, 0xec, 0x38, 0x43]);
    }

    #[test]
    fn blake3_streams() {
        let mut h = Blake3::new();
        h.update(b"ab");
        h.update(b"c");
        // BLAKE3 of "abc" (the reference implementation's test vectors).
        assert_eq!(h.finalize()[..4], [0x64, 0x37, 0xb3, 0xac]);
    }
}
