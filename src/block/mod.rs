//! File content as fixed-size encrypted blocks (docs/FORMAT.md section 6).
//! A block is sealed into a record appended to the segment files:
//! ino ‖ block ‖ version ‖ XChaCha20-Poly1305(file key, full block plaintext),
//! AAD = format::aad::block_v2(vault id, ino, generation, block, version);
//! its `B` key holds an index entry (segment, offset, version, tag) whose
//! tag authenticates the version, so an older record put back is an error.
//! Version-1 values (the sealed block itself in sled) still read in place.
//! Every stored block holds exactly `block_size` plaintext bytes (the tail of
//! the last one is zero), so stored lengths reveal only block counts. Absent
//! blocks are holes and read as zeros.

use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::crypto::{self, Key32, KeyedHash, SEALED_OVERHEAD};
use crate::format::segment::{
    IndexEntry, RECORD_HEADER_LEN, RUN_ENTRY_LEN, RecordHeader, max_run, record_len,
};
use crate::format::{aad, keys, labels};
use crate::store::{self, Batch, Location, Store, Value};

pub mod gc;
mod space;
pub use space::Space;

/// Largest logical file size: 16 TiB. Offsets past it are EFBIG.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A block failed authentication: altered, moved from elsewhere, or from another file.
    #[error("block {block} of inode {ino} failed authentication")]
    Auth { ino: u64, block: u64 },
    /// A block value has the wrong length (truncated or padded).
    #[error("block {block} of inode {ino} has a bad length ({len} bytes)")]
    Length { ino: u64, block: u64, len: usize },
    /// The index entry or the record it points at is not this block's
    /// current version: damaged, or an older record put back.
    #[error("block {block} of inode {ino}: {why}")]
    Index { ino: u64, block: u64, why: String },
    /// An offset or size beyond MAX_FILE_SIZE.
    #[error("offset {0} is beyond the maximum file size")]
    TooLarge(u64),
    #[error("random source failed")]
    Random,
    #[error("the block version counter is damaged or exhausted (`vaultfs fsck --repair` resets it)")]
    Counter,
    #[error("this view of the vault is read-only")]
    ReadOnly,
}

pub type Result<T> = std::result::Result<T, Error>;

/// The blocks of one file version: (ino, generation) under one file key.
pub struct FileBlocks<'a> {
    store: &'a Store,
    key: &'a Key32,
    vault_id: &'a [u8; 16],
    ino: u64,
    generation: u64,
    block_size: u32,
    /// Versions and dead-space hints for writes; None for read-only views (fsck).
    space: Option<&'a Space>,
    /// The key of this file's index tags, derived at first use.
    index_key: OnceLock<Key32>,
}

impl<'a> FileBlocks<'a> {
    pub fn new(
        store: &'a Store,
        key: &'a Key32,
        vault_id: &'a [u8; 16],
        (ino, generation): (u64, u64),
        block_size: u32,
        space: Option<&'a Space>,
    ) -> Self {
        FileBlocks { store, key, vault_id, ino, generation, block_size, space, index_key: OnceLock::new() }
    }
}

