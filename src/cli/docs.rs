//! Shell completions and manual pages, generated from the clap definitions
//! (so they cannot drift from the parser), plus the sections clap does not
//! know: vaultfs(1)'s EXIT STATUS and FILES, and mount.vaultfs(8).
//! `mount-helpers/install.sh` installs what these write.

use std::path::Path;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, ManpagesArgs};
use super::exit::{self, Code, Exit};

pub fn completions(a: CompletionsArgs) -> exit::Result {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "vaultfs", &mut std::io::stdout());
    Ok(())
}

pub fn manpages(a: ManpagesArgs) -> exit::Result {
    let io = |what: &Path, e: std::io::Error| Exit::failure(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&a.dir).map_err(|e| io(&a.dir, e))?;
    let write = |name: String, page: Vec<u8>| -> exit::Result {
        let path = a.dir.join(name);
        std::fs::write(&path, page).map_err(|e| io(&path, e))
    };
    let cli = Cli::command();
    let version = cli.get_version().unwrap_or_default().to_string();
    write("vaultfs.1".into(), main_page(&cli)?)?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("vaultfs-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).version(version.clone());
        write(format!("{name}.1"), render(clap_mangen::Man::new(sub).section("1"))?)?;
    }
    write("mount.vaultfs.8".into(), mount_helper_page(&version).into_bytes())
}

fn render(man: clap_mangen::Man) -> Result<Vec<u8>, Exit> {
    let mut out = Vec::new();
    man.render(&mut out).map_err(|e| Exit::failure(format!("rendering a manual page: {e}")))?;
    Ok(out)
}

fn main_page(cli: &clap::Command) -> Result<Vec<u8>, Exit> {
    let mut out = render(clap_mangen::Man::new(cli.clone()).section("1"))?;
    let mut extra = String::from(".SH \"EXIT STATUS\"\n.TP\n0\nsuccess\n");
    for code in Code::ALL {
        extra.push_str(&format!(".TP\n{}\n{}\n", code as u8, roff_text(code.meaning())));
    }
    extra.push_str(concat!(
        ".SH FILES\n",
        ".TP\nSTORE/mount.pid, STORE/control.sock\n",
        "the running daemon of a mounted vault and its control socket (unlock, lock, approve, status)\n",
        ".TP\nSTORE/policy.toml\nthe access policy a mount follows (docs/POLICY.md)\n",
        ".TP\nSTORE/audit.pub\nthe audit log's Ed25519 public key, for verifiers\n",
        ".SH ENVIRONMENT\n.TP\nVAULTFS_LOG\n",
        "log filter (tracing's env-filter syntax, e.g. info or vaultfs=debug); overrides -v\n",
        ".TP\nVAULTFS_SYSLOG_SOCKET\n",
        "the system log socket a daemonized mount without --log writes to (default /dev/log)\n",
        ".SH \"SEE ALSO\"\nmount.vaultfs(8), vaultfs-mount(1), vaultfs-fsck(1), fusermount3(1)\n",
    ));
    out.extend_from_slice(extra.as_bytes());
    Ok(out)
}

/// Text as a roff paragraph line: a leading dot or quote would be a request.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

fn mount_helper_page(version: &str) -> String {
    format!(
        r#".TH mount.vaultfs 8 "" "vaultfs {version}"
.SH NAME
mount.vaultfs, mount.fuse.vaultfs \- mount(8) helper for vaultfs vaults
.SH SYNOPSIS
\fBmount\fR \fB\-t vaultfs\fR \fISTORE\fR \fIMOUNTPOINT\fR [\fB\-o\fR \fIOPTIONS\fR]
.br
\fBmount.vaultfs\fR \fISTORE\fR \fIMOUNTPOINT\fR [\fB\-sfnv\fR] [\fB\-o\fR \fIOPTIONS\fR]
.SH DESCRIPTION
Runs \fBvaultfs mount\fR \fISTORE MOUNTPOINT\fR \fB\-o\fR \fIOPTIONS\fR and passes its exit status
through (vaultfs(1), EXIT STATUS). It returns once the mount is ready; the daemon serving it keeps
running detached. \fBmount \-o remount,ro\fR (or \fBrw\fR) changes the running mount's flags.
An /etc/fstab line: \fISTORE MOUNTPOINT\fR \fBvaultfs noauto,passphrase_file=\fR\fIPATH\fR \fB0 0\fR.
.SH OPTIONS
.TP
\fBpassphrase_file=\fR\fIPATH\fR
read the passphrase from the first line of \fIPATH\fR (it never appears on a command line); without
it, vaultfs asks on the terminal
.TP
\fBro\fR, \fBrw\fR
read\-only or read\-write (default)
.TP
\fBallow_other\fR
let other users through the mount; the daemon checks every permission itself and records refusals
.TP
\fBsync\fR
every change is on disk before its reply
.TP
\fBcommit=\fR\fIMS\fR
changes reach the disk within \fIMS\fR milliseconds (default 1000); fsync, syncfs and unmount always
.TP
\fBcache=\fR\fIMIB\fR
the store's page cache (default 128)
.TP
\fBinodes=\fR\fIN\fR
inodes the kernel may keep looked up before the daemon asks it to forget the files unused longest (default 100000; about 100 bytes of memory each)
.TP
\fBnonempty\fR
mount over a directory that has files in it (they are hidden while mounted)
.TP
\fBuid=\fR\fIN\fR, \fBgid=\fR\fIN\fR, \fBthreads=\fR\fIN\fR
owner shown for the level directories, FUSE worker threads
.TP
\fBdefault_permissions\fR, \fBauto\fR, \fBnoauto\fR, \fBnofail\fR, \fB_netdev\fR, \fBx\-\fR\fI...\fR
accepted for fstab and ignored
.PP
Flags \fB\-s\fR, \fB\-n\fR and \fB\-v\fR are accepted (\fB\-v\fR echoes the command run);
\fB\-f\fR exits 0 without mounting.
.SH FILES
The vaultfs binary used is, in order: $VAULTFS_BIN, the path install.sh recorded, vaultfs beside
the helper, /usr/local/bin/vaultfs, vaultfs on PATH.
.SH "SEE ALSO"
vaultfs(1), vaultfs\-mount(1), mount(8), fstab(5)
"#
    )
}
