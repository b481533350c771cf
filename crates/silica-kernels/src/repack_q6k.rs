//! Q6_K repacked eight rows at a time against Q8_K activations, for prefill and generation on x86-64 and on
//! aarch64 with the dot-product extension (the same scheme as [`crate::repack_k`]'s Q4_K; layout and kernels are
//! silica's own).
//!
//! A [`BlockQ6_Kx8`] holds super-block `i` (256 values) of eight consecutive rows in the size of eight
//! [`BlockQ6K`] (1680 bytes): their `d`, their sixteen 8-bit scales transposed to `[sub-block][row]`, the low four
//! bits of the levels arranged as [`crate::repack_k::BlockQ4_Kx8::qs`] (one 32-byte load gives four consecutive
//! elements of two 32-element halves-pairs for all eight rows, lane `j` = row `j`), and their high two bits packed
//! four to a byte so that one 32-byte load serves two such nibble vectors: shifts and a mask put the two bits at
//! bit 4 of each byte lane, an OR completes the unsigned level `u = q ∈ 0..64`.
//!
//! Per super-block, row `j` and token (`sc` the 16 scales, `S_s = Σ_{e<16} u[16s + e]·y[16s + e]`, `bsums` the
//! Q8_K block's 16-element sums):
//!
//! * `isum = Σ_s sc[s][j] · S_s − 32 · Σ_s sc[s][j] · bsums[s]` (exact i32: `|Σ sc·S| ≤ 16·128·16·63·128 < 2²⁸`,
//!   `|32·Σ sc·bsums| ≤ 32·16·128·2048 < 2²⁸`) — ggml's `ggml_vec_dot_q6_K_q8_K` integers, the `−32` of
//!   `q − 32` taken through `bsums` as its AVX2 path does;
//! * `acc[j] = fma(d[j] · y.d, isum, acc[j])` in f32, in this order on every path ([`gemm_q6k_ref`] and
//!   [`gemm_q6k`] agree bit for bit).
//!
//! The kernels: `vpdpbusd` (AVX-512 VNNI, AVX-VNNI) or `vpmaddubsw` + `vpmaddwd` (AVX2, the scale fused into the
//! `vpmaddwd`) over four-element chunks, a lane-wise multiply by the row scales per 16-element sub-block; the
//! `bsums` term is one `vpmaddwd` per pair of sub-blocks. With AVX-512 and two or more tokens, the prefill
//! takes two row groups at once ([`PackK8::gemm16`], as for Q4_K: the same chunk of both
//! groups in one zmm, the activation bytes as broadcast memory operands); one token uses ymm (see
//! [`crate::repack_k`] why). Divan `pp` 4096×4096, eight tokens per tile, alternating: the one-group zmm kernel
//! (which spreads two activation words over a zmm's halves with a `vpermd` per `vpdpbusd`) 29.7–30.1 ms, the
//! pair kernel 22.5–23.2 ms.
#![allow(unsafe_code)]

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::blocks::{BlockQ6K, BlockQ8K, QK_K};
use crate::repack_k::{PackK8, PackedK};

/// Super-block `i` of eight rows of a Q6_K matrix, repacked (1680 bytes, as eight [`BlockQ6K`]).
///
/// Element `e = 32·q + 4·c + t` of a row (`q` in 0..8 is its 32-element part, `c` in 0..8 its chunk, `t` in 0..4)
/// has the unsigned level `u` (0..64; the value is `d · sc · (u − 32)`) and lies in sub-block `2q + c / 4` of 16.
/// With `q = 2p + h` (`p` in 0..4, `h` in 0..2):
///
/// * `q[384·p + 32·c + 4·j + t]`: row `j`'s `u & 15` in the low nibble for `h = 0`, the high nibble for `h = 1`;
/// * `q[384·p + 256 + 32·(c / 2) + 4·j + t]`: row `j`'s `u >> 4` at bits `4·(c % 2) + 2·h` (two bits);
///
/// so the 384 bytes of part-pair `p` (256 of low bits, 128 of high bits) are consumed in memory order. That
/// matters from DRAM: with all low bits first and all high bits after (two interleaved streams per block) the
/// one-token kernel read 26–27 GB/s where the row-major kernel read 38–42; in memory order both read 38 GB/s
/// (`examples/stream_dram.rs`, AMD EPYC Zen 4, 2 threads, 40 × 8192×2048 matrices, alternating in one run).
/// * `scales[s][j]`: row `j`'s scale of sub-block `s`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6_Kx8 {
    /// Super-block scales, one per row.
    pub d: [f16; 8],
    /// Sub-block scales `[sub-block][row]`.
    pub scales: [[i8; 8]; 16],
    /// Levels: low four bits interleaved, then high two bits four to a byte, per part-pair, as described above.
    pub q: [u8; 8 * QK_K * 3 / 4],
}

