//! Archiving the oldest part of the log (docs/AUDIT.md, "Archives"): the
//! leaves before a cut are written to an archive file (an export that ends
//! with a checkpoint at the cut, verifiable with the public key alone), then
//! removed from the store in one batch that also stores the new *base*: the
//! frontier of the tree at the cut (so the log goes on hashing, and proofs
//! over larger trees still work) and the list of archive files. The batch
//! carries the `archive` record that accounts for the cut.

use std::io::Write;

use super::{Log, LogError, Result, corrupt, decode_frontier, encode_frontier};
use crate::audit::archive::{ArchiveRef, Base};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::export;
use crate::audit::leaf::{Leaf, Op};
use crate::audit::merkle::{self, Frontier, Hash, NodeId};
use crate::crypto::{self, Key32};
use crate::format::{aad, keys};
use crate::store::{Batch, Store};

/// An archive file written (leaves `first..end`), not yet removed from the store.
pub struct Written {
    pub first: u64,
    pub end: u64,
    /// The tree of the first `end` leaves, and the checkpoint that signs it.
    frontier: Frontier,
    note: String,
}

fn archives_aad(vault_id: &[u8; 16], size: u64) -> Vec<u8> {
    aad::build(aad::AUDIT_ARCHIVES, &[vault_id, &size.to_be_bytes()])
}

/// The base as stored under `E`: the frontier (as `F`), then the archive
/// list sealed under the leaf key: per file, first u64 ‖ end u64 ‖ BLAKE3
/// (32) ‖ name length u16 ‖ name (UTF-8).
fn encode_base(base: &Base, vault_id: &[u8; 16], leaf_key: &Key32) -> Result<Vec<u8>> {
    let mut plain = Vec::new();
    for a in &base.archives {
        plain.extend_from_slice(&a.first.to_be_bytes());
        plain.extend_from_slice(&a.end.to_be_bytes());
        plain.extend_from_slice(&a.blake3);
        plain.extend_from_slice(&(a.file.len() as u16).to_be_bytes());
        plain.extend_from_slice(a.file.as_bytes());
    }
    let mut out = encode_frontier(&base.frontier);
    crypto::seal_into(leaf_key, &archives_aad(vault_id, base.frontier.size), &plain, &mut out)
        .map_err(|e| corrupt(format!("sealing the archive list: {e}")))?;
    Ok(out)
}

/// The frontier part of a stored base (what a check without keys can read).
pub fn base_frontier(value: &[u8]) -> Result<Frontier> {
    let size = u64::from_be_bytes(
        value.get(..8).ok_or_else(|| corrupt("the archive base is too short"))?.try_into().expect("8"),
    );
    let end = 8 + 32 * size.count_ones() as usize;
    decode_frontier(value.get(..end).ok_or_else(|| corrupt("the archive base is too short"))?)
}

/// The stored base, or the empty one (nothing archived).
pub(super) fn read_base(store: &Store, vault_id: &[u8; 16], leaf_key: &Key32) -> Result<Base> {
    let Some(v) = store.get(keys::AUDIT_BASE)? else { return Ok(Base::default()) };
    let frontier = base_frontier(&v)?;
    if frontier.size == 0 {
        return Err(corrupt("the archive base is empty"));
    }
    let sealed = &v[8 + 32 * frontier.hashes.len()..];
    let plain = crypto::open(leaf_key, &archives_aad(vault_id, frontier.size), sealed)
        .map_err(|_| corrupt("the list of audit archives fails authentication"))?;
    let bad = || corrupt("the list of audit archives is malformed");
    let mut archives = Vec::new();
    let mut rest = &plain[..];
    while !rest.is_empty() {
        let fixed = rest.get(..50).ok_or_else(bad)?;
        let len = u16::from_be_bytes([fixed[48], fixed[49]]) as usize;
        let name = rest.get(50..50 + len).ok_or_else(bad)?;
        archives.push(ArchiveRef {
            first: u64::from_be_bytes(fixed[..8].try_into().expect("8")),
            end: u64::from_be_bytes(fixed[8..16].try_into().expect("8")),
            blake3: fixed[16..48].try_into().expect("32"),
            file: String::from_utf8(name.to_vec()).map_err(|_| bad())?,
        });
        rest = &rest[50 + len..];
    }
    Ok(Base { frontier, archives })
}

