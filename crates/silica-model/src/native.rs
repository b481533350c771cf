//! The CPU forward pass on plain buffers: what each architecture's `forward_cpu` is built from.
//!
//! On the CPU every step of a pass reads and writes slices of a [`Workspace`] that lives in the [`KvCache`] and
//! keeps its buffers from pass to pass, and keys and values go straight into the cache's [`KvBuf`]s: once the
//! first pass of a given size has grown the buffers, a pass allocates nothing (llama.cpp plans its compute
//! buffer once per graph shape in the same way, `ggml_gallocr`). The steps are the ones the candle graph of
//! `forward_graph` runs on the CPU, with the same silica-kernels calls in the same order, so the two give the
//! same bits (tested in `tests/it/consistency.rs`).

use candle_core::{DType, Tensor};
use half::{bf16, f16};

use crate::layers::{AttnParams, BatchPlan, KvCache, cpu_f32};
use crate::loader::Linear;
use crate::{Error, HParams, Result};

/// One layer's keys or values of one sequence on the CPU: `[n_head_kv, n_ctx, head_dim]` row-major, in the
/// cache's type (llama.cpp's `type_k` / `type_v`).
#[derive(Debug)]
pub(crate) enum KvBuf {
    /// `f32` cache.
    F32(Vec<f32>),
    /// `f16` cache (llama.cpp's default).
    F16(Vec<f16>),
    /// `bf16` cache.
    BF16(Vec<bf16>),
}

impl KvBuf {
    /// `n` zeros of `dtype` (F32, F16 or BF16: [`KvCache::new`] checked it).
    pub(crate) fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => KvBuf::F32(silica_kernels::huge_page_vec(n, 0.0)),
            DType::BF16 => KvBuf::BF16(silica_kernels::huge_page_vec(n, bf16::ZERO)),
            _ => KvBuf::F16(silica_kernels::huge_page_vec(n, f16::ZERO)),
        }
    }

    /// Bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        match self {
            KvBuf::F32(b) => 4 * b.len(),
            KvBuf::F16(b) => 2 * b.len(),
            KvBuf::BF16(b) => 2 * b.len(),
        }
    }

    /// Writes `src` (`[m, n_head_kv, head_dim]` f32, token-major, as the K/V products give it) at positions
    /// `p0..p0 + m` of every head, rounded to the cache type (round to nearest even, as ggml's `cpy` to F16).
    pub(crate) fn write(&mut self, src: &[f32], n_head_kv: usize, hd: usize, n_ctx: usize, p0: usize) {
        use half::slice::HalfFloatSliceExt;
        let m = src.len() / (n_head_kv * hd);
        for i in 0..m {
            for h in 0..n_head_kv {
                let s = &src[(i * n_head_kv + h) * hd..][..hd];
                let at = (h * n_ctx + p0 + i) * hd;
                match self {
                    KvBuf::F32(b) => b[at..at + hd].copy_from_slice(s),
                    KvBuf::F16(b) => b[at..at + hd].convert_from_f32_slice(s),
                    KvBuf::BF16(b) => b[at..at + hd].convert_from_f32_slice(s),
                }
            }
        }
    }
}

/// The activations of one CPU pass, kept between passes: each field grows to the largest pass seen and is used
/// through [`fit`]. Widths as named: `e` = `n_embd`, `nq` = `n_head · head_dim`, `nkv` = `n_head_kv · head_dim`,
/// `ff` = `n_ff`; `n` tokens, `n_out` of them with logits; all f32, row-major.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// The residual stream `[n, e]`.
    pub x: Vec<f32>,
    /// Normed input of the next product, or a product's output on its way into the residual `[n, e]`.
    pub h: Vec<f32>,
    /// A product's output before its norm (Gemma 3's post-norms) `[n, e]`.
    pub o: Vec<f32>,
    /// Queries, keys, values and the attention output.
    pub attn: AttnBufs,
    /// Per-head norm outputs `[n, nq]` (Gemma 3).
    pub t: Vec<f32>,
    /// FFN gate of one token block `[block, ff]` ([`ffn_blocks`]).
    pub g: Vec<f32>,
    /// FFN up of one token block `[block, ff]`.
    pub u: Vec<f32>,
    /// RoPE tables `[n, n_rot / 2]`, and those of sliding-window layers where they differ.
    pub rope: [Vec<f32>; 4],
    /// Logits `[n_out, n_vocab]`.
    pub logits: Vec<f32>,
    /// The plan of the pass, refilled each time.
    pub plan: BatchPlan,
}

