//! Loading weights with declared shapes: every tensor an architecture uses is named and shaped here, and a
//! mismatch fails at load with the tensor's name and both shapes (llama.cpp `create_tensor`).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file::qtensor_from_ggml};
use candle_core::{DType, Device, Module, Tensor};
use silica_gguf::{GgmlType, GgufFile, TensorBytes, TensorInfo};

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
/// (ggml's `vec_dot_type` path).
///
/// On the CPU, types with a native kernel (`silica_kernels::supports`) are multiplied in place from the file's
/// mmap by silica-kernels (no copy of the weights); other types and GPU devices go through candle's `QMatMul`.
#[derive(Debug, Clone)]
pub struct Linear {
    imp: LinearImpl,
    out_features: usize,
}

#[derive(Debug, Clone)]
enum LinearImpl {
    Native(NativeMat),
    Candle {
        w: QMatMul,
        /// For float weights, the type llama.cpp's CPU backend converts activations to before the product (its
        /// `vec_dot_type`: F16 for F16 weights, BF16 for BF16): rounding `x` the same way keeps greedy tokens
        /// equal to llama.cpp's. Quantized weights get Q8 activations inside candle's kernels.
        act_dtype: Option<DType>,
    },
}

/// A quantized `[rows, cols]` matrix in place in the GGUF mapping, multiplied by silica-kernels.
#[derive(Debug, Clone)]
pub(crate) struct NativeMat {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: TensorBytes,
    /// The matrix repacked for this CPU's kernels (`silica_kernels::repack`: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K on x86-64):
    /// used instead of `bytes`, whose pages are released.
    packed: Option<Arc<dyn silica_kernels::RepackedMatrix>>,
    /// Read rows with [`TensorBytes::read_at`] rather than through the map: set on token embeddings whose pages
    /// were released because the tied output product repacked them.
    rows_by_read: bool,
}

thread_local! {
    /// Quantized activations of the current matrix product, reused across calls (no allocation per token).
    static SCRATCH: std::cell::RefCell<silica_kernels::Scratch> = std::cell::RefCell::default();
    /// One embedding row read from the file ([`NativeMat::rows_by_read`]), reused across calls.
    static ROW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl NativeMat {
    /// Repacks the matrix where silica-kernels has an eight-row kernel for its type (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K)
    /// on this CPU, then releases its mapped pages so the process holds the weights once. Returns whether it did.
    fn pack(&mut self, name: &str) -> Result<bool, LoadError> {
        let packed = silica_kernels::QMatRef::new(self.ty, self.rows, self.cols, &self.bytes)
            .and_then(|w| silica_kernels::repack(&w))
            .map_err(|e| LoadError::Candle {
                name: name.to_owned(),
                source: candle_core::Error::wrap(e),
            })?;
        let Some(p) = packed else { return Ok(false) };
        self.packed = Some(Arc::from(p));
        // Best effort: if the kernel refuses, the pages only stay resident.
        let _ = self.bytes.release_pages();
        Ok(true)
    }

    /// `x`: `[.., cols]` f32 on the CPU → `[.., rows]` f32.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        if dims.last() != Some(&self.cols) {
            candle_core::bail!("matmul: input {:?} does not end in {}", dims, self.cols);
        }
        let n = x.elem_count() / self.cols;
        let mut out = vec![0f32; n * self.rows];
        crate::layers::cpu_f32(x, |xs| self.forward_into(xs, n, &mut out))?;
        if let Some(d) = dims.last_mut() {
            *d = self.rows;
        }
        Tensor::from_vec(out, dims, &Device::Cpu)
    }

    /// `out = x · Wᵀ`: `x` `[n, cols]` → `out` `[n, rows]`, f32 row-major; the quantized activations go to the
    /// thread's reused scratch, so nothing is allocated once the first call has sized it.
    fn forward_into(&self, x: &[f32], n: usize, out: &mut [f32]) -> candle_core::Result<()> {
        let pool = silica_kernels::global_pool();
        SCRATCH
            .with_borrow_mut(|s| match self.packed.as_deref() {
                Some(p) => p.matmul(pool, x, n, out, s),
                None => silica_kernels::QMatRef::new(self.ty, self.rows, self.cols, &self.bytes)
                    .and_then(|w| silica_kernels::matmul(pool, &w, x, n, out, s)),
            })
            .map_err(candle_core::Error::wrap)
    }
}