const _: () = assert!(size_of::<BlockQ6_Kx8>() == 8 * size_of::<BlockQ6K>());

/// Four bytes of `b` at `at`, as a little-endian word.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes `w` as four little-endian bytes of `b` at `at`.
#[inline(always)]
fn put_word(b: &mut [u8], at: usize, w: u32) {
    b[at..at + 4].copy_from_slice(&w.to_le_bytes());
}

/// Per byte: the low nibble of `a` and of `b` (`odd` = false), or their high nibbles (`odd` = true), as the low
/// and high nibble of the result.
#[inline(always)]
fn merge_nibbles(a: u32, b: u32, odd: bool) -> u32 {
    const LO: u32 = 0x0F0F_0F0F;
    if odd {
        ((a >> 4) & LO) | (b & !LO)
    } else {
        (a & LO) | ((b & LO) << 4)
    }
}

impl BlockQ6_Kx8 {
    /// Packs super-block `i` of eight rows (`src[j]` is row `j`'s).
    pub fn pack(src: [&BlockQ6K; 8]) -> Self {
        let mut b = BlockQ6_Kx8::zeroed();
        Self::pack_into(src, &mut b);
        b
    }

    /// [`Self::pack`] into `b` (every byte of `b` is written).
    ///
    /// Works on the source bits four bytes at a time, without decoding levels: part `p` holds the sub-blocks of
    /// 32 that `dequantize_row_q6_K` reads from half `n = p / 2` of `ql`/`qh` — the low nibbles of `ql` for an
    /// even part, the high ones for an odd part, and likewise the low or high four bits of `qh` — and both the
    /// low-bit byte (levels `e` and `e + 32` of the part) and the high-bit byte (levels `4c + t` and `4c + 4 + t`
    /// of each sub-block) merge two such nibbles. The layout is checked level by level
    /// against [`Self::level`] in the tests.
    pub fn pack_into(src: [&BlockQ6K; 8], b: &mut Self) {
        for (j, s) in src.iter().enumerate() {
            b.d[j] = s.d;
            for (sb, &sc) in s.scales.iter().enumerate() {
                b.scales[sb][j] = sc;
            }
            for p in 0..4 {
                let (n, odd) = (p / 2, p % 2 == 1);
                for c in 0..8 {
                    // Elements l = 4c..4c + 4 of the two quarters of half n: `ql[64n + l]`, `ql[64n + 32 + l]`.
                    let a = word(&s.ql, 64 * n + 4 * c);
                    let hi = word(&s.ql, 64 * n + 32 + 4 * c);
                    put_word(&mut b.q, 384 * p + 32 * c + 4 * j, merge_nibbles(a, hi, odd));
                }
                for c2 in 0..4 {
                    let h0 = word(&s.qh, 32 * n + 8 * c2);
                    let h1 = word(&s.qh, 32 * n + 8 * c2 + 4);
                    put_word(
                        &mut b.q,
                        384 * p + 256 + 32 * c2 + 4 * j,
                        merge_nibbles(h0, h1, odd),
                    );
                }
            }
        }
    }

    /// Row `j`'s unsigned level (0..64) of element `e` (0..256), for the reference.
    pub fn level(&self, j: usize, e: usize) -> i32 {
        let (q, c, t) = (e / 32, (e % 32) / 4, e % 4);
        let (p, h) = (q / 2, q % 2);
        let lo = (self.q[384 * p + 32 * c + 4 * j + t] >> (4 * h)) & 15;
        let hi = (self.q[384 * p + 256 + 32 * (c / 2) + 4 * j + t] >> (4 * (c % 2) + 2 * h)) & 3;
        i32::from(lo | (hi << 4))
    }
}

