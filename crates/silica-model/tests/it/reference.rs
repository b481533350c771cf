//! Greedy continuations of real models equal llama.cpp's on the same architecture
//! ([`golden::llama_cpp_greedy_here`]: its x86-64 tokens in `shared/reference/`, its aarch64 ones, which differ
//! at near-ties, in silica-test-support). silica's NEON kernels give its scalar references' bits (ggml's generic
//! order, not its NEON one), so on aarch64 it is held to llama.cpp's aarch64 tokens, with the same near-tie rule.

use silica_gguf::GgufFile;
use silica_model::{Device, Model};
use silica_test_support::{golden, models};

/// Compares with the reference (near-ties accepted, see [`golden::assert_greedy_matches`]): the native pass,
/// and the GPU path run on the CPU ([`Model::load_graph`]).
fn check(name: &str, file: &str) {
    let reference = golden::llama_cpp_greedy_here(name);
    let file = GgufFile::open(models::require(file)).unwrap();
    for (pass, model) in [
        ("native pass", Model::load(&file, &Device::Cpu).unwrap()),
        (
            "graph path (the GPU code, on the CPU)",
            Model::load_graph(&file, &Device::Cpu).unwrap(),
        ),
    ] {
        eprintln!("{name}: {pass}");
        golden::assert_greedy_matches(&reference, |prompt, n| {
            model.greedy_top(prompt, n, &Device::Cpu).unwrap()
        });
    }
}

#[test]
fn smollm2_q4_1_greedy_matches_llama_cpp() {
    check("SmolLM2-135M-Instruct.Q4_1", models::SMOLLM2_Q4_1);
}

#[test]
fn gemma3_q4_k_m_greedy_matches_llama_cpp() {
    check("gemma-3-270m-q4_k_m", models::GEMMA3_Q4_K_M);
}
