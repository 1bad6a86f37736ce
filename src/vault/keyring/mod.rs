//! The key hierarchy of docs/CRYPTO.md: passphrase -> KEK -> master key ->
//! level wrapping keys -> level keys -> metadata keys; the header that stores
//! the wrapped keys, and its MAC.

use std::sync::{Arc, RwLock};

use crate::crypto::{self, KdfParams, Key32, KeyedHash, Passphrase, SigningKey};
use crate::format::{
    self, FORMAT_VERSION, Factor, Header, KeySlot, PASSPHRASE_LEVELS, RecoverySlot, SLOT_KIND_FACTORS,
    SLOT_KIND_PASSPHRASE, aad, labels,
};
use crate::meta::{MetaKeys, VAULT_LEVEL};

use super::error::{ErrorKind, Result, err};

mod rotation;
pub use rotation::Rotation;

/// Keys held while the vault is unlocked. Dropping it zeroizes them all.
pub struct Keyring {
    pub vault_meta: Arc<MetaKeys>,
    /// Metadata keys of levels 0..=5 (level 0's is random per unlock); a
    /// locked level's slot is empty. Shared out as `Arc` so a lock takes
    /// effect for every operation that starts after it.
    pub levels: RwLock<[Option<Arc<MetaKeys>>; 6]>,
    pub audit: SigningKey,
    /// Seals audit log leaves (HKDF `vaultfs/v1/audit-leaf` from the master key).
    pub audit_leaf: Key32,
    /// Seals the owner's will (HKDF `vaultfs/v1/succession`): the daemon
    /// releases a due bequest without asking anyone's passphrase.
    pub will: Key32,
    /// Wrapping keys of the levels that have factor slots: useless without
    /// the factor secrets, which are asked for at each unlock. Changed only
    /// when a mounted vault's header is rewritten (`follow`).
    factor_wrapping: RwLock<[Option<Key32>; 6]>,
}

/// A rewritten header and the master key it authenticates under (the
/// caller records the change in the audit log, whose keys come from it).
pub struct Rewrap {
    pub header: Header,
    pub master: Key32,
}

/// Secrets of a factor slot's factors, in the slot's order; an error says
/// why this slot cannot be opened (no device, wrong PIN, PCRs changed...).
pub type FactorSecrets<'a> = dyn FnMut(&[Factor]) -> std::result::Result<Vec<Key32>, String> + 'a;

fn master_aad(h: &Header) -> Vec<u8> {
    aad::build(aad::MASTER, &[&h.vault_id, &h.kdf_bytes()])
}

fn level_aad(vault_id: &[u8; 16], level: u8) -> Vec<u8> {
    aad::build(aad::LEVEL_KEY, &[vault_id, &[level]])
}

/// A factor slot's AAD also binds its parameters (the factor list), so one
/// slot's wrapped key never opens under another slot's description.
fn factor_slot_aad(vault_id: &[u8; 16], level: u8, params: &[u8]) -> Vec<u8> {
    let digest = crypto::sha256(params);
    aad::build(aad::LEVEL_KEY, &[vault_id, &[level], &digest])
}

/// HKDF(level wrapping key ‖ secret₁ ‖ … ‖ secretₙ, salt = vault id,
/// info = `vaultfs/v1/level-factors/N`).
fn factor_wrap_key(wrapping: &Key32, vault_id: &[u8; 16], level: u8, secrets: &[Key32]) -> Key32 {
    let mut ikm = zeroize::Zeroizing::new(Vec::with_capacity(32 * (1 + secrets.len())));
    ikm.extend_from_slice(wrapping.as_bytes());
    for s in secrets {
        ikm.extend_from_slice(s.as_bytes());
    }
    crypto::hkdf(&ikm, vault_id, &labels::level_factors(level))
}

fn audit_aad(vault_id: &[u8; 16], public: &[u8; 32]) -> Vec<u8> {
    aad::build(aad::AUDIT_KEY, &[vault_id, public])
}

fn wrap(key: &Key32, aad: &[u8], secret: &Key32) -> Result<[u8; format::WRAPPED_KEY_LEN]> {
    let v = crypto::seal(key, aad, secret.as_bytes())?;
    Ok(v.try_into().expect("a sealed 32-byte key is WRAPPED_KEY_LEN bytes"))
}

