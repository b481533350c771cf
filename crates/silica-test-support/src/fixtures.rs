//! Tiny random-weight GGUF models (KBs) with real tensor names, keys and a working tokenizer, for fast tests of
//! every code path. Weights come from a seeded RNG keyed by `seed ^ hash(tensor name)` (as llama.cpp's
//! `test-llama-archs`), so adding a tensor does not shift the others.

use std::path::{Path, PathBuf};

use half::f16;
use rand::{Rng, SeedableRng, rngs::StdRng};
use silica_gguf::{Array, GgmlType, GgufWriter, Value};

/// Architecture of a tiny fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (SwiGLU, RMSNorm, NORM RoPE).
    Llama,
    /// `gemma3` (GELU, QK-norm, post-norms, sliding window, NEOX RoPE).
    Gemma3,
}

/// A tiny model's hyperparameters.
#[derive(Clone, Debug)]
pub struct TinyModel {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size (at least 259: 3 specials + 256 bytes).
    pub n_vocab: usize,
    /// `n_embd`.
    pub n_embd: usize,
    /// `n_head`.
    pub n_head: usize,
    /// `n_head_kv`.
    pub n_head_kv: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// `n_layer`.
    pub n_layer: usize,
    /// `n_ff`.
    pub n_ff: usize,
    /// Training context.
    pub n_ctx_train: usize,
    /// Sliding window (Gemma 3 only).
    pub n_swa: usize,
    /// Type of the 2-D weight matrices (F32, F16 or Q8_0).
    pub weight_type: GgmlType,
    /// Whether `output.weight` is absent (tied to `token_embd.weight`).
    pub tied_output: bool,
    /// Weight seed.
    pub seed: u64,
}

impl TinyModel {
    /// A 2-layer Llama: n_embd 64, 4 heads, 2 KV heads (GQA), n_ff 128, 288-token byte-level vocabulary.
    pub fn llama() -> Self {
        TinyModel {
            arch: Arch::Llama,
            n_vocab: 288,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_layer: 2,
            n_ff: 128,
            n_ctx_train: 256,
            n_swa: 0,
            weight_type: GgmlType::F32,
            tied_output: false,
            seed: 42,
        }
    }

    /// A 6-layer Gemma 3 (5 sliding-window layers of window 8, one global): n_embd 64, head_dim 32.
    pub fn gemma3() -> Self {
        TinyModel {
            arch: Arch::Gemma3,
            n_layer: 6,
            head_dim: 32,
            n_head_kv: 1,
            n_swa: 8,
            tied_output: true,
            ..Self::llama()
        }
    }

    /// With 2-D weights of type `ty`.
    pub fn weight_type(mut self, ty: GgmlType) -> Self {
        self.weight_type = ty;
        self
    }

    /// With a tied output matrix.
    pub fn tied(mut self, tied: bool) -> Self {
        self.tied_output = tied;
        self
    }

    /// Writes the model to `dir/name`.
    pub fn write(&self, path: &Path) -> PathBuf {
        let bytes = self.to_bytes();
        std::fs::write(path, bytes).unwrap();
        path.to_owned()
    }

    /// Writes to a new temporary directory (kept alive by the returned guard).
    pub fn write_temp(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = self.write(&dir.path().join("tiny.gguf"));
        (dir, p)
    }

