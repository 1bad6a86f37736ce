//! Access policy (L0): what the daemon enforces on top of what the keys allow.
//!
//! The keys decide what *can* be opened (a level whose key cannot be derived
//! stays closed whatever the policy says). The policy decides what the daemon
//! *will* open: approvals, cooldowns, relock times, rate limits, ephemeral
//! purge age and lockdown. It can only tighten: [`Policy::default`] is the
//! floor, and a reload never loosens the policy in force
//! ([`Policy::accept`]). docs/POLICY.md is the user's reference.
//!
//! # The policy file
//!
//! `policy.toml` beside the store (or `--policy PATH`). Every key is
//! optional; an absent key keeps its built-in default. Unknown keys, wrong
//! types and out-of-bounds values are refused with their line and column.
//!
//! ```toml
//! lockdown = false            # true: every level above 1 is locked
//! ephemeral_max_age = "12h"   # files in 0-ephemeral older than this are purged
//!
//! [levels.3]                  # one table per level, named by its digit 0-5
//! cooldown = "5s"             # min. time between two approvals granted at the level
//! approval_timeout = "30s"    # how long an open waits for `vaultfs approve` (1 s ..= 1 h)
//! approval_window = "1m"      # an approval covers that file and process this long
//! relock_after = "30m"        # idle time before the level relocks ("never": levels 2-5 only)
//! require_approval = true     # opens need a human approval
//!
//! approval_notify = ["/usr/local/bin/page-me", "--vault"]  # run when an open waits
//!
//! [rate_limit]
//! opens_per_minute = 600      # every uid (absent: unlimited)
//!
//! [rate_limit.uid.1000]       # per-uid override, decimal uid
//! opens_per_minute = 100
//! ```
//!
//! Durations are a TOML integer (seconds) or a string: a decimal number and
//! one unit of `ms`, `s`, `m`, `h`, `d` (`"250ms"`, `"30s"`, `"5m"`, `"1h"`,
//! `"2d"`). Every duration is at most [`MAX_DURATION`] (30 days), but
//! `audit.keep` (up to [`MAX_AUDIT_KEEP`], ten years);
//! `approval_timeout` is 1 s ..= [`MAX_APPROVAL_TIMEOUT`] (a FUSE request
//! waits that long); `relock_after` and `ephemeral_max_age` are at least 1 s.
//! Rate limits are 0 ..= [`MAX_OPENS_PER_MINUTE`].
//!
//! `cooldown`, `approval_timeout` and `approval_window` are refused at a
//! level whose `require_approval` is false (they would do nothing), and
//! `relock_after` at levels 0 and 1 (they are never locked while mounted).
//!
//! # Defaults (the floor)
//!
//! | level | require_approval | cooldown | approval_timeout | approval_window | relock_after |
//! |---|---|---|---|---|---|
//! | 0, 1, 2 | false | 0 s | 60 s | 60 s | never |
//! | 3 | true | 0 s | 60 s | 60 s | 1 h |
//! | 4 | true | 10 s | 60 s | 60 s | 15 min |
//! | 5 | true | 30 s | 60 s | 60 s | 15 min |
//!
//! No rate limit, `ephemeral_max_age` 24 h, `lockdown` false.
//!
//! # Strictness
//!
//! A policy is at least as strict as another when, field by field: its
//! cooldown is at least as long; its approval_timeout and approval_window
//! are at most as long; its relock_after is at most as long (never is the
//! loosest); require_approval is true where the other's is; each uid's
//! effective rate limit (its override, else the default) is at most as high
//! (unlimited is the loosest); ephemeral_max_age is at most as long; lockdown
//! is true where the other's is. [`Policy::loosenings`] lists each way a
//! policy fails this.
//!
//! # Reloads
//!
//! - [`Policy::accept`] refuses a policy looser than the floor or than the
//!   policy in force; the caller keeps the last good one and logs and audits
//!   the reason ([`Error`]'s `Display`).
//! - Loosening takes a remount: at mount the file is checked against the
//!   floor only (`Policy::accept(&Policy::default(), text)`).
//! - Leaving lockdown is `vaultfs lockdown --exit` (passphrase and hardware
//!   factor), never the file: `lockdown = false` after `true` is a loosening.
//!
//! [`watch::PolicyWatcher`] is this module's one piece of I/O: it watches the
//! file with `notify` and hands its new text to the daemon, which calls
//! [`Policy::accept`]. Everything else here is pure.

