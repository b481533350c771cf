//! `silica synth`: random-weight models with the real tensor names, shapes and hyperparameters of published
//! models, and a working tokenizer, so that silica and llama.cpp both load and run them.
//!
//! Weights are drawn from N(0, 0.02) (the initialisation scale of GPT-2 and Llama), norm weights are 1, Llama 3
//! `rope_freqs` are computed as `convert_hf_to_gguf.py` does. Every row is drawn from its own seeded generator,
//! so a file depends only on the seed, not on thread count or slab size. Quantized types are written directly
//! through the same mix rules as `quantize` (no F16 intermediate).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::Deserialize;
use silica_gguf::{Array, FileType, GgmlType, GgufFile, GgufWriter, TensorInfo, Value, keys};

use crate::recipe::{self, ModelShape, Planned, RecipeOptions};
use crate::stream::{self, rows_per_slab};
use crate::{ConvertError, quantize};

/// Standard deviation of the random weights.
pub const WEIGHT_STD: f32 = 0.02;

/// Architectures synth writes (their GGUF `general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthArch {
    /// `llama` (Llama 2/3, Mistral, SmolLM2).
    Llama,
    /// `qwen2` (Llama with Q/K/V biases).
    Qwen2,
    /// `gemma3` (QK norms, post-norms, sliding-window layers).
    Gemma3,
}

impl SynthArch {
    /// The `general.architecture` value.
    pub fn name(self) -> &'static str {
        match self {
            SynthArch::Llama => "llama",
            SynthArch::Qwen2 => "qwen2",
            SynthArch::Gemma3 => "gemma3",
        }
    }
}

/// Llama 3.1+ RoPE frequency scaling (`rope_scaling.rope_type = "llama3"` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Rope {
    /// `factor`.
    pub factor: f32,
    /// `low_freq_factor`.
    pub low_freq_factor: f32,
    /// `high_freq_factor`.
    pub high_freq_factor: f32,
    /// `original_max_position_embeddings`.
    pub original_context: u32,
}

/// The hyperparameters of a model to synthesize.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// `general.name`.
    pub name: String,
    /// Architecture.
    pub arch: SynthArch,
    /// Vocabulary size (replaced by the tokenizer's when one is copied from a file).
    pub n_vocab: u32,
    /// `embedding_length`.
    pub n_embd: u32,
    /// `block_count`.
    pub n_layer: u32,
    /// `attention.head_count`.
    pub n_head: u32,
    /// `attention.head_count_kv`.
    pub n_head_kv: u32,
    /// `attention.key_length` = `value_length`.
    pub head_dim: u32,
    /// `feed_forward_length`.
    pub n_ff: u32,
    /// `context_length` (training context).
    pub n_ctx_train: u32,
    /// `rope.freq_base`.
    pub rope_freq_base: f32,
    /// `attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Output projection shares the token embedding (no `output.weight`).
    pub tied: bool,
    /// `attention.sliding_window` (Gemma 3).
    pub sliding_window: Option<u32>,
    /// Linear RoPE scaling factor (`rope.scaling.factor`, Gemma 3 4B).
    pub rope_linear_factor: Option<f32>,
    /// Llama 3 RoPE scaling, written as the `rope_freqs.weight` tensor.
    pub llama3_rope: Option<Llama3Rope>,
}

/// A built-in shape.
#[derive(Clone, Debug)]
pub struct Preset {
    /// `--shape` name.
    pub name: &'static str,
    /// Parameter count the model's publisher gives (Hugging Face model card / safetensors index).
    pub published_params: u64,
    /// The configuration.
    pub config: SynthConfig,
}

const LLAMA3_ROPE: Llama3Rope = Llama3Rope {
    factor: 32.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 8192,
};

/// Family-specific settings of a preset row.
#[derive(Clone, Copy, Debug)]
enum Family {
    /// Plain Llama / Mistral / Qwen2 / SmolLM2.
    Plain,
    /// Llama 3.1+ RoPE scaling ([`LLAMA3_ROPE`]).
    Llama3Rope,
    /// Gemma 3: head_dim 256, this sliding window, and an optional linear RoPE factor.
    Gemma { swa: u32, rope_linear: Option<f32> },
}

