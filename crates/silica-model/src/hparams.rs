//! Hyperparameters read from GGUF metadata, named as in llama.cpp's `llama_hparams`.

use silica_gguf::{GgufFile, Metadata, keys};

use crate::LoadError;

/// A supported model architecture (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama`: Llama 2/3, SmolLM2, Mistral (RMSNorm, SwiGLU, NORM RoPE, GQA).
    Llama,
    /// `gemma3`: Gemma 3 text models (QK-norm, post-norms, GELU, sliding-window layers, NEOX RoPE).
    Gemma3,
}

impl Arch {
    /// Every supported architecture name.
    pub const SUPPORTED: &'static [&'static str] = &["llama", "gemma3"];

    /// Parses `general.architecture`.
    ///
    /// # Errors
    /// [`LoadError::UnsupportedArchitecture`].
    pub fn from_name(name: &str) -> Result<Self, LoadError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "gemma3" => Ok(Arch::Gemma3),
            _ => Err(LoadError::UnsupportedArchitecture {
                arch: name.to_owned(),
                supported: Self::SUPPORTED.join(", "),
            }),
        }
    }

    /// The GGUF name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// How RoPE pairs dimensions (llama.cpp `LLAMA_ROPE_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    /// Adjacent pairs `(x[2i], x[2i+1])` (`LLAMA_ROPE_TYPE_NORM`; Llama GGUFs have Q/K permuted for it).
    Norm,
    /// Halves `(x[i], x[i + n_rot/2])` (`LLAMA_ROPE_TYPE_NEOX`; Gemma, Qwen2).
    Neox,
}

/// Model hyperparameters. Counts are `n_*`; head dimensions `n_embd_head_*`.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size (`{arch}.vocab_size`, else the token list's length).
    pub n_vocab: usize,
    /// Training context length, tokens.
    pub n_ctx_train: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (GQA when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Key head dimension (`attention.key_length`, default `n_embd / n_head`).
    pub n_embd_head_k: usize,
    /// Value head dimension.
    pub n_embd_head_v: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// RMSNorm epsilon.
    pub f_norm_rms_eps: f32,
    /// RoPE base frequency of full-attention layers.
    pub rope_freq_base: f32,
    /// RoPE position scale of full-attention layers (1 / linear scaling factor).
    pub rope_freq_scale: f32,
    /// RoPE base frequency of sliding-window layers (Gemma 3: 10000, as llama.cpp sets it).
    pub rope_freq_base_swa: f32,
    /// RoPE pairing.
    pub rope_type: RopeType,
    /// Sliding-window size in tokens (0: none).
    pub n_swa: usize,
    /// Per layer: whether it uses the sliding window.
    pub swa_layers: Vec<bool>,
    /// Scale applied to attention scores (`1/sqrt(n_embd_head_k)` unless the architecture says otherwise).
    pub f_attention_scale: f32,
    /// Scale applied to token embeddings (Gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
}

fn u(m: &Metadata, arch: &str, suffix: &str) -> Result<usize, LoadError> {
    Ok(m.get_u32(&keys::arch_key(arch, suffix))? as usize)
}

