//! Q4_0, Q5_0 and Q8_0 repacked eight rows at a time, for prefill and generation on x86-64 and on aarch64 with the
//! dot-product extension (llama.cpp repacks Q4_0 the same way on AVX2 machines: `q4_0_8x8_q8_0` in
//! `ggml-cpu/repack.cpp`, and four rows at a time for `sdot`: `q4_0_4x4_q8_0`; the layouts and kernels here are
//! silica's own; the aarch64 kernel is described at `neon::gemm`).
//!
//! A [`BlockQ4_0x8`] holds block `i` of eight consecutive rows: their eight scales, then their nibbles arranged
//! so that one 32-byte load gives, for four consecutive elements, the levels of all eight rows. An integer dot
//! product of that vector with the matching four activation bytes broadcast to all lanes (`vpdpbusd`) then
//! accumulates one lane per row: after a block, lane `j` holds row `j`'s exact integer sum, and one convert and
//! one fused multiply-add with the eight row scales times the token's scale finish eight results at once. Per
//! block and token that is 8 `vpdpbusd` for 8 rows, against 1 `vpdpbusd` plus scaling work per row for the
//! row-major layout.
//!
//! With AVX-512 VNNI and two or more tokens, [`gemm16`] takes two groups at once: a zmm vector holds the same
//! four elements of sixteen rows (group `g` in the low half, `g + 1` in the high), so one `vpdpbusd` with the four
//! activation bytes as a broadcast memory operand does the work of two ymm ones. Measured on the test machine
//! (AMD EPYC Zen 4, 2 threads, divan `pp` 512 tokens, the same run): Q4_0 600 → 975 GFLOP/s, Q8_0 520 → 840.
//! For one token the weights come from DRAM, where reading two groups' blocks side by side streamed slower
//! (32 against 42 GB/s, `examples/stream_dram.rs`), so generation keeps the eight-row kernel, which for one
//! token prefetches 4 KiB ahead of the block it reads (see `cpu::x86::PREFETCH_BYTES`: Q4_0 from 82–91% to
//! 97–100% of the STREAM triad). [`gemm16`] prefetches the same way in tiles of eight tokens, which batched
//! generation and short prompts run once per unit, with the weights coming from memory (see `matmul`'s
//! `run_row_groups`).
//!
//! The levels are used unsigned: Q4_0's nibbles (0..15) with `Σ (q − 8)·y = Σ q·y − 8·Σ y`, Q5_0's five-bit
//! levels (0..31; the fifth bits are spread to bytes in the kernel) with `− 16·Σ y`, Q8_0's bytes
//! shifted by 128 with `Σ q·y = Σ (q + 128)·y − 128·Σ y`; `Σ y` of each activation block is computed once per
//! product. Without VNNI (plain AVX2), `vpmaddubsw` takes the place of `vpdpbusd`: its 16-bit pair sums of
//! nibbles (eight per block) or five-bit levels (four) are added as i16 and widened once (1B-shape Q4_0 pp512
//! with `--simd avx2`: 183–185 → 233–238 t/s against one `vpmaddwd` per `vpmaddubsw`). They cannot hold Q8_0's
//! unsigned bytes, so Q8_0 is multiplied there on its signed levels
//! as `|w| · sign(y, w)` (`x86::gemm_signed_bytes`). Measured with `--simd avx2` (1B-shape Q8_0, pp512, two
//! alternating rounds) against the row-major kernels this replaced: 101–102 → 128–130 t/s; with `--simd
//! avx-vnni`, where the eight-row kernel gained its `vpdpbusd` variant, 113 → 207–212 t/s.
//! Results are exact integers per block scaled in f32; they differ from ggml's
//! `vec_dot` only by f32 rounding. [`gemm_ref`] is the plain scalar reference (bit-identical by construction: the
//! same exact integers and the same fused multiply-add sequence).
#![allow(unsafe_code)]

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::alloc::WeightBuf;
use crate::blocks::{BlockQ4_0, BlockQ5_0, BlockQ8_0, QK};
use crate::pool::{SharedMut, split};

/// Block `i` of eight rows of a Q4_0 matrix, repacked (144 bytes, as eight [`BlockQ4_0`]).
///
/// `qs[32·c + 4·j + t]` holds, for row `j`, element `4c + t` in its low nibble and element `16 + 4c + t` in its
/// high nibble (`c` in 0..4, `t` in 0..4).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0x8 {
    /// Scales of the eight rows.
    pub d: [f16; 8],
    /// Nibbles, interleaved as described above.
    pub qs: [u8; 128],
}

const _: () = assert!(size_of::<BlockQ4_0x8>() == 8 * size_of::<BlockQ4_0>());

/// Block `i` of eight rows of a Q5_0 matrix, repacked (176 bytes, as eight [`BlockQ5_0`]).
///
/// `qs` holds the low four bits of the levels as [`BlockQ4_0x8::qs`] does. The fifth bits of the four-element
/// chunk `e` (elements `4e..4e+4`, `e` in 0..8) of the eight rows form the little-endian `u32` at `qh[4e..4e+4]`:
/// its bit `4·j + t` is row `j`'s fifth bit of element `4e + t` — the byte lanes of the chunk's 32-byte level
/// vector, in order, so the kernel spreads it with one mask move (AVX-512) or a shuffle and compare (AVX2).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0x8 {
    /// Scales of the eight rows.
    pub d: [f16; 8],
    /// Low four bits of the levels, interleaved as [`BlockQ4_0x8::qs`].
    pub qs: [u8; 128],
    /// Fifth bits, one little-endian `u32` per four-element chunk as described above.
    pub qh: [u8; 32],
}

const _: () = assert!(size_of::<BlockQ5_0x8>() == 8 * size_of::<BlockQ5_0>());

/// Block `i` of eight rows of a Q8_0 matrix, repacked (272 bytes, as eight [`BlockQ8_0`]).
///
/// `qs[32·e + 4·j + t]` holds row `j`'s level of element `4e + t` plus 128, as an unsigned byte.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0x8 {
    /// Scales of the eight rows.
    pub d: [f16; 8],
    /// Levels + 128, interleaved as described above.
    pub qs: [u8; 256],
}

const _: () = assert!(size_of::<BlockQ8_0x8>() == 8 * size_of::<BlockQ8_0>());

/// How a [`Pack8`] layout stores its unsigned levels after the 16 bytes of row scales: what the kernels load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// 128 nibble bytes ([`BlockQ4_0x8::qs`]): levels 0..16.
    Nibbles,
    /// 128 nibble bytes, then 32 bytes of fifth bits ([`BlockQ5_0x8`]): levels 0..32.
    NibblesAndFifthBits,
    /// 256 level bytes ([`BlockQ8_0x8::qs`]): levels 0..256.
    Bytes,
}

