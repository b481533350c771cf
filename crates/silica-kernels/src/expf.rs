//! `e^x` in f32 with the results of glibc's `expf` (x86-64, glibc ≥ 2.28), one value or eight at a time, for
//! the softmax of the one-token attention path, which follows ggml's one-chunk flash attention and calls libm's
//! `expf` once per key. (The prefill softmax's [`crate::vexp`] is faster but rounds differently; the one-token
//! path keeps ggml's bits, hence this.)
//!
//! Method (Szabolcs Nagy's `expf` from ARM's optimized-routines, which glibc took for `sysdeps/ieee754/flt-32/
//! e_expf.c`, with a table of 2⁵ entries): in f64, `z = x · 32/ln2`, `k = round(z)` (ties to even, by adding and
//! subtracting `1.5·2⁵²`), `r = z − k` (one fused multiply-subtract), `s = 2^(k/32)` built from the table entry
//! `T[k mod 32]` plus `k` in the exponent field, then `e^x ≈ s · (1 + C₂r + C₁r² + C₀r³)` evaluated as
//! `fma(fma(C₀, r, C₁), r², fma(C₂, r, 1)) · s`, rounded once to f32. The fused operations are the ones glibc's
//! `__expf_fma` (the variant its dispatcher picks on CPUs with FMA) executes: with them, [`expf`] equals that
//! `expf` for every one of the 2 239 836 979 floats in (−103.9, 88.7) (checked exhaustively on the test machine,
//! AMD EPYC Zen 4, glibc 2.36; the tests check a sample of them against `f32::exp` on Linux/glibc, and the
//! 0.502-ulp accuracy glibc documents against `f64::exp` everywhere). Without FMA in hardware, `f64::mul_add`
//! still computes the fused result (in software), so the scalar function gives the same bits on every machine.
//!
//! Constants: `T[i]` is the f64 nearest `2^(i/32)` with `i·2⁴⁷` subtracted from its bits (so adding `k·2⁴⁷`
//! back scales by `2^⌊k/32⌋`); `C₀..C₂` are the minimax coefficients `0x1.c6af84b912394p-5`,
//! `0x1.ebfce50fac4f3p-3`, `0x1.62e42ff0c52d6p-1` of optimized-routines' `exp2f_data.c`, divided by 32³, 32²,
//! 32; `32/ln2` is `0x1.71547652b82fep+0 · 32`. Special cases as glibc's: `e^−∞ = 0`, NaN and `+∞` returned,
//! overflow above `0x1.62e42ep6` to `+∞`, underflow below `−0x1.9fe368p6` to 0.
#![allow(unsafe_code)]

/// `T[i]`: bits of the f64 nearest `2^(i/32)`, minus `i << 47` (module docs).
const T: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// `32 / ln 2`.
const INV_LN2_N: f64 = f64::from_bits(0x3FF71547652B82FE) * 32.0;
/// `1.5 · 2⁵²`: adding and subtracting it rounds an f64 below 2⁵¹ to an integer, ties to even.
const SHIFT: f64 = f64::from_bits(0x4338000000000000);
/// The polynomial's coefficients of `r³`, `r²` and `r`, scaled for `r` in units of 1/32.
const C: [f64; 3] = [
    f64::from_bits(0x3FAC6AF84B912394) / (32.0 * 32.0 * 32.0),
    f64::from_bits(0x3FCEBFCE50FAC4F3) / (32.0 * 32.0),
    f64::from_bits(0x3FE62E42FF0C52D6) / 32.0,
];
/// Bits of `|x|` from which the special cases are checked: `top12(88.0)`, as glibc.
const SPECIAL_ABS_BITS: u32 = 0x42b0_0000;

/// `e^x` with glibc's `expf` results (module docs). Inlined, so that callers compiled with FMA get its fused
/// operations as instructions rather than calls to libm's `fma`.
#[inline]
pub fn expf(x: f32) -> f32 {
    if x.to_bits() & 0x7fff_ffff >= SPECIAL_ABS_BITS {
        if x == f32::NEG_INFINITY {
            return 0.0;
        }
        if !x.is_finite() {
            return x + x;
        }
        if x > f32::from_bits(0x42b1_7217) {
            // 0x1.62e42ep6 = ln(2¹²⁸) rounded down: overflow.
            return f32::INFINITY;
        }
        if x < -f32::from_bits(0x42cf_f1b4) {
            // −0x1.9fe368p6: below ln of half the smallest subnormal, underflow.
            return 0.0;
        }
    }
    let xd = f64::from(x);
    let z = INV_LN2_N * xd;
    let kd = z + SHIFT;
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    let r = INV_LN2_N.mul_add(xd, -kd);
    let s = f64::from_bits(T[(ki % 32) as usize].wrapping_add(ki << 47));
    let zp = C[0].mul_add(r, C[1]);
    let y = C[2].mul_add(r, 1.0);
    let y = zp.mul_add(r * r, y);
    (y * s) as f32
}

