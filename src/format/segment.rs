//! Segment records and the block index entries that point at them
//! (docs/FORMAT.md section 6). Pure layouts: the store owns the files, the
//! block layer the keys.
//!
//! | object | layout |
//! |---|---|
//! | segment file | `"VAULTSEG"` ‖ segment number u64, then records |
//! | record | ino u64 ‖ block u64 ‖ version u64 ‖ sealed block (bs + 40) |
//! | index entry (`B` value) | segment u64 ‖ offset u64 ‖ version u64 ‖ index tag (16) |

use super::{Error, Reader, Writer, invalid};

/// ino ‖ block ‖ version.
pub const RECORD_HEADER_LEN: usize = 24;
/// segment ‖ offset ‖ version ‖ tag.
pub const INDEX_ENTRY_LEN: usize = 40;

/// Bytes of one record for block size `bs`: header, nonce, ciphertext, tag.
pub fn record_len(bs: u32) -> usize {
    RECORD_HEADER_LEN + bs as usize + 40
}

/// What a record says it is; the AEAD (whose AAD binds all three) decides
/// whether that is true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub ino: u64,
    pub block: u64,
    pub version: u64,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[..8].copy_from_slice(&self.ino.to_be_bytes());
        out[8..16].copy_from_slice(&self.block.to_be_bytes());
        out[16..].copy_from_slice(&self.version.to_be_bytes());
        out
    }

    /// The header at the start of `record` (at least RECORD_HEADER_LEN bytes).
    pub fn decode(record: &[u8]) -> Result<RecordHeader, Error> {
        let mut r = Reader::new(
            record.get(..RECORD_HEADER_LEN).ok_or(Error::Truncated("record header"))?,
            "record header",
        );
        Ok(RecordHeader { ino: r.u64()?, block: r.u64()?, version: r.u64()? })
    }
}

/// A `B` key's value in a vault with segments: where the block's current
/// record is, and the version its record must carry. The tag authenticates
/// the version (docs/FORMAT.md 6.2); the location needs none, because a
/// record anywhere else fails its AEAD or its header check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub segment: u64,
    pub offset: u64,
    pub version: u64,
    pub tag: [u8; 16],
}

impl IndexEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(INDEX_ENTRY_LEN);
        w.u64(self.segment).u64(self.offset).u64(self.version).bytes(&self.tag);
        w.into_vec()
    }

    pub fn decode(value: &[u8]) -> Result<IndexEntry, Error> {
        if value.len() != INDEX_ENTRY_LEN {
            return Err(invalid(
                "block index entry",
                format!("{} bytes, not {INDEX_ENTRY_LEN}", value.len()),
            ));
        }
        let mut r = Reader::new(value, "block index entry");
        Ok(IndexEntry { segment: r.u64()?, offset: r.u64()?, version: r.u64()?, tag: r.array()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip_and_refuse_bad_input() {
        let h = RecordHeader { ino: 16, block: 3, version: 99 };
        let mut rec = h.encode().to_vec();
        rec.extend_from_slice(&[0; 10]);
        assert_eq!(RecordHeader::decode(&rec).unwrap(), h);
        assert!(RecordHeader::decode(&rec[..23]).is_err());
        let e = IndexEntry { segment: 2, offset: 16, version: 7, tag: [9; 16] };
        let v = e.encode();
        assert_eq!(v.len(), INDEX_ENTRY_LEN);
        assert_eq!(IndexEntry::decode(&v).unwrap(), e);
        assert!(IndexEntry::decode(&v[..39]).is_err());
        assert_eq!(record_len(4096), 4160);
    }
}
