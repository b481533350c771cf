//! Q4_K repacked eight rows at a time against Q8_K activations, for prefill and generation on x86-64 and on
//! aarch64 with the dot-product extension (llama.cpp repacks Q4_K the same way: `q4_K_8x8_q8_K` in
//! `ggml-cpu/repack.cpp`; the layout and kernels here are silica's own; the aarch64 kernel is described at
//! `neon::gemm`'s module).
//!
//! A [`BlockQ4_Kx8`] holds super-block `i` (256 values) of eight consecutive rows: their `d` and `dmin`, their
//! 6-bit sub-block scales and mins rearranged so that the kernels unpack eight rows' values with a few byte-lane
//! masks and shifts (the copy is exactly the file's size), and their nibbles arranged so that one
//! 32-byte load gives, for four consecutive elements of two sub-blocks (low and high nibbles), the levels of all
//! eight rows (lane `j` = row `j`, as [`crate::repack::BlockQ4_0x8`]). An integer dot product of that vector with
//! the four matching activation bytes broadcast to all lanes (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd` on AVX2)
//! accumulates one lane per row; after a sub-block of 32 values, a lane-wise multiply by the eight row scales
//! (`vpmulld`; on AVX2 the scale is fused into the `vpmaddwd`) adds it into the super-block's exact integer sum.
//! With AVX-512 and two or more tokens, one zmm `vpdpbusd` covers two such chunks (two adjacent 32-byte vectors,
//! the two activation words spread to the halves by one `vpermd`); the halves are folded once per super-block.
//! With one token the weights stream from memory and the ymm kernel (EVEX `vpdpbusd`) is used instead: on the
//! test machine (AMD EPYC Zen 4, 2 threads, 40 × 8192×2048 matrices = 377 MB, so from DRAM) the zmm kernel read
//! 26–28 GB/s where the ymm one and the row-major `vec_dot` read 40–45 GB/s, though in cache (one 8192×2048
//! matrix) the zmm kernel is the fastest (zmm 104, ymm 89, row-major 51 GB/s). Padding the blocks to a multiple
//! of 64 bytes, so no zmm load straddles two cache lines, did not change the DRAM figure; the cause is not
//! known. With four tokens per tile the weights come from cache and the zmm kernel is ~20% faster (divan `pp`).
//! For two tokens or more [`PackK8::gemm16`] takes two groups at once instead, with the activation bytes as
//! broadcast memory operands (no `vpermd`): divan `pp` 2048×2048 6.2 → 5.1 ms, 1B-shape Q4_K_M pp512 296–302
//! → 358–363 t/s in alternating runs. Q6_K's does the same ([`crate::repack_q6k`]).
//!
//! Per super-block, row `j` and token:
//!
//! * `isum = Σ_sb sc[sb][j] · Σ_{e<32} q[j][32·sb + e] · y[32·sb + e]` (exact i32: `|isum| ≤ 8·63·32·15·128 < 2³¹`);
//! * `msum = Σ_sb m[sb][j] · (bsums[2·sb] + bsums[2·sb + 1])` (exact i32);
//! * `acc[j] = fma(x.d, fma(d[j], isum, −(dmin[j] · msum)), acc[j])` in f32 (one rounding per operation, in this
//!   order, on every path: [`gemm_q4k_ref`] and [`gemm_q4k`] agree bit for bit).
//!
//! The integers are the ones of ggml's `ggml_vec_dot_q4_K_q8_K`; the results differ from it (and from
//! [`crate::WeightBlock::vec_dot_ref`]) only by f32 rounding.
//!
//! `silica-model` repacks every Q4_K matrix at load where [`has_fast_path_k`] holds. Measured on the
//! 1B-shape Q4_K_M file (2 threads, AMD EPYC, alternating runs against the row-major kernels): pp512 113 → 190
//! t/s, tg128 52–53 → 58–61 t/s.
#![allow(unsafe_code)]

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::blocks::{BlockQ4K, BlockQ8K, QK_K};
use crate::kquants::unpack_scales_mins;

/// Super-block `i` of eight rows of a Q4_K matrix, repacked (1152 bytes, as eight [`BlockQ4K`]).
///
/// Sub-block `sb` (0..8) of a row holds its elements `32·sb .. 32·sb + 32`.
///
/// * `qs[256·p + 32·c + 4·j + t]` holds, for row `j`, element `4c + t` of sub-block `2p` in its low nibble and
///   element `4c + t` of sub-block `2p + 1` in its high nibble (`p` in 0..4, `c` in 0..8, `t` in 0..4). That is
///   source byte `32·p + 4·c + t` of row `j`'s [`BlockQ4K::qs`], moved; one 32-byte load at `256·p + 32·c` gives
///   lane `j` = row `j`.
/// * The 6-bit sub-block scales and mins (ggml's `get_scale_min_k4`) of the sub-block pair `p` (sub-blocks `2p`
///   and `2p + 1`), one byte per row `j` in each of three 8-byte arrays: `sc_lo[p][j]` = low four bits of the
///   scale of `2p` | those of `2p + 1` << 4; `mn_lo[p][j]` the same for the mins; `hi[p][j]` = the top two bits
///   of scale `2p`, scale `2p + 1`, min `2p`, min `2p + 1` at bits 0, 2, 4, 6. The kernels unpack the eight rows'
///   values of a pair with a few byte-lane masks and shifts ([`BlockQ4_Kx8::scale`], [`BlockQ4_Kx8::min`] are
///   the scalar reading). Kept unpacked, one byte each, they made the copy 2.8% larger than the file's tensor.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_Kx8 {
    /// Super-block scales of the sub-block scales, one per row.
    pub d: [f16; 8],
    /// Super-block scales of the sub-block mins, one per row.
    pub dmin: [f16; 8],
    /// Low four bits of the sub-block scales, `[pair][row]`, as described above.
    pub sc_lo: [[u8; 8]; 4],
    /// Low four bits of the sub-block mins, `[pair][row]`.
    pub mn_lo: [[u8; 8]; 4],
    /// Top two bits of the pair's two scales and two mins, `[pair][row]`.
    pub hi: [[u8; 8]; 4],
    /// Nibbles, interleaved as described above.
    pub qs: [u8; 8 * QK_K / 2],
}

const _: () = assert!(size_of::<BlockQ4_Kx8>() == 8 * size_of::<BlockQ4K>());

impl BlockQ4_Kx8 {
    /// Packs super-block `i` of eight rows (`src[j]` is row `j`'s).
    pub fn pack(src: [&BlockQ4K; 8]) -> Self {
        let mut b = BlockQ4_Kx8::zeroed();
        Self::pack_into(src, &mut b);
        b
    }

