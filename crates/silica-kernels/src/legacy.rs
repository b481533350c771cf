//! Kernels for the legacy 32-value blocks: `Q4_0`, `Q5_0` and `Q8_0` weights against `Q8_0` activations,
//! `Q4_1` weights against `Q8_1` activations.
//!
//! Each type has a scalar reference (ggml's `ggml_vec_dot_*_generic` in `ggml-cpu/quants.c`: an exact integer
//! sum of level products per block, scaled in f32 by `d_w·d_x`) and SIMD paths picked at run time:
//! AVX2 + FMA (the structure of ggml's AVX2 kernels in `ggml-cpu/arch/x86/quants.c`), AVX-512 VNNI /
//! AVX-VNNI (`vpdpbusd` instead of `vpmaddubsw` + `vpmaddwd`), and on aarch64 NEON (`sdot` where the CPU has
//! the dot-product extension, as ggml's `ggml_vdotq_s32`). Other architectures use the reference.
//!
//! [`WeightBlock::vec_dot_x4`] (prefill) unpacks each weight block once for four activation rows.

#![allow(unsafe_code)]

use silica_gguf::GgmlType;

use crate::WeightBlock;
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1, QK};

/// Integer dot product of one `Q4_0` block's levels (`nibble − 8`) with one `Q8_0` block's levels.
fn isum_q4_0(w: &BlockQ4_0, x: &BlockQ8_0) -> i32 {
    let (mut lo, mut hi) = (0i32, 0i32);
    for j in 0..QK / 2 {
        lo += (i32::from(w.qs[j] & 0x0F) - 8) * i32::from(x.qs[j]);
        hi += (i32::from(w.qs[j] >> 4) - 8) * i32::from(x.qs[j + QK / 2]);
    }
    lo + hi
}

/// Integer dot product of one `Q4_1` block's levels (the bare nibbles) with one `Q8_1` block's levels.
fn isum_q4_1(w: &BlockQ4_1, x: &BlockQ8_1) -> i32 {
    let (mut lo, mut hi) = (0i32, 0i32);
    for j in 0..QK / 2 {
        lo += i32::from(w.qs[j] & 0x0F) * i32::from(x.qs[j]);
        hi += i32::from(w.qs[j] >> 4) * i32::from(x.qs[j + QK / 2]);
    }
    lo + hi
}

/// Integer dot product of one `Q5_0` block's levels (`(nibble | fifth bit << 4) − 16`) with one `Q8_0`
/// block's levels.
fn isum_q5_0(w: &BlockQ5_0, x: &BlockQ8_0) -> i32 {
    let qh = u32::from_le_bytes(w.qh);
    let (mut lo, mut hi) = (0i32, 0i32);
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        let v0 = (u32::from(w.qs[j] & 0x0F) | h0) as i32 - 16;
        let v1 = (u32::from(w.qs[j] >> 4) | h1) as i32 - 16;
        lo += v0 * i32::from(x.qs[j]);
        hi += v1 * i32::from(x.qs[j + QK / 2]);
    }
    lo + hi
}

/// Integer dot product of two `Q8_0` blocks' levels.
fn isum_q8_0(w: &BlockQ8_0, x: &BlockQ8_0) -> i32 {
    w.qs.iter()
        .zip(&x.qs)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

/// The runtime-dispatched fast paths, the same for every legacy type (see the [module docs](self)); each falls
/// back to the reference without SIMD.
macro_rules! simd_dispatch {
    () => {
        fn vec_dot(w: &[Self], x: &[Self::Act]) -> f32 {
            dispatch(w, x)
        }

        fn vec_dot_x4(w: &[Self], x: [&[Self::Act]; 4]) -> [f32; 4] {
            dispatch_x4(w, x)
        }

        fn vec_dot_4x4(w: [&[Self]; 4], x: [&[Self::Act]; 4]) -> [[f32; 4]; 4] {
            dispatch_4x4(w, x)
        }
    };
}

impl WeightBlock for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const QK: usize = QK;
    type Act = BlockQ8_0;

    /// Mirrors `ggml_vec_dot_q4_0_q8_0_generic`.
    fn vec_dot_ref(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), x.len(), "vec_dot q4_0: block counts");
        let mut sum = 0f32;
        for (wb, xb) in w.iter().zip(x) {
            sum += isum_q4_0(wb, xb) as f32 * (wb.d.to_f32() * xb.d.to_f32());
        }
        sum
    }

    simd_dispatch!();
}

impl WeightBlock for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const QK: usize = QK;
    type Act = BlockQ8_1;

    /// Mirrors `ggml_vec_dot_q4_1_q8_1_generic`: `Σ sumi·d_w·d_x + m_w·s_x`.
    fn vec_dot_ref(w: &[Self], x: &[BlockQ8_1]) -> f32 {
        assert_eq!(w.len(), x.len(), "vec_dot q4_1: block counts");
        let mut sum = 0f32;
        for (wb, xb) in w.iter().zip(x) {
            sum += isum_q4_1(wb, xb) as f32 * (wb.d.to_f32() * xb.d.to_f32()) + wb.m.to_f32() * xb.s.to_f32();
        }
        sum
    }

    simd_dispatch!();
}

impl WeightBlock for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const QK: usize = QK;
    type Act = BlockQ8_0;

    /// Mirrors `ggml_vec_dot_q5_0_q8_0_generic`.
    fn vec_dot_ref(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), x.len(), "vec_dot q5_0: block counts");
        let mut sum = 0f32;
        for (wb, xb) in w.iter().zip(x) {
            sum += isum_q5_0(wb, xb) as f32 * (wb.d.to_f32() * xb.d.to_f32());
        }
        sum
    }

    simd_dispatch!();
}