mod file;
mod vault;
pub mod watch;

pub use watch::PolicyWatcher;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Number of classification levels (0-ephemeral ..= 5-black).
pub const LEVELS: usize = 6;

/// Upper bound of every duration in the policy file.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Upper bound of `approval_timeout`: a FUSE request thread waits this long.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Upper bound of a rate limit (opens per minute).
pub const MAX_OPENS_PER_MINUTE: u32 = 1_000_000;

/// Largest policy text accepted (the watcher reads no more than this).
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// What the policy says about one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelPolicy {
    /// Minimum time between two approvals granted at this level.
    pub cooldown: Duration,
    /// How long an open waits for `vaultfs approve` before EACCES.
    pub approval_timeout: Duration,
    /// How long an approval covers re-opens of that file by that process.
    pub approval_window: Duration,
    /// Idle time after which the unlocked level relocks; `None`: never.
    pub relock_after: Option<Duration>,
    /// Whether every open at this level needs a human approval.
    pub require_approval: bool,
    /// Whether every open at this level needs a justification
    /// (`user.vault.justification`; levels 3 to 5).
    pub require_justification: bool,
}

/// Opens per minute, per uid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Limit for every uid without an override; `None`: unlimited.
    pub opens_per_minute: Option<u32>,
    /// Per-uid overrides (they replace the default, tighter or looser).
    pub per_uid: BTreeMap<u32, u32>,
}

impl RateLimits {
    /// The limit that applies to `uid`: its override, else the default.
    pub fn for_uid(&self, uid: u32) -> Option<u32> {
        self.per_uid.get(&uid).copied().or(self.opens_per_minute)
    }
}

/// The whole policy. [`Policy::default`] is the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Per level, indexed by level number.
    pub levels: [LevelPolicy; LEVELS],
    /// Open rate limits.
    pub rate_limits: RateLimits,
    /// Files in 0-ephemeral older than this are purged.
    pub ephemeral_max_age: Duration,
    /// Every level above 1 is locked.
    pub lockdown: bool,
    /// A command (program and arguments) run when an open starts waiting for
    /// approval, so that someone hears of it. Neither stricter nor looser: the
    /// daemon runs it only from a policy file no other user can write.
    pub approval_notify: Option<Vec<String>>,
    /// Where audit records are forwarded as they are committed (`[export.NAME]`).
    pub exports: Vec<ExportSink>,
    /// Scanning writes to levels 0 and 1 for credentials (`[secrets]`).
    pub secrets: SecretScan,
    /// Moving old audit records to archive files (`[audit]`).
    pub audit_archive: AuditArchive,
}

/// `[audit]`: the mount moves the log's oldest records into archive files
/// in `dir` (docs/AUDIT.md, "Archives") once they are older than `keep`, or
/// once the stored records take more than `keep_bytes`. Neither stricter nor
/// looser: archived records are kept and verify as before, only elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditArchive {
    pub dir: Option<std::path::PathBuf>,
    pub keep: Option<Duration>,
    pub keep_bytes: Option<u64>,
}

/// How long `[audit] keep` may be: ten years.
pub const MAX_AUDIT_KEEP: Duration = Duration::from_secs(3650 * 24 * 3600);
/// `[audit] keep_bytes` bounds: 1 MiB to 1 PiB.
pub const MIN_AUDIT_KEEP_BYTES: u64 = 1 << 20;
pub const MAX_AUDIT_KEEP_BYTES: u64 = 1 << 50;

/// `[secrets]`: whether writes to 0-ephemeral and 1-working are scanned for
/// credentials, and the policy's own patterns beside the built-in rules
/// (compiled and checked by the vault, which owns the scanner).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretScan {
    pub scan: bool,
    pub patterns: Vec<String>,
}

/// One destination of the audit records (docs/POLICY.md, "Exporting the
/// audit log"). Its name keys its delivery cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSink {
    pub name: String,
    pub format: ExportFormat,
    pub address: ExportAddress,
    /// Records per delivery at most.
    pub batch: usize,
}

/// How each record is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// RFC 5424 syslog, the record in structured data.
    Syslog,
    /// ArcSight CEF, as the message of an RFC 5424 syslog line.
    Cef,
    /// The `.audit` JSON objects, POSTed as an array.
    Json,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Syslog => "syslog",
            ExportFormat::Cef => "cef",
            ExportFormat::Json => "json",
        }
    }
}

