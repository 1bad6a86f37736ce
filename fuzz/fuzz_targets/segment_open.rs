//! Blocks in segment files (docs/FORMAT.md 6.1) against forged and tampered
//! bytes.
//!
//! 1. `IndexEntry::decode` and `RecordHeader::decode` never panic, and an
//!    accepted entry re-encodes to exactly its input.
//! 2. Fuzzer bytes as a block's `B` value never open: an index entry we did
//!    not write fails its tag; any other length is the old layout's
//!    `Length`/`Auth` error.
//! 3. A block we write reads back as written; one flipped byte anywhere in
//!    its record (in the segment file) or in its index entry makes the read
//!    fail, never return other bytes; and the record of the block's previous
//!    version put back in place of the current one fails too.
//! 4. A run of three blocks written at once is one index entry; one flipped
//!    byte of it makes every block of the run fail.
#![no_main]

#[path = "common/store_env.rs"]
mod store_env;
use store_env::env;

use std::os::unix::fs::FileExt;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vaultfs::block::FileBlocks;
use vaultfs::format::keys;
use vaultfs::format::segment::{IndexEntry, RecordHeader, record_len};
use vaultfs::store::{Batch, Location, segment_name};

const VAULT_ID: [u8; 16] = [0x5a; 16];
const BS: u32 = 4096;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    generation: u64,
    block: u16,
    flip_at: u32,
    flip_mask: u8,
    value: &'a [u8],
}

fn cycled(data: &[u8], len: usize, xor: u8) -> Vec<u8> {
    if data.is_empty() { vec![xor; len] } else { data.iter().map(|b| b ^ xor).cycle().take(len).collect() }
}

/// Overwrites bytes of a segment file in place (as an attacker with the store would).
fn poke(at: Location, bytes: &[u8]) {
    let path = env().dir.path().join("seg").join(segment_name(at.segment));
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open segment");
    f.write_all_at(bytes, at.offset).expect("poke segment");
}

fn assert_fails(f: &FileBlocks, off: u64, what: &str) {
    if let Ok(got) = f.read(off, BS as usize, off + BS as u64) {
        panic!("{what}: read returned {} bytes instead of an error", got.len());
    }
}

fuzz_target!(|input: Input| {
    let env = env();
    // 1. The decoders.
    if let Ok(e) = IndexEntry::decode(input.value) {
        assert_eq!(e.encode(), input.value, "accepted index entry does not re-encode");
    }
    let _ = RecordHeader::decode(input.value);

    let ino = env.next_ino();
    let f = FileBlocks::new(&env.store, &env.key, &VAULT_ID, (ino, input.generation), BS, Some(&env.space));
    let block = u64::from(input.block);
    let off = block * BS as u64;
    let key = keys::block(ino, block);

    // 2. A value we did not write never opens.
    env.store.put(&key, input.value.to_vec()).expect("put");
    assert_fails(&f, off, "forged B value");
    let mut b = Batch::default();
    b.delete(&key[..]);
    env.store.apply(b).expect("apply");

    // 3. Two versions written by us; only the current one reads.
    let (old_plain, plain) = (cycled(input.value, BS as usize, 0), cycled(input.value, BS as usize, 0xff));
    let mut entries = Vec::new();
    for data in [&old_plain, &plain] {
        let mut b = Batch::default();
        f.write(off, data, off + BS as u64, &mut b).expect("write");
        env.store.apply(b).expect("apply");
        let v = env.store.get(&key).expect("get").expect("entry");
        entries.push(IndexEntry::decode(&v).expect("our own entry decodes"));
    }
    // The forged value was not an index entry of ours: nothing was retired for it.
    assert!(
        f.read(off, BS as usize, off + BS as u64).expect("read") == plain,
        "written block reads differently"
    );
    let stored = env.store.get(&key).expect("get").expect("entry");
    let entry = IndexEntry::decode(&stored).expect("our own entry decodes");
    let at = Location { segment: entry.segment, offset: entry.offset };
    let mut record = vec![0u8; record_len(BS)];
    env.store.read_record(at, &mut record).expect("record");

    let mask = if input.flip_mask == 0 { 1 } else { input.flip_mask };
    let i = input.flip_at as usize % record.len();
    poke(Location { offset: at.offset + i as u64, ..at }, &[record[i] ^ mask]);
    assert_fails(&f, off, "one flipped record byte");
    poke(Location { offset: at.offset + i as u64, ..at }, &[record[i]]);

    let j = input.flip_at as usize % stored.len();
    let mut flipped = stored.to_vec();
    flipped[j] ^= mask;
    env.store.put(&key, flipped).expect("put");
    // A flipped location may name a record that is not there: an error too.
    assert_fails(&f, off, "one flipped index entry byte");
    env.store.put(&key, stored.to_vec()).expect("put");

    // The previous version's record, put back where the current one is.
    let old_at = Location { segment: entries[0].segment, offset: entries[0].offset };
    let mut old_record = vec![0u8; record_len(BS)];
    env.store.read_record(old_at, &mut old_record).expect("old record");
    assert_eq!(RecordHeader::decode(&old_record).expect("header").block, block);
    poke(at, &old_record);
    assert_fails(&f, off, "older record put back");
    poke(at, &record);
    assert!(
        f.read(off, BS as usize, off + BS as u64).expect("read") == plain,
        "restored block reads differently"
    );

    // 4. A run: three blocks in one write, one index entry. One flipped
    // byte of that entry makes each of its blocks an error.
    let run_off = off + BS as u64;
    let mut b = Batch::default();
    let three = cycled(input.value, 3 * BS as usize, 0x5a);
    f.write(run_off, &three, run_off, &mut b).expect("write a run");
    env.store.apply(b).expect("apply");
    let run_key = keys::block(ino, block + 3);
    let run = env.store.get(&run_key).expect("get").expect("run entry");
    assert_eq!(IndexEntry::decode(&run).expect("our own entry decodes").count, 3);
    assert!(f.read(run_off, 3 * BS as usize, run_off + 3 * BS as u64).expect("read run") == three);
    let j = input.flip_at as usize % run.len();
    let mut flipped = run.to_vec();
    flipped[j] ^= mask;
    env.store.put(&run_key, flipped).expect("put");
    for n in 0..3 {
        assert_fails(&f, run_off + n * BS as u64, "one flipped run entry byte");
    }

    let mut b = Batch::default();
    f.delete_blocks(0, u64::MAX, &mut b).expect("delete");
    env.store.apply(b).expect("apply");
    env.collect_if_large(BS);
});
