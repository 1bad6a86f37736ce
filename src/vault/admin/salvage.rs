//! `vaultfs salvage STORE NEWSTORE` (docs/ADMIN.md, "Salvage"): copies
//! every record of a damaged store that still authenticates into a new
//! store, never writing to the old one. The records come from sled, or,
//! where sled refuses the store, from a scan of its log that returns every
//! version of every key found in intact messages (store::recover). Each
//! key gets its newest version; fsck is the judge of what authenticates:
//! a record it finds damaged is replaced by the next older version the
//! scan found, or dropped. An audit log that no longer verifies is not
//! carried (the old store keeps it, untouched): the new store's log starts
//! with a record of the salvage. Then fsck's repairs (orphans, dangling
//! entries, link counts) make the new store consistent.

use std::collections::BTreeMap;
use std::path::Path;

use super::fsck::{self, FsckOptions, FsckReport, ProblemKind};
use crate::crypto::Passphrase;
use crate::format::{DirentRecord, Header, Timestamp, hex, keys};
use crate::store::{self, Batch, RecoveredFrom, Store};
use crate::vault::audit::{AuditOp, Record};
use crate::vault::error::{ErrorKind, Result, err};
use crate::vault::keyring::{self, FactorSecrets};
use crate::vault::node::Txn;
use crate::vault::{FileKind, LEVEL_NAMES, NewNode, ROOT_INO, Unlocked, Vault, XattrFlags, level_dir};

/// The extended attribute salvage sets on a file that lost blocks.
pub const SALVAGE_XATTR: &[u8] = b"user.vault.salvage";

/// Rounds of "check, then try older versions of what failed" before giving up.
const MAX_ROUNDS: usize = 8;

/// What a salvage did.
#[derive(Debug)]
pub struct SalvageReport {
    /// sled's refusal when the log had to be scanned, and the scan's figures.
    pub from: RecoveredFrom,
    /// Keys found (each with one or more versions).
    pub keys_found: u64,
    /// Keys copied into the new store in the end.
    pub kept: u64,
    /// Of those, keys whose newest version failed and an older one was kept.
    pub older: u64,
    /// Records dropped: no version authenticated (key hex, what it was).
    pub lost: Vec<(String, String)>,
    /// Whether the old audit log verified and was carried over.
    pub audit_kept: bool,
    /// Bytes of segment files copied.
    pub segment_bytes: u64,
    /// Inodes whose names were lost, now in lost+found (their new paths).
    pub adopted: Vec<String>,
    /// Files that lost blocks (read as zeros there), marked with `SALVAGE_XATTR`.
    pub holed: Vec<String>,
    /// fsck of the new store, after its repairs.
    pub fsck: FsckReport,
}

fn is_audit_key(k: &[u8]) -> bool {
    matches!(
        k.first(),
        Some(
            &keys::AUDIT_LEAF
                | &keys::AUDIT_LEAVES
                | &keys::AUDIT_SLOT
                | &keys::AUDIT_NODE
                | &keys::AUDIT_CHECKPOINT
        )
    ) || k == keys::AUDIT_FRONTIER
        || k == keys::AUDIT_BASE
}

/// Problems that mean "this record does not authenticate or parse": the
/// record's key is replaced by an older version, or dropped.
fn damaged(kind: ProblemKind) -> bool {
    matches!(
        kind,
        ProblemKind::Malformed
            | ProblemKind::UnknownKey
            | ProblemKind::InodeDamaged
            | ProblemKind::EntryDamaged
            | ProblemKind::BlockDamaged
            | ProblemKind::XattrDamaged
            | ProblemKind::TombstoneDamaged
    )
}

/// A problem's key (hex) as bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    crate::format::unhex(s, "problem", "key").ok().map(|v| v.to_vec())
}

/// The newest header version that `pass` opens.
fn pick_header(versions: Option<&Vec<Option<Vec<u8>>>>, pass: &Passphrase) -> Result<Header> {
    let mut why = "no version of the header (store key H) was found".to_string();
    for v in versions.into_iter().flatten().flatten() {
        match Header::decode(v) {
            Ok(h) => match keyring::master_key(pass, &h) {
                Ok(_) => return Ok(h),
                Err(e) if e.kind() == ErrorKind::WrongPassphrase => return Err(e),
                Err(e) => why = format!("a header version fails: {e}"),
            },
            Err(e) => why = format!("a header version does not parse: {e}"),
        }
    }
    Err(err(
        ErrorKind::Corrupt,
        format!("no authentic vault header is left ({why}): nothing can be salvaged"),
    ))
}

