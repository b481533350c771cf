//! The GPU path on a CUDA GPU (built only with `--features cuda`; CI has no GPU, so these run where one is:
//! `scripts/gpu-check.sh`). Each test fails, saying so, when no CUDA device opens.

use silica_gguf::GgufFile;
use silica_model::{Device, Model};
use silica_test_support::fixtures::TinyModel;

use crate::consistency::{graph_cases, graph_model_matches_native_pass};

fn gpu() -> Device {
    Device::new_cuda(0).unwrap_or_else(|e| {
        panic!(
            "these tests need a CUDA GPU (built with --features cuda, run by scripts/gpu-check.sh): {}",
            e.to_string().lines().next().unwrap_or_default()
        )
    })
}

/// Every fixture's logits on the GPU against the native CPU pass, over prompts, mixed two-sequence batches and
/// single-token steps, with the CPU graph path's tolerances.
#[test]
fn the_gpu_path_on_cuda_matches_the_native_pass() {
    let dev = gpu();
    for (t, tol) in graph_cases() {
        graph_model_matches_native_pass(t, tol, &dev);
    }
}

/// The weights, the KV cache and the logits' source live on the GPU, not the host.
#[test]
fn a_cuda_model_keeps_its_cache_on_the_gpu() {
    let dev = gpu();
    let f = GgufFile::from_bytes(TinyModel::llama().to_bytes(), "tiny.gguf").unwrap();
    let m = Model::load(&f, &dev).unwrap();
    assert!(m.is_graph(), "a CUDA model runs candle's graph");
    let mut kv = m.new_kv_cache(16, 1, &dev).unwrap();
    let logits = m
        .forward(&silica_model::Batch::single(&[1, 2, 3], 0, false), &mut kv)
        .unwrap();
    assert!(logits.device().is_cuda(), "{:?}", logits.device());
    assert_eq!(kv.n_past(0), 3);
}
