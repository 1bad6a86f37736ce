//! Archiving the audit log's oldest records (docs/AUDIT.md, "Archives";
//! ADMIN.md "Audit archives"): the file first, durable, then the store.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::HashingWriter;
use crate::vault::{AuditOp, Error, ErrorKind, Record, Result, Unlocked, Vault, err};

/// Where to cut: before a leaf index, or before the first record stamped
/// at or after a time (nanoseconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Index(u64),
    Time(u64),
}

/// An archive written and removed from the store.
#[derive(Clone, Debug)]
pub struct ArchiveMade {
    pub first: u64,
    pub end: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub blake3: [u8; 32],
}

/// The inode `.audit` has; an `archive` record names it.
const AUDIT_INO: u64 = 8;

impl Vault<Unlocked> {
    /// Writes the stored records before `cut` to a new archive file `out`
    /// (refusing to replace one), makes it durable, then removes those
    /// records from the store with an `archive` record that names the file
    /// and its BLAKE3. None if nothing lies before the cut.
    pub fn audit_archive(&self, cut: Cut, out: &Path) -> Result<Option<ArchiveMade>> {
        let core = self.core();
        let (log, store) = (&core.audit, &core.store);
        let cut = match cut {
            Cut::Index(i) => i.min(log.size()),
            Cut::Time(t) => log.first_at_or_after(store, t)?,
        };
        if cut <= log.base_size() {
            return Ok(None);
        }
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.contains(['\n', '\0']) && n.len() <= 255)
            .ok_or_else(|| {
                err(ErrorKind::InvalidArgument, format!("{}: not a usable file name", out.display()))
            })?
            .to_string();
        let tmp = out.with_file_name(format!(".{name}.partial"));
        let io = |what: &str, e: std::io::Error| err(ErrorKind::Io, format!("{what} {}: {e}", out.display()));
        if out.exists() {
            return Err(err(
                ErrorKind::Exists,
                format!("{} exists: an archive is never replaced", out.display()),
            ));
        }
        // The records are in clear in the file, as in `.audit`: owner only.
        // A partial file left by a crash is ours to replace, never followed.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("cannot remove a partial", e));
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("cannot create", e))?;
        let written = (|| {
            let mut w = HashingWriter::new(BufWriter::new(file));
            let written = log.write_archive(store, cut, &mut w)?;
            w.flush().map_err(|e| io("cannot write", e))?;
            let (digest, bytes) = (w.digest(), w.written());
            let file = w.into_inner().into_inner().map_err(|e| io("cannot write", e.into_error()))?;
            file.sync_all().map_err(|e| io("cannot sync", e))?;
            Ok::<_, Error>((written, digest, bytes))
        })();
        let (written, blake3, bytes) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, out).map_err(|e| io("cannot rename the archive to", e))?;
        sync_dir(out).map_err(|e| io("cannot sync the directory of", e))?;
        let mut rec = Record::offline(
            AuditOp::Archive,
            b"vaultfs",
            None,
            AUDIT_INO,
            crate::audit::archive::record_path(&name, &blake3),
            written.end - written.first,
        );
        rec.offset = written.first;
        if let Err(e) = log.prune(store, &written, &name, blake3, rec.leaf(0)) {
            // The store keeps the records: the file would only confuse.
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
        store.flush()?;
        tracing::info!("archived audit records {}..{} to {}", written.first, written.end, out.display());
        Ok(Some(ArchiveMade {
            first: written.first,
            end: written.end,
            path: out.to_path_buf(),
            bytes,
            blake3,
        }))
    }

    /// Archives what the policy's `[audit]` says is due: records older than
    /// `keep` once the oldest is older than `keep` and an eighth, the oldest
    /// records once the stored ones take more than `keep_bytes` and an
    /// eighth (so each archive holds a worthwhile share). The file goes to
    /// `archive_dir`, which must be the daemon's or root's and writable by
    /// no one else. None when nothing is due.
    pub fn archive_by_policy(&self) -> Result<Option<ArchiveMade>> {
        let rule = self.policy().audit_archive.clone();
        let Some(dir) = rule.dir else { return Ok(None) };
        let core = self.core();
        let (log, store) = (&core.audit, &core.store);
        let base = log.base_size();
        let mut cut = base;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        if let Some(keep) = rule.keep {
            let keep = keep.as_nanos() as u64;
            if log.oldest_time(store)?.is_some_and(|t| t.saturating_add(keep + keep / 8) <= now) {
                cut = cut.max(log.first_at_or_after(store, now.saturating_sub(keep))?);
            }
        }
        if let Some(limit) = rule.keep_bytes {
            let chunks = log.chunk_sizes(store)?;
            let mut total: u64 = chunks.iter().map(|c| c.1).sum();
            if total > limit + limit / 8 {
                for (end, bytes) in chunks {
                    if total <= limit {
                        break;
                    }
                    total -= bytes;
                    cut = cut.max(end);
                }
            }
        }
        // The newest records stay: the archive must end before the record of
        // the one before it can be outside it.
        if cut <= base {
            return Ok(None);
        }
        check_archive_dir(&dir)?;
        let id = crate::format::hex(&self.header().vault_id[..4]);
        // A file of that name left by a crash after it was written, before
        // the store changed: archives are never replaced, take the next name.
        let out = (1..)
            .map(|n| match n {
                1 => dir.join(format!("{id}-audit-{base}-{cut}.vfsaudit")),
                n => dir.join(format!("{id}-audit-{base}-{cut}.{n}.vfsaudit")),
            })
            .find(|p| !p.exists())
            .expect("an unused name");
        match self.audit_archive(Cut::Index(cut), &out) {
            // The previous archive's record is not old enough yet.
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                tracing::debug!("audit archive not yet: {e}");
                Ok(None)
            }
            Ok(Some(made)) => {
                // sled keeps the space until its files are rewritten: the
                // next mount does it (`compact_if_due`).
                if !self.core().store.is_cluster()
                    && let Err(e) = std::fs::write(self.dir().join(COMPACT_DUE), b"")
                {
                    tracing::warn!("cannot mark the store for compaction: {e}");
                }
                Ok(Some(made))
            }
            r => r,
        }
    }

    /// The archive base: the first record still in the store, and the
    /// archive files that hold those before it.
    pub fn audit_base(&self) -> crate::audit::archive::Base {
        self.core().audit.base()
    }
}

