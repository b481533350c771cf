//! Measured memory bandwidth and peak f32 FLOP/s of this machine's CPU, in about two seconds.
//!
//! - **Bandwidth**: STREAM's triad `a[i] = b[i] + s·c[i]` and a plain read (sum) over f64 arrays far larger
//!   than the caches, on `n_threads` threads, each owning a contiguous chunk that it first-touched itself (so on
//!   NUMA machines its pages are local). Best of `reps`, as STREAM reports (John McCalpin, STREAM,
//!   <https://www.cs.virginia.edu/stream/ref.html>).
//! - **Peak FLOP/s**: independent chains of f32 fused multiply-adds in registers, with the widest FMA the CPU has
//!   (AVX-512F, AVX2+FMA, NEON, else scalar `mul_add`), on every thread at once. Best of 3.
//!
//! Every SIMD kernel has the scalar reference `fma_ref` that the tests compare it with bit for bit (an FMA
//! rounds once, so hardware and `f32::mul_add` agree exactly).

// The FMA kernels need `std::arch` intrinsics (`#[target_feature]` functions, unaligned loads and stores).
#![allow(unsafe_code)]

use std::collections::TryReserveError;
use std::hint::black_box;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::machine::{available_threads, ram_total_bytes};
use crate::{Error, Result};

/// Default size of each bandwidth array, in bytes: 256 MiB, far beyond any CPU's last-level cache (the largest,
/// AMD's 3D V-Cache EPYCs, have 1.1 GiB of L3 in total but at most 96 MiB per CCD), so the figure is DRAM's.
pub const DEFAULT_ARRAY_BYTES: usize = 256 << 20;

/// Smallest default array size, in bytes (32 MiB), used when RAM is small.
pub const MIN_DEFAULT_ARRAY_BYTES: usize = 32 << 20;

/// STREAM's triad scalar `s` (STREAM uses 3.0).
const TRIAD_SCALAR: f64 = 3.0;

/// Bytes STREAM counts per triad element: read `b[i]`, read `c[i]`, write `a[i]` (3 × 8 bytes of f64). The
/// cache line of `a` that a normal store first reads (write-allocate) is not counted, as in STREAM.
const TRIAD_BYTES_PER_ELEMENT: f64 = 24.0;

/// Bytes per element of the read kernel: one f64.
const READ_BYTES_PER_ELEMENT: f64 = 8.0;

/// FMA recurrence `x ← x·FMA_MUL + FMA_ADD`: converges to `FMA_ADD / (1 − FMA_MUL)` = 1, so values started near
/// 1 stay normal (no overflow, no denormal slow paths) however long the run.
const FMA_MUL: f32 = 0.999_9;
/// See [`FMA_MUL`].
const FMA_ADD: f32 = 1.0e-4;

/// Timed FMA runs; the best is reported.
const FMA_RUNS: usize = 3;

/// What [`measure`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeParams {
    /// Threads the kernels run on (default: `std::thread::available_parallelism`, every logical CPU this
    /// process may use).
    pub n_threads: usize,
    /// Size of each of the three triad arrays, in bytes (default [`default_array_bytes`] of the installed RAM:
    /// 256 MiB, or RAM/16 on small machines, at least 32 MiB). Split between the threads in whole 64-byte
    /// lines, so at least 64 × `n_threads`.
    pub array_bytes: usize,
    /// Timed repetitions of each bandwidth kernel; the best is reported (default 10, as STREAM's `NTIMES`).
    pub reps: usize,
    /// Target duration of one timed FMA run, in milliseconds (default 150); the iteration count is calibrated
    /// to it on one thread first.
    pub fma_run_ms: u32,
    /// Ask Linux for transparent huge pages (2 MiB, `madvise(MADV_HUGEPAGE)`) for the bandwidth arrays (default
    /// false: 4 KiB pages, what a plain allocation gets where THP is in `madvise` mode). A roofline compares an
    /// engine's bytes/s with this bandwidth, so both should stand on the same pages: `silica hw` passes the page
    /// policy of silica's kernels (`silica_kernels::huge_pages`).
    pub huge_pages: bool,
}

