//! Escrow on a closed vault (`vaultfs escrow split | recover`): a random
//! recovery key, split into Shamir shares, wraps the master key in the
//! header's recovery section; any `threshold` shares set a new passphrase
//! when the old one is lost. Each change is one atomic header write.

use crate::crypto::{Key32, Passphrase, shamir};
use crate::format::{EscrowShare, Factor, Header, RecoverySlot, hex};
use crate::vault::error::{ErrorKind, Result, err};
use crate::vault::factors::FactorAccess;
use crate::vault::keyring;
use crate::vault::{Caller, Locked, Unlocked, Vault};

/// What `escrow_split` did.
pub struct EscrowSplit {
    /// The shares to hand out, index 1 to N (secret).
    pub shares: Vec<EscrowShare>,
    /// An earlier split was replaced: its shares no longer work.
    pub replaced: bool,
    /// Levels that were escrowed by the earlier split and are not any more.
    pub dropped_levels: Vec<u8>,
}

/// Levels of `h` with an escrow slot.
fn escrowed_levels(h: &Header) -> Vec<u8> {
    let mut l: Vec<u8> = h.slots.iter().filter(|s| keyring::is_recovery_slot(s)).map(|s| s.level).collect();
    l.dedup();
    l
}

/// The printable shares of a new split's recovery key.
fn shares_of(split: &keyring::Split, threshold: u8, shares: u8) -> Result<Vec<EscrowShare>> {
    let r = split.rewrap.header.recovery.as_ref().expect("escrow_split sets a recovery section");
    let points = shamir::split(&split.recovery, threshold, shares)?;
    Ok(points
        .into_iter()
        .map(|p| EscrowShare {
            vault: prefix(&split.rewrap.header.vault_id),
            split: prefix(&r.split_id),
            threshold,
            shares,
            index: p.index,
            value: p.value,
        })
        .collect())
}

/// The `header` record's path for a split.
fn split_note(threshold: u8, shares: u8, escrow_levels: &[u8]) -> String {
    let levels: Vec<String> = escrow_levels.iter().map(u8::to_string).collect();
    format!("escrow split {threshold}of{shares} levels {}", levels.join(","))
}

impl Vault<Unlocked> {
    /// `vaultfs escrow split` on a mounted vault, through its control socket
    /// (as on a closed vault; `replace` must be true if it has a split).
    #[allow(clippy::too_many_arguments)]
    pub fn escrow_split_mounted(
        &self,
        who: Caller,
        comm: &[u8],
        pass: &Passphrase,
        threshold: u8,
        shares: u8,
        escrow_levels: &[u8],
        replace: bool,
        access: &FactorAccess,
    ) -> Result<EscrowSplit> {
        self.rewrite_header_mounted(who, comm, |_| split_note(threshold, shares, escrow_levels), |h| {
            if let Some(r) = h.recovery.as_ref().filter(|_| !replace) {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "this vault already has a recovery key ({} of {} shares, split {}); --replace makes a \
                         new one and the old shares stop working",
                        r.threshold,
                        r.shares,
                        hex(&r.split_id[..4])
                    ),
                ));
            }
            let before = escrowed_levels(h);
            let split = keyring::escrow_split(pass, h, threshold, shares, escrow_levels, &mut |f: &[Factor]| {
                access.secrets(f)
            })?;
            let out = shares_of(&split, threshold, shares)?;
            let after = escrowed_levels(&split.rewrap.header);
            let done = EscrowSplit {
                shares: out,
                replaced: h.recovery.is_some(),
                dropped_levels: before.into_iter().filter(|l| !after.contains(l)).collect(),
            };
            Ok((split.rewrap, done))
        })
    }
}

impl Vault<Locked> {
    /// The recovery section, if the vault has been split.
    pub fn escrow(&self) -> Option<&RecoverySlot> {
        self.0.header.recovery.as_ref()
    }

    /// Levels with an escrow slot (the recovery key opens them too).
    pub fn escrow_levels(&self) -> Vec<u8> {
        escrowed_levels(&self.0.header)
    }

