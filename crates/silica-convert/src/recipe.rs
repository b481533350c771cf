//! Which type each tensor gets for a llama.cpp file type (`Q4_K_M`, `Q8_0`...): a port of the rules in
//! llama.cpp's `src/llama-quant.cpp` (`tensor_allows_quantization`, `llama_tensor_get_type_impl`,
//! `tensor_type_fallback`, `llama_ftype_get_default_type`), as of build 11434.
//!
//! Only the rules for the file types silica writes are ported (legacy, K-quant, F16, BF16, F32 mixes); the
//! IQ-mix branches need an importance matrix and are refused upstream, in [`crate::parse_target`].

use silica_gguf::{FileType, GgmlType, Metadata, TensorInfo, keys};

use crate::ConvertError;

/// What the mix rules need to know about the model (llama.cpp reads these from its hparams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count` (llama.cpp's `n_layer_all`).
    pub n_layer: u32,
    /// `{arch}.attention.head_count` (of layer 0 when per layer).
    pub n_head: u32,
    /// `{arch}.attention.head_count_kv` (of layer 0 when per layer); equals `n_head` when absent.
    pub n_head_kv: u32,
    /// `{arch}.expert_count`, 0 when absent.
    pub n_expert: u32,
}

impl ModelShape {
    /// Reads the shape from GGUF metadata.
    ///
    /// # Errors
    /// [`ConvertError::Gguf`] naming the missing or mistyped key.
    pub fn from_metadata(md: &Metadata) -> Result<Self, ConvertError> {
        let arch = md.get_str(keys::GENERAL_ARCHITECTURE)?.to_owned();
        let k = |s: &str| keys::arch_key(&arch, s);
        let first = |key: &str| -> Result<Option<u32>, ConvertError> {
            match md.get(key) {
                None => Ok(None),
                Some(v) if v.as_array().is_some() => Ok(md
                    .get_int_array(key)?
                    .first()
                    .map(|&x| x.clamp(0, u32::MAX as i64) as u32)),
                Some(_) => Ok(Some(md.get_u32(key)?)),
            }
        };
        let n_head = first(&k(keys::HEAD_COUNT))?.unwrap_or(0);
        Ok(ModelShape {
            n_layer: md.get_u32(&k(keys::BLOCK_COUNT))?,
            n_head,
            n_head_kv: first(&k(keys::HEAD_COUNT_KV))?.unwrap_or(n_head),
            n_expert: md.opt_u32(&k("expert_count"))?.unwrap_or(0),
            arch,
        })
    }

    /// `n_head / n_head_kv` (llama.cpp `hparams.n_gqa()`), 0 without KV heads.
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's `LLM_TYPE_70B` for Llama: 80 layers with grouped-query attention.
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// Options of a quantization recipe (`llama_model_quantize_params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipeOptions {
    /// The target file type; its default tensor type is [`default_type`].
    pub file_type: FileType,
    /// `--pure`: every quantizable tensor gets the default type (no per-tensor mix).
    pub pure: bool,
    /// `--output-tensor-type`.
    pub output_tensor_type: Option<GgmlType>,
    /// `--token-embedding-type`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--leave-output-tensor`: keep `output.weight` as it is.
    pub leave_output_tensor: bool,
}

impl RecipeOptions {
    /// The plain recipe for `file_type`.
    pub fn new(file_type: FileType) -> Self {
        RecipeOptions {
            file_type,
            pure: false,
            output_tensor_type: None,
            token_embedding_type: None,
            leave_output_tensor: false,
        }
    }
}

