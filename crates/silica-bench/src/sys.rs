//! What the bench needs from the operating system: the CPU's name, this process's peak resident memory, and
//! the memory still available. Linux reads `/proc`; elsewhere the values are unknown (`None`) rather than
//! guessed. (The telemetry issue moves these into `silica-telemetry`'s `EnvInfo`.)

use std::process::Command;

/// The CPU's marketing name: `model name` in `/proc/cpuinfo` on Linux (what llama-bench's `cpu_info` shows
/// on x86), `machdep.cpu.brand_string` from `sysctl` on macOS; `""` when unknown.
pub fn cpu_info() -> String {
    if let Ok(text) = fs_err::read_to_string("/proc/cpuinfo") {
        for key in ["model name", "Model", "cpu model", "Processor"] {
            if let Some(v) = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            }) {
                return v;
            }
        }
    }
    Command::new("sysctl")
        .args(["-n", "machdep.cpu.brand_string"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Resets this process's peak resident set size to its current RSS (Linux ≥ 4.0: writing `5` to
/// `/proc/self/clear_refs`, see `proc(5)`); returns whether it worked. Without a reset, [`peak_rss_bytes`]
/// is the peak since the process started.
pub fn reset_peak_rss() -> bool {
    fs_err::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`), since start or the last
/// [`reset_peak_rss`]; `None` where the OS does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

/// Memory available to new allocations without swapping, in bytes (`MemAvailable` of `/proc/meminfo`);
/// `None` where the OS does not say.
pub fn mem_available_bytes() -> Option<u64> {
    status_kib("/proc/meminfo", "MemAvailable:").map(|k| k * 1024)
}

fn status_kib(path: &str, key: &str) -> Option<u64> {
    let text = fs_err::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn linux_values_are_read() {
        assert!(!cpu_info().is_empty());
        let before = peak_rss_bytes().unwrap();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = peak_rss_bytes().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(big);
        if reset_peak_rss() {
            assert!(peak_rss_bytes().unwrap() < after);
        }
        assert!(mem_available_bytes().unwrap() > 0);
    }
}
