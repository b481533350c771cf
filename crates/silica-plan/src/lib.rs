//! `silica plan`: will a model fit a device's memory, and how fast will it run there — with the working shown.
//!
//! - [`model`]: a [`ModelDesc`] (hyperparameters and every tensor's type and bytes) from a GGUF header (a
//!   partly downloaded file will do), a Hugging Face `config.json` or a built-in preset, for any file type.
//! - [`hardware`]: the built-in device table (`data/hardware-specs.csv`, a copy of `shared/data`), device lookup
//!   with closest-match errors, [`DeviceProfile`] (memory, usable fraction, bandwidth, peak FLOP/s, each with
//!   where it came from), interconnect [`Link`]s.
//! - [`estimate`]: the memory model (weights, KV cache, compute buffers, runtime overhead), the verdict (fits /
//!   fits with N layers on the CPU / does not fit, with the margin or shortfall), layer and tensor splits over
//!   several devices, and the roofline speed model with its [`Efficiency`] factors.
//! - [`calibrate`]: efficiency factors fitted per backend on `data/calibration-llamacpp.csv` (llama.cpp's
//!   published `llama-bench` results) or on a user's bench records, with the residual of every row.
//!
//! Nothing here runs a model or measures the machine: this machine's figures come in as a [`DeviceProfile`]
//! built by the caller (`silica hw` measures them with `silica-telemetry`).

pub mod calibrate;
pub mod estimate;
pub mod hardware;
pub mod model;
pub mod output;

pub use calibrate::{Efficiency, Fit, Observation, Residual};
pub use estimate::{MemoryPlan, Plan, PlanParams, Split, Verdict};
pub use hardware::{Backend, DeviceProfile, DeviceSpec, Link};
pub use model::{ModelDesc, ModelSource, TensorDesc};

use std::path::PathBuf;

/// Errors of the planner. Each names what the user has to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A GGUF file could not be read or parsed.
    #[error(transparent)]
    Gguf(#[from] silica_gguf::Error),
    /// A GGUF file's metadata lacks a key the planner needs, or holds it with the wrong type.
    #[error("{path}: {source}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The missing or mistyped key.
        #[source]
        source: silica_gguf::Error,
    },
    /// A preset, `config.json` or file-type mix could not be turned into tensors.
    #[error(transparent)]
    Convert(#[from] silica_convert::ConvertError),
    /// A name (device, link, type, backend) matched nothing.
    #[error("unknown {what} `{name}`; closest: {closest}")]
    Unknown {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        name: String,
        /// The closest known names, comma-separated.
        closest: String,
    },
    /// A device name matched several devices.
    #[error(
        "device `{name}` matches several devices: {matches}; give the full name (or --memory to pick by memory size)"
    )]
    Ambiguous {
        /// The name given.
        name: String,
        /// The devices it matched, separated by `; `.
        matches: String,
    },
    /// A device lacks a figure the estimate needs (the table leaves it blank and nothing derives it).
    #[error("device `{device}` has no {field}: {hint}")]
    MissingSpec {
        /// The device.
        device: String,
        /// The missing figure.
        field: &'static str,
        /// How to supply it.
        hint: &'static str,
    },
    /// A parameter is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The parameter.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A data table (built-in or given) has a bad row.
    #[error("{table}, line {line}: {reason}")]
    BadTable {
        /// The table's name or path.
        table: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No calibration data for a backend.
    #[error("no calibration rows for backend {backend}: {reason}")]
    NoCalibration {
        /// The backend.
        backend: String,
        /// Why (no rows, or rows that cannot be used).
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A results or profile file could not be parsed.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line where known).
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use silica_convert::synth::closest;

/// Parses a ggml type name (`q8_0`, `F16`) with a closest-match error.
///
/// # Errors
/// [`Error::Unknown`] listing the closest type names.
pub fn parse_ggml_type(name: &str) -> Result<silica_gguf::GgmlType> {
    name.parse().map_err(|_| Error::Unknown {
        what: "ggml type",
        name: name.to_owned(),
        closest: closest(name, silica_gguf::GgmlType::all().map(|t| t.name()), 4),
    })
}

/// Parses a llama.cpp file type (`Q4_K_M`) with a closest-match error.
///
/// # Errors
/// [`Error::Unknown`] listing the closest file-type names.
pub fn parse_file_type(name: &str) -> Result<silica_gguf::FileType> {
    name.parse().map_err(|_| Error::Unknown {
        what: "file type",
        name: name.to_owned(),
        closest: closest(name, silica_gguf::FileType::all().map(|t| t.name()), 4),
    })
}

/// Bytes per GiB (2³⁰), the unit sizes are displayed in (as llama-bench).
pub const GIB: f64 = 1_073_741_824.0;

/// `bytes` in GiB ([`GIB`]), as sizes are displayed.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// Serializes ggml types and file types by their names (`Q4_K`, `Q4_K_M`), as llama-bench's JSON does.
pub(crate) mod names {
    use serde::Serializer;
    use silica_gguf::{FileType, GgmlType};

    pub(crate) fn ggml_type<S: Serializer>(t: &GgmlType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    pub(crate) fn file_type<S: Serializer>(t: &Option<FileType>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(t.name()),
            None => s.serialize_none(),
        }
    }
}