/// The tensor type a file type is made of (`llama_ftype_get_default_type`), for the file types silica writes.
pub fn default_type(ft: FileType) -> Option<GgmlType> {
    use FileType as F;
    Some(match ft {
        F::ALL_F32 => GgmlType::F32,
        F::MOSTLY_F16 => GgmlType::F16,
        F::MOSTLY_BF16 => GgmlType::BF16,
        F::MOSTLY_Q4_0 => GgmlType::Q4_0,
        F::MOSTLY_Q4_1 => GgmlType::Q4_1,
        F::MOSTLY_Q5_0 => GgmlType::Q5_0,
        F::MOSTLY_Q5_1 => GgmlType::Q5_1,
        F::MOSTLY_Q8_0 => GgmlType::Q8_0,
        F::MOSTLY_Q2_K | F::MOSTLY_Q2_K_S => GgmlType::Q2_K,
        F::MOSTLY_Q3_K_S | F::MOSTLY_Q3_K_M | F::MOSTLY_Q3_K_L => GgmlType::Q3_K,
        F::MOSTLY_Q4_K_S | F::MOSTLY_Q4_K_M => GgmlType::Q4_K,
        F::MOSTLY_Q5_K_S | F::MOSTLY_Q5_K_M => GgmlType::Q5_K,
        F::MOSTLY_Q6_K => GgmlType::Q6_K,
        _ => return None,
    })
}

/// Broad tensor roles the mix rules key on (llama.cpp `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return C::TokenEmbd;
    }
    let rules = [
        ("attn_qkv.weight", C::AttnQkv),
        ("attn_kv_b.weight", C::AttnKvB),
        ("attn_v.weight", C::AttnV),
        ("attn_k.weight", C::AttnK),
        ("attn_q.weight", C::AttnQ),
        ("attn_output.weight", C::AttnOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ];
    rules
        .iter()
        .find(|(pat, _)| name.contains(pat))
        .map_or(C::Other, |r| r.1)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// `ggml_n_dims`: dimensions up to the last one longer than 1.
fn n_dims(ne: &[u64]) -> usize {
    ne.iter().rposition(|&n| n > 1).map_or(1, |i| i + 1)
}

/// Whether llama.cpp would quantize this tensor at all (`tensor_allows_quantization`): 2-D or larger, named
/// `*weight`, not a norm, not the MoE router, not one of the small per-architecture tensors kept as they are.
pub fn allows_quantization(t: &TensorInfo, opts: &RecipeOptions) -> bool {
    let name = t.name.as_str();
    if n_dims(&t.ne) < 2 || !name.ends_with("weight") || name.contains("_norm.weight") {
        return false;
    }
    if opts.leave_output_tensor && name == "output.weight" {
        return false;
    }
    const KEEP: &[&str] = &[
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
    ];
    name != "position_embd.weight" && name != "token_types.weight" && !KEEP.iter().any(|k| name.contains(k))
}

/// llama.cpp's tensor order in quantized files (`weight_name_comparer`): tensors outside blocks first, then by
/// block number, by name within a block.
pub fn sort_like_llama_cpp(tensors: &mut [TensorInfo]) {
    fn key(name: &str) -> (i64, &str) {
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(-1);
        (layer, name)
    }
    tensors.sort_by(|a, b| key(&a.name).cmp(&key(&b.name)));
}

/// A tensor and the type it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The tensor as it is in the source.
    pub info: TensorInfo,
    /// The type it is written as.
    pub ty: GgmlType,
    /// Set when the mix's choice could not hold the row length and a fallback type was taken (llama.cpp's
    /// warning): the type first chosen.
    pub fell_back_from: Option<GgmlType>,
}

impl Planned {
    /// Data bytes of the tensor written as `ty` ([`TensorInfo::data_bytes`]).
    ///
    /// # Errors
    /// As [`TensorInfo::data_bytes`]: `ty`'s blocks do not divide a row, or the size overflows.
    pub fn n_bytes(&self) -> Result<u64, silica_gguf::Error> {
        TensorInfo::data_bytes(&self.info.name, self.ty, &self.info.ne)
    }
}

