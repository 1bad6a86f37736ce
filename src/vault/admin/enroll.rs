//! Enrolling hardware factors on a closed vault (`vaultfs enroll`,
//! `vaultfs unenroll`), and changing the passphrase of a mounted one: each
//! rewrites the header in one atomic store write, so a crash leaves the old
//! header or the new one.

use crate::crypto::{Key32, Passphrase};
use crate::format::{self, EscrowShare, Factor, SLOT_KIND_FACTORS, SLOT_KIND_PASSPHRASE, keys};
use crate::store::Batch;
use crate::vault::error::{ErrorKind, Result, err};
use crate::vault::factors::FactorAccess;
use crate::vault::keyring;
use crate::vault::{AuditOp, Caller, Locked, ROOT_INO, Record, Unlocked, Vault};

/// Which factor to enroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorKind {
    Tpm,
    Fido2 { presence: bool },
}

impl FactorKind {
    /// The name in `header` records and messages (as `Factor::name`).
    pub fn name(self) -> &'static str {
        match self {
            FactorKind::Tpm => "tpm",
            FactorKind::Fido2 { .. } => "fido2",
        }
    }
}

/// One key slot as `vaultfs enroll --list` and `status` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    pub index: usize,
    pub level: u8,
    /// "passphrase", or the factors joined by "+" ("fido2+tpm").
    pub opens_with: String,
    /// PCRs, PIN and presence details.
    pub details: String,
}

/// The factor kinds of `level`'s first hardware factor slot in `h`.
fn level_factor_kinds(h: &format::Header, level: u8) -> Result<Vec<FactorKind>> {
    let Some(slot) = h
        .slots
        .iter()
        .find(|s| s.level == level && s.kind == SLOT_KIND_FACTORS && !keyring::is_recovery_slot(s))
    else {
        return Ok(Vec::new());
    };
    Ok(format::decode_factors(&slot.params)?
        .iter()
        .filter_map(|f| match f {
            Factor::Tpm(_) => Some(FactorKind::Tpm),
            Factor::Fido2(c) => Some(FactorKind::Fido2 { presence: c.presence }),
            Factor::Recovery { .. } => None,
        })
        .collect())
}

/// The factors an enrollment of `first` for `level` needs: hardware factors
/// gate levels 3 to 5, and level 5 takes the level-4 factor too unless
/// `alone` (so the most secret level never opens with less than level 4).
fn enroll_kinds(h: &format::Header, level: u8, first: FactorKind, alone: bool) -> Result<Vec<FactorKind>> {
    if !(3..=5).contains(&level) {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("hardware factors gate levels 3 to 5, not {level}"),
        ));
    }
    let mut kinds = vec![first];
    if level == 5 && !alone {
        let level4 = level_factor_kinds(h, 4)?;
        if level4.is_empty() {
            return Err(err(
                ErrorKind::InvalidArgument,
                "level 5 also takes the level-4 factor by default: enroll level 4 first, or pass --alone",
            ));
        }
        for k in level4 {
            if !kinds.iter().any(|have| std::mem::discriminant(have) == std::mem::discriminant(&k)) {
                kinds.push(k);
            }
        }
    }
    Ok(kinds)
}

/// The factors asked for, and the key each new one answers with.
fn make_factors(kinds: &[FactorKind], access: &FactorAccess) -> Result<Vec<(Factor, Key32)>> {
    kinds
        .iter()
        .map(|kind| match kind {
            FactorKind::Tpm => access.new_tpm_factor(),
            FactorKind::Fido2 { presence } => access.new_fido2_factor(*presence),
        })
        .collect()
}

/// The `header` record's path for an enrollment.
fn enroll_note(kinds: &[FactorKind], level: u8) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    format!("enroll {} level {level}", names.join("+"))
}

