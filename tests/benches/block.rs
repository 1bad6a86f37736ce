//! Inner-loop costs of the block layer against the raw AEAD, in one run:
//! the ratio block_seal / aead_raw is what docs/FORMAT.md reports.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vaultfs::block::FileBlocks;
use vaultfs::crypto::{Key32, SEALED_OVERHEAD};
use vaultfs::store::Store;

const SIZES: [u32; 3] = [4096, 16384, 65536];

fn aead_raw(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_raw");
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let nonce = XNonce::from([1u8; 24]);
    for bs in SIZES {
        let mut buf = vec![0x5au8; bs as usize];
        g.throughput(Throughput::Bytes(bs as u64));
        g.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| cipher.encrypt_inout_detached(&nonce, b"aad", buf.as_mut_slice().into()).unwrap())
        });
    }
    g.finish();
}

fn block(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), true).unwrap();
    let key = Key32::from_bytes([7; 32]);
    let vault_id = [3u8; 16];
    let mut seal = c.benchmark_group("block_seal");
    for bs in SIZES {
        let f = FileBlocks::new(&store, &key, &vault_id, (16, 1), bs, None);
        let plain = vec![0x5au8; bs as usize];
        seal.throughput(Throughput::Bytes(bs as u64));
        seal.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| f.seal_block(3, &plain).unwrap())
        });
    }
    seal.finish();
    let mut open = c.benchmark_group("block_open");
    for bs in SIZES {
        let f = FileBlocks::new(&store, &key, &vault_id, (16, 1), bs, None);
        let sealed = f.seal_block(3, &vec![0x5au8; bs as usize]).unwrap();
        assert_eq!(sealed.len(), bs as usize + SEALED_OVERHEAD);
        let mut out = vec![0u8; bs as usize];
        open.throughput(Throughput::Bytes(bs as u64));
        open.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| f.open_block(3, &sealed, &mut out).unwrap())
        });
    }
    open.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = aead_raw, block
}
criterion_main!(benches);