/// The attention's buffers in a [`Workspace`] (widths as there).
#[derive(Debug, Default)]
pub(crate) struct AttnBufs {
    /// Queries `[n, nq]`.
    pub q: Vec<f32>,
    /// Keys `[n, nkv]`.
    pub k: Vec<f32>,
    /// Values `[n, nkv]`.
    pub v: Vec<f32>,
    /// Attention output `[n, nq]`.
    pub a: Vec<f32>,
    /// One sequence's queries, keys, values and attention output gathered from a batch of several.
    pub gather: [Vec<f32>; 4],
}

impl AttnBufs {
    /// Queries, keys and values of an `n`-token pass: `[n, w.nq]`, `[n, w.nkv]`, `[n, w.nkv]`.
    pub(crate) fn qkv(&mut self, n: usize, w: Widths) -> (&mut [f32], &mut [f32], &mut [f32]) {
        (
            fit(&mut self.q, n * w.nq),
            fit(&mut self.k, n * w.nkv),
            fit(&mut self.v, n * w.nkv),
        )
    }
}

/// The first `len` values of `v`, grown (zero-filled) only when `v` is shorter.
pub(crate) fn fit(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Runs `f` on the process pool over whole rows of `out` ([`silica_kernels::par_rows`]).
pub(crate) fn par_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    silica_kernels::par_rows(silica_kernels::global_pool(), out, row, f);
}

/// RMSNorm times `w` of each row of `x` into `out` (`[rows, w.len()]` both; ggml `rms_norm` then `mul`).
pub(crate) fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    par_rows(out, n, |r0, part| {
        silica_kernels::ops::rms_norm_mul(&x[r0 * n..r0 * n + part.len()], w, eps, part);
    });
}

/// [`rms_norm_rows`] with the weight in a CPU tensor.
pub(crate) fn rms_norm_t(x: &[f32], w: &Tensor, eps: f32, out: &mut [f32]) -> candle_core::Result<()> {
    cpu_f32(w, |wv| {
        rms_norm_rows(x, wv, eps, out);
        Ok(())
    })
}

/// `gate = silu(gate) · up` in place, rows of width `row` split over the pool (ggml `swiglu`).
pub(crate) fn swiglu_rows(gate: &mut [f32], up: &[f32], row: usize) {
    par_rows(gate, row, |r0, part| {
        silica_kernels::ops::swiglu(part, &up[r0 * row..r0 * row + part.len()]);
    });
}

/// RoPE in place of `x` (`[n_tokens, n_heads, head_dim]`) with tables `cos`, `sin` (`[n_tokens, head_dim/2]`).
pub(crate) fn rope_rows(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    (cos, sin): (&[f32], &[f32]),
    neox: bool,
) {
    let (row, half) = (n_heads * head_dim, head_dim / 2);
    par_rows(x, row, |t0, part| {
        let nt = part.len() / row;
        let (c, s) = (
            &cos[t0 * half..(t0 + nt) * half],
            &sin[t0 * half..(t0 + nt) * half],
        );
        silica_kernels::ops::rope(part, n_heads, head_dim, c, s, neox);
    });
}

/// Bytes each FFN buffer ([`Workspace::g`], [`Workspace::u`]) may take: prefill runs the FFN over blocks of
/// tokens of at most this many `n_ff`-wide rows, which keeps peak memory near `file + KV cache` (llama 7B shape,
/// 512 tokens: the two `[512, 11008]` buffers were 45 MB of the 95 MB above it). Each block re-reads the FFN
/// weights, which the compute of a block of ~100 tokens hides.
pub(crate) const FFN_BLOCK_BYTES: usize = 4 << 20;

