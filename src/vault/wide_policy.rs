//! The vault's policy on a cluster vault (docs/POLICY.md, "The vault's
//! policy"): a policy stored in the vault, sealed under the vault metadata
//! key, that every host's mount follows on top of its own policy file. Any
//! host sets it (`vaultfs policy set`); every mount reads it at mount and at
//! each upkeep tick, and enforces the strictest of its file and it, under
//! the rule every reload follows: a running mount never loosens.

use std::sync::Mutex;

use super::error::{ErrorKind, Result, err};
use super::{Caller, Unlocked, Vault};
use crate::format::keys;
use crate::policy::Policy;

/// The name `policy` records give the vault's policy (where a host's
/// records give the path of its file).
pub const VAULT_POLICY_NAME: &str = "vault:policy";

/// Result codes of `policy` records about the vault's policy.
const EINVAL: i32 = 22;
const EPERM: i32 = 1;
const EIO: i32 = 5;

/// What this mount knows of the vault's policy.
#[derive(Default)]
pub(super) struct VaultPolicyState {
    inner: Mutex<Seen>,
    /// Held through one look at the stored value and what follows from it
    /// (the upkeep thread's, or `policy set`'s), so each value is judged
    /// and recorded once.
    following: Mutex<()>,
}

#[derive(Default)]
struct Seen {
    /// The stored value last looked at (None: absent), so that each new
    /// value is judged, and recorded, once.
    stored: Option<Vec<u8>>,
    /// The vault's policy in force here: the last one accepted.
    accepted: Option<Policy>,
    /// Its text, for `vaultfs policy show`.
    text: Option<String>,
    /// The last value refused (ns since the epoch, why), while no later
    /// one was accepted: for `vaultfs status`.
    refused: Option<(u64, String)>,
}

impl VaultPolicyState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The vault's policy in `text`, its secret patterns compiled once to be
/// sure they do (the scanner is built from them when applied).
fn parse(text: &str) -> Result<Policy> {
    let bad = |why: String| err(ErrorKind::InvalidArgument, format!("the vault's policy: {why}"));
    let p = Policy::parse_vault_wide(text).map_err(|e| bad(e.to_string()))?;
    crate::scan::Scanner::new(&p.secrets.patterns)
        .map_err(|why| bad(format!("malformed policy: secrets.patterns: {why}")))?;
    Ok(p)
}

/// Why a stored vault policy cannot be used, and the code to record.
fn unusable(e: &super::Error) -> (String, i32) {
    let code = if e.kind() == ErrorKind::Corrupt { EIO } else { EINVAL };
    (e.to_string(), code)
}

impl Vault<Unlocked> {
    /// The vault's policy as stored now: its value, text and policy; None
    /// when there is none (or the vault is not a cluster vault).
    fn stored_vault_policy(&self) -> Result<Option<(Vec<u8>, String, Policy)>> {
        let core = self.core();
        if !core.store.is_cluster() {
            return Ok(None);
        }
        let Some(value) = core.store.get_fresh(keys::VAULT_POLICY)? else { return Ok(None) };
        let text = core.keys.vault_meta.open_vault_policy(&core.vault_id, &value).map_err(|e| {
            err(ErrorKind::Corrupt, format!("{e}: it was not set by a holder of this vault's keys"))
        })?;
        let policy = parse(&text)?;
        Ok(Some((value.to_vec(), text, policy)))
    }

    /// At mount: the vault's policy to enforce beside the host's file. One
    /// that does not authenticate or parse refuses the mount (recorded):
    /// serving without it would be a silent loosening.
    pub(super) fn vault_policy_at_mount(&self) -> Result<Option<Policy>> {
        match self.stored_vault_policy() {
            Ok(None) => Ok(None),
            Ok(Some((value, text, policy))) => {
                let mut seen = self.core().vault_policy.lock();
                seen.stored = Some(value);
                seen.accepted = Some(policy.clone());
                seen.text = Some(text);
                Ok(Some(policy))
            }
            Err(e) => {
                let (why, code) = unusable(&e);
                self.record_vault_policy(None, Some(&why), code)?;
                Err(e)
            }
        }
    }

    /// The vault's policy this mount enforces (the last one accepted).
    pub(super) fn accepted_vault_policy(&self) -> Option<Policy> {
        self.core().vault_policy.lock().accepted.clone()
    }

