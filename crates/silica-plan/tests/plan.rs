//! The planner's acceptance checks: predictions from the hardware table and the built-in fit, the fit verdicts of
//! a 70B model, and weight bytes against real files.
#![allow(clippy::unwrap_used)]

use silica_gguf::{FileType, GgmlType, GgufFile};
use silica_plan::calibrate::{self, test_params};
use silica_plan::estimate::{self, HostMemory, PlanParams, Split, Verdict};
use silica_plan::hardware::{self, DeviceProfile, find_link};
use silica_plan::{Backend, GIB, ModelDesc};
use silica_test_support::models;

fn device(name: &str, memory_gb: Option<f64>) -> DeviceProfile {
    let t = hardware::device_table().unwrap();
    let spec = hardware::find_device(&t, name, memory_gb).unwrap();
    DeviceProfile::from_spec(spec, &t, memory_gb).unwrap()
}

#[test]
fn llama_2_7b_on_the_7_core_m1_is_predicted_from_the_table_and_the_fit_alone() {
    let m1 = device("Apple M1 (7-core GPU)", None);
    let eff = calibrate::builtin_efficiency(Backend::Metal).unwrap();
    // llama.cpp discussion #4167, Apple M1 7-core GPU: (quant, pp512, tg128).
    for (ft, pp, tg) in [
        (FileType::MOSTLY_Q4_0, 107.81, 14.19),
        (FileType::MOSTLY_Q8_0, 108.21, 7.92),
    ] {
        let m = ModelDesc::from_preset("llama-2-7b", ft).unwrap();
        let tg_pred = estimate::predict(&m, &m1, &eff, &test_params("tg128", 0, true).unwrap())
            .unwrap()
            .tg_tps;
        let pp_pred = estimate::predict(&m, &m1, &eff, &test_params("pp512", 0, true).unwrap())
            .unwrap()
            .pp_tps
            .unwrap();
        println!(
            "{}: tg128 {tg_pred:.2} (measured {tg}), pp512 {pp_pred:.2} (measured {pp})",
            ft.name()
        );
        assert!((tg_pred / tg - 1.0).abs() <= 0.15, "tg128 {tg_pred} vs {tg}");
        assert!((pp_pred / pp - 1.0).abs() <= 0.25, "pp512 {pp_pred} vs {pp}");
    }
}

#[test]
fn model_sizes_match_what_llama_bench_prints() {
    // data/README.md: llama-bench prints LLaMA 2 7B Q4_0 as 3.56 GiB and Llama 3 8B Q4_K_M as 4.58 GiB.
    for (preset, ft, gib) in [
        ("llama-2-7b", FileType::MOSTLY_Q4_0, 3.56),
        ("llama-3-8b", FileType::MOSTLY_Q4_K_M, 4.58),
    ] {
        let m = ModelDesc::from_preset(preset, ft).unwrap();
        let got = m.weight_bytes() as f64 / GIB;
        assert!(
            (got / gib - 1.0).abs() < 0.01,
            "{preset} {}: {got:.3} GiB vs {gib}",
            ft.name()
        );
    }
}

#[test]
fn weight_bytes_of_presets_are_within_2_percent_of_the_real_files() {
    for (file, preset, ft) in [
        (models::SMOLLM2_Q4_1, "smollm2-135m", FileType::MOSTLY_Q4_1),
        (models::GEMMA3_Q4_K_M, "gemma-3-270m", FileType::MOSTLY_Q4_K_M),
    ] {
        let path = models::require(file);
        let real = GgufFile::open(&path).unwrap().tensor_data_bytes() as f64;
        let planned = ModelDesc::from_preset(preset, ft).unwrap().weight_bytes() as f64;
        println!(
            "{file}: file tensors {real} bytes, preset {preset} {} planned {planned}",
            ft.name()
        );
        assert!((planned / real - 1.0).abs() < 0.02, "{file}: {planned} vs {real}");
        // The description read from the file's header is exact.
        assert_eq!(ModelDesc::from_gguf(&path).unwrap().weight_bytes() as f64, real);
    }
}

fn params(n_ctx: u64) -> PlanParams {
    PlanParams {
        n_ctx,
        n_ubatch: 512,
        type_k: GgmlType::F16,
        type_v: GgmlType::F16,
        flash_attn: true,
        n_prompt: 512,
        n_gen: 128,
        n_depth: 0,
        n_devices: 1,
        split: Split::Layer,
        link: find_link("pcie4").unwrap(),
        host: None,
    }
}