    /// [`Self::pack`] into `b`, which holds zeros.
    pub fn pack_into(src: [&BlockQ4K; 8], b: &mut Self) {
        for (j, s) in src.iter().enumerate() {
            b.d[j] = s.d;
            b.dmin[j] = s.dmin;
            let sm = unpack_scales_mins(&s.scales);
            for p in 0..4 {
                let (s0, s1, m0, m1) = (sm[2 * p], sm[2 * p + 1], sm[8 + 2 * p], sm[8 + 2 * p + 1]);
                b.sc_lo[p][j] = (s0 & 0x0F) | (s1 & 0x0F) << 4;
                b.mn_lo[p][j] = (m0 & 0x0F) | (m1 & 0x0F) << 4;
                b.hi[p][j] = s0 >> 4 | (s1 >> 4) << 2 | (m0 >> 4) << 4 | (m1 >> 4) << 6;
            }
            for p in 0..4 {
                for c in 0..8 {
                    for t in 0..4 {
                        b.qs[256 * p + 32 * c + 4 * j + t] = s.qs[32 * p + 4 * c + t];
                    }
                }
            }
        }
    }

    /// Row `j`'s level (0..16) of element `e` (0..32) of sub-block `sb` (0..8), for the reference.
    pub fn level(&self, j: usize, sb: usize, e: usize) -> i32 {
        let byte = self.qs[256 * (sb / 2) + 32 * (e / 4) + 4 * j + e % 4];
        i32::from(if sb % 2 == 1 { byte >> 4 } else { byte & 0x0F })
    }

    /// Row `j`'s 6-bit scale of sub-block `sb`.
    pub fn scale(&self, j: usize, sb: usize) -> i32 {
        let (p, h) = (sb / 2, sb % 2);
        i32::from((self.sc_lo[p][j] >> (4 * h)) & 0x0F | ((self.hi[p][j] >> (2 * h)) & 3) << 4)
    }

    /// Row `j`'s 6-bit min of sub-block `sb`.
    pub fn min(&self, j: usize, sb: usize) -> i32 {
        let (p, h) = (sb / 2, sb % 2);
        i32::from((self.mn_lo[p][j] >> (4 * h)) & 0x0F | ((self.hi[p][j] >> (4 + 2 * h)) & 3) << 4)
    }
}

/// A k-quant super-block of eight rows repacked for one of this crate's eight-row kernels ([`BlockQ4_Kx8`],
/// [`crate::repack_q6k::BlockQ6_Kx8`]).
pub trait PackK8: Pod + Send + Sync + std::fmt::Debug + 'static {
    /// The row-major block it is made from.
    type Src: Pod + Sync;
    /// Packs super-block `i` of eight rows (`src[j]` is row `j`'s) into `b`, which holds zeros.
    fn pack_into(src: [&Self::Src; 8], b: &mut Self);
    /// `out[k][j]` = row `j` of the group `w` times token `x[k]`, on the fastest path this CPU has.
    ///
    /// # Panics
    /// If some `x[k]` does not have `w.len()` blocks.
    fn gemm<const N: usize>(w: &[Self], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N];

    /// The sixteen-row kernel behind [`Self::gemm16`]: one zmm `vpdpbusd` takes the same four elements of both
    /// groups' eight rows (group 0 in the low half, group 1 in the high) times the four activation bytes as a
    /// broadcast memory operand, as [`crate::repack::gemm16`] does for Q4_0.
    ///
    /// # Safety
    /// The CPU has AVX-512 VNNI ([`crate::repack::has_pair_kernel`]); the groups have equal lengths and every
    /// `x[k]` has their length.
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm16_zmm<const N: usize>(w: [&[Self]; 2], x: [&[BlockQ8K]; N]) -> [[f32; 16]; N];

    /// `out[k][8h + j]` = row `j` of group `w[h]` (two groups of equal length, sixteen rows) times token `x[k]`,
    /// the same values, to the bit, as [`Self::gemm`] of each group: `Self::gemm16_zmm` (x86-64) where the CPU has
    /// it, else those two calls.
    ///
    /// # Panics
    /// If the groups' lengths differ or some `x[k]` does not have their length.
    fn gemm16<const N: usize>(w: [&[Self]; 2], x: [&[BlockQ8K]; N]) -> [[f32; 16]; N] {
        assert_eq!(w[0].len(), w[1].len(), "PackK8::gemm16: group lengths");
        for xk in &x {
            assert_eq!(xk.len(), w[0].len(), "PackK8::gemm16: block counts");
        }
        #[cfg(target_arch = "x86_64")]
        if crate::repack::has_pair_kernel() {
            // SAFETY: `has_pair_kernel` detected AVX-512 VNNI (with AVX2, FMA, F16C, F, BW, VL); lengths checked.
            return unsafe { Self::gemm16_zmm(w, x) };
        }
        crate::repack::join16(Self::gemm(w[0], x), Self::gemm(w[1], x))
    }
}

impl PackK8 for BlockQ4_Kx8 {
    type Src = BlockQ4K;
    fn pack_into(src: [&BlockQ4K; 8], b: &mut Self) {
        BlockQ4_Kx8::pack_into(src, b)
    }
    fn gemm<const N: usize>(w: &[Self], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
        gemm_q4k(w, x)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm16_zmm<const N: usize>(w: [&[Self]; 2], x: [&[BlockQ8K]; N]) -> [[f32; 16]; N] {
        // SAFETY: the caller guarantees the features and the lengths.
        unsafe { x86::pair::gemm16(w, x) }
    }
}

/// A `[rows, cols]` k-quant matrix repacked by groups of eight rows: group `g` is `cols / 256` blocks `P`.
#[derive(Debug)]
pub struct PackedK<P> {
    blocks: crate::alloc::WeightBuf<P>,
    rows: usize,
    cols: usize,
}

/// A repacked Q4_K matrix.
pub type PackedQ4K = PackedK<BlockQ4_Kx8>;

impl<P: PackK8> PackedK<P> {
    /// Repacks row-major super-blocks (`rows · cols / 256` of them, as in the GGUF), or `None` unless `rows` is a
    /// multiple of 8, `cols` a multiple of 256 and `w` holds exactly `rows · cols / 256` blocks. Groups are packed
    /// in parallel on the process pool ([`crate::global_pool`]).
    pub fn pack(w: &[P::Src], rows: usize, cols: usize) -> Option<Self> {
        if !rows.is_multiple_of(8) || !cols.is_multiple_of(QK_K) || w.len() != rows * cols / QK_K {
            return None;
        }
        let blocks = crate::repack::pack_groups(w, rows, cols / QK_K, P::pack_into);
        Some(PackedK { blocks, rows, cols })
    }

    /// Output width (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: the row-major size (the repacked blocks are the size of the eight they replace).
    pub fn size_bytes(&self) -> usize {
        self.blocks.len() * size_of::<P>()
    }