impl FileBlocks<'_> {
    fn bs(&self) -> u64 {
        self.block_size as u64
    }

    /// Seals one full plaintext block into a version-1 store value (the
    /// layout before segment files; kept for tests and the golden vault).
    #[cfg(any(test, feature = "internals"))]
    pub fn seal_block(&self, block: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
        debug_assert_eq!(plaintext.len(), self.block_size as usize);
        let aad = aad::block(self.vault_id, self.ino, self.generation, block);
        let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
        crypto::seal_into(self.key, &aad, plaintext, &mut out).map_err(|_| Error::Random)?;
        Ok(out)
    }

    /// Authenticates and decrypts a version-1 block value into `out` (block_size bytes).
    pub fn open_block(&self, block: u64, value: &[u8], out: &mut [u8]) -> Result<()> {
        if value.len() != self.block_size as usize + SEALED_OVERHEAD {
            return Err(Error::Length { ino: self.ino, block, len: value.len() });
        }
        let aad = aad::block(self.vault_id, self.ino, self.generation, block);
        crypto::open_in_place(self.key, &aad, value, out).map_err(|_| Error::Auth { ino: self.ino, block })
    }

    /// The tag that authenticates an index entry: its first block, its
    /// first version and (for a run) how many blocks it covers.
    fn index_tag(&self, first: u64, version: u64, count: u64) -> [u8; 16] {
        let ik = self.index_key.get_or_init(|| {
            Key32::from_bytes(KeyedHash::new(self.key).update(labels::BLOCK_INDEX).finalize32())
        });
        let mut h = KeyedHash::new(ik);
        h.update(&self.ino.to_be_bytes())
            .update(&self.generation.to_be_bytes())
            .update(&first.to_be_bytes())
            .update(&version.to_be_bytes());
        if count > 1 {
            h.update(&count.to_be_bytes());
        }
        h.finalize16()
    }

    fn index_error(&self, block: u64, why: impl Into<String>) -> Error {
        Error::Index { ino: self.ino, block, why: why.into() }
    }

    /// What the `B` value stored under block `last` covers. An index entry
    /// whose tag fails, or any other damage, becomes `Bad`; a damaged run
    /// entry is taken to cover every block it could (its count is not to
    /// be trusted), so that reading any of them is an error, never a hole.
    fn decode(&self, last: u64, value: Value) -> Stored {
        if !IndexEntry::is_entry_len(value.len()) {
            let kind = if value.len() == self.block_size as usize + SEALED_OVERHEAD {
                Kind::Sealed(value)
            } else {
                Kind::Bad(value)
            };
            return Stored { first: last, last, kind };
        }
        if let Ok(e) = IndexEntry::decode_for(&value, self.block_size)
            && let Some(first) = e.first_block(last)
            && crypto::tags_equal(&e.tag, &self.index_tag(first, e.version, e.count))
        {
            return Stored { first, last, kind: Kind::Run(e) };
        }
        let first = match value.len() {
            RUN_ENTRY_LEN => last.saturating_sub(max_run(self.block_size) - 1),
            _ => last,
        };
        Stored { first, last, kind: Kind::Bad(value) }
    }

    /// Why the value of a `Bad` entry ending at block `last` does not open.
    fn bad_entry(&self, last: u64, value: &[u8]) -> Error {
        if !IndexEntry::is_entry_len(value.len()) {
            return Error::Length { ino: self.ino, block: last, len: value.len() };
        }
        match IndexEntry::decode_for(value, self.block_size) {
            Err(e) => self.index_error(last, e.to_string()),
            Ok(e) if e.first_block(last).is_none() => {
                self.index_error(last, format!("a run of {} blocks cannot end at block {last}", e.count))
            }
            Ok(_) => self.index_error(last, "index entry failed authentication"),
        }
    }

    /// The stored entries that cover any of blocks `first..=last`, in
    /// order; entries that overlap each other are damage.
    fn stored(&self, first: u64, last: u64) -> Result<Vec<Stored>> {
        let mut found: Vec<Stored> = Vec::new();
        let push = |found: &mut Vec<Stored>, s: Stored| -> Result<()> {
            // (A damaged entry may reach back over good ones: it makes the
            // blocks both claim unreadable, and is no reason to refuse more.)
            if let Some(prev) = found.last().filter(|p| s.first <= p.last && p.is_good() && s.is_good()) {
                let why = format!("its index entry overlaps the one ending at block {}", prev.last);
                return Err(self.index_error(s.first.max(first), why));
            }
            found.push(s);
            Ok(())
        };
        if first == last {
            // One block (random I/O): a point lookup finds an entry that
            // ends here, the common case once a file has been overwritten.
            if let Some(v) = self.store.get(&keys::block(self.ino, first))? {
                return Ok(vec![self.decode(first, v)]);
            }
        } else {
            // The entries that end inside the range.
            for entry in self.store.range(&keys::block(self.ino, first), &keys::block(self.ino, last + 1)) {
                let (k, v) = entry?;
                let Some(end) = keys::block_number(&k) else { continue };
                push(&mut found, self.decode(end, v))?;
            }
        }
        // The one entry that ends past the range may reach back into it
        // (looked up alone: a file being written has many entries in the
        // store's overlay past any point, and a range would copy them all).
        if found.last().is_none_or(|s| s.last < last) {
            let after =
                self.store.first_in(&keys::block(self.ino, last + 1), &keys::block_prefix(self.ino + 1))?;
            if let Some((k, v)) = after
                && let Some(end) = keys::block_number(&k)
            {
                let s = self.decode(end, v);
                if s.first <= last {
                    push(&mut found, s)?;
                }
            }
        }
        Ok(found)
    }

    /// The plaintext of block `b` from the entries `existing` (a `stored`
    /// result), or None for a hole: the old content of a partly changed block.
    fn old_block(&self, existing: &[Stored], b: u64) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(old) = existing.iter().find(|e| e.first <= b && b <= e.last) else { return Ok(None) };
        let mut plain = Zeroizing::new(vec![0u8; self.block_size as usize]);
        self.open_in(old, b, None, &mut plain)?;
        Ok(Some(plain))
    }

    /// Authenticates and decrypts block `b` of `s` into `out`; `record` is
    /// the block's record when the caller has read it already.
    fn open_in(&self, s: &Stored, b: u64, record: Option<&[u8]>, out: &mut [u8]) -> Result<()> {
        debug_assert!(s.first <= b && b <= s.last);
        match &s.kind {
            Kind::Sealed(v) => self.open_block(b, v, out),
            Kind::Bad(v) => Err(self.bad_entry(s.last, v)),
            Kind::Run(e) => {
                let i = b - s.first;
                let at = Location {
                    segment: e.segment,
                    offset: e.offset.saturating_add(i * record_len(self.block_size) as u64),
                };
                let read;
                let record = match record {
                    Some(r) => r,
                    None => {
                        // Ciphertext, as on disk: nothing to wipe.
                        let mut buf = vec![0u8; record_len(self.block_size)];
                        self.store.read_record(at, &mut buf)?;
                        read = buf;
                        &read[..]
                    }
                };
                self.open_record(b, at, e.version.wrapping_add(i), record, out)
            }
        }
    }

    /// Checks that `record` (read from `at`) is block `block` at `version`
    /// and decrypts it into `out`.
    fn open_record(
        &self,
        block: u64,
        at: Location,
        version: u64,
        record: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let h = RecordHeader::decode(record).map_err(|err| self.index_error(block, err.to_string()))?;
        if (h.ino, h.block, h.version) != (self.ino, block, version) {
            return Err(self.index_error(
                block,
                format!(
                    "segment {:016x} offset {} holds inode {} block {} version {}, not version {version}",
                    at.segment, at.offset, h.ino, h.block, h.version
                ),
            ));
        }
        let aad = aad::block_v2(self.vault_id, self.ino, self.generation, block, version);
        crypto::open_in_place(self.key, &aad, &record[RECORD_HEADER_LEN..], out)
            .map_err(|_| Error::Auth { ino: self.ino, block })
    }

    /// Authenticates and decrypts every block of the `B` value stored under
    /// block `last`: its first block and the plaintext of all its blocks
    /// (fsck, rotation).
    pub fn read_entry(&self, last: u64, value: &[u8]) -> Result<(u64, Zeroizing<Vec<u8>>)> {
        let s = self.decode(last, Value::from(value.to_vec()));
        let bs = self.block_size as usize;
        let mut plain = Zeroizing::new(vec![0u8; s.count() as usize * bs]);
        let records = self.run_records(&s, s.first, s.last)?;
        let rec = record_len(self.block_size);
        for (i, out) in plain.chunks_exact_mut(bs).enumerate() {
            let record = records.as_ref().map(|r| &r[i * rec..(i + 1) * rec]);
            self.open_in(&s, s.first + i as u64, record, out)?;
        }
        Ok((s.first, plain))
    }

    /// The records of blocks `lo..=hi` of a run, read with one `pread`
    /// (None for a value that holds no records). Sealed records are what
    /// the segment file holds, and they are opened into other buffers: not
    /// wiped on drop (zeroize's byte-wise volatile writes took a tenth of
    /// the daemon's time in a cold sequential read).
    fn run_records(&self, s: &Stored, lo: u64, hi: u64) -> Result<Option<Vec<u8>>> {
        let Kind::Run(e) = &s.kind else { return Ok(None) };
        let rec = record_len(self.block_size);
        let mut buf = vec![0u8; (hi - lo + 1) as usize * rec];
        let offset = e.offset.saturating_add((lo - s.first) * rec as u64);
        self.store.read_record(Location { segment: e.segment, offset }, &mut buf)?;
        Ok(Some(buf))
    }

    /// Takes blocks `from..=to` out of the index: entries inside the range
    /// are deleted, entries reaching past it keep their outer parts (same
    /// records, re-tagged), and the records taken out are noted as dead.
    /// Returns how many stored blocks were taken out.
    fn cut(&self, stored: &[Stored], from: u64, to: u64, batch: &mut Batch) -> Result<u64> {
        let rec = record_len(self.block_size) as u64;
        let mut removed = 0;
        for s in stored {
            let (lo, hi) = (s.first.max(from), s.last.min(to));
            if lo > hi {
                continue;
            }
            let Kind::Run(e) = &s.kind else {
                removed += 1;
                if (lo, hi) != (s.first, s.last) {
                    let why = format!(
                        "a damaged index entry claims blocks {}..={}: only a write or truncation of all of them replaces it",
                        s.first, s.last
                    );
                    return Err(self.index_error(lo, why));
                }
                batch.delete(&keys::block(self.ino, s.last)[..]);
                continue;
            };
            removed += hi - lo + 1;
            self.space.ok_or(Error::ReadOnly)?.note_dead(e.segment, (hi - lo + 1) * rec);
            // The part of the run before the cut, and the part after it.
            let piece = |first: u64, count: u64| {
                let skip = first - s.first;
                let version = e.version.wrapping_add(skip);
                IndexEntry {
                    segment: e.segment,
                    offset: e.offset.wrapping_add(skip * rec),
                    version,
                    count,
                    tag: self.index_tag(first, version, count),
                }
                .encode()
            };
            if s.first < lo {
                batch.put(&keys::block(self.ino, lo - 1)[..], piece(s.first, lo - s.first));
            }
            if s.last > hi {
                batch.put(&keys::block(self.ino, s.last)[..], piece(hi + 1, s.last - hi));
            } else {
                batch.delete(&keys::block(self.ino, s.last)[..]);
            }
        }
        Ok(removed)
    }

    /// Seals `blocks` (numbers ascending, each a full plaintext block) into
    /// records, appends them to the segment files as one write, and puts
    /// into `batch` one index entry per run of consecutive blocks (at most
    /// `max_run` each).
    fn put_blocks(&self, blocks: &[(u64, &[u8])], batch: &mut Batch) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let space = self.space.ok_or(Error::ReadOnly)?;
        let first = space.take_versions(self.store, blocks.len() as u64)?;
        let rec_len = record_len(self.block_size);
        let mut records = vec![0u8; rec_len * blocks.len()];
        for (i, ((b, plain), record)) in blocks.iter().zip(records.chunks_exact_mut(rec_len)).enumerate() {
            debug_assert_eq!(plain.len(), self.block_size as usize);
            let version = first + i as u64;
            let (header, sealed) = record.split_at_mut(RECORD_HEADER_LEN);
            header.copy_from_slice(&RecordHeader { ino: self.ino, block: *b, version }.encode());
            let aad = aad::block_v2(self.vault_id, self.ino, self.generation, *b, version);
            crypto::seal_to(self.key, &aad, plain, sealed).map_err(|_| Error::Random)?;
        }
        let at = self.store.append_record(&records)?;
        let max = max_run(self.block_size) as usize;
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i + 1;
            while j < blocks.len() && j - i < max && blocks[j].0 == blocks[j - 1].0 + 1 {
                j += 1;
            }
            let (count, version) = ((j - i) as u64, first + i as u64);
            let entry = IndexEntry {
                segment: at.segment,
                offset: at.offset + (i * rec_len) as u64,
                version,
                count,
                tag: self.index_tag(blocks[i].0, version, count),
            };
            batch.put(&keys::block(self.ino, blocks[j - 1].0)[..], entry.encode());
            i = j;
        }
        Ok(())
    }

    /// Stores blocks `first..` anew from `plain` (rotation: the blocks of
    /// the `B` value `old`, as `read_entry` of another file key gave them),
    /// retiring `old`'s records.
    pub fn replace_entry(&self, first: u64, old: &[u8], plain: &[u8], batch: &mut Batch) -> Result<()> {
        let blocks: Vec<(u64, &[u8])> = plain
            .chunks_exact(self.block_size as usize)
            .enumerate()
            .map(|(i, p)| (first + i as u64, p))
            .collect();
        if let (Ok(e), Some(space)) = (IndexEntry::decode_for(old, self.block_size), self.space) {
            space.note_dead(e.segment, e.count * record_len(self.block_size) as u64);
        }
        self.put_blocks(&blocks, batch)
    }

    /// Reads up to `len` bytes at `offset` of a file of `size` bytes.
    pub fn read(&self, offset: u64, len: usize, size: u64) -> Result<Vec<u8>> {
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let end = size.min(offset.saturating_add(len as u64));
        let mut out = vec![0u8; (end - offset) as usize];
        let bs = self.bs();
        let rec = record_len(self.block_size);
        let (first, last) = (offset / bs, (end - 1) / bs);
        let mut scratch: Option<Zeroizing<Vec<u8>>> = None;
        for s in self.stored(first, last)? {
            let (lo, hi) = (s.first.max(first), s.last.min(last));
            // A run's wanted records are read with one pread.
            let records = self.run_records(&s, lo, hi)?;
            for b in lo..=hi {
                let record =
                    records.as_ref().map(|r| &r[(b - lo) as usize * rec..(b - lo + 1) as usize * rec]);
                let block_start = b * bs;
                let (from, to) = (offset.max(block_start), end.min(block_start + bs));
                let dst = &mut out[(from - offset) as usize..(to - offset) as usize];
                if dst.len() as u64 == bs {
                    // Wanted whole: straight into the reply.
                    self.open_in(&s, b, record, dst)?;
                } else {
                    let sc = scratch.get_or_insert_with(|| Zeroizing::new(vec![0u8; bs as usize]));
                    self.open_in(&s, b, record, sc)?;
                    dst.copy_from_slice(&sc[(from - block_start) as usize..(to - block_start) as usize]);
                }
            }
        }
        Ok(out)
    }

    /// Writes `data` at `offset` into `batch`; returns the change in stored block count.
    /// `size` is the file's size before the write.
    pub fn write(&self, offset: u64, data: &[u8], size: u64, batch: &mut Batch) -> Result<i64> {
        let end = check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(0);
        }
        let bs = self.bs();
        let (first, last) = (offset / bs, (end - 1) / bs);
        // One lookup finds the entries of the touched blocks (for the block
        // count, read-modify-write and the records they retire). None lies
        // at or past the end of the file (truncation drops them in the same
        // batch as the size), so an append looks nothing up: a lookup that
        // reaches sled waits while the committer hands a batch over.
        let stored_end = size.div_ceil(bs);
        let existing =
            if first < stored_end { self.stored(first, last.min(stored_end - 1))? } else { Vec::new() };
        // At most two partial blocks (the first and the last) need their old content.
        let mut partial: Vec<(u64, Zeroizing<Vec<u8>>)> = Vec::new();
        for b in [first, last] {
            let block_start = b * bs;
            let (lo, hi) = (offset.max(block_start), end.min(block_start + bs));
            if hi - lo == bs || partial.iter().any(|(p, _)| *p == b) {
                continue;
            }
            // A hole's old content is zeros.
            let mut s =
                self.old_block(&existing, b)?.unwrap_or_else(|| Zeroizing::new(vec![0u8; bs as usize]));
            s[(lo - block_start) as usize..(hi - block_start) as usize]
                .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
            partial.push((b, s));
        }
        let mut blocks: Vec<(u64, &[u8])> = Vec::with_capacity((last - first + 1) as usize);
        for b in first..=last {
            match partial.iter().find(|(p, _)| *p == b) {
                Some((_, s)) => blocks.push((b, &s[..])),
                None => {
                    // A whole block: it starts at or after `offset`.
                    let at = (b * bs - offset) as usize;
                    blocks.push((b, &data[at..at + bs as usize]));
                }
            }
        }
        // Cut before the new entries go in: an entry the write ends inside
        // keeps its key, which the new entry may take over.
        let replaced = self.cut(&existing, first, last, batch)?;
        self.put_blocks(&blocks, batch)?;
        Ok((last - first + 1) as i64 - replaced as i64)
    }

    /// Changes the size from `old` to `new`: drops blocks past the end and zeroes
    /// the tail of the new last block. Returns the change in stored block count.
    pub fn truncate(&self, old: u64, new: u64, batch: &mut Batch) -> Result<i64> {
        check_range(new, 0)?;
        if new >= old {
            return Ok(0);
        }
        // Up to the largest size: a stray block past the old end goes too.
        self.zero_range(new, MAX_FILE_SIZE, batch)
    }

    /// Zeroes `[offset, offset+len)` (fallocate PUNCH_HOLE / ZERO_RANGE): whole
    /// blocks become holes, partial ones are rewritten. Size is unchanged.
    pub fn punch_hole(&self, offset: u64, len: u64, size: u64, batch: &mut Batch) -> Result<i64> {
        let end = check_range(offset, len)?.min(size);
        if offset >= end {
            return Ok(0);
        }
        self.zero_range(offset, end, batch)
    }

    /// Zeroes bytes `[offset, end)`: the blocks wholly inside become holes,
    /// a stored block the range ends inside (at most the first and the
    /// last) is rewritten with its part zeroed. One lookup, one cut: every
    /// change of one batch must be computed from the same stored state.
    /// Returns the change in stored block count.
    fn zero_range(&self, offset: u64, end: u64, batch: &mut Batch) -> Result<i64> {
        let bs = self.bs();
        let (first, last) = (offset / bs, (end - 1) / bs);
        let existing = self.stored(first, last)?;
        let mut kept: Vec<(u64, Zeroizing<Vec<u8>>)> = Vec::new();
        for b in [first, last] {
            let block_start = b * bs;
            let (lo, hi) = (offset.max(block_start), end.min(block_start + bs));
            if hi - lo == bs || kept.iter().any(|(k, _)| *k == b) {
                continue;
            }
            if let Some(mut plain) = self.old_block(&existing, b)? {
                plain[(lo - block_start) as usize..(hi - block_start) as usize].fill(0);
                kept.push((b, plain));
            }
        }
        let removed = self.cut(&existing, first, last, batch)?;
        let blocks: Vec<(u64, &[u8])> = kept.iter().map(|(b, p)| (*b, &p[..])).collect();
        self.put_blocks(&blocks, batch)?;
        Ok(kept.len() as i64 - removed as i64)
    }

    /// Deletes stored blocks with numbers in `[from, to)`; returns how many.
    #[cfg(any(test, feature = "internals"))]
    pub fn delete_blocks(&self, from: u64, to: u64, batch: &mut Batch) -> Result<i64> {
        if from >= to {
            return Ok(0);
        }
        let existing = self.stored(from, to - 1)?;
        Ok(self.cut(&existing, from, to - 1, batch)? as i64)
    }

    /// The entries from the one holding block `b` (or the next stored
    /// block) on, as spans; for SEEK_DATA and SEEK_HOLE.
    fn spans_from(&self, b: u64) -> impl Iterator<Item = Result<(u64, u64)>> + '_ {
        self.store.range(&keys::block(self.ino, b), &keys::block_prefix(self.ino + 1)).filter_map(|entry| {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let end = keys::block_number(&k)?;
            let s = self.decode(end, v);
            Some(Ok((s.first, s.last)))
        })
    }

    /// SEEK_DATA: the first offset >= `offset` inside a stored block, if below `size`.
    pub fn next_data(&self, offset: u64, size: u64) -> Result<Option<u64>> {
        if offset >= size {
            return Ok(None);
        }
        let bs = self.bs();
        if let Some(span) = self.spans_from(offset / bs).next() {
            let at = offset.max(span?.0 * bs);
            return Ok((at < size).then_some(at));
        }
        Ok(None)
    }

    /// SEEK_HOLE: the first offset >= `offset` in a hole (end of file counts as one).
    pub fn next_hole(&self, offset: u64, size: u64) -> Result<u64> {
        if offset >= size {
            return Ok(size);
        }
        let bs = self.bs();
        let mut expect = offset / bs;
        for span in self.spans_from(expect) {
            let (first, last) = span?;
            if first > expect || expect * bs >= size {
                break;
            }
            expect = expect.max(last + 1);
        }
        Ok(size.min(offset.max(expect * bs)))
    }
}

