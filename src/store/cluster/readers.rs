//! Whether any read-only mount is there to serve, as the holder knows it
//! (docs/CLUSTER.md, "Locks across hosts"). While none is, the holder
//! publishes no file locks and commits at no close: a lock costs it no
//! etcd round trip, as on a store directory. It learns of readers from a
//! watch of their `readers/HOST` keys; once it has seen one, it publishes
//! every lock it holds, then writes `readers-seen`, the revision up to
//! which it has seen every reader. A reader serves nothing until that
//! revision reaches its own key's, so no reader ever takes a lock the
//! holder holds unpublished, or opens a file behind a close that did not
//! commit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::etcd::{Etcd, News, Op};
use super::{Error, LEASE_SECONDS, Result, Shared, prefix_end};

/// How long a reader waits at mount for the holder to say it saw it.
const SEEN_WITHIN: Duration = Duration::from_secs(10);
/// How soon the holder tries again after a failure to publish or answer.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// Files whose locks one transaction publishes (two operations each: below
/// etcd's default limit of 128, which `-o sync` mounts may run with).
const FILES_PER_TXN: usize = 60;

/// What the holder publishes for other hosts, and what it keeps to itself
/// while no reader is mounted.
pub(super) struct Ledger {
    /// Whether a reader may be mounted: locks are published and closes
    /// commit. True until the holder's first look says otherwise.
    pub(super) readers: bool,
    /// This process's locks as published or to publish: the sealed value
    /// per file while it holds any there.
    held: HashMap<u64, Vec<u8>>,
    /// Files whose lock key in etcd may hold a value of this process's.
    published: HashSet<u64>,
    /// Whether what etcd holds of this process's locks may be behind
    /// `held` (a switch to publishing that failed).
    behind: bool,
    /// The greatest revision written to `readers-seen`.
    seen: i64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger { readers: true, held: HashMap::new(), published: HashSet::new(), behind: false, seen: 0 }
    }
}

impl Ledger {
    /// Notes `value` (None: nothing) as this process's locks on `ino`;
    /// `sent`: etcd has it now.
    pub(super) fn note(&mut self, ino: u64, value: Option<&Vec<u8>>, sent: bool) {
        match value {
            Some(v) => {
                self.held.insert(ino, v.clone());
                if sent {
                    self.published.insert(ino);
                }
            }
            None => {
                self.held.remove(&ino);
                if sent {
                    self.published.remove(&ino);
                }
            }
        }
    }
}

impl Shared {
    pub(super) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen_key(&self) -> Vec<u8> {
        self.meta_key("readers-seen")
    }

    /// On the holder: watches the readers' keys for as long as `shared`
    /// lives, keeping `Ledger::readers` right and answering each new reader.
    pub(super) fn watch_readers(shared: &Arc<Shared>) {
        let (tell, told) = std::sync::mpsc::channel();
        let watch = shared.etcd.watch(shared.meta_key("readers/"), move |news| {
            // Lost: nothing to do until the next `From`; a reader mounting
            // meanwhile waits for its answer.
            if !matches!(news, News::Lost) {
                let _ = tell.send(());
            }
        });
        let weak = Arc::downgrade(shared);
        let spawned = std::thread::Builder::new().name("vaultfs-readers".into()).spawn(move || settle_on(weak, told));
        match spawned {
            Ok(_) => {
                let _ = shared.readers_watch.set(watch);
            }
            // Publishing stays on: locks cost round trips, nothing is wrong.
            Err(e) => tracing::warn!("no thread to watch for read-only mounts in: {e}"),
        }
    }

    /// Looks at the readers' keys once: none, and locks stay here; some,
    /// and every lock is published, then `readers-seen` written.
    fn settle(&self) -> Result<()> {
        let from = self.meta_key("readers/");
        let page = self.etcd.range(&from, &prefix_end(&from).unwrap_or_default(), 1, 0, false, true)?;
        let mut ledger = self.ledger();
        if page.kvs.is_empty() {
            ledger.readers = false;
            return Ok(());
        }
        if !ledger.readers || ledger.behind {
            ledger.readers = true;
            ledger.behind = true;
            self.publish_all(&mut ledger)?;
            ledger.behind = false;
        }
        if page.revision > ledger.seen {
            let op = Op::PutLeased(self.seen_key(), page.revision.to_string().into_bytes(), self.lease);
            self.write(vec![op])?;
            ledger.seen = page.revision;
        }
        Ok(())
    }

    /// Makes etcd hold exactly `held` of this process's locks: each file's
    /// value put (its `seq` moved, as by any publication that takes more),
    /// or deleted where nothing is held any more.
    fn publish_all(&self, ledger: &mut Ledger) -> Result<()> {
        let files: BTreeSet<u64> = ledger.held.keys().chain(ledger.published.iter()).copied().collect();
        let files: Vec<u64> = files.into_iter().collect();
        for chunk in files.chunks(FILES_PER_TXN) {
            let mut ops = Vec::with_capacity(chunk.len() * 2);
            for ino in chunk {
                match ledger.held.get(ino) {
                    Some(v) => {
                        ops.push(Op::PutLeased(self.locks_mine(*ino), v.clone(), self.lease));
                        ops.push(Op::PutLeased(self.locks_seq(*ino), Vec::new(), self.lease));
                    }
                    None => ops.push(Op::Delete(self.locks_mine(*ino))),
                }
            }
            self.write(ops)?;
            for ino in chunk {
                if ledger.held.contains_key(ino) {
                    ledger.published.insert(*ino);
                } else {
                    ledger.published.remove(ino);
                }
            }
        }
        Ok(())
    }
}

/// The holder's thread: settles at every change of the readers' keys, and
/// again soon after one that failed, until the store is gone.
fn settle_on(shared: Weak<Shared>, told: Receiver<()>) {
    let mut failed = false;
    loop {
        let wait = if failed { RETRY_AFTER } else { Duration::from_secs(3600) };
        match told.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while told.try_recv().is_ok() {}
        let Some(shared) = shared.upgrade() else { return };
        if shared.hold_lost() {
            return;
        }
        failed = match shared.settle() {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!("answering read-only mounts: {e}; trying again");
                true
            }
        };
    }
}

/// On a reader that just took its key (created at revision `registered`):
/// waits until the holder says it saw it (or there is no holder: the next
/// one looks before it serves).
pub(super) fn wait_until_seen(etcd: &Etcd, prefix: &[u8], registered: i64) -> Result<()> {
    let key = |k: &str| [prefix, k.as_bytes()].concat();
    let started = Instant::now();
    loop {
        let Some(holder) = etcd.get(&key("holder"))? else { return Ok(()) };
        if super::handover::shares(&holder.value) {
            // It publishes its locks and commits at every close anyway.
            return Ok(());
        }
        let seen = etcd.get(&key("readers-seen"))?;
        let seen = seen.and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<i64>().ok()).unwrap_or(0);
        if seen >= registered {
            return Ok(());
        }
        if started.elapsed() >= SEEN_WITHIN {
            return Err(Error::Unusable(format!(
                "the vault's holder ({}) did not confirm within {} s that it saw this read-only mount \
                 (its log says why; a holder cut off from etcd lets go within {LEASE_SECONDS} s; \
                 one of an older vaultfs never confirms)",
                String::from_utf8_lossy(&holder.value),
                SEEN_WITHIN.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
