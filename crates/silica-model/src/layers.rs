//! Building blocks shared by every architecture: the batch, the preallocated KV cache, RMSNorm, RoPE and
//! attention. Numerics follow llama.cpp's CPU path where it matters for greedy agreement (see each item).

use candle_core::{D, DType, Device, Tensor};

use crate::hparams::{HParams, RopeType};
use crate::native::{KvBuf, Workspace, rms_norm_rows, rope_rows, swiglu_rows};
use crate::{Error, Result};

/// Tokens to run in one forward pass, possibly from several independent sequences (llama.cpp `llama_batch`).
///
/// Each sequence's tokens continue that sequence's cache in batch order: the i-th token of sequence `s` in the
/// batch sits at position `kv.n_past(s) + i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Token ids, `[n_tokens]`.
    pub tokens: Vec<u32>,
    /// Sequence id of each token, `[n_tokens]`, each `< kv.n_seq()`.
    pub seq: Vec<usize>,
    /// Whether logits are wanted for each token, `[n_tokens]`.
    pub logits: Vec<bool>,
}

impl Batch {
    /// A batch of one sequence; logits for the last token only, or for all.
    pub fn single(tokens: &[u32], seq: usize, all_logits: bool) -> Self {
        let n = tokens.len();
        Batch {
            tokens: tokens.to_vec(),
            seq: vec![seq; n],
            logits: (0..n).map(|i| all_logits || i + 1 == n).collect(),
        }
    }

    /// Appends one token.
    pub fn push(&mut self, token: u32, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.seq.push(seq);
        self.logits.push(logits);
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the batch has no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Removes every token, keeping the allocations.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.seq.clear();
        self.logits.clear();
    }
}

/// A preallocated KV cache: for each layer and sequence, keys `[n_head_kv, n_ctx, n_embd_head_k]` of `type_k`
/// and values `[n_head_kv, n_ctx, n_embd_head_v]` of `type_v` (F32, F16 or BF16; F16 by default, as llama.cpp's
/// `type_k`/`type_v`). Written in place, never grown. On the CPU it also keeps the buffers of the forward pass
/// (reused from pass to pass: a pass allocates nothing once they have grown to its size).
#[derive(Debug)]
pub struct KvCache {
    store: KvStore,
    n_past: Vec<usize>, // [n_seq] tokens cached per sequence
    n_ctx: usize,
    type_k: DType,
    type_v: DType,
    n_head_kv: usize,
    head_dim: (usize, usize), // keys, values
    /// The CPU pass's activations (empty on other devices).
    pub(crate) ws: Workspace,
}

/// Where the keys and values live: `[n_layer][n_seq]`, each `[n_head_kv, n_ctx, head_dim]`.
#[derive(Debug)]
enum KvStore {
    /// Plain buffers on the CPU, read and written in place by silica-kernels.
    Cpu { k: Vec<Vec<KvBuf>>, v: Vec<Vec<KvBuf>> },
    /// candle tensors on a GPU device.
    Device {
        k: Vec<Vec<Tensor>>,
        v: Vec<Vec<Tensor>>,
    },
}

impl KvCache {
    /// Allocates a cache of `n_ctx` positions for each of `n_seq` sequences, keys of `type_k` and values of
    /// `type_v`.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for zero sizes or a type other than F32, F16 and BF16; candle's allocation errors.
    pub fn new(
        hp: &HParams,
        n_ctx: usize,
        n_seq: usize,
        types: (DType, DType),
        device: &Device,
    ) -> Result<Self> {
        Self::with_store(hp, n_ctx, n_seq, types, device, false)
    }

