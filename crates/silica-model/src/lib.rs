//! Model architectures for silica on candle: hyperparameters from GGUF metadata ([`HParams`]), weights loaded
//! with declared shapes, a preallocated [`KvCache`], and batched forward passes over several independent
//! sequences ([`Batch`]). CPU by default; the `cuda` and `metal` features pass through to candle.
//!
//! Supported `general.architecture` values: `llama` (Llama 2/3, SmolLM2, Mistral) and `gemma3`.

mod error;
mod hparams;
mod layers;
pub mod loader;
pub mod models;

pub use candle_core::{DType, Device, Tensor};
pub use error::{Error, LoadError, Result};
pub use hparams::{Arch, HParams, RopeType};
pub use layers::{Batch, KvCache};
pub use models::{GreedyStep, Model};

/// The CPU threads candle's kernels use in this process: `RAYON_NUM_THREADS` when set, else the physical cores
/// (candle 0.11 `utils::get_num_threads`; its quantized kernels read `CANDLE_NUM_THREADS` first, which
/// `silica -t` sets to the same value). Fixed once the first kernel has run.
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}
