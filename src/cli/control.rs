//! The client side of the control socket: `vaultfs unlock | lock | approve |
//! deny | pending | lockdown | status MOUNT`, and the administration of a
//! mounted vault (`passwd`, `enroll`, `unenroll`, `escrow split`, `fsck`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::args::{
    ApproveArgs, DenyArgs, EnrollArgs, EscrowSplitArgs, LockArgs, LockdownArgs, PassphraseArgs, PendingArgs,
    PinArgs, PolicyArgs, PolicyCommand, StatusArgs, UnlockArgs,
};
use super::exit::{self, Code, Exit};
use super::mountinfo;
use super::passphrase::{self, Confirm};
use crate::control::SOCKET_NAME;
use crate::control::protocol::{Request, Response, SplitMade, Status};
use crate::crypto::Passphrase;
use crate::format::EscrowShare;
use crate::vault::{FactorKind, FsckReport, LEVEL_NAMES};

fn socket_of(mountpoint: &Path) -> Result<PathBuf, Exit> {
    let store = mountinfo::store_of(mountpoint).ok_or_else(|| Exit {
        code: Code::VaultPresence,
        message: format!("{} is not a mounted vault", mountpoint.display()),
    })?;
    Ok(mountinfo::local_dir(&store).join(SOCKET_NAME))
}

/// Sends one request and returns the daemon's answer (an error if not ok).
fn call(mountpoint: &Path, req: &Request) -> Result<Response, Exit> {
    let path = socket_of(mountpoint)?;
    let conn = UnixStream::connect(&path)
        .map_err(|e| Exit::failure(format!("cannot reach the mount daemon at {}: {e}", path.display())))?;
    let mut line = Zeroizing::new(serde_json::to_vec(req).map_err(|e| Exit::failure(e.to_string()))?);
    line.push(b'\n');
    (&conn).write_all(&line).map_err(|e| Exit::failure(format!("sending to the daemon: {e}")))?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(|e| Exit::failure(format!("reading the daemon's answer: {e}")))?;
    let resp: Response = serde_json::from_str(&answer)
        .map_err(|e| Exit::failure(format!("the daemon's answer is not understood: {e}")))?;
    if resp.ok {
        return Ok(resp);
    }
    let code = match resp.error_kind.as_deref() {
        Some("locked") => Code::Locked,
        Some("passphrase") => Code::WrongPassphrase,
        Some("usage") | Some("not_found") => Code::Usage,
        Some("not_due") => Code::NotDue,
        _ => Code::Failure,
    };
    Err(Exit { code, message: resp.error.unwrap_or_else(|| "the daemon refused".into()) })
}

/// A level given as a number or as its directory name.
pub(super) fn level(s: &str) -> Result<u8, Exit> {
    if let Ok(n) = s.parse::<u8>()
        && n < 6
    {
        return Ok(n);
    }
    LEVEL_NAMES
        .iter()
        .position(|n| *n == s)
        .map(|i| i as u8)
        .ok_or_else(|| Exit::usage(format!("{s:?} is not a level (0-5 or {})", LEVEL_NAMES.join(", "))))
}

/// The FIDO2 PIN, if one was asked for.
pub fn pin(a: &PinArgs) -> Result<Option<String>, Exit> {
    let pass = if let Some(f) = &a.pin_file {
        passphrase::from_file(f)?
    } else if a.pin {
        let p = rpassword::prompt_password("FIDO2 PIN: ")
            .map_err(|e| Exit::failure(format!("reading PIN: {e}")))?;
        Passphrase::new(p.into_bytes())
    } else {
        return Ok(None);
    };
    Ok(Some(String::from_utf8_lossy(pass.as_bytes()).into_owned()))
}

fn passphrase_string(a: &PassphraseArgs) -> Result<String, Exit> {
    let p = passphrase::obtain(a, "Vault passphrase: ", Confirm::Once)?;
    String::from_utf8(p.as_bytes().to_vec()).map_err(|_| Exit::usage("the passphrase is not UTF-8"))
}

