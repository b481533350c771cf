//! What this machine is and how fast it is, for `silica hw` and `silica plan`.
//!
//! - [`machine`]: facts the OS gives without measuring: CPU name and cores, SIMD extensions (ggml's spelling),
//!   RAM, NVIDIA GPUs through NVML (loaded at run time: no GPU, driver or root is needed to build or run), and
//!   the energy counters a power sampler could read (RAPL, NVML, IOReport), each with why it is unreadable.
//! - [`probe`]: measured CPU memory bandwidth (STREAM triad and read) and peak f32 FLOP/s (runtime-dispatched
//!   AVX-512F / AVX2+FMA / NEON / scalar FMA kernels, each tested against a scalar reference), in about two
//!   seconds.
//! - [`profile`]: both together as an [`HwProfile`], cached in `hw.json` ([`cache_path`]) and measured again
//!   only when the machine or thread count changes ([`load_or_measure`]).
//!
//! - [`energy`]: energy counters read as cumulative µJ with wrap-around undone (Linux powercap RAPL zones,
//!   NVIDIA GPUs through NVML), discovered as [`EnergySources`] that say why each missing source is missing.
//! - [`sampler`]: a background [`Sampler`] of one process (CPU time, RSS, threads from `/proc`) and the energy
//!   counters, whose [`Trace`] gives energy between two instants and a [`Summary`] of any window; never a zero
//!   for what was not measured.
//!
//! ```
//! use silica_telemetry::{ProbeParams, machine_info, measure};
//!
//! let m = machine_info();
//! assert!(m.n_threads_logical >= 1);
//! if m.gpus.is_empty() {
//!     assert!(m.gpu_note.is_some()); // e.g. "NVML not available: …"
//! }
//!
//! // A small, quick probe (the defaults use 256 MiB arrays and all threads).
//! let params = ProbeParams { n_threads: 1, array_bytes: 4 << 20, reps: 2, fma_run_ms: 10, huge_pages: false };
//! let p = measure(&params)?;
//! assert!(p.triad_gbps > 0.0 && p.read_gbps > 0.0 && p.peak_f32_gflops > 0.0);
//! # Ok::<(), silica_telemetry::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

pub mod energy;
mod error;
pub mod gpu;
pub mod machine;
pub mod probe;
pub mod process;
pub mod profile;
pub mod sampler;

pub use energy::{
    CounterKind, EnergyCounter, EnergySources, MjCounter, NvmlEnergy, RaplZone, Unavailable, WrapCounter,
};
pub use error::{Error, Result};
pub use gpu::{GpuProcessStat, GpuReader};
pub use machine::{
    GpuInfo, MachineInfo, PowerSourceInfo, PowerSourceKind, default_compute_threads, machine_info,
    physical_cores, simd_features, theoretical_bandwidth_gbps,
};
pub use probe::{
    DEFAULT_ARRAY_BYTES, MIN_DEFAULT_ARRAY_BYTES, Probe, ProbeParams, default_array_bytes, measure,
};
pub use profile::{HW_PROFILE_FILE, HwProfile, cache_path, load_or_measure};
pub use sampler::{
    EnergySummary, OnSample, ProcessStat, Sample, Sampler, SamplerConfig, Summary, Trace, idle_power_w,
    read_process, read_process_in,
};
