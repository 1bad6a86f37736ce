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
use vaultfs::format::{FORMAT_VERSION, Header, KDF_LIMITS, KeySlot, SLOT_KIND_PASSPHRASE};

fn check(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        let bytes = h.encode();
        assert_eq!(bytes, data, "accepted header does not re-encode byte-for-byte");
        assert_eq!(Header::decode(&bytes), Ok(h));
    }
}

fn valid_header(u: &mut Unstructured) -> Result<Header> {
    let l = &KDF_LIMITS;
    let n = u.int_in_range(5..=32usize)?;
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        let level = if i < 5 { i as u8 + 1 } else { u.int_in_range(1..=5)? };
        let len = u.int_in_range(0..=64usize)?;
        slots.push(KeySlot {
            level,
            kind: SLOT_KIND_PASSPHRASE,
            params: u.bytes(len)?.to_vec(),
            wrapped: u.arbitrary()?,
        });
    }
    Ok(Header {
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
        mac: u.arbitrary()?,
    })
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