/// The daemon writes archives only where no one else can plant or swap
/// files: a directory owned by it or root, writable by neither group nor others.
fn check_archive_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::symlink_metadata(dir)
        .map_err(|e| err(ErrorKind::Io, format!("audit archive_dir {}: {e}", dir.display())))?;
    let owner_ok = md.uid() == 0 || md.uid() == crate::sys::effective_uid();
    if !md.is_dir() || !owner_ok || md.permissions().mode() & 0o022 != 0 {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "audit archive_dir {} must be a directory (not a symlink) owned by root or the daemon's user \
                 and writable by neither group nor others",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Rewrites the closed store under `dir` with only its live keys, giving
/// back the space of archived records (store/compact.rs).
pub fn compact_store(dir: &Path) -> Result<crate::store::Compacted> {
    Ok(crate::store::compact(dir)?)
}

/// Left in the store directory by a mount that archived records by policy.
const COMPACT_DUE: &str = "compact.due";

/// Compacts the closed store under `dir` if a mount archived records since
/// the last compaction (run before mounting it again). None if not due.
pub fn compact_if_due(dir: &Path) -> Result<Option<crate::store::Compacted>> {
    let due = dir.join(COMPACT_DUE);
    if !due.exists() {
        return Ok(None);
    }
    let c = compact_store(dir)?;
    std::fs::remove_file(&due).map_err(|e| err(ErrorKind::Io, format!("{}: {e}", due.display())))?;
    Ok(Some(c))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