impl Default for ProbeParams {
    fn default() -> Self {
        Self {
            n_threads: available_threads(),
            array_bytes: default_array_bytes(ram_total_bytes()),
            reps: 10,
            fma_run_ms: 150,
            huge_pages: false,
        }
    }
}

/// The default bandwidth array size for a machine with `ram_total_bytes` of RAM: [`DEFAULT_ARRAY_BYTES`]
/// (256 MiB), or RAM/16 when that is smaller (three arrays then take 3/16 of RAM), but never below
/// [`MIN_DEFAULT_ARRAY_BYTES`] (32 MiB). Unknown RAM gives 256 MiB.
///
/// ```
/// use silica_telemetry::default_array_bytes;
/// assert_eq!(default_array_bytes(Some(64 << 30)), 256 << 20);
/// assert_eq!(default_array_bytes(Some(2 << 30)), 128 << 20);
/// assert_eq!(default_array_bytes(Some(256 << 20)), 32 << 20);
/// ```
pub fn default_array_bytes(ram_total_bytes: Option<u64>) -> usize {
    match ram_total_bytes {
        None => DEFAULT_ARRAY_BYTES,
        Some(ram) => {
            let sixteenth = usize::try_from(ram / 16).unwrap_or(usize::MAX);
            sixteenth.clamp(MIN_DEFAULT_ARRAY_BYTES, DEFAULT_ARRAY_BYTES)
        }
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Threads the kernels ran on.
    pub n_threads: usize,
    /// Size of each bandwidth array, in bytes.
    pub array_bytes: usize,
    /// Timed repetitions of each bandwidth kernel.
    pub reps: usize,
    /// STREAM triad bandwidth in GB/s (10⁹ bytes/s), counting 24 bytes per element as STREAM does (two reads,
    /// one write; the write-allocate read is not counted), best of `reps`.
    pub triad_gbps: f64,
    /// Read bandwidth in GB/s (10⁹ bytes/s): sum of an f64 array with 16 independent accumulators, 8 bytes per
    /// element, best of `reps`.
    pub read_gbps: f64,
    /// Peak f32 throughput in GFLOP/s (10⁹ FLOP/s) on all `n_threads` threads: 2 FLOPs per FMA lane, best of 3
    /// runs of independent register-resident FMA chains.
    pub peak_f32_gflops: f64,
    /// Which FMA kernel ran: `"avx512f"`, `"avx2+fma"`, `"neon"` or `"scalar"`.
    pub isa: String,
    /// Wall time of the whole measurement, in milliseconds (allocation and first touch included).
    pub elapsed_ms: f64,
    /// Whether the bandwidth arrays were advised huge pages ([`ProbeParams::huge_pages`]; false in profiles
    /// saved before the field existed, which were all on 4 KiB pages). Advice only: Linux may still back them
    /// with 4 KiB pages.
    #[serde(default)]
    pub huge_pages: bool,
}

/// Measures this CPU's memory bandwidth (STREAM triad, read) and peak f32 FLOP/s as `params` says; about 1–3 s
/// with the defaults.
///
/// # Errors
/// [`Error::ZeroThreads`], [`Error::ZeroReps`], [`Error::ArrayTooSmall`] for unusable parameters;
/// [`Error::Alloc`] when an array cannot be allocated; [`Error::ThreadSpawn`] when the OS refuses a thread.
pub fn measure(params: &ProbeParams) -> Result<Probe> {
    let start = Instant::now();
    if params.n_threads == 0 {
        return Err(Error::ZeroThreads);
    }
    if params.reps == 0 {
        return Err(Error::ZeroReps);
    }
    let min_bytes = 64 * params.n_threads;
    if params.array_bytes < min_bytes {
        return Err(Error::ArrayTooSmall {
            array_bytes: params.array_bytes,
            min_bytes,
        });
    }
    let (triad_gbps, read_gbps) = bandwidth(params)?;
    let isa = Isa::detect();
    let peak_f32_gflops = peak_gflops(isa, params.n_threads, params.fma_run_ms)?;
    Ok(Probe {
        n_threads: params.n_threads,
        array_bytes: params.array_bytes,
        reps: params.reps,
        triad_gbps,
        read_gbps,
        peak_f32_gflops,
        isa: isa.name().to_owned(),
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        huge_pages: params.huge_pages,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Threads

/// A reusable barrier (as `std::sync::Barrier`) that can be cancelled, so that one thread failing to allocate,
/// to spawn, or panicking releases the others instead of leaving them waiting forever.
#[derive(Debug)]
struct Gate {
    n_threads: usize,
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug)]
struct GateState {
    arrived: usize,
    generation: u64,
    cancelled: bool,
}

impl Gate {
    fn new(n_threads: usize) -> Self {
        let state = GateState {
            arrived: 0,
            generation: 0,
            cancelled: false,
        };
        Self {
            n_threads,
            state: Mutex::new(state),
            cv: Condvar::new(),
        }
    }

    /// Waits until all `n_threads` threads have arrived; `false` when the gate was cancelled instead.
    fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.cancelled {
            return false;
        }
        let generation = s.generation;
        s.arrived += 1;
        if s.arrived == self.n_threads {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
            return true;
        }
        while s.generation == generation && !s.cancelled {
            s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.generation != generation
    }

    /// Releases every waiting thread and makes every later [`Gate::wait`] return `false`.
    fn cancel(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancelled = true;
        self.cv.notify_all();
    }
}

/// Cancels the gate if its thread unwinds.
struct CancelOnPanic<'a>(&'a Gate);

impl Drop for CancelOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.cancel();
        }
    }
}

