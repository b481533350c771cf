//! Greedy continuations of real models equal llama.cpp's on the same architecture
//! ([`golden::llama_cpp_greedy_here`]): x86-64's in `shared/reference/reference-greedy.json`, aarch64's in
//! silica-test-support's `golden-llama-cpp-greedy-aarch64.json`.
//!
//! Why two: llama.cpp's NEON kernels sum in other orders than its x86 ones, and that alone moves its own greedy
//! tokens at near-ties. Built for aarch64 (build 11434, Armv8.2-A + dotprod + fp16, run under qemu), it gives
//! other continuations than its x86 reference for 4 of these 6 prompts (e.g. SmolLM2 "Once upon a time": "the
//! city of Nova Haven" against x86's "New Haven"). silica's NEON kernels give its scalar references' bits (the
//! aarch64 logits equal `--simd scalar`'s on x86), so on aarch64 it is held to llama.cpp's aarch64 tokens, with
//! the same near-tie rule.

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

/// [`golden::aarch64_greedy_file`] holds the same models and prompts (and prompt ids) as the shared x86 reference, and
/// continuations of the same lengths: checked on every architecture, so CI (x86) reads the file too.
#[test]
fn aarch64_reference_has_the_shared_prompts() {
    for name in ["SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"] {
        let (x86, arm) = (
            golden::llama_cpp_greedy(name),
            golden::greedy_from(&golden::aarch64_greedy_file(), name),
        );
        assert_eq!(x86.file, arm.file, "{name}");
        assert_eq!(x86.prompts.len(), arm.prompts.len(), "{name}");
        for (a, b) in x86.prompts.iter().zip(&arm.prompts) {
            assert_eq!((&a.prompt, &a.prompt_ids), (&b.prompt, &b.prompt_ids), "{name}");
            assert_eq!(
                a.generated_ids.len(),
                b.generated_ids.len(),
                "{name} {:?}",
                a.prompt
            );
        }
    }
}
