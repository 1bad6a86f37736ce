//! Watching the policy file: the policy module's one piece of I/O.
//!
//! `notify` is owned here by design (tests/layering.rs, OWNERS). The watcher
//! watches the file's *directory*, non-recursively, and keeps the events that
//! name the file: so a plain overwrite, an editor's rename-over (write
//! `policy.toml.tmp`, rename it onto `policy.toml`), a creation and a
//! deletion all count, and the watch survives the file being replaced.
//!
//! Events are debounced: after the first one, the watcher waits until
//! [`QUIET`] passes without another (at most [`MAX_BURST`] in all), then reads
//! the file and calls back once with its text, or with the I/O error (for a
//! deleted file, `NotFound`: the caller keeps the last good policy). The
//! callback does not judge the text; the caller passes it to
//! [`Policy::accept`](super::Policy::accept).
//!
//! No initial call: start the watcher, *then* read the file once yourself,
//! so that no change falls between the two. A symlinked policy file is
//! watched by its own name, not its target's.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::{Error, MAX_POLICY_BYTES};

/// A burst of events ends when none has come for this long.
pub const QUIET: Duration = Duration::from_millis(100);

/// A burst is cut (and the file read) after this long even if events keep coming.
pub const MAX_BURST: Duration = Duration::from_secs(1);

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// A running watch of one policy file. Dropping it stops the watch and joins
/// its thread (waiting for a callback in progress to return).
pub struct PolicyWatcher {
    watcher: Option<RecommendedWatcher>,
    tx: mpsc::Sender<Msg>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatcher").finish_non_exhaustive()
    }
}

impl PolicyWatcher {
    /// Watches `path` (which need not exist yet; its directory must) and
    /// calls `on_change` on the watcher's own thread after each burst of
    /// changes, with the file's text or the error reading it.
    ///
    /// `on_change` should return promptly, and must not drop this watcher
    /// (dropping it from the callback does not wait for the thread).
    pub fn start(
        path: &Path,
        on_change: impl Fn(io::Result<String>) + Send + 'static,
    ) -> Result<PolicyWatcher, Error> {
        let watch_error = |reason: String| Error::Watch { path: path.display().to_string(), reason };
        let name = path.file_name().ok_or_else(|| watch_error("the path names no file".into()))?.to_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            // Fails only once the worker is gone, when nobody is listening.
            let _ = events.send(Msg::Fs(event));
        })
        .map_err(|e| watch_error(e.to_string()))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(format!("{}: {e}", dir.display())))?;
        let file = path.to_path_buf();
        let worker = thread::Builder::new()
            .name("vaultfs-policy".into())
            .spawn(move || run(&rx, &name, &file, &on_change))
            .map_err(|e| watch_error(e.to_string()))?;
        Ok(PolicyWatcher { watcher: Some(watcher), tx, worker: Some(worker) })
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        // Stop the OS watch first, so no event follows the stop.
        drop(self.watcher.take());
        let _ = self.tx.send(Msg::Stop);
        if let Some(worker) = self.worker.take() {
            if worker.thread().id() != thread::current().id() {
                // A panicking callback has already reported itself.
                let _ = worker.join();
            }
        }
    }
}

