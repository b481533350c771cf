//! Engine tests: generation through the tokenizer matches llama.cpp's reference text on a real model, and
//! requests that cannot fit fail clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use silica_engine::{Engine, GenerateParams, LoadParams};
use silica_test_support::{golden, models};

#[test]
fn gemma3_greedy_text_matches_llama_cpp() {
    let reference = golden::llama_cpp_greedy("gemma-3-270m-q4_k_m");
    let engine = Engine::load(models::require(models::GEMMA3_Q4_K_M), &LoadParams::default()).unwrap();
    // "The capital of France is": equal for all 32 tokens. (The other two prompts diverge from llama.cpp at a
    // near-tie, < 0.2% between the top two logits, which silica-model's reference test accepts and reports; this
    // test checks the engine's text path on a continuation that must match exactly.)
    let p = &reference.prompts[0];
    let mut streamed = String::new();
    let g = engine
        .generate(&p.prompt, &GenerateParams::greedy(p.generated_ids.len()), |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(g.prompt_tokens, p.prompt_ids);
    assert_eq!(g.tokens, p.generated_ids);
    assert_eq!(g.text, p.generated_text);
    assert_eq!(streamed, g.text);
    assert_eq!(g.timings.prompt_n, p.prompt_ids.len());
    assert_eq!(g.timings.predicted_n, p.generated_ids.len());
    assert!(g.timings.prompt_per_second() > 0.0 && g.timings.predicted_per_second() > 0.0);
}

#[test]
fn too_small_context_and_bad_files_fail_clearly() {
    let engine = Engine::load(models::require(models::SMOLLM2_Q4_1), &LoadParams::default()).unwrap();
    let params = GenerateParams {
        n_ctx: 8,
        ..GenerateParams::greedy(16)
    };
    let e = engine
        .generate("The capital of France is", &params, |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("n_ctx = 8") && e.contains("--ctx-size"), "{e}");
    let e = engine
        .generate("", &GenerateParams::greedy(4), |_| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let e = Engine::load(&junk, &LoadParams::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.gguf") && e.contains("GGUF"), "{e}");
}