fn unwrap(key: &Key32, aad: &[u8], wrapped: &[u8]) -> std::result::Result<Key32, crypto::Error> {
    Key32::from_slice(&crypto::open(key, aad, wrapped)?)
}

fn copy(k: &Key32) -> Key32 {
    Key32::from_bytes(*k.as_bytes())
}

fn level_wrapping_key(master: &Key32, vault_id: &[u8; 16], level: u8) -> Key32 {
    crypto::hkdf(master.as_bytes(), vault_id, &labels::level(level))
}

fn header_mac(master: &Key32, h: &Header) -> [u8; 32] {
    let k = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::HEADER_MAC);
    KeyedHash::new(&k).update(&h.body()).finalize32()
}

fn kek(pass: &Passphrase, h: &Header) -> Result<Key32> {
    crypto::argon2id(pass.as_bytes(), &h.kdf_salt, h.kdf)
        .map_err(|e| err(ErrorKind::Unsupported, format!("key derivation: {e}")))
}

/// Builds a new header with fresh master, level and audit keys.
pub fn new_header(pass: &Passphrase, kdf: KdfParams, block_size: u32) -> Result<Header> {
    format::KDF_LIMITS.check(kdf)?;
    format::validate_block_size(block_size)?;
    let master = Key32::random()?;
    let audit = SigningKey::from_seed(Key32::random()?);
    let mut h = Header {
        version: FORMAT_VERSION,
        features: format::FEATURE_SEGMENTS | format::FEATURE_RUNS,
        vault_id: crypto::random_array()?,
        block_size,
        kdf,
        kdf_salt: crypto::random_array()?,
        wrapped_master: [0; format::WRAPPED_KEY_LEN],
        audit_public: audit.verifying_key().0,
        wrapped_audit_seed: [0; format::WRAPPED_KEY_LEN],
        slots: Vec::new(),
        recovery: None,
        mac: [0; 32],
    };
    h.wrapped_master = wrap(&kek(pass, &h)?, &master_aad(&h), &master)?;
    let audit_wrap = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_WRAP);
    h.wrapped_audit_seed = wrap(&audit_wrap, &audit_aad(&h.vault_id, &h.audit_public), audit.seed())?;
    for level in PASSPHRASE_LEVELS {
        let wrapping = level_wrapping_key(&master, &h.vault_id, level);
        let wrapped = wrap(&wrapping, &level_aad(&h.vault_id, level), &Key32::random()?)?;
        h.slots.push(KeySlot { level, kind: SLOT_KIND_PASSPHRASE, params: Vec::new(), wrapped });
    }
    h.mac = header_mac(&master, &h);
    Ok(h)
}

/// The master key, if `pass` is right and the header authenticates.
pub fn master_key(pass: &Passphrase, h: &Header) -> Result<Key32> {
    let master = unwrap(&kek(pass, h)?, &master_aad(h), &h.wrapped_master)
        .map_err(|_| err(ErrorKind::WrongPassphrase, "wrong passphrase (or a damaged key header)"))?;
    if header_mac(&master, h) != h.mac {
        return Err(err(ErrorKind::Corrupt, "vault header failed authentication (MAC mismatch)"));
    }
    Ok(master)
}

/// Ok if `pass` unwraps the master key and the header authenticates.
pub fn check_passphrase(pass: &Passphrase, h: &Header) -> Result<()> {
    master_key(pass, h).map(drop)
}

/// The level keys the passphrase alone reaches (passphrase slots).
fn passphrase_levels(master: &Key32, h: &Header) -> Result<Vec<(u8, Key32)>> {
    let mut out: Vec<(u8, Key32)> = Vec::new();
    for slot in h.slots.iter().filter(|s| s.kind == SLOT_KIND_PASSPHRASE) {
        if out.iter().any(|(l, _)| *l == slot.level) {
            continue;
        }
        let wrapping = level_wrapping_key(master, &h.vault_id, slot.level);
        let key = unwrap(&wrapping, &level_aad(&h.vault_id, slot.level), &slot.wrapped).map_err(|_| {
            err(ErrorKind::Corrupt, format!("level {} key failed authentication", slot.level))
        })?;
        out.push((slot.level, key));
    }
    Ok(out)
}

