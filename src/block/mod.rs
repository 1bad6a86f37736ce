//! File content as fixed-size encrypted blocks.
//! Block value: nonce(24) ‖ XChaCha20-Poly1305(file key, full block plaintext) ‖ tag(16),
//! AAD = format::aad::block(vault id, ino, generation, block number).
//! Every stored block holds exactly `block_size` plaintext bytes (the tail of
//! the last one is zero), so stored lengths reveal only block counts. Absent
//! blocks are holes and read as zeros.

use zeroize::Zeroizing;

use crate::crypto::{self, Key32, SEALED_OVERHEAD};
use crate::format::{aad, keys};
use crate::store::{self, Batch, Store};

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
    /// An offset or size beyond MAX_FILE_SIZE.
    #[error("offset {0} is beyond the maximum file size")]
    TooLarge(u64),
    #[error("random source failed")]
    Random,
}

pub type Result<T> = std::result::Result<T, Error>;

/// The blocks of one file version: (ino, generation) under one file key.
pub struct FileBlocks<'a> {
    pub store: &'a Store,
    pub key: &'a Key32,
    pub vault_id: &'a [u8; 16],
    pub ino: u64,
    pub generation: u64,
    pub block_size: u32,
}

impl FileBlocks<'_> {
    fn bs(&self) -> u64 {
        self.block_size as u64
    }

    /// Seals one full plaintext block into a fresh store value.
    pub fn seal_block(&self, block: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
        debug_assert_eq!(plaintext.len(), self.block_size as usize);
        let aad = aad::block(self.vault_id, self.ino, self.generation, block);
        let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
        crypto::seal_into(self.key, &aad, plaintext, &mut out).map_err(|_| Error::Random)?;
        Ok(out)
    }

    /// Authenticates and decrypts one stored block into `out` (block_size bytes).
    pub fn open_block(&self, block: u64, value: &[u8], out: &mut [u8]) -> Result<()> {
        if value.len() != self.block_size as usize + SEALED_OVERHEAD {
            return Err(Error::Length { ino: self.ino, block, len: value.len() });
        }
        let aad = aad::block(self.vault_id, self.ino, self.generation, block);
        crypto::open_in_place(self.key, &aad, value, out).map_err(|_| Error::Auth { ino: self.ino, block })
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
        let from = keys::block(self.ino, first);
        let to = keys::block(self.ino, last + 1);
        for entry in self.store.range(&from, &to) {
            let (k, v) = entry?;
            let Some(b) = keys::block_number(&k) else { continue };
            let block_start = b * bs;
            let lo = offset.max(block_start);
            let hi = end.min(block_start + bs);
            let dst = &mut out[(lo - offset) as usize..(hi - offset) as usize];
            if dst.len() as u64 == bs {
                // Whole block wanted: decrypt straight into the reply buffer.
                self.open_block(b, &v, dst)?;
            } else {
                let s = scratch.get_or_insert_with(|| Zeroizing::new(vec![0u8; bs as usize]));
                self.open_block(b, &v, s)?;
                dst.copy_from_slice(&s[(lo - block_start) as usize..(hi - block_start) as usize]);
            }
        }
        Ok(out)
    }

    /// Writes `data` at `offset` into `batch`; returns the change in stored block count.
    pub fn write(&self, offset: u64, data: &[u8], batch: &mut Batch) -> Result<i64> {
        let end = check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(0);
        }
        let bs = self.bs();
        let (first, last) = (offset / bs, (end - 1) / bs);
        // One range scan tells which touched blocks exist (for the block count
        // and for read-modify-write), instead of one lookup per block.
        let mut existing = std::collections::BTreeSet::new();
        for k in self.store.range_keys(&keys::block(self.ino, first), &keys::block(self.ino, last + 1)) {
            existing.extend(keys::block_number(&k?));
        }
        let mut delta = 0i64;
        let mut scratch: Option<Zeroizing<Vec<u8>>> = None;
        for b in first..=last {
            let block_start = b * bs;
            let lo = offset.max(block_start);
            let hi = end.min(block_start + bs);
            let src = &data[(lo - offset) as usize..(hi - offset) as usize];
            let key = keys::block(self.ino, b);
            let stored = existing.contains(&b);
            if !stored {
                delta += 1;
            }
            let value = if src.len() as u64 == bs {
                self.seal_block(b, src)?
            } else {
                let s = scratch.get_or_insert_with(|| Zeroizing::new(vec![0u8; bs as usize]));
                let old = if stored { self.store.get(&key)? } else { None };
                match old {
                    Some(old) => self.open_block(b, &old, s)?,
                    None => s.fill(0),
                }
                s[(lo - block_start) as usize..(hi - block_start) as usize].copy_from_slice(src);
                self.seal_block(b, s)?
            };
            batch.put(&key[..], value);
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
            self.open_block(b, &old, &mut s)?;
            s[lo..hi].fill(0);
            batch.put(&key[..], self.seal_block(b, &s)?);
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
        for k in self.store.range_keys(&lo, &hi) {
            batch.delete(k?);
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

/// `offset + len`, or TooLarge if it passes MAX_FILE_SIZE.
pub fn check_range(offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(end),
        _ => Err(Error::TooLarge(offset)),
    }
}

#[cfg(test)]
mod tests;
