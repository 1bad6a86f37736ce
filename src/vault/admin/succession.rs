//! Dead-man succession (docs/ADMIN.md "Dead-man succession", CRYPTO.md
//! "Succession"): the owner's will names an heir's public key and a check-in
//! period, and holds a bequest (the master key and the keys of chosen
//! hardware levels) sealed to the heir and, around that, sealed under a
//! key from the master key. Only a holder of the master key (the owner, or
//! the running mount) can take the bequest out, and the mount does so only
//! once the owner has not checked in for a whole period. The heir opens it
//! with their private key and claims the vault with a new passphrase.
//! Every step is an audit record (op `succession`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::{self, HeirPublic, HeirSecret, Key32, Passphrase};
use crate::format::succession::{Bequest, Release, Will, heir_public_text};
use crate::format::{self, Header, aad, hex, keys, labels};
use crate::store::{Batch, Store};
use crate::vault::audit::{AuditOp, Record};
use crate::vault::error::{ErrorKind, Result, err};
use crate::vault::factors::FactorAccess;
use crate::vault::keyring;
use crate::vault::{Caller, Locked, ROOT_INO, Unlocked, Vault};

/// errno recorded for a refused step (not due, wrong passphrase) and a bad one.
const EACCES: i32 = 13;
const EINVAL: i32 = 22;

/// A will as `succession status` shows it (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WillInfo {
    /// The will's id, hex.
    pub id: String,
    /// The heir's public key in its text form.
    pub heir: String,
    pub period_secs: u64,
    pub set_up_ms: u64,
    pub checked_in_ms: u64,
    /// When a release becomes possible.
    pub due_ms: u64,
    /// Hardware levels bequeathed besides levels 1 to 3.
    pub levels: Vec<u8>,
}

impl WillInfo {
    fn of(w: &Will) -> WillInfo {
        WillInfo {
            id: hex(&w.id),
            heir: heir_public_text(&w.heir),
            period_secs: w.period_secs,
            set_up_ms: w.set_up_ms,
            checked_in_ms: w.checked_in_ms,
            due_ms: w.due_ms(),
            levels: w.levels.clone(),
        }
    }
}

