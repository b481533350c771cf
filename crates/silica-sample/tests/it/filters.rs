//! Top-k, top-p and min-p keep exactly the tokens llama.cpp keeps.

use proptest::prelude::*;
use silica_sample::SamplerParams;

use crate::{plain, sampler};

/// Reference softmax in f64, with ids in descending probability (ties to the lowest id).
fn reference_probs(logits: &[f32]) -> Vec<(u32, f64)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let mut probs: Vec<(u32, f64)> = (0u32..).zip(weights.iter().map(|w| w / sum)).collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    probs
}

fn kept_ids(params: SamplerParams, logits: &[f32]) -> Vec<u32> {
    let mut s = sampler(params);
    let d = s.distribution(logits).expect("valid logits");
    let total: f32 = d.iter().map(|t| t.p).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    d.iter().map(|t| t.id).collect()
}

#[test]
fn top_k_keeps_the_k_highest_and_clamps() {
    let logits = [0.1f32, 5.0, -2.0, 3.0, 4.0];
    assert_eq!(kept_ids(SamplerParams { top_k: 2, ..plain(0) }, &logits), [1, 4]);
    assert_eq!(
        kept_ids(
            SamplerParams {
                top_k: 100,
                ..plain(0)
            },
            &logits
        ),
        [1, 4, 3, 0, 2]
    );
    assert_eq!(kept_ids(SamplerParams { top_k: 0, ..plain(0) }, &logits).len(), 5);
    // Ties at the boundary keep the lowest id.
    assert_eq!(
        kept_ids(SamplerParams { top_k: 2, ..plain(0) }, &[1.0, 2.0, 1.0, 1.0]),
        [1, 0]
    );
}

#[test]
fn top_p_example() {
    // p = [0.5, 0.3, 0.15, 0.05]: 0.5 < 0.7 <= 0.8, so two tokens.
    let logits = [0.5f64, 0.3, 0.15, 0.05].map(|p| p.ln() as f32);
    assert_eq!(
        kept_ids(
            SamplerParams {
                top_p: 0.7,
                ..plain(0)
            },
            &logits
        ),
        [0, 1]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                top_p: 0.4,
                ..plain(0)
            },
            &logits
        ),
        [0]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                top_p: 0.9,
                ..plain(0)
            },
            &logits
        ),
        [0, 1, 2]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                top_p: 1.0,
                ..plain(0)
            },
            &logits
        ),
        [0, 1, 2, 3]
    );
}

#[test]
fn min_p_keeps_tokens_within_a_ratio_of_the_max() {
    // Relative probabilities 1, 0.5, 0.1, 0.04, 0.06: min_p 0.05 drops only the 0.04 one.
    let logits = [1.0f64, 0.5, 0.1, 0.04, 0.06].map(|r| r.ln() as f32);
    assert_eq!(
        kept_ids(
            SamplerParams {
                min_p: 0.05,
                ..plain(0)
            },
            &logits
        ),
        [0, 1, 2, 4]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                min_p: 0.2,
                ..plain(0)
            },
            &logits
        ),
        [0, 1]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                min_p: 1.0,
                ..plain(0)
            },
            &logits
        ),
        [0]
    );
    assert_eq!(
        kept_ids(
            SamplerParams {
                min_p: 0.0,
                ..plain(0)
            },
            &logits
        )
        .len(),
        5
    );
}

#[test]
fn temperature_applies_after_the_filters() {
    // min_p 0.2 sees the raw logits and drops token 2 (ratio e^-2); temp 4 then flattens the rest.
    let logits = [0.0f32, -1.0, -2.0];
    let mut s = sampler(SamplerParams {
        temp: 4.0,
        min_p: 0.2,
        ..plain(0)
    });
    let d = s.distribution(&logits).expect("valid logits");
    assert_eq!(d.iter().map(|t| t.id).collect::<Vec<_>>(), [0, 1]);
    let expected_p0 = 1.0 / (1.0 + (-0.25f32).exp());
    assert!((d[0].p - expected_p0).abs() < 1e-6, "p0 = {}", d[0].p);
    assert_eq!(d[1].logit, -0.25);
}

#[test]
fn samples_stay_inside_the_filtered_set() {
    let logits: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
    let params = SamplerParams::with_seed(3);
    let allowed = kept_ids(params, &logits);
    assert!(allowed.len() < 40, "defaults filter something here");
    let mut s = sampler(params);
    for _ in 0..2000 {
        let t = s.sample(&logits).expect("valid logits");
        assert!(allowed.contains(&t), "token {t} outside {allowed:?}");
    }
}

proptest! {
    #[test]
    fn top_p_keeps_the_minimal_set_with_mass_at_least_p(
        logits in prop::collection::vec(-8.0f32..8.0, 1..80),
        top_p in 0.01f32..1.0,
    ) {
        let kept = kept_ids(SamplerParams { top_p, ..plain(0) }, &logits);
        let reference = reference_probs(&logits);
        // The kept set is the most probable prefix.
        let prefix: Vec<u32> = reference.iter().take(kept.len()).map(|r| r.0).collect();
        prop_assert_eq!(&kept, &prefix);
        let mass: f64 = reference.iter().take(kept.len()).map(|r| r.1).sum();
        let mass_without_last = mass - reference[kept.len() - 1].1;
        let (p, eps) = (f64::from(top_p), 1e-5);
        // Enough mass (or everything), and no smaller prefix would have had enough.
        prop_assert!(mass >= p - eps || kept.len() == logits.len(), "mass {} < p {}", mass, p);
        prop_assert!(mass_without_last < p + eps, "a shorter prefix had mass {} >= p {}", mass_without_last, p);
    }

    #[test]
    fn min_p_keeps_exactly_tokens_above_the_ratio(
        logits in prop::collection::vec(-8.0f32..8.0, 1..80),
        min_p in 0.001f32..1.0,
    ) {
        let kept = kept_ids(SamplerParams { min_p, ..plain(0) }, &logits);
        let reference = reference_probs(&logits);
        let p_max = reference[0].1;
        let eps = 1e-4;
        for &(id, p) in &reference {
            let ratio = p / p_max;
            if kept.contains(&id) {
                prop_assert!(ratio >= f64::from(min_p) - eps, "kept {} with ratio {}", id, ratio);
            } else {
                prop_assert!(ratio < f64::from(min_p) + eps, "dropped {} with ratio {}", id, ratio);
            }
        }
        prop_assert!(kept.contains(&reference[0].0));
    }
}