/// Unwraps everything the passphrase alone can reach; levels with only
/// factor slots stay locked until `unlock_factor_level`.
pub fn unlock(pass: &Passphrase, h: &Header) -> Result<Keyring> {
    unlock_with_master(&master_key(pass, h)?, h)
}

/// `unlock` from the master key (a caller that needs both derives it once).
pub fn unlock_with_master(master: &Key32, h: &Header) -> Result<Keyring> {
    let vault_meta_root = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::VAULT_META);
    let audit_wrap = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_WRAP);
    let seed = unwrap(&audit_wrap, &audit_aad(&h.vault_id, &h.audit_public), &h.wrapped_audit_seed)
        .map_err(|_| err(ErrorKind::Corrupt, "audit signing key failed authentication"))?;
    let audit = SigningKey::from_seed(seed);
    if audit.verifying_key().0 != h.audit_public {
        return Err(err(ErrorKind::Corrupt, "audit signing key does not match the header's public key"));
    }
    let mut levels: [Option<Arc<MetaKeys>>; 6] = Default::default();
    levels[0] = Some(Arc::new(MetaKeys::derive(0, &Key32::random()?, &h.vault_id)));
    for (level, key) in passphrase_levels(master, h)? {
        levels[level as usize] = Some(Arc::new(MetaKeys::derive(level, &key, &h.vault_id)));
    }
    let audit_leaf = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_LEAF);
    Ok(Keyring {
        vault_meta: Arc::new(MetaKeys::derive(VAULT_LEVEL, &vault_meta_root, &h.vault_id)),
        levels: RwLock::new(levels),
        audit,
        audit_leaf,
        will: will_key(master, &h.vault_id),
        factor_wrapping: RwLock::new(factor_wrapping(master, h)),
    })
}

/// The wrapping keys of `h`'s levels that have factor slots.
fn factor_wrapping(master: &Key32, h: &Header) -> [Option<Key32>; 6] {
    let mut out: [Option<Key32>; 6] = Default::default();
    for slot in h.slots.iter().filter(|s| s.kind == SLOT_KIND_FACTORS) {
        out[slot.level as usize] = Some(level_wrapping_key(master, &h.vault_id, slot.level));
    }
    out
}

/// The metadata keys of the levels `pass` opens (after a lock or lockdown).
pub fn reopen_passphrase_levels(pass: &Passphrase, h: &Header) -> Result<Vec<(u8, MetaKeys)>> {
    let master = master_key(pass, h)?;
    Ok(passphrase_levels(&master, h)?
        .into_iter()
        .map(|(level, key)| (level, MetaKeys::derive(level, &key, &h.vault_id)))
        .collect())
}

/// Tries each factor slot of `level` in header order: the first whose
/// factors yield secrets that unwrap the key wins. The error lists why each
/// slot failed.
fn open_factor_slots(wrapping: &Key32, h: &Header, level: u8, secrets: &mut FactorSecrets) -> Result<Key32> {
    let mut why = Vec::new();
    for (i, slot) in
        h.slots.iter().enumerate().filter(|(_, s)| s.level == level && s.kind == SLOT_KIND_FACTORS)
    {
        let factors = format::decode_factors(&slot.params)?;
        match secrets(&factors) {
            Ok(got) => {
                let wrap_key = factor_wrap_key(wrapping, &h.vault_id, level, &got);
                match unwrap(&wrap_key, &factor_slot_aad(&h.vault_id, level, &slot.params), &slot.wrapped) {
                    Ok(key) => return Ok(key),
                    Err(_) => why.push(format!("slot {i}: the factor's secret does not open this slot")),
                }
            }
            Err(e) => why.push(format!("slot {i}: {e}")),
        }
    }
    if why.is_empty() {
        return Err(err(ErrorKind::NotEnrolled, format!("level {level} has no hardware factor enrolled")));
    }
    Err(err(ErrorKind::FactorFailed, format!("level {level} stays locked: {}", why.join("; "))))
}