/// Salvages the store under `from` into a new store under `to` (which
/// must not hold a vault). `factor_levels` and `secrets` as for fsck: the
/// hardware levels whose records are checked (the others are copied as
/// found, newest version, unchecked). `say` gets progress lines. With
/// `look_only` the segment files are linked, not copied: for fsck, which
/// salvages into a scratch directory to say what a store sled refuses holds.
#[allow(clippy::too_many_arguments)]
pub fn salvage(
    from: &Path,
    to: &Path,
    look_only: bool,
    pass: &Passphrase,
    factor_levels: Vec<u8>,
    secrets: &mut FactorSecrets,
    say: &mut dyn FnMut(&str),
) -> Result<SalvageReport> {
    if Store::exists(to) {
        return Err(err(ErrorKind::VaultExists, format!("{} already holds a vault", to.display())));
    }
    let scratch = to.with_extension("salvage-scratch");
    let found = store::recover(from, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let found = found?;
    match &found.from {
        RecoveredFrom::Sled => say(&format!("sled opened {}: {} keys", from.display(), found.keys.len())),
        RecoveredFrom::LogScan { sled_error, messages_ok, messages_damaged, .. } => say(&format!(
            "read by scanning sled's log ({sled_error}): {messages_ok} intact messages, \
             {messages_damaged} damaged, {} keys",
            found.keys.len()
        )),
    }
    let header = pick_header(found.keys.get(keys::HEADER), pass)?;
    let dst = Store::open(to, true)?;
    let segment_bytes = store::copy_segments(from, to, look_only)?;
    if let Ok(public) = std::fs::read(from.join("audit.pub")) {
        std::fs::write(to.join("audit.pub"), public)
            .map_err(|e| err(ErrorKind::Io, format!("writing {}/audit.pub: {e}", to.display())))?;
    }

    // The newest version of every key that has one (a newest "deleted" stays deleted).
    let mut chosen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut batch = Batch::default();
    batch.put(keys::HEADER, header.encode());
    for (k, versions) in &found.keys {
        if k == keys::HEADER {
            continue;
        }
        if let Some(Some(v)) = versions.first() {
            batch.put(k.as_slice(), v.clone());
            chosen.insert(k.clone(), 0);
        }
        if batch.len() >= 1024 {
            dst.apply(std::mem::take(&mut batch))?;
        }
    }
    dst.apply(batch)?;
    dst.flush()?;

    let opts = FsckOptions { repair: false, factor_levels };
    let mut older = std::collections::BTreeSet::new();
    let mut lost = Vec::new();
    let mut audit_kept = true;
    for round in 0..MAX_ROUNDS {
        let report = fsck::check_store(&dst, &header, pass, &opts, secrets, &mut |_, _| {})?;
        let mut batch = Batch::default();
        let mut changed = 0;
        if audit_kept && report.problems.iter().any(|p| p.kind == ProblemKind::Audit) {
            // The old log no longer verifies: it stays in the old store; the
            // new store starts a log of its own.
            audit_kept = false;
            for k in chosen.keys().filter(|k| is_audit_key(k)) {
                batch.delete(k.as_slice());
                changed += 1;
            }
            chosen.retain(|k, _| !is_audit_key(k));
        }
        for p in report.problems.iter().filter(|p| damaged(p.kind)) {
            let Some(k) = unhex(&p.key).filter(|k| chosen.contains_key(k)) else { continue };
            let versions = &found.keys[&k];
            let next = (chosen[&k] + 1..versions.len()).find(|i| versions[*i].is_some());
            match next {
                Some(i) => {
                    batch.put(k.as_slice(), versions[i].clone().expect("found above"));
                    chosen.insert(k.clone(), i);
                    older.insert(k);
                }
                None => {
                    batch.delete(k.as_slice());
                    chosen.remove(&k);
                    older.remove(&k);
                    lost.push((p.key.clone(), p.message.clone()));
                }
            }
            changed += 1;
        }
        if changed == 0 {
            break;
        }
        say(&format!("round {}: {changed} record(s) replaced by older versions or dropped", round + 1));
        dst.apply(batch)?;
        dst.flush()?;
    }

    // The salvage is recorded in the new store's log, then fsck repairs what
    // the losses left inconsistent (itself recorded).
    let master = keyring::master_key(pass, &header)?;
    let ring = keyring::unlock_with_master(&master, &header)?;
    // The root and level directories are fixed: a lost one is made again
    // (its entries, keyed by its number, are still there).
    let missing: Vec<u64> = fsck::check_store(&dst, &header, pass, &opts, secrets, &mut |_, _| {})?
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::MissingInode)
        .filter_map(|p| p.ino)
        .collect();
    if !missing.is_empty() {
        say(&format!("remade the fixed directories {missing:?} (root 1, levels 2 to 7)"));
        dst.apply(crate::vault::fixed_dirs(&ring, &header, &missing)?)?;
    }
    let log = ring.open_log(&dst, header.vault_id)?;
    let what = format!(
        "salvage from {}: {} of {} keys kept ({} from older versions), {} lost; audit log {}",
        from.display(),
        chosen.len() + 1,
        found.keys.len(),
        older.len(),
        lost.len(),
        if audit_kept { "carried" } else { "restarted (the old one stays in the old store)" }
    );
    let rec =
        Record::offline(AuditOp::Repair, b"vaultfs", None, ROOT_INO, what.into_bytes(), lost.len() as u64);
    log.append_with(&dst, rec.leaf(0), Batch::default())?;
    if let Err(e) = log.checkpoint(&dst, false) {
        tracing::warn!("salvage: the checkpoint waits for the next mount: {e}");
    }
    dst.flush()?;
    drop(log);

    // Files and directories whose names were lost go to lost+found, by number.
    let problems = fsck::check_store(&dst, &header, pass, &opts, secrets, &mut |_, _| {})?.problems;
    let inos_with = |kind: ProblemKind| problems.iter().filter(move |p| p.kind == kind).filter_map(|p| p.ino);
    // Inodes no entry names, and entries whose directory is gone (their
    // inode's only name, which leads nowhere now): both go to lost+found.
    let mut unreachable: Vec<(u64, Option<Vec<u8>>)> =
        inos_with(ProblemKind::UnreachableInode).map(|ino| (ino, None)).collect();
    unreachable.extend(
        problems
            .iter()
            .filter(|p| p.kind == ProblemKind::EntryWithoutDirectory)
            .filter_map(|p| Some((p.ino?, Some(unhex(&p.key)?)))),
    );
    // A name whose inode was lost still names its number (fsck's repair
    // drops it at the end): lost+found, made next, must not take that
    // number, nor any file made later, so the counter (perhaps an older
    // version, from a log scan) goes past it.
    let named = problems.iter().filter(|p| p.kind == ProblemKind::DanglingEntry).filter_map(|p| p.ino).max();
    if let Some(ino) = named {
        raise_inode_counter(&dst, ino.saturating_add(1))?;
    }
    drop(dst);
    let mut adopted = Vec::new();
    // Files that lost blocks: a damaged index entry dropped, or (from a log
    // scan) an entry never found, which fsck sees as fewer blocks stored
    // than the inode counts.
    let holed: std::collections::BTreeSet<u64> = lost
        .iter()
        .filter_map(|(k, _)| unhex(k))
        .filter(|k| k.len() == 17 && k[0] == keys::BLOCK)
        .map(|k| u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")))
        .chain(inos_with(ProblemKind::BlockCount))
        .collect();
    let mut marked = Vec::new();
    if !unreachable.is_empty() || !holed.is_empty() {
        let v = crate::vault::Vault::open(to)?.unlock(pass)?;
        for (ino, stray) in unreachable {
            match v.adopt(ino, stray) {
                Ok(path) => {
                    say(&format!("inode {ino} had no name left: now {path}"));
                    adopted.push(path);
                }
                Err(e) => say(&format!("inode {ino} had no name left and stays unreachable: {e}")),
            }
        }
        // A file that lost blocks reads zeros there now: say so on the file itself.
        let paths = v.paths_of(&holed);
        for &ino in &holed {
            let note = b"salvage: some blocks were lost and read as zeros (vaultfs salvage report)";
            match v.setxattr(ino, SALVAGE_XATTR, note, XattrFlags::default()) {
                Ok(()) => {
                    marked.push(paths.get(&ino).cloned().unwrap_or_else(|| format!("inode {ino} (no name)")))
                }
                Err(e) => say(&format!("inode {ino} lost blocks; it could not be marked: {e}")),
            }
        }
        v.sync()?;
    }
    for path in &marked {
        say(&format!(
            "{path}: blocks lost, marked with the xattr {}",
            String::from_utf8_lossy(SALVAGE_XATTR)
        ));
    }
    finish(
        to,
        header,
        pass,
        &opts,
        secrets,
        found,
        chosen.len(),
        older.len(),
        lost,
        audit_kept,
        segment_bytes,
        adopted,
        marked,
    )
}

/// Sets the inode counter to `at_least` if it is lower (or unreadable).
fn raise_inode_counter(store: &Store, at_least: u64) -> Result<()> {
    let now = store
        .get(keys::INODE_COUNTER)?
        .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
        .map(u64::from_be_bytes);
    if now.is_none_or(|n| n < at_least) {
        store.put(keys::INODE_COUNTER, at_least.to_be_bytes().to_vec())?;
        store.flush()?;
    }
    Ok(())
}

/// fsck's repairs on the new store, then its final report.
#[allow(clippy::too_many_arguments)]
fn finish(
    to: &Path,
    header: Header,
    pass: &Passphrase,
    opts: &FsckOptions,
    secrets: &mut FactorSecrets,
    found: store::Recovered,
    kept: usize,
    older: usize,
    lost: Vec<(String, String)>,
    audit_kept: bool,
    segment_bytes: u64,
    adopted: Vec<String>,
    holed: Vec<String>,
) -> Result<SalvageReport> {
    let dst = Store::open(to, false)?;
    let repair = FsckOptions { repair: true, ..opts.clone() };
    fsck::check_store(&dst, &header, pass, &repair, secrets, &mut |_, _| {})?;
    let fsck = fsck::check_store(&dst, &header, pass, opts, secrets, &mut |_, _| {})?;
    dst.flush()?;
    Ok(SalvageReport {
        from: found.from,
        keys_found: found.keys.len() as u64,
        kept: kept as u64 + 1,
        older: older as u64,
        lost,
        audit_kept,
        segment_bytes,
        adopted,
        holed,
        fsck,
    })
}

impl Vault<Unlocked> {
    /// The paths of `inos`, found by walking every open level's tree once
    /// (a file's record does not name its directory: it may have several).
    fn paths_of(&self, inos: &std::collections::BTreeSet<u64>) -> BTreeMap<u64, String> {
        let mut found = BTreeMap::new();
        let mut queue: std::collections::VecDeque<(u64, String)> =
            (0..6u8).map(|l| (level_dir(l), format!("/{}", LEVEL_NAMES[l as usize]))).collect();
        while let Some((dir, path)) = queue.pop_front() {
            if found.len() == inos.len() {
                break;
            }
            let mut after = 0;
            while let Ok(page) = self.readdir(dir, after, 256) {
                let Some(last) = page.last() else { break };
                after = last.cookie;
                for e in page {
                    let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                    if inos.contains(&e.ino) {
                        found.entry(e.ino).or_insert_with(|| p.clone());
                    }
                    if e.kind == FileKind::Dir {
                        queue.push_back((e.ino, p));
                    }
                }
            }
        }
        found
    }

    /// Gives inode `ino`, which no entry names, the name `#ino` in
    /// `lost+found` of its level's directory (made if absent), as e2fsck
    /// does, deleting `stray`, an entry of it in a directory that is gone.
    /// Returns the new path.
    fn adopt(&self, ino: u64, stray: Option<Vec<u8>>) -> Result<String> {
        let level =
            self.core().load(ino)?.level().ok_or_else(|| err(ErrorKind::NotPermitted, "not a user inode"))?;
        let top = level_dir(level);
        let lf = match self.lookup(top, b"lost+found") {
            Ok(a) => a.ino,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let owner = self.getattr(top)?;
                let spec =
                    NewNode { kind: FileKind::Dir, perm: 0o700, uid: owner.uid, gid: owner.gid, rdev: 0 };
                self.create(top, b"lost+found", spec)?.ino
            }
            Err(e) => return Err(e),
        };
        let name = format!("#{ino}");
        let core = self.core();
        let _ns = core.namespace_lock();
        let mut txn = Txn::new(core, None);
        let node = txn.get(ino)?.clone();
        let mk = core.meta_keys(level)?;
        let key = mk.dirent_key(lf, name.as_bytes());
        let d = DirentRecord { ino, kind: node.rec.kind, name: name.as_bytes().to_vec() };
        txn.batch.put(&key[..], mk.seal_dirent(core.vault_id(), &key, &d)?);
        if let Some(k) = stray {
            txn.batch.delete(k);
        }
        let n = txn.get(ino)?;
        n.rec.parent = lf;
        n.rec.ctime = Timestamp::now();
        txn.touch(ino);
        let dir = txn.get(lf)?;
        if node.is_dir() {
            dir.rec.nlink += 1;
        }
        dir.rec.mtime = Timestamp::now();
        txn.touch(lf);
        txn.commit()?;
        Ok(format!("/{}/lost+found/{name}", LEVEL_NAMES[level as usize]))
    }
}

/// The key of a lost record, for people: its type and the inode when known.
pub fn describe_key(key_hex: &str) -> String {
    let Some(k) = unhex(key_hex) else { return key_hex.to_string() };
    let ino = |k: &[u8]| k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    match k.first() {
        Some(&keys::INODE) => format!("inode {}", ino(&k).unwrap_or(0)),
        Some(&keys::BLOCK) => format!(
            "blocks of inode {} (index entry ending at block {})",
            ino(&k).unwrap_or(0),
            k.get(9..17).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
        ),
        Some(&keys::XATTR) => format!("an extended attribute of inode {}", ino(&k).unwrap_or(0)),
        Some(&keys::DIRENT) => format!("a directory entry at level {}", k.get(1).copied().unwrap_or(0)),
        Some(&keys::TOMBSTONE) => "a tombstone".into(),
        _ => format!("store key {}", hex(&k[..k.len().min(9)])),
    }
}
