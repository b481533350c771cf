//! `llama`: Llama 2/3, SmolLM2, Mistral. Pre-norm blocks of RMSNorm → GQA attention with NORM RoPE →
//! RMSNorm → SwiGLU FFN (Touvron et al., 2023); llama.cpp `llm_build_llama`.

use candle_core::{Device, Tensor};

use crate::layers::{AttnParams, Batch, BatchPlan, KvCache, Ops, attention, rope_tables, rope_tables_into};
use crate::loader::{Embedding, Linear, Loader, tn};
use crate::native::{self, Widths, Workspace, add_rows, fit, rms_norm_t, rope_rows, swiglu_rows};
use crate::{HParams, LoadError, Result, RopeType};

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,   // [n_embd] f32
    attn_q: Linear,      // [n_head·head_dim, n_embd]
    attn_k: Linear,      // [n_head_kv·head_dim, n_embd]
    attn_v: Linear,      // [n_head_kv·head_dim, n_embd]
    attn_output: Linear, // [n_embd, n_head·head_dim]
    ffn_norm: Tensor,    // [n_embd] f32
    ffn_gate: Linear,    // [n_ff, n_embd]
    ffn_up: Linear,      // [n_ff, n_embd]
    ffn_down: Linear,    // [n_embd, n_ff]
}

/// A loaded Llama-family model (weights only; state lives in [`KvCache`]).
#[derive(Debug)]
pub struct Llama {
    hp: HParams,
    token_embd: Embedding, // [n_vocab, n_embd]
    layers: Vec<Layer>,
    output_norm: Tensor,          // [n_embd] f32
    output: Linear,               // [n_vocab, n_embd], tied to token_embd when absent
    rope_freqs: Option<Vec<f32>>, // [n_rot/2] Llama 3 frequency factors
    device: Device,
    graph: bool, // candle tensors only ([`crate::Model::load_graph`])
}

