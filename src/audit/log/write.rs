//! The ring of audit slots and the packing of leaves into chunks: how the
//! log's leaves reach the store (docs/AUDIT.md, "Storage in the vault").

use super::*;

/// The newest stored leaves, from `first` on, in chunk plaintext form: those
/// of the last chunk if it is not full (`tail`, which the next pack replaces
/// by a longer one), then those `slots` hold. Packing stores them all again
/// as chunks, so that the store keeps about one key per 32 KiB of records.
pub(super) struct Packing {
    pub(super) first: u64,
    pub(super) plain: Vec<u8>,
    pub(super) tail: Option<Vec<u8>>,
    /// Slots written since the last pack (`SLOTS`: the ring is full, or
    /// their order is unknown, after `open`).
    pub(super) slots: u16,
}

/// Size of the slot ring. At the committer's 200 ms a busy mount writes a
/// few hundred changes between commits; a full ring makes the operation's
/// batch pack. Slot keys are fixed: they never add to the store's keys.
pub const SLOTS: u16 = 512;

/// Splits chunk plaintext holding leaves `first..` into chunks that close
/// once they reach `CHUNK_BYTES`: (first seq, count, byte range).
pub(super) fn split_chunks(first: u64, plain: &[u8]) -> Vec<(u64, u32, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let (mut start, mut at, mut seq, mut count) = (0usize, 0usize, first, 0u32);
    while let Some(len) = plain.get(at..at + 2) {
        at = (at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]))).min(plain.len());
        count += 1;
        if at - start >= CHUNK_BYTES || at == plain.len() {
            out.push((seq, count, start..at));
            seq += u64::from(count);
            (start, count) = (at, 0);
        }
    }
    out
}

/// AAD of a chunk: binds where it starts and how many leaves it holds, so a
/// chunk moved to another key, cut or extended fails to open.
pub(super) fn chunk_aad(vault_id: &[u8; 16], first: u64, count: u32) -> Vec<u8> {
    aad::build(aad::AUDIT_LEAVES, &[vault_id, &first.to_be_bytes(), &count.to_be_bytes()])
}

/// A chunk is closed once its plaintext reaches this many bytes: some 250
/// typical records, and far below the size at which sled moves a value out
/// of its log into a file of its own (a quarter of its 512 KiB segment).
pub const CHUNK_BYTES: usize = 32 * 1024;

/// A slot's value: first seq u64 ‖ count u32 ‖ the chunk sealed as under
/// its `R` key. The clear header tells stale slots (before the chunks' end)
/// from live ones without opening them; the AAD binds it.
pub fn slot_range(value: &[u8]) -> Option<(u64, u32)> {
    let first = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let count = u32::from_be_bytes(value.get(8..12)?.try_into().ok()?);
    Some((first, count))
}

impl Log {
    /// The slots holding leaves from `chunks_end` on, unopened: (first,
    /// count, value), in seq order. Slots starting before are stale (packed).
    pub(super) fn live_slot_values(store: &Store, chunks_end: u64) -> Result<Vec<(u64, u32, Vec<u8>)>> {
        let mut out = Vec::new();
        for r in store.scan_prefix(&[keys::AUDIT_SLOT]) {
            let (_, v) = r?;
            let (first, count) = slot_range(&v).ok_or_else(|| corrupt("an audit slot is too short"))?;
            if first >= chunks_end {
                if count == 0 || first.checked_add(u64::from(count)).is_none() {
                    return Err(corrupt(format!("the audit slot of leaves from {first} is malformed")));
                }
                out.push((first, count, v.to_vec()));
            }
        }
        out.sort_unstable_by_key(|s| s.0);
        Ok(out)
    }

    /// The live slots, opened: (first, count, chunk plaintext), in seq order.
    pub(super) fn live_slots(&self, store: &Store, chunks_end: u64) -> Result<Vec<(u64, u32, Vec<u8>)>> {
        Self::live_slot_values(store, chunks_end)?
            .into_iter()
            .map(|(first, count, v)| Ok((first, count, self.open_chunk(first, count, &v[12..])?)))
            .collect()
    }

    /// Appends leaves `first..first + count` (chunk plaintext), sealed as a chunk, to `out`.
    pub(super) fn seal_chunk_into(
        &self,
        first: u64,
        count: u32,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        crypto::seal_into(&self.leaf_key, &chunk_aad(&self.vault_id, first, count), plain, out)
            .map_err(|e| corrupt(format!("sealing leaves from {first}: {e}")))
    }

