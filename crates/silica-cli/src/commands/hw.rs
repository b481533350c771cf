//! `silica hw`: what this machine is, and its measured memory bandwidth and peak FLOP/s.

use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use silica_plan::{Backend, DeviceProfile, gib};
use silica_telemetry::{HwProfile, ProbeParams};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// The cached profile as JSON.
    Json,
}

/// Arguments of `silica hw`.
#[derive(Debug, Args)]
pub(crate) struct HwArgs {
    /// Threads the probes run on (default: every logical CPU).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Show the cached measurement instead of measuring again (measures when there is none).
    #[arg(long)]
    cached: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
}

/// The probe's parameters: `threads` (else every logical CPU), and the page policy of silica's kernels
/// (`silica --huge-pages`), so that generation's bytes/s and the triad stand on the same pages.
fn probe_params(threads: Option<usize>) -> ProbeParams {
    let mut p = ProbeParams {
        huge_pages: silica_kernels::huge_pages(),
        ..ProbeParams::default()
    };
    if let Some(t) = threads {
        p.n_threads = t;
    }
    p
}

/// How a probe's arrays were paged, for messages.
pub(crate) fn pages(huge: bool) -> &'static str {
    if huge { "huge pages" } else { "4 KiB pages" }
}

/// This machine's profile: the cached measurement when it matches this machine (else measured now and cached).
pub(crate) fn load(refresh: bool, threads: Option<usize>) -> anyhow::Result<(HwProfile, bool)> {
    let path = silica_telemetry::cache_path();
    silica_telemetry::load_or_measure(&path, &probe_params(threads), refresh)
        .with_context(|| format!("measuring this machine (cache {})", path.display()))
}

/// This machine's CPU as a planner device: RAM available now, the measured triad bandwidth and f32 FMA peak.
pub(crate) fn cpu_device(hw: &HwProfile) -> DeviceProfile {
    let m = &hw.machine;
    let total = m.ram_total_bytes.unwrap_or(0);
    let (usable_fraction, usable_source) = match (m.ram_available_bytes, total) {
        (Some(avail), t) if t > 0 => (
            avail as f64 / t as f64,
            "MemAvailable now (/proc/meminfo)".to_owned(),
        ),
        _ => (
            0.9,
            "assumed 90% (the OS does not say what is available)".to_owned(),
        ),
    };
    DeviceProfile {
        usable_fraction,
        usable_source,
        ..DeviceProfile::measured(
            format!("{} (this machine, {} threads)", m.cpu_info, hw.probe.n_threads),
            Backend::Cpu,
            total,
            hw.probe.triad_gbps,
            hw.probe.peak_f32_gflops / 1000.0,
            (
                format!(
                    "measured by silica hw: STREAM triad, {} threads (cached {})",
                    hw.probe.n_threads,
                    silica_telemetry::cache_path().display()
                ),
                format!("measured by silica hw: f32 FMA ({})", hw.probe.isa),
            ),
        )
    }
}

pub(crate) fn run(a: &HwArgs) -> anyhow::Result<()> {
    let (hw, from_cache) = load(!a.cached, a.threads)?;
    let mut out = std::io::stdout().lock();
    if let Format::Json = a.output {
        writeln!(out, "{}", serde_json::to_string_pretty(&hw)?)?;
        return Ok(());
    }
    let m = &hw.machine;
    writeln!(
        out,
        "cpu:       {} ({} cores, {} threads), {} {}",
        m.cpu_info,
        m.n_cores_physical
            .map_or_else(|| "?".to_owned(), |c| c.to_string()),
        m.n_threads_logical,
        m.arch,
        m.os
    )?;
    writeln!(out, "simd:      {}", m.simd.join(" "))?;
    let levels: Vec<&str> = silica_kernels::Simd::available()
        .into_iter()
        .map(silica_kernels::Simd::name)
        .collect();
    writeln!(
        out,
        "kernels:   {} (silica's CPU kernels; --simd takes {})",
        silica_kernels::simd(),
        levels.join(", ")
    )?;
    writeln!(
        out,
        "ram:       {} total, {} available",
        m.ram_total_bytes
            .map_or_else(|| "?".to_owned(), |b| format!("{:.1} GiB", gib(b))),
        m.ram_available_bytes
            .map_or_else(|| "?".to_owned(), |b| format!("{:.1} GiB", gib(b)))
    )?;
    if m.gpus.is_empty() {
        writeln!(
            out,
            "gpus:      none ({})",
            m.gpu_note.as_deref().unwrap_or("none found")
        )?;
    }
    let table = silica_plan::hardware::device_table()?;
    for g in &m.gpus {
        let spec = silica_plan::hardware::find_device(&table, &g.name, None).map_or_else(
            |_| "no spec row".to_owned(),
            |d| format!("spec: {}, {} GB/s", d.name, d.bandwidth_gbps),
        );
        writeln!(
            out,
            "gpu {}:     {}, {:.1} GiB, {} GB/s theoretical (NVML), driver {}; {spec}",
            g.index,
            g.name,
            gib(g.memory_total_bytes),
            g.theoretical_bandwidth_gbps
                .map_or_else(|| "?".to_owned(), |b| format!("{b:.0}")),
            g.driver_version.as_deref().unwrap_or("?"),
        )?;
    }
    if m.power_sources.is_empty() {
        writeln!(
            out,
            "power:     none ({})",
            m.power_note.as_deref().unwrap_or("no sources found")
        )?;
    }
    for p in &m.power_sources {
        writeln!(
            out,
            "power:     {} {} {}{}",
            p.kind,
            p.name,
            if p.readable { "readable" } else { "not readable" },
            p.reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" ({r})"))
        )?;
    }
    let p = &hw.probe;
    writeln!(
        out,
        "bandwidth: {:.1} GB/s STREAM triad, {:.1} GB/s read ({} threads, {} MiB arrays on {}, best of {})",
        p.triad_gbps,
        p.read_gbps,
        p.n_threads,
        p.array_bytes >> 20,
        pages(p.huge_pages),
        p.reps
    )?;
    writeln!(
        out,
        "peak:      {:.0} GFLOP/s f32 FMA ({})",
        p.peak_f32_gflops, p.isa
    )?;
    writeln!(
        out,
        "{}: {} (silica plan uses it; --cached shows it without measuring)",
        if from_cache { "cached" } else { "saved" },
        silica_telemetry::cache_path().display()
    )?;
    Ok(())
}