impl Keyring {
    /// The metadata keys of `level`, derived from what its factors yield.
    pub fn unlock_factor_level(
        &self,
        h: &Header,
        level: u8,
        secrets: &mut FactorSecrets,
    ) -> Result<MetaKeys> {
        // A copy, so that no lock is held while a factor is asked (a touch).
        let wrapping = self.read_wrapping().get(level as usize).and_then(Option::as_ref).map(copy);
        let Some(wrapping) = wrapping else {
            return Err(err(
                ErrorKind::NotEnrolled,
                format!("level {level} has no hardware factor enrolled"),
            ));
        };
        let key = open_factor_slots(&wrapping, h, level, secrets)?;
        Ok(MetaKeys::derive(level, &key, &h.vault_id))
    }

    /// The vault's audit log, appending with this keyring's leaf and signing keys.
    pub fn open_log(
        &self,
        store: &crate::store::Store,
        vault_id: [u8; 16],
    ) -> Result<crate::audit::log::Log> {
        let leaf_key = Key32::from_bytes(*self.audit_leaf.as_bytes());
        let signer = SigningKey::from_seed(Key32::from_bytes(*self.audit.seed().as_bytes()));
        // A read-only mount's store holds its host's log, named after it.
        Ok(crate::audit::log::Log::open_named(store, vault_id, store.reader_host(), leaf_key, signer)?)
    }

    /// Whether `level` opens with hardware factors.
    pub fn has_factor_slots(&self, level: u8) -> bool {
        self.read_wrapping().get(level as usize).is_some_and(Option::is_some)
    }

    /// Takes the factor levels of a header rewritten while mounted (an
    /// enrollment makes a level open with factors from now on).
    pub fn follow(&self, new: &Rewrap) {
        *self.factor_wrapping.write().unwrap_or_else(|p| p.into_inner()) =
            factor_wrapping(&new.master, &new.header);
    }

    fn read_wrapping(&self) -> std::sync::RwLockReadGuard<'_, [Option<Key32>; 6]> {
        self.factor_wrapping.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Adds a factor slot for `level` (`vaultfs enroll`). The level key comes
/// from the level's passphrase slot (which is then removed: from now on the
/// factors are needed), else from one of its factor slots (`existing`), else
/// it is new (the level had no key yet).
pub fn enroll(
    pass: &Passphrase,
    h: &Header,
    level: u8,
    factors: &[(Factor, Key32)],
    existing: &mut FactorSecrets,
) -> Result<Rewrap> {
    if !(3..=5).contains(&level) {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("hardware factors gate levels 3 to 5, not {level}"),
        ));
    }
    let master = master_key(pass, h)?;
    let wrapping = level_wrapping_key(&master, &h.vault_id, level);
    let key = if let Some((_, key)) = passphrase_levels(&master, h)?.into_iter().find(|(l, _)| *l == level) {
        key
    } else if h.slots.iter().any(|s| s.level == level) {
        open_factor_slots(&wrapping, h, level, existing)?
    } else {
        Key32::random()?
    };
    let list: Vec<Factor> = factors.iter().map(|(f, _)| f.clone()).collect();
    let secrets: Vec<Key32> = factors.iter().map(|(_, s)| Key32::from_bytes(*s.as_bytes())).collect();
    let params = format::encode_factors(&list);
    let wrap_key = factor_wrap_key(&wrapping, &h.vault_id, level, &secrets);
    let wrapped = wrap(&wrap_key, &factor_slot_aad(&h.vault_id, level, &params), &key)?;
    let mut n = h.clone();
    n.slots.retain(|s| !(s.level == level && s.kind == SLOT_KIND_PASSPHRASE));
    n.slots.push(KeySlot { level, kind: SLOT_KIND_FACTORS, params, wrapped });
    if n.slots.len() > format::MAX_SLOTS {
        return Err(err(ErrorKind::InvalidArgument, format!("at most {} key slots", format::MAX_SLOTS)));
    }
    n.mac = header_mac(&master, &n);
    Ok(Rewrap { header: n, master })
}

