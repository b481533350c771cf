//! The k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, in 256-value super-blocks.
//!
//! Ports of `quantize_row_q*_K_ref`, their helpers (`make_qx_quants`, `make_q3_quants`,
//! `make_qkx2_quants`, `get_scale_min_k4`) and `dequantize_row_q*_K` from ggml-quants.c. The
//! `_ref` quantizers are what `llama-quantize` runs when no importance matrix is given. Layouts are
//! the `block_q*_K` structs of ggml-common.h; all multi-byte fields are little-endian, `f16` is IEEE
//! binary16.
//!
//! | type | bytes | layout (in order) |
//! |---|---|---|
//! | `Q2_K` | 84 | `scales: [u8; 16]`, `qs: [u8; 64]`, `d: f16`, `dmin: f16` |
//! | `Q3_K` | 110 | `hmask: [u8; 32]`, `qs: [u8; 64]`, `scales: [u8; 12]`, `d: f16` |
//! | `Q4_K` | 144 | `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qs: [u8; 128]` |
//! | `Q5_K` | 176 | `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qh: [u8; 32]`, `qs: [u8; 128]` |
//! | `Q6_K` | 210 | `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16` |
//! | `Q8_K` | 292 | `d: f32`, `qs: [i8; 256]`, `bsums: [i16; 16]` |
//!
//! - **Q2_K**: 16 sub-blocks of 16. `scales[j]` holds the 4-bit scale (low nibble) and 4-bit min (high
//!   nibble) of sub-block `j`; `x = d·sc·q − dmin·m`, `q` 2 bits. `qs` packs 2-bit values: for each
//!   128-value half `h`, byte `32h + l` holds elements `128h + l + 32s` in bits `2s..2s+2`, `s` in `0..4`.
//! - **Q3_K**: 16 sub-blocks of 16, symmetric: `x = d·(sc − 32)·(q − 4)`, `q` 3 bits. The low 2 bits
//!   are packed in `qs` as in Q2_K; the high bit of element `i` is bit `i / 32` of `hmask[i % 32]`.
//!   The 6-bit scales: low 4 bits of scale `j` in the low (`j < 8`) or high (`j ≥ 8`) nibble of
//!   `scales[j % 8]`, high 2 bits at bits `2·(j / 4)` of `scales[8 + j % 4]`.
//! - **Q4_K / Q5_K**: 8 sub-blocks of 32 with a 6-bit scale `sc` and 6-bit min `m` each
//!   (`get_scale_min_k4`): for `j < 4`, `sc = scales[j] & 63`, `m = scales[j + 4] & 63`; for `j ≥ 4`
//!   the low 4 bits are the nibbles of `scales[j + 4]` and the high 2 bits the top bits of `scales[j − 4]`
//!   (scale) and `scales[j]` (min). `x = d·sc·q − dmin·m`. `qs` holds, per 64 values, 32 bytes whose low
//!   nibbles are the first 32 values and high nibbles the next 32; Q5_K's fifth bit of value `64p + l`
//!   is bit `2p` of `qh[l]` (and of value `64p + 32 + l`, bit `2p + 1`).
//! - **Q6_K**: 16 sub-blocks of 16, symmetric: `x = d·scales[j]·(q − 32)`, `q` 6 bits. Per 128-value
//!   half `h` (`ql` bytes `64h..`, `qh` bytes `32h..`): element `128h + l + 32s` (`l` in `0..32`) has its
//!   low nibble in `ql[64h + l + 32·(s % 2)]` (low nibble for `s < 2`, high for `s ≥ 2`) and its high 2
//!   bits at bits `2s..2s+2` of `qh[32h + l]`.
//! - **Q8_K**: `x = d·qs[i]`, `d` an f32; `bsums[j]` is the sum of `qs[16j..16j+16]`.

use crate::cmath::nearest_int;
use crate::float::{fp16_to_fp32, fp32_to_fp16, read_f16, write_f16};

/// Values per super-block (`QK_K`).
const QK_K: usize = 256;

/// `GROUP_MAX_EPS` (ggml-quants.c): below this magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

// ===================================== helpers ==========================================

