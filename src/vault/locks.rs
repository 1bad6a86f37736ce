//! Per-inode locking by striping: inode `n` is guarded by stripe `n % STRIPES`.
//! Data operations hold one stripe and wait for nothing else while holding it;
//! namespace operations are serialized by the namespace mutex and gather
//! stripes in a `StripeSet`. So a waiting chain has at most one namespace
//! operation in it and can never close into a cycle.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const STRIPES: usize = 1024;

pub struct LockTable {
    stripes: Vec<RwLock<()>>,
}

pub enum Guard<'a> {
    Read(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Write(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

impl LockTable {
    pub fn new() -> Self {
        LockTable { stripes: (0..STRIPES).map(|_| RwLock::new(())).collect() }
    }

    fn stripe(ino: u64) -> usize {
        (ino % STRIPES as u64) as usize
    }

    pub fn read(&self, ino: u64) -> Guard<'_> {
        Guard::Read(self.stripes[Self::stripe(ino)].read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn write(&self, ino: u64) -> Guard<'_> {
        Guard::Write(self.stripes[Self::stripe(ino)].write().unwrap_or_else(|p| p.into_inner()))
    }

    /// An empty set of write-locked stripes, for namespace operations.
    pub fn set(&self) -> StripeSet<'_> {
        StripeSet { table: self, held: Vec::new() }
    }
}

/// Stripes write-locked by one namespace operation; each stripe is taken
/// once however many of its inodes the operation touches.
pub struct StripeSet<'a> {
    table: &'a LockTable,
    held: Vec<(usize, RwLockWriteGuard<'a, ()>)>,
}

impl StripeSet<'_> {
    pub fn add(&mut self, ino: u64) {
        let s = LockTable::stripe(ino);
        if !self.held.iter().any(|(i, _)| *i == s) {
            let g = self.table.stripes[s].write().unwrap_or_else(|p| p.into_inner());
            self.held.push((s, g));
        }
    }
}
