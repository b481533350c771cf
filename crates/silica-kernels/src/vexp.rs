//! `e^x` in f32 eight lanes at a time (AVX2 + FMA), for the softmax of attention scores in prefill, with a
//! scalar twin that performs the same operations in the same order, so the two agree bit for bit.
//!
//! Method (the classic range reduction of Cody & Waite, "Software Manual for the Elementary Functions", 1980):
//! `n = round(x · log2 e)` (ties to even), `r = x − n · ln2_hi − n · ln2_lo` (two FMAs; `ln2_hi = 355/512`, so
//! `n · ln2_hi` is exact), `e^x = 2ⁿ · p(r)` with `p` the degree-7 Taylor
//! polynomial of `e^r` on `|r| ≤ ln2 / 2` (truncation below `0.347⁸ / 8! < 5·10⁻¹⁰`, well under half an ulp),
//! evaluated by Horner's rule in FMAs, and `2ⁿ` built in the exponent field. Inputs are clamped to
//! `[−87.33, 88.3]` so `2ⁿ` stays a normal number; below `−87.33` (where `e^x` is subnormal) the result is 0, as
//! the softmax wants. Measured against `f32::exp` over a sweep of `[−87, 88]` (the tests): at most 2 ulp.
//!
//! ggml computes the same function with its own polynomial (`ggml_v_expf` in `ggml-cpu/vec.h`); silica's results
//! differ from it by rounding only.
#![allow(unsafe_code)]

/// `log2 e`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` to 9 significant bits, `355/512` (Cephes' `expf` split): `n · LN2_HI` is exact for `|n| < 2¹⁵`.
const LN2_HI: f32 = 355.0 / 512.0;
/// `ln 2 − LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// Smallest input whose result is normal: `ln(2⁻¹²⁶)` rounded up.
const X_MIN: f32 = -87.33;
/// Largest input: `2ⁿ` stays finite (`n ≤ 127`).
const X_MAX: f32 = 88.3;
/// `1/k!` for `k = 7 … 2` (Horner from the highest power).
const C: [f32; 6] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5];

/// `e^x` by the method of the module docs, one value (the reference the SIMD lanes equal).
pub fn exp_ref(x: f32) -> f32 {
    let below = x < X_MIN;
    let x = x.clamp(X_MIN, X_MAX);
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = C[0];
    for c in &C[1..] {
        p = p.mul_add(r, *c);
    }
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if below { 0.0 } else { p * scale }
}

/// Softmax numerator in place: `row[i] = e^(scale·row[i] − max)` with `max = max_i scale·row[i]`; returns
/// `Σ row[i]`, the denominator. Uses [`exp_ref`]'s function eight lanes at a time (AVX2 intrinsics, or
/// [`softmax_row_lanes`], which the compiler vectorizes: the same bits, the sum included).
///
/// An empty row gives 0.
pub fn softmax_row(row: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::x86::best().is_some() {
        // SAFETY: `best` returns a level only when AVX2, FMA and F16C are present.
        return unsafe { x86::softmax_row(row, scale) };
    }
    softmax_row_lanes(row, scale)
}

/// [`softmax_row`] in eight lanes of plain Rust, in the AVX2 path's order: the maximum and the sum per lane over
/// whole chunks of eight, the lanes combined in order, then the tail one value at a time. Written so that the
/// compiler vectorizes it (NEON on aarch64), where [`softmax_row_ref`]'s running maximum and sum, one value after
/// another, keep it scalar.
pub fn softmax_row_lanes(row: &mut [f32], scale: f32) -> f32 {
    const L: usize = 8;
    let n8 = row.len() / L * L;
    let mut vmax = [f32::NEG_INFINITY; L];
    for c in row[..n8].chunks_exact_mut(L) {
        for (m, x) in vmax.iter_mut().zip(c) {
            *x *= scale;
            // `maxps`: the second operand unless the first is greater.
            *m = if *m > *x { *m } else { *x };
        }
    }
    let mut max = vmax.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for x in &mut row[n8..] {
        *x *= scale;
        max = max.max(*x);
    }
    let mut vsum = [0f32; L];
    for c in row[..n8].chunks_exact_mut(L) {
        for (s, x) in vsum.iter_mut().zip(c) {
            *x = exp_ref(*x - max);
            *s += *x;
        }
    }
    let mut sum: f32 = vsum.iter().sum();
    for x in &mut row[n8..] {
        *x = exp_ref(*x - max);
        sum += *x;
    }
    sum
}

