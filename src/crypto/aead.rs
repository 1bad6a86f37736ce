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

/// Nonces are public, so they may be drawn from the OS CSPRNG in bulk: each
/// thread fetches 4 KiB at a time (one `getrandom` call per 170 nonces instead
/// of one per seal) and hands every byte out once. A forked child never reuses
/// its parent's bytes: the pool is refilled when `sys::fork_generation`
/// changes (an atomic load, where `getpid` was a syscall per seal).
struct NoncePool {
    buf: [u8; 4096],
    pos: usize,
    forks: u64,
}

thread_local! {
    static NONCES: std::cell::RefCell<NoncePool> =
        const { std::cell::RefCell::new(NoncePool { buf: [0; 4096], pos: 4096, forks: 0 }) };
}

fn fill_nonce(out: &mut [u8]) -> Result<(), Error> {
    NONCES.with(|pool| {
        let mut p = pool.borrow_mut();
        let forks = crate::sys::fork_generation();
        if p.forks != forks || p.pos + out.len() > p.buf.len() {
            random_bytes(&mut p.buf)?;
            p.pos = 0;
            p.forks = forks;
        }
        let at = p.pos;
        out.copy_from_slice(&p.buf[at..at + out.len()]);
        p.pos += out.len();
        Ok(())
    })
}

fn cipher(key: &Key32) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.as_bytes().into())
}

/// Appends `nonce ‖ ciphertext ‖ tag` of `plaintext` to `out` (one copy of the
/// plaintext, encrypted in place there; no other allocation when `out` has room).
pub fn seal_into(key: &Key32, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    out.reserve(plaintext.len() + SEALED_OVERHEAD);
    out.resize(start + NONCE_LEN, 0);
    fill_nonce(&mut out[start..start + NONCE_LEN])?;
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(start + NONCE_LEN);
    let nonce = XNonce::try_from(&head[start..]).expect("nonce slice is NONCE_LEN bytes");
    let tag = cipher(key)
        .encrypt_inout_detached(&nonce, aad, body.into())
        .map_err(|_| Error::Length(plaintext.len()))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Writes `nonce ‖ ciphertext ‖ tag` of `plaintext` into `out`, which must be
/// exactly `plaintext.len() + SEALED_OVERHEAD` bytes (encrypts straight from
/// the plaintext into place: no copy).
pub fn seal_to(key: &Key32, aad: &[u8], plaintext: &[u8], out: &mut [u8]) -> Result<(), Error> {
    if out.len() != plaintext.len() + SEALED_OVERHEAD {
        return Err(Error::Length(out.len()));
    }
    let (nonce_bytes, rest) = out.split_at_mut(NONCE_LEN);
    fill_nonce(nonce_bytes)?;
    let nonce = XNonce::try_from(&*nonce_bytes).expect("nonce slice is NONCE_LEN bytes");
    let (body, tag_out) = rest.split_at_mut(plaintext.len());
    let buf = InOutBuf::new(plaintext, body).expect("lengths checked above");
    let tag =
        cipher(key).encrypt_inout_detached(&nonce, aad, buf).map_err(|_| Error::Length(plaintext.len()))?;
    tag_out.copy_from_slice(&tag);
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
    fn seal_to_matches_seal_into() {
        let key = Key32::random().unwrap();
        let mut out = vec![0u8; 7 + SEALED_OVERHEAD];
        seal_to(&key, b"aad", b"payload", &mut out).unwrap();
        assert_eq!(&open(&key, b"aad", &out).unwrap()[..], b"payload");
        assert!(seal_to(&key, b"aad", b"payload", &mut out[1..]).is_err());
    }

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
    fn nonces_differ_across_pool_refills() {
        let key = Key32::random().unwrap();
        let mut seen = std::collections::HashSet::new();
        // 1000 seals cross several 4 KiB pool refills.
        for _ in 0..1000 {
            let v = seal(&key, b"", b"x").unwrap();
            assert!(seen.insert(v[..NONCE_LEN].to_vec()), "nonce repeated");
        }
    }
}
