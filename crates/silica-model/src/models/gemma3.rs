//! `gemma3`: Gemma 3 text models (Gemma Team, 2025). Differences from Llama: embeddings scaled by
//! `sqrt(n_embd)`; per-head RMSNorm of queries and keys; RMSNorm after attention and after the FFN; GELU-gated
//! FFN; NEOX RoPE; five of every six layers attend within a sliding window with their own RoPE base; tied output.
//! Norm weights in GGUF already include Gemma's `+1`. llama.cpp `llm_build_gemma3`.

use candle_core::{Device, Tensor};

use crate::layers::{
    AttnParams, Batch, BatchPlan, KvCache, Ops, attention, rope_tables, rope_tables_into, round_f16,
};
use crate::loader::{Embedding, Linear, Loader, tn};
use crate::native::{
    self, Widths, Workspace, add_rows, fit, gelu_f16_rows, mul_rows, rms_norm_t, rope_rows, scale_rows,
};
use crate::{HParams, LoadError, Result, RopeType};

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,      // [n_embd] f32
    attn_q: Linear,         // [n_head·head_dim, n_embd]
    attn_k: Linear,         // [n_head_kv·head_dim, n_embd]
    attn_v: Linear,         // [n_head_kv·head_dim, n_embd]
    attn_q_norm: Tensor,    // [head_dim] f32
    attn_k_norm: Tensor,    // [head_dim] f32
    attn_output: Linear,    // [n_embd, n_head·head_dim]
    attn_post_norm: Tensor, // [n_embd] f32
    ffn_norm: Tensor,       // [n_embd] f32
    ffn_gate: Linear,       // [n_ff, n_embd]
    ffn_up: Linear,         // [n_ff, n_embd]
    ffn_down: Linear,       // [n_embd, n_ff]
    ffn_post_norm: Tensor,  // [n_embd] f32
}

/// A loaded Gemma 3 model.
#[derive(Debug)]
pub struct Gemma3 {
    hp: HParams,
    token_embd: Embedding, // [n_vocab, n_embd]
    layers: Vec<Layer>,
    output_norm: Tensor, // [n_embd] f32
    output: Linear,      // [n_vocab, n_embd], tied to token_embd when absent
    device: Device,
    graph: bool, // candle tensors only ([`crate::Model::load_graph`])
}

/// GELU with tanh approximation, at ggml's CPU precision: ggml looks GELU up in a table indexed by the input
/// rounded to f16 and stores f16 results (`ggml_vec_gelu_f32` with `GGML_GELU_FP16`).
fn gelu_f16_table(x: &Tensor) -> candle_core::Result<Tensor> {
    round_f16(&round_f16(x)?.gelu()?)
}