/// The token blocks of an `n`-token pass through an FFN of width `ff` ([`FFN_BLOCK_BYTES`]): `(first, count)`,
/// counts a multiple of 4 (the products' token tile) except the last.
pub(crate) fn ffn_blocks(n: usize, ff: usize) -> impl Iterator<Item = (usize, usize)> {
    let per = (FFN_BLOCK_BYTES / (4 * ff.max(1)) / 4 * 4).max(4);
    (0..n).step_by(per).map(move |t0| (t0, per.min(n - t0)))
}

/// `x += y`, element-wise, split over the pool by rows of width `row`.
pub(crate) fn add_rows(x: &mut [f32], y: &[f32], row: usize) {
    par_rows(x, row, |r0, part| {
        for (a, &b) in part.iter_mut().zip(&y[r0 * row..]) {
            *a += b;
        }
    });
}

/// Causal attention of the pass's `n` tokens on the CPU, from `b.q` (`[n, n_head·hd]`), `b.k`, `b.v`
/// (`[n, n_head_kv·hd]`) into `b.a` (`[n, n_head·hd]`): writes each run's keys and values into its sequence's
/// cache, then attends over the cache in place (`silica_kernels::attention`); tokens of several sequences are
/// gathered per run into `b.gather` and scattered back.
pub(crate) fn attention(
    hp: &HParams,
    n: usize,
    kv: &mut KvCache,
    plan: &BatchPlan,
    p: AttnParams,
    b: &mut AttnBufs,
) -> Result<()> {
    let (wq, wkv, n_head) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_head);
    let (q, k, v) = (&b.q[..n * wq], &b.k[..n * wkv], &b.v[..n * wkv]);
    let out = fit(&mut b.a, n * wq);
    for (seq, p0, idx) in plan.runs() {
        let m = idx.len();
        if plan.contiguous {
            kv.write_cpu(p.il, seq, p0, k, v)?;
            kv.attend_cpu(n_head, p, seq, p0, q, out)?;
            continue;
        }
        let [gq, gk, gv, ga] = &mut b.gather;
        let (gq, gk, gv) = (fit(gq, m * wq), fit(gk, m * wkv), fit(gv, m * wkv));
        for (r, &i) in idx.iter().enumerate() {
            let i = i as usize;
            gq[r * wq..][..wq].copy_from_slice(&q[i * wq..][..wq]);
            gk[r * wkv..][..wkv].copy_from_slice(&k[i * wkv..][..wkv]);
            gv[r * wkv..][..wkv].copy_from_slice(&v[i * wkv..][..wkv]);
        }
        let ga = fit(ga, m * wq);
        kv.write_cpu(p.il, seq, p0, gk, gv)?;
        kv.attend_cpu(n_head, p, seq, p0, gq, ga)?;
        for (r, &i) in idx.iter().enumerate() {
            out[i as usize * wq..][..wq].copy_from_slice(&ga[r * wq..][..wq]);
        }
    }
    Ok(())
}

/// Commits the pass to the cache, then final norm and output projection of the rows whose logits are wanted:
/// `ws.x` `[n, e]` → `ws.logits` `[n_out, n_vocab]`.
pub(crate) fn head(
    kv: &mut KvCache,
    (output_norm, eps): (&Tensor, f32),
    output: &Linear,
    e: usize,
    ws: &mut Workspace,
) -> Result<()> {
    let plan = &ws.plan;
    crate::models::commit(kv, plan);
    let n = plan.pos.len();
    let n_out = plan.outputs.len();
    let x = &ws.x[..n * e];
    let rows = fit(&mut ws.o, n_out * e);
    for (r, &i) in plan.outputs.iter().enumerate() {
        rows[r * e..][..e].copy_from_slice(&x[i as usize * e..][..e]);
    }
    let h = fit(&mut ws.h, n_out * e);
    rms_norm_t(rows, output_norm, eps, h)?;
    let logits = fit(&mut ws.logits, n_out * output.out_features());
    output.forward_into(h, n_out, logits)?;
    Ok(())
}