/// Removes factor slot `index` (its position in the header). The last slot
/// of a level is never removed: its key, and every file of the level, would
/// be lost with it.
pub fn unenroll(pass: &Passphrase, h: &Header, index: usize) -> Result<Rewrap> {
    let master = master_key(pass, h)?;
    let Some(slot) = h.slots.get(index).filter(|s| s.kind == SLOT_KIND_FACTORS) else {
        return Err(err(ErrorKind::InvalidArgument, format!("there is no factor slot {index}")));
    };
    // A level always keeps a slot that opens without the escrow shares.
    if !is_recovery_slot(slot)
        && h.slots.iter().filter(|s| s.level == slot.level && !is_recovery_slot(s)).count() == 1
    {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("slot {index} is level {}'s last key slot; enroll another factor first", slot.level),
        ));
    }
    let mut n = h.clone();
    n.slots.remove(index);
    n.mac = header_mac(&master, &n);
    Ok(Rewrap { header: n, master })
}

/// `h` with feature `bits` set, re-authenticated under the master key
/// (the first unlock of a vault written before segment files).
pub fn with_features(master: &Key32, h: &Header, bits: u64) -> Header {
    let mut n = h.clone();
    n.features |= bits;
    n.mac = header_mac(master, &n);
    n
}

/// Re-wraps the master key under a new passphrase (`vaultfs passwd`); the
/// level keys and all data stay as they are.
pub fn change_passphrase(old: &Passphrase, new: &Passphrase, h: &Header) -> Result<Rewrap> {
    rewrap_master(master_key(old, h)?, new, h)
}

/// The one way a passphrase is (re)set on an existing vault: new salt, new
/// KEK, the same master key re-wrapped, a new MAC. `passwd` and `escrow
/// recover` differ only in how they got the master key.
fn rewrap_master(master: Key32, new: &Passphrase, h: &Header) -> Result<Rewrap> {
    if new.is_empty() {
        return Err(err(ErrorKind::InvalidArgument, "empty passphrase"));
    }
    let mut n = h.clone();
    n.kdf_salt = crypto::random_array()?;
    n.wrapped_master = wrap(&kek(new, &n)?, &master_aad(&n), &master)?;
    n.mac = header_mac(&master, &n);
    Ok(Rewrap { header: n, master })
}

// ---- Escrow: a recovery key split into Shamir shares (docs/CRYPTO.md, "Escrow").

/// `AAD_recovery = "vaultfs/v1/aad/recovery" ‖ u16 1 ‖ vault id ‖ split id ‖ threshold ‖ shares`.
fn recovery_aad(vault_id: &[u8; 16], r: &RecoverySlot) -> Vec<u8> {
    aad::build(aad::RECOVERY, &[vault_id, &r.params()])
}

/// HKDF(recovery key, salt = vault id, info = `vaultfs/v1/recovery`): wraps the master key.
fn recovery_wrap_key(recovery: &Key32, vault_id: &[u8; 16]) -> Key32 {
    crypto::hkdf(recovery.as_bytes(), vault_id, labels::RECOVERY)
}

/// HKDF(recovery key, salt = vault id, info = `vaultfs/v1/recovery-factor`):
/// the factor secret of the slots that escrow levels with factors.
pub fn recovery_factor_secret(recovery: &Key32, vault_id: &[u8; 16]) -> Key32 {
    crypto::hkdf(recovery.as_bytes(), vault_id, labels::RECOVERY_FACTOR)
}

/// Whether `s` is a factor slot opened by the recovery key (an escrowed level).
pub fn is_recovery_slot(s: &KeySlot) -> bool {
    s.kind == SLOT_KIND_FACTORS
        && format::decode_factors(&s.params).is_ok_and(|f| matches!(f[..], [Factor::Recovery { .. }]))
}

/// What `escrow_split` made: the new header and the recovery key to share out.
pub struct Split {
    pub rewrap: Rewrap,
    pub recovery: Key32,
}

