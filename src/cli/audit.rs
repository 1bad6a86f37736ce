//! `vaultfs audit ...`: the audit log from outside the mount: the public
//! key, verification (of a store, or of a copy of `.audit` with the public
//! key alone), proofs, checkpoints, and a readable tail.

use std::path::Path;
use std::time::Duration;

use super::args::{
    AuditArchiveArgs, AuditArgs, AuditCommand, AuditTailArgs, AuditVerifyArgs, PassphraseArgs, TailFormat,
};
use super::exit::{self, Code, Exit};
use super::mountinfo::open_unmounted;
use super::passphrase::{self, Confirm};
use crate::audit::checkpoint::{Checkpoint, vault_origin};
use crate::audit::export::leaf_of_line;
use crate::audit::verify::{root_in_files, verify_export, verify_files};
use crate::crypto::VerifyingKey;
use crate::format::hex;
use crate::vault::{Cut, ErrorKind, Unlocked, Vault};

pub fn run(a: AuditArgs) -> exit::Result {
    match a.command {
        AuditCommand::Pubkey { store } => {
            match Vault::open(&store) {
                Ok(v) => println!("{}", hex(&v.header().audit_public)),
                // Mounted: the daemon holds the store; its copy of the key will do.
                Err(e) => {
                    match std::fs::read_to_string(super::mountinfo::local_dir(&store).join(PUBKEY_FILE)) {
                        Ok(k) => {
                            eprintln!(
                                "vaultfs: store busy ({e}); printing {PUBKEY_FILE} (written at init and mount)"
                            );
                            print!("{k}");
                        }
                        Err(_) => return Err(e.into()),
                    }
                }
            }
            Ok(())
        }
        AuditCommand::Verify(v) => verify(v),
        AuditCommand::Checkpoint { store, passphrase } => {
            let vault = unlock(&store, &passphrase)?;
            match vault.audit_checkpoint()? {
                Some(note) => print!("{note}"),
                None => println!("the log is empty"),
            }
            Ok(())
        }
        AuditCommand::Proof { store, passphrase, inclusion, size, consistency } => {
            let vault = unlock(&store, &passphrase)?;
            let n = size.unwrap_or(vault.audit_size());
            // JSON by hand: numbers and hex strings only.
            let hexes = |hs: Vec<[u8; 32]>| {
                let items: Vec<String> = hs.iter().map(|h| format!("\"{}\"", hex(h))).collect();
                format!("[{}]", items.join(","))
            };
            let out = match (inclusion, consistency.as_deref()) {
                (Some(index), None) => format!(
                    "{{\"leaf_index\":{index},\"tree_size\":{n},\"root\":\"{}\",\"inclusion_proof\":{}}}",
                    hex(&vault.audit_root(n)?),
                    hexes(vault.audit_inclusion_proof(index, n)?)
                ),
                (None, Some(&[old, new])) => format!(
                    "{{\"old_size\":{old},\"new_size\":{new},\"old_root\":\"{}\",\"new_root\":\"{}\",\"consistency_proof\":{}}}",
                    hex(&vault.audit_root(old)?),
                    hex(&vault.audit_root(new)?),
                    hexes(vault.audit_consistency_proof(old, new)?)
                ),
                _ => return Err(Exit::usage("give --inclusion N or --consistency OLD NEW")),
            };
            println!("{out}");
            Ok(())
        }
        AuditCommand::Tail(t) => tail(t),
        AuditCommand::Archive(a) => archive(a),
    }
}

/// The audit public key in hex, next to the store, for when it is mounted.
/// Public and unauthenticated: a verifier takes the key from a trusted copy.
pub const PUBKEY_FILE: &str = "audit.pub";