/// Start and end of one thread's timed section.
type Span = (Instant, Instant);

/// Runs `work(t, gate)` for `t` in `0..n_threads` on scoped threads; the results in thread order.
fn run_threads<T: Send>(n_threads: usize, work: impl Fn(usize, &Gate) -> T + Sync) -> Result<Vec<T>> {
    let gate = Gate::new(n_threads);
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(n_threads);
        for t in 0..n_threads {
            let (gate, work) = (&gate, &work);
            let spawned = thread::Builder::new()
                .name(format!("silica-probe-{t}"))
                .spawn_scoped(s, move || {
                    let _guard = CancelOnPanic(gate);
                    work(t, gate)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    gate.cancel();
                    return Err(Error::ThreadSpawn { n_threads, source });
                }
            }
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect())
    })
}

/// Runs `work` `n` times, each after all threads have met at `gate`, timing each run; `None` when the gate was
/// cancelled (another thread failed, and [`run_threads`] reports that instead of these spans).
fn timed_runs(gate: &Gate, n: usize, mut work: impl FnMut()) -> Option<Vec<Span>> {
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        if !gate.wait() {
            return None;
        }
        let t0 = Instant::now();
        work();
        spans.push((t0, Instant::now()));
    }
    Some(spans)
}

/// Seconds of the best repetition: for each repetition, from the earliest start to the latest end over the
/// threads (all were released by the same gate), then the minimum over repetitions.
fn best_seconds(spans: &[Vec<Span>]) -> f64 {
    let reps = spans.iter().map(Vec::len).min().unwrap_or(0);
    (0..reps)
        .map(|r| {
            let start = spans.iter().map(|s| s[r].0).min();
            let end = spans.iter().map(|s| s[r].1).max();
            match (start, end) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => f64::INFINITY,
            }
        })
        .fold(f64::INFINITY, f64::min)
}

// ---------------------------------------------------------------------------------------------------------------
// Bandwidth

/// Elements of thread `t`'s chunk when `n` elements are split into whole 64-byte lines (8 f64) over `n_threads`
/// threads, the first threads taking one line more; the last thread also takes the tail below a line.
fn chunk_len(n: usize, n_threads: usize, t: usize) -> usize {
    let lines = n / 8;
    let (base, extra) = (lines / n_threads, lines % n_threads);
    let len = 8 * (base + usize::from(t < extra));
    if t + 1 == n_threads { len + n % 8 } else { len }
}

/// A vector of `len` copies of `value`, written by the calling thread (its first touch).
fn filled(len: usize, value: f64, array_bytes: usize, huge_pages: bool) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|source: TryReserveError| Error::Alloc { array_bytes, source })?;
    if huge_pages {
        advise_huge_pages(v.spare_capacity_mut());
    }
    v.resize(len, value);
    Ok(v)
}