/// One `B` value, decoded: the blocks `first..=last` it covers.
struct Stored {
    first: u64,
    last: u64,
    kind: Kind,
}

enum Kind {
    /// Records in a segment file, the tag checked.
    Run(IndexEntry),
    /// A version-1 value: the sealed block itself.
    Sealed(Value),
    /// Damage: a value of neither layout, or an entry whose tag fails.
    Bad(Value),
}

impl Stored {
    fn count(&self) -> u64 {
        self.last - self.first + 1
    }

    fn is_good(&self) -> bool {
        !matches!(self.kind, Kind::Bad(_))
    }
}

/// The blocks `(first, last)` the `B` value stored under block `last`
/// claims to cover (not authenticated: for counting and liveness; a
/// count that does not fit is taken as one block).
pub fn entry_span(block_size: u32, last: u64, value: &[u8]) -> (u64, u64) {
    match IndexEntry::decode_for(value, block_size) {
        Ok(e) => (e.first_block(last).unwrap_or(last), last),
        Err(_) => (last, last),
    }
}

/// A `B` value as an archive carries it (docs/FORMAT.md 11.3): an index
/// entry becomes its records followed by its tag, so the archive holds the
/// blocks themselves; a version-1 value is carried as it is (None).
pub fn export_value(store: &Store, block_size: u32, value: &[u8]) -> Result<Option<Vec<u8>>> {
    let Ok(e) = IndexEntry::decode_for(value, block_size) else { return Ok(None) };
    let records = e.count as usize * record_len(block_size);
    let mut out = vec![0u8; records + e.tag.len()];
    let (record, tag) = out.split_at_mut(records);
    store.read_record(Location { segment: e.segment, offset: e.offset }, record)?;
    tag.copy_from_slice(&e.tag);
    Ok(Some(out))
}

