//! Errors of loading a model (once, at load time) and of running it.

/// A model could not be loaded from a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The GGUF file is unreadable or a metadata key is missing or mistyped.
    #[error(transparent)]
    Gguf(#[from] silica_gguf::Error),
    /// `general.architecture` names an architecture silica does not implement.
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The architecture in the file.
        arch: String,
        /// The supported ones, comma-separated.
        supported: String,
    },
    /// A hyperparameter is out of range or inconsistent.
    #[error("invalid hyperparameter `{key}` = {value}: {reason}")]
    InvalidHParam {
        /// Metadata key (or derived name).
        key: String,
        /// The value found.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A required tensor is absent.
    #[error("missing tensor `{name}`")]
    MissingTensor {
        /// The tensor.
        name: String,
    },
    /// A tensor has another shape than the architecture declares.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?} (row-major)")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Declared shape, row-major (`[out, in]` for matrices).
        expected: Vec<usize>,
        /// Shape in the file, row-major.
        found: Vec<usize>,
    },
    /// A tensor's element type cannot be computed by silica.
    #[error("tensor `{name}` has type {ty}, which silica cannot compute yet")]
    UnsupportedType {
        /// The tensor.
        name: String,
        /// Its ggml type.
        ty: silica_gguf::GgmlType,
    },
    /// candle failed while building a weight tensor.
    #[error("tensor `{name}`: {source}")]
    Candle {
        /// The tensor.
        name: String,
        /// candle's error.
        source: candle_core::Error,
    },
}

/// A forward pass failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The batch would write past `n_ctx` for a sequence; nothing was written.
    #[error("context full: sequence {seq} has {n_past} tokens, {n_tokens} more exceed n_ctx {n_ctx}")]
    ContextFull {
        /// Sequence id.
        seq: usize,
        /// Tokens already cached for it.
        n_past: usize,
        /// Tokens in the batch for it.
        n_tokens: usize,
        /// Cache capacity per sequence.
        n_ctx: usize,
    },
    /// The batch is malformed (empty, ids out of range, positions not continuing the cache).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A token id is not below `n_vocab`.
    #[error("token id {id} is out of range (n_vocab {n_vocab})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// candle failed during the forward pass.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` of a forward pass.
pub type Result<T, E = Error> = std::result::Result<T, E>;
