//! The `vaultfs` command line: parses what the user typed (args), turns it
//! into decisions, calls the vault, and maps errors to exit codes (exit).
//! One file per command. Owns clap, rpassword, tracing-subscriber and indicatif.

mod args;
mod audit;
mod backup;
mod compact;
mod control;
mod cpu;
mod docs;
mod enroll;
mod escrow;
mod exit;
mod fsck;
mod info;
mod init;
mod mount;
mod mountinfo;
mod passphrase;
mod passwd;
mod progress;
mod rotate;
mod salvage;
mod succession;
mod syslog;
mod umount;

use std::process::ExitCode;

use clap::Parser;

pub use exit::Exit;

/// Entry point of the `vaultfs` binary.
pub fn main() -> ExitCode {
    let missing = cpu::missing_features();
    if !missing.is_empty() {
        eprintln!("{}", cpu::message(&missing));
        return ExitCode::from(exit::Code::Failure as u8);
    }
    // The TPM stack's C library prints its own errors to stderr, raw; ours
    // say the same with what to do (TSS2_LOG set by the user still wins).
    crate::sys::default_env_at_start("TSS2_LOG", "all+NONE");
    let args = args::Cli::parse();
    // A daemonized mount without --log logs to the system log.
    let to_syslog = matches!(&args.command, args::Command::Mount(m) if m.daemon_child && m.log.is_none());
    init_logging(args.verbose, to_syslog);
    let result = match args.command {
        args::Command::Init(a) => init::run(a),
        args::Command::Info(a) => info::run(a),
        args::Command::Passwd(a) => passwd::run(a),
        args::Command::Mount(a) => mount::run(a, args.verbose),
        args::Command::Umount(a) => umount::run(a),
        args::Command::Audit(a) => audit::run(a),
        args::Command::Backup(a) => backup::run_backup(a),
        args::Command::Restore(a) => backup::run_restore(a),
        args::Command::Enroll(a) => enroll::run(a),
        args::Command::Unenroll(a) => enroll::run_unenroll(a),
        args::Command::Succession(a) => succession::run(a),
        args::Command::Salvage(a) => salvage::run(a),
        args::Command::Compact(a) => compact::run(a),
        args::Command::Checkin(a) => succession::run_checkin(a),
        args::Command::Escrow(a) => escrow::run(a),
        args::Command::Unlock(a) => control::unlock(a),
        args::Command::Lock(a) => control::lock(a),
        args::Command::Approve(a) => control::approve(a),
        args::Command::Deny(a) => control::deny(a),
        args::Command::Pending(a) => control::pending(a),
        args::Command::Lockdown(a) => control::lockdown(a),
        args::Command::Policy(a) => control::policy(a),
        args::Command::Status(a) => control::status(a),
        args::Command::Fsck(a) => fsck::run(a),
        args::Command::Rotate(a) => rotate::run(a),
        args::Command::Completions(a) => docs::completions(a),
        args::Command::Manpages(a) => docs::manpages(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultfs: {}", e.message);
            ExitCode::from(e.code as u8)
        }
    }
}

fn init_logging(verbose: u8, to_syslog: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // tss_esapi logs the errors it also returns, which we report in full.
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULTFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},tss_esapi=off")));
    if to_syslog {
        // The system log stamps time, host and pid itself.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(syslog::Syslog::connect())
            .with_ansi(false)
            .without_time()
            .try_init();
        return;
    }
    // Colours only on a terminal: a daemon's stderr is its log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
