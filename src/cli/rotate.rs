//! `vaultfs rotate STORE [--level N]...`: new keys for levels of an
//! unmounted vault (docs/ADMIN.md, "rotate"), with a progress bar on a
//! terminal and one line per level otherwise. Rerunning it finishes a
//! rotation that was interrupted.

use std::io::IsTerminal;

use super::args::RotateArgs;
use super::exit::{self, Code, Exit};
use super::mountinfo::open_unmounted;
use super::passphrase::{self, Confirm};
use crate::gate::tpm::TpmConfig;
use crate::vault::{FactorAccess, FactorKind, LEVEL_NAMES};

pub fn run(a: RotateArgs) -> exit::Result {
    let asked = a.levels.iter().map(|l| super::control::level(l)).collect::<Result<Vec<u8>, _>>()?;
    if asked.contains(&0) {
        return Err(Exit::usage("level 0 has no stored key: it gets a new one at every mount"));
    }
    let mut vault = open_unmounted(&a.store, "rotate", "")?;
    let pending = vault.rotations_pending()?;
    // An interrupted rotation is finished first, whatever was asked: the
    // vault does not mount until it is.
    let mut order = pending.clone();
    for l in if asked.is_empty() { vault.levels_with_keys() } else { asked } {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let mut access = FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), Vec::new()), pin);
    if !a.shares.share_files.is_empty() {
        let shares = super::escrow::read_shares(&a.shares)?;
        let key = vault.recovery_key(&shares)?;
        vault.accept_escrow(&key, &mut access)?;
    }
    let touch = order.iter().filter_map(|l| vault.level_factor_kinds(*l).ok()).flatten();
    if touch.into_iter().any(|k| matches!(k, FactorKind::Fido2 { .. })) {
        eprintln!("touch your security key when it blinks (once per key slot)");
    }
    let terminal = std::io::stderr().is_terminal();
    let mut damaged = Vec::new();
    for level in order {
        let name = LEVEL_NAMES[level as usize];
        if !terminal {
            if pending.contains(&level) {
                eprintln!("rotate: finishing the interrupted rotation of level {level} ({name})");
            } else {
                eprintln!("rotate: level {level} ({name})");
            }
        }
        let bar = super::progress::bar(&format!(
            "rotate {name} {{bar:40.cyan/blue}} {{pos}}/{{len}} records ({{eta_left}})"
        ));
        let report = vault.rotate(&pass, level, &mut |f| access.secrets(f), &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        let r = report?;
        println!(
            "level {level} ({name}): new key{}; re-encrypted {} inodes, {} blocks, {} entries, {} xattrs",
            if r.resumed { " (interrupted rotation finished)" } else { "" },
            r.inodes,
            r.blocks,
            r.entries,
            r.xattrs
        );
        damaged.extend(r.damaged.into_iter().map(|d| format!("level {level}: {d}")));
    }
    if damaged.is_empty() {
        return Ok(());
    }
    Err(Exit {
        code: Code::Corrupt,
        message: format!(
            "{} record(s) authenticate under neither key and were left as they were (run `vaultfs fsck`):\n  {}",
            damaged.len(),
            damaged.join("\n  ")
        ),
    })
}