/// [`softmax_row`] one value at a time.
pub fn softmax_row_ref(row: &mut [f32], scale: f32) -> f32 {
    let mut max = f32::NEG_INFINITY;
    for x in row.iter_mut() {
        *x *= scale;
        max = max.max(*x);
    }
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = exp_ref(*x - max);
        sum += *x;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{C, LN2_HI, LN2_LO, LOG2E, X_MAX, X_MIN, exp_ref};

    /// [`exp_ref`] in eight lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(X_MIN));
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(X_MIN)), _mm256_set1_ps(X_MAX));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(LOG2E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(C[0]);
        for c in &C[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let one = _mm256_set1_ps(1.0);
        p = _mm256_fmadd_ps(p, r, one);
        p = _mm256_fmadd_ps(p, r, one);
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(e)))
    }

    /// See [`super::softmax_row`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_row(row: &mut [f32], scale: f32) -> f32 {
        let n8 = row.len() / 8 * 8;
        let sc = _mm256_set1_ps(scale);
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        for c in row[..n8].chunks_exact_mut(8) {
            // SAFETY: `c` is 8 floats; unaligned load.
            let v = _mm256_mul_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, sc);
            // SAFETY: as above; unaligned store.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), v) };
            vmax = _mm256_max_ps(vmax, v);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` is 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
        let mut max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for x in &mut row[n8..] {
            *x *= scale;
            max = max.max(*x);
        }
        let vm = _mm256_set1_ps(max);
        let mut vsum = _mm256_setzero_ps();
        for c in row[..n8].chunks_exact_mut(8) {
            // SAFETY: as above.
            let e = exp8(_mm256_sub_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, vm));
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), e) };
            vsum = _mm256_add_ps(vsum, e);
        }
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vsum) };
        let mut sum: f32 = lanes.iter().sum();
        for x in &mut row[n8..] {
            *x = exp_ref(*x - max);
            sum += *x;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two positive finite floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library_and_zero_below_the_normal_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_ref(x), x.exp());
            worst = worst.max(ulps(got, want));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_ref(0.0), 1.0);
        assert_eq!(exp_ref(-100.0), 0.0);
        assert_eq!(exp_ref(f32::NEG_INFINITY), 0.0);
        assert!(exp_ref(1000.0).is_finite());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_lanes_equal_the_scalar_function() {
        use std::arch::x86_64::*;
        if crate::cpu::x86::best().is_none() {
            return;
        }
        let mut x = -95.0f32;
        while x < 90.0 {
            let v: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 0.011);
            let mut got = [0f32; 8];
            // SAFETY: AVX2 and FMA checked above; 8-float buffers.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), x86::exp8(_mm256_loadu_ps(v.as_ptr()))) };
            for (g, &vi) in got.iter().zip(&v) {
                assert_eq!(g.to_bits(), exp_ref(vi).to_bits(), "x = {vi}");
            }
            x += 0.093;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn softmax_lanes_equal_the_avx2_path_to_the_bit() {
        if crate::cpu::x86::best().is_none() {
            eprintln!("no AVX2 on this CPU: softmax_row is softmax_row_lanes itself, nothing to compare");
            return;
        }
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(5);
        for len in [0usize, 1, 7, 8, 9, 33, 515, 4160] {
            let src: Vec<f32> = (0..len).map(|_| rng.random_range(-40.0..40.0)).collect();
            let (mut a, mut b) = (src.clone(), src.clone());
            let sa = softmax_row(&mut a, 0.125);
            let sb = softmax_row_lanes(&mut b, 0.125);
            assert_eq!(sa.to_bits(), sb.to_bits(), "sum, length {len}");
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "length {len}"
            );
        }
    }

    #[test]
    fn softmax_matches_its_scalar_form() {
        for len in [0usize, 1, 7, 8, 9, 33, 515] {
            let src: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.7).collect();
            let (mut a, mut b) = (src.clone(), src.clone());
            let sa = softmax_row(&mut a, 0.125);
            let sb = softmax_row_ref(&mut b, 0.125);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert!((sa - sb).abs() <= 1e-6 * sb.max(1.0), "{sa} vs {sb}");
            if len > 0 {
                assert!(a.contains(&1.0), "the max maps to e^0");
            }
        }
    }
}
