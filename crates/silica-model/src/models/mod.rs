//! One file per architecture, and the [`Model`] that dispatches to them.

pub mod gemma3;
pub mod llama;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use silica_gguf::GgufFile;

use crate::layers::{Batch, BatchPlan, KvCache, Ops};
use crate::loader::Loader;
use crate::{Arch, HParams, LoadError, Result};

/// A loaded model of any supported architecture: immutable weights; per-request state lives in a
/// [`KvCache`].
#[derive(Debug)]
pub enum Model {
    /// `llama`.
    Llama(llama::Llama),
    /// `gemma3`.
    Gemma3(gemma3::Gemma3),
}

impl Model {
    /// Loads the model in `file` onto `device`, checking every tensor's shape.
    ///
    /// On the CPU, weights of the types silica-kernels multiplies stay in place in the file's mapping and every
    /// pass is the native one ([`Model::forward_logits`]); on GPU devices the model is [`Model::load_graph`]'s.
    ///
    /// # Errors
    /// [`LoadError`] naming the key or tensor at fault.
    pub fn load(file: &GgufFile, device: &Device) -> Result<Self, LoadError> {
        Self::load_with(&Loader::new(file, device, false))
    }

    /// Loads the model for candle's tensor graph alone, as GPU devices always run it: every weight a candle
    /// `QTensor` on `device`, the KV cache of [`Model::new_kv_cache`] tensors on `device`, every operation of
    /// [`Model::forward`] a candle operation. On the CPU this runs the GPU path's code on candle's CPU kernels
    /// (slower than [`Model::load`]'s native pass): tests use it to check that path where no GPU is present.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn load_graph(file: &GgufFile, device: &Device) -> Result<Self, LoadError> {
        Self::load_with(&Loader::new(file, device, true))
    }

    fn load_with(ld: &Loader<'_>) -> Result<Self, LoadError> {
        let hp = HParams::from_gguf(ld.file())?;
        Ok(match hp.arch {
            Arch::Llama => Model::Llama(llama::Llama::load(ld, hp)?),
            Arch::Gemma3 => Model::Gemma3(gemma3::Gemma3::load(ld, hp)?),
        })
    }

    /// Opens `path` and loads it.
    ///
    /// # Errors
    /// As [`Model::load`], plus unreadable files.
    pub fn open(path: impl AsRef<Path>, device: &Device) -> Result<Self, LoadError> {
        let file = GgufFile::open(path)?;
        Self::load(&file, device)
    }

    /// Hyperparameters.
    pub fn hparams(&self) -> &HParams {
        match self {
            Model::Llama(m) => m.hparams(),
            Model::Gemma3(m) => m.hparams(),
        }
    }

    /// Whether the model runs candle's tensor graph alone ([`Model::load_graph`], and every GPU device).
    pub fn is_graph(&self) -> bool {
        match self {
            Model::Llama(m) => m.is_graph(),
            Model::Gemma3(m) => m.is_graph(),
        }
    }

    /// A KV cache for this model: `n_ctx` positions for each of `n_seq` sequences, F16 as llama.cpp's default;
    /// candle tensors on `device` for a graph model ([`Model::is_graph`]), the native pass's buffers otherwise.
    ///
    /// # Errors
    /// [`crate::Error::InvalidBatch`] for zero sizes; allocation errors.
    pub fn new_kv_cache(&self, n_ctx: usize, n_seq: usize, device: &Device) -> Result<KvCache> {
        self.new_kv_cache_typed(n_ctx, n_seq, (DType::F16, DType::F16), device)
    }

    /// [`Model::new_kv_cache`] with keys of `type_k` and values of `type_v` (llama.cpp's `-ctk`/`-ctv`: F32, F16
    /// or BF16).
    ///
    /// # Errors
    /// As [`KvCache::new`].
    pub fn new_kv_cache_typed(
        &self,
        n_ctx: usize,
        n_seq: usize,
        types: (DType, DType),
        device: &Device,
    ) -> Result<KvCache> {
        KvCache::with_store(self.hparams(), n_ctx, n_seq, types, device, self.is_graph())
    }

    /// Runs one batch, appending its keys and values to `kv`.
    ///
    /// Returns f32 logits `[n_outputs, n_vocab]`, one row per token with `batch.logits[i]` set, in batch order.
    /// On the CPU this is [`Model::forward_logits`] copied into a new tensor.
    ///
    /// # Errors
    /// [`crate::Error::ContextFull`] if a sequence would pass `n_ctx` (nothing is written then),
    /// [`crate::Error::InvalidBatch`], [`crate::Error::TokenOutOfRange`], candle errors.
    pub fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Result<Tensor> {
        if !kv.is_cpu() {
            return self.forward_graph(batch, kv);
        }
        let n_vocab = self.hparams().n_vocab;
        let logits = self.forward_logits(batch, kv)?;
        Ok(Tensor::from_slice(
            logits,
            (logits.len() / n_vocab, n_vocab),
            &Device::Cpu,
        )?)
    }

    /// [`Model::forward`], returning the logits `[n_outputs, n_vocab]` (f32, row-major) as a slice of the
    /// cache's buffers. On the CPU the pass runs on those buffers ([`KvCache`] keeps them), so once a pass of
    /// this size has run, nothing is allocated; on other devices the logits tensor is copied into them.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_logits<'k>(&self, batch: &Batch, kv: &'k mut KvCache) -> Result<&'k [f32]> {
        if kv.is_cpu() {
            let hp = self.hparams();
            match self {
                Model::Llama(m) => {
                    crate::native::run_pass(hp, batch, kv, |ws, kv| m.forward_cpu(batch, kv, ws))?
                }
                Model::Gemma3(m) => {
                    crate::native::run_pass(hp, batch, kv, |ws, kv| m.forward_cpu(batch, kv, ws))?
                }
            }
        } else {
            let t = self.forward_graph(batch, kv)?.flatten_all()?.to_vec1::<f32>()?;
            kv.ws.logits.clear();
            kv.ws.logits.extend_from_slice(&t);
        }
        let len = batch.logits.iter().filter(|&&l| l).count() * self.hparams().n_vocab;
        Ok(&kv.ws.logits[..len])
    }

    /// Runs one batch through candle's tensor graph: the path of GPU devices, which on the CPU calls the same
    /// silica-kernels as [`Model::forward_logits`] through tensors allocated per operation. Kept runnable on the
    /// CPU so that tests check the two passes give the same logits.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_graph(&self, batch: &Batch, kv: &mut KvCache) -> Result<Tensor> {
        match self {
            Model::Llama(m) => m.forward(batch, kv),
            Model::Gemma3(m) => m.forward(batch, kv),
        }
    }

    /// Greedy-decodes `n` tokens after `prompt` (one sequence, fresh cache on `device`) and returns, per step,
    /// the token taken and the [`GREEDY_TOP`] highest `(id, logit)` pairs, highest first (ties to the lowest id,
    /// as llama.cpp's greedy sampler): what correctness tests compare with llama.cpp's greedy output, near-ties
    /// included.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn greedy_top(&self, prompt: &[u32], n: usize, device: &Device) -> Result<Vec<GreedyStep>> {
        let mut kv = self.new_kv_cache(prompt.len() + n + 1, 1, device)?;
        let mut logits = self.forward(&Batch::single(prompt, 0, false), &mut kv)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
            let mut top = [(0u32, f32::NEG_INFINITY); GREEDY_TOP];
            for (i, &l) in row.iter().enumerate() {
                if let Some(at) = top.iter().position(|&(_, t)| l > t) {
                    top.copy_within(at..GREEDY_TOP - 1, at + 1);
                    top[at] = (i as u32, l);
                }
            }
            out.push((top[0].0, top));
            logits = self.forward(&Batch::single(&[top[0].0], 0, false), &mut kv)?;
        }
        Ok(out)
    }
}

