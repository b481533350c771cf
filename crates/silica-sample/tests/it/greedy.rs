//! Greedy decoding and argmax.

use proptest::prelude::*;
use silica_sample::{Error, SamplerParams, argmax};

use crate::{plain, sampler};

#[test]
fn ties_go_to_the_lowest_id() {
    let logits = [1.0f32, 3.0, 3.0, 0.0, 3.0];
    assert_eq!(argmax(&logits), Some(1));
    assert_eq!(sampler(SamplerParams::greedy()).sample(&logits), Ok(1));
    // Signed zeros compare equal, so the first one wins.
    assert_eq!(argmax(&[-1.0, -0.0, 0.0]), Some(1));
}

#[test]
fn argmax_skips_nan_and_rejects_empty() {
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
    assert_eq!(argmax(&[f32::NAN, -5.0, f32::NAN, -4.0]), Some(3));
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
}

#[test]
fn sample_errors_on_empty_or_all_nan() {
    for params in [SamplerParams::greedy(), SamplerParams::with_seed(1)] {
        let mut s = sampler(params);
        assert_eq!(s.sample(&[]), Err(Error::EmptyLogits));
        assert_eq!(s.sample(&[f32::NAN; 3]), Err(Error::AllNan { n_vocab: 3 }));
        // A NaN logit is never picked.
        for _ in 0..50 {
            assert_eq!(s.sample(&[f32::NAN, 0.0, f32::NAN]), Ok(1));
        }
    }
}

#[test]
fn greedy_distribution_is_the_argmax_alone() {
    let mut s = sampler(SamplerParams::greedy());
    let d = s.distribution(&[0.1, 0.7, 0.7, -3.0]).expect("non-empty logits");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].id, d[0].p), (1, 1.0));
}

/// Logits drawn from a small set of values, so that ties are common.
fn tied_logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-4i8..4).prop_map(|v| f32::from(v) * 0.5), 1..64)
}

proptest! {
    #[test]
    fn greedy_equals_argmax(logits in tied_logits(), seed in any::<u64>()) {
        let mut s = sampler(SamplerParams { seed, ..SamplerParams::greedy() });
        let expected = argmax(&logits).expect("non-empty, no NaN");
        prop_assert_eq!(s.sample(&logits), Ok(expected));
        // Negative temperature is greedy too, and the filters do not matter.
        let mut s = sampler(SamplerParams { temp: -1.0, top_k: 3, top_p: 0.1, min_p: 0.9, ..plain(seed) });
        prop_assert_eq!(s.sample(&logits), Ok(expected));
        // The first maximum, by the definition.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        prop_assert_eq!(logits.iter().position(|&l| l == max), Some(expected as usize));
    }

    #[test]
    fn top_k_1_is_argmax_whatever_the_seed(
        logits in tied_logits(),
        seed in any::<u64>(),
        temp in 0.05f32..5.0,
    ) {
        let expected = argmax(&logits).expect("non-empty, no NaN");
        let mut s = sampler(SamplerParams { temp, top_k: 1, ..SamplerParams::with_seed(seed) });
        for _ in 0..8 {
            prop_assert_eq!(s.sample(&logits), Ok(expected));
        }
    }
}
