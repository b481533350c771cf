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
