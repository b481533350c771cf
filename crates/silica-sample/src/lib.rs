//! Token sampling on a logits slice, with llama.cpp's semantics: no candle, no model.
//!
//! silica-sample owns the sampler that `silica run` uses after each decode step: the penalties
//! (repeat, frequency, presence), top-k, top-p, min-p, temperature and a seeded draw, in the order
//! and with the defaults of llama.cpp's common sampler chain (`common/sampling.cpp`,
//! `src/llama-sampling.cpp`). [`SamplerParams::greedy`] reproduces `--temp 0` decoding.
//!
//! ```
//! use silica_sample::{Sampler, SamplerParams, argmax};
//!
//! let logits = [0.5f32, 2.0, -1.0, 2.0]; // [n_vocab], raw f32 logits of one position
//!
//! // Greedy: the first maximum.
//! let mut greedy = Sampler::new(SamplerParams::greedy())?;
//! assert_eq!(greedy.sample(&logits)?, 1);
//! assert_eq!(argmax(&logits), Some(1));
//!
//! // Seeded sampling with llama.cpp's defaults: reproducible for a given seed.
//! let mut a = Sampler::new(SamplerParams::with_seed(42))?;
//! let mut b = Sampler::new(SamplerParams::with_seed(42))?;
//! for _ in 0..8 {
//!     let (ta, tb) = (a.sample(&logits)?, b.sample(&logits)?);
//!     assert_eq!(ta, tb);
//!     a.accept(ta); // feeds the penalty history
//!     b.accept(tb);
//! }
//!
//! // Out-of-range settings are rejected up front.
//! assert!(Sampler::new(SamplerParams { top_p: 0.0, ..SamplerParams::with_seed(0) }).is_err());
//! # Ok::<(), silica_sample::Error>(())
//! ```

mod error;
mod params;
mod sampler;

pub use error::{Error, Result};
pub use params::SamplerParams;
pub use sampler::{Sampler, TokenData, argmax};
