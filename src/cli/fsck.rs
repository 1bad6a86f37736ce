//! `vaultfs fsck STORE [--json] [--repair] [--level N]...`: the vault's
//! check (docs/ADMIN.md, "fsck"), its report as text or one JSON object, a
//! progress bar on a terminal, and the exit code the verdict calls for. A
//! mounted vault is checked (read-only) by its daemon.

use std::path::Path;

use super::args::FsckArgs;
use super::exit::{self, Code, Exit};
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};
use crate::crypto::Passphrase;
use crate::gate::tpm::TpmConfig;
use crate::vault::{
    ErrorKind, FactorAccess, FactorKind, FsckOptions, FsckReport, FsckStatus, LevelAccess, RepairState, Tally,
};

pub fn run(a: FsckArgs) -> exit::Result {
    let factor_levels = a.levels.iter().map(|l| super::control::level(l)).collect::<Result<Vec<u8>, _>>()?;
    if let Some(l) = factor_levels.iter().find(|l| !(3..=5).contains(*l)) {
        return Err(Exit::usage(format!("--level {l}: only levels 3 to 5 open with hardware factors")));
    }
    if let Some(s @ Serving { mountpoint: Some(_), .. }) = serving(&a.store) {
        return check_mounted(&a, &s, factor_levels);
    }
    // sled's own open would cut a damaged log at the first bad message and
    // throw away every later record: look at the log first, read-only.
    if serving(&a.store).is_none()
        && let Some(n) = crate::store::log_damage(&a.store)
    {
        let why = format!("{n} damaged message(s) in sled's log (opening it would cut the log there)");
        return unreadable(&a, factor_levels, None, &why);
    }
    let vault = match open_unmounted(&a.store, "fsck", "") {
        Err(e) if e.code == Code::Corrupt => return unreadable(&a, factor_levels, None, &e.message),
        v => v?,
    };
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
    let touch = factor_levels.iter().filter_map(|l| vault.level_factor_kinds(*l).ok()).flatten();
    if touch.into_iter().any(|k| matches!(k, FactorKind::Fido2 { .. })) {
        eprintln!("touch your security key when it blinks");
    }
    let opts = FsckOptions { repair: a.repair, factor_levels };
    let bar =
        super::progress::bar("fsck {bar:40.cyan/blue} {pos}/{len} store entries ({percent}%, {eta_left})");
    let report = vault.fsck(&pass, &opts, &mut |f| access.secrets(f), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        // The store's database failed under the check itself: say what it still holds.
        Err(e) if e.kind() == ErrorKind::Corrupt && !a.repair => {
            drop(vault);
            unreadable(&a, opts.factor_levels, Some(pass), &e.to_string())
        }
        r => show(&a, &r?),
    }
}

