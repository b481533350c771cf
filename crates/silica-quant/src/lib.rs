//! Scalar reference quantizers and dequantizers for ggml's block formats, byte-identical to ggml.
//!
//! [`quantize_row`] turns a row of f32 values into the bytes of a ggml type; [`dequantize_row`] turns
//! them back. The quantizers are line-by-line ports of ggml's reference functions in
//! `ggml/src/ggml-quants.c` (`quantize_row_q4_0_ref`, `quantize_row_q4_K_ref`, …), which are what
//! `llama-quantize` runs when no importance matrix is given, and produce the same bytes for the same
//! input — checked against vectors generated with llama.cpp build 11434 (`tests/vectors/`). The
//! dequantizers port `dequantize_row_*` and give bit-identical f32 values.
//!
//! The code is plain scalar Rust, written for reading and as the reference that faster kernels are
//! tested against. Rows are independent: callers parallelise over rows.
//!
//! | family | types | module |
//! |---|---|---|
//! | plain floats | `F32`, `F16`, `BF16` | `float.rs` |
//! | legacy 32-value blocks | `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q8_0` | `legacy.rs` |
//! | k-quants, 256-value super-blocks | `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K`, `Q8_K` | `kquants.rs` |
//!
//! # Block layouts
//!
//! Rows are sequences of blocks of [`GgmlType::block_len`] values stored in [`GgmlType::block_bytes`]
//! bytes, laid out as the `block_*` structs of ggml-common.h. All multi-byte fields are little-endian;
//! `f16` is IEEE binary16, `q` a stored unsigned level.
//!
//! | type | values | bytes | fields, in order | value of element `i` | ggml functions |
//! |---|---|---|---|---|---|
//! | `F32` | 1 | 4 | `f32` | itself | plain copy |
//! | `F16` | 1 | 2 | `f16` | itself | `ggml_fp32_to_fp16_row` (ggml.c) |
//! | `BF16` | 1 | 2 | top 16 bits of the `f32` | itself | `ggml_fp32_to_bf16_row_ref` (ggml.c) |
//! | `Q4_0` | 32 | 18 | `d: f16`, `qs: [u8; 16]` | `d·(q − 8)` | `quantize_row_q4_0_ref` |
//! | `Q4_1` | 32 | 20 | `d: f16`, `m: f16`, `qs: [u8; 16]` | `d·q + m` | `quantize_row_q4_1_ref` |
//! | `Q5_0` | 32 | 22 | `d: f16`, `qh: u32`, `qs: [u8; 16]` | `d·(q − 16)` | `quantize_row_q5_0_ref` |
//! | `Q5_1` | 32 | 24 | `d: f16`, `m: f16`, `qh: u32`, `qs: [u8; 16]` | `d·q + m` | `quantize_row_q5_1_ref` |
//! | `Q8_0` | 32 | 34 | `d: f16`, `qs: [i8; 32]` | `d·qs[i]` | `quantize_row_q8_0_ref` |
//! | `Q2_K` | 256 | 84 | `scales: [u8; 16]`, `qs: [u8; 64]`, `d: f16`, `dmin: f16` | `d·sc·q − dmin·m` (4-bit `sc`, `m` per 16) | `quantize_row_q2_K_ref` |
//! | `Q3_K` | 256 | 110 | `hmask: [u8; 32]`, `qs: [u8; 64]`, `scales: [u8; 12]`, `d: f16` | `d·(sc − 32)·(q − 4)` (6-bit `sc` per 16) | `quantize_row_q3_K_ref` |
//! | `Q4_K` | 256 | 144 | `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qs: [u8; 128]` | `d·sc·q − dmin·m` (6-bit `sc`, `m` per 32) | `quantize_row_q4_K_ref` |
//! | `Q5_K` | 256 | 176 | `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qh: [u8; 32]`, `qs: [u8; 128]` | `d·sc·q − dmin·m` (6-bit `sc`, `m` per 32) | `quantize_row_q5_K_ref` |
//! | `Q6_K` | 256 | 210 | `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16` | `d·sc·(q − 32)` (8-bit `sc` per 16) | `quantize_row_q6_K_ref` |
//! | `Q8_K` | 256 | 292 | `d: f32`, `qs: [i8; 256]`, `bsums: [i16; 16]` | `d·qs[i]` | `quantize_row_q8_K_ref` |
//!
//! The quantizers are in ggml-quants.c unless noted; each dequantizer ports the matching
//! `dequantize_row_*` (`ggml_fp16_to_fp32_row`, `ggml_bf16_to_fp32_row` for the floats). The legacy
//! formats store element `j` in the low nibble of `qs[j]` and element `j + 16` in its high nibble, with
//! the fifth bit of element `j` in bit `j` of `qh`. The k-quant bit packing (scales, 2-bit and
//! high-bit planes) is described in the source of `kquants.rs`, next to the code that writes it.
//!
//! ```
//! use silica_gguf::GgmlType;
//! use silica_quant::{dequantize_row, quantize_row};
//!
//! let row: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//! let mut bytes = vec![0u8; 2 * GgmlType::Q4_0.block_bytes()]; // 2 blocks of 32 values, 18 bytes each
//! quantize_row(GgmlType::Q4_0, &row, &mut bytes)?;
//!
//! let mut back = vec![0f32; row.len()];
//! dequantize_row(GgmlType::Q4_0, &bytes, &mut back)?;
//! assert!(row.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.15));
//!
//! // Lengths are checked, never assumed.
//! assert!(quantize_row(GgmlType::Q4_0, &row[..40], &mut bytes).is_err());
//! # Ok::<(), silica_quant::QuantError>(())
//! ```

