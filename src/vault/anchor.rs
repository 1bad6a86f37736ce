//! The rollback anchor (docs/ADMIN.md, "Rollback anchor"): the newest
//! signed audit checkpoint, kept outside the store in a witness file at a
//! path the admin chooses (a second disk, a network share). Every record
//! the vault ever wrote is under some checkpoint, so a store whose audit log
//! does not contain the witness's tree is older than the vault last seen (a
//! restored copy of the store directory, authentic but stale) and is not
//! mounted. The witness only ever names a checkpoint already durable in the
//! store, so a crash never makes a genuine store look rolled back.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::{Error, ErrorKind, Result, err};
use super::{Unlocked, Vault};
use crate::audit::checkpoint::{Checkpoint, vault_origin};
use crate::audit::log::Log;
use crate::crypto::VerifyingKey;
use crate::format::Header;
use crate::store::Store;

/// How often a mounted vault moves its witness forward (and at unmount):
/// the most a rollback to a copy taken meanwhile can go unnoticed.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(5);

/// A witness note is one checkpoint: a few hundred bytes.
const MAX_NOTE: u64 = 16 * 1024;

/// A witness file: the newest checkpoint note, as `vaultfs audit checkpoint`
/// prints it (so `vaultfs audit verify STORE --since FILE` reads it too).
#[derive(Clone, Debug)]
pub struct Witness {
    path: PathBuf,
}

impl Witness {
    pub fn new(path: &Path) -> Witness {
        Witness { path: path.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The note it holds; `None` when the file does not exist (first use).
    pub fn read(&self) -> Result<Option<String>> {
        let failed = |e: std::io::Error| {
            err(ErrorKind::Io, format!("cannot read the witness file {}: {e}", self.path.display()))
        };
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
            Ok(m) if !m.is_file() || m.len() > MAX_NOTE => {
                return Err(err(
                    ErrorKind::Corrupt,
                    format!("the witness file {} is not a checkpoint note", self.path.display()),
                ));
            }
            Ok(_) => {}
        }
        let bytes = std::fs::read(&self.path).map_err(failed)?;
        String::from_utf8(bytes).map(Some).map_err(|_| {
            err(
                ErrorKind::Corrupt,
                format!("the witness file {} is not a checkpoint note", self.path.display()),
            )
        })
    }

    /// Replaces the note, atomically and durably: a crash leaves the old
    /// note or the new one.
    pub fn write(&self, note: &str) -> Result<()> {
        let failed = |what: &str, e: std::io::Error| {
            err(ErrorKind::Io, format!("cannot {what} the witness file {}: {e}", self.path.display()))
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().ok_or_else(|| {
            err(ErrorKind::InvalidArgument, format!("the witness {} is not a file name", self.path.display()))
        })?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        // Owner only: a checkpoint tells how many accesses the vault has seen.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed("write", e))?;
        f.write_all(note.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| failed("write", e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| failed("replace", e))?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| failed("sync the directory of", e))
    }
}

/// Checks that the log of `store` still holds exactly the tree `note`
/// signed; `source` names where the note came from, for the messages. The
/// tree size on success. A note that is not this vault's authentic
/// checkpoint is `Corrupt`; a log without its tree is `RolledBack`.
pub(super) fn check(log: &Log, store: &Store, header: &Header, note: &str, source: &str) -> Result<u64> {
    let key = VerifyingKey(header.audit_public);
    let cp = Checkpoint::parse_and_verify(note, Some(&vault_origin(&header.vault_id)), &key).map_err(|e| {
        err(
            ErrorKind::Corrupt,
            format!(
                "{source} is not a checkpoint of this vault signed by its audit key ({e}): forged, damaged, \
                 or another vault's"
            ),
        )
    })?;
    let size = log.size();
    if cp.size > size {
        return Err(err(
            ErrorKind::RolledBack,
            format!(
                "the store's audit log has {size} records but {source} holds a checkpoint of {}: the store was \
                 rolled back, it is older than the vault last seen (a copy put back?)",
                cp.size
            ),
        ));
    }
    if log.root(store, cp.size).map_err(Error::from)? != cp.root {
        return Err(err(
            ErrorKind::RolledBack,
            format!(
                "the first {} records of the store's audit log are not the ones {source} signed: the log was \
                 rewritten or the store replaced",
                cp.size
            ),
        ));
    }
    Ok(cp.size)
}

impl Vault<Unlocked> {
    /// Checks the log against a checkpoint note kept elsewhere (see [`check`]).
    pub fn check_anchor(&self, note: &str, source: &str) -> Result<u64> {
        let core = self.core();
        check(&core.audit, &core.store, &core.header(), note, source)
    }

    /// The newest checkpoint note, signed now if the log grew, and durable
    /// in the store before this returns (so it may go into a witness).
    pub fn durable_checkpoint(&self) -> Result<Option<String>> {
        let note = self.audit_checkpoint()?;
        self.sync()?;
        Ok(note)
    }

    /// Moves `witness` forward every [`ANCHOR_EVERY`] while the returned
    /// guard lives, and once more when it is dropped (after the unmount's
    /// last record). Writes the current checkpoint at once.
    pub fn start_anchoring(&self, witness: Witness) -> Result<Anchoring> {
        let mut last = self.durable_checkpoint()?;
        if let Some(note) = &last {
            witness.write(note)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (vault, flag, w) = (self.clone(), stop.clone(), witness.clone());
        let thread = std::thread::Builder::new()
            .name("vaultfs-anchor".into())
            .spawn(move || {
                let mut since = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    // Not while a backup snapshot holds the store.
                    if since.elapsed() < ANCHOR_EVERY || vault.core().store.is_frozen() {
                        continue;
                    }
                    since = Instant::now();
                    advance(&vault, &w, &mut last);
                }
            })
            .map_err(|e| err(ErrorKind::Io, format!("cannot start the anchor thread: {e}")))?;
        Ok(Anchoring { vault: self.clone(), witness, stop, thread: Some(thread) })
    }
}

/// Writes the newest durable checkpoint into `w` if it changed.
fn advance(vault: &Vault<Unlocked>, w: &Witness, last: &mut Option<String>) {
    match vault.durable_checkpoint() {
        Ok(Some(note)) if last.as_ref() != Some(&note) => match w.write(&note) {
            Ok(()) => *last = Some(note),
            Err(e) => tracing::error!("rollback anchor: {e}"),
        },
        Ok(_) => {}
        Err(e) => tracing::error!("rollback anchor: the checkpoint for {} failed: {e}", w.path().display()),
    }
}

/// A mounted vault's witness keeper; dropping it writes the last checkpoint.
pub struct Anchoring {
    vault: Vault<Unlocked>,
    witness: Witness,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Anchoring {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        advance(&self.vault, &self.witness, &mut None);
    }
}
