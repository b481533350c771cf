//! k-quant dot products: Q4_K, Q5_K and Q6_K weight super-blocks against Q8_K activations.
//!
//! Each type has a plain scalar reference mirroring ggml's `ggml_vec_dot_q{4,5,6}_K_q8_K_generic`
//! (`ggml-cpu/quants.c`) and runtime-dispatched SIMD kernels:
//!
//! * x86-64: the AVX2 branch of `ggml_vec_dot_q{4,5,6}_K_q8_K` (`ggml-cpu/arch/x86/quants.c`), compiled for
//!   AVX2 + FMA + F16C, for AVX-VNNI and for AVX-512 VNNI (`vpdpwssd` fuses the scale `vpmaddwd` with the
//!   accumulation; the EVEX build also has 32 vector registers, which the four-row kernels use);
//! * aarch64: the NEON branch (`ggml-cpu/arch/arm/quants.c`), with `sdot` where the CPU has the dot-product
//!   extension;
//! * other targets: the reference.
//!
//! The SIMD kernels are generic over the number of activation rows, so [`WeightBlock::vec_dot_x4`] unpacks
//! each weight super-block once and reuses it for four rows, with exactly the per-row arithmetic of
//! [`WeightBlock::vec_dot`] (the two agree bit for bit). Integer sums are exact on every path; the paths
//! differ only in the order of the f32 operations.

#![allow(unsafe_code)]

use silica_gguf::GgmlType;

use crate::WeightBlock;
use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

const KMASK1: u32 = 0x3f3f_3f3f;
const KMASK2: u32 = 0x0f0f_0f0f;
const KMASK3: u32 = 0x0303_0303;

/// Unpacks the 12 packed bytes of a Q4_K / Q5_K super-block into 16 bytes: the 8 six-bit sub-block scales
/// followed by the 8 six-bit mins (ggml's `utmp` / `kmask` shuffle, equivalent to `get_scale_min_k4`).
#[inline]
pub(crate) fn unpack_scales_mins(packed: &[u8; 12]) -> [u8; 16] {
    let word = |k: usize| {
        u32::from_le_bytes([
            packed[4 * k],
            packed[4 * k + 1],
            packed[4 * k + 2],
            packed[4 * k + 3],
        ])
    };
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let out = [
        u0 & KMASK1,
        (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4),
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ];
    let mut bytes = [0u8; 16];
    for (dst, w) in bytes.chunks_exact_mut(4).zip(out) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

/// Integer part of the generic k-quant kernels: adds `scale[j/16] · Σ level·q8` of each 16-value group into
/// the 8 interleaved lanes of `aux32` (lane `l` takes the values `≡ l (mod 8)`), as ggml's `aux16` / `aux32`
/// loops.
#[inline]
fn accumulate_ref(levels: &[i8; QK_K], scales16: &[i32; QK_K / 16], q8: &[i8; QK_K], aux32: &mut [i32; 8]) {
    for (g, &scale) in scales16.iter().enumerate() {
        for half in 0..2 {
            let base = 16 * g + 8 * half;
            for (l, lane) in aux32.iter_mut().enumerate() {
                *lane += scale * (i32::from(q8[base + l]) * i32::from(levels[base + l]));
            }
        }
    }
}

/// Levels (0..=15 or 0..=31) of a Q4_K / Q5_K super-block in value order: byte `32g + l` of `qs` holds
/// values `64g + l` (low nibble) and `64g + 32 + l` (high nibble); `qh` (Q5_K) adds bit `2g` / `2g + 1`.
#[inline]
fn levels_k4(qs: &[u8; QK_K / 2], qh: Option<&[u8; QK_K / 8]>) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for g in 0..QK_K / 64 {
        for l in 0..32 {
            let byte = qs[32 * g + l];
            let (mut lo, mut hi) = (byte & 0x0F, byte >> 4);
            if let Some(qh) = qh {
                lo += ((qh[l] >> (2 * g)) & 1) << 4;
                hi += ((qh[l] >> (2 * g + 1)) & 1) << 4;
            }
            a[64 * g + l] = lo as i8;
            a[64 * g + 32 + l] = hi as i8;
        }
    }
    a
}

/// Shared generic kernel of Q4_K and Q5_K (`ggml_vec_dot_q4_K_q8_K_generic` /
/// `ggml_vec_dot_q5_K_q8_K_generic`).
fn dot_k4_ref<'a>(blocks: impl Iterator<Item = (f32, f32, &'a [u8; 12], [i8; QK_K])>, x: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for ((d_w, dmin_w, packed, levels), y) in blocks.zip(x) {
        let sm = unpack_scales_mins(packed);
        let sumi: i32 = y
            .bsums
            .iter()
            .enumerate()
            .map(|(j, &s)| i32::from(s) * i32::from(sm[8 + j / 2]))
            .sum();
        let scales16: [i32; QK_K / 16] = core::array::from_fn(|g| i32::from(sm[g / 2]));
        let mut aux32 = [0i32; 8];
        accumulate_ref(&levels, &scales16, &y.qs, &mut aux32);
        let d = d_w * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        let dmin = dmin_w * y.d;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Mirrors `ggml_vec_dot_q4_K_q8_K_generic`.
fn dot_q4k_ref(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len(), "q4_K vec_dot: block counts differ");
    dot_k4_ref(
        w.iter()
            .map(|b| (b.d.to_f32(), b.dmin.to_f32(), &b.scales, levels_k4(&b.qs, None))),
        x,
    )
}

/// Mirrors `ggml_vec_dot_q5_K_q8_K_generic`.
fn dot_q5k_ref(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len(), "q5_K vec_dot: block counts differ");
    dot_k4_ref(
        w.iter().map(|b| {
            (
                b.d.to_f32(),
                b.dmin.to_f32(),
                &b.scales,
                levels_k4(&b.qs, Some(&b.qh)),
            )
        }),
        x,
    )
}

