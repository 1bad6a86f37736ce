//! `restore`: verify the whole archive, then write it into a new store.
//!
//! 1. The target must not exist (an empty directory is accepted).
//! 2. Pass 1 reads the archive and verifies everything (`verify_stream`);
//!    nothing is written before it succeeds.
//! 3. Pass 2 reads it again into a fresh store in a hidden sibling
//!    directory, in batches, verifying again as it goes (the file could have
//!    changed in between: the two digests must match).
//! 4. The new store is flushed, closed, reopened as a vault (its header must
//!    decode), and only then renamed to the target. Any failure removes the
//!    hidden directory: a target never holds half a vault.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::Error;
use super::verify::{Expect, Verified, verify_stream};
use crate::format::keys;
use crate::store::{Batch, Store};
use crate::vault::Vault;

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

/// Store batches of about this many value bytes.
const BATCH_BYTES: usize = 8 << 20;

/// Verifies `archive` against `expect`, then writes it as a new store at
/// `target`. `progress(phase, bytes read, archive length)` is called as it goes.
pub fn restore(
    archive: &Path,
    target: &Path,
    expect: &Expect,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Restored, Error> {
    check_target(target)?;
    let len = std::fs::metadata(archive).map_err(|e| io(archive, e))?.len();
    let first = verify_stream(reading(archive, len, Phase::Verify, progress)?, expect, |_, _| Ok(()))?;

    let staging = staging_dir(target)?;
    std::fs::create_dir(&staging).map_err(|e| io(&staging, e))?;
    let written = write_store(archive, len, &staging, expect, &first, progress);
    let result = written.and_then(|(verified, records)| {
        // The restored store must open as a vault of the archive's id.
        let vault = Vault::open(&staging)?;
        if vault.header().vault_id != verified.header.vault_id {
            return Err(Error::Inconsistent("the restored store opens with another vault id".into()));
        }
        drop(vault);
        check_target(target)?;
        std::fs::rename(&staging, target).map_err(|e| io(target, e))?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: make the rename itself durable.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(Restored { verified, records })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Pass 2: every record into a new store at `dir`, verified again.
fn write_store(
    archive: &Path,
    len: u64,
    dir: &Path,
    expect: &Expect,
    first: &Verified,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<(Verified, u64), Error> {
    let store = Store::open(dir, true)?;
    let mut batch = Batch::default();
    let (mut bytes, mut records) = (0usize, 0u64);
    let second = verify_stream(reading(archive, len, Phase::Write, progress)?, expect, |k, v| {
        let v = if k.first() == Some(&keys::BLOCK) {
            crate::block::import_value(&store, first.header.block_size, k, v).map_err(|e| match e {
                // Writing the new store failed: not the archive's fault.
                crate::block::Error::Store(e) => Error::Store(e),
                e => Error::Inconsistent(e.to_string()),
            })?
        } else {
            v.to_vec()
        };
        bytes += k.len() + v.len();
        batch.put(k.to_vec(), v);
        records += 1;
        if bytes >= BATCH_BYTES {
            store.apply(std::mem::take(&mut batch))?;
            bytes = 0;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        store.apply(batch)?;
    }
    store.flush()?;
    if second.trailer.digest != first.trailer.digest {
        return Err(Error::Inconsistent("the archive changed while it was being restored".into()));
    }
    Ok((second, records))
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
