//! [`SealedBlob`]: what enrolling the TPM factor stores in a key slot's
//! parameters. The byte layout is specified in the parent module's doc
//! comment ([`super`]); this file is its only encoder and decoder.

use std::fmt;

use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

use super::Error;

/// The only layout version this build reads and writes.
pub const VERSION: u8 = 1;
/// PCR indices of the SHA-256 bank run from 0 to `PCR_COUNT - 1`.
pub const PCR_COUNT: u8 = 24;

/// A secret sealed by one TPM: the sealed object's public and private
/// areas (the private area is encrypted and integrity-protected by the TPM
/// under a key that never leaves it) and the PCRs its policy is bound to.
///
/// Holds no secret in the clear; `Debug` shows only sizes and PCRs.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// SHA-256 of the primary key's TPMT_PUBLIC at enrollment.
    primary: [u8; 32],
    pcrs: Vec<u8>,
    /// Canonical marshalled TPMT_PUBLIC of a keyed-hash (sealed data) object.
    public: Vec<u8>,
    /// Contents of the TPM2B_PRIVATE (without its size prefix).
    private: Vec<u8>,
}

impl SealedBlob {
    /// Builds a blob from what `TPM2_Create` returned. `pcrs` must be sorted,
    /// unique and below [`PCR_COUNT`] (the caller validated them).
    pub(super) fn new(
        primary: [u8; 32],
        pcrs: Vec<u8>,
        public: &Public,
        private: &Private,
    ) -> Result<Self, Error> {
        let public = public
            .marshall()
            .map_err(|e| Error::Tpm(format!("cannot marshal the sealed object's public area: {e}")))?;
        let blob = SealedBlob { primary, pcrs, public, private: private.value().to_vec() };
        // Re-parse what we are about to hand out, so a blob this function
        // returns always passes `from_bytes`.
        SealedBlob::from_bytes(&blob.to_bytes())
    }

    /// The PCR indices (SHA-256 bank) the secret is bound to; empty if none.
    pub fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }

    /// SHA-256 of the marshalled TPMT_PUBLIC of the primary key the secret
    /// was sealed under: the recreated primary must match it before any
    /// secret-bearing session is salted to it.
    pub(super) fn primary_fingerprint(&self) -> &[u8; 32] {
        &self.primary
    }

    /// The sealed object's public area.
    pub(super) fn public(&self) -> Result<Public, Error> {
        Public::unmarshall(&self.public).map_err(|_| Error::Malformed("public area does not parse"))
    }

    /// The sealed object's private area.
    pub(super) fn private(&self) -> Result<Private, Error> {
        Private::try_from(self.private.as_slice()).map_err(|_| Error::Malformed("private area too long"))
    }

    /// The stable byte encoding (layout in the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(38 + self.pcrs.len() + self.public.len() + self.private.len());
        out.push(VERSION);
        out.extend_from_slice(&self.primary);
        // Lengths were bounded when the blob was built or parsed.
        out.push(self.pcrs.len() as u8);
        out.extend_from_slice(&self.pcrs);
        out.extend_from_slice(&(self.public.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.public);
        out.extend_from_slice(&(self.private.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.private);
        out
    }

    /// Parses and checks an encoded blob. Never panics: any byte string that
    /// is not exactly a blob this module could have written is `Malformed`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        let version = r.u8("missing version byte")?;
        if version != VERSION {
            return Err(Error::Malformed("unknown blob version (made by a newer vaultfs?)"));
        }
        let mut primary = [0u8; 32];
        primary.copy_from_slice(r.take(32, "truncated primary key fingerprint")?);
        let n = r.u8("missing PCR count")?;
        if n > PCR_COUNT {
            return Err(Error::Malformed("more than 24 PCRs"));
        }
        let pcrs = r.take(usize::from(n), "truncated PCR list")?.to_vec();
        if pcrs.iter().any(|&p| p >= PCR_COUNT) {
            return Err(Error::Malformed("PCR index above 23"));
        }
        if pcrs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Malformed("PCR list not strictly increasing"));
        }
        let p = r.u16("missing public area size")?;
        if p == 0 {
            return Err(Error::Malformed("empty public area"));
        }
        let public = r.take(usize::from(p), "truncated public area")?.to_vec();
        let q = r.u16("missing private area size")?;
        if q == 0 {
            return Err(Error::Malformed("empty private area"));
        }
        let private = r.take(usize::from(q), "truncated private area")?.to_vec();
        if !r.0.is_empty() {
            return Err(Error::Malformed("trailing bytes after the private area"));
        }
        Private::try_from(private.as_slice()).map_err(|_| Error::Malformed("private area too long"))?;
        check_public(&public, !pcrs.is_empty())?;
        Ok(SealedBlob { primary, pcrs, public, private })
    }
}

/// The public area must be a canonical TPMT_PUBLIC of a sealed-data object
/// whose authorization matches the PCR list: a policy (and no password use)
/// exactly when PCRs are bound.
fn check_public(bytes: &[u8], bound: bool) -> Result<(), Error> {
    let public = Public::unmarshall(bytes).map_err(|_| Error::Malformed("public area does not parse"))?;
    // Re-marshalling must give the same bytes: no trailing or non-canonical input.
    match public.marshall() {
        Ok(again) if again == bytes => {}
        _ => return Err(Error::Malformed("public area is not canonical")),
    }
    let Public::KeyedHash { object_attributes, auth_policy, .. } = &public else {
        return Err(Error::Malformed("public area is not a sealed-data object"));
    };
    if !object_attributes.fixed_tpm() || !object_attributes.fixed_parent() {
        return Err(Error::Malformed("sealed object is not fixed to its TPM"));
    }
    let policy = !auth_policy.value().is_empty();
    if bound != policy || bound == object_attributes.user_with_auth() {
        return Err(Error::Malformed("PCR list does not match the sealed object's policy"));
    }
    Ok(())
}

