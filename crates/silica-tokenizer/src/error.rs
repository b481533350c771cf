//! The error type of this crate.

/// An error from building a [`crate::Tokenizer`] out of GGUF metadata or from using it. Load-time variants
/// name the metadata key at fault; run-time variants name the token id or byte.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a metadata key failed (missing key such as `tokenizer.ggml.merges`, or wrong value type).
    #[error(transparent)]
    Gguf(#[from] silica_gguf::Error),
    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error(
        "unsupported tokenizer.ggml.model `{model}` (supported: `llama` SentencePiece, `gpt2` byte-level BPE)"
    )]
    UnknownModel {
        /// The value found.
        model: String,
    },
    /// `tokenizer.ggml.pre` names a BPE pre-tokenizer this crate does not implement.
    #[error(
        "unsupported tokenizer.ggml.pre `{pre}` (supported: default, gpt-2, smollm, starcoder, llama-bpe, llama3, \
         qwen2 and their llama.cpp aliases)"
    )]
    UnknownPre {
        /// The value found.
        pre: String,
    },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    /// A per-token array is shorter than `tokenizer.ggml.tokens`.
    #[error("{key} has {len} entries but tokenizer.ggml.tokens has {n_vocab}")]
    ArrayLength {
        /// The metadata key of the short array.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// A per-token array has an element type llama.cpp does not accept.
    #[error("{key} is {found}, expected {expected}")]
    ArrayType {
        /// The metadata key.
        key: &'static str,
        /// The accepted element types.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A special-token id key points past the end of the vocabulary.
    #[error("{key} = {id} is out of range (n_vocab = {n_vocab})")]
    SpecialIdOutOfRange {
        /// The metadata key (`tokenizer.ggml.bos_token_id`).
        key: &'static str,
        /// The id found.
        id: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// `add_bos_token` / `add_eos_token` is true but the matching token id is not set.
    #[error("{add_key} is true, but {id_key} is not set")]
    MissingSpecialToken {
        /// The flag key (`tokenizer.ggml.add_bos_token`).
        add_key: &'static str,
        /// The id key (`tokenizer.ggml.bos_token_id`).
        id_key: &'static str,
    },
    /// A token of type BYTE (6) whose text is not of the form `<0xXX>`.
    #[error("token {id} `{text}` has type BYTE but is not of the form <0xXX>")]
    BadByteToken {
        /// The token id.
        id: u32,
        /// Its text.
        text: String,
    },
    /// A token id at or past `n_vocab`.
    #[error("token id {id} is out of range (n_vocab = {n_vocab})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// SentencePiece byte fallback needs `<0xXX>` (or the raw byte as a token) and the vocabulary has neither.
    #[error("the vocabulary has no byte-fallback token <0x{byte:02X}>")]
    NoByteToken {
        /// The byte that could not be encoded.
        byte: u8,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
