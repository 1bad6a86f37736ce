//! The succession parsers never panic: `Will::decode` re-encodes whatever it
//! accepts byte for byte, `Bequest::decode` of any bytes is an error or a
//! bequest whose body is the input's prefix, and the text forms (heir keys,
//! releases) accept nothing that does not re-print as the same text.
//!
//! Each input is also read as the recipe for a valid will: it must decode
//! from its own encoding, and one input-chosen edit must decode to an error
//! or round-trip.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/mutate.rs"]
mod mutate;
use vaultfs::crypto::{HEIR_OVERHEAD, HeirPublic};
use vaultfs::format::succession::{
    BEQUEATHABLE, Bequest, Release, Will, bequest_len, heir_public_text, parse_heir_public, parse_heir_secret,
};

fn check_will(data: &[u8]) {
    if let Ok(w) = Will::decode(data) {
        assert_eq!(w.encode(), data, "accepted will does not re-encode byte-for-byte");
    }
}

fn valid_will(u: &mut Unstructured) -> Result<Will> {
    let levels: Vec<u8> = BEQUEATHABLE.iter().copied().filter(|_| u.arbitrary().unwrap_or(false)).collect();
    let set_up_ms: u64 = u.int_in_range(0..=u64::MAX / 2)?;
    Ok(Will {
        id: u.arbitrary()?,
        heir: HeirPublic(u.arbitrary()?),
        period_secs: u.int_in_range(1..=u64::MAX)?,
        set_up_ms,
        checked_in_ms: set_up_ms + u.int_in_range(0..=u64::MAX / 2)?,
        bequest: u.bytes(bequest_len(levels.len()) + HEIR_OVERHEAD)?.to_vec(),
        levels,
    })
}

fuzz_target!(|data: &[u8]| {
    check_will(data);
    if let Ok((_, body, _)) = Bequest::decode(data) {
        assert!(data.starts_with(body) && body.len() + 32 == data.len(), "a bequest's body is all but its check");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = Release::parse(text) {
            assert_eq!(Release::parse(&r.to_text()).as_ref(), Ok(&r), "a release does not re-parse");
        }
        if let Ok(k) = parse_heir_public(text) {
            assert_eq!(parse_heir_public(&heir_public_text(&k)), Ok(k));
        }
        let _ = parse_heir_secret(text);
    }

    let mut u = Unstructured::new(data);
    let Ok(will) = valid_will(&mut u) else { return };
    let mut bytes = will.encode();
    assert_eq!(Will::decode(&bytes).as_ref(), Ok(&will), "a valid will does not decode from its encoding");
    mutate::damage(&mut u, &mut bytes);
    check_will(&bytes);
});