/// Signed levels (`q − 32`, −32..=31) of a Q6_K super-block in value order (`dequantize_row_q6_K` layout).
#[inline]
pub(crate) fn levels_q6k(b: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for h in 0..QK_K / 128 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        let out = &mut a[128 * h..128 * h + 128];
        for l in 0..32 {
            out[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            out[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            out[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            out[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// Mirrors `ggml_vec_dot_q6_K_q8_K_generic`.
fn dot_q6k_ref(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len(), "q6_K vec_dot: block counts differ");
    let mut sums = [0f32; 8];
    for (b, y) in w.iter().zip(x) {
        let levels = levels_q6k(b);
        let scales16: [i32; QK_K / 16] = b.scales.map(i32::from);
        let mut aux32 = [0i32; 8];
        accumulate_ref(&levels, &scales16, &y.qs, &mut aux32);
        let d = b.d.to_f32() * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// A Q4_K or Q5_K super-block, for the SIMD kernels they share.
#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
trait K4Block {
    /// `d`, `dmin`.
    fn d_dmin(&self) -> (half::f16, half::f16);
    /// The packed 6-bit scales and mins.
    fn packed_scales(&self) -> &[u8; 12];
    /// The low 4 bits of the levels.
    fn qs(&self) -> &[u8; QK_K / 2];
    /// The fifth bits (Q5_K only).
    fn qh(&self) -> Option<&[u8; QK_K / 8]>;
}

#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
impl K4Block for BlockQ4K {
    #[inline]
    fn d_dmin(&self) -> (half::f16, half::f16) {
        (self.d, self.dmin)
    }
    #[inline]
    fn packed_scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline]
    fn qs(&self) -> &[u8; QK_K / 2] {
        &self.qs
    }
    #[inline]
    fn qh(&self) -> Option<&[u8; QK_K / 8]> {
        None
    }
}

#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
impl K4Block for BlockQ5K {
    #[inline]
    fn d_dmin(&self) -> (half::f16, half::f16) {
        (self.d, self.dmin)
    }
    #[inline]
    fn packed_scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline]
    fn qs(&self) -> &[u8; QK_K / 2] {
        &self.qs
    }
    #[inline]
    fn qh(&self) -> Option<&[u8; QK_K / 8]> {
        Some(&self.qh)
    }
}

/// x86-64 kernels, mirroring the `__AVX2__` branches of `ggml_vec_dot_q{4,5,6}_K_q8_K` in
/// `ggml-cpu/arch/x86/quants.c`: unsigned levels times signed activations with `vpmaddubsw`, the sub-block
/// scales with `vpmaddwd` (fused with the accumulation, `vpdpwssd`, where the CPU has VNNI), the Q4_K / Q5_K
/// mins and the Q6_K offset through the Q8_K `bsums`, one `vfmadd` per super-block and a horizontal sum at
/// the end.
///
/// Each kernel takes `R` activation rows: a weight super-block is loaded and unpacked (levels, scales) once,
/// then each row runs exactly the operations of the one-row kernel, so `R = 4` returns bit for bit what four
/// `R = 1` calls return. Q4_K and Q5_K accumulate the mins term in a vector as ggml's Q4_K kernel does
/// (ggml's Q5_K kernel sums it per super-block in a scalar; the two differ only in f32 rounding).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use bytemuck::Pod;
    use half::f16;

    use super::{K4Block, unpack_scales_mins};
    use crate::blocks::{BlockQ6K, BlockQ8K};

    /// Unaligned 32-byte load.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load256<T: Pod>(src: &T) -> __m256i {
        const { assert!(size_of::<T>() == 32) };
        // SAFETY: `src` is a reference to 32 initialized bytes (checked at compile time above); `loadu` has
        // no alignment requirement.
        unsafe { _mm256_loadu_si256(core::ptr::from_ref(src).cast()) }
    }

    /// Unaligned 16-byte load.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load128<T: Pod>(src: &T) -> __m128i {
        const { assert!(size_of::<T>() == 16) };
        // SAFETY: `src` is a reference to 16 initialized bytes (checked at compile time above); `loadu` has
        // no alignment requirement.
        unsafe { _mm_loadu_si128(core::ptr::from_ref(src).cast()) }
    }

    /// Two f16 → f32 conversions in one `vcvtph2ps` (the `half` crate would detect F16C on every call).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn f16_pair_to_f32(a: f16, b: f16) -> (f32, f32) {
        let bits = u32::from(a.to_bits()) | (u32::from(b.to_bits()) << 16);
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// ggml's `hsum_float_8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_f32x8(x: __m256) -> f32 {
        let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// Sum of the 4 lanes, as ggml's Q4_K kernel reduces its mins accumulator.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_f32x4(m: __m128) -> f32 {
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
    }

    /// `pshufb` control broadcasting 16-bit element `k` to every lane (ggml's `get_scale_shuffle_k4(k)`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pick_i16(k: usize) -> __m256i {
        _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16)
    }

    /// `pshufb` control taking byte `2k` into bytes 0..8 and byte `2k + 1` into bytes 8..16 (ggml's
    /// `get_scale_shuffle(k)`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pick_i8_pair(k: usize) -> __m128i {
        let rep = |b: usize| (b as u64).wrapping_mul(0x0101_0101_0101_0101) as i64;
        _mm_set_epi64x(rep(2 * k + 1), rep(2 * k))
    }

    /// Scales (widened to i16, in both 128-bit halves) and mins (widened to i16) of a Q4_K / Q5_K
    /// super-block.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scales_mins_k4(packed: &[u8; 12]) -> (__m256i, __m128i) {
        let mins_and_scales = _mm256_cvtepu8_epi16(load128(&unpack_scales_mins(packed)));
        let sc128 = _mm256_castsi256_si128(mins_and_scales);
        (
            _mm256_broadcastsi128_si256(sc128),
            _mm256_extracti128_si256::<1>(mins_and_scales),
        )
    }

    /// The 8 mins of a Q4_K / Q5_K super-block times the 8 per-32 sums of `y`'s levels, as 4 i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mins_dot_bsums(mins: __m128i, y: &BlockQ8K) -> __m128i {
        let q8sums = load256(&y.bsums);
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(q8sums),
            _mm256_extracti128_si256::<1>(q8sums),
        );
        _mm_madd_epi16(mins, q8s)
    }

    /// Levels of sub-blocks `2j` (low nibbles of `qs[32j..32j+32]`) and `2j + 1` (high nibbles) of a Q4_K /
    /// Q5_K super-block as unsigned bytes, with the Q5_K fifth bits (bits `2j`, `2j + 1` of `qh`) added.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn levels_k4<B: K4Block>(b: &B, j: usize) -> [__m256i; 2] {
        let m4 = _mm256_set1_epi8(0x0F);
        let bits = load256(&b.qs().as_chunks::<32>().0[j]);
        let lo = _mm256_and_si256(bits, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
        match b.qh() {
            None => [lo, hi],
            Some(qh) => {
                // Bit `2j` of each byte to bit 4 (shifts within 16-bit lanes: bits crossing into the next
                // byte are masked off).
                let mone = _mm256_set1_epi8(1);
                let h = _mm256_srl_epi16(load256(qh), _mm_cvtsi64_si128(2 * j as i64));
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, mone));
                let h1 = _mm256_slli_epi16::<3>(_mm256_and_si256(h, _mm256_set1_epi8(2)));
                [_mm256_add_epi8(lo, h0), _mm256_add_epi8(hi, h1)]
            }
        }
    }

    /// Levels (`0..64`, unsigned) of values `128h + 32k ..+ 32` of a Q6_K super-block, `k = 0..4`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn levels_q6k(b: &BlockQ6K, h: usize) -> [__m256i; 4] {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let ql = b.ql.as_chunks::<32>().0;
        let bits1 = load256(&ql[2 * h]);
        let bits2 = load256(&ql[2 * h + 1]);
        let bits_h = load256(&b.qh.as_chunks::<32>().0[h]);
        let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(bits_h, m3));
        let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(bits_h, _mm256_set1_epi8(12)));
        let h2 = _mm256_and_si256(bits_h, _mm256_set1_epi8(48));
        let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(bits_h, _mm256_set1_epi8(-64)));
        [
            _mm256_or_si256(_mm256_and_si256(bits1, m15), h0),
            _mm256_or_si256(_mm256_and_si256(bits2, m15), h1),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits1), m15), h2),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits2), m15), h3),
        ]
    }

    /// Keeps the accumulators' updates in program order across this point (an empty `asm!` per register).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pin<const R: usize>(v: &mut [__m256i; R]) {
        for x in v {
            // SAFETY: the template is empty: no instruction is emitted, no memory or flag is touched.
            unsafe {
                core::arch::asm!(
                    "/* {0} */",
                    inout(ymm_reg) * x,
                    options(nomem, nostack, preserves_flags)
                )
            };
        }
    }

    /// The kernels, compiled once per instruction-set level; `madd_acc(acc, a, b)` is `acc + vpmaddwd(a, b)`.
    macro_rules! kernels {
        (
            $(#[$doc:meta])* $name:ident, $features:literal, pin: $pin:literal,
            |$acc:ident, $a:ident, $b:ident| $madd_acc:expr
        ) => {
            $(#[$doc])*
            pub(super) mod $name {
                use super::*;

                /// Whether to [`pin`] the row accumulators after each group of sub-blocks: with 16 vector
                /// registers, LLVM otherwise runs the four rows one after the other and spills the unpacked
                /// levels and scales.
                const PIN: bool = $pin;

                /// `acc + Σ pairs a·b` in i32 lanes.
                #[inline]
                #[target_feature(enable = $features)]
                fn madd_acc($acc: __m256i, $a: __m256i, $b: __m256i) -> __m256i {
                    $madd_acc
                }

                /// Q4_K / Q5_K against `R` rows (`ggml_vec_dot_q4_K_q8_K`, `ggml_vec_dot_q5_K_q8_K`).
                ///
                /// # Panics
                /// If a row's block count differs from `w`'s.
                #[target_feature(enable = $features)]
                pub(in crate::kquants) fn dot_k4<B: K4Block, const R: usize>(
                    w: &[B],
                    x: [&[BlockQ8K]; R],
                ) -> [f32; R] {
                    for xr in &x {
                        assert_eq!(xr.len(), w.len(), "k-quant vec_dot: block counts differ");
                    }
                    let mut acc = [_mm256_setzero_ps(); R];
                    let mut acc_m = [_mm_setzero_ps(); R];
                    for (i, b) in w.iter().enumerate() {
                        let ys: [&BlockQ8K; R] = core::array::from_fn(|r| &x[r][i]);
                        let (d, dmin) = b.d_dmin();
                        let (dw, dminw) = f16_pair_to_f32(d, dmin);
                        let (scales, mins) = scales_mins_k4(b.packed_scales());
                        for (am, y) in acc_m.iter_mut().zip(&ys) {
                            let prod = mins_dot_bsums(mins, y);
                            *am = _mm_fmadd_ps(_mm_set1_ps(-y.d * dminw), _mm_cvtepi32_ps(prod), *am);
                        }
                        let mut sumi = [_mm256_setzero_si256(); R];
                        for j in 0..4 {
                            let [lo, hi] = levels_k4(b, j);
                            let scale_l = _mm256_shuffle_epi8(scales, pick_i16(2 * j));
                            let scale_h = _mm256_shuffle_epi8(scales, pick_i16(2 * j + 1));
                            for (s, y) in sumi.iter_mut().zip(&ys) {
                                let q8 = y.qs.as_chunks::<32>().0;
                                let p16l = _mm256_maddubs_epi16(lo, load256(&q8[2 * j]));
                                let p16h = _mm256_maddubs_epi16(hi, load256(&q8[2 * j + 1]));
                                *s = madd_acc(madd_acc(*s, scale_l, p16l), scale_h, p16h);
                            }
                            if PIN {
                                pin(&mut sumi);
                            }
                        }
                        for ((a, s), y) in acc.iter_mut().zip(sumi).zip(&ys) {
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(y.d * dw), _mm256_cvtepi32_ps(s), *a);
                        }
                    }
                    let mut out = [0f32; R];
                    for ((o, a), m) in out.iter_mut().zip(acc).zip(acc_m) {
                        *o = hsum_f32x8(a) + hsum_f32x4(m);
                    }
                    out
                }

                /// Q6_K against `R` rows (`ggml_vec_dot_q6_K_q8_K`): unsigned levels `q ∈ 0..64`, the `−32`
                /// offset through the Q8_K `bsums`.
                ///
                /// # Panics
                /// If a row's block count differs from `w`'s.
                #[target_feature(enable = $features)]
                pub(in crate::kquants) fn dot_q6k<const R: usize>(
                    w: &[BlockQ6K],
                    x: [&[BlockQ8K]; R],
                ) -> [f32; R] {
                    for xr in &x {
                        assert_eq!(xr.len(), w.len(), "q6_K vec_dot: block counts differ");
                    }
                    let mut acc = [_mm256_setzero_ps(); R];
                    for (i, b) in w.iter().enumerate() {
                        let ys: [&BlockQ8K; R] = core::array::from_fn(|r| &x[r][i]);
                        let (dw, _) = f16_pair_to_f32(b.d, b.d);
                        let scales = load128(&b.scales);
                        let mut sumi = [_mm256_setzero_si256(); R];
                        for h in 0..2 {
                            let lv = levels_q6k(b, h);
                            for k in 0..4 {
                                let sc = _mm_shuffle_epi8(scales, pick_i8_pair(4 * h + k));
                                let sc = _mm256_cvtepi8_epi16(sc);
                                for (s, y) in sumi.iter_mut().zip(&ys) {
                                    let q8 = y.qs.as_chunks::<32>().0;
                                    let p16 = _mm256_maddubs_epi16(lv[k], load256(&q8[4 * h + k]));
                                    *s = madd_acc(*s, sc, p16);
                                }
                                if PIN {
                                pin(&mut sumi);
                            }
                            }
                        }
                        let scales_16 = _mm256_cvtepi8_epi16(scales);
                        for ((a, s), y) in acc.iter_mut().zip(sumi).zip(&ys) {
                            let offsets = _mm256_madd_epi16(load256(&y.bsums), scales_16);
                            let q8sclsub = _mm256_slli_epi32::<5>(offsets);
                            let s = _mm256_sub_epi32(s, q8sclsub);
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(y.d * dw), _mm256_cvtepi32_ps(s), *a);
                        }
                    }
                    let mut out = [0f32; R];
                    for (o, a) in out.iter_mut().zip(acc) {
                        *o = hsum_f32x8(a);
                    }
                    out
                }
            }
        };
    }

    kernels!(
        /// AVX2 + FMA + F16C: `vpmaddwd` then `vpaddd`.
        avx2,
        "avx2,fma,f16c",
        pin: true,
        |acc, a, b| _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    );

    kernels!(
        /// AVX-512 VNNI on 256-bit vectors: `vpdpwssd` (EVEX, which also gives the register allocator 32
        /// vector registers).
        avx512vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        pin: false,
        |acc, a, b| _mm256_dpwssd_epi32(acc, a, b)
    );

    kernels!(
        /// AVX-VNNI: `vpdpwssd` (VEX).
        avxvnni,
        "avx2,fma,f16c,avxvnni",
        pin: true,
        |acc, a, b| _mm256_dpwssd_avx_epi32(acc, a, b)
    );

    pub(super) use crate::cpu::x86::{Level, best};

    /// Q4_K / Q5_K kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU ([`Level::supported`]).
    pub(super) unsafe fn dot_k4<B: K4Block, const R: usize>(
        level: Level,
        w: &[B],
        x: [&[BlockQ8K]; R],
    ) -> [f32; R] {
        match level {
            // SAFETY: the caller guarantees AVX2, FMA and F16C.
            Level::Avx2 => unsafe { avx2::dot_k4(w, x) },
            // SAFETY: the caller guarantees AVX2, FMA, F16C and AVX-VNNI.
            Level::AvxVnni => unsafe { avxvnni::dot_k4(w, x) },
            // SAFETY: the caller guarantees AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
            Level::Avx512Vnni => unsafe { avx512vnni::dot_k4(w, x) },
        }
    }

    /// Q6_K kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU ([`Level::supported`]).
    pub(super) unsafe fn dot_q6k<const R: usize>(
        level: Level,
        w: &[BlockQ6K],
        x: [&[BlockQ8K]; R],
    ) -> [f32; R] {
        match level {
            // SAFETY: the caller guarantees AVX2, FMA and F16C.
            Level::Avx2 => unsafe { avx2::dot_q6k(w, x) },
            // SAFETY: the caller guarantees AVX2, FMA, F16C and AVX-VNNI.
            Level::AvxVnni => unsafe { avxvnni::dot_q6k(w, x) },
            // SAFETY: the caller guarantees AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI.
            Level::Avx512Vnni => unsafe { avx512vnni::dot_q6k(w, x) },
        }
    }
}