/// What a claim did.
pub struct Claimed {
    pub will_id: [u8; 16],
    /// Hardware levels that now open with the heir's passphrase.
    pub levels: Vec<u8>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn will_aad(vault_id: &[u8; 16]) -> Vec<u8> {
    aad::build(aad::SUCCESSION, &[vault_id])
}

/// HPKE `info` of a bequest: `vaultfs/v1/succession-bequest ‖ vault id ‖ will id`.
fn bequest_info(vault_id: &[u8; 16], will_id: &[u8; 16]) -> Vec<u8> {
    [labels::SUCCESSION_INFO, vault_id, will_id].concat()
}

fn read_will(store: &Store, key: &Key32, vault_id: &[u8; 16]) -> Result<Option<Will>> {
    let Some(v) = store.get(keys::WILL)? else { return Ok(None) };
    let plain = crypto::open(key, &will_aad(vault_id), &v)
        .map_err(|_| err(ErrorKind::Corrupt, "the will (store key W) failed authentication"))?;
    Ok(Some(Will::decode(&plain)?))
}

fn seal_will(w: &Will, key: &Key32, vault_id: &[u8; 16]) -> Result<Vec<u8>> {
    Ok(crypto::seal(key, &will_aad(vault_id), &w.encode())?)
}

fn short(id: &[u8; 16]) -> String {
    hex(&id[..4])
}

fn levels_text(levels: &[u8]) -> String {
    let mut all = vec!["1-3".to_string()];
    all.extend(levels.iter().map(u8::to_string));
    all.join(",")
}

fn due_text(w: &Will) -> String {
    format::time::utc(w.due_ms().saturating_mul(1_000_000))
}

/// A new will: the bequest sealed to `heir`, then the whole will under the will key.
fn make_will(
    master: &Key32,
    h: &Header,
    heir: HeirPublic,
    period_secs: u64,
    levels: Vec<(u8, Key32)>,
) -> Result<Will> {
    if period_secs == 0 {
        return Err(err(ErrorKind::InvalidArgument, "a check-in period must be at least one second"));
    }
    let id: [u8; 16] = crypto::random_array()?;
    let level_ids: Vec<u8> = levels.iter().map(|(l, _)| *l).collect();
    let bequest = Bequest { master: Key32::from_bytes(*master.as_bytes()), levels };
    let mut plain = bequest.body();
    let check = keyring::bequest_check(master, &h.vault_id, &plain);
    plain.extend_from_slice(&check);
    let sealed = crypto::seal_to_heir(&heir, &bequest_info(&h.vault_id, &id), &plain)?;
    let now = now_ms();
    Ok(Will { id, heir, period_secs, set_up_ms: now, checked_in_ms: now, levels: level_ids, bequest: sealed })
}

/// Applies `step` to the store's will: the new will (None: removed), the
/// record's path, and what to report.
fn apply_step(
    step: SuccessionChange,
    store: &Store,
    pass: &Passphrase,
    h: &Header,
    access: &FactorAccess,
) -> Result<(Option<Will>, String)> {
    let master = keyring::master_key(pass, h)?;
    let key = keyring::will_key(&master, &h.vault_id);
    let current = read_will(store, &key, &h.vault_id)?;
    match step {
        SuccessionChange::Setup { heir, period_secs, levels, replace } => {
            if let Some(w) = current.as_ref().filter(|_| !replace) {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "this vault already has a will (id {}, due {}); --replace makes a new one",
                        short(&w.id),
                        due_text(w)
                    ),
                ));
            }
            let mut levels = levels;
            levels.sort_unstable();
            levels.dedup();
            let (master, keys) = keyring::bequeathed_keys(pass, h, &levels, &mut |f| access.secrets(f))?;
            let w = make_will(&master, h, heir, period_secs, keys)?;
            let what = format!(
                "succession setup {} heir {} period {}s levels {}",
                short(&w.id),
                hex(&heir.0[..4]),
                period_secs,
                levels_text(&w.levels)
            );
            Ok((Some(w), what))
        }
        SuccessionChange::Checkin => {
            let Some(mut w) = current else {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "this vault has no will (`vaultfs succession setup`)",
                ));
            };
            w.checked_in_ms = now_ms().max(w.set_up_ms);
            let what = format!("succession checkin {} due {}", short(&w.id), due_text(&w));
            Ok((Some(w), what))
        }
        SuccessionChange::Cancel => {
            let Some(w) = current else {
                return Err(err(ErrorKind::InvalidArgument, "this vault has no will to cancel"));
            };
            Ok((None, format!("succession cancel {}", short(&w.id))))
        }
    }
}

fn will_batch(will: Option<&Will>, master_will_key: &Key32, vault_id: &[u8; 16]) -> Result<Batch> {
    let mut batch = Batch::default();
    match will {
        Some(w) => batch.put(keys::WILL, seal_will(w, master_will_key, vault_id)?),
        None => batch.delete(keys::WILL),
    }
    Ok(batch)
}

fn record(who: Caller, comm: &[u8], path: String) -> Record {
    Record {
        who,
        comm: comm.to_vec(),
        op: AuditOp::Succession,
        level: None,
        ino: ROOT_INO,
        path: path.into_bytes(),
        offset: 0,
        len: 0,
        note: Vec::new(),
    }
}

/// The setup, check-in or cancel a command asked for.
pub enum SuccessionChange {
    Setup { heir: HeirPublic, period_secs: u64, levels: Vec<u8>, replace: bool },
    Checkin,
    Cancel,
}

