//! A background sampler of one process and the machine's energy counters.
//!
//! [`Sampler::start`] spawns a thread that reads the process's CPU time, resident memory and thread count
//! ([`read_process`]) and every energy counter ([`EnergySources`]) once at start and then every interval, so
//! the measured thread does no measuring. [`Sampler::stop`] takes a last sample and returns the [`Trace`], which
//! answers questions about any window inside it: energy between two instants (each counter interpolated
//! linearly between the samples around them), and a [`Summary`] of CPU use, memory and energy.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use silica_telemetry::{EnergySources, Sampler, SamplerConfig};
//!
//! let cfg = SamplerConfig { pid: std::process::id(), interval: Duration::from_millis(100) };
//! let sampler = Sampler::start(cfg, EnergySources::discover(), None)?;
//! let t0 = Instant::now();
//! // … the work being measured …
//! let t1 = Instant::now();
//! let trace = sampler.stop();
//! let s = trace.summary_between(t0, t1);
//! println!("cpu {:?} cores, energy: {}", s.cpu_util, s.energy);
//! # Ok::<(), silica_telemetry::Error>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::energy::{CounterKind, EnergySources, Unavailable};
use crate::{Error, Result};

/// One reading of a process's resources (Linux `/proc/<pid>/stat` and `/proc/<pid>/status`, see `proc(5)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStat {
    /// CPU time used by all its threads since it started, user plus system (`utime + stime`, fields 14 and 15
    /// of `stat`, clock ticks converted at `sysconf(_SC_CLK_TCK)` ticks per second), in ns.
    pub cpu_time_ns: u64,
    /// Resident set size now (`VmRSS` of `status`; the kernel's "kB" is KiB), in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started or since [`reset_peak_rss`](crate::process::reset_peak_rss)
    /// (`VmHWM` of `status`, KiB), in bytes.
    pub peak_rss_bytes: u64,
    /// Threads in the process now (`Threads` of `status`, else field 20 of `stat`).
    pub n_threads: u32,
}

/// Reads process `pid`'s [`ProcessStat`] from `/proc` (Linux only).
///
/// # Errors
///
/// [`Error::ProcessGone`] when the process has exited (or is a zombie); [`Error::Io`] or [`Error::ProcParse`]
/// when the files cannot be read or parsed; [`Error::Unsupported`] outside Linux.
pub fn read_process(pid: u32) -> Result<ProcessStat> {
    #[cfg(target_os = "linux")]
    {
        read_process_in(Path::new("/proc"), pid, clk_tck()?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(Error::Unsupported {
            what: "per-process statistics (/proc/<pid>/stat)",
            os: std::env::consts::OS,
        })
    }
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `sysconf(_SC_CLK_TCK)` (the kernel's `USER_HZ`, 100 on
/// every mainstream Linux), asked once per process: it cannot change while the process runs.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn clk_tck() -> Result<u64> {
    static TICKS: std::sync::OnceLock<libc::c_long> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a configuration value; it takes no pointers and has no preconditions.
    let ticks = *TICKS.get_or_init(|| unsafe { libc::sysconf(libc::_SC_CLK_TCK) });
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .ok_or(Error::ProcParse {
            path: PathBuf::from("sysconf(_SC_CLK_TCK)"),
            reason: format!("clock ticks per second is {ticks}"),
        })
}

/// [`read_process`] with the `/proc` root and the clock ticks per second given, for tests on fixture trees.
///
/// `stat` is parsed after its last `)`, because the command name in field 2 may itself contain spaces and
/// parentheses; field 3 (state) `Z` or `X` means the process has exited and not been reaped.
///
/// A process caught mid-exit can fail a read in ways other than "gone" (a file already empty or cut short): a
/// failed read is made once more, and if that one finds the process gone, [`Error::ProcessGone`] is returned.
///
/// # Errors
///
/// As [`read_process`], and [`Error::ProcParse`] when `clk_tck` is 0.
pub fn read_process_in(proc_root: &Path, pid: u32, clk_tck: u64) -> Result<ProcessStat> {
    match read_process_once(proc_root, pid, clk_tck) {
        Err(e) if !matches!(e, Error::ProcessGone { .. }) => match read_process_once(proc_root, pid, clk_tck)
        {
            again @ (Ok(_) | Err(Error::ProcessGone { .. })) => again,
            Err(_) => Err(e),
        },
        first => first,
    }
}

fn read_process_once(proc_root: &Path, pid: u32, clk_tck: u64) -> Result<ProcessStat> {
    let dir = proc_root.join(pid.to_string());
    let stat_path = dir.join("stat");
    let stat = read_proc_file(&stat_path, pid)?;
    let bad = |path: &Path, reason: String| Error::ProcParse {
        path: path.to_owned(),
        reason,
    };
    let after_comm = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| bad(&stat_path, "no ')' closing the command name".to_owned()))?;
    // fields[0] is field 3 of proc(5) (state), so field n is fields[n - 3].
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let text = fields
            .get(n - 3)
            .ok_or_else(|| bad(&stat_path, format!("only {} fields", fields.len() + 2)))?;
        text.parse()
            .map_err(|_| bad(&stat_path, format!("field {n} is not a number: {text:?}")))
    };
    if matches!(fields.first(), Some(&("Z" | "X"))) {
        return Err(Error::ProcessGone { pid });
    }
    let ticks = field(14)?.saturating_add(field(15)?);
    if clk_tck == 0 {
        return Err(bad(&stat_path, "clock ticks per second is 0".to_owned()));
    }
    let cpu_time_ns =
        u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck)).unwrap_or(u64::MAX);

    let status_path = dir.join("status");
    let status = read_proc_file(&status_path, pid)?;
    let value = |key: &str| -> Option<&str> {
        status.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then_some(v.trim())
        })
    };
    let kib = |key: &str| -> Result<Option<u64>> {
        value(key)
            .map(|v| {
                v.trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .map(|k| k.saturating_mul(1024))
                    .map_err(|_| bad(&status_path, format!("{key} is not a size: {v:?}")))
            })
            .transpose()
    };
    let Some(rss_bytes) = kib("VmRSS")? else {
        // No memory map: a kernel thread (PF_KTHREAD, 0x00200000, in the flags of field 9; include/linux/sched.h),
        // or a process that is exiting and has already released its memory (before it turns zombie).
        const PF_KTHREAD: u64 = 0x0020_0000;
        return if field(9)? & PF_KTHREAD != 0 {
            Err(bad(&status_path, "no VmRSS: a kernel thread".to_owned()))
        } else {
            Err(Error::ProcessGone { pid })
        };
    };
    let peak_rss_bytes = kib("VmHWM")?.unwrap_or(rss_bytes).max(rss_bytes);
    let n_threads = match value("Threads") {
        Some(v) => v
            .parse()
            .map_err(|_| bad(&status_path, format!("Threads is not a number: {v:?}")))?,
        None => u32::try_from(field(20)?).unwrap_or(u32::MAX),
    };
    Ok(ProcessStat {
        cpu_time_ns,
        rss_bytes,
        peak_rss_bytes,
        n_threads,
    })
}

