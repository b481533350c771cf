//! This process's resources: peak resident memory (Linux `/proc/self`; `None` elsewhere rather than a guess).

/// Resets this process's peak resident set size to its current RSS (Linux ≥ 4.0: writing `5` to
/// `/proc/self/clear_refs`, see `proc(5)`); returns whether it worked. Without a reset, [`peak_rss_bytes`] is the
/// peak since the process started.
pub fn reset_peak_rss() -> bool {
    fs_err::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`, as the sampler reads it), since
/// start or the last [`reset_peak_rss`]; `None` where the OS does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    crate::sampler::read_process(std::process::id())
        .ok()
        .map(|p| p.peak_rss_bytes)
}
