//! The legacy 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! Ports of `quantize_row_q*_ref` and `dequantize_row_q*` from ggml-quants.c; the layouts are the
//! `block_q*` structs of ggml-common.h. All multi-byte fields are little-endian; `f16` is IEEE
//! binary16. Element `j` of a block is `x[j]`, `j` in `0..32`.
//!
//! | type | bytes | layout | value |
//! |---|---|---|---|
//! | `Q4_0` | 18 | `d: f16`, `qs: [u8; 16]` | `x[j] = d·(q − 8)`, `q` 4 bits |
//! | `Q4_1` | 20 | `d: f16`, `m: f16`, `qs: [u8; 16]` | `x[j] = d·q + m` |
//! | `Q5_0` | 22 | `d: f16`, `qh: u32`, `qs: [u8; 16]` | `x[j] = d·(q − 16)`, `q` 5 bits |
//! | `Q5_1` | 24 | `d: f16`, `m: f16`, `qh: u32`, `qs: [u8; 16]` | `x[j] = d·q + m` |
//! | `Q8_0` | 34 | `d: f16`, `qs: [i8; 32]` | `x[j] = d·qs[j]` |
//!
//! Nibble order: `qs[j]` holds element `j` in its low nibble and element `j + 16` in its high nibble.
//! The fifth bit of element `j` is bit `j` of `qh` (so elements `16..32` use bits `16..32`).

use crate::cmath::trunc_i32;
use crate::float::{fp32_to_fp16, read_f16, write_f16};

/// Values per block of every legacy format (`QK4_0` = … = `QK8_0` = 32).
const QK: usize = 32;

/// `quantize_row_q4_0_ref`: `d = max / −8` where `max` is the value of largest magnitude, so that
/// value maps to `q = 0` exactly and the opposite end is clipped to `q = 15`.
pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK>().0.iter().zip(dst.as_chunks_mut::<18>().0) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(y, 0, fp32_to_fp16(d));
        for j in 0..QK / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK / 2 + j] * id;
            // C: MIN(15, (int8_t)(x0 + 8.5f)), stored in a uint8_t.
            let xi0 = 15.min(trunc_i32(x0 + 8.5) as i8) as u8;
            let xi1 = 15.min(trunc_i32(x1 + 8.5) as i8) as u8;
            y[2 + j] = xi0 | (xi1 << 4);
        }
    }
}

/// `dequantize_row_q4_0`.
pub(crate) fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<18>().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = read_f16(x, 0);
        for j in 0..QK / 2 {
            let x0 = i32::from(x[2 + j] & 0x0F) - 8;
            let x1 = i32::from(x[2 + j] >> 4) - 8;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// The minimum and maximum of a block, as `quantize_row_q4_1_ref` / `_q5_1_ref` find them (NaNs are
/// skipped by the comparisons).
fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `quantize_row_q4_1_ref`: `d = (max − min) / 15`, `m = min`, `q = ⌊(x − min)/d + ½⌋` capped at 15.
pub(crate) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK>().0.iter().zip(dst.as_chunks_mut::<20>().0) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(y, 0, fp32_to_fp16(d));
        write_f16(y, 2, fp32_to_fp16(min));
        for j in 0..QK / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK / 2 + j] - min) * id;
            let xi0 = 15.min(trunc_i32(x0 + 0.5) as i8) as u8;
            let xi1 = 15.min(trunc_i32(x1 + 0.5) as i8) as u8;
            y[4 + j] = xi0 | (xi1 << 4);
        }
    }
}

/// `dequantize_row_q4_1`.
pub(crate) fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<20>().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = read_f16(x, 0);
        let m = read_f16(x, 2);
        for j in 0..QK / 2 {
            let x0 = i32::from(x[4 + j] & 0x0F);
            let x1 = i32::from(x[4 + j] >> 4);
            y[j] = x0 as f32 * d + m;
            y[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// `quantize_row_q5_0_ref`: as Q4_0 with `d = max / −16` and 5-bit values.
pub(crate) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK>().0.iter().zip(dst.as_chunks_mut::<22>().0) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(y, 0, fp32_to_fp16(d));
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK / 2 + j] * id;
            let xi0 = 31.min(trunc_i32(x0 + 16.5) as i8) as u8;
            let xi1 = 31.min(trunc_i32(x1 + 16.5) as i8) as u8;
            y[6 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (u32::from(xi0 & 0x10) >> 4) << j;
            qh |= (u32::from(xi1 & 0x10) >> 4) << (j + QK / 2);
        }
        y[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

/// `dequantize_row_q5_0`.
pub(crate) fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<22>().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = read_f16(x, 0);
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        for j in 0..QK / 2 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = (u32::from(x[6 + j] & 0x0F) | xh_0) as i32 - 16;
            let x1 = (u32::from(x[6 + j] >> 4) | xh_1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// `quantize_row_q5_1_ref`: as Q4_1 with `d = (max − min) / 31` and 5-bit values (no cap: the
/// largest value rounds to 31).
pub(crate) fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK>().0.iter().zip(dst.as_chunks_mut::<24>().0) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(y, 0, fp32_to_fp16(d));
        write_f16(y, 2, fp32_to_fp16(min));
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK / 2 + j] - min) * id;
            // C: (uint8_t)(x0 + 0.5f).
            let xi0 = trunc_i32(x0 + 0.5) as u8;
            let xi1 = trunc_i32(x1 + 0.5) as u8;
            y[8 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (u32::from(xi0 & 0x10) >> 4) << j;
            qh |= (u32::from(xi1 & 0x10) >> 4) << (j + QK / 2);
        }
        y[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

/// `dequantize_row_q5_1`.
pub(crate) fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<24>().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = read_f16(x, 0);
        let m = read_f16(x, 2);
        let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
        for j in 0..QK / 2 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = u32::from(x[8 + j] & 0x0F) | xh_0;
            let x1 = u32::from(x[8 + j] >> 4) | xh_1;
            y[j] = x0 as f32 * d + m;
            y[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// `quantize_row_q8_0_ref`: `d = amax / 127`, `q = roundf(x / d)` (half away from zero, which is
/// Rust's [`f32::round`]).
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK>().0.iter().zip(dst.as_chunks_mut::<34>().0) {
        let mut amax = 0.0f32;
        for &v in x {
            // C: amax = MAX(amax, fabsf(v)) with MAX(a, b) = ((a) > (b) ? (a) : (b)); a NaN `v`
            // is taken (and replaced by the next value), unlike f32::max.
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(y, 0, fp32_to_fp16(d));
        for j in 0..QK {
            let x0 = x[j] * id;
            y[2 + j] = trunc_i32(x0.round()) as i8 as u8;
        }
    }
}

/// `dequantize_row_q8_0`.
pub(crate) fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<34>().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = read_f16(x, 0);
        for j in 0..QK {
            y[j] = f32::from(x[2 + j] as i8) * d;
        }
    }
}