    /// The last value of the vault's policy this mount refused (ns since
    /// the epoch, why), while no later one was accepted.
    pub fn vault_policy_refusal(&self) -> Option<(u64, String)> {
        self.core().vault_policy.lock().refused.clone()
    }

    /// Notes, logs and records a refused value of the vault's policy.
    fn refuse_vault_policy(&self, why: &str, code: i32) -> Result<()> {
        tracing::warn!("the vault's policy refused: {why}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.core().vault_policy.lock().refused = Some((now, why.to_string()));
        self.record_vault_policy(None, Some(why), code)
    }

    /// The vault's policy text this mount enforces, if any.
    pub fn vault_policy_text(&self) -> Option<String> {
        self.core().vault_policy.lock().text.clone()
    }

    /// Records that the vault's policy was set (note `set`) or applied here,
    /// or why it was refused.
    pub(super) fn record_vault_policy(
        &self,
        who: Option<(Caller, &[u8])>,
        reason: Option<&str>,
        result: i32,
    ) -> Result<()> {
        self.record_policy_of(VAULT_POLICY_NAME.as_bytes(), who, reason, result)
    }

    /// `vaultfs policy set`: stores `text` as the vault's policy, for every
    /// host (each applies it at its next upkeep tick, this one at once). It
    /// must parse, name nothing of one host's and be at least as strict as
    /// the floor; a looser one than before is stored, and each mount keeps
    /// its stricter policy until it is mounted again. Recorded either way.
    pub fn set_vault_policy(&self, who: Caller, comm: &[u8], text: &str) -> Result<()> {
        let core = self.core();
        let r = if !core.store.is_cluster() {
            Err(err(
                ErrorKind::Unsupported,
                "a vault in a directory has one host: its policy file is the vault's policy",
            ))
        } else {
            parse(text)
                .and_then(|_| Ok(core.keys.vault_meta.seal_vault_policy(&core.vault_id, text)?))
                .and_then(|sealed| {
                    // Stored before the reply, whatever the commit interval:
                    // the other hosts read it from etcd.
                    core.store
                        .put(keys::VAULT_POLICY, sealed)
                        .and_then(|()| core.store.flush())
                        .map_err(Into::into)
                })
        };
        let (reason, code) = match &r {
            Ok(()) => (None, 0),
            Err(e) if e.kind() == ErrorKind::InvalidArgument => (Some(e.to_string()), EINVAL),
            Err(e) if e.kind() == ErrorKind::Unsupported => (Some(e.to_string()), EPERM),
            Err(e) => (Some(e.to_string()), EIO),
        };
        self.record_vault_policy(Some((who, comm)), reason.as_deref(), code)?;
        r?;
        self.follow_vault_policy()
    }

    /// At each upkeep tick on a cluster vault: a new value of the vault's
    /// policy is applied if the strictest of it and this host's file is at
    /// least as strict as the policy in force, else refused (loosening
    /// takes a remount, as for the file). Recorded once per value.
    pub(super) fn follow_vault_policy(&self) -> Result<()> {
        let core = self.core();
        if !core.store.is_cluster() {
            return Ok(());
        }
        let _one_at_a_time = core.vault_policy.following.lock().unwrap_or_else(|p| p.into_inner());
        let value = core.store.get_fresh(keys::VAULT_POLICY)?.map(|v| v.to_vec());
        if core.vault_policy.lock().stored == value {
            return Ok(());
        }
        let read = self.stored_vault_policy();
        let mut seen = core.vault_policy.lock();
        seen.stored = value;
        let (text, vault) = match read {
            Ok(Some((_, text, policy))) => (Some(text), Some(policy)),
            Ok(None) => (None, None),
            Err(e) => {
                drop(seen);
                let (why, code) = unusable(&e);
                return self.refuse_vault_policy(&format!("{why}; the policy in force stays"), code);
            }
        };
        let file = self.file_policy();
        let new = vault.as_ref().map_or_else(|| file.clone(), |v| file.strictest(v));
        let looser = self.policy().loosenings(&new);
        if !looser.is_empty() {
            drop(seen);
            let why = format!(
                "policy is looser than the policy in force (loosening takes a remount): {}; \
                 the policy in force stays",
                looser.join("; ")
            );
            return self.refuse_vault_policy(&why, EPERM);
        }
        seen.accepted = vault;
        seen.text = text;
        seen.refused = None;
        drop(seen);
        tracing::info!("the vault's policy applied");
        self.record_vault_policy(None, None, 0)?;
        self.put_policy(new)
    }
}