/// One preset: name, `general.name`, published parameter count, architecture,
/// `[n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train]`, `rope_theta`, `rms_norm_eps`, tied output,
/// family settings. Values are each model's Hugging Face `config.json`; counts are the model cards' (Gemma 3 4B:
/// the text decoder only, without the vision tower).
type PresetRow = (
    &'static str,
    &'static str,
    u64,
    SynthArch,
    [u32; 7],
    f32,
    f32,
    bool,
    Family,
);

#[rustfmt::skip] // a table: one preset per line
const PRESETS: &[PresetRow] = {
    use Family::{Gemma, Llama3Rope, Plain};
    use SynthArch::{Gemma3, Llama, Qwen2};
    const G512: Family = Gemma { swa: 512, rope_linear: None };
    &[
        ("llama-2-7b", "Llama 2 7B", 6_738_415_616, Llama, [32000, 4096, 32, 32, 32, 11008, 4096], 1e4, 1e-5, false, Plain),
        ("llama-2-13b", "Llama 2 13B", 13_015_864_320, Llama, [32000, 5120, 40, 40, 40, 13824, 4096], 1e4, 1e-5, false, Plain),
        ("llama-3.2-1b", "Llama 3.2 1B", 1_235_814_400, Llama, [128256, 2048, 16, 32, 8, 8192, 131072], 5e5, 1e-5, true, Llama3Rope),
        ("llama-3.2-3b", "Llama 3.2 3B", 3_212_749_824, Llama, [128256, 3072, 28, 24, 8, 8192, 131072], 5e5, 1e-5, true, Llama3Rope),
        ("llama-3-8b", "Llama 3 8B", 8_030_261_248, Llama, [128256, 4096, 32, 32, 8, 14336, 8192], 5e5, 1e-5, false, Plain),
        ("llama-3-70b", "Llama 3 70B", 70_553_706_496, Llama, [128256, 8192, 80, 64, 8, 28672, 8192], 5e5, 1e-5, false, Plain),
        ("mistral-7b", "Mistral 7B v0.1", 7_241_732_096, Llama, [32000, 4096, 32, 32, 8, 14336, 32768], 1e4, 1e-5, false, Plain),
        ("qwen2.5-0.5b", "Qwen2.5 0.5B", 494_032_768, Qwen2, [151936, 896, 24, 14, 2, 4864, 32768], 1e6, 1e-6, true, Plain),
        ("qwen2.5-1.5b", "Qwen2.5 1.5B", 1_543_714_304, Qwen2, [151936, 1536, 28, 12, 2, 8960, 32768], 1e6, 1e-6, true, Plain),
        ("qwen2.5-7b", "Qwen2.5 7B", 7_615_616_512, Qwen2, [152064, 3584, 28, 28, 4, 18944, 32768], 1e6, 1e-6, false, Plain),
        ("smollm2-135m", "SmolLM2 135M", 134_515_008, Llama, [49152, 576, 30, 9, 3, 1536, 8192], 1e5, 1e-5, true, Plain),
        ("smollm2-360m", "SmolLM2 360M", 361_821_120, Llama, [49152, 960, 32, 15, 5, 2560, 8192], 1e5, 1e-5, true, Plain),
        ("smollm2-1.7b", "SmolLM2 1.7B", 1_711_376_384, Llama, [49152, 2048, 24, 32, 32, 8192, 8192], 1.3e5, 1e-5, true, Plain),
        ("gemma-3-270m", "Gemma 3 270M", 268_098_176, Gemma3, [262144, 640, 18, 4, 1, 2048, 32768], 1e6, 1e-6, true, G512),
        ("gemma-3-1b", "Gemma 3 1B", 999_885_952, Gemma3, [262144, 1152, 26, 4, 1, 6912, 32768], 1e6, 1e-6, true, G512),
        ("gemma-3-4b", "Gemma 3 4B", 3_880_099_328, Gemma3, [262208, 2560, 34, 8, 4, 10240, 131072], 1e6, 1e-6, true, Gemma { swa: 1024, rope_linear: Some(8.0) }),
    ]
};