    /// [`KvCache::new`]; `tensors` asks for candle tensors even on the CPU (what a graph model's pass reads:
    /// [`crate::Model::load_graph`]). Devices other than the CPU always get tensors.
    ///
    /// # Errors
    /// As [`KvCache::new`].
    pub(crate) fn with_store(
        hp: &HParams,
        n_ctx: usize,
        n_seq: usize,
        (type_k, type_v): (DType, DType),
        device: &Device,
        tensors: bool,
    ) -> Result<Self> {
        if n_ctx == 0 || n_seq == 0 {
            return Err(Error::InvalidBatch(format!(
                "n_ctx ({n_ctx}) and n_seq ({n_seq}) must be > 0"
            )));
        }
        for t in [type_k, type_v] {
            if !matches!(t, DType::F32 | DType::F16 | DType::BF16) {
                return Err(Error::InvalidBatch(format!(
                    "KV cache type {t:?}: only f32, f16 and bf16 are supported"
                )));
            }
        }
        let (kd, vd, n_head_kv) = (hp.n_embd_head_k, hp.n_embd_head_v, hp.n_head_kv);
        let store = if device.is_cpu() && !tensors {
            let cpu = |hd: usize, dtype: DType| {
                per_layer_seq(hp.n_layer, n_seq, || {
                    Ok(KvBuf::zeros(dtype, n_head_kv * n_ctx * hd))
                })
            };
            KvStore::Cpu {
                k: cpu(kd, type_k)?,
                v: cpu(vd, type_v)?,
            }
        } else {
            let dev = |hd: usize, dtype: DType| {
                per_layer_seq(hp.n_layer, n_seq, || {
                    Ok(Tensor::zeros((n_head_kv, n_ctx, hd), dtype, device)?)
                })
            };
            KvStore::Device {
                k: dev(kd, type_k)?,
                v: dev(vd, type_v)?,
            }
        };
        Ok(KvCache {
            store,
            n_past: vec![0; n_seq],
            n_ctx,
            type_k,
            type_v,
            n_head_kv: hp.n_head_kv,
            head_dim: (hp.n_embd_head_k, hp.n_embd_head_v),
            ws: Workspace::default(),
        })
    }

    /// Whether the cache lives on the CPU (the native forward pass).
    pub(crate) fn is_cpu(&self) -> bool {
        matches!(self.store, KvStore::Cpu { .. })
    }

    /// Writes keys and values `[m, n_head_kv · head_dim]` (f32, token-major) of sequence `seq` at positions
    /// `p0..p0 + m` of layer `il` (CPU cache).
    pub(crate) fn write_cpu(&mut self, il: usize, seq: usize, p0: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (n_ctx, n_head_kv, (dk, dv)) = (self.n_ctx, self.n_head_kv, self.head_dim);
        let KvStore::Cpu { k: kc, v: vc } = &mut self.store else {
            return Err(crate::native::not_cpu());
        };
        kc[il][seq].write(k, n_head_kv, dk, n_ctx, p0);
        vc[il][seq].write(v, n_head_kv, dv, n_ctx, p0);
        Ok(())
    }

    /// Attention of `n_head` query heads `q` (`[m, n_head · head_dim_k]`, positions `p0..p0 + m`, whose keys and
    /// values are already written) over layer `p.il` of sequence `seq`'s CPU cache, into `out`
    /// (`[m, n_head · head_dim_v]`).
    pub(crate) fn attend_cpu(
        &self,
        n_head: usize,
        p: AttnParams,
        seq: usize,
        p0: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let KvStore::Cpu { k, v } = &self.store else {
            return Err(crate::native::not_cpu());
        };
        let shape = silica_kernels::attention::AttnShape {
            n_head,
            n_head_kv: self.n_head_kv,
            head_dim_k: self.head_dim.0,
            head_dim_v: self.head_dim.1,
            n_ctx: self.n_ctx,
            p0,
            n_swa: p.n_swa,
            scale: p.kq_scale,
        };
        attention_cpu(shape, q, &k[p.il][seq], &v[p.il][seq], out);
        Ok(())
    }

    /// Bytes [`KvCache::new`] allocates for these arguments, computed without allocating (to check memory
    /// first): `n_seq · n_ctx · n_layer · n_head_kv · (n_embd_head_k · size(type_k) + n_embd_head_v ·
    /// size(type_v))`, llama.cpp's `llama_kv_cache` sizing for a cache without sliding-window layers.
    pub fn bytes_needed(hp: &HParams, n_ctx: usize, n_seq: usize, (type_k, type_v): (DType, DType)) -> u64 {
        let per_pos = hp.n_head_kv as u64
            * (hp.n_embd_head_k as u64 * type_k.size_in_bytes() as u64
                + hp.n_embd_head_v as u64 * type_v.size_in_bytes() as u64);
        n_seq as u64 * n_ctx as u64 * hp.n_layer as u64 * per_pos
    }

    /// Positions per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Number of sequences.
    pub fn n_seq(&self) -> usize {
        self.n_past.len()
    }

    /// Tokens cached for sequence `seq`.
    pub fn n_past(&self, seq: usize) -> usize {
        self.n_past[seq]
    }