fn opt_u(m: &Metadata, arch: &str, suffix: &str) -> Result<Option<usize>, LoadError> {
    Ok(m.opt_u32(&keys::arch_key(arch, suffix))?.map(|v| v as usize))
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> LoadError {
    LoadError::InvalidHParam {
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

impl HParams {
    /// Reads and checks the hyperparameters of `file`.
    ///
    /// # Errors
    /// [`LoadError::Gguf`] for a missing or mistyped key, [`LoadError::UnsupportedArchitecture`],
    /// [`LoadError::InvalidHParam`] for zero or inconsistent values.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LoadError> {
        let m = file.metadata();
        let arch_name = m.get_str(keys::GENERAL_ARCHITECTURE)?;
        let arch = Arch::from_name(arch_name)?;
        let a = arch_name;
        let n_embd = u(m, a, keys::EMBEDDING_LENGTH)?;
        let n_head = u(m, a, keys::HEAD_COUNT)?;
        if n_head == 0 || n_embd == 0 {
            return Err(invalid(
                &keys::arch_key(a, keys::HEAD_COUNT),
                n_head,
                "n_head and n_embd must be > 0",
            ));
        }
        let n_head_kv = opt_u(m, a, keys::HEAD_COUNT_KV)?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(invalid(
                &keys::arch_key(a, keys::HEAD_COUNT_KV),
                n_head_kv,
                "must divide n_head",
            ));
        }
        let n_embd_head_k = opt_u(m, a, keys::KEY_LENGTH)?.unwrap_or(n_embd / n_head);
        let n_embd_head_v = opt_u(m, a, keys::VALUE_LENGTH)?.unwrap_or(n_embd / n_head);
        let n_rot = opt_u(m, a, keys::ROPE_DIMENSION_COUNT)?.unwrap_or(n_embd_head_k);
        if n_rot != n_embd_head_k || n_rot % 2 != 0 {
            return Err(invalid(
                &keys::arch_key(a, keys::ROPE_DIMENSION_COUNT),
                n_rot,
                "partial RoPE is not supported: must equal the head dimension",
            ));
        }
        if n_embd_head_k != n_embd_head_v {
            return Err(invalid(
                &keys::arch_key(a, keys::VALUE_LENGTH),
                n_embd_head_v,
                "must equal attention.key_length",
            ));
        }
        let n_layer = u(m, a, keys::BLOCK_COUNT)?;
        let n_ff = u(m, a, keys::FEED_FORWARD_LENGTH)?;
        let n_vocab = match opt_u(m, a, keys::VOCAB_SIZE)? {
            Some(v) => v,
            None => m.get_string_array(keys::TOKENIZER_TOKENS)?.len(),
        };
        if n_layer == 0 || n_ff == 0 || n_vocab == 0 {
            return Err(invalid(
                &keys::arch_key(a, keys::BLOCK_COUNT),
                n_layer,
                "n_layer, n_ff and n_vocab must be > 0",
            ));
        }
        let n_ctx_train = opt_u(m, a, keys::CONTEXT_LENGTH)?.unwrap_or(2048);
        let f_norm_rms_eps = m
            .opt_f32(&keys::arch_key(a, keys::LAYER_NORM_RMS_EPSILON))?
            .unwrap_or(1e-5);
        let rope_freq_base = m
            .opt_f32(&keys::arch_key(a, keys::ROPE_FREQ_BASE))?
            .unwrap_or(10000.0);
        let scaling = m
            .opt_str(&keys::arch_key(a, keys::ROPE_SCALING_TYPE))?
            .unwrap_or("none");
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            "linear" => {
                let f = m
                    .opt_f32(&keys::arch_key(a, keys::ROPE_SCALING_FACTOR))?
                    .unwrap_or(1.0);
                if f.is_nan() || f <= 0.0 {
                    return Err(invalid(
                        &keys::arch_key(a, keys::ROPE_SCALING_FACTOR),
                        f,
                        "must be > 0",
                    ));
                }
                1.0 / f
            }
            other => {
                return Err(invalid(
                    &keys::arch_key(a, keys::ROPE_SCALING_TYPE),
                    other,
                    "only `none` and `linear` are supported",
                ));
            }
        };
        let mut hp = HParams {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_embd_head_k,
            n_embd_head_v,
            n_ff,
            n_rot,
            f_norm_rms_eps,
            rope_freq_base,
            rope_freq_scale,
            rope_freq_base_swa: rope_freq_base,
            rope_type: RopeType::Norm,
            n_swa: 0,
            swa_layers: vec![false; n_layer],
            f_attention_scale: 1.0 / (n_embd_head_k as f32).sqrt(),
            embd_scale: None,
        };
        if arch == Arch::Gemma3 {
            // llama.cpp llama-model.cpp (LLM_ARCH_GEMMA3): every 6th layer is global, the others use the
            // sliding window with RoPE base 10000 and no scaling; embeddings scaled by sqrt(n_embd); the 27B
            // model (62 layers) scales queries by 1/sqrt(n_embd / n_head) instead of 1/sqrt(head_dim).
            hp.rope_type = RopeType::Neox;
            hp.n_swa = u(m, a, keys::SLIDING_WINDOW)?;
            hp.swa_layers = (0..n_layer).map(|il| il % 6 < 5).collect();
            hp.rope_freq_base_swa = 10000.0;
            hp.embd_scale = Some((n_embd as f32).sqrt());
            if n_layer == 62 {
                hp.f_attention_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
            }
        }
        Ok(hp)
    }

    /// Key/value width per token: `n_embd_head_k · n_head_kv`.
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_embd_head_k * self.n_head_kv
    }

    /// Query width: `n_embd_head_k · n_head`.
    pub fn n_embd_q(&self) -> usize {
        self.n_embd_head_k * self.n_head
    }
}
