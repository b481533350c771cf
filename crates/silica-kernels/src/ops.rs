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

/// SwiGLU in place: `gate = silu(gate) · up` with `silu(g) = g / (1 + e^−g)` (ggml `swiglu`).
///
/// `e^x` is the standard library's: SwiGLU is 1–2.5% of prefill time, and [`crate::vexp`]'s eight-lane `e^x`
/// (within 2 ulp of it) here moved free-running greedy decoding of a SmolLM2 Q4_K_M file off llama.cpp's
/// earlier (every product re-quantizes its input to 8 bits, so an ulp can flip a rounding), for no gain that the
/// noise of the test machine shows.
///
/// # Panics
/// If the lengths disagree.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert!(gate.len() == up.len(), "swiglu: lengths");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// RoPE in place over `x` `[n_tokens, n_heads, head_dim]` (row-major f32) with per-token tables `cos`, `sin`
/// `[n_tokens, head_dim / 2]`: NORM pairs `(2i, 2i + 1)` (ggml `rope`, Llama) or NEOX pairs `(i, i + head_dim / 2)`
/// (Gemma, GPT-NeoX); `y0 = x0·cos − x1·sin`, `y1 = x0·sin + x1·cos` in f32, as candle's and ggml's kernels.
///
/// # Panics
/// If the lengths disagree or `head_dim` is odd.
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, cos: &[f32], sin: &[f32], neox: bool) {
    let half = head_dim / 2;
    assert!(
        head_dim.is_multiple_of(2) && cos.len() == sin.len(),
        "rope: lengths"
    );
    let n_tokens = x.len() / (n_heads * head_dim).max(1);
    assert!(
        x.len() == n_tokens * n_heads * head_dim && cos.len() == n_tokens * half,
        "rope: shape"
    );
    for t in 0..n_tokens {
        let (c, sn) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for h in 0..n_heads {
            let base = (t * n_heads + h) * head_dim;
            let v = &mut x[base..base + head_dim];
            for i in 0..half {
                let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * c[i] - x1 * sn[i];
                v[b] = x0 * sn[i] + x1 * c[i];
            }
        }
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
    fn rope_rotates_the_pairs_of_each_layout() {
        // One token, one head of width 4; angles 90° and 0°.
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let (cos, sin) = ([0.0f32, 1.0], [1.0f32, 0.0]);
        let mut y = x;
        rope(&mut y, 1, 4, &cos, &sin, false);
        assert_eq!(y, [-2.0, 1.0, 3.0, 4.0]); // (1, 2) turned by 90°, (3, 4) unchanged
        let mut y = x;
        rope(&mut y, 1, 4, &cos, &sin, true);
        assert_eq!(y, [-3.0, 2.0, 1.0, 4.0]); // (1, 3) turned by 90°, (2, 4) unchanged
    }

    #[test]
    fn swiglu_matches_the_formula() {
        let (g, u) = ([-2.0f32, 0.0, 3.0], [1.5f32, 2.0, -1.0]);
        let mut y = g;
        swiglu(&mut y, &u);
        for i in 0..3 {
            let want = f64::from(g[i]) / (1.0 + (-f64::from(g[i])).exp()) * f64::from(u[i]);
            assert!((f64::from(y[i]) - want).abs() < 1e-6);
        }
    }
}
