//! Peak RSS is process-wide: this test runs in its own process, away from the probe tests' large arrays.
#![allow(clippy::unwrap_used)]

#[cfg(target_os = "linux")]
#[test]
fn peak_rss_follows_an_allocation_and_resets() {
    use silica_telemetry::machine::{cpu_info, ram_available_bytes};
    use silica_telemetry::process::{peak_rss_bytes, reset_peak_rss};
    let before = peak_rss_bytes().unwrap();
    let big = vec![1u8; 64 << 20];
    std::hint::black_box(&big);
    let after = peak_rss_bytes().unwrap();
    assert!(after >= before + (60 << 20), "{before} -> {after}");
    drop(big);
    if reset_peak_rss() {
        assert!(peak_rss_bytes().unwrap() < after);
    }
    assert!(ram_available_bytes().unwrap() > 0);
    assert!(!cpu_info().is_empty());
}
