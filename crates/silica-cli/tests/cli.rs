//! The `silica` binary end to end: `run` streams llama.cpp's greedy text, `inspect` reports the file, and bad
//! input fails with exit code 2 and a message naming the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::silica;
use silica_kernels::Simd;
use silica_test_support::{golden, models};

/// Reference prompt "def fibonacci(n):", whose 32 greedy tokens both passes reproduce on x86-64, and the graph
/// path on aarch64 too.
const FIBONACCI: usize = 2;

/// The reference prompt whose 32 greedy tokens the native pass reproduces on this architecture (the others
/// diverge at near-ties, which summation order picks): "def fibonacci(n):" on x86-64; on aarch64, against
/// llama.cpp's aarch64 tokens (checked under qemu), "The capital of France is".
const NATIVE_EXACT: usize = if cfg!(target_arch = "aarch64") {
    0
} else {
    FIBONACCI
};

/// `silica --simd LEVEL run --device DEV` of SmolLM2 Q4_1's reference prompt `prompt` for 32 greedy tokens:
/// `(stdout, stderr)`.
fn greedy_run(prompt: usize, simd: &str, device: &str) -> (String, String) {
    let reference = golden::llama_cpp_greedy_here("SmolLM2-135M-Instruct.Q4_1");
    let p = &reference.prompts[prompt];
    let model = models::require(models::SMOLLM2_Q4_1);
    let out = silica(&[
        "--simd",
        simd,
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        &p.prompt,
        "-n",
        "32",
        "--temp",
        "0",
        "-t",
        "2",
        "--device",
        device,
    ]);
    assert!(
        out.status.success(),
        "--simd {simd} --device {device}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn run_greedy_prints_llama_cpp_text_and_timings() {
    let reference = golden::llama_cpp_greedy_here("SmolLM2-135M-Instruct.Q4_1");
    let p = &reference.prompts[NATIVE_EXACT];
    // The best level, then every lower SIMD level this CPU has: each gives llama.cpp's text.
    let mut levels = vec!["auto"];
    levels.extend(
        Simd::available()
            .into_iter()
            .filter(|&l| l != Simd::Scalar)
            .map(Simd::name),
    );
    for simd in levels {
        let (stdout, stderr) = greedy_run(NATIVE_EXACT, simd, "auto");
        assert_eq!(
            stdout,
            format!("{}{}\n", p.prompt, p.generated_text),
            "--simd {simd}"
        );
        assert!(
            stderr.contains("load time")
                && stderr.contains("prompt eval")
                && stderr.contains("/    32 tokens"),
            "--simd {simd}: {stderr}"
        );
    }
}

#[test]
fn simd_scalar_runs_the_reference_kernels_and_unsupported_levels_fail() {
    // The scalar references round as ggml's generic C code, not its x86 kernels, so the text may leave llama.cpp's
    // (x86) text; all 32 tokens are generated.
    let (stdout, stderr) = greedy_run(FIBONACCI, "scalar", "cpu");
    assert!(stdout.starts_with("def fibonacci(n):"), "{stdout}");
    assert!(stderr.contains("/    32 tokens"), "{stderr}");
    // Every architecture lacks some level (x86-64 the NEON ones, aarch64 the x86 ones).
    let missing = Simd::ALL.into_iter().find(|l| !l.supported()).unwrap();
    let model = models::require(models::SMOLLM2_Q4_1);
    let out = silica(&[
        "--simd",
        missing.name(),
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!("error: --simd {missing}: ")) && err.contains("not supported by this CPU"),
        "{err}"
    );
}

#[test]
fn inspect_json_reports_counts_and_tokenizer() {
    let model = models::require(models::SMOLLM2_Q4_1);
    let out = silica(&["inspect", "-o", "json", model.to_str().unwrap()]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // llama-bench reports model_size 96576768 and model_n_params 134515008 for this file.
    assert_eq!(j["n_params"], 134_515_008);
    assert_eq!(j["tensor_bytes"], 96_576_768);
    assert_eq!(j["file_type"], "Q4_1");
    assert_eq!(j["architecture"], "llama");
    assert_eq!(j["tokenizer"]["n_vocab"], 49152);
    assert_eq!(j["tokenizer"]["pre"], "smollm");
    assert_eq!(j["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    assert_eq!(j["tensors"].as_array().unwrap().len(), 272);
    let t = j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.0.ffn_gate.weight")
        .unwrap();
    assert_eq!(t["shape"], serde_json::json!([1536, 576]));
    assert_eq!(t["type"], "Q4_1");

    let out = silica(&["inspect", model.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("134515008")
            && text.contains("blk.29.ffn_down.weight")
            && text.contains("5.74 bits per weight"),
        "{text}"
    );
}

/// `--device cpu-graph` runs the GPU code path (candle's tensor graph) on the CPU: llama.cpp's text too. A GPU
/// backend this build lacks, or an unknown device, fails with exit code 2 saying what to do.
#[test]
fn the_gpu_code_path_on_the_cpu_prints_llama_cpp_text_and_missing_backends_fail_clearly() {
    let reference = golden::llama_cpp_greedy_here("SmolLM2-135M-Instruct.Q4_1");
    let p = &reference.prompts[FIBONACCI];
    let (stdout, _) = greedy_run(FIBONACCI, "auto", "cpu-graph");
    assert_eq!(stdout, format!("{}{}\n", p.prompt, p.generated_text));
    let model = models::require(models::SMOLLM2_Q4_1);
    let m = model.to_str().unwrap();
    let mut cases = vec![("gpu", "unknown device")];
    if !cfg!(feature = "cuda") {
        cases.push(("cuda:1", "--features cuda"));
    }
    if !cfg!(feature = "metal") {
        cases.push(("metal", "--features metal"));
    }
    for (dev, says) in cases {
        for args in [
            vec!["run", "-m", m, "-p", "hi", "--device", dev],
            vec!["bench", "-m", m, "-p", "8", "-n", "0", "-dev", dev, "--no-save"],
        ] {
            let out = silica(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(dev) && err.contains(says), "{args:?}: {err}");
        }
    }
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\0\0\0").unwrap();
    for args in [
        vec!["inspect", junk.to_str().unwrap()],
        vec!["run", "-m", junk.to_str().unwrap(), "-p", "hi"],
        vec!["run", "-m", "/nonexistent/m.gguf", "-p", "hi"],
    ] {
        let out = silica(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("error: ") && (err.contains("junk.gguf") || err.contains("/nonexistent/m.gguf")),
            "{err}"
        );
    }
    let model = models::require(models::SMOLLM2_Q4_1);
    let out = silica(&["run", "-m", model.to_str().unwrap(), "-p", "hi", "-t", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("threads"));
    let out = silica(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "hello there",
        "-n",
        "10",
        "-c",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ctx-size"));
}
