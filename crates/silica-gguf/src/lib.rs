//! GGUF for silica: a zero-copy memory-mapped reader for GGUF v2/v3, a streaming writer, the ggml type table
//! ([`GgmlType`], [`FileType`]) and the standard metadata keys ([`keys`]).
//!
//! The reader trusts nothing in the file: counts and lengths are capped by the bytes left, sizes use checked
//! arithmetic, and every tensor's data must lie inside the file. Every failure is an [`Error`] naming the key,
//! tensor or offset.
//!
//! ```
//! use silica_gguf::{GgmlType, GgufFile, GgufWriter, Value};
//!
//! let mut w = GgufWriter::new();
//! w.set("general.architecture", Value::String("llama".into()));
//! w.add_tensor("token_embd.weight", GgmlType::F32, &[4, 2])?; // ne = [n_embd, n_vocab]
//! let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
//! let bytes = w.to_bytes(&[&data])?;
//!
//! let f = GgufFile::from_bytes(bytes, "example.gguf")?;
//! assert_eq!(f.metadata().get_str("general.architecture")?, "llama");
//! let t = f.tensor("token_embd.weight").unwrap();
//! assert_eq!(t.shape(), vec![2, 4]); // row-major: [n_vocab, n_embd]
//! assert_eq!(f.tensor_data(t).unwrap(), &data[..]);
//! # Ok::<(), silica_gguf::Error>(())
//! ```

mod error;
mod ggml_type;
pub mod keys;
mod metadata;
mod mmap;
mod reader;
mod writer;

pub use error::{Error, Result};
pub use ggml_type::{FileType, GgmlType, QK_K, UnknownName};
pub use metadata::{Array, Metadata, Value, ValueType};
pub use reader::{
    DEFAULT_ALIGNMENT, GgufFile, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KV, MAX_STRING_BYTES, MAX_TENSORS,
    TensorBytes, TensorInfo,
};
pub use writer::{FileSink, GgufWriter, TensorSink, WRITE_VERSION};

/// The directory where silica caches GGUF models (the test models `scripts/fetch-models.sh` downloads, the
/// default model `silica bench` creates): `$SILICA_MODELS_DIR`, else `$XDG_CACHE_HOME/silica/models`, else
/// `~/.cache/silica/models` (the XDG base-directory default), else `.cache/silica/models`.
pub fn models_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("SILICA_MODELS_DIR") {
        return d;
    }
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("silica")
        .join("models")
}