/// The built-in shapes. Hyperparameters are those of each model's Hugging Face `config.json`; the published
/// parameter counts are the model cards' (Gemma 3 4B: the text decoder only, without the vision tower).
pub fn presets() -> Vec<Preset> {
    PRESETS
        .iter()
        .map(
            |&(name, title, published_params, arch, d, rope_freq_base, rms_eps, tied, family)| {
                let [n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train] = d;
                let mut config = SynthConfig {
                    name: title.to_owned(),
                    arch,
                    n_vocab,
                    n_embd,
                    n_layer,
                    n_head,
                    n_head_kv,
                    head_dim: n_embd / n_head,
                    n_ff,
                    n_ctx_train,
                    rope_freq_base,
                    rms_eps,
                    tied,
                    sliding_window: None,
                    rope_linear_factor: None,
                    llama3_rope: None,
                };
                match family {
                    Family::Plain => {}
                    Family::Llama3Rope => config.llama3_rope = Some(LLAMA3_ROPE),
                    Family::Gemma { swa, rope_linear } => {
                        config.head_dim = 256;
                        config.sliding_window = Some(swa);
                        config.rope_linear_factor = rope_linear;
                    }
                }
                Preset {
                    name,
                    published_params,
                    config,
                }
            },
        )
        .collect()
}

/// The preset named `name` (case-insensitive).
///
/// # Errors
/// [`ConvertError::UnknownPreset`] with the closest names.
pub fn preset(name: &str) -> Result<Preset, ConvertError> {
    let all = presets();
    let lower = name.to_ascii_lowercase();
    if let Some(p) = all.iter().find(|p| p.name == lower) {
        return Ok(p.clone());
    }
    Err(ConvertError::UnknownPreset {
        name: name.to_owned(),
        closest: closest(name, all.iter().map(|p| p.name), 3),
    })
}

/// The up-to-`n` names of `known` closest to `name` by [`edit_distance`] (case-insensitive), comma-separated:
/// the "did you mean" list of an unknown-name error.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>, n: usize) -> String {
    let lower = name.to_ascii_lowercase();
    let mut by_distance: Vec<(usize, &str)> = known
        .into_iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .collect();
    by_distance.sort();
    by_distance.dedup_by(|a, b| a.1 == b.1);
    by_distance
        .iter()
        .take(n)
        .map(|d| d.1)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance, for "did you mean" lists.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The fields of a Hugging Face `config.json` synth reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: u32,
    hidden_size: u32,
    num_hidden_layers: u32,
    num_attention_heads: u32,
    num_key_value_heads: Option<u32>,
    head_dim: Option<u32>,
    intermediate_size: u32,
    max_position_embeddings: Option<u32>,
    rope_theta: Option<f32>,
    rms_norm_eps: Option<f32>,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<u32>,
    rope_scaling: Option<serde_json::Value>,
}

