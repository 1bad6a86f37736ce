//! Rewriting sled's files with only the live keys. sled 0.34 gives the disk
//! of deleted and overwritten values back only as a side effect of rewriting
//! tree nodes, and never shrinks its file (docs/PERFORMANCE.md, "Bytes on
//! disk per audit record"): after the audit log's oldest records are
//! archived, only a copy returns their space. Segment files (block data)
//! are not touched.
//!
//! The copy is built beside the store (`db.compact`), made durable, marked
//! complete, then swapped in by two renames. `Store::open` finishes or drops
//! a compaction a crash interrupted, so every state a crash can leave opens
//! as the old store or the new one, never a mix.

use std::path::{Path, PathBuf};

use super::{DB_DIR, Error, Result, SEGMENT_SIZE, Store, existing_segment_size};

/// The copy under construction.
const NEW_DIR: &str = "db.compact";
/// The old files, between the two renames.
const OLD_DIR: &str = "db.old";
/// Present in `NEW_DIR` once the copy is whole and on disk.
const COMPLETE: &str = "COMPLETE";

/// Keys per batch of the copy.
const BATCH_KEYS: usize = 4096;

/// sled's files before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub keys: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn io(what: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("compacting the store: {}: {e}", what.display()))
}

/// Rewrites the closed store under `dir` with only its live keys.
pub fn compact(dir: &Path) -> Result<Compacted> {
    if super::Address::is_cluster(dir) {
        return Err(Error::Unusable(format!(
            "{}: a cluster vault's keys are in etcd, which compacts its own history \
             (`etcdctl compact` and `etcdctl defrag`, docs/CLUSTER.md)",
            dir.display()
        )));
    }
    finish_interrupted(dir)?;
    let (db, new, old) = paths(dir);
    let bytes_before = tree_bytes(&db)?;
    let _ = std::fs::remove_dir_all(&new);
    let mut keys = 0u64;
    {
        let store = Store::open(dir, false)?;
        let fresh = sled::Config::new()
            .path(&new)
            .flush_every_ms(None)
            .segment_size(existing_segment_size(&db).unwrap_or(SEGMENT_SIZE))
            .open()?;
        let mut batch = sled::Batch::default();
        for entry in store.iter() {
            let (k, v) = entry?;
            batch.insert(k, &v[..]);
            keys += 1;
            if keys % BATCH_KEYS as u64 == 0 {
                fresh.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        fresh.apply_batch(batch)?;
        fresh.flush()?;
    }
    // sled's flush does not reach the disk's cache (store/local.rs, `Disk`).
    sync_tree(&new)?;
    std::fs::write(new.join(COMPLETE), b"").map_err(|e| io(&new, e))?;
    sync_dir(&new)?;
    std::fs::rename(&db, &old).map_err(|e| io(&db, e))?;
    sync_dir(dir)?;
    std::fs::rename(&new, &db).map_err(|e| io(&new, e))?;
    std::fs::remove_file(db.join(COMPLETE)).map_err(|e| io(&db, e))?;
    sync_dir(dir)?;
    std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    Ok(Compacted { keys, bytes_before, bytes_after: tree_bytes(&db)? })
}

/// Where a crash stopped a compaction: an incomplete copy is dropped, a
/// complete one is swapped in, old files left after the swap are removed.
pub(super) fn finish_interrupted(dir: &Path) -> Result<()> {
    let (db, new, old) = paths(dir);
    if new.exists() {
        if !new.join(COMPLETE).exists() {
            std::fs::remove_dir_all(&new).map_err(|e| io(&new, e))?;
        } else {
            if db.exists() {
                std::fs::rename(&db, &old).map_err(|e| io(&db, e))?;
                sync_dir(dir)?;
            }
            std::fs::rename(&new, &db).map_err(|e| io(&new, e))?;
            std::fs::remove_file(db.join(COMPLETE)).map_err(|e| io(&db, e))?;
            sync_dir(dir)?;
        }
    }
    // A complete copy is in place: the old files are garbage. (Without the
    // new `db` they are the store: a crash between the renames.)
    if old.exists() {
        if db.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        } else {
            std::fs::rename(&old, &db).map_err(|e| io(&old, e))?;
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Whether `dir` holds a store only as a compaction's old or new files.
pub(super) fn interrupted(dir: &Path) -> bool {
    let (_, new, old) = paths(dir);
    old.exists() || new.join(COMPLETE).exists()
}

fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(DB_DIR), dir.join(NEW_DIR), dir.join(OLD_DIR))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))
}

/// Every file under `dir` to disk, then the directories.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| io(&path, e))?;
        }
    }
    sync_dir(dir)
}

fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let md = entry.metadata().map_err(|e| io(&entry.path(), e))?;
        n += if md.is_dir() { tree_bytes(&entry.path())? } else { md.len() };
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;

    fn fill(dir: &Path) {
        let s = Store::open(dir, true).unwrap();
        for round in 0..4u8 {
            let mut b = Batch::default();
            for i in 0..400u32 {
                b.put(i.to_be_bytes().to_vec(), vec![round; 2000]);
            }
            s.apply(b).unwrap();
        }
        let mut b = Batch::default();
        for i in 0..300u32 {
            b.delete(i.to_be_bytes().to_vec());
        }
        s.apply(b).unwrap();
        s.flush().unwrap();
    }

    fn contents(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let s = Store::open(dir, false).unwrap();
        s.iter().map(|r| r.map(|(k, v)| (k, v.to_vec())).unwrap()).collect()
    }

    #[test]
    fn compaction_keeps_every_live_key_and_gives_space_back() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        let before = contents(dir.path());
        assert_eq!(before.len(), 100);
        let c = compact(dir.path()).unwrap();
        assert_eq!(c.keys, 100);
        assert!(c.bytes_after < c.bytes_before, "{c:?}");
        assert_eq!(contents(dir.path()), before);
        assert!(!dir.path().join(NEW_DIR).exists() && !dir.path().join(OLD_DIR).exists());
    }

    #[test]
    fn every_interrupted_state_opens_as_one_store() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        let want = contents(dir.path());
        let (db, new, old) = paths(dir.path());
        // An incomplete copy: dropped.
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("junk"), b"x").unwrap();
        assert_eq!(contents(dir.path()), want);
        assert!(!new.exists());
        // A complete copy not yet swapped in, and one between the renames.
        for between in [false, true] {
            compact(dir.path()).unwrap();
            let copy = dir.path().join("copy");
            let _ = std::fs::remove_dir_all(&copy);
            std::process::Command::new("cp").arg("-a").arg(&db).arg(&copy).status().unwrap();
            std::fs::write(copy.join(COMPLETE), b"").unwrap();
            std::fs::rename(&copy, &new).unwrap();
            if between {
                std::fs::rename(&db, &old).unwrap();
            }
            assert_eq!(contents(dir.path()), want, "between renames: {between}");
            assert!(!new.exists() && !old.exists());
        }
        // Old files left after the swap: removed.
        std::process::Command::new("cp").arg("-a").arg(&db).arg(&old).status().unwrap();
        assert_eq!(contents(dir.path()), want);
        assert!(!old.exists());
    }
}