/// A repacked block of eight rows (see [`BlockQ4_0x8`], [`BlockQ5_0x8`], [`BlockQ8_0x8`]).
pub trait Pack8: Pod + Send + Sync + std::fmt::Debug + 'static {
    /// The row-major block type it is made from.
    type Src: Pod + Sync;
    /// What the unsigned levels are offset by: the product is `Σ u·y − OFFSET·Σ y`.
    const OFFSET: i32;
    /// How the levels are stored.
    const LEVELS: Levels;
    /// Packs block `i` of eight rows into `b`, which holds zeros.
    fn pack_into(src: [&Self::Src; 8], b: &mut Self);
    /// The eight row scales.
    fn scales(&self) -> &[f16; 8];
    /// Row `j`'s unsigned level of element `e` (0..32), for the reference.
    fn level(&self, j: usize, e: usize) -> i32;
}

impl Pack8 for BlockQ4_0x8 {
    type Src = BlockQ4_0;
    const OFFSET: i32 = 8;
    const LEVELS: Levels = Levels::Nibbles;
    fn pack_into(src: [&BlockQ4_0; 8], b: &mut Self) {
        for (j, s) in src.iter().enumerate() {
            b.d[j] = s.d;
            for c in 0..4 {
                // Source byte `4c + t` holds elements 4c+t (low nibble) and 16+4c+t (high) already.
                b.qs[32 * c + 4 * j..][..4].copy_from_slice(&s.qs[4 * c..][..4]);
            }
        }
    }
    fn scales(&self) -> &[f16; 8] {
        &self.d
    }
    fn level(&self, j: usize, e: usize) -> i32 {
        nibble(&self.qs, j, e)
    }
}

/// Row `j`'s four-bit level of element `e` in the nibble layout of [`BlockQ4_0x8::qs`].
fn nibble(qs: &[u8; 128], j: usize, e: usize) -> i32 {
    let (c, t, hi) = ((e % 16) / 4, e % 4, e >= 16);
    let byte = qs[32 * c + 4 * j + t];
    i32::from(if hi { byte >> 4 } else { byte & 0x0F })
}

impl Pack8 for BlockQ5_0x8 {
    type Src = BlockQ5_0;
    const OFFSET: i32 = 16;
    const LEVELS: Levels = Levels::NibblesAndFifthBits;
    fn pack_into(src: [&BlockQ5_0; 8], b: &mut Self) {
        let mut qh = [0u32; 8];
        for (j, s) in src.iter().enumerate() {
            b.d[j] = s.d;
            let h = u32::from_le_bytes(s.qh);
            for c in 0..4 {
                b.qs[32 * c + 4 * j..][..4].copy_from_slice(&s.qs[4 * c..][..4]);
            }
            for (e, q) in qh.iter_mut().enumerate() {
                for t in 0..4 {
                    *q |= ((h >> (4 * e + t)) & 1) << (4 * j + t);
                }
            }
        }
        for (dst, h) in b.qh.chunks_exact_mut(4).zip(qh) {
            dst.copy_from_slice(&h.to_le_bytes());
        }
    }
    fn scales(&self) -> &[f16; 8] {
        &self.d
    }
    fn level(&self, j: usize, e: usize) -> i32 {
        let low = nibble(&self.qs, j, e);
        let t = e % 4;
        let h = u32::from_le_bytes([
            self.qh[4 * (e / 4)],
            self.qh[4 * (e / 4) + 1],
            self.qh[4 * (e / 4) + 2],
            self.qh[4 * (e / 4) + 3],
        ]);
        low | (((h >> (4 * j + t)) & 1) as i32) << 4
    }
}