/// The perfect subtree `id` among those the frontier of the base holds.
pub(super) fn base_node(base: &Frontier, id: NodeId) -> Result<Hash> {
    let mut start = 0u64;
    let mut hashes = base.hashes.iter();
    for level in (0..64u8).rev().filter(|l| base.size >> l & 1 == 1) {
        let h = hashes.next().ok_or_else(|| corrupt("the archive base is malformed"))?;
        if id.level == level && id.index << level == start {
            return Ok(*h);
        }
        start += 1 << level;
    }
    Err(LogError::Range(format!(
        "leaves {}..{} are archived: a proof about them needs the archive files",
        id.index << id.level,
        (id.index + 1) << id.level
    )))
}

impl Log {
    /// The archive base: where the stored log starts, and the archive files
    /// holding what came before.
    pub fn base(&self) -> Base {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes leaves `base..cut` to `out` as an archive file: the base line
    /// (if the log is already archived before), one line per leaf, and a
    /// checkpoint signed over the first `cut` leaves. Nothing in the store
    /// changes; [`Log::prune`] removes the leaves once the file is safe.
    /// The file must hold the record of the archive before it, so `cut`
    /// must lie after that record.
    pub fn write_archive(&self, store: &Store, cut: u64, out: &mut dyn Write) -> Result<Written> {
        self.commit(store)?;
        let base = self.base();
        let first = base.frontier.size;
        let size = self.size();
        if cut <= first || cut > size {
            return Err(LogError::Range(format!(
                "nothing to archive before leaf {cut}: the store holds leaves {first}..{size}"
            )));
        }
        if first > 0 {
            out.write_all(base.line().as_bytes())?;
        }
        let mut frontier = base.frontier;
        let mut accounted = first == 0;
        for entry in self.leaves(store, first, cut) {
            let (_, bytes) = entry?;
            let leaf = Leaf::decode(&bytes).map_err(|e| corrupt(format!("leaf {}: {e}", frontier.size)))?;
            accounted |= leaf.op == Op::Archive && leaf.offset.checked_add(leaf.len) == Some(first);
            out.write_all(export::leaf_line_from_bytes(&bytes)?.as_bytes())?;
            frontier.append(merkle::leaf_hash(&bytes));
        }
        if frontier.size != cut {
            return Err(corrupt(format!("leaves {}..{cut} are missing", frontier.size)));
        }
        if !accounted {
            return Err(LogError::Range(format!(
                "an archive must hold the record of the one before it: archive past that record \
                 (leaves before {first} went to an archive recorded after leaf {cut})"
            )));
        }
        let note =
            Checkpoint { origin: self.origin.clone(), size: cut, root: frontier.root() }.sign(&self.signer);
        out.write_all(export::checkpoint_line(&note).as_bytes())?;
        Ok(Written { first, end: cut, frontier, note })
    }

    /// Removes the leaves `written` holds from the store, in one batch with
    /// the new base, the checkpoint at the cut, and `record` (an `archive`
    /// leaf naming `file` and its BLAKE3), then signs a checkpoint over the
    /// record. Also removed: checkpoints before the cut and tree nodes inside
    /// the archived part (the base frontier replaces them), and every audit
    /// slot holding archived leaves.
    pub fn prune(
        &self,
        store: &Store,
        written: &Written,
        file: &str,
        blake3: Hash,
        record: Leaf,
    ) -> Result<()> {
        let mut st = self.state();
        // Everything pending goes to chunks first, so the slots are stale.
        self.write_pending(store, &mut st, Batch::default(), true)?;
        let old = self.base();
        if old.frontier.size != written.first {
            return Err(LogError::Range(format!(
                "the log was archived up to {} meanwhile; write the archive again",
                old.frontier.size
            )));
        }
        let (cut, mut batch) = (written.end, Batch::default());
        for r in store.range(&keys::audit_leaf(0), &keys::audit_leaf(cut)) {
            batch.delete(r?.0.to_vec());
        }
        for r in store.range(&keys::audit_leaves_from(0), &keys::audit_leaves_from(cut)) {
            let (k, v) = r?;
            let (first, count) = keys::audit_leaves_range(&k).ok_or_else(|| corrupt("bad leaf chunk key"))?;
            batch.delete(k.to_vec());
            let end = first + u64::from(count);
            if end > cut {
                // The chunk across the cut keeps its leaves from the cut on.
                let plain = self.open_chunk(first, count, &v)?;
                let kept: Vec<u8> = super::decode_chunk(first, count, &plain)?
                    .into_iter()
                    .filter(|(seq, _)| *seq >= cut)
                    .flat_map(|(_, leaf)| [&(leaf.len() as u16).to_be_bytes()[..], &leaf].concat())
                    .collect();
                let n = (end - cut) as u32;
                let mut sealed = Vec::new();
                self.seal_chunk_into(cut, n, &kept, &mut sealed)?;
                batch.put(keys::audit_leaves(cut, n).to_vec(), sealed);
            }
        }
        for r in store.scan_prefix(&[keys::AUDIT_SLOT]) {
            let (k, v) = r?;
            if super::slot_range(&v).is_none_or(|(first, _)| first < cut) {
                batch.delete(k.to_vec());
            }
        }
        for r in store.scan_prefix(&[keys::AUDIT_NODE]) {
            let k = r?.0;
            let (level, index) = (k[1], u64::from_be_bytes(k[2..10].try_into().expect("node key")));
            if level < 64
                && index.checked_add(1).and_then(|i| i.checked_mul(1u64 << level)).is_some_and(|e| e <= cut)
            {
                batch.delete(k.to_vec());
            }
        }
        for r in store.range(&keys::audit_checkpoint(0), &keys::audit_checkpoint(cut)) {
            batch.delete(r?.0.to_vec());
        }
        batch.put(keys::audit_checkpoint(cut).to_vec(), written.note.clone().into_bytes());
        let mut archives = old.archives;
        archives.push(ArchiveRef { first: written.first, end: cut, file: file.to_string(), blake3 });
        let base = Base { frontier: written.frontier.clone(), archives };
        batch.put(keys::AUDIT_BASE.to_vec(), encode_base(&base, &self.vault_id, &self.leaf_key)?);
        // The record lands with the cut; the short chunk the commit left is
        // not repacked (it may just have been cut).
        let mark = Self::mark(&st);
        let packing = st.packing.take();
        Self::push(&mut st, record);
        if let Err(e) = self.write_pending(store, &mut st, batch, true) {
            Self::rollback(&mut st, mark);
            st.packing = packing;
            return Err(e);
        }
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = base;
        if st.checkpointed < cut {
            st.checkpointed = cut;
        }
        self.checkpoint_locked(store, &mut st, false)?;
        Ok(())
    }

    /// The stored chunks, oldest first: (the seq after the chunk, its bytes
    /// as stored). What a size limit on the stored log counts.
    pub fn chunk_sizes(&self, store: &Store) -> Result<Vec<(u64, u64)>> {
        self.commit(store)?;
        let mut out = Vec::new();
        for r in store.scan_prefix(&[keys::AUDIT_LEAVES]) {
            let (k, v) = r?;
            let (first, count) = keys::audit_leaves_range(&k).ok_or_else(|| corrupt("bad leaf chunk key"))?;
            out.push((first + u64::from(count), v.len() as u64));
        }
        Ok(out)
    }

    /// The time of the oldest stored leaf, if any.
    pub fn oldest_time(&self, store: &Store) -> Result<Option<u64>> {
        let base = self.base_size();
        match self.leaves(store, base, base + 1).next() {
            None => Ok(None),
            Some(entry) => {
                let (seq, bytes) = entry?;
                Ok(Some(Leaf::decode(&bytes).map_err(|e| corrupt(format!("leaf {seq}: {e}")))?.time_ns))
            }
        }
    }

    /// The first stored leaf stamped at or after `time_ns` (the log's size
    /// if none is).
    pub fn first_at_or_after(&self, store: &Store, time_ns: u64) -> Result<u64> {
        self.commit(store)?;
        let from = self.base_size();
        for entry in self.leaves(store, from, self.size()) {
            let (seq, bytes) = entry?;
            if Leaf::decode(&bytes).map_err(|e| corrupt(format!("leaf {seq}: {e}")))?.time_ns >= time_ns {
                return Ok(seq);
            }
        }
        Ok(self.size())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::audit::verify::{verify_export, verify_files};
    use crate::crypto::SigningKey;

    fn leaf(i: u64) -> Leaf {
        Leaf {
            seq: 0,
            time_ns: 1_000 + i,
            uid: 1000,
            gid: 1000,
            pid: 7,
            comm: b"test".to_vec(),
            op: Op::Open,
            level: Some(1),
            ino: 16,
            path: format!("/1-working/f{i}").into_bytes(),
            offset: 0,
            len: 0,
            result: 0,
            note: Vec::new(),
        }
    }

    pub(in crate::audit::log) fn signer() -> SigningKey {
        SigningKey::from_seed(Key32::from_bytes([2; 32]))
    }

    fn open(store: &Store) -> Log {
        Log::open(store, [9; 16], Key32::from_bytes([1; 32]), signer()).unwrap()
    }

    pub(in crate::audit::log) fn archive(log: &Log, store: &Store, cut: u64, name: &str) -> Vec<u8> {
        let mut file = Vec::new();
        let w = log.write_archive(store, cut, &mut file).unwrap();
        let digest = crypto::blake3_of(&file);
        let rec = Leaf {
            op: Op::Archive,
            offset: w.first,
            len: w.end - w.first,
            path: crate::audit::archive::record_path(name, &digest),
            ..leaf(0)
        };
        log.prune(store, &w, name, digest, rec).unwrap();
        file
    }

    /// Appends `n` leaves, some through operations' batches (slots), some queued.
    pub(in crate::audit::log) fn grow(log: &Log, store: &Store, n: u64) {
        for i in 0..n {
            if i % 3 == 0 {
                log.append_with(store, leaf(i), Batch::default()).unwrap();
            } else {
                log.append(leaf(i));
            }
            if i % 97 == 0 {
                log.commit(store).unwrap();
            }
        }
    }

    /// A new store whose log holds `n` leaves.
    pub(in crate::audit::log) fn grown(n: u64) -> (tempfile::TempDir, Store, Log) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = open(&store);
        grow(&log, &store, n);
        (dir, store, log)
    }

    #[test]
    fn archives_chain_and_the_store_goes_on_from_the_base() {
        let (_dir, store, log) = grown(700);
        let key = signer().verifying_key();
        // Cuts inside chunks, on a power of two, and right after the record.
        let a1 = archive(&log, &store, 300, "a1");
        assert_eq!(log.base_size(), 300);
        grow(&log, &store, 500);
        // The record of a1 is leaf 700: the next cut lies after it.
        let a2 = archive(&log, &store, 1024, "a2");
        let r = log.verify_store(&store).unwrap();
        assert_eq!(r.leaves, log.size());
        assert_eq!(r.root, log.root(&store, log.size()).unwrap());
        // Nothing archived stays in the store's leaves, nodes or checkpoints.
        assert!(log.leaves(&store, 0, 10).next().unwrap().is_err());
        assert!(
            store
                .scan_prefix(&[keys::AUDIT_CHECKPOINT])
                .all(|r| { keys::audit_number(&r.unwrap().0).unwrap() >= 1024 })
        );
        // Proofs across the base, and reopening.
        let n = log.size();
        for (i, size) in [(1024, n), (1025, n), (n - 1, n), (1100, 1150)] {
            let proof = log.inclusion_proof(&store, i, size).unwrap();
            let h = merkle::leaf_hash(&log.leaves(&store, i, i + 1).next().unwrap().unwrap().1);
            assert!(merkle::verify_inclusion(&h, i, size, &proof, &log.root(&store, size).unwrap()));
        }
        for (old, new) in [(1024, n), (1025, 1150), (1100, n)] {
            let proof = log.consistency_proof(&store, old, new).unwrap();
            let (r1, r2) = (log.root(&store, old).unwrap(), log.root(&store, new).unwrap());
            assert!(merkle::verify_consistency(old, new, &r1, &r2, &proof));
        }
        assert!(matches!(log.consistency_proof(&store, 100, n), Err(LogError::Range(_))));
        drop(log);
        let log = open(&store);
        assert_eq!(log.verify_store(&store).unwrap().leaves, n);
        grow(&log, &store, 10);
        // The archives, then the live export: one log, each file the one recorded.
        let live = log.export(&store).unwrap();
        assert!(live.starts_with(b"{\"base\":1024,"));
        let r = verify_export(&live, &key).unwrap();
        assert_eq!(r.base.as_ref().unwrap().archives.len(), 2);
        let files =
            vec![("a1".to_string(), a1.clone()), ("a2".to_string(), a2.clone()), ("live".to_string(), live)];
        let chain = verify_files(&files, &key).unwrap();
        assert_eq!((chain.first, chain.leaves), (0, log.size()));
        // A changed archive, a missing one, or the wrong order is named.
        let mut bad = files.clone();
        bad[0].1 = String::from_utf8(a1.clone()).unwrap().replace("f1\"", "f9\"").into_bytes();
        assert!(verify_files(&bad, &key).is_err());
        // Without the oldest archive the chain starts later, and says so;
        // without one in the middle it has a gap.
        assert_eq!(verify_files(&files[1..], &key).unwrap().first, 300);
        let gap = vec![files[0].clone(), files[2].clone()];
        assert!(verify_files(&gap, &key).unwrap_err().to_string().contains("starts at leaf 1024"));
        // The last archive alone has no record to check it against; the
        // live file does.
        assert!(verify_files(&files[..2], &key).is_ok());
        let mut bad = files.clone();
        bad.swap(0, 1);
        assert!(verify_files(&bad, &key).unwrap_err().to_string().contains("starts at leaf"));
    }

    #[test]
    fn an_archive_must_hold_the_record_of_the_one_before() {
        let (_dir, store, log) = grown(100);
        archive(&log, &store, 50, "a1");
        // The record of a1 is leaf 100: a cut at or before it is refused.
        for cut in [60, 100] {
            assert!(matches!(log.write_archive(&store, cut, &mut Vec::new()), Err(LogError::Range(_))));
        }
        assert!(log.write_archive(&store, 101, &mut Vec::new()).is_ok());
    }

    #[test]
    fn cutting_the_front_off_without_a_record_is_named() {
        let (_dir, store, log) = grown(300);
        let key = signer().verifying_key();
        // An export whose front was cut and replaced by a base line verifies
        // only with the record that accounts for it.
        let full = String::from_utf8(log.export(&store).unwrap()).unwrap();
        let mut f = Frontier::default();
        for line in full.lines().take(100) {
            let Ok(crate::audit::export::Line::Leaf(fields)) = crate::audit::export::parse_line(line) else {
                panic!()
            };
            let h = fields.iter().find(|(k, _)| k == "hash").unwrap().1.as_str().unwrap().to_string();
            f.append(*crate::format::unhex_array::<32>(&h, "t", "h").unwrap());
        }
        let base = Base { frontier: f, archives: Vec::new() };
        let cut: String =
            std::iter::once(base.line()).chain(full.lines().skip(100).map(|l| format!("{l}\n"))).collect();
        let e = verify_export(cut.as_bytes(), &key).unwrap_err().to_string();
        assert!(e.contains("holds no archive record"), "{e}");
        // The same in the store: the base key written without a record.
        let mut b = Batch::default();
        b.put(keys::AUDIT_BASE.to_vec(), encode_base(&base, &[9; 16], &Key32::from_bytes([1; 32])).unwrap());
        store.apply(b).unwrap();
        let log = open(&store);
        let e = log.verify_store(&store).unwrap_err().to_string();
        assert!(e.contains("no checkpoint of that size") || e.contains("no archive record"), "{e}");
    }
}
