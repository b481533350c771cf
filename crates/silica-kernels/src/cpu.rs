//! Which SIMD level the kernels use: the best this CPU has, detected once, or a lower one the user chose
//! ([`set_simd`]); every kernel module (legacy, k-quant and repacked products, attention, activation quantizers)
//! picks its kernels from the same answer.

use std::sync::OnceLock;

/// A SIMD instruction-set level of the CPU kernels, in increasing order per architecture.
///
/// The names ([`Simd::name`]) are ggml's feature names (`ggml_backend_cpu_get_features`) lower-cased, with `-`
/// for `_`. Every level computes the same products: each SIMD kernel is tested against the scalar reference
/// (bit-identical, or the documented f32 rounding for the row-major legacy dot products).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// No SIMD kernels: the plain scalar references (any CPU; far slower, for checks).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Intel Haswell, AMD Zen 1 and later).
    Avx2,
    /// x86-64 AVX2 + AVX-VNNI: VEX-encoded `vpdpbusd` (Intel Alder Lake, AMD Zen 5 desktop).
    AvxVnni,
    /// x86-64 AVX-512 F, BW, VL and VNNI (Intel Ice Lake server, AMD Zen 4).
    Avx512Vnni,
    /// aarch64 NEON (Advanced SIMD).
    Neon,
    /// aarch64 NEON with the dot-product extension `sdot` (Apple M1 and later, Arm v8.2-A cores).
    NeonDotprod,
}

impl Simd {
    /// Every level, in declaration order.
    pub const ALL: [Simd; 6] = [
        Simd::Scalar,
        Simd::Avx2,
        Simd::AvxVnni,
        Simd::Avx512Vnni,
        Simd::Neon,
        Simd::NeonDotprod,
    ];

