//! `vaultfs backup STORE OUT` and `vaultfs restore ARCHIVE NEWSTORE`
//! (docs/ADMIN.md, "Backup and restore"); a mounted vault's backup is the
//! archive its `.backup/` serves. The archive format and checks
//! live in `crate::backup`; this file adds the passphrase, the progress bar
//! on a terminal, the report and the exit codes.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::args::{BackupArgs, RestoreArgs};
use super::exit::{self, Code, Exit};
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};
use crate::audit::checkpoint::Checkpoint;
use crate::backup::{self, Expect, Phase, Target};
use crate::format::hex;
use crate::vault::{AuditOp, Caller, Record, Unlocked, Vault, Witness};

/// The archive maker the mount hands `.backup/` (the fs layer cannot call
/// its peer `backup` itself).
pub fn archive_maker() -> crate::fs::ArchiveMaker {
    Arc::new(|vault: &Vault<Unlocked>, file: &std::fs::File| {
        let made = backup::write_archive(vault, file, &mut |_, _| {}).map_err(|e| e.to_string())?;
        tracing::info!(
            "backup snapshot: {} records, {} bytes, store writes paused {:?}",
            made.records,
            made.bytes,
            made.pause
        );
        Ok(made.tree_size)
    })
}

fn refusal(e: backup::Error) -> Exit {
    use crate::format::Error as F;
    use backup::Error as E;
    let code = match &e {
        E::Version(_) | E::Flags(_) | E::Header(F::UnsupportedVersion(_) | F::UnknownFeatures(_)) => {
            Code::Unsupported
        }
        E::Exists(_) => Code::VaultPresence,
        E::Vault(v) => Exit::from(crate::vault::Error::new(v.kind(), String::new())).code,
        _ if e.is_refusal() => Code::Corrupt,
        _ => Code::Failure,
    };
    Exit { code, message: e.to_string() }
}

pub fn run_backup(a: BackupArgs) -> exit::Result {
    let to_stdout = a.out.as_os_str() == "-";
    if !to_stdout && a.out.symlink_metadata().is_ok() {
        return Err(Exit {
            code: Code::VaultPresence,
            message: format!("{} exists; backup never overwrites", a.out.display()),
        });
    }
    if let Some(Serving { pid, mountpoint: Some(mnt) }) = serving(&a.store) {
        return copy_from_mount(&a, &mnt, pid);
    }
    let v = open_unmounted(&a.store, "backup", "")?;
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let vault = v.unlock(&pass)?;
    drop(pass);
    // Who made a copy of the vault, and when: before the snapshot, so the
    // archive carries its own record.
    let me = Caller { uid: vault.owner_uid(), gid: 0, pid: std::process::id() };
    let rec = Record {
        who: me,
        comm: b"vaultfs".to_vec(),
        op: AuditOp::BackupRead,
        level: None,
        ino: 0,
        path: b"/.backup".to_vec(),
        offset: 0,
        len: 0,
        note: Vec::new(),
    };
    vault.record(rec, 0, true)?;

    let progress = super::progress::bar("{spinner} {bytes} written, {msg} ({binary_bytes_per_sec})");
    let mut report = |bytes: u64, records: u64| {
        progress.set_position(bytes);
        progress.set_message(format!("{records} records"));
    };
    let made = if to_stdout {
        let out = std::io::stdout().lock();
        backup::write_archive(&vault, out, &mut report).map_err(refusal)?
    } else {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&a.out)
            .map_err(|e| Exit::failure(format!("cannot create {}: {e}", a.out.display())))?;
        let made = backup::write_archive(&vault, &file, &mut report).and_then(|m| {
            file.sync_all()?;
            Ok(m)
        });
        match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&a.out);
                return Err(refusal(e));
            }
        }
    };
    progress.finish_and_clear();
    let name = if to_stdout { "standard output".to_string() } else { a.out.display().to_string() };
    eprintln!(
        "wrote {name}: {} bytes, {} store records, audit log of {} records (vault-{}.vfsbak in a mount's .backup/)",
        made.bytes, made.records, made.tree_size, made.tree_size
    );
    Ok(())
}

/// `vaultfs backup` of a mounted vault: the archive its `.backup/` serves
/// (the same format, a snapshot taken when the listing is made; opening it
/// is recorded with this process as the caller), copied to `a.out`.
fn copy_from_mount(a: &BackupArgs, mnt: &Path, pid: u32) -> exit::Result {
    let dir = mnt.join(".backup");
    let failed = |what: &str, e: std::io::Error| Exit::failure(format!("{what} {}: {e}", dir.display()));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| failed("cannot list", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "vfsbak"))
        .collect();
    let [archive] = &names[..] else {
        return Err(Exit::failure(format!("{} holds {} archives, not one", dir.display(), names.len())));
    };
    let mut from = std::fs::File::open(archive).map_err(|e| failed("cannot open the archive in", e))?;
    let len = from.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = super::progress::bar("{bytes}/{total_bytes} copied ({binary_bytes_per_sec})");
    progress.set_length(len);
    let mut copy = |to: &mut dyn Write| -> std::io::Result<u64> {
        let n = std::io::copy(&mut progress.wrap_read(&mut from), to)?;
        to.flush()?;
        Ok(n)
    };
    let copied = if a.out.as_os_str() == "-" {
        copy(&mut std::io::stdout().lock())
    } else {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&a.out)
            .map_err(|e| Exit::failure(format!("cannot create {}: {e}", a.out.display())))?;
        let n = copy(&mut file).and_then(|n| file.sync_all().map(|_| n));
        if n.is_err() {
            let _ = std::fs::remove_file(&a.out);
        }
        n
    };
    progress.finish_and_clear();
    let bytes = copied.map_err(|e| Exit::failure(format!("copying {}: {e}", archive.display())))?;
    if bytes != len {
        if a.out.as_os_str() != "-" {
            let _ = std::fs::remove_file(&a.out);
        }
        return Err(Exit::failure(format!("{} changed size while copied", archive.display())));
    }
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    eprintln!(
        "wrote {}: {bytes} bytes, {name} from the mount at {} (daemon pid {pid})",
        if a.out.as_os_str() == "-" { "standard output".to_string() } else { a.out.display().to_string() },
        mnt.display()
    );
    Ok(())
}

