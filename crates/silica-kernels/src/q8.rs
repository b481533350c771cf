//! Activation quantizers: f32 rows → Q8_0 / Q8_1 / Q8_K blocks, with the numerics of the ggml CPU path that
//! runs on x86-64 (so that greedy tokens can equal llama.cpp's).
//!
//! * Q8_0 and Q8_1 follow `quantize_row_q8_0` / `quantize_row_q8_1` in `ggml-cpu/arch/x86/quants.c` (the AVX2
//!   branch): `d = amax / 127`, levels `round_half_even(x · (127 / amax))` (`_mm256_round_ps` nearest; here
//!   through `nearest_int`'s exact trick, as `roundf`-style calls are library calls on baseline x86-64), `d` stored as f16; Q8_1 also stores
//!   `s = d · Σ levels`. (The portable `_ref` versions multiply by `1/d` and round half away from zero; the
//!   results differ on ties and by one level near `x·id ≈ k + ½`.)
//! * Q8_K follows `quantize_row_q8_K_ref` in `ggml-quants.c` (ggml has no x86 SIMD version; silica's AVX2 one gives the same bytes): `iscale = −127 / max`
//!   where `max` is the signed value of largest magnitude, levels `min(127, nearest_int(iscale · x))`,
//!   `d = 1 / iscale`, and the 16-value sums.

use bytemuck::Zeroable;
use half::f16;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, QK, QK_K};

/// Quantizes `x` (`[32·out.len()]` f32) to Q8_0 blocks.
///
/// # Panics
/// If `x.len() != 32 · out.len()` (callers size buffers from the row length checked at load).
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_row_q8_0: row length");
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_row_q8_0(x, out) {
        return;
    }
    quantize_row_q8_0_ref(x, out);
}

/// The scalar [`quantize_row_q8_0`], which the AVX2 path equals to the bit.
///
/// # Panics
/// If `x.len() != 32 · out.len()`.
pub fn quantize_row_q8_0_ref(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_row_q8_0: row length");
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        b.d = f16::from_f32(quantize_block_q8(xb, &mut b.qs));
    }
}

/// One block of 32 values to 8-bit levels with ggml's x86 rounding (`127/amax`, round half to even); returns the
/// block's scale `d = amax / 127` in f32 (Q8_0 and Q8_1 store it as f16).
fn quantize_block_q8(xb: &[f32], qs: &mut [i8; QK]) -> f32 {
    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(xb) {
        *q = nearest_int(v * id) as i8;
    }
    amax / 127.0
}

/// Quantizes `x` (`[32·out.len()]` f32) to Q8_1 blocks.
///
/// # Panics
/// If `x.len() != 32 · out.len()`.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_row_q8_1: row length");
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let d = quantize_block_q8(xb, &mut b.qs);
        b.d = f16::from_f32(d);
        let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
        b.s = f16::from_f32(d * sum as f32);
    }
}

/// Quantizes `x` (`[256·out.len()]` f32) to Q8_K blocks.
///
/// # Panics
/// If `x.len() != 256 · out.len()`.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "quantize_row_q8_k: row length");
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_row_q8_k(x, out) {
        return;
    }
    quantize_row_q8_k_ref(x, out);
}

/// The scalar [`quantize_row_q8_k`] (`quantize_row_q8_K_ref`'s loops), which the AVX2 path equals to the bit.
///
/// # Panics
/// If `x.len() != 256 · out.len()`.
pub fn quantize_row_q8_k_ref(x: &[f32], out: &mut [BlockQ8K]) {
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
            *b = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        block_sums_q8_k(b);
        b.d = 1.0 / iscale;
    }
}

