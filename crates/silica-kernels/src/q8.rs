//! Activation quantizers: f32 rows → Q8_0 / Q8_1 / Q8_K blocks, with the numerics of the ggml CPU path that
//! runs on x86-64 (so that greedy tokens can equal llama.cpp's).
//!
//! * Q8_0 and Q8_1 follow `quantize_row_q8_0` / `quantize_row_q8_1` in `ggml-cpu/arch/x86/quants.c` (the AVX2
//!   branch): `d = amax / 127`, levels `round_half_even(x · (127 / amax))` (`_mm256_round_ps` nearest; here
//!   through `nearest_int`'s exact trick, as `roundf`-style calls are library calls on baseline x86-64), `d` stored as f16; Q8_1 also stores
//!   `s = d · Σ levels`. (The portable `_ref` versions multiply by `1/d` and round half away from zero; the
//!   results differ on ties and by one level near `x·id ≈ k + ½`.)
//! * Q8_K follows `quantize_row_q8_K_ref` in `ggml-quants.c` (x86 has no SIMD version): `iscale = −127 / max`
//!   where `max` is the signed value of largest magnitude, levels `min(127, nearest_int(iscale · x))`,
//!   `d = 1 / iscale`, and the 16-value sums.

use half::f16;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, QK, QK_K};

/// Quantizes `x` (`[32·out.len()]` f32) to Q8_0 blocks.
///
/// # Panics
/// If `x.len() != 32 · out.len()` (callers size buffers from the row length checked at load).
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_row_q8_0: row length");
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = f16::from_f32(d);
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(v * id) as i8;
        }
    }
}

/// Quantizes `x` (`[32·out.len()]` f32) to Q8_1 blocks.
///
/// # Panics
/// If `x.len() != 32 · out.len()`.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_row_q8_1: row length");
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(v * id) as i8;
            sum += i32::from(*q);
        }
        b.s = f16::from_f32(d * sum as f32);
    }
}

/// Quantizes `x` (`[256·out.len()]` f32) to Q8_K blocks.
///
/// # Panics
/// If `x.len() != 256 · out.len()`.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "quantize_row_q8_k: row length");
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| i16::from(q)).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// ggml's `nearest_int` (ggml-quants.c): round to nearest, ties to even, through the `1.5·2²³` trick; valid for
/// `|v| ≤ 4194303`, which levels of at most 127 satisfy.
fn nearest_int(v: f32) -> i32 {
    let val = v + 12_582_912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_levels_round_half_to_even_on_the_x86_scale() {
        // amax 127 gives id = 1: 2.5 → 2, 3.5 → 4, −2.5 → −2.
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        let mut b = [BlockQ8_0::zeroed()];
        quantize_row_q8_0(&x, &mut b);
        assert_eq!(&b[0].qs[..4], &[127, 2, 4, -2]);
        assert_eq!(b[0].d.to_f32(), 1.0);
    }

    #[test]
    fn q8_1_sum_matches_levels() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.37).collect();
        let mut b = [BlockQ8_1::zeroed(); 2];
        quantize_row_q8_1(&x, &mut b);
        for blk in &b {
            let s: i32 = blk.qs.iter().map(|&q| i32::from(q)).sum();
            assert_eq!(blk.s, f16::from_f32(blk.d.to_f32() * s as f32));
        }
    }

    #[test]
    fn q8_k_matches_silica_quant_reference_bytes() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
            .collect();
        let mut b = [BlockQ8K::zeroed(); 2];
        quantize_row_q8_k(&x, &mut b);
        let mut want = vec![0u8; 2 * size_of::<BlockQ8K>()];
        silica_quant::quantize_row(silica_gguf::GgmlType::Q8_K, &x, &mut want).unwrap();
        assert_eq!(bytemuck::cast_slice::<BlockQ8K, u8>(&b), want.as_slice());
    }

    use bytemuck::Zeroable;
}
