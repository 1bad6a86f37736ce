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
use crate::format::segment::{INDEX_ENTRY_LEN, IndexEntry, RECORD_HEADER_LEN, RecordHeader, record_len};
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

    /// The tag that authenticates `version` as block `block`'s current one.
    fn index_tag(&self, block: u64, version: u64) -> [u8; 16] {
        let ik = self.index_key.get_or_init(|| {
            Key32::from_bytes(KeyedHash::new(self.key).update(labels::BLOCK_INDEX).finalize32())
        });
        let mut h = KeyedHash::new(ik);
        h.update(&self.ino.to_be_bytes())
            .update(&self.generation.to_be_bytes())
            .update(&block.to_be_bytes())
            .update(&version.to_be_bytes());
        h.finalize16()
    }

    /// The stored values of blocks `first..=last` that exist, in order.
    fn stored(&self, first: u64, last: u64) -> Result<Vec<(u64, Value)>> {
        if first == last {
            // One block (random I/O): a point lookup costs less than a range scan.
            return Ok(self
                .store
                .get(&keys::block(self.ino, first))?
                .map(|v| (first, v))
                .into_iter()
                .collect());
        }
        let mut found = Vec::new();
        for entry in self.store.range(&keys::block(self.ino, first), &keys::block(self.ino, last + 1)) {
            let (k, v) = entry?;
            found.extend(keys::block_number(&k).map(|b| (b, v)));
        }
        Ok(found)
    }

    fn index_error(&self, block: u64, why: impl Into<String>) -> Error {
        Error::Index { ino: self.ino, block, why: why.into() }
    }

    /// Decodes block `block`'s index entry and checks its tag.
    pub fn index_entry(&self, block: u64, value: &[u8]) -> Result<IndexEntry> {
        let e = IndexEntry::decode(value).map_err(|e| self.index_error(block, e.to_string()))?;
        if !crypto::tags_equal(&e.tag, &self.index_tag(block, e.version)) {
            return Err(self.index_error(block, "index entry failed authentication"));
        }
        Ok(e)
    }

    /// Authenticates and decrypts block `block` from its `B` value, either
    /// layout: a version-1 sealed block, or an index entry whose record is
    /// read from its segment file.
    pub fn open_stored(&self, block: u64, value: &[u8], out: &mut [u8]) -> Result<()> {
        if value.len() != INDEX_ENTRY_LEN {
            return self.open_block(block, value, out);
        }
        let e = self.index_entry(block, value)?;
        let mut record = Zeroizing::new(vec![0u8; record_len(self.block_size)]);
        self.store.read_record(Location { segment: e.segment, offset: e.offset }, &mut record)?;
        self.open_record(block, &e, &record, out)
    }

    /// Checks a record read from where `e` points and decrypts it into `out`.
    pub fn open_record(&self, block: u64, e: &IndexEntry, record: &[u8], out: &mut [u8]) -> Result<()> {
        let h = RecordHeader::decode(record).map_err(|err| self.index_error(block, err.to_string()))?;
        if (h.ino, h.block, h.version) != (self.ino, block, e.version) {
            return Err(self.index_error(
                block,
                format!(
                    "segment {:016x} offset {} holds inode {} block {} version {}, not version {}",
                    e.segment, e.offset, h.ino, h.block, h.version, e.version
                ),
            ));
        }
        let aad = aad::block_v2(self.vault_id, self.ino, self.generation, block, e.version);
        crypto::open_in_place(self.key, &aad, &record[RECORD_HEADER_LEN..], out)
            .map_err(|_| Error::Auth { ino: self.ino, block })
    }

    /// Notes that `old` (a `B` value being replaced or deleted) is garbage now.
    fn retire(&self, old: &[u8]) {
        if let (Some(space), Ok(e)) = (self.space, IndexEntry::decode(old)) {
            space.note_dead(e.segment, record_len(self.block_size) as u64);
        }
    }

    /// Seals `blocks` (numbers ascending, each a full plaintext block) into
    /// records, appends them to the segment files as one write, and puts
    /// their index entries into `batch`.
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
        for (i, (b, _)) in blocks.iter().enumerate() {
            let version = first + i as u64;
            let entry = IndexEntry {
                segment: at.segment,
                offset: at.offset + (i * rec_len) as u64,
                version,
                tag: self.index_tag(*b, version),
            };
            batch.put(&keys::block(self.ino, *b)[..], entry.encode());
        }
        Ok(())
    }

    /// Stores block `block` anew from `plain`, retiring its `old` value (rotation).
    pub fn replace_block(&self, block: u64, plain: &[u8], old: &[u8], batch: &mut Batch) -> Result<()> {
        self.put_blocks(&[(block, plain)], batch)?;
        self.retire(old);
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` of a file of `size` bytes.
    pub fn read(&self, offset: u64, len: usize, size: u64) -> Result<Vec<u8>> {
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let end = size.min(offset.saturating_add(len as u64));
        let mut out = vec![0u8; (end - offset) as usize];
        let bs = self.bs();
        let (first, last) = (offset / bs, (end - 1) / bs);
        let mut scratch: Option<Zeroizing<Vec<u8>>> = None;
        // Opens one block with `open` into its place in `out`: straight into
        // the reply when it is wanted whole, else through scratch.
        let place = |out: &mut [u8],
                     scratch: &mut Option<Zeroizing<Vec<u8>>>,
                     b: u64,
                     open: &dyn Fn(&mut [u8]) -> Result<()>|
         -> Result<()> {
            let block_start = b * bs;
            let (lo, hi) = (offset.max(block_start), end.min(block_start + bs));
            let dst = &mut out[(lo - offset) as usize..(hi - offset) as usize];
            if dst.len() as u64 == bs {
                open(dst)
            } else {
                let s = scratch.get_or_insert_with(|| Zeroizing::new(vec![0u8; bs as usize]));
                open(s)?;
                dst.copy_from_slice(&s[(lo - block_start) as usize..(hi - block_start) as usize]);
                Ok(())
            }
        };
        let entries = self.stored(first, last)?;
        let rec = record_len(self.block_size);
        let mut records = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let (b, v) = &entries[i];
            if v.len() != INDEX_ENTRY_LEN {
                place(&mut out, &mut scratch, *b, &|dst| self.open_block(*b, v, dst))?;
                i += 1;
                continue;
            }
            // A run of records that lie back to back (one write request's,
            // usually) is read with one pread.
            let mut run = vec![self.index_entry(*b, v)?];
            while let Some((nb, nv)) =
                entries.get(i + run.len()).filter(|(_, nv)| nv.len() == INDEX_ENTRY_LEN)
            {
                let e = self.index_entry(*nb, nv)?;
                if e.segment != run[0].segment || e.offset != run[0].offset + (run.len() * rec) as u64 {
                    break;
                }
                run.push(e);
            }
            records.resize(run.len() * rec, 0);
            self.store
                .read_record(Location { segment: run[0].segment, offset: run[0].offset }, &mut records)?;
            for (n, e) in run.iter().enumerate() {
                let b = entries[i + n].0;
                let record = &records[n * rec..(n + 1) * rec];
                place(&mut out, &mut scratch, b, &|dst| self.open_record(b, e, record, dst))?;
            }
            i += run.len();
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
        // One lookup finds the touched blocks that exist (for the block
        // count, read-modify-write and the records they retire). None lies
        // at or past the end of the file (truncation drops them in the same
        // batch as the size), so an append looks nothing up: a lookup that
        // reaches sled waits while the committer hands a batch over.
        let stored_end = size.div_ceil(bs);
        let existing: std::collections::BTreeMap<u64, Value> = if first < stored_end {
            self.stored(first, last.min(stored_end - 1))?.into_iter().collect()
        } else {
            Default::default()
        };
        let delta = (last - first + 1) as i64 - existing.len() as i64;
        // At most two partial blocks (the first and the last) need their old content.
        let mut partial: Vec<(u64, Zeroizing<Vec<u8>>)> = Vec::new();
        for b in [first, last] {
            let block_start = b * bs;
            let (lo, hi) = (offset.max(block_start), end.min(block_start + bs));
            if hi - lo == bs || partial.iter().any(|(p, _)| *p == b) {
                continue;
            }
            let mut s = Zeroizing::new(vec![0u8; bs as usize]);
            if let Some(old) = existing.get(&b) {
                self.open_stored(b, old, &mut s)?;
            }
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
        self.put_blocks(&blocks, batch)?;
        for old in existing.values() {
            self.retire(old);
        }
        Ok(delta)
    }

    /// Changes the size from `old` to `new`: drops blocks past the end and zeroes
    /// the tail of the new last block. Returns the change in stored block count.
    pub fn truncate(&self, old: u64, new: u64, batch: &mut Batch) -> Result<i64> {
        check_range(new, 0)?;
        if new >= old {
            return Ok(0);
        }
        let bs = self.bs();
        let mut delta = 0;
        let keep = new.div_ceil(bs);
        if new % bs != 0 {
            delta += self.zero_within_block(new / bs, (new % bs) as usize, bs as usize, batch)?;
        }
        delta -= self.delete_blocks(keep, u64::MAX, batch)?;
        Ok(delta)
    }

    /// Zeroes `[offset, offset+len)` (fallocate PUNCH_HOLE / ZERO_RANGE): whole
    /// blocks become holes, partial ones are rewritten. Size is unchanged.
    pub fn punch_hole(&self, offset: u64, len: u64, size: u64, batch: &mut Batch) -> Result<i64> {
        let end = check_range(offset, len)?.min(size);
        if offset >= end {
            return Ok(0);
        }
        let bs = self.bs();
        let (first_full, end_full) = (offset.div_ceil(bs), end / bs);
        let mut delta = 0;
        if first_full > end_full {
            // Start and end inside one block.
            let b = offset / bs;
            return self.zero_within_block(b, (offset - b * bs) as usize, (end - b * bs) as usize, batch);
        }
        if offset % bs != 0 {
            delta += self.zero_within_block(offset / bs, (offset % bs) as usize, bs as usize, batch)?;
        }
        if end % bs != 0 && end_full * bs < size {
            delta += self.zero_within_block(end_full, 0, (end % bs) as usize, batch)?;
        }
        delta -= self.delete_blocks(first_full, end_full, batch)?;
        Ok(delta)
    }

    /// Zeroes bytes `[lo, hi)` of block `b` if it is stored. Returns 0 (a hole stays a hole).
    fn zero_within_block(&self, b: u64, lo: usize, hi: usize, batch: &mut Batch) -> Result<i64> {
        let key = keys::block(self.ino, b);
        if let Some(old) = self.store.get(&key)? {
            let mut s = Zeroizing::new(vec![0u8; self.block_size as usize]);
            self.open_stored(b, &old, &mut s)?;
            s[lo..hi].fill(0);
            self.put_blocks(&[(b, &s[..])], batch)?;
            self.retire(&old);
        }
        Ok(0)
    }

    /// Deletes stored blocks with numbers in `[from, to)`; returns how many.
    pub fn delete_blocks(&self, from: u64, to: u64, batch: &mut Batch) -> Result<i64> {
        let lo = keys::block(self.ino, from);
        let hi = if to == u64::MAX {
            keys::block_prefix(self.ino + 1).to_vec()
        } else {
            keys::block(self.ino, to).to_vec()
        };
        let mut n = 0;
        for entry in self.store.range(&lo, &hi) {
            let (k, old) = entry?;
            self.retire(&old);
            batch.delete(k);
            n += 1;
        }
        Ok(n)
    }

    /// SEEK_DATA: the first offset >= `offset` inside a stored block, if below `size`.
    pub fn next_data(&self, offset: u64, size: u64) -> Result<Option<u64>> {
        if offset >= size {
            return Ok(None);
        }
        let bs = self.bs();
        let lo = keys::block(self.ino, offset / bs);
        let hi = keys::block_prefix(self.ino + 1);
        for k in self.store.range_keys(&lo, &hi) {
            if let Some(b) = keys::block_number(&k?) {
                let at = offset.max(b * bs);
                return Ok((at < size).then_some(at));
            }
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
        let lo = keys::block(self.ino, expect);
        let hi = keys::block_prefix(self.ino + 1);
        for k in self.store.range_keys(&lo, &hi) {
            match keys::block_number(&k?) {
                Some(b) if b == expect => expect += 1,
                _ => break,
            }
        }
        Ok(size.min(offset.max(expect * bs)))
    }
}

/// A `B` value as an archive carries it (docs/FORMAT.md 6.4): an index
/// entry becomes its record followed by its tag, so the archive holds the
/// blocks themselves; a version-1 value is carried as it is.
pub fn export_value(store: &Store, block_size: u32, value: &[u8]) -> Result<Option<Vec<u8>>> {
    let Ok(e) = IndexEntry::decode(value) else { return Ok(None) };
    let mut out = vec![0u8; record_len(block_size) + e.tag.len()];
    let (record, tag) = out.split_at_mut(record_len(block_size));
    store.read_record(Location { segment: e.segment, offset: e.offset }, record)?;
    tag.copy_from_slice(&e.tag);
    Ok(Some(out))
}

/// The `B` value to store for an archived one: a carried record is appended
/// to the segment files and indexed again; a version-1 value stays as it
/// is. An archived record of another block is refused.
pub fn import_value(store: &Store, block_size: u32, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let rec = record_len(block_size);
    if value.len() != rec + 16 {
        return Ok(value.to_vec());
    }
    let (record, tag) = value.split_at(rec);
    let (ino, block) = (keys::ino_of(key).unwrap_or(0), keys::block_number(key).unwrap_or(0));
    let h = RecordHeader::decode(record).map_err(|e| Error::Index { ino, block, why: e.to_string() })?;
    if (h.ino, h.block) != (ino, block) {
        return Err(Error::Index {
            ino,
            block,
            why: format!("the archive carries block {} of inode {} here", h.block, h.ino),
        });
    }
    let at = store.append_record(record)?;
    let tag = tag.try_into().expect("16 bytes");
    Ok(IndexEntry { segment: at.segment, offset: at.offset, version: h.version, tag }.encode())
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
