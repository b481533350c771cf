//! `silica bench`: llama-bench's record schema, the output formats, batch and depth rows, the default model and
//! the errors of the issue's acceptance list.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::silica;
use serde_json::Value;
use silica_test_support::models::{SMOLLM2_Q4_1, require};

/// Runs `silica bench` with the results file in `data_dir`.
fn bench(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silica"))
        .arg("bench")
        .args(args)
        .env("SILICA_DATA_DIR", data_dir)
        .output()
        .unwrap()
}

/// Runs `silica bench -m <SmolLM2 Q4_1> ARGS` with the results file in `data_dir`.
fn smol(data_dir: &Path, args: &[&str]) -> Output {
    let model = smollm2();
    let mut all = vec!["-m", model.as_str()];
    all.extend_from_slice(args);
    bench(data_dir, &all)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "silica bench failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn smollm2() -> String {
    require(SMOLLM2_Q4_1).display().to_string()
}

/// The JSON kind of a value: llama-bench's integers and floats are told apart.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "int".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => format!("array of {}", a.first().map_or("?".into(), kind)),
        Value::Object(_) => "object".into(),
    }
}

fn sample_records() -> Vec<Value> {
    let shared = std::env::var_os("SILICA_SHARED_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    let path = shared.join("reference/llama-bench-sample.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set SILICA_SHARED_DIR to the shared/ directory)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

#[test]
fn json_records_are_a_superset_of_llama_bench_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The issue's acceptance command.
    let out = stdout(&smol(
        dir.path(),
        &["-p", "512", "-n", "128", "-r", "3", "-o", "json"],
    ));
    let ours: Vec<Value> = serde_json::from_str(&out).unwrap();
    let theirs = sample_records();
    assert_eq!(ours.len(), theirs.len(), "one pp512 and one tg128 record");
    for (o, t) in ours.iter().zip(&theirs) {
        let (o, t) = (o.as_object().unwrap(), t.as_object().unwrap());
        for (k, tv) in t {
            let ov = o.get(k).unwrap_or_else(|| panic!("field {k} missing"));
            assert_eq!(kind(ov), kind(tv), "type of {k}");
        }
        // The parameters that describe the test take llama-bench's values.
        for k in [
            "n_prompt",
            "n_gen",
            "n_depth",
            "n_batch",
            "n_ubatch",
            "type_k",
            "type_v",
            "model_size",
            "model_n_params",
        ] {
            assert_eq!(o[k], t[k], "{k}");
        }
        assert_eq!(o["samples_ns"].as_array().unwrap().len(), 3);
        let ts: Vec<f64> = o["samples_ts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let avg = ts.iter().sum::<f64>() / 3.0;
        assert!(
            (o["avg_ts"].as_f64().unwrap() - avg).abs() < 1e-6 * avg,
            "avg_ts is the mean of samples_ts"
        );
        for k in ["peak_rss_bytes", "kv_cache_bytes", "weight_bytes_per_token"] {
            assert!(o[k].as_u64().unwrap() > 0, "{k}");
        }
        assert_eq!(o["engine"], "silica");
        // Without --simd, the CPU's best level.
        let best = silica_kernels::Simd::best();
        assert_eq!(o["kernel_simd"], best.name());
    }
    assert_eq!(ours[0]["test"], "pp512");
    assert_eq!(ours[1]["test"], "tg128");
    // The KV cache of n_ctx = 512 positions: 30 layers x 3 KV heads x 64 x 2 (K and V) x 2 bytes (f16).
    assert_eq!(ours[0]["kv_cache_bytes"], 512 * 30 * 3 * 64 * 2 * 2);
    // Both records are in the results file as well.
    let saved = std::fs::read_to_string(dir.path().join("bench-results.jsonl")).unwrap();
    assert_eq!(saved.lines().count(), 2);
}

#[test]
fn sql_output_loads_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sql = stdout(&smol(
        dir.path(),
        &["-p", "16", "-n", "4", "-r", "2", "-o", "sql", "--no-save"],
    ));
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&sql).unwrap();
    let rows: Vec<(String, u32, u32, f64)> = db
        .prepare("SELECT test, n_prompt, n_gen, avg_ts FROM silica_bench ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].1, rows[0].2), ("pp16", 16, 0));
    assert_eq!((rows[1].0.as_str(), rows[1].1, rows[1].2), ("tg4", 0, 4));
    assert!(rows.iter().all(|r| r.3 > 0.0));
    // --no-save wrote nothing.
    assert!(!dir.path().join("bench-results.jsonl").exists());
}

