//! XChaCha20-Poly1305 with a random 24-byte nonce per seal.
//! Sealed layout: nonce (24) ‖ ciphertext (len of plaintext) ‖ tag (16).

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::{Error, Key32, random_bytes};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const SEALED_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

fn cipher(key: &Key32) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.as_bytes().into())
}

/// Appends `nonce ‖ ciphertext ‖ tag` of `plaintext` to `out` (one copy of the
/// plaintext, encrypted in place there; no other allocation when `out` has room).
pub fn seal_into(key: &Key32, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    out.reserve(plaintext.len() + SEALED_OVERHEAD);
    out.resize(start + NONCE_LEN, 0);
    random_bytes(&mut out[start..start + NONCE_LEN])?;
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(start + NONCE_LEN);
    let nonce = XNonce::try_from(&head[start..]).expect("nonce slice is NONCE_LEN bytes");
    let tag = cipher(key)
        .encrypt_inout_detached(&nonce, aad, body.into())
        .map_err(|_| Error::Length(plaintext.len()))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// `nonce ‖ ciphertext ‖ tag` of `plaintext` in a new vector.
pub fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
    seal_into(key, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Authenticates and decrypts `sealed` into `out`, which must be exactly the
/// plaintext length. On failure `out` is zeroed: no unauthenticated byte escapes.
pub fn open_in_place(key: &Key32, aad: &[u8], sealed: &[u8], out: &mut [u8]) -> Result<(), Error> {
    if sealed.len() != out.len() + SEALED_OVERHEAD {
        return Err(Error::Length(sealed.len()));
    }
    let nonce = XNonce::try_from(&sealed[..NONCE_LEN]).expect("length checked above");
    let ct_end = sealed.len() - TAG_LEN;
    let tag = Tag::try_from(&sealed[ct_end..]).expect("length checked above");
    // Decrypt straight from the sealed bytes into `out`: no intermediate copy.
    let buf = InOutBuf::new(&sealed[NONCE_LEN..ct_end], out).expect("lengths checked above");
    if cipher(key).decrypt_inout_detached(&nonce, aad, buf, &tag).is_err() {
        out.fill(0);
        return Err(Error::Auth);
    }
    Ok(())
}

/// Authenticates and decrypts a sealed value of any length.
pub fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let len = sealed.len().checked_sub(SEALED_OVERHEAD).ok_or(Error::Length(sealed.len()))?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    open_in_place(key, aad, sealed, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = Key32::random().unwrap();
        let sealed = seal(&key, b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEALED_OVERHEAD);
        assert_eq!(&open(&key, b"aad", &sealed).unwrap()[..], b"hello");
        assert_eq!(open(&key, b"other", &sealed).unwrap_err(), Error::Auth);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&key, b"aad", &bad).unwrap_err(), Error::Auth);
        }
        assert!(matches!(open(&key, b"aad", &sealed[..10]), Err(Error::Length(10))));
    }

    #[test]
    fn nonces_differ() {
        let key = Key32::random().unwrap();
        let a = seal(&key, b"", b"x").unwrap();
        let b = seal(&key, b"", b"x").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }
}