#[test]
fn llama_3_70b_q4_k_m_at_32k_fits_an_m4_max_not_one_4090_and_splits_over_two_with_offload() {
    let m = ModelDesc::from_preset("llama-3-70b", FileType::MOSTLY_Q4_K_M).unwrap();
    let metal = calibrate::builtin_efficiency(Backend::Metal).unwrap();
    let cuda = calibrate::builtin_efficiency(Backend::Cuda).unwrap();
    let cpu = silica_plan::Efficiency::ideal(Backend::Cpu);
    let p = params(32768);

    let mac = estimate::plan(&m, &device("M4 Max", Some(128.0)), &metal, &cpu, &p).unwrap();
    println!(
        "M4 Max 128 GB: {} tg {:.1}",
        mac.verdict.describe(),
        mac.speed.as_ref().unwrap().tg_tps
    );
    assert!(matches!(mac.verdict, Verdict::Fits { .. }), "{:?}", mac.verdict);
    // KV: 2 × 80 layers × 32768 cells × 1024 × 2 bytes = 10 GiB.
    assert_eq!(mac.memory.kv_bytes, 2 * 80 * 32768 * 1024 * 2);

    let one = estimate::plan(&m, &device("RTX 4090", None), &cuda, &cpu, &p).unwrap();
    let Verdict::DoesNotFit { shortfall_bytes } = one.verdict else {
        panic!("{:?}", one.verdict)
    };
    let need = one.memory.devices[0].total_bytes;
    assert_eq!(shortfall_bytes, need - one.memory.devices[0].usable_bytes);
    println!("1 × RTX 4090: {}", one.verdict.describe());
    assert!(one.verdict.describe().contains("short by"));

    let two = PlanParams {
        n_devices: 2,
        host: Some(HostMemory {
            memory_bytes: 64_000_000_000,
            bandwidth_gbps: 80.0,
        }),
        ..p.clone()
    };
    let split = estimate::plan(&m, &device("RTX 4090", None), &cuda, &cpu, &two).unwrap();
    let tg = split.speed.as_ref().unwrap().tg_tps;
    println!("2 × RTX 4090: {} tg {tg:.1}", split.verdict.describe());
    assert!(split.verdict.runs() && tg > 0.0);
    assert_eq!(
        split
            .memory
            .devices
            .iter()
            .filter(|d| d.device.contains('#'))
            .count(),
        2
    );
    // At 8K context the KV cache shrinks by 7.5 GiB and the two GPUs hold it all.
    let short = estimate::plan(
        &m,
        &device("RTX 4090", None),
        &cuda,
        &cpu,
        &PlanParams { n_ctx: 8192, ..two },
    )
    .unwrap();
    println!(
        "2 × RTX 4090 @ 8K: {} tg {:.1}",
        short.verdict.describe(),
        short.speed.as_ref().unwrap().tg_tps
    );
    assert!(
        matches!(short.verdict, Verdict::Fits { .. }),
        "{:?}",
        short.verdict
    );
    assert!(short.speed.unwrap().tg_tps > tg);
}

#[test]
fn estimates_are_monotone_in_context_and_bits_per_weight() {
    let dev = device("RTX 4090", None);
    let eff = calibrate::builtin_efficiency(Backend::Cuda).unwrap();
    let cpu = silica_plan::Efficiency::ideal(Backend::Cpu);
    let mut last_need = 0;
    for n_ctx in [512, 4096, 16384, 65536] {
        let m = ModelDesc::from_preset("llama-3-8b", FileType::MOSTLY_Q4_0).unwrap();
        let plan = estimate::plan(&m, &dev, &eff, &cpu, &params(n_ctx)).unwrap();
        let need = plan.memory.devices[0].total_bytes;
        assert!(need > last_need);
        last_need = need;
    }
    let mut last_tg = f64::MAX;
    for ft in [
        FileType::MOSTLY_Q4_0,
        FileType::MOSTLY_Q5_K_M,
        FileType::MOSTLY_Q8_0,
        FileType::MOSTLY_F16,
    ] {
        let m = ModelDesc::from_preset("llama-3-8b", ft).unwrap();
        let tg = estimate::predict(&m, &dev, &eff, &params(4096)).unwrap().tg_tps;
        assert!(tg < last_tg, "{}: {tg}", ft.name());
        last_tg = tg;
    }
}

#[test]
fn gemma_3_sliding_window_layers_keep_a_short_cache() {
    // llama.cpp (build 11434) reports for gemma-3-270m at n_ctx 4096: 3 layers × 4096 cells = 12 MiB and
    // 15 SWA layers × 1024 cells = 15 MiB of F16 KV cache.
    let m = ModelDesc::from_gguf(&models::require(models::GEMMA3_Q4_K_M)).unwrap();
    let dev = device("RTX 4090", None);
    let eff = silica_plan::Efficiency::ideal(Backend::Cuda);
    let plan = estimate::plan(&m, &dev, &eff, &eff, &params(4096)).unwrap();
    assert_eq!(plan.memory.kv_cells_swa, 1024);
    assert_eq!(plan.memory.kv_bytes, (12 + 15) << 20);
}

#[test]
fn unknown_names_list_the_closest_matches() {
    let e = ModelDesc::from_preset("llama-3-7b", FileType::MOSTLY_Q4_0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("llama-3-70b") || e.contains("llama-3-8b"), "{e}");
    let e = silica_plan::parse_file_type("Q4_K_X").unwrap_err().to_string();
    assert!(e.contains("Q4_K_M") && e.contains("Q4_K_S"), "{e}");
    let e = silica_plan::parse_ggml_type("q9_0").unwrap_err().to_string();
    assert!(e.contains("Q8_0"), "{e}");
}