/// `--not-older-than`: a file holding a checkpoint note (as `vaultfs audit
/// checkpoint` prints it) or a copy of `.audit` (its last line), or the note text.
fn witness(arg: &str) -> Result<String, Exit> {
    // A path (a file, or a pipe such as <(vaultfs audit checkpoint ...)), else the note itself.
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).map_err(|e| Exit::failure(format!("cannot read {arg}: {e}")))?
    } else {
        arg.to_string()
    };
    if text.trim_start().starts_with('{') {
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(last)
            .map_err(|e| Exit::usage(format!("--not-older-than {arg}: the last line is not JSON: {e}")))?;
        return v.get("checkpoint").and_then(|c| c.as_str()).map(str::to_string).ok_or_else(|| {
            Exit::usage(format!("--not-older-than {arg}: the last line has no \"checkpoint\""))
        });
    }
    Ok(text)
}

pub fn run_restore(a: RestoreArgs) -> exit::Result {
    let expect = Expect {
        pubkey: a.pubkey.as_deref().map(super::audit::parse_pubkey).transpose()?,
        not_older_than: a.not_older_than.as_deref().map(witness).transpose()?,
    };
    let progress = super::progress::bar("{msg:9} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec})");
    let mut report = |phase: Phase, done: u64, len: u64| {
        progress.set_length(len);
        progress.set_message(match phase {
            Phase::Verify => "verifying",
            Phase::Write => "writing",
        });
        progress.set_position(done);
    };
    let cluster = super::init::cluster_target(&a.new_store, a.data.as_deref())?;
    let target = match &cluster {
        Some((at, data)) => Target::Cluster(at, data),
        None => Target::Directory(&a.new_store),
    };
    let r = backup::restore(&a.archive, target, &expect, &mut report);
    progress.finish_and_clear();
    let restored = r.map_err(|e| {
        let mut x = refusal(e);
        x.message = format!("{}: {}; nothing was written", a.archive.display(), x.message);
        x
    })?;
    let v = &restored.verified;
    let p = &v.preamble;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "archive:    {} ({} bytes, {} store records)",
        a.archive.display(),
        v.trailer.len,
        restored.records
    );
    let _ =
        writeln!(out, "vault:      {} ({} inodes, {} content blocks)", hex(&p.vault_id), v.inodes, v.blocks);
    let _ = writeln!(out, "made:       {}", crate::format::time::utc(p.created_ns));
    let _ =
        writeln!(out, "audit log:  {} records, checkpoint and archive signature valid", v.checkpoint.size);
    if v.key_pinned {
        let _ = writeln!(out, "signed by:  {} (the key given with --pubkey)", hex(&p.audit_public));
    } else {
        let _ = writeln!(
            out,
            "signed by:  {} -- checked only against the key in the archive's own header; \
             pin the vault's key with --pubkey (`vaultfs audit pubkey STORE`) to rule out a forged archive",
            hex(&p.audit_public)
        );
    }
    if let Some(w) = v.witness_size {
        let _ = writeln!(
            out,
            "not older:  the archive's log contains the tree the given checkpoint signed ({w} of {} records)",
            v.checkpoint.size
        );
    }
    let _ = writeln!(out, "restored:   {}", a.new_store.display());
    let _ = writeln!(
        out,
        "note:       policy.toml is not part of an archive; copy yours to {}/policy.toml before mounting",
        super::mountinfo::local_dir(&a.new_store).display()
    );
    super::audit::write_pubkey_file(&a.new_store, &p.audit_public);
    if let Some(path) = &a.witness {
        let w = Witness::new(path);
        let key = crate::crypto::VerifyingKey(p.audit_public);
        let before = w.read().ok().flatten().and_then(|n| Checkpoint::parse_and_verify(&n, None, &key).ok());
        let before = before.map(|c| c.size);
        w.write(&p.checkpoint)?;
        let was = before.map_or("none".to_string(), |s| format!("{s} records"));
        let _ = writeln!(
            out,
            "witness:    {} now anchors the vault at this archive's {} records (was {was})",
            path.display(),
            v.checkpoint.size
        );
    }
    Ok(())
}
