//! The FUSE front end: a thin adapter from fuser callbacks to the vault.
//! Each callback converts its arguments, calls one vault operation, and
//! replies or maps the error to an errno. Owns fuser and signal-hook.

mod adapter;
mod attr;
mod audit;
mod backup;
mod errno;
mod handles;
mod perm;
mod session;
mod stats;

pub use backup::ArchiveMaker;
pub use session::{MountOptions, mount};
