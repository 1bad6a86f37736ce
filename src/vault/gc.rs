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
/// Segments collected per look at most (each one ≤ 32 MiB of copying), so
/// the thread lets go of the vault between rounds.
const PER_LOOK: usize = 4;

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
    let bs = core.block_size;
    if !*counted {
        gc::count_dead(&core.store, &core.space, bs)?;
        *counted = true;
    }
    for _ in 0..PER_LOOK {
        if !in_use(core) {
            return Ok(());
        }
        let Some(victim) = gc::pick(&core.store, &core.space)? else {
            return pack_small(core);
        };
        let done = gc::collect(&core.store, &core.space, bs, victim, |ino| core.locks.write(ino))?;
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
        while let Some(victim) = gc::pick(&self.store, &self.space)? {
            out.push(gc::collect(&self.store, &self.space, bs, victim, |ino| self.locks.write(ino))?);
        }
        Ok(out)
    }
}
