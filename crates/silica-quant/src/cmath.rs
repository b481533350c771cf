//! The C arithmetic that ggml's reference quantizers rely on, spelled out in Rust.
//!
//! ggml-quants.c is C compiled for x86-64 without `-ffast-math` and without FMA (llama.cpp's
//! `libggml-base` is built with plain `-O3`, SSE2 only): every `float` operation is one IEEE-754
//! binary32 operation, rounded to nearest even, in source order. Rust's `f32` arithmetic is the same,
//! so the ports keep ggml's operation order and parenthesisation exactly. What differs between the
//! languages is collected here:
//!
//! - `int` ↔ `float` promotions are explicit `as f32` casts at the same place the C compiler inserts
//!   them (`w*x[i]*l` with `int l` is `(w * x[i]) * (l as f32)`).
//! - C's float-to-integer cast truncates and, on x86-64, yields `INT_MIN` for NaN and out-of-range
//!   values ([`trunc_i32`]); Rust's `as` saturates instead.
//! - Narrowing integer casts (`int` → `int8_t`/`uint8_t`) keep the low bits in both languages
//!   (Rust's `as` between integers), so they are written as `as i8` / `as u8`.

/// `nearest_int` (ggml-quants.c): rounds to the nearest integer, ties to even, by adding
/// 1.5·2²³ = 12582912 and reading the low mantissa bits.
///
/// Exact for `|fval| ≤ 4194303` (ggml asserts this in debug builds only). Outside that range, and for
/// NaN and infinities, it returns the same bit-derived value ggml's release build computes, which is
/// always in `-4194304..=4194303`: callers clamp it, so nothing overflows or panics.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// C's `(int)f` as x86-64 executes it (`cvttss2si` / `cvttps2dq`, which is what gcc emits for ggml's
/// `(int8_t)(x + 8.5f)`-style casts): truncation toward zero, and the "integer indefinite" value
/// `i32::MIN` for NaN and for values outside the `i32` range. The C standard leaves those cases
/// undefined; matching the hardware keeps non-finite inputs byte-identical too.
#[inline]
pub(crate) fn trunc_i32(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.4), -2);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
        // Out of range: garbage, but in range of the bit trick and deterministic.
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30] {
            let r = nearest_int(v);
            assert!((-4_194_304..=4_194_303).contains(&r), "{v} -> {r}");
        }
        assert_eq!(nearest_int(f32::INFINITY), -4_194_304);
    }

    #[test]
    fn trunc_i32_matches_x86() {
        assert_eq!(trunc_i32(8.99), 8);
        assert_eq!(trunc_i32(-8.99), -8);
        assert_eq!(trunc_i32(f32::NAN), i32::MIN);
        assert_eq!(trunc_i32(f32::INFINITY), i32::MIN);
        assert_eq!(trunc_i32(f32::NEG_INFINITY), i32::MIN);
        assert_eq!(trunc_i32(2_147_483_648.0), i32::MIN);
        assert_eq!(trunc_i32(-2_147_483_648.0), i32::MIN);
        assert_eq!(trunc_i32(2_147_483_520.0), 2_147_483_520);
        // (int8_t) of the indefinite value is 0, as on x86.
        assert_eq!(trunc_i32(f32::NAN) as i8, 0);
    }
}
