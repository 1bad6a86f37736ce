//! `vaultfs enroll tpm|fido2 STORE --level N` and `vaultfs unenroll STORE
//! --slot K`, on an unmounted vault. Defaults: level 4 takes the TPM, level
//! 5 takes FIDO2 and the level-4 factor together (`--alone` for FIDO2 only).

use super::args::{EnrollArgs, FactorName, UnenrollArgs};
use super::exit::{self, Exit};
use super::mountinfo::open_unmounted;
use super::passphrase::{self, Confirm};
use crate::gate::tpm::TpmConfig;
use crate::vault::{FactorAccess, FactorKind};

pub fn run(a: EnrollArgs) -> exit::Result {
    if !(3..=5).contains(&a.level) {
        return Err(Exit::usage(format!("hardware factors gate levels 3 to 5, not {}", a.level)));
    }
    let mut v = open_unmounted(&a.store, "enroll", "")?;
    let mut kinds = vec![match a.factor {
        FactorName::Tpm => FactorKind::Tpm,
        FactorName::Fido2 => FactorKind::Fido2 { presence: !a.no_presence },
    }];
    if a.level == 5 && !a.alone {
        let level4 = v.level_factor_kinds(4)?;
        if level4.is_empty() {
            return Err(Exit::usage(
                "level 5 also takes the level-4 factor by default: enroll level 4 first, or pass --alone",
            ));
        }
        for k in level4 {
            if !kinds.iter().any(|have| std::mem::discriminant(have) == std::mem::discriminant(&k)) {
                kinds.push(k);
            }
        }
    }
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    let pin = super::control::pin(&a.pin)?;
    let mut access =
        FactorAccess::new(TpmConfig::resolve(a.tpm.tpm_tcti.as_deref(), a.tpm_pcrs.clone()), pin);
    if !a.shares.share_files.is_empty() {
        let shares = super::escrow::read_shares(&a.shares)?;
        let key = v.recovery_key(&shares)?;
        v.accept_escrow(&key, &mut access)?;
    }
    if kinds.iter().any(|k| matches!(k, FactorKind::Fido2 { .. })) {
        eprintln!("touch your security key when it blinks");
    }
    v.enroll(&pass, a.level, &kinds, &access)?;
    let names: Vec<&str> =
        kinds.iter().map(|k| if matches!(k, FactorKind::Tpm) { "tpm" } else { "fido2" }).collect();
    println!("level {} now opens with {}", a.level, names.join("+"));
    Ok(())
}

pub fn run_unenroll(a: UnenrollArgs) -> exit::Result {
    let mut v = open_unmounted(&a.store, "unenroll", "")?;
    let pass = passphrase::obtain(&a.passphrase, "Vault passphrase: ", Confirm::Once)?;
    v.unenroll(&pass, a.slot)?;
    println!("key slot {} removed", a.slot);
    Ok(())
}
