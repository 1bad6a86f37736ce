//! The daemon's end of the control socket. Only the uid that mounted (or
//! root) may connect; each request is recorded by the vault under the
//! peer's pid, uid and process name, as the kernel reports them.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::protocol::{
    ExportStatus, LevelStatus, Pending, PolicyRefusal, Request, Response, SecretFound, SplitMade, Status,
    Tombstone,
};
use crate::crypto::Passphrase;
use crate::format::{EscrowShare, succession};
use crate::gate::tpm::TpmConfig;
use crate::vault::{
    Caller, ErrorKind, FactorAccess, FactorKind, LEVEL_NAMES, SuccessionChange, Unlocked, Vault, WillInfo,
};

/// Longest request line accepted (a passphrase and a PIN fit easily).
const MAX_REQUEST: u64 = 64 * 1024;

/// The listening socket and its accept thread; dropping it stops both and
/// removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    /// The listening socket, shut down to wake the accept loop.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens at `path` (replacing a stale socket), mode 0600.
    pub fn start(path: &Path, vault: Vault<Unlocked>, tpm: TpmConfig) -> std::io::Result<ControlServer> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handler = Arc::new(Handler { vault, tpm });
        let kept = listener.try_clone()?;
        let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                // One thread per connection: an unlock may wait for a touch
                // and an approval answer must not queue behind it.
                let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || h.serve(conn));
            }
        })?;
        Ok(ControlServer { path: path.to_path_buf(), listener: kept, stop, thread: Some(thread) })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. Not by connecting to the
        // path: if the socket file was removed (the store directory deleted
        // under a running mount), that fails and the join below waited
        // forever, keeping the daemon alive after its unmount.
        if let Err(e) = crate::sys::shutdown_socket(self.listener.as_fd()) {
            tracing::warn!("control socket shutdown: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Handler {
    vault: Vault<Unlocked>,
    tpm: TpmConfig,
}

impl Handler {
    fn serve(&self, conn: UnixStream) {
        let answer = match crate::sys::peer_credentials(conn.as_fd()) {
            Ok((pid, uid, gid)) if uid == self.vault.owner_uid() || uid == 0 => {
                let who = Caller { uid, gid, pid };
                let mut line = String::new();
                let read = BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line);
                match read.map_err(|e| e.to_string()).and_then(|_| {
                    serde_json::from_str::<Request>(&line).map_err(|e| format!("bad request: {e}"))
                }) {
                    Ok(req) => self.handle(who, req),
                    Err(e) => Response::error("usage", e),
                }
            }
            Ok((_, uid, _)) => Response::error("locked", format!("uid {uid} may not control this mount")),
            Err(e) => Response::error("failure", format!("peer credentials: {e}")),
        };
        let mut out = serde_json::to_vec(&answer).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        let _ = (&conn).write_all(&out);
    }

    fn handle(&self, who: Caller, req: Request) -> Response {
        let comm = crate::sys::process_name(who.pid);
        let v = &self.vault;
        let access = |pin: Option<String>| FactorAccess::new(self.tpm.clone(), pin);
        let done = |r: crate::vault::Result<()>| match r {
            Ok(()) => Response::ok(),
            Err(e) => error_response(&e),
        };
        match req {
            Request::Status => Response { status: Some(self.status()), ..Response::ok() },
            Request::Unlock { level, passphrase, pin } => {
                let pass = passphrase.map(|p| Passphrase::new(p.into_bytes()));
                let access = access(pin);
                done(v.unlock_level(who, &comm, level, pass.as_ref(), &mut |f| access.secrets(f)))
            }
            Request::Lock { level } => done(v.lock_level(who, &comm, level)),
            Request::Pending => match self.pending() {
                Ok(list) => Response { pending: Some(list), ..Response::ok() },
                Err(e) => error_response(&e),
            },
            Request::Approve { id, host } => {
                done(v.decide_open(who, &comm, host.as_deref(), id, true).map(drop))
            }
            Request::Deny { id, host } => {
                done(v.decide_open(who, &comm, host.as_deref(), Some(id), false).map(drop))
            }
            Request::Lockdown => done(v.lockdown(who, &comm)),
            Request::PolicySet { text } => done(v.set_vault_policy(who, &comm, &text)),
            Request::LockdownExit { passphrase, pin } => {
                let access = access(pin);
                let pass = Passphrase::new(passphrase.into_bytes());
                done(v.lockdown_exit(who, &comm, &pass, &mut |f| access.secrets(f)))
            }
            Request::Passwd { passphrase, new_passphrase } => {
                let old = Passphrase::new(passphrase.into_bytes());
                let new = Passphrase::new(new_passphrase.into_bytes());
                done(v.change_passphrase_mounted(who, &comm, &old, &new))
            }
            Request::EscrowSplit { passphrase, threshold, shares, escrow_levels, replace, pin } => {
                let pass = Passphrase::new(passphrase.into_bytes());
                let access = access(pin);
                match v.escrow_split_mounted(
                    who,
                    &comm,
                    &pass,
                    threshold,
                    shares,
                    &escrow_levels,
                    replace,
                    &access,
                ) {
                    Ok(done) => Response {
                        split: Some(SplitMade {
                            shares: done.shares.iter().map(|s| s.to_text().to_string()).collect(),
                            replaced: done.replaced,
                            dropped_levels: done.dropped_levels,
                        }),
                        ..Response::ok()
                    },
                    Err(e) => error_response(&e),
                }
            }
            Request::Enroll { passphrase, level, factor, presence, alone, tpm_pcrs, shares, pin } => {
                let first = match factor.as_str() {
                    "tpm" => FactorKind::Tpm,
                    "fido2" => FactorKind::Fido2 { presence },
                    other => return Response::error("usage", format!("unknown factor {other:?}")),
                };
                let shares = match shares.iter().map(|s| EscrowShare::parse(s)).collect::<Result<Vec<_>, _>>()
                {
                    Ok(s) => s,
                    Err(e) => return Response::error("usage", format!("escrow share: {e}")),
                };
                let pass = Passphrase::new(passphrase.into_bytes());
                let tpm = TpmConfig { pcrs: tpm_pcrs, ..self.tpm.clone() };
                let access = FactorAccess::new(tpm, pin);
                match v.enroll_mounted(who, &comm, &pass, level, first, alone, &shares, access) {
                    Ok(kinds) => Response {
                        enrolled: Some(kinds.iter().map(|k| k.name().to_string()).collect()),
                        ..Response::ok()
                    },
                    Err(e) => error_response(&e),
                }
            }
            Request::Unenroll { passphrase, slot } => {
                let pass = Passphrase::new(passphrase.into_bytes());
                done(v.unenroll_mounted(who, &comm, &pass, slot))
            }
            Request::Succession { step, passphrase, heir, period_secs, levels, replace, pin } => {
                self.succession(who, &comm, &step, passphrase, heir, period_secs, levels, replace, pin)
            }
            Request::Fsck { passphrase, levels, pin } => {
                let pass = Passphrase::new(passphrase.into_bytes());
                let access = access(pin);
                match v.fsck_mounted(who, &comm, &pass, levels, &mut |f| access.secrets(f)) {
                    Ok(report) => Response { fsck: Some(report), ..Response::ok() },
                    Err(e) => error_response(&e),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn succession(
        &self,
        who: Caller,
        comm: &[u8],
        step: &str,
        passphrase: Option<String>,
        heir: Option<String>,
        period_secs: u64,
        levels: Vec<u8>,
        replace: bool,
        pin: Option<String>,
    ) -> Response {
        let v = &self.vault;
        let with_will = |r: crate::vault::Result<Option<WillInfo>>| match r {
            Ok(will) => Response { will, ..Response::ok() },
            Err(e) => error_response(&e),
        };
        let change = match step {
            "status" => return with_will(v.succession_status_mounted()),
            "release" => {
                return match v.succession_release(who, comm) {
                    Ok((release, will)) => {
                        Response { release: Some(release.to_text()), will: Some(will), ..Response::ok() }
                    }
                    Err(e) => error_response(&e),
                };
            }
            "checkin" => SuccessionChange::Checkin,
            "cancel" => SuccessionChange::Cancel,
            "setup" => {
                let heir = match heir.as_deref().map(succession::parse_heir_public) {
                    Some(Ok(h)) => h,
                    Some(Err(e)) => return Response::error("usage", e.to_string()),
                    None => return Response::error("usage", "a setup needs the heir's public key"),
                };
                SuccessionChange::Setup { heir, period_secs, levels, replace }
            }
            other => return Response::error("usage", format!("unknown succession step {other:?}")),
        };
        let Some(pass) = passphrase.map(|p| Passphrase::new(p.into_bytes())) else {
            return Response::error("usage", format!("succession {step} needs the owner's passphrase"));
        };
        let access = FactorAccess::new(self.tpm.clone(), pin);
        with_will(v.succession_change_mounted(who, comm, &pass, change, &access))
    }

    fn status(&self) -> Status {
        let v = &self.vault;
        let levels = (0..6u8)
            .map(|l| LevelStatus {
                level: l,
                name: LEVEL_NAMES[l as usize].to_string(),
                state: v.level_state(l).name().to_string(),
                opens_with: if v.level_uses_factors(l) { "hardware" } else { "passphrase" }.to_string(),
                idle_seconds: v.level_idle(l).as_secs(),
                approval: v.approval_rules(l).required,
                relock_after_seconds: v.policy().levels[l as usize].relock_after.map(|d| d.as_secs()),
            })
            .collect();
        let tombstones = v
            .tombstones()
            .unwrap_or_default()
            .into_iter()
            .map(|t| Tombstone {
                path: String::from_utf8_lossy(&t.path).into_owned(),
                level: t.level,
                time_ns: t.time_ns,
                uid: t.uid,
                pid: t.pid,
                comm: String::from_utf8_lossy(&t.comm).into_owned(),
            })
            .collect();
        // The watched path when a file is there; none means the defaults apply.
        let policy_file = v.policy_file().filter(|p| p.is_file()).map(|p| p.display().to_string());
        let policy_refused = v.policy_refusal().map(|(time_ns, reason)| PolicyRefusal { time_ns, reason });
        let (secrets_found, last) = v.secrets_found();
        let last_secret = last.map(|s| SecretFound {
            path: s.path,
            rule: s.rule,
            time_ns: s.time_ns,
            pid: s.pid,
            comm: s.comm,
        });
        Status {
            lockdown: v.lockdown_active(),
            policy_file,
            policy_refused,
            vault_policy: v.vault_policy_text(),
            vault_policy_refused: v
                .vault_policy_refusal()
                .map(|(time_ns, reason)| PolicyRefusal { time_ns, reason }),
            levels,
            pending: v.pending_opens().len(),
            tombstones,
            secrets_found,
            last_secret,
            exports: v
                .export_states()
                .into_iter()
                .map(|(name, s)| ExportStatus {
                    name,
                    delivered: s.delivered,
                    failing_since_ns: s.failing.as_ref().map(|(t, _)| *t),
                    error: s.failing.map(|(_, e)| e),
                })
                .collect(),
            audit_records: v.figures().audit_leaves,
        }
    }

    /// The opens waiting on this mount and, on a cluster vault, on every
    /// other host's.
    fn pending(&self) -> crate::vault::Result<Vec<Pending>> {
        Ok(self
            .vault
            .pending_opens_everywhere()?
            .into_iter()
            .map(|p| Pending {
                host: p.host,
                id: p.id,
                level: p.level,
                pid: p.pid,
                uid: p.uid,
                comm: p.comm,
                path: p.path,
                waited_ms: p.waited.as_millis() as u64,
                justification: Some(p.justification).filter(|j| !j.is_empty()),
            })
            .collect())
    }
}

fn error_response(e: &crate::vault::Error) -> Response {
    let kind = match e.kind() {
        ErrorKind::NotEnrolled | ErrorKind::FactorFailed | ErrorKind::Lockdown | ErrorKind::AccessDenied => {
            "locked"
        }
        ErrorKind::WrongPassphrase => "passphrase",
        ErrorKind::NotFound => "not_found",
        ErrorKind::InvalidArgument => "usage",
        ErrorKind::NotDue => "not_due",
        _ => "failure",
    };
    Response::error(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::vault::InitOptions;

    /// Stopping the server must not depend on its socket file: a mount whose
    /// store directory was deleted still exits after its unmount.
    #[test]
    fn stops_even_when_its_socket_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let pass = Passphrase::new(b"pw".to_vec());
        let kdf = KdfParams { memory_kib: 8 * 1024, passes: 1, lanes: 1 };
        Vault::init(dir.path(), &pass, InitOptions { kdf, block_size: 4096 }).unwrap();
        let vault = Vault::open(dir.path()).unwrap().unlock(&pass).unwrap();
        let path = dir.path().join("control.sock");
        let server = ControlServer::start(&path, vault, TpmConfig::resolve(None, Vec::new())).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
            "the accept thread never stopped"
        );
    }
}
