//! The policy in force and the daemon's side of it (docs/POLICY.md): which
//! policy file it follows, reloads that can only tighten, open rate limits
//! per uid, relocking idle levels, purging old ephemeral files, and lockdown
//! from the policy. Every reload, applied or refused, is audited.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::{ErrorKind, Result, err};
use super::rules::{lockable_levels, rules};
use super::{AuditOp, Caller, Core, FileKind, Record, Timestamp, Unlocked, Vault, level_dir};
use crate::policy::{self, Policy};
use crate::store::memory::MemoryGovernor;

/// How often the upkeep thread looks at idle levels.
const UPKEEP_TICK: Duration = Duration::from_millis(250);
/// How often the upkeep thread looks whether the will has fallen due.
const WILL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Bounds on how often level 0 is scanned for old files.
const PURGE_EVERY_MIN: Duration = Duration::from_secs(1);
const PURGE_EVERY_MAX: Duration = Duration::from_secs(60);
/// Result codes of `policy` records (docs/GATES.md, "Policy records").
const EINVAL: i32 = 22;
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const ENOTEMPTY: i32 = 39;

/// Run-time policy state, kept in the vault core.
pub(super) struct Enforcement {
    policy: RwLock<Arc<Policy>>,
    /// The host's policy file as last accepted (the floor without one): on
    /// a cluster vault the policy in force is the strictest of it and the
    /// vault's policy.
    from_file: RwLock<Arc<Policy>>,
    /// The policy file the daemon follows (set at mount).
    file: Mutex<Option<PathBuf>>,
    /// The last edit of the file that was refused, while the file still
    /// holds it: when (ns since the epoch) and why.
    refused: Mutex<Option<(u64, String)>>,
    /// Open budget per uid: a token bucket of `opens_per_minute` tokens,
    /// refilled evenly over a minute.
    buckets: Mutex<HashMap<u32, Bucket>>,
    /// The secret scanner while the policy asks for one (`[secrets]`).
    scanner: RwLock<Option<Arc<crate::scan::Scanner>>>,
    /// Secrets found in writes since the mount, and the newest one.
    secrets_found: std::sync::atomic::AtomicU64,
    last_secret: Mutex<Option<SecretSeen>>,
    /// Where each export sink stands (the exporter reports it), by name.
    exports: Mutex<std::collections::BTreeMap<String, ExportState>>,
}

/// Where one export sink's delivery stands, for `vaultfs status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportState {
    /// Records delivered (the cursor: the next index to send).
    pub delivered: u64,
    /// Why delivery fails, and since when (ns since the epoch), while it does.
    pub failing: Option<(u64, String)>,
}