/// `[expf(x[0]), …, expf(x[7])]`, with AVX2 and FMA where the CPU has them, NEON on aarch64 (the same bits as
/// [`expf`]).
///
/// What the vector form buys, measured on x86 (a temporary build whose `expf8` took `x.map(expf)`, compiled with
/// FMA, against the AVX2 form; `silica bench -m SmolLM2-135M-Instruct.Q4_0.gguf -p 0 -n 64 -d 4096 -r 2`,
/// alternating, AMD EPYC Zen 4, 2 threads): tg64 @ d4096 71.5, 71.1, 66.1 → 91.9, 90.5, 92.7 t/s. The NEON form
/// (two f64 lanes per vector, against AVX2's four) is not timed on ARM hardware.
pub fn expf8(x: [f32; 8]) -> [f32; 8] {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::x86::best().is_some() {
        // SAFETY: `best` detected AVX2, FMA and F16C.
        return unsafe { x86::expf8(x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        neon::expf8(x)
    }
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    {
        x.map(expf)
    }
}

/// [`expf8`] on aarch64: [`expf`]'s main path in two f64 lanes, the same operations in the same order (`FMLA`
/// for its fused multiply-adds, `FCVTN` rounding to f32 to nearest even as `as f32`), the table read one lane at
/// a time, the special cases by [`expf`].
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use std::arch::aarch64::*;

    use super::{C, INV_LN2_N, SHIFT, SPECIAL_ABS_BITS, T, expf};

    /// Two lanes of [`expf`]'s main path (no special cases).
    #[inline(always)]
    fn core2(x: float32x2_t) -> float32x2_t {
        // SAFETY: register arithmetic only (NEON is a static target feature here); the table reads are masked
        // to its 32 entries.
        unsafe {
            let xd = vcvt_f64_f32(x);
            let inv = vdupq_n_f64(INV_LN2_N);
            let shift = vdupq_n_f64(SHIFT);
            let kd = vaddq_f64(vmulq_f64(inv, xd), shift);
            let ki = vreinterpretq_u64_f64(kd);
            let kd = vsubq_f64(kd, shift);
            let r = vfmaq_f64(vnegq_f64(kd), inv, xd);
            let t = [
                T[(vgetq_lane_u64::<0>(ki) % 32) as usize],
                T[(vgetq_lane_u64::<1>(ki) % 32) as usize],
            ];
            let s = vreinterpretq_f64_u64(vaddq_u64(vld1q_u64(t.as_ptr()), vshlq_n_u64::<47>(ki)));
            let zp = vfmaq_f64(vdupq_n_f64(C[1]), vdupq_n_f64(C[0]), r);
            let y = vfmaq_f64(vdupq_n_f64(1.0), vdupq_n_f64(C[2]), r);
            let y = vfmaq_f64(y, zp, vmulq_f64(r, r));
            vcvt_f32_f64(vmulq_f64(y, s))
        }
    }

    /// See [`super::expf8`].
    pub(super) fn expf8(x: [f32; 8]) -> [f32; 8] {
        let mut out = [0f32; 8];
        for (o, xs) in out.chunks_exact_mut(2).zip(x.chunks_exact(2)) {
            // SAFETY: `xs` is 8 readable bytes and `o` 8 writable ones; unaligned load and store.
            unsafe { vst1_f32(o.as_mut_ptr(), core2(vld1_f32(xs.as_ptr()))) };
        }
        for (o, &xi) in out.iter_mut().zip(&x) {
            if xi.to_bits() & 0x7fff_ffff >= SPECIAL_ABS_BITS {
                *o = expf(xi);
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{C, INV_LN2_N, SHIFT, SPECIAL_ABS_BITS, T, expf};

    /// Four lanes of [`super::expf`]'s main path, in f64 (no special cases).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn core4(x: __m128) -> __m128 {
        let xd = _mm256_cvtps_pd(x);
        let inv = _mm256_set1_pd(INV_LN2_N);
        let shift = _mm256_set1_pd(SHIFT);
        let kd = _mm256_add_pd(_mm256_mul_pd(inv, xd), shift);
        let ki = _mm256_castpd_si256(kd);
        let kd = _mm256_sub_pd(kd, shift);
        let r = _mm256_fmsub_pd(inv, xd, kd);
        let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
        // SAFETY: every index is below 32, the table's length; gathered with a scale of 8 bytes.
        let t = unsafe { _mm256_i64gather_epi64::<8>(T.as_ptr().cast(), idx) };
        let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
        let zp = _mm256_fmadd_pd(_mm256_set1_pd(C[0]), r, _mm256_set1_pd(C[1]));
        let y = _mm256_fmadd_pd(_mm256_set1_pd(C[2]), r, _mm256_set1_pd(1.0));
        let y = _mm256_fmadd_pd(zp, _mm256_mul_pd(r, r), y);
        _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
    }

    /// See [`super::expf8`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn expf8(x: [f32; 8]) -> [f32; 8] {
        // SAFETY: `x` is 32 readable bytes; unaligned load.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr()) };
        let lo = core4(_mm256_castps256_ps128(v));
        let hi = core4(_mm256_extractf128_ps::<1>(v));
        let mut out = [0f32; 8];
        // SAFETY: `out` is 32 writable bytes; unaligned store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_set_m128(hi, lo)) };
        let abs = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fff_ffff));
        let special = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(SPECIAL_ABS_BITS as i32 - 1));
        let mut mask = _mm256_movemask_ps(_mm256_castsi256_ps(special)) as u32;
        while mask != 0 {
            let l = mask.trailing_zeros() as usize;
            out[l] = expf(x[l]);
            mask &= mask - 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs that cover the table's 32 entries, both signs, the thresholds of the special cases, subnormal
    /// results and the values themselves.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            88.0,
            -88.0,
            f32::from_bits(0x42b1_7217),
            f32::from_bits(0x42b1_7218),
            -f32::from_bits(0x42cf_f1b4),
            -f32::from_bits(0x42cf_f1b5),
            -100.0,
            -103.5,
            -150.0,
            200.0,
        ];
        // A stride through every bit pattern: ~1.05 million values of both signs and every exponent.
        v.extend((0..=u32::MAX).step_by(4093).map(f32::from_bits));
        // 16 million values evenly spaced in (−104, 0], where the softmax's arguments lie (the stride through
        // the bits above puts most of its samples within 1 of 0).
        v.extend((1..=1 << 24).map(|i| (-104.0 * f64::from(i) / f64::from(1 << 24)) as f32));
        v
    }

    #[test]
    fn eight_lanes_equal_the_scalar_function() {
        let v = inputs();
        for chunk in v.chunks_exact(8) {
            let x: [f32; 8] = chunk.try_into().unwrap();
            let got = expf8(x);
            for (l, (&g, &xi)) in got.iter().zip(&x).enumerate() {
                let want = expf(xi);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "lane {l}: expf8({xi:e}) = {g:e}, expf = {want:e}"
                );
            }
        }
    }

    /// Within glibc's documented 0.502 ulp of `e^x` computed in f64 (which is itself within 1 ulp of f64): on
    /// every platform, whatever its libm.
    #[test]
    fn results_are_within_half_an_ulp_of_the_exact_value() {
        for x in inputs() {
            let got = expf(x);
            let exact = f64::from(x).exp();
            if x.is_nan() {
                assert!(got.is_nan());
                continue;
            }
            if !exact.is_finite() || exact > f64::from(f32::MAX) {
                assert_eq!(got, f32::INFINITY, "expf({x:e})");
                continue;
            }
            // One ulp of the f32 result at its magnitude (the subnormal spacing below the normal range).
            let ulp = f64::from(f32::from_bits(
                ((exact as f32).to_bits() & 0x7f80_0000).max(0x0080_0000),
            )) * f64::from(f32::EPSILON);
            let ulp = if exact < f64::from(f32::MIN_POSITIVE) {
                2f64.powi(-149)
            } else {
                ulp
            };
            assert!(
                (f64::from(got) - exact).abs() <= 0.502 * ulp + exact * 1e-16,
                "expf({x:e}) = {got:e}, exact {exact:e}"
            );
        }
    }

    /// The same bits as libm's `expf` where that is glibc's (the function the one-token attention called
    /// before, and llama.cpp calls): the point of this module.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    fn equals_glibc_expf() {
        for x in inputs() {
            let (got, want) = (expf(x), x.exp());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "expf({x:e}) = {got:e}, glibc {want:e}"
            );
        }
    }
}
