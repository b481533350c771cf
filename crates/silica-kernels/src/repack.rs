//! Q4_0 repacked eight rows at a time, for prefill and generation on x86-64 (llama.cpp repacks Q4_0 the same
//! way on AVX2 machines: `q4_0_8x8_q8_0` in `ggml-cpu/repack.cpp`; the layout and kernels here are silica's own).
//!
//! A [`BlockQ4_0x8`] holds block `i` of eight consecutive rows: their eight scales, then their nibbles arranged
//! so that one 32-byte load gives, for four consecutive elements, the levels of all eight rows. An integer dot
//! product of that vector with the matching four activation bytes broadcast to all lanes (`vpdpbusd`) then
//! accumulates one lane per row: after a block, lane `j` holds row `j`'s exact integer sum, and one convert and
//! one fused multiply-add with the eight row scales times the token's scale finish eight results at once. Per
//! block and token that is 8 `vpdpbusd` for 8 rows, against 1 `vpdpbusd` plus scaling work per row for the
//! row-major layout.
//!
//! The levels are used unsigned (0..15): `Σ (q − 8)·y = Σ q·y − 8·Σ y`, with `Σ y` of each activation block
//! computed once per product. Results are exact integers per block scaled in f32; they differ from ggml's
//! `vec_dot` only by f32 rounding. [`gemm_ref`] is the plain scalar reference (bit-identical by construction: the
//! same exact integers and the same fused multiply-add sequence).
#![allow(unsafe_code)]

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::blocks::{BlockQ4_0, BlockQ8_0, QK};

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

/// A `[rows, cols]` Q4_0 matrix repacked by groups of eight rows: group `g` is `cols / 32` [`BlockQ4_0x8`]s.
#[derive(Debug)]
pub struct PackedQ4_0 {
    rows: usize,
    cols: usize,
    blocks: Vec<BlockQ4_0x8>,
}

impl PackedQ4_0 {
    /// Repacks row-major Q4_0 blocks (`rows · cols / 32` of them), or `None` if `rows` is not a multiple of 8.
    ///
    /// # Panics
    /// If `w.len() != rows · cols / 32` or `cols` is not a multiple of 32.
    pub fn pack(w: &[BlockQ4_0], rows: usize, cols: usize) -> Option<Self> {
        assert!(
            cols.is_multiple_of(QK) && w.len() == rows * cols / QK,
            "PackedQ4_0::pack: shape"
        );
        if !rows.is_multiple_of(8) {
            return None;
        }
        let nb = cols / QK;
        let mut blocks = Vec::with_capacity(rows / 8 * nb);
        for g in 0..rows / 8 {
            for i in 0..nb {
                let mut b = BlockQ4_0x8::zeroed();
                for j in 0..8 {
                    let src = &w[(8 * g + j) * nb + i];
                    b.d[j] = src.d;
                    for c in 0..4 {
                        for t in 0..4 {
                            // Source byte `4c + t` holds elements 4c+t (low) and 16+4c+t (high) already.
                            b.qs[32 * c + 4 * j + t] = src.qs[4 * c + t];
                        }
                    }
                }
                blocks.push(b);
            }
        }
        Some(PackedQ4_0 { rows, cols, blocks })
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
        self.blocks.len() * size_of::<BlockQ4_0x8>()
    }

    /// The blocks of row group `g` (rows `8g..8g+8`).
    pub(crate) fn group(&self, g: usize) -> &[BlockQ4_0x8] {
        let nb = self.cols / QK;
        &self.blocks[g * nb..(g + 1) * nb]
    }
}

/// `Σ levels` of each activation block (the `−8·Σy` correction of the unsigned-level products).
pub fn block_sums(x: &[BlockQ8_0], out: &mut [i32]) {
    for (s, b) in out.iter_mut().zip(x) {
        *s = b.qs.iter().map(|&q| i32::from(q)).sum();
    }
}

/// Scalar reference: `out[k][j] = Σ_i fma-accumulated (d_j·dx_k) · (Σ_t q·y − 8·Σy)` for the eight rows of
/// `w` (one group) and `N` tokens.
#[allow(clippy::needless_range_loop)]
pub fn gemm_ref<const N: usize>(w: &[BlockQ4_0x8], x: [&[BlockQ8_0]; N], xs: [&[i32]; N]) -> [[f32; 8]; N] {
    let mut out = [[0f32; 8]; N];
    for (i, wb) in w.iter().enumerate() {
        for k in 0..N {
            let yb = &x[k][i];
            let dx = yb.d.to_f32();
            for j in 0..8 {
                let mut isum = 0i32;
                for c in 0..4 {
                    for t in 0..4 {
                        let byte = wb.qs[32 * c + 4 * j + t];
                        isum += i32::from(byte & 0x0F) * i32::from(yb.qs[4 * c + t]);
                        isum += i32::from(byte >> 4) * i32::from(yb.qs[16 + 4 * c + t]);
                    }
                }
                let p = (isum - 8 * xs[k][i]) as f32;
                out[k][j] = (wb.d[j].to_f32() * dx).mul_add(p, out[k][j]);
            }
        }
    }
    out
}

