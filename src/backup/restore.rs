//! `restore`: verify the whole archive, then write it into a new store: a
//! store directory or a cluster vault.
//!
//! 1. The target must not exist (an empty directory is accepted; etcd must
//!    hold no vault of that name, the bucket no objects under it).
//! 2. Pass 1 reads the archive and verifies everything (`verify_stream`);
//!    nothing is written before it succeeds.
//! 3. Pass 2 reads it again into the new store, in batches, verifying again
//!    as it goes (the file could have changed in between: the two digests
//!    must match).
//! 4. A directory is written in a hidden sibling, flushed, closed, reopened
//!    as a vault (its header must decode), and only then renamed to the
//!    target. A cluster vault is written under its name with its header
//!    last, so that until the end it is no vault anyone can open, then
//!    reopened as a vault. Any failure removes what was written: a target
//!    never holds half a vault.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use super::verify::{Expect, Verified, verify_stream};
use crate::format::keys;
use crate::store::{Batch, ClusterAddress, DataAddress, Durability, Store};
use crate::vault::Vault;

/// Where a restore writes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A new store directory.
    Directory(&'a Path),
    /// A new cluster vault, its records in the bucket.
    Cluster(&'a ClusterAddress, &'a DataAddress),
}

/// Which pass `progress` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Verify,
    Write,
}

/// What `restore` did.
#[derive(Debug)]
pub struct Restored {
    pub verified: Verified,
    pub records: u64,
}

/// Store batches of about this many value bytes, or this many keys (a
/// cluster vault's commit is one etcd transaction: docs/CLUSTER.md).
const BATCH_BYTES: usize = 8 << 20;
const BATCH_KEYS: usize = 10_000;

/// How often a restore into a cluster vault commits (and at the end).
const CLUSTER_COMMIT: Duration = Duration::from_secs(1);

/// Verifies `archive` against `expect`, then writes it as a new store at
/// `target`. `progress(phase, bytes read, archive length)` is called as it goes.
pub fn restore(
    archive: &Path,
    target: Target,
    expect: &Expect,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Restored, Error> {
    if let Target::Directory(dir) = target {
        check_target(dir)?;
    }
    let len = std::fs::metadata(archive).map_err(|e| io(archive, e))?.len();
    let first = verify_stream(reading(archive, len, Phase::Verify, progress)?, expect, |_, _| Ok(()))?;
    let pass = Pass2 { archive, len, expect, first: &first };
    let (verified, records) = match target {
        Target::Directory(dir) => into_directory(&pass, dir, progress)?,
        Target::Cluster(at, data) => into_cluster(&pass, at, data, progress)?,
    };
    Ok(Restored { verified, records })
}

/// What the second pass reads and checks against.
struct Pass2<'a> {
    archive: &'a Path,
    len: u64,
    expect: &'a Expect,
    first: &'a Verified,
}

