//! Ed25519 signing for audit checkpoints.

use ed25519_dalek::{Signature, Signer};

use super::{Error, Key32};

/// An Ed25519 signing key; its seed lives in a zeroizing `Key32`.
pub struct SigningKey {
    seed: Key32,
}

/// An Ed25519 public key (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyingKey(pub [u8; 32]);

impl SigningKey {
    pub fn from_seed(seed: Key32) -> Self {
        SigningKey { seed }
    }

    pub fn seed(&self) -> &Key32 {
        &self.seed
    }

    fn dalek(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(self.seed.as_bytes())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.dalek().verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.dalek().sign(msg).to_bytes()
    }
}

/// Checks an Ed25519 signature (strict verification).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> Result<(), Error> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.0).map_err(|_| Error::Signature)?;
    vk.verify_strict(msg, &Signature::from_bytes(sig)).map_err(|_| Error::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify() {
        let k = SigningKey::from_seed(Key32::random().unwrap());
        let sig = k.sign(b"msg");
        verify(&k.verifying_key(), b"msg", &sig).unwrap();
        assert_eq!(verify(&k.verifying_key(), b"msh", &sig), Err(Error::Signature));
    }
}
