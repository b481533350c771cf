//! Making GGUF files: `silica quantize` (any computable type to llama.cpp's quant types and file-type mixes)
//! and `silica synth` (random-weight models at the real shapes of published models).
//!
//! Both stream: tensors are read, converted and written in slabs of rows, so peak memory stays at a few slabs
//! whatever the model's size, and output goes to a temporary file renamed into place only when complete.
//! Block encoders are `silica-quant`'s ports of ggml's reference quantizers, so blocks are byte-identical to
//! `llama-quantize`'s (without an importance matrix).

mod error;
mod quantize;
pub mod recipe;
mod stream;
pub mod synth;

pub use error::ConvertError;
pub use quantize::{QuantizeParams, QuantizeSummary, TensorDone, parse_target, quantize_file};
pub use recipe::{ModelShape, Planned, RecipeOptions};
