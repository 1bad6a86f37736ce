//! Sealing to an heir's public key (dead-man succession, docs/CRYPTO.md
//! "Succession"): HPKE (RFC 9180) in base mode with the suite
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, single-shot.
//! A standard construction, so an heir can open a release with any HPKE
//! implementation given the documented `info`.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, Zeroizing};

use super::{Error, Key32};

/// Bytes of an encapsulated key (an ephemeral X25519 public key).
pub const HEIR_ENC_LEN: usize = 32;
/// Bytes a seal adds to its plaintext: the encapsulated key and the AEAD tag.
pub const HEIR_OVERHEAD: usize = HEIR_ENC_LEN + 16;

/// An heir's public key (32 bytes, X25519).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeirPublic(pub [u8; 32]);

/// An heir's private key (32 bytes, X25519; secret).
pub struct HeirSecret(Key32);

impl std::fmt::Debug for HeirSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeirSecret(..)")
    }
}

impl HeirSecret {
    /// A new key pair (RFC 9180 DeriveKeyPair over 32 random bytes).
    pub fn generate() -> Result<(HeirSecret, HeirPublic), Error> {
        let ikm = Key32::random()?;
        let (sk, pk) = X25519HkdfSha256::derive_keypair(ikm.as_bytes());
        let mut bytes = sk.to_bytes();
        let secret = Key32::from_slice(&bytes);
        bytes.as_mut_slice().zeroize();
        let secret = HeirSecret(secret?);
        Ok((secret, HeirPublic(pk.to_bytes().into())))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> HeirSecret {
        HeirSecret(Key32::from_bytes(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The public key that belongs to this private key.
    pub fn public(&self) -> Result<HeirPublic, Error> {
        let sk = private(self)?;
        Ok(HeirPublic(X25519HkdfSha256::sk_to_pk(&sk).to_bytes().into()))
    }
}

fn private(s: &HeirSecret) -> Result<<X25519HkdfSha256 as Kem>::PrivateKey, Error> {
    <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(s.0.as_bytes()).map_err(|_| Error::Auth)
}

/// Seals `plaintext` to `to`: encapsulated key (32) ‖ ciphertext ‖ tag (16).
pub fn seal_to_heir(to: &HeirPublic, info: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&to.0).map_err(|_| Error::Auth)?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        &[],
    )
    .map_err(|_| Error::Random)?;
    let mut out = Vec::with_capacity(HEIR_ENC_LEN + ct.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what `seal_to_heir` made for the key pair of `key` with the same `info`.
pub fn open_as_heir(key: &HeirSecret, info: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    if sealed.len() < HEIR_OVERHEAD {
        return Err(Error::Length(sealed.len()));
    }
    let (enc, ct) = sealed.split_at(HEIR_ENC_LEN);
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(enc).map_err(|_| Error::Auth)?;
    let sk = private(key)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ct,
        &[],
    )
    .map(Zeroizing::new)
    .map_err(|_| Error::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_only_for_the_heir_with_the_same_info() {
        let (sk, pk) = HeirSecret::generate().unwrap();
        assert_eq!(sk.public().unwrap(), pk);
        let sealed = seal_to_heir(&pk, b"info", b"the keys").unwrap();
        assert_eq!(sealed.len(), 8 + HEIR_OVERHEAD);
        assert_eq!(&open_as_heir(&sk, b"info", &sealed).unwrap()[..], b"the keys");
        assert_eq!(open_as_heir(&sk, b"other", &sealed).unwrap_err(), Error::Auth);
        let (other, _) = HeirSecret::generate().unwrap();
        assert_eq!(open_as_heir(&other, b"info", &sealed).unwrap_err(), Error::Auth);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open_as_heir(&sk, b"info", &bad).is_err(), "flip at {i} accepted");
        }
        assert_eq!(open_as_heir(&sk, b"info", &sealed[..40]).unwrap_err(), Error::Length(40));
    }

    #[test]
    fn rfc9180_keys_round_trip() {
        let (sk, pk) = HeirSecret::generate().unwrap();
        let again = HeirSecret::from_bytes(*sk.as_bytes());
        assert_eq!(again.public().unwrap(), pk);
    }
}
