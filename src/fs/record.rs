//! What the audit log says about each access (docs/AUDIT.md): who asked
//! (uid, gid, pid and process name), what, where (inode and path, as far as
//! the mount knows it), and the outcome; and the rule that a record is
//! written before the reply goes out. The vault appends and seals; this
//! module describes.

use fuser::{Errno, Request};

use super::errno::{Res, e};
use super::handles::InodeTable;
use super::virtual_files::{BACKUP_DIR_INO, VirtualFiles, is_virtual};
use crate::vault::{AuditOp, Caller, ROOT_INO, Record, Remover, Unlocked, Vault, rules};

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

/// Describes and records accesses of one mount: borrowed from the adapter
/// for each request.
pub struct Recorder<'a> {
    pub vault: &'a Vault<Unlocked>,
    pub inodes: &'a InodeTable,
    pub files: &'a VirtualFiles,
}

impl Recorder<'_> {
    /// The level of `ino` (None: the root, a virtual file), from the inode
    /// table when the kernel knows it, else from the store.
    pub fn level_of(&self, ino: u64) -> Res<Option<u8>> {
        if is_virtual(ino) {
            return Ok(None);
        }
        match self.inodes.level(ino) {
            Some(l) => Ok(l),
            None => Ok(self.vault.getattr(ino).map_err(e)?.level),
        }
    }

    /// The inode an access is about and its path as far as we know it.
    pub fn place(&self, at: At) -> (u64, Vec<u8>) {
        match at {
            At::Node(ino) if is_virtual(ino) => (ino, self.files.path(ino)),
            At::Entry(BACKUP_DIR_INO, name) => {
                let mut p = b"/.backup/".to_vec();
                p.extend_from_slice(name);
                (BACKUP_DIR_INO, p)
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
    /// that cannot be written fails the access with EIO. `f` gets the vault
    /// to change things through: its batch carries the record.
    pub fn logged<T>(
        &self,
        req: &Request,
        op: AuditOp,
        at: At,
        range: Range,
        f: impl FnOnce(&Vault<Unlocked>) -> Res<T>,
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
        f: impl FnOnce(&Vault<Unlocked>) -> Res<T>,
    ) -> Res<T> {
        // The benchmark baseline skips describing the access too: naming the
        // caller and the path is part of what the log costs.
        if cfg!(feature = "bench-no-audit") {
            return f(self.vault);
        }
        let rec = Record { note, ..self.record(req, op, at, range) };
        let durable = op == AuditOp::Open && rules(rec.level).durable_opens;
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

    /// The caller's process name and the path of `ino`, as a human asked
    /// to approve an open sees them.
    pub fn requester(&self, req: &Request, ino: u64) -> (Vec<u8>, Vec<u8>) {
        (crate::sys::process_name(req.pid()), self.place(At::Node(ino)).1)
    }

    /// Who removes what, for a tombstone (only levels that shred keep one).
    pub fn remover(&self, req: &Request, parent: u64, name: &[u8]) -> Remover {
        if !rules(self.level_of(parent).ok().flatten()).shredded {
            return Remover::default();
        }
        let (_, path) = self.place(At::Entry(parent, name));
        Remover { uid: req.uid(), pid: req.pid(), comm: crate::sys::process_name(req.pid()), path }
    }
}
