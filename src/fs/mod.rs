//! The FUSE front end: a thin adapter from fuser callbacks to the vault.
//! Each callback converts its arguments, calls one vault operation, and
//! replies or maps the error to an errno. Owns fuser and signal-hook.
//!
//! Imports run downward: `session` mounts the `adapter`, which asks
//! `record` to describe and record each access, `perm` for mode bits and
//! `virtual_files` for `.audit`, `.stats` and `.backup/` (`backup` makes
//! the archives); `errno`, `attr` and `handles` serve them all.

mod adapter;
mod attr;
mod backup;
mod errno;
mod handles;
mod names;
mod pages;
mod record;
mod session;
mod virtual_files;

pub use backup::ArchiveMaker;
pub use session::{MountOptions, mount};
