//! vaultfs: an encrypted vault of memories for AI agents.
//!
//! Layering (imports flow downward only; see docs/ARCHITECTURE.md):
//! L5 cli · L4 fs, control, backup, monitor, export · L3 vault · L2 block, meta, audit, gate · L1 store
//! · L0 crypto, format, policy, metrics, scan.
//!
//! `unsafe` is allowed in `sys` alone (tests/layering.rs checks it too).
#![deny(unsafe_code)]

pub mod audit;
pub mod backup;
pub mod block;
pub mod cli;
pub mod control;
pub mod crypto;
pub mod export;
pub mod format;
pub mod fs;
pub mod gate;
pub mod meta;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod scan;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod vault;

pub use vault::{Error, ErrorKind, Locked, Unlocked, Vault};