impl SynthConfig {
    /// Reads a Hugging Face `config.json` (`model_type` llama, mistral, qwen2, gemma3_text, or gemma3 with a
    /// `text_config`).
    ///
    /// # Errors
    /// [`ConvertError::Io`] if unreadable; [`ConvertError::BadConfig`] naming the file and the field.
    pub fn from_hf_config(path: &Path) -> Result<Self, ConvertError> {
        let text = fs_err::read_to_string(path).map_err(|source| ConvertError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| ConvertError::BadConfig {
            what: path.display().to_string(),
            reason,
        };
        let mut raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // Multimodal Gemma 3 nests the decoder's config.
        if raw.get("model_type").and_then(|v| v.as_str()) == Some("gemma3")
            && let Some(t) = raw.get("text_config").cloned()
        {
            raw = t;
            raw["model_type"] = "gemma3_text".into();
        }
        let hf: HfConfig = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        let arch = match hf.model_type.as_str() {
            "llama" | "mistral" => SynthArch::Llama,
            "qwen2" => SynthArch::Qwen2,
            "gemma3_text" => SynthArch::Gemma3,
            other => {
                return Err(bad(format!(
                    "model_type `{other}` is not one synth writes (llama, mistral, qwen2, gemma3)"
                )));
            }
        };
        let gemma = arch == SynthArch::Gemma3;
        if hf.num_attention_heads == 0 {
            return Err(bad("num_attention_heads is 0".into()));
        }
        let mut c = SynthConfig {
            name: path
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(|| hf.model_type.clone(), |n| n.to_string_lossy().into_owned()),
            arch,
            n_vocab: hf.vocab_size,
            n_embd: hf.hidden_size,
            n_layer: hf.num_hidden_layers,
            n_head: hf.num_attention_heads,
            n_head_kv: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads),
            n_ff: hf.intermediate_size,
            n_ctx_train: hf.max_position_embeddings.unwrap_or(4096),
            rope_freq_base: hf.rope_theta.unwrap_or(if gemma { 1e6 } else { 1e4 }),
            rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            tied: hf.tie_word_embeddings.unwrap_or(gemma),
            sliding_window: if gemma { hf.sliding_window } else { None },
            rope_linear_factor: None,
            llama3_rope: None,
        };
        if let Some(rs) = &hf.rope_scaling {
            let ty = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(|v| v.as_str());
            let f = |k: &str| rs.get(k).and_then(|v| v.as_f64()).map(|x| x as f32);
            match ty {
                Some("llama3") => {
                    c.llama3_rope = Some(Llama3Rope {
                        factor: f("factor").ok_or_else(|| bad("rope_scaling.factor missing".into()))?,
                        low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                        high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                        original_context: f("original_max_position_embeddings").unwrap_or(8192.0) as u32,
                    })
                }
                Some("linear") => c.rope_linear_factor = f("factor"),
                _ => {}
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the shape is one a model can have.
    ///
    /// # Errors
    /// [`ConvertError::BadConfig`].
    pub fn validate(&self) -> Result<(), ConvertError> {
        let bad = |reason: &str| ConvertError::BadConfig {
            what: self.name.clone(),
            reason: reason.to_owned(),
        };
        let dims = [
            self.n_vocab,
            self.n_embd,
            self.n_layer,
            self.n_head,
            self.n_head_kv,
            self.head_dim,
            self.n_ff,
        ];
        if dims.contains(&0) {
            return Err(bad("every dimension must be positive"));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(bad("head_count must be a multiple of head_count_kv"));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad("head_dim must be even for RoPE"));
        }
        Ok(())
    }

    /// The tensors of the model, in GGUF order (`ne` in ggml order: `{in, out}` for matrices), and whether each
    /// is a norm weight (set to 1).
    pub fn tensors(&self) -> Vec<(String, Vec<u64>, TensorKind)> {
        let (e, hd, ff, v) = (
            self.n_embd as u64,
            self.head_dim as u64,
            self.n_ff as u64,
            self.n_vocab as u64,
        );
        let (q, kv) = (hd * self.n_head as u64, hd * self.n_head_kv as u64);
        use TensorKind::{Bias, Norm, RopeFreqs, Weight};
        let mut t = vec![("token_embd.weight".to_owned(), vec![e, v], Weight)];
        if self.llama3_rope.is_some() {
            t.push(("rope_freqs.weight".into(), vec![hd / 2], RopeFreqs));
        }
        for il in 0..self.n_layer {
            let b = |n: &str| format!("blk.{il}.{n}");
            t.push((b("attn_norm.weight"), vec![e], Norm));
            t.push((b("attn_q.weight"), vec![e, q], Weight));
            t.push((b("attn_k.weight"), vec![e, kv], Weight));
            t.push((b("attn_v.weight"), vec![e, kv], Weight));
            if self.arch == SynthArch::Qwen2 {
                t.push((b("attn_q.bias"), vec![q], Bias));
                t.push((b("attn_k.bias"), vec![kv], Bias));
                t.push((b("attn_v.bias"), vec![kv], Bias));
            }
            t.push((b("attn_output.weight"), vec![q, e], Weight));
            if self.arch == SynthArch::Gemma3 {
                t.push((b("attn_q_norm.weight"), vec![hd], Norm));
                t.push((b("attn_k_norm.weight"), vec![hd], Norm));
                t.push((b("post_attention_norm.weight"), vec![e], Norm));
                t.push((b("post_ffw_norm.weight"), vec![e], Norm));
            }
            t.push((b("ffn_norm.weight"), vec![e], Norm));
            t.push((b("ffn_gate.weight"), vec![e, ff], Weight));
            t.push((b("ffn_up.weight"), vec![e, ff], Weight));
            t.push((b("ffn_down.weight"), vec![ff, e], Weight));
        }
        t.push(("output_norm.weight".into(), vec![e], Norm));
        if !self.tied {
            t.push(("output.weight".into(), vec![e, v], Weight));
        }
        t
    }

    /// Number of parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.tensors()
            .iter()
            .map(|(_, ne, _)| ne.iter().product::<u64>())
            .sum()
    }

    /// The hyperparameter metadata, under `{arch}.` keys as `convert_hf_to_gguf.py` writes them.
    fn metadata(&self, w: &mut GgufWriter) {
        let a = self.arch.name();
        let k = |s: &str| keys::arch_key(a, s);
        w.set(keys::GENERAL_ARCHITECTURE, Value::String(a.into()));
        w.set("general.type", Value::String("model".into()));
        w.set(
            keys::GENERAL_NAME,
            Value::String(format!("{} (silica synth, random weights)", self.name)),
        );
        w.set(k(keys::CONTEXT_LENGTH), Value::U32(self.n_ctx_train));
        w.set(k(keys::EMBEDDING_LENGTH), Value::U32(self.n_embd));
        w.set(k(keys::BLOCK_COUNT), Value::U32(self.n_layer));
        w.set(k(keys::FEED_FORWARD_LENGTH), Value::U32(self.n_ff));
        w.set(k(keys::HEAD_COUNT), Value::U32(self.n_head));
        w.set(k(keys::HEAD_COUNT_KV), Value::U32(self.n_head_kv));
        w.set(k(keys::ROPE_FREQ_BASE), Value::F32(self.rope_freq_base));
        w.set(k(keys::LAYER_NORM_RMS_EPSILON), Value::F32(self.rms_eps));
        if self.head_dim != self.n_embd / self.n_head || self.arch == SynthArch::Gemma3 {
            w.set(k(keys::KEY_LENGTH), Value::U32(self.head_dim));
            w.set(k(keys::VALUE_LENGTH), Value::U32(self.head_dim));
        }
        if self.arch == SynthArch::Llama {
            w.set(k(keys::ROPE_DIMENSION_COUNT), Value::U32(self.head_dim));
            w.set(k(keys::VOCAB_SIZE), Value::U32(self.n_vocab));
        }
        if let Some(swa) = self.sliding_window {
            w.set(k(keys::SLIDING_WINDOW), Value::U32(swa));
        }
        if let Some(f) = self.rope_linear_factor {
            w.set(k(keys::ROPE_SCALING_TYPE), Value::String("linear".into()));
            w.set(k(keys::ROPE_SCALING_FACTOR), Value::F32(f));
        }
    }

    /// `rope_freqs.weight`: per-frequency divisors of Llama 3 RoPE scaling (`LlamaModel.generate_extra_tensors`
    /// in llama.cpp's `convert_hf_to_gguf.py`).
    fn rope_freqs(&self) -> Vec<f32> {
        let Some(r) = self.llama3_rope else {
            return Vec::new();
        };
        let dim = self.head_dim as f64;
        let low_wavelen = r.original_context as f64 / r.low_freq_factor as f64;
        let high_wavelen = r.original_context as f64 / r.high_freq_factor as f64;
        (0..self.head_dim as usize / 2)
            .map(|i| {
                let freq = 1.0 / (self.rope_freq_base as f64).powf(2.0 * i as f64 / dim);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    r.factor as f64
                } else {
                    let smooth = (r.original_context as f64 / wavelen - r.low_freq_factor as f64)
                        / (r.high_freq_factor as f64 - r.low_freq_factor as f64);
                    1.0 / ((1.0 - smooth) / r.factor as f64 + smooth)
                };
                f as f32
            })
            .collect()
    }
}