mod cmath;
mod error;
mod float;
mod kquants;
mod legacy;

pub use error::QuantError;
use silica_gguf::GgmlType;

/// Quantizes one row: `src` values (`f32`) → `dst` bytes of `ty`.
type QuantizeFn = fn(&[f32], &mut [u8]);
/// Dequantizes one row: `src` bytes of a type → `dst` values (`f32`).
type DequantizeFn = fn(&[u8], &mut [f32]);

/// The row functions of `ty`, or `None` where this crate has none.
fn kernels(ty: GgmlType) -> Option<(QuantizeFn, DequantizeFn)> {
    Some(match ty {
        GgmlType::F32 => (float::quantize_f32, float::dequantize_f32),
        GgmlType::F16 => (float::quantize_f16, float::dequantize_f16),
        GgmlType::BF16 => (float::quantize_bf16, float::dequantize_bf16),
        GgmlType::Q4_0 => (legacy::quantize_q4_0, legacy::dequantize_q4_0),
        GgmlType::Q4_1 => (legacy::quantize_q4_1, legacy::dequantize_q4_1),
        GgmlType::Q5_0 => (legacy::quantize_q5_0, legacy::dequantize_q5_0),
        GgmlType::Q5_1 => (legacy::quantize_q5_1, legacy::dequantize_q5_1),
        GgmlType::Q8_0 => (legacy::quantize_q8_0, legacy::dequantize_q8_0),
        GgmlType::Q2_K => (kquants::quantize_q2_k, kquants::dequantize_q2_k),
        GgmlType::Q3_K => (kquants::quantize_q3_k, kquants::dequantize_q3_k),
        GgmlType::Q4_K => (kquants::quantize_q4_k, kquants::dequantize_q4_k),
        GgmlType::Q5_K => (kquants::quantize_q5_k, kquants::dequantize_q5_k),
        GgmlType::Q6_K => (kquants::quantize_q6_k, kquants::dequantize_q6_k),
        GgmlType::Q8_K => (kquants::quantize_q8_k, kquants::dequantize_q8_k),
        _ => return None,
    })
}

/// Whether [`quantize_row`] supports `ty`: `F32`, `F16`, `BF16`, `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`,
/// `Q8_0`, `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K` and `Q8_K`.
pub fn can_quantize(ty: GgmlType) -> bool {
    kernels(ty).is_some()
}

/// Whether [`dequantize_row`] supports `ty`; the same set as [`can_quantize`].
pub fn can_dequantize(ty: GgmlType) -> bool {
    kernels(ty).is_some()
}

/// Checks that `values` f32 values are whole blocks of `ty` and that they take `bytes` bytes.
fn check_lengths(ty: GgmlType, values: usize, bytes: usize) -> Result<(), QuantError> {
    let block_len = ty.block_len();
    if !values.is_multiple_of(block_len) {
        return Err(QuantError::PartialBlock {
            ty,
            values,
            block_len,
        });
    }
    let expected = (values / block_len).saturating_mul(ty.block_bytes());
    if expected != bytes {
        return Err(QuantError::ByteLength {
            ty,
            values,
            expected,
            bytes,
        });
    }
    Ok(())
}

/// Quantizes a row of f32 values into the bytes of `ty`, exactly as ggml's reference quantizer does.
///
/// `src.len()` must be a multiple of [`GgmlType::block_len`] (32 for the legacy types, 256 for the
/// k-quants, 1 for the floats) and `dst.len()` must be [`GgmlType::row_bytes`]`(src.len())`. The
/// output is byte-identical to ggml's (`quantize_row_*_ref` in ggml-quants.c, or
/// `ggml_fp32_to_fp16_row` / `ggml_fp32_to_bf16_row_ref` in ggml.c for F16 / BF16) for every input,
/// including NaN, infinite and overflowing values, which quantize to whatever ggml's x86-64 build
/// produces for them (usually meaningless blocks; the sign of a NaN that the arithmetic creates is up to
/// the hardware) without panicking.
///
/// # Errors
///
/// [`QuantError::Unsupported`] for a type outside [`can_quantize`], [`QuantError::PartialBlock`] and
/// [`QuantError::ByteLength`] for wrong lengths; `dst` is then left untouched.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let (quantize, _) = kernels(ty).ok_or(QuantError::Unsupported { ty, op: "quantize" })?;
    check_lengths(ty, src.len(), dst.len())?;
    quantize(src, dst);
    Ok(())
}

/// Dequantizes the bytes of a row of `ty` into f32 values, exactly as ggml's `dequantize_row_*`
/// (ggml-quants.c; `ggml_fp16_to_fp32_row` / `ggml_bf16_to_fp32_row` for F16 / BF16) does.
///
/// `dst.len()` must be a multiple of [`GgmlType::block_len`] and `src.len()` must be
/// [`GgmlType::row_bytes`]`(dst.len())`. Any bytes are accepted (a block is just numbers).
///
/// # Errors
///
/// [`QuantError::Unsupported`] for a type outside [`can_dequantize`], [`QuantError::PartialBlock`] and
/// [`QuantError::ByteLength`] for wrong lengths; `dst` is then left untouched.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let (_, dequantize) = kernels(ty).ok_or(QuantError::Unsupported { ty, op: "dequantize" })?;
    check_lengths(ty, dst.len(), src.len())?;
    dequantize(src, dst);
    Ok(())
}