    /// Forgets sequence `seq` (its slots are overwritten by later tokens).
    pub fn clear_seq(&mut self, seq: usize) {
        self.n_past[seq] = 0;
    }

    /// Forgets every sequence.
    pub fn clear(&mut self) {
        self.n_past.iter_mut().for_each(|p| *p = 0);
    }

    /// Truncates sequence `seq` to its first `n` tokens (for restoring a prefix state).
    pub fn truncate(&mut self, seq: usize, n: usize) {
        self.n_past[seq] = self.n_past[seq].min(n);
    }

    /// Sets sequence `seq`'s length after a successful forward pass.
    pub(crate) fn advance(&mut self, seq: usize, n_past: usize) {
        self.n_past[seq] = n_past;
    }

    /// The key and value types.
    pub fn types(&self) -> (DType, DType) {
        (self.type_k, self.type_v)
    }

    /// Bytes allocated for keys and values.
    pub fn size_bytes(&self) -> usize {
        match &self.store {
            KvStore::Cpu { k, v } => k.iter().chain(v).flatten().map(KvBuf::size_bytes).sum(),
            KvStore::Device { k, v } => k
                .iter()
                .chain(v)
                .flatten()
                .map(|t| t.elem_count() * t.dtype().size_in_bytes())
                .sum(),
        }
    }
}

/// `[n_layer][n_seq]` values made by `f`: a KV cache's layout.
fn per_layer_seq<T>(n_layer: usize, n_seq: usize, f: impl Fn() -> Result<T>) -> Result<Vec<Vec<T>>> {
    (0..n_layer).map(|_| (0..n_seq).map(|_| f()).collect()).collect()
}

/// Per forward pass: positions, the grouping of tokens by sequence and the rows whose logits are wanted. The
/// CPU pass keeps one in its [`Workspace`] and refills it ([`BatchPlan::fill`]), so it allocates only when a
/// batch is larger than any before.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    /// Position of each token.
    pub pos: Vec<usize>,
    /// For each sequence present: `(seq, first position, start, end)`, its token indices being
    /// `order[start..end]` (batch order).
    runs: Vec<(usize, usize, usize, usize)>,
    /// Token indices grouped by sequence.
    order: Vec<u32>,
    /// Tokens per sequence id.
    counts: Vec<usize>,
    /// Whether `runs` is a single sequence covering the batch in order (no gathers needed).
    pub contiguous: bool,
    /// Indices of the tokens whose logits are wanted.
    pub outputs: Vec<u32>,
    /// Per run: the causal mask `[m, n_kv]`, and the sliding-window one when the model has a window. Built once
    /// per pass, shared by every layer; empty for the native cache, whose attention kernel masks by position.
    pub masks: Vec<(Tensor, Option<Tensor>)>,
}

impl BatchPlan {
    pub(crate) fn new(
        batch: &Batch,
        kv: &KvCache,
        n_vocab: usize,
        n_swa: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut plan = BatchPlan::default();
        plan.fill(batch, kv, n_vocab)?;
        // The native cache's attention kernel masks by position; only a cache of tensors needs mask tensors.
        if !kv.is_cpu() {
            let mut masks = Vec::with_capacity(plan.runs.len());
            for (_, p0, idx) in plan.runs() {
                let (m, n_kv) = (idx.len(), p0 + idx.len());
                let full = causal_mask(p0, m, n_kv, 0, device)?;
                let swa = if n_swa > 0 {
                    Some(causal_mask(p0, m, n_kv, n_swa, device)?)
                } else {
                    None
                };
                masks.push((full, swa));
            }
            plan.masks = masks;
        }
        Ok(plan)
    }

