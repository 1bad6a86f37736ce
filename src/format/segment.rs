//! Segment records and the block index entries that point at them
//! (docs/FORMAT.md section 6). Pure layouts: the store owns the files, the
//! block layer the keys.
//!
//! | object | layout |
//! |---|---|
//! | segment file | `"VAULTSEG"` ‖ segment number u64, then records |
//! | record | ino u64 ‖ block u64 ‖ version u64 ‖ sealed block (bs + 40) |
//! | index entry of one block (`B` value) | segment u64 ‖ offset u64 ‖ version u64 ‖ index tag (16) |
//! | index entry of a run of n ≥ 2 blocks | segment u64 ‖ offset u64 ‖ version u64 ‖ n u64 ‖ index tag (16) |
//!
//! A `B` key names the *last* block an entry covers; a run's records lie
//! back to back in one segment, block `first + i` with version `version + i`.

use super::{Error, Reader, Writer, invalid};

/// ino ‖ block ‖ version.
pub const RECORD_HEADER_LEN: usize = 24;
/// segment ‖ offset ‖ version ‖ tag: the entry of one block.
pub const INDEX_ENTRY_LEN: usize = 40;
/// segment ‖ offset ‖ version ‖ count ‖ tag: the entry of a run of blocks.
pub const RUN_ENTRY_LEN: usize = 48;
/// A run covers at most this many plaintext bytes (so that an archive
/// carries it as one value, docs/FORMAT.md 11.3).
pub const MAX_RUN_BYTES: u64 = 1 << 20;

/// Most blocks one index entry may cover at block size `bs`.
pub fn max_run(bs: u32) -> u64 {
    (MAX_RUN_BYTES / bs as u64).max(1)
}

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

/// A `B` key's value in a vault with segments: where the current records
/// of the `count` blocks ending at the key's block are, and the version the
/// first must carry (the others follow it by one each). The tag
/// authenticates the first block, the versions and the count (docs/FORMAT.md
/// 6.1); the location needs none, because a record anywhere else fails its
/// AEAD or its header check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub segment: u64,
    pub offset: u64,
    pub version: u64,
    /// Blocks covered, at least 1: 1 is the 40-byte form, more the 48-byte one.
    pub count: u64,
    pub tag: [u8; 16],
}

impl IndexEntry {
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.count >= 1);
        let mut w = Writer::with_capacity(RUN_ENTRY_LEN);
        w.u64(self.segment).u64(self.offset).u64(self.version);
        if self.count > 1 {
            w.u64(self.count);
        }
        w.bytes(&self.tag);
        w.into_vec()
    }

    /// Whether a `B` value of this length is an index entry (else it is a
    /// version-1 sealed block, or damage).
    pub fn is_entry_len(len: usize) -> bool {
        len == INDEX_ENTRY_LEN || len == RUN_ENTRY_LEN
    }

    pub fn decode(value: &[u8]) -> Result<IndexEntry, Error> {
        if !Self::is_entry_len(value.len()) {
            return Err(invalid(
                "block index entry",
                format!("{} bytes, not {INDEX_ENTRY_LEN} or {RUN_ENTRY_LEN}", value.len()),
            ));
        }
        let mut r = Reader::new(value, "block index entry");
        let (segment, offset, version) = (r.u64()?, r.u64()?, r.u64()?);
        let count = if value.len() == RUN_ENTRY_LEN { r.u64()? } else { 1 };
        if value.len() == RUN_ENTRY_LEN && !(2..=u32::MAX as u64).contains(&count) {
            return Err(invalid("block index entry", format!("a run of {count} blocks")));
        }
        Ok(IndexEntry { segment, offset, version, count, tag: r.array()? })
    }

    /// `decode`, and the run fits block size `bs`: at most `max_run(bs)`
    /// blocks, so that no forged count makes a reader allocate more.
    pub fn decode_for(value: &[u8], bs: u32) -> Result<IndexEntry, Error> {
        let e = Self::decode(value)?;
        if e.count > max_run(bs) {
            let why = format!("a run of {} blocks (at most {} at this block size)", e.count, max_run(bs));
            return Err(invalid("block index entry", why));
        }
        Ok(e)
    }

    /// The first block covered by the entry stored under block `last`.
    pub fn first_block(&self, last: u64) -> Option<u64> {
        (last + 1).checked_sub(self.count)
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
        let e = IndexEntry { segment: 2, offset: 16, version: 7, count: 1, tag: [9; 16] };
        let v = e.encode();
        assert_eq!(v.len(), INDEX_ENTRY_LEN);
        assert_eq!(IndexEntry::decode(&v).unwrap(), e);
        assert!(IndexEntry::decode(&v[..39]).is_err());
        let run = IndexEntry { count: 256, ..e };
        let v = run.encode();
        assert_eq!(v.len(), RUN_ENTRY_LEN);
        assert_eq!(IndexEntry::decode(&v).unwrap(), run);
        assert_eq!(run.first_block(255), Some(0));
        assert_eq!(run.first_block(254), None, "a run reaching below block 0");
        // A run entry of one block (or none) has one encoding only: the short one.
        for count in [0u64, 1, 1 << 40] {
            let mut bad = v.clone();
            bad[24..32].copy_from_slice(&count.to_be_bytes());
            assert!(IndexEntry::decode(&bad).is_err(), "count {count}");
        }
        assert_eq!(record_len(4096), 4160);
        assert_eq!((max_run(4096), max_run(65536)), (256, 16));
    }
}