/// A new recovery key (`vaultfs escrow split`): the recovery section wraps
/// the master key under it, replacing any earlier one, whose escrow slots
/// die with it. Each level of `escrow_levels` (levels with hardware factor
/// slots) gets a factor slot the recovery key opens; its level key is
/// opened with the level's factors (`existing`) first.
pub fn escrow_split(
    pass: &Passphrase,
    h: &Header,
    threshold: u8,
    shares: u8,
    escrow_levels: &[u8],
    existing: &mut FactorSecrets,
) -> Result<Split> {
    if threshold < 1 || threshold > shares || (threshold == 1 && shares != 1) {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "threshold {threshold} of {shares} shares: need 2 <= threshold <= shares <= 255, \
                 or 1 of 1 (a single recovery key)"
            ),
        ));
    }
    let master = master_key(pass, h)?;
    let vid = &h.vault_id;
    let mut levels = escrow_levels.to_vec();
    levels.sort_unstable();
    levels.dedup();
    let mut escrowed = Vec::new();
    for level in levels {
        if h.slots.iter().any(|s| s.level == level && s.kind == SLOT_KIND_PASSPHRASE) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("level {level} opens with the passphrase: the recovery key restores it already"),
            ));
        }
        if !h.slots.iter().any(|s| s.level == level && !is_recovery_slot(s)) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("level {level} has no key yet: enroll its hardware factor first"),
            ));
        }
        let wrapping = level_wrapping_key(&master, vid, level);
        let key = open_factor_slots(&wrapping, h, level, existing)?;
        escrowed.push((level, wrapping, key));
    }
    let recovery = Key32::random()?;
    let mut slot = RecoverySlot {
        split_id: crypto::random_array()?,
        threshold,
        shares,
        wrapped: [0; format::WRAPPED_KEY_LEN],
    };
    slot.wrapped = wrap(&recovery_wrap_key(&recovery, vid), &recovery_aad(vid, &slot), &master)?;
    let mut n = h.clone();
    n.slots.retain(|s| !is_recovery_slot(s));
    for level in 1..=5u8 {
        if h.slots.iter().any(|s| s.level == level) && !n.slots.iter().any(|s| s.level == level) {
            // unenroll never leaves a level with escrow slots only; refuse rather than lose its key.
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "level {level} opens only with the current recovery key; enroll a factor for it first"
                ),
            ));
        }
    }
    let secret = recovery_factor_secret(&recovery, vid);
    let params = format::encode_factors(&[Factor::Recovery { split_id: slot.split_id }]);
    for (level, wrapping, key) in escrowed {
        let wrap_key = factor_wrap_key(&wrapping, vid, level, std::slice::from_ref(&secret));
        let wrapped = wrap(&wrap_key, &factor_slot_aad(vid, level, &params), &key)?;
        n.slots.push(KeySlot { level, kind: SLOT_KIND_FACTORS, params: params.clone(), wrapped });
    }
    if n.slots.len() > format::MAX_SLOTS {
        return Err(err(ErrorKind::InvalidArgument, format!("at most {} key slots", format::MAX_SLOTS)));
    }
    n.set_recovery(Some(slot));
    n.mac = header_mac(&master, &n);
    Ok(Split { rewrap: Rewrap { header: n, master }, recovery })
}

/// The master key, if `recovery` is this vault's recovery key and the header authenticates.
fn recovery_master(recovery: &Key32, h: &Header) -> Result<Key32> {
    let Some(r) = &h.recovery else {
        return Err(err(
            ErrorKind::NotEnrolled,
            "this vault has no recovery key (`vaultfs escrow split` makes one)",
        ));
    };
    let master = unwrap(&recovery_wrap_key(recovery, &h.vault_id), &recovery_aad(&h.vault_id, r), &r.wrapped)
        .map_err(|_| {
            err(
                ErrorKind::WrongPassphrase,
                "the shares do not rebuild this vault's recovery key (too few of them, or one is wrong)",
            )
        })?;
    if header_mac(&master, h) != h.mac {
        return Err(err(ErrorKind::Corrupt, "vault header failed authentication (MAC mismatch)"));
    }
    Ok(master)
}

/// The levels whose escrow slot `recovery` opens; an error if it is not
/// this vault's recovery key or an escrow slot fails authentication.
pub fn escrowed_levels(recovery: &Key32, h: &Header) -> Result<Vec<u8>> {
    let master = recovery_master(recovery, h)?;
    let secret = recovery_factor_secret(recovery, &h.vault_id);
    let mut out = Vec::new();
    for slot in h.slots.iter().filter(|s| is_recovery_slot(s)) {
        let wrapping = level_wrapping_key(&master, &h.vault_id, slot.level);
        let wrap_key = factor_wrap_key(&wrapping, &h.vault_id, slot.level, std::slice::from_ref(&secret));
        unwrap(&wrap_key, &factor_slot_aad(&h.vault_id, slot.level, &slot.params), &slot.wrapped).map_err(
            |_| err(ErrorKind::Corrupt, format!("level {}'s escrow slot failed authentication", slot.level)),
        )?;
        out.push(slot.level);
    }
    Ok(out)
}