/// `bsums[g] = Σ qs[16g..16g+16]`.
fn block_sums_q8_k(b: &mut BlockQ8K) {
    for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| i16::from(q)).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    /// The row on the AVX2 path (`x.len() == 256 · out.len()`, checked by the caller); `false`, with nothing
    /// written, where the CPU lacks AVX2.
    pub(super) fn quantize_row_q8_k(x: &[f32], out: &mut [super::BlockQ8K]) -> bool {
        if crate::cpu::x86::best().is_none() {
            return false;
        }
        for (xb, b) in x.chunks_exact(super::QK_K).zip(out.iter_mut()) {
            // SAFETY: `best` detected AVX2 and FMA; `chunks_exact` gives 256 values.
            unsafe { avx2::quantize_block_q8_k(xb, b) };
        }
        true
    }

    /// As [`quantize_row_q8_k`] for Q8_0 (`x.len() == 32 · out.len()`, checked by the caller).
    pub(super) fn quantize_row_q8_0(x: &[f32], out: &mut [super::BlockQ8_0]) -> bool {
        if crate::cpu::x86::best().is_none() {
            return false;
        }
        for (xb, b) in x.chunks_exact(super::QK).zip(out.iter_mut()) {
            // SAFETY: `best` detected AVX2 and FMA; `chunks_exact` gives 32 values.
            unsafe { avx2::quantize_block_q8_0(xb, b) };
        }
        true
    }

    mod avx2 {
        use std::arch::x86_64::*;

        use super::super::{BlockQ8_0, BlockQ8K, QK, QK_K, block_sums_q8_k};

        /// The largest of the eight lanes of `m` (no NaN in it).
        #[target_feature(enable = "avx2")]
        #[inline]
        fn hmax(m: __m256) -> f32 {
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)))
        }

        /// Four vectors of eight i32 levels (each in −128..=127) as 32 bytes in order.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn pack_levels(q: [__m256i; 4]) -> __m256i {
            let ab = _mm256_packs_epi32(q[0], q[1]);
            let cd = _mm256_packs_epi32(q[2], q[3]);
            _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(ab, cd),
                _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
            )
        }

        /// One Q8_0 block: `amax` as a vector maximum of `|x|`, levels through `vcvtps2dq` of `x · (127 / amax)`
        /// (the scalar loop's product; round half to even, as `nearest_int`). Blocks whose `amax` is 0 or not
        /// finite go to the scalar loop.
        ///
        /// # Safety
        /// The CPU must have AVX2; `xb.len()` must be 32.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn quantize_block_q8_0(xb: &[f32], b: &mut BlockQ8_0) {
            debug_assert_eq!(xb.len(), QK);
            let p = xb.as_ptr();
            let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
            let mut v = [_mm256_setzero_ps(); 4];
            let (mut m, mut nan) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (k, vk) in v.iter_mut().enumerate() {
                // SAFETY: `8k + 8 ≤ 32` values of `xb`; unaligned load.
                *vk = unsafe { _mm256_loadu_ps(p.add(8 * k)) };
                m = _mm256_max_ps(m, _mm256_and_ps(*vk, abs_mask));
                nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(*vk, *vk));
            }
            let amax = hmax(m);
            if amax == 0.0 || !amax.is_finite() || _mm256_movemask_ps(nan) != 0 {
                super::super::quantize_row_q8_0_ref(xb, std::slice::from_mut(b));
                return;
            }
            b.d = half::f16::from_f32(amax / 127.0);
            let id = _mm256_set1_ps(127.0 / amax);
            let mut q = [_mm256_setzero_si256(); 4];
            for (qk, vk) in q.iter_mut().zip(v) {
                *qk = _mm256_cvtps_epi32(_mm256_mul_ps(vk, id));
            }
            // SAFETY: `qs` is 32 writable bytes; unaligned store.
            unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), pack_levels(q)) };
        }

        /// One Q8_K block: `amax` as a vector maximum of `|x|`, `max` the first value of that magnitude (the scalar
        /// loop's strict `>` keeps the first), levels through `vcvtps2dq` (round half to even, as `nearest_int`;
        /// exact for `|v| ≤ 127.5`), then the scalar sums.
        ///
        /// # Safety
        /// The CPU must have AVX2; `xb.len()` must be 256.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn quantize_block_q8_k(xb: &[f32], b: &mut BlockQ8K) {
            debug_assert_eq!(xb.len(), QK_K);
            let p = xb.as_ptr();
            let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
            let (mut m, mut nan) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for i in 0..QK_K / 8 {
                // SAFETY: `8i + 8 ≤ 256` values of `xb`; unaligned load.
                let v = unsafe { _mm256_loadu_ps(p.add(8 * i)) };
                m = _mm256_max_ps(m, _mm256_and_ps(v, abs_mask));
                nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            }
            let amax = hmax(m);
            if amax == 0.0 || _mm256_movemask_ps(nan) != 0 {
                // All zeros, or NaNs (which the scalar loop skips in the maximum, then converts its own way): the
                // scalar path decides.
                super::super::quantize_row_q8_k_ref(xb, std::slice::from_mut(b));
                return;
            }
            let target = _mm256_set1_ps(amax);
            let mut max = amax;
            for i in 0..QK_K / 8 {
                // SAFETY: as above.
                let v = unsafe { _mm256_loadu_ps(p.add(8 * i)) };
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(v, abs_mask), target));
                if hit != 0 {
                    max = xb[8 * i + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            let top = _mm256_set1_epi32(127);
            for c in 0..QK_K / 32 {
                // (A loop, not `map`: closures do not inherit the target features.)
                let mut q = [_mm256_setzero_si256(); 4];
                for (k, qk) in q.iter_mut().enumerate() {
                    // SAFETY: `32c + 8k + 8 ≤ 256` values; unaligned load.
                    let v = unsafe { _mm256_loadu_ps(p.add(32 * c + 8 * k)) };
                    *qk = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v, is)), top);
                }
                // SAFETY: `qs[32c..32c + 32]` is 32 writable bytes; unaligned store.
                unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().add(32 * c).cast(), pack_levels(q)) };
            }
            block_sums_q8_k(b);
            b.d = 1.0 / iscale;
        }
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
    fn q8_0_simd_equals_the_scalar_loop() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(10);
        let mut rows: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..4 * QK).map(|_| rng.random_range(-4.0f32..4.0)).collect())
            .collect();
        // An all-zero block; levels on exact halves (amax 127: id = 1); an infinity and a NaN.
        let mut special: Vec<f32> = (0..4 * QK)
            .map(|i| match i / QK {
                0 => 0.0,
                1 if i % QK == 0 => 127.0,
                1 => (i % 9) as f32 - 4.5,
                _ => 1.0,
            })
            .collect();
        special[2 * QK + 3] = f32::INFINITY;
        special[3 * QK + 5] = f32::NAN;
        rows.push(special);
        for x in rows {
            let mut a = vec![BlockQ8_0::zeroed(); 4];
            let mut b = vec![BlockQ8_0::zeroed(); 4];
            quantize_row_q8_0(&x, &mut a);
            quantize_row_q8_0_ref(&x, &mut b);
            assert_eq!(
                bytemuck::cast_slice::<BlockQ8_0, u8>(&a),
                bytemuck::cast_slice::<BlockQ8_0, u8>(&b)
            );
        }
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

    #[test]
    fn q8_k_simd_equals_the_scalar_loops() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(9);
        let mut rows: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..2 * QK_K).map(|_| rng.random_range(-4.0f32..4.0)).collect())
            .collect();
        // The largest magnitude twice, negative first then positive (and the reverse): the first one sets the sign.
        let mut tie = vec![0.5f32; QK_K];
        tie[7] = -3.0;
        tie[200] = 3.0;
        rows.push(
            tie.iter()
                .chain(tie.iter().map(|v| -v).collect::<Vec<_>>().iter())
                .copied()
                .collect(),
        );
        // A NaN early in a block (a later, finite maximum must not hide it).
        let mut nan: Vec<f32> = (0..2 * QK_K).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect();
        nan[3] = f32::NAN;
        rows.push(nan);
        // An all-zero block, and levels on exact halves: 127 / 2 · k.
        rows.push(
            (0..2 * QK_K)
                .map(|i| if i < QK_K { 0.0 } else { (i % 9) as f32 * 0.5 - 2.0 })
                .collect(),
        );
        for x in rows {
            let mut a = vec![BlockQ8K::zeroed(); 2];
            let mut b = vec![BlockQ8K::zeroed(); 2];
            quantize_row_q8_k(&x, &mut a);
            quantize_row_q8_k_ref(&x, &mut b);
            assert_eq!(
                bytemuck::cast_slice::<BlockQ8K, u8>(&a),
                bytemuck::cast_slice::<BlockQ8K, u8>(&b)
            );
        }
    }
}