    /// Plans `batch` against `kv`, reusing this plan's buffers (masks are left empty).
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for an empty batch, mismatched lengths or an unknown sequence;
    /// [`Error::TokenOutOfRange`]; [`Error::ContextFull`] if a sequence would pass `n_ctx`.
    pub(crate) fn fill(&mut self, batch: &Batch, kv: &KvCache, n_vocab: usize) -> Result<()> {
        let n = batch.len();
        if n == 0 {
            return Err(Error::InvalidBatch("no tokens".into()));
        }
        if batch.seq.len() != n || batch.logits.len() != n {
            return Err(Error::InvalidBatch(format!(
                "{} tokens but {} sequence ids and {} logit flags",
                n,
                batch.seq.len(),
                batch.logits.len()
            )));
        }
        self.counts.clear();
        self.counts.resize(kv.n_seq(), 0);
        self.pos.clear();
        for (&t, &s) in batch.tokens.iter().zip(&batch.seq) {
            if t as usize >= n_vocab {
                return Err(Error::TokenOutOfRange { id: t, n_vocab });
            }
            if s >= kv.n_seq() {
                return Err(Error::InvalidBatch(format!(
                    "sequence id {s} but the cache holds {} sequences",
                    kv.n_seq()
                )));
            }
            self.pos.push(kv.n_past(s) + self.counts[s]);
            self.counts[s] += 1;
        }
        self.runs.clear();
        self.order.clear();
        for (s, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if kv.n_past(s) + c > kv.n_ctx() {
                return Err(Error::ContextFull {
                    seq: s,
                    n_past: kv.n_past(s),
                    n_tokens: c,
                    n_ctx: kv.n_ctx(),
                });
            }
            let start = self.order.len();
            self.order
                .extend((0..n as u32).filter(|&i| batch.seq[i as usize] == s));
            self.runs.push((s, kv.n_past(s), start, self.order.len()));
        }
        self.contiguous = self.runs.len() == 1;
        self.outputs.clear();
        self.outputs
            .extend((0..n as u32).filter(|&i| batch.logits[i as usize]));
        self.masks.clear();
        Ok(())
    }

    /// Each sequence present: `(seq, first position, its token indices in batch order)`.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (usize, usize, &[u32])> {
        self.runs
            .iter()
            .map(|&(seq, p0, a, b)| (seq, p0, &self.order[a..b]))
    }
}

/// The element-wise steps of the tensor graph, run either by silica's native row functions on CPU tensors (the
/// graph of a native model, bit-equal to its native pass) or by candle operations (a graph model on any
/// device: [`crate::Model::load_graph`], and every GPU).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ops {
    native: bool,
}

impl Ops {
    /// The ops that match `kv`: native for the native pass's buffers, candle's for a cache of tensors.
    pub(crate) fn for_cache(kv: &KvCache) -> Self {
        Ops { native: kv.is_cpu() }
    }

    /// RMSNorm: `x / sqrt(mean(x²) + eps) · w` over the last dimension (ggml `rms_norm` then `mul`).
    ///
    /// `x`: `[n_tokens, n]` (or any rank, normalised over the last dim), f32; `w`: `[n]` f32.
    pub(crate) fn rms_norm(self, x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
        if self.native {
            return cpu_f32(w, |wv| {
                cpu_map(x, |xs, out| {
                    rms_norm_rows(xs, wv, eps, out);
                    Ok(())
                })
            });
        }
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let scale = (mean_sq + f64::from(eps))?.sqrt()?.recip()?;
        x.broadcast_mul(&scale)?.broadcast_mul(w)
    }

    /// RoPE of `x` (`[n_tokens, n_heads, head_dim]` f32, the same shape returned) with the tables of
    /// [`rope_tables`] for its positions: silica-kernels' rows on `[tokens, heads, dim]`, or candle's `rope_i` /
    /// `rope` on `[1, heads, tokens, dim]`.
    pub(crate) fn rope(
        self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        ty: RopeType,
    ) -> candle_core::Result<Tensor> {
        let (_, n_heads, head_dim) = x.dims3()?;
        if self.native && cos.dim(1)? * 2 == head_dim {
            // silica-kernels works on [tokens, heads, dim] directly: no transposes.
            return cpu_f32(cos, |c| {
                cpu_f32(sin, |s| {
                    cpu_map(x, |xs, out| {
                        out.copy_from_slice(xs);
                        rope_rows(out, n_heads, head_dim, (c, s), ty == RopeType::Neox);
                        Ok(())
                    })
                })
            });
        }
        // candle's kernels take [batch, heads, tokens, dim].
        let xt = x.transpose(0, 1)?.unsqueeze(0)?.contiguous()?;
        let y = match ty {
            RopeType::Norm => candle_nn::rotary_emb::rope_i(&xt, cos, sin)?,
            RopeType::Neox => candle_nn::rotary_emb::rope(&xt, cos, sin)?,
        };
        y.squeeze(0)?.transpose(0, 1)?.contiguous()
    }

