//! `Header::decode` never panics, and whatever it accepts re-encodes to
//! exactly its input and decodes back to the same header (the format is
//! canonical).
//!
//! A valid header is ~700 bytes of tightly constrained fields, which blind
//! mutation rarely assembles in a short run, so each input is also read as
//! the recipe for a valid header (built with `arbitrary`): that header must
//! decode from its own encoding, and the encoding with one input-chosen edit
//! (flip, truncate or insert) must decode to an error or round-trip.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/mutate.rs"]
mod mutate;
use vaultfs::crypto::KdfParams;
use vaultfs::format::{
    FORMAT_VERSION, Factor, Fido2Factor, Header, KDF_LIMITS, KeySlot, MAX_SLOTS, RecoverySlot,
    SLOT_KIND_FACTORS, SLOT_KIND_PASSPHRASE, encode_factors,
};

fn check(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        let bytes = h.encode();
        assert_eq!(bytes, data, "accepted header does not re-encode byte-for-byte");
        assert_eq!(Header::decode(&bytes), Ok(h));
    }
}

fn valid_factors(u: &mut Unstructured) -> Result<Vec<Factor>> {
    let n = u.int_in_range(1..=4usize)?;
    let mut factors = Vec::with_capacity(n);
    for _ in 0..n {
        factors.push(if u.arbitrary()? {
            let len = u.int_in_range(1..=512usize)?;
            Factor::Tpm(u.bytes(len)?.to_vec())
        } else {
            let rp_len = u.int_in_range(0..=32usize)?;
            let cred_len = u.int_in_range(1..=128usize)?;
            Factor::Fido2(Fido2Factor {
                rp_id: String::from_utf8_lossy(u.bytes(rp_len)?).chars().take(rp_len / 3).collect(),
                credential_id: u.bytes(cred_len)?.to_vec(),
                salt: u.arbitrary()?,
                presence: u.arbitrary()?,
                pin: u.arbitrary()?,
            })
        });
    }
    Ok(factors)
}

fn valid_recovery(u: &mut Unstructured) -> Result<Option<RecoverySlot>> {
    if !u.arbitrary()? {
        return Ok(None);
    }
    let shares = u.int_in_range(2..=255u8)?;
    Ok(Some(RecoverySlot {
        split_id: u.arbitrary()?,
        threshold: u.int_in_range(2..=shares)?,
        shares,
        wrapped: u.arbitrary()?,
    }))
}

fn valid_header(u: &mut Unstructured) -> Result<Header> {
    let l = &KDF_LIMITS;
    let recovery = valid_recovery(u)?;
    let n = u.int_in_range(3..=MAX_SLOTS)?;
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        // Levels 1-3 must each keep a passphrase slot; the rest may be
        // either kind, at any stored level.
        let level = if i < 3 { i as u8 + 1 } else { u.int_in_range(1..=5)? };
        let (kind, params) = if i < 3 || u.arbitrary()? {
            (SLOT_KIND_PASSPHRASE, Vec::new())
        } else if let (Some(r), true) = (recovery.as_ref(), u.arbitrary()?) {
            // An escrow slot: its recovery factor stands alone and names the header's split.
            (SLOT_KIND_FACTORS, encode_factors(&[Factor::Recovery { split_id: r.split_id }]))
        } else {
            (SLOT_KIND_FACTORS, encode_factors(&valid_factors(u)?))
        };
        slots.push(KeySlot { level, kind, params, wrapped: u.arbitrary()? });
    }
    let mut h = Header {
        version: FORMAT_VERSION,
        features: 0,
        vault_id: u.arbitrary()?,
        block_size: 4096 << u.int_in_range(0..=4u32)?,
        kdf: KdfParams {
            memory_kib: u.int_in_range(l.min_memory_kib..=l.max_memory_kib)?,
            passes: u.int_in_range(1..=l.max_passes)?,
            lanes: u.int_in_range(1..=l.max_lanes)?,
        },
        kdf_salt: u.arbitrary()?,
        wrapped_master: u.arbitrary()?,
        audit_public: u.arbitrary()?,
        wrapped_audit_seed: u.arbitrary()?,
        slots,
        recovery: None,
        mac: u.arbitrary()?,
    };
    h.set_recovery(recovery);
    Ok(h)
}

fuzz_target!(|data: &[u8]| {
    check(data);

    let mut u = Unstructured::new(data);
    let Ok(h) = valid_header(&mut u) else { return };
    let mut bytes = h.encode();
    assert_eq!(Header::decode(&bytes).as_ref(), Ok(&h), "a valid header does not decode from its encoding");
    mutate::damage(&mut u, &mut bytes);
    check(&bytes);
});
