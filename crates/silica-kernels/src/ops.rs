//! Element-wise operations of the transformer block on f32 rows, fused where two ggml ops read the same data.

/// RMSNorm of each row followed by the weight: `y = (x · 1/sqrt(mean(x²) + eps)) · w`, ggml's `rms_norm` then
/// `mul` (`ggml_compute_forward_rms_norm_f32`: the sum of squares in f64, the scale in f32).
///
/// `x`, `out`: `[n_rows, w.len()]` row-major f32.
///
/// # Panics
/// If the lengths disagree.
pub fn rms_norm_mul(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    assert!(
        n > 0 && x.len() == out.len() && x.len().is_multiple_of(n),
        "rms_norm_mul: lengths"
    );
    for (xr, yr) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, &v), &wi) in yr.iter_mut().zip(xr).zip(w) {
            *y = (v * scale) * wi;
        }
    }
}

/// SwiGLU: `out = silu(gate) · up` with `silu(g) = g / (1 + e^−g)` (ggml `swiglu`).
///
/// # Panics
/// If the lengths disagree.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && up.len() == out.len(), "swiglu: lengths");
    for ((y, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *y = g / (1.0 + (-g).exp()) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms_before_the_weight_and_applies_it() {
        let x = [3.0f32, 4.0, 1.0, -1.0];
        let mut y = [0f32; 4];
        rms_norm_mul(&x, &[1.0, 2.0], 0.0, &mut y);
        let s = (12.5f32).sqrt();
        assert!((y[0] - 3.0 / s).abs() < 1e-6 && (y[1] - 8.0 / s).abs() < 1e-6);
        assert!((y[2] - 1.0).abs() < 1e-6 && (y[3] + 2.0).abs() < 1e-6);
    }

    #[test]
    fn swiglu_matches_the_formula() {
        let (g, u) = ([-2.0f32, 0.0, 3.0], [1.5f32, 2.0, -1.0]);
        let mut y = [0f32; 3];
        swiglu(&g, &u, &mut y);
        for i in 0..3 {
            let want = f64::from(g[i]) / (1.0 + (-f64::from(g[i])).exp()) * f64::from(u[i]);
            assert!((f64::from(y[i]) - want).abs() < 1e-6);
        }
    }
}
