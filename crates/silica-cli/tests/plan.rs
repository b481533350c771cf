//! `silica plan` and `silica hw` end to end: verdicts and exit codes, every output format, models from a partly
//! downloaded GGUF file and from a `config.json`, calibration on real llama-bench records, and this machine's
//! measured profile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Output;

use common::{silica, silica_env};
use silica_test_support::{golden, models};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Requires `o`, the output of `silica args`, to be a success; returns its stdout parsed as JSON, and its stderr.
fn json_ok(o: Output, args: &[&str]) -> (serde_json::Value, String) {
    let (out, err) = text(&o);
    assert!(o.status.success(), "silica {args:?}: {err}");
    (serde_json::from_str(&out).unwrap(), err)
}

/// Runs `silica` with `silica hw`'s cache in `cache`, requires success, and parses stdout as JSON.
fn ok_json(cache: &Path, args: &[&str]) -> serde_json::Value {
    json_ok(silica_cached(cache, args), args).0
}

/// `silica` with `silica hw`'s cache in `cache` (so tests measure into a temporary folder).
fn silica_cached(cache: &Path, args: &[&str]) -> Output {
    silica_env(args, &[("SILICA_CACHE_DIR", cache)])
}

#[test]
fn a_70b_model_fits_an_m4_max_but_not_a_4090_and_the_exit_status_says_so() {
    let base = ["plan", "-m", "llama-3-70b", "-t", "Q4_K_M", "-c", "32768"];
    let mac = silica(&[&base[..], &["--hw", "M4 Max", "--memory", "128", "--explain"]].concat());
    let (out, err) = text(&mac);
    assert!(mac.status.success(), "{err}");
    assert!(out.contains("verdict: fits"), "{out}");
    assert!(out.contains("KV cache: 10.00 GiB"), "{out}");
    assert!(out.contains("tg128 t/s = 1 / t"), "{out}");

    let gpu = silica(&[&base[..], &["--hw", "RTX 4090"]].concat());
    let (out, _) = text(&gpu);
    assert_eq!(gpu.status.code(), Some(1), "{out}");
    assert!(out.contains("does not fit (short by"), "{out}");
    assert!(out.contains("--host-memory"), "{out}");

    // Two GPUs and 64 GB of host RAM: split, with the rest of the layers on the CPU, and a predicted speed.
    let two = [
        &base[..],
        &[
            "--hw",
            "RTX 4090",
            "--devices",
            "2",
            "--host-memory",
            "64",
            "-o",
            "json",
        ],
    ]
    .concat();
    let (plan, _) = json_ok(silica(&two), &two);
    assert_eq!(plan["verdict"]["verdict"], "fits_with_offload");
    assert!(plan["speed"]["tg_tps"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["params"]["n_devices"], 2);
}

#[test]
fn hw_all_prints_one_row_per_device_in_csv_and_markdown() {
    let o = silica(&[
        "plan",
        "-m",
        "llama-2-7b",
        "-t",
        "Q4_0",
        "--hw",
        "all",
        "-o",
        "csv",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[0], "device");
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 60);
    let m1 = rows.iter().find(|r| &r[0] == "Apple M1 (7-core GPU)").unwrap();
    let tg: f64 = m1[9].parse().unwrap();
    assert!((tg / 14.19 - 1.0).abs() < 0.15, "M1 tg128 {tg}");

    let md = silica(&[
        "plan",
        "-m",
        "llama-2-7b",
        "-t",
        "Q4_0",
        "--hw",
        "all",
        "--memory",
        "24",
    ]);
    let (out, _) = text(&md);
    assert!(out.contains("| NVIDIA GeForce RTX 4090 | 24 |"), "{out}");
    assert!(
        !out.contains("RTX 5090"),
        "--memory 24 keeps devices sold with 24 GB: {out}"
    );
}

#[test]
fn unknown_names_fail_with_the_closest_matches() {
    for (args, want) in [
        (&["plan", "-m", "llama-3-70b", "--hw", "RTX 4099"][..], "RTX 4090"),
        (&["plan", "-m", "llama-3-7b"][..], "llama-3-70b"),
        (
            &["plan", "-m", "llama-3-70b", "-t", "Q4_K_X", "--hw", "RTX 4090"][..],
            "Q4_K_M",
        ),
        (
            &[
                "plan",
                "-m",
                "llama-3-70b",
                "--hw",
                "RTX 4090",
                "--link",
                "nvlink",
            ][..],
            "nvlink4",
        ),
        (&["plan", "-m", "llama-3-70b", "--hw", "M4 Max"][..], "40-core"),
    ] {
        let o = silica(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_partly_downloaded_gguf_and_a_config_json_are_planned_from_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let real = models::require(models::SMOLLM2_Q4_1);
    let bytes = std::fs::read(&real).unwrap();
    let partial = dir.path().join("downloading.gguf");
    std::fs::write(&partial, &bytes[..bytes.len() / 3]).unwrap();
    let args = [
        "plan",
        "-m",
        partial.to_str().unwrap(),
        "--hw",
        "RTX 4090",
        "-o",
        "json",
    ];
    let (plan, err) = json_ok(silica(&args), &args);
    assert!(err.contains("incomplete"), "{err}");
    let full = silica_gguf::GgufFile::open(&real).unwrap().tensor_data_bytes();
    assert_eq!(plan["memory"]["weights_bytes"].as_u64().unwrap(), full);

    // SmolLM2-135M's config.json (Hugging Face), written as Q8_0.
    let config = dir.path().join("SmolLM2-135M").join("config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        r#"{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
            "max_position_embeddings": 8192, "rope_theta": 100000, "tie_word_embeddings": true}"#,
    )
    .unwrap();
    let args = [
        "plan",
        "-m",
        config.to_str().unwrap(),
        "-t",
        "Q8_0",
        "--hw",
        "RTX 4090",
        "-o",
        "json",
    ];
    let (plan, _) = json_ok(silica(&args), &args);
    assert_eq!(plan["file_type"], "Q8_0");
    let (_, err) = text(&silica(&["plan", "-m", config.to_str().unwrap()]));
    assert!(err.contains("--type"), "{err}");
}

#[test]
fn hw_measures_this_machine_and_plan_uses_the_cached_profile() {
    let cache = tempfile::tempdir().unwrap();
    let hw = ok_json(cache.path(), &["hw", "-o", "json"]);
    let triad = hw["probe"]["triad_gbps"].as_f64().unwrap();
    assert!(
        triad > 0.1 && hw["probe"]["peak_f32_gflops"].as_f64().unwrap() > 0.1,
        "{hw}"
    );
    assert!(cache.path().join("hw.json").is_file());

    // `--cached` shows the same measurement, and plan on this machine uses it.
    let again = ok_json(cache.path(), &["hw", "--cached", "-o", "json"]);
    assert_eq!(again["probe"], hw["probe"]);
    // The text form names the kernels' SIMD level, here the one chosen.
    let (out, err) = text(&silica_cached(
        cache.path(),
        &["--simd", "scalar", "hw", "--cached"],
    ));
    assert!(
        out.contains("\nkernels:   scalar (silica's CPU kernels; --simd takes scalar"),
        "{out}{err}"
    );
    let model = models::require(models::SMOLLM2_Q4_1);
    let plan = ok_json(
        cache.path(),
        &["plan", "-m", model.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(plan["device"]["backend"], "cpu");
    assert_eq!(plan["device"]["bandwidth_gbps"].as_f64().unwrap(), triad);
    assert!(plan["speed"]["tg_tps"].as_f64().unwrap() > 0.0);

    // The triad's arrays stand on the kernels' pages (`--huge-pages`); another policy measures again.
    let on = cfg!(all(target_os = "linux", target_env = "gnu"));
    let huge = ok_json(
        cache.path(),
        &["--huge-pages", "on", "hw", "--cached", "-o", "json"],
    );
    assert_eq!(huge["probe"]["huge_pages"], on, "{huge}");
    let off = ok_json(
        cache.path(),
        &["--huge-pages", "off", "hw", "--cached", "-o", "json"],
    );
    assert_eq!(off["probe"]["huge_pages"], false, "{off}");
    if on {
        assert_ne!(
            off["probe"], huge["probe"],
            "measured again, not served from the cache"
        );
    }
}

#[test]
fn calibrate_fits_llama_bench_records_and_the_saved_profile_is_used() {
    let cache = tempfile::tempdir().unwrap();
    // Real llama-bench results for SmolLM2 Q4_1 on a 2-core EPYC (shared/reference); the model file is found in
    // the models folder by its name.
    let records = golden::shared_dir().join("reference/llama-bench-sample.json");
    models::require(models::SMOLLM2_Q4_1);
    let o = silica_cached(
        cache.path(),
        &[
            "plan",
            "--calibrate",
            records.to_str().unwrap(),
            "--hw",
            "this",
            "--save",
            "epyc",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("| pp512 |") && out.contains("| tg128 |"), "{out}");
    let saved = cache.path().join("profiles/epyc.json");
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(profile["efficiency"]["backend"], "cpu");

    let model = models::require(models::SMOLLM2_Q4_1);
    let args = [
        "plan",
        "-m",
        model.to_str().unwrap(),
        "--profile",
        "epyc",
        "-o",
        "json",
    ];
    let plan = ok_json(cache.path(), &args);
    let source = plan["efficiency"]["source"].as_str().unwrap();
    assert!(source.contains("llama-bench-sample.json"), "{source}");
    // A GPU profile is refused for the CPU.
    let o = silica_cached(
        cache.path(),
        &[
            "plan",
            "-m",
            "llama-2-7b",
            "--hw",
            "RTX 4090",
            "--profile",
            "epyc",
        ],
    );
    let (_, err) = text(&o);
    assert!(err.contains("a CPU profile, the device is CUDA"), "{err}");
}