/// aarch64 kernels, mirroring the `__ARM_NEON` branches of `ggml_vec_dot_q{4,5,6}_K_q8_K` in
/// `ggml-cpu/arch/arm/quants.c`: levels (all below 64, so valid as signed bytes) times activations with
/// `sdot` where the CPU has the dot-product extension (otherwise widening multiplies and pairwise adds, as
/// ggml's `ggml_vdotq_s32` fallback), integer sums per sub-block weighted by the scales, the Q4_K / Q5_K mins
/// and the Q6_K offset through the Q8_K `bsums`, and one scalar f32 update per super-block.
///
/// As on x86, each kernel takes `R` activation rows and unpacks a weight super-block once for all of them,
/// with each row's arithmetic that of the one-row kernel.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use core::arch::aarch64::*;

    use super::{K4Block, unpack_scales_mins};
    use crate::blocks::{BlockQ6K, BlockQ8K};
    use crate::cpu::arm::sdot as dot_sdot;

    /// Loads 16 bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn ld_u8(src: &[u8; 16]) -> uint8x16_t {
        // SAFETY: `src` is 16 readable bytes; `vld1q_u8` has no alignment requirement beyond the element's.
        unsafe { vld1q_u8(src.as_ptr()) }
    }

    /// Loads 16 signed bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn ld_s8(src: &[i8; 16]) -> int8x16_t {
        // SAFETY: `src` is 16 readable bytes; `vld1q_s8` has no alignment requirement beyond the element's.
        unsafe { vld1q_s8(src.as_ptr()) }
    }

    /// Loads 8 i16.
    #[inline]
    #[target_feature(enable = "neon")]
    fn ld_s16(src: &[i16; 8]) -> int16x8_t {
        // SAFETY: `src` is 8 readable, 2-byte aligned i16.
        unsafe { vld1q_s16(src.as_ptr()) }
    }

    /// The same total as [`dot_sdot`] with base NEON: widening multiplies, then pairwise adds (the lanes hold
    /// other partial sums; only their total is used).
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot_mull(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let p1 = vmull_high_s8(a, b);
        vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)))
    }

    /// Sum of `y`'s levels per 32 values (8 lanes).
    #[inline]
    #[target_feature(enable = "neon")]
    fn bsums_32(y: &BlockQ8K) -> int16x8_t {
        let b = y.bsums.as_chunks::<8>().0;
        vpaddq_s16(ld_s16(&b[0]), ld_s16(&b[1]))
    }

    /// `Σ a·b` over 8 i16 lanes, in i32.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot_i16x8(a: int16x8_t, b: int16x8_t) -> i32 {
        vaddvq_s32(vaddq_s32(
            vmull_s16(vget_low_s16(a), vget_low_s16(b)),
            vmull_high_s16(a, b),
        ))
    }

    /// The kernels, compiled once per feature set; `$dot` is [`dot_sdot`] or [`dot_mull`].
    macro_rules! kernels {
        ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
            $(#[$doc])*
            pub(super) mod $name {
                use super::*;

                /// Q4_K / Q5_K against `R` rows (`ggml_vec_dot_q4_K_q8_K`, `ggml_vec_dot_q5_K_q8_K`).
                ///
                /// # Panics
                /// If a row's block count differs from `w`'s.
                #[target_feature(enable = $features)]
                pub(in crate::kquants) fn dot_k4<B: K4Block, const R: usize>(
                    w: &[B],
                    x: [&[BlockQ8K]; R],
                ) -> [f32; R] {
                    for xr in &x {
                        assert_eq!(xr.len(), w.len(), "k-quant vec_dot: block counts differ");
                    }
                    let m4b = vdupq_n_u8(0x0F);
                    let mut sumf = [0f32; R];
                    for (i, b) in w.iter().enumerate() {
                        let ys: [&BlockQ8K; R] = core::array::from_fn(|r| &x[r][i]);
                        let (d, dmin) = b.d_dmin();
                        let (dw, dminw) = (d.to_f32(), dmin.to_f32());
                        let sm = unpack_scales_mins(b.packed_scales());
                        let mins = vreinterpretq_s16_u16(vmovl_u8(ld_u8x8(&sm.as_chunks::<8>().0[1])));
                        let qs = b.qs().as_chunks::<16>().0;
                        let qh = b.qh().map(|qh| {
                            let h = qh.as_chunks::<16>().0;
                            [ld_u8(&h[0]), ld_u8(&h[1])]
                        });
                        let mut acc = [vdupq_n_s32(0); R];
                        for j in 0..4 {
                            let bits = [ld_u8(&qs[2 * j]), ld_u8(&qs[2 * j + 1])];
                            let mut lo = bits.map(|v| vandq_u8(v, m4b));
                            let mut hi = bits.map(|v| vshrq_n_u8::<4>(v));
                            if let Some(qh) = qh {
                                // Bits `2j` and `2j + 1` of each `qh` byte, moved to bit 4.
                                let shift = vdupq_n_s8(-2 * j as i8);
                                for k in 0..2 {
                                    let h = vshlq_u8(qh[k], shift);
                                    lo[k] = vorrq_u8(lo[k], vshlq_n_u8::<4>(vandq_u8(h, vdupq_n_u8(1))));
                                    hi[k] = vorrq_u8(hi[k], vshlq_n_u8::<3>(vandq_u8(h, vdupq_n_u8(2))));
                                }
                            }
                            let (sl, sh) = (i32::from(sm[2 * j]), i32::from(sm[2 * j + 1]));
                            let lo = lo.map(|v| vreinterpretq_s8_u8(v));
                            let hi = hi.map(|v| vreinterpretq_s8_u8(v));
                            for (a, y) in acc.iter_mut().zip(&ys) {
                                let q8 = y.qs.as_chunks::<16>().0;
                                let zero = vdupq_n_s32(0);
                                let q8 = &q8[4 * j..4 * j + 4];
                                let p1 = $dot($dot(zero, lo[0], ld_s8(&q8[0])), lo[1], ld_s8(&q8[1]));
                                let p2 = $dot($dot(zero, hi[0], ld_s8(&q8[2])), hi[1], ld_s8(&q8[3]));
                                *a = vmlaq_n_s32(vmlaq_n_s32(*a, p1, sl), p2, sh);
                            }
                        }
                        for ((s, a), y) in sumf.iter_mut().zip(acc).zip(&ys) {
                            let sumi_mins = dot_i16x8(bsums_32(y), mins);
                            *s += y.d * dw * vaddvq_s32(a) as f32 - y.d * dminw * sumi_mins as f32;
                        }
                    }
                    sumf
                }

                /// Q6_K against `R` rows (`ggml_vec_dot_q6_K_q8_K`): unsigned levels `q ∈ 0..64`, the `−32`
                /// offset through the Q8_K `bsums`.
                ///
                /// # Panics
                /// If a row's block count differs from `w`'s.
                #[target_feature(enable = $features)]
                pub(in crate::kquants) fn dot_q6k<const R: usize>(
                    w: &[BlockQ6K],
                    x: [&[BlockQ8K]; R],
                ) -> [f32; R] {
                    for xr in &x {
                        assert_eq!(xr.len(), w.len(), "q6_K vec_dot: block counts differ");
                    }
                    let m4b = vdupq_n_u8(0x0F);
                    let m3 = vdupq_n_u8(3);
                    let mut sumf = [0f32; R];
                    for (i, b) in w.iter().enumerate() {
                        let ys: [&BlockQ8K; R] = core::array::from_fn(|r| &x[r][i]);
                        let d_all = b.d.to_f32();
                        let scales = ld_s8(&b.scales);
                        let scales16 = [vmovl_s8(vget_low_s8(scales)), vmovl_high_s8(scales)];
                        let ql = b.ql.as_chunks::<16>().0;
                        let qh = b.qh.as_chunks::<16>().0;
                        let mut acc = [vdupq_n_s32(0); R];
                        for h in 0..2 {
                            let hb = [ld_u8(&qh[2 * h]), ld_u8(&qh[2 * h + 1])];
                            let bits: [uint8x16_t; 4] = core::array::from_fn(|k| ld_u8(&ql[4 * h + k]));
                            // Values `128h + 16k ..+ 16`: low nibbles with `qh` bits 0-1 (k = 0, 1) and 2-3
                            // (k = 2, 3), then high nibbles with bits 4-5 and 6-7.
                            let high = |k: usize, shift: i8| {
                                vshlq_n_u8::<4>(vandq_u8(vshlq_u8(hb[k % 2], vdupq_n_s8(-shift)), m3))
                            };
                            let lv: [uint8x16_t; 8] = core::array::from_fn(|g| {
                                let k = g % 4;
                                if g < 4 {
                                    vorrq_u8(vandq_u8(bits[k], m4b), high(k, if k < 2 { 0 } else { 2 }))
                                } else {
                                    vorrq_u8(vshrq_n_u8::<4>(bits[k]), high(k, if k < 2 { 4 } else { 6 }))
                                }
                            });
                            for (a, y) in acc.iter_mut().zip(&ys) {
                                let q8 = y.qs.as_chunks::<16>().0;
                                for (g, &l) in lv.iter().enumerate() {
                                    let l = vreinterpretq_s8_u8(l);
                                    let p = $dot(vdupq_n_s32(0), l, ld_s8(&q8[8 * h + g]));
                                    *a = vmlaq_n_s32(*a, p, i32::from(b.scales[8 * h + g]));
                                }
                            }
                        }
                        for ((s, a), y) in sumf.iter_mut().zip(acc).zip(&ys) {
                            let q8sums = y.bsums.as_chunks::<8>().0;
                            let isum_mins = dot_i16x8(ld_s16(&q8sums[0]), scales16[0])
                                + dot_i16x8(ld_s16(&q8sums[1]), scales16[1]);
                            *s += d_all * y.d * (vaddvq_s32(a) - 32 * isum_mins) as f32;
                        }
                    }
                    sumf
                }
            }
        };
    }

    /// Loads 8 bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    fn ld_u8x8(src: &[u8; 8]) -> uint8x8_t {
        // SAFETY: `src` is 8 readable bytes; `vld1_u8` has no alignment requirement beyond the element's.
        unsafe { vld1_u8(src.as_ptr()) }
    }

    kernels!(
        /// Base NEON.
        base,
        "neon",
        dot_mull
    );

    kernels!(
        /// NEON with the dot-product extension.
        dotprod,
        "neon,dotprod",
        dot_sdot
    );

    pub(super) use crate::cpu::arm::{Level, best};

    /// Q4_K / Q5_K kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU (`Level::supported`).
    pub(super) unsafe fn dot_k4<B: K4Block, const R: usize>(
        level: Level,
        w: &[B],
        x: [&[BlockQ8K]; R],
    ) -> [f32; R] {
        match level {
            // SAFETY: NEON is enabled for the whole build (this module's `cfg`).
            Level::Neon => unsafe { base::dot_k4(w, x) },
            // SAFETY: the caller guarantees the dot-product extension.
            Level::DotProd => unsafe { dotprod::dot_k4(w, x) },
        }
    }

    /// Q6_K kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU (`Level::supported`).
    pub(super) unsafe fn dot_q6k<const R: usize>(
        level: Level,
        w: &[BlockQ6K],
        x: [&[BlockQ8K]; R],
    ) -> [f32; R] {
        match level {
            // SAFETY: NEON is enabled for the whole build (this module's `cfg`).
            Level::Neon => unsafe { base::dot_q6k(w, x) },
            // SAFETY: the caller guarantees the dot-product extension.
            Level::DotProd => unsafe { dotprod::dot_q6k(w, x) },
        }
    }
}

