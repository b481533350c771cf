//! [`SamplerParams`]: the settings of the sampler chain, with llama.cpp's defaults.

use crate::error::{Error, Result};

/// Sampling settings for [`Sampler`](crate::Sampler).
///
/// The [`Default`] values equal llama.cpp's `common_params_sampling` (common/common.h): `temp` 0.8,
/// `top_k` 40, `top_p` 0.95, `min_p` 0.05, `repeat_penalty` 1.0 (off), `repeat_last_n` 64,
/// `frequency_penalty` 0.0, `presence_penalty` 0.0, and a random `seed` (llama.cpp's
/// `LLAMA_DEFAULT_SEED` means "pick one at random").
///
/// The stages run in llama.cpp's default order: penalties, top-k, top-p, min-p, temperature, then a
/// seeded draw. Each field names the value that turns its stage off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    /// Temperature (dimensionless, divides the logits). `<= 0` means greedy: the argmax after the
    /// penalties, with every other filter irrelevant (llama.cpp `--temp`). Default 0.8.
    pub temp: f32,
    /// Keep only the `top_k` highest logits (tokens). `0` = off; a value above `n_vocab` is clamped
    /// (llama.cpp `--top-k`). Default 40.
    pub top_k: usize,
    /// Nucleus sampling (probability, in `(0, 1]`): keep the smallest set of most probable tokens whose
    /// probability mass is `>= top_p`, at least one token. `1.0` = off (llama.cpp `--top-p`).
    /// Default 0.95.
    pub top_p: f32,
    /// Minimum probability relative to the most probable token (in `[0, 1]`): keep tokens with
    /// `p >= min_p * p_max`. `0.0` = off (llama.cpp `--min-p`). Default 0.05.
    pub min_p: f32,
    /// Repetition penalty factor (dimensionless, `> 0`), applied once to each distinct token among the
    /// last `repeat_last_n` accepted ones: a positive logit is divided by it, a non-positive one is
    /// multiplied by it. `1.0` = off (llama.cpp `--repeat-penalty`). Default 1.0.
    pub repeat_penalty: f32,
    /// Penalty window (tokens): how many of the most recently [accepted](crate::Sampler::accept)
    /// tokens the three penalties look at. `0` = penalties off (llama.cpp `--repeat-last-n`; its
    /// `-1` = "context size" has no equivalent here, pass `n_ctx` instead). Default 64.
    pub repeat_last_n: usize,
    /// Frequency penalty (logit units per occurrence): subtracted `count` times from the logit of a
    /// token that occurs `count` times in the window. `0.0` = off (llama.cpp `--frequency-penalty`).
    /// Default 0.0.
    pub frequency_penalty: f32,
    /// Presence penalty (logit units): subtracted once from the logit of every token present in the
    /// window. `0.0` = off (llama.cpp `--presence-penalty`). Default 0.0.
    pub presence_penalty: f32,
    /// Seed of the random draw: the same seed and the same sequence of logits give the same tokens
    /// (for a given version of the `rand` crate). Default: random.
    pub seed: u64,
}

impl SamplerParams {
    /// llama.cpp's defaults (see [`SamplerParams`]) with a fixed `seed`, for reproducible runs.
    #[must_use]
    pub const fn with_seed(seed: u64) -> Self {
        Self {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed,
        }
    }

    /// Greedy decoding: `temp` 0 (argmax after the penalties, which are off by default), seed 0.
    ///
    /// This is what llama.cpp does with `--temp 0`; the golden-token tests use it.
    #[must_use]
    pub const fn greedy() -> Self {
        Self {
            temp: 0.0,
            ..Self::with_seed(0)
        }
    }

    /// Whether this configuration always picks the argmax after the penalties (`temp <= 0`).
    #[must_use]
    pub fn is_greedy(&self) -> bool {
        self.temp <= 0.0
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first offending field: `temp` not finite, `top_p` outside
    /// `(0, 1]`, `min_p` outside `[0, 1]`, `repeat_penalty` not finite or `<= 0`,
    /// `frequency_penalty` or `presence_penalty` not finite.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value, reason| Err(Error::InvalidParam { name, value, reason });
        if !self.temp.is_finite() {
            return invalid("temp", self.temp, "must be finite");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return invalid("min_p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return invalid("repeat_penalty", self.repeat_penalty, "must be finite and > 0");
        }
        if !self.frequency_penalty.is_finite() {
            return invalid("frequency_penalty", self.frequency_penalty, "must be finite");
        }
        if !self.presence_penalty.is_finite() {
            return invalid("presence_penalty", self.presence_penalty, "must be finite");
        }
        Ok(())
    }
}

impl Default for SamplerParams {
    /// llama.cpp's `common_params_sampling` defaults with a random seed (see [`SamplerParams`]).
    fn default() -> Self {
        Self::with_seed(rand::random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_llama_cpp() {
        let p = SamplerParams::with_seed(7);
        assert_eq!((p.temp, p.top_k, p.top_p, p.min_p), (0.8, 40, 0.95, 0.05));
        assert_eq!((p.repeat_penalty, p.repeat_last_n), (1.0, 64));
        assert_eq!((p.frequency_penalty, p.presence_penalty, p.seed), (0.0, 0.0, 7));
        assert!(p.validate().is_ok());
        assert!(SamplerParams::default().validate().is_ok());
        assert!(SamplerParams::greedy().is_greedy());
        assert!(!p.is_greedy());
    }
}
