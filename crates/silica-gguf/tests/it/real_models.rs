//! The real test models (fetched by `scripts/fetch-models.sh`) parse, with the tensor tables llama.cpp reports.

use silica_gguf::{FileType, GgmlType, GgufFile, keys};
use silica_test_support::models;

#[test]
fn smollm2_q4_1_header() {
    let path = models::require(models::SMOLLM2_Q4_1);
    let f = GgufFile::open(&path).unwrap();
    let m = f.metadata();
    assert_eq!(m.get_str(keys::GENERAL_ARCHITECTURE).unwrap(), "llama");
    assert_eq!(m.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(
        FileType::from_id(m.get_u32(keys::GENERAL_FILE_TYPE).unwrap()),
        Some(FileType::MOSTLY_Q4_1)
    );
    assert_eq!(m.get_string_array(keys::TOKENIZER_TOKENS).unwrap().len(), 49152);
    assert_eq!(f.tensors().len(), 272);
    let t = f.tensor("blk.0.ffn_gate.weight").unwrap();
    assert_eq!((t.ty, t.shape()), (GgmlType::Q4_1, vec![1536, 576]));
    // llama-bench's sample reports model_size 96576768 and model_n_params 134515008 for this file.
    assert_eq!(f.tensor_data_bytes(), 96_576_768);
    assert_eq!(f.n_params(), 134_515_008);
}

#[test]
fn gemma3_q4_k_m_header() {
    let path = models::require(models::GEMMA3_Q4_K_M);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.metadata().get_str(keys::GENERAL_ARCHITECTURE).unwrap(),
        "gemma3"
    );
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.tensor("token_embd.weight").unwrap().shape(), vec![262_144, 640]);
    let types: std::collections::BTreeSet<GgmlType> = f.tensors().iter().map(|t| t.ty).collect();
    assert!(
        types.contains(&GgmlType::Q4_K) && types.contains(&GgmlType::Q6_K) && types.contains(&GgmlType::Q5_0)
    );
}
