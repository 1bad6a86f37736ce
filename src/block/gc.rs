//! Garbage collection of segment files: overwritten and deleted blocks leave
//! dead records behind; a segment mostly dead has its live records copied
//! (still sealed: no key is needed, and a locked level's blocks move too)
//! to the active segment and is then deleted. Liveness is decided by the
//! index alone: a record is live iff its block's index entry points at it
//! with its version. The dead-byte counts in `Space` only choose victims.
//! A cluster store's small objects (a file closed while a read-only mount
//! was there is one object of its own) are packed together the same way,
//! many per commit (`pick_small`, `pack`).

use std::collections::HashMap;

use crate::format::keys;
use crate::format::segment::{IndexEntry, RecordHeader, record_len};
use crate::store::{Batch, Location, SEGMENT_HEADER_LEN, Store};

use super::{Result, Space};

/// Collect once the dead bytes pass this share of all segment bytes, so
/// the segment files stay within 1.5x the live records (dead < 1/3 of
/// the total) with room for the active segment's own garbage.
const COLLECT_ABOVE: (u64, u64) = (1, 4);
/// A victim must be at least this dead (copying more than it frees is waste).
const VICTIM_AT_LEAST: (u64, u64) = (1, 4);
/// Records read per `pread` while collecting.
const CHUNK_RECORDS: usize = 64;
/// A cluster store's object smaller than this is small: reading files
/// spread one per object costs a request each.
const SMALL_OBJECT: u64 = 64 << 10;
/// Small objects are packed once this many wait...
const PACK_AT_LEAST: usize = 16;
/// ...at most this many into one commit.
const PACK_AT_MOST: usize = 64;

/// What one collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub segment: u64,
    pub moved: u64,
    pub freed_bytes: u64,
}

/// Live record bytes per segment, from a scan of the whole block index.
pub fn live_bytes(store: &Store, block_size: u32) -> Result<HashMap<u64, u64>> {
    let rec = record_len(block_size) as u64;
    let mut live: HashMap<u64, u64> = HashMap::new();
    for entry in store.scan_prefix(&[keys::BLOCK]) {
        let (_, v) = entry?;
        if let Ok(e) = IndexEntry::decode_for(&v, block_size) {
            *live.entry(e.segment).or_default() += e.count * rec;
        }
    }
    Ok(live)
}

/// The index entry holding block `block` of inode `ino`, if any, with the
/// block its key names (its last). Not authenticated: liveness needs only
/// the location and versions, and a forged entry moves nothing but bytes.
fn covering(store: &Store, block_size: u32, ino: u64, block: u64) -> Result<Option<(u64, IndexEntry)>> {
    let Some((k, v)) = store.first_in(&keys::block(ino, block), &keys::block_prefix(ino + 1))? else {
        return Ok(None);
    };
    let (Some(last), Ok(e)) = (keys::block_number(&k), IndexEntry::decode_for(&v, block_size)) else {
        return Ok(None);
    };
    Ok(e.first_block(last).filter(|f| *f <= block).map(|_| (last, e)))
}

/// Sets `space`'s dead-byte counts from a scan (at the first pass of a mount).
pub fn count_dead(store: &Store, space: &Space, block_size: u32) -> Result<()> {
    let live = live_bytes(store, block_size)?;
    let (segments, _) = store.segments()?;
    for (id, len) in segments {
        let used = len.saturating_sub(SEGMENT_HEADER_LEN);
        space.set_dead(id, Some(used.saturating_sub(live.get(&id).copied().unwrap_or(0))));
    }
    Ok(())
}

/// The segments worth collecting now, deadest first, if the dead share
/// calls for any: at most `count`, and no more once they reach `bytes`
/// together. A store directory's segments are up to 32 MiB, a cluster
/// store's objects often a few KiB (a file closed beside a reader): a
/// budget in bytes lets one round collect a few of the first or many of
/// the second, with one commit.
pub fn pick_many(store: &Store, space: &Space, count: usize, bytes: u64) -> Result<Vec<u64>> {
    let (segments, active) = store.segments()?;
    let dead = space.dead();
    let total: u64 = segments.iter().map(|s| s.1).sum();
    let dead_of = |id: u64, len: u64| dead.get(&id).copied().unwrap_or(0).min(len);
    let dead_total: u64 = segments.iter().map(|&(id, len)| dead_of(id, len)).sum();
    if dead_total * COLLECT_ABOVE.1 <= total * COLLECT_ABOVE.0 {
        return Ok(Vec::new());
    }
    let mut worth: Vec<(u64, u64, u64)> = segments
        .iter()
        .filter(|&&(id, len)| id != active && dead_of(id, len) * VICTIM_AT_LEAST.1 >= len * VICTIM_AT_LEAST.0)
        .map(|&(id, len)| (dead_of(id, len), id, len))
        .collect();
    worth.sort_unstable_by(|a, b| b.cmp(a));
    let (mut picked, mut taken) = (Vec::new(), 0u64);
    for (_, id, len) in worth {
        if picked.len() >= count || (!picked.is_empty() && taken + len > bytes) {
            break;
        }
        picked.push(id);
        taken += len;
    }
    Ok(picked)
}

