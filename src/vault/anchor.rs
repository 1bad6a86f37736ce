//! The rollback anchors (docs/ADMIN.md, "Rollback anchor"): the newest
//! signed audit checkpoint, kept outside the store, in a witness file at a
//! path the admin chooses (a second disk, a network share) and, for a vault
//! with a TPM factor, in the TPM's NV memory. Every record the vault ever
//! wrote is under some checkpoint, so a store whose audit log does not
//! contain an anchor's tree is older than the vault last seen (a restored
//! copy of the store directory, authentic but stale) and is not mounted.
//! An anchor only ever names a checkpoint already durable in the store, so
//! a crash never makes a genuine store look rolled back.

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
use crate::audit::merkle::Hash;
use crate::crypto::{Key32, VerifyingKey};
use crate::format::{Factor, Header, SLOT_KIND_FACTORS, labels};
use crate::gate::tpm::{self, NvAnchor, TpmConfig};
use crate::store::Store;

/// How often a mounted vault moves its witness forward (and at unmount):
/// the most a rollback to a copy taken meanwhile can go unnoticed.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(5);

/// How often the TPM anchor moves forward while mounted (and at mount and
/// unmount): TPM NV memory wears and TPMs throttle frequent NV writes.
pub const TPM_ANCHOR_EVERY: Duration = Duration::from_secs(600);

/// The rollback anchors an unlock checks (all optional).
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// A witness note, and where it came from (for messages).
    pub witness: Option<(String, String)>,
    /// The TPM holding the NV anchor, used when the vault has a TPM factor.
    pub tpm: Option<TpmConfig>,
    /// Accept a store older than its anchors (`-o reanchor`): recorded in
    /// the audit log, and the anchors move to this store.
    pub reanchor: bool,
}

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
    contains(log, store, cp.size, &cp.root, source)?;
    Ok(cp.size)
}

/// Whether `h` has a TPM factor slot (the vault's TPM is then known).
pub(super) fn has_tpm_factor(h: &Header) -> bool {
    h.slots.iter().filter(|s| s.kind == SLOT_KIND_FACTORS).any(|s| {
        crate::format::decode_factors(&s.params).is_ok_and(|f| f.iter().any(|f| matches!(f, Factor::Tpm(_))))
    })
}

/// The vault's anchor in TPM NV memory: its index, and the authorization
/// value only the master key yields. Its 56 bytes: vault id ‖ tree size
/// (u64, big-endian) ‖ root.
pub(super) struct TpmAnchor {
    cfg: TpmConfig,
    index: u32,
    auth: Key32,
    vault_id: [u8; 16],
}

impl TpmAnchor {
    pub(super) fn new(cfg: TpmConfig, master: &Key32, vault_id: [u8; 16]) -> TpmAnchor {
        let auth = crate::crypto::hkdf(master.as_bytes(), &vault_id, labels::TPM_ANCHOR);
        TpmAnchor { cfg, index: tpm::anchor_index(&vault_id), auth, vault_id }
    }

    fn name(&self) -> String {
        format!("the TPM anchor (NV index {:#010x} at {})", self.index, self.cfg.tcti)
    }

    /// What the TPM holds: `None` when no anchor was written yet.
    fn read(&self) -> Result<Option<(u64, Hash)>> {
        let failed = |e: tpm::Error| {
            err(
                ErrorKind::FactorFailed,
                format!(
                    "{} cannot be checked: {e}; `-o no_tpm_anchor` mounts without it (the rollback check \
                     is then skipped)",
                    self.name()
                ),
            )
        };
        match tpm::read_anchor(&self.cfg, self.index, &self.auth).map_err(failed)? {
            NvAnchor::Missing => Ok(None),
            NvAnchor::Foreign(why) => Err(err(
                ErrorKind::Corrupt,
                format!("{} is not this vault's: {why} (replaced?)", self.name()),
            )),
            NvAnchor::Found(b) if b.len() == tpm::ANCHOR_SIZE as usize && b[..16] == self.vault_id => {
                let (mut size, mut root) = ([0u8; 8], [0u8; 32]);
                size.copy_from_slice(&b[16..24]);
                root.copy_from_slice(&b[24..56]);
                Ok(Some((u64::from_be_bytes(size), root)))
            }
            NvAnchor::Found(_) => {
                Err(err(ErrorKind::Corrupt, format!("{} names another vault", self.name())))
            }
        }
    }