    /// Makes a new recovery key and its `shares` shares, any `threshold` of
    /// which rebuild it; replaces an earlier split. `escrow_levels` are
    /// levels with hardware factors that the recovery key should open too:
    /// their factors (`access`) are asked once, now.
    pub fn escrow_split(
        &mut self,
        pass: &Passphrase,
        threshold: u8,
        shares: u8,
        escrow_levels: &[u8],
        access: &FactorAccess,
    ) -> Result<EscrowSplit> {
        let before = self.escrow_levels();
        let replaced = self.0.header.recovery.is_some();
        let split = keyring::escrow_split(
            pass,
            &self.0.header,
            threshold,
            shares,
            escrow_levels,
            &mut |f: &[Factor]| access.secrets(f),
        )?;
        let out = shares_of(&split, threshold, shares)?;
        self.write_header(split.rewrap, split_note(threshold, shares, escrow_levels))?;
        let after = self.escrow_levels();
        Ok(EscrowSplit {
            shares: out,
            replaced,
            dropped_levels: before.into_iter().filter(|l| !after.contains(l)).collect(),
        })
    }

    /// Rebuilds the recovery key from `shares` after checking that each
    /// belongs to this vault's current split, and that together they open
    /// the recovery section.
    pub fn recovery_key(&self, shares: &[EscrowShare]) -> Result<Key32> {
        recovery_key(&self.0.header, shares)
    }

    /// Lets `access` answer escrow slots with `recovery` (enrolling a new
    /// hardware factor for an escrowed level whose factor is lost).
    pub fn accept_escrow(&self, recovery: &Key32, access: &mut FactorAccess) -> Result<()> {
        accept_escrow(&self.0.header, recovery, access)
    }

    /// Sets passphrase `new` with the recovery key: the master key is
    /// re-wrapped exactly as `passwd` does. Returns the escrowed levels.
    pub fn escrow_recover(&mut self, recovery: &Key32, new: &Passphrase) -> Result<Vec<u8>> {
        let levels = keyring::escrowed_levels(recovery, &self.0.header)?;
        let new = keyring::recover_passphrase(recovery, new, &self.0.header)?;
        self.write_header(new, "escrow recover".into())?;
        Ok(levels)
    }
}

/// Rebuilds the recovery key from `shares` after checking that each
/// belongs to this vault's current split, and that together they open
/// the recovery section.
pub(in crate::vault) fn recovery_key(h: &Header, shares: &[EscrowShare]) -> Result<Key32> {
    let Some(r) = &h.recovery else {
        return Err(err(
            ErrorKind::NotEnrolled,
            "this vault has no recovery key (`vaultfs escrow split` makes one)",
        ));
    };
    let mut points: Vec<shamir::SharePoint> = Vec::new();
    for s in shares {
        if s.vault != prefix(&h.vault_id) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "share #{} belongs to vault {}…, not to this one ({}…)",
                    s.index,
                    hex(&s.vault),
                    hex(&prefix(&h.vault_id))
                ),
            ));
        }
        if s.split != prefix(&r.split_id) || (s.threshold, s.shares) != (r.threshold, r.shares) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "share #{} is from split {} ({} of {}), not from this vault's current split {} ({} of {}): \
                     a new split makes the shares of earlier ones useless",
                    s.index,
                    hex(&s.split),
                    s.threshold,
                    s.shares,
                    hex(&prefix(&r.split_id)),
                    r.threshold,
                    r.shares
                ),
            ));
        }
        match points.iter().find(|p| p.index == s.index) {
            Some(p) if p.value.as_bytes() == s.value.as_bytes() => continue,
            Some(_) => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!("two different shares claim index #{}", s.index),
                ));
            }
            None => points.push(shamir::SharePoint { index: s.index, value: s.value.clone() }),
        }
    }
    if points.len() < r.threshold as usize {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "{} different share(s) given; this vault's split needs {} of {}",
                points.len(),
                r.threshold,
                r.shares
            ),
        ));
    }
    let key = shamir::combine(&points)?;
    keyring::escrowed_levels(&key, h)?;
    Ok(key)
}

/// Lets `access` answer escrow slots of `h` with `recovery`.
pub(in crate::vault) fn accept_escrow(h: &Header, recovery: &Key32, access: &mut FactorAccess) -> Result<()> {
    keyring::escrowed_levels(recovery, h)?;
    let r =
        h.recovery.as_ref().ok_or_else(|| err(ErrorKind::NotEnrolled, "this vault has no recovery key"))?;
    access.set_recovery(r.split_id, keyring::recovery_factor_secret(recovery, &h.vault_id));
    Ok(())
}

