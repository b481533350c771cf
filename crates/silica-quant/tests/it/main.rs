//! Integration tests of silica-quant: one binary, modules by topic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod errors;
mod roundtrip;
mod vectors;

use silica_gguf::GgmlType;

/// Every type silica-quant implements.
pub const SUPPORTED: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

/// Quantizes then dequantizes `x` with `ty`.
pub fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut bytes = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    silica_quant::quantize_row(ty, x, &mut bytes).unwrap();
    let mut y = vec![0f32; x.len()];
    silica_quant::dequantize_row(ty, &bytes, &mut y).unwrap();
    y
}
