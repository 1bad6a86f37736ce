//! `Leaf::decode` never panics, and whatever it accepts re-encodes to exactly
//! its input (the encoding is canonical: one record, one byte string).
//!
//! Blind mutation rarely gets the version, op and both lengths right at once,
//! so each input is also read as the recipe for a valid leaf: it must decode
//! from its own encoding, and that encoding with one input-chosen edit (flip,
//! truncate or insert) must decode to an error or round-trip.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/mutate.rs"]
mod mutate;
use vaultfs::audit::leaf::{Leaf, MAX_COMM, MAX_LEVEL, MAX_NOTE, MAX_PATH, Op};

fn check(data: &[u8]) {
    if let Ok(leaf) = Leaf::decode(data) {
        assert_eq!(leaf.encode(), data, "accepted leaf does not re-encode byte-for-byte");
    }
}

fn valid_leaf(u: &mut Unstructured) -> Result<Leaf> {
    let comm_len = u.int_in_range(0..=MAX_COMM)?;
    let path_len = u.int_in_range(0..=MAX_PATH)?;
    // No note (a version-1 leaf) or one of 1 to MAX_NOTE bytes (version 2).
    let note_len = if u.arbitrary()? { u.int_in_range(1..=MAX_NOTE)? } else { 0 };
    Ok(Leaf {
        seq: u.arbitrary()?,
        time_ns: u.arbitrary()?,
        uid: u.arbitrary()?,
        gid: u.arbitrary()?,
        pid: u.arbitrary()?,
        comm: u.bytes(comm_len)?.to_vec(),
        op: *u.choose(&Op::ALL)?,
        level: if u.arbitrary()? { Some(u.int_in_range(0..=MAX_LEVEL)?) } else { None },
        ino: u.arbitrary()?,
        path: u.bytes(path_len)?.to_vec(),
        offset: u.arbitrary()?,
        len: u.arbitrary()?,
        result: u.arbitrary()?,
        note: u.bytes(note_len)?.to_vec(),
    })
}

fuzz_target!(|data: &[u8]| {
    check(data);

    let mut u = Unstructured::new(data);
    let Ok(leaf) = valid_leaf(&mut u) else { return };
    let mut bytes = leaf.encode();
    assert_eq!(Leaf::decode(&bytes).as_ref(), Ok(&leaf), "a valid leaf does not decode from its encoding");
    mutate::damage(&mut u, &mut bytes);
    check(&bytes);
});
