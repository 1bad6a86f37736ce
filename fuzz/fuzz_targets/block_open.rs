//! `FileBlocks::open_block` (blocks stored before segment files, FORMAT.md
//! 6.2) against forged and tampered values; `segment_open` covers records.
//!
//! 1. Fuzzer bytes as a stored block value (optionally stretched to the exact
//!    sealed length so the AEAD check itself is reached) must never open:
//!    only `seal_block` output authenticates. A wrong length is a `Length`
//!    error; a right length that fails the tag is `Auth` and leaves the output
//!    buffer zeroed.
//! 2. A block we seal ourselves (plaintext from the fuzzer) opens to exactly
//!    that plaintext, and fails `Auth` once any single byte is flipped, or when
//!    opened as another block number, generation or inode.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vaultfs::block::{Error, FileBlocks};
use vaultfs::crypto::{Key32, SEALED_OVERHEAD};
use vaultfs::store::Store;

const VAULT_ID: [u8; 16] = [0x5a; 16];

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    key: Key32,
}

/// One store per process: sled is far too slow to open per input.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("vaultfs-fuzz-").tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true).expect("open store");
        Env { _dir: dir, store, key: Key32::from_bytes([7; 32]) }
    })
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Block size is 4096 << (this % 5): every size a vault may use.
    block_size_log: u8,
    ino: u64,
    generation: u64,
    block: u64,
    /// Stretch (cycle or cut) `value` to exactly block_size + SEALED_OVERHEAD.
    exact_len: bool,
    flip_at: u32,
    flip_mask: u8,
    other_block: u64,
    value: &'a [u8],
}

fn fits(data: &[u8], len: usize) -> Vec<u8> {
    if data.is_empty() { vec![0; len] } else { data.iter().copied().cycle().take(len).collect() }
}

fn assert_auth_fails(f: &FileBlocks, file: (u64, u32), block: u64, value: &[u8], what: &str) {
    let mut out = vec![0xA5u8; file.1 as usize];
    match f.open_block(block, value, &mut out) {
        Err(Error::Auth { ino, block: b }) => {
            assert_eq!((ino, b), (file.0, block));
            assert!(out.iter().all(|&b| b == 0), "{what}: failed open leaked bytes into the output");
        }
        other => panic!("{what}: expected an authentication failure, got {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    let env = env();
    let block_size = 4096u32 << (input.block_size_log % 5);
    let sealed_len = block_size as usize + SEALED_OVERHEAD;
    let blocks = |ino, generation| {
        FileBlocks::new(&env.store, &env.key, &VAULT_ID, (ino, generation), block_size, None)
    };
    let f = blocks(input.ino, input.generation);
    let file = (input.ino, block_size);

    // 1. A value we did not seal never opens.
    let forged = if input.exact_len { fits(input.value, sealed_len) } else { input.value.to_vec() };
    if forged.len() == sealed_len {
        assert_auth_fails(&f, file, input.block, &forged, "forged value");
    } else {
        let mut out = vec![0u8; block_size as usize];
        match f.open_block(input.block, &forged, &mut out) {
            Err(Error::Length { len, .. }) => assert_eq!(len, forged.len()),
            other => panic!("value of {} bytes: expected a length error, got {other:?}", forged.len()),
        }
    }

    // 2. A value we did seal opens, and only unaltered and in its own place.
    let plain = fits(input.value, block_size as usize);
    let sealed = f.seal_block(input.block, &plain).expect("seal");
    assert_eq!(sealed.len(), sealed_len);
    let mut out = vec![0u8; block_size as usize];
    f.open_block(input.block, &sealed, &mut out).expect("open of a freshly sealed block");
    assert!(out == plain, "opened block differs from the sealed plaintext");

    let mut flipped = sealed.clone();
    let at = input.flip_at as usize % flipped.len();
    flipped[at] ^= if input.flip_mask == 0 { 1 } else { input.flip_mask };
    assert_auth_fails(&f, file, input.block, &flipped, "one flipped byte");

    if input.other_block != input.block {
        assert_auth_fails(&f, file, input.other_block, &sealed, "another block number");
    }
    let other_gen = blocks(input.ino, input.generation.wrapping_add(1));
    assert_auth_fails(&other_gen, file, input.block, &sealed, "another generation");
    let other_ino = blocks(input.ino ^ 1, input.generation);
    assert_auth_fails(&other_ino, (input.ino ^ 1, block_size), input.block, &sealed, "another inode");

    let cut = &sealed[..at];
    match f.open_block(input.block, cut, &mut out) {
        Err(Error::Length { len, .. }) => assert_eq!(len, at),
        other => panic!("truncated value: expected a length error, got {other:?}"),
    }
});
