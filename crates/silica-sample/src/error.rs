//! The error type of silica-sample.

/// An error from building a [`Sampler`](crate::Sampler) or drawing a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sampling parameter is outside its valid range (checked once, in
    /// [`Sampler::new`](crate::Sampler::new)).
    #[error("invalid sampling parameter `{name}` = {value}: {reason}")]
    InvalidParam {
        /// Field name in [`SamplerParams`](crate::SamplerParams), e.g. `"top_p"`.
        name: &'static str,
        /// The rejected value.
        value: f32,
        /// What the value must satisfy, e.g. `"must be in (0, 1]"`.
        reason: &'static str,
    },
    /// The logits slice has no elements (`n_vocab` = 0).
    #[error("cannot sample from empty logits (n_vocab = 0)")]
    EmptyLogits,
    /// Every logit is NaN, so no token can be ranked.
    #[error("all {n_vocab} logits are NaN")]
    AllNan {
        /// Length of the logits slice, in tokens.
        n_vocab: usize,
    },
    /// The logits slice is longer than token ids (`u32`) can index.
    #[error("n_vocab = {n_vocab} does not fit u32 token ids")]
    VocabTooLarge {
        /// Length of the logits slice, in tokens.
        n_vocab: usize,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
