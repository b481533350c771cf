//! This process's resources: peak resident memory (Linux `/proc/self`; `None` elsewhere rather than a guess).

/// Resets this process's peak resident set size to its current RSS (Linux ≥ 4.0: writing `5` to
/// `/proc/self/clear_refs`, see `proc(5)`); returns whether it worked. Without a reset, [`peak_rss_bytes`] is the
/// peak since the process started.
pub fn reset_peak_rss() -> bool {
    fs_err::write("/proc/self/clear_refs", "5").is_ok()
}

/// Gives the heap's free memory back to the OS (glibc `malloc_trim(0)`); returns whether it ran (glibc only).
///
/// silica's binary tells glibc to keep freed memory for reuse (`silica_kernels::keep_freed_memory`), so memory a
/// finished benchmark case freed stays resident; trimming before [`reset_peak_rss`] makes the next case's peak
/// its own rather than the largest earlier case's.
#[allow(unsafe_code)]
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap memory to the OS, under glibc's arena locks.
    unsafe {
        libc::malloc_trim(0);
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// This process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`, as the sampler reads it), since
/// start or the last [`reset_peak_rss`]; `None` where the OS does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    crate::sampler::read_process(std::process::id())
        .ok()
        .map(|p| p.peak_rss_bytes)
}

/// Bytes of this process's anonymous memory backed by transparent huge pages: `AnonHugePages` of
/// `/proc/self/smaps_rollup` (Linux ≥ 4.14, `proc(5)`); `None` where the OS does not say. silica's repacked
/// weights are the bulk of it when `--huge-pages` is on (`silica_kernels::HugePages`).
pub fn anon_huge_pages_bytes() -> Option<u64> {
    let text = fs_err::read_to_string("/proc/self/smaps_rollup").ok()?;
    crate::machine::meminfo_bytes(&text, "AnonHugePages")
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_read_from_smaps_rollup() {
        let text = "55d0c0a00000-7ffc39bfe000 ---p 00000000 00:00 0    [rollup]\nRss:             3819976 kB\n\
                    Anonymous:       3700000 kB\nAnonHugePages:   3201024 kB\nShmemPmdMapped:        0 kB\n";
        assert_eq!(
            crate::machine::meminfo_bytes(text, "AnonHugePages"),
            Some(3_201_024 * 1024)
        );
        if cfg!(target_os = "linux") {
            assert!(
                super::anon_huge_pages_bytes().is_some(),
                "Linux ≥ 4.14 has /proc/self/smaps_rollup"
            );
        }
    }
}