pub fn write_pubkey_file(store: &Path, key: &[u8; 32]) {
    let path = super::mountinfo::local_dir(store).join(PUBKEY_FILE);
    if let Err(e) = std::fs::write(&path, format!("{}\n", hex(key))) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

fn unlock(store: &Path, source: &PassphraseArgs) -> Result<Vault<Unlocked>, Exit> {
    let v = open_unmounted(
        store,
        "audit",
        "while mounted, verify a copy of MOUNTPOINT/.audit with `vaultfs audit verify --file COPY --pubkey KEY`",
    )?;
    let pass = passphrase::obtain(source, "Vault passphrase: ", Confirm::Once)?;
    Ok(v.unlock(&pass)?)
}

fn corrupt(message: String) -> Exit {
    Exit { code: Code::Corrupt, message }
}

fn verify(v: AuditVerifyArgs) -> exit::Result {
    match (v.store, v.file.is_empty()) {
        (Some(store), true) => {
            let vault = unlock(&store, &v.passphrase)?;
            let r = vault
                .audit_verify()
                .map_err(|e| corrupt(format!("audit log of {}: {e}", store.display())))?;
            let archives = read_files(&v.archive)?;
            if !archives.is_empty() {
                check_archives(&vault, &archives)?;
            }
            if let Some(since) = v.since {
                check_since(&vault, &since, &archives)?;
            }
            let base = vault.audit_base();
            let archived = match (base.frontier.size, archives.is_empty()) {
                (0, _) => String::new(),
                (n, true) => {
                    format!(" (records before {n} are in {} archive files, not checked)", base.archives.len())
                }
                (n, false) => format!(" (records before {n} checked in {} archive files)", archives.len()),
            };
            println!(
                "ok: {} leaves, {} checkpoints, root {}{archived}",
                r.leaves,
                r.checkpoints,
                hex(&r.root)
            );
            // A cluster vault: the log each read-only mount keeps of its own.
            let hosts =
                vault.verify_host_logs().map_err(|e| corrupt(format!("audit logs of other hosts: {e}")))?;
            for (host, verdict) in hosts {
                let Some(verdict) = verdict else {
                    println!("host {host}: mounted read-only now, not checked (verify a copy of its .audit)");
                    continue;
                };
                let r = verdict.map_err(|e| corrupt(format!("audit log of host {host}: {e}")))?;
                println!(
                    "ok: host {host}: {} leaves, {} checkpoints, root {}",
                    r.leaves,
                    r.checkpoints,
                    hex(&r.root)
                );
            }
            Ok(())
        }
        (None, false) => {
            let key =
                v.pubkey.ok_or_else(|| Exit::usage("--file needs --pubkey (hex, or a file holding it)"))?;
            let key = parse_pubkey(&key)?;
            let files = read_files(&v.file)?;
            if let [(name, text)] = &files[..] {
                let r = verify_export(text, &key).map_err(|e| corrupt(format!("{name}: {e}")))?;
                let from = match r.first() {
                    0 => String::new(),
                    n => format!(" (from leaf {n}: the records before are in archives)"),
                };
                println!(
                    "ok: {} leaves, root {}, checkpoint signed for {}{from}",
                    r.leaves,
                    hex(&r.root),
                    r.checkpoint.origin
                );
                return Ok(());
            }
            let r = verify_files(&files, &key).map_err(|e| corrupt(e.to_string()))?;
            println!(
                "ok: {} files, leaves {}..{}, root {}, checkpoint signed for {}",
                files.len(),
                r.first,
                r.leaves,
                hex(&r.root),
                r.checkpoint.origin
            );
            Ok(())
        }
        _ => Err(Exit::usage("give a STORE, or --file FILE... --pubkey KEY")),
    }
}

/// (name for messages, contents) of each file.
fn read_files(paths: &[std::path::PathBuf]) -> Result<Vec<(String, Vec<u8>)>, Exit> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read(p).map_err(|e| Exit::failure(format!("cannot read {}: {e}", p.display())))?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

/// The archives are one log that ends exactly where the store's begins,
/// each the file the vault recorded (its BLAKE3 in the store's list).
fn check_archives(vault: &Vault<Unlocked>, archives: &[(String, Vec<u8>)]) -> exit::Result {
    let key = vault.audit_key().verifying_key();
    let chain = verify_files(archives, &key).map_err(|e| corrupt(e.to_string()))?;
    let base = vault.audit_base();
    if chain.leaves != base.frontier.size || chain.frontier != base.frontier {
        return Err(corrupt(format!(
            "the archives end at leaf {} but the store's log starts at {}",
            chain.leaves, base.frontier.size
        )));
    }
    for (name, text) in archives {
        let r = verify_export(text, &key).map_err(|e| corrupt(format!("{name}: {e}")))?;
        let digest = crate::crypto::blake3_of(text);
        let listed = base.archives.iter().find(|a| a.first == r.first() && a.end == r.leaves);
        if listed.is_some_and(|a| a.blake3 != digest) {
            return Err(corrupt(format!("{name}: not the archive the vault wrote (its BLAKE3 differs)")));
        }
    }
    Ok(())
}

/// The log still holds exactly the tree an earlier checkpoint signed (from
/// the archives, when the note is older than the store's archive base). A
/// log without it does not verify: exit 5, as any other failure of `verify`.
fn check_since(vault: &Vault<Unlocked>, since: &Path, archives: &[(String, Vec<u8>)]) -> exit::Result {
    let note = std::fs::read_to_string(since)
        .map_err(|e| Exit::failure(format!("cannot read {}: {e}", since.display())))?;
    let key = vault.audit_key().verifying_key();
    let base = vault.audit_base().frontier.size;
    if let Ok(cp) = Checkpoint::parse_and_verify(&note, Some(&vault_origin(&vault.header().vault_id)), &key)
        && cp.size < base
    {
        if archives.is_empty() {
            return Err(corrupt(format!(
                "{} signs {} records, before the archive base {base}: give the archives (--archive FILE...)",
                since.display(),
                cp.size
            )));
        }
        let root = root_in_files(archives, &key, cp.size).map_err(|e| corrupt(e.to_string()))?;
        if root != cp.root {
            return Err(corrupt(format!(
                "the first {} records in the archives are not the ones {} signed",
                cp.size,
                since.display()
            )));
        }
        println!("consistent with {} ({} leaves, in the archives)", since.display(), cp.size);
        return Ok(());
    }
    let size = vault.check_anchor(&note, &since.display().to_string()).map_err(|e| match e.kind() {
        ErrorKind::RolledBack | ErrorKind::Corrupt => corrupt(e.message),
        _ => e.into(),
    })?;
    println!("consistent with {} ({size} leaves)", since.display());
    Ok(())
}

/// `vaultfs audit archive STORE --before INDEX|DATE OUT`.
fn archive(a: AuditArchiveArgs) -> exit::Result {
    let cut = match a.before.parse::<u64>() {
        Ok(i) => Cut::Index(i),
        Err(_) => Cut::Time(crate::format::time::parse_utc(&a.before).ok_or_else(|| {
            Exit::usage(format!(
                "--before {}: give a record index or a UTC date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)",
                a.before
            ))
        })?),
    };
    let v = open_unmounted(
        &a.store,
        "audit archive",
        "a mounted vault archives by policy ([audit] archive_after, docs/POLICY.md)",
    )?;
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let vault = v.unlock(&pass)?;
    let Some(m) = vault.audit_archive(cut, &a.out)? else {
        println!("nothing to archive: the store's log starts at record {}", vault.audit_base().frontier.size);
        return Ok(());
    };
    println!(
        "archived records {}..{} to {} ({} bytes, blake3 {}); the store's log now starts at {}",
        m.first,
        m.end,
        m.path.display(),
        m.bytes,
        hex(&m.blake3),
        m.end
    );
    // sled keeps the space of deleted values: only a copy gives it back.
    drop(vault);
    let c = crate::vault::compact_store(&a.store)?;
    println!("store compacted: {} -> {} bytes ({} keys)", c.bytes_before, c.bytes_after, c.keys);
    Ok(())
}

/// A public key given as 64 hex digits, or as a file holding them.
pub(super) fn parse_pubkey(arg: &str) -> Result<VerifyingKey, Exit> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| Exit::failure(format!("cannot read {arg}: {e}")))?
    } else {
        arg.to_string()
    };
    let t = text.trim();
    let bytes: Option<Vec<u8>> = (t.len() == 64)
        .then(|| (0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()).collect())
        .flatten();
    let bytes = bytes
        .ok_or_else(|| Exit::usage("the public key must be 64 hex digits (`vaultfs audit pubkey STORE`)"))?;
    Ok(VerifyingKey(bytes.try_into().expect("32 bytes")))
}