/// Reads a `/proc/<pid>/…` file; a missing file (or `ESRCH`, the process vanishing mid-read) means it has exited.
fn read_proc_file(path: &Path, pid: u32) -> Result<String> {
    const ESRCH: i32 = 3;
    fs_err::read_to_string(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH) {
            Error::ProcessGone { pid }
        } else {
            Error::Io {
                what: "reading",
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

/// One sample taken by the [`Sampler`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was taken (just before the counters were read; the reads take microseconds for RAPL, up to about
    /// a millisecond for NVML).
    pub at: Instant,
    /// The process's resources; `None` when they could not be read (it exited, or not Linux).
    pub process: Option<ProcessStat>,
    /// Each energy counter's cumulative µJ since it was opened, in [`EnergySources::counters`] order; `None`
    /// where that read failed.
    pub energy_uj: Vec<Option<u64>>,
    /// The process's GPU memory and utilisation (NVML); `None` without an NVIDIA GPU or when it holds none.
    pub gpu: Option<crate::gpu::GpuProcessStat>,
}

/// What to sample and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerConfig {
    /// The process to follow (`std::process::id()` for this one).
    pub pid: u32,
    /// Time between samples; positive. Short intervals cost CPU on the sampler thread (each sample reads two
    /// `/proc` files and every counter: tens of microseconds without NVML).
    pub interval: Duration,
}

/// Called with each sample as it is taken, on the sampler thread.
pub type OnSample = Box<dyn FnMut(&Sample) + Send>;

/// State shared between the [`Sampler`] handle and its thread.
#[derive(Debug, Default)]
struct Shared {
    /// Set by `stop` (or drop); the thread takes a last sample and ends.
    stop: Mutex<bool>,
    wake: Condvar,
    /// Every sample so far; kept here rather than on the thread so that a panic there loses none.
    samples: Mutex<Vec<Sample>>,
}

/// What the sampler thread hands back when it ends.
struct ThreadEnd {
    sources: EnergySources,
    process_exited: bool,
    note: Option<String>,
}

/// Locks a mutex, ignoring poisoning: the data (a flag, a list of samples) stays valid after a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A background thread sampling one process and the energy counters; see the [module docs](self).
pub struct Sampler {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<ThreadEnd>>,
    counters: Vec<(String, CounterKind)>,
    unavailable: Vec<Unavailable>,
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("counters", &self.counters)
            .field("unavailable", &self.unavailable)
            .field("n_samples", &lock(&self.shared.samples).len())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// Starts the sampler thread. It takes a first sample at once (`start` returns after it, so any instant
    /// taken after `start` lies within the trace), then one every `cfg.interval` on a fixed schedule (a late
    /// sample does not shift the ones after it, and missed ticks are skipped), calling `on_sample` with each.
    /// It stops when [`stop`](Self::stop) is called, or by itself when the process exits.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroInterval`] when `cfg.interval` is zero; [`Error::SamplerSpawn`] when the thread cannot be
    /// started.
    pub fn start(cfg: SamplerConfig, sources: EnergySources, on_sample: Option<OnSample>) -> Result<Sampler> {
        if cfg.interval.is_zero() {
            return Err(Error::ZeroInterval);
        }
        let shared = Arc::new(Shared::default());
        let counters = sources.counter_names();
        let unavailable = sources.unavailable.clone();
        let (started_tx, started_rx) = mpsc::sync_channel::<()>(1);
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("silica-sampler".to_owned())
            .spawn(move || run(cfg, sources, on_sample, &thread_shared, started_tx))
            .map_err(|source| Error::SamplerSpawn { source })?;
        // Err: the thread ended before its first sample (a panic); `stop` reports it.
        let _ = started_rx.recv();
        Ok(Sampler {
            shared,
            handle: Some(handle),
            counters,
            unavailable,
        })
    }

    /// How many samples have been taken so far.
    pub fn n_samples(&self) -> usize {
        lock(&self.shared.samples).len()
    }

    /// Stops the thread (at once: it waits on a condition variable, never in a long sleep), after it takes a
    /// last sample, and returns everything sampled. A panic on the sampler thread (in `on_sample`, say) does not
    /// reach the caller: the trace holds the samples taken before it, and [`Trace::note`] says what happened.
    pub fn stop(self) -> Trace {
        self.stop_keep_sources().0
    }

    /// [`stop`](Self::stop), also handing back the energy sources for another run (`None` if the sampler
    /// thread panicked). Their counters keep counting from where they were opened.
    pub fn stop_keep_sources(mut self) -> (Trace, Option<EnergySources>) {
        self.signal_stop();
        let joined = self.handle.take().map(JoinHandle::join);
        let samples = std::mem::take(&mut *lock(&self.shared.samples));
        let mut trace = Trace {
            counters: std::mem::take(&mut self.counters),
            unavailable: std::mem::take(&mut self.unavailable),
            samples,
            process_exited: false,
            note: None,
        };
        let sources = match joined {
            Some(Ok(end)) => {
                trace.process_exited = end.process_exited;
                trace.note = end.note;
                Some(end.sources)
            }
            Some(Err(payload)) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                trace.note = Some(format!(
                    "the sampler thread panicked after {} samples: {msg}",
                    trace.samples.len()
                ));
                None
            }
            None => None,
        };
        (trace, sources)
    }

    fn signal_stop(&self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Sampler {
    /// Stops the thread if [`stop`](Sampler::stop) was not called, discarding the samples.
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.signal_stop();
            let _ = handle.join();
        }
    }
}

