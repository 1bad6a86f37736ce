//! The keys of a level rotation (`vaultfs rotate`, docs/CRYPTO.md
//! "Rotation"): the level's current key, opened through every one of its
//! slots, a new random level key and a seed for the new file keys. While the
//! data is re-encrypted the new key and seed wait in the store, sealed under
//! the old level key (the rotation record), so an interrupted rotation
//! resumes with the same keys; the last step re-wraps the level's slots.

use super::{
    FactorSecrets, factor_slot_aad, factor_wrap_key, header_mac, level_aad, level_wrapping_key, master_key,
    passphrase_levels, unwrap, wrap,
};
use crate::crypto::{self, Key32, Passphrase};
use crate::format::{self, Header, SLOT_KIND_PASSPHRASE, aad, labels};
use crate::vault::error::{ErrorKind, Result, err};

/// Plaintext of a rotation record: the new level key ‖ the file key seed.
const RECORD_LEN: usize = 64;

pub struct Rotation {
    pub level: u8,
    master: Key32,
    /// The level key every stored record of the level is sealed under now.
    pub old: Key32,
    /// The level key they move to.
    pub new: Key32,
    /// New file keys are derived from it (`file_key`); it dies with the record.
    seed: Key32,
    /// Whether the keys came from an interrupted run's record.
    pub resumed: bool,
    /// The secrets of each factor slot of the level (header index, secrets),
    /// asked once at the start and used again to re-wrap at the end.
    slot_secrets: Vec<(usize, Vec<Key32>)>,
}

impl Rotation {
    /// Opens `level`'s key through every one of its slots (a rotation must
    /// re-wrap them all: a slot that cannot answer now would be left holding
    /// the old key) and takes the new keys from `pending`, the stored
    /// rotation record of an interrupted run, or makes them.
    pub fn begin(
        pass: &Passphrase,
        h: &Header,
        level: u8,
        pending: Option<&[u8]>,
        secrets: &mut FactorSecrets,
    ) -> Result<Rotation> {
        if !(1..=5).contains(&level) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("level {level} cannot be rotated (level 0's key is new at every mount already)"),
            ));
        }
        let master = master_key(pass, h)?;
        let vid = &h.vault_id;
        if !h.slots.iter().any(|s| s.level == level) {
            return Err(err(
                ErrorKind::NotEnrolled,
                format!("level {level} has no key yet: nothing to rotate"),
            ));
        }
        let mut keys: Vec<Key32> = Vec::new();
        if let Some((_, key)) = passphrase_levels(&master, h)?.into_iter().find(|(l, _)| *l == level) {
            keys.push(key);
        }
        let wrapping = level_wrapping_key(&master, vid, level);
        let mut slot_secrets = Vec::new();
        for (i, slot) in
            h.slots.iter().enumerate().filter(|(_, s)| s.level == level && s.kind != SLOT_KIND_PASSPHRASE)
        {
            let factors = format::decode_factors(&slot.params)?;
            let got = secrets(&factors).map_err(|e| {
                err(
                    ErrorKind::FactorFailed,
                    format!(
                        "key slot {i} of level {level} did not answer ({e}); a rotation re-wraps every \
                         slot of the level: make its factor available (an escrow slot needs \
                         --share-file), or unenroll the slot first"
                    ),
                )
            })?;
            let wrap_key = factor_wrap_key(&wrapping, vid, level, &got);
            let key = unwrap(&wrap_key, &factor_slot_aad(vid, level, &slot.params), &slot.wrapped).map_err(
                |_| {
                    err(
                        ErrorKind::FactorFailed,
                        format!("key slot {i} of level {level}: the factor's secret does not open it"),
                    )
                },
            )?;
            keys.push(key);
            slot_secrets.push((i, got));
        }
        let old = keys.pop().expect("a level with a slot yielded its key or an error");
        if keys.iter().any(|k| k.as_bytes() != old.as_bytes()) {
            return Err(err(
                ErrorKind::Corrupt,
                format!("the key slots of level {level} hold different keys"),
            ));
        }
        let (new, seed, resumed) = match pending {
            Some(value) => {
                let plain = crypto::open(&record_key(&old, vid), &record_aad(vid, level), value)
                    .ok()
                    .filter(|p| p.len() == RECORD_LEN)
                    .ok_or_else(|| {
                        err(
                            ErrorKind::Corrupt,
                            format!("the pending rotation record of level {level} failed authentication"),
                        )
                    })?;
                (Key32::from_slice(&plain[..32])?, Key32::from_slice(&plain[32..])?, true)
            }
            None => (Key32::random()?, Key32::random()?, false),
        };
        Ok(Rotation { level, master, old, new, seed, resumed, slot_secrets })
    }

    /// The master key (the caller's audit log keys come from it).
    pub fn master(&self) -> &Key32 {
        &self.master
    }

    /// The rotation record's value: `sealed(HKDF(old level key,
    /// "vaultfs/v1/rotation"), AAD_rotation, new level key ‖ seed)`.
    pub fn record(&self, vault_id: &[u8; 16]) -> Result<Vec<u8>> {
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(RECORD_LEN));
        plain.extend_from_slice(self.new.as_bytes());
        plain.extend_from_slice(self.seed.as_bytes());
        Ok(crypto::seal(&record_key(&self.old, vault_id), &record_aad(vault_id, self.level), &plain)?)
    }

    /// The new file key of inode `ino` (generation `generation`): the same
    /// in every run of one rotation, so a file half re-encrypted when a run
    /// was interrupted is finished with the key its new blocks already use.
    pub fn file_key(&self, vault_id: &[u8; 16], ino: u64, generation: u64) -> Key32 {
        crypto::hkdf(self.seed.as_bytes(), vault_id, &labels::rotated_file_key(ino, generation))
    }

    /// The header with every slot of the level re-wrapped around the new key.
    pub fn finish(&self, h: &Header) -> Result<Header> {
        let vid = &h.vault_id;
        let wrapping = level_wrapping_key(&self.master, vid, self.level);
        let mut n = h.clone();
        for (i, slot) in n.slots.iter_mut().enumerate().filter(|(_, s)| s.level == self.level) {
            slot.wrapped = if slot.kind == SLOT_KIND_PASSPHRASE {
                wrap(&wrapping, &level_aad(vid, self.level), &self.new)?
            } else {
                let Some((_, got)) = self.slot_secrets.iter().find(|(j, _)| *j == i) else {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("key slot {i} appeared during the rotation"),
                    ));
                };
                let wrap_key = factor_wrap_key(&wrapping, vid, self.level, got);
                wrap(&wrap_key, &factor_slot_aad(vid, self.level, &slot.params), &self.new)?
            };
        }
        n.mac = header_mac(&self.master, &n);
        Ok(n)
    }
}

/// HKDF(old level key, salt = vault id, info = `vaultfs/v1/rotation`).
fn record_key(old: &Key32, vault_id: &[u8; 16]) -> Key32 {
    crypto::hkdf(old.as_bytes(), vault_id, labels::ROTATION)
}

/// `AAD_rotation = "vaultfs/v1/aad/rotation" ‖ u16 1 ‖ vault id ‖ u8 level`.
fn record_aad(vault_id: &[u8; 16], level: u8) -> Vec<u8> {
    aad::build(aad::ROTATION, &[vault_id, &[level]])
}
