//! Levels at run time: which are open, locking and unlocking them, and
//! lockdown. Opening a level means deriving its key (from the passphrase,
//! or from hardware factors for levels enrolled with them); locking drops
//! the key, zeroized once the last operation holding it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{ErrorKind, Result, err};
use super::keyring::{self, FactorSecrets};
use super::rules::{lockable_levels, rules};
use super::types::LEVEL_COUNT;
use super::{AuditOp, Caller, Core, Record, Unlocked, Vault};
use crate::crypto::Passphrase;
use crate::format::keys;
use crate::meta::MetaKeys;
use crate::store::Batch;

/// Run-time level state kept beside the keys.
pub(super) struct LevelGates {
    lockdown: AtomicBool,
    /// Last access per level, in ms since the epoch (for relock after idle).
    last_used: [AtomicU64; 6],
}

/// What `status` reports for a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelState {
    Open,
    Locked,
    /// Needs a hardware factor and has none enrolled: cannot be opened.
    NotEnrolled,
}

impl LevelState {
    pub fn name(self) -> &'static str {
        match self {
            LevelState::Open => "open",
            LevelState::Locked => "locked",
            LevelState::NotEnrolled => "not enrolled",
        }
    }
}

impl Default for LevelGates {
    /// Every level counts as used now: idle time starts at unlock.
    fn default() -> Self {
        LevelGates {
            lockdown: AtomicBool::new(false),
            last_used: std::array::from_fn(|_| AtomicU64::new(now_ms())),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Core {
    pub(super) fn set_level_keys(&self, level: u8, keys: Option<MetaKeys>) {
        let mut levels = self.keys.levels.write().unwrap_or_else(|p| p.into_inner());
        levels[level as usize] = keys.map(Arc::new);
    }

    pub(super) fn level_open(&self, level: u8) -> bool {
        let levels = self.keys.levels.read().unwrap_or_else(|p| p.into_inner());
        levels.get(level as usize).is_some_and(Option::is_some)
    }

    pub(super) fn touch_level(&self, level: u8) {
        if let Some(t) = self.gates.last_used.get(level as usize) {
            t.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Restores a lockdown that was on when the vault was last mounted.
    pub(super) fn load_lockdown(&self) -> Result<()> {
        if self.store.get(keys::LOCKDOWN)?.is_some() {
            self.gates.lockdown.store(true, Ordering::SeqCst);
            for level in lockable_levels() {
                self.set_level_keys(level, None);
            }
        }
        Ok(())
    }
}

impl Vault<Unlocked> {
    pub fn level_state(&self, level: u8) -> LevelState {
        let core = self.core();
        if core.level_open(level) {
            LevelState::Open
        } else if level >= 4 && !core.header().slots.iter().any(|s| s.level == level) {
            LevelState::NotEnrolled
        } else {
            LevelState::Locked
        }
    }

    pub fn lockdown_active(&self) -> bool {
        self.core().gates.lockdown.load(Ordering::SeqCst)
    }

    /// How long `level` has gone without an access.
    pub fn level_idle(&self, level: u8) -> Duration {
        let last = self.core().gates.last_used.get(level as usize).map_or(0, |t| t.load(Ordering::Relaxed));
        Duration::from_millis(now_ms().saturating_sub(last))
    }

    /// Whether `level` opens with hardware factors (else with the passphrase).
    pub fn level_uses_factors(&self, level: u8) -> bool {
        self.core().keys.has_factor_slots(level)
    }

    fn level_record(&self, who: Caller, comm: &[u8], op: AuditOp, level: Option<u8>) -> Record {
        let path = match level {
            Some(l) => format!("/{}", super::LEVEL_NAMES[l as usize]).into_bytes(),
            None => b"/".to_vec(),
        };
        let ino = level.map_or(super::ROOT_INO, super::level_dir);
        Record { who, comm: comm.to_vec(), op, level, ino, path, offset: 0, len: 0, note: Vec::new() }
    }

    /// Records a level event durably (result 0, or EACCES if refused, EIO
    /// if storage failed); a failure to record fails the event.
    fn record_level<T>(
        &self,
        who: Caller,
        comm: &[u8],
        op: AuditOp,
        level: Option<u8>,
        r: &Result<T>,
    ) -> Result<()> {
        let code = match r {
            Ok(_) => 0,
            Err(e) if e.kind() == ErrorKind::Io => EIO,
            Err(_) => EACCES,
        };
        self.record(self.level_record(who, comm, op, level), code, true)
    }

    /// Opens `level`: with hardware factors if it has factor slots (`secrets`
    /// is asked for each slot's factors), else with `pass`. Refused in
    /// lockdown. Recorded either way.
    pub fn unlock_level(
        &self,
        who: Caller,
        comm: &[u8],
        level: u8,
        pass: Option<&Passphrase>,
        secrets: &mut FactorSecrets,
    ) -> Result<()> {
        let r = self.unlock_level_inner(level, pass, secrets);
        self.record_level(who, comm, AuditOp::Unlock, Some(level), &r)?;
        r
    }

    fn unlock_level_inner(
        &self,
        level: u8,
        pass: Option<&Passphrase>,
        secrets: &mut FactorSecrets,
    ) -> Result<()> {
        let core = self.core();
        if !(1..6).contains(&level) {
            return Err(err(ErrorKind::InvalidArgument, format!("there is no level {level} to unlock")));
        }
        if self.lockdown_active() && rules(Some(level)).lockable {
            return Err(err(ErrorKind::Lockdown, "lockdown is on: leave it with `vaultfs lockdown --exit`"));
        }
        if core.level_open(level) {
            return Ok(());
        }
        let keys = if core.keys.has_factor_slots(level) {
            core.keys.unlock_factor_level(&core.header(), level, secrets)?
        } else if let Some(pass) = pass {
            keyring::reopen_passphrase_levels(pass, &core.header())?
                .into_iter()
                .find_map(|(l, k)| (l == level).then_some(k))
                .ok_or_else(|| err(ErrorKind::NotEnrolled, format!("level {level} has no key slot")))?
        } else if self.level_state(level) == LevelState::NotEnrolled {
            return Err(err(
                ErrorKind::NotEnrolled,
                format!("level {level} has no hardware factor enrolled (`vaultfs enroll`)"),
            ));
        } else {
            return Err(err(ErrorKind::WrongPassphrase, format!("level {level} opens with the passphrase")));
        };
        core.set_level_keys(level, Some(keys));
        core.touch_level(level);
        Ok(())
    }

    /// Closes `level` (or every lockable level): its key is dropped and
    /// zeroized once in-flight operations finish. Recorded.
    pub fn lock_level(&self, who: Caller, comm: &[u8], level: Option<u8>) -> Result<()> {
        let levels: Vec<u8> = match level {
            Some(l) if l < LEVEL_COUNT && rules(Some(l)).lockable => vec![l],
            Some(l) => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!("level {l} cannot be locked (only 2 to 5)"),
                ));
            }
            None => lockable_levels().collect(),
        };
        self.core().approvals.revoke_all();
        for l in levels {
            if self.core().level_open(l) {
                self.core().set_level_keys(l, None);
                self.record_level(who, comm, AuditOp::Lock, Some(l), &Ok(()))?;
            }
        }
        Ok(())
    }

    /// Lockdown: every level above 1 closes now and refuses to open until
    /// `lockdown_exit`; survives remounts (a marker in the store).
    pub fn lockdown(&self, who: Caller, comm: &[u8]) -> Result<()> {
        let core = self.core();
        core.gates.lockdown.store(true, Ordering::SeqCst);
        for level in lockable_levels() {
            core.set_level_keys(level, None);
        }
        core.approvals.revoke_all();
        let stamp = now_ms().to_be_bytes().to_vec();
        // On disk before the reply, whatever the commit interval: a crash
        // right after must not reopen the levels.
        let r: Result<()> =
            core.store.put(keys::LOCKDOWN, stamp).and_then(|()| core.store.flush()).map_err(Into::into);
        self.record_level(who, comm, AuditOp::Lockdown, None, &r)?;
        r
    }

    /// A cluster vault's lockdown is the vault's: a lockdown made on another
    /// host (its marker, read from etcd at every upkeep tick) closes this
    /// mount's levels too, recorded here (docs/GATES.md, "Lockdown across
    /// hosts"). Leaving it stays each host's own `lockdown --exit`.
    pub(super) fn follow_lockdown(&self) -> Result<()> {
        let core = self.core();
        if !core.store.is_cluster()
            || self.lockdown_active()
            || core.store.get_fresh(keys::LOCKDOWN)?.is_none()
        {
            return Ok(());
        }
        core.gates.lockdown.store(true, Ordering::SeqCst);
        for level in lockable_levels() {
            core.set_level_keys(level, None);
        }
        core.approvals.revoke_all();
        tracing::warn!("lockdown made on another host: every level above 1 is closed here too");
        let mut record = self.level_record(self.daemon(), b"vaultfs", AuditOp::Lockdown, None);
        record.note = b"made on another host".to_vec();
        self.record(record, 0, true)
    }

    /// Leaves lockdown: needs the passphrase and, if any level is enrolled
    /// with hardware factors, one of those factors (it opens its level).
    /// The passphrase levels open again.
    pub fn lockdown_exit(
        &self,
        who: Caller,
        comm: &[u8],
        pass: &Passphrase,
        secrets: &mut FactorSecrets,
    ) -> Result<()> {
        let r = if let Some(why) = self.policy_holds_lockdown() {
            Err(err(ErrorKind::Lockdown, why))
        } else {
            self.lockdown_exit_inner(pass, secrets)
        };
        self.record_level(who, comm, AuditOp::Lockdown, None, &r)?;
        r?;
        self.policy_after_lockdown();
        Ok(())
    }

    fn lockdown_exit_inner(&self, pass: &Passphrase, secrets: &mut FactorSecrets) -> Result<()> {
        let core = self.core();
        let reopened = keyring::reopen_passphrase_levels(pass, &core.header())?;
        let factor_levels: Vec<u8> = (1..6u8).filter(|l| core.keys.has_factor_slots(*l)).collect();
        let mut opened = Vec::new();
        if !factor_levels.is_empty() {
            let mut why = Vec::new();
            for &l in &factor_levels {
                match core.keys.unlock_factor_level(&core.header(), l, secrets) {
                    Ok(k) => {
                        opened.push((l, k));
                        break;
                    }
                    Err(e) => why.push(e.to_string()),
                }
            }
            if opened.is_empty() {
                return Err(err(
                    ErrorKind::FactorFailed,
                    format!("lockdown stays on: no enrolled hardware factor answered ({})", why.join("; ")),
                ));
            }
        }
        let mut clear = Batch::default();
        clear.delete(keys::LOCKDOWN);
        core.store.apply(clear)?;
        core.gates.lockdown.store(false, Ordering::SeqCst);
        for (l, k) in reopened.into_iter().chain(opened) {
            core.set_level_keys(l, Some(k));
            core.touch_level(l);
        }
        Ok(())
    }
}

// Result codes in records are Linux errno numbers (docs/AUDIT.md).
const EACCES: i32 = 13;
const EIO: i32 = 5;