/// The sampler thread's loop.
fn run(
    cfg: SamplerConfig,
    mut sources: EnergySources,
    mut on_sample: Option<OnSample>,
    shared: &Shared,
    started: mpsc::SyncSender<()>,
) -> ThreadEnd {
    let mut note = None;
    let mut process_exited = false;
    let mut deadline = Instant::now();
    let mut first = true;
    // Opened on this thread: loading NVML takes milliseconds, and fails at once without the library.
    let mut gpu = crate::gpu::GpuReader::open().ok();
    loop {
        let stopping = wait_until(shared, deadline);
        let at = Instant::now();
        let energy_uj = sources.read_all_uj();
        let gpu_stat = gpu.as_mut().and_then(|g| g.read(cfg.pid));
        let process = match read_process(cfg.pid) {
            Ok(p) => Some(p),
            Err(Error::ProcessGone { .. }) => {
                process_exited = true;
                None
            }
            Err(e) => {
                note.get_or_insert_with(|| format!("reading process {}: {e}", cfg.pid));
                None
            }
        };
        let sample = Sample {
            at,
            process,
            energy_uj,
            gpu: gpu_stat,
        };
        if let Some(f) = on_sample.as_mut() {
            f(&sample);
        }
        lock(&shared.samples).push(sample);
        if first {
            first = false;
            let _ = started.try_send(());
        }
        if stopping || process_exited {
            break;
        }
        deadline += cfg.interval;
        let now = Instant::now();
        if deadline <= now {
            // Fell behind (a slow read or a busy machine): skip the missed ticks.
            deadline = now + cfg.interval;
        }
    }
    ThreadEnd {
        sources,
        process_exited,
        note,
    }
}