/// Assigns a type to every tensor, in llama.cpp's order ([`sort_like_llama_cpp`]), with llama.cpp's per-tensor
/// mix for `opts.file_type`.
///
/// # Errors
/// [`ConvertError::UnsupportedFileType`] for a file type without a default tensor type here;
/// [`ConvertError::RowLength`] when an explicit `--output-tensor-type` / `--token-embedding-type` cannot hold
/// the tensor's row length.
pub fn plan(
    shape: &ModelShape,
    tensors: &[TensorInfo],
    opts: &RecipeOptions,
) -> Result<Vec<Planned>, ConvertError> {
    let default = default_type(opts.file_type).ok_or(ConvertError::UnsupportedFileType(opts.file_type))?;
    let mut sorted = tensors.to_vec();
    sort_like_llama_cpp(&mut sorted);
    let mut st = State {
        n_attention_wv: sorted
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count() as u32,
        has_tied_embeddings: !sorted.iter().any(|t| category(&t.name) == Category::Output),
        ..State::default()
    };
    let mut out = Vec::with_capacity(sorted.len());
    for t in sorted {
        let cat = category(&t.name);
        let (ty, fell_back_from) = if !allows_quantization(&t, opts) {
            (t.ty, None)
        } else if let (Some(ty), Category::TokenEmbd) = (opts.token_embedding_type, cat) {
            (check_row(&t, ty)?, None)
        } else if let (Some(ty), Category::Output) = (opts.output_tensor_type, cat) {
            (check_row(&t, ty)?, None)
        } else if default.is_quantized() {
            let mut ty = default;
            if !opts.pure {
                ty = mix_type(&mut st, shape, ty, &t, opts, cat)?;
            }
            let fb = fallback(&t, ty);
            (fb, (fb != ty).then_some(ty))
        } else {
            (default, None)
        };
        out.push(Planned {
            info: t,
            ty,
            fell_back_from,
        });
    }
    Ok(out)
}

fn check_row(t: &TensorInfo, ty: GgmlType) -> Result<GgmlType, ConvertError> {
    let n = t.ne.first().copied().unwrap_or(0);
    if n % ty.block_len() as u64 != 0 {
        return Err(ConvertError::RowLength {
            tensor: t.name.clone(),
            row_len: n,
            ty,
        });
    }
    Ok(ty)
}

/// `tensor_type_fallback`: a type whose block divides the row length.
fn fallback(t: &TensorInfo, ty: GgmlType) -> GgmlType {
    let n = t.ne.first().copied().unwrap_or(0);
    if n % ty.block_len() as u64 == 0 {
        return ty;
    }
    let fb = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if n % fb.block_len() as u64 != 0 {
        GgmlType::F16
    } else {
        fb
    }
}

/// Counters the mix walks with (`quantize_state_impl`).
#[derive(Default, Debug)]
struct State {
    n_attention_wv: u32,
    i_attention_wv: u32,
    i_ffn_down: u32,
    i_ffn_gate: u32,
    i_ffn_up: u32,
    has_tied_embeddings: bool,
}

/// `use_more_bits`: the first and last eighth of layers, and every third layer between.
fn use_more_bits(i_layer: u32, n_layers: u32) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer index the FFN rules use: a running counter, or parsed from the name for MoE models.
fn layer_of(counter: u32, shape: &ModelShape, name: &str) -> Result<u32, ConvertError> {
    if shape.n_expert <= 1 {
        return Ok(counter);
    }
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|&il| il < shape.n_layer)
        .ok_or_else(|| ConvertError::BadLayer {
            tensor: name.to_owned(),
        })
}

