//! Where new block records get their versions, and how much of each segment
//! file is dead (overwritten or deleted records) as far as this mount knows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::format::keys;
use crate::store::Store;

use super::{Error, Result};

/// Versions reserved per durable write of the counter: one commit per 16 Mi
/// records (64 GiB of 4 KiB blocks).
const VERSION_RESERVE: u64 = 1 << 24;

/// The block version allocator and the dead-bytes hints of one open vault.
pub struct Space {
    versions: Mutex<Versions>,
    dead: Mutex<HashMap<u64, u64>>,
    /// One collection at a time (gc::pack).
    pub(super) collecting: Mutex<()>,
}

struct Versions {
    next: u64,
    /// Every version below this may be in use; durable before any is handed out.
    reserved: u64,
}

impl Space {
    /// Starts past the stored counter and past the clock in nanoseconds, so
    /// a version is never handed out twice even if the (unauthenticated)
    /// counter was rolled back, unless the clock was too.
    pub fn load(store: &Store) -> Result<Space> {
        let stored = match store.get(keys::VERSION_COUNTER)? {
            Some(v) => u64::from_be_bytes(v[..].try_into().map_err(|_| Error::Counter)?),
            None => 0,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let next = stored.max(now);
        Ok(Space {
            versions: Mutex::new(Versions { next, reserved: stored }),
            dead: Mutex::default(),
            collecting: Mutex::default(),
        })
    }

    /// `n` fresh consecutive versions; the first is returned. The counter
    /// is made durable before a version past it is used, so no record
    /// written before a crash shares a version with one written after.
    pub fn take_versions(&self, store: &Store, n: u64) -> Result<u64> {
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let end = v.next.checked_add(n).ok_or(Error::Counter)?;
        if end > v.reserved {
            // Other hosts writing the vault reserve from the same counter:
            // start past what they reserved (read under the operation's
            // hold, so no one moves it meanwhile).
            if store.shares_writes() {
                let stored = store.get(keys::VERSION_COUNTER)?.and_then(|c| c[..].try_into().ok());
                v.next = v.next.max(stored.map_or(0, u64::from_be_bytes));
            }
            let end = v.next.checked_add(n).ok_or(Error::Counter)?;
            let reserved = end.checked_add(VERSION_RESERVE).ok_or(Error::Counter)?;
            store.put(keys::VERSION_COUNTER, reserved.to_be_bytes().to_vec())?;
            store.flush()?;
            v.reserved = reserved;
        }
        let first = v.next;
        v.next = first + n;
        Ok(first)
    }

    /// A record of `bytes` in `segment` is no longer referenced.
    pub fn note_dead(&self, segment: u64, bytes: u64) {
        *self.dead.lock().unwrap_or_else(|p| p.into_inner()).entry(segment).or_default() += bytes;
    }

    /// Dead bytes per segment, as noted since the last `set_dead`.
    pub fn dead(&self) -> HashMap<u64, u64> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the hints (after a scan counted what is live) or forgets a
    /// collected segment's.
    pub fn set_dead(&self, segment: u64, bytes: Option<u64>) {
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        match bytes {
            Some(b) => dead.insert(segment, b),
            None => dead.remove(&segment),
        };
    }
}