    /// `silu(gate) · up`, element-wise, same shapes (ggml `swiglu`).
    pub(crate) fn swiglu(self, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
        if self.native {
            let up = up.contiguous()?;
            let n = gate.dim(D::Minus1)?;
            return cpu_f32(&up, |u| {
                cpu_map(gate, |g, out| {
                    out.copy_from_slice(g);
                    swiglu_rows(out, u, n);
                    Ok(())
                })
            });
        }
        candle_nn::ops::silu(gate)? * up
    }
}

/// Calls `f` with the f32 data of a CPU tensor (made contiguous).
pub(crate) fn cpu_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
    f(&cpu.as_slice::<f32>()?[a..b])
}

/// A new CPU tensor of `x`'s shape, filled by `f(x_data, out)`.
fn cpu_map(
    x: &Tensor,
    f: impl FnOnce(&[f32], &mut [f32]) -> candle_core::Result<()>,
) -> candle_core::Result<Tensor> {
    let mut out = vec![0f32; x.elem_count()];
    cpu_f32(x, |xs| f(xs, &mut out))?;
    Tensor::from_vec(out, x.shape(), x.device())
}

/// RoPE cos/sin tables for the given positions, `[n_tokens, n_rot/2]` each, f32.
///
/// Computed as ggml's `ggml_rope_cache_init`: `theta_0 = pos`, `theta_{i+1} = theta_i · base^(−2/n_rot)` in f32
/// (an iterated product, not `pow` per element, so the values equal llama.cpp's to the bit), scaled by
/// `freq_scale` and divided by the optional Llama 3 frequency factors.
pub(crate) fn rope_tables(
    pos: &[usize],
    n_rot: usize,
    freq_base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = n_rot / 2;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    rope_tables_into(
        pos,
        n_rot,
        (freq_base, freq_scale, freq_factors),
        &mut cos,
        &mut sin,
    );
    Ok((
        Tensor::from_vec(cos, (pos.len(), half), device)?,
        Tensor::from_vec(sin, (pos.len(), half), device)?,
    ))
}

/// [`rope_tables`] into `cos` and `sin` (cleared first; they keep their allocations).
pub(crate) fn rope_tables_into(
    pos: &[usize],
    n_rot: usize,
    (freq_base, freq_scale, freq_factors): (f32, f32, Option<&[f32]>),
    cos: &mut Vec<f32>,
    sin: &mut Vec<f32>,
) {
    let half = n_rot / 2;
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    cos.clear();
    sin.clear();
    for &p in pos {
        let mut theta = p as f32;
        for i in 0..half {
            let ff = freq_factors.map_or(1.0, |f| f[i]);
            let t = freq_scale * (theta / ff);
            cos.push(t.cos());
            sin.push(t.sin());
            theta *= theta_scale;
        }
    }
}

/// Rounds f32 values to the nearest f16 and back: llama.cpp converts activations to F16 before dot products
/// with F16 data (the KV cache), so emulating it keeps greedy tokens equal.
pub(crate) fn round_f16(x: &Tensor) -> candle_core::Result<Tensor> {
    x.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

/// Options of one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnParams {
    /// Layer index (selects the cache).
    pub il: usize,
    /// Score scale applied after `q·k` (1.0 when queries were pre-scaled).
    pub kq_scale: f32,
    /// Sliding window in tokens (0: full causal attention).
    pub n_swa: usize,
}