impl Pack8 for BlockQ8_0x8 {
    type Src = BlockQ8_0;
    const OFFSET: i32 = 128;
    const LEVELS: Levels = Levels::Bytes;
    fn pack_into(src: [&BlockQ8_0; 8], b: &mut Self) {
        for (j, s) in src.iter().enumerate() {
            b.d[j] = s.d;
            for e in 0..8 {
                let q = bytemuck::cast_slice::<i8, u8>(&s.qs[4 * e..][..4]);
                let v = u32::from_le_bytes([q[0], q[1], q[2], q[3]]) ^ 0x8080_8080;
                b.qs[32 * e + 4 * j..][..4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn scales(&self) -> &[f16; 8] {
        &self.d
    }
    fn level(&self, j: usize, e: usize) -> i32 {
        i32::from(self.qs[32 * (e / 4) + 4 * j + e % 4])
    }
}

/// A `[rows, cols]` matrix repacked by groups of eight rows: group `g` is `cols / 32` blocks `P`.
#[derive(Debug)]
pub struct Packed<P> {
    rows: usize,
    cols: usize,
    blocks: WeightBuf<P>,
}

/// A repacked Q4_0 matrix.
pub type PackedQ4_0 = Packed<BlockQ4_0x8>;
/// A repacked Q5_0 matrix.
pub type PackedQ5_0 = Packed<BlockQ5_0x8>;
/// A repacked Q8_0 matrix.
pub type PackedQ8_0 = Packed<BlockQ8_0x8>;

impl<P: Pack8> Packed<P> {
    /// Repacks row-major blocks (`rows · cols / 32` of them), or `None` if `rows` is not a multiple of 8.
    ///
    /// # Panics
    /// If `w.len() != rows · cols / 32` or `cols` is not a multiple of 32.
    pub fn pack(w: &[P::Src], rows: usize, cols: usize) -> Option<Self> {
        assert!(
            cols.is_multiple_of(QK) && w.len() == rows * cols / QK,
            "Packed::pack: shape"
        );
        if !rows.is_multiple_of(8) {
            return None;
        }
        let blocks = pack_groups(w, rows, cols / QK, P::pack_into);
        Some(Packed { rows, cols, blocks })
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (the same as the row-major matrix).
    pub fn size_bytes(&self) -> usize {
        self.blocks.len() * size_of::<P>()
    }

    /// The blocks of row group `g` (rows `8g..8g+8`).
    pub(crate) fn group(&self, g: usize) -> &[P] {
        let nb = self.cols / QK;
        &self.blocks[g * nb..(g + 1) * nb]
    }
}

/// Row-major blocks `w` (`rows` rows of `nb` blocks, `rows` a multiple of 8) packed eight rows at a time:
/// group `g`'s `nb` packed blocks, in order, are `pack` of block `i` of rows `8g..8g+8`. Groups are independent,
/// so the process pool ([`crate::global_pool`]) packs them in parallel (this is load time).
pub(crate) fn pack_groups<S: Sync, P: Pod + Send>(
    w: &[S],
    rows: usize,
    nb: usize,
    pack: impl Fn([&S; 8], &mut P) + Sync,
) -> WeightBuf<P> {
    let n_groups = rows / 8;
    // Not zero-filled up front: each block is zeroed (in cache) and packed in place by the thread that owns its
    // group, so the page faults of the new copy are taken in parallel and nothing is copied twice. The copy is on
    // huge pages where the mode allows (`crate::HugePages`): generation reads all of it once per token.
    let fill = |blocks: &mut [std::mem::MaybeUninit<P>]| {
        let dst = SharedMut::new(blocks);
        crate::global_pool().run(|ith, nth| {
            for g in split(n_groups, ith, nth) {
                // SAFETY: group `g`'s blocks are written by this thread only, within bounds.
                let out = unsafe { dst.slice(g * nb, nb) };
                for (i, b) in out.iter_mut().enumerate() {
                    let b = b.write(P::zeroed());
                    pack(std::array::from_fn(|j| &w[(8 * g + j) * nb + i]), b);
                }
            }
        });
    };
    // SAFETY: `fill` writes every one of the `n_groups · nb` blocks (the groups split among the threads cover
    // `0..n_groups`).
    unsafe { WeightBuf::new_with(n_groups * nb, fill) }
}

/// What the kernels need of one Q8_0 activation block besides its levels, computed once per product so the
/// inner loop takes both with broadcast loads: its scale widened to f32 (exact) and the `−OFFSET·Σy` correction
/// of the unsigned-level products, which starts the block's integer sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockTerms {
    /// The block's scale `d`, as f32.
    pub d: f32,
    /// `−OFFSET · Σ qs` for the weight layout `P` of the product.
    pub base: i32,
}

/// The [`BlockTerms`] of each activation block `x[i]` for products with `P` blocks (`out.len() == x.len()`).
pub fn block_terms<P: Pack8>(x: &[BlockQ8_0], out: &mut [BlockTerms]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available(false) {
        for (o, b) in out.iter_mut().zip(x) {
            // SAFETY: `available` detected AVX2.
            let sum = unsafe { x86::level_sum(&b.qs) };
            *o = BlockTerms {
                d: b.d.to_f32(),
                base: -P::OFFSET * sum,
            };
        }
        return;
    }
    for (o, b) in out.iter_mut().zip(x) {
        let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
        *o = BlockTerms {
            d: b.d.to_f32(),
            base: -P::OFFSET * sum,
        };
    }
}

/// Scalar reference: `out[k][j] = Σ_i fma-accumulated (d_j·dx_k) · (Σ_e u·y − OFFSET·Σy)` for the eight rows of
/// `w` (one group) and `N` tokens; `xs[k]` are token `k`'s [`BlockTerms`] for `P`.
#[allow(clippy::needless_range_loop)]
pub fn gemm_ref<P: Pack8, const N: usize>(
    w: &[P],
    x: [&[BlockQ8_0]; N],
    xs: [&[BlockTerms]; N],
) -> [[f32; 8]; N] {
    let mut out = [[0f32; 8]; N];
    for (i, wb) in w.iter().enumerate() {
        for k in 0..N {
            let yb = &x[k][i];
            let BlockTerms { d: dx, base } = xs[k][i];
            for j in 0..8 {
                let isum: i32 = (0..QK).map(|e| wb.level(j, e) * i32::from(yb.qs[e])).sum();
                let p = (base + isum) as f32;
                out[k][j] = (wb.scales()[j].to_f32() * dx).mul_add(p, out[k][j]);
            }
        }
    }
    out
}

/// Whether this CPU has a SIMD kernel for `P`'s layout: x86-64 with AVX2, FMA and F16C (AVX-VNNI or AVX-512
/// VNNI used where present), or aarch64 with the dot-product extension (`neon-dotprod`: Apple M1 and later,
/// Neoverse N1 / Graviton2 and later). Elsewhere the row-major kernels are faster than [`gemm_ref`], so callers
/// should not repack.
pub fn has_fast_path<P: Pack8>() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available(false);
    #[cfg(target_arch = "aarch64")]
    return crate::cpu::arm::has_dotprod();
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

/// `out[k][j]` for the eight rows of one group and `N ≤ 4` tokens on the fastest path this CPU has.
pub fn gemm<P: Pack8, const N: usize>(
    w: &[P],
    x: [&[BlockQ8_0]; N],
    xs: [&[BlockTerms]; N],
) -> [[f32; 8]; N] {
    for k in 0..N {
        assert!(
            x[k].len() == w.len() && xs[k].len() == w.len(),
            "repack::gemm: block counts"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = x86::gemm(w, x, xs) {
        return v;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::cpu::arm::has_dotprod() {
        // SAFETY: the level in use has NEON and the dot-product extension; block counts checked above.
        return unsafe { neon::gemm(w, x, xs) };
    }
    gemm_ref::<P, N>(w, x, xs)
}

/// Whether [`gemm16`] (and the k-quants' [`crate::repack_k::PackK8::gemm16`]) has a kernel of its own on this
/// CPU (x86-64 with AVX-512 VNNI): one zmm `vpdpbusd` then multiplies four elements of sixteen rows — two groups
/// — by four activation bytes taken as a broadcast memory operand, half the instructions of two eight-row
/// [`gemm`] calls. Elsewhere [`gemm16`] is those two calls.
pub fn has_pair_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available(true);
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out[k][8h + j]` for row `j` of group `w[h]` (two groups of equal length, sixteen rows) and `N` tokens:
/// the same values, to the bit, as `gemm` of each group ([`gemm_ref`]).
pub fn gemm16<P: Pack8, const N: usize>(
    w: [&[P]; 2],
    x: [&[BlockQ8_0]; N],
    xs: [&[BlockTerms]; N],
) -> [[f32; 16]; N] {
    assert!(w[0].len() == w[1].len(), "repack::gemm16: group lengths");
    #[cfg(target_arch = "x86_64")]
    if has_pair_kernel() {
        for k in 0..N {
            assert!(
                x[k].len() == w[0].len() && xs[k].len() == w[0].len(),
                "repack::gemm16: block counts"
            );
        }
        // SAFETY: `has_pair_kernel` detected AVX2, FMA, F16C and AVX-512 F, BW, VL and VNNI; lengths checked.
        return unsafe { x86::zmm::gemm16(w, x, xs) };
    }
    join16(gemm(w[0], x, xs), gemm(w[1], x, xs))
}

/// Two groups' results side by side: `out[k] = a[k] ++ b[k]`.
pub(crate) fn join16<const N: usize>(a: [[f32; 8]; N], b: [[f32; 8]; N]) -> [[f32; 16]; N] {
    std::array::from_fn(|k| std::array::from_fn(|r| if r < 8 { a[k][r] } else { b[k][r - 8] }))
}

#[cfg(target_arch = "x86_64")]
mod x86 {

    use std::arch::x86_64::*;

    use super::{BlockQ8_0, BlockTerms, Levels, Pack8};

    use crate::cpu::x86::{Level, bcast4, best};

    /// Whether this CPU has the eight-row kernels (AVX2, FMA, F16C), and AVX-512 VNNI where `needs_vnni`.
    pub(super) fn available(needs_vnni: bool) -> bool {
        if needs_vnni {
            best() == Some(Level::Avx512Vnni)
        } else {
            best().is_some()
        }
    }

    /// `0x10` in byte lane `i` where bit `i` of `bits` is set, else 0 (Q5_0's fifth bits), without AVX-512.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn spread_avx2(bits: u32) -> __m256i {
        // Byte `i` of each 128-bit half takes byte `i / 8` of `bits`, keeps bit `i % 8`, and becomes 0x10.
        let v = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_setr_epi64x(
                0,
                0x0101_0101_0101_0101,
                0x0202_0202_0202_0202,
                0x0303_0303_0303_0303,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        _mm256_and_si256(
            _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit),
            _mm256_set1_epi8(0x10),
        )
    }

    /// [`super::gemm`] of a [`Levels::Bytes`] layout (Q8_0) on AVX2 without VNNI, where `vpmaddubsw`'s 16-bit
    /// pair sums of unsigned levels up to 255 overflow: each stored `level + 128` byte is flipped back to the
    /// signed level `w` (xor 0x80) and the products are taken as `|w| · sign(y, w)`, as ggml's AVX2
    /// `mul_sum_i8_pairs_float` does (`ggml-cpu/arch/x86/quants.c`). The pair sums stay within
    /// `2 · 128 · 127 < 2¹⁵` because activation levels are at most 127 in magnitude (`q8::quantize_row_q8_0`
    /// scales by `127 / amax`; a level of −128 would flip wrongly). The block's integer is `Σ w·y`, which equals
    /// the reference's `Σ u·y − 128·Σ y`, so the results are the reference's bits.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; every `x[k]` and `xs[k]` must have `w.len()` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemm_signed_bytes<P: Pack8, const N: usize>(
        w: &[P],
        x: [&[BlockQ8_0]; N],
        xs: [&[BlockTerms]; N],
    ) -> [[f32; 8]; N] {
        debug_assert_eq!(P::LEVELS, Levels::Bytes);
        let flip = _mm256_set1_epi8(0x80_u8 as i8);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); N];
        for (i, wb) in w.iter().enumerate() {
            if N == 1 {
                // One token: the weights come from DRAM (see `PREFETCH_BYTES`).
                crate::cpu::x86::prefetch_ahead(wb);
            }
            let qs: *const u8 = bytemuck::bytes_of(wb)[16..].as_ptr();
            let mut s = [_mm256_setzero_si256(); N];
            for e in 0..8 {
                // SAFETY: a Q8_0x8 block has 256 level bytes after its 16 scale bytes; unaligned.
                let lv = _mm256_xor_si256(unsafe { _mm256_loadu_si256(qs.add(32 * e).cast()) }, flip);
                let mag = _mm256_abs_epi8(lv);
                for k in 0..N {
                    // SAFETY: the caller guarantees `w.len()` blocks in `x[k]`; `i < w.len()`.
                    let yb = unsafe { x[k].get_unchecked(i) };
                    let p = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(bcast4(&yb.qs, 4 * e), lv));
                    s[k] = _mm256_add_epi32(s[k], _mm256_madd_epi16(p, ones));
                }
            }
            // SAFETY: the scales are 16 readable bytes; unaligned load.
            let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb.scales().as_ptr().cast()) });
            for k in 0..N {
                // SAFETY: as above, for `xs[k]`.
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(unsafe { xs[k].get_unchecked(i) }.d));
                acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s[k]), acc[k]);
            }
        }
        crate::repack_k::x86::store(acc)
    }

    /// `Σ qs` of one activation block.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn level_sum(qs: &[i8; 32]) -> i32 {
        use std::arch::x86_64::*;
        // SAFETY: `qs` is 32 readable bytes; unaligned load.
        let v = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
        // Unsigned ones times signed levels: sixteen exact pair sums, then eight.
        let s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)))
    }

    pub(super) fn gemm<P: Pack8, const N: usize>(
        w: &[P],
        x: [&[BlockQ8_0]; N],
        xs: [&[BlockTerms]; N],
    ) -> Option<[[f32; 8]; N]> {
        match best() {
            None => None,
            // SAFETY: `best` detected AVX2, FMA and F16C.
            Some(Level::Avx2) => Some(unsafe { avx2::gemm(w, x, xs) }),
            // SAFETY: `best` detected AVX2, FMA, F16C and AVX-VNNI.
            Some(Level::AvxVnni) => Some(unsafe { avxvnni::gemm(w, x, xs) }),
            // SAFETY: `best` detected AVX2, FMA, F16C, AVX-512 VNNI, BW and VL.
            Some(Level::Avx512Vnni) => Some(unsafe { avx512vnni::gemm(w, x, xs) }),
        }
    }

    macro_rules! kernels {
        (
            $name:ident,
            $feat:literal,
            narrow: $narrow:literal,
            |$acc:ident, $a:ident, $b:ident| $dot:expr,
            |$bits:ident| $spread:expr
        ) => {
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::super::{BlockQ8_0, BlockTerms, Levels, Pack8};
                use crate::cpu::x86::bcast4;

                /// `0x10` in byte lane `i` where bit `i` of `bits` is set, else 0 (Q5_0's fifth bits).
                #[target_feature(enable = $feat)]
                #[inline]
                fn spread($bits: u32) -> __m256i {
                    $spread
                }

                /// Whether [`dot`] sums in 16-bit lanes (AVX2's `vpmaddubsw` pair sums, added as i16), so that
                /// the kernel widens a sum (`vpmaddwd` by ones) before it could leave i16: each `dot` adds at
                /// most `2 · L · 128` in magnitude per lane for levels up to `L`, so eight dots of Q4_0's
                /// nibbles (30720) or four of Q5_0's five-bit levels (31744) fit. Elsewhere `dot` sums in i32
                /// lanes (`vpdpbusd`).
                const NARROW: bool = $narrow;

                /// `acc +` the products of unsigned `a` and signed `b` bytes: per i16 lane the pair sums
                /// ([`NARROW`]), else per i32 lane the sums of four.
                #[target_feature(enable = $feat)]
                #[inline]
                fn dot($acc: __m256i, $a: __m256i, $b: __m256i) -> __m256i {
                    $dot
                }

                /// See [`super::super::gemm`].
                #[target_feature(enable = $feat)]
                pub(in super::super) fn gemm<P: Pack8, const N: usize>(
                    w: &[P],
                    x: [&[BlockQ8_0]; N],
                    xs: [&[BlockTerms]; N],
                ) -> [[f32; 8]; N] {
                    if NARROW && P::LEVELS == Levels::Bytes {
                        // 16-bit pair sums of unsigned levels up to 255 overflow: Q8_0 takes its signed levels.
                        // SAFETY: this kernel's features include AVX2, FMA and F16C; `super::super::gemm`
                        // checked the block counts.
                        return unsafe { super::gemm_signed_bytes(w, x, xs) };
                    }
                    let low = _mm256_set1_epi8(0x0F);
                    let mut acc = [_mm256_setzero_ps(); N];
                    for (i, wb) in w.iter().enumerate() {
                        if N == 1 {
                            // One token: the weights come from DRAM (module docs).
                            crate::cpu::x86::prefetch_ahead(wb);
                        }
                        // Levels of elements 4e..4e+4 of the eight rows, one vector per e.
                        let qs: *const u8 = bytemuck::bytes_of(wb)[16..].as_ptr();
                        let mut lv = [_mm256_setzero_si256(); 8];
                        if P::LEVELS != Levels::Bytes {
                            for c in 0..4 {
                                // SAFETY: Q4_0x8 and Q5_0x8 blocks have 128 nibble bytes after their 16 scale
                                // bytes; unaligned.
                                let raw = unsafe { _mm256_loadu_si256(qs.add(32 * c).cast()) };
                                lv[c] = _mm256_and_si256(raw, low);
                                lv[4 + c] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                            }
                            if P::LEVELS == Levels::NibblesAndFifthBits {
                                for e in 0..8 {
                                    // SAFETY: a Q5_0x8 block has 32 fifth-bit bytes after its 128 nibble bytes.
                                    let h = unsafe { qs.add(128 + 4 * e).cast::<u32>().read_unaligned() };
                                    lv[e] = _mm256_or_si256(lv[e], spread(u32::from_le(h)));
                                }
                            }
                        } else {
                            for e in 0..8 {
                                // SAFETY: a Q8_0x8 block has 256 level bytes after its 16 scale bytes; unaligned.
                                lv[e] = unsafe { _mm256_loadu_si256(qs.add(32 * e).cast()) };
                            }
                        }
                        // SAFETY: the scales are 16 readable bytes; unaligned load.
                        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb.scales().as_ptr().cast()) });
                        for k in 0..N {
                            // SAFETY: `gemm` checked that every `x[k]` and `xs[k]` has `w.len()` blocks; `i < w.len()`.
                            let (yb, yt) = unsafe { (x[k].get_unchecked(i), xs[k].get_unchecked(i)) };
                            // The sum starts at the offset correction; both terms are broadcast loads.
                            let mut s = _mm256_set1_epi32(yt.base);
                            if NARROW {
                                // Dots per widening that fit i16 lanes (see `NARROW`).
                                let per_sum = if P::LEVELS == Levels::Nibbles { 8 } else { 4 };
                                let mut part = _mm256_setzero_si256();
                                for e in 0..8 {
                                    part = dot(part, lv[e], bcast4(&yb.qs, 4 * e));
                                    if (e + 1) % per_sum == 0 {
                                        let wide = _mm256_madd_epi16(part, _mm256_set1_epi16(1));
                                        s = _mm256_add_epi32(s, wide);
                                        part = _mm256_setzero_si256();
                                    }
                                }
                            } else {
                                // Two chains (even and odd e): one chain of eight `vpdpbusd` waits out each
                                // one's latency.
                                let mut odd = _mm256_setzero_si256();
                                for e in (0..8).step_by(2) {
                                    s = dot(s, lv[e], bcast4(&yb.qs, 4 * e));
                                    odd = dot(odd, lv[e + 1], bcast4(&yb.qs, 4 * e + 4));
                                }
                                s = _mm256_add_epi32(s, odd);
                            }
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(yt.d));
                            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[k]);
                        }
                    }
                    crate::repack_k::x86::store(acc)
                }
            }
        };
    }

    kernels!(
        avx2,
        "avx2,fma,f16c",
        narrow: true,
        |acc, a, b| _mm256_add_epi16(acc, _mm256_maddubs_epi16(a, b)),
        |bits| super::spread_avx2(bits)
    );
    kernels!(
        avxvnni,
        "avx2,fma,f16c,avxvnni",
        narrow: false,
        |acc, a, b| _mm256_dpbusd_avx_epi32(acc, a, b),
        |bits| super::spread_avx2(bits)
    );
    kernels!(
        avx512vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        narrow: false,
        |acc, a, b| _mm256_dpbusd_epi32(acc, a, b),
        |bits| _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(0x10))
    );

    /// The sixteen-row kernel ([`super::gemm16`]).
    pub(super) mod zmm {
        use std::arch::x86_64::*;

        use super::super::{BlockQ8_0, BlockTerms, Levels, Pack8};

        /// See [`super::super::gemm16`]; the caller checked every length.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(in super::super) fn gemm16<P: Pack8, const N: usize>(
            w: [&[P]; 2],
            x: [&[BlockQ8_0]; N],
            xs: [&[BlockTerms]; N],
        ) -> [[f32; 16]; N] {
            let low = _mm512_set1_epi8(0x0F);
            let fifth = _mm512_set1_epi8(0x10);
            let mut acc = [_mm512_setzero_ps(); N];
            for i in 0..w[0].len() {
                // SAFETY: `i` is below both groups' length (checked equal by the caller).
                let b = unsafe { [w[0].get_unchecked(i), w[1].get_unchecked(i)] };
                if N == 8 {
                    // The weights may come from memory (module docs).
                    crate::cpu::x86::prefetch_ahead(b[0]);
                    crate::cpu::x86::prefetch_ahead(b[1]);
                }
                // Both blocks' level bytes (after their 16 scale bytes).
                let q = [&bytemuck::bytes_of(b[0])[16..], &bytemuck::bytes_of(b[1])[16..]];
                let mut lv = [_mm512_setzero_si512(); 8];
                if P::LEVELS != Levels::Bytes {
                    for c in 0..4 {
                        // SAFETY: `32c + 32 ≤ 128` level bytes in both blocks.
                        let raw = unsafe { crate::cpu::x86::load_pair(q[0], q[1], 32 * c) };
                        lv[c] = _mm512_and_si512(raw, low);
                        lv[4 + c] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low);
                    }
                    if P::LEVELS == Levels::NibblesAndFifthBits {
                        for (e, l) in lv.iter_mut().enumerate() {
                            // SAFETY: a Q5_0x8 block has 32 fifth-bit bytes after its 128 nibble bytes.
                            let h = unsafe {
                                [
                                    q[0].as_ptr().add(128 + 4 * e).cast::<u32>().read_unaligned(),
                                    q[1].as_ptr().add(128 + 4 * e).cast::<u32>().read_unaligned(),
                                ]
                            };
                            let m = u64::from(u32::from_le(h[0])) | u64::from(u32::from_le(h[1])) << 32;
                            // The low nibble is below 0x10, so adding 0x10 sets the fifth bit.
                            *l = _mm512_mask_add_epi8(*l, m, *l, fifth);
                        }
                    }
                } else {
                    for (e, l) in lv.iter_mut().enumerate() {
                        // SAFETY: `32e + 32 ≤ 256` level bytes in both Q8_0x8 blocks.
                        *l = unsafe { crate::cpu::x86::load_pair(q[0], q[1], 32 * e) };
                    }
                }
                // SAFETY: each block's scales are 16 readable bytes; unaligned loads.
                let dw = _mm512_cvtph_ps(unsafe {
                    _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_loadu_si128(b[0].scales().as_ptr().cast())),
                        _mm_loadu_si128(b[1].scales().as_ptr().cast()),
                    )
                });
                for k in 0..N {
                    // SAFETY: every `x[k]` and `xs[k]` has the groups' length, checked by the caller.
                    let (yb, yt) = unsafe { (x[k].get_unchecked(i), xs[k].get_unchecked(i)) };
                    let y = yb.qs.as_ptr();
                    let mut s = _mm512_set1_epi32(yt.base);
                    for (e, l) in lv.iter().enumerate() {
                        // SAFETY: `4e + 4 ≤ 32` bytes of the block's levels; unaligned.
                        let y4 = unsafe { y.add(4 * e).cast::<i32>().read_unaligned() };
                        s = _mm512_dpbusd_epi32(s, *l, _mm512_set1_epi32(y4));
                    }
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(yt.d));
                    acc[k] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[k]);
                }
            }
            let mut out = [[0f32; 16]; N];
            for k in 0..N {
                // SAFETY: `out[k]` is 64 writable bytes; unaligned store.
                unsafe { _mm512_storeu_ps(out[k].as_mut_ptr(), acc[k]) };
            }
            out
        }
    }

    #[cfg(test)]
    pub(super) fn levels_for_tests() -> Vec<(&'static str, bool)> {
        vec![
            ("avx2", crate::cpu::Simd::Avx2.supported()),
            ("avxvnni", crate::cpu::Simd::AvxVnni.supported()),
            ("avx512vnni", crate::cpu::Simd::Avx512Vnni.supported()),
        ]
    }

    #[cfg(test)]
    pub(super) fn gemm_at<P: Pack8, const N: usize>(
        name: &str,
        w: &[P],
        x: [&[BlockQ8_0]; N],
        xs: [&[BlockTerms]; N],
    ) -> [[f32; 8]; N] {
        // SAFETY: callers pass only the levels `levels_for_tests` reports as available.
        unsafe {
            match name {
                "avx2" => avx2::gemm(w, x, xs),
                "avxvnni" => avxvnni::gemm(w, x, xs),
                _ => avx512vnni::gemm(w, x, xs),
            }
        }
    }
}

/// aarch64 kernel ([`gemm`] where the CPU has NEON and the dot-product extension).
///
/// A 16-byte load of a chunk of [`BlockQ4_0x8::qs`] holds four elements of four rows, row `j` in lane `j`: the
/// layout x86's eight-lane `vpdpbusd` reads as 32 bytes is two NEON vectors. `SDOT (by element)` multiplies such
/// a vector by the token's four activation bytes of the same elements, taken as lane `e % 4` of a 16-byte
/// activation vector, and adds each row's four products to its lane ([`crate::cpu::arm::sdot_lane`]): eight
/// instructions give four rows' exact integer sums for a block, with no horizontal add (the row-major kernels
/// reduce each row's vector with `ADDV`). llama.cpp interleaves Q4_0 the same way for `sdot` on ARM
/// (`ggml_gemm_q4_0_4x4_q8_0` in `ggml-cpu/arch/arm/repack.cpp`).
///
/// `sdot` multiplies signed bytes: nibbles (0..15) and five-bit levels (0..31) are valid as such, and the sums start
/// at [`BlockTerms::base`] as on x86; Q8_0's stored `level + 128` bytes are flipped back to the signed levels (xor
/// 0x80), whose sum is `Σ u·y − 128·Σ y` itself, so they start at zero. Each block is then one convert and one
/// fused multiply-add per four rows, in block order: the reference's bits.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{BlockQ8_0, BlockTerms, Levels, Pack8};
    use crate::cpu::arm::{fifth_bits, sdot8, store8, widen_hi, widen_lo};

    /// See [`super::gemm`]. Each half (rows 0..4, then 4..8) of each block unpacks its levels once for the `N`
    /// tokens.
    ///
    /// # Safety
    /// The CPU must have NEON and the dot-product extension; every `x[k]` and `xs[k]` must have `w.len()` blocks.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn gemm<P: Pack8, const N: usize>(
        w: &[P],
        x: [&[BlockQ8_0]; N],
        xs: [&[BlockTerms]; N],
    ) -> [[f32; 8]; N] {
        let low = vdupq_n_u8(0x0F);
        let flip = vdupq_n_u8(0x80);
        let mut acc = [[vdupq_n_f32(0.0); 2]; N];
        for (i, wb) in w.iter().enumerate() {
            let bytes = bytemuck::bytes_of(wb);
            // SAFETY: the 16 scale bytes start the block; unaligned load.
            let dh = unsafe { vld1q_u16(wb.scales().as_ptr().cast()) };
            let dw = [widen_lo(dh), widen_hi(dh)];
            let qs: *const u8 = bytes[16..].as_ptr();
            for h in 0..2 {
                // Levels of elements 4e..4e+4 of rows 4h..4h+4, one vector per e.
                let mut lv = [vdupq_n_s8(0); 8];
                if P::LEVELS == Levels::Bytes {
                    for (e, l) in lv.iter_mut().enumerate() {
                        // SAFETY: a Q8_0x8 block has 256 level bytes after its 16 scale bytes; unaligned.
                        let raw = unsafe { vld1q_u8(qs.add(32 * e + 16 * h)) };
                        *l = vreinterpretq_s8_u8(veorq_u8(raw, flip));
                    }
                } else {
                    for c in 0..4 {
                        // SAFETY: Q4_0x8 and Q5_0x8 blocks have 128 nibble bytes after their 16 scale bytes.
                        let raw = unsafe { vld1q_u8(qs.add(32 * c + 16 * h)) };
                        let (mut lo, mut hi) = (vandq_u8(raw, low), vshrq_n_u8::<4>(raw));
                        if P::LEVELS == Levels::NibblesAndFifthBits {
                            // Rows 4h..4h+4 of chunk e are bits 16h..16h+16 of its u32: two bytes of the 32 at 128.
                            // SAFETY: a Q5_0x8 block has 32 fifth-bit bytes after its 128 nibble bytes.
                            let qh = |e: usize, b: usize| unsafe { *qs.add(128 + 4 * e + 2 * h + b) };
                            lo = vorrq_u8(lo, fifth_bits(qh(c, 0), qh(c, 1)));
                            hi = vorrq_u8(hi, fifth_bits(qh(4 + c, 0), qh(4 + c, 1)));
                        }
                        lv[c] = vreinterpretq_s8_u8(lo);
                        lv[4 + c] = vreinterpretq_s8_u8(hi);
                    }
                }
                for k in 0..N {
                    // SAFETY: the caller guarantees `w.len()` blocks in `x[k]` and `xs[k]`; `i < w.len()`.
                    let (yb, yt) = unsafe { (x[k].get_unchecked(i), xs[k].get_unchecked(i)) };
                    // SAFETY: an activation block has 32 level bytes; unaligned loads.
                    let (y0, y1) = unsafe { (vld1q_s8(yb.qs.as_ptr()), vld1q_s8(yb.qs.as_ptr().add(16))) };
                    let start = if P::LEVELS == Levels::Bytes { 0 } else { yt.base };
                    let [s, t] = sdot8([vdupq_n_s32(start), vdupq_n_s32(0)], &lv, [y0, y1]);
                    let d = vmulq_n_f32(dw[h], yt.d);
                    acc[k][h] = vfmaq_f32(acc[k][h], d, vcvtq_f32_s32(vaddq_s32(s, t)));
                }
            }
        }
        store8(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{EIGHT_TOKENS, assert_pair_bits, random_q8_0, random_rows};
    use rand::{SeedableRng, rngs::StdRng};

    /// The SIMD kernels of this architecture and whether this CPU has each one's features.
    fn levels_for_tests() -> Vec<(&'static str, bool)> {
        #[cfg(target_arch = "x86_64")]
        return x86::levels_for_tests();
        #[cfg(target_arch = "aarch64")]
        return vec![("neon-dotprod", crate::cpu::arm::Level::DotProd.supported())];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        Vec::new()
    }

    /// The kernel `name` (one [`levels_for_tests`] reports as available).
    #[allow(unused_variables)]
    fn gemm_at<P: Pack8, const N: usize>(
        name: &str,
        w: &[P],
        x: [&[BlockQ8_0]; N],
        xs: [&[BlockTerms]; N],
    ) -> [[f32; 8]; N] {
        #[cfg(target_arch = "x86_64")]
        return x86::gemm_at(name, w, x, xs);
        // SAFETY: called only where `levels_for_tests` found NEON and the dot-product extension; the tests pass
        // equal block counts.
        #[cfg(target_arch = "aarch64")]
        return unsafe { neon::gemm(w, x, xs) };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        unreachable!("no SIMD kernels on this architecture")
    }

    /// Packed products equal the scalar reference to the bit on every SIMD level, for 1, 4 and 8 tokens, and the
    /// row-major reference closely (same integers, other rounding).
    #[allow(clippy::needless_range_loop)]
    fn packed_products_match<P: Pack8>(ty: silica_gguf::GgmlType)
    where
        P::Src: crate::WeightBlock<Act = BlockQ8_0>,
    {
        let mut rng = StdRng::seed_from_u64(5 ^ ty as u64);
        for (rows, cols) in [(8, 32), (16, 96), (24, 576)] {
            let w: Vec<P::Src> = random_rows(&mut rng, ty, rows, cols);
            let p = Packed::<P>::pack(&w, rows, cols).unwrap();
            let nb = cols / QK;
            let xs: Vec<Vec<BlockQ8_0>> = (0..4).map(|_| random_q8_0(&mut rng, cols)).collect();
            let sums: Vec<Vec<BlockTerms>> = xs
                .iter()
                .map(|x| {
                    let mut s = vec![BlockTerms::default(); nb];
                    block_terms::<P>(x, &mut s);
                    s
                })
                .collect();
            for g in 0..rows / 8 {
                let xr: [&[BlockQ8_0]; 4] = std::array::from_fn(|k| xs[k].as_slice());
                let sr: [&[BlockTerms]; 4] = std::array::from_fn(|k| sums[k].as_slice());
                let want = gemm_ref(p.group(g), xr, sr);
                let got = gemm(p.group(g), xr, sr);
                assert_eq!(
                    got.map(|r| r.map(f32::to_bits)),
                    want.map(|r| r.map(f32::to_bits)),
                    "{ty}"
                );
                let one = gemm::<P, 1>(p.group(g), [xr[2]], [sr[2]]);
                assert_eq!(one[0].map(f32::to_bits), want[2].map(f32::to_bits), "{ty}");
                for (name, ok) in levels_for_tests() {
                    if ok {
                        let got = gemm_at(name, p.group(g), xr, sr);
                        let (a, b) = (
                            got.map(|r| r.map(f32::to_bits)),
                            want.map(|r| r.map(f32::to_bits)),
                        );
                        assert_eq!(a, b, "{ty} {name}");
                    }
                }
                if g + 1 < rows / 8 {
                    let next = gemm_ref(p.group(g + 1), xr, sr);
                    let both = [p.group(g), p.group(g + 1)];
                    let what = format!("{ty} gemm16 groups {g}, {}", g + 1);
                    assert_pair_bits(&gemm16(both, xr, sr), &[0, 1, 2, 3], &want, &next, &what);
                    // Eight tokens, the tile prefill uses: the four again in reverse order after themselves.
                    let eight =
                        gemm16::<P, 8>(both, EIGHT_TOKENS.map(|k| xr[k]), EIGHT_TOKENS.map(|k| sr[k]));
                    assert_pair_bits(&eight, &EIGHT_TOKENS, &want, &next, &what);
                    let one = gemm16::<P, 1>(both, [xr[1]], [sr[1]]);
                    assert_pair_bits(&one, &[1], &want, &next, &what);
                }
                for k in 0..4 {
                    for j in 0..8 {
                        let r = 8 * g + j;
                        let row = &w[r * nb..(r + 1) * nb];
                        let v = <P::Src as crate::WeightBlock>::vec_dot_ref(row, &xs[k]);
                        let mag: f32 = xs[k]
                            .iter()
                            .map(|b| b.d.to_f32().abs() * 32.0 * 127.0 * 2.0)
                            .sum();
                        assert!(
                            (v - want[k][j]).abs() <= 1e-5 * mag,
                            "{ty} row {r} token {k}: {v} vs {}",
                            want[k][j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packed_q4_0_q5_0_and_q8_0_products_equal_the_reference() {
        packed_products_match::<BlockQ4_0x8>(silica_gguf::GgmlType::Q4_0);
        packed_products_match::<BlockQ5_0x8>(silica_gguf::GgmlType::Q5_0);
        packed_products_match::<BlockQ8_0x8>(silica_gguf::GgmlType::Q8_0);
    }

    /// Group 0 of `p` times the four tokens `xs`: [`gemm`] and every SIMD level this CPU has give
    /// [`gemm_ref`]'s bits.
    fn assert_group0_matches_on_every_level<P: Pack8>(p: &Packed<P>, xs: &[Vec<BlockQ8_0>]) {
        let sums: Vec<Vec<BlockTerms>> = xs
            .iter()
            .map(|x| {
                let mut s = vec![BlockTerms::default(); x.len()];
                block_terms::<P>(x, &mut s);
                s
            })
            .collect();
        let xr: [&[BlockQ8_0]; 4] = std::array::from_fn(|k| xs[k].as_slice());
        let sr: [&[BlockTerms]; 4] = std::array::from_fn(|k| sums[k].as_slice());
        let want = crate::test_util::bits(gemm_ref(p.group(0), xr, sr));
        assert_eq!(crate::test_util::bits(gemm(p.group(0), xr, sr)), want);
        for (name, ok) in levels_for_tests() {
            if ok {
                assert_eq!(
                    crate::test_util::bits(gemm_at(name, p.group(0), xr, sr)),
                    want,
                    "{name}"
                );
            }
        }
    }

    /// Q4_0's and Q5_0's largest unsigned levels (15, 31: every bit set) against activations of −128 and 127:
    /// the i16 bounds of AVX2's narrow sums (eight dots of nibbles, four of five-bit levels) are reached, and
    /// every level gives the reference's bits.
    #[test]
    fn q4_0_and_q5_0_extreme_levels_equal_the_reference() {
        fn check<P: Pack8>() {
            let mut w = vec![P::Src::zeroed(); 8 * 2];
            for b in &mut w {
                let bytes = bytemuck::bytes_of_mut(b);
                bytes[..2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
                bytes[2..].fill(0xFF);
            }
            let p = Packed::<P>::pack(&w, 8, 2 * QK).unwrap();
            let xs: Vec<Vec<BlockQ8_0>> = [-128_i8, 127, -128, 127]
                .into_iter()
                .map(|q| {
                    vec![
                        BlockQ8_0 {
                            d: half::f16::from_f32(0.5),
                            qs: [q; QK]
                        };
                        2
                    ]
                })
                .collect();
            assert_group0_matches_on_every_level(&p, &xs);
        }
        check::<BlockQ4_0x8>();
        check::<BlockQ5_0x8>();
    }

    /// Q8_0's extreme levels: weights of −128 and 127 against activations of ±127, where AVX2's signed-level
    /// kernel must not overflow its 16-bit pair sums nor flip −128 wrongly; every level gives the reference's bits.
    #[test]
    fn q8_0_extreme_levels_equal_the_reference() {
        let mut w = vec![BlockQ8_0::zeroed(); 8 * 2];
        for (r, b) in w.iter_mut().enumerate() {
            b.d = half::f16::from_f32(0.01 * (r + 1) as f32);
            for (e, q) in b.qs.iter_mut().enumerate() {
                // Both elements of each pair alike, so the pair sums reach ±2·128·127.
                *q = if (r + e / 2) % 2 == 0 { 127 } else { -128 };
            }
        }
        let p = Packed::<BlockQ8_0x8>::pack(&w, 8, 2 * QK).unwrap();
        let xs: Vec<Vec<BlockQ8_0>> = (0..4)
            .map(|k| {
                let mut x = vec![BlockQ8_0::zeroed(); 2];
                for (i, b) in x.iter_mut().enumerate() {
                    b.d = half::f16::from_f32(0.5 + k as f32);
                    for (e, q) in b.qs.iter_mut().enumerate() {
                        *q = if (e / 2 + i + k) % 3 == 0 { 127 } else { -127 };
                    }
                }
                x
            })
            .collect();
        assert_group0_matches_on_every_level(&p, &xs);
    }

    #[test]
    fn block_terms_are_the_scale_and_the_offset_level_sum() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut x: Vec<BlockQ8_0> = (0..20).map(|_| random_q8_0(&mut rng, QK)[0]).collect();
        x[0].qs = [-128; 32];
        x[1].qs = [127; 32];
        let mut t = vec![BlockTerms::default(); x.len()];
        block_terms::<BlockQ4_0x8>(&x, &mut t);
        for (b, t) in x.iter().zip(&t) {
            let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
            assert_eq!((t.d, t.base), (b.d.to_f32(), -8 * sum));
        }
    }

    #[test]
    fn rows_not_a_multiple_of_eight_are_not_packed() {
        let w = vec![BlockQ4_0::zeroed(); 12];
        assert!(PackedQ4_0::pack(&w, 12, 32).is_none());
        assert!(PackedQ4_0::pack(&w[..8], 8, 32).is_some());
    }
}
