//! The one module allowed to use `unsafe`: thin wrappers over libc calls that
//! the standard library does not expose.

/// Best-effort `mlock` of a memory region holding key material, so it is not
/// written to swap. Failure (e.g. RLIMIT_MEMLOCK) is ignored on purpose: the
/// key is still zeroized on drop, and refusing to run would be worse.
pub fn lock_memory(ptr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: mlock only changes page residency for the given range; it never
    // reads or writes through the pointer, and the caller passes a live
    // allocation of `len` bytes.
    unsafe {
        libc::mlock(ptr.cast(), len);
    }
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}