fn into_directory(
    pass: &Pass2,
    target: &Path,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<(Verified, u64), Error> {
    let staging = staging_dir(target)?;
    std::fs::create_dir(&staging).map_err(|e| io(&staging, e))?;
    let written = Store::open(&staging, true).map_err(Error::from).and_then(|store| {
        let (verified, records, header) = write_records(pass, &store, false, progress)?;
        debug_assert!(header.is_none());
        store.flush()?;
        Ok((verified, records))
    });
    let result = written.and_then(|done| {
        check_opens(&staging, &done.0)?;
        check_target(target)?;
        std::fs::rename(&staging, target).map_err(|e| io(target, e))?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: make the rename itself durable.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(done)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn into_cluster(
    pass: &Pass2,
    at: &ClusterAddress,
    data: &DataAddress,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<(Verified, u64), Error> {
    let store = Store::create_cluster(at, data)?;
    // Grouped: one object per commit, not one per file's records.
    let written = store.set_durability(Durability::Grouped(CLUSTER_COMMIT)).map_err(Error::from).and_then(|()| {
        let (verified, records, header) = write_records(pass, &store, true, progress)?;
        let header = header.ok_or_else(|| Error::Inconsistent("the archive holds no vault header".into()))?;
        // Everything else is in etcd and the bucket before the header that
        // makes it a vault.
        store.flush()?;
        store.put(keys::HEADER, header)?;
        store.flush()?;
        Ok((verified, records))
    });
    let done = match written {
        Ok(done) => done,
        Err(e) => return Err(discarded(e, store.discard_cluster(), at)),
    };
    drop(store);
    let path = PathBuf::from(at.to_string());
    if let Err(e) = check_opens(&path, &done.0) {
        let discard = Store::open(&path, false).and_then(Store::discard_cluster);
        return Err(discarded(e, discard, at));
    }
    Ok(done)
}

/// `e`, with what became of the partial vault if removing it failed too.
fn discarded(e: Error, discard: crate::store::Result<()>, at: &ClusterAddress) -> Error {
    match discard {
        Ok(()) => e,
        Err(d) => Error::Io(format!(
            "{e}; removing the partial vault failed too ({d}): delete the etcd keys under vaultfs/{}/ \
             and the bucket's objects under {}/ by hand (docs/CLUSTER.md)",
            at.vault, at.vault
        )),
    }
}

/// The restored store must open as a vault of the archive's id.
fn check_opens(path: &Path, verified: &Verified) -> Result<(), Error> {
    let vault = Vault::open(path)?;
    if vault.header().vault_id != verified.header.vault_id {
        return Err(Error::Inconsistent("the restored store opens with another vault id".into()));
    }
    Ok(())
}

/// Pass 2: every record into `store`, verified again; with `hold_header`
/// the header is returned instead of written.
fn write_records(
    pass: &Pass2,
    store: &Store,
    hold_header: bool,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<(Verified, u64, Option<Vec<u8>>), Error> {
    let block_size = pass.first.header.block_size;
    let mut batch = Batch::default();
    let (mut bytes, mut records, mut header) = (0usize, 0u64, None);
    let reader = reading(pass.archive, pass.len, Phase::Write, progress)?;
    let second = verify_stream(reader, pass.expect, |k, v| {
        records += 1;
        if hold_header && k == keys::HEADER {
            header = Some(v.to_vec());
            return Ok(());
        }
        let v = if k.first() == Some(&keys::BLOCK) {
            crate::block::import_value(store, block_size, k, v).map_err(|e| match e {
                // Writing the new store failed: not the archive's fault.
                crate::block::Error::Store(e) => Error::Store(e),
                e => Error::Inconsistent(e.to_string()),
            })?
        } else {
            v.to_vec()
        };
        bytes += k.len() + v.len();
        batch.put(k.to_vec(), v);
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_KEYS {
            store.apply(std::mem::take(&mut batch))?;
            bytes = 0;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        store.apply(batch)?;
    }
    if second.trailer.digest != pass.first.trailer.digest {
        return Err(Error::Inconsistent("the archive changed while it was being restored".into()));
    }
    Ok((second, records, header))
}

/// The target may not exist, or be an empty directory.
fn check_target(target: &Path) -> Result<(), Error> {
    match std::fs::read_dir(target).map(|mut entries| entries.next().is_none()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(true) => Ok(()),
        _ => Err(Error::Exists(target.to_path_buf())),
    }
}

/// `.NAME.restoring-PID` beside the target.
fn staging_dir(target: &Path) -> Result<PathBuf, Error> {
    let name =
        target.file_name().ok_or_else(|| Error::Io(format!("{}: not a directory name", target.display())))?;
    let mut staged = std::ffi::OsString::from(".");
    staged.push(name);
    staged.push(format!(".restoring-{}", std::process::id()));
    Ok(target.with_file_name(staged))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// The archive, buffered, reporting progress as it is read.
fn reading<'p>(
    archive: &Path,
    len: u64,
    phase: Phase,
    progress: &'p mut dyn FnMut(Phase, u64, u64),
) -> Result<Progress<'p, BufReader<File>>, Error> {
    let f = File::open(archive).map_err(|e| io(archive, e))?;
    Ok(Progress { inner: BufReader::with_capacity(1 << 20, f), read: 0, reported: 0, len, phase, progress })
}

struct Progress<'p, R> {
    inner: R,
    read: u64,
    reported: u64,
    len: u64,
    phase: Phase,
    progress: &'p mut dyn FnMut(Phase, u64, u64),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read - self.reported >= 1 << 20 {
            self.reported = self.read;
            (self.progress)(self.phase, self.read, self.len);
        }
        Ok(n)
    }
}