    /// Moves the anchor to `cp` (a checkpoint durable in the store).
    pub(super) fn write(&self, cp: &Checkpoint) -> Result<()> {
        let mut data = self.vault_id.to_vec();
        data.extend_from_slice(&cp.size.to_be_bytes());
        data.extend_from_slice(&cp.root);
        tpm::write_anchor(&self.cfg, self.index, &self.auth, data)
            .map_err(|e| err(ErrorKind::FactorFailed, format!("{}: {e}", self.name())))
    }
}

/// Checks `log` against every anchor in `anchors` before anything is
/// written (the witness, then the TPM's when the vault has a TPM factor and
/// `master` is given). Returns the TPM anchor to keep, and what `reanchor`
/// accepted (an error's message), if anything.
pub(super) fn check_all(
    anchors: &Anchors,
    log: &Log,
    store: &Store,
    header: &Header,
    master: &Key32,
) -> Result<(Option<TpmAnchor>, Option<String>)> {
    let mut accepted = None;
    let mut judge = |r: Result<u64>| match r {
        Err(e) if e.kind() == ErrorKind::RolledBack && anchors.reanchor => {
            accepted = Some(e.message);
            Ok(())
        }
        r => r.map(drop),
    };
    if let Some((note, source)) = &anchors.witness {
        judge(check(log, store, header, note, source))?;
    }
    let tpm = match &anchors.tpm {
        Some(cfg) if has_tpm_factor(header) => Some(TpmAnchor::new(cfg.clone(), master, header.vault_id)),
        _ => None,
    };
    let established = header.features & crate::format::FEATURE_TPM_ANCHOR != 0;
    if let Some(t) = &tpm {
        let read = match t.read() {
            // Not anchored there yet: a TPM that does not answer now only
            // postpones the anchor (the level-4 factor fails the same way).
            Err(e) if !established && e.kind() == ErrorKind::FactorFailed => {
                tracing::warn!("{e}; the vault is not anchored in the TPM until a mount reaches it");
                return Ok((None, accepted));
            }
            r => r?,
        };
        match read {
            Some((size, root)) => judge(contains(log, store, size, &root, &t.name()))?,
            None if established => judge(Err(err(
                ErrorKind::RolledBack,
                format!(
                    "{} is gone, but this vault was anchored there: it was removed, the TPM was cleared, or \
                     this is another machine's TPM",
                    t.name()
                ),
            )))?,
            None => {}
        }
    }
    Ok((tpm, accepted))
}

/// Writes the first TPM anchor of a vault not yet anchored there (the
/// newest checkpoint, made durable first), then marks the header
/// (`FEATURE_TPM_ANCHOR`, recorded) so that an anchor that disappears later
/// is noticed. In that order: a crash between leaves an anchor and an
/// unmarked header, which the next mount simply checks.
pub(super) fn establish(
    t: &TpmAnchor,
    store: &Store,
    log: &Log,
    master: &Key32,
    header: Header,
) -> Result<Header> {
    use crate::format::{FEATURE_TPM_ANCHOR, keys};
    if header.features & FEATURE_TPM_ANCHOR != 0 {
        return Ok(header);
    }
    let Some(note) = log.checkpoint(store, false).map_err(Error::from)? else { return Ok(header) };
    store.flush().map_err(Error::from)?;
    let cp = Checkpoint::parse_and_verify(&note, None, &log.public_key())
        .map_err(|e| err(ErrorKind::Corrupt, format!("the checkpoint just signed: {e}")))?;
    t.write(&cp)?;
    let header = super::keyring::with_features(master, &header, FEATURE_TPM_ANCHOR);
    let mut batch = crate::store::Batch::default();
    batch.put(keys::HEADER, header.encode());
    let what = format!("anchor: rollback anchor in {}", t.name()).into_bytes();
    let record = super::Record::offline(super::AuditOp::Header, b"vaultfs", None, super::ROOT_INO, what, 0);
    log.append_with(store, record.leaf(0), batch).map_err(Error::from)?;
    store.flush().map_err(Error::from)?;
    Ok(header)
}

