//! The sampler following this very process while it burns CPU and touches memory. Peak RSS is process-wide, so
//! this runs in its own test binary, away from the probe tests' large arrays.
#![allow(clippy::unwrap_used, unsafe_code)]

#[cfg(target_os = "linux")]
#[test]
fn sampler_sees_cpu_and_memory_of_this_process() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use silica_telemetry::{EnergySources, EnergySummary, OnSample, Sampler, SamplerConfig};

    let interval = Duration::from_millis(20);
    let seen = Arc::new(AtomicUsize::new(0));
    let seen_in_thread = Arc::clone(&seen);
    let on_sample: OnSample = Box::new(move |_| {
        seen_in_thread.fetch_add(1, Ordering::Relaxed);
    });
    let sources = EnergySources::discover();
    let has_total = sources.has_total();
    let cfg = SamplerConfig {
        pid: std::process::id(),
        interval,
    };
    let sampler = Sampler::start(cfg, sources, Some(on_sample)).unwrap();

    // 300 ms of this thread's own CPU time (not wall time, which a loaded host stretches).
    let thread_cpu_s = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    };
    let cpu0 = thread_cpu_s();
    let mut x = 1u64;
    while thread_cpu_s() - cpu0 < 0.3 {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    // 64 MiB allocated and every page touched, held while a few samples are taken.
    let mut big = vec![0u8; 64 << 20];
    for i in (0..big.len()).step_by(4096) {
        big[i] = 1;
    }
    std::hint::black_box(&mut big);
    std::thread::sleep(Duration::from_millis(60));
    let trace = sampler.stop();
    drop(big);

    assert!(!trace.process_exited);
    assert_eq!(trace.note, None);
    assert!(trace.samples.len() >= 10, "{} samples", trace.samples.len());
    assert_eq!(seen.load(Ordering::Relaxed), trace.samples.len());
    assert!(trace.samples.iter().all(|s| s.process.is_some()));

    let s = trace.summary();
    let (cpu, util) = (s.cpu_time_s.unwrap(), s.cpu_util.unwrap());
    assert!(cpu >= 0.28, "cpu_time_s {cpu}");
    assert!((util - cpu / s.duration_s).abs() < 1e-9, "cpu_util {util}");
    let first_peak = trace.samples[0].process.unwrap().peak_rss_bytes;
    let peak = s.peak_rss_bytes.unwrap();
    assert!(peak >= first_peak + (60 << 20), "{first_peak} -> {peak}");
    assert!(s.avg_rss_bytes.unwrap() > 0 && s.max_threads.unwrap() >= 2);

    // Samples about one interval apart (the last one is taken at stop, off the schedule).
    let mut gaps: Vec<Duration> = trace.samples[..trace.samples.len() - 1]
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= interval * 3 / 4 && median <= interval * 2,
        "median gap {median:?}"
    );

    // Energy is measured exactly when the machine has a total counter, and never reported as zero otherwise.
    match &s.energy {
        EnergySummary::Measured { energy_j, .. } => assert!(has_total && *energy_j > 0.0),
        EnergySummary::Unavailable { reason } => assert!(!has_total && !reason.is_empty()),
    }
}