impl fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBlob")
            .field("pcrs", &self.pcrs)
            .field("public_len", &self.public.len())
            .field("private_len", &self.private.len())
            .finish()
    }
}

/// A cursor over untrusted bytes; every read is length-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::sealed_template;
    use super::*;
    use proptest::prelude::*;
    use tss_esapi::structures::Digest;

    fn public(bound: bool) -> Public {
        let policy = if bound { Digest::try_from(vec![0xab; 32]).unwrap() } else { Digest::default() };
        sealed_template(policy, !bound).unwrap()
    }

    fn private() -> Private {
        Private::try_from((0u8..=99).collect::<Vec<_>>()).unwrap()
    }

    const PRIMARY: [u8; 32] = [0x5a; 32];

    fn blob(pcrs: &[u8]) -> SealedBlob {
        SealedBlob::new(PRIMARY, pcrs.to_vec(), &public(!pcrs.is_empty()), &private()).unwrap()
    }

    #[test]
    fn layout_is_version_pcrs_tpm2b_public_tpm2b_private() {
        let b = blob(&[7, 16]);
        let bytes = b.to_bytes();
        let pub_bytes = public(true).marshall().unwrap();
        let mut expect = vec![1];
        expect.extend_from_slice(&PRIMARY);
        expect.extend_from_slice(&[2, 7, 16]);
        expect.extend_from_slice(&(pub_bytes.len() as u16).to_be_bytes());
        expect.extend_from_slice(&pub_bytes);
        expect.extend_from_slice(&[0, 100]);
        expect.extend(0u8..=99);
        assert_eq!(bytes, expect);
        // The public part starts with TPMI_ALG_PUBLIC = TPM_ALG_KEYEDHASH (0x0008)
        // then nameAlg = TPM_ALG_SHA256 (0x000B).
        assert_eq!(bytes[38..42], [0x00, 0x08, 0x00, 0x0b]);
    }

    #[test]
    fn round_trips_with_and_without_pcrs() {
        for pcrs in [&[][..], &[7, 16], &[0], &[23], &[0, 1, 2, 3, 4, 5, 6, 7]] {
            let b = blob(pcrs);
            let back = SealedBlob::from_bytes(&b.to_bytes()).unwrap();
            assert_eq!(back, b);
            assert_eq!(back.pcrs(), pcrs);
            assert_eq!(back.primary_fingerprint(), &PRIMARY);
            assert_eq!(back.public().unwrap(), public(!pcrs.is_empty()));
            assert_eq!(back.private().unwrap(), private());
            assert_eq!(back.to_bytes(), b.to_bytes());
        }
    }

    #[test]
    fn debug_shows_no_bytes() {
        let s = format!("{:?}", blob(&[7]));
        assert_eq!(
            s,
            format!("SealedBlob {{ pcrs: [7], public_len: {}, private_len: 100 }}", blob(&[7]).public.len())
        );
    }

    #[test]
    fn every_truncation_is_malformed() {
        let bytes = blob(&[7, 16]).to_bytes();
        for len in 0..bytes.len() {
            assert!(matches!(SealedBlob::from_bytes(&bytes[..len]), Err(Error::Malformed(_))), "len {len}");
        }
    }

    #[test]
    fn structural_errors_are_named() {
        let good = blob(&[7, 16]).to_bytes();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            SealedBlob::from_bytes(&b)
        };
        let mal = |r: Result<SealedBlob, Error>| match r {
            Err(Error::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        };
        assert!(mal(with(0, 2)).contains("version"));
        assert!(mal(with(33, 25)).contains("24"));
        assert!(mal(with(35, 24)).contains("above 23"));
        assert!(mal(with(35, 7)).contains("increasing"));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(mal(SealedBlob::from_bytes(&trailing)).contains("trailing"));
        // A PCR list that disagrees with the object's policy.
        let mut unbound = good.clone();
        unbound.splice(33..36, [0u8]);
        assert!(mal(SealedBlob::from_bytes(&unbound)).contains("policy"));
    }

    #[test]
    fn non_sealed_objects_are_refused() {
        let ecc = super::super::primary_template().unwrap().marshall().unwrap();
        let mut bytes = vec![1];
        bytes.extend_from_slice(&PRIMARY);
        bytes.push(0);
        bytes.extend_from_slice(&(ecc.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&ecc);
        bytes.extend_from_slice(&[0, 1, 0]);
        assert_eq!(
            SealedBlob::from_bytes(&bytes),
            Err(Error::Malformed("public area is not a sealed-data object"))
        );
    }

    proptest! {
        #[test]
        fn mutated_blobs_never_panic(
            pcrs in prop::sample::select(vec![vec![], vec![7u8, 16]]),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = blob(&pcrs).to_bytes();
            for (i, v) in edits {
                let i = i.index(bytes.len());
                bytes[i] = v;
            }
            let _ = SealedBlob::from_bytes(&bytes);
            let cut = cut.index(bytes.len() + 1);
            let _ = SealedBlob::from_bytes(&bytes[..cut]);
        }
    }
}