/// Whether the log holds exactly the tree of `size` leaves with `root`.
fn contains(log: &Log, store: &Store, size: u64, root: &Hash, source: &str) -> Result<u64> {
    let have = log.size();
    if size > have {
        return Err(err(
            ErrorKind::RolledBack,
            format!(
                "the store's audit log has {have} records but {source} holds a checkpoint of {size}: the store \
                 was rolled back, it is older than the vault last seen (a copy put back?)"
            ),
        ));
    }
    // Records before the archive base are in archive files: an anchor from
    // before it is checked by size alone (a store put back from before the
    // anchor holds fewer records); `vaultfs audit verify --archive` checks
    // its root against the archives.
    if size < log.base_size() {
        tracing::info!(
            "{source} signs {size} records, before the audit archive base {}: checked by size only",
            log.base_size()
        );
        return Ok(size);
    }
    if log.root(store, size).map_err(Error::from)? != *root {
        return Err(err(
            ErrorKind::RolledBack,
            format!(
                "the first {size} records of the store's audit log are not the ones {source} signed: the log \
                 was rewritten or the store replaced"
            ),
        ));
    }
    Ok(size)
}

impl Vault<Unlocked> {
    /// Checks the log against a checkpoint note kept elsewhere (see [`check`]).
    pub fn check_anchor(&self, note: &str, source: &str) -> Result<u64> {
        let core = self.core();
        check(&core.audit, &core.store, &core.header(), note, source)
    }

    /// Whether this mount keeps a rollback anchor in the TPM.
    pub fn tpm_anchored(&self) -> bool {
        self.core().tpm_anchor.is_some()
    }

    /// Moves the anchors forward while the returned guard lives (the
    /// witness every [`ANCHOR_EVERY`], the TPM's every
    /// [`TPM_ANCHOR_EVERY`]), at once, and once more when it is dropped
    /// (after the unmount's last record). `None` when there is no anchor.
    pub fn start_anchoring(&self, witness: Option<Witness>) -> Result<Option<Anchoring>> {
        if witness.is_none() && !self.tpm_anchored() {
            return Ok(None);
        }
        let mut kept = Kept::default();
        advance(self, witness.as_ref(), &mut kept, true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (vault, flag, w) = (self.clone(), stop.clone(), witness.clone());
        let thread = std::thread::Builder::new()
            .name("vaultfs-anchor".into())
            .spawn(move || {
                let (mut since, mut tpm_since) = (Instant::now(), Instant::now());
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    // Not while a backup snapshot holds the store.
                    if since.elapsed() < ANCHOR_EVERY || vault.core().store.is_frozen() {
                        continue;
                    }
                    since = Instant::now();
                    let tpm_due = tpm_since.elapsed() >= TPM_ANCHOR_EVERY;
                    if tpm_due {
                        tpm_since = Instant::now();
                    }
                    if let Err(e) = advance(&vault, w.as_ref(), &mut kept, tpm_due) {
                        tracing::error!("rollback anchor: {e}");
                    }
                }
            })
            .map_err(|e| err(ErrorKind::Io, format!("cannot start the anchor thread: {e}")))?;
        Ok(Some(Anchoring { vault: self.clone(), witness, stop, thread: Some(thread) }))
    }
}

/// The notes last written to each anchor, and the log's size then.
#[derive(Default)]
struct Kept {
    witness: Option<String>,
    tpm: Option<String>,
    size: Option<u64>,
}

/// Writes the newest durable checkpoint into the witness, and into the TPM
/// when `tpm_due`, where it changed. Nothing is signed or flushed while the
/// log has not grown since the last look.
fn advance(vault: &Vault<Unlocked>, w: Option<&Witness>, kept: &mut Kept, tpm_due: bool) -> Result<()> {
    let size = vault.audit_size();
    let tpm_behind = tpm_due && vault.core().tpm_anchor.is_some() && kept.tpm != kept.witness;
    if kept.size == Some(size) && !tpm_behind {
        return Ok(());
    }
    let Some(note) = vault.durable_checkpoint()? else { return Ok(()) };
    kept.size = Some(size);
    if let Some(w) = w
        && kept.witness.as_ref() != Some(&note)
    {
        w.write(&note)?;
        kept.witness = Some(note.clone());
    }
    if let Some(t) = &vault.core().tpm_anchor
        && tpm_due
        && kept.tpm.as_ref() != Some(&note)
    {
        let cp = Checkpoint::parse_and_verify(&note, None, &vault.audit_key().verifying_key())
            .map_err(|e| err(ErrorKind::Corrupt, format!("the checkpoint just signed: {e}")))?;
        t.write(&cp)?;
        kept.tpm = Some(note);
    }
    Ok(())
}

/// A mounted vault's anchor keeper; dropping it writes the last checkpoint
/// to every anchor.
pub struct Anchoring {
    vault: Vault<Unlocked>,
    witness: Option<Witness>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Anchoring {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = advance(&self.vault, self.witness.as_ref(), &mut Kept::default(), true) {
            tracing::error!("rollback anchor at unmount: {e}");
        }
    }
}
