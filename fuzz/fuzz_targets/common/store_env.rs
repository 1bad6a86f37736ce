//! One store with segment files per fuzzing process (sled is far too slow to
//! open per input), shared by the block targets: each input takes inode
//! numbers of its own and deletes its blocks when done.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use vaultfs::block::{Space, gc};
use vaultfs::crypto::Key32;
use vaultfs::store::Store;

pub struct Env {
    /// Kept alive for the process; segment_open also edits the files in it.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub key: Key32,
    pub space: Space,
    next_ino: AtomicU64,
}

impl Env {
    pub fn next_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps the segment files small: once they pass 64 MiB, collects what
    /// the inputs left dead (and so fuzzes the collector too: later inputs
    /// read what it moved).
    pub fn collect_if_large(&self, block_size: u32) {
        let (segments, _) = self.store.segments().expect("segments");
        if segments.iter().map(|s| s.1).sum::<u64>() > 64 << 20 {
            gc::count_dead(&self.store, &self.space, block_size).expect("count");
            loop {
                let victims = gc::pick_many(&self.store, &self.space, 4, 128 << 20).expect("pick");
                if victims.is_empty() {
                    break;
                }
                gc::pack(&self.store, &self.space, block_size, &victims, |_| ()).expect("collect");
            }
        }
    }
}

pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("vaultfs-fuzz-").tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true).expect("open store");
        let space = Space::load(&store).expect("versions");
        Env { dir, store, key: Key32::from_bytes([7; 32]), space, next_ino: AtomicU64::new(16) }
    })
}