/// What a tensor's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A weight matrix: N(0, [`WEIGHT_STD`]).
    Weight,
    /// A bias vector: N(0, [`WEIGHT_STD`]).
    Bias,
    /// A norm weight: 1.
    Norm,
    /// Llama 3 RoPE frequency factors.
    RopeFreqs,
}

/// Where the vocabulary comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A byte-level BPE vocabulary built in: the 256 bytes, `<|begin_of_text|>`, `<|end_of_text|>`, and
    /// `<unused{i}>` filler tokens up to the preset's vocabulary size.
    Builtin,
    /// Every `tokenizer.*` key of a real GGUF file; the vocabulary size becomes that tokenizer's.
    From(PathBuf),
}

/// Parameters of one synthesis.
#[derive(Clone, Debug)]
pub struct SynthParams {
    /// The shape.
    pub config: SynthConfig,
    /// The file type (mix) to write.
    pub file_type: FileType,
    /// `--pure`.
    pub pure: bool,
    /// Seed of the weights.
    pub seed: u64,
    /// The vocabulary.
    pub tokenizer: TokenizerSource,
    /// Worker threads (0 = one per core).
    pub n_threads: usize,
}

/// What a synthesis wrote.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    /// Tensors and their types.
    pub tensors: Vec<Planned>,
    /// Parameters.
    pub n_params: u64,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// A random normal value stream for one row: seeded by the file seed, the tensor and the row.
