//! The engine: a GGUF model with its tokenizer ([`Engine`]), and text generation over a preallocated context
//! with llama.cpp-style timings ([`Engine::generate`], [`Timings`]).
//!
//! ```no_run
//! use silica_engine::{Engine, GenerateParams, LoadParams};
//! let engine = Engine::load("SmolLM2-135M-Instruct.Q4_1.gguf", &LoadParams::default())?;
//! let mut text = String::new();
//! let out = engine.generate("The capital of France is", &GenerateParams::greedy(16), |piece| {
//!     text.push_str(piece);
//!     true
//! })?;
//! assert_eq!(out.tokens.len(), out.timings.predicted_n);
//! # Ok::<(), silica_engine::Error>(())
//! ```

mod device;

pub use device::DeviceSpec;

use std::path::{Path, PathBuf};
use std::time::Instant;

use silica_gguf::GgufFile;
use silica_model::{Batch, Device, Model};
use silica_sample::{Sampler, SamplerParams};
use silica_tokenizer::{StreamDecoder, Tokenizer};

/// An engine error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] silica_gguf::Error),
    /// The model could not be loaded from the file.
    #[error("{}: {source}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// What failed.
        source: Box<silica_model::LoadError>,
    },
    /// The tokenizer metadata is invalid.
    #[error("{}: tokenizer: {source}", path.display())]
    Tokenizer {
        /// The model file.
        path: PathBuf,
        /// What failed.
        source: Box<silica_tokenizer::Error>,
    },
    /// Tokenizing or detokenizing failed.
    #[error(transparent)]
    Tokenize(#[from] silica_tokenizer::Error),
    /// The forward pass failed.
    #[error(transparent)]
    Model(#[from] silica_model::Error),
    /// Sampling failed (invalid parameters).
    #[error(transparent)]
    Sample(#[from] silica_sample::Error),
    /// The request does not fit the context or is empty.
    #[error("{0}")]
    Request(String),
    /// The device cannot be used: unknown name, a backend this build lacks, or a GPU that does not open.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The device as asked for.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to load a model ([`DeviceSpec::open`] makes one from a `--device` choice).
#[derive(Clone, Debug)]
pub struct LoadParams {
    /// Device to run on (CPU by default).
    pub device: Device,
    /// Run candle's tensor graph even on the CPU ([`silica_model::Model::load_graph`]: the GPU code path);
    /// GPU devices always do.
    pub graph: bool,
}

impl Default for LoadParams {
    fn default() -> Self {
        LoadParams {
            device: Device::Cpu,
            graph: false,
        }
    }
}

/// A loaded model, its tokenizer and file facts.
#[derive(Debug)]
pub struct Engine {
    path: PathBuf,
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    load_ms: f64,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Tokens to generate at most (`-n`); generation also stops at an end-of-generation token.
    pub n_predict: usize,
    /// Context size (`-c`); 0 = the prompt plus `n_predict`.
    pub n_ctx: usize,
    /// Prompt tokens per forward pass (`-b`, llama.cpp's `n_batch`, default 2048).
    pub n_batch: usize,
    /// Sampling settings.
    pub sampling: SamplerParams,
    /// Parse special-token text (`<|im_start|>`) in the prompt, as llama.cpp does by default.
    pub parse_special: bool,
}

impl GenerateParams {
    /// Greedy decoding of `n_predict` tokens.
    pub fn greedy(n_predict: usize) -> Self {
        GenerateParams {
            n_predict,
            n_ctx: 0,
            n_batch: 2048,
            sampling: SamplerParams::greedy(),
            parse_special: true,
        }
    }
}

/// Timings of one generation, named as llama-server's `timings` object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Model load time in ms (file mapping, tensor setup).
    pub load_ms: f64,
    /// Prompt tokens processed.
    pub prompt_n: usize,
    /// Prompt processing time in ms (forward passes only; tokenization excluded).
    pub prompt_ms: f64,
    /// Tokens generated.
    pub predicted_n: usize,
    /// Generation time in ms (forward passes and sampling of the generated tokens).
    pub predicted_ms: f64,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_per_second(&self) -> f64 {
        per_second(self.prompt_n, self.prompt_ms)
    }

    /// Generated tokens per second.
    pub fn predicted_per_second(&self) -> f64 {
        per_second(self.predicted_n, self.predicted_ms)
    }
}

fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 { n as f64 * 1000.0 / ms } else { 0.0 }
}

/// The result of [`Engine::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    /// Prompt token ids (BOS included when the model adds it).
    pub prompt_tokens: Vec<u32>,
    /// Generated ids; the last is the end-of-generation token when `stopped_eog`.
    pub tokens: Vec<u32>,
    /// Generated text (end-of-generation tokens not rendered).
    pub text: String,
    /// Whether generation ended on an end-of-generation token.
    pub stopped_eog: bool,
    /// Timings.
    pub timings: Timings,
}