/// The SIMD kernels of this target.
#[cfg(target_arch = "x86_64")]
use x86 as simd;

/// The SIMD kernels of this target.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
use neon as simd;

/// Implements [`WeightBlock`] for a k-quant type: the scalar reference, and the SIMD kernel of the best level
/// the CPU has (one row, or four rows sharing each unpacked weight super-block).
macro_rules! impl_kquant {
    ($block:ty, $ty:ident, $reference:ident, $simd:ident, $ggml:literal) => {
        #[doc = concat!("`", stringify!($ty), "` weights against Q8_K activations (`", $ggml, "`).")]
        impl WeightBlock for $block {
            const TYPE: GgmlType = GgmlType::$ty;
            const QK: usize = QK_K;
            type Act = BlockQ8K;

            fn vec_dot_ref(w: &[Self], x: &[BlockQ8K]) -> f32 {
                $reference(w, x)
            }

            fn vec_dot(w: &[Self], x: &[BlockQ8K]) -> f32 {
                #[cfg(any(
                    target_arch = "x86_64",
                    all(target_arch = "aarch64", target_feature = "neon")
                ))]
                if let Some(level) = simd::best() {
                    // SAFETY: `best` returns only levels this CPU supports.
                    let [s] = unsafe { simd::$simd(level, w, [x]) };
                    return s;
                }
                $reference(w, x)
            }

            fn vec_dot_x4(w: &[Self], x: [&[BlockQ8K]; 4]) -> [f32; 4] {
                #[cfg(any(
                    target_arch = "x86_64",
                    all(target_arch = "aarch64", target_feature = "neon")
                ))]
                if let Some(level) = simd::best() {
                    // SAFETY: `best` returns only levels this CPU supports.
                    return unsafe { simd::$simd(level, w, x) };
                }
                x.map(|xi| $reference(w, xi))
            }
        }
    };
}