fn row_rng(seed: u64, tensor_hash: u64, row: u64) -> SmallRng {
    // splitmix64 finaliser over the three inputs.
    let mut z = seed ^ tensor_hash.rotate_left(17) ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// FNV-1a of a tensor name.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes the built-in vocabulary's `tokenizer.*` keys.
fn builtin_tokenizer(w: &mut GgufWriter, n_vocab: u32) -> Result<(), ConvertError> {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| silica_tokenizer::gpt2_byte_to_char(b).to_string())
        .collect();
    let mut types = vec![1i32; 256];
    tokens.push("<|begin_of_text|>".into());
    tokens.push("<|end_of_text|>".into());
    types.extend([3, 3]);
    if (n_vocab as usize) < tokens.len() {
        return Err(ConvertError::BadConfig {
            what: "built-in tokenizer".into(),
            reason: format!(
                "needs a vocabulary of at least {} tokens, the shape has {n_vocab}",
                tokens.len()
            ),
        });
    }
    for i in tokens.len()..n_vocab as usize {
        tokens.push(format!("<unused{i}>"));
        types.push(1);
    }
    w.set(keys::TOKENIZER_MODEL, Value::String("gpt2".into()));
    w.set(keys::TOKENIZER_PRE, Value::String("default".into()));
    w.set(keys::TOKENIZER_TOKENS, Value::Array(Array::String(tokens)));
    w.set(keys::TOKENIZER_TOKEN_TYPE, Value::Array(Array::I32(types)));
    w.set(keys::TOKENIZER_MERGES, Value::Array(Array::String(Vec::new())));
    w.set(keys::TOKENIZER_BOS_ID, Value::U32(256));
    w.set(keys::TOKENIZER_EOS_ID, Value::U32(257));
    w.set(keys::TOKENIZER_ADD_BOS, Value::Bool(true));
    Ok(())
}

