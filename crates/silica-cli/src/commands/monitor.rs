//! `silica monitor`: CPU, memory, threads and energy of one process, live and summed up — to watch a
//! llama.cpp or Ollama server (or any command) during a run.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use silica_telemetry::{CounterKind, EnergySources, EnergySummary, Sample, Sampler, SamplerConfig, Summary};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// A line per interval, then a summary.
    Text,
    /// A JSON object per interval, then `{"summary": …}`.
    Jsonl,
}

/// Arguments of `silica monitor`.
#[derive(Debug, Args)]
#[command(
    after_help = "Energy comes from the machine's counters (Linux RAPL powercap zones, NVIDIA GPUs \
through NVML): it is the whole package's or GPU's, not the process's alone. Where none can be read (a VM, no \
permission) the lines say `energy: unavailable (<reason>)`, never 0.\n\
With `-- CMD`, silica exits with the command's exit status."
)]
pub(crate) struct MonitorArgs {
    /// The process to watch.
    #[arg(long, conflicts_with = "command", required_unless_present = "command")]
    pid: Option<u32>,
    /// Sampling interval, milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    interval: u64,
    /// Stop after SECONDS (default: when the process exits, or Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// The command to run and watch (after `--`).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn mib(b: Option<u64>) -> String {
    b.map_or_else(|| "?".to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

/// One interval: the change between two samples (a JSONL line or a text line).
#[derive(Debug)]
struct Interval {
    t_s: f64,
    cpu_util: Option<f64>,
    rss_bytes: Option<u64>,
    peak_rss_bytes: Option<u64>,
    n_threads: Option<u32>,
    power_w: Option<f64>,
    gpu_memory_bytes: Option<u64>,
    gpu_util_pct: Option<f64>,
}

impl Interval {
    /// From `prev` to `cur`, `t_s` counted from `t_start`; `kinds` are the energy counters' kinds.
    fn new(prev: &Sample, cur: &Sample, kinds: &[CounterKind], t_start: Instant) -> Self {
        let dt = cur.at.duration_since(prev.at).as_secs_f64();
        let cpu_util = match (prev.process, cur.process) {
            (Some(a), Some(b)) if dt > 0.0 => {
                Some((b.cpu_time_ns.saturating_sub(a.cpu_time_ns)) as f64 / 1e9 / dt)
            }
            _ => None,
        };
        let mut power_w: Option<f64> = None;
        for ((a, b), k) in prev.energy_uj.iter().zip(&cur.energy_uj).zip(kinds) {
            if let (Some(a), Some(b), CounterKind::Total) = (a, b, k)
                && dt > 0.0
            {
                *power_w.get_or_insert(0.0) += b.saturating_sub(*a) as f64 / 1e6 / dt;
            }
        }
        Interval {
            t_s: cur.at.duration_since(t_start).as_secs_f64(),
            cpu_util,
            rss_bytes: cur.process.map(|p| p.rss_bytes),
            peak_rss_bytes: cur.process.map(|p| p.peak_rss_bytes),
            n_threads: cur.process.map(|p| p.n_threads),
            power_w,
            gpu_memory_bytes: cur.gpu.map(|g| g.memory_bytes),
            gpu_util_pct: cur.gpu.and_then(|g| g.sm_util_pct),
        }
    }

    /// The JSONL line's object.
    fn json(&self) -> serde_json::Value {
        json!({
            "t_s": self.t_s,
            "cpu_util": self.cpu_util,
            "rss_bytes": self.rss_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "n_threads": self.n_threads,
            "power_w": self.power_w,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "gpu_util_pct": self.gpu_util_pct,
        })
    }

    /// The text line; `power -` where the interval has no power (no energy counter could be read).
    fn text(&self) -> String {
        let gpu = match self.gpu_memory_bytes {
            Some(b) => format!(
                "  gpu {} {}",
                mib(Some(b)),
                self.gpu_util_pct.map_or_else(String::new, |u| format!("{u:.0}%"))
            ),
            None => String::new(),
        };
        format!(
            "{:>7.1} s  cpu {:>6}  rss {:>11}  peak {:>11}  threads {:>3}  {}{gpu}",
            self.t_s,
            self.cpu_util
                .map_or_else(|| "?".to_owned(), |u| format!("{:.0}%", u * 100.0)),
            mib(self.rss_bytes),
            mib(self.peak_rss_bytes),
            self.n_threads.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            self.power_w
                .map_or_else(|| "power -".to_owned(), |w| format!("power {w:.1} W")),
        )
    }
}

fn summary_text(s: &Summary, what: &str) -> String {
    let energy = match &s.energy {
        EnergySummary::Measured {
            energy_j,
            avg_power_w,
            per_counter_j,
        } => format!(
            "{energy_j:.1} J, {avg_power_w:.1} W average ({})",
            per_counter_j
                .iter()
                .map(|(n, j)| format!("{n} {j:.1} J"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    };
    let gpu = match s.peak_gpu_memory_bytes {
        Some(b) => format!(
            ", GPU memory peak {}{}",
            mib(Some(b)),
            s.avg_gpu_util_pct
                .map_or_else(String::new, |u| format!(", GPU {u:.0}% on average"))
        ),
        None => String::new(),
    };
    format!(
        "summary of {what}: {:.1} s, cpu {} s ({} cores on average), rss {} average, peak {}, up to {} threads{gpu}\nenergy: {energy}",
        s.duration_s,
        s.cpu_time_s.map_or_else(|| "?".to_owned(), |c| format!("{c:.2}")),
        s.cpu_util.map_or_else(|| "?".to_owned(), |u| format!("{u:.2}")),
        mib(s.avg_rss_bytes),
        mib(s.peak_rss_bytes),
        s.max_threads.map_or_else(|| "?".to_owned(), |n| n.to_string()),
    )
}

/// Runs `silica monitor`; returns the exit status (the command's, with `-- CMD`).
pub(crate) fn run(a: &MonitorArgs) -> anyhow::Result<i32> {
    if a.interval == 0 {
        bail!("--interval must be at least 1 ms");
    }
    if let Some(d) = a.duration
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--duration must be a positive number of seconds");
    }
    let mut child = match (a.pid, a.command.split_first()) {
        (_, Some((cmd, args))) => Some(
            std::process::Command::new(cmd)
                .args(args)
                .spawn()
                .with_context(|| format!("starting `{cmd}`"))?,
        ),
        _ => None,
    };
    let pid = match (&child, a.pid) {
        (Some(c), _) => c.id(),
        (None, Some(p)) => p,
        (None, None) => bail!("give --pid PID or -- CMD ARGS"),
    };
    let what = match a.command.first() {
        Some(c) => format!("`{c}` (pid {pid})"),
        None => format!("pid {pid}"),
    };
    if child.is_none() {
        silica_telemetry::read_process(pid).with_context(|| format!("cannot watch pid {pid}"))?;
    }

    let sources = EnergySources::discover();
    // Said once at the top; each line then shows `power -`.
    let unavailable =
        (!sources.is_available()).then(|| format!("energy: unavailable ({})", sources.reason()));
    let kinds: Vec<CounterKind> = sources.counters.iter().map(|c| c.kind()).collect();
    let (tx, rx) = mpsc::channel::<Sample>();
    let on_sample: Box<dyn FnMut(&Sample) + Send> = Box::new(move |s: &Sample| {
        let _ = tx.send(s.clone());
    });
    let sampler = Sampler::start(
        SamplerConfig {
            pid,
            interval: Duration::from_millis(a.interval),
        },
        sources,
        Some(on_sample),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // Ctrl-C ends the watch with a summary (a child in the foreground gets the signal too and exits).
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let t_start = Instant::now();
    let deadline = a.duration.map(|d| t_start + Duration::from_secs_f64(d));
    let mut out = std::io::stdout().lock();
    if matches!(a.output, Format::Text) {
        writeln!(out, "watching {what} every {} ms", a.interval)?;
        if let Some(u) = &unavailable {
            writeln!(out, "{u}")?;
        }
    }
    let mut prev: Option<Sample> = None;
    let mut status = 0;
    loop {
        // The sampler stops by itself when the process exits, dropping the sender.
        let exited = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(s) => {
                if let Some(p) = prev.as_ref().filter(|_| s.process.is_some()) {
                    let v = Interval::new(p, &s, &kinds, t_start);
                    match a.output {
                        Format::Text => writeln!(out, "{}", v.text())?,
                        Format::Jsonl => writeln!(out, "{}", v.json())?,
                    }
                    out.flush()?;
                }
                prev = Some(s);
                false
            }
            Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        // A command's exit status comes from waiting for it (it has exited when the sampler stopped).
        if let Some(c) = &mut child
            && let Some(st) = c.try_wait()?
        {
            status = st.code().unwrap_or(1);
            break;
        }
        if child.is_none() && exited {
            break;
        }
        if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let trace = sampler.stop();
    let mut summary = trace.summary();
    if child.is_some() {
        // The command was waited for: the kernel's own account of it is exact where the last sample (up to one
        // interval before its exit) is not.
        if let Some((cpu_s, peak_bytes)) = children_rusage() {
            summary.cpu_time_s = Some(cpu_s);
            summary.cpu_util = (summary.duration_s > 0.0).then(|| cpu_s / summary.duration_s);
            summary.peak_rss_bytes = Some(summary.peak_rss_bytes.unwrap_or(0).max(peak_bytes));
        }
    }
    match a.output {
        Format::Text => writeln!(out, "{}", summary_text(&summary, &what))?,
        Format::Jsonl => writeln!(out, "{}", json!({ "summary": summary, "pid": pid }))?,
    }
    Ok(status)
}

/// CPU seconds and peak RSS bytes of this process's waited-for children (`getrusage(RUSAGE_CHILDREN)`; Linux
/// gives `ru_maxrss` in KiB, see `getrusage(2)`).
#[cfg(target_os = "linux")]
fn children_rusage() -> Option<(f64, u64)> {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed value we own, and reads nothing else.
    #[allow(unsafe_code)]
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) == 0).then_some(ru)
    }?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((
        secs(ru.ru_utime) + secs(ru.ru_stime),
        (ru.ru_maxrss.max(0) as u64) * 1024,
    ))
}

#[cfg(not(target_os = "linux"))]
fn children_rusage() -> Option<(f64, u64)> {
    None
}