/// Whether this CPU has a SIMD kernel for the repacked layout (x86-64 with AVX2, FMA and F16C). Elsewhere the
/// row-major kernels are faster than [`gemm_ref`], so callers should not repack.
pub fn has_fast_path() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out[k][j]` for the eight rows of one group and `N ≤ 4` tokens on the fastest path this CPU has.
pub fn gemm<const N: usize>(w: &[BlockQ4_0x8], x: [&[BlockQ8_0]; N], xs: [&[i32]; N]) -> [[f32; 8]; N] {
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
    gemm_ref(w, x, xs)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{BlockQ4_0x8, BlockQ8_0};

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Level {
        Scalar,
        Avx2,
        Avx512Vnni,
    }

    fn level() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                Level::Avx512Vnni
            } else if avx2 {
                Level::Avx2
            } else {
                Level::Scalar
            }
        })
    }

    pub(super) fn available() -> bool {
        level() != Level::Scalar
    }

    pub(super) fn gemm<const N: usize>(
        w: &[BlockQ4_0x8],
        x: [&[BlockQ8_0]; N],
        xs: [&[i32]; N],
    ) -> Option<[[f32; 8]; N]> {
        match level() {
            Level::Scalar => None,
            // SAFETY: `level` detected AVX2, FMA and F16C.
            Level::Avx2 => Some(unsafe { avx2::gemm(w, x, xs) }),
            // SAFETY: `level` detected AVX2, FMA, F16C, AVX-512 VNNI and VL.
            Level::Avx512Vnni => Some(unsafe { avx512vnni::gemm(w, x, xs) }),
        }
    }

    macro_rules! kernels {
        ($name:ident, $feat:literal, |$acc:ident, $a:ident, $b:ident| $dot:expr) => {
            pub(super) mod $name {
                use std::arch::x86_64::*;

                use super::super::{BlockQ4_0x8, BlockQ8_0};

                /// `acc + Σ` of 4 adjacent products of unsigned `a` and signed `b` bytes, per i32 lane.
                #[target_feature(enable = $feat)]
                #[inline]
                fn dot($acc: __m256i, $a: __m256i, $b: __m256i) -> __m256i {
                    $dot
                }

                /// Four activation bytes `4c..4c+4` of a block, as one i32 broadcast to all lanes.
                #[target_feature(enable = $feat)]
                #[inline]
                fn bcast4(yb: &BlockQ8_0, at: usize) -> __m256i {
                    let q = &yb.qs[at..at + 4];
                    _mm256_set1_epi32(i32::from_le_bytes([
                        q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8,
                    ]))
                }

                /// See [`super::super::gemm`].
                #[target_feature(enable = $feat)]
                pub(in super::super) fn gemm<const N: usize>(
                    w: &[BlockQ4_0x8],
                    x: [&[BlockQ8_0]; N],
                    xs: [&[i32]; N],
                ) -> [[f32; 8]; N] {
                    let low = _mm256_set1_epi8(0x0F);
                    let mut acc = [_mm256_setzero_ps(); N];
                    for (i, wb) in w.iter().enumerate() {
                        let mut lv = [_mm256_setzero_si256(); 8];
                        for c in 0..4 {
                            // SAFETY: `qs` has 128 bytes; `32c + 32 ≤ 128`; unaligned load.
                            let raw = unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(32 * c).cast()) };
                            lv[c] = _mm256_and_si256(raw, low);
                            lv[4 + c] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                        }
                        // SAFETY: `d` is 16 readable bytes; unaligned load.
                        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wb.d.as_ptr().cast()) });
                        for k in 0..N {
                            let yb = &x[k][i];
                            let mut s = _mm256_setzero_si256();
                            for c in 0..4 {
                                s = dot(s, lv[c], bcast4(yb, 4 * c));
                                s = dot(s, lv[4 + c], bcast4(yb, 16 + 4 * c));
                            }
                            let s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * xs[k][i]));
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(yb.d.to_f32()));
                            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[k]);
                        }
                    }
                    let mut out = [[0f32; 8]; N];
                    for k in 0..N {
                        // SAFETY: `out[k]` is 32 writable bytes; unaligned store.
                        unsafe { _mm256_storeu_ps(out[k].as_mut_ptr(), acc[k]) };
                    }
                    out
                }
            }
        };
    }

    kernels!(avx2, "avx2,fma,f16c", |acc, a, b| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    ));
    kernels!(avx512vnni, "avx2,fma,f16c,avx512vnni,avx512vl", |acc, a, b| {
        _mm256_dpbusd_epi32(acc, a, b)
    });

    #[cfg(test)]
    pub(super) fn levels_for_tests() -> Vec<(&'static str, bool)> {
        vec![
            ("avx2", level() != Level::Scalar),
            ("avx512vnni", level() == Level::Avx512Vnni),
        ]
    }

    #[cfg(test)]
    pub(super) fn gemm_at<const N: usize>(
        name: &str,
        w: &[BlockQ4_0x8],
        x: [&[BlockQ8_0]; N],
        xs: [&[i32]; N],
    ) -> [[f32; 8]; N] {
        // SAFETY: callers pass only the levels `levels_for_tests` reports as available.
        unsafe {
            match name {
                "avx2" => avx2::gemm(w, x, xs),
                _ => avx512vnni::gemm(w, x, xs),
            }
        }
    }

    #[allow(dead_code)]
    fn _unused(_: __m256) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random_q4_0(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<BlockQ4_0> {
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut bytes = vec![0u8; rows * cols / QK * 18];
        for (src, dst) in x.chunks_exact(cols).zip(bytes.chunks_exact_mut(cols / QK * 18)) {
            silica_quant::quantize_row(silica_gguf::GgmlType::Q4_0, src, dst).unwrap();
        }
        bytemuck::cast_slice::<u8, BlockQ4_0>(&bytes).to_vec()
    }

    fn random_q8_0(rng: &mut StdRng, cols: usize) -> Vec<BlockQ8_0> {
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let mut b = vec![BlockQ8_0::zeroed(); cols / QK];
        crate::q8::quantize_row_q8_0(&x, &mut b);
        b
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn packed_products_equal_the_reference_bitwise_and_the_row_major_dot_closely() {
        let mut rng = StdRng::seed_from_u64(5);
        for (rows, cols) in [(8, 32), (16, 96), (24, 576)] {
            let w = random_q4_0(&mut rng, rows, cols);
            let p = PackedQ4_0::pack(&w, rows, cols).unwrap();
            let nb = cols / QK;
            let xs: Vec<Vec<BlockQ8_0>> = (0..4).map(|_| random_q8_0(&mut rng, cols)).collect();
            let sums: Vec<Vec<i32>> = xs
                .iter()
                .map(|x| {
                    let mut s = vec![0; nb];
                    block_sums(x, &mut s);
                    s
                })
                .collect();
            for g in 0..rows / 8 {
                let xr: [&[BlockQ8_0]; 4] = std::array::from_fn(|k| xs[k].as_slice());
                let sr: [&[i32]; 4] = std::array::from_fn(|k| sums[k].as_slice());
                let want = gemm_ref(p.group(g), xr, sr);
                let got = gemm(p.group(g), xr, sr);
                assert_eq!(
                    got.map(|r| r.map(f32::to_bits)),
                    want.map(|r| r.map(f32::to_bits))
                );
                let one = gemm::<1>(p.group(g), [xr[2]], [sr[2]]);
                assert_eq!(one[0].map(f32::to_bits), want[2].map(f32::to_bits));
                #[cfg(target_arch = "x86_64")]
                for (name, ok) in x86::levels_for_tests() {
                    if ok {
                        let got = x86::gemm_at(name, p.group(g), xr, sr);
                        assert_eq!(
                            got.map(|r| r.map(f32::to_bits)),
                            want.map(|r| r.map(f32::to_bits)),
                            "{name}"
                        );
                    }
                }
                // Against the row-major kernel's reference: same products, other rounding.
                for k in 0..4 {
                    for j in 0..8 {
                        let r = 8 * g + j;
                        let row = &w[r * nb..(r + 1) * nb];
                        let v = <BlockQ4_0 as crate::WeightBlock>::vec_dot_ref(row, &xs[k]);
                        let mag: f32 = row
                            .iter()
                            .zip(&xs[k])
                            .map(|(a, b)| (a.d.to_f32() * b.d.to_f32()).abs() * 32.0 * 8.0 * 127.0)
                            .sum();
                        assert!(
                            (v - want[k][j]).abs() <= 1e-6 * mag,
                            "row {r} token {k}: {v} vs {}",
                            want[k][j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rows_not_a_multiple_of_eight_are_not_packed() {
        let w = vec![BlockQ4_0::zeroed(); 12];
        assert!(PackedQ4_0::pack(&w, 12, 32).is_none());
        assert!(PackedQ4_0::pack(&w[..8], 8, 32).is_some());
    }
}
