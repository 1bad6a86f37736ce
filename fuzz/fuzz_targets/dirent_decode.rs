//! `DirentRecord::decode` and `XattrRecord::decode` on arbitrary bytes: never
//! panic, and whatever they accept decodes back from its own encoding. Both
//! encodings are canonical (a dirent's zero padding to a multiple of 32 is
//! fixed by the name length), so the re-encoding must also equal the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultfs::format::{DirentRecord, XattrRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = DirentRecord::decode(data) {
        let bytes = d.encode();
        assert_eq!(bytes.len() % 32, 0, "dirent encoding not padded to 32");
        assert_eq!(bytes, data, "accepted dirent does not re-encode byte-for-byte");
        assert_eq!(DirentRecord::decode(&bytes), Ok(d));
    }
    if let Ok(x) = XattrRecord::decode(data) {
        let bytes = x.encode();
        assert_eq!(&bytes[..], data, "accepted xattr does not re-encode byte-for-byte");
        assert_eq!(XattrRecord::decode(&bytes), Ok(x));
    }
});
