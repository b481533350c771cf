//! Properties of quantize → dequantize on random rows: the error stays within each type's step, the
//! k-quant levels are the nearest points of the grid their stored scales define, and no input (NaN and
//! infinities included) or byte pattern makes anything panic.

use proptest::prelude::*;
use silica_gguf::GgmlType;
use silica_quant::{dequantize_row, quantize_row};

use crate::{SUPPORTED, round_trip};

/// Values per test row: two k-quant super-blocks, sixteen legacy blocks.
const ROW: usize = 512;

/// A row of "weights": a shape (uniform, bell-shaped, sparse, with outliers, or offset from zero,
/// which exercises the min of the asymmetric formats) times a magnitude.
fn weight_row() -> impl Strategy<Value = Vec<f32>> {
    let unit = prop::collection::vec(-1.0f32..1.0, ROW);
    let shape = 0..5u8;
    let scale = prop::sample::select(vec![0.01f32, 0.1, 1.0, 30.0]);
    let offset = -1.0f32..1.0;
    (
        unit,
        prop::collection::vec(-1.0f32..1.0, ROW),
        shape,
        scale,
        offset,
    )
        .prop_map(|(u, v, shape, scale, offset)| {
            u.iter()
                .zip(&v)
                .enumerate()
                .map(|(i, (&a, &b))| {
                    let x = match shape {
                        0 => a,
                        1 => (a + b) * 0.5 * a.abs(), // peaked at zero
                        2 if i % 37 == 0 => a,        // outliers over a small bulk
                        2 => a * 0.05,
                        3 if b > 0.4 => a, // 70% zeros
                        3 => 0.0,
                        _ => 0.5 * a + offset,
                    };
                    x * scale
                })
                .collect()
        })
}

/// Any f32 at all, with the special values over-represented.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<u32>().prop_map(f32::from_bits),
        4 => -2.0f32..2.0,
        1 => prop::sample::select(vec![
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            65504.0,
            65520.0,
            4_194_304.0,
            -1e30,
        ]),
    ]
}

/// The rounding error of storing `v` as an f16: half an ulp, relative for normals, absolute
/// (2⁻²⁵) for subnormals; both terms are added to stay on the safe side.
fn f16_err(v: f32) -> f32 {
    v.abs() * 2f32.powi(-11) + 2f32.powi(-25)
}

/// The largest error allowed for a value of a legacy block, from the block's own statistics.
fn legacy_bound(ty: GgmlType, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (min, max) = block
        .iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let slack = 1e-5 * amax;
    match ty {
        // Symmetric with the largest magnitude mapped exactly: the far end is clipped one step short.
        GgmlType::Q4_0 => {
            let d = amax / 8.0;
            d + 8.0 * f16_err(d) + slack
        }
        GgmlType::Q5_0 => {
            let d = amax / 16.0;
            d + 16.0 * f16_err(d) + slack
        }
        GgmlType::Q8_0 => {
            let d = amax / 127.0;
            0.5 * d + 127.0 * f16_err(d) + slack
        }
        // Asymmetric: half a step, plus the f16 rounding of scale and min.
        GgmlType::Q4_1 => {
            let d = (max - min) / 15.0;
            0.5 * d + 15.0 * f16_err(d) + f16_err(min) + slack
        }
        GgmlType::Q5_1 => {
            let d = (max - min) / 31.0;
            0.5 * d + 31.0 * f16_err(d) + f16_err(min) + slack
        }
        // f32 scale, no f16 rounding.
        GgmlType::Q8_K => 0.5 * amax / 127.0 + slack,
        _ => unreachable!("{ty}"),
    }
}