    /// The `cols / 256` blocks of row group `g` (rows `8g..8g+8`).
    ///
    /// # Panics
    /// If `g ≥ rows / 8`.
    pub fn group(&self, g: usize) -> &[P] {
        let nb = self.cols / QK_K;
        &self.blocks[g * nb..(g + 1) * nb]
    }
}

/// Scalar reference: `out[k][j]` = row `j` of the group `w` times token `x[k]`, accumulated over the super-blocks
/// with the integer sums and f32 operation order of the module docs.
///
/// # Panics
/// If some `x[k]` does not have `w.len()` blocks.
#[allow(clippy::needless_range_loop)]
pub fn gemm_q4k_ref<const N: usize>(w: &[BlockQ4_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
    for xk in &x {
        assert_eq!(xk.len(), w.len(), "repack_k::gemm_q4k_ref: block counts");
    }
    let mut out = [[0f32; 8]; N];
    for (i, wb) in w.iter().enumerate() {
        for k in 0..N {
            let yb = &x[k][i];
            for j in 0..8 {
                let mut isum = 0i32;
                let mut msum = 0i32;
                for sb in 0..8 {
                    let dot: i32 = (0..32)
                        .map(|e| wb.level(j, sb, e) * i32::from(yb.qs[32 * sb + e]))
                        .sum();
                    isum += wb.scale(j, sb) * dot;
                    msum += wb.min(j, sb) * (i32::from(yb.bsums[2 * sb]) + i32::from(yb.bsums[2 * sb + 1]));
                }
                let b = wb.dmin[j].to_f32() * msum as f32;
                let t = wb.d[j].to_f32().mul_add(isum as f32, -b);
                out[k][j] = yb.d.mul_add(t, out[k][j]);
            }
        }
    }
    out
}

/// Whether this CPU has SIMD kernels for [`gemm_q4k`] and [`crate::repack_q6k::gemm_q6k`]: x86-64 with AVX2,
/// FMA and F16C (AVX-VNNI or AVX-512 VNNI used when present), or aarch64 with the dot-product extension.
/// Elsewhere the row-major k-quant kernels are faster than the scalar references, so callers should not repack.
pub fn has_fast_path_k() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::best().is_some();
    #[cfg(target_arch = "aarch64")]
    return crate::cpu::arm::has_dotprod();
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

/// `out[k][j]` for the eight rows of one group and `N` tokens on the fastest path this CPU has (bit-identical to
/// [`gemm_q4k_ref`]).
///
/// # Panics
/// If some `x[k]` does not have `w.len()` blocks.
pub fn gemm_q4k<const N: usize>(w: &[BlockQ4_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
    for xk in &x {
        assert_eq!(xk.len(), w.len(), "repack_k::gemm_q4k: block counts");
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
    gemm_q4k_ref(w, x)
}

/// aarch64 kernel ([`gemm_q4k`] where the CPU has NEON and the dot-product extension), after
/// [`mod@crate::repack`]'s: a 16-byte half of a 32-byte chunk of [`BlockQ4_Kx8::qs`] is four elements of two
/// sub-blocks (low and high nibbles) of four rows, and `SDOT (by element)` against the token's four activation
/// bytes of those elements adds each row's four products to its lane. Per sub-block, the eight chunks' sums are
/// multiplied by the four rows' scales into the super-block's sum (`MLA`); the mins' sum takes the Q8_K `bsums` of
/// the sub-block pairs (`SMLAL` by a scalar). The scales and mins of all eight rows are unpacked once per
/// super-block with byte-lane masks and shifts, the same reading as [`BlockQ4_Kx8::scale`] and
/// [`BlockQ4_Kx8::min`]. The integers are the reference's, and the f32 steps its operations in its order.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{BlockQ4_Kx8, BlockQ8K};
    use crate::cpu::arm::{half_i32, sdot8, store8, widen_hi, widen_lo};

    /// The eight sub-blocks' 6-bit scales and mins of the eight rows, lane `j` = row `j`, widened to u16.
    #[target_feature(enable = "neon")]
    pub(super) fn scales_mins(wb: &BlockQ4_Kx8) -> ([uint16x8_t; 8], [uint16x8_t; 8]) {
        let low = vdupq_n_u8(0x0F);
        let three = vdupq_n_u8(3);
        let mut sc = [vdupq_n_u16(0); 8];
        let mut mn = [vdupq_n_u16(0); 8];
        for v in 0..2 {
            // Pairs 2v and 2v + 1: byte 8·(p − 2v) + j of each 16-byte load.
            // SAFETY: `sc_lo`, `mn_lo` and `hi` are 32 bytes each; 16 are read from byte 16·v; unaligned loads.
            let (s, m, h) = unsafe {
                (
                    vld1q_u8(wb.sc_lo.as_flattened().as_ptr().add(16 * v)),
                    vld1q_u8(wb.mn_lo.as_flattened().as_ptr().add(16 * v)),
                    vld1q_u8(wb.hi.as_flattened().as_ptr().add(16 * v)),
                )
            };
            let s_even = vorrq_u8(vandq_u8(s, low), vshlq_n_u8::<4>(vandq_u8(h, three)));
            let s_odd = vorrq_u8(
                vshrq_n_u8::<4>(s),
                vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(h), three)),
            );
            let m_even = vorrq_u8(
                vandq_u8(m, low),
                vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(h), three)),
            );
            let m_odd = vorrq_u8(vshrq_n_u8::<4>(m), vshlq_n_u8::<4>(vshrq_n_u8::<6>(h)));
            // Sub-blocks 4v, 4v + 1 (pair 2v, the low eight bytes) and 4v + 2, 4v + 3 (pair 2v + 1, the high).
            sc[4 * v] = vmovl_u8(vget_low_u8(s_even));
            sc[4 * v + 1] = vmovl_u8(vget_low_u8(s_odd));
            sc[4 * v + 2] = vmovl_high_u8(s_even);
            sc[4 * v + 3] = vmovl_high_u8(s_odd);
            mn[4 * v] = vmovl_u8(vget_low_u8(m_even));
            mn[4 * v + 1] = vmovl_u8(vget_low_u8(m_odd));
            mn[4 * v + 2] = vmovl_high_u8(m_even);
            mn[4 * v + 3] = vmovl_high_u8(m_odd);
        }
        (sc, mn)
    }

    /// See [`super::gemm_q4k`]. Each half (rows 0..4, then 4..8) of each sub-block pair unpacks its levels once for
    /// the `N` tokens.
    ///
    /// # Safety
    /// The CPU must have NEON and the dot-product extension; every `x[k]` must have `w.len()` blocks.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn gemm<const N: usize>(w: &[BlockQ4_Kx8], x: [&[BlockQ8K]; N]) -> [[f32; 8]; N] {
        let low = vdupq_n_u8(0x0F);
        let mut acc = [[vdupq_n_f32(0.0); 2]; N];
        for (i, wb) in w.iter().enumerate() {
            let (sc, mn) = scales_mins(wb);
            // SAFETY: `d` and `dmin` are 16 bytes each; unaligned loads.
            let (dh, mh) = unsafe {
                (
                    vld1q_u16(wb.d.as_ptr().cast()),
                    vld1q_u16(wb.dmin.as_ptr().cast()),
                )
            };
            let d = [widen_lo(dh), widen_hi(dh)];
            let dmin = [widen_lo(mh), widen_hi(mh)];
            // SAFETY: the caller guarantees `w.len()` blocks in every `x[k]`; `i < w.len()`.
            let yb: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
            // Σ_sb min · (bsums[2sb] + bsums[2sb + 1]) of rows 0..4 and 4..8, per token; each pair sum is at most
            // 32 · 128 in magnitude.
            let msum: [[int32x4_t; 2]; N] = std::array::from_fn(|k| {
                let bs = &yb[k].bsums;
                let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for (sb, m) in mn.iter().enumerate() {
                    let (pair, m) = (bs[2 * sb] + bs[2 * sb + 1], vreinterpretq_s16_u16(*m));
                    lo = vmlal_n_s16(lo, vget_low_s16(m), pair);
                    hi = vmlal_high_n_s16(hi, m, pair);
                }
                [lo, hi]
            });
            for h in 0..2 {
                let mut isum = [vdupq_n_s32(0); N];
                for p in 0..4 {
                    // Levels of rows 4h..4h+4: lv[q] holds chunks 4q..4q+4 of sub-block 2p (low nibbles), then of
                    // 2p + 1 (high nibbles), so that `sdot8` takes both sub-blocks' elements 16q..16q+16 in its two
                    // chains.
                    let mut lv = [[vdupq_n_s8(0); 8]; 2];
                    for c in 0..8 {
                        // SAFETY: `qs` is 1024 bytes; 16 are read from 256·p + 32·c + 16·h < 1024; unaligned.
                        let raw = unsafe { vld1q_u8(wb.qs.as_ptr().add(256 * p + 32 * c + 16 * h)) };
                        lv[c / 4][c % 4] = vreinterpretq_s8_u8(vandq_u8(raw, low));
                        lv[c / 4][4 + c % 4] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw));
                    }
                    // The scales are 6-bit, so sign- and zero-extension agree.
                    let (sc_lo, sc_hi) = (
                        half_i32(vreinterpretq_s16_u16(sc[2 * p]), h),
                        half_i32(vreinterpretq_s16_u16(sc[2 * p + 1]), h),
                    );
                    for k in 0..N {
                        let y = yb[k].qs.as_ptr();
                        // Elements 0..16 and 16..32 of sub-blocks 2p and 2p + 1.
                        // SAFETY: `qs` is 256 bytes; 16 are read from 64·p + 16·q ≤ 240; unaligned.
                        let [a0, a1, b0, b1] =
                            std::array::from_fn(|q| unsafe { vld1q_s8(y.add(64 * p + 16 * q)) });
                        let st = sdot8([vdupq_n_s32(0); 2], &lv[0], [a0, b0]);
                        let [s, t] = sdot8(st, &lv[1], [a1, b1]);
                        isum[k] = vmlaq_s32(vmlaq_s32(isum[k], s, sc_lo), t, sc_hi);
                    }
                }
                for k in 0..N {
                    let b = vmulq_f32(dmin[h], vcvtq_f32_s32(msum[k][h]));
                    let t = vfmaq_f32(vnegq_f32(b), d[h], vcvtq_f32_s32(isum[k]));
                    acc[k][h] = vfmaq_f32(acc[k][h], vdupq_n_f32(yb[k].d), t);
                }
            }
        }
        store8(acc)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {

    use std::arch::x86_64::*;

    use super::{BlockQ4_Kx8, BlockQ8K};

    pub(super) use crate::cpu::x86::{Level, best};

    /// The kernel at `level`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU ([`Level::supported`]) and every `x[k]` must have `w.len()` blocks.
    pub(super) unsafe fn gemm<const N: usize>(
        level: Level,
        w: &[BlockQ4_Kx8],
        x: [&[BlockQ8K]; N],
    ) -> [[f32; 8]; N] {
        // SAFETY: the caller guarantees the level's features and the block counts.
        unsafe {
            match level {
                Level::Avx2 => avx2::gemm(w, x),
                Level::AvxVnni => avxvnni::gemm(w, x),
                // One token streams the weights from memory, where the ymm kernel reads at the row-major
                // kernel's rate and the zmm one fell 35% short; with more tokens the weights are in cache and
                // the zmm kernel is faster (see the module docs).
                Level::Avx512Vnni if N == 1 => avx512ymm::gemm(w, x),
                Level::Avx512Vnni => avx512zmm::gemm(w, x),
            }
        }
    }

    /// The 6-bit sub-block scales and mins of the eight rows, unpacked from [`BlockQ4_Kx8`]'s layout with a few
    /// ymm masks and shifts (16-bit shifts: the masks clear what crosses from the neighbouring byte):
    /// `scales[sb][j]` is row `j`'s scale of sub-block `sb`; `mins[q][2j + h]` row `j`'s min of sub-block
    /// `2q + h`, the pairs the closing `vpmaddwd` takes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn unpack_scales_mins(wb: &BlockQ4_Kx8) -> ([[u8; 8]; 8], [[u8; 16]; 4]) {
        // SAFETY: each field is 32 readable bytes; unaligned loads.
        let (lo, mlo, hi) = unsafe {
            (
                _mm256_loadu_si256(wb.sc_lo.as_ptr().cast()),
                _mm256_loadu_si256(wb.mn_lo.as_ptr().cast()),
                _mm256_loadu_si256(wb.hi.as_ptr().cast()),
            )
        };
        let nib = _mm256_set1_epi8(0x0F);
        // (No closures here: they are not inlined into target-feature code.)
        // Byte 8p + j of each: row j's value of sub-block 2p (even) or 2p + 1 (odd).
        let s_even = _mm256_or_si256(
            _mm256_and_si256(lo, nib),
            _mm256_slli_epi16::<4>(_mm256_and_si256(hi, _mm256_set1_epi8(0x03))),
        );
        let s_odd = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(lo), nib),
            _mm256_slli_epi16::<2>(_mm256_and_si256(hi, _mm256_set1_epi8(0x0C))),
        );
        let m_even = _mm256_or_si256(
            _mm256_and_si256(mlo, nib),
            _mm256_and_si256(hi, _mm256_set1_epi8(0x30)),
        );
        let m_odd = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(mlo), nib),
            _mm256_srli_epi16::<2>(_mm256_and_si256(hi, _mm256_set1_epi8(0xC0_u8 as i8))),
        );
        // Scales: sub-block order 0..8 = pairs' (even, odd) in turn: interleave 8-byte halves.
        let sc_a = _mm256_unpacklo_epi64(s_even, s_odd); // p0 even, p0 odd | p2 even, p2 odd
        let sc_b = _mm256_unpackhi_epi64(s_even, s_odd); // p1 even, p1 odd | p3 even, p3 odd
        // Mins: row by row (even, odd) within each pair.
        let mn_a = _mm256_unpacklo_epi8(m_even, m_odd); // pair 0 | pair 2
        let mn_b = _mm256_unpackhi_epi8(m_even, m_odd); // pair 1 | pair 3
        let mut scales = [[0u8; 8]; 8];
        let mut mins = [[0u8; 16]; 4];
        // SAFETY: both arrays are 64 writable bytes; unaligned stores.
        unsafe {
            let sp = scales.as_mut_ptr().cast::<__m256i>();
            _mm256_storeu_si256(sp, _mm256_permute2x128_si256::<0x20>(sc_a, sc_b));
            _mm256_storeu_si256(sp.add(1), _mm256_permute2x128_si256::<0x31>(sc_a, sc_b));
            let mp = mins.as_mut_ptr().cast::<__m256i>();
            _mm256_storeu_si256(mp, _mm256_permute2x128_si256::<0x20>(mn_a, mn_b));
            _mm256_storeu_si256(mp.add(1), _mm256_permute2x128_si256::<0x31>(mn_a, mn_b));
        }
        (scales, mins)
    }

    /// Closes super-block `wb` for each token: `acc[k] += y_k.d · (d·isum_k − dmin·msum_k)` for the eight rows,
    /// with `msum = Σ_sb min[sb] · (bsums[2sb] + bsums[2sb+1])` (the order [`super::gemm_q4k_ref`] follows).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn close_superblock<const N: usize>(
        wb: &BlockQ4_Kx8,
        mins_u8: &[[u8; 16]; 4],
        ys: [&BlockQ8K; N],
        isum: [__m256i; N],
        acc: &mut [__m256; N],
    ) {
        let ones = _mm256_set1_epi16(1);
        // SAFETY: `d` and `dmin` are 16 readable bytes each; unaligned loads.
        let (dw, dm) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr().cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(wb.dmin.as_ptr().cast())),
            )
        };
        let mut mins = [_mm256_setzero_si256(); 4];
        for (m, raw) in mins.iter_mut().zip(mins_u8) {
            // SAFETY: `raw` is 16 readable bytes; unaligned load.
            *m = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(raw.as_ptr().cast()) });
        }
        for k in 0..N {
            // SAFETY: `bsums` is 32 readable bytes; unaligned load.
            let bs = unsafe { _mm256_loadu_si256(ys[k].bsums.as_ptr().cast()) };
            // Sub-block sums S_0..S_7 (|S| ≤ 4096), as i16: [S0..S3, S0..S3 | S4..S7, S4..S7].
            let bs = _mm256_madd_epi16(bs, ones);
            let bs = _mm256_packs_epi32(bs, bs);
            let mut msum = _mm256_setzero_si256();
            for (q, idx) in [0, 1, 4, 5].into_iter().enumerate() {
                // The pair (S_2q, S_2q+1) in every lane.
                let pair = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(idx));
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mins[q], pair));
            }
            let b = _mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum));
            let t = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[k]), b);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(ys[k].d), t, acc[k]);
        }
    }

    /// The eight-row accumulators as arrays.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn store<const N: usize>(acc: [__m256; N]) -> [[f32; 8]; N] {
        let mut out = [[0f32; 8]; N];
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: `o` is 32 writable bytes; unaligned store.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
        }
        out
    }

    /// The sixteen-row integer sums of the pair kernels split into the two groups' eight-row sums: each token's
    /// low half (group 0) and high half (group 1).
    #[target_feature(enable = "avx2,avx512f")]
    #[inline]
    pub(crate) fn split_halves<const N: usize>(isum: [__m512i; N]) -> [[__m256i; N]; 2] {
        let mut out = [[_mm256_setzero_si256(); N]; 2];
        for (k, s) in isum.into_iter().enumerate() {
            out[0][k] = _mm512_castsi512_si256(s);
            out[1][k] = _mm512_extracti64x4_epi64::<1>(s);
        }
        out
    }

    /// The eight-row integer sums of the zmm kernels: each token's low and high halves added.
    #[target_feature(enable = "avx2,avx512f")]
    #[inline]
    pub(crate) fn fold_halves<const N: usize>(isum: [__m512i; N]) -> [__m256i; N] {
        let mut out = [_mm256_setzero_si256(); N];
        for (o, s) in out.iter_mut().zip(isum) {
            *o = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
        }
        out
    }

    /// The helpers of one ymm level of the eight-row k-quant kernels (this module's Q4_K and
    /// [`crate::repack_q6k`]'s Q6_K): `NARROW`, `dot` and `finish`, compiled for the features `$feat`.
    macro_rules! ymm_helpers {
        (
            $feat:literal,
            narrow: $narrow:literal,
            dot: |$acc:ident, $a:ident, $b:ident| $dot:expr,
            finish: |$s:ident, $sc16:ident, $sc32:ident| $fin:expr
        ) => {
            /// Whether `dot` sums in 16-bit lanes (AVX2: `vpmaddubsw` pair sums, added as i16 until `finish`
            /// widens them), so that a kernel must `finish` a sum before it could leave i16: each `dot` adds
            /// at most `2 · L · 128` in magnitude per lane for levels up to `L`, so eight dots of 4-bit levels
            /// (30720) or two of 6-bit ones (32256) fit (the `extreme_levels_stay_exact` tests reach these
            /// bounds). Elsewhere `dot` sums in i32 lanes.
            #[allow(dead_code)] // Q4_K's sub-block of eight dots fits either way; the Q6_K kernels read it.
            const NARROW: bool = $narrow;

            /// `acc +` the dot products of unsigned `a` and signed `b` bytes: per i16 lane the pair sums
            /// ([`NARROW`]), else per i32 lane the 4-byte sums.
            #[target_feature(enable = $feat)]
            #[inline]
            fn dot($acc: __m256i, $a: __m256i, $b: __m256i) -> __m256i {
                $dot
            }

            /// A sum `s` of [`dot`]s times each row's scale, in i32 lanes: `sc16` holds the scale in both i16
            /// halves of each lane (for `vpmaddwd`), `sc32` as one i32.
            #[target_feature(enable = $feat)]
            #[inline]
            fn finish($s: __m256i, $sc16: __m256i, $sc32: __m256i) -> __m256i {
                $fin
            }
        };
    }

    /// Expands `$kernels!(docs, module, features, narrow: .., dot: .., finish: ..)` once per ymm level: AVX2
    /// (`vpmaddubsw` pair sums added as i16, then one `vpmaddwd` by the row scales per sum: it had one per
    /// `vpmaddubsw`), AVX-VNNI (VEX `vpdpbusd`, `vpmulld` by the row scales per sub-block) and AVX-512 VNNI on
    /// ymm (EVEX `vpdpbusd`, the one-token kernel).
    macro_rules! for_ymm_levels {
        ($kernels:ident) => {
            $kernels!(
                /// AVX2: `vpmaddubsw` pair sums added as i16, then `vpmaddwd` by the row scales.
                avx2, "avx2,fma,f16c",
                narrow: true,
                dot: |acc, a, b| _mm256_add_epi16(acc, _mm256_maddubs_epi16(a, b)),
                finish: |s, sc16, _sc32| _mm256_madd_epi16(s, sc16)
            );
            $kernels!(
                /// AVX-VNNI: `vpdpbusd` (VEX), `vpmulld` by the row scales per sub-block.
                avxvnni, "avx2,fma,f16c,avxvnni",
                narrow: false,
                dot: |acc, a, b| _mm256_dpbusd_avx_epi32(acc, a, b),
                finish: |s, _sc16, sc32| _mm256_mullo_epi32(s, sc32)
            );
            $kernels!(
                /// AVX-512 VNNI on ymm (EVEX `vpdpbusd`), `vpmulld` by the row scales per sub-block: the
                /// one-token kernel.
                avx512ymm, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                narrow: false,
                dot: |acc, a, b| _mm256_dpbusd_epi32(acc, a, b),
                finish: |s, _sc16, sc32| _mm256_mullo_epi32(s, sc32)
            );
        };
    }

    pub(crate) use {for_ymm_levels, ymm_helpers};

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

                use super::super::{BlockQ4_Kx8, BlockQ8K};
                use crate::cpu::x86::bcast4;

                crate::repack_k::x86::ymm_helpers!(
                    $feat,
                    narrow: $narrow,
                    dot: |$acc, $a, $b| $dot,
                    finish: |$s, $sc16, $sc32| $fin
                );

                /// See [`super::super::gemm_q4k`]; every `x[k]` must have `w.len()` blocks.
                #[target_feature(enable = $feat)]
                #[allow(clippy::needless_range_loop)]
                pub(in super::super) fn gemm<const N: usize>(
                    w: &[BlockQ4_Kx8],
                    x: [&[BlockQ8K]; N],
                ) -> [[f32; 8]; N] {
                    let low = _mm256_set1_epi8(0x0F);
                    let mut acc = [_mm256_setzero_ps(); N];
                    for (i, wb) in w.iter().enumerate() {
                        let (scales, mins) = super::unpack_scales_mins(wb);
                        // SAFETY: the caller guarantees every `x[k]` has `w.len()` blocks; `i < w.len()`.
                        let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                        let mut isum = [_mm256_setzero_si256(); N];
                        for p in 0..4 {
                            if N == 1 {
                                crate::cpu::x86::prefetch_ahead_part::<_, 4>(wb, p);
                            }
                            let sc32: [__m256i; 2] = std::array::from_fn(|h| {
                                // SAFETY: `scales[2p + h]` is 8 readable bytes; unaligned 64-bit load.
                                let raw = unsafe { _mm_loadl_epi64(scales[2 * p + h].as_ptr().cast()) };
                                _mm256_cvtepu8_epi32(raw)
                            });
                            let sc16 = sc32.map(|s| _mm256_or_si256(s, _mm256_slli_epi32::<16>(s)));
                            let mut lv = [[_mm256_setzero_si256(); 8]; 2];
                            for c in 0..8 {
                                // SAFETY: `qs` has 1024 bytes and `256p + 32c + 32 ≤ 1024`; unaligned load.
                                let raw = unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(256 * p + 32 * c).cast()) };
                                lv[0][c] = _mm256_and_si256(raw, low);
                                lv[1][c] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                            }
                            for k in 0..N {
                                for h in 0..2 {
                                    // A sub-block's eight dots of 4-bit levels fit i16 lanes (see `NARROW`).
                                    let mut s = _mm256_setzero_si256();
                                    for c in 0..8 {
                                        s = dot(s, lv[h][c], bcast4(&ys[k].qs, 64 * p + 32 * h + 4 * c));
                                    }
                                    isum[k] = _mm256_add_epi32(isum[k], finish(s, sc16[h], sc32[h]));
                                }
                            }
                        }
                        super::close_superblock(wb, &mins, ys, isum, &mut acc);
                    }
                    super::store(acc)
                }
            }
        };
    }

    crate::repack_k::x86::for_ymm_levels!(kernels);

    /// AVX-512 VNNI on zmm: one `vpdpbusd` covers two 4-element chunks of the eight rows (the two 32-byte
    /// vectors at `256·p + 64·c2`), with the two chunks' activation words spread to the two halves by one
    /// `vpermd`; the halves are multiplied by the row scales per sub-block and folded once per super-block.
    pub(super) mod avx512zmm {
        use std::arch::x86_64::*;

        use super::super::{BlockQ4_Kx8, BlockQ8K};

        /// See [`super::super::gemm_q4k`]; every `x[k]` must have `w.len()` blocks.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[allow(clippy::needless_range_loop)]
        pub(in super::super) fn gemm<const N: usize>(
            w: &[BlockQ4_Kx8],
            x: [&[BlockQ8K]; N],
        ) -> [[f32; 8]; N] {
            let low = _mm512_set1_epi8(0x0F);
            // Word 0 of the source to lanes 0..8, word 1 to lanes 8..16.
            let spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, wb) in w.iter().enumerate() {
                let (scales, mins) = super::unpack_scales_mins(wb);
                // SAFETY: the caller guarantees every `x[k]` has `w.len()` blocks; `i < w.len()`.
                let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                let mut isum = [_mm512_setzero_si512(); N];
                for p in 0..4 {
                    let sc: [__m512i; 2] = std::array::from_fn(|h| {
                        // SAFETY: `scales[2p + h]` is 8 readable bytes; unaligned 64-bit load.
                        let raw = unsafe { _mm_loadl_epi64(scales[2 * p + h].as_ptr().cast()) };
                        let s = _mm256_cvtepu8_epi32(raw);
                        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(s), s)
                    });
                    let mut lv = [[_mm512_setzero_si512(); 4]; 2];
                    for c2 in 0..4 {
                        // SAFETY: `qs` has 1024 bytes and `256p + 64c2 + 64 ≤ 1024`; unaligned load.
                        let raw = unsafe { _mm512_loadu_si512(wb.qs.as_ptr().add(256 * p + 64 * c2).cast()) };
                        lv[0][c2] = _mm512_and_si512(raw, low);
                        lv[1][c2] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low);
                    }
                    for k in 0..N {
                        for h in 0..2 {
                            let mut s = _mm512_setzero_si512();
                            for c2 in 0..4 {
                                let at = 64 * p + 32 * h + 8 * c2;
                                // SAFETY: `at + 8 ≤ 256` bytes of `qs`; unaligned 64-bit load.
                                let y8 = unsafe { _mm_loadl_epi64(ys[k].qs.as_ptr().add(at).cast()) };
                                let y = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(y8));
                                s = _mm512_dpbusd_epi32(s, lv[h][c2], y);
                            }
                            isum[k] = _mm512_add_epi32(isum[k], _mm512_mullo_epi32(s, sc[h]));
                        }
                    }
                }
                super::close_superblock(wb, &mins, ys, super::fold_halves(isum), &mut acc);
            }
            super::store(acc)
        }
    }

    /// The sixteen-row kernel ([`super::PackK8::gemm16_zmm`] of [`super::BlockQ4_Kx8`]): per sub-block and token
    /// 8 `vpdpbusd` and one `vpmulld` for sixteen rows, against 8 `vpdpbusd`, 8 `vpermd` and 2 `vpmulld` for the
    /// single-group zmm kernel.
    pub(super) mod pair {
        use std::arch::x86_64::*;

        use super::super::{BlockQ4_Kx8, BlockQ8K};

        /// See [`super::super::PackK8::gemm16`]; the caller checked every length.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[allow(clippy::needless_range_loop)]
        pub(in super::super) fn gemm16<const N: usize>(
            w: [&[BlockQ4_Kx8]; 2],
            x: [&[BlockQ8K]; N],
        ) -> [[f32; 16]; N] {
            let low = _mm512_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); N]; 2];
            for i in 0..w[0].len() {
                // SAFETY: `i` is below both groups' length and every `x[k]`'s (checked by the caller).
                let b = unsafe { [w[0].get_unchecked(i), w[1].get_unchecked(i)] };
                // SAFETY: as above.
                let ys: [&BlockQ8K; N] = std::array::from_fn(|k| unsafe { x[k].get_unchecked(i) });
                let (sc0, mn0) = super::unpack_scales_mins(b[0]);
                let (sc1, mn1) = super::unpack_scales_mins(b[1]);
                let mut isum = [_mm512_setzero_si512(); N];
                for p in 0..4 {
                    if N == 8 {
                        // The weights may come from memory (module docs of `repack`'s pair kernel).
                        crate::cpu::x86::prefetch_ahead_part::<_, 4>(b[0], p);
                        crate::cpu::x86::prefetch_ahead_part::<_, 4>(b[1], p);
                    }
                    for h in 0..2 {
                        let sb = 2 * p + h;
                        // Row scales of sub-block `sb`: group 0's eight, then group 1's, as sixteen i32.
                        // SAFETY: each `scales[sb]` is 8 readable bytes; unaligned 64-bit loads.
                        let sc = _mm512_cvtepu8_epi32(unsafe {
                            _mm_unpacklo_epi64(
                                _mm_loadl_epi64(sc0[sb].as_ptr().cast()),
                                _mm_loadl_epi64(sc1[sb].as_ptr().cast()),
                            )
                        });
                        // Levels of sub-block `sb`, sixteen rows: the low nibbles of the part-pair's bytes for
                        // h = 0, the high ones for h = 1 (loaded again: holding both took the registers that
                        // eight tokens' sums need).
                        let mut lv = [_mm512_setzero_si512(); 8];
                        for (c, l) in lv.iter_mut().enumerate() {
                            // SAFETY: `qs` has 1024 bytes and `256p + 32c + 32 ≤ 1024` in both blocks.
                            let raw =
                                unsafe { crate::cpu::x86::load_pair(&b[0].qs, &b[1].qs, 256 * p + 32 * c) };
                            let r = if h == 0 { raw } else { _mm512_srli_epi16::<4>(raw) };
                            *l = _mm512_and_si512(r, low);
                        }
                        for k in 0..N {
                            let y = ys[k].qs.as_ptr();
                            let mut s = _mm512_setzero_si512();
                            for (c, l) in lv.iter().enumerate() {
                                // SAFETY: `32·sb + 4c + 4 ≤ 256` bytes of `qs`; unaligned.
                                let y4 = unsafe { y.add(32 * sb + 4 * c).cast::<i32>().read_unaligned() };
                                s = _mm512_dpbusd_epi32(s, *l, _mm512_set1_epi32(y4));
                            }
                            isum[k] = _mm512_add_epi32(isum[k], _mm512_mullo_epi32(s, sc));
                        }
                    }
                }
                let [lo, hi] = super::split_halves(isum);
                super::close_superblock(b[0], &mn0, ys, lo, &mut acc[0]);
                super::close_superblock(b[1], &mn1, ys, hi, &mut acc[1]);
            }
            let (a, c) = (super::store(acc[0]), super::store(acc[1]));
            crate::repack::join16(a, c)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::WeightBlock;
    use crate::test_util::{bits, random_q8k, random_rows};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// `Σ |terms|` of row `r` times token `y`: the scale of the f32 rounding differences.
    fn magnitude(w: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
        w.iter()
            .zip(y)
            .map(|(b, yb)| {
                let sm = unpack_scales_mins(&b.scales);
                let (d, dmin) = (b.d.to_f32().abs(), b.dmin.to_f32().abs());
                let per: f32 = (0..8)
                    .map(|sb| {
                        let s = |e: usize| f32::from(yb.qs[32 * sb + e]).abs();
                        d * f32::from(sm[sb]) * 15.0 * (0..32).map(s).sum::<f32>()
                            + dmin * f32::from(sm[8 + sb]) * (0..32).map(s).sum::<f32>()
                    })
                    .sum();
                yb.d.abs() * per
            })
            .sum()
    }

    #[test]
    fn packing_keeps_every_scale_and_min() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..50 {
            // Any 12 bytes are a valid packing of eight 6-bit scales and mins (ggml's `get_scale_min_k4`).
            let src: Vec<BlockQ4K> = (0..8)
                .map(|_| {
                    let mut b = BlockQ4K::zeroed();
                    b.scales = std::array::from_fn(|_| rng.random());
                    b
                })
                .collect();
            let b = BlockQ4_Kx8::pack(std::array::from_fn(|j| &src[j]));
            for (j, s) in src.iter().enumerate() {
                let sm = unpack_scales_mins(&s.scales);
                for sb in 0..8 {
                    assert_eq!(b.scale(j, sb), i32::from(sm[sb]), "row {j} scale {sb}");
                    assert_eq!(b.min(j, sb), i32::from(sm[8 + sb]), "row {j} min {sb}");
                }
            }
            #[cfg(target_arch = "x86_64")]
            if x86::Level::Avx2.supported() {
                // SAFETY: AVX2 is present (checked).
                let (scales, mins) = unsafe { x86::unpack_scales_mins(&b) };
                for j in 0..8 {
                    for sb in 0..8 {
                        assert_eq!(i32::from(scales[sb][j]), b.scale(j, sb), "row {j} scale {sb}");
                        assert_eq!(
                            i32::from(mins[sb / 2][2 * j + sb % 2]),
                            b.min(j, sb),
                            "row {j} min {sb}"
                        );
                    }
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                // SAFETY: NEON is a static target feature of aarch64 targets.
                let (scales, mins) = unsafe { neon::scales_mins(&b) };
                let lanes = |v: std::arch::aarch64::uint16x8_t| {
                    let mut a = [0u16; 8];
                    // SAFETY: `a` is 16 writable bytes; unaligned store.
                    unsafe { std::arch::aarch64::vst1q_u16(a.as_mut_ptr(), v) };
                    a
                };
                for sb in 0..8 {
                    let (sc, mn) = (lanes(scales[sb]), lanes(mins[sb]));
                    for j in 0..8 {
                        assert_eq!(i32::from(sc[j]), b.scale(j, sb), "row {j} scale {sb}");
                        assert_eq!(i32::from(mn[j]), b.min(j, sb), "row {j} min {sb}");
                    }
                }
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn packed_q4k_products_equal_the_reference() {
        let mut rng = StdRng::seed_from_u64(21);
        for (rows, cols) in [(8, 256), (16, 768), (24, 2048)] {
            let w = random_rows::<BlockQ4K>(&mut rng, silica_gguf::GgmlType::Q4_K, rows, cols);
            let p = PackedQ4K::pack(&w, rows, cols).unwrap();
            assert_eq!((p.rows(), p.cols()), (rows, cols));
            assert_eq!(p.size_bytes(), rows / 8 * cols / QK_K * size_of::<BlockQ4_Kx8>());
            let nb = cols / QK_K;
            let xs: Vec<Vec<BlockQ8K>> = (0..4).map(|_| random_q8k(&mut rng, cols)).collect();
            let xr: [&[BlockQ8K]; 4] = std::array::from_fn(|k| xs[k].as_slice());
            for g in 0..rows / 8 {
                let want = gemm_q4k_ref(p.group(g), xr);
                assert_eq!(bits(gemm_q4k(p.group(g), xr)), bits(want));
                let one = gemm_q4k::<1>(p.group(g), [xr[2]]);
                assert_eq!(bits(one)[0], bits(want)[2]);
                let three = gemm_q4k::<3>(p.group(g), [xr[1], xr[2], xr[3]]);
                assert_eq!(bits(three)[..], bits(want)[1..]);
                if g + 1 < rows / 8 {
                    // The pair kernel: both groups' values, to the bit.
                    let next = gemm_q4k_ref(p.group(g + 1), xr);
                    crate::test_util::check_pair_kernel([p.group(g), p.group(g + 1)], xr, &want, &next);
                }
                #[cfg(target_arch = "x86_64")]
                for level in [x86::Level::Avx2, x86::Level::AvxVnni, x86::Level::Avx512Vnni] {
                    if level.supported() {
                        // Eight tokens, the AVX-512 prefill tile.
                        let x8 = crate::test_util::EIGHT_TOKENS.map(|k| xr[k]);
                        // SAFETY: the level is supported; the block counts match.
                        let (got4, got1, got8) = unsafe {
                            (
                                x86::gemm(level, p.group(g), xr),
                                x86::gemm::<1>(level, p.group(g), [xr[0]]),
                                x86::gemm::<8>(level, p.group(g), x8),
                            )
                        };
                        assert_eq!(bits(got4), bits(want), "{level:?}");
                        assert_eq!(bits(got1)[0], bits(want)[0], "{level:?}");
                        for (k, &t) in crate::test_util::EIGHT_TOKENS.iter().enumerate() {
                            assert_eq!(
                                bits(got8)[k],
                                bits(want)[t],
                                "{level:?} of eight tokens, token {k}"
                            );
                        }
                    }
                }
                for k in 0..4 {
                    for j in 0..8 {
                        let r = 8 * g + j;
                        let row = &w[r * nb..(r + 1) * nb];
                        let v = BlockQ4K::vec_dot_ref(row, &xs[k]);
                        let mag = magnitude(row, &xs[k]);
                        assert!(
                            (v - want[k][j]).abs() <= 1e-5 * mag,
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
        // Every scale and min 63, every nibble 15, every activation −128: the integer bounds of the docs.
        let mut b = BlockQ4K::zeroed();
        b.d = f16::from_f32(1.0);
        b.dmin = f16::from_f32(0.5);
        b.scales = [0xFF; 12];
        b.qs = [0xFF; QK_K / 2];
        let w = vec![b; 8];
        let p = PackedQ4K::pack(&w, 8, QK_K).unwrap();
        let mut y = BlockQ8K::zeroed();
        y.d = 1.0;
        y.qs = [-128; QK_K];
        y.bsums = [-2048; QK_K / 16];
        let x = [y];
        let want = gemm_q4k_ref::<1>(p.group(0), [&x]);
        assert_eq!(bits(gemm_q4k::<1>(p.group(0), [&x])), bits(want));
        let exact = -(63.0 * 15.0 * 128.0 * 256.0) + 0.5 * 63.0 * 128.0 * 256.0;
        assert_eq!(want[0][0], exact as f32);
        #[cfg(target_arch = "x86_64")]
        for level in [x86::Level::Avx2, x86::Level::AvxVnni, x86::Level::Avx512Vnni] {
            if level.supported() {
                // SAFETY: the level is supported; the block counts match.
                let got = unsafe { x86::gemm::<1>(level, p.group(0), [&x]) };
                assert_eq!(bits(got), bits(want), "{level:?}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_not_packed() {
        let w = vec![BlockQ4K::zeroed(); 24];
        assert!(PackedQ4K::pack(&w[..12], 12, 256).is_none());
        assert!(PackedQ4K::pack(&w[..8], 8, 320).is_none());
        assert!(PackedQ4K::pack(&w[..7], 8, 256).is_none());
        assert!(PackedQ4K::pack(&w[..16], 8, 512).is_some());
        assert!(PackedQ4K::pack(&w, 8, 768).is_some());
    }
}