/// `vaultfs passwd` on a mounted vault: the daemon re-wraps and writes the
/// header (the store is its to write while mounted).
pub fn passwd_mounted(mountpoint: &Path, old: &Passphrase, new: &Passphrase) -> exit::Result {
    let req = Request::Passwd { passphrase: utf8_passphrase(old)?, new_passphrase: utf8_passphrase(new)? };
    call(mountpoint, &req)?;
    Ok(())
}

/// `vaultfs escrow split` on a mounted vault: the daemon makes the split
/// and sends the shares back.
pub fn escrow_split_mounted(
    mountpoint: &Path,
    a: &EscrowSplitArgs,
    pass: &Passphrase,
) -> Result<SplitMade, Exit> {
    let req = Request::EscrowSplit {
        passphrase: utf8_passphrase(pass)?,
        threshold: a.threshold,
        shares: a.shares,
        escrow_levels: a.escrow_levels.clone(),
        replace: a.replace,
        pin: pin(&a.pin)?,
    };
    call(mountpoint, &req)?.split.ok_or_else(|| Exit::failure("the daemon sent no shares"))
}

/// A passphrase to send to the daemon (the protocol carries text).
fn utf8_passphrase(pass: &Passphrase) -> Result<String, Exit> {
    String::from_utf8(pass.as_bytes().to_vec())
        .map_err(|_| Exit::usage("a passphrase that is not UTF-8 is used with the vault unmounted"))
}

/// `vaultfs enroll` on a mounted vault: the daemon asks its TPM and
/// security key. The factors the level now opens with.
pub fn enroll_mounted(
    mountpoint: &Path,
    a: &EnrollArgs,
    first: FactorKind,
    pass: &Passphrase,
    shares: &[EscrowShare],
) -> Result<Vec<String>, Exit> {
    let req = Request::Enroll {
        passphrase: utf8_passphrase(pass)?,
        level: a.level,
        factor: first.name().to_string(),
        presence: !a.no_presence,
        alone: a.alone,
        tpm_pcrs: a.tpm_pcrs.clone(),
        shares: shares.iter().map(|s| s.to_text().to_string()).collect(),
        pin: pin(&a.pin)?,
    };
    call(mountpoint, &req)?.enrolled.ok_or_else(|| Exit::failure("the daemon sent no factors"))
}

/// `vaultfs unenroll` on a mounted vault.
pub fn unenroll_mounted(mountpoint: &Path, pass: &Passphrase, slot: usize) -> exit::Result {
    call(mountpoint, &Request::Unenroll { passphrase: utf8_passphrase(pass)?, slot })?;
    Ok(())
}

/// `vaultfs fsck` (read-only) on a mounted vault: the daemon checks its
/// store as it is at one instant and sends the report.
pub fn fsck_mounted(
    mountpoint: &Path,
    pass: &Passphrase,
    levels: Vec<u8>,
    pin: Option<String>,
) -> Result<FsckReport, Exit> {
    let req = Request::Fsck { passphrase: utf8_passphrase(pass)?, levels, pin };
    call(mountpoint, &req)?.fsck.ok_or_else(|| Exit::failure("the daemon sent no report"))
}

fn status_of(mountpoint: &Path) -> Result<Status, Exit> {
    call(mountpoint, &Request::Status)?.status.ok_or_else(|| Exit::failure("the daemon sent no status"))
}

pub fn unlock(a: UnlockArgs) -> exit::Result {
    let level = level(&a.level)?;
    let st = status_of(&a.mountpoint)?;
    let info = &st.levels[level as usize];
    if info.state == "open" {
        println!("{} is already open", info.name);
        return Ok(());
    }
    let asks_passphrase = info.opens_with == "passphrase" && info.state == "locked";
    let passphrase = if asks_passphrase { Some(passphrase_string(&a.passphrase)?) } else { None };
    if info.opens_with == "hardware" {
        eprintln!("unlocking {}: touch your security key if it blinks", info.name);
    }
    call(&a.mountpoint, &Request::Unlock { level, passphrase, pin: pin(&a.pin)? })?;
    println!("{} is open", info.name);
    Ok(())
}

