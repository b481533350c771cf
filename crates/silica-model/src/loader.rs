//! Loading weights with declared shapes: every tensor an architecture uses is named and shaped here, and a
//! mismatch fails at load with the tensor's name and both shapes (llama.cpp `create_tensor`).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file::qtensor_from_ggml};
use candle_core::{DType, Device, Module, Tensor};
use silica_gguf::{GgmlType, GgufFile, TensorInfo};

use crate::LoadError;

/// candle's dtype for a ggml type, if candle can compute it.
pub fn candle_dtype(ty: GgmlType) -> Option<GgmlDType> {
    Some(match ty {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q8_1 => GgmlDType::Q8_1,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        GgmlType::Q8_K => GgmlDType::Q8K,
        _ => return None,
    })
}

/// A weight matrix `[out, in]` applied as `x · Wᵀ`: quantized weights multiply Q8-quantized activations
/// (ggml's `vec_dot_type` path, through candle's `QMatMul`).
#[derive(Debug, Clone)]
pub struct Linear {
    w: QMatMul,
    out_features: usize,
    /// For float weights, the type llama.cpp's CPU backend converts activations to before the product (its
    /// `vec_dot_type`: F16 for F16 weights, BF16 for BF16): rounding `x` the same way keeps greedy tokens equal
    /// to llama.cpp's. Quantized weights get Q8 activations inside candle's kernels.
    act_dtype: Option<DType>,
}

impl Linear {
    /// `x`: `[n_tokens, in]` f32 → `[n_tokens, out]` f32.
    ///
    /// # Errors
    /// candle's errors.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.act_dtype {
            Some(dt) => self.w.forward(&x.to_dtype(dt)?.to_dtype(DType::F32)?),
            None => self.w.forward(x),
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

/// Reads tensors of one GGUF file onto a device.
pub(crate) struct Loader<'a> {
    file: &'a GgufFile,
    device: Device,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(file: &'a GgufFile, device: &Device) -> Self {
        Loader {
            file,
            device: device.clone(),
        }
    }

    fn info(&self, name: &str, expected: &[usize]) -> Result<&'a TensorInfo, LoadError> {
        let info = self.file.tensor(name).ok_or_else(|| LoadError::MissingTensor {
            name: name.to_owned(),
        })?;
        let found = info.shape();
        if found != expected {
            return Err(LoadError::TensorShape {
                name: name.to_owned(),
                expected: expected.to_vec(),
                found,
            });
        }
        Ok(info)
    }

    /// The tensor as a candle `QTensor`, shape-checked (`expected` row-major).
    pub(crate) fn qtensor(&self, name: &str, expected: &[usize]) -> Result<Arc<QTensor>, LoadError> {
        let info = self.info(name, expected)?;
        let dtype = candle_dtype(info.ty).ok_or_else(|| LoadError::UnsupportedType {
            name: name.to_owned(),
            ty: info.ty,
        })?;
        // candle takes dims innermost-last (row-major), the reverse of ggml `ne`.
        let data = self.file.tensor_data(info)?;
        let q = qtensor_from_ggml(dtype, data, info.shape(), &self.device).map_err(|source| {
            LoadError::Candle {
                name: name.to_owned(),
                source,
            }
        })?;
        Ok(Arc::new(q))
    }

    /// A matrix `[out, in]` (GGUF `ne = {in, out}`).
    pub(crate) fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Linear, LoadError> {
        let q = self.qtensor(name, &[out, inp])?;
        Self::linear(name, q, out)
    }

    /// A matrix if present.
    pub(crate) fn optional_matrix(
        &self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<Option<Linear>, LoadError> {
        if self.file.tensor(name).is_none() {
            return Ok(None);
        }
        self.matrix(name, out, inp).map(Some)
    }

    pub(crate) fn linear(name: &str, q: Arc<QTensor>, out: usize) -> Result<Linear, LoadError> {
        let act_dtype = match q.dtype() {
            GgmlDType::F16 => Some(DType::F16),
            GgmlDType::BF16 => Some(DType::BF16),
            _ => None,
        };
        let w = QMatMul::from_arc(q).map_err(|source| LoadError::Candle {
            name: name.to_owned(),
            source,
        })?;
        Ok(Linear {
            w,
            out_features: out,
            act_dtype,
        })
    }

    /// `output.weight` `[n_vocab, n_embd]`, or the token embeddings when absent: many checkpoints tie them.
    pub(crate) fn output_or_tied(
        &self,
        token_embd: &Arc<QTensor>,
        n_vocab: usize,
        n_embd: usize,
    ) -> Result<Linear, LoadError> {
        match self.optional_matrix(tn::OUTPUT, n_vocab, n_embd)? {
            Some(o) => Ok(o),
            None => Self::linear(tn::TOKEN_EMBD, token_embd.clone(), n_vocab),
        }
    }

    /// A vector `[n]` as f32 (norm weights).
    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Tensor, LoadError> {
        let q = self.qtensor(name, &[n])?;
        q.dequantize(&self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|source| LoadError::Candle {
                name: name.to_owned(),
                source,
            })
    }

    /// A vector if present.
    pub(crate) fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Tensor>, LoadError> {
        if self.file.tensor(name).is_none() {
            return Ok(None);
        }
        self.vector(name, n).map(Some)
    }
}

/// GGUF tensor names (llama.cpp `LLM_TENSOR_NAMES`): `blk(3, ATTN_Q)` → `"blk.3.attn_q.weight"`.
pub mod tn {
    /// Token embeddings `[n_vocab, n_embd]`.
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    /// Final norm `[n_embd]`.
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    /// Output projection `[n_vocab, n_embd]` (absent when tied to `token_embd`).
    pub const OUTPUT: &str = "output.weight";
    /// Llama 3 RoPE frequency factors `[n_rot / 2]`.
    pub const ROPE_FREQS: &str = "rope_freqs.weight";
    /// Attention input norm.
    pub const ATTN_NORM: &str = "attn_norm";
    /// Query projection.
    pub const ATTN_Q: &str = "attn_q";
    /// Key projection.
    pub const ATTN_K: &str = "attn_k";
    /// Value projection.
    pub const ATTN_V: &str = "attn_v";
    /// Attention output projection.
    pub const ATTN_OUTPUT: &str = "attn_output";
    /// Per-head query norm (Gemma 3).
    pub const ATTN_Q_NORM: &str = "attn_q_norm";
    /// Per-head key norm (Gemma 3).
    pub const ATTN_K_NORM: &str = "attn_k_norm";
    /// Norm after attention (Gemma 3).
    pub const ATTN_POST_NORM: &str = "post_attention_norm";
    /// FFN input norm.
    pub const FFN_NORM: &str = "ffn_norm";
    /// FFN gate projection.
    pub const FFN_GATE: &str = "ffn_gate";
    /// FFN up projection.
    pub const FFN_UP: &str = "ffn_up";
    /// FFN down projection.
    pub const FFN_DOWN: &str = "ffn_down";
    /// Norm after the FFN (Gemma 3).
    pub const FFN_POST_NORM: &str = "post_ffw_norm";

    /// The full name of a per-layer weight.
    pub fn blk(il: usize, t: &str) -> String {
        format!("blk.{il}.{t}.weight")
    }
}
