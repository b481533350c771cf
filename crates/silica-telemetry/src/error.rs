//! The crate's one error type.

use std::collections::TryReserveError;
use std::path::PathBuf;

/// What can go wrong measuring this machine or reading and writing its cached profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`ProbeParams::n_threads`](crate::ProbeParams::n_threads) was 0: the probe needs at least one thread.
    #[error("the probe needs at least one thread (n_threads = 0)")]
    ZeroThreads,

    /// [`ProbeParams::reps`](crate::ProbeParams::reps) was 0: there would be no timing to report.
    #[error("the probe needs at least one repetition (reps = 0)")]
    ZeroReps,

    /// [`ProbeParams::array_bytes`](crate::ProbeParams::array_bytes) leaves some thread fewer than one 64-byte
    /// cache line of each array.
    #[error("array_bytes = {array_bytes} is below the minimum {min_bytes} bytes (64 bytes per thread)")]
    ArrayTooSmall {
        /// The requested size of each array, in bytes.
        array_bytes: usize,
        /// The smallest size accepted for this thread count, in bytes.
        min_bytes: usize,
    },

    /// One of the probe's arrays could not be allocated.
    #[error("allocating a {array_bytes}-byte probe array")]
    Alloc {
        /// The size that failed, in bytes.
        array_bytes: usize,
        /// The allocator's refusal.
        #[source]
        source: TryReserveError,
    },

    /// The operating system refused to start one of the probe's threads.
    #[error("starting probe threads ({n_threads} requested)")]
    ThreadSpawn {
        /// The thread count requested.
        n_threads: usize,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file or directory operation failed (the profile cache, a `/proc` or powercap file).
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done: "reading", "writing", "creating directory", "renaming onto".
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The cached profile is not valid JSON for [`HwProfile`](crate::HwProfile) (corrupted, or written by an
    /// incompatible silica version).
    #[error("parsing hardware profile {}", path.display())]
    Parse {
        /// The file that failed to parse.
        path: PathBuf,
        /// Where and why parsing stopped.
        #[source]
        source: serde_json::Error,
    },

    /// A profile could not be serialized to JSON (not expected for these plain types).
    #[error("serializing hardware profile for {}", path.display())]
    Serialize {
        /// The file it was meant for.
        path: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// An energy counter could not be opened or read (a RAPL `energy_uj` file that is missing, root-only or not
    /// a number).
    #[error("energy counter {counter}: {reason}")]
    CounterUnreadable {
        /// The counter, e.g. `rapl:package-0`, or the zone directory when its name is not known yet.
        counter: String,
        /// Why, e.g. "energy_uj not readable: permission denied (root only since Linux 5.10, CVE-2020-8694)".
        reason: String,
    },

    /// An NVML call failed (library absent, driver not loaded, GPU without an energy counter, GPU lost).
    #[error("NVML {what}")]
    Nvml {
        /// The call that failed, e.g. "nvmlDeviceGetTotalEnergyConsumption on GPU 0".
        what: String,
        /// NVML's error.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },

    /// The process being read has exited: `/proc/<pid>` is gone, or the process is a zombie (state `Z` or `X`).
    #[error("process {pid} has exited")]
    ProcessGone {
        /// Its process id.
        pid: u32,
    },

    /// A `/proc/<pid>/stat` or `/proc/<pid>/status` file did not have the fields `proc(5)` describes.
    #[error("parsing {}: {reason}", path.display())]
    ProcParse {
        /// The file that failed to parse.
        path: PathBuf,
        /// What was missing or malformed.
        reason: String,
    },

    /// This operating system does not offer what was asked for (e.g. per-process statistics outside Linux).
    #[error("{what} is not supported on {os}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// `std::env::consts::OS`.
        os: &'static str,
    },

    /// [`SamplerConfig::interval`](crate::SamplerConfig::interval) was zero: the sampler would spin.
    #[error("the sampling interval must be positive (interval = 0)")]
    ZeroInterval,

    /// The operating system refused to start the sampler's thread.
    #[error("starting the sampler thread")]
    SamplerSpawn {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
