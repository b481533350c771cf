//! The ggml element types and llama.cpp file types, numbered and named exactly as in ggml.
//!
//! Block geometry follows `ggml_type_traits` in ggml.c and the `block_*` structs in ggml-common.h.

use std::fmt;
use std::str::FromStr;

/// Elements per k-quant super-block (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;

/// Element encoding of a tensor, numbered as in ggml's `enum ggml_type` / the GGUF spec.
///
/// Variant names are the spellings users see in llama.cpp and GGUF dumps (`Q4_K`, not `Q4K`);
/// [`fmt::Display`] and [`FromStr`] use them verbatim. Types removed from ggml (ids 4, 5, 31-33, 36-38)
/// have no variant: a file naming them is rejected with [`crate::Error::UnknownType`].
#[allow(non_camel_case_types)]
#[repr(u32)]
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 32 weights per block: f16 scale + 4-bit values, `w = d·(q − 8)`.
    Q4_0 = 2,
    /// 32 weights per block: f16 scale and min + 4-bit values, `w = d·q + m`.
    Q4_1 = 3,
    /// 32 weights per block: f16 scale + 5-bit values, `w = d·(q − 16)`.
    Q5_0 = 6,
    /// 32 weights per block: f16 scale and min + 5-bit values.
    Q5_1 = 7,
    /// 32 weights per block: f16 scale + int8 values.
    Q8_0 = 8,
    /// 32 weights per block: f16 scale, f16 sum + int8 values (activations only).
    Q8_1 = 9,
    /// 2-bit k-quant, 256-weight super-blocks.
    Q2_K = 10,
    /// 3-bit k-quant.
    Q3_K = 11,
    /// 4-bit k-quant.
    Q4_K = 12,
    /// 5-bit k-quant.
    Q5_K = 13,
    /// 6-bit k-quant.
    Q6_K = 14,
    /// 8-bit k-quant with f32 scale and block sums (activations only).
    Q8_K = 15,
    /// i-quant, 2.06 bits per weight.
    IQ2_XXS = 16,
    /// i-quant, 2.31 bits per weight.
    IQ2_XS = 17,
    /// i-quant, 3.06 bits per weight.
    IQ3_XXS = 18,
    /// i-quant, 1.56 bits per weight.
    IQ1_S = 19,
    /// non-linear 4-bit, 32-weight blocks.
    IQ4_NL = 20,
    /// i-quant, 3.44 bits per weight.
    IQ3_S = 21,
    /// i-quant, 2.5 bits per weight.
    IQ2_S = 22,
    /// non-linear 4-bit, 256-weight super-blocks.
    IQ4_XS = 23,
    /// 8-bit integer.
    I8 = 24,
    /// 16-bit integer.
    I16 = 25,
    /// 32-bit integer.
    I32 = 26,
    /// 64-bit integer.
    I64 = 27,
    /// 64-bit float.
    F64 = 28,
    /// i-quant, 1.75 bits per weight.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// ternary, 1.69 bits per weight.
    TQ1_0 = 34,
    /// ternary, 2.06 bits per weight.
    TQ2_0 = 35,
    /// microscaling FP4 (OCP MX), 32-weight blocks with an E8M0 scale.
    MXFP4 = 39,
}