impl WeightBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const QK: usize = QK;
    type Act = BlockQ8_0;

    /// Mirrors `ggml_vec_dot_q8_0_q8_0_generic`.
    fn vec_dot_ref(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), x.len(), "vec_dot q8_0: block counts");
        let mut sum = 0f32;
        for (wb, xb) in w.iter().zip(x) {
            sum += isum_q8_0(wb, xb) as f32 * (wb.d.to_f32() * xb.d.to_f32());
        }
        sum
    }

    simd_dispatch!();
}

/// Accessors the SIMD kernels need from an activation block (`Q8_0` or `Q8_1`).
trait LegacyAct: Copy {
    /// The 32 levels.
    fn levels(&self) -> &[i8; QK];
    /// Bits of the f16 scale `d`.
    fn d_bits(&self) -> u16;
    /// Bits of the f16 sum `s` (`Q8_1`; 0 for `Q8_0`).
    fn s_bits(&self) -> u16;
}

impl LegacyAct for BlockQ8_0 {
    fn levels(&self) -> &[i8; QK] {
        &self.qs
    }
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn s_bits(&self) -> u16 {
        0
    }
}

impl LegacyAct for BlockQ8_1 {
    fn levels(&self) -> &[i8; QK] {
        &self.qs
    }
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn s_bits(&self) -> u16 {
        self.s.to_bits()
    }
}

/// How this architecture's SIMD kernels unpack a weight block.
#[cfg(target_arch = "x86_64")]
use x86::Unpack as ArchUnpack;

/// How this architecture's SIMD kernels unpack a weight block.
#[cfg(target_arch = "aarch64")]
use neon::Unpack as ArchUnpack;

/// No SIMD kernels on this architecture: nothing to unpack.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
trait ArchUnpack {}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
impl<T> ArchUnpack for T {}

/// What the SIMD kernels need to know about a legacy weight block.
trait LegacyWeight: WeightBlock<Act: LegacyAct> + ArchUnpack {
    /// Whether the block has an offset `m` whose product with the activation block's `s` is added (`Q4_1`).
    const HAS_MIN: bool;
    /// Bits of the f16 scale `d`.
    fn d_bits(&self) -> u16;
    /// Bits of the f16 offset `m` (0 without one).
    fn m_bits(&self) -> u16;
}

impl LegacyWeight for BlockQ4_0 {
    const HAS_MIN: bool = false;
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn m_bits(&self) -> u16 {
        0
    }
}

impl LegacyWeight for BlockQ4_1 {
    const HAS_MIN: bool = true;
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn m_bits(&self) -> u16 {
        self.m.to_bits()
    }
}

impl LegacyWeight for BlockQ5_0 {
    const HAS_MIN: bool = false;
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn m_bits(&self) -> u16 {
        0
    }
}

impl LegacyWeight for BlockQ8_0 {
    const HAS_MIN: bool = false;
    fn d_bits(&self) -> u16 {
        self.d.to_bits()
    }
    fn m_bits(&self) -> u16 {
        0
    }
}