impl Gemma3 {
    pub(crate) fn load(ld: &Loader<'_>, hp: HParams) -> Result<Self, LoadError> {
        let (e, q, kv, ff, hd) = (
            hp.n_embd,
            hp.n_embd_q(),
            hp.n_embd_k_gqa(),
            hp.n_ff,
            hp.n_embd_head_k,
        );
        let mut token_embd = ld.embedding(hp.n_vocab, e)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let b = |t| tn::blk(il, t);
            layers.push(Layer {
                attn_norm: ld.vector(&b(tn::ATTN_NORM), e)?,
                attn_q: ld.matrix(&b(tn::ATTN_Q), q, e)?,
                attn_k: ld.matrix(&b(tn::ATTN_K), kv, e)?,
                attn_v: ld.matrix(&b(tn::ATTN_V), kv, e)?,
                attn_q_norm: ld.vector(&b(tn::ATTN_Q_NORM), hd)?,
                attn_k_norm: ld.vector(&b(tn::ATTN_K_NORM), hd)?,
                attn_output: ld.matrix(&b(tn::ATTN_OUTPUT), e, q)?,
                attn_post_norm: ld.vector(&b(tn::ATTN_POST_NORM), e)?,
                ffn_norm: ld.vector(&b(tn::FFN_NORM), e)?,
                ffn_gate: ld.matrix(&b(tn::FFN_GATE), ff, e)?,
                ffn_up: ld.matrix(&b(tn::FFN_UP), ff, e)?,
                ffn_down: ld.matrix(&b(tn::FFN_DOWN), e, ff)?,
                ffn_post_norm: ld.vector(&b(tn::FFN_POST_NORM), e)?,
            });
        }
        let output_norm = ld.vector(tn::OUTPUT_NORM, e)?;
        let output = ld.output_or_tied(&mut token_embd, hp.n_vocab, e)?;
        Ok(Gemma3 {
            hp,
            token_embd,
            layers,
            output_norm,
            output,
            device: ld.device().clone(),
            graph: ld.graph(),
        })
    }

    pub(crate) fn hparams(&self) -> &HParams {
        &self.hp
    }

    pub(crate) fn is_graph(&self) -> bool {
        self.graph
    }

    pub(crate) fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Result<Tensor> {
        let hp = &self.hp;
        let ops = Ops::for_cache(kv);
        let plan = BatchPlan::new(batch, kv, hp.n_vocab, hp.n_swa, &self.device)?;
        let n = batch.len();
        let hd = hp.n_embd_head_k;
        let eps = hp.f_norm_rms_eps;
        let mut x = super::embed(&self.token_embd, batch, &self.device)?; // [n, n_embd]
        if let Some(s) = hp.embd_scale {
            x = (x * f64::from(s))?;
        }
        let global = rope_tables(
            &plan.pos,
            hp.n_rot,
            hp.rope_freq_base,
            hp.rope_freq_scale,
            None,
            &self.device,
        )?;
        let local = rope_tables(
            &plan.pos,
            hp.n_rot,
            hp.rope_freq_base_swa,
            1.0,
            None,
            &self.device,
        )?;
        for (il, l) in self.layers.iter().enumerate() {
            let swa = hp.swa_layers[il];
            let (cos, sin) = if swa { &local } else { &global };
            let h = ops.rms_norm(&x, &l.attn_norm, eps)?;
            let q = l.attn_q.forward(&h)?.reshape((n, hp.n_head, hd))?;
            let k = l.attn_k.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let v = l.attn_v.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let q = ops.rope(&ops.rms_norm(&q, &l.attn_q_norm, eps)?, cos, sin, hp.rope_type)?;
            let k = ops.rope(&ops.rms_norm(&k, &l.attn_k_norm, eps)?, cos, sin, hp.rope_type)?;
            // llama.cpp scales queries before attention and runs attention with kq_scale 1.
            let q = (q * f64::from(hp.f_attention_scale))?;
            let params = AttnParams {
                il,
                kq_scale: 1.0,
                n_swa: if swa { hp.n_swa } else { 0 },
            };
            let a = attention(&q, &k, &v, kv, &plan, params)?;
            let a = ops.rms_norm(&l.attn_output.forward(&a)?, &l.attn_post_norm, eps)?;
            let sa = (a + &x)?;
            let h = ops.rms_norm(&sa, &l.ffn_norm, eps)?;
            let g = gelu_f16_table(&l.ffn_gate.forward(&h)?)?;
            let u = l.ffn_up.forward(&h)?;
            let f = ops.rms_norm(&l.ffn_down.forward(&(g * u)?)?, &l.ffn_post_norm, eps)?;
            x = (f + sa)?;
        }
        super::head(&x, kv, &plan, ops, &self.output_norm, eps, &self.output)
    }

    /// The CPU pass on the cache's workspace `ws` ([`crate::native`], which runs it through `run_pass` with the
    /// plan filled in): [`Gemma3::forward`]'s steps on slices, the logits left in `ws.logits`.
    pub(crate) fn forward_cpu(&self, batch: &Batch, kv: &mut KvCache, ws: &mut Workspace) -> Result<()> {
        let hp = &self.hp;
        let n = batch.len();
        let w = Widths::of(hp);
        let Widths { e, nq, nkv, ff, hd } = w;
        let eps = hp.f_norm_rms_eps;
        let neox = hp.rope_type == RopeType::Neox;
        let [cos, sin, cos_swa, sin_swa] = &mut ws.rope;
        let pos = &ws.plan.pos;
        rope_tables_into(
            pos,
            hp.n_rot,
            (hp.rope_freq_base, hp.rope_freq_scale, None),
            cos,
            sin,
        );
        rope_tables_into(
            pos,
            hp.n_rot,
            (hp.rope_freq_base_swa, 1.0, None),
            cos_swa,
            sin_swa,
        );
        let x = fit(&mut ws.x, n * e);
        self.token_embd.rows_into(&batch.tokens, x)?;
        if let Some(s) = hp.embd_scale {
            scale_rows(x, s, e);
        }
        for (il, l) in self.layers.iter().enumerate() {
            let swa = hp.swa_layers[il];
            let tables = if swa {
                (&cos_swa[..], &sin_swa[..])
            } else {
                (&cos[..], &sin[..])
            };
            let h = fit(&mut ws.h, n * e);
            rms_norm_t(x, &l.attn_norm, eps, h)?;
            let (q, k, v) = ws.attn.qkv(n, w);
            let t = fit(&mut ws.t, n * nq);
            // Raw products into t, per-head norms into q and k, then RoPE in place.
            l.attn_q.forward_into(h, n, t)?;
            rms_norm_t(t, &l.attn_q_norm, eps, q)?;
            rope_rows(q, hp.n_head, hd, tables, neox);
            // llama.cpp scales queries before attention and runs attention with kq_scale 1.
            scale_rows(q, hp.f_attention_scale, nq);
            let t = &mut t[..n * nkv];
            l.attn_k.forward_into(h, n, t)?;
            rms_norm_t(t, &l.attn_k_norm, eps, k)?;
            rope_rows(k, hp.n_head_kv, hd, tables, neox);
            l.attn_v.forward_into(h, n, v)?;
            let params = AttnParams {
                il,
                kq_scale: 1.0,
                n_swa: if swa { hp.n_swa } else { 0 },
            };
            native::attention(hp, n, kv, &ws.plan, params, &mut ws.attn)?;
            let a = &ws.attn.a[..n * nq];
            let o = fit(&mut ws.o, n * e);
            l.attn_output.forward_into(a, n, o)?;
            rms_norm_t(o, &l.attn_post_norm, eps, h)?;
            add_rows(x, h, e);
            rms_norm_t(x, &l.ffn_norm, eps, h)?;
            for (t0, m) in native::ffn_blocks(n, ff) {
                let (g, u) = (fit(&mut ws.g, m * ff), fit(&mut ws.u, m * ff));
                let hb = &h[t0 * e..(t0 + m) * e];
                l.ffn_gate.forward_into(hb, m, g)?;
                gelu_f16_rows(g, ff);
                l.ffn_up.forward_into(hb, m, u)?;
                mul_rows(g, u, ff);
                l.ffn_down.forward_into(g, m, &mut o[t0 * e..(t0 + m) * e])?;
            }
            rms_norm_t(o, &l.ffn_post_norm, eps, h)?;
            add_rows(x, h, e);
        }
        native::head(kv, (&self.output_norm, eps), &self.output, e, ws)
    }
}
