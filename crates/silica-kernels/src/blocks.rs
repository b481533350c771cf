//! ggml's block structs (`ggml-common.h`), as `#[repr(C)]` plain-old-data so that rows of a GGUF tensor can be
//! viewed in place from the mmap (`bytemuck::try_cast_slice`: checks size and alignment, never copies).
//!
//! All multi-byte fields are little-endian (every target silica builds for is little-endian); `f16` is IEEE
//! binary16.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per legacy block (`QK4_0`, `QK4_1`, `QK5_0`, `QK8_0`, `QK8_1` in ggml-common.h).
pub const QK: usize = 32;
/// Values per k-quant super-block (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;

/// `block_q4_0`: element `j < 16` is `d·((qs[j] & 0xF) − 8)`, element `j + 16` is `d·((qs[j] >> 4) − 8)`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// 32 4-bit levels, two per byte (low nibbles: elements 0..16, high: 16..32).
    pub qs: [u8; QK / 2],
}

/// `block_q4_1`: `d·q + m`, nibbles laid out as [`BlockQ4_0`].
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// 32 4-bit levels.
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: `d·(q − 16)` with `q = nibble | (bit j of qh) << 4` (element `j`; `j + 16` takes bit `j + 16`).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits of the 32 levels, a little-endian `u32`.
    pub qh: [u8; 4],
    /// Low 4 bits of the 32 levels.
    pub qs: [u8; QK / 2],
}

/// `block_q8_0`: `d·qs[j]`. Also the activation block for Q4_0, Q5_0 and Q8_0 weights.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// 32 signed levels.
    pub qs: [i8; QK],
}

/// `block_q8_1`: `d·qs[j]`, with `s = d·Σqs` (rounded to f16). The activation block for Q4_1 weights.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d · Σ qs`.
    pub s: f16,
    /// 32 signed levels.
    pub qs: [i8; QK],
}

/// `block_q4_K`: 8 sub-blocks of 32; element value `d·sc·q − dmin·m` with 6-bit `sc`, `m` packed in `scales`
/// (`get_scale_min_k4` in ggml-quants.c).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; 12],
    /// 256 4-bit levels: byte `32·g + l` holds element `64·g + l` (low nibble) and `64·g + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}

/// `block_q5_K`: as [`BlockQ4K`] plus a fifth bit per element in `qh`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; 12],
    /// Fifth bits: bit `2g` of `qh[l]` for element `64·g + l`, bit `2g + 1` for `64·g + 32 + l`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as [`BlockQ4K::qs`].
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16; element value `d·scales[i/16]·(q − 32)`, 6-bit `q` = 4 low bits in `ql`,
/// 2 high bits in `qh` (`dequantize_row_q6_K` in ggml-quants.c gives the exact layout).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// 8-bit signed sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

/// `block_q8_K`: `d·qs[j]` with `bsums[g] = Σ qs[16g..16g+16]`. The activation block for k-quant weights.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other blocks).
    pub d: f32,
    /// 256 signed levels.
    pub qs: [i8; QK_K],
    /// Sums of each group of 16 levels.
    pub bsums: [i16; QK_K / 16],
}

// Sizes equal ggml's `static_assert`s in ggml-common.h.
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ8_1>() == 36);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockQ8K>() == 292);