#[test]
fn csv_and_jsonl_carry_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let csv = stdout(&smol(
        dir.path(),
        &["-p", "8", "-n", "2", "-r", "1", "-o", "csv", "-oe", "jsonl"],
    ));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..3],
        ["build_commit", "build_number", "cpu_info"],
        "llama-bench's column order"
    );
    assert!(!header.contains(&"samples_ns"), "arrays are left out of CSV");
    assert_eq!(lines.count(), 2);
    let saved = std::fs::read_to_string(dir.path().join("bench-results.jsonl")).unwrap();
    let recs: Vec<Value> = saved.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["test"], "tg2");
}

#[test]
fn batch_and_depth_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = smol(
        dir.path(),
        &[
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "1",
            "--batch",
            "1,2,4",
            "-d",
            "0,8",
            "-o",
            "jsonl",
            "-oe",
            "md",
            "--no-save",
        ],
    );
    let text = stdout(&out);
    let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<(String, u64)> = recs
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap().to_owned(),
                r["n_parallel"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for d in ["", " @ d8"] {
        for b in [1, 2, 4] {
            want.push((format!("pp16{d}"), b));
            want.push((format!("tg4{d}"), b));
        }
    }
    assert_eq!(names, want);
    for r in &recs {
        let b = r["n_parallel"].as_f64().unwrap();
        let tokens = b * (r["n_prompt"].as_f64().unwrap() + r["n_gen"].as_f64().unwrap());
        let ns = r["samples_ns"][0].as_f64().unwrap();
        let ts = r["samples_ts"][0].as_f64().unwrap();
        assert!(
            (ts - 1e9 * tokens / ns).abs() < 1e-6 * ts,
            "aggregate t/s counts every sequence"
        );
        assert!(
            (r["avg_ts_per_seq"].as_f64().unwrap() * b - r["avg_ts"].as_f64().unwrap()).abs() < 1e-6 * ts
        );
        // Each sequence holds depth + prompt + generation positions.
        let n_ctx =
            r["n_depth"].as_u64().unwrap() + r["n_prompt"].as_u64().unwrap() + r["n_gen"].as_u64().unwrap();
        assert_eq!(r["n_ctx"].as_u64().unwrap(), n_ctx);
    }
    let md = String::from_utf8(out.stderr).unwrap();
    assert!(md.contains("n_parallel") && md.contains("t/s per seq"), "{md}");
    assert!(
        md.lines()
            .any(|l| l.contains("tg4 @ d8") && l.contains("|          4 |")),
        "{md}"
    );
}

#[test]
fn several_thread_counts_run_in_workers() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&smol(
        dir.path(),
        &["-p", "8", "-n", "0", "-r", "1", "-t", "1,2", "-o", "jsonl"],
    ));
    assert_eq!(record_threads(&out), [1, 2]);
    let saved = std::fs::read_to_string(dir.path().join("bench-results.jsonl")).unwrap();
    assert_eq!(
        saved.lines().count(),
        2,
        "the parent saves the workers' records once"
    );
}

/// The `n_threads` values of JSONL records.
fn record_threads(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n_threads"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// One thread count runs in the `silica bench` process itself, which must compute with that count and not the
/// machine's default (the runner refuses a case whose count the process does not use). 1 and 3 cannot both be
/// the default, so one of them always differs from it.
#[test]
fn one_thread_count_runs_here_with_that_count() {
    let dir = tempfile::tempdir().unwrap();
    for t in ["1", "3"] {
        let out = stdout(&smol(
            dir.path(),
            &["-p", "8", "-n", "0", "-r", "1", "-t", t, "-o", "jsonl"],
        ));
        assert_eq!(record_threads(&out), [t.parse::<u64>().unwrap()]);
    }
    // Without -t, SILICA_NUM_THREADS is the count.
    let model = smollm2();
    let o = Command::new(env!("CARGO_BIN_EXE_silica"))
        .args([
            "bench", "-m", &model, "-p", "8", "-n", "0", "-r", "1", "-o", "jsonl",
        ])
        .env("SILICA_DATA_DIR", dir.path())
        .env("SILICA_NUM_THREADS", "3")
        .output()
        .unwrap();
    assert_eq!(record_threads(&stdout(&o)), [3]);
    // A count from the environment that is out of range is an error that names the variable.
    let o = Command::new(env!("CARGO_BIN_EXE_silica"))
        .args(["bench", "-m", &model, "-p", "8", "-n", "0", "-r", "1"])
        .env("SILICA_DATA_DIR", dir.path())
        .env("SILICA_NUM_THREADS", "100000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("SILICA_NUM_THREADS"), "{err}");
}

#[test]
fn simd_level_reaches_the_workers_and_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&smol(
        dir.path(),
        &[
            "--simd", "scalar", "-p", "8", "-n", "0", "-r", "1", "-t", "1,2", "-o", "jsonl",
        ],
    ));
    let levels: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kernel_simd"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(levels, ["scalar", "scalar"]);
    // The Markdown table's footer names it as well.
    let md = stdout(&smol(
        dir.path(),
        &["--simd", "scalar", "-p", "8", "-n", "0", "-r", "1"],
    ));
    assert!(md.contains(", CPU kernels scalar\n"), "{md}");
}