    fn arch_name(&self) -> &'static str {
        match self.arch {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// The GGUF image.
    pub fn to_bytes(&self) -> Vec<u8> {
        let a = self.arch_name();
        let mut w = GgufWriter::new();
        let u32v = |x: usize| Value::U32(x as u32);
        w.set("general.architecture", Value::String(a.into()));
        w.set("general.name", Value::String(format!("tiny-{a}")));
        w.set(format!("{a}.context_length"), u32v(self.n_ctx_train));
        w.set(format!("{a}.embedding_length"), u32v(self.n_embd));
        w.set(format!("{a}.block_count"), u32v(self.n_layer));
        w.set(format!("{a}.feed_forward_length"), u32v(self.n_ff));
        w.set(format!("{a}.attention.head_count"), u32v(self.n_head));
        w.set(format!("{a}.attention.head_count_kv"), u32v(self.n_head_kv));
        w.set(format!("{a}.attention.key_length"), u32v(self.head_dim));
        w.set(format!("{a}.attention.value_length"), u32v(self.head_dim));
        w.set(format!("{a}.rope.dimension_count"), u32v(self.head_dim));
        w.set(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5));
        w.set(format!("{a}.rope.freq_base"), Value::F32(10000.0));
        if self.arch == Arch::Gemma3 {
            w.set(format!("{a}.attention.sliding_window"), u32v(self.n_swa));
        }
        let ftype: u32 = match self.weight_type {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 7,
            t => panic!("fixtures support F32, F16 and Q8_0 weights, not {t}"),
        };
        w.set("general.file_type", Value::U32(ftype));
        self.set_tokenizer(&mut w);

        let (e, hd, ff) = (self.n_embd as u64, self.head_dim as u64, self.n_ff as u64);
        let (q, kv) = (hd * self.n_head as u64, hd * self.n_head_kv as u64);
        let mut tensors: Vec<(String, Vec<u64>, bool)> =
            vec![("token_embd.weight".into(), vec![e, self.n_vocab as u64], false)];
        tensors.push(("output_norm.weight".into(), vec![e], true));
        if !self.tied_output {
            tensors.push(("output.weight".into(), vec![e, self.n_vocab as u64], false));
        }
        for il in 0..self.n_layer {
            let b = |n: &str| format!("blk.{il}.{n}.weight");
            tensors.push((b("attn_norm"), vec![e], true));
            tensors.push((b("attn_q"), vec![e, q], false));
            tensors.push((b("attn_k"), vec![e, kv], false));
            tensors.push((b("attn_v"), vec![e, kv], false));
            tensors.push((b("attn_output"), vec![q, e], false));
            tensors.push((b("ffn_norm"), vec![e], true));
            tensors.push((b("ffn_gate"), vec![e, ff], false));
            tensors.push((b("ffn_up"), vec![e, ff], false));
            tensors.push((b("ffn_down"), vec![ff, e], false));
            if self.arch == Arch::Gemma3 {
                tensors.push((b("attn_q_norm"), vec![hd], true));
                tensors.push((b("attn_k_norm"), vec![hd], true));
                tensors.push((b("post_attention_norm"), vec![e], true));
                tensors.push((b("post_ffw_norm"), vec![e], true));
            }
        }
        let mut datas = Vec::new();
        for (name, ne, is_norm) in &tensors {
            let n: u64 = ne.iter().product();
            let mut rng = StdRng::seed_from_u64(self.seed ^ fnv1a(name));
            let values: Vec<f32> = if *is_norm {
                (0..n).map(|_| 1.0 + 0.1 * (rng.random::<f32>() - 0.5)).collect()
            } else {
                // Uniform with std ≈ 0.3 keeps activations and logits in a realistic range for tiny widths.
                (0..n).map(|_| (rng.random::<f32>() - 0.5) * 1.0).collect()
            };
            let ty = if *is_norm { GgmlType::F32 } else { self.weight_type };
            w.add_tensor(name.clone(), ty, ne).unwrap();
            datas.push(encode(&values, ty));
        }
        let slices: Vec<&[u8]> = datas.iter().map(Vec::as_slice).collect();
        w.to_bytes(&slices).unwrap()
    }

    /// A byte-level vocabulary: ids 0..3 are specials, 3..259 the 256 bytes, then merged tokens made of
    /// lowercase letter pairs.
    fn set_tokenizer(&self, w: &mut GgufWriter) {
        assert!(self.n_vocab >= 259, "n_vocab must be at least 259");
        let mut tokens: Vec<String>;
        let mut types = vec![3i32, 3, 3];
        let n_extra = self.n_vocab - 259;
        match self.arch {
            Arch::Llama => {
                // gpt2 BPE: bytes as GPT-2's printable unicode mapping; merges of letter pairs.
                tokens = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
                let map = gpt2_byte_chars();
                tokens.extend((0..256).map(|b| map[b].to_string()));
                types.extend(std::iter::repeat_n(1, 256));
                let mut merges = Vec::new();
                for i in 0..n_extra {
                    let (x, y) = (
                        (b'a' + (i / 26) as u8 % 26) as char,
                        (b'a' + (i % 26) as u8) as char,
                    );
                    tokens.push(format!("{x}{y}"));
                    types.push(1);
                    merges.push(format!("{x} {y}"));
                }
                w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
                w.set("tokenizer.ggml.pre", Value::String("default".into()));
                w.set("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
                w.set("tokenizer.ggml.bos_token_id", Value::U32(1));
                w.set("tokenizer.ggml.eos_token_id", Value::U32(2));
                w.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
            }
            Arch::Gemma3 => {
                // SentencePiece: byte-fallback tokens <0xNN>, pieces scored by length.
                tokens = vec!["<pad>".into(), "<eos>".into(), "<bos>".into()];
                tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
                types.extend(std::iter::repeat_n(6, 256));
                let mut scores = vec![0.0f32; 259];
                for i in 0..n_extra {
                    let (x, y) = (
                        (b'a' + (i / 26) as u8 % 26) as char,
                        (b'a' + (i % 26) as u8) as char,
                    );
                    tokens.push(if i % 2 == 0 {
                        format!("▁{x}")
                    } else {
                        format!("{x}{y}")
                    });
                    types.push(1);
                    scores.push(-(i as f32));
                }
                w.set("tokenizer.ggml.model", Value::String("llama".into()));
                w.set("tokenizer.ggml.pre", Value::String("default".into()));
                w.set("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
                w.set("tokenizer.ggml.bos_token_id", Value::U32(2));
                w.set("tokenizer.ggml.eos_token_id", Value::U32(1));
                w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
                w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
            }
        }
        w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
        w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    }
}

/// GPT-2's byte → printable character table (`bytes_to_unicode` in OpenAI's GPT-2 encoder).
pub fn gpt2_byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in printable.iter().zip(&chars) {
        out[*b as usize] = char::from_u32(*c).unwrap();
    }
    out
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Encodes f32 values as `ty` (F32, F16, or Q8_0 with ggml's reference rounding: `d = amax / 127`,
/// `q = round(x / d)`, as `quantize_row_q8_0_ref`).
pub fn encode(values: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(values.len() / 32 * 34);
            for block in values.chunks(32) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
            out
        }
        t => panic!("encode: unsupported type {t}"),
    }
}
