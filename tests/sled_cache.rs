//! sled 0.34.7's page cache did not bound pages of large values: each of
//! its 256 LRU shards keeps the page it touched last whatever its size, and
//! a page stored as a blob (a leaf of large values: vaultfs's audit chunks
//! are 32 KiB each, up to 16 to a leaf) was counted by the size of its
//! pointer. Writing them held every one in memory, ~130 MB whatever the
//! capacity, and a mount's memory grew with its audit log (docs/PERFORMANCE.md,
//! "Memory"). The patch in vendor/sled (vendor/README.md) bounds it; this
//! fails without it.

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn pages_of_large_values_are_evicted_past_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        sled::Config::new().path(dir.path()).cache_capacity(8 << 20).flush_every_ms(None).open().unwrap();
    let value = vec![7u8; 32 * 1024];
    let before = resident_kib();
    // 4,000 values of 32 KiB: 125 MiB written, as vaultfs writes its
    // audit chunks (appended keys, each batch with a small overwritten key).
    for i in 0u64..4000 {
        let mut b = sled::Batch::default();
        b.insert([&b"R"[..], &i.to_be_bytes()].concat(), value.clone());
        b.insert(&b"S"[..], vec![1u8; 3000]);
        db.apply_batch(b).unwrap();
    }
    db.flush().unwrap();
    let grown_mib = resident_kib().saturating_sub(before) / 1024;
    // Unpatched: about 100 MiB. Patched: the 8 MiB cache, the log buffers
    // and what the allocator keeps.
    assert!(grown_mib < 48, "writing 125 MiB of 32 KiB values grew the process by {grown_mib} MiB");
}
