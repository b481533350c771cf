//! Streaming quantization on fixtures: tensors round-trip through the mix, slabs equal whole-tensor encoding,
//! and refusals leave no file behind.

use silica_convert::{QuantizeParams, RecipeOptions, parse_target, quantize_file};
use silica_gguf::{GgmlType, GgufFile};
use silica_test_support::fixtures::TinyModel;

fn params(target: &str) -> QuantizeParams {
    QuantizeParams {
        recipe: RecipeOptions::new(parse_target(target).unwrap()),
        allow_requantize: false,
        n_threads: 2,
    }
}

#[test]
fn f32_model_quantizes_to_q8_0_with_metadata_carried_over_and_blocks_equal_the_encoder() {
    let (dir, src) = TinyModel::llama().weight_type(GgmlType::F32).write_temp();
    let out = dir.path().join("q8.gguf");
    let mut n_progress = 0;
    let summary = quantize_file(&src, &out, &params("Q8_0"), &mut |d| {
        n_progress += 1;
        assert!(d.bytes_done <= d.bytes_total);
    })
    .unwrap();
    let (a, b) = (GgufFile::open(&src).unwrap(), GgufFile::open(&out).unwrap());
    assert_eq!(n_progress, a.tensors().len());
    assert_eq!(summary.tensors.len(), a.tensors().len());
    assert_eq!(b.metadata().get_u32("general.file_type").unwrap(), 7);
    assert_eq!(b.metadata().get_u32("general.quantization_version").unwrap(), 2);
    assert_eq!(
        b.metadata().get_string_array("tokenizer.ggml.tokens").unwrap(),
        a.metadata().get_string_array("tokenizer.ggml.tokens").unwrap()
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), summary.file_bytes);
    for t in a.tensors() {
        let q = b.tensor(&t.name).unwrap();
        assert_eq!(q.ne, t.ne);
        let src_bytes = a.tensor_data(t).unwrap();
        if t.ne.len() == 1 {
            assert_eq!(q.ty, GgmlType::F32, "{}", t.name);
            assert_eq!(b.tensor_data(q).unwrap(), src_bytes);
            continue;
        }
        // Output/tied embeddings follow the output rule (Q8_0 mixes keep Q8_0).
        assert_eq!(q.ty, GgmlType::Q8_0, "{}", t.name);
        let values: Vec<f32> = src_bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut want = vec![0u8; q.n_bytes as usize];
        silica_quant::quantize_row(GgmlType::Q8_0, &values, &mut want).unwrap();
        assert_eq!(b.tensor_data(q).unwrap(), &want[..], "{}", t.name);
    }
}

#[test]
fn requantizing_needs_the_flag_and_refusals_leave_no_file() {
    let (dir, src) = TinyModel::llama().weight_type(GgmlType::Q8_0).write_temp();
    let out = dir.path().join("q4.gguf");
    let err = quantize_file(&src, &out, &params("Q4_0"), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--allow-requantize") && err.contains("Q8_0"),
        "{err}"
    );
    assert!(!out.exists());
    let mut p = params("Q4_0");
    p.allow_requantize = true;
    quantize_file(&src, &out, &p, &mut |_| {}).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert!(f.tensors().iter().any(|t| t.ty == GgmlType::Q4_0));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "only the input and the output: {names:?}");
}
