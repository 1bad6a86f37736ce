//! The block layer against a `Vec<u8>` model (the fuzzing twin of the
//! `block_layer_matches_vec_model` proptest in src/block/tests.rs).
//!
//! Each input is a sequence of writes, truncates, hole punches and reads on
//! one file (block size 4096, a fresh inode number per input, one store per
//! process). After every operation the whole file must read back equal to the
//! model, the number of stored blocks must equal the running sum of the block
//! deltas the layer returned, and SEEK_DATA/SEEK_HOLE must agree with it:
//! every hole reported reads as zeros.
#![no_main]

#[path = "common/store_env.rs"]
mod store_env;
use store_env::env;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vaultfs::block::FileBlocks;
use vaultfs::format::keys;
use vaultfs::store::Batch;

const BLOCK_SIZE: u32 = 4096;
/// Writes start below 256 KiB and carry at most 20 KiB.
const MAX_OFFSET: u64 = 256 * 1024;
const MAX_DATA: usize = 20 * 1024;
/// Sizes, hole punches and reads range a little past the largest file.
const MAX_EXTENT: u64 = MAX_OFFSET + MAX_DATA as u64 + 2 * BLOCK_SIZE as u64;
const MAX_OPS: usize = 64;
const VAULT_ID: [u8; 16] = [0x5a; 16];

#[derive(Arbitrary, Debug)]
enum Op {
    Write {
        offset: u32,
        data: Vec<u8>,
    },
    /// A write of `len` patterned bytes: reaches whole-block writes with small inputs.
    Fill {
        offset: u32,
        len: u16,
        seed: u8,
    },
    Truncate {
        size: u32,
    },
    PunchHole {
        offset: u32,
        len: u32,
    },
    Read {
        offset: u32,
        len: u32,
    },
}

/// Blocks the index holds, from its entries' spans; entries never overlap.
fn stored_blocks(ino: u64) -> i64 {
    let (mut n, mut next) = (0, 0);
    for entry in env().store.scan_prefix(&keys::block_prefix(ino)) {
        let (k, v) = entry.expect("scan");
        let (first, last) = vaultfs::block::entry_span(BLOCK_SIZE, keys::block_number(&k).expect("block key"), &v);
        assert!(first >= next, "index entries overlap at block {first}");
        n += (last - first + 1) as i64;
        next = last + 1;
    }
    n
}

fn write(f: &FileBlocks, model: &mut Vec<u8>, blocks: &mut i64, offset: u64, data: &[u8]) {
    let mut b = Batch::default();
    *blocks += f.write(offset, data, model.len() as u64, &mut b).expect("write");
    env().store.apply(b).expect("apply");
    if data.is_empty() {
        return;
    }
    let end = offset as usize + data.len();
    if model.len() < end {
        model.resize(end, 0);
    }
    model[offset as usize..end].copy_from_slice(data);
}

fn check(f: &FileBlocks, ino: u64, model: &[u8], blocks: i64) {
    let size = model.len() as u64;
    let got = f.read(0, model.len() + 100, size).expect("read");
    if got != model {
        let at = got.iter().zip(model).position(|(a, b)| a != b).unwrap_or(got.len().min(model.len()));
        panic!("file differs from model at byte {at} (read {} bytes, model {})", got.len(), model.len());
    }
    assert_eq!(stored_blocks(ino), blocks, "stored block count differs from the sum of returned deltas");
    // Walk data and holes: holes read as zeros, data ranges are non-empty and below size.
    let mut at = 0u64;
    while let Some(d) = f.next_data(at, size).expect("next_data") {
        assert!(d >= at && d < size, "next_data({at}) = {d} with size {size}");
        assert!(model[at as usize..d as usize].iter().all(|&b| b == 0), "hole {at}..{d} is not zeros");
        let h = f.next_hole(d, size).expect("next_hole");
        assert!(h > d && h <= size, "next_hole({d}) = {h} with size {size}");
        at = h;
    }
    assert!(model[at as usize..].iter().all(|&b| b == 0), "hole {at}..{size} is not zeros");
}

fuzz_target!(|ops: Vec<Op>| {
    let env = env();
    let ino = env.next_ino();
    let f = FileBlocks::new(&env.store, &env.key, &VAULT_ID, (ino, 1), BLOCK_SIZE, Some(&env.space));
    let mut model: Vec<u8> = Vec::new();
    let mut blocks = 0i64;
    for op in ops.into_iter().take(MAX_OPS) {
        match op {
            Op::Write { offset, mut data } => {
                data.truncate(MAX_DATA);
                write(&f, &mut model, &mut blocks, offset as u64 % MAX_OFFSET, &data);
            }
            Op::Fill { offset, len, seed } => {
                let data: Vec<u8> =
                    (0..(len as usize % (MAX_DATA + 1))).map(|i| seed.wrapping_add(i as u8) | 1).collect();
                write(&f, &mut model, &mut blocks, offset as u64 % MAX_OFFSET, &data);
            }
            Op::Truncate { size } => {
                let new = size as u64 % MAX_EXTENT;
                let mut b = Batch::default();
                blocks += f.truncate(model.len() as u64, new, &mut b).expect("truncate");
                env.store.apply(b).expect("apply");
                model.resize(new as usize, 0);
            }
            Op::PunchHole { offset, len } => {
                let (o, l) = (offset as u64 % MAX_EXTENT, len as u64 % MAX_EXTENT);
                let mut b = Batch::default();
                blocks += f.punch_hole(o, l, model.len() as u64, &mut b).expect("punch_hole");
                env.store.apply(b).expect("apply");
                let end = ((o + l) as usize).min(model.len());
                if (o as usize) < end {
                    model[o as usize..end].fill(0);
                }
            }
            Op::Read { offset, len } => {
                let (o, l) = (offset as usize % MAX_EXTENT as usize, len as usize % MAX_EXTENT as usize);
                let want: Vec<u8> = model.iter().skip(o).take(l).copied().collect();
                let got = f.read(o as u64, l, model.len() as u64).expect("read");
                assert!(got == want, "read({o}, {l}) of a {}-byte file differs from the model", model.len());
            }
        }
        check(&f, ino, &model, blocks);
    }
    // Leave the shared store as we found it.
    let mut b = Batch::default();
    let deleted = f.delete_blocks(0, u64::MAX, &mut b).expect("delete_blocks");
    env.store.apply(b).expect("apply");
    assert_eq!(deleted, blocks);
    assert_eq!(stored_blocks(ino), 0);
    env.collect_if_large(BLOCK_SIZE);
});
