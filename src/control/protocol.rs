//! Control messages: one JSON object per line each way.

use serde::{Deserialize, Serialize};

use crate::vault::{FsckReport, WillInfo};

/// What a client asks.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Open `level` with its hardware factors (or the passphrase, for a
    /// level that has no factor slot).
    Unlock {
        level: u8,
        passphrase: Option<String>,
        pin: Option<String>,
    },
    /// Close `level`, or every level from 2 up.
    Lock {
        level: Option<u8>,
    },
    Pending,
    /// Approve pending open `id` (None: the oldest) of this mount, or of
    /// the mount on `host` (a cluster vault's other host).
    Approve {
        id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    Deny {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    Lockdown,
    /// Store `text` as the vault's policy (a cluster vault's, for every host).
    PolicySet {
        text: String,
    },
    LockdownExit {
        passphrase: String,
        pin: Option<String>,
    },
    /// Change the passphrase (`vaultfs passwd` on a mounted vault).
    Passwd {
        passphrase: String,
        new_passphrase: String,
    },
    /// Make a new recovery key and its shares (`vaultfs escrow split` on a
    /// mounted vault).
    EscrowSplit {
        passphrase: String,
        threshold: u8,
        shares: u8,
        escrow_levels: Vec<u8>,
        replace: bool,
        pin: Option<String>,
    },
    /// Add a hardware factor slot (`vaultfs enroll` on a mounted vault): the
    /// daemon's TPM and security key are used.
    Enroll {
        passphrase: String,
        level: u8,
        /// "tpm" or "fido2".
        factor: String,
        /// FIDO2: a touch at each unlock.
        presence: bool,
        /// Level 5: without the level-4 factor.
        alone: bool,
        /// SHA-256 PCRs to bind a TPM seal to.
        tpm_pcrs: Vec<u8>,
        /// Escrow shares (text) standing in for a lost factor.
        shares: Vec<String>,
        pin: Option<String>,
    },
    /// Remove key slot `slot` (`vaultfs unenroll` on a mounted vault).
    Unenroll {
        passphrase: String,
        slot: usize,
    },
    /// Dead-man succession on a mounted vault (`vaultfs succession ...`,
    /// `vaultfs checkin`). `step`: "setup", "checkin", "cancel" (these need
    /// the owner's passphrase), "status" or "release" (these do not).
    Succession {
        step: String,
        passphrase: Option<String>,
        /// setup: the heir's public key (text form), the period, the
        /// hardware levels bequeathed, whether an existing will is replaced.
        heir: Option<String>,
        period_secs: u64,
        levels: Vec<u8>,
        replace: bool,
        pin: Option<String>,
    },
    /// Check the whole vault, read-only (`vaultfs fsck` on a mounted vault).
    Fsck {
        passphrase: String,
        /// Hardware factor levels to open for the check.
        levels: Vec<u8>,
        pin: Option<String>,
    },
}

/// A new split made through the socket: the shares (secret), whether an
/// earlier split was replaced, and levels it escrowed that this one does not.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SplitMade {
    pub shares: Vec<String>,
    pub replaced: bool,
    pub dropped_levels: Vec<u8>,
}

/// The answer: `ok` and a result, or an error message and its class.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// "locked", "not_found", "usage", "passphrase", "failure".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<Pending>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitMade>,
    /// The factors a level now opens with, after `Enroll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsck: Option<FsckReport>,
    /// The will after a succession step (None: there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<WillInfo>,
    /// A release's text (what the heir needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            error_kind: None,
            status: None,
            pending: None,
            split: None,
            enrolled: None,
            fsck: None,
            will: None,
            release: None,
        }
    }

    pub fn error(kind: &str, message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            error_kind: Some(kind.to_string()),
            ..Response::ok()
        }
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub lockdown: bool,
    /// The policy file the daemon follows.
    #[serde(default)]
    pub policy_file: Option<String>,
    /// The last edit of the policy file the daemon refused (the policy in
    /// force stayed), while no later edit has been accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_refused: Option<PolicyRefusal>,
    /// The vault's policy this mount follows (a cluster vault's), its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_policy: Option<String>,
    /// The last value of the vault's policy this mount refused, while no
    /// later one was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_policy_refused: Option<PolicyRefusal>,
    pub levels: Vec<LevelStatus>,
    pub pending: usize,
    pub tombstones: Vec<Tombstone>,
    /// Credentials found in writes to levels 0 and 1 since the mount
    /// (`[secrets] scan`), and the newest one.
    #[serde(default)]
    pub secrets_found: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_secret: Option<SecretFound>,
    /// The policy's export sinks and where their delivery stands.
    #[serde(default)]
    pub exports: Vec<ExportStatus>,
    /// Records in the audit log.
    #[serde(default)]
    pub audit_records: u64,
}

/// One export sink, as `vaultfs status` shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportStatus {
    pub name: String,
    /// Records delivered: the index of the next one to send.
    pub delivered: u64,
    /// While delivery fails: since when (ns since the epoch) and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A credential found in a write (what `vaultfs status` shows).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretFound {
    pub path: String,
    pub rule: String,
    pub time_ns: u64,
    pub pid: u32,
    pub comm: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyRefusal {
    pub time_ns: u64,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LevelStatus {
    pub level: u8,
    pub name: String,
    /// "open", "locked" or "not enrolled".
    pub state: String,
    /// "passphrase" or "hardware".
    pub opens_with: String,
    pub idle_seconds: u64,
    pub approval: bool,
    /// Idle time after which the level relocks (policy); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relock_after_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The host whose mount it waits on (a cluster vault's other host);
    /// absent: this mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub id: u64,
    pub level: u8,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub path: String,
    pub waited_ms: u64,
    /// Why the caller says it needs the file (`user.vault.justification`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tombstone {
    pub path: String,
    pub level: u8,
    pub time_ns: u64,
    pub uid: u32,
    pub pid: u32,
    pub comm: String,
}
