//! The audit log in the store (docs/AUDIT.md, "Storage in the vault").
//!
//! Leaves are sealed under the audit leaf key (paths and names are secrets),
//! several to a store key: each store write of the log seals the leaves it
//! carries as chunks of up to `CHUNK_BYTES` (one sled key per record made
//! sled's per-key write path most of what the log cost). Tree nodes, the
//! frontier and the signed checkpoints are stored as they are
//! (hashes of sealed-away leaves that carry nanosecond times, and notes meant
//! to be published). The in-memory frontier is the truth while the vault is
//! open; every store write of the log carries the leaves appended since the
//! last one and their completed tree nodes in one batch.
//!
//! Two ways in: `append_with` puts the leaf into the batch of the operation
//! it records (the record and the change land together or not at all);
//! `append` queues it (reads, opens, denials) until the next write or
//! `commit`, which callers run for records that must be durable at once.
//!
//! The stored frontier may lag the stored leaves: operations' batches leave
//! it out (one key fewer per write), commits and checkpoints bring it up to
//! date, and `open` hashes the leaves stored after it onto it.
//!
//! Where an operation's batch puts its records: in the next of `SLOTS`
//! fixed store keys, a ring. Commits pack what the slots hold into chunks
//! (after which those slots are stale), and so does an operation's batch
//! when the ring is full. Why not a new chunk key per change: sled 0.34
//! never reclaims the segments of a store gaining a small key with every
//! overwrite (docs/PERFORMANCE.md, "Store growth"), and deleting those keys
//! once packed made every change pay a second key operation; overwriting a
//! fixed key is as cheap as the change's own keys.
//!
//! Files: `write.rs` (the slot ring and the packing into chunks),
//! `read.rs` (leaves in order, the `.audit` export), `proofs.rs`,
//! `verify_store.rs` (the whole stored log checked), `archive.rs` (the
//! oldest leaves moved to archive files, the base the log goes on from).

use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::archive::Base;
use super::checkpoint::{Checkpoint, host_origin, vault_origin};
use super::leaf::Leaf;
use super::merkle::{self, Frontier, Hash, NodeId, Nodes};
use super::verify::ChainReport;
use super::{Error as AuditError, export};
use crate::crypto::{self, Key32, SigningKey, VerifyingKey};
use crate::format::{aad, keys};
use crate::store::{self, Batch, Store};

