//! vaultfs: an encrypted vault of memories for AI agents.
//!
//! Layering (imports flow downward only; see docs/ARCHITECTURE.md):
//! L5 cli · L4 fs, control, backup, monitor, export · L3 vault · L2 block, meta, audit, gate · L1 store
//! · L0 crypto, format, policy, metrics, scan.
//!
//! `unsafe` is allowed in `sys` alone (tests/layering.rs checks it too).
//!
//! Public: `cli` (the binary's entry) and `vault` (the composer). The layers
//! below the vault that the integration tests, benchmarks and fuzz targets
//! exercise directly (decoders, the store, sealing, the gates) are public
//! only with the `internals` feature, which those turn on and the binary's
//! build does not; the rest is private. So the binary's build (`cargo clippy`
//! without features, in .ci/test) reports code that only tests use.
#![deny(unsafe_code)]

/// A module public only with the `internals` feature (tests, benchmarks,
/// fuzz targets), private in the binary's build.
macro_rules! internal {
    ($name:ident) => {
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    };
}

internal!(audit);
internal!(backup);
internal!(block);
pub mod cli;
mod control;
internal!(crypto);
mod export;
internal!(format);
mod fs;
internal!(gate);
mod meta;
mod metrics;
mod monitor;
mod policy;
mod scan;
internal!(store);
#[allow(unsafe_code)]
mod sys;
pub mod vault;

pub use vault::{Error, ErrorKind, Locked, Unlocked, Vault};