/// Waits until `deadline` or a stop request, whichever comes first; returns whether stop was requested.
fn wait_until(shared: &Shared, deadline: Instant) -> bool {
    let mut stop = lock(&shared.stop);
    loop {
        if *stop {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        stop = match shared.wake.wait_timeout(stop, deadline - now) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

/// Everything a [`Sampler`] recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Each energy counter's name and kind, in the order of [`Sample::energy_uj`].
    pub counters: Vec<(String, CounterKind)>,
    /// The energy sources that could not be read, with why.
    pub unavailable: Vec<Unavailable>,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// Whether sampling ended because the process exited (its last sample has `process: None`).
    pub process_exited: bool,
    /// Anything else worth knowing: the first error reading the process (other than its exit), or a panic on
    /// the sampler thread.
    pub note: Option<String>,
}

/// Linear interpolation of `(instant, value)` points (in time order) at `t`; `None` outside them.
fn interpolate(points: &[(Instant, f64)], t: Instant) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if t < first.0 || t > last.0 {
        return None;
    }
    let i = points.iter().position(|p| p.0 >= t)?;
    let (tb, vb) = points[i];
    if tb == t || i == 0 {
        return Some(vb);
    }
    let (ta, va) = points[i - 1];
    let span = tb.duration_since(ta).as_secs_f64();
    if span <= 0.0 {
        return Some(vb);
    }
    let frac = t.duration_since(ta).as_secs_f64() / span;
    Some(va + (vb - va) * frac)
}

impl Trace {
    /// Counter `index`'s readings as (instant, µJ) points.
    fn counter_points(&self, index: usize) -> Vec<(Instant, f64)> {
        self.samples
            .iter()
            .filter_map(|s| Some((s.at, s.energy_uj.get(index).copied().flatten()? as f64)))
            .collect()
    }

    /// Counter `index`'s energy between `t0` and `t1` in µJ, interpolated; `None` outside its readings.
    fn counter_delta_uj(&self, index: usize, t0: Instant, t1: Instant) -> Option<f64> {
        let points = self.counter_points(index);
        Some(interpolate(&points, t1)? - interpolate(&points, t0)?)
    }

    /// The counters the machine's energy is summed from (`rapl:package-0 + rapl:dram`), or `unavailable
    /// (<reason>)` when there is none.
    pub fn energy_source(&self) -> String {
        match self.no_total_reason() {
            Some(reason) => format!("unavailable ({reason})"),
            None => self
                .counters
                .iter()
                .filter(|(_, k)| *k == CounterKind::Total)
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }

    fn total_indices(&self) -> Vec<usize> {
        self.counters
            .iter()
            .enumerate()
            .filter(|(_, (_, k))| *k == CounterKind::Total)
            .map(|(i, _)| i)
            .collect()
    }

    /// Energy of the [`CounterKind::Total`] counters between `t0` and `t1`, in J (µJ / 10⁶): each counter's
    /// cumulative µJ interpolated linearly at `t0` and `t1` between the samples around them (failed reads are
    /// skipped), summed over the counters.
    ///
    /// `None` when there is no `Total` counter, `t1 < t0`, or the window is not inside some `Total` counter's
    /// readings (a missing source is never counted as zero).
    pub fn energy_between(&self, t0: Instant, t1: Instant) -> Option<f64> {
        if t1 < t0 {
            return None;
        }
        let totals = self.total_indices();
        if totals.is_empty() {
            return None;
        }
        let mut uj = 0.0;
        for i in totals {
            uj += self.counter_delta_uj(i, t0, t1)?;
        }
        Some(uj / 1e6)
    }

    /// [`summary_between`](Self::summary_between) the first and last samples.
    pub fn summary(&self) -> Summary {
        match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => self.summary_between(first.at, last.at),
            _ => Summary {
                duration_s: 0.0,
                cpu_time_s: None,
                cpu_util: None,
                avg_rss_bytes: None,
                peak_rss_bytes: None,
                max_threads: None,
                peak_gpu_memory_bytes: None,
                avg_gpu_util_pct: None,
                energy: EnergySummary::Unavailable {
                    reason: self.no_total_reason().unwrap_or_else(|| "no samples".to_owned()),
                },
            },
        }
    }

    /// Why there is no machine energy at all, when there is no `Total` counter.
    fn no_total_reason(&self) -> Option<String> {
        if self.counters.iter().any(|(_, k)| *k == CounterKind::Total) {
            return None;
        }
        Some(
            crate::energy::joined_reasons(&self.unavailable).unwrap_or_else(|| {
                if self.counters.is_empty() {
                    "no energy counter found".to_owned()
                } else {
                    "no energy counter covers the whole machine (only parts of it)".to_owned()
                }
            }),
        )
    }

    /// CPU use, memory and energy between `t0` and `t1`:
    ///
    /// - `cpu_time_s`: the process's CPU time interpolated at `t0` and `t1` (as energy is), its difference;
    ///   `cpu_util` = `cpu_time_s / duration_s`, the average number of cores busy.
    /// - `avg_rss_bytes`, `peak_rss_bytes`, `max_threads`: over the samples taken within `[t0, t1]` (none for a
    ///   window shorter than the interval that holds no sample). `VmHWM` is the peak since the process started
    ///   or since [`reset_peak_rss`](crate::process::reset_peak_rss): reset it before the window for the
    ///   window's own peak.
    /// - `energy`: [`energy_between`](Self::energy_between) and its average power, per counter too; or why not.
    pub fn summary_between(&self, t0: Instant, t1: Instant) -> Summary {
        let duration_s = t1.saturating_duration_since(t0).as_secs_f64();
        let cpu_points: Vec<(Instant, f64)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s.at, s.process?.cpu_time_ns as f64)))
            .collect();
        let cpu_time_s = (t0 <= t1)
            .then(|| Some((interpolate(&cpu_points, t1)? - interpolate(&cpu_points, t0)?) / 1e9))
            .flatten();
        let cpu_util = cpu_time_s.filter(|_| duration_s > 0.0).map(|c| c / duration_s);

        let inside: Vec<ProcessStat> = self
            .samples
            .iter()
            .filter(|s| s.at >= t0 && s.at <= t1)
            .filter_map(|s| s.process)
            .collect();
        let avg_rss_bytes = (!inside.is_empty()).then(|| {
            let sum: u128 = inside.iter().map(|p| u128::from(p.rss_bytes)).sum();
            u64::try_from(sum / inside.len() as u128).unwrap_or(u64::MAX)
        });
        let peak_rss_bytes = inside.iter().map(|p| p.peak_rss_bytes.max(p.rss_bytes)).max();
        let max_threads = inside.iter().map(|p| p.n_threads).max();
        let gpu: Vec<crate::gpu::GpuProcessStat> = self
            .samples
            .iter()
            .filter(|s| s.at >= t0 && s.at <= t1)
            .filter_map(|s| s.gpu)
            .collect();
        let utils: Vec<f64> = gpu.iter().filter_map(|g| g.sm_util_pct).collect();

        Summary {
            duration_s,
            cpu_time_s,
            cpu_util,
            avg_rss_bytes,
            peak_rss_bytes,
            max_threads,
            peak_gpu_memory_bytes: gpu.iter().map(|g| g.memory_bytes).max(),
            avg_gpu_util_pct: (!utils.is_empty()).then(|| utils.iter().sum::<f64>() / utils.len() as f64),
            energy: self.energy_summary(t0, t1, duration_s),
        }
    }

    fn energy_summary(&self, t0: Instant, t1: Instant, duration_s: f64) -> EnergySummary {
        if let Some(reason) = self.no_total_reason() {
            return EnergySummary::Unavailable { reason };
        }
        if duration_s <= 0.0 {
            return EnergySummary::Unavailable {
                reason: "the window spans no time".to_owned(),
            };
        }
        let mut energy_j = 0.0;
        let mut per_counter_j = Vec::new();
        for (i, (name, kind)) in self.counters.iter().enumerate() {
            match self.counter_delta_uj(i, t0, t1) {
                Some(uj) => {
                    let j = uj / 1e6;
                    if *kind == CounterKind::Total {
                        energy_j += j;
                    }
                    per_counter_j.push((name.clone(), j));
                }
                None if *kind == CounterKind::Total => {
                    return EnergySummary::Unavailable {
                        reason: format!("{name} has no readings around the window"),
                    };
                }
                None => {}
            }
        }
        EnergySummary::Measured {
            energy_j,
            avg_power_w: energy_j / duration_s,
            per_counter_j,
        }
    }
}

