//! Logs of a daemonized mount without `--log`: to the system log, as
//! gocryptfs does. Each event is one datagram to /dev/log (journald and
//! every syslog daemon listen there) in the traditional format
//! `<PRI>vaultfs[PID]: message`, facility daemon. No log daemon, no logs:
//! a missing socket is not an error.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where the system log listens; `VAULTFS_SYSLOG_SOCKET` names another
/// socket (tests, or a chroot's).
fn socket_path() -> PathBuf {
    std::env::var_os("VAULTFS_SYSLOG_SOCKET").map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from)
}

/// Facility "daemon" (3).
const FACILITY_DAEMON: u8 = 3;

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The `MakeWriter` of the daemon's tracing subscriber.
pub struct Syslog {
    socket: Option<UnixDatagram>,
    pid: u32,
}

impl Syslog {
    pub fn connect() -> Syslog {
        let socket = UnixDatagram::unbound().ok().filter(|s| s.connect(socket_path()).is_ok());
        Syslog { socket, pid: std::process::id() }
    }
}

/// One event's text, sent as one datagram when the event is written out.
pub struct Event<'a> {
    to: &'a Syslog,
    pri: u8,
    text: Vec<u8>,
}

impl io::Write for Event<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        let (Some(socket), false) = (&self.to.socket, self.text.is_empty()) else { return };
        let body = String::from_utf8_lossy(&self.text);
        let line = format!("<{}>vaultfs[{}]: {}", self.pri, self.to.pid, body.trim_end());
        // A full or gone log daemon must never stall or stop the mount.
        let _ = socket.send(line.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Event<'a>;

    fn make_writer(&'a self) -> Event<'a> {
        Event { to: self, pri: FACILITY_DAEMON * 8 + 6, text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Event<'a> {
        Event { to: self, pri: FACILITY_DAEMON * 8 + severity(meta.level()), text: Vec::new() }
    }
}
