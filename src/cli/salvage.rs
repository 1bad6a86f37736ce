//! `vaultfs salvage STORE NEWSTORE`: what a damaged store still holds,
//! copied into a new one (docs/ADMIN.md, "Salvage"), with a report of
//! where it came from, what was lost, and an fsck of the result.

use super::args::SalvageArgs;
use super::exit::{self, Exit};
use super::mountinfo::serving;
use super::passphrase::{self, Confirm};
use crate::gate::tpm::TpmConfig;
use crate::store::RecoveredFrom;
use crate::vault::{FactorAccess, SalvageReport, describe_key, salvage};

pub fn run(a: SalvageArgs) -> exit::Result {
    let factor_levels = a.levels.iter().map(|l| super::control::level(l)).collect::<Result<Vec<u8>, _>>()?;
    if let Some(l) = factor_levels.iter().find(|l| !(3..=5).contains(*l)) {
        return Err(Exit::usage(format!("--level {l}: only levels 3 to 5 open with hardware factors")));
    }
    if let Some(s) = serving(&a.store) {
        return Err(Exit {
            code: exit::Code::Mounted,
            message: format!(
                "{} is served by a running mount (daemon pid {}): unmount it first; a store that mounts \
                 needs `vaultfs fsck`, not a salvage",
                a.store.display(),
                s.pid
            ),
        });
    }
    if !a.store.join("db").is_dir() {
        return Err(Exit {
            code: exit::Code::VaultPresence,
            message: format!("{} holds no vault store (no db/ directory)", a.store.display()),
        });
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
    let r = salvage(
        &a.store,
        &a.new_store,
        false,
        &pass,
        factor_levels,
        &mut |f| access.secrets(f),
        &mut |line| eprintln!("{line}"),
    )?;
    println!("salvage {} -> {}", a.store.display(), a.new_store.display());
    print_salvage(&r, "copied");
    println!();
    super::fsck::print_report(&a.new_store, &r.fsck);
    super::fsck::verdict(&r.fsck)
}

/// The salvage part of a report (`segments` says what was done with them).
pub(super) fn print_salvage(r: &SalvageReport, segments: &str) {
    match &r.from {
        RecoveredFrom::Sled => println!("{:<15} sled opened the store and listed every key", "read"),
        RecoveredFrom::LogScan { sled_error, messages_ok, messages_damaged, damaged_ranges } => {
            println!("{:<15} from a scan of sled's log: {sled_error}", "read");
            println!(
                "{:<15} each record as its newest intact message has it: where a later write sat in a \
                 damaged part of the log, that record comes back older",
                ""
            );
            println!(
                "{:<15} {messages_ok} intact messages, {messages_damaged} damaged (skipped)",
                "log scan"
            );
            for (off, len) in damaged_ranges.iter().take(20) {
                println!("{:<15} bytes {off}..{} of db/db unreadable", "", off + len);
            }
            if damaged_ranges.len() > 20 {
                println!("{:<15} ... and {} more ranges", "", damaged_ranges.len() - 20);
            }
        }
    }
    println!(
        "{:<15} {} found, {} kept ({} from an older version), {} lost",
        "records",
        r.keys_found,
        r.kept,
        r.older,
        r.lost.len()
    );
    for (key, why) in &r.lost {
        println!("{:<15} {}: {why}", "lost", describe_key(key));
    }
    for path in &r.holed {
        println!("{:<15} {path}: lost blocks read as zeros (marked: xattr user.vault.salvage)", "holes");
    }
    for path in &r.adopted {
        println!("{:<15} {path} (its name was lost)", "adopted");
    }
    println!("{:<15} {} bytes {segments}", "segments", r.segment_bytes);
    println!(
        "{:<15} {}",
        "audit log",
        if r.audit_kept {
            "verified and carried over"
        } else {
            "did not verify: the new store starts a new log (the old one stays in the old store)"
        }
    );
}
