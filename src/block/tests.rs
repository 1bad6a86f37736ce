use proptest::prelude::*;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    key: Key32,
    vault_id: [u8; 16],
    space: Space,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), true).unwrap();
    let space = Space::load(&store).unwrap();
    Fixture { _dir: dir, store, key: Key32::random().unwrap(), vault_id: [1; 16], space }
}

impl Fixture {
    fn file(&self, ino: u64, generation: u64) -> FileBlocks<'_> {
        FileBlocks::new(&self.store, &self.key, &self.vault_id, (ino, generation), 4096, Some(&self.space))
    }
}

fn apply_write(f: &FileBlocks, model: &mut Vec<u8>, blocks: &mut i64, off: u64, data: &[u8]) {
    let mut b = Batch::default();
    *blocks += f.write(off, data, model.len() as u64, &mut b).unwrap();
    f.store.apply(b).unwrap();
    let end = off as usize + data.len();
    if model.len() < end {
        model.resize(end, 0);
    }
    model[off as usize..end].copy_from_slice(data);
}

fn stored_blocks(f: &FileBlocks) -> i64 {
    f.store.scan_prefix(&keys::block_prefix(f.ino)).count() as i64
}

#[test]
fn sparse_file_reads_zeros_and_stores_only_written_blocks() {
    let fx = fixture();
    let f = fx.file(10, 1);
    let mut model = Vec::new();
    let mut blocks = 0;
    apply_write(&f, &mut model, &mut blocks, 1 << 20, b"far away");
    assert_eq!(blocks, 1);
    assert_eq!(stored_blocks(&f), 1);
    let got = f.read(0, model.len(), model.len() as u64).unwrap();
    assert_eq!(got, model);
    assert_eq!(f.next_data(0, model.len() as u64).unwrap(), Some(1 << 20));
    assert_eq!(f.next_hole(0, model.len() as u64).unwrap(), 0);
    assert_eq!(f.next_hole(1 << 20, model.len() as u64).unwrap(), model.len() as u64);
}

#[test]
fn one_tib_sparse_offset_works_and_past_max_is_too_large() {
    let fx = fixture();
    let f = fx.file(11, 1);
    let mut b = Batch::default();
    let tib = 1u64 << 40;
    f.write(tib, b"x", 0, &mut b).unwrap();
    fx.store.apply(b).unwrap();
    assert_eq!(f.read(tib, 10, tib + 1).unwrap(), b"x");
    let mut b = Batch::default();
    assert!(matches!(f.write(MAX_FILE_SIZE, b"x", 0, &mut b), Err(Error::TooLarge(_))));
    assert!(matches!(f.write(u64::MAX - 1, b"xy", 0, &mut b), Err(Error::TooLarge(_))));
}

#[test]
fn block_bound_to_file_position_and_generation() {
    let fx = fixture();
    let f = fx.file(12, 7);
    let mut model = Vec::new();
    let mut blocks = 0;
    apply_write(&f, &mut model, &mut blocks, 0, &[0xAA; 8192]);
    // Move block 1's index entry to position 0: its tag names block 1.
    let b1 = fx.store.get(&keys::block(12, 1)).unwrap().unwrap();
    fx.store.put(&keys::block(12, 0), b1.to_vec()).unwrap();
    assert!(matches!(f.read(0, 10, 8192), Err(Error::Index { ino: 12, block: 0, .. })));
    // Same entry under another generation (a recreated inode) or inode: fail.
    let other_gen = fx.file(12, 8);
    assert!(matches!(other_gen.read(4096, 10, 8192), Err(Error::Index { .. })));
    fx.store.put(&keys::block(13, 1), b1.to_vec()).unwrap();
    assert!(matches!(fx.file(13, 7).read(4096, 10, 8192), Err(Error::Index { .. })));
    // Truncated value: a length error.
    fx.store.put(&keys::block(12, 1), b1[..30].to_vec()).unwrap();
    assert!(matches!(f.read(4096, 10, 8192), Err(Error::Length { len: 30, .. })));
}