/// CPU use, memory and energy over a window of a [`Trace`]; `None` (or [`EnergySummary::Unavailable`]) for what
/// was not measured, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The window's length, in s.
    pub duration_s: f64,
    /// CPU time the process used in the window (user + system, all threads), in s.
    pub cpu_time_s: Option<f64>,
    /// Average cores busy: `cpu_time_s / duration_s` (1.0 = one core fully busy).
    pub cpu_util: Option<f64>,
    /// Mean resident set size over the samples in the window, in bytes.
    pub avg_rss_bytes: Option<u64>,
    /// The largest `VmHWM` or `VmRSS` seen in the window, in bytes (see [`Trace::summary_between`] on `VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// The most threads seen in the window.
    pub max_threads: Option<u32>,
    /// The most GPU memory the process held in the window (NVML), bytes; `None` without an NVIDIA GPU or when it
    /// held none.
    pub peak_gpu_memory_bytes: Option<u64>,
    /// The process's mean SM utilisation over the window's samples (NVML), % of one GPU.
    pub avg_gpu_util_pct: Option<f64>,
    /// The machine's energy in the window, or why it is not known.
    pub energy: EnergySummary,
}

/// The machine's energy over a window, or why it is not known (never 0 for a missing source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnergySummary {
    /// Measured by the [`CounterKind::Total`] counters.
    Measured {
        /// Sum of the `Total` counters' energy, in J.
        energy_j: f64,
        /// `energy_j / duration`, in W.
        avg_power_w: f64,
        /// Each counter's energy (`Total` and `Part`), in J, by name; a `Part` counter without readings around
        /// the window is left out.
        per_counter_j: Vec<(String, f64)>,
    },
    /// Not measured.
    Unavailable {
        /// Why, e.g. "rapl: /sys/class/powercap does not exist (a VM or container?); nvml: NVML: …".
        reason: String,
    },
}

impl EnergySummary {
    /// The energy above an idle baseline of `idle_w` watts over `duration_s` seconds (see [`idle_power_w`]):
    /// `energy_j − idle_w · duration_s` and `avg_power_w − idle_w`, each floored at 0. `per_counter_j` is left as
    /// measured (the baseline is the machine's, not split by counter). `Unavailable` stays as it is.
    pub fn minus_idle(&self, idle_w: f64, duration_s: f64) -> EnergySummary {
        match self {
            Self::Measured {
                energy_j,
                avg_power_w,
                per_counter_j,
            } => Self::Measured {
                energy_j: (energy_j - idle_w * duration_s).max(0.0),
                avg_power_w: (avg_power_w - idle_w).max(0.0),
                per_counter_j: per_counter_j.clone(),
            },
            Self::Unavailable { .. } => self.clone(),
        }
    }

    /// The energy in J when measured.
    pub fn energy_j(&self) -> Option<f64> {
        match self {
            Self::Measured { energy_j, .. } => Some(*energy_j),
            Self::Unavailable { .. } => None,
        }
    }
}

impl fmt::Display for EnergySummary {
    /// `12.345 J (61.7 W)`, or `unavailable (<reason>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Measured {
                energy_j,
                avg_power_w,
                ..
            } => write!(f, "{energy_j:.3} J ({avg_power_w:.1} W)"),
            Self::Unavailable { reason } => write!(f, "unavailable ({reason})"),
        }
    }
}

