//! The adapter's side of the audit log: describing each access as a vault
//! `Record` (who, which process, what, where), and the read-only `.audit`
//! file at the mount root that shows the log (docs/AUDIT.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fuser::{Errno, Request};

use super::adapter::VaultFs;
use super::errno::{Res, e};
use crate::vault::{
    Attr, AuditOp, Caller, FileKind, OpenRequest, ROOT_INO, Record, Remover, SHRED_FROM_LEVEL, Timestamp,
};

/// The `.audit` file's inode number: below the first user inode, never stored.
pub const AUDIT_INO: u64 = 8;
pub const AUDIT_NAME: &[u8] = b".audit";

/// Levels whose opens are recorded durably before the open succeeds.
const DURABLE_FROM_LEVEL: u8 = 3;
/// Levels whose page cache the kernel drops at every open, so that every
/// open's reads reach the daemon and are recorded. Below it the kernel keeps
/// a file's cached pages across opens (the open itself is still recorded):
/// re-reading a working file costs no decryption and no request.
pub const READS_RECORDED_FROM_LEVEL: u8 = 3;

/// Snapshots of `.audit` per open file handle: a reader sees one consistent
/// log, ending in a checkpoint signed over exactly its leaves.
#[derive(Default)]
pub struct AuditFiles {
    open: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    /// The leaf lines rendered so far and how many leaves they cover, so a
    /// stat or open decrypts only what is new.
    /// (first leaf shown: the archive base, leaves covered, their lines).
    lines: Mutex<(u64, u64, Vec<u8>)>,
}

impl AuditFiles {
    pub fn insert(&self, fh: u64, text: Arc<Vec<u8>>) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(fh, text);
    }
    pub fn get(&self, fh: u64) -> Option<Arc<Vec<u8>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&fh).cloned()
    }
    pub fn remove(&self, fh: u64) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&fh);
    }
}

/// Where an access happened: an inode, or a name in a directory.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Node(u64),
    Entry(u64, &'a [u8]),
}

/// What was asked beyond the place: byte range of a read or write.
#[derive(Clone, Copy, Default)]
pub struct Range {
    pub offset: u64,
    pub len: u64,
}

