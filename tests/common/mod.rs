//! Shared harness for tests that mount a real vault through /dev/fuse with
//! the real `vaultfs` binary (CI runs as root; .ci/setup installs fuse3).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod control;

pub const PASSPHRASE: &str = "correct horse battery staple";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vaultfs")
}

/// Runs `vaultfs ARGS`, returning its output.
pub fn vaultfs(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run vaultfs")
}

/// A vault in a temporary directory, mounted while `mounted` is true.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub mnt: PathBuf,
    pub passfile: PathBuf,
    pub mounted: bool,
    pub options: Vec<String>,
    /// Environment of the mount daemon (TPM TCTI, software FIDO2 state).
    pub env: Vec<(String, String)>,
}

impl Mount {
    /// Creates a vault (cheap KDF) and mounts it with `options` (-o list).
    pub fn with_options(options: &[&str]) -> Mount {
        Mount::with_init(&[], options)
    }

    /// As `with_options`, with more `vaultfs init` arguments (`--block-size N`).
    pub fn with_init(init_args: &[&str], options: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let mnt = dir.path().join("mnt");
        let passfile = dir.path().join("pass");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(&passfile, format!("{PASSPHRASE}\n")).unwrap();
        let mut args = vec![
            "init",
            store.to_str().unwrap(),
            "--passphrase-file",
            passfile.to_str().unwrap(),
            "--kdf-memory",
            "8",
            "--kdf-passes",
            "1",
        ];
        args.extend_from_slice(init_args);
        let out = vaultfs(&args);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut m = Mount {
            dir,
            store,
            mnt,
            passfile,
            mounted: false,
            options: options.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        m.mount();
        m
    }

    pub fn new() -> Mount {
        Mount::with_options(&[])
    }

    pub fn mount(&mut self) {
        let mut args = vec![
            "mount".to_string(),
            self.store.to_string_lossy().into_owned(),
            self.mnt.to_string_lossy().into_owned(),
            "--passphrase-file".into(),
            self.passfile.to_string_lossy().into_owned(),
            "--log".into(),
            self.dir.path().join("daemon.log").to_string_lossy().into_owned(),
        ];
        for o in &self.options {
            args.push("-o".into());
            args.push(o.clone());
        }
        let out = Command::new(bin()).args(&args).envs(self.env.clone()).output().expect("run vaultfs mount");
        assert!(out.status.success(), "mount failed: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = true;
    }

    /// `vaultfs mount STORE MNT --passphrase-file PASS EXTRA...` with the
    /// daemon's environment, its output as is (for refusals and options);
    /// `mounted` is the caller's to set.
    pub fn try_mount(&self, extra: &[&str]) -> Output {
        Command::new(bin())
            .args(["mount", self.store.to_str().unwrap(), self.mnt.to_str().unwrap()])
            .args(["--passphrase-file", self.passfile.to_str().unwrap()])
            .args(extra)
            .envs(self.env.clone())
            .output()
            .expect("run vaultfs mount")
    }

    pub fn unmount(&mut self) {
        let out = vaultfs(&["umount", self.mnt.to_str().unwrap()]);
        assert!(out.status.success(), "umount failed: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = false;
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.store.join("mount.pid")).ok()?.trim().parse().ok()
    }

    /// Kills the daemon and detaches the mount: the kernel then fails every
    /// pending and later request on it (ENOTCONN) instead of waiting forever.
    pub fn abort(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        self.mounted = false;
    }

    /// Runs `vaultfs ARGS` with the daemon's environment.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin()).args(args).envs(self.env.clone()).output().expect("run vaultfs")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if std::thread::panicking() {
            // The test failed, perhaps because the daemon hangs: a graceful
            // unmount could hang too, and so could every thread still inside
            // the mount, keeping the test binary from ever exiting.
            self.abort();
            return;
        }
        let _ = vaultfs(&["umount", self.mnt.to_str().unwrap()]);
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// Whether `path` is a mount point right now. Only its parent is resolved:
/// a stat of a hung mount point would hang.
pub fn is_mounted(path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
    let Ok(parent) = parent.canonicalize() else { return false };
    let canon = parent.join(name);
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(Path::new) == Some(canon.as_path()))
}

/// Runs a shell command, panicking with its output if it fails.
pub fn sh(cmd: &str, cwd: &Path) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).current_dir(cwd).output().expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `f` holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