/// `(type, name, elements per block, bytes per block)`, from `ggml_type_traits` (ggml.c) and the block
/// structs of ggml-common.h.
const TYPES: &[(GgmlType, &str, usize, usize)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", QK_K, 84),
    (GgmlType::Q3_K, "Q3_K", QK_K, 110),
    (GgmlType::Q4_K, "Q4_K", QK_K, 144),
    (GgmlType::Q5_K, "Q5_K", QK_K, 176),
    (GgmlType::Q6_K, "Q6_K", QK_K, 210),
    (GgmlType::Q8_K, "Q8_K", QK_K, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", QK_K, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", QK_K, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", QK_K, 98),
    (GgmlType::IQ1_S, "IQ1_S", QK_K, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", QK_K, 110),
    (GgmlType::IQ2_S, "IQ2_S", QK_K, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", QK_K, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", QK_K, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", QK_K, 54),
    (GgmlType::TQ2_0, "TQ2_0", QK_K, 66),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
];

impl GgmlType {
    /// Every type in the table, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPES.iter().map(|t| t.0)
    }

    fn entry(self) -> &'static (GgmlType, &'static str, usize, usize) {
        // Every variant has exactly one row; the unit test `table_covers_every_id` checks it.
        TYPES.iter().find(|t| t.0 == self).unwrap_or(&TYPES[0])
    }

    /// The type with ggml id `id`, or `None` for an unknown or removed id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPES.iter().find(|t| t.0 as u32 == id).map(|t| t.0)
    }

    /// The ggml id (`enum ggml_type` value).
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// The ggml name (`Q4_K`, `BF16`).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Elements per block: 1 for plain numbers, 32 for legacy quants, [`QK_K`] (256) for k- and i-quants.
    pub fn block_len(self) -> usize {
        self.entry().2
    }

    /// Bytes per block; `Q4_0` is 18 (an f16 scale + 16 bytes of nibbles).
    pub fn block_bytes(self) -> usize {
        self.entry().3
    }

    /// Storage bytes of a row of `n_elements`, or `None` if the row is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, n_elements: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !n_elements.is_multiple_of(bl) {
            return None;
        }
        (n_elements / bl).checked_mul(self.block_bytes() as u64)
    }

    /// Average bits per weight (`8 · block_bytes / block_len`): 4.5 for `Q4_0`.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.block_bytes() as f64 / self.block_len() as f64
    }

    /// Whether this is a block-quantized type (not a plain float or integer).
    pub fn is_quantized(self) -> bool {
        !matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::F64
                | GgmlType::I8
                | GgmlType::I16
                | GgmlType::I32
                | GgmlType::I64
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`GgmlType::from_str`] and [`FileType::from_str`]: the name is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`")]
pub struct UnknownName {
    /// What was parsed: `ggml type` or `file type`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

impl FromStr for GgmlType {
    type Err = UnknownName;
    /// Parses a ggml name, case-insensitively (`q4_k`, `Q4_K`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TYPES
            .iter()
            .find(|t| t.1.eq_ignore_ascii_case(s))
            .map(|t| t.0)
            .ok_or_else(|| UnknownName {
                what: "ggml type",
                name: s.to_owned(),
            })
    }
}

/// A llama.cpp file type (`general.file_type`, `enum llama_ftype` in llama.h): the quantization mix
/// of a whole model, shown as `Q4_K_M`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// All tensors F32.
    ALL_F32 = 0,
    /// F16 except 1-D tensors.
    MOSTLY_F16 = 1,
    /// Q4_0.
    MOSTLY_Q4_0 = 2,
    /// Q4_1.
    MOSTLY_Q4_1 = 3,
    /// Q8_0.
    MOSTLY_Q8_0 = 7,
    /// Q5_0.
    MOSTLY_Q5_0 = 8,
    /// Q5_1.
    MOSTLY_Q5_1 = 9,
    /// Q2_K.
    MOSTLY_Q2_K = 10,
    /// Q3_K small.
    MOSTLY_Q3_K_S = 11,
    /// Q3_K medium.
    MOSTLY_Q3_K_M = 12,
    /// Q3_K large.
    MOSTLY_Q3_K_L = 13,
    /// Q4_K small.
    MOSTLY_Q4_K_S = 14,
    /// Q4_K medium.
    MOSTLY_Q4_K_M = 15,
    /// Q5_K small.
    MOSTLY_Q5_K_S = 16,
    /// Q5_K medium.
    MOSTLY_Q5_K_M = 17,
    /// Q6_K.
    MOSTLY_Q6_K = 18,
    /// IQ2_XXS.
    MOSTLY_IQ2_XXS = 19,
    /// IQ2_XS.
    MOSTLY_IQ2_XS = 20,
    /// Q2_K small.
    MOSTLY_Q2_K_S = 21,
    /// IQ3_XS.
    MOSTLY_IQ3_XS = 22,
    /// IQ3_XXS.
    MOSTLY_IQ3_XXS = 23,
    /// IQ1_S.
    MOSTLY_IQ1_S = 24,
    /// IQ4_NL.
    MOSTLY_IQ4_NL = 25,
    /// IQ3_S.
    MOSTLY_IQ3_S = 26,
    /// IQ3_M.
    MOSTLY_IQ3_M = 27,
    /// IQ2_S.
    MOSTLY_IQ2_S = 28,
    /// IQ2_M.
    MOSTLY_IQ2_M = 29,
    /// IQ4_XS.
    MOSTLY_IQ4_XS = 30,
    /// IQ1_M.
    MOSTLY_IQ1_M = 31,
    /// BF16.
    MOSTLY_BF16 = 32,
    /// TQ1_0.
    MOSTLY_TQ1_0 = 36,
    /// TQ2_0.
    MOSTLY_TQ2_0 = 37,
    /// MXFP4 for MoE experts.
    MOSTLY_MXFP4_MOE = 38,
}

const FILE_TYPES: &[(FileType, &str)] = &[
    (FileType::ALL_F32, "F32"),
    (FileType::MOSTLY_F16, "F16"),
    (FileType::MOSTLY_Q4_0, "Q4_0"),
    (FileType::MOSTLY_Q4_1, "Q4_1"),
    (FileType::MOSTLY_Q8_0, "Q8_0"),
    (FileType::MOSTLY_Q5_0, "Q5_0"),
    (FileType::MOSTLY_Q5_1, "Q5_1"),
    (FileType::MOSTLY_Q2_K, "Q2_K"),
    (FileType::MOSTLY_Q3_K_S, "Q3_K_S"),
    (FileType::MOSTLY_Q3_K_M, "Q3_K_M"),
    (FileType::MOSTLY_Q3_K_L, "Q3_K_L"),
    (FileType::MOSTLY_Q4_K_S, "Q4_K_S"),
    (FileType::MOSTLY_Q4_K_M, "Q4_K_M"),
    (FileType::MOSTLY_Q5_K_S, "Q5_K_S"),
    (FileType::MOSTLY_Q5_K_M, "Q5_K_M"),
    (FileType::MOSTLY_Q6_K, "Q6_K"),
    (FileType::MOSTLY_IQ2_XXS, "IQ2_XXS"),
    (FileType::MOSTLY_IQ2_XS, "IQ2_XS"),
    (FileType::MOSTLY_Q2_K_S, "Q2_K_S"),
    (FileType::MOSTLY_IQ3_XS, "IQ3_XS"),
    (FileType::MOSTLY_IQ3_XXS, "IQ3_XXS"),
    (FileType::MOSTLY_IQ1_S, "IQ1_S"),
    (FileType::MOSTLY_IQ4_NL, "IQ4_NL"),
    (FileType::MOSTLY_IQ3_S, "IQ3_S"),
    (FileType::MOSTLY_IQ3_M, "IQ3_M"),
    (FileType::MOSTLY_IQ2_S, "IQ2_S"),
    (FileType::MOSTLY_IQ2_M, "IQ2_M"),
    (FileType::MOSTLY_IQ4_XS, "IQ4_XS"),
    (FileType::MOSTLY_IQ1_M, "IQ1_M"),
    (FileType::MOSTLY_BF16, "BF16"),
    (FileType::MOSTLY_TQ1_0, "TQ1_0"),
    (FileType::MOSTLY_TQ2_0, "TQ2_0"),
    (FileType::MOSTLY_MXFP4_MOE, "MXFP4_MOE"),
];

impl FileType {
    /// Every file type, in id order.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|t| t.0)
    }

    /// The file type with `general.file_type` value `id`.
    pub fn from_id(id: u32) -> Option<FileType> {
        FILE_TYPES.iter().find(|t| t.0 as u32 == id).map(|t| t.0)
    }

    /// The `general.file_type` value.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// The name llama.cpp prints and `llama-quantize` takes (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        FILE_TYPES.iter().find(|t| t.0 == self).map_or("?", |t| t.1)
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = UnknownName;
    /// Parses a llama-quantize name, case-insensitively (`q4_k_m`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FILE_TYPES
            .iter()
            .find(|t| t.1.eq_ignore_ascii_case(s))
            .map(|t| t.0)
            .ok_or_else(|| UnknownName {
                what: "file type",
                name: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_id() {
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
                assert_eq!(t.entry().0, t);
                assert_eq!(t.name().parse::<GgmlType>(), Ok(t));
            }
        }
        assert_eq!(GgmlType::all().count(), TYPES.len());
        // Removed ids stay unknown.
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 40] {
            assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
        }
    }

    #[test]
    fn block_geometry_matches_ggml_structs() {
        // block_q4_0 = f16 + 16 nibble bytes; block_q4_K = 2·f16 + 12 scale bytes + 128 nibble bytes; block_q6_K =
        // 128 ql + 64 qh + 16 scales + f16.
        assert_eq!(
            (GgmlType::Q4_0.block_len(), GgmlType::Q4_0.block_bytes()),
            (32, 18)
        );
        assert_eq!(
            (GgmlType::Q4_K.block_len(), GgmlType::Q4_K.block_bytes()),
            (256, 144)
        );
        assert_eq!(GgmlType::Q6_K.block_bytes(), 128 + 64 + 16 + 2);
        assert_eq!(GgmlType::Q8_K.block_bytes(), 4 + 256 + 32);
        assert!((GgmlType::Q4_0.bits_per_weight() - 4.5).abs() < 1e-12);
        assert_eq!(GgmlType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(GgmlType::Q4_0.row_bytes(65), None);
        assert_eq!(GgmlType::Q4_K.row_bytes(576), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
    }

    #[test]
    fn file_types_round_trip() {
        for ft in FileType::all() {
            assert_eq!(FileType::from_id(ft.id()), Some(ft));
            assert_eq!(ft.name().parse::<FileType>(), Ok(ft));
        }
        assert_eq!("q4_k_m".parse::<FileType>(), Ok(FileType::MOSTLY_Q4_K_M));
        assert!("Q4_K_X".parse::<FileType>().is_err());
    }
}