impl_kquant!(BlockQ4K, Q4_K, dot_q4k_ref, dot_k4, "ggml_vec_dot_q4_K_q8_K");
impl_kquant!(BlockQ5K, Q5_K, dot_q5k_ref, dot_k4, "ggml_vec_dot_q5_K_q8_K");
impl_kquant!(BlockQ6K, Q6_K, dot_q6k_ref, dot_q6k, "ggml_vec_dot_q6_K_q8_K");

#[cfg(test)]
mod tests {
    use bytemuck::Zeroable;
    use half::f16;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::q8::quantize_row_q8_k;

    /// Super-block counts tested: tiny rows, 2048 and 11008 values.
    const ROW_BLOCKS: [usize; 5] = [1, 2, 3, 8, 43];
    /// Reference vs the f64 dot of the dequantized values, relative to `Σ|terms|` (observed: below 1.5e-7).
    const REF_TOL: f64 = 2e-6;
    /// SIMD vs reference, relative to `Σ|terms|`: both sums are exact in integers, so only the order of the
    /// f32 operations differs (observed: below 1.5e-7).
    const SIMD_TOL: f64 = 2e-6;

    /// A weight type under test.
    trait TestBlock: WeightBlock<Act = BlockQ8K> {
        /// Sub-block min offsets (`dmin·m`, per 32 values; none for Q6_K), used only to size tolerances.
        fn min_offsets(&self) -> [f32; 8];
        /// Sets the f16 super-block scale(s).
        fn set_scales(&mut self, d: f16, dmin: f16);
        /// The SIMD kernel of every level this CPU supports, called directly: `(level, result)`.
        fn simd<const R: usize>(w: &[Self], x: [&[BlockQ8K]; R]) -> Vec<(String, [f32; R])>;
    }

