//! Integration tests of silica-sample: one binary, modules by topic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod draw;
mod filters;
mod greedy;
mod params;
mod penalties;

use silica_sample::{Sampler, SamplerParams};

/// A sampler with every filter off and temperature 1: draws from the plain softmax.
pub fn plain(seed: u64) -> SamplerParams {
    SamplerParams {
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::with_seed(seed)
    }
}

/// Builds a sampler from parameters the test knows are valid.
pub fn sampler(params: SamplerParams) -> Sampler {
    Sampler::new(params).expect("test params are valid")
}
