//! Vault header, stored under store key "H".
//! Layout: magic(8) ‖ version u16 ‖ features u64 ‖ vault id(16) ‖ block size u32 ‖
//! kdf id u8 ‖ memory KiB u32 ‖ passes u32 ‖ lanes u32 ‖ salt(32) ‖ wrapped master(72) ‖
//! audit public key(32) ‖ wrapped audit seed(72) ‖ slot count u8 ‖ slots ‖
//! [recovery section, iff feature bit 0] ‖ MAC(32).
//! Slot: level u8 ‖ kind u8 ‖ params len u16 ‖ params ‖ wrapped level key(72);
//! kind 1 (passphrase) has no params, kind 2 (factors) params per `factors.rs`.
//! Recovery section: split id(16) ‖ threshold u8 ‖ share count u8 ‖ wrapped master key(72).

use super::codec::{Reader, Writer};
use super::{Error, invalid};
use crate::crypto::KdfParams;

pub const HEADER_MAGIC: &[u8; 8] = b"VAULTFS\0";
pub const FORMAT_VERSION: u16 = 1;
/// Feature bit 0: the header carries a recovery section (`vaultfs escrow
/// split`) after the key slots. Older readers refuse the vault rather than
/// misread it.
pub const FEATURE_RECOVERY: u64 = 1;
/// Feature bit 1: file blocks may live in segment files (docs/FORMAT.md
/// section 6); a build without them would read index entries as damaged blocks.
pub const FEATURE_SEGMENTS: u64 = 2;
/// Feature bit 2: one block index entry may cover a run of blocks
/// (docs/FORMAT.md 6.1); a build without runs would read them as damage.
pub const FEATURE_RUNS: u64 = 4;
/// Feature bit 3: the recovery section is a single recovery key (threshold 1
/// of 1 share, `vaultfs init --recovery-key`); a build without it would call
/// such a header damaged. Set exactly when the threshold is 1.
pub const FEATURE_SINGLE_SHARE: u64 = 8;
/// Feature flags this build understands; any other set bit means a newer
/// writer relied on something we would mishandle, so we refuse.
/// The vault keeps a rollback anchor in a TPM's NV memory (docs/ADMIN.md,
/// "Rollback anchor"): set once the anchor is first written, so that an
/// anchor that disappears later is noticed, and a build that does not check
/// it refuses the vault.
pub const FEATURE_TPM_ANCHOR: u64 = 16;
pub const FEATURES_KNOWN: u64 =
    FEATURE_RECOVERY | FEATURE_SEGMENTS | FEATURE_RUNS | FEATURE_SINGLE_SHARE | FEATURE_TPM_ANCHOR;
/// A 32-byte key sealed with XChaCha20-Poly1305: nonce(24) ‖ ct(32) ‖ tag(16).
pub const WRAPPED_KEY_LEN: usize = 72;
/// Key slot kind 1: level key wrapped by the level wrapping key alone
/// (derived from the master key).
pub const SLOT_KIND_PASSPHRASE: u8 = 1;
/// Key slot kind 2: level key wrapped by a key derived from the level
/// wrapping key and the secrets of hardware factors (params: `factors.rs`).
pub const SLOT_KIND_FACTORS: u8 = 2;
/// Levels whose keys the passphrase alone must reach; 4 and 5 have no slot
/// until a hardware factor is enrolled.
pub const PASSPHRASE_LEVELS: std::ops::RangeInclusive<u8> = 1..=3;
const KDF_ARGON2ID_V13: u8 = 1;
pub const MAX_SLOTS: usize = 32;
const MAX_SLOT_PARAMS: usize = 4096;

/// Bounds on KDF costs accepted from a header: a hostile or corrupted header
/// must not make `open` allocate tens of GiB or spin for hours.
pub struct KdfLimits {
    pub min_memory_kib: u32,
    pub max_memory_kib: u32,
    pub max_passes: u32,
    pub max_lanes: u32,
}

pub const KDF_LIMITS: KdfLimits =
    KdfLimits { min_memory_kib: 8 * 1024, max_memory_kib: 4 * 1024 * 1024, max_passes: 64, max_lanes: 16 };