    macro_rules! test_block {
        ($block:ty, $simd:ident, |$b:ident| $offsets:expr, |$w:ident, $d:ident, $dmin:ident| $set:expr) => {
            impl TestBlock for $block {
                fn min_offsets(&self) -> [f32; 8] {
                    let $b = self;
                    $offsets
                }
                fn set_scales(&mut self, $d: f16, $dmin: f16) {
                    let $w = self;
                    $set
                }
                fn simd<const R: usize>(w: &[Self], x: [&[BlockQ8K]; R]) -> Vec<(String, [f32; R])> {
                    #[cfg(any(
                        target_arch = "x86_64",
                        all(target_arch = "aarch64", target_feature = "neon")
                    ))]
                    return supported_levels()
                        .into_iter()
                        // SAFETY: `supported_levels` returns only levels this CPU supports.
                        .map(|l| (format!("{l:?}"), unsafe { simd::$simd(l, w, x) }))
                        .collect();
                    #[cfg(not(any(
                        target_arch = "x86_64",
                        all(target_arch = "aarch64", target_feature = "neon")
                    )))]
                    {
                        let _ = (w, x);
                        Vec::new()
                    }
                }
            }
        };
    }

    /// Every x86 level this CPU supports.
    #[cfg(target_arch = "x86_64")]
    fn supported_levels() -> Vec<x86::Level> {
        use x86::Level;
        [Level::Avx2, Level::AvxVnni, Level::Avx512Vnni]
            .into_iter()
            .filter(|l| l.supported())
            .collect()
    }

    /// Every aarch64 level this CPU supports.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    fn supported_levels() -> Vec<neon::Level> {
        use neon::Level;
        [Level::Neon, Level::DotProd]
            .into_iter()
            .filter(|l| l.supported())
            .collect()
    }

    fn k4_offsets(dmin: f16, packed: &[u8; 12]) -> [f32; 8] {
        let sm = unpack_scales_mins(packed);
        core::array::from_fn(|j| dmin.to_f32() * f32::from(sm[8 + j]))
    }

    test_block!(
        BlockQ4K,
        dot_k4,
        |b| k4_offsets(b.dmin, &b.scales),
        |w, d, dmin| {
            w.d = d;
            w.dmin = dmin;
        }
    );
    test_block!(
        BlockQ5K,
        dot_k4,
        |b| k4_offsets(b.dmin, &b.scales),
        |w, d, dmin| {
            w.d = d;
            w.dmin = dmin;
        }
    );
    test_block!(BlockQ6K, dot_q6k, |_b| [0.0; 8], |w, d, dmin| {
        let _ = dmin;
        w.d = d;
    });

    /// Random f32 values with a per-row shape: centred, offset (exercises the mins), or heavy-tailed.
    fn random_values(rng: &mut StdRng, n: usize) -> Vec<f32> {
        let shape = rng.random_range(0..3);
        (0..n)
            .map(|_| {
                let u: f32 = rng.random_range(-1.0..1.0);
                match shape {
                    0 => u,
                    1 => 0.7 + 0.5 * u,
                    _ if rng.random_bool(0.02) => 8.0 * u,
                    _ => u * u * u,
                }
            })
            .collect()
    }

    /// A weight row of `nb` super-blocks and its dequantized values (silica-quant's port of ggml's
    /// `dequantize_row_*`). Quantized from random floats (ggml's own bytes), or (`raw`) random bytes with
    /// sane f16 scales, which reach every bit pattern of levels and packed scales.
    fn weight_row<B: TestBlock>(rng: &mut StdRng, nb: usize, raw: bool) -> (Vec<B>, Vec<f32>) {
        let mut blocks = vec![B::zeroed(); nb];
        if raw {
            rng.fill(bytemuck::cast_slice_mut::<B, u8>(&mut blocks));
            for b in &mut blocks {
                let d = f16::from_f32(rng.random_range(-0.05..0.05));
                let dmin = f16::from_f32(rng.random_range(-0.05..0.05));
                b.set_scales(d, dmin);
            }
        } else {
            let values = random_values(rng, nb * QK_K);
            silica_quant::quantize_row(B::TYPE, &values, bytemuck::cast_slice_mut(&mut blocks))
                .expect("quantize weights");
        }
        let mut deq = vec![0f32; nb * QK_K];
        silica_quant::dequantize_row(B::TYPE, bytemuck::cast_slice(&blocks), &mut deq)
            .expect("dequantize weights");
        (blocks, deq)
    }

    /// A Q8_K activation row of `nb` super-blocks and its dequantized values: quantized from random floats
    /// (sometimes with an all-zero block), or (`raw`) random levels over the whole i8 range with their
    /// `bsums`.
    fn act_row(rng: &mut StdRng, nb: usize, raw: bool) -> (Vec<BlockQ8K>, Vec<f32>) {
        let mut blocks = vec![BlockQ8K::zeroed(); nb];
        if raw {
            for b in &mut blocks {
                rng.fill(bytemuck::cast_slice_mut::<i8, u8>(&mut b.qs));
                for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                    *s = g.iter().map(|&q| i16::from(q)).sum();
                }
                b.d = rng.random_range(0.001..0.1);
            }
        } else {
            let mut values = random_values(rng, nb * QK_K);
            if nb > 1 && rng.random_bool(0.3) {
                let z = rng.random_range(0..nb);
                values[z * QK_K..(z + 1) * QK_K].fill(0.0);
            }
            quantize_row_q8_k(&values, &mut blocks);
        }
        let deq = blocks
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d * f32::from(q)))
            .collect();
        (blocks, deq)
    }

    /// `Σ|terms|` of a dot product, `Σ (|w_i| + |min offset of i|)·|x_i|`: the scale of its rounding errors.
    fn magnitude<B: TestBlock>(w: &[B], wd: &[f32], xd: &[f32]) -> f64 {
        let offsets = w
            .iter()
            .flat_map(|b| b.min_offsets().into_iter().flat_map(|m| [m; 32]));
        wd.iter()
            .zip(xd)
            .zip(offsets)
            .map(|((&a, &b), m)| (f64::from(a.abs()) + f64::from(m.abs())) * f64::from(b.abs()))
            .sum()
    }

    #[track_caller]
    fn assert_close(what: &str, got: f32, want: f64, mag: f64, rel: f64) {
        let err = (f64::from(got) - want).abs();
        assert!(
            err <= rel * mag + f64::from(f32::MIN_POSITIVE),
            "{what}: got {got}, want {want}, error {err:e} > {rel:e} · {mag:e}"
        );
    }

    /// One weight row and four activation rows (dequantized too), all of `nb` super-blocks.
    struct Case<B> {
        w: Vec<B>,
        wd: Vec<f32>,
        x: [(Vec<BlockQ8K>, Vec<f32>); 4],
    }

    impl<B: TestBlock> Case<B> {
        fn new(rng: &mut StdRng, nb: usize, raw: bool) -> Self {
            let (w, wd) = weight_row::<B>(rng, nb, raw);
            let x = core::array::from_fn(|_| act_row(rng, nb, raw));
            Case { w, wd, x }
        }

        fn rows(&self) -> [&[BlockQ8K]; 4] {
            core::array::from_fn(|r| self.x[r].0.as_slice())
        }

        fn mag(&self, r: usize) -> f64 {
            magnitude(&self.w, &self.wd, &self.x[r].1)
        }

        /// Every path against the reference (and the reference against f64 on dequantized values).
        fn check(&self, label: &str) {
            let rows = self.rows();
            let name = |what: &str, r: usize| format!("{:?} {what}, {label}, row {r}", B::TYPE);
            let reference = rows.map(|x| B::vec_dot_ref(&self.w, x));
            let x4 = B::vec_dot_x4(&self.w, rows);
            let simd4 = B::simd(&self.w, rows);
            assert_eq!(simd4.len(), B::simd(&self.w, [rows[0]]).len());
            for r in 0..4 {
                let (mag, want) = (self.mag(r), f64::from(reference[r]));
                let xd = &self.x[r].1;
                let exact: f64 = self
                    .wd
                    .iter()
                    .zip(xd)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                assert_close(&name("reference vs f64", r), reference[r], exact, mag, REF_TOL);
                let one = B::vec_dot(&self.w, rows[r]);
                assert_close(&name("vec_dot", r), one, want, mag, SIMD_TOL);
                assert_close(
                    &name("vec_dot_x4 vs vec_dot", r),
                    x4[r],
                    f64::from(one),
                    mag,
                    SIMD_TOL,
                );
                for ((level, [simd1]), (_, simd4)) in B::simd(&self.w, [rows[r]]).into_iter().zip(&simd4) {
                    assert_close(&name(&format!("{level} x1"), r), simd1, want, mag, SIMD_TOL);
                    // The four-row kernel runs the one-row arithmetic per row.
                    assert_eq!(
                        simd4[r].to_bits(),
                        simd1.to_bits(),
                        "{}",
                        name(&format!("{level} x4"), r)
                    );
                }
            }
        }
    }

    fn check_type<B: TestBlock>(seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        for nb in ROW_BLOCKS {
            for raw in [false, true] {
                for _ in 0..3 {
                    Case::<B>::new(&mut rng, nb, raw).check(&format!("{nb} blocks, raw {raw}"));
                }
            }
        }
    }

    #[test]
    fn q4_k_all_paths_match_reference_and_reference_matches_f64() {
        check_type::<BlockQ4K>(0x5eed_0004);
    }

    #[test]
    fn q5_k_all_paths_match_reference_and_reference_matches_f64() {
        check_type::<BlockQ5K>(0x5eed_0005);
    }

    #[test]
    fn q6_k_all_paths_match_reference_and_reference_matches_f64() {
        check_type::<BlockQ6K>(0x5eed_0006);
    }

    /// Says which SIMD levels the checks above exercise on this CPU, and that the dispatcher picks the best.
    #[test]
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
    fn simd_levels_tested_and_dispatch_picks_the_best() {
        let levels = supported_levels();
        eprintln!("SIMD levels tested against the reference: {levels:?}");
        assert_eq!(simd::best(), levels.last().copied());
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            assert_eq!(levels.contains(&x86::Level::Avx2), avx2);
        }
        let mut rng = StdRng::seed_from_u64(7);
        let c = Case::<BlockQ4K>::new(&mut rng, 2, false);
        assert_eq!(BlockQ4K::simd(&c.w, c.rows()).len(), levels.len());
    }

    /// Extreme blocks: every level and packed scale at its maximum, activations at ±127 / −128.
    #[test]
    fn saturated_blocks_match_reference() {
        fn check<B: TestBlock>() {
            let mut rng = StdRng::seed_from_u64(11);
            let mut w = vec![B::zeroed(); 3];
            bytemuck::cast_slice_mut::<B, u8>(&mut w).fill(0xFF);
            for b in &mut w {
                b.set_scales(f16::from_f32(0.03), f16::from_f32(-0.02));
            }
            let mut x = vec![BlockQ8K::zeroed(); 3];
            for (k, b) in x.iter_mut().enumerate() {
                for (j, q) in b.qs.iter_mut().enumerate() {
                    *q = match k {
                        0 => 127,
                        1 => -128,
                        _ => [127, -128][(j + rng.random_range(0..2)) % 2],
                    };
                }
                for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                    *s = g.iter().map(|&q| i16::from(q)).sum();
                }
                b.d = 0.01;
            }
            let mut wd = vec![0f32; 3 * QK_K];
            silica_quant::dequantize_row(B::TYPE, bytemuck::cast_slice(&w), &mut wd).expect("dequantize");
            let xd: Vec<f32> = x
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&q| b.d * f32::from(q)))
                .collect();
            let c = Case {
                w,
                wd,
                x: core::array::from_fn(|_| (x.clone(), xd.clone())),
            };
            c.check("saturated");
        }
        check::<BlockQ4K>();
        check::<BlockQ5K>();
        check::<BlockQ6K>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_rows_match_reference(seed in any::<u64>(), nb in 1usize..12, raw in any::<bool>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let label = format!("{nb} blocks, seed {seed}, raw {raw}");
            Case::<BlockQ4K>::new(&mut rng, nb, raw).check(&label);
            Case::<BlockQ5K>::new(&mut rng, nb, raw).check(&label);
            Case::<BlockQ6K>::new(&mut rng, nb, raw).check(&label);
        }
    }
}