/// The widths of a pass ([`Workspace`]'s names): `e` = `n_embd`, `nq` = `n_head · head_dim`, `nkv` =
/// `n_head_kv · head_dim`, `ff` = `n_ff`, `hd` = `head_dim`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Widths {
    pub e: usize,
    pub nq: usize,
    pub nkv: usize,
    pub ff: usize,
    pub hd: usize,
}

impl Widths {
    /// The widths of `hp`.
    pub(crate) fn of(hp: &HParams) -> Self {
        Widths {
            e: hp.n_embd,
            nq: hp.n_embd_q(),
            nkv: hp.n_embd_k_gqa(),
            ff: hp.n_ff,
            hd: hp.n_embd_head_k,
        }
    }
}

/// Runs an architecture's CPU `pass` on the cache's [`Workspace`] (taken out of the cache for the pass and put
/// back after, also on error), with the plan of `batch` filled in.
///
/// # Errors
/// Partial RoPE ([`check_rope`]), the plan's errors, then `pass`'s.
pub(crate) fn run_pass(
    hp: &HParams,
    batch: &crate::Batch,
    kv: &mut KvCache,
    pass: impl FnOnce(&mut Workspace, &mut KvCache) -> Result<()>,
) -> Result<()> {
    check_rope(hp)?;
    let mut ws = std::mem::take(&mut kv.ws);
    let r = ws
        .plan
        .fill(batch, kv, hp.n_vocab)
        .and_then(|()| pass(&mut ws, kv));
    kv.ws = ws;
    r
}

/// The CPU pass rotates whole heads (`n_rot == head_dim`), as silica-kernels' RoPE does.
///
/// # Errors
/// [`Error::InvalidBatch`] naming both widths otherwise.
pub(crate) fn check_rope(hp: &HParams) -> Result<()> {
    if hp.n_rot != hp.n_embd_head_k {
        return Err(Error::InvalidBatch(format!(
            "rope.dimension_count {} differs from the head width {}: partial RoPE is not supported",
            hp.n_rot, hp.n_embd_head_k
        )));
    }
    Ok(())
}

/// `a *= b`, element-wise, over the pool by rows of width `row` (ggml `mul`).
pub(crate) fn mul_rows(a: &mut [f32], b: &[f32], row: usize) {
    par_rows(a, row, |r0, part| {
        for (x, &y) in part.iter_mut().zip(&b[r0 * row..]) {
            *x *= y;
        }
    });
}

/// `x *= s`, element-wise, over the pool by rows of width `row` (candle's `affine(s, 0)`, ggml `scale`).
pub(crate) fn scale_rows(x: &mut [f32], s: f32, row: usize) {
    par_rows(x, row, |_, part| part.iter_mut().for_each(|v| *v = *v * s + 0.0));
}

/// GELU (tanh approximation, Hendrycks & Gimpel 2016) of each value rounded to f16, the result rounded to f16
/// again, in place: ggml's CPU GELU is a table over f16 inputs (`ggml_table_gelu_f16`), and the graph path
/// computes `round_f16(gelu(round_f16(x)))` with candle's f32 formula (`candle-core` `op.rs`, `Gelu::f32`),
/// which this table holds for all 65 536 f16 inputs.
pub(crate) fn gelu_f16_rows(x: &mut [f32], row: usize) {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        #[allow(clippy::excessive_precision)]
        const SQRT_TWO_OVER_PI: f32 = 0.79788456080286535587989211986876373;
        (0..=u16::MAX)
            .map(|b| {
                let v = f16::from_bits(b).to_f32();
                f16::from_f32(0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v))))
            })
            .collect()
    });
    par_rows(x, row, |_, part| {
        for v in part {
            *v = table[usize::from(f16::from_f32(*v).to_bits())].to_f32();
        }
    });
}

/// An error for a CPU pass given a cache that lives on another device.
pub(crate) fn not_cpu() -> Error {
    Error::InvalidBatch("the KV cache is not on the CPU but the model is".into())
}