/// Asks Linux for transparent huge pages on the whole 2 MiB pages inside `buf`, before its first write (the
/// advice applies to pages faulted in afterwards; kernel `admin-guide/mm/transhuge`). Advice only: an error
/// (THP `never`, no free 2 MiB block) leaves 4 KiB pages and is ignored. Elsewhere it does nothing.
fn advise_huge_pages(buf: &mut [std::mem::MaybeUninit<f64>]) {
    /// Transparent huge pages are 2 MiB on x86-64 (and on aarch64 with 4 KiB base pages).
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let (Some(first), Some(end)) = (
        start.checked_next_multiple_of(HUGE),
        start.checked_add(size_of_val(buf)),
    ) else {
        return;
    };
    let end = end / HUGE * HUGE;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: `first..end` lies inside `buf`, memory this process owns; the advice changes how its pages are
    // backed, not what they hold.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

/// STREAM triad over one chunk: `a[i] = b[i] + scalar·c[i]` (a separate multiply and add, as STREAM's C code;
/// Rust does not contract them into an FMA).
pub(crate) fn triad(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64) {
    for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
        *a = b + scalar * c;
    }
}

/// Sum of `x` with 16 independent accumulators, so that the add latency does not bound the loop and the
/// compiler can keep them in vector registers.
pub(crate) fn sum(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 16];
    let chunks = x.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// One thread's spans for the triad repetitions, then for the read repetitions.
type BandwidthSpans = (Vec<Span>, Vec<Span>);

/// Triad and read bandwidth in GB/s.
fn bandwidth(params: &ProbeParams) -> Result<(f64, f64)> {
    let ProbeParams {
        n_threads,
        array_bytes,
        reps,
        huge_pages,
        ..
    } = *params;
    let n = array_bytes / 8;
    let results = run_threads(n_threads, |t, gate| -> Result<BandwidthSpans> {
        let len = chunk_len(n, n_threads, t);
        // Each thread allocates and first-touches its own chunks (NUMA-local pages), then only uses those.
        let fill = |value| filled(len, value, array_bytes, huge_pages);
        let arrays = fill(1.0).and_then(|a| Ok((a, fill(2.0)?, fill(0.5)?)));
        let (mut a, b, c) = match arrays {
            Ok(arrays) => arrays,
            Err(e) => {
                gate.cancel();
                return Err(e);
            }
        };
        let Some(triad_spans) = timed_runs(gate, reps, || {
            triad(&mut a, &b, &c, TRIAD_SCALAR);
            black_box(a.as_mut_slice());
        }) else {
            return Ok(Default::default());
        };
        let Some(read_spans) = timed_runs(gate, reps, || {
            black_box(sum(black_box(&b)));
        }) else {
            return Ok(Default::default());
        };
        Ok((triad_spans, read_spans))
    })?;
    let (triad_spans, read_spans): (Vec<_>, Vec<_>) = results
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let n = n as f64;
    let triad_gbps = TRIAD_BYTES_PER_ELEMENT * n / best_seconds(&triad_spans) / 1e9;
    let read_gbps = READ_BYTES_PER_ELEMENT * n / best_seconds(&read_spans) / 1e9;
    Ok((triad_gbps, read_gbps))
}

// ---------------------------------------------------------------------------------------------------------------
// Peak FLOP/s

/// The FMA kernels, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// 16 accumulators × 16 lanes of `_mm512_fmadd_ps`: 16 independent chains cover an FMA latency of 4 cycles
    /// on 2 ports (8 in flight) with room to spare, and leave 16 of the 32 zmm registers free.
    Avx512,
    /// 12 accumulators × 8 lanes of `_mm256_fmadd_ps` (4-cycle latency × 2 ports = 8 needed; 12 of 16 ymm).
    Avx2Fma,
    /// 16 accumulators × 4 lanes of `vfmaq_f32` (up to 4 FMA pipes × 4 cycles on Neoverse V-class cores).
    Neon,
    /// 16 chains of `f32::mul_add`: portable, and below peak (one lane per instruction, and a libm call where
    /// the target has no FMA instruction enabled at compile time).
    Scalar,
}