/// What can go wrong storing or reading the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("audit log is corrupted: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A proof or root asked for leaves the log does not have.
    #[error("{0}")]
    Range(String),
    /// Writing an archive file failed.
    #[error("writing the archive: {0}")]
    Write(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, LogError>;

fn corrupt(msg: impl Into<String>) -> LogError {
    LogError::Corrupt(msg.into())
}

/// How often a checkpoint is signed while the log grows.
/// With the committer's 200 ms tick, a growing log is checkpointed at most
/// a second after it grew.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(800);

/// The open log of one vault.
pub struct Log {
    vault_id: [u8; 16],
    origin: String,
    leaf_key: Key32,
    signer: SigningKey,
    state: Mutex<State>,
    /// Where the stored log starts (docs/AUDIT.md, "Archives"): the leaves
    /// before `base.frontier.size` are in archive files. Lock order: `state`
    /// first.
    base: RwLock<Base>,
    /// Where `.audit`'s lines end, by groups of leaves (`text.rs`). Lock
    /// order: after `state` if both.
    index: Mutex<text::LineIndex>,
}

mod archive;
mod proofs;
mod read;
mod text;
mod verify_store;
mod write;
pub use archive::base_frontier;
#[cfg(any(test, feature = "internals"))]
pub use archive::Written;
pub use proofs::STORED_NODE_LEVEL;
pub use text::AuditText;
use read::decode_chunk;
pub use write::{SLOTS, slot_range};
#[cfg(any(test, feature = "internals"))]
pub use write::CHUNK_BYTES;
use write::{Packing, chunk_aad};

struct State {
    frontier: Frontier,
    /// Appended, not yet in the store: leaves `pending_first..` in chunk
    /// plaintext form (built in place: no allocation per record), and the
    /// completed nodes that are stored (`STORED_NODE_LEVEL` and up).
    pending: Vec<u8>,
    pending_first: u64,
    pending_nodes: Vec<(NodeId, Hash)>,
    /// Stored since the last full chunk, to be packed (see `Packing`).
    packing: Option<Packing>,
    /// The slot the next operation's batch writes.
    next_slot: u16,
    /// Size of the stored frontier (it lags behind after operations' batches).
    frontier_stored: u64,
    /// Size and time of the newest stored checkpoint.
    checkpointed: u64,
    checkpointed_at: Instant,
}

/// Where the pending leaves ended, to undo an append whose batch failed.
struct Mark {
    frontier: Frontier,
    pending: usize,
    nodes: usize,
}

fn encode_frontier(f: &Frontier) -> Vec<u8> {
    let mut out = f.size.to_be_bytes().to_vec();
    for h in &f.hashes {
        out.extend_from_slice(h);
    }
    out
}

/// The stored frontier: tree size u64 ‖ one 32-byte hash per set bit of it.
pub fn decode_frontier(bytes: &[u8]) -> Result<Frontier> {
    if bytes.len() < 8 || (bytes.len() - 8) % 32 != 0 {
        return Err(corrupt("frontier has a bad length"));
    }
    let size = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let hashes = bytes[8..].chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    let f = Frontier { size, hashes };
    if !f.is_well_formed() {
        return Err(corrupt("frontier does not match its size"));
    }
    Ok(f)
}

impl Log {
    /// Opens the log stored in `store` (empty for a new vault).
    pub fn open(store: &Store, vault_id: [u8; 16], leaf_key: Key32, signer: SigningKey) -> Result<Log> {
        Log::open_named(store, vault_id, None, leaf_key, signer)
    }

    /// As `open`, for the log of `host` (None: the vault's own log): a
    /// read-only mount's log of its accesses, whose checkpoints carry the
    /// host's origin (`checkpoint::host_origin`).
    pub fn open_named(
        store: &Store,
        vault_id: [u8; 16],
        host: Option<&str>,
        leaf_key: Key32,
        signer: SigningKey,
    ) -> Result<Log> {
        let frontier = match store.get(keys::AUDIT_FRONTIER)? {
            Some(v) => decode_frontier(&v)?,
            None => Frontier::default(),
        };
        let base = archive::read_base(store, &vault_id, &leaf_key)?;
        if frontier.size < base.frontier.size {
            return Err(corrupt(format!(
                "the frontier covers {} leaves but {} are archived",
                frontier.size, base.frontier.size
            )));
        }
        let chunks_end = Self::chunks_end(store, base.frontier.size)?;
        let slots = Self::live_slot_values(store, chunks_end)?;
        let stored = slots.iter().map(|s| s.0 + u64::from(s.1)).fold(chunks_end, u64::max);
        // A frontier ahead of the stored leaves (leaves rolled back on their
        // own) would make the next append leave a gap: refuse.
        if frontier.size > stored {
            return Err(corrupt(format!(
                "frontier covers {} leaves but {stored} are stored (run `vaultfs audit verify`)",
                frontier.size
            )));
        }
        let checkpointed = match store.last_key_with_prefix(&[keys::AUDIT_CHECKPOINT])? {
            Some(k) => keys::audit_number(&k).ok_or_else(|| corrupt("bad checkpoint key"))?,
            None => 0,
        };
        let frontier_stored = frontier.size;
        let log = Log {
            origin: match host {
                Some(host) => host_origin(&vault_id, host),
                None => vault_origin(&vault_id),
            },
            vault_id,
            leaf_key,
            signer,
            state: Mutex::new(State {
                frontier,
                pending: Vec::new(),
                pending_first: 0,
                pending_nodes: Vec::new(),
                packing: None,
                next_slot: 0,
                frontier_stored,
                checkpointed,
                checkpointed_at: Instant::now(),
            }),
            base: RwLock::new(base),
            index: Mutex::default(),
        };
        // Leaves stored by operations since the frontier was: their nodes
        // were stored with them, only the frontier needs them.
        let mut f = log.state().frontier.clone();
        for entry in log.leaves(store, frontier_stored, stored) {
            f.append(merkle::leaf_hash(&entry?.1));
        }
        log.state().frontier = f;
        // Live slots (the process stopped before a commit packed them): the
        // next write packs them; which slot is oldest is not known, so none
        // is overwritten before.
        if !slots.is_empty() {
            let mut plain = Vec::new();
            for (first, count, v) in &slots {
                plain.extend_from_slice(&log.open_chunk(*first, *count, &v[12..])?);
            }
            log.state().packing = Some(Packing { first: chunks_end, plain, tail: None, slots: SLOTS });
        }
        Ok(log)
    }

    /// The first leaf still in the store (leaves before it are archived).
    pub fn base_size(&self) -> u64 {
        self.base.read().unwrap_or_else(|p| p.into_inner()).frontier.size
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of records appended and not yet stored.
    pub fn pending_bytes(&self) -> usize {
        self.state().pending.len()
    }

    /// Number of leaves appended (stored or pending).
    pub fn size(&self) -> u64 {
        self.state().frontier.size
    }

    /// Time since this log last signed a checkpoint (or was opened).
    pub fn checkpoint_age(&self) -> std::time::Duration {
        self.state().checkpointed_at.elapsed()
    }

    /// The public key checkpoints verify under.
    pub fn public_key(&self) -> VerifyingKey {
        self.signer.verifying_key()
    }

    /// Appends `leaf` (its seq is assigned here) to the in-memory log; it is
    /// stored with the next write. Returns its seq.
    pub fn append(&self, leaf: Leaf) -> u64 {
        let mut st = self.state();
        Self::push(&mut st, leaf)
    }

    /// Gives `leaf` the next seq, encodes it into the open pending chunk and
    /// adds it to the tree.
    fn push(st: &mut State, mut leaf: Leaf) -> u64 {
        leaf.seq = st.frontier.size;
        if st.pending.is_empty() {
            st.pending_first = leaf.seq;
        }
        let start = st.pending.len();
        st.pending.extend_from_slice(&[0, 0]);
        leaf.encode_into(&mut st.pending);
        // A leaf is at most FIXED_LEN + 16 + 2 + MAX_PATH bytes: fits u16.
        let len = (st.pending.len() - start - 2) as u16;
        st.pending[start..start + 2].copy_from_slice(&len.to_be_bytes());
        let nodes = st.frontier.append(merkle::leaf_hash(&st.pending[start + 2..]));
        st.pending_nodes.extend(nodes.into_iter().filter(|(id, _)| id.level >= STORED_NODE_LEVEL));
        leaf.seq
    }

    fn mark(st: &State) -> Mark {
        Mark { frontier: st.frontier.clone(), pending: st.pending.len(), nodes: st.pending_nodes.len() }
    }

    fn rollback(st: &mut State, mark: Mark) {
        st.frontier = mark.frontier;
        st.pending.truncate(mark.pending);
        st.pending_nodes.truncate(mark.nodes);
    }

    /// Appends `leaf` and applies `batch` with every pending record in it:
    /// the change and its record land together or not at all. On failure the
    /// log is as it was before the call.
    pub fn append_with(&self, store: &Store, leaf: Leaf, batch: Batch) -> Result<u64> {
        let mut st = self.state();
        let mark = Self::mark(&st);
        let seq = Self::push(&mut st, leaf);
        if let Err(e) = self.write_pending(store, &mut st, batch, false) {
            Self::rollback(&mut st, mark);
            return Err(e);
        }
        Ok(seq)
    }

    /// Stores every pending record and packs the slots (durable with the
    /// store's next commit, like any batch).
    pub fn commit(&self, store: &Store) -> Result<()> {
        let mut st = self.state();
        self.write_pending(store, &mut st, Batch::default(), true)
    }

    /// Stores every pending record durably, the cheap way: in a slot, as an
    /// operation's batch does, then flushes the store (records that must be
    /// on disk before an access is answered, and fsync). The flush runs even
    /// when nothing was pending: another thread may have stored this
    /// thread's record in a batch that is not on disk yet.
    pub fn make_durable(&self, store: &Store) -> Result<()> {
        {
            let mut st = self.state();
            self.write_pending(store, &mut st, Batch::default(), false)?;
        }
        Ok(store.flush()?)
    }

    /// Stores pending records and, if the tree grew since the last one and
    /// `only_if_due` allows, a newly signed checkpoint. Returns the newest
    /// checkpoint note, if any exists.
    pub fn checkpoint(&self, store: &Store, only_if_due: bool) -> Result<Option<String>> {
        let mut st = self.state();
        self.write_pending(store, &mut st, Batch::default(), true)?;
        self.checkpoint_locked(store, &mut st, only_if_due)
    }

    /// Stores what is pending, makes sure a signed checkpoint covers the
    /// whole log, and freezes the store (`Store::freeze`) before any other
    /// record can be stored: the frozen store holds exactly the leaves the
    /// returned note signs. Returns (note, tree size, frozen store). Records
    /// appended meanwhile wait in memory; the committer and every writer
    /// wait at the store's gate until the view is dropped.
    pub fn checkpoint_and_freeze<'s>(&self, store: &'s Store) -> Result<(String, u64, store::Frozen<'s>)> {
        let mut st = self.state();
        self.write_pending(store, &mut st, Batch::default(), true)?;
        let note =
            self.checkpoint_locked(store, &mut st, false)?.ok_or_else(|| corrupt("the log is empty"))?;
        let size = st.frontier.size;
        // Lock order everywhere: log state, then the store's gate.
        let frozen = store.freeze();
        drop(st);
        Ok((note, size, frozen))
    }

    fn checkpoint_locked(&self, store: &Store, st: &mut State, only_if_due: bool) -> Result<Option<String>> {
        let size = st.frontier.size;
        let due = size > st.checkpointed && st.checkpointed_at.elapsed() >= CHECKPOINT_EVERY;
        if size > 0
            && (size > st.checkpointed || !store.contains(&keys::audit_checkpoint(size))?)
            && (due || !only_if_due)
        {
            let note =
                Checkpoint { origin: self.origin.clone(), size, root: st.frontier.root() }.sign(&self.signer);
            let mut b = Batch::default();
            b.put(keys::audit_checkpoint(size), note.into_bytes());
            store.apply(b)?;
            st.checkpointed = size;
            st.checkpointed_at = Instant::now();
        }
        if st.checkpointed == 0 {
            return Ok(None);
        }
        let note = store
            .get(&keys::audit_checkpoint(st.checkpointed))?
            .ok_or_else(|| corrupt("newest checkpoint vanished"))?;
        Ok(Some(String::from_utf8(note.to_vec()).map_err(|_| corrupt("checkpoint is not UTF-8"))?))
    }
}

#[cfg(test)]
mod tests {
    use super::read::leaf_aad;
    use super::verify_store::LEGACY_NODE_LEVEL;
    use super::*;
    use crate::audit::leaf::Op;
    use crate::audit::verify;

    fn leaf(op: Op, path: &str) -> Leaf {
        Leaf {
            seq: 0,
            time_ns: 1,
            uid: 1000,
            gid: 1000,
            pid: 7,
            comm: b"test".to_vec(),
            op,
            level: Some(1),
            ino: 16,
            path: path.as_bytes().to_vec(),
            offset: 0,
            len: 0,
            result: 0,
            note: Vec::new(),
        }
    }

    fn try_open(store: &Store) -> Result<Log> {
        Log::open(
            store,
            [9; 16],
            Key32::from_bytes([1; 32]),
            SigningKey::from_seed(Key32::from_bytes([2; 32])),
        )
    }

    fn open(store: &Store) -> Log {
        try_open(store).unwrap()
    }

    #[test]
    fn appends_survive_reopen_and_export_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        for i in 0..10 {
            log.append(leaf(Op::Read, &format!("/1-working/f{i}")));
        }
        log.commit(&store).unwrap();
        let mut b = Batch::default();
        b.put(&b"Zdata"[..], b"x".to_vec());
        assert_eq!(log.append_with(&store, leaf(Op::Write, "/1-working/f"), b).unwrap(), 10);
        assert!(store.get(b"Zdata").unwrap().is_some());
        // The operation's batch left the frontier behind; reopening catches up.
        let lagging = decode_frontier(&store.get(keys::AUDIT_FRONTIER).unwrap().unwrap()).unwrap();
        assert_eq!(lagging.size, 10);
        assert_eq!(log.verify_store(&store).unwrap().leaves, 11);
        let key = log.public_key();
        drop(log);
        let log = open(&store);
        assert_eq!(log.size(), 11);
        log.commit(&store).unwrap();
        assert_eq!(decode_frontier(&store.get(keys::AUDIT_FRONTIER).unwrap().unwrap()).unwrap().size, 11);
        log.append(leaf(Op::Open, "/x"));
        let text = log.export(&store).unwrap();
        let report = verify::verify_export(&text, &key).unwrap();
        assert_eq!(report.leaves, 12);
        assert_eq!(log.verify_store(&store).unwrap().leaves, 12);
        let root = log.root(&store, 12).unwrap();
        for i in [0, 5, 11] {
            let proof = log.inclusion_proof(&store, i, 12).unwrap();
            let (_, bytes) = log.leaves(&store, i, i + 1).next().unwrap().unwrap();
            assert!(merkle::verify_inclusion(&merkle::leaf_hash(&bytes), i, 12, &proof, &root));
        }
        let old = log.root(&store, 5).unwrap();
        let proof = log.consistency_proof(&store, 5, 12).unwrap();
        assert!(merkle::verify_consistency(5, 12, &old, &root, &proof));
        assert!(log.inclusion_proof(&store, 12, 12).is_err());
        assert!(log.root(&store, 13).is_err());
    }

    #[test]
    fn proofs_mix_stored_and_rebuilt_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        let n = 700u64;
        for i in 0..n {
            log.append(leaf(Op::Read, &format!("/f{i}")));
            if i % 97 == 0 {
                log.commit(&store).unwrap();
            }
        }
        log.commit(&store).unwrap();
        assert_eq!(log.verify_store(&store).unwrap().leaves, n);
        let hashes: Vec<Hash> = log.leaves(&store, 0, n).map(|r| merkle::leaf_hash(&r.unwrap().1)).collect();
        for size in [1, 16, 17, 255, 256, 257, 513, 700] {
            let root = log.root(&store, size).unwrap();
            let mut f = Frontier::default();
            hashes[..size as usize].iter().for_each(|h| drop(f.append(*h)));
            assert_eq!(root, f.root(), "root of {size}");
            for i in [0, size / 2, size - 1] {
                let proof = log.inclusion_proof(&store, i, size).unwrap();
                assert!(
                    merkle::verify_inclusion(&hashes[i as usize], i, size, &proof, &root),
                    "{i} in {size}"
                );
            }
            for old in [1, size / 3, size] {
                if old == 0 {
                    continue;
                }
                let proof = log.consistency_proof(&store, old, size).unwrap();
                let old_root = log.root(&store, old).unwrap();
                assert!(merkle::verify_consistency(old, size, &old_root, &root, &proof), "{old} to {size}");
            }
        }
        // Only subtrees of 256 leaves and up are stored.
        assert!(store.scan_prefix(&[keys::AUDIT_NODE]).all(|r| r.unwrap().0[1] >= STORED_NODE_LEVEL));
    }

    #[test]
    fn tampering_with_the_stored_log_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        for i in 0..8 {
            // Reopened each time: a leaf per chunk, nothing to pack.
            let log = open(&store);
            log.append_with(&store, leaf(Op::Write, &format!("/f{i}")), Batch::default()).unwrap();
            log.checkpoint(&store, false).unwrap();
        }
        let log = open(&store);
        assert_eq!(log.verify_store(&store).unwrap().leaves, 8);
        let err = |store: &Store| open(store).verify_store(store).unwrap_err().to_string();

        // One byte of a sealed chunk (each round above stored one leaf).
        let good = store.get(&keys::audit_leaves(3, 1)).unwrap().unwrap().to_vec();
        let mut bad = good.clone();
        bad[30] ^= 1;
        store.put(&keys::audit_leaves(3, 1), bad).unwrap();
        assert!(err(&store).contains("leaf 3 fails authentication"), "{}", err(&store));
        // Two chunks swapped.
        let five = store.get(&keys::audit_leaves(5, 1)).unwrap().unwrap().to_vec();
        store.put(&keys::audit_leaves(3, 1), five).unwrap();
        store.put(&keys::audit_leaves(5, 1), good.clone()).unwrap();
        assert!(err(&store).contains("leaf 3"), "{}", err(&store));
        let three = store.get(&keys::audit_leaves(3, 1)).unwrap().unwrap().to_vec();
        store.put(&keys::audit_leaves(5, 1), three).unwrap();
        store.put(&keys::audit_leaves(3, 1), good.clone()).unwrap();
        assert_eq!(open(&store).verify_store(&store).unwrap().leaves, 8);
        // A chunk moved to a key claiming more leaves.
        let mut b = Batch::default();
        b.delete(keys::audit_leaves(3, 1).to_vec());
        b.put(keys::audit_leaves(3, 2).to_vec(), good);
        store.apply(b).unwrap();
        assert!(err(&store).contains("leaves 3..5 fail authentication"), "{}", err(&store));
        // A chunk deleted.
        let mut b = Batch::default();
        b.delete(keys::audit_leaves(3, 2).to_vec());
        store.apply(b).unwrap();
        assert!(err(&store).contains("leaf 3 is missing"), "{}", err(&store));
    }

    #[test]
    fn chunks_hold_many_leaves_and_follow_leaves_stored_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        // A log written before chunks: one `A` key per leaf, nodes from
        // level 4, and its frontier.
        let leaf_key = Key32::from_bytes([1; 32]);
        let mut f = Frontier::default();
        let mut b = Batch::default();
        for seq in 0..20u64 {
            let bytes = Leaf { seq, ..leaf(Op::Read, &format!("/old{seq}")) }.encode();
            b.put(
                keys::audit_leaf(seq).to_vec(),
                crypto::seal(&leaf_key, &leaf_aad(&[9; 16], seq), &bytes).unwrap(),
            );
            for (id, h) in f.append(merkle::leaf_hash(&bytes)) {
                if id.level >= LEGACY_NODE_LEVEL {
                    b.put(keys::audit_node(id.level, id.index).to_vec(), h.to_vec());
                }
            }
        }
        b.put(keys::AUDIT_FRONTIER, encode_frontier(&f));
        store.apply(b).unwrap();
        let log = open(&store);
        assert_eq!(log.size(), 20);
        // One commit of many records: a few chunks of at most CHUNK_BYTES and one leaf.
        let long = "p".repeat(200);
        for i in 0..1000 {
            log.append(leaf(Op::Read, &format!("/{long}/{i}")));
        }
        log.commit(&store).unwrap();
        let chunks: Vec<_> = store
            .scan_prefix(&[keys::AUDIT_LEAVES])
            .map(|r| keys::audit_leaves_range(&r.unwrap().0).unwrap())
            .collect();
        assert!(chunks.len() > 1 && chunks.len() < 20, "{chunks:?}");
        assert_eq!(chunks[0].0, 20);
        assert_eq!(chunks.iter().map(|c| u64::from(c.1)).sum::<u64>(), 1000);
        let key = log.public_key();
        drop(log);
        let log = open(&store);
        assert_eq!(log.size(), 1020);
        assert_eq!(log.verify_store(&store).unwrap().leaves, 1020);
        let text = log.export(&store).unwrap();
        assert_eq!(verify::verify_export(&text, &key).unwrap().leaves, 1020);
        // Ranges across the old leaves, chunk boundaries and inside a chunk.
        let mid = chunks[1].0;
        for (from, to) in [(0, 1020), (5, 25), (19, 21), (mid - 1, mid + 1), (mid + 3, mid + 4), (1019, 1020)]
        {
            let got: Vec<u64> = log.leaves(&store, from, to).map(|r| r.unwrap().0).collect();
            assert_eq!(got, (from..to).collect::<Vec<_>>(), "{from}..{to}");
        }
        let root = log.root(&store, 1020).unwrap();
        for i in [3, 20, mid, 1019] {
            let proof = log.inclusion_proof(&store, i, 1020).unwrap();
            let (_, bytes) = log.leaves(&store, i, i + 1).next().unwrap().unwrap();
            assert!(merkle::verify_inclusion(&merkle::leaf_hash(&bytes), i, 1020, &proof, &root));
        }
        // Such an old node is still checked.
        store.put(&keys::audit_node(4, 0), vec![0; 32]).unwrap();
        let e = log.verify_store(&store).unwrap_err().to_string();
        assert!(e.contains("tree node 4/0 is wrong"), "{e}");
    }

    /// An append whose batch fails is undone exactly: the next record takes
    /// its seq, and the log verifies.
    #[test]
    fn failed_append_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        for i in 0..5 {
            log.append(leaf(Op::Read, &format!("/{i}")));
        }
        let size = log.size();
        let before = {
            let st = log.state();
            (st.pending.clone(), st.frontier.clone(), st.pending_nodes.len())
        };
        {
            let mut st = log.state();
            let mark = Log::mark(&st);
            for i in 0..300 {
                Log::push(&mut st, leaf(Op::Write, &format!("/undone/{i}")));
            }
            Log::rollback(&mut st, mark);
            assert!((st.pending.clone(), st.frontier.clone(), st.pending_nodes.len()) == before);
        }
        assert_eq!(log.append(leaf(Op::Open, "/next")), size);
        log.commit(&store).unwrap();
        assert_eq!(log.verify_store(&store).unwrap().leaves, size + 1);
        let key = log.public_key();
        assert_eq!(verify::verify_export(&log.export(&store).unwrap(), &key).unwrap().leaves, size + 1);
    }

    fn chunk_keys(store: &Store) -> Vec<(u64, u32)> {
        store
            .scan_prefix(&[keys::AUDIT_LEAVES])
            .map(|r| keys::audit_leaves_range(&r.unwrap().0).unwrap())
            .collect()
    }

    fn slots(store: &Store) -> Vec<(u64, u32)> {
        store.scan_prefix(&[keys::AUDIT_SLOT]).map(|r| slot_range(&r.unwrap().1).unwrap()).collect()
    }

    fn live(store: &Store) -> Vec<(u64, u32)> {
        let live = Log::live_slot_values(store, Log::chunks_end(store, 0).unwrap()).unwrap();
        live.into_iter().map(|(first, count, _)| (first, count)).collect()
    }

    /// Operations' batches store their records in the slot ring, not in new
    /// keys; commits (and a full ring, or a chunk's worth) pack them into
    /// chunks of up to CHUNK_BYTES that tile the log. Readers see one log
    /// throughout, and the store's keys stay bounded.
    #[test]
    fn changes_go_to_slots_and_commits_pack_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        let key = log.public_key();
        let mut n = 0u64;
        for round in 0..3u8 {
            for i in 0..700 {
                let mut b = Batch::default();
                b.put(format!("data{i}").into_bytes(), vec![round; 10]);
                log.append_with(&store, leaf(Op::Write, &format!("/r{round}/{i}")), b).unwrap();
                n += 1;
                if i % 250 == 0 {
                    assert_eq!(log.verify_store(&store).unwrap().leaves, n, "slots are read with the chunks");
                }
                if i % 7 == 0 {
                    // Stored with the next change's record.
                    log.append(leaf(Op::Read, &format!("/r{round}/{i}")));
                    n += 1;
                }
            }
            assert!(!live(&store).is_empty(), "the last changes wait in slots");
            assert!(slots(&store).len() <= usize::from(SLOTS));
            log.commit(&store).unwrap();
            assert!(live(&store).is_empty(), "a commit packs every slot");
            let chunks = chunk_keys(&store);
            let bytes: usize = log.leaves(&store, 0, n).map(|r| r.unwrap().1.len() + 2).sum();
            assert!(chunks.len() <= bytes / CHUNK_BYTES + 1, "{} chunks for {bytes} bytes", chunks.len());
            // They tile the log: consecutive, no gap, no overlap.
            let mut next = 0;
            for (first, count) in &chunks {
                assert_eq!(*first, next);
                next += u64::from(*count);
            }
            assert_eq!(next, n);
            assert_eq!(log.verify_store(&store).unwrap().leaves, n);
        }
        assert_eq!(slots(&store).len(), usize::from(SLOTS), "the ring wrapped: its keys are reused");
        drop(log);
        let log = open(&store);
        log.append_with(&store, leaf(Op::Write, "/after"), Batch::default()).unwrap();
        log.commit(&store).unwrap();
        assert_eq!(log.verify_store(&store).unwrap().leaves, n + 1);
        assert_eq!(verify::verify_export(&log.export(&store).unwrap(), &key).unwrap().leaves, n + 1);
    }

    /// Records left in slots by a process that stopped before a commit are
    /// part of the log when it is opened again, and are packed by the next
    /// write before any slot is reused.
    #[test]
    fn live_slots_survive_a_stop_without_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        for i in 0..40 {
            log.append(leaf(Op::Read, &format!("/read{i}")));
            log.make_durable(&store).unwrap();
        }
        assert_eq!(live(&store).len(), 40, "durable records go to slots");
        log.commit(&store).unwrap();
        assert!(live(&store).is_empty());
        // Slots 40..70 now; after the stop below, slot 0 is the next one
        // written: open must not trust the ring's order.
        for i in 0..30 {
            log.append_with(&store, leaf(Op::Write, &format!("/w{i}")), Batch::default()).unwrap();
        }
        assert_eq!(live(&store).len(), 30);
        drop(log);
        let log = open(&store);
        assert_eq!(log.size(), 70);
        assert_eq!(log.verify_store(&store).unwrap().leaves, 70);
        log.append_with(&store, leaf(Op::Write, "/next"), Batch::default()).unwrap();
        assert!(live(&store).is_empty(), "the first write after open packs the slots");
        for i in 0..2 * u64::from(SLOTS) {
            log.append_with(&store, leaf(Op::Write, &format!("/more{i}")), Batch::default()).unwrap();
        }
        drop(log);
        let log = open(&store);
        let size = 71 + 2 * u64::from(SLOTS);
        assert_eq!(log.size(), size);
        let got: Vec<u64> = log.leaves(&store, 0, size).map(|r| r.unwrap().0).collect();
        assert_eq!(got, (0..size).collect::<Vec<_>>());
        assert_eq!(log.verify_store(&store).unwrap().leaves, size);
    }

    /// A live slot removed, altered, or a stale one made to look live: named.
    #[test]
    fn tampering_with_slots_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        for i in 0..4 {
            log.append_with(&store, leaf(Op::Write, &format!("/stale{i}")), Batch::default()).unwrap();
        }
        log.commit(&store).unwrap();
        for i in 0..3 {
            log.append_with(&store, leaf(Op::Write, &format!("/live{i}")), Batch::default()).unwrap();
        }
        drop(log);
        assert_eq!(live(&store), vec![(4, 1), (5, 1), (6, 1)]);
        let err = |store: &Store| match try_open(store) {
            Ok(log) => log.verify_store(store).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        let (slot4, slot5) = (keys::audit_slot(4), keys::audit_slot(5));
        let good = store.get(&slot5).unwrap().unwrap().to_vec();
        let mut bad = good.clone();
        bad[40] ^= 1;
        store.put(&slot5, bad).unwrap();
        assert!(err(&store).contains("leaf 5 fails authentication"), "{}", err(&store));
        store.put(&slot5, good.clone()).unwrap();
        let mut b = Batch::default();
        b.delete(slot5.to_vec());
        store.apply(b).unwrap();
        assert!(err(&store).contains("leaf 5 is missing"), "{}", err(&store));
        store.put(&slot5, good).unwrap();
        // A stale slot (leaf 0, packed) relabelled as leaf 7.
        let mut stale = store.get(&keys::audit_slot(0)).unwrap().unwrap().to_vec();
        stale[..8].copy_from_slice(&7u64.to_be_bytes());
        store.put(&slot4, stale).unwrap();
        assert!(err(&store).contains("leaf 7 fails authentication"), "{}", err(&store));
    }

    #[test]
    fn truncated_log_or_replaced_checkpoint_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        for i in 0..6 {
            log.append(leaf(Op::Read, &format!("/f{i}")));
        }
        log.checkpoint(&store, false).unwrap();
        drop(log);
        // Truncation: the stored leaves gone, the frontier left.
        let mut b = Batch::default();
        b.delete(keys::audit_leaves(0, 6).to_vec());
        store.apply(b).unwrap();
        assert!(try_open(&store).is_err());
        // A checkpoint signed by another key.
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::open(dir2.path(), true).unwrap();
        let log2 = open(&store2);
        log2.append(leaf(Op::Read, "/a"));
        log2.checkpoint(&store2, false).unwrap();
        let forged = Checkpoint { origin: vault_origin(&[9; 16]), size: 1, root: [0; 32] }
            .sign(&SigningKey::from_seed(Key32::from_bytes([3; 32])));
        store2.put(&keys::audit_checkpoint(1), forged.into_bytes()).unwrap();
        let e = log2.verify_store(&store2).unwrap_err().to_string();
        assert!(e.contains("checkpoint stored for size 1"), "{e}");
    }
}