/// How many candidates [`Model::greedy_top`] reports per step.
pub const GREEDY_TOP: usize = 4;

/// One greedy step: the token taken and the [`GREEDY_TOP`] highest `(token id, logit)` pairs, highest first.
pub type GreedyStep = (u32, [(u32, f32); GREEDY_TOP]);

/// Advances each sequence's `n_past` once the whole pass has succeeded.
pub(crate) fn commit(kv: &mut KvCache, plan: &BatchPlan) {
    for (seq, p0, idx) in plan.runs() {
        kv.advance(seq, p0 + idx.len());
    }
}

/// Token embeddings of the batch: `[n_tokens, n_embd]` f32 (ggml `get_rows`, dequantizing only those rows).
fn embed(
    token_embd: &crate::loader::Embedding,
    batch: &Batch,
    device: &Device,
) -> candle_core::Result<Tensor> {
    token_embd.rows(&batch.tokens, device)
}

/// Commits the pass to the cache, then final norm and output projection of the rows whose logits are wanted:
/// `x` `[n_tokens, n_embd]` → logits `[n_outputs, n_vocab]` f32.
fn head(
    x: &Tensor,
    kv: &mut KvCache,
    plan: &BatchPlan,
    ops: Ops,
    output_norm: &Tensor,
    eps: f32,
    output: &crate::loader::Linear,
) -> Result<Tensor> {
    commit(kv, plan);
    let x = select_outputs(x, plan)?;
    let x = ops.rms_norm(&x, output_norm, eps)?;
    Ok(output.forward(&x)?)
}

/// The rows of `x` (`[n_tokens, n_embd]`) whose logits are wanted.
fn select_outputs(x: &Tensor, plan: &BatchPlan) -> candle_core::Result<Tensor> {
    if plan.outputs.len() == x.dim(0)? {
        return Ok(x.clone());
    }
    x.index_select(&Tensor::new(plan.outputs.as_slice(), x.device())?, 0)
}
