//! Applying the fixes `check` planned. Each repair is one store batch that
//! carries its audit leaf (op `repair`, docs/AUDIT.md): the change and its
//! record land together or not at all. When the audit log does not verify,
//! nothing is repaired: a repair that cannot be recorded is not made.

use super::check::Access;
use super::{Fix, FsckReport, RepairState};
use crate::format::{Header, keys};
use crate::meta::{MetaKeys, VAULT_LEVEL};
use crate::store::{Batch, Store};
use crate::vault::error::{ErrorKind, Result, err};
use crate::vault::keyring::Keyring;
use crate::vault::{AuditOp, Record};

/// The `comm` of repair leaves.
const COMM: &[u8] = b"vaultfs-fsck";

pub(super) fn apply(
    store: &Store,
    header: &Header,
    ring: &Keyring,
    access: &[Access; 6],
    report: &mut FsckReport,
) -> Result<()> {
    if !report.problems.iter().any(|p| p.fix.is_some()) {
        return Ok(());
    }
    if !report.audit.verified {
        for p in report.problems.iter_mut().filter(|p| p.fix.is_some()) {
            p.repair = RepairState::Refused;
        }
        return Ok(());
    }
    let log = ring.open_log(store, header.vault_id)?;
    let meta_keys = |level: u8| -> Result<&MetaKeys> {
        if level == VAULT_LEVEL {
            return Ok(&ring.vault_meta);
        }
        match access.get(level as usize) {
            Some(Access::Open(mk)) => Ok(mk),
            _ => Err(err(ErrorKind::AccessDenied, format!("level {level} is locked"))),
        }
    };
    for p in report.problems.iter_mut() {
        let Some(fix) = &p.fix else { continue };
        let mut batch = Batch::default();
        let (action, changed) = match fix {
            Fix::Delete(list) => {
                // A key another repair already removed (an orphan inode's
                // block that was also beyond its end) is not counted twice.
                let mut n = 0;
                for k in list {
                    if store.contains(k)? {
                        batch.delete(k.clone());
                        n += 1;
                    }
                }
                ("delete", n)
            }
            Fix::DeleteInode(ino) => {
                let mut n = 0;
                for k in [keys::inode(*ino), keys::orphan(*ino)] {
                    if store.contains(&k)? {
                        batch.delete(&k[..]);
                        n += 1;
                    }
                }
                for prefix in [keys::block_prefix(*ino), keys::xattr_prefix(*ino)] {
                    for entry in store.scan_prefix(&prefix) {
                        batch.delete(entry?.0);
                        n += 1;
                    }
                }
                ("delete", n)
            }
            Fix::Rewrite { ino, nlink, blocks } => {
                let key = keys::inode(*ino);
                // Gone: deleted by an earlier repair of this run.
                let Some(value) = store.get(&key)? else {
                    p.repair = RepairState::Done;
                    continue;
                };
                let level = crate::meta::inode_level(&value)
                    .ok_or_else(|| err(ErrorKind::Corrupt, format!("inode {ino} is empty")))?;
                let mk = meta_keys(level)?;
                let mut rec = mk.open_inode(&header.vault_id, *ino, &value)?;
                rec.nlink = nlink.unwrap_or(rec.nlink);
                rec.blocks = blocks.unwrap_or(rec.blocks);
                batch.put(&key[..], mk.seal_inode(&header.vault_id, *ino, &rec)?);
                ("rewrite", 1)
            }
            Fix::SetCounter { key, value } => {
                batch.put(*key, value.to_be_bytes().to_vec());
                ("set", 1)
            }
        };
        if changed > 0 {
            let path = format!("fsck:{action}:{}:{}", p.kind.name(), p.key).into_bytes();
            let record = Record::offline(AuditOp::Repair, COMM, p.level, p.ino.unwrap_or(0), path, changed);
            log.append_with(store, record.leaf(0), batch)?;
        }
        p.repair = RepairState::Done;
    }
    log.checkpoint(store, false)?;
    Ok(())
}
