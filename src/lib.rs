//! vaultfs: an encrypted vault of memories for AI agents.
//!
//! Layering (imports flow downward only; see docs/ARCHITECTURE.md):
//! L5 cli · L4 fs, control, backup, monitor, export · L3 vault · L2 block, meta, audit, gate · L1 store
//! · L0 crypto, format, policy, metrics, scan.
//!
//! `unsafe` is allowed in `sys` alone (tests/layering.rs checks it too).
//!
//! Public: `cli` (the binary's entry), the vault and what the integration
//! tests and fuzz targets reach below it (decoders, the store, sealing,
//! the gates). The front ends other than `cli`, and the policy, metrics and
//! scanning that only the vault and the front ends use, are private: the
//! compiler then reports what nothing uses.
#![deny(unsafe_code)]

pub mod audit;
pub mod backup;
pub mod block;
pub mod cli;
mod control;
pub mod crypto;
mod export;
pub mod format;
mod fs;
pub mod gate;
mod meta;
mod metrics;
mod monitor;
mod policy;
mod scan;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod vault;

pub use vault::{Error, ErrorKind, Locked, Unlocked, Vault};
