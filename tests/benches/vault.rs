//! Whole-vault costs through the sled store, per block size: 1 MiB writes and
//! reads, 4 KiB files, and 4 KiB random writes/reads in a 32 MiB file.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vaultfs::crypto::{KdfParams, Passphrase};
use vaultfs::vault::{FileKind, InitOptions, NewNode, Unlocked, Vault, level_dir};

const SIZES: [u32; 3] = [4096, 16384, 65536];
const MIB: usize = 1 << 20;

fn vault(bs: u32) -> (tempfile::TempDir, Vault<Unlocked>) {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new(b"bench".to_vec());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 8192, passes: 1, lanes: 1 }, block_size: bs };
    Vault::init(dir.path(), &pass, opts).unwrap();
    let v = Vault::open(dir.path()).unwrap().unlock(&pass).unwrap();
    (dir, v)
}

fn file() -> NewNode {
    NewNode { kind: FileKind::File, perm: 0o644, uid: 0, gid: 0, rdev: 0 }
}

/// xorshift, so random offsets cost nothing and repeat across runs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn sequential(c: &mut Criterion) {
    let data = vec![0x42u8; MIB];
    let mut w = c.benchmark_group("vault_write_1MiB");
    w.throughput(Throughput::Bytes(MIB as u64));
    for bs in SIZES {
        let (_d, v) = vault(bs);
        let a = v.create(level_dir(1), b"big", file()).unwrap();
        let mut off = 0u64;
        w.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| {
                v.write(a.ino, off, &data).unwrap();
                off = (off + MIB as u64) % (64 * MIB as u64);
            })
        });
    }
    w.finish();
    let mut r = c.benchmark_group("vault_read_1MiB");
    r.throughput(Throughput::Bytes(MIB as u64));
    for bs in SIZES {
        let (_d, v) = vault(bs);
        let a = v.create(level_dir(1), b"big", file()).unwrap();
        for i in 0..16 {
            v.write(a.ino, i * MIB as u64, &data).unwrap();
        }
        let mut off = 0u64;
        r.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| {
                let got = v.read(a.ino, off, MIB).unwrap();
                assert_eq!(got.len(), MIB);
                off = (off + MIB as u64) % (16 * MIB as u64);
            })
        });
    }
    r.finish();
}

fn small_files(c: &mut Criterion) {
    let data = vec![0x17u8; 4096];
    let mut g = c.benchmark_group("vault_create_write_4KiB_file");
    g.throughput(Throughput::Bytes(4096));
    for bs in SIZES {
        let (_d, v) = vault(bs);
        let mut n = 0u64;
        g.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| {
                n += 1;
                let a = v.create(level_dir(1), format!("f{n}").as_bytes(), file()).unwrap();
                v.write(a.ino, 0, &data).unwrap();
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("vault_read_4KiB_file");
    g.throughput(Throughput::Bytes(4096));
    for bs in SIZES {
        let (_d, v) = vault(bs);
        let inos: Vec<u64> = (0..1000)
            .map(|n| {
                let a = v.create(level_dir(1), format!("f{n}").as_bytes(), file()).unwrap();
                v.write(a.ino, 0, &data).unwrap();
                a.ino
            })
            .collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| {
                i = (i + 1) % inos.len();
                v.read(inos[i], 0, 4096).unwrap()
            })
        });
    }
    g.finish();
}

fn random_4k(c: &mut Criterion) {
    const FILE: u64 = 32 * MIB as u64;
    let data = vec![0x99u8; 4096];
    let mut w = c.benchmark_group("vault_random_write_4KiB");
    w.throughput(Throughput::Bytes(4096));
    let mut r = Vec::new();
    for bs in SIZES {
        let (d, v) = vault(bs);
        let a = v.create(level_dir(1), b"rand", file()).unwrap();
        let chunk = vec![0u8; MIB];
        for i in 0..(FILE / MIB as u64) {
            v.write(a.ino, i * MIB as u64, &chunk).unwrap();
        }
        let mut rng = Rng(0x9e3779b97f4a7c15);
        w.bench_with_input(BenchmarkId::from_parameter(bs), &bs, |b, _| {
            b.iter(|| v.write(a.ino, (rng.next() % (FILE / 4096)) * 4096, &data).unwrap())
        });
        r.push((bs, d, v, a.ino));
    }
    w.finish();
    let mut g = c.benchmark_group("vault_random_read_4KiB");
    g.throughput(Throughput::Bytes(4096));
    for (bs, _d, v, ino) in &r {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        g.bench_with_input(BenchmarkId::from_parameter(bs), bs, |b, _| {
            b.iter(|| v.read(*ino, (rng.next() % (FILE / 4096)) * 4096, 4096).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = sequential, small_files, random_4k
}
criterion_main!(benches);