impl Vault<Locked> {
    pub fn slots(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        for (index, s) in self.0.header.slots.iter().enumerate() {
            let (opens_with, details) = match s.kind {
                SLOT_KIND_PASSPHRASE => ("passphrase".to_string(), String::new()),
                _ => {
                    let factors = format::decode_factors(&s.params)?;
                    let names: Vec<&str> = factors.iter().map(Factor::name).collect();
                    let details: Vec<String> = factors
                        .iter()
                        .filter_map(|f| match f {
                            Factor::Fido2(c) => Some(format!(
                                "fido2: presence {}, PIN {}",
                                if c.presence { "required" } else { "not required" },
                                if c.pin { "required" } else { "not required" }
                            )),
                            Factor::Tpm(_) | Factor::Recovery { .. } => None,
                        })
                        .collect();
                    (names.join("+"), details.join("; "))
                }
            };
            out.push(SlotInfo { index, level: s.level, opens_with, details });
        }
        Ok(out)
    }

    /// The factor kinds of `level`'s first hardware factor slot ("the level-4 factor").
    pub fn level_factor_kinds(&self, level: u8) -> Result<Vec<FactorKind>> {
        level_factor_kinds(&self.0.header, level)
    }

    /// The factors an enrollment of `first` for `level` needs (see [`enroll_kinds`]).
    pub fn enroll_kinds(&self, level: u8, first: FactorKind, alone: bool) -> Result<Vec<FactorKind>> {
        enroll_kinds(&self.0.header, level, first, alone)
    }

    /// Adds a key slot for `level` that needs all of `kinds` together. The
    /// level's passphrase slot, if it had one, is removed: from now on the
    /// factors are needed. Adding a slot to a level that has factor slots
    /// already (a backup key) needs one of those to answer.
    pub fn enroll(
        &mut self,
        pass: &Passphrase,
        level: u8,
        kinds: &[FactorKind],
        access: &FactorAccess,
    ) -> Result<()> {
        if kinds.is_empty() {
            return Err(err(ErrorKind::InvalidArgument, "no factor to enroll"));
        }
        // Check the passphrase before asking for touches.
        keyring::reopen_passphrase_levels(pass, &self.0.header)?;
        let made = make_factors(kinds, access)?;
        let new = keyring::enroll(pass, &self.0.header, level, &made, &mut |f: &[Factor]| access.secrets(f))?;
        self.write_header(new, enroll_note(kinds, level))
    }

    /// Removes key slot `index` (never a level's last one).
    pub fn unenroll(&mut self, pass: &Passphrase, index: usize) -> Result<()> {
        let new = keyring::unenroll(pass, &self.0.header, index)?;
        self.write_header(new, unenroll_note(&self.0.header, index))
    }

    /// Replaces the header and records why (`what`): one store batch holding
    /// the new header and an audit leaf (op `header`), flushed before this
    /// returns. A crash leaves the old header or the new one, never a mix
    /// (tests/passwd_crash.rs kills `passwd` at random points to check it).
    pub(in crate::vault) fn write_header(&mut self, new: keyring::Rewrap, what: String) -> Result<()> {
        self.write_header_with(new, AuditOp::Header, what, Batch::default())
    }

    /// `write_header` recorded as `op`, with more changes in the same batch.
    pub(in crate::vault) fn write_header_with(
        &mut self,
        new: keyring::Rewrap,
        op: AuditOp,
        what: String,
        mut batch: Batch,
    ) -> Result<()> {
        let ring = keyring::unlock_with_master(&new.master, &new.header)?;
        let log = ring.open_log(&self.0.store, new.header.vault_id)?;
        batch.put(keys::HEADER, new.header.encode());
        let record = Record::offline(op, b"vaultfs", None, ROOT_INO, what.into_bytes(), 0);
        log.append_with(&self.0.store, record.leaf(0), batch)?;
        self.0.store.flush()?;
        self.0.header = new.header;
        Ok(())
    }
}

/// The `header` record's path for removing slot `index` of `h`.
fn unenroll_note(h: &format::Header, index: usize) -> String {
    let level = h.slots.get(index).map_or(0, |s| s.level);
    format!("unenroll slot {index} level {level}")
}

/// errno recorded for a refused header change (wrong passphrase, failed
/// factor), one that failed in storage, and one asked wrongly.
const EACCES: i32 = 13;
const EIO: i32 = 5;
const EINVAL: i32 = 22;

