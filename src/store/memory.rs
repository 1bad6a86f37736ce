//! The daemon's memory ceiling (`-o memory=MIB`). Most of what a mount holds
//! is bounded by its own setting (sled's page cache, the inodes the kernel
//! keeps looked up, the overlay of grouped changes); what grows with the
//! vault is sled's table of page descriptors (about 150-250 bytes for every
//! page, cached or not: PERFORMANCE.md, "Memory"). A governor thread reads
//! the process's resident memory every second and, when it nears the
//! ceiling, gives the allocator's free memory back and then lowers the page
//! cache by the excess (never below `FLOOR`), raising it again in steps
//! while there is room, up to the size the mount asked for. The store opens
//! with a smaller cache (`initial`) and grows it the same way: memory a full
//! cache has fragmented comes back to the kernel slowly, so starting low
//! keeps a large vault's mount from overshooting the ceiling while its
//! cache first fills.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The smallest page cache the governor sets: below it sled re-reads the
/// tree's inner nodes on every lookup.
pub const FLOOR: u64 = 8 << 20;
/// How often the governor looks.
const TICK: Duration = Duration::from_secs(1);
/// A lowered cache shrinks as its pages are next used: wait this long for
/// that to show in the resident size before lowering it again.
const SETTLE: Duration = Duration::from_secs(3);
/// Raise the cache by a quarter of the room left, and at least this much.
const STEP: u64 = 8 << 20;

/// The rule, apart from the thread: what the cache should be, given the
/// resident size now.
#[derive(Debug)]
pub struct Governor {
    ceiling: u64,
    /// The cache the mount asked for (`-o cache=MIB`): never raised past it.
    most: u64,
    cache: u64,
    last_lowered: Option<Instant>,
}

/// What one look decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to change.
    Keep,
    /// Set the page cache to this many bytes.
    Cache(u64),
    /// Over the ceiling with the cache at its floor: what is left grows
    /// with the vault (the page table) or is in use (the overlay).
    OverAtFloor,
}

/// The cache a store opens with, for a mount asking for `cache` under
/// `ceiling`: an eighth of the ceiling at most (the governor raises it).
pub fn initial(ceiling: u64, cache: u64) -> u64 {
    cache.min(ceiling / 8).max(FLOOR)
}

impl Governor {
    /// `cache`: what the mount asked for; `now`: what the store opened with.
    pub fn new(ceiling: u64, cache: u64, now: u64) -> Governor {
        Governor { ceiling, most: cache, cache: now, last_lowered: None }
    }

    /// Aim below the ceiling by an eighth: headroom for a burst between looks.
    fn target(&self) -> u64 {
        self.ceiling - self.ceiling / 8
    }

    /// True if `resident` is past the target (the caller then trims the
    /// allocator and measures again before `look`).
    pub fn is_high(&self, resident: u64) -> bool {
        resident > self.target()
    }

    pub fn look(&mut self, resident: u64, now: Instant) -> Step {
        let target = self.target();
        if resident > target {
            if self.cache <= FLOOR {
                return if resident > self.ceiling { Step::OverAtFloor } else { Step::Keep };
            }
            if self.last_lowered.is_some_and(|t| now.duration_since(t) < SETTLE) {
                return Step::Keep;
            }
            self.cache = self.cache.saturating_sub(resident - target).max(FLOOR);
            self.last_lowered = Some(now);
            return Step::Cache(self.cache);
        }
        // Raise only with a step and a half of room, so one step up does
        // not cross the target at once.
        if self.cache < self.most && resident + STEP + STEP / 2 < target {
            let room = target - resident;
            self.cache = (self.cache + (room / 4).max(STEP)).min(self.most);
            return Step::Cache(self.cache);
        }
        Step::Keep
    }
}