impl Linear {
    /// `x`: `[n_tokens, in]` f32 → `[n_tokens, out]` f32.
    ///
    /// # Errors
    /// candle's errors; the kernel's size errors (which the loader's shape checks rule out).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.imp {
            LinearImpl::Native(m) => m.forward(x),
            LinearImpl::Candle {
                w,
                act_dtype: Some(dt),
            } => w.forward(&x.to_dtype(*dt)?.to_dtype(DType::F32)?),
            LinearImpl::Candle { w, act_dtype: None } => w.forward(x),
        }
    }

    /// `out = x · Wᵀ` on the CPU: `x` `[n, in]` → `out` `[n, out]`, f32 row-major. Products silica-kernels runs
    /// ([`Linear::is_native`]) allocate nothing; others (float weights, types without a native kernel) go
    /// through candle tensors and copy the result into `out`.
    ///
    /// # Errors
    /// `x` or `out` of the wrong length; candle's errors.
    pub fn forward_into(&self, x: &[f32], n: usize, out: &mut [f32]) -> candle_core::Result<()> {
        let inp = x.len() / n.max(1);
        if x.len() != n * inp || out.len() != n * self.out_features {
            candle_core::bail!(
                "matmul: input of {} values and output of {} for {n} tokens and {} outputs",
                x.len(),
                out.len(),
                self.out_features
            );
        }
        match &self.imp {
            LinearImpl::Native(m) => m.forward_into(x, n, out),
            LinearImpl::Candle { .. } => {
                let y = self.forward(&Tensor::from_slice(x, (n, inp), &Device::Cpu)?)?;
                crate::layers::cpu_f32(&y, |ys| {
                    out.copy_from_slice(ys);
                    Ok(())
                })
            }
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Whether silica's own kernels run this product (rather than candle's).
    pub fn is_native(&self) -> bool {
        matches!(self.imp, LinearImpl::Native(_))
    }
}

/// Token embeddings `[n_vocab, n_embd]`: rows are looked up per token (ggml `get_rows`), and the matrix doubles
/// as the output projection when the checkpoint ties them.
#[derive(Debug)]
pub(crate) enum Embedding {
    /// In place in the mapping (CPU): rows dequantized on demand by silica-quant's scalar decoders.
    Native(NativeMat),
    /// Through candle (GPU devices, or types silica-quant cannot decode).
    Candle(Arc<QTensor>),
}

impl Embedding {
    /// The rows of `tokens`: `[n_tokens, n_embd]` f32 on `device`.
    pub(crate) fn rows(&self, tokens: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Candle(q) => q.embedding(&Tensor::new(tokens, device)?),
            Embedding::Native(m) => {
                let mut out = vec![0f32; tokens.len() * m.cols];
                self.rows_into(tokens, &mut out)?;
                Tensor::from_vec(out, (tokens.len(), m.cols), device)
            }
        }
    }

    /// The rows of `tokens` written into `out` (`[n_tokens, n_embd]` f32, CPU): no allocation for the in-place
    /// matrix; the candle one goes through a tensor.
    pub(crate) fn rows_into(&self, tokens: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        match self {
            Embedding::Candle(_) => {
                let t = self.rows(tokens, &Device::Cpu)?;
                crate::layers::cpu_f32(&t, |ts| {
                    out.copy_from_slice(ts);
                    Ok(())
                })
            }
            Embedding::Native(m) => {
                let row_bytes = m.bytes.len() / m.rows;
                ROW.with_borrow_mut(|row| {
                    if m.rows_by_read {
                        row.resize(row_bytes, 0);
                    }
                    for (&t, dst) in tokens.iter().zip(out.chunks_exact_mut(m.cols)) {
                        let t = t as usize;
                        if t >= m.rows {
                            candle_core::bail!("token {t} out of range for {} embeddings", m.rows);
                        }
                        let src = if m.rows_by_read {
                            m.bytes.read_at(t * row_bytes, row).map_err(|e| {
                                candle_core::Error::Msg(format!("reading row {t} of {}: {e}", tn::TOKEN_EMBD))
                            })?;
                            &row[..]
                        } else {
                            &m.bytes[t * row_bytes..(t + 1) * row_bytes]
                        };
                        silica_quant::dequantize_row(m.ty, src, dst).map_err(candle_core::Error::wrap)?;
                    }
                    Ok(())
                })
            }
        }
    }
}

