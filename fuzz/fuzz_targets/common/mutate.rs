//! One input-chosen edit of a valid encoding: a byte flipped, the encoding
//! cut short, or a byte inserted. Blind mutation rarely assembles a valid
//! record, so the decode targets start from one and damage it once.

use arbitrary::Unstructured;

/// Applies one edit chosen by `u` to `bytes` (unchanged if `u` runs dry).
pub fn damage(u: &mut Unstructured, bytes: &mut Vec<u8>) {
    let (Ok(edit), Ok(at), Ok(byte)) = (u.int_in_range(0..=2u8), u.arbitrary::<u16>(), u.arbitrary::<u8>())
    else {
        return;
    };
    if bytes.is_empty() {
        return;
    }
    let at = at as usize % bytes.len();
    match edit {
        0 => bytes[at] ^= byte.max(1),
        1 => bytes.truncate(at),
        _ => bytes.insert(at, byte),
    }
}