impl Isa {
    /// The widest kernel this CPU runs, detected at run time.
    pub(crate) fn detect() -> Self {
        [Self::Avx512, Self::Avx2Fma, Self::Neon]
            .into_iter()
            .find(|isa| isa.supported())
            .unwrap_or(Self::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub(crate) fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "aarch64")]
            Self::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Self::Scalar => true,
            _ => false,
        }
    }

    /// The name reported in [`Probe::isa`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512f",
            Self::Avx2Fma => "avx2+fma",
            Self::Neon => "neon",
            Self::Scalar => "scalar",
        }
    }

    /// f32 values the kernel keeps in registers (accumulators × lanes); each iteration does one FMA per value.
    pub(crate) fn n_values(self) -> usize {
        match self {
            Self::Avx512 => 16 * 16,
            Self::Avx2Fma => 12 * 8,
            Self::Neon => 16 * 4,
            Self::Scalar => 16,
        }
    }

    /// Applies `x ← x·FMA_MUL + FMA_ADD` `iters` times to every value of `acc` (`n_values` long).
    ///
    /// # Panics
    /// If `acc.len() != self.n_values()`, or the CPU does not support the kernel.
    pub(crate) fn run(self, acc: &mut [f32], iters: u64) {
        assert_eq!(
            acc.len(),
            self.n_values(),
            "{} kernel takes {} values",
            self.name(),
            self.n_values()
        );
        assert!(self.supported(), "this CPU cannot run the {} kernel", self.name());
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                // SAFETY: `supported()` checked avx512f at run time just above.
                unsafe { x86::fma_avx512(acc, iters) }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => {
                // SAFETY: `supported()` checked avx2 and fma at run time just above.
                unsafe { x86::fma_avx2(acc, iters) }
            }
            #[cfg(target_arch = "aarch64")]
            Self::Neon => {
                // SAFETY: `supported()` checked neon at run time just above.
                unsafe { arm::fma_neon(acc, iters) }
            }
            _ => fma_ref(acc, iters),
        }
    }
}

/// The scalar reference for every FMA kernel: `x ← x.mul_add(FMA_MUL, FMA_ADD)` `iters` times for each value,
/// iterations outermost so the values are independent chains (also the [`Isa::Scalar`] kernel).
pub(crate) fn fma_ref(acc: &mut [f32], iters: u64) {
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(FMA_MUL, FMA_ADD);
        }
    }
}

/// Starting values: near 1 and distinct, so each lane's chain differs.
fn fma_start(n_values: usize) -> Vec<f32> {
    (0..n_values).map(|i| 1.0 + (i % 64) as f32 * 1.0e-3).collect()
}

