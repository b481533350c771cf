//! The error type of silica-quant.

use silica_gguf::GgmlType;

/// Why a row could not be quantized or dequantized. Nothing is written to the output on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The type has no reference implementation here (see [`can_quantize`](crate::can_quantize) and
    /// [`can_dequantize`](crate::can_dequantize)).
    #[error("{op} is not supported for {ty}")]
    Unsupported {
        /// The requested type.
        ty: GgmlType,
        /// `"quantize"` or `"dequantize"`.
        op: &'static str,
    },
    /// The f32 row is not a whole number of blocks.
    #[error("{ty}: a row of {values} values is not a whole number of {block_len}-value blocks")]
    PartialBlock {
        /// The requested type.
        ty: GgmlType,
        /// Length of the f32 slice, in values.
        values: usize,
        /// Values per block of `ty` ([`GgmlType::block_len`]).
        block_len: usize,
    },
    /// The byte buffer does not have the size of `values` values of the type.
    #[error("{ty}: {values} values take {expected} bytes, but the byte buffer has {bytes}")]
    ByteLength {
        /// The requested type.
        ty: GgmlType,
        /// Length of the f32 slice, in values.
        values: usize,
        /// Bytes that `values` values of `ty` take ([`GgmlType::row_bytes`]).
        expected: usize,
        /// Length of the byte slice given.
        bytes: usize,
    },
}
