//! Model architectures for silica: hyperparameters from GGUF metadata ([`HParams`]), weights loaded with declared
//! shapes, a preallocated [`KvCache`], and batched forward passes over several independent sequences
//! ([`Batch`]). On the CPU a pass runs silica-kernels on buffers the cache keeps ([`Model::forward_logits`]: no
//! allocation per generated token); on GPUs it is candle's tensor graph ([`Model::forward_graph`]; the `cuda`
//! and `metal` features pass through to candle).
//!
//! Supported `general.architecture` values: `llama` (Llama 2/3, SmolLM2, Mistral) and `gemma3`.

mod error;
mod hparams;
mod layers;
pub mod loader;
pub mod models;
mod native;

pub use candle_core::{DType, Device, DeviceLocation, Error as CandleError, Tensor};
pub use error::{Error, LoadError, Result};
pub use hparams::{Arch, HParams, RopeType};
pub use layers::{Batch, KvCache};
pub use models::{GREEDY_TOP, GreedyStep, Model};

/// The CPU threads the native kernels use in this process ([`silica_kernels::cpu_threads`]: the count
/// `silica_kernels::set_cpu_threads` chose, else `SILICA_NUM_THREADS`, `CANDLE_NUM_THREADS` or
/// `RAYON_NUM_THREADS`, else the available parallelism). The first call fixes it; no thread is started.
pub fn cpu_threads() -> usize {
    silica_kernels::cpu_threads()
}
