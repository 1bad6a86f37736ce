//! `vaultfs enroll tpm|fido2 STORE --level N` and `vaultfs unenroll STORE
//! --slot K`. Defaults: level 4 takes the TPM, level 5 takes FIDO2 and the
//! level-4 factor together (`--alone` for FIDO2 only). On a mounted vault
//! the daemon does it through its control socket, with its own TPM and
//! security key.

use super::args::{EnrollArgs, FactorName, UnenrollArgs};
use super::escrow::read_shares;
use super::exit::{self, Exit};
use super::mountinfo::{Serving, open_unmounted, serving};
use super::passphrase::{self, Confirm};
use crate::gate::tpm::TpmConfig;
use crate::vault::{FactorAccess, FactorKind};

pub fn run(a: EnrollArgs) -> exit::Result {
    if !(3..=5).contains(&a.level) {
        return Err(Exit::usage(format!("hardware factors gate levels 3 to 5, not {}", a.level)));
    }
    let first = match a.factor {
        FactorName::Tpm => FactorKind::Tpm,
        FactorName::Fido2 => FactorKind::Fido2 { presence: !a.no_presence },
    };
    if let Some(Serving { pid, mountpoint: Some(mnt) }) = serving(&a.store) {
        let shares = if a.shares.share_files.is_empty() { Vec::new() } else { read_shares(&a.shares)? };
        let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
        if matches!(first, FactorKind::Fido2 { .. }) || a.level == 5 {
            eprintln!("touch the security key of the mount's machine if it blinks");
        }
        let names = super::control::enroll_mounted(&mnt, &a, first, &pass, &shares)?;
        println!("level {} now opens with {}", a.level, names.join("+"));
        eprintln!("(enrolled by the mount at {}, daemon pid {pid}: it takes effect at once)", mnt.display());
        return Ok(());
    }
    let mut v = open_unmounted(&a.store, "enroll", "")?;
    let kinds = v.enroll_kinds(a.level, first, a.alone)?;
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let mut access =
        FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), a.tpm_pcrs.clone()), pin);
    if !a.shares.share_files.is_empty() {
        let shares = read_shares(&a.shares)?;
        let key = v.recovery_key(&shares)?;
        v.accept_escrow(&key, &mut access)?;
    }
    if kinds.iter().any(|k| matches!(k, FactorKind::Fido2 { .. })) {
        eprintln!("touch your security key when it blinks");
    }
    v.enroll(&pass, a.level, &kinds, &access)?;
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    println!("level {} now opens with {}", a.level, names.join("+"));
    Ok(())
}

pub fn run_unenroll(a: UnenrollArgs) -> exit::Result {
    if let Some(Serving { pid, mountpoint: Some(mnt) }) = serving(&a.store) {
        let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
        super::control::unenroll_mounted(&mnt, &pass, a.slot)?;
        println!("key slot {} removed", a.slot);
        eprintln!("(removed by the mount at {}, daemon pid {pid})", mnt.display());
        return Ok(());
    }
    let mut v = open_unmounted(&a.store, "unenroll", "")?;
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    v.unenroll(&pass, a.slot)?;
    println!("key slot {} removed", a.slot);
    Ok(())
}
