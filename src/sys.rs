//! The one module allowed to use `unsafe`: thin wrappers over libc calls that
//! the standard library does not expose.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, LazyLock, Mutex};

/// Best-effort `mlock` of a memory region holding key material, so it is not
/// written to swap. Failure (e.g. RLIMIT_MEMLOCK) is ignored on purpose: the
/// key is still zeroized on drop, and refusing to run would be worse.
/// Takes the bytes, not a raw pointer, so that a safe caller cannot name
/// memory it does not own.
pub fn lock_memory(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: mlock only changes page residency for the given range; it never
    // reads or writes through the pointer, and the slice is live memory of
    // exactly that length.
    unsafe {
        libc::mlock(bytes.as_ptr().cast(), bytes.len());
    }
}

/// Children forked since this process image began, counted in each child
/// (0 in the original process). A per-thread pool of random bytes checks it
/// instead of `getpid` on every use (a syscall per sealed block): a forked
/// child sees a new value at once and must not hand out its parent's bytes.
pub fn fork_generation() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic, which
        // is async-signal-safe and so allowed in a child right after fork.
        unsafe {
            libc::pthread_atfork(None, None, Some(count_fork));
        }
    });
    FORKS.load(std::sync::atomic::Ordering::SeqCst)
}

static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The effective uid of this process.
/// Caps glibc's malloc arenas at `n`. By default glibc gives each busy
/// thread an arena of its own (up to eight per core) and keeps what they
/// free: a daemon with a dozen FUSE and sled threads churning small
/// allocations held 70 MB more for the same work (docs/PERFORMANCE.md).
/// A no-op on other C libraries.
pub fn limit_malloc_arenas(n: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it takes no pointers
    // and is safe to call at any time, from any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// Hands the allocator's free memory back to the kernel (`malloc_trim`):
/// glibc keeps what a thread frees in its arena, so memory a shrinking cache
/// gave up would otherwise stay resident. Takes a few ms on a large heap.
/// A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's
    // own free lists under their locks, and is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`), or None
/// where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| pages * p)
}

/// Sets an environment variable of this process unless it is set already.
/// Only for the very start of `main`, before any thread exists: the C
/// libraries that read the environment (the TPM stack) must see it.
pub fn default_env_at_start(name: &str, value: &str) {
    if std::env::var_os(name).is_none() {
        // SAFETY: called first thing in main, while the process has one
        // thread, so no other thread can read the environment meanwhile.
        unsafe { std::env::set_var(name, value) }
    }
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// The major and minor numbers of device `dev` (a `st_dev`).
pub fn device_numbers(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// Space figures of the filesystem holding `path` (statvfs).
pub struct FsSpace {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
}

pub fn fs_space(path: &std::path::Path) -> std::io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain old data, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer for the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FsSpace {
        block_size: st.f_frsize as u64,
        blocks: st.f_blocks as u64,
        blocks_free: st.f_bfree as u64,
        blocks_avail: st.f_bavail as u64,
    })
}

/// Detaches a mount even while it is busy (umount2 MNT_DETACH).
pub fn lazy_unmount(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Sends SIGTERM to process `pid`; Ok(false) if no such process.
pub fn terminate_process(pid: i32) -> std::io::Result<bool> {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(err) }
}