impl Vault<Unlocked> {
    /// `vaultfs passwd` on a mounted vault, through its control socket: the
    /// same re-wrap as on a closed vault. The running daemon reads its header
    /// from here, so the new passphrase works at once (lockdown exit,
    /// passphrase levels) and the old one no more.
    pub fn change_passphrase_mounted(
        &self,
        who: Caller,
        comm: &[u8],
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<()> {
        self.rewrite_header_mounted(
            who,
            comm,
            |_| "passwd".into(),
            |h| Ok((keyring::change_passphrase(old, new, h)?, ())),
        )
    }

    /// `vaultfs enroll` on a mounted vault, through its control socket: the
    /// daemon asks for the new factors (its TPM, a touch of the key) and
    /// `shares` (if any) stand in for a lost factor of an escrowed level, as
    /// on a closed vault. Returns the factors the level now opens with.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll_mounted(
        &self,
        who: Caller,
        comm: &[u8],
        pass: &Passphrase,
        level: u8,
        first: FactorKind,
        alone: bool,
        shares: &[EscrowShare],
        mut access: FactorAccess,
    ) -> Result<Vec<FactorKind>> {
        let kinds = enroll_kinds(&self.core().header(), level, first, alone)?;
        self.rewrite_header_mounted(
            who,
            comm,
            |_| enroll_note(&kinds, level),
            |h| {
                if !shares.is_empty() {
                    let key = super::escrow::recovery_key(h, shares)?;
                    super::escrow::accept_escrow(h, &key, &mut access)?;
                }
                // The passphrase before any touch.
                keyring::reopen_passphrase_levels(pass, h)?;
                let made = make_factors(&kinds, &access)?;
                Ok((keyring::enroll(pass, h, level, &made, &mut |f: &[Factor]| access.secrets(f))?, ()))
            },
        )?;
        Ok(kinds)
    }

    /// `vaultfs unenroll` on a mounted vault, through its control socket.
    pub fn unenroll_mounted(&self, who: Caller, comm: &[u8], pass: &Passphrase, index: usize) -> Result<()> {
        self.rewrite_header_mounted(
            who,
            comm,
            |h| unenroll_note(h, index),
            |h| Ok((keyring::unenroll(pass, h, index)?, ())),
        )
    }

    /// Rewrites the key header of a mounted vault: `change` makes the new
    /// one from the current, under the header's write lock (two changes
    /// never interleave); the header and a `header` record naming the caller
    /// and `what` the change is (from the current header) land in one store
    /// batch, flushed before this returns. A
    /// refused change (wrong passphrase, a factor that failed) is recorded
    /// with EACCES and writes nothing.
    pub(in crate::vault) fn rewrite_header_mounted<T>(
        &self,
        who: Caller,
        comm: &[u8],
        what: impl FnOnce(&format::Header) -> String,
        change: impl FnOnce(&format::Header) -> Result<(keyring::Rewrap, T)>,
    ) -> Result<T> {
        let core = self.core();
        let mut current = core.header.write().unwrap_or_else(|p| p.into_inner());
        let record = Record {
            who,
            comm: comm.to_vec(),
            op: AuditOp::Header,
            level: None,
            ino: ROOT_INO,
            path: what(&current).into_bytes(),
            offset: 0,
            len: 0,
            note: Vec::new(),
        };
        let (rewrap, out) = match change(&current) {
            Ok(r) => r,
            Err(e) => {
                let code = match e.kind() {
                    ErrorKind::Io => EIO,
                    ErrorKind::InvalidArgument => EINVAL,
                    _ => EACCES,
                };
                self.record(record, code, true)?;
                return Err(e);
            }
        };
        let mut batch = Batch::default();
        batch.put(keys::HEADER, rewrap.header.encode());
        core.audit.append_with(&core.store, record.leaf(0), batch)?;
        core.store.flush()?;
        core.keys.follow(&rewrap);
        *current = std::sync::Arc::new(rewrap.header);
        Ok(out)
    }
}
