//! Allocator settings for training. A training step allocates and frees the same large
//! activation buffers every step; glibc serves blocks above its mmap threshold (128 KiB at
//! start) with fresh `mmap`s, so each step pays page faults and zeroing of new pages for all of
//! them.
//! Raising the threshold to glibc's maximum and keeping freed memory (no trimming) lets every
//! step reuse the previous step's pages.

/// Applies the settings; a no-op on other C libraries. Called once by the binary at start.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate.
    unsafe {
        // 32 MiB: glibc's upper bound for the mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