/// The tensors of `config` with the types the mix of `file_type` gives them (no tokenizer needed): what
/// `synth --list` sizes files with.
///
/// # Errors
/// As [`recipe::plan`], and [`ConvertError::CannotConvert`] / [`ConvertError::RowLength`] for a type that cannot
/// be written.
pub fn plan_tensors(
    config: &SynthConfig,
    file_type: FileType,
    pure: bool,
) -> Result<Vec<Planned>, ConvertError> {
    let infos: Vec<TensorInfo> = config
        .tensors()
        .into_iter()
        .map(|(name, ne, _)| {
            let n_bytes = TensorInfo::data_bytes(&name, GgmlType::F32, &ne)?;
            Ok(TensorInfo {
                name,
                ne,
                ty: GgmlType::F32,
                offset: 0,
                n_bytes,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let shape = ModelShape {
        arch: config.arch.name().to_owned(),
        n_layer: config.n_layer,
        n_head: config.n_head,
        n_head_kv: config.n_head_kv,
        n_expert: 0,
    };
    let mut opts = RecipeOptions::new(file_type);
    opts.pure = pure;
    let planned = recipe::plan(&shape, &infos, &opts)?;
    quantize::check_plan(&planned)?;
    Ok(planned)
}

/// Tensor data bytes of `config` written as `file_type` (the mix applied).
///
/// # Errors
/// As [`plan_tensors`].
pub fn tensor_data_bytes(config: &SynthConfig, file_type: FileType) -> Result<u64, ConvertError> {
    Ok(plan_tensors(config, file_type, false)?
        .iter()
        .map(Planned::n_bytes)
        .sum::<Result<u64, _>>()?)
}

/// Builds the header of the file `params` describes, with the types of each tensor.
///
/// # Errors
/// As [`synth_file`], before anything is written.
pub fn plan(params: &SynthParams) -> Result<(GgufWriter, Vec<Planned>, SynthConfig), ConvertError> {
    let mut config = params.config.clone();
    let mut w = GgufWriter::new();
    match &params.tokenizer {
        TokenizerSource::Builtin => {
            config.validate()?;
            config.metadata(&mut w);
            builtin_tokenizer(&mut w, config.n_vocab)?;
        }
        TokenizerSource::From(path) => {
            let src = GgufFile::open_unmapped(path)?;
            config.n_vocab = src.metadata().get_string_array(keys::TOKENIZER_TOKENS)?.len() as u32;
            config.validate()?;
            config.metadata(&mut w);
            for (k, v) in src.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
                w.set(k, v.clone());
            }
        }
    }
    let planned = plan_tensors(&config, params.file_type, params.pure)?;
    w.set(keys::GENERAL_FILE_TYPE, Value::U32(params.file_type.id()));
    w.set(
        keys::GENERAL_QUANTIZATION_VERSION,
        Value::U32(quantize::QUANTIZATION_VERSION),
    );
    for p in &planned {
        w.add_tensor(p.info.name.clone(), p.ty, &p.info.ne)?;
    }
    Ok((w, planned, config))
}

/// Writes a random-weight model to `output` (atomically, after checking free space), calling `progress` after
/// each tensor with (tensors done, tensors total, bytes done, bytes total).
///
/// # Errors
/// [`ConvertError::BadConfig`] for an impossible shape, [`ConvertError::RowLength`] and friends for a type that
/// cannot hold a row, [`ConvertError::InsufficientDisk`], and GGUF/I/O errors naming the file.
pub fn synth_file(
    params: &SynthParams,
    output: &Path,
    progress: &mut dyn FnMut(usize, usize, u64, u64),
) -> Result<SynthSummary, ConvertError> {
    let t0 = Instant::now();
    let (w, planned, config) = plan(params)?;
    let kinds: std::collections::HashMap<String, TensorKind> =
        config.tensors().into_iter().map(|(n, _, k)| (n, k)).collect();
    let file_bytes = w.file_bytes();
    let bytes_total: u64 = w.tensors().iter().map(|t| t.n_bytes).sum();
    let pool = stream::pool(params.n_threads)?;
    let mut sink = stream::create_checked(w, output)?;
    let rope_freqs = config.rope_freqs();
    let normal = Normal::new(0.0f32, WEIGHT_STD).map_err(|e| ConvertError::BadConfig {
        what: "weight distribution".into(),
        reason: e.to_string(),
    })?;
    let (mut values, mut enc) = (Vec::new(), Vec::new());
    let mut bytes_done = 0;
    for (i, p) in planned.iter().enumerate() {
        let t = &p.info;
        let kind = kinds.get(&t.name).copied().unwrap_or(TensorKind::Weight);
        let n_per_row = t.ne.first().copied().unwrap_or(1) as usize;
        let n_rows = (t.n_elements() / n_per_row.max(1) as u64) as usize;
        let row_bytes = stream::row_bytes(&t.name, p.ty, n_per_row)?;
        let rows = rows_per_slab(4 * n_per_row + row_bytes);
        let hash = fnv1a(&t.name);
        for r0 in (0..n_rows).step_by(rows) {
            let r1 = (r0 + rows).min(n_rows);
            values.resize((r1 - r0) * n_per_row, 0.0);
            pool.install(|| {
                values
                    .par_chunks_mut(n_per_row.max(1))
                    .enumerate()
                    .for_each(|(j, row)| match kind {
                        TensorKind::Norm => row.fill(1.0),
                        TensorKind::RopeFreqs => row.copy_from_slice(&rope_freqs),
                        TensorKind::Weight | TensorKind::Bias => {
                            let mut rng = row_rng(params.seed, hash, (r0 + j) as u64);
                            row.iter_mut().for_each(|v| *v = normal.sample(&mut rng));
                        }
                    })
            });
            enc.resize((r1 - r0) * row_bytes, 0);
            stream::encode_rows(&pool, &t.name, p.ty, &values, n_per_row, &mut enc)?;
            sink.write_tensor_part(&t.name, &enc)?;
        }
        bytes_done += row_bytes as u64 * n_rows as u64;
        progress(i + 1, planned.len(), bytes_done, bytes_total);
    }
    sink.finish()?;
    Ok(SynthSummary {
        n_params: config.n_params(),
        tensors: planned,
        file_bytes,
        elapsed: t0.elapsed(),
    })
}
