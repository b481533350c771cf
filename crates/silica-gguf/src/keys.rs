//! Standard GGUF metadata keys (GGUF spec "Standardized key-value pairs"; llama.cpp `llama-arch.cpp`
//! `LLM_KV_NAMES`). Per-architecture keys take the architecture name as prefix: [`arch_key`].

/// `general.architecture`: the model family (`llama`, `gemma3`).
pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
/// `general.name`.
pub const GENERAL_NAME: &str = "general.name";
/// `general.file_type`: the [`crate::FileType`] id.
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
/// `general.quantization_version`: version of the quantized block formats (2 since 2023).
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";
/// `general.alignment`.
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
/// `general.size_label` (`135M`).
pub const GENERAL_SIZE_LABEL: &str = "general.size_label";

/// `{arch}.context_length`: training context, tokens.
pub const CONTEXT_LENGTH: &str = "context_length";
/// `{arch}.embedding_length`: `n_embd`.
pub const EMBEDDING_LENGTH: &str = "embedding_length";
/// `{arch}.block_count`: `n_layer`.
pub const BLOCK_COUNT: &str = "block_count";
/// `{arch}.feed_forward_length`: `n_ff`.
pub const FEED_FORWARD_LENGTH: &str = "feed_forward_length";
/// `{arch}.attention.head_count`: `n_head`.
pub const HEAD_COUNT: &str = "attention.head_count";
/// `{arch}.attention.head_count_kv`: `n_head_kv` (GQA).
pub const HEAD_COUNT_KV: &str = "attention.head_count_kv";
/// `{arch}.attention.key_length`: `n_embd_head_k`.
pub const KEY_LENGTH: &str = "attention.key_length";
/// `{arch}.attention.value_length`: `n_embd_head_v`.
pub const VALUE_LENGTH: &str = "attention.value_length";
/// `{arch}.attention.layer_norm_rms_epsilon`.
pub const LAYER_NORM_RMS_EPSILON: &str = "attention.layer_norm_rms_epsilon";
/// `{arch}.attention.sliding_window`: SWA window, tokens.
pub const SLIDING_WINDOW: &str = "attention.sliding_window";
/// `{arch}.rope.dimension_count`: `n_rot`.
pub const ROPE_DIMENSION_COUNT: &str = "rope.dimension_count";
/// `{arch}.rope.freq_base`.
pub const ROPE_FREQ_BASE: &str = "rope.freq_base";
/// `{arch}.rope.scaling.type` (`none`, `linear`, `yarn`).
pub const ROPE_SCALING_TYPE: &str = "rope.scaling.type";
/// `{arch}.rope.scaling.factor`.
pub const ROPE_SCALING_FACTOR: &str = "rope.scaling.factor";
/// `{arch}.vocab_size`.
pub const VOCAB_SIZE: &str = "vocab_size";

/// `tokenizer.ggml.model`: `llama` (SentencePiece) or `gpt2` (byte-level BPE).
pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
/// `tokenizer.ggml.pre`: the BPE pre-tokenizer name (`smollm`, `llama-bpe`, `qwen2`).
pub const TOKENIZER_PRE: &str = "tokenizer.ggml.pre";
/// `tokenizer.ggml.tokens`.
pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
/// `tokenizer.ggml.scores`.
pub const TOKENIZER_SCORES: &str = "tokenizer.ggml.scores";
/// `tokenizer.ggml.token_type`.
pub const TOKENIZER_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
/// `tokenizer.ggml.merges`.
pub const TOKENIZER_MERGES: &str = "tokenizer.ggml.merges";
/// `tokenizer.ggml.bos_token_id`.
pub const TOKENIZER_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
/// `tokenizer.ggml.eos_token_id`.
pub const TOKENIZER_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
/// `tokenizer.ggml.eot_token_id`.
pub const TOKENIZER_EOT_ID: &str = "tokenizer.ggml.eot_token_id";
/// `tokenizer.ggml.unknown_token_id`.
pub const TOKENIZER_UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
/// `tokenizer.ggml.padding_token_id`.
pub const TOKENIZER_PAD_ID: &str = "tokenizer.ggml.padding_token_id";
/// `tokenizer.ggml.add_bos_token`.
pub const TOKENIZER_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
/// `tokenizer.ggml.add_eos_token`.
pub const TOKENIZER_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// `tokenizer.ggml.add_space_prefix`.
pub const TOKENIZER_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
/// `tokenizer.chat_template`.
pub const TOKENIZER_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// The per-architecture key `{arch}.{suffix}` (`llama.block_count`).
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}