fn prefix(id: &[u8; 16]) -> [u8; 4] {
    [id[0], id[1], id[2], id[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::format::Header;
    use crate::gate::tpm::TpmConfig;
    use crate::vault::{ErrorKind, FileKind, InitOptions, NewNode, level_dir};

    const FAST_KDF: KdfParams = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.as_bytes().to_vec())
    }

    fn no_factors() -> FactorAccess {
        FactorAccess::new(TpmConfig::resolve(Some("device:/nonexistent"), Vec::new()), None)
    }

    /// A vault with a file at levels 1 and 3, closed again.
    fn vault_with_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        Vault::init(dir.path(), &pass("pw"), InitOptions { kdf: FAST_KDF, block_size: 4096 }).unwrap();
        let v = Vault::open(dir.path()).unwrap().unlock(&pass("pw")).unwrap();
        for level in [1, 3] {
            let node = NewNode { kind: FileKind::File, perm: 0o600, uid: 0, gid: 0, rdev: 0 };
            let f = v.create(level_dir(level), b"note", node).unwrap();
            v.write(f.ino, 0, format!("level {level}").as_bytes()).unwrap();
        }
        v.sync().unwrap();
        dir
    }

    fn read_note(dir: &std::path::Path, pw: &str, level: u8) -> Vec<u8> {
        let v = Vault::open(dir).unwrap().unlock(&pass(pw)).unwrap();
        let f = v.lookup(level_dir(level), b"note").unwrap();
        v.read(f.ino, 0, 100).unwrap()
    }

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    fn pick(shares: &[EscrowShare], idx: &[usize]) -> Vec<EscrowShare> {
        idx.iter().map(|&i| shares[i].clone()).collect()
    }

    #[test]
    fn any_t_of_n_shares_set_a_new_passphrase_and_t_minus_1_do_not() {
        let dir = vault_with_files();
        let mut v = Vault::open(dir.path()).unwrap();
        let split = v.escrow_split(&pass("pw"), 3, 5, &[], &no_factors()).unwrap();
        assert!(!split.replaced);
        assert_eq!(split.shares.len(), 5);
        // Shares travel as text.
        let shares: Vec<EscrowShare> =
            split.shares.iter().map(|s| EscrowShare::parse(&s.to_text()).unwrap()).collect();
        let key = v.recovery_key(&shares[..3]).unwrap();
        for k in 3..=5 {
            for idx in subsets(5, k) {
                let got = v.recovery_key(&pick(&shares, &idx)).unwrap();
                assert_eq!(got.as_bytes(), key.as_bytes(), "{idx:?}");
            }
        }
        for idx in subsets(5, 2) {
            let e = v.recovery_key(&pick(&shares, &idx)).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{idx:?}");
            // Combined anyway, two shares give another key, which opens nothing.
            let points: Vec<shamir::SharePoint> = idx
                .iter()
                .map(|&i| shamir::SharePoint { index: shares[i].index, value: shares[i].value.clone() })
                .collect();
            let wrong = shamir::combine(&points).unwrap();
            assert_ne!(wrong.as_bytes(), key.as_bytes());
            let e = keyring::recover_passphrase(&wrong, &pass("x"), v.header()).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
        }
        // Duplicates count once.
        let dup = vec![shares[0].clone(), shares[0].clone(), shares[1].clone()];
        assert_eq!(v.recovery_key(&dup).err().unwrap().kind(), ErrorKind::InvalidArgument);

        v.escrow_recover(&key, &pass("new")).unwrap();
        drop(v);
        assert_eq!(read_note(dir.path(), "new", 1), b"level 1");
        assert_eq!(read_note(dir.path(), "new", 3), b"level 3");
        let e = Vault::open(dir.path()).unwrap().unlock(&pass("pw")).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
        // The shares keep working until the next split.
        let mut v = Vault::open(dir.path()).unwrap();
        let again = v.recovery_key(&shares[2..]).unwrap();
        v.escrow_recover(&again, &pass("newer")).unwrap();
        drop(v);
        assert_eq!(read_note(dir.path(), "newer", 3), b"level 3");
    }

    #[test]
    fn wrong_shares_are_refused_with_what_is_wrong() {
        let dir = vault_with_files();
        let mut v = Vault::open(dir.path()).unwrap();
        let old = v.escrow_split(&pass("pw"), 2, 3, &[], &no_factors()).unwrap().shares;
        // A share whose value is wrong but whose checksum was recomputed
        // (not a typo: a forged or wrongly transcribed-and-rechecked share).
        let mut bytes = *old[1].value.as_bytes();
        bytes[0] ^= 1;
        let forged = EscrowShare { value: Key32::from_bytes(bytes), ..old[1].clone() };
        let forged = EscrowShare::parse(&forged.to_text()).unwrap();
        let e = v.recovery_key(&[old[0].clone(), forged]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
        // Two different shares claiming one index.
        let e = v.recovery_key(&[old[0].clone(), EscrowShare { index: 1, ..old[2].clone() }]).err().unwrap();
        assert!(e.message.contains("claim index"), "{}", e.message);
        // A new split makes the old shares useless, with a message that says so.
        let new = v.escrow_split(&pass("pw"), 2, 3, &[], &no_factors()).unwrap();
        assert!(new.replaced);
        let e = v.recovery_key(&old[..2]).err().unwrap();
        assert!(e.message.contains("current split"), "{}", e.message);
        let e = v.recovery_key(&[old[0].clone(), new.shares[1].clone()]).err().unwrap();
        assert!(e.message.contains("current split"), "{}", e.message);
        v.recovery_key(&new.shares[1..]).unwrap();
        // Shares of another vault.
        let other = vault_with_files();
        let mut w = Vault::open(other.path()).unwrap();
        let theirs = w.escrow_split(&pass("pw"), 2, 3, &[], &no_factors()).unwrap().shares;
        let e = v.recovery_key(&theirs[..2]).err().unwrap();
        assert!(e.message.contains("belongs to vault"), "{}", e.message);
        // No split at all.
        let plain = vault_with_files();
        let e = Vault::open(plain.path()).unwrap().recovery_key(&theirs[..2]).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotEnrolled);
        // A wrong passphrase makes no split.
        let e = w.escrow_split(&pass("nope"), 2, 3, &[], &no_factors()).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
        let e = w.escrow_split(&pass("pw"), 1, 3, &[], &no_factors()).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    /// Level 4 gated by a fake hardware factor (keyring level: no device).
    fn with_level4_factor(h: &Header, hw: &Key32) -> keyring::Rewrap {
        let factor = (Factor::Tpm(vec![1, 2, 3]), hw.clone());
        keyring::enroll(&pass("pw"), h, 4, &[factor], &mut |_: &[Factor]| Err("none".into())).unwrap()
    }

    #[test]
    fn escrowed_levels_open_with_the_recovery_key_only() {
        let dir = vault_with_files();
        let mut v = Vault::open(dir.path()).unwrap();
        let hw = Key32::random().unwrap();
        let new = with_level4_factor(v.header(), &hw);
        let h = new.header.clone();
        v.write_header(new, "test".into()).unwrap();
        let hw_answer = |f: &[Factor]| match f {
            [Factor::Tpm(_)] => Ok(vec![hw.clone()]),
            _ => Err("no such factor here".to_string()),
        };
        // Level 4 needs its factor to be escrowed; level 1 needs no escrow; 5 has no key.
        let e = keyring::escrow_split(&pass("pw"), &h, 2, 3, &[4], &mut |_: &[Factor]| Err("gone".into()));
        assert_eq!(e.err().unwrap().kind(), ErrorKind::FactorFailed);
        for bad in [1u8, 5] {
            let e = keyring::escrow_split(&pass("pw"), &h, 2, 3, &[bad], &mut hw_answer.clone());
            assert_eq!(e.err().unwrap().kind(), ErrorKind::InvalidArgument, "level {bad}");
        }
        let split = keyring::escrow_split(&pass("pw"), &h, 2, 3, &[4], &mut hw_answer.clone()).unwrap();
        let h2 = Header::decode(&split.rewrap.header.encode()).unwrap();
        assert_eq!(keyring::escrowed_levels(&split.recovery, &h2).unwrap(), vec![4]);

        // The passphrase alone does not open level 4; the recovery key does,
        // to the same key the hardware factor opens.
        let ring = keyring::unlock(&pass("pw"), &h2).unwrap();
        let no_hw = ring.unlock_factor_level(&h2, 4, &mut |_: &[Factor]| Err("absent".into()));
        assert_eq!(no_hw.err().unwrap().kind(), ErrorKind::FactorFailed);
        let by_hw = ring.unlock_factor_level(&h2, 4, &mut hw_answer.clone()).unwrap();
        let secret = keyring::recovery_factor_secret(&split.recovery, &h2.vault_id);
        let by_escrow = ring
            .unlock_factor_level(&h2, 4, &mut |f: &[Factor]| match f {
                [Factor::Recovery { .. }] => Ok(vec![secret.clone()]),
                _ => Err("the TPM is gone".into()),
            })
            .unwrap();
        assert_eq!(by_hw.dir_tag(42), by_escrow.dir_tag(42));
        // A wrong recovery key does not.
        let wrong = Key32::random().unwrap();
        let bad_secret = keyring::recovery_factor_secret(&wrong, &h2.vault_id);
        let e = ring.unlock_factor_level(&h2, 4, &mut |f: &[Factor]| match f {
            [Factor::Recovery { .. }] => Ok(vec![bad_secret.clone()]),
            _ => Err("the TPM is gone".into()),
        });
        assert_eq!(e.err().unwrap().kind(), ErrorKind::FactorFailed);

        // With the hardware lost, the recovery key enrolls a new factor.
        let new_hw = Key32::random().unwrap();
        let h3 = keyring::enroll(
            &pass("pw"),
            &h2,
            4,
            &[(Factor::Tpm(vec![9]), new_hw.clone())],
            &mut |f: &[Factor]| match f {
                [Factor::Recovery { .. }] => Ok(vec![secret.clone()]),
                _ => Err("the TPM is gone".into()),
            },
        )
        .unwrap()
        .header;
        let ring = keyring::unlock(&pass("pw"), &h3).unwrap();
        let by_new = ring
            .unlock_factor_level(&h3, 4, &mut |f: &[Factor]| match f {
                [Factor::Tpm(b)] if b == &vec![9] => Ok(vec![new_hw.clone()]),
                _ => Err("not this one".into()),
            })
            .unwrap();
        assert_eq!(by_new.dir_tag(42), by_hw.dir_tag(42));

        // The escrow slot never counts as the level's last slot...
        let hw_slot = h3.slots.iter().position(|s| s.level == 4 && !keyring::is_recovery_slot(s)).unwrap();
        let h4 = keyring::unenroll(&pass("pw"), &h3, hw_slot).unwrap().header;
        let last = h4.slots.iter().position(|s| s.level == 4 && !keyring::is_recovery_slot(s)).unwrap();
        assert_eq!(
            keyring::unenroll(&pass("pw"), &h4, last).err().unwrap().kind(),
            ErrorKind::InvalidArgument
        );
        // ...and a new split without level 4 drops the old escrow slot.
        let resplit = keyring::escrow_split(&pass("pw"), &h4, 2, 3, &[], &mut hw_answer.clone()).unwrap();
        let resplit_h = &resplit.rewrap.header;
        assert!(!resplit_h.slots.iter().any(keyring::is_recovery_slot));
        assert_eq!(keyring::escrowed_levels(&resplit.recovery, resplit_h).unwrap(), Vec::<u8>::new());
        assert_eq!(
            keyring::escrowed_levels(&split.recovery, resplit_h).err().unwrap().kind(),
            ErrorKind::WrongPassphrase
        );
    }

    #[test]
    fn escrow_survives_passwd_and_recover_keeps_level_slots() {
        let dir = vault_with_files();
        let mut v = Vault::open(dir.path()).unwrap();
        let shares = v.escrow_split(&pass("pw"), 2, 2, &[], &no_factors()).unwrap().shares;
        v.change_passphrase(&pass("pw"), &pass("second")).unwrap();
        let key = v.recovery_key(&shares).unwrap();
        let slots_before = v.header().slots.clone();
        v.escrow_recover(&key, &pass("third")).unwrap();
        assert_eq!(v.header().slots, slots_before);
        assert!(v.escrow().is_some());
        drop(v);
        assert_eq!(read_note(dir.path(), "third", 1), b"level 1");
    }
}