/// Sets a new passphrase with the recovery key instead of the old
/// passphrase (`vaultfs escrow recover`): the same re-wrap as `passwd`.
pub fn recover_passphrase(recovery: &Key32, new: &Passphrase, h: &Header) -> Result<Rewrap> {
    rewrap_master(recovery_master(recovery, h)?, new, h)
}

// ---- Dead-man succession (docs/CRYPTO.md, "Succession").

/// HKDF(master, salt = vault id, info = `vaultfs/v1/succession`): seals the will.
pub fn will_key(master: &Key32, vault_id: &[u8; 16]) -> Key32 {
    crypto::hkdf(master.as_bytes(), vault_id, labels::SUCCESSION)
}

/// BLAKE3-keyed(HKDF(master, `vaultfs/v1/succession-check`), body): proves a
/// bequest was made by a holder of the master key, not merely sealed to the heir.
pub fn bequest_check(master: &Key32, vault_id: &[u8; 16], body: &[u8]) -> [u8; 32] {
    let k = crypto::hkdf(master.as_bytes(), vault_id, labels::SUCCESSION_CHECK);
    KeyedHash::new(&k).update(body).finalize32()
}

/// The keys of hardware factor levels `levels` (4, 5), opened with their
/// factors (`existing`), for a bequest. A level that opens with the
/// passphrase is refused: the master key in the bequest reaches it already.
pub fn bequeathed_keys(
    pass: &Passphrase,
    h: &Header,
    levels: &[u8],
    existing: &mut FactorSecrets,
) -> Result<(Key32, Vec<(u8, Key32)>)> {
    let master = master_key(pass, h)?;
    let mut out = Vec::new();
    for &level in levels {
        if !format::succession::BEQUEATHABLE.contains(&level) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "level {level}: a will names hardware factor levels (4, 5); levels 1 to 3 always pass"
                ),
            ));
        }
        if h.slots.iter().any(|s| s.level == level && s.kind == SLOT_KIND_PASSPHRASE) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "level {level} opens with the passphrase: the bequest's master key reaches it already"
                ),
            ));
        }
        if !h.slots.iter().any(|s| s.level == level && !is_recovery_slot(s)) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("level {level} has no key yet: enroll its hardware factor first"),
            ));
        }
        let wrapping = level_wrapping_key(&master, &h.vault_id, level);
        out.push((level, open_factor_slots(&wrapping, h, level, existing)?));
    }
    Ok((master, out))
}

/// The master key of a bequest, if it authenticates this header.
pub fn check_bequest_master(master: &Key32, h: &Header) -> Result<()> {
    if header_mac(master, h) != h.mac {
        return Err(err(
            ErrorKind::Corrupt,
            "the release's master key does not authenticate this vault's header (another vault's release?)",
        ));
    }
    Ok(())
}

/// The heir's claim: the master key re-wrapped under the heir's passphrase
/// `new` (as `passwd` does), and a passphrase slot for each bequeathed
/// hardware level (replacing none: the owner's factor slots stay until
/// the heir unenrolls them).
pub fn claim(master: Key32, levels: &[(u8, Key32)], new: &Passphrase, h: &Header) -> Result<Rewrap> {
    check_bequest_master(&master, h)?;
    let mut with_slots = h.clone();
    for (level, key) in levels {
        with_slots.slots.retain(|s| !(s.level == *level && s.kind == SLOT_KIND_PASSPHRASE));
        let wrapping = level_wrapping_key(&master, &h.vault_id, *level);
        let wrapped = wrap(&wrapping, &level_aad(&h.vault_id, *level), key)?;
        with_slots.slots.push(KeySlot {
            level: *level,
            kind: SLOT_KIND_PASSPHRASE,
            params: Vec::new(),
            wrapped,
        });
    }
    if with_slots.slots.len() > format::MAX_SLOTS {
        return Err(err(ErrorKind::InvalidArgument, format!("at most {} key slots", format::MAX_SLOTS)));
    }
    rewrap_master(master, new, &with_slots)
}