impl PackK8 for BlockQ6_Kx8 {
    type Src = BlockQ6K;
    fn pack_into(src: [&BlockQ6K; 8], b: &mut Self) {
        BlockQ6_Kx8::pack_into(src, b)
    }
    fn gemm<const N: usize>(w: &[Self], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
        gemm_q6k(w, x)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm16_zmm<const N: usize>(w: [&[Self]; 2], x: [&[BlockQ8K]; N]) -> [[f32; 16]; N] {
        // SAFETY: the caller guarantees the features and the lengths.
        unsafe { x86::pair::gemm16(w, x) }
    }
}

/// A repacked Q6_K matrix (the size of the row-major one).
pub type PackedQ6K = PackedK<BlockQ6_Kx8>;

/// Scalar reference: `out[k][j]` = row `j` of the group `w` times token `x[k]`, accumulated over the super-blocks
/// with the integer sums and f32 operation order of the module docs.
///
/// # Panics
/// If some `x[k]` does not have `w.len()` blocks.
#[allow(clippy::needless_range_loop)]
pub fn gemm_q6k_ref<const N: usize>(w: &[BlockQ6_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
    for xk in &x {
        assert_eq!(xk.len(), w.len(), "repack_q6k::gemm_q6k_ref: block counts");
    }
    let mut out = [[0f32; 8]; N];
    for (i, wb) in w.iter().enumerate() {
        for k in 0..N {
            let yb = &x[k][i];
            for j in 0..8 {
                let mut isum = 0i32;
                for s in 0..16 {
                    let dot: i32 = (16 * s..16 * s + 16)
                        .map(|e| wb.level(j, e) * i32::from(yb.qs[e]))
                        .sum();
                    isum += i32::from(wb.scales[s][j]) * (dot - 32 * i32::from(yb.bsums[s]));
                }
                out[k][j] = (wb.d[j].to_f32() * yb.d).mul_add(isum as f32, out[k][j]);
            }
        }
    }
    out
}

/// `out[k][j]` for the eight rows of one group and `N` tokens on the fastest path this CPU has (bit-identical to
/// [`gemm_q6k_ref`]).
///
/// # Panics
/// If some `x[k]` does not have `w.len()` blocks.
pub fn gemm_q6k<const N: usize>(w: &[BlockQ6_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
    for xk in &x {
        assert_eq!(xk.len(), w.len(), "repack_q6k::gemm_q6k: block counts");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(level) = x86::best() {
        // SAFETY: `best` returns only levels this CPU supports; the block counts were checked above.
        return unsafe { x86::gemm(level, w, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::cpu::arm::has_dotprod() {
        // SAFETY: the level in use has NEON and the dot-product extension; the block counts were checked above.
        return unsafe { neon::gemm(w, x) };
    }
    gemm_q6k_ref(w, x)
}

/// aarch64 kernel ([`gemm_q6k`] where the CPU has NEON and the dot-product extension), as
/// [`crate::repack_k`]'s Q4_K one: a 16-byte half of a 32-byte chunk of low bits is four elements of two parts
/// (low and high nibbles) of four rows; the matching 16 bytes of high bits give both parts' two bits for this
/// chunk and the next (`4·(c % 2)` and `+ 2`), and a mask, a shift and an OR complete each unsigned level
/// (0..64, so `SDOT`'s signed bytes hold it). `SDOT (by element)` against the token's four activation bytes adds
/// each row's four products to its lane; per 16-element sub-block, four chunks' sums are multiplied by the four
/// rows' scales (`MLA`). The `−32` term takes the Q8_K `bsums` once per super-block and token (`SMLAL` by a
/// scalar). Integer sums are exact, and the closing `fma(d · y.d, isum, acc)` is the reference's, so the bits
/// are [`gemm_q6k_ref`]'s.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{BlockQ6_Kx8, BlockQ8K};
    use crate::cpu::arm::{half_i32, sdot8, store8, widen_hi, widen_lo};

    /// See the parent item. Each half (rows 0..4, then 4..8) of each part-pair unpacks its levels once for the
    /// `N` tokens.
    ///
    /// # Safety
    /// The CPU must have NEON and the dot-product extension; every `x[k]` must have `w.len()` blocks.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn gemm<const N: usize>(w: &[BlockQ6_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
        let low = vdupq_n_u8(0x0F);
        let three = vdupq_n_u8(3);
        let mut acc = [[vdupq_n_f32(0.0); 2]; N];
        for (i, wb) in w.iter().enumerate() {
            // SAFETY: each `scales[s]` is 8 bytes, `d` 16; unaligned loads.
            let sc: [int16x8_t; 16] =
                std::array::from_fn(|s| vmovl_s8(unsafe { vld1_s8(wb.scales[s].as_ptr()) }));
            // SAFETY: as above.
            let dh = unsafe { vld1q_u16(wb.d.as_ptr().cast()) };
            let d = [widen_lo(dh), widen_hi(dh)];
            // SAFETY: the caller guarantees `w.len()` blocks in every `x[k]`; `i < w.len()`.
            let yb: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
            // Σ_s sc[s] · bsums[s] of rows 0..4 and 4..8, per token.
            let bsum: [[int32x4_t; 2]; N] = std::array::from_fn(|k| {
                let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for (s, v) in sc.iter().enumerate() {
                    lo = vmlal_n_s16(lo, vget_low_s16(*v), yb[k].bsums[s]);
                    hi = vmlal_high_n_s16(hi, *v, yb[k].bsums[s]);
                }
                [lo, hi]
            });
            for h in 0..2 {
                let mut isum = [vdupq_n_s32(0); N];
                for p in 0..4 {
                    // u[part][c]: levels of elements 4c..4c+4 of part 2p + part, rows 4h..4h+4.
                    let mut u = [[vdupq_n_s8(0); 8]; 2];
                    for c2 in 0..4 {
                        // SAFETY: `q` is 3072 bytes; 16 are read from 384·p + 256 + 32·c2 + 16·h < 3072.
                        let hb = unsafe { vld1q_u8(wb.q.as_ptr().add(384 * p + 256 + 32 * c2 + 16 * h)) };
                        for (c, hb) in [(2 * c2, hb), (2 * c2 + 1, vshrq_n_u8::<4>(hb))] {
                            // SAFETY: 16 bytes from 384·p + 32·c + 16·h < 384·p + 256.
                            let lo = unsafe { vld1q_u8(wb.q.as_ptr().add(384 * p + 32 * c + 16 * h)) };
                            let top0 = vshlq_n_u8::<4>(vandq_u8(hb, three));
                            let top1 = vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(hb), three));
                            u[0][c] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(lo, low), top0));
                            u[1][c] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(lo), top1));
                        }
                    }
                    // Sub-blocks 4p + 2·part (chunks 0..4) and 4p + 2·part + 1 (chunks 4..8).
                    let scs: [int32x4_t; 4] = std::array::from_fn(|t| half_i32(sc[4 * p + t], h));
                    for k in 0..N {
                        let y = yb[k].qs.as_ptr();
                        for (part, u) in u.iter().enumerate() {
                            // Elements 0..16 and 16..32 of part 2p + part.
                            // SAFETY: `qs` is 256 bytes; 16 are read from 64·p + 32·part + 16·t ≤ 240.
                            let [a0, a1] = std::array::from_fn(|t| unsafe {
                                vld1q_s8(y.add(64 * p + 32 * part + 16 * t))
                            });
                            let [s, t] = sdot8([vdupq_n_s32(0); 2], u, [a0, a1]);
                            isum[k] = vmlaq_s32(vmlaq_s32(isum[k], s, scs[2 * part]), t, scs[2 * part + 1]);
                        }
                    }
                }
                for k in 0..N {
                    let isum = vsubq_s32(isum[k], vshlq_n_s32::<5>(bsum[k][h]));
                    let dy = vmulq_n_f32(d[h], yb[k].d);
                    acc[k][h] = vfmaq_f32(acc[k][h], dy, vcvtq_f32_s32(isum));
                }
            }
        }
        store8(acc)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ6_Kx8, BlockQ8K};

    pub(super) use crate::cpu::x86::{Level, best};

    /// The kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU ([`Level::supported`]) and every `x[k]` must have `w.len()` blocks.
    pub(super) unsafe fn gemm<const N: usize>(
        level: Level,
        w: &[BlockQ6_Kx8],
        x: [&[BlockQ8K]; N],
    ) -> [[f32; 8]; N] {
        // SAFETY: the caller guarantees the level's features and the block counts.
        unsafe {
            match level {
                Level::Avx2 => avx2::gemm(w, x),
                Level::AvxVnni => avxvnni::gemm(w, x),
                // As for Q4_K: one token streams the weights from memory, where ymm reads faster.
                Level::Avx512Vnni if N == 1 => avx512ymm::gemm(w, x),
                Level::Avx512Vnni => avx512zmm::gemm(w, x),
            }
        }
    }

    /// Closes super-block `wb` for each token: `isum −= 32 · Σ_s sc[s] · bsums[s]`, then
    /// `acc[k] = fma(d · y_k.d, isum_k, acc[k])` for the eight rows (the order of [`super::gemm_q6k_ref`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn close_superblock<const N: usize>(
        wb: &BlockQ6_Kx8,
        ys: [&BlockQ8K; N],
        isum: [__m256i; N],
        acc: &mut [__m256; N],
    ) {
        // SAFETY: `d` is 16 readable bytes; unaligned load.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb.d.as_ptr().cast()) });
        // Lane `j`: the i16 pair (sc[2m][j], sc[2m + 1][j]).
        let mut pairs = [_mm256_setzero_si256(); 8];
        for (m, pair) in pairs.iter_mut().enumerate() {
            // SAFETY: `scales[2m]` and `scales[2m + 1]` are 8 readable bytes each; unaligned 64-bit loads.
            let (a, b) = unsafe {
                (
                    _mm_loadl_epi64(wb.scales[2 * m].as_ptr().cast()),
                    _mm_loadl_epi64(wb.scales[2 * m + 1].as_ptr().cast()),
                )
            };
            *pair = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b));
        }
        for k in 0..N {
            let mut corr = _mm256_setzero_si256();
            for (m, pair) in pairs.iter().enumerate() {
                let bs = &ys[k].bsums[2 * m..2 * m + 2];
                let b = _mm256_set1_epi32(i32::from(bs[0] as u16) | (i32::from(bs[1]) << 16));
                corr = _mm256_add_epi32(corr, _mm256_madd_epi16(*pair, b));
            }
            let is = _mm256_sub_epi32(isum[k], _mm256_slli_epi32::<5>(corr));
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(ys[k].d));
            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is), acc[k]);
        }
    }

    use crate::repack_k::x86::store;

    macro_rules! kernels {
        (
            $(#[$doc:meta])*
            $name:ident, $feat:literal,
            narrow: $narrow:literal,
            dot: |$acc:ident, $a:ident, $b:ident| $dot:expr,
            finish: |$s:ident, $sc16:ident, $sc32:ident| $fin:expr
        ) => {
            $(#[$doc])*
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::super::{BlockQ6_Kx8, BlockQ8K};
                use crate::cpu::x86::bcast4;

                crate::repack_k::x86::ymm_helpers!(
                    $feat,
                    narrow: $narrow,
                    dot: |$acc, $a, $b| $dot,
                    finish: |$s, $sc16, $sc32| $fin
                );

                /// See [`super::super::gemm_q6k`]; every `x[k]` must have `w.len()` blocks.
                #[target_feature(enable = $feat)]
                #[allow(clippy::needless_range_loop)]
                pub(in super::super) fn gemm<const N: usize>(
                    w: &[BlockQ6_Kx8],
                    x: [&[BlockQ8K]; N],
                ) -> [[f32; 8]; N] {
                    let low = _mm256_set1_epi8(0x0F);
                    let m30 = _mm256_set1_epi8(0x30);
                    let mut acc = [_mm256_setzero_ps(); N];
                    for (i, wb) in w.iter().enumerate() {
                        // SAFETY: the caller guarantees every `x[k]` has `w.len()` blocks; `i < w.len()`.
                        let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                        let mut isum = [_mm256_setzero_si256(); N];
                        for p in 0..4 {
                            if N == 1 {
                                crate::cpu::x86::prefetch_ahead_part::<_, 4>(wb, p);
                            }
                            // lv[h][c]: unsigned levels of chunk c of part 2p + h, eight rows.
                            let mut lv = [[_mm256_setzero_si256(); 8]; 2];
                            for c2 in 0..4 {
                                // SAFETY: `q` has 1536 bytes and `384p + 256 + 32c2 + 32 ≤ 1536`; unaligned load.
                                let qh = unsafe { _mm256_loadu_si256(wb.q.as_ptr().add(384 * p + 256 + 32 * c2).cast()) };
                                // Bits 4·(c % 2) + 2h moved to bits 4..6 of each byte.
                                let hb = [
                                    [
                                        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                                    ],
                                    [
                                        _mm256_and_si256(qh, m30),
                                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                                    ],
                                ];
                                for (odd, hb) in hb.into_iter().enumerate() {
                                    let c = 2 * c2 + odd;
                                    // SAFETY: `q` has 1536 bytes and `384p + 32c + 32 ≤ 1536`; unaligned load.
                                    let raw = unsafe { _mm256_loadu_si256(wb.q.as_ptr().add(384 * p + 32 * c).cast()) };
                                    lv[0][c] = _mm256_or_si256(_mm256_and_si256(raw, low), hb[0]);
                                    lv[1][c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(raw), low), hb[1]);
                                }
                            }
                            // sc32[h][half]: scales of sub-block 2(2p + h) + half, i32 lanes; sc16: as i16 pairs.
                            // (Loops, not `array::from_fn`: closures do not inherit the target features and are
                            // not inlined.)
                            let mut sc32 = [[_mm256_setzero_si256(); 2]; 2];
                            let mut sc16 = sc32;
                            for h in 0..2 {
                                for half in 0..2 {
                                    let s = 2 * (2 * p + h) + half;
                                    // SAFETY: `scales[s]` is 8 readable bytes; unaligned 64-bit load.
                                    let v = _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(wb.scales[s].as_ptr().cast()) });
                                    sc32[h][half] = v;
                                    sc16[h][half] = _mm256_blend_epi16::<0xAA>(v, _mm256_slli_epi32::<16>(v));
                                }
                            }
                            // Dots per `finish`: two of 6-bit levels fit i16 lanes, a sub-block's four i32 ones
                            // (see `NARROW`).
                            let per_sum = if NARROW { 2 } else { 4 };
                            for k in 0..N {
                                for h in 0..2 {
                                    for half in 0..2 {
                                        let mut s = _mm256_setzero_si256();
                                        for c in 4 * half..4 * half + 4 {
                                            let y = bcast4(&ys[k].qs, 32 * (2 * p + h) + 4 * c);
                                            s = dot(s, lv[h][c], y);
                                            if (c + 1) % per_sum == 0 {
                                                let t = finish(s, sc16[h][half], sc32[h][half]);
                                                isum[k] = _mm256_add_epi32(isum[k], t);
                                                s = _mm256_setzero_si256();
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        super::close_superblock(wb, ys, isum, &mut acc);
                    }
                    super::store(acc)
                }
            }
        };
    }

    crate::repack_k::x86::for_ymm_levels!(kernels);

    /// AVX-512 VNNI on zmm: one `vpdpbusd` covers two chunks of the eight rows (the 64 bytes at `384·p + 64·c2`
    /// of `q`, whose high bits are the 32 bytes at `384·p + 256 + 32·c2`, broadcast to both halves and shifted
    /// per half), with the two chunks' activation words spread to the halves by one `vpermd`.
    pub(super) mod avx512zmm {
        use std::arch::x86_64::*;

        use super::super::{BlockQ6_Kx8, BlockQ8K};

        /// See [`super::super::gemm_q6k`]; every `x[k]` must have `w.len()` blocks.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[allow(clippy::needless_range_loop)]
        pub(in super::super) fn gemm<const N: usize>(
            w: &[BlockQ6_Kx8],
            x: [&[BlockQ8K]; N],
        ) -> [[f32; 8]; N] {
            let low = _mm512_set1_epi8(0x0F);
            let m30 = _mm512_set1_epi8(0x30);
            // The lower half holds an even chunk (high bits at 0..4 of each byte: shift left by 4), the upper
            // half an odd one (bits 4..8: no shift).
            let shift = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_setzero_si256());
            // Word 0 of the source to lanes 0..8, word 1 to lanes 8..16.
            let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, wb) in w.iter().enumerate() {
                // SAFETY: the caller guarantees every `x[k]` has `w.len()` blocks; `i < w.len()`.
                let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                let mut isum = [_mm512_setzero_si512(); N];
                for p in 0..4 {
                    let mut lv = [[_mm512_setzero_si512(); 4]; 2];
                    for c2 in 0..4 {
                        // SAFETY: `q` has 1536 bytes, `384p + 256 + 32c2 + 32 ≤ 1536` and `384p + 64c2 + 64 ≤ 1536`;
                        // unaligned loads.
                        let (qh, raw) = unsafe {
                            (
                                _mm256_loadu_si256(wb.q.as_ptr().add(384 * p + 256 + 32 * c2).cast()),
                                _mm512_loadu_si512(wb.q.as_ptr().add(384 * p + 64 * c2).cast()),
                            )
                        };
                        let qh = _mm512_broadcast_i64x4(qh);
                        let h0 = _mm512_and_si512(_mm512_sllv_epi16(qh, shift), m30);
                        let h1 = _mm512_and_si512(_mm512_sllv_epi16(_mm512_srli_epi16::<2>(qh), shift), m30);
                        lv[0][c2] = _mm512_or_si512(_mm512_and_si512(raw, low), h0);
                        lv[1][c2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(raw), low), h1);
                    }
                    let mut sc = [[_mm512_setzero_si512(); 2]; 2];
                    for h in 0..2 {
                        for half in 0..2 {
                            let s = 2 * (2 * p + h) + half;
                            // SAFETY: `scales[s]` is 8 readable bytes; unaligned 64-bit load.
                            let v = _mm256_cvtepi8_epi32(unsafe {
                                _mm_loadl_epi64(wb.scales[s].as_ptr().cast())
                            });
                            sc[h][half] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), v);
                        }
                    }
                    for k in 0..N {
                        for h in 0..2 {
                            for half in 0..2 {
                                let mut s = _mm512_setzero_si512();
                                for c2 in 2 * half..2 * half + 2 {
                                    let at = 32 * (2 * p + h) + 8 * c2;
                                    // SAFETY: `at + 8 ≤ 256` bytes of `qs`; unaligned 64-bit load.
                                    let y8 = unsafe { _mm_loadl_epi64(ys[k].qs.as_ptr().add(at).cast()) };
                                    let y = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(y8));
                                    s = _mm512_dpbusd_epi32(s, lv[h][c2], y);
                                }
                                isum[k] = _mm512_add_epi32(isum[k], _mm512_mullo_epi32(s, sc[h][half]));
                            }
                        }
                    }
                }
                super::close_superblock(wb, ys, crate::repack_k::x86::fold_halves(isum), &mut acc);
            }
            super::store(acc)
        }
    }

    /// The sixteen-row kernel ([`super::PackK8::gemm16_zmm`] of [`super::BlockQ6_Kx8`]).
    pub(super) mod pair {
        use std::arch::x86_64::*;

        use super::super::{BlockQ6_Kx8, BlockQ8K};

        /// See [`crate::repack_k::PackK8::gemm16`]; the caller checked every length.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[allow(clippy::needless_range_loop)]
        pub(in super::super) fn gemm16<const N: usize>(
            w: [&[BlockQ6_Kx8]; 2],
            x: [&[BlockQ8K]; N],
        ) -> [[f32; 16]; N] {
            let low = _mm512_set1_epi8(0x0F);
            let m30 = _mm512_set1_epi8(0x30);
            let mut acc = [[_mm256_setzero_ps(); N]; 2];
            for i in 0..w[0].len() {
                // SAFETY: `i` is below both groups' length and every `x[k]`'s (checked by the caller).
                let b = unsafe { [w[0].get_unchecked(i), w[1].get_unchecked(i)] };
                // SAFETY: as above.
                let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                let mut isum = [_mm512_setzero_si512(); N];
                for p in 0..4 {
                    if N == 8 {
                        // The weights may come from memory (module docs of `repack`'s pair kernel).
                        crate::cpu::x86::prefetch_ahead_part::<_, 4>(b[0], p);
                        crate::cpu::x86::prefetch_ahead_part::<_, 4>(b[1], p);
                    }
                    for h in 0..2 {
                        // lv[c]: unsigned levels of chunk c of part 2p + h, sixteen rows.
                        let mut lv = [_mm512_setzero_si512(); 8];
                        for c2 in 0..4 {
                            // SAFETY: `q` has 1536 bytes and `384p + 256 + 32c2 + 32 ≤ 1536` in both blocks.
                            let qh = unsafe {
                                crate::cpu::x86::load_pair(&b[0].q, &b[1].q, 384 * p + 256 + 32 * c2)
                            };
                            // Bits 4·(c % 2) + 2h moved to bits 4..6 of each byte (16-bit shifts: the mask
                            // clears what crosses from the neighbouring byte).
                            let (even, odd) = if h == 0 {
                                (_mm512_slli_epi16::<4>(qh), qh)
                            } else {
                                (_mm512_slli_epi16::<2>(qh), _mm512_srli_epi16::<2>(qh))
                            };
                            for (o, hb) in [even, odd].into_iter().enumerate() {
                                let c = 2 * c2 + o;
                                // SAFETY: `384p + 32c + 32 ≤ 1536` in both blocks.
                                let raw =
                                    unsafe { crate::cpu::x86::load_pair(&b[0].q, &b[1].q, 384 * p + 32 * c) };
                                let nib = if h == 0 { raw } else { _mm512_srli_epi16::<4>(raw) };
                                lv[c] =
                                    _mm512_or_si512(_mm512_and_si512(nib, low), _mm512_and_si512(hb, m30));
                            }
                        }
                        // Scales of sub-blocks 2(2p + h) + half, group 0's eight then group 1's, as i32.
                        let mut sc = [_mm512_setzero_si512(); 2];
                        for half in 0..2 {
                            let s = 2 * (2 * p + h) + half;
                            // SAFETY: each `scales[s]` is 8 readable bytes; unaligned 64-bit loads.
                            sc[half] = _mm512_cvtepi8_epi32(unsafe {
                                _mm_unpacklo_epi64(
                                    _mm_loadl_epi64(b[0].scales[s].as_ptr().cast()),
                                    _mm_loadl_epi64(b[1].scales[s].as_ptr().cast()),
                                )
                            });
                        }
                        for k in 0..N {
                            let y = ys[k].qs.as_ptr();
                            for half in 0..2 {
                                let mut s = _mm512_setzero_si512();
                                for c in 4 * half..4 * half + 4 {
                                    // SAFETY: `32·(2p + h) + 4c + 4 ≤ 256` bytes of `qs`; unaligned.
                                    let y4 = unsafe {
                                        y.add(32 * (2 * p + h) + 4 * c).cast::<i32>().read_unaligned()
                                    };
                                    s = _mm512_dpbusd_epi32(s, lv[c], _mm512_set1_epi32(y4));
                                }
                                isum[k] = _mm512_add_epi32(isum[k], _mm512_mullo_epi32(s, sc[half]));
                            }
                        }
                    }
                }
                let [lo, hi] = crate::repack_k::x86::split_halves(isum);
                super::close_superblock(b[0], ys, lo, &mut acc[0]);
                super::close_superblock(b[1], ys, hi, &mut acc[1]);
            }
            crate::repack::join16(super::store(acc[0]), super::store(acc[1]))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::WeightBlock;
    use crate::test_util::{bits, random_q8k, random_rows};
    use rand::{SeedableRng, rngs::StdRng};

    /// Unsigned levels (`q ∈ 0..64`) of a Q6_K super-block in value order (`dequantize_row_q6_K`'s layout).
    fn levels(b: &BlockQ6K) -> [u8; QK_K] {
        crate::kquants::levels_q6k(b).map(|l| (l + 32) as u8)
    }

    /// Every level kernel this CPU has, for `N` tokens.
    fn every_level<const N: usize>(w: &[BlockQ6_Kx8], x: [&[BlockQ8K]; N]) -> Vec<(String, [[f32; 8]; N])> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))] // only x86 has SIMD levels
        let mut out = vec![];
        #[cfg(target_arch = "x86_64")]
        for level in [x86::Level::Avx2, x86::Level::AvxVnni, x86::Level::Avx512Vnni] {
            if level.supported() {
                // SAFETY: the level is supported; the block counts match.
                out.push((format!("{level:?}"), unsafe { x86::gemm(level, w, x) }));
            }
        }
        let _ = (w, x);
        out
    }

    #[test]
    fn packing_keeps_every_level_and_scale() {
        let mut rng = StdRng::seed_from_u64(3);
        let w = random_rows::<BlockQ6K>(&mut rng, silica_gguf::GgmlType::Q6_K, 8, QK_K);
        let b = BlockQ6_Kx8::pack(std::array::from_fn(|j| &w[j]));
        for (j, src) in w.iter().enumerate() {
            let u = levels(src);
            for (e, &v) in u.iter().enumerate() {
                assert_eq!(b.level(j, e), i32::from(v), "row {j} element {e}");
            }
            for s in 0..16 {
                assert_eq!(b.scales[s][j], src.scales[s]);
            }
            assert_eq!(b.d[j], src.d);
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn packed_q6k_products_equal_the_reference() {
        let mut rng = StdRng::seed_from_u64(22);
        for (rows, cols) in [(8, 256), (16, 768), (24, 2048)] {
            let w = random_rows::<BlockQ6K>(&mut rng, silica_gguf::GgmlType::Q6_K, rows, cols);
            let p = PackedQ6K::pack(&w, rows, cols).unwrap();
            assert_eq!(p.size_bytes(), rows * cols / QK_K * size_of::<BlockQ6K>());
            let nb = cols / QK_K;
            let xs: Vec<Vec<BlockQ8K>> = (0..4).map(|_| random_q8k(&mut rng, cols)).collect();
            let xr: [&[BlockQ8K]; 4] = std::array::from_fn(|k| xs[k].as_slice());
            for g in 0..rows / 8 {
                let want = gemm_q6k_ref(p.group(g), xr);
                assert_eq!(bits(gemm_q6k(p.group(g), xr)), bits(want));
                let one = gemm_q6k::<1>(p.group(g), [xr[2]]);
                assert_eq!(bits(one)[0], bits(want)[2]);
                for (name, got) in every_level(p.group(g), xr) {
                    assert_eq!(bits(got), bits(want), "{name}");
                }
                for (name, got) in every_level::<1>(p.group(g), [xr[3]]) {
                    assert_eq!(bits(got)[0], bits(want)[3], "{name}");
                }
                if g + 1 < rows / 8 {
                    // The pair kernel: both groups' values, to the bit.
                    let next = gemm_q6k_ref(p.group(g + 1), xr);
                    crate::test_util::check_pair_kernel([p.group(g), p.group(g + 1)], xr, &want, &next);
                }
                // Eight tokens, the AVX-512 prefill tile.
                let eight = crate::test_util::EIGHT_TOKENS;
                for (name, got) in every_level::<8>(p.group(g), eight.map(|k| xr[k])) {
                    for (k, &t) in eight.iter().enumerate() {
                        assert_eq!(bits(got)[k], bits(want)[t], "{name} of eight tokens, token {k}");
                    }
                }
                for k in 0..4 {
                    for j in 0..8 {
                        let r = 8 * g + j;
                        let row = &w[r * nb..(r + 1) * nb];
                        let v = BlockQ6K::vec_dot_ref(row, &xs[k]);
                        // Σ |terms|: the scale of the f32 rounding differences.
                        let mag: f32 = row
                            .iter()
                            .zip(&xs[k])
                            .map(|(b, y)| {
                                let sc: f32 = b.scales.iter().map(|&s| f32::from(s).abs()).sum();
                                (b.d.to_f32() * y.d).abs() * sc * 16.0 * 32.0 * 128.0
                            })
                            .sum();
                        assert!(
                            (v - want[k][j]).abs() <= 1e-6 * mag,
                            "rows {rows} cols {cols} row {r} token {k}: {v} vs {} (mag {mag})",
                            want[k][j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_levels_stay_exact() {
        // Every level 63, every scale −128, every activation −128: the integer bounds of the module docs.
        let mut b = BlockQ6K::zeroed();
        b.d = f16::from_f32(1.0);
        b.scales = [-128; 16];
        b.ql = [0xFF; QK_K / 2];
        b.qh = [0xFF; QK_K / 4];
        let w = vec![b; 8];
        let p = PackedQ6K::pack(&w, 8, QK_K).unwrap();
        let mut y = BlockQ8K::zeroed();
        y.d = 1.0;
        y.qs = [-128; QK_K];
        y.bsums = [-2048; QK_K / 16];
        let x = [y];
        let want = gemm_q6k_ref::<1>(p.group(0), [&x]);
        assert_eq!(want[0][0], (-128.0 * 31.0 * -128.0 * 256.0) as f32);
        assert_eq!(bits(gemm_q6k::<1>(p.group(0), [&x])), bits(want));
        for (name, got) in every_level::<1>(p.group(0), [&x]) {
            assert_eq!(bits(got), bits(want), "{name}");
        }
    }
}