/// Peak GFLOP/s of `isa` on `n_threads` threads, each run about `run_ms` long.
fn peak_gflops(isa: Isa, n_threads: usize, run_ms: u32) -> Result<f64> {
    // Calibrate on one thread: double the count until a run takes ≥ 10 ms, then scale to `run_ms`.
    let mut acc = fma_start(isa.n_values());
    let mut iters: u64 = 1 << 12;
    let seconds_per_iter = loop {
        let t0 = Instant::now();
        isa.run(&mut acc, iters);
        black_box(&mut acc);
        let s = t0.elapsed().as_secs_f64();
        if s >= 0.01 || iters >= 1 << 40 {
            break s / iters as f64;
        }
        iters *= 2;
    };
    let iters = ((f64::from(run_ms) / 1e3 / seconds_per_iter) as u64).max(1);

    let spans = run_threads(n_threads, |_, gate| {
        let mut acc = fma_start(isa.n_values());
        timed_runs(gate, FMA_RUNS, || {
            isa.run(&mut acc, iters);
            black_box(&mut acc);
        })
        .unwrap_or_default()
    })?;
    let flops = 2.0 * isa.n_values() as f64 * iters as f64 * n_threads as f64;
    Ok(flops / best_seconds(&spans) / 1e9)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{FMA_ADD, FMA_MUL};

    /// [`super::fma_ref`] with 16 zmm accumulators of `_mm512_fmadd_ps`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    ///
    /// `acc` should hold 256 values ([`Isa::run`](super::Isa::run) checks that). Any other length is still sound:
    /// loads and stores touch whole `chunks_exact` pieces only, so values are left untouched, never overrun.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_avx512(acc: &mut [f32], iters: u64) {
        let (m, a) = (_mm512_set1_ps(FMA_MUL), _mm512_set1_ps(FMA_ADD));
        let mut r = [_mm512_setzero_ps(); 16];
        for (r, src) in r.iter_mut().zip(acc.chunks_exact(16)) {
            // SAFETY: `src` is 16 readable f32; the load is unaligned.
            *r = unsafe { _mm512_loadu_ps(src.as_ptr()) };
        }
        for _ in 0..iters {
            for r in &mut r {
                *r = _mm512_fmadd_ps(*r, m, a);
            }
        }
        for (r, dst) in r.iter().zip(acc.chunks_exact_mut(16)) {
            // SAFETY: `dst` is 16 writable f32; the store is unaligned.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), *r) };
        }
    }

    /// [`super::fma_ref`] with 12 ymm accumulators of `_mm256_fmadd_ps`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    ///
    /// `acc` should hold 96 values ([`Isa::run`](super::Isa::run) checks that). Any other length is still sound:
    /// loads and stores touch whole `chunks_exact` pieces only, so values are left untouched, never overrun.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_avx2(acc: &mut [f32], iters: u64) {
        let (m, a) = (_mm256_set1_ps(FMA_MUL), _mm256_set1_ps(FMA_ADD));
        let mut r = [_mm256_setzero_ps(); 12];
        for (r, src) in r.iter_mut().zip(acc.chunks_exact(8)) {
            // SAFETY: `src` is 8 readable f32; the load is unaligned.
            *r = unsafe { _mm256_loadu_ps(src.as_ptr()) };
        }
        for _ in 0..iters {
            for r in &mut r {
                *r = _mm256_fmadd_ps(*r, m, a);
            }
        }
        for (r, dst) in r.iter().zip(acc.chunks_exact_mut(8)) {
            // SAFETY: `dst` is 8 writable f32; the store is unaligned.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), *r) };
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{FMA_ADD, FMA_MUL};

    /// [`super::fma_ref`] with 16 q-register accumulators of `vfmaq_f32`.
    ///
    /// # Safety
    /// The CPU must support NEON.
    ///
    /// `acc` should hold 64 values ([`Isa::run`](super::Isa::run) checks that). Any other length is still sound:
    /// loads and stores touch whole `chunks_exact` pieces only, so values are left untouched, never overrun.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn fma_neon(acc: &mut [f32], iters: u64) {
        let (m, a) = (vdupq_n_f32(FMA_MUL), vdupq_n_f32(FMA_ADD));
        let mut r = [vdupq_n_f32(0.0); 16];
        for (r, src) in r.iter_mut().zip(acc.chunks_exact(4)) {
            // SAFETY: `src` is 4 readable f32.
            *r = unsafe { vld1q_f32(src.as_ptr()) };
        }
        for _ in 0..iters {
            for r in &mut r {
                // vfmaq_f32(a, b, c) = a + b·c, rounded once.
                *r = vfmaq_f32(a, *r, m);
            }
        }
        for (r, dst) in r.iter().zip(acc.chunks_exact_mut(4)) {
            // SAFETY: `dst` is 4 writable f32.
            unsafe { vst1q_f32(dst.as_mut_ptr(), *r) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triad_writes_b_plus_s_c() {
        let n = 1003;
        let b: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let c: Vec<f64> = (0..n).map(|i| 0.5 * i as f64 + 1.0).collect();
        let mut a = vec![0.0; n];
        triad(&mut a, &b, &c, 3.0);
        for i in [0, 1, 17, 500, n - 1] {
            assert_eq!(a[i], b[i] + 3.0 * c[i], "element {i}");
        }
    }

    #[test]
    fn sum_matches_scalar() {
        for n in [0, 1, 15, 16, 17, 1000] {
            // Small integers: every order of summation is exact.
            let x: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
            let expected: f64 = x.iter().sum();
            assert_eq!(sum(&x), expected, "n = {n}");
        }
    }

    #[test]
    fn chunks_cover_the_array_in_whole_lines() {
        for (n, threads) in [(1000, 3), (64, 8), (8, 1), (10_007, 7)] {
            let lens: Vec<usize> = (0..threads).map(|t| chunk_len(n, threads, t)).collect();
            assert_eq!(lens.iter().sum::<usize>(), n, "{n} over {threads}");
            assert!(
                lens[..threads - 1].iter().all(|l| l % 8 == 0 && *l > 0),
                "{lens:?}"
            );
        }
    }

    #[test]
    fn every_simd_kernel_matches_the_scalar_reference() {
        for isa in [Isa::Avx512, Isa::Avx2Fma, Isa::Neon, Isa::Scalar] {
            if !isa.supported() {
                eprintln!("skipping {}: not supported by this CPU", isa.name());
                continue;
            }
            for iters in [0, 1, 7, 1000] {
                let mut fast = fma_start(isa.n_values());
                let mut reference = fast.clone();
                isa.run(&mut fast, iters);
                fma_ref(&mut reference, iters);
                assert_eq!(fast, reference, "{} after {iters} iterations", isa.name());
            }
        }
        assert!(Isa::detect().supported());
    }

    #[test]
    fn gate_cancel_releases_waiters() {
        let res = run_threads(3, |t, gate| {
            if t == 0 {
                gate.cancel();
                return false;
            }
            gate.wait()
        })
        .unwrap();
        assert_eq!(res, [false, false, false]);
        let all = run_threads(4, |_, gate| (0..5).all(|_| gate.wait())).unwrap();
        assert!(all.into_iter().all(|ok| ok));
    }

    #[test]
    fn small_measurement_is_finite_and_positive() {
        for huge_pages in [false, true] {
            let params = ProbeParams {
                n_threads: 2,
                array_bytes: 8 << 20,
                reps: 2,
                fma_run_ms: 20,
                huge_pages,
            };
            let p = measure(&params).unwrap();
            for (what, v) in [
                ("triad", p.triad_gbps),
                ("read", p.read_gbps),
                ("flops", p.peak_f32_gflops),
            ] {
                assert!(v.is_finite() && v > 0.0, "{what} = {v}");
            }
            assert_eq!(p.isa, Isa::detect().name());
            assert_eq!((p.n_threads, p.array_bytes, p.reps), (2, 8 << 20, 2));
            assert_eq!(p.huge_pages, huge_pages);
            assert!(p.elapsed_ms > 0.0);
        }
    }

    #[test]
    fn arrays_advised_huge_hold_their_values() {
        // 8 MiB and a bit: whole 2 MiB pages inside, partial ones at both ends, advised before the first write.
        let len = (8 << 20) / 8 + 3;
        for huge in [false, true] {
            let v = filled(len, 0.5, len * 8, huge).unwrap();
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.5));
        }
        // Too small to hold a whole huge page: nothing to advise, nothing fails.
        assert_eq!(filled(3, 1.0, 24, true).unwrap(), [1.0; 3]);
    }

    #[test]
    fn bad_params_are_errors() {
        let ok = ProbeParams {
            n_threads: 1,
            array_bytes: 1 << 20,
            reps: 1,
            fma_run_ms: 1,
            huge_pages: false,
        };
        let zero_threads = ProbeParams {
            n_threads: 0,
            ..ok.clone()
        };
        assert!(matches!(measure(&zero_threads), Err(Error::ZeroThreads)));
        let zero_reps = ProbeParams {
            reps: 0,
            ..ok.clone()
        };
        assert!(matches!(measure(&zero_reps), Err(Error::ZeroReps)));
        let tiny = ProbeParams {
            n_threads: 4,
            array_bytes: 100,
            ..ok
        };
        assert!(matches!(
            measure(&tiny),
            Err(Error::ArrayTooSmall {
                array_bytes: 100,
                min_bytes: 256
            })
        ));
    }

    #[test]
    fn default_params() {
        let p = ProbeParams::default();
        assert!(p.n_threads >= 1);
        assert!((MIN_DEFAULT_ARRAY_BYTES..=DEFAULT_ARRAY_BYTES).contains(&p.array_bytes));
        assert_eq!(default_array_bytes(None), DEFAULT_ARRAY_BYTES);
    }
}