impl KdfLimits {
    pub fn check(&self, p: KdfParams) -> Result<(), Error> {
        if p.memory_kib < self.min_memory_kib || p.memory_kib > self.max_memory_kib {
            return Err(invalid(
                "kdf memory",
                format!(
                    "{} KiB is outside {}..={} KiB",
                    p.memory_kib, self.min_memory_kib, self.max_memory_kib
                ),
            ));
        }
        if p.passes == 0 || p.passes > self.max_passes {
            return Err(invalid("kdf passes", format!("{} is outside 1..={}", p.passes, self.max_passes)));
        }
        if p.lanes == 0 || p.lanes > self.max_lanes {
            return Err(invalid("kdf lanes", format!("{} is outside 1..={}", p.lanes, self.max_lanes)));
        }
        Ok(())
    }
}

/// Block sizes a vault may use: powers of two from 4 KiB to 64 KiB.
pub fn validate_block_size(bs: u32) -> Result<(), Error> {
    if bs.is_power_of_two() && (4096..=65536).contains(&bs) {
        Ok(())
    } else {
        Err(invalid("block size", format!("{bs} is not a power of two in 4096..=65536")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    pub level: u8,
    pub kind: u8,
    pub params: Vec<u8>,
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

/// The escrow recovery slot: the master key wrapped under a key derived from
/// a random recovery key, which exists only as Shamir shares outside the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverySlot {
    /// Random, new at every split; each share and recovery factor names it.
    pub split_id: [u8; 16],
    /// Shares needed to rebuild the recovery key (2..=shares).
    pub threshold: u8,
    /// Shares made.
    pub shares: u8,
    /// `sealed(recovery wrap key, AAD_recovery, master key)`.
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

impl RecoverySlot {
    /// The recovery section's bytes, as bound into its AAD.
    pub fn params(&self) -> [u8; 18] {
        let mut out = [0u8; 18];
        out[..16].copy_from_slice(&self.split_id);
        out[16] = self.threshold;
        out[17] = self.shares;
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub features: u64,
    pub vault_id: [u8; 16],
    pub block_size: u32,
    pub kdf: KdfParams,
    pub kdf_salt: [u8; 32],
    pub wrapped_master: [u8; WRAPPED_KEY_LEN],
    pub audit_public: [u8; 32],
    pub wrapped_audit_seed: [u8; WRAPPED_KEY_LEN],
    pub slots: Vec<KeySlot>,
    /// Present iff `features` has `FEATURE_RECOVERY` (use `set_recovery`).
    pub recovery: Option<RecoverySlot>,
    /// Keyed BLAKE3 over `body()` with the header MAC key (from the master key).
    pub mac: [u8; 32],
}

impl Header {
    /// The KDF parameter bytes bound into the master-key wrap's AAD.
    pub fn kdf_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(45);
        w.u8(KDF_ARGON2ID_V13)
            .u32(self.kdf.memory_kib)
            .u32(self.kdf.passes)
            .u32(self.kdf.lanes)
            .bytes(&self.kdf_salt);
        w.into_vec()
    }

    /// Sets or clears the recovery section and its feature bit together.
    pub fn set_recovery(&mut self, recovery: Option<RecoverySlot>) {
        if recovery.is_some() {
            self.features |= FEATURE_RECOVERY;
        } else {
            self.features &= !FEATURE_RECOVERY;
        }
        if recovery.as_ref().is_some_and(|r| r.threshold == 1) {
            self.features |= FEATURE_SINGLE_SHARE;
        } else {
            self.features &= !FEATURE_SINGLE_SHARE;
        }
        self.recovery = recovery;
    }

    /// Everything but the MAC.
    pub fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(512);
        w.bytes(HEADER_MAGIC)
            .u16(self.version)
            .u64(self.features)
            .bytes(&self.vault_id)
            .u32(self.block_size)
            .bytes(&self.kdf_bytes())
            .bytes(&self.wrapped_master)
            .bytes(&self.audit_public)
            .bytes(&self.wrapped_audit_seed)
            .u8(self.slots.len() as u8);
        for s in &self.slots {
            w.u8(s.level).u8(s.kind).u16(s.params.len() as u16).bytes(&s.params).bytes(&s.wrapped);
        }
        if let Some(r) = &self.recovery {
            w.bytes(&r.params()).bytes(&r.wrapped);
        }
        w.into_vec()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses and bounds-checks a header. Authenticity (the MAC) needs the
    /// master key and is checked by the vault after unlocking.
    pub fn decode(bytes: &[u8]) -> Result<Header, Error> {
        let mut r = Reader::new(bytes, "header");
        if r.bytes(8)? != HEADER_MAGIC {
            return Err(Error::BadMagic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let features = r.u64()?;
        if features & !FEATURES_KNOWN != 0 {
            return Err(Error::UnknownFeatures(features & !FEATURES_KNOWN));
        }
        let vault_id = r.array()?;
        let block_size = r.u32()?;
        validate_block_size(block_size)?;
        let kdf_id = r.u8()?;
        if kdf_id != KDF_ARGON2ID_V13 {
            return Err(invalid("kdf", format!("unknown algorithm id {kdf_id}")));
        }
        let kdf = KdfParams { memory_kib: r.u32()?, passes: r.u32()?, lanes: r.u32()? };
        KDF_LIMITS.check(kdf)?;
        let kdf_salt = r.array()?;
        let wrapped_master = r.array()?;
        let audit_public = r.array()?;
        let wrapped_audit_seed = r.array()?;
        let n = r.u8()? as usize;
        if n > MAX_SLOTS {
            return Err(invalid("key slots", format!("{n} slots (at most {MAX_SLOTS})")));
        }
        let mut slots = Vec::with_capacity(n);
        let mut recovery_factors = Vec::new();
        for _ in 0..n {
            let level = r.u8()?;
            if !(1..=5).contains(&level) {
                return Err(invalid("key slot", format!("level {level} has no stored key")));
            }
            let kind = r.u8()?;
            let len = r.u16()? as usize;
            if len > MAX_SLOT_PARAMS {
                return Err(invalid("key slot", format!("{len} bytes of parameters")));
            }
            let params = r.bytes(len)?.to_vec();
            match kind {
                SLOT_KIND_PASSPHRASE if params.is_empty() => {}
                SLOT_KIND_PASSPHRASE => return Err(invalid("key slot", "passphrase slot with parameters")),
                SLOT_KIND_FACTORS => {
                    for f in super::factors::decode_factors(&params)? {
                        if let super::Factor::Recovery { split_id } = f {
                            recovery_factors.push(split_id);
                        }
                    }
                }
                _ => return Err(invalid("key slot", format!("unknown kind {kind}"))),
            }
            let wrapped = r.array()?;
            slots.push(KeySlot { level, kind, params, wrapped });
        }
        for level in PASSPHRASE_LEVELS {
            if !slots.iter().any(|s| s.level == level) {
                return Err(invalid("key slots", format!("no slot for level {level}")));
            }
        }
        if features & FEATURE_SINGLE_SHARE != 0 && features & FEATURE_RECOVERY == 0 {
            return Err(invalid(
                "recovery section",
                "feature bit 3 (a single recovery key) without the section",
            ));
        }
        let recovery = if features & FEATURE_RECOVERY != 0 {
            let split_id = r.array()?;
            let threshold = r.u8()?;
            let shares = r.u8()?;
            // Threshold 1 only with its feature bit, and the bit only with it.
            let lowest = if features & FEATURE_SINGLE_SHARE != 0 { 1 } else { 2 };
            if threshold < lowest || threshold > shares || (lowest == 1 && (threshold, shares) != (1, 1)) {
                return Err(invalid(
                    "recovery section",
                    format!(
                        "threshold {threshold} of {shares} shares with feature bit 3 {} \
                         (2 <= threshold <= shares; 1 of 1 exactly when bit 3 is set)",
                        if lowest == 1 { "set" } else { "clear" }
                    ),
                ));
            }
            Some(RecoverySlot { split_id, threshold, shares, wrapped: r.array()? })
        } else {
            None
        };
        let current = recovery.as_ref().map(|r| r.split_id);
        if recovery_factors.iter().any(|id| Some(*id) != current) {
            return Err(invalid("key slot", "recovery factor of a split the header does not hold"));
        }
        let mac = r.array()?;
        r.finish()?;
        Ok(Header {
            version,
            features,
            vault_id,
            block_size,
            kdf,
            kdf_salt,
            wrapped_master,
            audit_public,
            wrapped_audit_seed,
            slots,
            recovery,
            mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Header {
        Header {
            version: FORMAT_VERSION,
            features: 0,
            vault_id: [7; 16],
            block_size: 65536,
            kdf: KdfParams { memory_kib: 8192, passes: 1, lanes: 1 },
            kdf_salt: [1; 32],
            wrapped_master: [2; 72],
            audit_public: [3; 32],
            wrapped_audit_seed: [4; 72],
            slots: (1..=5)
                .map(|level| KeySlot {
                    level,
                    kind: SLOT_KIND_PASSPHRASE,
                    params: vec![],
                    wrapped: [level; 72],
                })
                .collect(),
            recovery: None,
            mac: [9; 32],
        }
    }

    fn with_recovery() -> Header {
        let mut h = sample();
        h.set_recovery(Some(RecoverySlot { split_id: [6; 16], threshold: 3, shares: 5, wrapped: [8; 72] }));
        h.slots.push(KeySlot {
            level: 4,
            kind: SLOT_KIND_FACTORS,
            params: crate::format::encode_factors(&[crate::format::Factor::Recovery { split_id: [6; 16] }]),
            wrapped: [5; 72],
        });
        h
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn round_trip_with_recovery() {
        let h = with_recovery();
        let bytes = h.encode();
        // 90 bytes of recovery section, and the slot: 4 + (count, type, length, split id) + 72.
        assert_eq!(bytes.len(), sample().encode().len() + 90 + 4 + (1 + 1 + 2 + 16) + 72);
        assert_eq!(u64::from_be_bytes(bytes[10..18].try_into().unwrap()), FEATURE_RECOVERY);
        assert_eq!(Header::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for h in [sample(), with_recovery()] {
            let bytes = h.encode();
            for n in 0..bytes.len() {
                assert!(Header::decode(&bytes[..n]).is_err(), "prefix {n} accepted");
            }
        }
    }

    #[test]
    fn recovery_section_is_checked() {
        // The flag without the section (and the section without the flag) misparses.
        let mut h = with_recovery();
        h.features = 0;
        assert!(Header::decode(&h.encode()).is_err());
        let mut h = sample();
        h.features = FEATURE_RECOVERY;
        assert!(Header::decode(&h.encode()).is_err());
        for (t, n) in [(1, 5), (0, 0), (4, 3)] {
            let mut h = with_recovery();
            let r = h.recovery.as_mut().unwrap();
            (r.threshold, r.shares) = (t, n);
            assert!(
                matches!(Header::decode(&h.encode()), Err(Error::Invalid { field: "recovery section", .. })),
                "{t} of {n} accepted"
            );
        }
        // A single recovery key (1 of 1) sets feature bit 3, and only then
        // is a threshold of 1 valid; the bit with a real split is damage.
        let mut h = with_recovery();
        h.set_recovery(Some(RecoverySlot { split_id: [6; 16], threshold: 1, shares: 1, wrapped: [8; 72] }));
        assert_eq!(h.features, FEATURE_RECOVERY | FEATURE_SINGLE_SHARE);
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let mut cleared = h.clone();
        cleared.features = FEATURE_RECOVERY;
        assert!(Header::decode(&cleared.encode()).is_err(), "1 of 1 without bit 3");
        let mut alone = sample();
        alone.features = FEATURE_SINGLE_SHARE;
        assert!(Header::decode(&alone.encode()).is_err(), "bit 3 without a recovery section");
        for (t, n) in [(1, 2), (2, 2), (0, 1)] {
            let mut bad = h.clone();
            let r = bad.recovery.as_mut().unwrap();
            (r.threshold, r.shares) = (t, n);
            assert!(Header::decode(&bad.encode()).is_err(), "{t} of {n} with bit 3 accepted");
        }
        // A recovery factor must name the header's split.
        let mut h = with_recovery();
        h.recovery.as_mut().unwrap().split_id = [7; 16];
        assert!(Header::decode(&h.encode()).is_err());
        let mut h = with_recovery();
        h.set_recovery(None);
        assert!(Header::decode(&h.encode()).is_err());
    }

    #[test]
    fn hostile_values_refused() {
        let mut h = sample();
        h.kdf.memory_kib = 64 * 1024 * 1024;
        assert!(matches!(Header::decode(&h.encode()), Err(Error::Invalid { field: "kdf memory", .. })));
        let mut h = sample();
        h.features = 1 << 40;
        assert_eq!(Header::decode(&h.encode()), Err(Error::UnknownFeatures(1 << 40)));
        let mut h = sample();
        h.version = 2;
        assert_eq!(Header::decode(&h.encode()), Err(Error::UnsupportedVersion(2)));
        let mut h = sample();
        h.block_size = 5000;
        assert!(Header::decode(&h.encode()).is_err());
        let mut bytes = sample().encode();
        bytes[0] = b'X';
        assert_eq!(Header::decode(&bytes), Err(Error::BadMagic));
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(Header::decode(&bytes), Err(Error::Trailing(..))));
    }
}