pub fn lock(a: LockArgs) -> exit::Result {
    let level = a.level.as_deref().map(level).transpose()?;
    call(&a.mountpoint, &Request::Lock { level })?;
    match level {
        Some(l) => println!("{} is locked", LEVEL_NAMES[l as usize]),
        None => println!("levels 2 to 5 are locked"),
    }
    Ok(())
}

/// `ID` (this mount's open) or `HOST:ID` (another host's).
fn open_id(text: &str) -> Result<(Option<String>, u64), Exit> {
    let (host, id) = match text.rsplit_once(':') {
        Some((host, id)) => (Some(host.to_string()), id),
        None => (None, text),
    };
    let id = id.parse().map_err(|_| Exit::usage(format!("{text:?} is not an open's id (ID or HOST:ID)")))?;
    Ok((host.filter(|h| !h.is_empty()), id))
}

/// How `vaultfs pending` names an open.
fn shown_id(p: &crate::control::protocol::Pending) -> String {
    match &p.host {
        Some(h) => format!("{h}:{}", p.id),
        None => p.id.to_string(),
    }
}

pub fn approve(a: ApproveArgs) -> exit::Result {
    let (host, id) = match &a.id {
        Some(id) => open_id(id)?,
        // Without an id only when there is no doubt which open is meant.
        None => {
            let list = call(&a.mountpoint, &Request::Pending)?.pending.unwrap_or_default();
            match &list[..] {
                [] => return Err(Exit::failure("no open is waiting for approval")),
                [one] => (one.host.clone(), one.id),
                many => {
                    let ids: Vec<String> =
                        many.iter().map(|p| format!("{} ({})", shown_id(p), p.path)).collect();
                    return Err(Exit::usage(format!(
                        "{} opens are waiting; name the one to approve: {} (`vaultfs pending {}`)",
                        many.len(),
                        ids.join(", "),
                        a.mountpoint.display()
                    )));
                }
            }
        }
    };
    let shown = host.as_ref().map_or_else(|| id.to_string(), |h| format!("{h}:{id}"));
    call(&a.mountpoint, &Request::Approve { id: Some(id), host })?;
    println!("approved open {shown}");
    Ok(())
}

pub fn deny(a: DenyArgs) -> exit::Result {
    let (host, id) = open_id(&a.id)?;
    call(&a.mountpoint, &Request::Deny { id, host })?;
    println!("denied");
    Ok(())
}

