//! The per-tensor types of every file-type mix equal what `llama-quantize --dry-run` chose for the same model
//! (`tests/golden/llama-quantize-mix.json`: a 32-layer GQA-4 Llama, so the `use_more_bits`, `n_gqa` and
//! output rules all fire).

use std::collections::BTreeMap;
use std::path::PathBuf;

use silica_convert::synth::{self, SynthConfig};

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_k_quant_and_legacy_mix_equals_llama_quantize() {
    let config = SynthConfig::from_hf_config(&golden().join("mix-config.json")).unwrap();
    let text = std::fs::read_to_string(golden().join("llama-quantize-mix.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let types = v["types"].as_object().unwrap();
    assert_eq!(types.len(), 11);
    for (name, want) in types {
        let ft = silica_convert::parse_target(name).unwrap();
        let planned = synth::plan_tensors(&config, ft, false).unwrap();
        let default = want["default"].as_str().unwrap();
        let others: BTreeMap<&str, &str> = want["others"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        assert_eq!(planned.len(), 291, "{name}");
        let mut wrong = Vec::new();
        for p in &planned {
            let expect = others.get(p.info.name.as_str()).copied().unwrap_or(default);
            if p.ty.name() != expect {
                wrong.push(format!("{}: silica {}, llama.cpp {expect}", p.info.name, p.ty));
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}: {} tensors differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

#[test]
fn pure_gives_every_matrix_the_base_type_and_norms_stay_f32() {
    let config = SynthConfig::from_hf_config(&golden().join("mix-config.json")).unwrap();
    let ft = silica_convert::parse_target("Q4_K_M").unwrap();
    for p in synth::plan_tensors(&config, ft, true).unwrap() {
        let want = if p.info.ne.len() == 1 { "F32" } else { "Q4_K" };
        assert_eq!(p.ty.name(), want, "{}", p.info.name);
    }
}

#[test]
fn targets_parse_like_llama_quantize_and_unknown_ones_list_the_valid_names() {
    for (name, ft) in [
        ("q4_k", "Q4_K_M"),
        ("Q5_K", "Q5_K_M"),
        ("Q3_K", "Q3_K_M"),
        ("f32", "F32"),
        ("bf16", "BF16"),
    ] {
        assert_eq!(silica_convert::parse_target(name).unwrap().name(), ft, "{name}");
    }
    let err = silica_convert::parse_target("Q7_0").unwrap_err().to_string();
    assert!(
        err.contains("Q7_0") && err.contains("Q4_K_M") && err.contains("Q8_0"),
        "{err}"
    );
    let err = silica_convert::parse_target("IQ3_XXS").unwrap_err().to_string();
    assert!(err.contains("importance matrix"), "{err}");
}
