//! `InodeRecord::decode` on arbitrary bytes: never panics, and whatever it
//! accepts re-encodes to exactly the input and decodes back to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultfs::format::InodeRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = InodeRecord::decode(data) {
        let bytes = rec.encode();
        assert_eq!(&bytes[..], data, "accepted inode record does not re-encode byte-for-byte");
        assert_eq!(InodeRecord::decode(&bytes), Ok(rec));
    }
});