    /// Applies `batch` with the pending records: into the next slot, or, for
    /// a `commit` (and for an operation's batch once the ring is full or a
    /// chunk's worth waits), packed with `Packing`'s leaves into chunks. A
    /// commit also stores the frontier if it is behind.
    pub(super) fn write_pending(
        &self,
        store: &Store,
        st: &mut State,
        mut batch: Batch,
        commit: bool,
    ) -> Result<()> {
        let frontier = commit && st.frontier_stored != st.frontier.size;
        let (slots, waiting) = st.packing.as_ref().map_or((0, 0), |p| (p.slots, p.plain.len()));
        let pack = if commit {
            slots > 0 || !st.pending.is_empty()
        } else {
            !st.pending.is_empty() && (slots >= SLOTS || waiting + st.pending.len() >= CHUNK_BYTES)
        };
        if st.pending.is_empty() && batch.is_empty() && !frontier && !pack {
            return Ok(());
        }
        let mut packed = None;
        if pack {
            packed = Some(self.pack_into(st, &mut batch)?);
        } else if !st.pending.is_empty() {
            let (first, count) = (st.pending_first, (st.frontier.size - st.pending_first) as u32);
            let mut value = Vec::with_capacity(12 + st.pending.len() + crypto::SEALED_OVERHEAD);
            value.extend_from_slice(&first.to_be_bytes());
            value.extend_from_slice(&count.to_be_bytes());
            self.seal_chunk_into(first, count, &st.pending, &mut value)?;
            batch.put(keys::audit_slot(st.next_slot).to_vec(), value);
        }
        for (id, h) in &st.pending_nodes {
            batch.put(keys::audit_node(id.level, id.index), h.to_vec());
        }
        if frontier {
            batch.put(keys::AUDIT_FRONTIER, encode_frontier(&st.frontier));
        }
        store.apply(batch)?;
        st.stored(packed, frontier);
        Ok(())
    }

    /// Puts the packing leaves and the pending ones into `batch` as sealed
    /// chunks (dropping the old short tail chunk); the new packing state:
    /// the short last chunk, if any, which the next pack rewrites.
    fn pack_into(&self, st: &State, batch: &mut Batch) -> Result<Option<Packing>> {
        let (first, plain) = match &st.packing {
            Some(p) => (p.first, [&p.plain[..], &st.pending[..]].concat()),
            None => (st.pending_first, st.pending.clone()),
        };
        if let Some(tail) = st.packing.as_ref().and_then(|p| p.tail.clone()) {
            batch.delete(tail);
        }
        let mut tail = None;
        for (first, count, range) in split_chunks(first, &plain) {
            let key = keys::audit_leaves(first, count).to_vec();
            let mut sealed = Vec::new();
            self.seal_chunk_into(first, count, &plain[range.clone()], &mut sealed)?;
            batch.put(key.clone(), sealed);
            // Only the last chunk can be short: it is the next tail.
            tail = (range.len() < CHUNK_BYTES).then_some((first, key, range));
        }
        Ok(tail.map(|(first, key, range)| Packing {
            first,
            plain: plain[range].to_vec(),
            tail: Some(key),
            slots: 0,
        }))
    }
}

impl State {
    /// What the log knows once a batch with its pending records is stored:
    /// the new packing (`packed`, after a pack) or one more filled slot, and
    /// the frontier if the batch carried it.
    fn stored(&mut self, packed: Option<Option<Packing>>, frontier: bool) {
        match packed {
            Some(next) => self.packing = next,
            None if !self.pending.is_empty() => {
                match &mut self.packing {
                    Some(p) => {
                        p.plain.extend_from_slice(&self.pending);
                        p.slots += 1;
                    }
                    None => {
                        self.packing = Some(Packing {
                            first: self.pending_first,
                            plain: self.pending.clone(),
                            tail: None,
                            slots: 1,
                        })
                    }
                }
                self.next_slot = (self.next_slot + 1) % SLOTS;
            }
            None => {}
        }
        self.pending.clear();
        self.pending_nodes.clear();
        if frontier {
            self.frontier_stored = self.frontier.size;
        }
    }
}