impl Llama {
    pub(crate) fn load(ld: &Loader<'_>, hp: HParams) -> Result<Self, LoadError> {
        let (e, q, kv, ff) = (hp.n_embd, hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_ff);
        let mut token_embd = ld.embedding(hp.n_vocab, e)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let b = |t| tn::blk(il, t);
            layers.push(Layer {
                attn_norm: ld.vector(&b(tn::ATTN_NORM), e)?,
                attn_q: ld.matrix(&b(tn::ATTN_Q), q, e)?,
                attn_k: ld.matrix(&b(tn::ATTN_K), kv, e)?,
                attn_v: ld.matrix(&b(tn::ATTN_V), kv, e)?,
                attn_output: ld.matrix(&b(tn::ATTN_OUTPUT), e, q)?,
                ffn_norm: ld.vector(&b(tn::FFN_NORM), e)?,
                ffn_gate: ld.matrix(&b(tn::FFN_GATE), ff, e)?,
                ffn_up: ld.matrix(&b(tn::FFN_UP), ff, e)?,
                ffn_down: ld.matrix(&b(tn::FFN_DOWN), e, ff)?,
            });
        }
        let output_norm = ld.vector(tn::OUTPUT_NORM, e)?;
        // `output.weight` is optional: many checkpoints tie it to `token_embd.weight`.
        let output = ld.output_or_tied(&mut token_embd, hp.n_vocab, e)?;
        let rope_freqs = match ld.optional_vector(tn::ROPE_FREQS, hp.n_rot / 2)? {
            Some(t) => Some(t.to_vec1::<f32>().map_err(|source| LoadError::Candle {
                name: tn::ROPE_FREQS.into(),
                source,
            })?),
            None => None,
        };
        Ok(Llama {
            hp,
            token_embd,
            layers,
            output_norm,
            output,
            rope_freqs,
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
        let plan = BatchPlan::new(batch, kv, hp.n_vocab, 0, &self.device)?;
        let n = batch.len();
        let hd = hp.n_embd_head_k;
        let mut x = super::embed(&self.token_embd, batch, &self.device)?; // [n, n_embd]
        let (cos, sin) = rope_tables(
            &plan.pos,
            hp.n_rot,
            hp.rope_freq_base,
            hp.rope_freq_scale,
            self.rope_freqs.as_deref(),
            &self.device,
        )?;
        for (il, l) in self.layers.iter().enumerate() {
            let h = ops.rms_norm(&x, &l.attn_norm, hp.f_norm_rms_eps)?;
            let q = l.attn_q.forward(&h)?.reshape((n, hp.n_head, hd))?;
            let k = l.attn_k.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let v = l.attn_v.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let q = ops.rope(&q, &cos, &sin, hp.rope_type)?;
            let k = ops.rope(&k, &cos, &sin, hp.rope_type)?;
            let params = AttnParams {
                il,
                kq_scale: hp.f_attention_scale,
                n_swa: 0,
            };
            let a = attention(&q, &k, &v, kv, &plan, params)?;
            x = (x + l.attn_output.forward(&a)?)?;
            let h = ops.rms_norm(&x, &l.ffn_norm, hp.f_norm_rms_eps)?;
            let g = l.ffn_gate.forward(&h)?;
            let u = l.ffn_up.forward(&h)?;
            x = (x + l.ffn_down.forward(&ops.swiglu(&g, &u)?)?)?;
        }
        super::head(
            &x,
            kv,
            &plan,
            ops,
            &self.output_norm,
            hp.f_norm_rms_eps,
            &self.output,
        )
    }

    /// The CPU pass on the cache's workspace `ws` ([`crate::native`], which runs it through `run_pass` with the
    /// plan filled in): [`Llama::forward`]'s steps on slices, the logits left in `ws.logits`.
    pub(crate) fn forward_cpu(&self, batch: &Batch, kv: &mut KvCache, ws: &mut Workspace) -> Result<()> {
        let hp = &self.hp;
        let n = batch.len();
        let w = Widths::of(hp);
        let Widths { e, nq, ff, hd, .. } = w;
        let eps = hp.f_norm_rms_eps;
        let neox = hp.rope_type == RopeType::Neox;
        let [cos, sin, ..] = &mut ws.rope;
        let freqs = (hp.rope_freq_base, hp.rope_freq_scale, self.rope_freqs.as_deref());
        rope_tables_into(&ws.plan.pos, hp.n_rot, freqs, cos, sin);
        let x = fit(&mut ws.x, n * e);
        self.token_embd.rows_into(&batch.tokens, x)?;
        for (il, l) in self.layers.iter().enumerate() {
            let h = fit(&mut ws.h, n * e);
            rms_norm_t(x, &l.attn_norm, eps, h)?;
            let (q, k, v) = ws.attn.qkv(n, w);
            l.attn_q.forward_into(h, n, q)?;
            rope_rows(q, hp.n_head, hd, (cos, sin), neox);
            l.attn_k.forward_into(h, n, k)?;
            rope_rows(k, hp.n_head_kv, hd, (cos, sin), neox);
            l.attn_v.forward_into(h, n, v)?;
            let params = AttnParams {
                il,
                kq_scale: hp.f_attention_scale,
                n_swa: 0,
            };
            native::attention(hp, n, kv, &ws.plan, params, &mut ws.attn)?;
            let a = &ws.attn.a[..n * nq];
            // `h` is free once Q, K and V are made: it takes each product's output on its way into `x`.
            l.attn_output.forward_into(a, n, h)?;
            add_rows(x, h, e);
            rms_norm_t(x, &l.ffn_norm, eps, h)?;
            // Block by block, each block's output replacing its own input rows of `h`.
            for (t0, m) in native::ffn_blocks(n, ff) {
                let (g, u) = (fit(&mut ws.g, m * ff), fit(&mut ws.u, m * ff));
                let hb = &mut h[t0 * e..(t0 + m) * e];
                l.ffn_gate.forward_into(hb, m, g)?;
                l.ffn_up.forward_into(hb, m, u)?;
                swiglu_rows(g, u, ff);
                l.ffn_down.forward_into(g, m, hb)?;
            }
            add_rows(x, h, e);
        }
        native::head(kv, (&self.output_norm, eps), &self.output, e, ws)
    }
}
