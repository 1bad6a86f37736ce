//! Audit records leaving the machine (docs/POLICY.md, "Exporting the audit
//! log"): for each `[export.NAME]` of the policy in force, the daemon sends
//! every record once it is durable under a signed checkpoint, in order, as
//! syslog (RFC 5424), CEF or JSON batches over HTTP. Each sink keeps a
//! cursor, the index of the next record to deliver, in
//! `STORE/export/NAME.cursor`, written (and synced) after each delivered
//! batch: a restart goes on where delivery stopped. A collector that is
//! down is retried with exponential backoff from the cursor; nothing is
//! queued in memory, so an outage costs no memory and loses nothing. This
//! module owns ureq.

mod format;

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use format::{Event, cef, hostname, syslog};

use crate::format::hex;
use crate::policy::{ExportAddress, ExportFormat, ExportSink};
use crate::vault::{ExportState, Unlocked, Vault};

/// How often the exporter looks for new durable records (the group commit's
/// default interval: checking more often would only add flushes).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Backoff after a failed delivery: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Network operations give up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches per sink per look, so one busy sink does not starve the others.
const BATCHES_PER_LOOK: usize = 20;

/// The exporter thread; dropping it stops the thread.
pub struct Exporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Follows the exports of `vault`'s policy (reloaded live) until dropped.
    pub fn start(vault: Vault<Unlocked>) -> std::io::Result<Exporter> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("vaultfs-export".into()).spawn(move || {
            let mut sinks: HashMap<String, Sink> = HashMap::new();
            let ctx = Context::new(&vault);
            // Records known durable; while the log does not grow, nothing is
            // signed or flushed for the exporter's sake.
            let mut durable = 0u64;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(LOOK_EVERY);
                let policy = vault.policy();
                sinks.retain(|name, s| {
                    let keep = policy.exports.iter().any(|e| &e.name == name && *e == s.config);
                    if !keep {
                        vault.set_export_state(name, None);
                    }
                    keep
                });
                if policy.exports.is_empty() {
                    continue;
                }
                for e in &policy.exports {
                    sinks.entry(e.name.clone()).or_insert_with(|| Sink::new(e.clone(), &ctx.dir));
                }
                if vault.audit_size() != durable {
                    durable = match vault.durable_audit_size() {
                        Ok(n) => n,
                        Err(err) => {
                            tracing::error!("export: the audit log cannot be made durable: {err}");
                            continue;
                        }
                    };
                }
                for s in sinks.values_mut() {
                    s.run(&vault, &ctx, durable, &flag);
                    vault.set_export_state(&s.config.name, Some(s.state()));
                }
            }
        })?;
        Ok(Exporter { stop, thread: Some(thread) })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What every event names: the log (the vault's, or a read-only host's of
/// a cluster vault), this host, this daemon.
struct Context {
    vault_id: String,
    host: String,
    pid: u32,
    dir: PathBuf,
}

impl Context {
    fn new(vault: &Vault<Unlocked>) -> Context {
        Context {
            // The log's name: its checkpoints' origin without `vaultfs/`,
            // so a collector keeps each log's indexes apart (AUDIT.md).
            vault_id: match vault.reader_host() {
                Some(h) => format!("{}/host/{h}", hex(&vault.header().vault_id)),
                None => hex(&vault.header().vault_id),
            },
            host: vault.reader_host().map_or_else(hostname, str::to_string),
            pid: std::process::id(),
            dir: vault.dir().join("export"),
        }
    }
}

/// One sink's state: where delivery stands and how it is connected.
struct Sink {
    config: ExportSink,
    cursor: Cursor,
    conn: Option<Conn>,
    retry_at: Option<Instant>,
    backoff: Duration,
    failing_since: Option<Instant>,
    /// The last failure: when (ns since the epoch) and why.
    last_error: Option<(u64, String)>,
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
    /// The agent and the URL to POST to.
    Http(ureq::Agent, String),
}

impl Sink {
    fn new(config: ExportSink, dir: &Path) -> Sink {
        let cursor = Cursor::load(dir, &config.name);
        Sink {
            config,
            cursor,
            conn: None,
            retry_at: None,
            backoff: BACKOFF_FIRST,
            failing_since: None,
            last_error: None,
        }
    }

    /// What `vaultfs status` shows of it.
    fn state(&self) -> ExportState {
        ExportState { delivered: self.cursor.next, failing: self.last_error.clone() }
    }

    /// Delivers records from the cursor up to `durable`, batch by batch.
    fn run(&mut self, vault: &Vault<Unlocked>, ctx: &Context, durable: u64, stop: &AtomicBool) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        for _ in 0..BATCHES_PER_LOOK {
            let from = self.cursor.next;
            if from >= durable || stop.load(Ordering::Relaxed) {
                return;
            }
            let to = durable.min(from + self.config.batch as u64);
            match self.deliver(vault, ctx, from, to) {
                Ok(()) => {
                    self.last_error = None;
                    if let Some(since) = self.failing_since.take() {
                        tracing::warn!(
                            "export {}: delivering again after {} s",
                            self.config.name,
                            since.elapsed().as_secs()
                        );
                    }
                    self.backoff = BACKOFF_FIRST;
                    self.retry_at = None;
                    if let Err(e) = self.cursor.advance(to) {
                        // Delivery goes on from memory; a restart before the
                        // next good write resends (never skips) these records.
                        tracing::error!("export {}: {e}", self.config.name);
                    }
                }
                Err(e) => {
                    self.conn = None;
                    let now_ns = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    let since = self.last_error.as_ref().map_or(now_ns, |(t, _)| *t);
                    self.last_error = Some((since, e.clone()));
                    if self.failing_since.is_none() {
                        self.failing_since = Some(Instant::now());
                        tracing::warn!(
                            "export {}: delivery to {} failed at record {from}: {e}; retrying from there",
                            self.config.name,
                            address_text(&self.config.address)
                        );
                    }
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, vault: &Vault<Unlocked>, ctx: &Context, from: u64, to: u64) -> Result<(), String> {
        let base = vault.audit_base().frontier.size;
        if from < base {
            tracing::warn!(
                "export {}: records {from}..{base} were archived before they were delivered; they are in the \
                 archive files (vaultfs audit verify --file)",
                self.config.name
            );
        }
        let lines = vault.audit_lines(from, to).map_err(|e| format!("reading the log: {e}"))?;
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("record line: {e}")))
            .collect::<Result<_, _>>()?;
        let conn = match self.conn {
            Some(ref mut c) => c,
            None => self.conn.insert(connect(&self.config.address)?),
        };
        match (self.config.format, conn) {
            (ExportFormat::Json, Conn::Http(agent, url)) => {
                let body = serde_json::json!({ "vault": ctx.vault_id, "records": values }).to_string();
                let resp = agent
                    .post(url.as_str())
                    .header("Content-Type", "application/json")
                    .send(body.as_str())
                    .map_err(|e| format!("POST {url}: {e}"))?;
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    return Err(format!("POST {url}: HTTP {status}"));
                }
                Ok(())
            }
            (format, conn) => {
                for v in &values {
                    let Some(event) = Event::of(v) else { continue };
                    let line = match format {
                        ExportFormat::Cef => cef(&event, &ctx.vault_id, &ctx.host, ctx.pid),
                        _ => syslog(&event, &ctx.vault_id, &ctx.host, ctx.pid),
                    };
                    send(conn, line.as_bytes())
                        .map_err(|e| format!("sending record {}: {e}", event.index()))?;
                }
                if let Conn::Tcp(s) = conn {
                    s.flush().map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

fn address_text(a: &ExportAddress) -> String {
    match a {
        ExportAddress::Udp(hp) => format!("udp://{hp}"),
        ExportAddress::Tcp(hp) => format!("tcp://{hp}"),
        ExportAddress::Unix(p) => format!("unix:{}", p.display()),
        ExportAddress::Http(url) => url.clone(),
    }
}

fn connect(a: &ExportAddress) -> Result<Conn, String> {
    let failed = |e: std::io::Error| format!("connecting to {}: {e}", address_text(a));
    match a {
        ExportAddress::Udp(hp) => {
            let addr = resolve(hp)?;
            let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(local).map_err(failed)?;
            // Connected: a closed port comes back as ECONNREFUSED on a later send.
            s.connect(addr).map_err(failed)?;
            Ok(Conn::Udp(s))
        }
        ExportAddress::Tcp(hp) => {
            let s = TcpStream::connect_timeout(&resolve(hp)?, IO_TIMEOUT).map_err(failed)?;
            s.set_write_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
            Ok(Conn::Tcp(s))
        }
        ExportAddress::Unix(path) => {
            let s = UnixDatagram::unbound().map_err(failed)?;
            s.connect(path).map_err(failed)?;
            Ok(Conn::Unix(s))
        }
        ExportAddress::Http(url) => {
            let config = ureq::Agent::config_builder()
                .timeout_global(Some(IO_TIMEOUT))
                .http_status_as_error(false)
                .build();
            Ok(Conn::Http(config.into(), url.clone()))
        }
    }
}

fn resolve(host_port: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port}: no address"))
}

/// One message: a datagram, or an RFC 6587 octet-counted frame on TCP.
fn send(conn: &mut Conn, msg: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Udp(s) => s.send(msg).map(drop),
        Conn::Unix(s) => s.send(msg).map(drop),
        Conn::Tcp(s) => {
            s.write_all(format!("{} ", msg.len()).as_bytes())?;
            s.write_all(msg)
        }
        Conn::Http(..) => Err(std::io::Error::other("an http sink takes json batches")),
    }
}

/// Where delivery stands: the index of the next record to send, kept in
/// `STORE/export/NAME.cursor` (decimal, a newline).
struct Cursor {
    path: PathBuf,
    next: u64,
}

impl Cursor {
    /// The saved cursor; a new sink starts at the first record of the log.
    /// An unreadable cursor file starts there too (resending, never skipping).
    fn load(dir: &Path, name: &str) -> Cursor {
        let path = dir.join(format!("{name}.cursor"));
        let next = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().parse().unwrap_or_else(|_| {
                tracing::error!(
                    "export {name}: {} is not a record index; starting from record 0",
                    path.display()
                );
                0
            }),
            Err(_) => 0,
        };
        Cursor { path, next }
    }

    /// Moves to `next` in memory, then on disk (atomically, synced).
    fn advance(&mut self, next: u64) -> Result<(), String> {
        self.next = next;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let failed = |e: std::io::Error| format!("cannot save the cursor {}: {e}", self.path.display());
        std::fs::create_dir_all(dir).map_err(failed)?;
        let tmp = self.path.with_extension("cursor.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(failed)?;
        f.write_all(format!("{next}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(failed)?;
        std::fs::rename(&tmp, &self.path).map_err(failed)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
    }
}
