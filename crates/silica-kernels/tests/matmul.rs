#![allow(clippy::unwrap_used)]
//! `matmul` against plain references, for every supported type, thread count and token count (the tiled
//! four-token path and the single-token path).

use rand::{Rng, SeedableRng, rngs::StdRng};
use silica_gguf::GgmlType;
use silica_kernels::{QMatRef, RepackedMatrix, Scratch, ThreadPool, matmul};

const TYPES: [GgmlType; 7] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The activation type's quantize-dequantize round trip, so the reference sees what the kernel sees.
fn act_type(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => GgmlType::Q8_K,
        _ => GgmlType::Q8_0,
    }
}

#[test]
fn matmul_equals_the_f64_product_of_the_dequantized_operands() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in TYPES {
        let block = ty.block_len();
        for (rows, cols) in [(5, 2 * 256), (37, 3 * 256), (16, 256)] {
            let cols = if block == 32 { cols + 64 } else { cols };
            let w = random(&mut rng, rows * cols);
            let row_bytes = cols / block * ty.block_bytes();
            let mut wq = vec![0u8; rows * row_bytes];
            for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
                silica_quant::quantize_row(ty, src, dst).unwrap();
            }
            let mut wd = vec![0f32; rows * cols];
            for (src, dst) in wq.chunks_exact(row_bytes).zip(wd.chunks_exact_mut(cols)) {
                silica_quant::dequantize_row(ty, src, dst).unwrap();
            }
            let m = QMatRef::new(ty, rows, cols, &wq).unwrap();
            for n in [1, 3, 4, 9] {
                let x = random(&mut rng, n * cols);
                // Reference activations: Q8 round trip (Q8_1 shares Q8_0's levels and scale).
                let at = act_type(ty);
                let ab = cols / at.block_len() * at.block_bytes();
                let mut xq = vec![0u8; ab];
                let mut xd = vec![0f32; n * cols];
                for (src, dst) in x.chunks_exact(cols).zip(xd.chunks_exact_mut(cols)) {
                    silica_quant::quantize_row(at, src, &mut xq).unwrap();
                    silica_quant::dequantize_row(at, &xq, dst).unwrap();
                }
                for threads in [1, 3] {
                    let pool = ThreadPool::new(threads).unwrap();
                    let mut out = vec![f32::NAN; n * rows];
                    matmul(&pool, &m, &x, n, &mut out, &mut Scratch::default()).unwrap();
                    for t in 0..n {
                        for r in 0..rows {
                            let (mut want, mut mag) = (0f64, 0f64);
                            for c in 0..cols {
                                let p = f64::from(wd[r * cols + c]) * f64::from(xd[t * cols + c]);
                                want += p;
                                mag += p.abs();
                            }
                            let got = f64::from(out[t * rows + r]);
                            // Scales are f16 in the blocks: allow their rounding, relative to Σ|w·x|.
                            assert!(
                                (got - want).abs() <= 2e-3 * mag + 1e-6,
                                "{ty} rows {rows} cols {cols} n {n} threads {threads} [{t},{r}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let wq = vec![0u8; 18 * 2];
    assert!(QMatRef::new(GgmlType::Q4_0, 2, 33, &wq).is_err());
    assert!(QMatRef::new(GgmlType::Q4_0, 3, 32, &wq).is_err());
    assert!(QMatRef::new(GgmlType::F16, 2, 32, &wq).is_err());
    assert!(silica_kernels::blocks_of::<silica_kernels::BlockQ4_0>(&wq[..35]).is_err());
    assert_eq!(
        silica_kernels::blocks_of::<silica_kernels::BlockQ4_0>(&wq)
            .unwrap()
            .len(),
        2
    );
    let m = QMatRef::new(GgmlType::Q4_0, 2, 32, &wq).unwrap();
    let pool = ThreadPool::new(1).unwrap();
    let mut out = vec![0f32; 2];
    assert!(matmul(&pool, &m, &[0.0; 31], 1, &mut out, &mut Scratch::default()).is_err());
    assert!(matmul(&pool, &m, &[0.0; 32], 1, &mut out[..1], &mut Scratch::default()).is_err());
}

/// `wq` (`[rows, cols]` of `ty`) in its repacked layout.
fn pack(ty: GgmlType, wq: &[u8], rows: usize, cols: usize) -> Box<dyn RepackedMatrix> {
    use silica_kernels::repack::{BlockQ4_0x8, BlockQ5_0x8, BlockQ8_0x8};
    use silica_kernels::{Packed, PackedQ4K, PackedQ6K, blocks_of};
    let b =
        |ok: Option<Box<dyn RepackedMatrix>>| ok.unwrap_or_else(|| panic!("{ty} {rows}x{cols}: not packed"));
    match ty {
        GgmlType::Q4_0 => {
            b(Packed::<BlockQ4_0x8>::pack(blocks_of(wq).unwrap(), rows, cols).map(|p| Box::new(p) as _))
        }
        GgmlType::Q5_0 => {
            b(Packed::<BlockQ5_0x8>::pack(blocks_of(wq).unwrap(), rows, cols).map(|p| Box::new(p) as _))
        }
        GgmlType::Q8_0 => {
            b(Packed::<BlockQ8_0x8>::pack(blocks_of(wq).unwrap(), rows, cols).map(|p| Box::new(p) as _))
        }
        GgmlType::Q4_K => b(PackedQ4K::pack(blocks_of(wq).unwrap(), rows, cols).map(|p| Box::new(p) as _)),
        GgmlType::Q6_K => b(PackedQ6K::pack(blocks_of(wq).unwrap(), rows, cols).map(|p| Box::new(p) as _)),
        _ => panic!("{ty} has no repacked layout"),
    }
}

/// Every repacked product equals the row-major one up to f32 rounding (same exact integers per block), for 1 to
/// 29 tokens (every step of the token tiles) and 1 or 3 threads; wrong sizes are errors, not panics.
#[test]
fn packed_matmuls_equal_the_row_major_ones() {
    // Legacy types: within 1e-4 of the larger of |result| and 1; the copy is the file's size.
    let legacy = |p: f32, q: f32, _mag: f32| (p - q).abs() <= 1e-4 * p.abs().max(1.0);
    for ty in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
        packed_equals_row_major(ty, 12, &[(24, 576)], legacy);
    }
    // Q4_K: within 1e-5 of Σ|w·x| of the (unquantized) operands; Q6_K: the same bound.
    let q4k = |p: f32, q: f32, mag: f32| (p - q).abs() <= 1e-5 * mag;
    packed_equals_row_major(GgmlType::Q4_K, 13, &[(8, 256), (24, 768), (16, 2048)], q4k);
    packed_equals_row_major(GgmlType::Q6_K, 14, &[(8, 256), (24, 768), (16, 2048)], q4k);
}

fn packed_equals_row_major(
    ty: GgmlType,
    seed: u64,
    shapes: &[(usize, usize)],
    close: impl Fn(f32, f32, f32) -> bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for &(rows, cols) in shapes {
        let w = random(&mut rng, rows * cols);
        let row_bytes = cols / ty.block_len() * ty.block_bytes();
        let mut wq = vec![0u8; rows * row_bytes];
        for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
            silica_quant::quantize_row(ty, src, dst).unwrap();
        }
        let m = QMatRef::new(ty, rows, cols, &wq).unwrap();
        // Packed explicitly rather than through `repack`, so CPUs without the SIMD kernels test the scalar ones.
        let packed = pack(ty, &wq, rows, cols);
        // Every repacked copy is exactly the size of the file's tensor.
        assert_eq!(packed.size_bytes(), wq.len(), "{ty}");
        for n in [1, 2, 3, 4, 9, 15, 29] {
            let x = random(&mut rng, n * cols);
            for threads in [1, 3] {
                let pool = ThreadPool::new(threads).unwrap();
                let (mut a, mut b) = (vec![0f32; n * rows], vec![f32::NAN; n * rows]);
                matmul(&pool, &m, &x, n, &mut a, &mut Scratch::default()).unwrap();
                packed
                    .matmul(&pool, &x, n, &mut b, &mut Scratch::default())
                    .unwrap();
                for (i, (&p, &q)) in a.iter().zip(&b).enumerate() {
                    let (t, r) = (i / rows, i % rows);
                    let mag: f32 = (0..cols).map(|c| (w[r * cols + c] * x[t * cols + c]).abs()).sum();
                    assert!(
                        close(p, q, mag),
                        "{ty} rows {rows} cols {cols} n {n} threads {threads} [{i}]: {p} vs {q}"
                    );
                }
            }
        }
        let pool = ThreadPool::new(1).unwrap();
        let mut out = vec![0f32; rows];
        let x = vec![0f32; cols];
        let mut s = Scratch::default();
        assert!(
            packed.matmul(&pool, &x[..cols - 1], 1, &mut out, &mut s).is_err(),
            "{ty}"
        );
        assert!(
            packed.matmul(&pool, &x, 1, &mut out[..rows - 1], &mut s).is_err(),
            "{ty}"
        );
    }
}

#[test]
fn packed_k_quants_refuse_bad_shapes() {
    let wq = vec![0u8; 144 * 24];
    let w: &[silica_kernels::BlockQ4K] = silica_kernels::blocks_of(&wq).unwrap();
    assert!(silica_kernels::PackedQ4K::pack(&w[..12], 12, 256).is_none());
    assert!(silica_kernels::PackedQ4K::pack(w, 24, 255).is_none());
    assert!(silica_kernels::PackedQ4K::pack(&w[..7], 8, 256).is_none());
    assert!(silica_kernels::PackedQ4K::pack(&w[..8], 8, 256).is_some());
    let wq = vec![0u8; 210 * 24];
    let w: &[silica_kernels::BlockQ6K] = silica_kernels::blocks_of(&wq).unwrap();
    assert!(silica_kernels::PackedQ6K::pack(&w[..12], 12, 256).is_none());
    assert!(silica_kernels::PackedQ6K::pack(&w[..7], 8, 256).is_none());
    assert!(silica_kernels::PackedQ6K::pack(&w[..16], 8, 512).is_some());
}

/// `repack` copies exactly the types and shapes this CPU has a repacked kernel for.
#[test]
fn repack_picks_the_types_and_shapes_with_a_kernel() {
    use silica_kernels::repack::{BlockQ4_0x8, BlockQ5_0x8, BlockQ8_0x8, has_fast_path};
    let has = |ty: GgmlType| match ty {
        GgmlType::Q4_0 => has_fast_path::<BlockQ4_0x8>(),
        GgmlType::Q5_0 => has_fast_path::<BlockQ5_0x8>(),
        GgmlType::Q8_0 => has_fast_path::<BlockQ8_0x8>(),
        GgmlType::Q4_K | GgmlType::Q6_K => silica_kernels::has_fast_path_k(),
        _ => false,
    };
    // On aarch64 every repacked kernel needs the dot-product extension, so there all five types go together.
    #[cfg(target_arch = "aarch64")]
    assert_eq!(has(GgmlType::Q4_0), has(GgmlType::Q6_K));
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q4_1,
        GgmlType::Q6_K,
    ] {
        let cols = 256;
        for rows in [16, 12] {
            let wq = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            let m = QMatRef::new(ty, rows, cols, &wq).unwrap();
            let got = silica_kernels::repack(&m).unwrap().is_some();
            assert_eq!(got, has(ty) && rows % 8 == 0, "{ty} {rows} rows");
        }
    }
}
