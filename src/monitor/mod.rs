//! `vaultfs mount --metrics ADDR`: a small HTTP endpoint beside the mount
//! (docs/ADMIN.md, "Metrics and health"). `GET /metrics` answers the
//! vault's counters and figures in the OpenMetrics text format Prometheus
//! scrapes; `GET /health` answers 200 only while the mount answers and the
//! store is writable, 503 with the reason otherwise. This module owns
//! tiny_http; what is counted lives in `crate::metrics`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::metrics::CONTENT_TYPE;
use crate::vault::{Unlocked, Vault};

/// How long a health probe may take before the answer is "unhealthy".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The running endpoint; dropping it stops the server thread.
pub struct Monitor {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Monitor {
    /// Listens on `addr` and serves `vault` (mounted at `mountpoint`).
    pub fn start(addr: SocketAddr, vault: Vault<Unlocked>, mountpoint: &Path) -> Result<Monitor, String> {
        let server = Arc::new(Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let health = Arc::new(Health {
            vault: vault.clone(),
            mountpoint: mountpoint.to_path_buf(),
            busy: AtomicBool::new(false),
        });
        let s = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("vaultfs-metrics".into())
            .spawn(move || {
                for request in s.incoming_requests() {
                    answer(request, &vault, &health);
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(Monitor { server, thread: Some(thread), addr })
    }

    /// Where it listens (the port chosen when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(request: Request, vault: &Vault<Unlocked>, health: &Arc<Health>) {
    let text = |status: u16, body: String, kind: &str| {
        let response = Response::from_string(body).with_status_code(status);
        match Header::from_bytes("Content-Type", kind) {
            Ok(h) => response.with_header(h),
            Err(()) => response,
        }
    };
    let plain = "text/plain; charset=utf-8";
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let response = match (request.method(), path.as_str()) {
        (Method::Get, "/metrics") => text(200, vault.metrics().render(&vault.figures()), CONTENT_TYPE),
        (Method::Get, "/health") => match Health::check(health) {
            Ok(()) => text(200, "ok\n".into(), plain),
            Err(why) => text(503, format!("unhealthy: {why}\n"), plain),
        },
        (Method::Get, _) => text(404, "not found: /metrics and /health are served\n".into(), plain),
        _ => text(405, "only GET is served\n".into(), plain),
    };
    let _ = request.respond(response);
}

/// The health probe: the mount answers a stat of its root, and the store's
/// directory takes a synced write and the vault a flush, each within
/// [`PROBE_TIMEOUT`].
struct Health {
    vault: Vault<Unlocked>,
    mountpoint: PathBuf,
    /// A probe is still running (one that hangs is not started again).
    busy: AtomicBool,
}

impl Health {
    fn check(this: &Arc<Health>) -> Result<(), String> {
        if this.busy.swap(true, Ordering::SeqCst) {
            return Err("an earlier probe has not finished (the mount or the store hangs)".into());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let h = Arc::clone(this);
        let spawned = std::thread::Builder::new().name("vaultfs-health".into()).spawn(move || {
            let r = h.probe();
            h.busy.store(false, Ordering::SeqCst);
            let _ = tx.send(r);
        });
        if let Err(e) = spawned {
            this.busy.store(false, Ordering::SeqCst);
            return Err(format!("cannot start a probe: {e}"));
        }
        rx.recv_timeout(PROBE_TIMEOUT)
            .unwrap_or_else(|_| Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())))
    }

    fn probe(&self) -> Result<(), String> {
        std::fs::metadata(&self.mountpoint)
            .map_err(|e| format!("the mount does not answer at {}: {e}", self.mountpoint.display()))?;
        let probe = self.vault.dir().join(".health-probe");
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            std::io::Write::write_all(&mut f, b"1")?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| format!("the store directory takes no write: {e}"))?;
        self.vault.sync().map_err(|e| format!("the store does not flush: {e}"))
    }
}
