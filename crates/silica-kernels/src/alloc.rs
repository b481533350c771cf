//! Process memory settings for the engine's activations.
#![allow(unsafe_code)]

/// Makes glibc's `malloc` keep the memory the engine frees and hand it out again, instead of returning it to the
/// kernel and taking fresh zeroed pages for the next forward pass.
///
/// Every forward pass of `silica-model` allocates its activations anew (candle tensors: `[n_tokens, n_ff]` f32 is
/// 16 MiB at n_tokens = 512, n_ff = 8192). glibc serves requests above its mmap threshold (128 KiB at start,
/// raised on free up to 32 MiB) with `mmap` and gives freed heap tops back past `M_TRIM_THRESHOLD`, so each pass
/// page-faulted its buffers in again: on the test machine (AMD EPYC Zen 4, 2 vCPUs, a VM) 1B-shape Q4_0 pp512
/// went from 208–213 to 244–248 t/s with these two settings (alternating runs of `silica bench -p 512 -n 0 -r 3`,
/// the settings given as `GLIBC_TUNABLES`). The threshold is glibc's maximum (`HEAP_MAX_SIZE / 2`, see glibc
/// `malloc/malloc.c`, `do_set_mmap_threshold`); the weights (mapped files, and repacked copies above 32 MiB) are
/// not affected. Peak memory is unchanged; memory freed after the peak stays with the process until it exits.
///
/// Process-wide: a binary calls it once at start, before it starts threads (the `silica` binary does). Returns
/// whether the settings were applied (only with glibc; elsewhere it does nothing and returns `false`).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes malloc's tuning parameters, which glibc guards with the arena lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_settings() {
        // glibc refuses an mmap threshold above `HEAP_MAX_SIZE / 2` (returns 0): the value must stay in range.
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