fn tail(t: AuditTailArgs) -> exit::Result {
    let audit_file = t.target.join(".audit");
    let mut shown = 0u64;
    loop {
        let lines: Vec<String> = if audit_file.is_file() {
            let text = std::fs::read_to_string(&audit_file)
                .map_err(|e| Exit::failure(format!("cannot read {}: {e}", audit_file.display())))?;
            text.lines().map(str::to_string).collect()
        } else {
            if t.follow {
                return Err(Exit::usage("--follow needs a mount point (it reads MOUNT/.audit)"));
            }
            let vault = unlock(&t.target, &t.passphrase)?;
            let n = vault.audit_size();
            vault.audit_lines(0, n)?
        };
        let leaves: Vec<&String> = lines.iter().filter(|l| !l.starts_with("{\"checkpoint\"")).collect();
        let total = leaves.len() as u64;
        // Each poll opens `.audit`, which is recorded; do not echo our own polls.
        let own_poll = |line: &str| {
            t.follow
                && leaf_of_line(line)
                    .is_some_and(|l| l.pid == std::process::id() && l.op.name() == "audit_read")
        };
        let from = if shown == 0 {
            // The first time: the last N records that are not our own polls.
            let mut from = total;
            let mut counted = 0;
            while from > 0 && counted < t.lines {
                from -= 1;
                if !own_poll(leaves[from as usize]) {
                    counted += 1;
                }
            }
            from
        } else {
            shown
        };
        // The vault's id, for cef and syslog: the checkpoint's origin.
        let vault_id = lines
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| {
                v.get("checkpoint")?
                    .as_str()?
                    .split('\n')
                    .next()?
                    .strip_prefix("vaultfs/")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let host = crate::export::hostname();
        for line in leaves.iter().skip(from as usize) {
            if own_poll(line) {
                continue;
            }
            let format = if t.json { TailFormat::Json } else { t.format };
            let event = || serde_json::from_str::<serde_json::Value>(line).ok();
            let shown = match format {
                TailFormat::Json => line.to_string(),
                TailFormat::Text => human(line),
                TailFormat::Cef | TailFormat::Syslog => match event() {
                    Some(v) => match crate::export::Event::of(&v) {
                        Some(e) if format == TailFormat::Cef => {
                            crate::export::cef(&e, &vault_id, &host, std::process::id())
                        }
                        Some(e) => crate::export::syslog(&e, &vault_id, &host, std::process::id()),
                        None => continue,
                    },
                    None => continue,
                },
            };
            println!("{shown}");
        }
        shown = total.max(shown);
        if !t.follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One leaf line as `seq time uid pid comm op level path [offset+len] -> result`,
/// the time in RFC 3339 (UTC, to the nanosecond).
fn human(line: &str) -> String {
    let Some(l) = leaf_of_line(line) else { return line.to_string() };
    let level = l.level.map_or("-".to_string(), |n| n.to_string());
    let range = if l.len > 0 || l.offset > 0 { format!(" [{}+{}]", l.offset, l.len) } else { String::new() };
    format!(
        "{} {} uid={} pid={} {} {} L{} {}{} -> {}",
        l.seq,
        crate::format::time::utc_ns(l.time_ns),
        l.uid,
        l.pid,
        String::from_utf8_lossy(&l.comm),
        l.op.name(),
        level,
        String::from_utf8_lossy(&l.path),
        range,
        if l.result == 0 { "ok".to_string() } else { format!("errno {}", l.result) }
    )
}