/// The newest credential found in a write, for `vaultfs status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSeen {
    pub path: String,
    pub rule: String,
    pub time_ns: u64,
    pub pid: u32,
    pub comm: String,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            policy: RwLock::new(Arc::new(Policy::floor())),
            from_file: RwLock::new(Arc::new(Policy::floor())),
            file: Mutex::new(None),
            refused: Mutex::new(None),
            buckets: Mutex::new(HashMap::new()),
            scanner: RwLock::new(None),
            secrets_found: Default::default(),
            last_secret: Mutex::new(None),
            exports: Mutex::new(Default::default()),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one open from a budget of `per_minute`; false when it is spent.
    fn take(&mut self, per_minute: u32, now: Instant) -> bool {
        let cap = f64::from(per_minute);
        let refill = now.duration_since(self.at).as_secs_f64() * cap / 60.0;
        self.tokens = (self.tokens + refill).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why `file` may not name a command the daemon runs (`approval_notify`)
/// or a destination of the audit records (`export`): it, or its directory,
/// is owned by someone other than root and the daemon's user, or writable by
/// group or others. Such a file may still tighten the policy (anyone may
/// make things stricter), but a command in it would run as the daemon.
fn untrusted_command(p: &Policy, file: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // A command runs as the daemon; an export sends every record (paths
    // included) wherever it says.
    let what_needs_it = match (&p.approval_notify, p.exports.is_empty()) {
        (Some(_), _) => "approval_notify",
        (None, false) => "export",
        (None, true) => return None,
    };
    let me = crate::sys::effective_uid();
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for (what, path) in [("the policy file", file), ("its directory", dir)] {
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return Some(format!("{what_needs_it} refused: {what} {}: {e}", path.display())),
        };
        if m.uid() != 0 && m.uid() != me {
            return Some(format!(
                "{what_needs_it} refused: {what} {} is owned by uid {}, not root or the daemon's uid {me}",
                path.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 {
            return Some(format!(
                "{what_needs_it} refused: {what} {} is writable by group or others (mode {:o})",
                path.display(),
                m.mode() & 0o7777
            ));
        }
    }
    None
}

/// The policy in `text` (beside the vault's policy `vault`), accepted over
/// `base`, with its commands allowed by `file`'s ownership; else the reason
/// and the errno to record.
fn accept_from(
    base: &Policy,
    text: &str,
    file: &Path,
    vault: Option<&Policy>,
) -> std::result::Result<Policy, (String, i32)> {
    let p = Policy::accept_beside(base, text, vault).map_err(|e| (e.to_string(), refusal_code(&e)))?;
    if let Err(why) = crate::scan::Scanner::new(&p.secrets.patterns) {
        return Err((format!("malformed policy: secrets.patterns: {why}"), EINVAL));
    }
    match untrusted_command(&p, file) {
        Some(why) => Err((why, EPERM)),
        None => Ok(p),
    }
}

fn refusal_code(e: &policy::Error) -> i32 {
    match e {
        policy::Error::Looser { .. } => EPERM,
        _ => EINVAL,
    }
}

impl Core {
    pub(super) fn policy(&self) -> Arc<Policy> {
        self.enforce.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Nanoseconds since the epoch, now.
fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Vault<Unlocked> {
    /// The rules `data`, written at `level`, matches, when the policy scans
    /// that level (`[secrets] scan`, levels 0 and 1); else none.
    pub fn secrets_in(&self, level: Option<u8>, data: &[u8]) -> Vec<String> {
        if !rules(level).scanned {
            return Vec::new();
        }
        let scanner = self.core().enforce.scanner.read().unwrap_or_else(|p| p.into_inner()).clone();
        scanner.map(|s| s.scan(data).into_iter().map(str::to_string).collect()).unwrap_or_default()
    }

    /// Records a credential found in a write (`rec`: op `secret`, the rule
    /// as its note) and keeps it for `vaultfs status`.
    pub fn record_secret(&self, rec: Record) -> Result<()> {
        let enforce = &self.core().enforce;
        enforce.secrets_found.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seen = SecretSeen {
            path: String::from_utf8_lossy(&rec.path).into_owned(),
            rule: String::from_utf8_lossy(&rec.note).into_owned(),
            time_ns: now_ns(),
            pid: rec.who.pid,
            comm: String::from_utf8_lossy(&rec.comm).into_owned(),
        };
        tracing::warn!("a {} was written to {} by pid {} ({})", seen.rule, seen.path, seen.pid, seen.comm);
        *enforce.last_secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        self.record(rec, 0, false)
    }

    /// The exporter's report on sink `name` (`None`: the sink is gone).
    pub fn set_export_state(&self, name: &str, state: Option<ExportState>) {
        let mut all = self.core().enforce.exports.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(s) => all.insert(name.to_string(), s),
            None => all.remove(name),
        };
    }

    /// Every export sink's state, by name.
    pub fn export_states(&self) -> Vec<(String, ExportState)> {
        let all = self.core().enforce.exports.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Secrets found in writes since the mount, and the newest.
    pub fn secrets_found(&self) -> (u64, Option<SecretSeen>) {
        let enforce = &self.core().enforce;
        let last = enforce.last_secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (enforce.secrets_found.load(std::sync::atomic::Ordering::Relaxed), last)
    }
}

impl Vault<Unlocked> {
    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.core().policy()
    }

    /// The policy file the daemon follows, if any.
    pub fn policy_file(&self) -> Option<PathBuf> {
        self.core().enforce.file.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last refused edit of the policy file (time in ns since the
    /// epoch, reason), if the file has not been accepted since.
    pub fn policy_refusal(&self) -> Option<(u64, String)> {
        self.core().enforce.refused.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_refusal(&self, reason: Option<&str>) {
        let now = now_ns();
        *self.core().enforce.refused.lock().unwrap_or_else(|p| p.into_inner()) =
            reason.map(|r| (now, r.to_string()));
    }

    pub(super) fn daemon(&self) -> Caller {
        Caller { uid: self.owner_uid(), gid: 0, pid: std::process::id() }
    }

    /// A `policy` record: `path` is the policy file, followed on refusal by
    /// a newline and the reason.
    fn record_policy(&self, file: &Path, reason: Option<&str>, result: i32) -> Result<()> {
        self.record_policy_of(file.as_os_str().as_encoded_bytes(), None, reason, result)
    }

    /// A `policy` record about the policy named `name`: by the daemon, or
    /// by `by` (a control client, noted `set`).
    pub(super) fn record_policy_of(
        &self,
        name: &[u8],
        by: Option<(Caller, &[u8])>,
        reason: Option<&str>,
        result: i32,
    ) -> Result<()> {
        let mut path = name.to_vec();
        if let Some(r) = reason {
            path.push(b'\n');
            path.extend_from_slice(r.as_bytes());
        }
        let (who, comm, note) = match by {
            Some((who, comm)) => (who, comm.to_vec(), b"set".to_vec()),
            None => (self.daemon(), b"vaultfs".to_vec(), Vec::new()),
        };
        let rec = Record {
            who,
            comm,
            op: AuditOp::Policy,
            level: None,
            ino: super::ROOT_INO,
            path,
            offset: 0,
            len: 0,
            note,
        };
        self.record(rec, result, true)
    }

    /// Makes `policy` the one in force (it was accepted as at least as
    /// strict). A policy saying `lockdown = true` enters lockdown.
    pub(super) fn put_policy(&self, policy: Policy) -> Result<()> {
        let lockdown = policy.lockdown;
        self.core().approvals.set_notify(policy.approval_notify.clone());
        // Checked in `accept_from`: the patterns compile.
        let scanner = policy
            .secrets
            .scan
            .then(|| crate::scan::Scanner::new(&policy.secrets.patterns).ok().map(Arc::new))
            .flatten();
        *self.core().enforce.scanner.write().unwrap_or_else(|p| p.into_inner()) = scanner;
        *self.core().enforce.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        if lockdown && !self.lockdown_active() {
            self.lockdown(self.daemon(), b"vaultfs")?;
        }
        Ok(())
    }

    /// At mount: follows the policy file at `file` and, on a cluster vault,
    /// the vault's policy beside it (wide_policy.rs). A missing file means
    /// the built-in defaults; a file that is malformed or looser than the
    /// floor, or a vault policy that does not authenticate or parse, refuses
    /// the mount (InvalidArgument, with the reason), since serving with less
    /// than the admin wrote would be a silent loosening. Recorded.
    pub fn use_policy_file(&self, file: &Path) -> Result<()> {
        *self.core().enforce.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file.to_path_buf());
        let vault = self.vault_policy_at_mount()?;
        let text = match std::fs::read_to_string(file) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let why = format!("cannot read the policy file {}: {e}", file.display());
                self.record_policy(file, Some(&why), EIO)?;
                return Err(err(ErrorKind::InvalidArgument, why));
            }
        };
        if text.is_none() && vault.is_none() {
            return Ok(());
        }
        match accept_from(&Policy::floor(), text.as_deref().unwrap_or(""), file, vault.as_ref()) {
            Ok(p) => {
                if let Some(t) = &text {
                    self.record_policy(file, None, 0)?;
                    self.set_file_policy(t);
                }
                if vault.is_some() {
                    self.record_vault_policy(None, None, 0)?;
                }
                self.put_policy(p)
            }
            Err((why, code)) => {
                self.record_policy(file, Some(&why), code)?;
                Err(err(ErrorKind::InvalidArgument, format!("policy file {}: {why}", file.display())))
            }
        }
    }

    /// The host's policy file as last accepted (the floor without one).
    pub(super) fn file_policy(&self) -> Policy {
        (**self.core().enforce.from_file.read().unwrap_or_else(|p| p.into_inner())).clone()
    }

    /// Keeps `text`, a file just accepted, as the host's file policy.
    fn set_file_policy(&self, text: &str) {
        if let Ok(p) = Policy::parse(text) {
            *self.core().enforce.from_file.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
        }
    }

    /// A change of the policy file (from the watcher): applied if it parses
    /// and is at least as strict as the policy in force; otherwise the last
    /// good policy stays. Logged and recorded either way. Returns the reason
    /// of a refusal.
    pub fn reload_policy(&self, read: std::io::Result<String>) -> Option<String> {
        let file = self.policy_file().unwrap_or_else(|| PathBuf::from("policy.toml"));
        let (reason, code) = match read {
            Err(e) => {
                let code = if e.kind() == std::io::ErrorKind::NotFound { ENOENT } else { EIO };
                (format!("cannot read {}: {e}; the policy in force stays", file.display()), code)
            }
            Ok(text) => {
                match accept_from(&self.policy(), &text, &file, self.accepted_vault_policy().as_ref()) {
                    Ok(p) => {
                        tracing::info!("policy {} applied", file.display());
                        self.set_refusal(None);
                        self.set_file_policy(&text);
                        let recorded = self.record_policy(&file, None, 0);
                        return match recorded.and_then(|()| self.put_policy(p)) {
                            Ok(()) => None,
                            Err(e) => {
                                tracing::error!("applying policy {}: {e}", file.display());
                                Some(e.to_string())
                            }
                        };
                    }
                    Err((why, code)) => (format!("{why}; the policy in force stays"), code),
                }
            }
        };
        tracing::warn!("policy {} refused: {reason}", file.display());
        self.set_refusal(Some(&reason));
        if let Err(e) = self.record_policy(&file, Some(&reason), code) {
            tracing::error!("recording the policy refusal failed: {e}");
        }
        Some(reason)
    }

    /// After lockdown ends: the policy in force drops its lockdown and the
    /// file is read again against that (a change refused during lockdown,
    /// because it lifted lockdown, applies now).
    pub(super) fn policy_after_lockdown(&self) {
        let mut p = (*self.policy()).clone();
        p.lockdown = false;
        *self.core().enforce.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
        if let Some(file) = self.policy_file()
            && file.exists()
        {
            self.reload_policy(std::fs::read_to_string(&file));
        }
    }

    /// Why lockdown cannot be left while the policy file, or the vault's
    /// policy, says `lockdown = true` (the admin changes that first).
    pub(super) fn policy_holds_lockdown(&self) -> Option<&'static str> {
        let file = self
            .policy_file()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| Policy::parse(&t).ok())
            .is_some_and(|p| p.lockdown);
        if file {
            Some("the policy file says lockdown = true: edit it first, then leave lockdown")
        } else if self.accepted_vault_policy().is_some_and(|p| p.lockdown) {
            Some(
                "the vault's policy says lockdown = true: set one without it first (`vaultfs policy set`), then leave lockdown",
            )
        } else {
            None
        }
    }

    /// Spends one open of `uid`'s budget; AccessDenied-like `RateLimited`
    /// when it is used up (the caller's open fails with EAGAIN, audited).
    pub fn admit_open(&self, uid: u32) -> Result<()> {
        let Some(limit) = self.policy().rate_limits.for_uid(uid) else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.core().enforce.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(uid).or_insert(Bucket { tokens: f64::from(limit), at: now });
        if bucket.take(limit, now) {
            Ok(())
        } else {
            Err(err(
                ErrorKind::RateLimited,
                format!("uid {uid} is over its limit of {limit} opens per minute"),
            ))
        }
    }

    /// Locks every open level that has been idle for its `relock_after`.
    /// Returns the levels locked.
    pub fn relock_idle(&self) -> Result<Vec<u8>> {
        let policy = self.policy();
        let mut locked = Vec::new();
        for level in lockable_levels() {
            let Some(after) = policy.levels[level as usize].relock_after else { continue };
            if self.core().level_open(level) && self.level_idle(level) >= after {
                self.lock_level(self.daemon(), b"vaultfs", Some(level))?;
                tracing::info!("level {level} relocked after {} idle", policy::fmt_duration(after));
                locked.push(level);
            }
        }
        Ok(locked)
    }

    /// Removes from 0-ephemeral every file (and empty directory) whose last
    /// change (the later of mtime and ctime) is older than the policy's
    /// `ephemeral_max_age`. Each removal is an unlink recorded as `purge`.
    /// Returns how many entries were removed.
    pub fn purge_ephemeral(&self) -> Result<usize> {
        let max_age = self.policy().ephemeral_max_age;
        let now = Timestamp::now();
        let cutoff = Timestamp { secs: now.secs.saturating_sub(max_age.as_secs() as i64), nanos: now.nanos };
        let mut removed = 0;
        self.purge_dir(level_dir(0), b"/0-ephemeral", cutoff, &mut removed)?;
        Ok(removed)
    }

    /// Purges inside `dir` (depth first); returns whether `dir` is now empty.
    fn purge_dir(&self, dir: u64, path: &[u8], cutoff: Timestamp, removed: &mut usize) -> Result<bool> {
        let mut left = 0usize;
        let mut after = 0;
        loop {
            let batch = self.readdir(dir, after, 256)?;
            let Some(last) = batch.last() else { break };
            after = last.cookie;
            for entry in batch {
                let mut child = path.to_vec();
                child.push(b'/');
                child.extend_from_slice(&entry.name);
                let attr = match self.getattr(entry.ino) {
                    Ok(a) => a,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let empty =
                    attr.kind == FileKind::Dir && self.purge_dir(entry.ino, &child, cutoff, removed)?;
                let old = attr.mtime.max(attr.ctime) < cutoff;
                let gone = match attr.kind {
                    FileKind::Dir if empty && old => {
                        self.purge_one(dir, &entry.name, &child, entry.ino, true)?
                    }
                    FileKind::Dir => false,
                    _ if old => self.purge_one(dir, &entry.name, &child, entry.ino, false)?,
                    _ => false,
                };
                if gone {
                    *removed += 1;
                } else {
                    left += 1;
                }
            }
        }
        Ok(left == 0)
    }

    /// Unlinks (or rmdirs) one entry, recorded as `purge`. A concurrent
    /// change that made it go away or fill up is not an error: it stays.
    fn purge_one(&self, parent: u64, name: &[u8], path: &[u8], ino: u64, dir: bool) -> Result<bool> {
        let rec = Record {
            who: self.daemon(),
            comm: b"vaultfs".to_vec(),
            op: AuditOp::Purge,
            level: Some(0),
            ino,
            path: path.to_vec(),
            offset: 0,
            len: 0,
            note: Vec::new(),
        };
        let code = |e: &super::Error| match e.kind() {
            ErrorKind::NotFound => ENOENT,
            ErrorKind::NotEmpty => ENOTEMPTY,
            _ => EIO,
        };
        let r =
            self.audited(
                rec,
                false,
                code,
                |v| {
                    if dir { v.rmdir(parent, name) } else { v.unlink(parent, name) }
                },
            )?;
        match r {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotEmpty) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts the daemon's memory governor (`store::memory`): holds the
    /// process under `ceiling` bytes by lowering the store's page cache from
    /// `cache` bytes while needed. It holds the vault weakly. None for a
    /// cluster vault: it has no page cache, and its caches have fixed bounds.
    pub fn start_memory_governor(&self, ceiling: u64, cache: u64) -> Result<Option<MemoryGovernor>> {
        if self.0.core.store.cache_capacity().is_none() {
            return Ok(None);
        }
        let core = Arc::downgrade(&self.0.core);
        crate::store::memory::govern(ceiling, cache, move |bytes| {
            if let Some(core) = core.upgrade() {
                core.store.set_cache_capacity(bytes);
            }
        })
        .map(Some)
        .map_err(|e| err(ErrorKind::Io, format!("cannot start the memory governor: {e}")))
    }

    /// Starts the daemon's upkeep thread: relocks idle levels and purges old
    /// ephemeral files while the returned handle lives.
    pub fn start_upkeep(&self) -> Result<Upkeep> {
        let stop = Arc::new(AtomicBool::new(false));
        let vault = self.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vaultfs-upkeep".into())
            .spawn(move || vault.upkeep_loop(&flag))
            .map_err(|e| err(ErrorKind::Io, format!("cannot start the upkeep thread: {e}")))?;
        Ok(Upkeep { stop, thread: Some(thread) })
    }

    fn upkeep_loop(&self, stop: &AtomicBool) {
        let mut last_purge: Option<Instant> = None;
        let mut last_will_check: Option<Instant> = None;
        let mut last_archive: Option<Instant> = None;
        let mut overdue_noted = None;
        while !stop.load(Ordering::Relaxed) {
            if last_will_check.is_none_or(|t| t.elapsed() >= WILL_CHECK_EVERY) {
                last_will_check = Some(Instant::now());
                if let Err(e) = self.note_overdue_will(&mut overdue_noted) {
                    tracing::error!("checking the will: {e}");
                }
            }
            if let Err(e) = self.follow_lockdown() {
                tracing::error!("looking for a lockdown made on another host: {e}");
            }
            if let Err(e) = self.follow_vault_policy() {
                tracing::error!("looking for a change of the vault's policy: {e}");
            }
            if let Err(e) = self.relock_idle() {
                tracing::error!("relocking idle levels: {e}");
            }
            let every = (self.policy().ephemeral_max_age / 10).clamp(PURGE_EVERY_MIN, PURGE_EVERY_MAX);
            // The holder purges for every host.
            if self.reader_host().is_none() && last_purge.is_none_or(|t| t.elapsed() >= every) {
                last_purge = Some(Instant::now());
                match self.purge_ephemeral() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("purged {n} old entries from 0-ephemeral"),
                    Err(e) => tracing::error!("purging 0-ephemeral: {e}"),
                }
            }
            if last_archive.is_none_or(|t| t.elapsed() >= self.archive_every()) {
                last_archive = Some(Instant::now());
                match self.archive_by_policy() {
                    Ok(None) => {}
                    Ok(Some(a)) => tracing::info!(
                        "audit records {}..{} archived to {}",
                        a.first,
                        a.end,
                        a.path.display()
                    ),
                    Err(e) => tracing::error!("archiving audit records: {e}"),
                }
            }
            std::thread::sleep(UPKEEP_TICK);
        }
    }

    /// How often the policy's `[audit]` archiving is looked at: an eighth of
    /// `keep` (1 s to 10 min), every 10 min for `keep_bytes` alone.
    fn archive_every(&self) -> Duration {
        let a = &self.policy().audit_archive;
        a.keep.map_or(Duration::from_secs(600), |k| {
            (k / 8).clamp(Duration::from_secs(1), Duration::from_secs(600))
        })
    }
}

/// The running upkeep thread; dropping it stops and joins the thread.
pub struct Upkeep {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_limit_then_refills_evenly() {
        let t0 = Instant::now();
        let mut b = Bucket { tokens: 6.0, at: t0 };
        assert!((0..6).all(|_| b.take(6, t0)));
        assert!(!b.take(6, t0), "a seventh open within the minute");
        // 6 per minute: one more every 10 s.
        assert!(!b.take(6, t0 + Duration::from_secs(9)));
        assert!(b.take(6, t0 + Duration::from_secs(11)));
        assert!(!b.take(6, t0 + Duration::from_secs(12)));
    }

    #[test]
    fn zero_refuses_everything() {
        let t0 = Instant::now();
        let mut b = Bucket { tokens: 0.0, at: t0 };
        assert!(!b.take(0, t0 + Duration::from_secs(3600)));
    }
}
