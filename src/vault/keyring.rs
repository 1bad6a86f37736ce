//! The key hierarchy of docs/CRYPTO.md: passphrase -> KEK -> master key ->
//! level wrapping keys -> level keys -> metadata keys; the header that stores
//! the wrapped keys, and its MAC.

use crate::crypto::{self, KdfParams, Key32, KeyedHash, Passphrase, SigningKey};
use crate::format::{self, FORMAT_VERSION, Header, KeySlot, SLOT_KIND_PASSPHRASE, aad, labels};
use crate::meta::{MetaKeys, VAULT_LEVEL};

use super::error::{ErrorKind, Result, err};

/// Keys held while the vault is unlocked. Dropping it zeroizes them all.
pub struct Keyring {
    pub vault_meta: MetaKeys,
    /// Metadata keys of levels 0..=5 (level 0's is random per unlock).
    pub levels: [Option<MetaKeys>; 6],
    pub audit: SigningKey,
    /// Seals audit log leaves (HKDF `vaultfs/v1/audit-leaf` from the master key).
    pub audit_leaf: Key32,
}

fn master_aad(h: &Header) -> Vec<u8> {
    aad::build(aad::MASTER, &[&h.vault_id, &h.kdf_bytes()])
}

fn level_aad(vault_id: &[u8; 16], level: u8) -> Vec<u8> {
    aad::build(aad::LEVEL_KEY, &[vault_id, &[level]])
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
        features: 0,
        vault_id: crypto::random_array()?,
        block_size,
        kdf,
        kdf_salt: crypto::random_array()?,
        wrapped_master: [0; format::WRAPPED_KEY_LEN],
        audit_public: audit.verifying_key().0,
        wrapped_audit_seed: [0; format::WRAPPED_KEY_LEN],
        slots: Vec::new(),
        mac: [0; 32],
    };
    h.wrapped_master = wrap(&kek(pass, &h)?, &master_aad(&h), &master)?;
    let audit_wrap = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_WRAP);
    h.wrapped_audit_seed = wrap(&audit_wrap, &audit_aad(&h.vault_id, &h.audit_public), audit.seed())?;
    for level in 1..=5u8 {
        let wrapping = level_wrapping_key(&master, &h.vault_id, level);
        let wrapped = wrap(&wrapping, &level_aad(&h.vault_id, level), &Key32::random()?)?;
        h.slots.push(KeySlot { level, kind: SLOT_KIND_PASSPHRASE, params: Vec::new(), wrapped });
    }
    h.mac = header_mac(&master, &h);
    Ok(h)
}

/// Unwraps everything the passphrase alone can reach.
pub fn unlock(pass: &Passphrase, h: &Header) -> Result<Keyring> {
    let master = unwrap(&kek(pass, h)?, &master_aad(h), &h.wrapped_master)
        .map_err(|_| err(ErrorKind::WrongPassphrase, "wrong passphrase (or a damaged key header)"))?;
    if header_mac(&master, h) != h.mac {
        return Err(err(ErrorKind::Corrupt, "vault header failed authentication (MAC mismatch)"));
    }
    let vault_meta_root = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::VAULT_META);
    let audit_wrap = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_WRAP);
    let seed = unwrap(&audit_wrap, &audit_aad(&h.vault_id, &h.audit_public), &h.wrapped_audit_seed)
        .map_err(|_| err(ErrorKind::Corrupt, "audit signing key failed authentication"))?;
    let audit = SigningKey::from_seed(seed);
    if audit.verifying_key().0 != h.audit_public {
        return Err(err(ErrorKind::Corrupt, "audit signing key does not match the header's public key"));
    }
    let mut levels: [Option<MetaKeys>; 6] = Default::default();
    levels[0] = Some(MetaKeys::derive(0, &Key32::random()?, &h.vault_id));
    for slot in &h.slots {
        if slot.kind != SLOT_KIND_PASSPHRASE || levels[slot.level as usize].is_some() {
            continue;
        }
        let wrapping = level_wrapping_key(&master, &h.vault_id, slot.level);
        let key = unwrap(&wrapping, &level_aad(&h.vault_id, slot.level), &slot.wrapped).map_err(|_| {
            err(ErrorKind::Corrupt, format!("level {} key failed authentication", slot.level))
        })?;
        levels[slot.level as usize] = Some(MetaKeys::derive(slot.level, &key, &h.vault_id));
    }
    let audit_leaf = crypto::hkdf(master.as_bytes(), &h.vault_id, labels::AUDIT_LEAF);
    Ok(Keyring {
        vault_meta: MetaKeys::derive(VAULT_LEVEL, &vault_meta_root, &h.vault_id),
        levels,
        audit,
        audit_leaf,
    })
}

/// Re-wraps the master key under a new passphrase (`vaultfs passwd`); the
/// level keys and all data stay as they are.
pub fn change_passphrase(old: &Passphrase, new: &Passphrase, h: &Header) -> Result<Header> {
    let master = unwrap(&kek(old, h)?, &master_aad(h), &h.wrapped_master)
        .map_err(|_| err(ErrorKind::WrongPassphrase, "wrong passphrase"))?;
    if header_mac(&master, h) != h.mac {
        return Err(err(ErrorKind::Corrupt, "vault header failed authentication (MAC mismatch)"));
    }
    let mut n = h.clone();
    n.kdf_salt = crypto::random_array()?;
    n.wrapped_master = wrap(&kek(new, &n)?, &master_aad(&n), &master)?;
    n.mac = header_mac(&master, &n);
    Ok(n)
}
