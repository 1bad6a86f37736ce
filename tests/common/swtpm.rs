//! A real software TPM for tests: `swtpm socket --tpm2` on a free loopback
//! port pair, with its state in a temporary directory, killed on drop.
//!
//! Include it with `#[path = "common/swtpm.rs"] mod swtpm;`.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long swtpm may take to accept connections before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many port pairs to try when another process grabs ours first.
const ATTEMPTS: usize = 5;

/// One running swtpm instance with its own TPM state (fresh seeds, PCRs).
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    _state: tempfile::TempDir,
}

impl Swtpm {
    /// Starts a fresh swtpm, already through `TPM2_Startup(CLEAR)`, and waits
    /// until its command port accepts connections. Panics (failing the test)
    /// with the reason if swtpm cannot be started.
    pub fn start() -> Swtpm {
        let state = tempfile::tempdir().expect("swtpm state tempdir");
        let mut last = String::new();
        let log_path = state.path().join("swtpm.stderr");
        for _ in 0..ATTEMPTS {
            let port = free_port_pair();
            // stderr goes to a file, not a pipe nobody drains while the TPM runs.
            let log = std::fs::File::create(&log_path).expect("swtpm stderr file");
            let mut child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(format!("dir={}", state.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--flags")
                .arg("not-need-init,startup-clear")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run swtpm (is the swtpm package installed?): {e}"));
            match wait_listening(&mut child, port, &log_path) {
                Ok(()) => return Swtpm { child: Some(child), port, _state: state },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = why;
                }
            }
        }
        panic!("swtpm did not start after {ATTEMPTS} attempts: {last}");
    }

    /// The TCTI string that reaches this instance.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The command port (the control port is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the TPM now (the "TPM unreachable" case); idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port P such that P and P + 1 were both free a moment ago (swtpm's
/// control port must be the command port + 1 for the swtpm TCTI).
fn free_port_pair() -> u16 {
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    for _ in 0..100 {
        let first = TcpListener::bind(localhost).expect("bind an ephemeral loopback port");
        let port = first.local_addr().expect("local addr").port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port + 1))).is_ok() {
            return port; // both listeners drop here, freeing the pair for swtpm
        }
    }
    panic!("no free loopback port pair found");
}

/// Waits until `port` accepts a connection, or the child exits, or the timeout.
fn wait_listening(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("swtpm on port {port} exited with {status}: {}", err.trim()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("swtpm did not accept connections on port {port} within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
