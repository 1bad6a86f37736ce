//! The control plane (L4): `vaultfs unlock | lock | approve | deny | pending
//! | lockdown | status` talk to the mounted daemon over a Unix socket in the
//! store directory, mode 0600, owned by the uid that mounted. One JSON
//! request per line, one JSON response per line (docs/CONTROL.md).
//!
//! - [`protocol`]: the messages.
//! - [`server`]: the daemon's side: accepts, checks the peer, calls the vault.

pub mod protocol;
pub mod server;

/// The socket's file name in the store directory.
pub const SOCKET_NAME: &str = "control.sock";