    /// The level's name: `scalar`, `avx2`, `avx-vnni`, `avx512-vnni`, `neon`, `neon-dotprod`.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::AvxVnni => "avx-vnni",
            Simd::Avx512Vnni => "avx512-vnni",
            Simd::Neon => "neon",
            Simd::NeonDotprod => "neon-dotprod",
        }
    }

    /// The level named `name` ([`Simd::name`]), or `None`.
    pub fn from_name(name: &str) -> Option<Simd> {
        Simd::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether this CPU runs the level's kernels (this build has them and the CPU has every feature).
    pub fn supported(self) -> bool {
        match self {
            Simd::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => x86::Level::Avx2.supported(),
            #[cfg(target_arch = "x86_64")]
            Simd::AvxVnni => x86::Level::AvxVnni.supported(),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni => x86::Level::Avx512Vnni.supported(),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Simd::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Simd::NeonDotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The levels this CPU runs, slowest first ([`Simd::Scalar`] always, the best last).
    pub fn available() -> Vec<Simd> {
        Simd::ALL.into_iter().filter(|l| l.supported()).collect()
    }

    /// The best level this CPU runs: the last of [`Simd::available`], what [`simd`] uses unless [`set_simd`]
    /// chose another.
    pub fn best() -> Simd {
        Simd::available().pop().unwrap_or(Simd::Scalar)
    }
}

impl std::fmt::Display for Simd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`set_simd`] refused a level.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimdError {
    /// This CPU (or this build's target) lacks a feature of the level.
    #[error("SIMD level {asked} is not supported by this CPU (it supports: {})", names(.available))]
    Unsupported {
        /// The level asked for.
        asked: Simd,
        /// The levels this CPU runs ([`Simd::available`]).
        available: Vec<Simd>,
    },
    /// The kernels already chose a level: it is fixed at first use, since repacked weights were laid out for it.
    #[error("SIMD level {asked} asked for after the kernels chose {in_use} (set it before loading a model)")]
    AlreadyChosen {
        /// The level asked for.
        asked: Simd,
        /// The level in use.
        in_use: Simd,
    },
}

/// `a, b, c`.
fn names(levels: &[Simd]) -> String {
    levels.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
}

/// The level every kernel uses, fixed at first use.
static CHOSEN: OnceLock<Simd> = OnceLock::new();

/// Makes the kernels use `level` (`None`: the best this CPU has), and returns the level in use.
///
/// Call it before the first product (before loading a model): the level is fixed at first use, because weights
/// repacked at load may be laid out for the level's kernels. A lower level than the CPU's best measures what
/// silica does on a machine without the newer instructions (an AVX2-only desktop on an AVX-512 server).
///
/// # Errors
/// [`SimdError::Unsupported`] when this CPU lacks the level; [`SimdError::AlreadyChosen`] when the kernels
/// already use another one.
pub fn set_simd(level: Option<Simd>) -> Result<Simd, SimdError> {
    let level = match level {
        None => Simd::best(),
        Some(l) if l.supported() => l,
        Some(l) => {
            return Err(SimdError::Unsupported {
                asked: l,
                available: Simd::available(),
            });
        }
    };
    let in_use = *CHOSEN.get_or_init(|| level);
    if in_use == level {
        Ok(level)
    } else {
        Err(SimdError::AlreadyChosen { asked: level, in_use })
    }
}

/// The level the kernels use: the one [`set_simd`] chose, else the best this CPU has (fixed by this call).
pub fn simd() -> Simd {
    *CHOSEN.get_or_init(Simd::best)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    /// An x86-64 instruction-set level the kernels are compiled for, in increasing order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) enum Level {
        /// AVX2 + FMA + F16C.
        Avx2,
        /// AVX2 + FMA + F16C + AVX-VNNI (VEX `vpdpbusd`).
        AvxVnni,
        /// AVX2 + FMA + F16C + AVX-512 F, BW, VL and VNNI.
        Avx512Vnni,
    }

    impl Level {
        /// Whether this CPU has every feature of the level.
        pub(crate) fn supported(self) -> bool {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            avx2 && match self {
                Level::Avx2 => true,
                Level::AvxVnni => is_x86_feature_detected!("avxvnni"),
                Level::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vl")
                        && is_x86_feature_detected!("avx512vnni")
                }
            }
        }
    }

    /// How far ahead of the block in use the one-token repacked Q4_0 / Q5_0 / Q8_0 kernel prefetches, in bytes.
    ///
    /// The hardware prefetchers alone kept the eight-row Q4_0 kernel at 82–91% of the STREAM triad from DRAM; a
    /// software prefetch 4 KiB ahead brought it to 97–100% (`examples/stream_dram.rs`, AMD EPYC Zen 4, 2 threads,
    /// alternating runs: 42.7 → 45.7 GB/s at 47 GB/s triad, 60 → 67 GB/s at 69). 2.3 KiB did as well, 9 and 18
    /// KiB worse. The one-token Q4_K and Q6_K kernels prefetch the same distance ahead, but a quarter of a block
    /// per quarter of its work ([`prefetch_ahead_part`]): asking for a whole 1152- or 1680-byte block at its
    /// start gained nothing (Q4_K) or lost 8% (Q6_K), spread over the block it gained 7–12% (Q4_K, 40 → 43–48
    /// GB/s) and 12–15% (Q6_K, 42 → 48 GB/s) at a 47 GB/s triad; 8 KiB ahead did no better.
    pub(crate) const PREFETCH_BYTES: usize = 4096;

    /// Asks for the 64-byte lines `from..to` of the bytes `PREFETCH_BYTES` after `start`: a hint that never
    /// faults, so the addresses may lie past the end of the matrix.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn prefetch_lines(start: *const i8, from: usize, to: usize) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = start.wrapping_add(PREFETCH_BYTES);
        for l in from..to {
            // SAFETY: a prefetch is a hint: it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * l)) };
        }
    }

    /// Asks for the cache lines `PREFETCH_BYTES` after `s`, as many as `s` spans: for kernels that walk a matrix
    /// (a row, or one block) in memory order.
    #[inline(always)]
    pub(crate) fn prefetch_slice_ahead<T>(s: &[T]) {
        prefetch_lines(s.as_ptr().cast(), 0, size_of_val(s).div_ceil(64));
    }

    /// [`prefetch_slice_ahead`] of one block.
    #[inline(always)]
    pub(crate) fn prefetch_ahead<T>(block: &T) {
        prefetch_slice_ahead(std::slice::from_ref(block));
    }

    /// Asks for the `PARTS`-th part `part` of the cache lines `PREFETCH_BYTES` after `block`: a kernel that walks
    /// a block in `PARTS` steps calls this once per step, spreading the block's requests over its work instead
    /// of issuing them all at its start.
    #[inline(always)]
    pub(crate) fn prefetch_ahead_part<T, const PARTS: usize>(block: &T, part: usize) {
        let lines = size_of::<T>().div_ceil(64);
        let start = (block as *const T).cast();
        prefetch_lines(start, lines * part / PARTS, lines * (part + 1) / PARTS);
    }

    /// Activation bytes `at..at + 4` of `q`, as one i32 broadcast to all eight lanes: the four elements each lane
    /// of the eight-row kernels multiplies (`vpdpbusd`, `vpmaddubsw`) per step.
    ///
    /// # Panics
    /// If `at + 4 > q.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn bcast4(q: &[i8], at: usize) -> std::arch::x86_64::__m256i {
        let q = &q[at..at + 4];
        std::arch::x86_64::_mm256_set1_epi32(i32::from_le_bytes([
            q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8,
        ]))
    }

    /// The 32 bytes at `at` of `a` in the low half of a zmm and those of `b` in the high half: the same bytes of
    /// two row groups' blocks, for the sixteen-row pair kernels.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `at + 32` must not exceed `a.len()` nor `b.len()`.
    #[target_feature(enable = "avx2,avx512f")]
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn load_pair(a: &[u8], b: &[u8], at: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        debug_assert!(at + 32 <= a.len() && at + 32 <= b.len());
        // SAFETY: the caller guarantees 32 readable bytes at `at` of both; unaligned loads.
        unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(a.as_ptr().add(at).cast())),
                _mm256_loadu_si256(b.as_ptr().add(at).cast()),
            )
        }
    }

    /// The level in use ([`super::simd`]: the fastest supported, or the one the user chose); `None`: the scalar
    /// references.
    #[inline]
    pub(crate) fn best() -> Option<Level> {
        match super::simd() {
            super::Simd::Avx2 => Some(Level::Avx2),
            super::Simd::AvxVnni => Some(Level::AvxVnni),
            super::Simd::Avx512Vnni => Some(Level::Avx512Vnni),
            _ => None,
        }
    }
}