/// The running governor; stops when dropped.
pub struct MemoryGovernor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MemoryGovernor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the governor of a store whose page cache was opened at
/// `initial(ceiling, cache)` bytes, holding the process under `ceiling`
/// bytes with at most `cache`; `set_cache` sets the cache
/// (`Store::set_cache_capacity`).
pub fn govern(
    ceiling: u64,
    cache: u64,
    set_cache: impl Fn(u64) + Send + 'static,
) -> std::io::Result<MemoryGovernor> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("vaultfs-memory".into()).spawn(move || {
        let mut g = Governor::new(ceiling, cache, initial(ceiling, cache));
        let mut warned = false;
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let Some(mut resident) = crate::sys::resident_bytes() else { return };
            if g.is_high(resident) {
                crate::sys::release_free_memory();
                resident = crate::sys::resident_bytes().unwrap_or(resident);
            }
            match g.look(resident, Instant::now()) {
                Step::Keep => {}
                Step::Cache(bytes) => {
                    tracing::debug!("resident {} MiB: page cache now {} MiB", resident >> 20, bytes >> 20);
                    set_cache(bytes);
                }
                Step::OverAtFloor if !warned => {
                    warned = true;
                    tracing::warn!(
                        "the daemon holds {} MiB, over its {} MiB ceiling (-o memory) with the store's \
                         page cache at its {} MiB floor: the rest grows with the vault's size \
                         (docs/PERFORMANCE.md, \"Memory\"); raise -o memory",
                        resident >> 20,
                        ceiling >> 20,
                        FLOOR >> 20
                    );
                }
                Step::OverAtFloor => {}
            }
        }
    })?;
    Ok(MemoryGovernor { stop, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn under_the_target_nothing_changes() {
        let mut g = Governor::new(256 * MIB, 128 * MIB, 128 * MIB);
        assert_eq!(g.look(200 * MIB, Instant::now()), Step::Keep);
        assert!(!g.is_high(224 * MIB));
        assert!(g.is_high(225 * MIB));
    }

    #[test]
    fn over_the_target_the_cache_drops_by_the_excess_then_waits() {
        let mut g = Governor::new(256 * MIB, 128 * MIB, 128 * MIB);
        let t = Instant::now();
        // Target 224 MiB: 250 is 26 over.
        assert_eq!(g.look(250 * MIB, t), Step::Cache(102 * MIB));
        // The resident size has not followed yet: no second cut so soon.
        assert_eq!(g.look(250 * MIB, t + Duration::from_secs(1)), Step::Keep);
        assert_eq!(g.look(240 * MIB, t + SETTLE), Step::Cache(86 * MIB));
    }

    #[test]
    fn the_cache_never_goes_below_its_floor_and_says_so_past_the_ceiling() {
        let mut g = Governor::new(64 * MIB, 32 * MIB, 32 * MIB);
        let t = Instant::now();
        assert_eq!(g.look(200 * MIB, t), Step::Cache(FLOOR));
        assert_eq!(g.look(60 * MIB, t + SETTLE), Step::Keep);
        assert_eq!(g.look(70 * MIB, t + SETTLE * 2), Step::OverAtFloor);
    }

    #[test]
    fn with_room_again_the_cache_grows_back_in_steps_up_to_what_was_asked() {
        let mut g = Governor::new(256 * MIB, 128 * MIB, 128 * MIB);
        let t = Instant::now();
        assert_eq!(g.look(300 * MIB, t), Step::Cache(52 * MIB));
        // A quarter of the room below the 224 MiB target, or one step.
        let after = 52 * MIB + (224 - 150) * MIB / 4;
        assert_eq!(g.look(150 * MIB, t + SETTLE), Step::Cache(after));
        assert_eq!(g.look(210 * MIB, t + SETTLE), Step::Cache(after + STEP));
        // Not a step and a half below the target.
        assert_eq!(g.look(212 * MIB, t + SETTLE), Step::Keep);
        let mut last = Step::Keep;
        for _ in 0..20 {
            last = match g.look(100 * MIB, t + SETTLE) {
                Step::Keep => break,
                s => s,
            };
        }
        assert_eq!(last, Step::Cache(128 * MIB));
    }

    #[test]
    fn a_store_opens_with_a_smaller_cache_and_grows_it() {
        assert_eq!(initial(256 * MIB, 128 * MIB), 32 * MIB);
        assert_eq!(initial(1024 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(initial(32 * MIB, 16 * MIB), FLOOR);
        let mut g = Governor::new(256 * MIB, 128 * MIB, initial(256 * MIB, 128 * MIB));
        // A fresh mount of a small vault: 20 MiB resident, 204 MiB of room.
        assert_eq!(g.look(20 * MIB, Instant::now()), Step::Cache(32 * MIB + 51 * MIB));
        assert_eq!(g.look(20 * MIB, Instant::now()), Step::Cache(128 * MIB));
    }
}
