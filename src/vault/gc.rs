//! The segment collector of a mounted vault: a thread that counts the dead
//! space once, then collects the deadest segment whenever the dead share
//! passes block::gc's threshold. Moving a file's records holds its inode's
//! write lock, so no write of that file interleaves.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::block::gc;

use super::Core;

/// How often the collector looks at the dead share.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Segments collected per look at most, together at most PER_LOOK_BYTES
/// (four of a store directory's 32 MiB segments; up to 64 of a cluster
/// store's small objects), with one commit, so the thread lets go of the
/// vault between rounds.
const PER_LOOK: usize = 64;
const PER_LOOK_BYTES: u64 = 128 << 20;

pub(super) fn spawn_collector(core: Weak<Core>) {
    let spawned = std::thread::Builder::new().name("segment-gc".into()).spawn(move || {
        let mut counted = false;
        loop {
            std::thread::sleep(LOOK_EVERY);
            let Some(core) = core.upgrade() else { return };
            if core.store.is_frozen() {
                continue;
            }
            if let Err(e) = collect_round(&core, &mut counted) {
                tracing::error!("segment collection failed: {e}");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the segment collector: {e}; dead records stay until the next mount");
    }
}

/// Whether anyone but the collector still holds the vault.
fn in_use(core: &Arc<Core>) -> bool {
    Arc::strong_count(core) > 1
}

fn collect_round(core: &Arc<Core>, counted: &mut bool) -> crate::block::Result<()> {
    // Beside other hosts writing, only while this mount holds the vault: a
    // round never makes it wait for the hold, nor take it from them.
    let Some(_hold) = core.store.try_hold_for_write() else { return Ok(()) };
    let bs = core.block_size;
    if !*counted {
        gc::count_dead(&core.store, &core.space, bs)?;
        *counted = true;
    }
    if !in_use(core) {
        return Ok(());
    }
    let victims = gc::pick_many(&core.store, &core.space, PER_LOOK, PER_LOOK_BYTES)?;
    if victims.is_empty() {
        return pack_small(core);
    }
    for done in gc::pack(&core.store, &core.space, bs, &victims, |ino| core.locks.write(ino))? {
        core.metrics.collected(done.moved, done.freed_bytes);
        tracing::debug!(
            "collected segment {:016x}: {} records moved, {} bytes freed",
            done.segment,
            done.moved,
            done.freed_bytes
        );
    }
    Ok(())
}

/// Packs a cluster store's small objects together, when enough wait.
fn pack_small(core: &Arc<Core>) -> crate::block::Result<()> {
    let small = gc::pick_small(&core.store)?;
    if small.is_empty() || !in_use(core) {
        return Ok(());
    }
    let done = gc::pack(&core.store, &core.space, core.block_size, &small, |ino| core.locks.write(ino))?;
    let moved: u64 = done.iter().map(|d| d.moved).sum();
    core.metrics.collected(moved, done.iter().map(|d| d.freed_bytes).sum());
    tracing::debug!("packed {} small objects: {moved} records moved", done.len());
    Ok(())
}

impl Core {
    /// Counts dead space and collects until the dead share is below the
    /// threshold (tests and `vaultfs fsck`-style tools; the mount does it
    /// in the background).
    #[cfg(test)]
    pub(super) fn collect_all(&self) -> crate::block::Result<Vec<gc::Collected>> {
        let bs = self.block_size;
        gc::count_dead(&self.store, &self.space, bs)?;
        let mut out = Vec::new();
        loop {
            let victims = gc::pick_many(&self.store, &self.space, PER_LOOK, PER_LOOK_BYTES)?;
            if victims.is_empty() {
                break;
            }
            out.extend(gc::pack(&self.store, &self.space, bs, &victims, |ino| self.locks.write(ino))?);
        }
        Ok(out)
    }
}