/// Causal (optionally sliding-window) attention of a batch over the KV cache; writes the batch's keys and
/// values into the cache first.
///
/// * `q`: `[n_tokens, n_head, head_dim]` f32 (already RoPE'd); `k`, `v`: `[n_tokens, n_head_kv, head_dim]` f32.
///
/// Returns `[n_tokens, n_head · head_dim]` f32. A query at position `p` sees keys at `j ≤ p`, and with a window
/// `n_swa` only `p − j < n_swa` (llama.cpp `LLAMA_SWA_TYPE_STANDARD`).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv: &mut KvCache,
    plan: &BatchPlan,
    p: AttnParams,
) -> candle_core::Result<Tensor> {
    let (n_tokens, n_head, hd) = q.dims3()?;
    let n_head_kv = k.dim(1)?;
    let n_group = n_head / n_head_kv;
    let device = q.device().clone();
    let mut outs = Vec::with_capacity(plan.runs.len());
    for (r, (seq, p0, idx)) in plan.runs().enumerate() {
        let (qs, ks, vs) = if plan.contiguous {
            (q.clone(), k.clone(), v.clone())
        } else {
            let ids = Tensor::new(idx, &device)?;
            (
                q.index_select(&ids, 0)?,
                k.index_select(&ids, 0)?,
                v.index_select(&ids, 0)?,
            )
        };
        let m = idx.len();
        let o = match &kv.store {
            KvStore::Cpu { .. } => {
                // The native pass's cache and kernel, fed from tensors.
                let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                let wrap = candle_core::Error::wrap;
                kv.write_cpu(p.il, seq, p0, &flat(&ks)?, &flat(&vs)?)
                    .map_err(wrap)?;
                let mut o = vec![0f32; m * n_head * kv.head_dim.1];
                kv.attend_cpu(n_head, p, seq, p0, &flat(&qs)?, &mut o)
                    .map_err(wrap)?;
                Tensor::from_vec(o, (m, n_head * kv.head_dim.1), &device)?
            }
            KvStore::Device { k: kcs, v: vcs } => {
                let (kc, vc) = (&kcs[p.il][seq], &vcs[p.il][seq]);
                kc.slice_set(&ks.transpose(0, 1)?.to_dtype(kv.type_k)?.contiguous()?, 1, p0)?;
                vc.slice_set(&vs.transpose(0, 1)?.to_dtype(kv.type_v)?.contiguous()?, 1, p0)?;
                let n_kv = p0 + m;
                let keys = kc.narrow(1, 0, n_kv)?;
                let vals = vc.narrow(1, 0, n_kv)?;
                // [m, n_head, hd] -> [n_head_kv, n_group * m, hd]: query heads g·n_group.. share kv head g.
                let mut qh = qs
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((n_head_kv, n_group * m, hd))?;
                // llama.cpp (flash attention on CPU) converts queries to the K type for the dot product with the
                // keys; probabilities and the value sum stay f32. Measured: this keeps all 6 reference
                // continuations equal or diverging only at near-ties (< 1% top-2 gap); rounding the probabilities
                // too does not.
                if kv.type_k != DType::F32 {
                    qh = qh.to_dtype(kv.type_k)?.to_dtype(DType::F32)?;
                }
                let (keys, vals) = (keys.to_dtype(DType::F32)?, vals.to_dtype(DType::F32)?); // [n_head_kv, n_kv, hd]
                let scores = (qh.matmul(&keys.t()?)? * f64::from(p.kq_scale))?; // [n_head_kv, n_group*m, n_kv]
                let (full_mask, swa_mask) = &plan.masks[r];
                let mask = match (p.n_swa, swa_mask) {
                    (0, _) | (_, None) => full_mask,
                    (_, Some(w)) => w,
                }; // [m, n_kv]
                let scores = scores
                    .reshape((n_head_kv, n_group, m, n_kv))?
                    .broadcast_add(mask)?;
                let probs =
                    candle_nn::ops::softmax_last_dim(&scores)?.reshape((n_head_kv, n_group * m, n_kv))?;
                let o = probs.matmul(&vals)?; // [n_head_kv, n_group*m, hd]
                o.reshape((n_head, m, hd))?
                    .transpose(0, 1)?
                    .reshape((m, n_head * hd))?
            }
        };
        outs.push(o);
    }
    if plan.contiguous {
        return Ok(outs.remove(0));
    }
    // Back to batch order: concatenated runs, then the inverse permutation.
    let cat = Tensor::cat(&outs, 0)?;
    let mut inv = vec![0u32; n_tokens];
    let mut r = 0u32;
    for (_, _, idx) in plan.runs() {
        for &i in idx {
            inv[i as usize] = r;
            r += 1;
        }
    }
    cat.index_select(&Tensor::new(inv.as_slice(), &device)?, 0)
}

/// Attention on the CPU with silica-kernels, reading the cache in place in its own element types.
///
/// `q`: `[m, n_head, head_dim_k]` f32; `k`, `v`: the layer's cache of the sequence; `out`:
/// `[m, n_head · head_dim_v]` f32.
fn attention_cpu(
    shape: silica_kernels::attention::AttnShape,
    q: &[f32],
    k: &KvBuf,
    v: &KvBuf,
    out: &mut [f32],
) {
    use silica_kernels::attention::attention as attn;
    let pool = silica_kernels::global_pool();
    macro_rules! run {
        ($($kt:ident, $vt:ident;)*) => {
            match (k, v) {
                $((KvBuf::$kt(k), KvBuf::$vt(v)) => attn(pool, shape, q, k, v, out),)*
            }
        };
    }
    run! {
        F16, F16; F32, F32; BF16, BF16; F16, F32; F32, F16; F16, BF16; BF16, F16; F32, BF16; BF16, F32;
    }
}

