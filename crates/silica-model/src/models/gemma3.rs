//! `gemma3`: Gemma 3 text models (Gemma Team, 2025). Differences from Llama: embeddings scaled by
//! `sqrt(n_embd)`; per-head RMSNorm of queries and keys; RMSNorm after attention and after the FFN; GELU-gated
//! FFN; NEOX RoPE; five of every six layers attend within a sliding window with their own RoPE base; tied output.
//! Norm weights in GGUF already include Gemma's `+1`. llama.cpp `llm_build_gemma3`.

use candle_core::{Device, Tensor};
use silica_gguf::GgufFile;

use crate::layers::{
    AttnParams, Batch, BatchPlan, KvCache, attention, rms_norm, rope, rope_tables, round_f16,
};
use crate::loader::{Embedding, Linear, Loader, tn};
use crate::{HParams, LoadError, Result};

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
}

/// GELU with tanh approximation, at ggml's CPU precision: ggml looks GELU up in a table indexed by the input
/// rounded to f16 and stores f16 results (`ggml_vec_gelu_f32` with `GGML_GELU_FP16`).
fn gelu_f16_table(x: &Tensor) -> candle_core::Result<Tensor> {
    round_f16(&round_f16(x)?.gelu()?)
}

impl Gemma3 {
    pub(crate) fn load(file: &GgufFile, hp: HParams, device: &Device) -> Result<Self, LoadError> {
        let ld = Loader::new(file, device);
        let (e, q, kv, ff, hd) = (
            hp.n_embd,
            hp.n_embd_q(),
            hp.n_embd_k_gqa(),
            hp.n_ff,
            hp.n_embd_head_k,
        );
        let token_embd = ld.embedding(hp.n_vocab, e)?;
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
        let output = ld.output_or_tied(&token_embd, hp.n_vocab, e)?;
        Ok(Gemma3 {
            hp,
            token_embd,
            layers,
            output_norm,
            output,
            device: device.clone(),
        })
    }

    pub(crate) fn hparams(&self) -> &HParams {
        &self.hp
    }

    pub(crate) fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Result<Tensor> {
        let hp = &self.hp;
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
            let h = rms_norm(&x, &l.attn_norm, eps)?;
            let q = l.attn_q.forward(&h)?.reshape((n, hp.n_head, hd))?;
            let k = l.attn_k.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let v = l.attn_v.forward(&h)?.reshape((n, hp.n_head_kv, hd))?;
            let q = rope(&rms_norm(&q, &l.attn_q_norm, eps)?, cos, sin, hp.rope_type)?;
            let k = rope(&rms_norm(&k, &l.attn_k_norm, eps)?, cos, sin, hp.rope_type)?;
            // llama.cpp scales queries before attention and runs attention with kq_scale 1.
            let q = (q * f64::from(hp.f_attention_scale))?;
            let params = AttnParams {
                il,
                kq_scale: 1.0,
                n_swa: if swa { hp.n_swa } else { 0 },
            };
            let a = attention(&q, &k, &v, kv, &plan, params)?;
            let a = rms_norm(&l.attn_output.forward(&a)?, &l.attn_post_norm, eps)?;
            let sa = (a + &x)?;
            let h = rms_norm(&sa, &l.ffn_norm, eps)?;
            let g = gelu_f16_table(&l.ffn_gate.forward(&h)?)?;
            let u = l.ffn_up.forward(&h)?;
            let f = rms_norm(&l.ffn_down.forward(&(g * u)?)?, &l.ffn_post_norm, eps)?;
            x = (f + sa)?;
        }
        super::head(&x, kv, &plan, &self.output_norm, eps, &self.output)
    }
}
