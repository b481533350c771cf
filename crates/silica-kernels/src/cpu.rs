//! Which x86-64 SIMD level this CPU has: detected once, for every kernel module (legacy, k-quant and repacked
//! products pick their kernels from the same answer).

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::sync::OnceLock;

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

    /// The fastest supported level, detected once (`None`: no AVX2, use the scalar references).
    pub(crate) fn best() -> Option<Level> {
        static BEST: OnceLock<Option<Level>> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Level::Avx512Vnni, Level::AvxVnni, Level::Avx2]
                .into_iter()
                .find(|l| l.supported())
        })
    }
}