/// Additive mask `[m, n_kv]`: 0 where query `p0 + i` may see key `j`, −∞ elsewhere.
fn causal_mask(
    p0: usize,
    m: usize,
    n_kv: usize,
    n_swa: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut mask = vec![0f32; m * n_kv];
    for i in 0..m {
        let p = p0 + i;
        for j in 0..n_kv {
            let hidden = j > p || (n_swa > 0 && p - j >= n_swa);
            if hidden {
                mask[i * n_kv + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(mask, (m, n_kv), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_and_windowed() {
        let m = causal_mask(2, 2, 4, 0, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], vec![0.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(m[1], vec![0.0; 4]);
        let m = causal_mask(2, 2, 4, 2, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0], vec![f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(m[1], vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, 0.0]);
    }

    #[test]
    fn rope_table_matches_direct_formula() {
        let (c, s) = rope_tables(&[0, 3], 8, 10000.0, 1.0, None, &Device::Cpu).unwrap();
        let (c, s) = (c.to_vec2::<f32>().unwrap(), s.to_vec2::<f32>().unwrap());
        assert_eq!(c[0], vec![1.0; 4]);
        for i in 0..4 {
            let t = 3.0 * 10000f64.powf(-2.0 * i as f64 / 8.0);
            assert!((f64::from(c[1][i]) - t.cos()).abs() < 1e-5);
            assert!((f64::from(s[1][i]) - t.sin()).abs() < 1e-5);
        }
    }

    #[test]
    fn rms_norm_unit_weight_gives_unit_rms() {
        let x = Tensor::new(&[[3f32, 4.0], [1.0, -1.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap();
        for native in [true, false] {
            let y = Ops { native }
                .rms_norm(&x, &w, 0.0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for row in y {
                let rms = (row.iter().map(|v| v * v).sum::<f32>() / 2.0).sqrt();
                assert!((rms - 1.0).abs() < 1e-6, "native {native}: rms {rms}");
            }
        }
    }

    /// The candle-op steps a GPU runs against the native row functions, on rows of mixed scale and sign.
    #[test]
    fn candle_ops_match_the_native_rows() {
        let x: Vec<f32> = (0..3 * 40)
            .map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.5)
            .collect();
        let x = Tensor::from_vec(x, (3, 40), &Device::Cpu).unwrap();
        let w: Vec<f32> = (0..40).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
        let w = Tensor::from_vec(w, 40, &Device::Cpu).unwrap();
        let up = (x.clone() * 0.75).unwrap().cos().unwrap();
        let (n, g) = (Ops { native: true }, Ops { native: false });
        let close = |a: Tensor, b: Tensor, what: &str| {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + p.abs()),
                    "{what} [{i}]: native {p} candle {q}"
                );
            }
        };
        close(
            n.rms_norm(&x, &w, 1e-6).unwrap(),
            g.rms_norm(&x, &w, 1e-6).unwrap(),
            "rms_norm",
        );
        close(n.swiglu(&x, &up).unwrap(), g.swiglu(&x, &up).unwrap(), "swiglu");
        // RoPE of 3 tokens × 5 heads × 8 dims at positions far apart, both pairings (candle's `rope_i` and
        // `rope` on transposed heads against the native rows on [tokens, heads, dim]).
        let xh = x.reshape((3, 5, 8)).unwrap();
        let (cos, sin) = rope_tables(&[0, 7, 300], 8, 10000.0, 1.0, None, &Device::Cpu).unwrap();
        for ty in [RopeType::Norm, RopeType::Neox] {
            let (a, b) = (
                n.rope(&xh, &cos, &sin, ty).unwrap(),
                g.rope(&xh, &cos, &sin, ty).unwrap(),
            );
            assert_ne!(
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                xh.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{ty:?}: RoPE moved nothing"
            );
            close(a, b, &format!("rope {ty:?}"));
        }
    }
}