fn run(rx: &mpsc::Receiver<Msg>, name: &OsString, file: &Path, on_change: &dyn Fn(io::Result<String>)) {
    loop {
        match rx.recv() {
            Ok(Msg::Fs(event)) if relevant(&event, name) => {}
            Ok(Msg::Fs(_)) => continue,
            Ok(Msg::Stop) | Err(_) => return,
        }
        let start = Instant::now();
        let mut last = start;
        loop {
            let deadline = (last + QUIET).min(start + MAX_BURST);
            let Some(wait) = deadline.checked_duration_since(Instant::now()) else { break };
            match rx.recv_timeout(wait) {
                Ok(Msg::Fs(event)) => {
                    if relevant(&event, name) {
                        last = Instant::now();
                    }
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        on_change(read_policy(file));
    }
}

/// Whether an event may have changed the file: one that names it and is not
/// a mere open or read (our own read would otherwise wake us again), or one
/// after which the watcher may have missed events.
fn relevant(event: &notify::Result<notify::Event>, name: &OsString) -> bool {
    let Ok(event) = event else { return true };
    if event.need_rescan() {
        return true;
    }
    let passive = matches!(
        event.kind,
        EventKind::Access(AccessKind::Read | AccessKind::Open(_) | AccessKind::Close(AccessMode::Read))
    );
    !passive && event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()))
}

/// The file's text, refusing more than [`MAX_POLICY_BYTES`] or non-UTF-8.
fn read_policy(file: &Path) -> io::Result<String> {
    let mut text = String::new();
    let limit = u64::try_from(MAX_POLICY_BYTES).unwrap_or(u64::MAX);
    File::open(file)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() > MAX_POLICY_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {MAX_POLICY_BYTES} bytes", file.display()),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::mpsc::Receiver;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// Waits for a callback result that satisfies `want`, skipping others
    /// (a slow machine may split one change into two bursts).
    fn wait_for(rx: &Receiver<io::Result<String>>, what: &str, want: impl Fn(&io::Result<String>) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) if want(&r) => return,
                Ok(_) => continue,
                Err(e) => panic!("no callback for {what} within {PATIENCE:?}: {e}"),
            }
        }
    }

    fn is_text(expected: &'static str) -> impl Fn(&io::Result<String>) -> bool {
        move |r| r.as_ref().is_ok_and(|t| t == expected)
    }

    #[test]
    fn write_rename_over_and_delete_each_call_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let (tx, rx) = mpsc::channel();
        let watcher = PolicyWatcher::start(&path, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();

        fs::write(&path, "lockdown = false\n").unwrap();
        wait_for(&rx, "creation", is_text("lockdown = false\n"));

        fs::write(&path, "lockdown = true\n").unwrap();
        wait_for(&rx, "overwrite", is_text("lockdown = true\n"));

        let tmp = dir.path().join("policy.toml.tmp");
        fs::write(&tmp, "ephemeral_max_age = \"1h\"\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        wait_for(&rx, "rename-over", is_text("ephemeral_max_age = \"1h\"\n"));

        fs::remove_file(&path).unwrap();
        wait_for(&rx, "deletion", |r| r.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::NotFound));

        // Dropping joins the thread, which owned the callback and its sender.
        drop(watcher);
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.try_recv().unwrap_err(), mpsc::TryRecvError::Disconnected);
    }

    #[test]
    fn other_files_in_the_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let (tx, rx) = mpsc::channel();
        let _watcher = PolicyWatcher::start(&path, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        fs::write(dir.path().join("other.toml"), "x").unwrap();
        fs::write(dir.path().join("policy.toml.tmp"), "y").unwrap();
        fs::remove_file(dir.path().join("policy.toml.tmp")).unwrap();
        // Then a change to the file itself: it must be the first callback.
        fs::write(&path, "lockdown = true\n").unwrap();
        let first = rx.recv_timeout(PATIENCE).expect("no callback for the policy file");
        assert_eq!(first.unwrap(), "lockdown = true\n");
    }

    #[test]
    fn a_relative_path_watches_its_directory() {
        // `policy.toml` alone: its directory is ".". Only check it starts.
        let w = PolicyWatcher::start(Path::new("vaultfs-no-such-policy.toml"), |_| {});
        assert!(w.is_ok(), "{w:?}");
    }

    #[test]
    fn a_missing_directory_is_a_watch_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = PolicyWatcher::start(&dir.path().join("nope/policy.toml"), |_| {}).unwrap_err();
        assert!(matches!(err, Error::Watch { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = PolicyWatcher::start(Path::new("/"), |_| {}).unwrap_err();
        assert!(matches!(err, Error::Watch { .. }), "{err:?}");
    }

    #[test]
    fn oversized_files_are_refused_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        fs::write(&path, vec![b'#'; MAX_POLICY_BYTES + 1]).unwrap();
        assert_eq!(read_policy(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
        fs::write(&path, vec![b'#'; MAX_POLICY_BYTES]).unwrap();
        assert_eq!(read_policy(&path).unwrap().len(), MAX_POLICY_BYTES);
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(read_policy(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
