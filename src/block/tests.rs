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

/// The spans `(first, last)` of the file's index entries, in key order.
fn spans(f: &FileBlocks) -> Vec<(u64, u64)> {
    f.store
        .scan_prefix(&keys::block_prefix(f.ino))
        .map(|e| {
            let (k, v) = e.unwrap();
            entry_span(4096, keys::block_number(&k).unwrap(), &v)
        })
        .collect()
}

/// Stored blocks, counted from the index; its entries must not overlap.
fn stored_blocks(f: &FileBlocks) -> i64 {
    let spans = spans(f);
    for w in spans.windows(2) {
        assert!(w[0].1 < w[1].0, "index entries overlap: {spans:?}");
    }
    spans.iter().map(|(a, b)| (b - a + 1) as i64).sum()
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
    // Two writes of one block each: two one-block index entries.
    apply_write(&f, &mut model, &mut blocks, 0, &[0xAA; 4096]);
    apply_write(&f, &mut model, &mut blocks, 4096, &[0xAA; 4096]);
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
    apply_write(&f, &mut model, &mut blocks, 0, &[1; 4096]);
    apply_write(&f, &mut model, &mut blocks, 4096, &[1; 4096]);
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
    assert_eq!(v.len(), crate::format::segment::INDEX_ENTRY_LEN, "a written block moves to a segment");
    let mut want = vec![5; 4096];
    want[10..13].copy_from_slice(b"new");
    assert_eq!(f.read(0, 4096, 4096).unwrap(), want);
}

#[test]
fn a_write_is_one_entry_and_overwrites_split_it() {
    let fx = fixture();
    let f = fx.file(40, 1);
    let (mut model, mut blocks) = (Vec::new(), 0);
    let data: Vec<u8> = (0..16 * 4096).map(|i| (i % 251) as u8).collect();
    apply_write(&f, &mut model, &mut blocks, 0, &data);
    assert_eq!(spans(&f), [(0, 15)]);
    let v = fx.store.get(&keys::block(40, 15)).unwrap().unwrap();
    assert_eq!(v.len(), crate::format::segment::RUN_ENTRY_LEN);
    // A whole block in the middle: the run keeps both sides.
    apply_write(&f, &mut model, &mut blocks, 5 * 4096, &[7; 4096]);
    assert_eq!(spans(&f), [(0, 4), (5, 5), (6, 15)]);
    // A few bytes inside block 9: read-modify-write, split again.
    apply_write(&f, &mut model, &mut blocks, 9 * 4096 + 100, b"inside");
    assert_eq!(spans(&f), [(0, 4), (5, 5), (6, 8), (9, 9), (10, 15)]);
    assert_eq!(f.read(0, model.len(), model.len() as u64).unwrap(), model);
    // Truncate into a run, punch across entries.
    let mut b = Batch::default();
    blocks += f.truncate(model.len() as u64, 12 * 4096 + 1, &mut b).unwrap();
    fx.store.apply(b).unwrap();
    model.truncate(12 * 4096 + 1);
    let mut b = Batch::default();
    blocks += f.punch_hole(3 * 4096, 4 * 4096, model.len() as u64, &mut b).unwrap();
    fx.store.apply(b).unwrap();
    model[3 * 4096..7 * 4096].fill(0);
    assert_eq!(spans(&f), [(0, 2), (7, 8), (9, 9), (10, 11), (12, 12)]);
    assert_eq!(blocks, stored_blocks(&f));
    assert_eq!(f.read(0, model.len(), model.len() as u64).unwrap(), model);
    assert_eq!(f.next_data(3 * 4096, model.len() as u64).unwrap(), Some(7 * 4096));
    assert_eq!(f.next_hole(7 * 4096, model.len() as u64).unwrap(), model.len() as u64);
    // A write larger than a run's limit (1 MiB of blocks) takes two entries.
    let g = fx.file(41, 1);
    let (mut m2, mut b2) = (Vec::new(), 0);
    apply_write(&g, &mut m2, &mut b2, 0, &vec![3u8; 300 * 4096]);
    assert_eq!(spans(&g), [(0, 255), (256, 299)]);
    assert_eq!(g.read(0, m2.len(), m2.len() as u64).unwrap(), m2);
}