/// `vec_dot` on the fastest path this CPU has.
fn dispatch<W: LegacyWeight>(w: &[W], x: &[W::Act]) -> f32 {
    assert_eq!(w.len(), x.len(), "vec_dot: block counts");
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = x86::vec_dot(w, x) {
        return v;
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(v) = neon::vec_dot(w, x) {
        return v;
    }
    W::vec_dot_ref(w, x)
}

/// `vec_dot_x4` on the fastest path this CPU has.
fn dispatch_4x4<W: LegacyWeight>(w: [&[W]; 4], x: [&[W::Act]; 4]) -> [[f32; 4]; 4] {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = x86::vec_dot_4x4(w, x) {
        return v;
    }
    w.map(|wr| dispatch_x4(wr, x))
}

fn dispatch_x4<W: LegacyWeight>(w: &[W], x: [&[W::Act]; 4]) -> [f32; 4] {
    for xi in x {
        assert_eq!(w.len(), xi.len(), "vec_dot_x4: block counts");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = x86::vec_dot_x4(w, x) {
        return v;
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(v) = neon::vec_dot_x4(w, x) {
        return v;
    }
    x.map(|xi| W::vec_dot_ref(w, xi))
}

/// x86-64 kernels: AVX2 + FMA, AVX-512 VNNI and AVX-VNNI, all on 256-bit vectors.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, LegacyAct, LegacyWeight};

    /// Unpacks a weight block into the two operands of the 8-bit dot products.
    pub(super) trait Unpack {
        /// Whether the levels are signed (`Q4_0`, `Q5_0`, `Q8_0`: their signs move onto the activations, as in
        /// ggml's `mul_sum_i8_pairs_float`) or unsigned (`Q4_1`: the nibbles multiply the activations directly).
        const SIGNED: bool;

        /// `(magnitudes, signs)`: the levels' absolute values as unsigned bytes, and the levels themselves
        /// whose signs `vpsignb` moves onto the activations (unused for unsigned levels).
        ///
        /// # Safety
        /// The CPU must support AVX2.
        unsafe fn unpack(&self) -> (__m256i, __m256i);
    }

    /// ggml's `bytes_from_nibbles_32`: byte `j` = low nibble of `qs[j]`, byte `j + 16` = its high nibble.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bytes_from_nibbles_32(qs: &[u8; 16]) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
        let tmp = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
        _mm256_and_si256(bytes, _mm256_set1_epi8(0x0F))
    }

    /// ggml's `bytes_from_bits_32`: byte `j` = 0xFF if bit `j` of `qh` is set, else 0.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bytes_from_bits_32(qh: [u8; 4]) -> __m256i {
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(qh)), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// As in `ggml_vec_dot_q4_0_q8_0` (AVX2 branch): nibbles to bytes, minus 8.
    impl Unpack for BlockQ4_0 {
        const SIGNED: bool = true;

        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn unpack(&self) -> (__m256i, __m256i) {
            let q = _mm256_sub_epi8(bytes_from_nibbles_32(&self.qs), _mm256_set1_epi8(8));
            (_mm256_sign_epi8(q, q), q)
        }
    }

    /// As in `ggml_vec_dot_q4_1_q8_1` (AVX2 branch): the bare nibbles, unsigned, multiply the activations directly.
    impl Unpack for BlockQ4_1 {
        const SIGNED: bool = false;

        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn unpack(&self) -> (__m256i, __m256i) {
            let q = bytes_from_nibbles_32(&self.qs);
            (q, q)
        }
    }

    /// As in `ggml_vec_dot_q5_0_q8_0` (AVX2 branch): the fifth bits from `bytes_from_bits_32`.
    impl Unpack for BlockQ5_0 {
        const SIGNED: bool = true;

        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn unpack(&self) -> (__m256i, __m256i) {
            // `nibble | 0xF0` where the fifth bit is clear is `nibble − 16` as i8; where set, `nibble + 16 − 16`.
            let hi = _mm256_andnot_si256(bytes_from_bits_32(self.qh), _mm256_set1_epi8(0xF0_u8 as i8));
            let q = _mm256_or_si256(bytes_from_nibbles_32(&self.qs), hi);
            (_mm256_sign_epi8(q, q), q)
        }
    }

    /// As in `ggml_vec_dot_q8_0_q8_0` (AVX2 branch): the stored levels.
    impl Unpack for BlockQ8_0 {
        const SIGNED: bool = true;

        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn unpack(&self) -> (__m256i, __m256i) {
            // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
            let q = unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) };
            (_mm256_sign_epi8(q, q), q)
        }
    }

    /// Loads an activation block's levels, with the weight levels' signs applied when they are signed.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn act_operand<W: LegacyWeight + Unpack>(xb: &W::Act, signs: __m256i) -> __m256i {
        // SAFETY: the levels are 32 readable bytes; the load is unaligned.
        let y = unsafe { _mm256_loadu_si256(xb.levels().as_ptr().cast()) };
        if W::SIGNED { _mm256_sign_epi8(y, signs) } else { y }
    }

    /// Two f16 values (as bits) to f32 in lanes 0 and 1 (`vcvtph2ps`, exact). Packing them in a general
    /// register first makes the move into the vector register a zeroing `vmovd`: converting one value through
    /// `_mm_cvtsi32_si128` let LLVM merge it with `vpinsrw` into an unrelated register (the accumulator), which
    /// chained every block's scale to the previous block's `vfmadd` (4× slower).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn f16_pair(a: u16, b: u16) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128((u32::from(a) | u32::from(b) << 16) as i32))
    }

    /// Four f16 values (as bits) to f32 (one `vmovq` from a general register, then `vcvtph2ps`).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn f16x4(v: [u16; 4]) -> __m128 {
        let bits = u64::from(v[0]) | u64::from(v[1]) << 16 | u64::from(v[2]) << 32 | u64::from(v[3]) << 48;
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
    }

    /// `f32(a) · f32(b)` for two f16 values, broadcast to 8 lanes (one rounding, as ggml's scalar product).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn f16_product8(a: u16, b: u16) -> __m256 {
        let v = f16_pair(a, b);
        _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehdup_ps(v)))
    }

    /// `m.mul_add(s, acc)` for two f16 values (ggml's `summs += m*s`, contracted).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn f16_fma(m: u16, s: u16, acc: f32) -> f32 {
        let v = f16_pair(m, s);
        _mm_cvtss_f32(_mm_fmadd_ss(v, _mm_movehdup_ps(v), _mm_set_ss(acc)))
    }

    /// Sum of the 8 lanes in ggml's `hsum_float_8` order: high half + low half, then pairs, then the last two.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum_float_8(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }

    /// Generates one module of kernels for a target-feature set and its u8×i8 → i32 dot product.
    macro_rules! kernels {
        ($(#[$doc:meta])* $name:ident, $feat:literal, |$a:ident, $b:ident| $dot:expr) => {
            $(#[$doc])*
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::{LegacyAct, LegacyWeight, Unpack, act_operand, f16_fma, f16_product8, f16x4, hsum_float_8};

                /// Sums of products of unsigned bytes `a` and signed bytes `b`, 4 adjacent pairs per i32 lane.
                #[target_feature(enable = $feat)]
                #[inline]
                fn dot_us($a: __m256i, $b: __m256i) -> __m256i {
                    $dot
                }

                /// `Σ w[i]·x[i]` with ggml's AVX2 numerics (`ggml_vec_dot_q4_0_q8_0` and siblings in
                /// `arch/x86/quants.c`): per block, the 8 partial i32 sums (4 adjacent products each) are converted
                /// to f32 and multiplied into one 8-lane f32 accumulator by `vfmadd` with `d_w·d_x`; the lanes are
                /// added at the end in ggml's `hsum_float_8` order; Q4_1 adds `Σ m_w·s_x` (a scalar fused
                /// multiply-add per block, as compilers contract ggml's `summs += m*s`). Matching the rounding
                /// keeps greedy tokens equal to llama.cpp's.
                #[target_feature(enable = $feat)]
                pub(in super::super) fn vec_dot<W: LegacyWeight + Unpack>(w: &[W], x: &[W::Act]) -> f32 {
                    assert_eq!(w.len(), x.len(), "vec_dot: block counts");
                    let mut acc = _mm256_setzero_ps();
                    let mut summs = 0f32;
                    for (wb, xb) in w.iter().zip(x) {
                        // SAFETY: this function's features include AVX2.
                        let (mag, signs) = unsafe { wb.unpack() };
                        let p = _mm256_cvtepi32_ps(dot_us(mag, act_operand::<W>(xb, signs)));
                        acc = _mm256_fmadd_ps(f16_product8(wb.d_bits(), xb.d_bits()), p, acc);
                        if W::HAS_MIN {
                            summs = f16_fma(wb.m_bits(), xb.s_bits(), summs);
                        }
                    }
                    hsum_float_8(acc) + summs
                }

                /// `out[r][k] = w[r]·x[k]` for four weight rows and four activation rows (the prefill micro-kernel):
                /// each weight block is unpacked once for four tokens and each activation block loaded once for
                /// four rows; every result keeps its own 8-lane accumulator, so it is rounded exactly as
                /// [`vec_dot`] rounds it.
                #[target_feature(enable = $feat)]
                pub(in super::super) fn vec_dot_4x4<W: LegacyWeight + Unpack>(
                    w: [&[W]; 4],
                    x: [&[W::Act]; 4],
                ) -> [[f32; 4]; 4] {
                    let nb = w[0].len();
                    for r in 0..4 {
                        assert!(w[r].len() == nb && x[r].len() == nb, "vec_dot_4x4: block counts");
                    }
                    let mut acc = [[_mm256_setzero_ps(); 4]; 4];
                    let mut summs = [_mm_setzero_ps(); 4];
                    for i in 0..nb {
                        let wb = [&w[0][i], &w[1][i], &w[2][i], &w[3][i]];
                        let xb = [&x[0][i], &x[1][i], &x[2][i], &x[3][i]];
                        let dw = f16x4(wb.map(|b| b.d_bits()));
                        let dx = f16x4(xb.map(|b| b.d_bits()));
                        let mut dwa = [0f32; 4];
                        // SAFETY: `dwa` is 16 writable bytes; the store is unaligned.
                        unsafe { _mm_storeu_ps(dwa.as_mut_ptr(), dw) };
                        let mut prod = [[0f32; 4]; 4];
                        for r in 0..4 {
                            // SAFETY: as above.
                            unsafe { _mm_storeu_ps(prod[r].as_mut_ptr(), _mm_mul_ps(_mm_set1_ps(dwa[r]), dx)) };
                        }
                        // SAFETY: each activation block's levels are 32 readable bytes; unaligned loads.
                        let ys = xb.map(|b| unsafe { _mm256_loadu_si256(b.levels().as_ptr().cast()) });
                        for r in 0..4 {
                            // SAFETY: this function's features include AVX2.
                            let (mag, signs) = unsafe { wb[r].unpack() };
                            for k in 0..4 {
                                let y = if W::SIGNED { _mm256_sign_epi8(ys[k], signs) } else { ys[k] };
                                let p = _mm256_cvtepi32_ps(dot_us(mag, y));
                                acc[r][k] = _mm256_fmadd_ps(_mm256_set1_ps(prod[r][k]), p, acc[r][k]);
                            }
                        }
                        if W::HAS_MIN {
                            let mut ma = [0f32; 4];
                            // SAFETY: as above.
                            unsafe { _mm_storeu_ps(ma.as_mut_ptr(), f16x4(wb.map(|b| b.m_bits()))) };
                            let sx = f16x4(xb.map(|b| b.s_bits()));
                            for r in 0..4 {
                                summs[r] = _mm_fmadd_ps(_mm_set1_ps(ma[r]), sx, summs[r]);
                            }
                        }
                    }
                    let mut out = [[0f32; 4]; 4];
                    for r in 0..4 {
                        let mut sm = [0f32; 4];
                        // SAFETY: as above.
                        unsafe { _mm_storeu_ps(sm.as_mut_ptr(), summs[r]) };
                        for k in 0..4 {
                            out[r][k] = hsum_float_8(acc[r][k]) + sm[k];
                        }
                    }
                    out
                }

                /// `[w·x[0], w·x[1], w·x[2], w·x[3]]`, each weight block unpacked once, each result rounded exactly
                /// as [`vec_dot`] rounds it (one 8-lane accumulator per activation row).
                #[target_feature(enable = $feat)]
                pub(in super::super) fn vec_dot_x4<W: LegacyWeight + Unpack>(
                    w: &[W],
                    x: [&[W::Act]; 4],
                ) -> [f32; 4] {
                    for xi in x {
                        assert_eq!(w.len(), xi.len(), "vec_dot_x4: block counts");
                    }
                    let mut acc = [_mm256_setzero_ps(); 4];
                    let mut summs = [0f32; 4];
                    for (i, wb) in w.iter().enumerate() {
                        // SAFETY: this function's features include AVX2.
                        let (mag, signs) = unsafe { wb.unpack() };
                        for k in 0..4 {
                            let xb = &x[k][i];
                            let p = _mm256_cvtepi32_ps(dot_us(mag, act_operand::<W>(xb, signs)));
                            acc[k] = _mm256_fmadd_ps(f16_product8(wb.d_bits(), xb.d_bits()), p, acc[k]);
                            if W::HAS_MIN {
                                summs[k] = f16_fma(wb.m_bits(), xb.s_bits(), summs[k]);
                            }
                        }
                    }
                    std::array::from_fn(|k| hsum_float_8(acc[k]) + summs[k])
                }
            }
        };
    }

    kernels!(
        /// AVX2 + FMA: `vpmaddubsw` then `vpmaddwd` by ones (ggml's `mul_sum_us8_pairs_float` without VNNI).
        avx2,
        "avx2,fma,f16c",
        |a, b| _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    );

    kernels!(
        /// AVX-512 VNNI on 256-bit vectors: one `vpdpbusd` (EVEX).
        avx512vnni,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        |a, b| _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
    );

    kernels!(
        /// AVX-VNNI: one `vpdpbusd` (VEX).
        avxvnni,
        "avx2,fma,f16c,avxvnni",
        |a, b| _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b)
    );

    use crate::cpu::x86::{Level, best};

    /// `vec_dot` on the best level, or `None` for the scalar reference.
    pub(super) fn vec_dot<W: LegacyWeight + Unpack>(w: &[W], x: &[W::Act]) -> Option<f32> {
        match best() {
            None => None,
            // SAFETY: `best` detected AVX2, FMA and F16C.
            Some(Level::Avx2) => Some(unsafe { avx2::vec_dot(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C and AVX-VNNI.
            Some(Level::AvxVnni) => Some(unsafe { avxvnni::vec_dot(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C, AVX-512 VNNI and AVX-512 VL.
            Some(Level::Avx512Vnni) => Some(unsafe { avx512vnni::vec_dot(w, x) }),
        }
    }

    /// `vec_dot_x4` on the best level, or `None` for the scalar reference.
    pub(super) fn vec_dot_4x4<W: LegacyWeight + Unpack>(
        w: [&[W]; 4],
        x: [&[W::Act]; 4],
    ) -> Option<[[f32; 4]; 4]> {
        match best() {
            None => None,
            // SAFETY: `best` detected AVX2, FMA and F16C.
            Some(Level::Avx2) => Some(unsafe { avx2::vec_dot_4x4(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C and AVX-VNNI.
            Some(Level::AvxVnni) => Some(unsafe { avxvnni::vec_dot_4x4(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C, AVX-512 VNNI and AVX-512 VL.
            Some(Level::Avx512Vnni) => Some(unsafe { avx512vnni::vec_dot_4x4(w, x) }),
        }
    }

    pub(super) fn vec_dot_x4<W: LegacyWeight + Unpack>(w: &[W], x: [&[W::Act]; 4]) -> Option<[f32; 4]> {
        match best() {
            None => None,
            // SAFETY: `best` detected AVX2, FMA and F16C.
            Some(Level::Avx2) => Some(unsafe { avx2::vec_dot_x4(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C and AVX-VNNI.
            Some(Level::AvxVnni) => Some(unsafe { avxvnni::vec_dot_x4(w, x) }),
            // SAFETY: `best` detected AVX2, FMA, F16C, AVX-512 VNNI and AVX-512 VL.
            Some(Level::Avx512Vnni) => Some(unsafe { avx512vnni::vec_dot_x4(w, x) }),
        }
    }
}

/// aarch64 kernels: NEON, with `sdot` where the CPU has the dot-product extension.
///
/// Each block's integer sum is exact (`vaddvq_s32`) and scaled and accumulated in f32 in block order, as in the
/// reference, so these kernels return exactly the reference's value.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use half::f16;

    use super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, LegacyAct, LegacyWeight};
    use crate::cpu::arm::{fifth_bits, sdot};

    /// Unpacks a weight block into its 32 levels as signed bytes (elements 0..16 and 16..32).
    pub(super) trait Unpack {
        /// The levels: `Q4_0` `nibble − 8`, `Q4_1` the bare nibble, `Q5_0` `5-bit value − 16`, `Q8_0` as stored.
        ///
        /// # Safety
        /// The CPU must support NEON.
        unsafe fn unpack(&self) -> [int8x16_t; 2];
    }

    /// Low and high nibbles of 16 bytes (elements 0..16 and 16..32).
    #[target_feature(enable = "neon")]
    #[inline]
    fn nibbles(qs: &[u8; 16]) -> [uint8x16_t; 2] {
        // SAFETY: `qs` is 16 readable bytes; `vld1q_u8` needs no alignment.
        let q = unsafe { vld1q_u8(qs.as_ptr()) };
        [vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q)]
    }

    impl Unpack for BlockQ4_0 {
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn unpack(&self) -> [int8x16_t; 2] {
            let [lo, hi] = nibbles(&self.qs);
            let eight = vdupq_n_s8(8);
            [
                vsubq_s8(vreinterpretq_s8_u8(lo), eight),
                vsubq_s8(vreinterpretq_s8_u8(hi), eight),
            ]
        }
    }

    impl Unpack for BlockQ4_1 {
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn unpack(&self) -> [int8x16_t; 2] {
            let [lo, hi] = nibbles(&self.qs);
            [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)]
        }
    }

    impl Unpack for BlockQ5_0 {
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn unpack(&self) -> [int8x16_t; 2] {
            let [lo, hi] = nibbles(&self.qs);
            let h0 = fifth_bits(self.qh[0], self.qh[1]);
            let h1 = fifth_bits(self.qh[2], self.qh[3]);
            let sixteen = vdupq_n_s8(16);
            [
                vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h0)), sixteen),
                vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h1)), sixteen),
            ]
        }
    }

    impl Unpack for BlockQ8_0 {
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn unpack(&self) -> [int8x16_t; 2] {
            levels(&self.qs)
        }
    }

    /// 32 signed levels as two vectors.
    #[target_feature(enable = "neon")]
    #[inline]
    fn levels(qs: &[i8; 32]) -> [int8x16_t; 2] {
        // SAFETY: `qs` is 32 readable bytes; `vld1q_s8` needs no alignment.
        unsafe { [vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))] }
    }

    /// The same total without the extension: widening multiplies, then pairwise adds (ggml's `ggml_vdotq_s32`
    /// fallback; the lanes hold other partial sums than `sdot`'s).
    #[target_feature(enable = "neon")]
    #[inline]
    fn mull_dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vaddq_s32(acc, vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)))
    }

    /// One block's contribution, computed as the reference computes it.
    #[inline]
    fn term<W: LegacyWeight>(wb: &W, xb: &W::Act, isum: i32) -> f32 {
        let d = f16::from_bits(wb.d_bits()).to_f32() * f16::from_bits(xb.d_bits()).to_f32();
        if W::HAS_MIN {
            isum as f32 * d + f16::from_bits(wb.m_bits()).to_f32() * f16::from_bits(xb.s_bits()).to_f32()
        } else {
            isum as f32 * d
        }
    }

    /// Generates a one-row and a four-row kernel around a byte dot product.
    macro_rules! kernels {
        ($feat:literal, $dot:ident, $vec_dot:ident, $vec_dot_x4:ident) => {
            /// `Σ w[i]·x[i]`, block by block.
            #[target_feature(enable = $feat)]
            pub(in super::super) fn $vec_dot<W: LegacyWeight + Unpack>(w: &[W], x: &[W::Act]) -> f32 {
                assert_eq!(w.len(), x.len(), "vec_dot: block counts");
                let mut sum = 0f32;
                for (wb, xb) in w.iter().zip(x) {
                    // SAFETY: this function's features include NEON.
                    let [w0, w1] = unsafe { wb.unpack() };
                    let [y0, y1] = levels(xb.levels());
                    let isum = vaddvq_s32($dot($dot(vdupq_n_s32(0), w0, y0), w1, y1));
                    sum += term::<W>(wb, xb, isum);
                }
                sum
            }

            /// `[w·x[0], w·x[1], w·x[2], w·x[3]]`, each weight block unpacked once.
            #[target_feature(enable = $feat)]
            pub(in super::super) fn $vec_dot_x4<W: LegacyWeight + Unpack>(
                w: &[W],
                x: [&[W::Act]; 4],
            ) -> [f32; 4] {
                for xi in x {
                    assert_eq!(w.len(), xi.len(), "vec_dot_x4: block counts");
                }
                let mut sum = [0f32; 4];
                for (i, wb) in w.iter().enumerate() {
                    // SAFETY: this function's features include NEON.
                    let [w0, w1] = unsafe { wb.unpack() };
                    for (s, xr) in sum.iter_mut().zip(x) {
                        let xb = &xr[i];
                        let [y0, y1] = levels(xb.levels());
                        let isum = vaddvq_s32($dot($dot(vdupq_n_s32(0), w0, y0), w1, y1));
                        *s += term::<W>(wb, xb, isum);
                    }
                }
                sum
            }
        };
    }

    kernels!("neon,dotprod", sdot, vec_dot_sdot, vec_dot_x4_sdot);
    kernels!("neon", mull_dot, vec_dot_mull, vec_dot_x4_mull);

    use crate::cpu::arm::{Level, best};

    /// `vec_dot` on the level in use, or `None` for the scalar reference.
    pub(super) fn vec_dot<W: LegacyWeight + Unpack>(w: &[W], x: &[W::Act]) -> Option<f32> {
        match best()? {
            // SAFETY: `best` returns a level only where the CPU has NEON.
            Level::Neon => Some(unsafe { vec_dot_mull(w, x) }),
            // SAFETY: `best` returns it only where the CPU has NEON and the dot-product extension.
            Level::DotProd => Some(unsafe { vec_dot_sdot(w, x) }),
        }
    }

    /// `vec_dot_x4` on the level in use, or `None` for the scalar reference.
    pub(super) fn vec_dot_x4<W: LegacyWeight + Unpack>(w: &[W], x: [&[W::Act]; 4]) -> Option<[f32; 4]> {
        match best()? {
            // SAFETY: `best` returns a level only where the CPU has NEON.
            Level::Neon => Some(unsafe { vec_dot_x4_mull(w, x) }),
            // SAFETY: `best` returns it only where the CPU has NEON and the dot-product extension.
            Level::DotProd => Some(unsafe { vec_dot_x4_sdot(w, x) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytemuck::Zeroable;
    use half::f16;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ActBlock;

    /// Row lengths in blocks (18 = 576 values; 0 = an empty row).
    const LENS: [usize; 7] = [0, 1, 2, 3, 7, 18, 64];
    /// Relative tolerance against the sum of absolute products (float reassociation only).
    const REL: f64 = 1e-5;

    /// Random values, block by block: a random magnitude per block, some all-zero blocks, some blocks with one
    /// outlier, some blocks of one sign.
    fn values(rng: &mut StdRng, nb: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(nb * QK);
        for _ in 0..nb {
            let scale = 10f32.powf(rng.random_range(-3.0..1.5));
            let kind = rng.random_range(0..8);
            for j in 0..QK {
                let u: f32 = rng.random_range(-1.0..1.0);
                v.push(match kind {
                    0 => 0.0,
                    1 if j == 5 => 40.0 * scale,
                    2 => u.abs() * scale,
                    3 => -u.abs() * scale,
                    _ => u * scale,
                });
            }
        }
        v
    }

    /// Bytes copied into (aligned) blocks.
    fn blocks<W: LegacyWeight>(bytes: &[u8]) -> Vec<W> {
        let mut v = vec![W::zeroed(); bytes.len() / size_of::<W>()];
        bytemuck::cast_slice_mut::<W, u8>(&mut v).copy_from_slice(bytes);
        v
    }

    /// A weight row of `nb` blocks quantized by silica-quant from random values, with its dequantized values.
    fn weights<W: LegacyWeight>(rng: &mut StdRng, nb: usize) -> (Vec<W>, Vec<f32>) {
        let v = values(rng, nb);
        let mut bytes = vec![0u8; nb * size_of::<W>()];
        silica_quant::quantize_row(W::TYPE, &v, &mut bytes).unwrap();
        let mut deq = vec![0f32; nb * QK];
        silica_quant::dequantize_row(W::TYPE, &bytes, &mut deq).unwrap();
        (blocks(&bytes), deq)
    }

    /// A weight row of `nb` blocks of arbitrary bytes (every level pattern) with finite random scales.
    fn raw_weights<W: LegacyWeight>(rng: &mut StdRng, nb: usize) -> Vec<W> {
        let mut bytes: Vec<u8> = (0..nb * size_of::<W>()).map(|_| rng.random()).collect();
        for b in bytes.chunks_exact_mut(size_of::<W>()) {
            // `d` (and `m` for Q4_1) lead every legacy weight block except Q8_0, whose `d` leads too.
            let scalars = if W::HAS_MIN { 2 } else { 1 };
            for s in 0..scalars {
                let v = f16::from_f32(rng.random_range(-2.0..2.0));
                b[2 * s..2 * s + 2].copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        blocks(&bytes)
    }

    /// An activation row of `nb` blocks quantized by this crate's quantizer.
    fn acts<W: LegacyWeight>(rng: &mut StdRng, nb: usize) -> Vec<W::Act> {
        let v = values(rng, nb);
        let mut out = vec![W::Act::zeroed(); nb];
        W::Act::quantize_row(&v, &mut out);
        out
    }

    /// Dequantized activation values, in f64.
    fn deq_acts<A: LegacyAct>(x: &[A]) -> Vec<f64> {
        x.iter()
            .flat_map(|b| {
                let d = f16::from_bits(b.d_bits()).to_f64();
                b.levels().map(|q| d * f64::from(q))
            })
            .collect()
    }

    /// `Σ_j (|w_j| + 2|m|)·|x_j|`: bounds the absolute value of every term the kernels add.
    fn abs_scale<W: LegacyWeight>(w: &[W], wd: &[f32], xd: &[f64]) -> f64 {
        let mut s = 0f64;
        for (b, wb) in w.iter().enumerate() {
            let m = f16::from_bits(wb.m_bits()).to_f64().abs();
            for j in b * QK..(b + 1) * QK {
                s += (f64::from(wd[j]).abs() + 2.0 * m) * xd[j].abs();
            }
        }
        s
    }

    fn assert_close(what: &str, got: f64, want: f64, scale: f64) {
        let tol = REL * scale + 1e-30;
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} (tolerance {tol})"
        );
    }

    /// The reference against an f64 dot product of the dequantized rows.
    fn reference_matches_dequantized<W: LegacyWeight>() {
        let mut rng = StdRng::seed_from_u64(0x5eed ^ W::TYPE as u64);
        for nb in LENS {
            for _ in 0..20 {
                let (w, wd) = weights::<W>(&mut rng, nb);
                let x = acts::<W>(&mut rng, nb);
                let xd = deq_acts(&x);
                let mut want: f64 = wd.iter().zip(&xd).map(|(&a, &b)| f64::from(a) * b).sum();
                if W::HAS_MIN {
                    // ggml multiplies `m` by the f16-rounded `s`, not by the exact `d·Σq`.
                    for (wb, xb) in w.iter().zip(&x) {
                        let d = f16::from_bits(xb.d_bits()).to_f64();
                        let exact = d * xb.levels().iter().map(|&q| f64::from(q)).sum::<f64>();
                        let stored = f16::from_bits(xb.s_bits()).to_f64();
                        want += f16::from_bits(wb.m_bits()).to_f64() * (stored - exact);
                    }
                }
                let got = f64::from(W::vec_dot_ref(&w, &x));
                assert_close(
                    &format!("{:?} ref, {nb} blocks", W::TYPE),
                    got,
                    want,
                    abs_scale(&w, &wd, &xd),
                );
            }
        }
    }

    /// `vec_dot` on every path this CPU has, named; the dispatched one first.
    type Dot<W> = fn(&[W], &[<W as WeightBlock>::Act]) -> f32;
    /// `vec_dot_x4` on every path this CPU has, named; the dispatched one first.
    type DotX4<W> = fn(&[W], [&[<W as WeightBlock>::Act]; 4]) -> [f32; 4];

    fn paths<W: LegacyWeight>() -> Vec<(&'static str, Dot<W>, DotX4<W>)> {
        let mut p: Vec<(&'static str, Dot<W>, DotX4<W>)> = vec![("dispatched", W::vec_dot, W::vec_dot_x4)];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::cpu::x86::Level;
            if Level::Avx2.supported() {
                p.push((
                    "avx2",
                    // SAFETY: AVX2, FMA and F16C were detected.
                    |w, x| unsafe { x86::avx2::vec_dot(w, x) },
                    // SAFETY: AVX2, FMA and F16C were detected.
                    |w, x| unsafe { x86::avx2::vec_dot_x4(w, x) },
                ));
            }
            if Level::AvxVnni.supported() {
                p.push((
                    "avxvnni",
                    // SAFETY: AVX2, FMA, F16C and AVX-VNNI were detected.
                    |w, x| unsafe { x86::avxvnni::vec_dot(w, x) },
                    // SAFETY: AVX2, FMA, F16C and AVX-VNNI were detected.
                    |w, x| unsafe { x86::avxvnni::vec_dot_x4(w, x) },
                ));
            }
            if Level::Avx512Vnni.supported() {
                p.push((
                    "avx512vnni",
                    // SAFETY: AVX2, FMA, F16C, AVX-512 VNNI and VL were detected.
                    |w, x| unsafe { x86::avx512vnni::vec_dot(w, x) },
                    // SAFETY: AVX2, FMA, F16C, AVX-512 VNNI and VL were detected.
                    |w, x| unsafe { x86::avx512vnni::vec_dot_x4(w, x) },
                ));
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            p.push((
                "neon",
                // SAFETY: NEON was detected.
                |w, x| unsafe { neon::vec_dot_mull(w, x) },
                // SAFETY: NEON was detected.
                |w, x| unsafe { neon::vec_dot_x4_mull(w, x) },
            ));
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                p.push((
                    "neon-dotprod",
                    // SAFETY: NEON and the dot-product extension were detected.
                    |w, x| unsafe { neon::vec_dot_sdot(w, x) },
                    // SAFETY: NEON and the dot-product extension were detected.
                    |w, x| unsafe { neon::vec_dot_x4_sdot(w, x) },
                ));
            }
        }
        p
    }

    /// Every path's `vec_dot` and `vec_dot_x4` against the reference, on quantized and on arbitrary blocks.
    fn paths_match_reference<W: LegacyWeight>() {
        let mut rng = StdRng::seed_from_u64(0xd07 ^ W::TYPE as u64);
        for (name, dot, dot_x4) in paths::<W>() {
            for nb in LENS {
                for round in 0..12 {
                    let w = if round % 3 == 2 {
                        raw_weights::<W>(&mut rng, nb)
                    } else {
                        weights::<W>(&mut rng, nb).0
                    };
                    let mut wd = vec![0f32; nb * QK];
                    silica_quant::dequantize_row(W::TYPE, bytemuck::cast_slice(&w), &mut wd).unwrap();
                    let xs: [Vec<W::Act>; 4] = std::array::from_fn(|_| acts::<W>(&mut rng, nb));
                    let x4 = dot_x4(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                    for (r, x) in xs.iter().enumerate() {
                        let scale = abs_scale(&w, &wd, &deq_acts(x));
                        let want = f64::from(W::vec_dot_ref(&w, x));
                        let what = format!("{:?} {name}, {nb} blocks, round {round}", W::TYPE);
                        assert_close(&format!("{what} vec_dot"), f64::from(dot(&w, x)), want, scale);
                        assert_close(
                            &format!("{what} vec_dot_x4 row {r}"),
                            f64::from(x4[r]),
                            want,
                            scale,
                        );
                    }
                }
            }
        }
    }

    /// `vec_dot_x4` against four `vec_dot` calls on the dispatched path.
    fn x4_matches_four_vec_dots<W: LegacyWeight>() {
        let mut rng = StdRng::seed_from_u64(0x4444 ^ W::TYPE as u64);
        for nb in LENS {
            for _ in 0..10 {
                let (w, _) = weights::<W>(&mut rng, nb);
                let xs: [Vec<W::Act>; 4] = std::array::from_fn(|_| acts::<W>(&mut rng, nb));
                let ws: [Vec<W>; 3] = std::array::from_fn(|_| weights::<W>(&mut rng, nb).0);
                let tile = W::vec_dot_4x4([&w, &ws[0], &ws[1], &ws[2]], [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (r, wr) in [&w, &ws[0], &ws[1], &ws[2]].into_iter().enumerate() {
                    for (k, x) in xs.iter().enumerate() {
                        let want = W::vec_dot(wr, x).to_bits();
                        assert_eq!(
                            tile[r][k].to_bits(),
                            want,
                            "{:?} 4x4 [{r}][{k}], {nb} blocks",
                            W::TYPE
                        );
                    }
                }
                let got = W::vec_dot_x4(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (r, x) in xs.iter().enumerate() {
                    // Same accumulation order per result: equal to the bit.
                    let what = format!("{:?} x4 row {r}, {nb} blocks", W::TYPE);
                    assert_eq!(got[r].to_bits(), W::vec_dot(&w, x).to_bits(), "{what}");
                }
            }
        }
    }

    #[test]
    fn reference_matches_dequantized_f64() {
        reference_matches_dequantized::<BlockQ4_0>();
        reference_matches_dequantized::<BlockQ4_1>();
        reference_matches_dequantized::<BlockQ5_0>();
        reference_matches_dequantized::<BlockQ8_0>();
    }

    #[test]
    fn simd_paths_match_reference_q4_0() {
        paths_match_reference::<BlockQ4_0>();
    }

    #[test]
    fn simd_paths_match_reference_q4_1() {
        paths_match_reference::<BlockQ4_1>();
    }

    #[test]
    fn simd_paths_match_reference_q5_0() {
        paths_match_reference::<BlockQ5_0>();
    }

    #[test]
    fn simd_paths_match_reference_q8_0() {
        paths_match_reference::<BlockQ8_0>();
    }

    #[test]
    fn vec_dot_x4_and_4x4_equal_vec_dot_to_the_bit() {
        x4_matches_four_vec_dots::<BlockQ4_0>();
        x4_matches_four_vec_dots::<BlockQ4_1>();
        x4_matches_four_vec_dots::<BlockQ5_0>();
        x4_matches_four_vec_dots::<BlockQ8_0>();
    }
}