/// Shuts a socket down both ways. On a listening socket this wakes a
/// thread blocked in `accept` (which then fails), whatever became of the
/// socket's path.
pub fn shutdown_socket(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown has no memory-safety preconditions; `fd` is a live
    // socket borrowed for the call.
    let rc = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Who is on the other end of a Unix socket: (pid, uid, gid) as the kernel
/// recorded them at connect (SO_PEERCRED).
pub fn peer_credentials(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<(u32, u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers sized for SO_PEERCRED's
    // ucred, and `fd` is a live socket borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// How many `/proc/TID/comm` files `process_name` keeps open.
const KEPT_COMM_FILES: usize = 256;

/// Open `/proc/TID/comm` files by thread id. Naming the caller of every
/// audited request by path (walk, open, read, close) was a sixth of the
/// daemon's CPU on small-file reads; a kept file costs one `pread`, which
/// shows the name as it is now (after `exec` or `prctl`). A kept file stays
/// bound to the task it was opened for: once that task is reaped its reads
/// fail with ESRCH, even if the number is reused, and it is opened anew.
static COMM_FILES: LazyLock<Mutex<HashMap<u32, Arc<File>>>> = LazyLock::new(Default::default);

/// A process's name (`/proc/PID/comm`, at most 16 bytes; empty if it is gone).
pub fn process_name(pid: u32) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let kept = COMM_FILES.lock().unwrap_or_else(|p| p.into_inner()).get(&pid).cloned();
    let mut buf = [0u8; 64];
    if let Some(file) = kept {
        if let Ok(n) = file.read_at(&mut buf, 0) {
            return comm_from(&buf[..n]);
        }
        COMM_FILES.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
    }
    let Ok(file) = File::open(format!("/proc/{pid}/comm")) else { return Vec::new() };
    let Ok(n) = file.read_at(&mut buf, 0) else { return Vec::new() };
    let mut files = COMM_FILES.lock().unwrap_or_else(|p| p.into_inner());
    if files.len() >= KEPT_COMM_FILES {
        // Mostly tasks long gone: start over rather than track ages.
        files.clear();
    }
    files.insert(pid, Arc::new(file));
    comm_from(&buf[..n])
}

fn comm_from(bytes: &[u8]) -> Vec<u8> {
    let name = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    name[..name.len().min(16)].to_vec()
}

/// The supplementary groups of process `pid` (the `Groups:` line of
/// /proc/PID/status); empty if the process is gone.
pub fn supplementary_groups(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether task `tid` has a signal pending that it neither blocks nor
/// ignores (or is gone): what would end an interruptible wait of it in the
/// kernel. From /proc/TID/status (SigPnd, ShdPnd, SigBlk, SigIgn). A FUSE
/// request the daemon has read is waited for uninterruptibly, even by a
/// killed task, until it is answered: a wait the daemon makes on a task's
/// behalf looks here to know when to give up.
pub fn signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else { return true };
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    pending & !mask("SigBlk:") & !mask("SigIgn:") != 0
}

/// This host's name among a cluster vault's hosts: `VAULTFS_HOST`, else
/// the machine's name.
pub fn host_name() -> String {
    std::env::var("VAULTFS_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(hostname)
}

/// This machine's name ("-" when unknown): syslog's HOSTNAME field, a
/// cluster vault's holder.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let printable = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic());
    if printable { name.to_string() } else { "-".to_string() }
}

#[cfg(test)]
mod tests {
    use super::{fork_generation, process_name};
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The kept file shows the name as it is now: after `exec`, and empty
    /// once the process is reaped (never the name of an old task).
    #[test]
    fn process_name_follows_exec_and_exit() {
        let mut child = Command::new("sh")
            .args(["-c", "read line; exec sleep 30"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        // Until the child's exec, it carries the forking thread's name.
        let wait_for = |name: &[u8]| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_name(pid) != name {
                assert!(Instant::now() < deadline, "still {:?}", String::from_utf8_lossy(&process_name(pid)));
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(b"sh");
        child.stdin.take().expect("stdin").write_all(b"go\n").expect("write");
        wait_for(b"sleep");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(process_name(pid), b"");
        assert!(!process_name(std::process::id()).is_empty());
    }

    #[test]
    fn a_forked_child_sees_a_new_fork_generation() {
        let parent = fork_generation();
        // SAFETY: the child only reads an atomic and calls _exit, both
        // async-signal-safe, so forking this multi-threaded test is sound.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if fork_generation() != parent { 0 } else { 1 };
            // SAFETY: ends the child at once, running no destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw the parent's generation"
        );
        assert_eq!(fork_generation(), parent, "the parent's generation moved");
    }
}