/// Where the records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportAddress {
    /// `udp://HOST:PORT`: one datagram per record.
    Udp(String),
    /// `tcp://HOST:PORT`: RFC 6587 octet-counted frames on one connection.
    Tcp(String),
    /// `unix:PATH`: one datagram per record to a local socket (`/dev/log`).
    Unix(std::path::PathBuf),
    /// `http://HOST:PORT/PATH`: a POST per batch.
    Http(String),
}

/// Export sinks at most, records per delivery at most.
pub const MAX_EXPORTS: usize = 8;
pub const MAX_EXPORT_BATCH: usize = 10_000;

const MINUTE: Duration = Duration::from_secs(60);

impl Default for Policy {
    /// The built-in floor (module docs, "Defaults").
    fn default() -> Policy {
        let level = |require_approval: bool, cooldown: u64, relock_after: Option<u64>| LevelPolicy {
            cooldown: Duration::from_secs(cooldown),
            approval_timeout: MINUTE,
            approval_window: MINUTE,
            relock_after: relock_after.map(Duration::from_secs),
            require_approval,
            require_justification: false,
        };
        Policy {
            levels: [
                level(false, 0, None),
                level(false, 0, None),
                level(false, 0, None),
                level(true, 0, Some(3600)),
                level(true, 10, Some(15 * 60)),
                level(true, 30, Some(15 * 60)),
            ],
            rate_limits: RateLimits::default(),
            ephemeral_max_age: Duration::from_secs(24 * 3600),
            lockdown: false,
            approval_notify: None,
            exports: Vec::new(),
            secrets: SecretScan::default(),
            audit_archive: AuditArchive::default(),
        }
    }
}

/// Where in the policy text something went wrong (1-based, columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What can go wrong with a policy. The `Display` text is what the daemon
/// logs and audits when it keeps the last good policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a valid policy: TOML syntax, an unknown key, a wrong type or a value out of bounds.
    #[error("malformed policy{}: {}{message}", at(.location), key_prefix(.key))]
    Malformed {
        /// Dotted path of the offending key (`levels.3.cooldown`), if one is to blame.
        key: Option<String>,
        /// Position in the text, when known.
        location: Option<Location>,
        /// What is wrong.
        message: String,
    },
    /// A well-formed policy looser than the floor and/or than the policy in force.
    #[error("{}", looser_text(.floor, .current))]
    Looser {
        /// Ways it is looser than the built-in floor (never acceptable).
        floor: Vec<String>,
        /// Other ways it is looser than the policy in force (acceptable after a remount).
        current: Vec<String>,
    },
    /// The policy file's directory cannot be watched.
    #[error("cannot watch policy file {path}: {reason}")]
    Watch {
        /// The policy file.
        path: String,
        /// Why (from the OS or notify).
        reason: String,
    },
}

fn at(location: &Option<Location>) -> String {
    location.map(|l| format!(" at {l}")).unwrap_or_default()
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

fn looser_text(floor: &[String], current: &[String]) -> String {
    let mut parts = Vec::new();
    if !floor.is_empty() {
        parts.push(format!("looser than the built-in floor: {}", floor.join("; ")));
    }
    if !current.is_empty() {
        parts.push(format!(
            "looser than the policy in force (loosening takes a remount): {}",
            current.join("; ")
        ));
    }
    format!("policy is {}", parts.join(". Also "))
}

/// One way a policy is looser than another: the key and what changed.
struct Loosening {
    key: String,
    detail: String,
}

impl fmt::Display for Loosening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.detail)
    }
}

impl Policy {
    /// The built-in floor, the same as [`Policy::default`].
    pub fn floor() -> Policy {
        Policy::default()
    }

    /// What the policy says about `level` (0 ..= 5); `None` for another number.
    pub fn level(&self, level: u8) -> Option<&LevelPolicy> {
        self.levels.get(usize::from(level))
    }

    /// Every way `new` is looser than `self` (module docs, "Strictness"),
    /// one line each, starting with the key; empty when `new` is at least as
    /// strict.
    pub fn loosenings(&self, new: &Policy) -> Vec<String> {
        self.loosening_list(new).iter().map(ToString::to_string).collect()
    }