impl Engine {
    /// Memory-maps `path`, loads the model and builds its tokenizer.
    ///
    /// # Errors
    /// [`Error::Gguf`] for unreadable files, [`Error::Load`] and [`Error::Tokenizer`] naming the file.
    pub fn load(path: impl AsRef<Path>, params: &LoadParams) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let t0 = Instant::now();
        let file = GgufFile::open(&path)?;
        let model = if params.graph {
            Model::load_graph(&file, &params.device)
        } else {
            Model::load(&file, &params.device)
        };
        let model = model.map_err(|source| Error::Load {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|source| Error::Tokenizer {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(Engine {
            path,
            model,
            tokenizer,
            device: params.device.clone(),
            load_ms,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load time in ms.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokenizes `prompt` (adding BOS when the model asks for it), processes it in `n_batch` chunks, then
    /// samples up to `n_predict` tokens, calling `on_piece` with each complete UTF-8 piece of text; `on_piece`
    /// returning `false` stops generation.
    ///
    /// # Errors
    /// [`Error::Request`] for an empty prompt or one that does not fit `n_ctx`; model and sampler errors.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerateParams,
        mut on_piece: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt_tokens = self.tokenizer.encode(prompt, true, params.parse_special)?;
        if prompt_tokens.is_empty() {
            return Err(Error::Request(
                "the prompt is empty (no tokens); give a prompt with -p".into(),
            ));
        }
        let n_ctx = if params.n_ctx == 0 {
            prompt_tokens.len() + params.n_predict
        } else {
            params.n_ctx
        };
        if prompt_tokens.len() + params.n_predict > n_ctx {
            return Err(Error::Request(format!(
                "prompt ({} tokens) + n_predict ({}) exceeds the context size n_ctx = {n_ctx}; raise -c/--ctx-size",
                prompt_tokens.len(),
                params.n_predict
            )));
        }
        let mut sampler = Sampler::new(params.sampling)?;
        let mut kv = self.model.new_kv_cache(n_ctx, 1, &self.device)?;
        let mut timings = Timings {
            load_ms: self.load_ms,
            prompt_n: prompt_tokens.len(),
            ..Timings::default()
        };

        let t0 = Instant::now();
        let n_batch = params.n_batch.max(1);
        // Each pass's logits are copied into one buffer: with the cache's reused pass buffers, a generated token
        // allocates nothing in the engine or the model (CPU).
        let mut row: Vec<f32> = Vec::new();
        let mut batch = Batch::default();
        for chunk in prompt_tokens.chunks(n_batch) {
            batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                batch.push(t, 0, i + 1 == chunk.len());
            }
            last_row(self.model.forward_logits(&batch, &mut kv)?, &mut row);
        }
        for &t in &prompt_tokens {
            sampler.accept(t);
        }
        if row.is_empty() {
            return Err(Error::Request("no logits".into()));
        }
        timings.prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let mut decoder = StreamDecoder::new(&self.tokenizer, false);
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut stopped_eog = false;
        for i in 0..params.n_predict {
            let t = sampler.sample(&row)?;
            sampler.accept(t);
            tokens.push(t);
            if self.tokenizer.is_eog(t) {
                stopped_eog = true;
                break;
            }
            let piece = decoder.push(t)?;
            text.push_str(&piece);
            if !piece.is_empty() && !on_piece(&piece) {
                break;
            }
            if i + 1 < params.n_predict {
                batch.clear();
                batch.push(t, 0, true);
                last_row(self.model.forward_logits(&batch, &mut kv)?, &mut row);
            }
        }
        let rest = decoder.finish();
        if !rest.is_empty() {
            on_piece(&rest);
            text.push_str(&rest);
        }
        timings.predicted_n = tokens.len();
        timings.predicted_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(Generation {
            prompt_tokens,
            tokens,
            text,
            stopped_eog,
            timings,
        })
    }
}

/// Copies a pass's logits (`[1, n_vocab]`: each pass here asks for its last token's only) into `row`, which
/// keeps its allocation.
fn last_row(logits: &[f32], row: &mut Vec<f32>) {
    row.clear();
    row.extend_from_slice(logits);
}