/// A rotation of a level the will bequeaths would leave the heir its old
/// key, and the bequest cannot be re-made without every bequeathed level's
/// factors: refuse, saying how to go on.
pub(in crate::vault) fn refuse_rotation(store: &Store, master: &Key32, h: &Header, level: u8) -> Result<()> {
    match read_will(store, &keyring::will_key(master, &h.vault_id), &h.vault_id)? {
        Some(w) if w.levels.contains(&level) => Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "level {level} is bequeathed by the will {}: its bequest holds the current key. Cancel the will \
                 (`vaultfs succession cancel`), rotate, then set it up again",
                short(&w.id)
            ),
        )),
        _ => Ok(()),
    }
}

impl Vault<Locked> {
    /// Sets up, checks in or cancels the will of a closed vault (the
    /// owner's passphrase; a setup asks the bequeathed levels' factors).
    pub fn succession_change(
        &mut self,
        pass: &Passphrase,
        change: SuccessionChange,
        access: &FactorAccess,
    ) -> Result<Option<WillInfo>> {
        let h = &self.0.header;
        let (will, what) = apply_step(change, &self.0.store, pass, h, access)?;
        let master = keyring::master_key(pass, h)?;
        let batch = will_batch(will.as_ref(), &keyring::will_key(&master, &h.vault_id), &h.vault_id)?;
        let ring = keyring::unlock_with_master(&master, h)?;
        let log = ring.open_log(&self.0.store, h.vault_id)?;
        let rec = Record::offline(AuditOp::Succession, b"vaultfs", None, ROOT_INO, what.into_bytes(), 0);
        log.append_with(&self.0.store, rec.leaf(0), batch)?;
        self.0.store.flush()?;
        Ok(will.as_ref().map(WillInfo::of))
    }

    /// The will of a closed vault (the owner's passphrase opens it).
    pub fn succession_status(&self, pass: &Passphrase) -> Result<Option<WillInfo>> {
        let h = &self.0.header;
        let master = keyring::master_key(pass, h)?;
        Ok(read_will(&self.0.store, &keyring::will_key(&master, &h.vault_id), &h.vault_id)?
            .as_ref()
            .map(WillInfo::of))
    }

    /// The heir's claim: opens `release` with `heir`, checks it against this
    /// vault and its current will, sets passphrase `new` and gives each
    /// bequeathed hardware level a slot that opens with it; the will is
    /// spent. One header write with the `succession` record.
    pub fn succession_claim(
        &mut self,
        release: &Release,
        heir: &HeirSecret,
        new: &Passphrase,
    ) -> Result<Claimed> {
        let h = &self.0.header;
        if release.vault_id != h.vault_id {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "this release is for vault {}…, not this one ({}…)",
                    short(&release.vault_id),
                    short(&h.vault_id)
                ),
            ));
        }
        let plain =
            crypto::open_as_heir(heir, &bequest_info(&h.vault_id, &release.will_id), &release.bequest)
                .map_err(|_| {
                    err(
                        ErrorKind::WrongPassphrase,
                        "the heir key does not open this release (another heir's key, or a damaged release)",
                    )
                })?;
        let (bequest, body, check) = Bequest::decode(&plain)?;
        if !crypto::tags_equal(&keyring::bequest_check(&bequest.master, &h.vault_id, body), &check) {
            return Err(err(
                ErrorKind::Corrupt,
                "the release's bequest fails its check: not made by this vault",
            ));
        }
        keyring::check_bequest_master(&bequest.master, h)?;
        let will_key = keyring::will_key(&bequest.master, &h.vault_id);
        match read_will(&self.0.store, &will_key, &h.vault_id)? {
            Some(w) if w.id == release.will_id => {}
            Some(w) => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "this release is from will {}, but the vault's will is now {}: the owner replaced it",
                        short(&release.will_id),
                        short(&w.id)
                    ),
                ));
            }
            None => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "this release is from will {}, which was cancelled or already claimed",
                        short(&release.will_id)
                    ),
                ));
            }
        }
        let levels: Vec<u8> = bequest.levels.iter().map(|(l, _)| *l).collect();
        let rewrap = keyring::claim(bequest.master, &bequest.levels, new, h)?;
        let mut batch = Batch::default();
        batch.delete(keys::WILL);
        let what = format!("succession claim {} levels {}", short(&release.will_id), levels_text(&levels));
        self.write_header_with(rewrap, AuditOp::Succession, what, batch)?;
        Ok(Claimed { will_id: release.will_id, levels })
    }
}