/// `llama_tensor_get_type_impl` for the non-IQ file types.
fn mix_type(
    st: &mut State,
    shape: &ModelShape,
    mut ty: GgmlType,
    t: &TensorInfo,
    opts: &RecipeOptions,
    cat: Category,
) -> Result<GgmlType, ConvertError> {
    use FileType as F;
    use GgmlType as G;
    let ft = opts.file_type;
    let falcon = shape.arch == "falcon";
    let n_expert = shape.n_expert;
    if cat == Category::Output || (st.has_tied_embeddings && cat == Category::TokenEmbd) {
        if let Some(o) = opts.output_tensor_type {
            return Ok(o);
        }
        let nx = t.ne.first().copied().unwrap_or(0);
        if falcon || nx % ty.block_len() as u64 != 0 {
            ty = G::Q8_0;
        } else if ty != G::Q8_0 {
            ty = G::Q6_K;
        }
    } else if cat == Category::TokenEmbd {
        if let Some(e) = opts.token_embedding_type {
            ty = e;
        }
    } else if is_attn_v_like(cat) {
        let gqa4 = shape.n_gqa() >= 4;
        match ft {
            F::MOSTLY_Q2_K => ty = if gqa4 { G::Q4_K } else { G::Q3_K },
            F::MOSTLY_Q2_K_S if gqa4 => ty = G::Q4_K,
            F::MOSTLY_Q3_K_M => ty = if st.i_attention_wv < 2 { G::Q5_K } else { G::Q4_K },
            F::MOSTLY_Q3_K_L => ty = G::Q5_K,
            F::MOSTLY_Q4_K_M | F::MOSTLY_Q5_K_M if use_more_bits(st.i_attention_wv, st.n_attention_wv) => {
                ty = G::Q6_K
            }
            F::MOSTLY_Q4_K_S if st.i_attention_wv < 4 => ty = G::Q5_K,
            _ => {}
        }
        if shape.is_70b() && matches!(ty, G::Q3_K | G::Q4_K) {
            ty = G::Q5_K;
        }
        if n_expert == 8 {
            ty = G::Q8_0;
        }
        st.i_attention_wv += 1;
    } else if cat == Category::AttnK {
        if n_expert == 8 {
            ty = G::Q8_0;
        }
    } else if cat == Category::FfnDown {
        let il = layer_of(st.i_ffn_down, shape, &t.name)?;
        let n = shape.n_layer;
        match ft {
            F::MOSTLY_Q2_K => ty = G::Q3_K,
            F::MOSTLY_Q2_K_S if il < n / 8 => ty = G::Q4_K,
            F::MOSTLY_Q3_K_M => {
                ty = if il < n / 16 {
                    G::Q5_K
                } else if !falcon || use_more_bits(il, n) {
                    G::Q4_K
                } else {
                    G::Q3_K
                }
            }
            F::MOSTLY_Q3_K_L => ty = if falcon { G::Q4_K } else { G::Q5_K },
            F::MOSTLY_Q4_K_M => {
                if falcon {
                    ty = if il < n / 16 {
                        G::Q6_K
                    } else if use_more_bits(il, n) {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    };
                } else if use_more_bits(il, n) {
                    ty = G::Q6_K;
                }
            }
            F::MOSTLY_Q5_K_M if use_more_bits(il, n) => ty = G::Q6_K,
            F::MOSTLY_Q4_K_S if !falcon && il < n / 8 => ty = G::Q5_K,
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if cat == Category::AttnOutput {
        if !falcon {
            if n_expert == 8 {
                if matches!(
                    ft,
                    F::MOSTLY_Q2_K
                        | F::MOSTLY_Q3_K_S
                        | F::MOSTLY_Q3_K_M
                        | F::MOSTLY_Q4_K_S
                        | F::MOSTLY_Q4_K_M
                ) {
                    ty = G::Q5_K;
                }
            } else {
                match ft {
                    F::MOSTLY_Q2_K => ty = G::Q3_K,
                    F::MOSTLY_Q3_K_M => ty = G::Q4_K,
                    F::MOSTLY_Q3_K_L => ty = G::Q5_K,
                    _ => {}
                }
            }
        } else if ft == F::MOSTLY_Q3_K_L {
            ty = G::Q4_K;
        }
    } else if cat == Category::FfnGate {
        layer_of(st.i_ffn_gate, shape, &t.name)?;
        st.i_ffn_gate += 1;
    } else if cat == Category::FfnUp {
        layer_of(st.i_ffn_up, shape, &t.name)?;
        st.i_ffn_up += 1;
    }
    Ok(ty)
}
