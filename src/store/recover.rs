//! Reading what a damaged store still holds (`vaultfs salvage`), never
//! writing to it: through sled when it opens and lists every key, else by
//! scanning sled's log file directly (the vendored sled's salvage reader:
//! vendor/README.md), which skips damaged messages and returns every
//! version of every key it finds in intact ones.

use std::collections::BTreeMap;
use std::path::Path;

use super::{DB_DIR, Error, Result, SEGMENTS_DIR, Store, existing_segment_size};

/// Where the recovered keys came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveredFrom {
    /// sled opened the store and listed every key: its current state.
    Sled,
    /// sled refused (`sled_error`); the log was scanned message by message.
    LogScan {
        sled_error: String,
        messages_ok: u64,
        messages_damaged: u64,
        /// Byte ranges of sled's log file that could not be read.
        damaged_ranges: Vec<(u64, u64)>,
    },
}

/// Each key found, with its versions newest first (None: deleted there).
pub type Versions = BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>>;

/// Every key found, and where from.
pub struct Recovered {
    pub keys: Versions,
    pub from: RecoveredFrom,
}

/// What the store under `dir` still holds. sled writes to a database as
/// it opens it, so it opens a copy made under `scratch` (removed after).
pub fn recover(dir: &Path, scratch: &Path) -> Result<Recovered> {
    let copy = scratch.join("sled-copy");
    copy_tree(&dir.join(DB_DIR), &copy.join(DB_DIR)).map_err(|e| {
        Error::Io(format!("copying {} to {}: {e}", dir.join(DB_DIR).display(), copy.display()))
    })?;
    let through = through_sled(&copy);
    let _ = std::fs::remove_dir_all(&copy);
    // The log is scanned in every case: sled's recovery stops at the first
    // damaged message and may open an older state without a word, so its
    // view is taken only when the whole log is intact.
    let db = dir.join(DB_DIR);
    let segment_size = existing_segment_size(&db).unwrap_or(super::SEGMENT_SIZE);
    let scanned = sled::salvage::salvage(&db, segment_size);
    let (found, sled_error) = match (through, scanned) {
        (Ok(keys), Ok(found)) if found.messages_damaged == 0 && found.damaged_ranges.is_empty() => {
            return Ok(Recovered { keys, from: RecoveredFrom::Sled });
        }
        (Ok(keys), Ok(found)) => {
            let why = format!(
                "sled opened it with {} keys, but its log holds {} damaged messages and sled's recovery \
                 stops at the first: its view may be an older state",
                keys.len(),
                found.messages_damaged
            );
            (found, why)
        }
        // The log cannot be scanned (an unsupported configuration): sled's view is all there is.
        (Ok(keys), Err(e)) => {
            tracing::warn!("sled's log could not be scanned ({e}); taking sled's view as it is");
            return Ok(Recovered { keys, from: RecoveredFrom::Sled });
        }
        (Err(e), Ok(found)) => (found, e.to_string()),
        (Err(e), Err(scan)) => {
            return Err(Error::Io(format!(
                "sled refuses the store ({e}) and its log cannot be read ({scan})"
            )));
        }
    };
    let keys = found
        .keys
        .into_iter()
        .map(|(k, versions)| (k, versions.into_iter().map(|v| v.value).collect()))
        .collect();
    Ok(Recovered {
        keys,
        from: RecoveredFrom::LogScan {
            sled_error,
            messages_ok: found.messages_ok,
            messages_damaged: found.messages_damaged,
            damaged_ranges: found.damaged_ranges,
        },
    })
}

/// Damaged messages in sled's log of the store under `dir`, read without
/// opening it (sled's recovery would cut the log at the first one, and
/// with it every later record): None if the log is intact or cannot be
/// scanned (then sled's own open is all there is).
pub fn log_damage(dir: &Path) -> Option<u64> {
    let db = dir.join(DB_DIR);
    let segment_size = existing_segment_size(&db).unwrap_or(super::SEGMENT_SIZE);
    match sled::salvage::salvage(&db, segment_size) {
        Ok(found) if found.messages_damaged > 0 || !found.damaged_ranges.is_empty() => {
            Some(found.messages_damaged.max(1))
        }
        _ => None,
    }
}

fn through_sled(dir: &Path) -> Result<Versions> {
    let store = Store::open(dir, false)?;
    let mut keys = BTreeMap::new();
    for entry in store.iter() {
        let (k, v) = entry?;
        keys.insert(k, vec![Some(v.to_vec())]);
    }
    Ok(keys)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Copies the segment files of the store under `from` into the store
/// directory `to` (as they are: each record authenticates on its own when
/// read), or, with `link`, links them (a look that is thrown away after).
/// Returns how many bytes the files hold.
pub fn copy_segments(from: &Path, to: &Path, link: bool) -> Result<u64> {
    let (src, dst) = (from.join(SEGMENTS_DIR), to.join(SEGMENTS_DIR));
    let io = |what: &str, p: &Path, e: std::io::Error| Error::Io(format!("{what} {}: {e}", p.display()));
    let entries = match std::fs::read_dir(&src) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("listing", &src, e)),
    };
    std::fs::create_dir_all(&dst).map_err(|e| io("creating", &dst, e))?;
    let mut bytes = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io("listing", &src, e))?;
        let target = dst.join(entry.file_name());
        if link {
            let source =
                std::fs::canonicalize(entry.path()).map_err(|e| io("resolving", &entry.path(), e))?;
            std::os::unix::fs::symlink(&source, &target).map_err(|e| io("linking", &target, e))?;
            bytes += entry.metadata().map_err(|e| io("reading", &entry.path(), e))?.len();
            continue;
        }
        bytes += std::fs::copy(entry.path(), &target).map_err(|e| io("copying", &entry.path(), e))?;
        std::fs::File::open(&target).and_then(|f| f.sync_all()).map_err(|e| io("syncing", &target, e))?;
    }
    std::fs::File::open(&dst).and_then(|f| f.sync_all()).map_err(|e| io("syncing", &dst, e))?;
    Ok(bytes)
}
