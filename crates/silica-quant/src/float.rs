//! Plain floating-point rows: F32, F16 and BF16, and the f16/bf16 scalar conversions the block
//! formats use for their scales.
//!
//! Layouts (one element per "block"):
//!
//! | type | bytes | encoding |
//! |---|---|---|
//! | `F32` | 4 | IEEE binary32, little-endian |
//! | `F16` | 2 | IEEE binary16, little-endian (`ggml_fp16_t`) |
//! | `BF16` | 2 | the high 16 bits of a binary32, little-endian (`ggml_bf16_t`) |

/// ggml's `GGML_FP32_TO_FP16` = `ggml_compute_fp32_to_fp16` (ggml-impl.h), a port of
/// Maratyszcza's FP16 library conversion: round to nearest even, overflow to ±inf, subnormals kept.
///
/// Every NaN becomes `sign | 0x7E00` (the payload is dropped); `half::f16::from_f32` keeps payload bits,
/// which is the only difference between the two.
pub(crate) fn fp32_to_fp16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xFF00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }

    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16) | if shl1_w > 0xFF00_0000 { 0x7E00 } else { nonsign }) as u16
}

/// ggml's `GGML_FP16_TO_FP32` (ggml-impl.h): exact widening. `half`'s conversion gives the same bits
/// for every input, NaNs included (quiet bit set, payload kept).
#[inline]
pub(crate) fn fp16_to_fp32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// ggml's `ggml_compute_fp32_to_bf16` (ggml-impl.h): round to nearest even; a NaN keeps its top
/// 16 bits with the quiet bit (`0x40`) forced on; subnormals are not flushed.
pub(crate) fn fp32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    // No overflow: the largest finite |u| is 0x7f7f_ffff, + 0x8000 stays below 2^32 with the sign set.
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// ggml's `GGML_BF16_TO_FP32` (ggml-impl.h): the bits shifted into the high half.
#[inline]
pub(crate) fn bf16_to_fp32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Reads a little-endian f16 at byte `at` of a block and widens it.
#[inline]
pub(crate) fn read_f16(block: &[u8], at: usize) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([block[at], block[at + 1]]))
}

/// Writes the little-endian bits of an f16 at byte `at` of a block.
#[inline]
pub(crate) fn write_f16(block: &mut [u8], at: usize, bits: u16) {
    block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
}

/// F32 row: little-endian copy of the bits (NaN payloads kept).
pub(crate) fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.iter().zip(dst.as_chunks_mut::<4>().0) {
        *y = x.to_le_bytes();
    }
}

/// F32 row back to values.
pub(crate) fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<4>().0.iter().zip(dst) {
        *y = f32::from_le_bytes(*x);
    }
}

/// F16 row: `ggml_fp32_to_fp16_row` (ggml.c), each value through [`fp32_to_fp16`].
pub(crate) fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.iter().zip(dst.as_chunks_mut::<2>().0) {
        *y = fp32_to_fp16(*x).to_le_bytes();
    }
}

/// F16 row back to f32: `ggml_fp16_to_fp32_row` (ggml.c).
pub(crate) fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = fp16_to_fp32(u16::from_le_bytes(*x));
    }
}

/// BF16 row: `ggml_fp32_to_bf16_row_ref` (ggml.c), the conversion `llama-quantize` uses.
pub(crate) fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.iter().zip(dst.as_chunks_mut::<2>().0) {
        *y = fp32_to_bf16(*x).to_le_bytes();
    }
}

/// BF16 row back to f32: `ggml_bf16_to_fp32_row` (ggml.c).
pub(crate) fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = bf16_to_fp32(u16::from_le_bytes(*x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_matches_half_except_nan_payloads() {
        // Every f16 value round-trips, and rounding agrees with `half` on a dense sweep of f32 bits.
        for h in 0..=u16::MAX {
            let f = fp16_to_fp32(h);
            if f.is_nan() {
                assert_eq!(fp32_to_fp16(f), (h & 0x8000) | 0x7E00);
            } else {
                assert_eq!(fp32_to_fp16(f), h, "{h:#06x}");
            }
        }
        for bits in (0..=u32::MAX).step_by(4099) {
            let f = f32::from_bits(bits);
            if !f.is_nan() {
                assert_eq!(fp32_to_fp16(f), half::f16::from_f32(f).to_bits(), "{bits:#010x}");
            }
        }
        assert_eq!(fp32_to_fp16(f32::from_bits(0x7F80_0001)), 0x7E00);
        assert_eq!(fp32_to_fp16(f32::from_bits(0xFFC1_2345)), 0xFE00);
        assert_eq!(fp32_to_fp16(65520.0), 0x7C00); // rounds to +inf
        assert_eq!(fp32_to_fp16(65519.0), 0x7BFF);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80); // tie, even stays
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82); // tie, odd rounds up
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(fp32_to_bf16(f32::MAX), 0x7F80); // rounds to +inf
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(fp32_to_bf16(f32::from_bits(0xFFC1_2345)), 0xFFC1);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x0000_8001)), 0x0001); // subnormal kept
        for bits in (0..=u32::MAX).step_by(4099) {
            let f = f32::from_bits(bits);
            if !f.is_nan() {
                assert_eq!(fp32_to_bf16(f), half::bf16::from_f32(f).to_bits(), "{bits:#010x}");
            }
        }
    }
}
