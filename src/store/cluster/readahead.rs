//! Readahead for records in the bucket. Objects never change once stored,
//! so a range read once stays right for as long as it is kept. A read that
//! starts where the last read of the same object ended (a file read from
//! start to end, or files read in the order they were written, whose
//! records lie back to back) fetches whole aligned chunks and keeps them;
//! any other read fetches just its bytes, so random reads cost no more
//! than before. Kept bytes are ciphertext, as in the bucket; every record
//! is still authenticated when it is opened.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{Error, Result};

/// Bytes fetched at once by a sequential read, aligned to this size.
pub(super) const CHUNK: u64 = 1 << 20;
/// Chunks kept, oldest dropped first: 32 MiB.
const KEEP: usize = 32;
/// Objects whose last read end is remembered.
const TRACKED: usize = 1024;

#[derive(Default)]
pub(super) struct Readahead {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (object, chunk index) -> the chunk's bytes (shorter at the object's end).
    chunks: HashMap<(u64, u64), Arc<Vec<u8>>>,
    order: VecDeque<(u64, u64)>,
    /// Object -> where its last read ended.
    last_end: HashMap<u64, u64>,
}

impl Readahead {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `buf` with the bytes of `object` at `offset`: from kept chunks,
    /// else through `fetch(offset, len)`, which returns up to `len` bytes
    /// (fewer only at the object's end).
    pub fn read(&self, object: u64, offset: u64, buf: &mut [u8], fetch: impl Fn(u64, u64) -> Result<Vec<u8>>) -> Result<()> {
        let end = offset + buf.len() as u64;
        let sequential = {
            let mut inner = self.lock();
            if inner.last_end.len() >= TRACKED && !inner.last_end.contains_key(&object) {
                inner.last_end.clear();
            }
            let before = inner.last_end.insert(object, end);
            if inner.copy(object, offset, buf) {
                return Ok(());
            }
            before == Some(offset)
        };
        let want = buf.len();
        let short = || Error::Corrupt(format!("object {object} holds fewer than {want} bytes at offset {offset}"));
        let exact = |buf: &mut [u8]| {
            let got = fetch(offset, want as u64)?;
            if got.len() != want {
                return Err(short());
            }
            buf.copy_from_slice(&got);
            Ok(())
        };
        if !sequential {
            return exact(buf);
        }
        // Only the chunks not kept yet (a record may straddle two).
        let (mut first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        while first < last && self.lock().chunks.contains_key(&(object, first)) {
            first += 1;
        }
        let bytes = fetch(first * CHUNK, (last + 1 - first) * CHUNK)?;
        let mut inner = self.lock();
        for (i, chunk) in bytes.chunks(CHUNK as usize).enumerate() {
            inner.keep((object, first + i as u64), chunk.to_vec());
        }
        if inner.copy(object, offset, buf) {
            return Ok(());
        }
        drop(inner);
        // A chunk other readers pushed out meanwhile, or an object shorter
        // than the record: ask for exactly the record.
        exact(buf)
    }

    /// Forgets a deleted object.
    pub fn forget(&self, object: u64) {
        let mut inner = self.lock();
        inner.chunks.retain(|(o, _), _| *o != object);
        inner.order.retain(|(o, _)| *o != object);
        inner.last_end.remove(&object);
    }
}

impl Inner {
    fn keep(&mut self, at: (u64, u64), bytes: Vec<u8>) {
        if self.chunks.insert(at, Arc::new(bytes)).is_none() {
            self.order.push_back(at);
        }
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.chunks.remove(&old);
            }
        }
    }

    /// Copies `buf.len()` bytes at `offset` if kept chunks hold all of them.
    fn copy(&self, object: u64, offset: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(chunk) = self.chunks.get(&(object, at / CHUNK)) else { return false };
            let from = (at % CHUNK) as usize;
            let Some(have) = chunk.get(from..) else { return false };
            let n = have.len().min(buf.len() - done);
            if n == 0 {
                return false;
            }
            buf[done..done + n].copy_from_slice(&have[..n]);
            done += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// An object of `len` bytes whose byte i is i mod 251.
    fn object(len: u64) -> impl Fn(u64, u64) -> Result<Vec<u8>> {
        move |at, n| Ok((at..(at + n).min(len)).map(|i| (i % 251) as u8).collect())
    }

    fn expected(at: u64, n: usize) -> Vec<u8> {
        (at..at + n as u64).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn sequential_reads_fetch_whole_chunks_and_random_reads_fetch_nothing_more() {
        let ra = Readahead::default();
        let fetched = RefCell::new(Vec::new());
        let len = 3 * CHUNK + 1000;
        let fetch = |at, n| {
            fetched.borrow_mut().push((at, n));
            object(len)(at, n)
        };
        let mut buf = vec![0; 4160];
        // A first read is not known to be sequential: just its bytes.
        ra.read(1, 16, &mut buf, fetch).unwrap();
        assert_eq!(buf, expected(16, buf.len()));
        assert_eq!(*fetched.borrow(), vec![(16, 4160)]);
        // The next one starts where it ended: one chunk fetched, then kept.
        let mut at = 16 + 4160;
        for _ in 0..300 {
            ra.read(1, at, &mut buf, fetch).unwrap();
            assert_eq!(buf, expected(at, buf.len()));
            at += 4160;
        }
        assert_eq!(*fetched.borrow(), vec![(16, 4160), (0, CHUNK), (CHUNK, CHUNK)]);
        // A jump fetches just what it asks; reading on from there reaches
        // the object's short last chunk.
        let near_end = 3 * CHUNK - 1000;
        let mut tail = vec![0; 500];
        ra.read(1, near_end, &mut tail, fetch).unwrap();
        assert_eq!(fetched.borrow().last(), Some(&(near_end, 500)));
        let mut rest = vec![0; 1000];
        ra.read(1, near_end + 500, &mut rest, fetch).unwrap();
        assert_eq!(rest, expected(near_end + 500, 1000));
        assert_eq!(fetched.borrow().last(), Some(&(2 * CHUNK, 2 * CHUNK)));
        // Bytes past the object's end are an error, never zeros.
        let mut past = vec![0; 10];
        assert!(matches!(ra.read(1, len - 5, &mut past, fetch), Err(Error::Corrupt(_))));
        let mut past = vec![0; 10];
        assert!(matches!(ra.read(1, len + 5, &mut past, fetch), Err(Error::Corrupt(_))));
    }

    #[test]
    fn memory_stays_bounded_and_deleted_objects_go() {
        let ra = Readahead::default();
        let fetch = object(u64::MAX);
        let mut buf = vec![0; 100];
        for o in 0..100 {
            ra.read(o, 0, &mut buf, &fetch).unwrap();
            ra.read(o, 100, &mut buf, &fetch).unwrap();
        }
        assert!(ra.lock().chunks.len() <= KEEP);
        ra.forget(99);
        assert!(!ra.lock().chunks.keys().any(|(o, _)| *o == 99));
    }
}
