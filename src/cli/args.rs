//! What the user typed, as clap parses it. Validation into decisions happens
//! in each command's module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vaultfs", version, about = "Encrypted, audited memory vault for AI agents")]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new vault in STORE (refuses to overwrite an existing one).
    Init(InitArgs),
    /// Show a vault's public header facts (no passphrase needed).
    Info(InfoArgs),
    /// Change the passphrase (re-wraps the master key only).
    Passwd(PasswdArgs),
    /// Mount the vault at MOUNTPOINT (daemonizes unless -f).
    Mount(MountArgs),
    /// Unmount a mounted vault, waiting until its daemon has flushed and exited.
    Umount(UmountArgs),
}

/// Where a passphrase comes from; never from the command line itself.
#[derive(Args, Debug, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_fd")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this open file descriptor (first line).
    #[arg(long, value_name = "FD")]
    pub passphrase_fd: Option<u32>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to create the vault in.
    pub store: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Argon2id memory cost in MiB (8..=4096).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub kdf_memory: u32,
    /// Argon2id passes (1..=64).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_passes: u32,
    /// Plaintext block size in bytes (4096, 8192, 16384, 32768 or 65536).
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<u32>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    pub store: PathBuf,
    /// Current passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Read the new passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    /// Stay in the foreground, logging to stderr.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma-separated: ro, rw, allow_other, default_permissions,
    /// uid=N, gid=N, threads=N, passphrase_file=PATH (plus fstab's auto/noauto/nofail/...).
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
    /// FUSE worker threads (default: twice the CPU count, at least 2).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Where the daemon writes its log (default: nowhere).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Internal: run as the daemon child of `vaultfs mount`, reporting readiness on stdout.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
}