/// The machine's average power over `duration` while this process runs nothing (an idle baseline, for
/// [`EnergySummary::minus_idle`]), in W: the [`CounterKind::Total`] counters read before and after a sleep on
/// the calling thread, their µJ difference / 10⁶ / elapsed seconds. Hands `sources` back.
///
/// `None` when there is no `Total` counter or one of them fails to read.
pub fn idle_power_w(mut sources: EnergySources, duration: Duration) -> (Option<f64>, EnergySources) {
    let totals: Vec<usize> = sources
        .counters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind() == CounterKind::Total)
        .map(|(i, _)| i)
        .collect();
    if totals.is_empty() {
        return (None, sources);
    }
    let t0 = Instant::now();
    let before = sources.read_all_uj();
    std::thread::sleep(duration);
    let after = sources.read_all_uj();
    let elapsed_s = t0.elapsed().as_secs_f64();
    let mut uj = 0u64;
    for i in totals {
        match (before.get(i).copied().flatten(), after.get(i).copied().flatten()) {
            (Some(b), Some(a)) => uj = uj.saturating_add(a.saturating_sub(b)),
            _ => return (None, sources),
        }
    }
    let power = (elapsed_s > 0.0).then(|| uj as f64 / 1e6 / elapsed_s);
    (power, sources)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::energy::{EnergyCounter, WrapCounter};

    const STAT: &str = "4242 (my (weird) proc) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 3 4 20 0 7 0 \
        12345 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tmy (weird) proc) x\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  999 kB\n\
        VmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t 5000 kB\nThreads:\t7\nSigQ:\t0/1000\n";

    fn proc_fixture(stat: &str, status: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("4242");
        fs_err::create_dir_all(&p).unwrap();
        fs_err::write(p.join("stat"), stat).unwrap();
        fs_err::write(p.join("status"), status).unwrap();
        dir
    }

    #[test]
    fn proc_fixture_with_a_hostile_command_name() {
        let dir = proc_fixture(STAT, STATUS);
        let p = read_process_in(dir.path(), 4242, 100).unwrap();
        assert_eq!(
            p,
            ProcessStat {
                // utime 250 + stime 50 ticks at 100 Hz = 3 s (cutime, cstime of children excluded).
                cpu_time_ns: 3_000_000_000,
                rss_bytes: 10240 * 1024,
                peak_rss_bytes: 20480 * 1024,
                n_threads: 7,
            }
        );
        // Another tick rate.
        let p = read_process_in(dir.path(), 4242, 1000).unwrap();
        assert_eq!(p.cpu_time_ns, 300_000_000);
    }

    #[test]
    fn proc_threads_fall_back_to_stat() {
        let status = STATUS.replace("Threads:\t7\n", "");
        let dir = proc_fixture(STAT, &status);
        assert_eq!(read_process_in(dir.path(), 4242, 100).unwrap().n_threads, 7);
    }

    #[test]
    fn proc_errors() {
        let dir = proc_fixture(STAT, STATUS);
        // No such process.
        let e = read_process_in(dir.path(), 4243, 100).unwrap_err();
        assert!(matches!(e, Error::ProcessGone { pid: 4243 }), "{e:?}");
        // A zombie has exited.
        let dir = proc_fixture(&STAT.replace(") S ", ") Z "), STATUS);
        let e = read_process_in(dir.path(), 4242, 100).unwrap_err();
        assert!(matches!(e, Error::ProcessGone { pid: 4242 }), "{e:?}");
        // Truncated stat.
        let dir = proc_fixture("4242 (x) S 1 2 3\n", STATUS);
        let e = read_process_in(dir.path(), 4242, 100).unwrap_err();
        assert!(matches!(e, Error::ProcParse { .. }), "{e:?}");
        // No closing parenthesis.
        let dir = proc_fixture("4242 (x S 1 2 3\n", STATUS);
        let e = read_process_in(dir.path(), 4242, 100).unwrap_err();
        assert!(e.to_string().contains("no ')'"), "{e}");
        // A kernel thread has no VmRSS.
        let kthread = STAT.replace(" 4194560 ", " 2129984 "); // PF_KTHREAD | PF_NOFREEZE | PF_FORKNOEXEC
        let dir = proc_fixture(&kthread, "Name:\tkthreadd\nThreads:\t1\n");
        let e = read_process_in(dir.path(), 4242, 100).unwrap_err();
        assert!(e.to_string().contains("no VmRSS: a kernel thread"), "{e}");
        // A user process without VmRSS is exiting: its memory is gone already.
        let dir = proc_fixture(STAT, "Name:\tx\nState:\tR (running)\nThreads:\t1\n");
        let e = read_process_in(dir.path(), 4242, 100).unwrap_err();
        assert!(matches!(e, Error::ProcessGone { pid: 4242 }), "{e:?}");
        // Zero ticks per second.
        let dir = proc_fixture(STAT, STATUS);
        assert!(read_process_in(dir.path(), 4242, 0).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_readable() {
        let p = read_process(std::process::id()).unwrap();
        assert!(p.rss_bytes > 0 && p.peak_rss_bytes >= p.rss_bytes);
        assert!(p.n_threads >= 1);
        assert_eq!(clk_tck().unwrap(), 100);
    }

    /// A trace at 0, 100, 200 ms with a package (Total), its core (Part) and a GPU (Total) whose middle read
    /// failed.
    fn synthetic() -> (Trace, Instant) {
        let base = Instant::now();
        let ms = |m| base + Duration::from_millis(m);
        let proc_at = |cpu_ms: u64, rss_mib: u64| ProcessStat {
            cpu_time_ns: cpu_ms * 1_000_000,
            rss_bytes: rss_mib << 20,
            peak_rss_bytes: (rss_mib + 1) << 20,
            n_threads: 4,
        };
        let samples = vec![
            Sample {
                at: ms(0),
                process: Some(proc_at(0, 10)),
                energy_uj: vec![Some(0), Some(0), Some(0)],
                gpu: None,
            },
            Sample {
                at: ms(100),
                process: Some(proc_at(150, 20)),
                energy_uj: vec![Some(1_000_000), Some(400_000), None],
                gpu: None,
            },
            Sample {
                at: ms(200),
                process: Some(proc_at(250, 30)),
                energy_uj: vec![Some(3_000_000), Some(1_000_000), Some(2_000_000)],
                gpu: None,
            },
        ];
        let trace = Trace {
            counters: vec![
                ("rapl:package-0".to_owned(), CounterKind::Total),
                ("rapl:core".to_owned(), CounterKind::Part),
                ("nvml:gpu0".to_owned(), CounterKind::Total),
            ],
            unavailable: vec![],
            samples,
            process_exited: false,
            note: None,
        };
        (trace, base)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn energy_between_interpolates_each_counter() {
        let (trace, base) = synthetic();
        let ms = |m| base + Duration::from_millis(m);
        // Package: 0.5 J at 50 ms, 2.0 J at 150 ms → 1.5 J. GPU (read failed at 100 ms): 0.5 → 1.5 J → 1.0 J.
        let e = trace.energy_between(ms(50), ms(150)).unwrap();
        assert!(close(e, 2.5), "{e}");
        // At sample instants exactly.
        assert!(close(trace.energy_between(ms(0), ms(200)).unwrap(), 5.0));
        assert!(close(trace.energy_between(ms(100), ms(100)).unwrap(), 0.0));
        // Outside the samples, or backwards.
        assert_eq!(trace.energy_between(ms(50), ms(201)), None);
        assert_eq!(trace.energy_between(ms(150), ms(50)), None);
    }

    #[test]
    fn summary_of_a_synthetic_trace() {
        let (trace, base) = synthetic();
        let s = trace.summary();
        assert!(close(s.duration_s, 0.2));
        assert!(close(s.cpu_time_s.unwrap(), 0.25));
        assert!(close(s.cpu_util.unwrap(), 1.25));
        assert_eq!(s.avg_rss_bytes, Some(20 << 20));
        assert_eq!(s.peak_rss_bytes, Some(31 << 20));
        assert_eq!(s.max_threads, Some(4));
        let EnergySummary::Measured {
            energy_j,
            avg_power_w,
            per_counter_j,
        } = &s.energy
        else {
            panic!("{:?}", s.energy)
        };
        assert!(close(*energy_j, 5.0) && close(*avg_power_w, 25.0));
        let names: Vec<&str> = per_counter_j.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["rapl:package-0", "rapl:core", "nvml:gpu0"]);
        assert!(close(per_counter_j[1].1, 1.0));
        assert_eq!(s.energy.to_string(), "5.000 J (25.0 W)");

        // A window: only the middle sample is inside it.
        let w = trace.summary_between(
            base + Duration::from_millis(50),
            base + Duration::from_millis(150),
        );
        assert!(close(w.cpu_time_s.unwrap(), 0.2 - 0.075));
        assert_eq!(w.avg_rss_bytes, Some(20 << 20));
        assert!(close(w.energy.energy_j().unwrap(), 2.5));

        let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(
            serde_json::to_string(&s.energy)
                .unwrap()
                .starts_with(r#"{"status":"measured","energy_j":5.0"#)
        );
    }

    #[test]
    fn missing_energy_is_unavailable_never_zero() {
        let (mut trace, base) = synthetic();
        trace.counters.clear();
        for s in &mut trace.samples {
            s.energy_uj.clear();
        }
        trace.unavailable = vec![Unavailable {
            source: "rapl".to_owned(),
            reason: "/sys/class/powercap does not exist (a VM or container?)".to_owned(),
        }];
        let s = trace.summary();
        assert_eq!(
            s.energy,
            EnergySummary::Unavailable {
                reason: "rapl: /sys/class/powercap does not exist (a VM or container?)".to_owned()
            }
        );
        assert!(s.cpu_util.is_some());
        assert_eq!(trace.energy_between(base, base), None);
        assert_eq!(
            serde_json::to_string(&s.energy).unwrap(),
            r#"{"status":"unavailable","reason":"rapl: /sys/class/powercap does not exist (a VM or container?)"}"#
        );

        // A Total counter without readings around the window makes the whole energy unavailable.
        let (mut trace, _) = synthetic();
        for s in &mut trace.samples {
            s.energy_uj[2] = None;
        }
        assert!(matches!(trace.summary().energy,
            EnergySummary::Unavailable { reason } if reason.contains("nvml:gpu0")));

        // Only Part counters: no machine total.
        let (mut trace, _) = synthetic();
        trace.counters[0].1 = CounterKind::Part;
        trace.counters[2].1 = CounterKind::Part;
        assert!(matches!(trace.summary().energy,
            EnergySummary::Unavailable { reason } if reason.contains("only parts")));

        // No samples at all.
        let (mut trace, _) = synthetic();
        trace.samples.clear();
        let s = trace.summary();
        assert_eq!(s.cpu_time_s, None);
        assert_eq!(
            s.energy,
            EnergySummary::Unavailable {
                reason: "no samples".to_owned()
            }
        );
    }

    #[test]
    fn minus_idle_floors_at_zero() {
        let m = EnergySummary::Measured {
            energy_j: 5.0,
            avg_power_w: 25.0,
            per_counter_j: vec![("rapl:package-0".to_owned(), 5.0)],
        };
        let EnergySummary::Measured {
            energy_j,
            avg_power_w,
            per_counter_j,
        } = m.minus_idle(10.0, 0.2)
        else {
            panic!()
        };
        assert!(close(energy_j, 3.0) && close(avg_power_w, 15.0));
        assert_eq!(per_counter_j.len(), 1);
        assert_eq!(m.minus_idle(100.0, 0.2).energy_j(), Some(0.0));
        let u = EnergySummary::Unavailable {
            reason: "x".to_owned(),
        };
        assert_eq!(u.minus_idle(10.0, 1.0), u);
    }

    /// A counter rising by a fixed µJ per read, for the sampler and idle tests.
    struct Ramp {
        raw: u64,
        step: u64,
        counter: WrapCounter,
        kind: CounterKind,
    }

    impl EnergyCounter for Ramp {
        fn name(&self) -> &str {
            "test:ramp"
        }
        fn kind(&self) -> CounterKind {
            self.kind
        }
        fn read_uj(&mut self) -> Result<u64> {
            self.raw += self.step;
            Ok(self.counter.update(self.raw))
        }
    }

    fn ramp(kind: CounterKind) -> EnergySources {
        EnergySources {
            counters: vec![Box::new(Ramp {
                raw: 0,
                step: 1000,
                counter: WrapCounter::new(0),
                kind,
            })],
            unavailable: vec![],
        }
    }

    #[test]
    fn idle_power_from_two_reads() {
        let (p, sources) = idle_power_w(ramp(CounterKind::Total), Duration::from_millis(20));
        // 1000 µJ over ≥ 20 ms: at most 0.05 W.
        let p = p.unwrap();
        assert!(p > 0.0 && p <= 0.05, "{p}");
        assert_eq!(sources.counters.len(), 1);
        let (p, _) = idle_power_w(ramp(CounterKind::Part), Duration::from_millis(1));
        assert_eq!(p, None);
        let (p, _) = idle_power_w(EnergySources::default(), Duration::from_millis(1));
        assert_eq!(p, None);
    }

    #[test]
    fn stop_is_immediate_and_keeps_the_sources() {
        let cfg = SamplerConfig {
            pid: std::process::id(),
            interval: Duration::from_secs(10),
        };
        let t = Instant::now();
        let sampler = Sampler::start(cfg, ramp(CounterKind::Total), None).unwrap();
        assert_eq!(sampler.n_samples(), 1);
        let (trace, sources) = sampler.stop_keep_sources();
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        // The first sample and the one taken at stop.
        assert_eq!(trace.samples.len(), 2);
        assert_eq!(trace.samples[0].energy_uj, [Some(0)]);
        assert_eq!(trace.samples[1].energy_uj, [Some(1000)]);
        assert_eq!(trace.counters, [("test:ramp".to_owned(), CounterKind::Total)]);
        assert!(!trace.process_exited);
        assert!(sources.is_some());
        if cfg!(target_os = "linux") {
            assert!(trace.samples.iter().all(|s| s.process.is_some()));
            assert_eq!(trace.note, None);
        }

        let cfg = SamplerConfig {
            interval: Duration::ZERO,
            ..cfg
        };
        assert!(matches!(
            Sampler::start(cfg, EnergySources::default(), None),
            Err(Error::ZeroInterval)
        ));
    }

    #[test]
    fn a_panic_on_the_sampler_thread_does_not_reach_the_caller() {
        let cfg = SamplerConfig {
            pid: std::process::id(),
            interval: Duration::from_millis(5),
        };
        let mut n = 0;
        let on_sample: OnSample = Box::new(move |_| {
            n += 1;
            assert!(n < 3, "deliberate panic in on_sample");
        });
        let sampler = Sampler::start(cfg, EnergySources::default(), Some(on_sample)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (trace, sources) = sampler.stop_keep_sources();
        assert_eq!(trace.samples.len(), 2);
        assert!(sources.is_none());
        let note = trace.note.unwrap();
        assert!(
            note.contains("panicked") && note.contains("deliberate panic"),
            "{note}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sampling_ends_quietly_when_the_process_exits() {
        // The child lives until it is killed, after two samples have seen it: a child that ends by itself could
        // be gone before the first sample on a loaded machine.
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let cfg = SamplerConfig {
            pid: child.id(),
            interval: Duration::from_millis(10),
        };
        let sampler = Sampler::start(cfg, EnergySources::default(), None).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) && sampler.n_samples() < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sampler.n_samples() >= 2, "no two samples in 30 s");
        child.kill().unwrap();
        // The child becomes a zombie until reaped, which already counts as exited.
        child.wait().unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) && !sampler.handle.as_ref().unwrap().is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let n_before_stop = sampler.n_samples();
        let trace = sampler.stop();
        assert!(trace.process_exited);
        // No sample was added by stop: sampling had ended.
        assert_eq!(trace.samples.len(), n_before_stop);
        assert!(trace.samples.len() >= 2);
        assert!(trace.samples[0].process.is_some());
        assert!(trace.samples.last().unwrap().process.is_none());
        assert_eq!(trace.note, None, "{:?}", trace.samples);
    }
}
