//! Inputs the unit tests of the repacked kernels share: random quantized weights and activations from a seeded
//! generator, and f32 results as bits for exact comparisons.
#![allow(clippy::unwrap_used)]

use bytemuck::{Pod, Zeroable};
use rand::{Rng, rngs::StdRng};
use silica_gguf::GgmlType;

use crate::{BlockQ8_0, BlockQ8K, QK, QK_K};

/// `rows × cols` uniform values in −1..1 quantized to `ty` by silica-quant, as row-major blocks `B`.
pub(crate) fn random_rows<B: Pod>(rng: &mut StdRng, ty: GgmlType, rows: usize, cols: usize) -> Vec<B> {
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let rb = cols / ty.block_len() * ty.block_bytes();
    let mut bytes = vec![0u8; rows * rb];
    for (src, dst) in x.chunks_exact(cols).zip(bytes.chunks_exact_mut(rb)) {
        silica_quant::quantize_row(ty, src, dst).unwrap();
    }
    bytemuck::cast_slice::<u8, B>(&bytes).to_vec()
}

/// One activation row of `cols` uniform values in −3..3 as Q8_0 blocks.
pub(crate) fn random_q8_0(rng: &mut StdRng, cols: usize) -> Vec<BlockQ8_0> {
    let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let mut b = vec![BlockQ8_0::zeroed(); cols / QK];
    crate::q8::quantize_row_q8_0(&x, &mut b);
    b
}

/// One activation row of `cols` uniform values in −3..3 as Q8_K blocks.
pub(crate) fn random_q8k(rng: &mut StdRng, cols: usize) -> Vec<BlockQ8K> {
    let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let mut b = vec![BlockQ8K::zeroed(); cols / QK_K];
    crate::q8::quantize_row_q8_k(&x, &mut b);
    b
}

/// Eight-row results as bits, so that `assert_eq!` compares them exactly.
pub(crate) fn bits<const N: usize>(v: [[f32; 8]; N]) -> [[u32; 8]; N] {
    v.map(|r| r.map(f32::to_bits))
}

/// Eight token indices into four test tokens, as the eight-token prefill tiles meet them: the four, then the four
/// again in reverse order.
pub(crate) const EIGHT_TOKENS: [usize; 8] = [0, 1, 2, 3, 3, 2, 1, 0];

/// Asserts that the sixteen-row pair results `got[i]` (of token `tokens[i]`) equal, to the bit, the two groups'
/// eight-row results: `a[tokens[i]]` in the first half, `b[tokens[i]]` in the second.
pub(crate) fn assert_pair_bits(
    got: &[[f32; 16]],
    tokens: &[usize],
    a: &[[f32; 8]],
    b: &[[f32; 8]],
    what: &str,
) {
    assert_eq!(got.len(), tokens.len(), "{what}: token count");
    for (r, &k) in got.iter().zip(tokens) {
        let (lo, hi) = r.split_at(8);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(lo), bits(&a[k]), "{what}: first group, token {k}");
        assert_eq!(bits(hi), bits(&b[k]), "{what}: second group, token {k}");
    }
}

/// Checks a k-quant pair kernel ([`crate::repack_k::PackK8::gemm16`]) on the groups `both` against each group's
/// eight-row results `want` and `next` for the tokens `x`: to the bit, for 4, 1 and 8 tokens (the last the four
/// again in reverse order).
pub(crate) fn check_pair_kernel<P: crate::repack_k::PackK8>(
    both: [&[P]; 2],
    x: [&[BlockQ8K]; 4],
    want: &[[f32; 8]; 4],
    next: &[[f32; 8]; 4],
) {
    let name = std::any::type_name::<P>();
    assert_pair_bits(&P::gemm16(both, x), &[0, 1, 2, 3], want, next, name);
    assert_pair_bits(&P::gemm16::<1>(both, [x[2]]), &[2], want, next, name);
    let eight = P::gemm16::<8>(both, EIGHT_TOKENS.map(|k| x[k]));
    assert_pair_bits(&eight, &EIGHT_TOKENS, want, next, name);
}
