//! What the planner knows about a model: its hyperparameters and every tensor's element type and bytes.

use std::path::{Path, PathBuf};

use serde::Serialize;
use silica_convert::synth::{self, SynthConfig};
use silica_gguf::{FileType, GgmlType, GgufFile, Metadata, keys};

use crate::calibrate::{N_CLASSES, type_class};
use crate::{Error, Result};

/// One tensor: GGUF name, `ne` in ggml order (`{in, out}` for a matrix), element type and data bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorDesc {
    /// GGUF tensor name (`blk.3.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order (fastest first).
    pub ne: Vec<u64>,
    /// Element type.
    #[serde(serialize_with = "crate::names::ggml_type")]
    pub ty: GgmlType,
    /// Data bytes (`ty`'s row bytes × rows).
    pub n_bytes: u64,
}

impl TensorDesc {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// The layer index of a `blk.{il}.` tensor.
    pub fn layer(&self) -> Option<u32> {
        self.name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
    }
}

/// Where a description came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A GGUF file's header.
    Gguf {
        /// The file.
        path: PathBuf,
        /// Bytes on disk now.
        file_bytes: u64,
        /// Bytes once complete (the end of the last tensor); more than `file_bytes` while downloading.
        expected_file_bytes: u64,
    },
    /// A Hugging Face `config.json`, with a file type's mix applied.
    HfConfig {
        /// The file.
        path: PathBuf,
    },
    /// A built-in preset (`silica synth --list`), with a file type's mix applied.
    Preset {
        /// The preset's name.
        name: String,
    },
}

/// A model as the planner sees it. Dimensions use llama.cpp's names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelDesc {
    /// Display name (`general.name`, the preset's title, or the config's folder).
    pub name: String,
    /// `general.architecture`.
    pub arch: String,
    /// Where it came from.
    pub source: ModelSource,
    /// The file type (`general.file_type`, or the mix applied to a config or preset).
    #[serde(serialize_with = "crate::names::file_type")]
    pub file_type: Option<FileType>,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// `{arch}.embedding_length`.
    pub n_embd: u64,
    /// `{arch}.attention.head_count`.
    pub n_head: u64,
    /// `{arch}.attention.head_count_kv`.
    pub n_head_kv: u64,
    /// `{arch}.attention.key_length` (default `n_embd / n_head`).
    pub n_embd_head_k: u64,
    /// `{arch}.attention.value_length` (default `n_embd / n_head`).
    pub n_embd_head_v: u64,
    /// `{arch}.feed_forward_length` (the largest, when given per layer).
    pub n_ff: u64,
    /// Vocabulary size.
    pub n_vocab: u64,
    /// `{arch}.attention.sliding_window`, 0 without one.
    pub n_swa: u64,
    /// Per layer: whether it attends only within the sliding window (Gemma 3: five of every six layers, as
    /// llama.cpp's `LLM_ARCH_GEMMA3` sets `swa_layers`).
    pub swa_layers: Vec<bool>,
    /// Every tensor.
    pub tensors: Vec<TensorDesc>,
}