/// `make_qx_quants` with `rmse_type = 1` and no importance weights (`qw = NULL`), the only form
/// `quantize_row_q6_K_ref` uses: a symmetric scale for `n = 16` values and levels `L[i]` in
/// `0..2·nmax`, choosing among 19 candidate scales the one with the least `x²`-weighted error.
fn make_qx_quants(nmax: i32, x: &[f32; 16], levels: &mut [i8; 16]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    // C: -nmax / max, an int negated then promoted.
    let mut iscale = (-nmax) as f32 / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (&xi, li) in x.iter().zip(levels.iter_mut()) {
        let l = nearest_int(iscale * xi).min(nmax - 1).max(-nmax);
        *li = (l + nmax) as i8;
        let w = xi * xi;
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9i32 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &xi in x {
            let l = nearest_int(iscale * xi).min(nmax - 1).max(-nmax);
            let w = xi * xi;
            sumlx += w * xi * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (&xi, li) in x.iter().zip(levels.iter_mut()) {
                let l = nearest_int(iscale * xi);
                *li = (nmax + l.min(nmax - 1).max(-nmax)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse = true` (as `quantize_row_q3_K_ref` calls it): a symmetric scale for
/// `n = 16` values, then up to 5 passes that move single levels while the `x²`-weighted fit improves.
/// Levels end in `0..2·nmax` (all zero for an all-zero group).
fn make_q3_quants(nmax: i32, x: &[f32; 16], levels: &mut [i8; 16]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = (-nmax) as f32 / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (&xi, li) in x.iter().zip(levels.iter_mut()) {
        let l = nearest_int(iscale * xi).min(nmax - 1).max(-nmax);
        *li = l as i8;
        let w = xi * xi;
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _itry in 0..5 {
        let mut n_changed = 0;
        for (&xi, li) in x.iter().zip(levels.iter_mut()) {
            let w = xi * xi;
            let lf = f32::from(*li);
            let mut slx = sumlx - w * xi * lf;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * lf * lf;
                let new_l = nearest_int(xi * sl2 / slx).min(nmax - 1).max(-nmax);
                if new_l != i32::from(*li) {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for li in levels.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// `make_qkx2_quants`: an asymmetric fit `x ≈ scale·L − the_min` (`L` in `0..=nmax`, `the_min ≥ 0`) of
/// `N` values under `weights`, trying `nstep + 1` candidate scales
/// `(rmin + rdelta·is + nmax) / (max − min)` and refitting scale and min by weighted least squares.
/// Returns `(scale, the_min)`.
#[allow(clippy::too_many_arguments)] // mirrors the C signature
fn make_qkx2_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    weights: &[f32; N],
    levels: &mut [u8; N],
    laux: &mut [u8; N],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..N {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..N {
        let l = nearest_int(iscale * (x[i] - min));
        levels[i] = l.min(nmax).max(0) as u8;
        let mut diff = scale * f32::from(levels[i]) + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..N {
            let l = nearest_int(iscale * (x[i] - min)).min(nmax).max(0);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..N {
                let mut diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                levels.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (`0..8`) of a Q4_K/Q5_K block.
#[inline]
fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs 2-bit values as Q2_K and Q3_K store them: per 128 values, byte `l` holds values
/// `l, l + 32, l + 64, l + 96` in bits 0-1, 2-3, 4-5, 6-7.
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for l in 0..32 {
            qs[j / 4 + l] = levels[j + l]
                | (levels[j + l + 32] << 2)
                | (levels[j + l + 64] << 4)
                | (levels[j + l + 96] << 6);
        }
    }
}

// ===================================== Q2_K =============================================

/// `quantize_row_q2_K_ref`.
pub(crate) fn quantize_q2_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<84>().0) {
        quantize_block_q2_k(x, y);
    }
}

fn quantize_block_q2_k(x: &[f32; QK_K], y: &mut [u8; 84]) {
    let mut levels = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0.0f32; 16];
    let mut mins = [0.0f32; QK_K / 16];
    let mut scales = [0.0f32; QK_K / 16];
    let q4scale = 15.0f32;

    let xs = x.as_chunks::<16>().0;
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, lj) in levels.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        for (w, v) in weights.iter_mut().zip(&xs[j]) {
            *w = v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(3, &xs[j], &weights, lj, &mut laux, -0.5, 0.1, 15, true);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let mut sc = [0u8; QK_K / 16];
    let d_bits = if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for (s, &scale) in sc.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale) as u8;
        }
        fp32_to_fp16(max_scale / q4scale)
    } else {
        fp32_to_fp16(0.0)
    };
    let dmin_bits = if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for (s, &min) in sc.iter_mut().zip(&mins) {
            let l = nearest_int(iscale * min);
            *s |= (l << 4) as u8;
        }
        fp32_to_fp16(max_min / q4scale)
    } else {
        fp32_to_fp16(0.0)
    };

    for j in 0..QK_K / 16 {
        let d = fp16_to_fp32(d_bits) * f32::from(sc[j] & 0xF);
        if d == 0.0 {
            continue;
        }
        let dm = fp16_to_fp32(dmin_bits) * f32::from(sc[j] >> 4);
        for ii in 0..16 {
            let l = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3);
            levels[16 * j + ii] = l as u8;
        }
    }

    y[..16].copy_from_slice(&sc);
    pack_2bit(&levels, &mut y[16..80]);
    write_f16(y, 80, d_bits);
    write_f16(y, 82, dmin_bits);
}

/// `dequantize_row_q2_K`.
pub(crate) fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<84>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = read_f16(x, 80);
        let min = read_f16(x, 82);
        let scales = &x[..16];
        let mut out = y.iter_mut();
        let mut is = 0;
        for n in 0..2 {
            let q = &x[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * f32::from(sc & 0xF);
                    let ml = min * f32::from(sc >> 4);
                    // The 16 bytes drive the zip, so `out` is not advanced past them.
                    for (&b, o) in q[16 * half..16 * half + 16].iter().zip(out.by_ref()) {
                        *o = dl * f32::from(((b >> shift) & 3) as i8) - ml;
                    }
                }
            }
        }
    }
}

// ===================================== Q3_K =============================================

/// `quantize_row_q3_K_ref`.
pub(crate) fn quantize_q3_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<110>().0) {
        quantize_block_q3_k(x, y);
    }
}

fn quantize_block_q3_k(x: &[f32; QK_K], y: &mut [u8; 110]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];

    let xs = x.as_chunks::<16>().0;
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for (j, lj) in levels.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        scales[j] = make_q3_quants(4, &xs[j], lj);
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }

    let mut sc = [0u8; 12];
    let d_bits = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &scale) in scales.iter().enumerate() {
            // C: int8_t l = nearest_int(...); l = MAX(-32, MIN(31, l)) + 32;
            let l8 = nearest_int(iscale * scale) as i8;
            let l = i32::from(l8).clamp(-32, 31) + 32;
            if j < 8 {
                sc[j] = (l & 0xF) as u8;
            } else {
                sc[j - 8] |= ((l & 0xF) << 4) as u8;
            }
            sc[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
        }
        fp32_to_fp16(1.0 / iscale)
    } else {
        fp32_to_fp16(0.0)
    };

    for j in 0..QK_K / 16 {
        let low = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
        let s = ((low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8) - 32;
        let d = fp16_to_fp32(d_bits) * f32::from(s);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            levels[16 * j + ii] = (l + 4) as i8;
        }
    }

    // The high bit of element j goes to bit j / 32 of hmask[j % 32].
    let mut hmask = [0u8; QK_K / 8];
    let mut low2 = [0u8; QK_K];
    for (j, (&l, lo)) in levels.iter().zip(low2.iter_mut()).enumerate() {
        let mut l = l;
        if l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        *lo = l as u8;
    }
    y[..32].copy_from_slice(&hmask);
    pack_2bit(&low2, &mut y[32..96]);
    y[96..108].copy_from_slice(&sc);
    write_f16(y, 108, d_bits);
}

/// The 16 six-bit scales of a Q3_K block (`0..64`, before the `− 32`), as `dequantize_row_q3_K`
/// unpacks them with its `kmask` shuffles.
fn q3_k_scales(sc: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
        *o = low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
    }
    out
}

/// `dequantize_row_q3_K`.
pub(crate) fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<110>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d_all = read_f16(x, 108);
        let hm = &x[..32];
        let scales = q3_k_scales(&x[96..108]);
        let mut out = y.iter_mut();
        let mut is = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &x[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * (i32::from(scales[is]) - 32) as f32;
                    is += 1;
                    let range = 16 * half..16 * half + 16;
                    for ((&b, &h), o) in q[range.clone()].iter().zip(&hm[range]).zip(out.by_ref()) {
                        let v = i32::from(((b >> shift) & 3) as i8) - if h & m != 0 { 0 } else { 4 };
                        *o = dl * v as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

// ================================= Q4_K and Q5_K ========================================

/// The part `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` share: per 32-value sub-block, an
/// `make_qkx2_quants` fit under weights `av_x + |x|` (`av_x` the sub-block's RMS), the scales and mins
/// quantized to 6 bits against the largest of each, and the levels recomputed from the rounded
/// scales. Returns `(d, dmin, scales)` with `d`, `dmin` as f16 bits; `levels` are in `0..=nmax`.
fn quantize_scale_min_k(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    levels: &mut [u8; QK_K],
) -> (u16, u16, [u8; 12]) {
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut scales = [0.0f32; QK_K / 32];

    let xs = x.as_chunks::<32>().0;
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, lj) in levels.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let mut sum_x2 = 0.0f32;
        for &v in &xs[j] {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(&xs[j]) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) =
            make_qkx2_quants(nmax, &xs[j], &weights, lj, &mut laux, rmin, 0.1, nstep, false);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; 12];
    for j in 0..QK_K / 32 {
        // C: uint8_t ls = nearest_int(...); ls = MIN(63, ls);
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d_bits = fp32_to_fp16(max_scale / 63.0);
    let dmin_bits = fp32_to_fp16(max_min / 63.0);

    for j in 0..QK_K / 32 {
        let (s, m) = get_scale_min_k4(j, &sc);
        let d = fp16_to_fp32(d_bits) * f32::from(s);
        if d == 0.0 {
            continue;
        }
        let dm = fp16_to_fp32(dmin_bits) * f32::from(m);
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d).min(nmax).max(0);
            levels[32 * j + ii] = l as u8;
        }
    }
    (d_bits, dmin_bits, sc)
}

/// `quantize_row_q4_K_ref`.
pub(crate) fn quantize_q4_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<144>().0) {
        let mut levels = [0u8; QK_K];
        let (d, dmin, sc) = quantize_scale_min_k(x, 15, -1.0, 20, &mut levels);
        write_f16(y, 0, d);
        write_f16(y, 2, dmin);
        y[4..16].copy_from_slice(&sc);
        for (p, q) in y[16..].chunks_exact_mut(32).enumerate() {
            for (l, b) in q.iter_mut().enumerate() {
                *b = levels[64 * p + l] | (levels[64 * p + l + 32] << 4);
            }
        }
    }
}

/// `dequantize_row_q4_K`.
pub(crate) fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<144>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = read_f16(x, 0);
        let min = read_f16(x, 2);
        let scales = &x[4..16];
        for (p, (q, out)) in x[16..].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * p, scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (sc2, m2) = get_scale_min_k4(2 * p + 1, scales);
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            for l in 0..32 {
                out[l] = d1 * f32::from(q[l] & 0xF) - m1;
            }
            for l in 0..32 {
                out[32 + l] = d2 * f32::from(q[l] >> 4) - m2;
            }
        }
    }
}

/// `quantize_row_q5_K_ref`.
pub(crate) fn quantize_q5_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<176>().0) {
        let mut levels = [0u8; QK_K];
        let (d, dmin, sc) = quantize_scale_min_k(x, 31, -0.5, 15, &mut levels);
        write_f16(y, 0, d);
        write_f16(y, 2, dmin);
        y[4..16].copy_from_slice(&sc);
        let mut qh = [0u8; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (p, ql) in y[48..].chunks_exact_mut(32).enumerate() {
            for j in 0..32 {
                let mut l1 = levels[64 * p + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = levels[64 * p + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        y[16..48].copy_from_slice(&qh);
    }
}

/// `dequantize_row_q5_K`.
pub(crate) fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<176>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = read_f16(x, 0);
        let min = read_f16(x, 2);
        let scales = &x[4..16];
        let qh = &x[16..48];
        let (mut u1, mut u2) = (1u8, 2u8);
        for (p, (ql, out)) in x[48..].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * p, scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (sc2, m2) = get_scale_min_k4(2 * p + 1, scales);
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            for l in 0..32 {
                let v = (ql[l] & 0xF) + if qh[l] & u1 != 0 { 16 } else { 0 };
                out[l] = d1 * f32::from(v) - m1;
            }
            for l in 0..32 {
                let v = (ql[l] >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 };
                out[32 + l] = d2 * f32::from(v) - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

// ===================================== Q6_K =============================================

/// `quantize_row_q6_K_ref`.
pub(crate) fn quantize_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<210>().0) {
        quantize_block_q6_k(x, y);
    }
}

fn quantize_block_q6_k(x: &[f32; QK_K], y: &mut [u8; 210]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];

    let xs = x.as_chunks::<16>().0;
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for (ib, lb) in levels.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        let scale = make_qx_quants(32, &xs[ib], lb);
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }

    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        write_f16(y, 208, fp32_to_fp16(0.0));
        return;
    }

    let iscale = -128.0 / max_scale;
    let d_bits = fp32_to_fp16(1.0 / iscale);
    let mut sc = [0i8; QK_K / 16];
    for (s, &scale) in sc.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).min(127) as i8;
    }

    for j in 0..QK_K / 16 {
        let d = fp16_to_fp32(d_bits) * f32::from(sc[j]);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            levels[16 * j + ii] = (l + 32) as i8;
        }
    }

    let (ql, rest) = y.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    for h in 0..2 {
        let (j, ql, qh) = (
            128 * h,
            &mut ql[64 * h..64 * h + 64],
            &mut qh[32 * h..32 * h + 32],
        );
        for l in 0..32 {
            let lv = |k: usize| levels[j + l + 32 * k] as u8;
            ql[l] = (lv(0) & 0xF) | ((lv(2) & 0xF) << 4);
            ql[l + 32] = (lv(1) & 0xF) | ((lv(3) & 0xF) << 4);
            qh[l] = (lv(0) >> 4) | ((lv(1) >> 4) << 2) | ((lv(2) >> 4) << 4) | ((lv(3) >> 4) << 6);
        }
    }
    for (b, &s) in rest[..16].iter_mut().zip(&sc) {
        *b = s as u8;
    }
    write_f16(rest, 16, d_bits);
}

/// `dequantize_row_q6_K`.
pub(crate) fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<210>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = read_f16(x, 208);
        for h in 0..2 {
            let ql = &x[64 * h..64 * h + 64];
            let qh = &x[128 + 32 * h..128 + 32 * h + 32];
            let sc = &x[192 + 8 * h..192 + 8 * h + 8];
            let out = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                out[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
                out[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
                out[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
                out[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
            }
        }
    }
}

// ===================================== Q8_K =============================================

/// `quantize_row_q8_K_ref`: `d = max / −127` (f32, `max` the value of largest magnitude),
/// `q = min(127, nearest_int(x / d))`, plus the 16-value sums.
///
/// For an all-zero block ggml writes `d = 0` and zero quants but leaves `bsums` untouched; here they
/// are written as zeros (the sums of the zero quants).
pub(crate) fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.as_chunks::<QK_K>().0.iter().zip(dst.as_chunks_mut::<292>().0) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            y.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        y[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (b, &q) in y[4..260].iter_mut().zip(&qs) {
            *b = q as u8;
        }
        for (j, b) in y[260..].chunks_exact_mut(2).enumerate() {
            let sum: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| i32::from(q)).sum();
            b.copy_from_slice(&(sum as i16).to_le_bytes());
        }
    }
}

/// `dequantize_row_q8_K`.
pub(crate) fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<292>().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        for (o, &q) in y.iter_mut().zip(&x[4..260]) {
            *o = d * f32::from(q as i8);
        }
    }
}