/// Small objects of a cluster store worth packing together now, oldest
/// first: none below PACK_AT_LEAST of them, or when records are not
/// gathered into objects (`-o sync` would store each moved run as an
/// object as small as before).
pub fn pick_small(store: &Store) -> Result<Vec<u64>> {
    if !store.gathers_records() {
        return Ok(Vec::new());
    }
    let (segments, active) = store.segments()?;
    let small: Vec<u64> =
        segments.iter().filter(|&&(id, len)| id != active && len < SMALL_OBJECT).map(|&(id, _)| id).collect();
    if small.len() < PACK_AT_LEAST {
        return Ok(Vec::new());
    }
    Ok(small.into_iter().take(PACK_AT_MOST).collect())
}

/// Moves the live records of `victims` to the active segment, then one
/// flush makes the moves durable, then the victims go (a cluster store's
/// small objects are packed into the one being built). `lock(ino)` must
/// hold off every writer of that inode while its records move (the
/// vault's per-inode write lock).
pub fn pack<G>(
    store: &Store,
    space: &Space,
    block_size: u32,
    victims: &[u64],
    lock: impl Fn(u64) -> G,
) -> Result<Vec<Collected>> {
    let _one = space.collecting.lock().unwrap_or_else(|p| p.into_inner());
    let mut moved = Vec::new();
    for &segment in victims {
        moved.push((segment, move_live(store, block_size, segment, &lock)?));
    }
    // Nothing may point into a segment once it is gone, after a crash too.
    store.flush()?;
    let mut done = Vec::new();
    for (segment, collected) in moved {
        // None: another collector removed it first.
        if let Some(c) = collected {
            store.remove_segment(segment)?;
            done.push(c);
        } else {
            done.push(Collected { segment, ..Collected::default() });
        }
        space.set_dead(segment, None);
    }
    Ok(done)
}

/// Moves `segment`'s live records to the active segment (not yet durable,
/// the segment not yet removed): what `pack` does to each victim. None if
/// the segment is gone already.
fn move_live<G>(store: &Store, block_size: u32, segment: u64, lock: &impl Fn(u64) -> G) -> Result<Option<Collected>> {
    let rec = record_len(block_size);
    // Listed after taking the turn: another collector may have removed it.
    let (segments, _) = store.segments()?;
    let Some(&(_, len)) = segments.iter().find(|s| s.0 == segment) else {
        return Ok(None);
    };
    let count = (len.saturating_sub(SEGMENT_HEADER_LEN) / rec as u64) as usize;
    let mut moved = 0u64;
    let mut chunk = vec![0u8; rec * CHUNK_RECORDS];
    let mut i = 0;
    while i < count {
        let n = CHUNK_RECORDS.min(count - i);
        let start = SEGMENT_HEADER_LEN + (i * rec) as u64;
        store.read_record(Location { segment, offset: start }, &mut chunk[..n * rec])?;
        // Runs of records of one inode move under one hold of its lock.
        let mut j = 0;
        while j < n {
            let Ok(first) = RecordHeader::decode(&chunk[j * rec..]) else { break };
            let mut end = j + 1;
            while end < n && RecordHeader::decode(&chunk[end * rec..]).is_ok_and(|h| h.ino == first.ino) {
                end += 1;
            }
            let _held = lock(first.ino);
            let mut copies = Vec::new();
            let mut entries: Vec<(u64, IndexEntry)> = Vec::new();
            for k in j..end {
                let h = RecordHeader::decode(&chunk[k * rec..]).expect("checked above");
                let here = start + (k * rec) as u64;
                let Some((last, e)) = covering(store, block_size, h.ino, h.block)? else { continue };
                if entries.iter().any(|(l, _)| *l == last) {
                    continue;
                }
                // Live: the entry holding this block points here, at this version.
                let i = h.block - e.first_block(last).expect("covering checked it");
                let live = e.segment == segment
                    && e.offset.checked_add(i * rec as u64) == Some(here)
                    && e.version.checked_add(i) == Some(h.version);
                if live {
                    // The whole run moves (its records lie back to back here).
                    let at = copies.len();
                    copies.resize(at + e.count as usize * rec, 0);
                    store.read_record(Location { segment, offset: e.offset }, &mut copies[at..])?;
                    entries.push((last, e));
                }
            }
            if !entries.is_empty() {
                let at = store.append_record(&copies)?;
                let mut batch = Batch::default();
                let mut offset = at.offset;
                for (last, e) in &entries {
                    let moved_to = IndexEntry { segment: at.segment, offset, ..*e };
                    batch.put(&keys::block(first.ino, *last)[..], moved_to.encode());
                    offset += e.count * rec as u64;
                    moved += e.count;
                }
                store.apply(batch)?;
            }
            j = end;
        }
        i += n;
    }
    Ok(Some(Collected { segment, moved, freed_bytes: len.saturating_sub(moved * rec as u64) }))
}