/// Index entries of runs are bound like one-block entries: to their
/// place (the key names the last block), their first block, versions and
/// count; entries that overlap are damage.
#[test]
fn run_entries_are_bound_to_their_place_and_count() {
    let fx = fixture();
    let f = fx.file(50, 1);
    let (mut model, mut blocks) = (Vec::new(), 0);
    apply_write(&f, &mut model, &mut blocks, 0, &[1; 4 * 4096]);
    apply_write(&f, &mut model, &mut blocks, 4 * 4096, &[2; 4 * 4096]);
    let size = model.len() as u64;
    let key = |b| keys::block(50, b);
    let run = |b| fx.store.get(&key(b)).unwrap().unwrap().to_vec();
    let (r1, r2) = (run(3), run(7));
    let restore = || {
        let mut b = Batch::default();
        for k in 0..8 {
            b.delete(&key(k)[..]);
        }
        b.put(&key(3)[..], r1.clone());
        b.put(&key(7)[..], r2.clone());
        fx.store.apply(b).unwrap();
        assert_eq!(f.read(0, model.len(), size).unwrap(), model);
    };
    let corrupt =
        |at: u64| matches!(f.read(at * 4096, 10, size), Err(Error::Index { .. } | Error::Auth { .. }));
    // Moved to end one block later (covering 1..=4), or swapped.
    fx.store
        .apply({
            let mut b = Batch::default();
            b.delete(&key(3)[..]);
            b.put(&key(4)[..], r1.clone());
            b
        })
        .unwrap();
    // Its tag fails, and a damaged run entry makes every block it could
    // cover an error (block 0 too: never a hole).
    assert!(corrupt(0) && corrupt(1) && corrupt(4));
    restore();
    fx.store.put(&key(3), r2.clone()).unwrap();
    fx.store.put(&key(7), r1.clone()).unwrap();
    assert!(corrupt(0) && corrupt(3) && corrupt(4) && corrupt(7));
    restore();
    // The count edited (shorter, longer): the tag refuses it. (Blocks a
    // shorter count leaves out read as holes, as a deleted entry's do:
    // THREAT_MODEL.md.) A longer one overlaps the run before it.
    for count in [2u64, 3, 5] {
        let mut v = r2.clone();
        v[24..32].copy_from_slice(&count.to_be_bytes());
        fx.store.put(&key(7), v).unwrap();
        assert!(corrupt(7) && corrupt(8 - count.min(4)), "count {count}");
        assert!(f.read(0, model.len(), size).is_err(), "count {count}");
        restore();
    }
    // A run reaching below block 0, and a count past the limit.
    fx.store.put(&key(1), r1.clone()).unwrap();
    fx.store
        .apply({
            let mut b = Batch::default();
            b.delete(&key(3)[..]);
            b
        })
        .unwrap();
    assert!(corrupt(1));
    restore();
    let mut v = r2.clone();
    v[24..32].copy_from_slice(&100_000u64.to_be_bytes());
    fx.store.put(&key(7), v).unwrap();
    assert!(corrupt(7));
    restore();
    // Overlapping entries: a one-block entry of block 2 left beside the run.
    let mut b = Batch::default();
    f.write(2 * 4096, &[9; 4096], size, &mut b).unwrap();
    fx.store.apply(b).unwrap();
    let single = run(2);
    restore();
    fx.store.put(&key(2), single).unwrap();
    assert!(matches!(f.read(0, model.len(), size), Err(Error::Index { .. })));
    restore();
    // A record inside the run swapped with its neighbour in the segment.
    let e = IndexEntry::decode(&r1).unwrap();
    let seg = fx._dir.path().join("seg").join(format!("{:016x}", e.segment));
    let mut bytes = std::fs::read(&seg).unwrap();
    let rec = record_len(4096);
    let (x, y) = (e.offset as usize + rec, e.offset as usize + 2 * rec);
    let one = bytes[x..x + rec].to_vec();
    bytes.copy_within(y..y + rec, x);
    bytes[y..y + rec].copy_from_slice(&one);
    std::fs::write(&seg, &bytes).unwrap();
    assert!(corrupt(1) && corrupt(2));
    assert_eq!(f.read(0, 4096, size).unwrap(), vec![1; 4096]);
    assert_eq!(f.read(3 * 4096, 4096, size).unwrap(), vec![1; 4096]);
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
