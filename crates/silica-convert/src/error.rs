//! Errors of quantize and synth.

use std::path::PathBuf;

use silica_gguf::{FileType, GgmlType};

/// Why a conversion was refused or failed. Every variant names the file, tensor, type or preset at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading or writing GGUF failed.
    #[error(transparent)]
    Gguf(#[from] silica_gguf::Error),
    /// A block encoder or decoder refused a tensor.
    #[error("tensor `{tensor}`: {source}")]
    Quant {
        /// The tensor.
        tensor: String,
        /// The encoder's error.
        source: silica_quant::QuantError,
    },
    /// A target type name that is not a known file or tensor type.
    #[error("unknown quantization type `{name}`; valid types: {valid}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// The accepted names.
        valid: String,
    },
    /// A file type silica does not write (IQ mixes need an importance matrix).
    #[error(
        "file type {0} is not supported by silica quantize (the IQ and ternary mixes need an importance matrix)"
    )]
    UnsupportedFileType(FileType),
    /// A type whose block length does not divide a tensor's row length, asked for explicitly.
    #[error("tensor `{tensor}` has rows of {row_len} values, which {ty} (blocks of {}) cannot hold", ty.block_len())]
    RowLength {
        /// The tensor.
        tensor: String,
        /// Its row length (`ne[0]`).
        row_len: u64,
        /// The type asked for.
        ty: GgmlType,
    },
    /// A quantized tensor would be requantized without `--allow-requantize`.
    #[error(
        "tensor `{tensor}` is already {from}; requantizing loses quality twice, pass --allow-requantize to do it anyway"
    )]
    RequantizeDisabled {
        /// The tensor.
        tensor: String,
        /// Its type in the source file.
        from: GgmlType,
    },
    /// No decoder or encoder for a tensor's conversion.
    #[error("tensor `{tensor}`: cannot convert {from} to {to} (silica has no {which} for that type)")]
    CannotConvert {
        /// The tensor.
        tensor: String,
        /// Source type.
        from: GgmlType,
        /// Target type.
        to: GgmlType,
        /// "decoder" or "encoder".
        which: &'static str,
    },
    /// A MoE tensor name without a valid block number.
    #[error("tensor `{tensor}`: cannot tell its layer from the name")]
    BadLayer {
        /// The tensor.
        tensor: String,
    },
    /// Not enough free space where the output goes; checked before writing anything.
    #[error(
        "{}: needs {needed_bytes} bytes ({:.2} GiB) but only {available_bytes} bytes ({:.2} GiB) are free",
        path.display(), *needed_bytes as f64 / GIB, *available_bytes as f64 / GIB
    )]
    InsufficientDisk {
        /// The output path.
        path: PathBuf,
        /// Size of the file to write.
        needed_bytes: u64,
        /// Free space on its file system.
        available_bytes: u64,
    },
    /// An I/O error outside GGUF parsing (free-space query, config files).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The worker thread pool could not be built.
    #[error("cannot start {n_threads} worker threads: {reason}")]
    Threads {
        /// Threads asked for.
        n_threads: usize,
        /// rayon's message.
        reason: String,
    },
    /// An unknown synth preset.
    #[error("unknown shape preset `{name}`; closest: {closest} (see `silica synth --list`)")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The nearest preset names.
        closest: String,
    },
    /// A model config (`config.json` or a preset) that cannot describe a model.
    #[error("{what}: {reason}")]
    BadConfig {
        /// The file or preset.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

const GIB: f64 = (1u64 << 30) as f64;