/// `-dev cpu-graph` (the GPU code path on the CPU) reaches the workers, and its records say so: they must never
/// join the native CPU's.
#[test]
fn device_reaches_the_workers_and_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&smol(
        dir.path(),
        &[
            "-dev",
            "cpu-graph",
            "-p",
            "8",
            "-n",
            "2",
            "-r",
            "1",
            "-t",
            "1,2",
            "-o",
            "jsonl",
        ],
    ));
    let records: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 4, "{out}");
    for r in &records {
        assert_eq!(r["backends"], "CPU (candle graph)", "{r}");
        assert_eq!(r["n_gpu_layers"], 0, "{r}");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0, "{r}");
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail: {err}");
    assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
}

#[test]
fn clear_errors() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file").unwrap();
    let junk = junk.display().to_string();
    fails_with(&["-m", &junk, "-r", "1"], &junk);
    fails_with(&["-m", "/no/such/model.gguf"], "/no/such/model.gguf");
    fails_with(
        &["-m", &model, "-c", "16", "-p", "32", "-n", "0"],
        "n_ctx = 16 is too small for pp32",
    );
    fails_with(
        &["-m", &model, "-c", "40", "-d", "32", "-p", "0", "-n", "16"],
        "too small for tg16 @ d32",
    );
    fails_with(&["-m", &model, "-t", "0"], "-t/--threads must be at least 1");
    fails_with(&["-m", &model, "-t", "100000"], "more than 4 x");
    fails_with(&["-m", &model, "-p", "0", "-n", "0"], "nothing to benchmark");
    fails_with(&["-m", &model, "-p", "8-2"], "-p/--n-prompt");
    fails_with(&["-m", &model, "-ctk", "q8_0"], "supported: f32, f16, bf16");
    fails_with(&["-m", &model, "-ngl", "99"], "-ngl is a llama-bench option");
    fails_with(&["-m", &model, "-r", "0"], "-r/--repetitions");
    fails_with(&["-m", &model, "-o", "xml"], "unknown output format");
}

#[test]
fn kv_cache_types_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&smol(
        dir.path(),
        &[
            "-p",
            "8",
            "-n",
            "0",
            "-r",
            "1",
            "-ctk",
            "f32",
            "-ctv",
            "bf16",
            "-o",
            "jsonl",
            "--no-save",
        ],
    ));
    let r: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (r["type_k"].as_str(), r["type_v"].as_str()),
        (Some("f32"), Some("bf16"))
    );
    // K in f32 (4 bytes), V in bf16 (2 bytes): 8 positions x 30 layers x 3 heads x 64.
    assert_eq!(r["kv_cache_bytes"], 8 * 30 * 3 * 64 * (4 + 2));
}

#[test]
fn no_arguments_creates_the_default_model_and_prints_the_table() {
    let models = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_silica"))
        .arg("bench")
        .env("SILICA_MODELS_DIR", models.path())
        .env("SILICA_DATA_DIR", data.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let text = stdout(&out);
    assert!(err.contains("creating the default model"), "{err}");
    assert!(models.path().join("synth-llama-3.2-1b-Q4_0.gguf").is_file());
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| llama 1B Q4_0"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains(" pp512 ") && rows[1].contains(" tg128 "),
        "{text}"
    );
    let best = silica_kernels::Simd::best();
    assert!(text.contains(&format!(", CPU kernels {best}\n")), "{text}");
    let saved = std::fs::read_to_string(data.path().join("bench-results.jsonl")).unwrap();
    assert_eq!(saved.lines().count(), 2);
}

#[test]
fn help_explains_the_method() {
    let out = silica(&["bench", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "tokenization and sampling are not timed",
        "-ub",
        "--batch",
        "--no-save",
        "warm-up",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}
