//! Micro-benchmarks of silica's own CPU matrix product (`silica_kernels::matmul`, and the `x8` layouts that
//! `silica_kernels::repack` makes), the product `silica-model` runs on the CPU: a weight `[out, in]` applied as
//! `x · Wᵀ`.
//!
//! ```text
//! SILICA_NUM_THREADS=2 cargo bench -p silica-kernels --bench matmul          # timed run, 2 threads
//! SILICA_NUM_THREADS=2 cargo bench -p silica-kernels --bench matmul -- tg    # only the mat-vec cases
//! cargo bench -p silica-kernels --bench matmul -- --test                     # each case once, no timing
//! ```
//!
//! Cases: weight types `Q4_0`, `Q8_0`, `Q4_K` and `Q6_K`, each row-major and repacked (`x8`), × shapes
//! `2048x2048`, `8192x2048` (Llama 3.2 1B) and `4096x4096` (Llama 2 7B) × 1 token (`tg`) and 512 tokens (`pp`).
//! Weights and activations come from fixed seeds.
//!
//! Counters: `tg` reports the weight's GGUF size (`BytesCount`), so bytes/s is the rate weights stream; `pp`
//! reports 2·m·n·k as items, i.e. FLOP/s. The matrices (2–34 MB) are read again and again, so `tg` runs partly
//! from cache: an upper bound of what a whole model streamed from DRAM gets. The pool has
//! `silica_kernels::cpu_threads()` threads (`SILICA_NUM_THREADS`), fixed for the run.

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use silica_gguf::GgmlType;
use silica_kernels::{QMatRef, Scratch, global_pool, matmul};

fn main() {
    divan::main();
}

/// One benchmarked weight: its layout and shape `[out, inp]`.
#[derive(Clone, Copy, Debug)]
struct Case {
    ty: GgmlType,
    packed: bool,
    out: usize,
    inp: usize,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layout = if self.packed { "x8" } else { "" };
        write!(f, "{}{layout} {}x{}", self.ty, self.out, self.inp)
    }
}

const CASES: [Case; 24] = {
    const SHAPES: [(usize, usize); 3] = [(2048, 2048), (8192, 2048), (4096, 4096)];
    const KINDS: [(GgmlType, bool); 8] = [
        (GgmlType::Q4_0, false),
        (GgmlType::Q4_0, true),
        (GgmlType::Q8_0, false),
        (GgmlType::Q8_0, true),
        (GgmlType::Q4_K, false),
        (GgmlType::Q4_K, true),
        (GgmlType::Q6_K, false),
        (GgmlType::Q6_K, true),
    ];
    let mut out = [Case {
        ty: GgmlType::Q4_0,
        packed: false,
        out: 0,
        inp: 0,
    }; 24];
    let mut i = 0;
    while i < 24 {
        let (ty, packed) = KINDS[i / 3];
        let (o, n) = SHAPES[i % 3];
        out[i] = Case {
            ty,
            packed,
            out: o,
            inp: n,
        };
        i += 1;
    }
    out
};

/// Quantized random weights `[out, inp]` of `ty`, row-major GGUF bytes.
fn weights(ty: GgmlType, out: usize, inp: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(7);
    let rb = inp / ty.block_len() * ty.block_bytes();
    let mut bytes = vec![0u8; out * rb];
    let mut row = vec![0f32; inp];
    for dst in bytes.chunks_exact_mut(rb) {
        row.iter_mut().for_each(|v| *v = rng.random_range(-0.05f32..0.05));
        silica_quant::quantize_row(ty, &row, dst).expect("quantizable type");
    }
    bytes
}

fn activations(n: usize, inp: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(8);
    (0..n * inp).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A prepared product of `n` tokens: calling it runs `x · Wᵀ` once.
fn prepare(c: Case, n: usize) -> impl FnMut() {
    let w = weights(c.ty, c.out, c.inp);
    let x = activations(n, c.inp);
    let mut y = vec![0f32; n * c.out];
    let mut s = Scratch::default();
    let m = QMatRef::new(c.ty, c.out, c.inp, &w).expect("valid shape");
    let packed = c.packed.then(|| {
        silica_kernels::repack(&m)
            .expect("aligned blocks")
            .expect("this CPU has a repacked kernel for the type")
    });
    move || {
        let m = QMatRef::new(c.ty, c.out, c.inp, &w).expect("valid shape");
        match &packed {
            Some(p) => p
                .matmul(global_pool(), &x, n, &mut y, &mut s)
                .expect("sizes match"),
            None => matmul(global_pool(), &m, &x, n, &mut y, &mut s).expect("sizes match"),
        }
    }
}

/// Token generation: one token, a matrix-vector product; bytes/s = weights streamed per second.
#[divan::bench(args = CASES)]
fn tg(b: Bencher<'_, '_>, c: Case) {
    let mut f = prepare(c, 1);
    f();
    b.counter(BytesCount::new(
        c.out * c.inp / c.ty.block_len() * c.ty.block_bytes(),
    ))
    .bench_local(f);
}

/// Prompt processing: 512 tokens; items/s = FLOP/s (2·m·n·k).
#[divan::bench(args = CASES, sample_count = 10)]
fn pp(b: Bencher<'_, '_>, c: Case) {
    let mut f = prepare(c, 512);
    f();
    b.counter(ItemsCount::new(2 * 512 * c.out * c.inp)).bench_local(f);
}
