//! The in-process runner on a tiny random model: repetitions, depth restore, parallel sequences, chunking,
//! KV cache sizing, and records built from what was measured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use silica_bench::params::{BenchCase, BenchParams, KvType};
use silica_bench::record::{BenchRecord, EnvInfo, ModelFacts};
use silica_bench::runner::{Progress, RunOptions, kv_cache_bytes, run_case};
use silica_engine::{Engine, LoadParams};
use silica_test_support::fixtures::TinyModel;

/// Loads `path` in a process that computes with one thread, the count [`case`] asks for (fixed before any model
/// loads).
fn load(path: &std::path::Path) -> Engine {
    silica_kernels::set_cpu_threads(1).unwrap();
    Engine::load(path, &LoadParams::default()).unwrap()
}

/// A case on one thread.
fn case(path: &std::path::Path, n_prompt: u32, n_gen: u32, n_depth: u32, n_parallel: u32) -> BenchCase {
    let mut p = BenchParams::with_threads(1);
    p.models = vec![path.to_owned()];
    if n_prompt > 0 && n_gen > 0 {
        (p.n_prompt, p.n_gen, p.n_pg) = (vec![0], vec![0], vec![(n_prompt, n_gen)]);
    } else {
        (p.n_prompt, p.n_gen) = (vec![n_prompt], vec![n_gen]);
    }
    p.n_depth = vec![n_depth];
    p.n_parallel = vec![n_parallel];
    p.n_ubatch = vec![7]; // prompts cross forward-pass boundaries
    p.n_batch = vec![10];
    p.grid().unwrap().remove(0)
}

#[test]
fn reps_depth_and_parallel_sequences() {
    let (_dir, path) = TinyModel::llama().write_temp();
    let engine = load(&path);
    let opts = RunOptions {
        reps: 3,
        ..RunOptions::default()
    };
    for (n_prompt, n_gen, n_depth, n_par) in [
        (23, 0, 0, 1),
        (0, 5, 0, 1),
        (23, 0, 9, 3),
        (0, 5, 9, 2),
        (4, 3, 5, 2),
    ] {
        let c = case(&path, n_prompt, n_gen, n_depth, n_par);
        let mut events = Vec::new();
        let m = run_case(&engine, &c, &opts, &mut None, |p| events.push(p)).unwrap();
        assert_eq!(m.samples_ns.len(), 3);
        assert!(m.samples_ns.iter().all(|&ns| ns > 0));
        // Warm-up, then the depth state built once and restored for later repetitions.
        let mut want = vec![Progress::Warmup];
        if n_depth > 0 {
            want.push(Progress::Depth);
        }
        want.extend((1..=3).map(|i| Progress::Rep(i, 3)));
        assert_eq!(events, want, "{}", c.test_name());
        let hp = engine.model().hparams();
        assert_eq!(m.kv_cache_bytes, kv_cache_bytes(hp, &c));
        assert_eq!(
            m.kv_cache_bytes,
            u64::from(n_par) * u64::from(n_prompt + n_gen + n_depth) * 2 * 2 * 16 * 2 * 2,
            "n_par x n_ctx x 2 layers x 2 KV heads x 16 x (K + V) x 2 bytes"
        );
        let facts = ModelFacts::read(&path).unwrap();
        let env = EnvInfo::detect(engine.device(), engine.model().is_graph());
        let r = BenchRecord::new(&c, &env, &facts, &m, "2026-01-01T00:00:00Z".into());
        let tokens = f64::from(n_par * (n_prompt + n_gen));
        for (ns, ts) in r.samples_ns.iter().zip(&r.samples_ts) {
            assert!((ts - tokens * 1e9 / *ns as f64).abs() < 1e-9 * ts);
        }
        assert_eq!(r.n_ctx, u64::from(n_prompt + n_gen + n_depth));
    }
}

#[test]
fn a_full_context_is_an_error_not_a_panic() {
    let (_dir, path) = TinyModel::llama().write_temp();
    let engine = load(&path);
    let mut c = case(&path, 8, 0, 0, 1);
    c.n_ctx = 4; // bypasses the grid's check on purpose
    let e = run_case(&engine, &c, &RunOptions::default(), &mut None, |_| {}).unwrap_err();
    assert!(e.to_string().starts_with("pp8:"), "{e}");
}

#[test]
fn a_thread_count_the_process_does_not_use_is_an_error() {
    let (_dir, path) = TinyModel::llama().write_temp();
    let engine = load(&path);
    let mut c = case(&path, 8, 0, 0, 1);
    c.n_threads = 2; // the process computes with 1: its record would be mislabelled
    let e = run_case(&engine, &c, &RunOptions::default(), &mut None, |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("pp8:") && msg.contains("computes with 1 CPU threads"),
        "{msg}"
    );
}

#[test]
fn kv_types_change_the_cache_size() {
    let (_dir, path) = TinyModel::llama().write_temp();
    let engine = load(&path);
    let mut c = case(&path, 8, 0, 0, 1);
    c.type_k = KvType::F32;
    c.type_v = KvType::Bf16;
    let opts = RunOptions {
        reps: 1,
        warmup: false,
        ..RunOptions::default()
    };
    let m = run_case(&engine, &c, &opts, &mut None, |_| {}).unwrap();
    assert_eq!(m.kv_cache_bytes, 8 * 2 * 2 * 16 * (4 + 2));
}

#[test]
fn weight_bytes_per_token_reads_one_embedding_row() {
    let (_d1, untied) = TinyModel::llama().tied(false).write_temp();
    let (_d2, tied) = TinyModel::llama().tied(true).write_temp();
    let f = ModelFacts::read(&untied).unwrap();
    let file = silica_gguf::GgufFile::open(&untied).unwrap();
    let embd = file.tensor("token_embd.weight").unwrap().n_bytes;
    assert_eq!(f.weight_bytes_per_token, f.model_size - embd + embd / 288);
    let t = ModelFacts::read(&tied).unwrap();
    assert_eq!(
        t.weight_bytes_per_token, t.model_size,
        "a tied output reads the whole embedding"
    );
    assert!(f.model_type.starts_with("llama 0M"), "{}", f.model_type);
}