/// How many blocks an archived `B` value of `len` bytes carries.
pub fn carried_blocks(block_size: u32, len: usize) -> u64 {
    let rec = record_len(block_size);
    match len.checked_sub(16) {
        Some(records) if records % rec == 0 && records > 0 => (records / rec) as u64,
        _ => 1,
    }
}

/// The `B` value to store for an archived one: carried records are
/// appended to the segment files and indexed again; a version-1 value
/// stays as it is. Records that are not the blocks ending at the key's
/// block, with consecutive versions, are refused.
pub fn import_value(store: &Store, block_size: u32, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let rec = record_len(block_size);
    let count = carried_blocks(block_size, value.len());
    if value.len() != count as usize * rec + 16 || count > max_run(block_size) {
        return Ok(value.to_vec());
    }
    let (records, tag) = value.split_at(value.len() - 16);
    let (ino, last) = (keys::ino_of(key).unwrap_or(0), keys::block_number(key).unwrap_or(0));
    let refuse = |why: String| Error::Index { ino, block: last, why };
    let first = (last + 1)
        .checked_sub(count)
        .ok_or_else(|| refuse(format!("the archive carries {count} blocks ending at block {last}")))?;
    let mut version = None;
    for (i, record) in records.chunks_exact(rec).enumerate() {
        let h = RecordHeader::decode(record).map_err(|e| refuse(e.to_string()))?;
        let want = (ino, first + i as u64, version.map_or(h.version, |v: u64| v.wrapping_add(i as u64)));
        if (h.ino, h.block, h.version) != want {
            let why = format!(
                "the archive carries block {} of inode {} version {} here",
                h.block, h.ino, h.version
            );
            return Err(refuse(why));
        }
        version.get_or_insert(h.version);
    }
    let at = store.append_record(records)?;
    let tag = tag.try_into().expect("16 bytes");
    let version = version.expect("at least one record");
    Ok(IndexEntry { segment: at.segment, offset: at.offset, version, count, tag }.encode())
}

/// `offset + len`, or TooLarge if it passes MAX_FILE_SIZE.
pub fn check_range(offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(end),
        _ => Err(Error::TooLarge(offset)),
    }
}

#[cfg(test)]
mod tests;