    fn loosening_list(&self, new: &Policy) -> Vec<Loosening> {
        let mut out = Vec::new();
        let mut push = |key: String, detail: String| out.push(Loosening { key, detail });
        for (n, (old, new)) in self.levels.iter().zip(&new.levels).enumerate() {
            let key = |field: &str| format!("levels.{n}.{field}");
            if new.cooldown < old.cooldown {
                push(key("cooldown"), change(old.cooldown, new.cooldown, "a shorter cooldown"));
            }
            if new.approval_timeout > old.approval_timeout {
                push(
                    key("approval_timeout"),
                    change(old.approval_timeout, new.approval_timeout, "a longer approval timeout"),
                );
            }
            if new.approval_window > old.approval_window {
                push(
                    key("approval_window"),
                    change(old.approval_window, new.approval_window, "a longer approval window"),
                );
            }
            if let Some(old_relock) = old.relock_after {
                if new.relock_after.is_none_or(|r| r > old_relock) {
                    push(
                        key("relock_after"),
                        format!(
                            "{} -> {} (relocking later is looser)",
                            fmt_duration(old_relock),
                            fmt_relock(new.relock_after)
                        ),
                    );
                }
            }
            if old.require_approval && !new.require_approval {
                push(key("require_approval"), "true -> false (opens would need no approval)".into());
            }
            if old.require_justification && !new.require_justification {
                push(
                    key("require_justification"),
                    "true -> false (opens would need no justification)".into(),
                );
            }
        }
        let (old_rl, new_rl) = (&self.rate_limits, &new.rate_limits);
        if rate_looser(old_rl.opens_per_minute, new_rl.opens_per_minute) {
            push(
                "rate_limit.opens_per_minute".into(),
                rate_change(old_rl.opens_per_minute, new_rl.opens_per_minute, ""),
            );
        }
        if self.secrets.scan && !new.secrets.scan {
            push(
                "secrets.scan".into(),
                "true -> false (secrets written to levels 0 and 1 would go unnoticed)".into(),
            );
        }
        for sink in &self.exports {
            if !new.exports.iter().any(|s| s.name == sink.name) {
                push(
                    format!("export.{}", sink.name),
                    "removed (audit records would stop leaving the machine)".into(),
                );
            }
        }
        let uids: std::collections::BTreeSet<u32> =
            old_rl.per_uid.keys().chain(new_rl.per_uid.keys()).copied().collect();
        for uid in uids {
            let (old, new) = (old_rl.for_uid(uid), new_rl.for_uid(uid));
            if rate_looser(old, new) {
                let note = if new_rl.per_uid.contains_key(&uid) { "" } else { "the override was removed; " };
                push(format!("rate_limit.uid.{uid}.opens_per_minute"), rate_change(old, new, note));
            }
        }
        if new.ephemeral_max_age > self.ephemeral_max_age {
            push(
                "ephemeral_max_age".into(),
                change(self.ephemeral_max_age, new.ephemeral_max_age, "keeping ephemeral files longer"),
            );
        }
        if self.lockdown && !new.lockdown {
            push(
                "lockdown".into(),
                "true -> false (leave lockdown with `vaultfs lockdown --exit`, not the policy file)".into(),
            );
        }
        out
    }

    /// Parses `text` and checks it is at least as strict as the floor and as
    /// `current`: the new policy to apply, or why not (keep `current` then).
    ///
    /// At mount, pass `&Policy::default()` as `current`: the file is then
    /// checked against the floor only, which is how a loosening takes effect.
    pub fn accept(current: &Policy, text: &str) -> Result<Policy, Error> {
        Policy::accept_beside(current, text, None)
    }
}

fn change(old: Duration, new: Duration, what: &str) -> String {
    format!("{} -> {} ({what} is looser)", fmt_duration(old), fmt_duration(new))
}

fn fmt_relock(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_string(), fmt_duration)
}

/// Whether rate limit `new` lets more through than `old` (`None` = unlimited).
fn rate_looser(old: Option<u32>, new: Option<u32>) -> bool {
    match (old, new) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(o), Some(n)) => n > o,
    }
}

fn rate_change(old: Option<u32>, new: Option<u32>, note: &str) -> String {
    let show = |r: Option<u32>| r.map_or_else(|| "unlimited".to_string(), |r| format!("{r}/min"));
    format!("{} -> {} ({note}a higher rate limit is looser)", show(old), show(new))
}

/// A duration the way the policy file writes it, in the largest exact unit
/// (`"0s"`, `"250ms"`, `"90s"`, `"15m"`, `"1h"`, `"2d"`).
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests;
