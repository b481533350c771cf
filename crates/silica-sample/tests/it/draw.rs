//! The seeded draw: reproducible, seed-dependent, and with the right frequencies.

use silica_sample::{Sampler, SamplerParams};

use crate::{plain, sampler};

fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
    (0..n).map(|_| s.sample(logits).expect("valid logits")).collect()
}

#[test]
fn same_seed_same_sequence_different_seed_different_sequence() {
    let flat = vec![0.0f32; 1000];
    let a = draws(&mut sampler(plain(1234)), &flat, 100);
    let b = draws(&mut sampler(plain(1234)), &flat, 100);
    let c = draws(&mut sampler(plain(1235)), &flat, 100);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // A flat distribution over 1000 tokens: 100 draws are far from constant.
    let mut distinct = a.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 50, "only {} distinct tokens", distinct.len());
}

#[test]
fn same_seed_same_sequence_with_defaults_and_history() {
    let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 113) as f32 * 0.03).collect();
    let params = SamplerParams {
        repeat_penalty: 1.1,
        ..SamplerParams::with_seed(77)
    };
    let run = || {
        let mut s = sampler(params);
        (0..200)
            .map(|_| {
                let t = s.sample(&logits).expect("valid logits");
                s.accept(t);
                t
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn reset_restarts_the_sequence() {
    let flat = vec![0.0f32; 64];
    let mut s = sampler(plain(5));
    let first = draws(&mut s, &flat, 30);
    s.reset();
    assert_eq!(draws(&mut s, &flat, 30), first);
}

#[test]
fn distribution_does_not_advance_the_rng() {
    let flat = vec![0.0f32; 64];
    let expected = draws(&mut sampler(plain(8)), &flat, 10);
    let mut s = sampler(plain(8));
    let got: Vec<u32> = (0..10)
        .map(|_| {
            s.distribution(&flat).expect("valid logits");
            s.sample(&flat).expect("valid logits")
        })
        .collect();
    assert_eq!(got, expected);
}

fn frequencies(params: SamplerParams, logits: &[f32], n_draws: usize) -> Vec<f64> {
    let mut s = sampler(params);
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n_draws {
        counts[s.sample(logits).expect("valid logits") as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n_draws as f64).collect()
}

#[test]
fn empirical_frequencies_match_the_softmax() {
    // 20k draws: the standard error is at most sqrt(0.25 / 20000) = 0.0035; allow 0.015.
    let probs = [0.5f64, 0.3, 0.2];
    let logits = probs.map(|p| p.ln() as f32);
    let freqs = frequencies(plain(42), &logits, 20_000);
    for (f, p) in freqs.iter().zip(probs) {
        assert!((f - p).abs() < 0.015, "frequencies {freqs:?} vs {probs:?}");
    }
}

#[test]
fn temperature_reshapes_the_frequencies() {
    // temp 2 turns p into p^(1/2), renormalised.
    let probs = [0.5f64, 0.3, 0.2];
    let logits = probs.map(|p| p.ln() as f32);
    let roots = probs.map(f64::sqrt);
    let sum: f64 = roots.iter().sum();
    let freqs = frequencies(
        SamplerParams {
            temp: 2.0,
            ..plain(7)
        },
        &logits,
        20_000,
    );
    for (f, r) in freqs.iter().zip(roots) {
        assert!(
            (f - r / sum).abs() < 0.015,
            "frequencies {freqs:?} vs {roots:?}/{sum}"
        );
    }
}