pub fn pending(a: PendingArgs) -> exit::Result {
    let list = call(&a.mountpoint, &Request::Pending)?.pending.unwrap_or_default();
    if a.json {
        let text = serde_json::to_string_pretty(&list).map_err(|e| Exit::failure(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    if list.is_empty() {
        println!("no open is waiting for approval");
    }
    for p in list {
        println!(
            "{:>4}  level {}  pid {} ({})  uid {}  {}  waiting {:.1} s",
            shown_id(&p),
            p.level,
            p.pid,
            p.comm,
            p.uid,
            p.path,
            p.waited_ms as f64 / 1000.0
        );
        match &p.justification {
            Some(j) => println!("      why: {}", j.escape_debug()),
            None => println!("      why: (no justification given)"),
        }
    }
    Ok(())
}

pub fn lockdown(a: LockdownArgs) -> exit::Result {
    if a.exit {
        let passphrase = passphrase_string(&a.passphrase)?;
        call(&a.mountpoint, &Request::LockdownExit { passphrase, pin: pin(&a.pin)? })?;
        println!("lockdown is over; levels with hardware factors stay locked until `vaultfs unlock`");
    } else {
        call(&a.mountpoint, &Request::Lockdown)?;
        println!("lockdown: every level above 1 is locked");
    }
    Ok(())
}

pub fn policy(a: PolicyArgs) -> exit::Result {
    match a.command {
        PolicyCommand::Set(s) => {
            let text = if s.file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                    .map_err(|e| Exit::failure(format!("reading the policy from standard input: {e}")))?;
                t
            } else {
                std::fs::read_to_string(&s.file)
                    .map_err(|e| Exit::usage(format!("policy file {}: {e}", s.file.display())))?
            };
            call(&s.mountpoint, &Request::PolicySet { text })?;
            println!(
                "the vault's policy is set: every mount follows it within a second \
                 (a loosening at its next mount)"
            );
        }
        PolicyCommand::Show(s) => match status_of(&s.mountpoint)?.vault_policy {
            Some(text) => print!("{text}"),
            None => println!("# this mount follows no vault policy"),
        },
    }
    Ok(())
}

pub fn status(a: StatusArgs) -> exit::Result {
    let st = status_of(&a.mountpoint)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st).map_err(|e| Exit::failure(e.to_string()))?);
        return Ok(());
    }
    println!("lockdown: {}", if st.lockdown { "ON" } else { "off" });
    match &st.policy_file {
        Some(p) => println!("policy: {p}"),
        None => println!("policy: none (the defaults of docs/POLICY.md apply)"),
    }
    if st.vault_policy.is_some() {
        println!("policy: the vault's policy too (`vaultfs policy show`)");
    }
    if let Some(r) = &st.vault_policy_refused {
        println!(
            "policy: a new value of the vault's policy at {} was REFUSED: {}",
            crate::format::time::utc_ns(r.time_ns),
            r.reason
        );
    }
    if let Some(r) = &st.policy_refused {
        println!(
            "policy: an edit at {} was REFUSED: {} (the policy in force stays until an acceptable edit)",
            crate::format::time::utc_ns(r.time_ns),
            r.reason
        );
    }
    for l in &st.levels {
        let relock = l.relock_after_seconds.map_or_else(|| "never".to_string(), |s| format!("{s} s"));
        println!(
            "{:<12} {:<13} opens with {:<10} approval {:<3} idle {} s, relocks after {relock}",
            l.name,
            l.state,
            l.opens_with,
            if l.approval { "yes" } else { "no" },
            l.idle_seconds
        );
    }
    println!("pending approvals: {}", st.pending);
    for e in &st.exports {
        let behind = st.audit_records.saturating_sub(e.delivered);
        match (&e.error, e.failing_since_ns) {
            (Some(err), Some(since)) => println!(
                "export {}: FAILING since {}: {err}; {} records delivered, {behind} waiting",
                e.name,
                crate::format::time::utc(since),
                e.delivered
            ),
            _ => println!("export {}: {} records delivered, {behind} waiting", e.name, e.delivered),
        }
    }
    if st.secrets_found > 0 {
        println!("secrets written to levels 0-1 since mount: {}", st.secrets_found);
    }
    if let Some(s) = &st.last_secret {
        println!(
            "last secret: a {} in {} by pid {} ({}) at {}",
            s.rule,
            s.path,
            s.pid,
            s.comm,
            crate::format::time::utc(s.time_ns)
        );
    }
    for t in &st.tombstones {
        println!(
            "tombstone: {} (level {}) by uid {} pid {} ({}) at {} ns",
            t.path, t.level, t.uid, t.pid, t.comm, t.time_ns
        );
    }
    Ok(())
}

/// A succession step on a mounted vault (`step` as in `Request::Succession`).
pub fn succession_mounted(
    mountpoint: &Path,
    step: &str,
    pass: Option<&Passphrase>,
    setup: Option<(&str, u64, &[u8], bool)>,
    pin_args: &PinArgs,
) -> Result<Response, Exit> {
    let (heir, period_secs, levels, replace) = match setup {
        Some((heir, period, levels, replace)) => (Some(heir.to_string()), period, levels.to_vec(), replace),
        None => (None, 0, Vec::new(), false),
    };
    let req = Request::Succession {
        step: step.to_string(),
        passphrase: pass.map(utf8_passphrase).transpose()?,
        heir,
        period_secs,
        levels,
        replace,
        pin: pin(pin_args)?,
    };
    call(mountpoint, &req)
}