/// Reads tensors of one GGUF file onto a device.
pub(crate) struct Loader<'a> {
    file: &'a GgufFile,
    device: Device,
    /// Every weight as a candle `QTensor` for candle's tensor graph, even on the CPU (GPU devices always).
    graph: bool,
}

impl<'a> Loader<'a> {
    /// A loader onto `device`; `graph` asks for candle tensors for every weight (forced on devices other than
    /// the CPU).
    pub(crate) fn new(file: &'a GgufFile, device: &Device, graph: bool) -> Self {
        Loader {
            file,
            device: device.clone(),
            graph: graph || !device.is_cpu(),
        }
    }

    /// The file read.
    pub(crate) fn file(&self) -> &'a GgufFile {
        self.file
    }

    /// The device weights go to.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Whether every weight is a candle tensor (the model then runs candle's tensor graph only).
    pub(crate) fn graph(&self) -> bool {
        self.graph
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

    /// The tensor in place in the mapping, if it can be computed natively on this device: CPU, a type with a
    /// silica-kernels matmul (`need_matmul`) or at least a silica-quant row decoder, whole blocks per row.
    fn native(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        need_matmul: bool,
    ) -> Result<Option<NativeMat>, LoadError> {
        let info = self.info(name, &[rows, cols])?;
        let ty = info.ty;
        let ok = !self.graph
            && if need_matmul {
                silica_kernels::supports(ty)
            } else {
                silica_quant::can_dequantize(ty)
            }
            && cols.is_multiple_of(ty.block_len());
        if !ok {
            return Ok(None);
        }
        let bytes = self.file.tensor_bytes(info)?;
        let mut m = NativeMat {
            ty,
            rows,
            cols,
            bytes,
            packed: None,
            rows_by_read: false,
        };
        // The token embeddings are not repacked: their rows are read in place by `get_rows`.
        if need_matmul {
            m.pack(name)?;
        }
        Ok(Some(m))
    }

    /// A matrix `[out, in]` (GGUF `ne = {in, out}`).
    pub(crate) fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Linear, LoadError> {
        if let Some(m) = self.native(name, out, inp, true)? {
            return Ok(Linear {
                imp: LinearImpl::Native(m),
                out_features: out,
            });
        }
        let q = self.qtensor(name, &[out, inp])?;
        Self::linear(name, q, out)
    }

    /// Token embeddings `[n_vocab, n_embd]`.
    pub(crate) fn embedding(&self, n_vocab: usize, n_embd: usize) -> Result<Embedding, LoadError> {
        if let Some(m) = self.native(tn::TOKEN_EMBD, n_vocab, n_embd, false)? {
            return Ok(Embedding::Native(m));
        }
        Ok(Embedding::Candle(
            self.qtensor(tn::TOKEN_EMBD, &[n_vocab, n_embd])?,
        ))
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
            imp: LinearImpl::Candle { w, act_dtype },
            out_features: out,
        })
    }

    /// `output.weight` `[n_vocab, n_embd]`, or the token embeddings when absent: many checkpoints tie them.
    ///
    /// A tied matrix the CPU kernels repack is multiplied from the repacked copy; the embeddings then read their
    /// rows from the file ([`TensorBytes::read_at`]), so the released pages stay out of the process.
    pub(crate) fn output_or_tied(
        &self,
        token_embd: &mut Embedding,
        n_vocab: usize,
        n_embd: usize,
    ) -> Result<Linear, LoadError> {
        if let Some(o) = self.optional_matrix(tn::OUTPUT, n_vocab, n_embd)? {
            return Ok(o);
        }
        match token_embd {
            Embedding::Native(m) if silica_kernels::supports(m.ty) => {
                // The output product reads the whole matrix for every token, the embedding lookup a few rows.
                let mut out = m.clone();
                m.rows_by_read = out.pack(tn::TOKEN_EMBD)?;
                Ok(Linear {
                    imp: LinearImpl::Native(out),
                    out_features: n_vocab,
                })
            }
            // A type silica-quant decodes but silica-kernels cannot multiply (F16...): candle multiplies a copy.
            Embedding::Native(_) => {
                let q = self.qtensor(tn::TOKEN_EMBD, &[n_vocab, n_embd])?;
                Self::linear(tn::TOKEN_EMBD, q, n_vocab)
            }
            Embedding::Candle(q) => Self::linear(tn::TOKEN_EMBD, q.clone(), n_vocab),
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