impl ModelDesc {
    /// Reads the description from a GGUF file's header only (instant on a 40 GB file; a partly downloaded
    /// file whose header is complete will do).
    ///
    /// # Errors
    /// [`Error::Gguf`] for an unreadable or malformed header; [`Error::Metadata`] naming a missing key.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let f = GgufFile::open_partial(path)?;
        let md = f.metadata();
        let meta = |source| Error::Metadata {
            path: path.to_owned(),
            source,
        };
        let arch = md.get_str(keys::GENERAL_ARCHITECTURE).map_err(meta)?.to_owned();
        let k = |s: &str| keys::arch_key(&arch, s);
        let n_layer = md.get_u32(&k(keys::BLOCK_COUNT)).map_err(meta)?;
        let n_embd = md.get_u32(&k(keys::EMBEDDING_LENGTH)).map_err(meta)? as u64;
        let n_head = max_int(md, &k(keys::HEAD_COUNT)).map_err(meta)?.unwrap_or(0);
        let n_head_kv = max_int(md, &k(keys::HEAD_COUNT_KV))
            .map_err(meta)?
            .unwrap_or(n_head);
        let n_ff = max_int(md, &k(keys::FEED_FORWARD_LENGTH))
            .map_err(meta)?
            .unwrap_or(0);
        if n_head == 0 {
            return Err(Error::Invalid {
                what: "model",
                reason: format!("{}: {} is 0 or missing", path.display(), k(keys::HEAD_COUNT)),
            });
        }
        let head = n_embd / n_head;
        let n_embd_head_k = md
            .opt_u32(&k(keys::KEY_LENGTH))
            .map_err(meta)?
            .map_or(head, u64::from);
        let n_embd_head_v = md
            .opt_u32(&k(keys::VALUE_LENGTH))
            .map_err(meta)?
            .map_or(head, u64::from);
        let tensors: Vec<TensorDesc> = f
            .tensors()
            .iter()
            .map(|t| TensorDesc {
                name: t.name.clone(),
                ne: t.ne.clone(),
                ty: t.ty,
                n_bytes: t.n_bytes,
            })
            .collect();
        let n_vocab = match md.opt_u32(&k(keys::VOCAB_SIZE)).map_err(meta)? {
            Some(v) => v as u64,
            None => match md.get(keys::TOKENIZER_TOKENS).and_then(|v| v.as_array()) {
                Some(a) => a.len() as u64,
                None => tensors
                    .iter()
                    .find(|t| t.name == "token_embd.weight")
                    .and_then(|t| t.ne.get(1).copied())
                    .unwrap_or(0),
            },
        };
        let n_swa = md.opt_u32(&k(keys::SLIDING_WINDOW)).map_err(meta)?.unwrap_or(0) as u64;
        let file_type = md
            .opt_u32(keys::GENERAL_FILE_TYPE)
            .map_err(meta)?
            .and_then(FileType::from_id);
        let name = md
            .opt_str(keys::GENERAL_NAME)
            .map_err(meta)?
            .map(str::to_owned)
            .unwrap_or_else(|| {
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            });
        Ok(ModelDesc {
            name,
            swa_layers: swa_layers(&arch, n_layer, n_swa),
            arch,
            source: ModelSource::Gguf {
                path: path.to_owned(),
                file_bytes: f.file_bytes(),
                expected_file_bytes: f.expected_file_bytes(),
            },
            file_type,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            n_embd_head_k,
            n_embd_head_v,
            n_ff,
            n_vocab,
            n_swa,
            tensors,
        })
    }

    /// Describes the model of a Hugging Face `config.json` (llama, mistral, qwen2, gemma3) written as
    /// `file_type` with llama.cpp's mix rules (`llama-quant.cpp`, as `silica quantize`).
    ///
    /// # Errors
    /// [`Error::Convert`] naming the file and field, or a file type whose mix cannot be planned (IQ types need an
    /// importance matrix).
    pub fn from_hf_config(path: &Path, file_type: FileType) -> Result<Self> {
        let config = SynthConfig::from_hf_config(path)?;
        Self::from_config(
            &config,
            file_type,
            ModelSource::HfConfig {
                path: path.to_owned(),
            },
        )
    }

    /// Describes a built-in preset (`llama-3-70b`, `gemma-3-270m`...; `silica synth --list`) written as
    /// `file_type`.
    ///
    /// # Errors
    /// [`Error::Convert`] for an unknown preset (listing the closest names) or a file type that cannot be
    /// planned.
    pub fn from_preset(name: &str, file_type: FileType) -> Result<Self> {
        let preset = synth::preset(name)?;
        Self::from_config(
            &preset.config,
            file_type,
            ModelSource::Preset {
                name: preset.name.to_owned(),
            },
        )
    }

    fn from_config(c: &SynthConfig, file_type: FileType, source: ModelSource) -> Result<Self> {
        let planned = synth::plan_tensors(c, file_type, false)?;
        let tensors = planned
            .iter()
            .map(|p| {
                Ok(TensorDesc {
                    name: p.info.name.clone(),
                    ne: p.info.ne.clone(),
                    ty: p.ty,
                    n_bytes: p.n_bytes()?,
                })
            })
            .collect::<Result<_>>()?;
        let arch = c.arch.name().to_owned();
        let n_swa = c.sliding_window.unwrap_or(0) as u64;
        Ok(ModelDesc {
            name: c.name.clone(),
            swa_layers: swa_layers(&arch, c.n_layer, n_swa),
            arch,
            source,
            file_type: Some(file_type),
            n_layer: c.n_layer,
            n_embd: c.n_embd as u64,
            n_head: c.n_head as u64,
            n_head_kv: c.n_head_kv as u64,
            n_embd_head_k: c.head_dim as u64,
            n_embd_head_v: c.head_dim as u64,
            n_ff: c.n_ff as u64,
            n_vocab: c.n_vocab as u64,
            n_swa,
            tensors,
        })
    }

    /// Bytes of all tensor data.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }

    /// Number of parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(TensorDesc::n_elements).sum()
    }

    /// Bytes of the tensors of layer `il` (`blk.{il}.*`).
    pub fn layer_bytes(&self, il: u32) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.layer() == Some(il))
            .map(|t| t.n_bytes)
            .sum()
    }

    /// Bytes of `token_embd.weight`, which llama.cpp keeps in host memory whatever `-ngl` says (only the rows of
    /// the batch's tokens are read).
    pub fn token_embd_bytes(&self) -> u64 {
        self.tensor("token_embd.weight").map_or(0, |t| t.n_bytes)
    }

    /// Whether the output projection shares the token embedding (no `output.weight`).
    pub fn tied_output(&self) -> bool {
        self.tensor("output.weight").is_none()
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorDesc> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Weight bytes read to generate one token, per weight class ([`crate::calibrate::type_class`]): every
    /// tensor but the token embedding (of which one row is read), plus the embedding again when the output
    /// projection is tied to it. Only tensors `keep` accepts are counted.
    pub fn bytes_per_token_by_class(&self, keep: impl Fn(&TensorDesc) -> bool) -> [f64; N_CLASSES] {
        let mut out = [0.0; N_CLASSES];
        for t in self.tensors.iter().filter(|t| keep(t)) {
            let c = type_class(t.ty);
            if t.name == "token_embd.weight" {
                out[c] += (t.n_bytes / t.ne.get(1).copied().unwrap_or(1).max(1)) as f64;
                if self.tied_output() {
                    out[c] += t.n_bytes as f64;
                }
            } else {
                out[c] += t.n_bytes as f64;
            }
        }
        out
    }

    /// Weight bytes read to generate one token (the sum of [`ModelDesc::bytes_per_token_by_class`]).
    pub fn bytes_per_token(&self) -> u64 {
        self.bytes_per_token_by_class(|_| true).iter().sum::<f64>() as u64
    }

    /// Multiply-accumulates of the weight matrices per token, per weight class (all 2-D tensors but the token
    /// embedding, which is a lookup; the tied output projection counted once). FLOPs per token are twice this
    /// (Kaplan et al., 2020: "C_forward ≈ 2N").
    pub fn matmul_params_by_class(&self) -> [f64; N_CLASSES] {
        let mut out = [0.0; N_CLASSES];
        for t in self.tensors.iter().filter(|t| t.ne.len() >= 2) {
            if t.name != "token_embd.weight" || self.tied_output() {
                out[type_class(t.ty)] += t.n_elements() as f64;
            }
        }
        out
    }

    /// `n_embd_head_k · n_head_kv`: K elements per token per layer (llama.cpp's `n_embd_k_gqa`).
    pub fn n_embd_k_gqa(&self) -> u64 {
        self.n_embd_head_k * self.n_head_kv
    }

    /// `n_embd_head_v · n_head_kv`: V elements per token per layer (`n_embd_v_gqa`).
    pub fn n_embd_v_gqa(&self) -> u64 {
        self.n_embd_head_v * self.n_head_kv
    }

    /// Bits per weight over all tensors.
    pub fn bits_per_weight(&self) -> f64 {
        self.weight_bytes() as f64 * 8.0 / self.n_params().max(1) as f64
    }
}

/// Which layers use the sliding window: Gemma 3 (`il % 6 < 5`) and Gemma 2 (even layers), as llama.cpp's
/// `llm_load_hparams` sets `swa_layers` for those architectures; none for other architectures or without a
/// window.
fn swa_layers(arch: &str, n_layer: u32, n_swa: u64) -> Vec<bool> {
    (0..n_layer)
        .map(|il| {
            n_swa > 0
                && match arch {
                    "gemma3" => il % 6 < 5,
                    "gemma2" => il % 2 == 0,
                    _ => false,
                }
        })
        .collect()
}

/// The largest value of a key that is a number or a per-layer array of numbers.
fn max_int(md: &Metadata, key: &str) -> std::result::Result<Option<u64>, silica_gguf::Error> {
    match md.get(key) {
        None => Ok(None),
        Some(v) if v.as_array().is_some() => {
            Ok(md.get_int_array(key)?.into_iter().max().map(|x| x.max(0) as u64))
        }
        Some(_) => md.get_u64(key).map(Some),
    }
}