/// The super-block step of a k-quant: the range (asymmetric types, the range includes 0) or the
/// largest magnitude (symmetric types) over the number of levels.
fn k_step(ty: GgmlType, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (min, max) = block
        .iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    match ty {
        GgmlType::Q2_K => (max - min) / 3.0,
        GgmlType::Q3_K => amax / 4.0,
        GgmlType::Q4_K => (max - min) / 15.0,
        GgmlType::Q5_K => (max - min) / 31.0,
        GgmlType::Q6_K => amax / 32.0,
        _ => unreachable!("{ty}"),
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (decoded independently of the crate).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// A sub-block's grid as stored in a k-quant block: values `dl·k − ml` for `k` in `kmin..=kmax`.
struct Grid {
    len: usize,
    dl: f32,
    ml: f32,
    kmin: i32,
    kmax: i32,
}

/// The grids of the sub-blocks of one k-quant block, in element order.
fn grids(ty: GgmlType, b: &[u8]) -> Vec<Grid> {
    let grid = |len, dl, ml, kmin, kmax| Grid {
        len,
        dl,
        ml,
        kmin,
        kmax,
    };
    match ty {
        GgmlType::Q2_K => {
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            (0..16)
                .map(|j| grid(16, d * f32::from(b[j] & 15), dmin * f32::from(b[j] >> 4), 0, 3))
                .collect()
        }
        GgmlType::Q3_K => {
            let d = f16_at(b, 108);
            let s = &b[96..108];
            (0..16)
                .map(|j| {
                    let low = if j < 8 { s[j] & 15 } else { s[j - 8] >> 4 };
                    let sc = i32::from(low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
                    grid(16, d * sc as f32, 0.0, -4, 3)
                })
                .collect()
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let kmax = if ty == GgmlType::Q4_K { 15 } else { 31 };
            (0..8)
                .map(|j| {
                    let (sc, m) = scale_min_k4(j, &b[4..16]);
                    grid(32, d * f32::from(sc), dmin * f32::from(m), 0, kmax)
                })
                .collect()
        }
        GgmlType::Q6_K => {
            let d = f16_at(b, 208);
            (0..16)
                .map(|j| grid(16, d * f32::from(b[192 + j] as i8), 0.0, -32, 31))
                .collect()
        }
        _ => unreachable!("{ty}"),
    }
}

const LEGACY: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_K,
];
const KQUANTS: [GgmlType; 5] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// F32 is lossless; F16 and BF16 are within half an ulp of their format.
    #[test]
    fn floats_round_within_half_an_ulp(x in prop::collection::vec(-60000.0f32..60000.0, 64), e in -30i32..0) {
        let x: Vec<f32> = x.iter().map(|v| v * 2f32.powi(e)).collect();
        let same = round_trip(GgmlType::F32, &x);
        prop_assert!(x.iter().zip(&same).all(|(a, b)| a.to_bits() == b.to_bits()));
        for (a, b) in x.iter().zip(round_trip(GgmlType::F16, &x)) {
            prop_assert!((a - b).abs() <= f16_err(*a) * 1.0001, "F16 {a} -> {b}");
        }
        for (a, b) in x.iter().zip(round_trip(GgmlType::BF16, &x)) {
            prop_assert!((a - b).abs() <= a.abs() * 2f32.powi(-8), "BF16 {a} -> {b}");
        }
    }

    /// Legacy blocks (and Q8_K): every value within the block's step (half a step for the rounding,
    /// a full step at the clipped end of the symmetric 4/5-bit types) plus the f16 rounding of the scale.
    #[test]
    fn legacy_error_within_step(x in weight_row()) {
        for ty in LEGACY {
            let y = round_trip(ty, &x);
            for (xb, yb) in x.chunks(ty.block_len()).zip(y.chunks(ty.block_len())) {
                let bound = legacy_bound(ty, xb);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound, "{ty}: {a} -> {b}, bound {bound}");
                }
            }
        }
    }

    /// k-quants: each value dequantizes to the nearest point of its sub-block's stored grid (so the error
    /// is at most half the sub-block step inside the grid), and per super-block the RMSE stays under half
    /// and the largest error under two super-block steps (`k_step`; ggml's scale search reaches about
    /// 0.33 and 1.3 on such data).
    #[test]
    fn kquant_error_within_step(x in weight_row()) {
        for ty in KQUANTS {
            let mut bytes = vec![0u8; ty.row_bytes(ROW as u64).unwrap() as usize];
            quantize_row(ty, &x, &mut bytes).unwrap();
            let mut y = vec![0f32; ROW];
            dequantize_row(ty, &bytes, &mut y).unwrap();
            for ((xb, yb), bb) in x.chunks(256).zip(y.chunks(256)).zip(bytes.chunks(ty.block_bytes())) {
                let mut at = 0;
                for g in grids(ty, bb) {
                    for (&a, &b) in xb[at..at + g.len].iter().zip(&yb[at..at + g.len]) {
                        if g.dl == 0.0 {
                            continue; // a zero sub-scale: ggml keeps the levels of its first fit
                        }
                        let nearest = (g.kmin..=g.kmax)
                            .map(|k| (g.dl * k as f32 - g.ml - a).abs())
                            .fold(f32::INFINITY, f32::min);
                        let tol = 1e-6 * (a.abs() + g.ml.abs() + g.dl.abs() * 32.0);
                        prop_assert!((b - a).abs() <= nearest + tol,
                            "{ty}: {a} -> {b}, nearest grid point is {nearest} away (dl {}, ml {})", g.dl, g.ml);
                    }
                    at += g.len;
                }
                let step = k_step(ty, xb);
                let se: f64 = xb.iter().zip(yb).map(|(a, b)| f64::from(a - b).powi(2)).sum();
                let rmse = (se / 256.0).sqrt() as f32;
                let max_err = xb.iter().zip(yb).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                prop_assert!(rmse <= 0.5 * step, "{ty}: RMSE {rmse} > half of step {step}");
                prop_assert!(max_err <= 2.0 * step, "{ty}: max error {max_err} > 2 steps of {step}");
            }
        }
    }

    /// No input panics, NaN and infinities included; blocks are independent, so a row quantizes as
    /// the concatenation of its halves.
    #[test]
    fn any_input_quantizes_without_panic(x in prop::collection::vec(any_f32(), ROW)) {
        for ty in SUPPORTED {
            let row_bytes = ty.row_bytes(ROW as u64).unwrap() as usize;
            let mut whole = vec![0u8; row_bytes];
            quantize_row(ty, &x, &mut whole).unwrap();
            let mut halves = vec![0u8; row_bytes];
            let (a, b) = halves.split_at_mut(row_bytes / 2);
            quantize_row(ty, &x[..ROW / 2], a).unwrap();
            quantize_row(ty, &x[ROW / 2..], b).unwrap();
            prop_assert_eq!(&whole, &halves, "{}", ty);
            let mut y = vec![0f32; ROW];
            dequantize_row(ty, &whole, &mut y).unwrap();
            // Where the whole block is finite and moderate, so is its reconstruction.
            for (xb, yb) in x.chunks(ty.block_len()).zip(y.chunks(ty.block_len())) {
                if xb.iter().all(|v| v.abs() <= 1e4) {
                    prop_assert!(yb.iter().all(|v| v.is_finite()), "{}: {:?} -> {:?}", ty, xb, yb);
                }
            }
        }
    }

    /// Any bytes dequantize without panic.
    #[test]
    fn any_bytes_dequantize_without_panic(bytes in prop::collection::vec(any::<u8>(), 292 * 2)) {
        for ty in SUPPORTED {
            let n = 2 * ty.block_len();
            let mut y = vec![0f32; n];
            dequantize_row(ty, &bytes[..2 * ty.block_bytes()], &mut y).unwrap();
        }
    }
}