impl VaultFs {
    /// The inode an access is about and its path as far as we know it.
    pub fn place(&self, at: At) -> (u64, Vec<u8>) {
        match at {
            At::Node(AUDIT_INO) => (AUDIT_INO, b"/.audit".to_vec()),
            At::Node(super::stats::STATS_INO) => (super::stats::STATS_INO, b"/.stats".to_vec()),
            At::Node(ino) if super::backup::is_virtual(ino) => (ino, self.backup_path(ino)),
            At::Entry(super::backup::BACKUP_DIR_INO, name) => {
                let mut p = b"/.backup/".to_vec();
                p.extend_from_slice(name);
                (super::backup::BACKUP_DIR_INO, p)
            }
            At::Node(ino) => (ino, self.inodes.path(ino, ROOT_INO)),
            At::Entry(dir, name) => {
                let mut p = self.inodes.path(dir, ROOT_INO);
                if p != b"/" {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                (dir, p)
            }
        }
    }

    fn record(&self, req: &Request, op: AuditOp, at: At, range: Range) -> Record {
        let (ino, path) = self.place(at);
        let level = self.level_of(ino).ok().flatten();
        Record {
            who: Caller { uid: req.uid(), gid: req.gid(), pid: req.pid() },
            comm: crate::sys::process_name(req.pid()),
            op,
            level,
            ino,
            path,
            offset: range.offset,
            len: range.len,
            note: Vec::new(),
        }
    }

    /// Runs `f` as access `op`, recorded before the reply goes out; a record
    /// that cannot be written fails the access with EIO.
    pub fn logged<T>(
        &self,
        req: &Request,
        op: AuditOp,
        at: At,
        range: Range,
        f: impl FnOnce() -> Res<T>,
    ) -> Res<T> {
        self.logged_with_note(req, op, at, range, Vec::new(), f)
    }

    /// `logged`, the record carrying `note` (an open's justification).
    pub fn logged_with_note<T>(
        &self,
        req: &Request,
        op: AuditOp,
        at: At,
        range: Range,
        note: Vec<u8>,
        f: impl FnOnce() -> Res<T>,
    ) -> Res<T> {
        // The benchmark baseline skips describing the access too: naming the
        // caller and the path is part of what the log costs.
        if cfg!(feature = "bench-no-audit") {
            return f();
        }
        let rec = Record { note, ..self.record(req, op, at, range) };
        let durable = op == AuditOp::Open && rec.level.is_some_and(|l| l >= DURABLE_FROM_LEVEL);
        match self.vault.audited(rec, durable, |err: &Errno| err.code(), f) {
            Ok(out) => out,
            Err(err) => {
                tracing::error!("audit record failed, access refused: {err}");
                Err(e(err))
            }
        }
    }

    /// Records each credential the policy's scanner finds in `data`, just
    /// written to `ino` at `offset` (levels 0 and 1; nothing when the policy
    /// does not scan). The write itself is not affected.
    pub fn note_secrets(&self, req: &Request, ino: u64, offset: u64, data: &[u8]) {
        let level = self.level_of(ino).ok().flatten();
        for rule in self.vault.secrets_in(level, data) {
            let range = Range { offset, len: data.len() as u64 };
            let rec =
                Record { note: rule.into_bytes(), ..self.record(req, AuditOp::Secret, At::Node(ino), range) };
            if let Err(err) = self.vault.record_secret(rec) {
                tracing::error!("audit record of a secret found failed: {err}");
            }
        }
    }

    /// Records a refusal (EACCES/EPERM) of an access that is not otherwise
    /// logged (lookups, attributes, listings), then passes `r` through.
    pub fn note_denial<T>(&self, req: &Request, at: At, r: Res<T>) -> Res<T> {
        if let Err(err) = &r
            && (*err == Errno::EACCES || *err == Errno::EPERM)
            && !cfg!(feature = "bench-no-audit")
        {
            let rec = self.record(req, AuditOp::Denied, at, Range::default());
            if let Err(fail) = self.vault.record(rec, err.code(), false) {
                tracing::error!("audit record of a denial failed: {fail}");
                return Err(Errno::EIO);
            }
        }
        r
    }

    /// The `.audit` file's attributes; `size` is its text's length.
    pub fn audit_attr(&self, size: u64) -> Attr {
        let now = Timestamp::now();
        Attr {
            ino: AUDIT_INO,
            generation: 0,
            level: None,
            parent: ROOT_INO,
            kind: FileKind::File,
            perm: 0o400,
            nlink: 1,
            uid: self.vault.owner_uid(),
            gid: 0,
            rdev: 0,
            size,
            blocks: size.div_ceil(512),
            blksize: 4096,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }

    /// The current `.audit` text: the base line if the log is archived, the
    /// cached leaf lines, the new ones, and a checkpoint over all of them.
    pub fn audit_text(&self) -> Res<Arc<Vec<u8>>> {
        let mut cache = self.audit_files.lines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut tail) = self.vault.audit_export_since(cache.1).map_err(e)? else {
            return Ok(Arc::new(Vec::new()));
        };
        // Archived since the cache was filled: its lines start too early.
        if tail.first != cache.0 {
            *cache = (tail.first, tail.first, Vec::new());
            let Some(t) = self.vault.audit_export_since(tail.first).map_err(e)? else {
                return Ok(Arc::new(Vec::new()));
            };
            tail = t;
        }
        cache.2.extend_from_slice(&tail.lines);
        cache.1 = tail.size;
        let mut text = Vec::with_capacity(tail.head.len() + cache.2.len() + tail.checkpoint_line.len());
        text.extend_from_slice(tail.head.as_bytes());
        text.extend_from_slice(&cache.2);
        text.extend_from_slice(tail.checkpoint_line.as_bytes());
        Ok(Arc::new(text))
    }

    /// Waits for a human to approve opening `ino` if its level needs it;
    /// `justification` is shown to the human.
    pub fn approval(&self, req: &Request, ino: u64, justification: &[u8]) -> Res<()> {
        let Some(level) = self.level_of(ino)?.filter(|l| self.vault.needs_approval(*l)) else {
            return Ok(());
        };
        let (_, path) = self.place(At::Node(ino));
        let comm = crate::sys::process_name(req.pid());
        let open = OpenRequest {
            level,
            pid: req.pid(),
            uid: req.uid(),
            comm: &comm,
            path: &path,
            ino,
            justification,
        };
        self.vault.await_approval(&open).map_err(e)
    }

    /// Who removes what, for a tombstone (only levels that shred keep one).
    pub fn remover(&self, req: &Request, parent: u64, name: &[u8]) -> Remover {
        if self.level_of(parent).ok().flatten().is_none_or(|l| l < SHRED_FROM_LEVEL) {
            return Remover::default();
        }
        let (_, path) = self.place(At::Entry(parent, name));
        Remover { uid: req.uid(), pid: req.pid(), comm: crate::sys::process_name(req.pid()), path }
    }

    /// Only the mounting uid reads the log (it names every file touched).
    pub fn check_audit_reader(&self, req: &Request) -> Res<()> {
        if req.uid() != self.vault.owner_uid() {
            return Err(Errno::EACCES);
        }
        Ok(())
    }
}