#[test]
fn records_are_bound_to_their_version_and_place() {
    let fx = fixture();
    let f = fx.file(20, 1);
    let (mut model, mut blocks) = (Vec::new(), 0);
    apply_write(&f, &mut model, &mut blocks, 0, &[1; 8192]);
    let first = IndexEntry::decode(&fx.store.get(&keys::block(20, 0)).unwrap().unwrap()).unwrap();
    apply_write(&f, &mut model, &mut blocks, 0, &[2; 4096]);
    let now = IndexEntry::decode(&fx.store.get(&keys::block(20, 0)).unwrap().unwrap()).unwrap();
    assert!(now.version > first.version);
    let seg = fx._dir.path().join("seg").join(format!("{:016x}", now.segment));
    let mut bytes = std::fs::read(&seg).unwrap();
    let rec = record_len(4096);
    // The older genuine record put back where the current one is: refused.
    let (old_at, new_at) = (first.offset as usize, now.offset as usize);
    let old_record = bytes[old_at..old_at + rec].to_vec();
    bytes[new_at..new_at + rec].copy_from_slice(&old_record);
    std::fs::write(&seg, &bytes).unwrap();
    assert!(matches!(f.read(0, 10, 8192), Err(Error::Index { ino: 20, block: 0, .. })));
    // Its header rewritten to claim the current version: the AEAD refuses it.
    bytes[new_at + 16..new_at + 24].copy_from_slice(&now.version.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    assert!(matches!(f.read(0, 10, 8192), Err(Error::Auth { ino: 20, block: 0 })));
    // The index entry's version changed to the old record's: its tag refuses it.
    let forged = IndexEntry { version: first.version, offset: first.offset, ..now };
    fx.store.put(&keys::block(20, 0), forged.encode()).unwrap();
    assert!(matches!(f.read(0, 10, 8192), Err(Error::Index { .. })));
    // Block 1 is untouched and still reads.
    assert_eq!(f.read(4096, 4096, 8192).unwrap(), vec![1; 4096]);
}

#[test]
fn version_one_values_still_read_and_are_replaced_on_write() {
    let fx = fixture();
    let f = fx.file(30, 3);
    let v1 = f.seal_block(0, &[5; 4096]).unwrap();
    fx.store.put(&keys::block(30, 0), v1).unwrap();
    assert_eq!(f.read(0, 4096, 4096).unwrap(), vec![5; 4096]);
    let mut b = Batch::default();
    assert_eq!(f.write(10, b"new", 4096, &mut b).unwrap(), 0);
    fx.store.apply(b).unwrap();
    let v = fx.store.get(&keys::block(30, 0)).unwrap().unwrap();
    assert_eq!(v.len(), INDEX_ENTRY_LEN, "a written block moves to a segment");
    let mut want = vec![5; 4096];
    want[10..13].copy_from_slice(b"new");
    assert_eq!(f.read(0, 4096, 4096).unwrap(), want);
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Punch(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40_000, prop::collection::vec(any::<u8>(), 0..10_000)).prop_map(|(o, d)| Op::Write(o, d)),
        1 => (0u64..50_000).prop_map(Op::Truncate),
        1 => (0u64..50_000, 0u64..20_000).prop_map(|(o, l)| Op::Punch(o, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn block_layer_matches_vec_model(ops in prop::collection::vec(op(), 1..25)) {
        let fx = fixture();
        let f = fx.file(20, 3);
        let mut model: Vec<u8> = Vec::new();
        let mut blocks = 0i64;
        for op in ops {
            match op {
                Op::Write(o, d) => apply_write(&f, &mut model, &mut blocks, o, &d),
                Op::Truncate(n) => {
                    let mut b = Batch::default();
                    blocks += f.truncate(model.len() as u64, n, &mut b).unwrap();
                    fx.store.apply(b).unwrap();
                    model.resize(n as usize, 0);
                }
                Op::Punch(o, l) => {
                    let mut b = Batch::default();
                    blocks += f.punch_hole(o, l, model.len() as u64, &mut b).unwrap();
                    fx.store.apply(b).unwrap();
                    let end = ((o + l) as usize).min(model.len());
                    if (o as usize) < end {
                        model[o as usize..end].fill(0);
                    }
                }
            }
            let size = model.len() as u64;
            prop_assert_eq!(&f.read(0, model.len() + 100, size).unwrap(), &model);
            prop_assert_eq!(blocks, stored_blocks(&f));
            // Every hole reported reads as zeros; every data offset is below size.
            let mut at = 0;
            while let Some(d) = f.next_data(at, size).unwrap() {
                let h = f.next_hole(d, size).unwrap();
                prop_assert!(h > d && h <= size);
                at = h;
            }
        }
        // Random-offset partial reads agree too.
        for (o, l) in [(0usize, 1usize), (4095, 2), (4096, 4096), (100, 9000)] {
            let size = model.len() as u64;
            let want: Vec<u8> = model.iter().skip(o).take(l).copied().collect();
            prop_assert_eq!(f.read(o as u64, l, size).unwrap(), want);
        }
    }
}
