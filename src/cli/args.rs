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
    /// The audit log: public key, verification, proofs, checkpoints, tail.
    Audit(AuditArgs),
    /// Write a signed, ciphertext-only archive of a vault (of a mounted one: the archive its .backup/ serves).
    Backup(BackupArgs),
    /// Verify an archive (signature, audit checkpoint) and restore it into a new store directory or cluster vault.
    Restore(RestoreArgs),
    /// Enroll a hardware factor (TPM or FIDO2) for a level (a mounted vault: through its daemon).
    Enroll(EnrollArgs),
    /// Remove a hardware factor's key slot (never a level's last one).
    Unenroll(UnenrollArgs),
    /// Recovery key escrow: split it into Shamir shares, or recover with them.
    Escrow(EscrowArgs),
    /// Dead-man succession: an heir's key, a check-in period, and a release
    /// for the heir once the owner stops checking in.
    Succession(SuccessionArgs),
    /// The owner is still here: restart the will's check-in period (passphrase).
    Checkin(CheckinArgs),
    /// Open a locked level of a mounted vault (touch / TPM unseal / passphrase).
    Unlock(UnlockArgs),
    /// Close a level (or every level from 2 up); its key is zeroized.
    Lock(LockArgs),
    /// Approve a pending open at a gated level (without an id: the only one waiting).
    Approve(ApproveArgs),
    /// Deny a pending open.
    Deny(DenyArgs),
    /// List the opens waiting for approval.
    Pending(PendingArgs),
    /// Close every level above 1 until `lockdown --exit` (passphrase + factor).
    Lockdown(LockdownArgs),
    /// A cluster vault's own policy, which every host follows on top of its
    /// policy file (docs/POLICY.md, "The vault's policy").
    Policy(PolicyArgs),
    /// Levels, lockdown, pending approvals and tombstones of a mounted vault.
    Status(StatusArgs),
    /// Authenticate every record (a mounted vault: through its daemon, read-only);
    /// --repair (unmounted) removes what is provably orphaned.
    Fsck(FsckArgs),
    /// Copy every record of a damaged store that still authenticates into a new
    /// store (the old one is only read), saying what could not be recovered.
    Salvage(SalvageArgs),
    /// Rewrite an unmounted store's index with only its live records, giving
    /// back the disk of deleted ones (archived audit records above all).
    Compact(CompactArgs),
    /// New keys for a level (default: every level with a key) of an unmounted vault;
    /// re-encrypts its files. Resumable: rerun it after an interruption.
    Rotate(RotateArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Write the manual pages (vaultfs(1), vaultfs-COMMAND(1) for each command, mount.vaultfs(8)) into DIR.
    Manpages(ManpagesArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManpagesArgs {
    /// The directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

/// Which TPM to use.
#[derive(Args, Debug, Default)]
pub struct TpmArgs {
    /// TPM TCTI (e.g. device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321);
    /// default: $TPM2TOOLS_TCTI, $TCTI, $TSS2_TCTI, else device:/dev/tpmrm0.
    #[arg(long, value_name = "TCTI")]
    pub tpm_tcti: Option<String>,
}

/// Where a FIDO2 PIN comes from, if the credential needs one.
#[derive(Args, Debug, Default)]
pub struct PinArgs {
    /// Read the FIDO2 PIN from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    pub pin_file: Option<PathBuf>,
    /// Ask for the FIDO2 PIN on the terminal.
    #[arg(long)]
    pub pin: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorName {
    Tpm,
    Fido2,
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The factor to enroll.
    pub factor: FactorName,
    /// The vault's store directory.
    pub store: PathBuf,
    /// The level it gates (3 to 5).
    #[arg(long, value_name = "N")]
    pub level: u8,
    /// Bind the TPM seal to these SHA-256 PCRs (e.g. 7,16).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub tpm_pcrs: Vec<u8>,
    /// FIDO2: do not require a touch at each unlock (presence is on by default).
    #[arg(long)]
    pub no_presence: bool,
    /// Level 5 only: do not also require the level-4 factor (the default does).
    #[arg(long)]
    pub alone: bool,
    /// Escrow shares that open an escrowed level whose factor is lost
    /// (`vaultfs escrow split --escrow-levels`), to enroll a new factor.
    #[command(flatten)]
    pub shares: ShareArgs,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// Where escrow shares come from.
#[derive(Args, Debug, Default)]
pub struct ShareArgs {
    /// A file holding escrow shares, one per line (repeat for several files).
    #[arg(long = "share-file", value_name = "FILE")]
    pub share_files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EscrowArgs {
    #[command(subcommand)]
    pub command: EscrowCommand,
}

#[derive(Subcommand, Debug)]
pub enum EscrowCommand {
    /// Make a new recovery key and print N shares of it, any T of which
    /// restore access (replaces an earlier split: its shares stop working).
    Split(EscrowSplitArgs),
    /// Set a new passphrase with T shares when the passphrase is lost.
    Recover(EscrowRecoverArgs),
}

#[derive(Args, Debug)]
pub struct EscrowSplitArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// How many shares to make (2 to 255).
    #[arg(long, value_name = "N")]
    pub shares: u8,
    /// How many shares recover (2 to N).
    #[arg(long, value_name = "T")]
    pub threshold: u8,
    /// Levels with hardware factors (3 to 5) that the recovery key opens too;
    /// their factors are asked for once, now (e.g. 4,5).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub escrow_levels: Vec<u8>,
    /// Replace the vault's existing split (its shares stop working).
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct SuccessionArgs {
    #[command(subcommand)]
    pub command: SuccessionCommand,
}

#[derive(Subcommand, Debug)]
pub enum SuccessionCommand {
    /// Make an heir's key pair: the private key into FILE (mode 0600, never
    /// overwritten), the public key into FILE.pub and on standard output.
    Keygen(SuccessionKeygenArgs),
    /// Write the will: the heir's public key, the check-in period, and the
    /// levels bequeathed (1 to 3 always; 4, 5 if named: their factors are asked now).
    Setup(SuccessionSetupArgs),
    /// Show the will: heir, period, last check-in, when a release becomes possible.
    Status(SuccessionStoreArgs),
    /// Remove the will (passphrase).
    Cancel(SuccessionStoreArgs),
    /// On a mounted vault whose owner has not checked in for a whole period:
    /// print the release (what the heir needs). Recorded, refused (exit 12) before.
    Release(SuccessionReleaseArgs),
    /// The heir, on the unmounted store: open a release with the heir's
    /// private key and set a new passphrase; the bequeathed levels open with it.
    Claim(SuccessionClaimArgs),
}

#[derive(Args, Debug)]
pub struct SuccessionKeygenArgs {
    /// Where to write the private key (FILE.pub gets the public key).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SuccessionSetupArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// The heir's public key: its text (vaultfs-heir-1-…) or a file holding it.
    #[arg(long, value_name = "KEY|FILE")]
    pub heir: String,
    /// How long the owner may go without `vaultfs checkin` before a release
    /// is possible: a number with s, m, h or d (30d, 12h), or seconds.
    #[arg(long, value_name = "DURATION")]
    pub period: String,
    /// Hardware factor levels (4, 5) bequeathed besides levels 1 to 3.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub levels: Vec<u8>,
    /// Replace the vault's existing will (its releases stop being claimable).
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct SuccessionStoreArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct CheckinArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct SuccessionReleaseArgs {
    /// The vault's store directory (of a mounted vault).
    pub store: PathBuf,
    /// Write the release to this new file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SuccessionClaimArgs {
    /// The vault's store directory (unmounted).
    pub store: PathBuf,
    /// The heir's private key file (`succession keygen`).
    #[arg(long, value_name = "FILE")]
    pub heir_key: PathBuf,
    /// The release (`succession release`), a file holding it.
    #[arg(long, value_name = "FILE")]
    pub release: PathBuf,
    /// Read the new passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EscrowRecoverArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// Shares to read (default: standard input, one per line).
    #[command(flatten)]
    pub shares: ShareArgs,
    /// Read the new passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UnenrollArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// The key slot to remove (as `vaultfs info` numbers them).
    #[arg(long, value_name = "K")]
    pub slot: usize,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// The level: a number (0-5) or its directory name (5-black).
    pub level: String,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// The level (default: every level from 2 up).
    pub level: Option<String>,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// The pending open's id (from `vaultfs pending`): `ID` for this
    /// mount's, `HOST:ID` for one waiting on another host of a cluster
    /// vault; may be left out only while exactly one open is waiting.
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct PendingArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// Print the list as a JSON array of {id, level, pid, uid, comm, path,
    /// waited_ms}, with `host` for an open waiting on another host.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DenyArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// The pending open's id (from `vaultfs pending`): `ID`, or `HOST:ID`
    /// for one waiting on another host of a cluster vault.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Store FILE as the vault's policy, for every host (through the
    /// daemon of a mount on any host). Tightening applies on every mount
    /// within a second; loosening at each host's next mount.
    Set(PolicySetArgs),
    /// Print the vault's policy that a mount follows.
    Show(PolicyShowArgs),
}

#[derive(Args, Debug)]
pub struct PolicySetArgs {
    /// The mount point of the vault (any host's mount, read-only ones too).
    pub mountpoint: PathBuf,
    /// The policy (policy.toml's keys, less approval_notify, export and
    /// audit, which are each host's); `-` reads standard input.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct PolicyShowArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct LockdownArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// Leave lockdown (needs the passphrase and an enrolled hardware factor).
    #[arg(long)]
    pub exit: bool,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Directory to create the vault in, or a cluster vault's address,
    /// etcd://HOST:PORT[,HOST:PORT...]/VAULT (with --data).
    pub store: PathBuf,
    /// A cluster vault's object store, where its block data goes:
    /// s3://HOST[:PORT]/BUCKET (HTTPS) or s3+http://HOST[:PORT]/BUCKET. The
    /// bucket must exist; credentials come from AWS_* variables or
    /// ~/.aws/credentials (docs/CLUSTER.md).
    #[arg(long, value_name = "URL")]
    pub data: Option<String>,
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
    /// Create the vault in a directory that already holds other files
    /// (say a fresh file system's root with its lost+found).
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Also make a recovery key and print it (one line, to write down):
    /// `vaultfs escrow recover` sets a new passphrase with it. The same as
    /// `vaultfs escrow split --shares 1 --threshold 1` later.
    #[arg(long)]
    pub recovery_key: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The vault's store directory.
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The vault's store directory.
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
    /// The vault's store directory.
    pub store: PathBuf,
    /// The empty directory to mount the vault on.
    pub mountpoint: PathBuf,
    /// Stay in the foreground, logging to stderr.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma-separated: ro (on a cluster vault: beside its holder), shared
    /// (a cluster vault written from several hosts, each mounting with it), rw, allow_other,
    /// default_permissions (ignored:
    /// the daemon checks permissions itself), sync (every change on disk before its
    /// reply), commit=MS (changes reach the disk within MS ms, default 1000; fsync
    /// and unmount always), cache=MIB (the store's page cache, default 128), inodes=N
    /// (files the kernel may keep looked up, default 100000), readahead=KIB (the
    /// kernel's readahead for the mount, default 4096, set when run as root; 0: the
    /// kernel's 128), uid=N,
    /// gid=N, threads=N, passphrase_file=PATH, witness=PATH (as --witness; plus
    /// fstab's auto/noauto/nofail/...).
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
    /// The policy file to follow (default: STORE/policy.toml; docs/POLICY.md).
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Rollback anchor: keep the newest audit checkpoint in this file (on
    /// another disk or a share; created at first use) and refuse to mount a
    /// store older than it (exit 11).
    #[arg(long, value_name = "PATH")]
    pub witness: Option<PathBuf>,
    /// Serve Prometheus metrics (/metrics) and a health check (/health) over
    /// HTTP at this address: PORT (on 127.0.0.1) or HOST:PORT. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub tpm: TpmArgs,
    /// Internal: run as the daemon child of `vaultfs mount`, reporting readiness on stdout.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Remove what is provably orphaned and fix certain counts; every repair
    /// is recorded in the audit log.
    #[arg(long)]
    pub repair: bool,
    /// Also authenticate this level (3-5 or its directory name) with its
    /// hardware factor (TPM unseal, FIDO2 touch). Repeatable.
    #[arg(long = "level", value_name = "N")]
    pub levels: Vec<String>,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// The vault's store directory (not mounted).
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct SalvageArgs {
    /// The damaged vault's store directory (read, never written).
    pub store: PathBuf,
    /// Where to create the salvaged vault (must not hold one).
    pub new_store: PathBuf,
    /// Also authenticate this level (3-5 or its directory name) with its
    /// hardware factor; records of hardware levels not named are copied
    /// unchecked. Repeatable.
    #[arg(long = "level", value_name = "N")]
    pub levels: Vec<String>,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// Rotate only this level (1-5 or its directory name). Repeatable.
    #[arg(long = "level", value_name = "N")]
    pub levels: Vec<String>,
    #[command(flatten)]
    pub tpm: TpmArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    /// Escrow shares: needed when a rotated level has an escrow slot (it is re-wrapped too).
    #[command(flatten)]
    pub shares: ShareArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The vault's store directory.
    pub store: PathBuf,
    /// The archive file to write ("-": standard output); an existing file is never overwritten.
    pub out: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The archive (`vaultfs backup`, or a copy of MOUNT/.backup/vault-N.vfsbak).
    pub archive: PathBuf,
    /// The store directory to create; must not exist (or be empty). Or a
    /// cluster vault to create, etcd://HOST:PORT[,HOST:PORT...]/VAULT (with
    /// --data): etcd must hold no vault of that name.
    pub new_store: PathBuf,
    /// The new cluster vault's object store: s3://HOST[:PORT]/BUCKET or
    /// s3+http://HOST[:PORT]/BUCKET, as for `init` (docs/CLUSTER.md).
    #[arg(long, value_name = "URL")]
    pub data: Option<String>,
    /// The vault's audit public key (64 hex digits as `vaultfs audit pubkey`
    /// prints them, or a file holding them): the archive must be signed by it.
    #[arg(long, value_name = "KEY")]
    pub pubkey: Option<String>,
    /// A checkpoint kept earlier (a file with a note as `vaultfs audit
    /// checkpoint` prints it, or a copy of `.audit`): refuse an archive whose
    /// audit log does not contain the tree it signed (an older archive, a rollback).
    #[arg(long, value_name = "CHECKPOINT")]
    pub not_older_than: Option<String>,
    /// The rollback anchor the restored vault will be mounted with
    /// (`mount --witness`): set it deliberately to the archive's checkpoint,
    /// so that the restored (older) store mounts.
    #[arg(long, value_name = "PATH")]
    pub witness: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point of the vault.
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the Ed25519 public key checkpoints verify under (hex).
    Pubkey {
        /// The vault's store directory.
        store: PathBuf,
    },
    /// Verify a store's whole log, or a copy of `.audit` with the public key alone.
    Verify(AuditVerifyArgs),
    /// Sign a checkpoint over every record now, and print it.
    Checkpoint {
        /// The vault's store directory.
        store: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print an inclusion or consistency proof (JSON, hex hashes).
    Proof {
        /// The vault's store directory.
        store: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        /// Leaf index to prove included.
        #[arg(long, value_name = "N", conflicts_with = "consistency")]
        inclusion: Option<u64>,
        /// Tree size for --inclusion (default: the whole log).
        #[arg(long, value_name = "SIZE")]
        size: Option<u64>,
        /// Two tree sizes to prove consistent.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
        consistency: Option<Vec<u64>>,
    },
    /// Show the newest records, of a mount (MOUNT/.audit) or of a store.
    Tail(AuditTailArgs),
    /// Move the oldest records into an archive file (verifiable with the
    /// public key alone) and out of the store.
    Archive(AuditArchiveArgs),
}

#[derive(Args, Debug)]
pub struct AuditArchiveArgs {
    /// The vault's store directory (not mounted; a mount archives by policy).
    pub store: PathBuf,
    /// Archive the records before this one: a record index, or a UTC date
    /// (YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SSZ): the records stamped before it.
    #[arg(long, value_name = "INDEX|DATE")]
    pub before: String,
    /// The archive file to write (an existing file is never replaced).
    pub out: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Args, Debug)]
pub struct AuditVerifyArgs {
    /// The vault to verify (needs its passphrase).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub store: Option<PathBuf>,
    /// A copy of `.audit`, or an archive, to verify instead; repeat it for
    /// archives and a copy of `.audit`, oldest first, to verify them as one log.
    #[arg(long, value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// With STORE: the archive files that hold its records before the
    /// archive base, oldest first, verified as one log with the store.
    #[arg(long, value_name = "FILE", requires = "store")]
    pub archive: Vec<PathBuf>,
    /// The vault's audit public key: 64 hex digits, or a file holding them.
    #[arg(long, value_name = "KEY", requires = "file")]
    pub pubkey: Option<String>,
    /// A checkpoint saved earlier (a signed note, e.g. from `vaultfs audit
    /// checkpoint`): the log must still contain exactly the tree it signed.
    /// This is what catches a store rolled back to an older copy.
    #[arg(long, value_name = "NOTE_FILE", conflicts_with = "file")]
    pub since: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// How `audit tail` prints records.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailFormat {
    Text,
    Json,
    Cef,
    Syslog,
}

#[derive(Args, Debug)]
pub struct AuditTailArgs {
    /// A mount point, or a store (needs its passphrase).
    pub target: PathBuf,
    /// How many records to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: u64,
    /// Print the JSON lines as they are in `.audit` (as --format json).
    #[arg(long)]
    pub json: bool,
    /// How each record is printed: text (for people), json (the `.audit`
    /// lines), cef or syslog (RFC 5424; as the policy's exports send them).
    #[arg(long, value_enum, default_value_t = TailFormat::Text)]
    pub format: TailFormat,
    /// Keep printing new records (mount points only).
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}