/// fsck of a store whose database (sled) refuses to open or fails while
/// read: a salvage into a scratch directory (segment files linked, the
/// store only read) says what it still holds and what is damaged.
fn unreadable(a: &FsckArgs, factor_levels: Vec<u8>, pass: Option<Passphrase>, why: &str) -> exit::Result {
    eprintln!("the store's database cannot be read whole ({why}); looking at what it still holds");
    let pass = match pass {
        Some(p) => p,
        None => passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?,
    };
    let pin = super::control::pin(&a.pin)?;
    let access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
    let scratch = std::env::temp_dir().join(format!("vaultfs-fsck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let r = crate::vault::salvage(
        &a.store,
        &scratch.join("store"),
        true,
        &pass,
        factor_levels,
        &mut |f| access.secrets(f),
        &mut |line| eprintln!("{line}"),
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let r = r?;
    if a.json {
        let json = serde_json::json!({
            "store_readable": false,
            "error": why,
            "lost": r.lost.iter().map(|(k, m)| serde_json::json!({"key": k, "what": crate::vault::describe_key(k), "message": m})).collect::<Vec<_>>(),
            "holes": r.holed,
            "nameless": r.adopted,
            "records_found": r.keys_found,
            "records_intact": r.kept,
            "records_from_older_versions": r.older,
            "audit_log_verifies": r.audit_kept,
            "salvaged": r.fsck,
        });
        println!("{json}");
    } else {
        println!("fsck {}: the store's database cannot be read whole: {why}", a.store.display());
        println!("What it still holds (a salvage into a scratch directory; nothing was written here):");
        super::salvage::print_salvage(&r, "in segment files (linked, not copied)");
        println!("status: damaged");
    }
    Err(Exit {
        code: Code::Corrupt,
        message: format!(
            "the store is damaged: {} record(s) lost; `vaultfs salvage {} NEWSTORE` copies what is intact",
            r.lost.len(),
            a.store.display()
        ),
    })
}

/// The check of a mounted vault, by its daemon: read-only (`--repair`
/// needs it unmounted), and the mount's writes wait while it runs.
fn check_mounted(a: &FsckArgs, s: &Serving, factor_levels: Vec<u8>) -> exit::Result {
    let mnt = s.mountpoint.as_deref().unwrap_or(&a.store);
    if a.repair {
        return Err(Exit {
            code: Code::Mounted,
            message: format!(
                "{} is mounted at {} (daemon pid {}): `vaultfs fsck --repair` needs it unmounted: run \
                 `vaultfs umount {}` first; without --repair the mount checks itself",
                a.store.display(),
                mnt.display(),
                s.pid,
                mnt.display()
            ),
        });
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    eprintln!(
        "checking the vault mounted at {} through its daemon (pid {}); its writes wait until the check ends",
        mnt.display(),
        s.pid
    );
    let report = super::control::fsck_mounted(mnt, &pass, factor_levels, pin)?;
    show(a, &report)
}

/// The report as asked (text or JSON), and the exit code it calls for.
fn show(a: &FsckArgs, report: &FsckReport) -> exit::Result {
    if a.json {
        let json = serde_json::to_string(report).map_err(|e| Exit::failure(e.to_string()))?;
        println!("{json}");
    } else {
        print_report(&a.store, report);
    }
    verdict(report)
}

pub(super) fn verdict(r: &FsckReport) -> exit::Result {
    let open = r.problems.iter().filter(|p| p.repair != RepairState::Done).count();
    let repairable = r.problems.iter().filter(|p| p.repair == RepairState::Available).count();
    match r.status {
        FsckStatus::Clean => Ok(()),
        FsckStatus::Damaged => Err(Exit {
            code: Code::Corrupt,
            message: if repairable > 0 {
                format!("{open} problem(s) found, {repairable} repairable with --repair")
            } else {
                format!("{open} problem(s) found")
            },
        }),
        FsckStatus::Incomplete => Err(Exit {
            code: Code::Locked,
            message: "nothing damaged found, but locked levels were not authenticated".into(),
        }),
        FsckStatus::Repaired => {
            Err(Exit { code: Code::Repaired, message: format!("{} problem(s) repaired", r.problems.len()) })
        }
    }
}

pub(super) fn print_report(store: &Path, r: &FsckReport) {
    println!("fsck {} (vault {}, block size {})", store.display(), r.vault_id, r.block_size);
    println!("{:<15} {}", "header", if r.header_authenticated { "authenticated" } else { "FAILED" });
    for l in &r.levels {
        let mut line = match l.access {
            LevelAccess::Checked => "checked".to_string(),
            a => format!("not checked ({}): {}", a.name().replace('_', " "), l.note),
        };
        if l.not_checked > 0 {
            line.push_str(&format!("; {} record(s) not authenticated", l.not_checked));
        }
        println!("{:<15} {line}", format!("level {}", l.level));
    }
    let tally = |name: &str, t: &Tally| {
        let mut line = format!("{} stored, {} authenticated", t.stored, t.authenticated);
        if t.not_checked > 0 {
            line.push_str(&format!(", {} not checked", t.not_checked));
        }
        println!("{name:<15} {line}");
    };
    if r.header_authenticated {
        tally("inodes", &r.counts.inodes);
        tally("entries", &r.counts.entries);
        tally("blocks", &r.counts.blocks);
        tally("xattrs", &r.counts.xattrs);
        tally("tombstones", &r.counts.tombstones);
        println!("{:<15} {}", "orphan markers", r.counts.orphan_markers);
        let sg = &r.counts.segments;
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        println!(
            "{:<15} {} files, {:.1} MiB: {:.1} MiB live, {:.1} MiB garbage (a mount collects it)",
            "segments",
            sg.files,
            mib(sg.bytes),
            mib(sg.live_bytes),
            mib(sg.garbage_bytes)
        );
        let a = &r.audit;
        let root = a.root.as_deref().map_or(String::new(), |h| format!(", root {h}"));
        let state = if a.verified { "verified" } else { "DOES NOT VERIFY" };
        let archived = match a.archived {
            0 => String::new(),
            n => format!(" (the first {n} in archive files)"),
        };
        println!(
            "{:<15} {} leaves{archived}, {} checkpoints{root}: {state}",
            "audit log", a.leaves, a.checkpoints
        );
        for h in &r.host_audits {
            if h.mounted {
                println!("{:<15} host {}: mounted read-only now, not checked", "audit log", h.host);
                continue;
            }
            let a = &h.audit;
            let root = a.root.as_deref().map_or(String::new(), |h| format!(", root {h}"));
            let state = if a.verified { "verified" } else { "DOES NOT VERIFY" };
            println!(
                "{:<15} host {}: {} leaves, {} checkpoints{root}: {state}",
                "audit log", h.host, a.leaves, a.checkpoints
            );
        }
    }
    if !r.problems.is_empty() {
        println!("{} problem(s):", r.problems.len());
        for p in &r.problems {
            let repair = match p.repair {
                RepairState::None => "",
                RepairState::Available => " [repairable: --repair]",
                RepairState::Done => " [repaired]",
                RepairState::Refused => " [not repaired: the audit log does not verify]",
            };
            println!("  {:<23} {}  {}{repair}", p.kind.name(), p.key, p.message);
        }
    }
    println!("status: {}", r.status.name());
}
