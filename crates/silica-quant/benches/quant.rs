//! Micro-benchmarks of the scalar reference row kernels: [`dequantize_row`] and [`quantize_row`] for
//! `Q4_0`, `Q8_0`, `Q4_K`, `Q6_K` and `F16` over one row of [`N_ELEMENTS`] values.
//!
//! ```text
//! cargo bench -p silica-quant --bench quant              # timed run
//! cargo bench -p silica-quant --bench quant -- Q4_K      # only the cases whose name matches
//! cargo bench -p silica-quant --bench quant -- --test    # run each case once, no timing
//! ```
//!
//! Every case reports two counters:
//! - `BytesCount`: the bytes of quantized data, [`GgmlType::row_bytes`] of the row. For `dequantize`
//!   these are the bytes *read* (the quantized blocks; the f32 values written are not counted), for
//!   `quantize` the bytes *written* (the f32 values read are not counted). So the bytes/s column is
//!   the rate at which quantized data is consumed or produced, comparable with a model file's size.
//! - `ItemsCount`: the elements (weights) of the row, so items/s is elements per second.
//!
//! The kernels are single-threaded (callers parallelise over rows), so the numbers are per core.

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use silica_gguf::GgmlType;
use silica_quant::{dequantize_row, quantize_row};

fn main() {
    divan::main();
}

/// Elements of the benchmarked row: 64 rows of a 4096-wide matrix (Llama 2 7B's `n_embd`) in one call,
/// 1 MiB of f32; a whole number of blocks for every type (256 divides it).
const N_ELEMENTS: usize = 4096 * 64;

/// The types benchmarked: the common weight types of GGUF files.
const TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F16,
];

/// Weight-like values, N(0, 0.02) as random-weight models are initialised, from a fixed seed.
fn random_row(n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(0x5111CA);
    let normal = Normal::new(0.0f32, 0.02).expect("0.02 is a valid standard deviation");
    (0..n).map(|_| normal.sample(&mut rng)).collect()
}

/// Bytes of `N_ELEMENTS` values of `ty`.
fn row_bytes(ty: GgmlType) -> usize {
    let bytes = ty
        .row_bytes(N_ELEMENTS as u64)
        .expect("N_ELEMENTS is a whole number of blocks of every benchmarked type");
    usize::try_from(bytes).expect("the row's bytes fit in memory")
}

/// Quantized bytes → f32. `BytesCount` is the quantized bytes read.
#[divan::bench(args = TYPES)]
fn dequantize(bencher: Bencher<'_, '_>, ty: GgmlType) {
    let mut src = vec![0u8; row_bytes(ty)];
    quantize_row(ty, &random_row(N_ELEMENTS), &mut src).expect("quantize the input row");
    let mut dst = vec![0f32; N_ELEMENTS];
    bencher
        .counter(BytesCount::new(src.len()))
        .counter(ItemsCount::new(N_ELEMENTS))
        .bench_local(|| {
            dequantize_row(ty, divan::black_box(&src), divan::black_box(&mut dst)).expect("dequantize_row");
        });
}

/// f32 → quantized bytes. `BytesCount` is the quantized bytes written.
#[divan::bench(args = TYPES)]
fn quantize(bencher: Bencher<'_, '_>, ty: GgmlType) {
    let src = random_row(N_ELEMENTS);
    let mut dst = vec![0u8; row_bytes(ty)];
    bencher
        .counter(BytesCount::new(dst.len()))
        .counter(ItemsCount::new(N_ELEMENTS))
        .bench_local(|| {
            quantize_row(ty, divan::black_box(&src), divan::black_box(&mut dst)).expect("quantize_row");
        });
}