impl Vault<Unlocked> {
    /// Sets up, checks in or cancels the will of a mounted vault (through
    /// its control socket, with the owner's passphrase); a refusal is recorded too.
    pub fn succession_change_mounted(
        &self,
        who: Caller,
        comm: &[u8],
        pass: &Passphrase,
        change: SuccessionChange,
        access: &FactorAccess,
    ) -> Result<Option<WillInfo>> {
        let core = self.core();
        let h = core.header();
        let step_name = match change {
            SuccessionChange::Setup { .. } => "setup",
            SuccessionChange::Checkin => "checkin",
            SuccessionChange::Cancel => "cancel",
        };
        let (will, what) = match apply_step(change, &core.store, pass, &h, access) {
            Ok(x) => x,
            Err(e) => {
                let code = if e.kind() == ErrorKind::InvalidArgument { EINVAL } else { EACCES };
                self.record(record(who, comm, format!("succession {step_name} refused")), code, true)?;
                return Err(e);
            }
        };
        let batch = will_batch(will.as_ref(), &core.keys.will, &h.vault_id)?;
        core.audit.append_with(&core.store, record(who, comm, what).leaf(0), batch)?;
        core.store.flush()?;
        Ok(will.as_ref().map(WillInfo::of))
    }

    /// Records, once per mount and will check-in, that the will has fallen
    /// due (`noted` remembers which): a security team learns that the owner
    /// missed a check-in before anyone asks for a release.
    pub(in crate::vault) fn note_overdue_will(&self, noted: &mut Option<([u8; 16], u64)>) -> Result<()> {
        let core = self.core();
        let Some(w) = read_will(&core.store, &core.keys.will, &core.header().vault_id)? else {
            return Ok(());
        };
        if now_ms() < w.due_ms() || *noted == Some((w.id, w.checked_in_ms)) {
            return Ok(());
        }
        *noted = Some((w.id, w.checked_in_ms));
        let what = format!(
            "succession due {}: no check-in since {}",
            short(&w.id),
            format::time::utc(w.checked_in_ms.saturating_mul(1_000_000))
        );
        self.record(record(self.daemon(), b"vaultfs", what), 0, true)
    }

    /// The will of a mounted vault, if any.
    pub fn succession_status_mounted(&self) -> Result<Option<WillInfo>> {
        let core = self.core();
        Ok(read_will(&core.store, &core.keys.will, &core.header().vault_id)?.as_ref().map(WillInfo::of))
    }

    /// The release of a due will: what the heir needs, recorded. Refused
    /// (and recorded) while the owner's last check-in is within the period.
    pub fn succession_release(&self, who: Caller, comm: &[u8]) -> Result<(Release, WillInfo)> {
        let core = self.core();
        let vid = core.header().vault_id;
        let Some(w) = read_will(&core.store, &core.keys.will, &vid)? else {
            self.record(record(who, comm, "succession release refused: no will".into()), EINVAL, true)?;
            return Err(err(
                ErrorKind::InvalidArgument,
                "this vault has no will (`vaultfs succession setup`)",
            ));
        };
        if now_ms() < w.due_ms() {
            let what =
                format!("succession release {} refused: not due before {}", short(&w.id), due_text(&w));
            self.record(record(who, comm, what), EACCES, true)?;
            return Err(err(
                ErrorKind::NotDue,
                format!(
                    "the owner checked in at {}; a release is possible from {} (period {} s)",
                    format::time::utc(w.checked_in_ms.saturating_mul(1_000_000)),
                    due_text(&w),
                    w.period_secs
                ),
            ));
        }
        self.record(record(who, comm, format!("succession release {}", short(&w.id))), 0, true)?;
        Ok((Release { vault_id: vid, will_id: w.id, bequest: w.bequest.clone() }, WillInfo::of(&w)))
    }
}