/// The aarch64 levels of the kernels, read from [`simd`], and the instruction helpers they share.
#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)] // the helpers below wrap single instructions in inline assembly
pub(crate) mod arm {
    /// An aarch64 feature level the kernels are compiled for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Level {
        /// NEON (Advanced SIMD).
        Neon,
        /// NEON with the dot-product extension (`sdot`).
        DotProd,
    }

    impl Level {
        /// Whether this CPU has every feature of the level (the tests run every supported level).
        #[cfg(test)]
        pub(crate) fn supported(self) -> bool {
            match self {
                Level::Neon => super::Simd::Neon.supported(),
                Level::DotProd => super::Simd::NeonDotprod.supported(),
            }
        }
    }

    /// The level in use ([`super::simd`]: the fastest supported, or the one the user chose); `None`: the scalar
    /// references.
    #[inline]
    pub(crate) fn best() -> Option<Level> {
        match super::simd() {
            super::Simd::NeonDotprod => Some(Level::DotProd),
            super::Simd::Neon => Some(Level::Neon),
            _ => None,
        }
    }

    /// Whether the level in use has the dot-product extension: the repacked kernels (`repack`, `repack_k`) need
    /// `sdot` by element and are used only then.
    #[inline]
    pub(crate) fn has_dotprod() -> bool {
        best() == Some(Level::DotProd)
    }

    use std::arch::aarch64::*;
    use std::arch::asm;

    /// `acc` plus the sums of 4 adjacent byte products per lane, with the dot-product extension's `sdot`
    /// (Arm ARM, `SDOT (vector)`): lane `i` adds `Σ_t a[4i + t] · b[4i + t]`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    pub(crate) fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `sdot` reads and writes only these registers; this function's features include dotprod.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }

    /// `acc` plus, in every lane `i`, `Σ_t a[4i + t] · b[4L + t]`: the four bytes `4L..4L+4` of `b` against each
    /// lane's four of `a` (`SDOT (by element)`; `L` in 0..4). With `a` holding four elements of four rows, one per
    /// lane, and `b` a token's activations, one instruction advances four rows' dot products.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    pub(crate) fn sdot_lane<const L: u32>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        const { assert!(L < 4) };
        let mut acc = acc;
        // SAFETY: `sdot` reads and writes only these registers; this function's features include dotprod; the
        // lane index is below 4 (checked at compile time).
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.4b[{l}]",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                l = const L,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }

    /// Lanes 0–3 (`h` = 0) or 4–7 (`h` = 1) of `v`, sign-extended to i32: four rows' scales for a row half.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) fn half_i32(v: int16x8_t, h: usize) -> int32x4_t {
        if h == 0 {
            vmovl_s16(vget_low_s16(v))
        } else {
            vmovl_high_s16(v)
        }
    }

    /// Four rows' dot products over 32 elements, in two independent chains (so no `sdot` waits for the one before):
    /// `w[c]` holds elements `4c..4c+4` of four rows (one row per lane), `a[0]` and `a[1]` a token's activation
    /// bytes `0..16` and `16..32`. Returns `acc[0]` plus chunks 0..4 against `a[0]` (lane `c` by element `c`), and
    /// `acc[1]` plus chunks 4..8 against `a[1]`: eight `SDOT (by element)`, the inner loop of every repacked kernel.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    pub(crate) fn sdot8(acc: [int32x4_t; 2], w: &[int8x16_t; 8], a: [int8x16_t; 2]) -> [int32x4_t; 2] {
        let [mut s, mut t] = acc;
        s = sdot_lane::<0>(s, w[0], a[0]);
        t = sdot_lane::<0>(t, w[4], a[1]);
        s = sdot_lane::<1>(s, w[1], a[0]);
        t = sdot_lane::<1>(t, w[5], a[1]);
        s = sdot_lane::<2>(s, w[2], a[0]);
        t = sdot_lane::<2>(t, w[6], a[1]);
        s = sdot_lane::<3>(s, w[3], a[0]);
        t = sdot_lane::<3>(t, w[7], a[1]);
        [s, t]
    }

    /// The eight-row kernels' results: token `k`'s rows 0–3 in `acc[k][0]`, rows 4–7 in `acc[k][1]`.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) fn store8<const N: usize>(acc: [[float32x4_t; 2]; N]) -> [[f32; 8]; N] {
        let mut out = [[0f32; 8]; N];
        for (o, a) in out.iter_mut().zip(&acc) {
            // SAFETY: `o` is 32 writable bytes; unaligned stores.
            unsafe {
                vst1q_f32(o.as_mut_ptr(), a[0]);
                vst1q_f32(o.as_mut_ptr().add(4), a[1]);
            }
        }
        out
    }

    /// 0x10 in byte `k` where bit `k % 8` of `a` (`k < 8`) or `b` (`k ≥ 8`) is set, else 0: Q5_0's fifth bits
    /// spread to the byte lanes of its levels.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) fn fifth_bits(a: u8, b: u8) -> uint8x16_t {
        let bit = vcombine_u8(
            vcreate_u8(0x8040_2010_0804_0201),
            vcreate_u8(0x8040_2010_0804_0201),
        );
        let bytes = vcombine_u8(vdup_n_u8(a), vdup_n_u8(b));
        vandq_u8(vtstq_u8(bytes, bit), vdupq_n_u8(0x10))
    }

    /// Halves 0–3 of `h` as f32 (`FCVTL`, base Armv8.0 Advanced SIMD: no FEAT_FP16 needed; inline assembly
    /// because Rust's `float16x4_t` intrinsics are unstable).
    #[cfg(target_feature = "neon")]
    #[inline(always)]
    pub(crate) fn widen_lo(h: uint16x8_t) -> float32x4_t {
        let r: float32x4_t;
        // SAFETY: FCVTL reads and writes vector registers only (Armv8.0 Advanced SIMD, always present with NEON).
        unsafe {
            asm!("fcvtl {r:v}.4s, {h:v}.4h", r = lateout(vreg) r, h = in(vreg) h, options(pure, nomem, nostack));
        }
        r
    }

    /// Halves 4–7 of `h` as f32 (`FCVTL2`).
    #[cfg(target_feature = "neon")]
    #[inline(always)]
    pub(crate) fn widen_hi(h: uint16x8_t) -> float32x4_t {
        let r: float32x4_t;
        // SAFETY: as in `widen_lo`.
        unsafe {
            asm!("fcvtl2 {r:v}.4s, {h:v}.8h", r = lateout(vreg) r, h = in(vreg) h, options(pure, nomem, nostack));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for l in Simd::ALL {
            assert_eq!(Simd::from_name(l.name()), Some(l));
            assert_eq!(l.to_string(), l.name());
        }
        assert_eq!(Simd::from_name("auto"), None);
        assert_eq!(Simd::from_name("AVX2"), None);
    }

    #[test]
    fn available_levels_start_scalar_and_the_kernels_use_the_best_by_default() {
        let avail = Simd::available();
        assert_eq!(avail.first(), Some(&Simd::Scalar));
        assert!(avail.windows(2).all(|w| w[0] < w[1]), "{avail:?}");
        // No test in this crate calls `set_simd`, so the kernels run the best level.
        assert_eq!(Some(&simd()), avail.last());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            avail.contains(&Simd::Avx2),
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        );
    }

    #[test]
    fn set_simd_refuses_unsupported_levels_and_a_change_after_first_use() {
        let missing = Simd::ALL
            .into_iter()
            .find(|l| !l.supported())
            .expect("no target has every level");
        assert_eq!(
            set_simd(Some(missing)),
            Err(SimdError::Unsupported {
                asked: missing,
                available: Simd::available()
            })
        );
        let in_use = simd();
        assert_eq!(set_simd(Some(in_use)), Ok(in_use));
        assert_eq!(set_simd(None), Ok(in_use));
        // Scalar is always available, so it differs from the level in use wherever SIMD kernels exist.
        if in_use != Simd::Scalar {
            let err = set_simd(Some(Simd::Scalar)).unwrap_err();
            assert_eq!(
                err,
                SimdError::AlreadyChosen {
                    asked: Simd::Scalar,
                    in_use
                }
            );
            assert!(err.to_string().contains("before loading a model"), "{err}");
        }
        assert_eq!(simd(), in_use);
    }
}
