//! Repeat, frequency and presence penalties change the pick as in llama.cpp.

use silica_sample::SamplerParams;

use crate::sampler;

fn greedy_with(repeat_penalty: f32, frequency_penalty: f32, presence_penalty: f32) -> SamplerParams {
    SamplerParams {
        repeat_penalty,
        frequency_penalty,
        presence_penalty,
        ..SamplerParams::greedy()
    }
}

#[test]
fn repeat_penalty_divides_positive_logits() {
    let logits = [2.0f32, 1.9, 0.0];
    let mut s = sampler(greedy_with(1.5, 0.0, 0.0));
    assert_eq!(s.sample(&logits), Ok(0));
    s.accept(0);
    // 2.0 / 1.5 = 1.33 < 1.9
    assert_eq!(s.sample(&logits), Ok(1));
    s.reset();
    assert_eq!(s.sample(&logits), Ok(0));
}

#[test]
fn repeat_penalty_multiplies_negative_logits() {
    // Dividing -1.0 would raise it to -0.67 and keep token 0; multiplying gives -1.5 < -1.2.
    let logits = [-1.0f32, -1.2];
    let mut s = sampler(greedy_with(1.5, 0.0, 0.0));
    s.accept(0);
    assert_eq!(s.sample(&logits), Ok(1));
}

#[test]
fn repeat_penalty_applies_once_per_distinct_token() {
    // Three occurrences of token 0 still give 2.0 / 1.5, above 1.3.
    let logits = [2.0f32, 1.3];
    let mut s = sampler(greedy_with(1.5, 0.0, 0.0));
    for _ in 0..3 {
        s.accept(0);
    }
    assert_eq!(s.sample(&logits), Ok(0));
}

#[test]
fn frequency_penalty_scales_with_count_and_presence_does_not() {
    let logits = [2.0f32, 1.0];
    // freq 0.4: one occurrence gives 1.6, three give 0.8 < 1.0.
    let mut s = sampler(greedy_with(1.0, 0.4, 0.0));
    s.accept(0);
    assert_eq!(s.sample(&logits), Ok(0));
    s.accept(0);
    s.accept(0);
    assert_eq!(s.sample(&logits), Ok(1));

    // presence 0.6: 1.4 whatever the count.
    let mut s = sampler(greedy_with(1.0, 0.0, 0.6));
    for _ in 0..5 {
        s.accept(0);
    }
    assert_eq!(s.sample(&logits), Ok(0));
    let mut s = sampler(greedy_with(1.0, 0.0, 1.5));
    s.accept(0);
    assert_eq!(s.sample(&logits), Ok(1));
}

#[test]
fn only_the_last_repeat_last_n_tokens_count() {
    let logits = [2.0f32, 1.9, 0.0, 0.0, 0.0];
    let mut s = sampler(SamplerParams {
        repeat_last_n: 2,
        ..greedy_with(1.5, 0.0, 0.0)
    });
    s.accept(0);
    assert_eq!(s.sample(&logits), Ok(1));
    s.accept(3);
    s.accept(4); // token 0 leaves the window
    assert_eq!(s.sample(&logits), Ok(0));

    let mut off = sampler(SamplerParams {
        repeat_last_n: 0,
        ..greedy_with(1.5, 0.0, 0.0)
    });
    off.accept(0);
    assert_eq!(off.sample(&logits), Ok(0));
}

#[test]
fn penalties_run_before_top_k() {
    // With top_k 1 the penalised token 0 must lose to token 1 before the cut.
    let logits = [2.0f32, 1.9, 0.0];
    let mut s = sampler(SamplerParams {
        top_k: 1,
        repeat_penalty: 1.5,
        ..SamplerParams::with_seed(9)
    });
    s.accept(0);
    for _ in 0..20 {
        assert_eq!(s.sample(&logits), Ok(1));
    }
}

#[test]
fn out_of_vocab_history_is_ignored() {
    let mut s = sampler(greedy_with(1.5, 1.0, 1.0));
    s.accept(1_000);
    assert_eq!(s.sample(&[2.0, 1.9]), Ok(0));
}
