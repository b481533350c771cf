//! Micro-benchmarks of candle's quantized matrix product: a weight `[out, in]` applied as `x · Wᵀ` through
//! candle's `QMatMul`, the path `silica_model::loader::Linear` takes on GPUs and for types silica-kernels has no
//! kernel for. On the CPU silica runs its own kernels (`cargo bench -p silica-kernels --bench matmul`); this
//! bench is the reference they were measured against.
//!
//! ```text
//! RAYON_NUM_THREADS=8 cargo bench -p silica-model --bench matmul            # timed run, 8 threads
//! RAYON_NUM_THREADS=8 cargo bench -p silica-model --bench matmul -- Q4_K    # only matching cases
//! cargo bench -p silica-model --bench matmul -- --test                      # each case once, no timing
//! ```
//!
//! # Thread count
//!
//! candle's CPU kernels size their thread pools once per process from the environment:
//! `RAYON_NUM_THREADS` (the f32 GEMM behind F16 weights, candle's rayon pool, and the quantized kernels'
//! pool unless `CANDLE_NUM_THREADS` overrides it), defaulting to the physical core count. Set it on the
//! command line, `RAYON_NUM_THREADS=N cargo bench ...`, as `silica run -t N` sets it; it cannot be
//! changed between cases of one run. divan itself calls each case from one thread (its `threads` option
//! is left off), so all parallelism is candle's.
//!
//! # Cases
//!
//! Weight types `Q4_0`, `Q8_0`, `Q4_K`, `F16` × shapes `[out × in]` from real models:
//! `2048x2048` and `8192x2048` (Llama 3.2 1B: attention and FFN up/gate), `4096x4096` (Llama 2 7B
//! attention) × activations of 1 token (`tg`, token generation: a matrix-vector product) and 512 tokens
//! (`pp`, prompt processing: a matrix-matrix product). Weights are N(0, 0.02) and activations N(0, 1),
//! from fixed seeds. Each case calls the product once before timing: candle repacks some weight types
//! (`Q4_K`, `Q8_0` on x86 with AVX-512 VNNI) on first use and caches the result.
//!
//! # Counters
//!
//! - `tg` reports `BytesCount` = the weight's size in a GGUF file (`GgmlType::row_bytes` × `out`), so
//!   divan's bytes/s column is the rate at which the model's weights are streamed, the number that bounds
//!   tokens/s in generation and that compares with the machine's memory bandwidth and with llama.cpp.
//!   It is the minimum a kernel must read, not always what candle reads: candle keeps F16 weights as
//!   an f32 copy (4 bytes a weight, twice the counted bytes) and may stream a repacked `Q4_K`/`Q8_0`
//!   layout; both show as a lower GB/s here, which is the point.
//! - `pp` reports `ItemsCount` = 2·m·n·k floating-point operations (m = 512 tokens, n = out, k = in;
//!   one multiply and one add per weight per token). divan prints it as "items/s": read it as FLOP/s.

use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Tensor};
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use silica_gguf::GgmlType;
use silica_model::loader::candle_dtype;
use silica_quant::quantize_row;

fn main() {
    divan::main();
}

/// One benchmarked weight: its type and shape `[out, inp]` (GGUF `ne = {inp, out}`).
#[derive(Clone, Copy, Debug)]
struct Case {
    ty: GgmlType,
    out: usize,
    inp: usize,
}

impl std::fmt::Display for Case {
    /// `Q4_K 8192x2048`: type, then out × in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}x{}", self.ty, self.out, self.inp)
    }
}

/// Every weight type × every shape `[out, in]`: Llama 3.2 1B attention (`n_embd` 2048) and FFN up/gate
/// (`n_ff` 8192), Llama 2 7B attention (`n_embd` 4096).
const CASES: &[Case] = &[
    case(GgmlType::Q4_0, 2048, 2048),
    case(GgmlType::Q4_0, 8192, 2048),
    case(GgmlType::Q4_0, 4096, 4096),
    case(GgmlType::Q8_0, 2048, 2048),
    case(GgmlType::Q8_0, 8192, 2048),
    case(GgmlType::Q8_0, 4096, 4096),
    case(GgmlType::Q4_K, 2048, 2048),
    case(GgmlType::Q4_K, 8192, 2048),
    case(GgmlType::Q4_K, 4096, 4096),
    case(GgmlType::F16, 2048, 2048),
    case(GgmlType::F16, 8192, 2048),
    case(GgmlType::F16, 4096, 4096),
];

const fn case(ty: GgmlType, out: usize, inp: usize) -> Case {
    Case { ty, out, inp }
}

/// Tokens in a prompt-processing batch (llama-bench's default `-p 512`).
const PP_TOKENS: usize = 512;

/// What `loader::Linear` holds: the `QMatMul` and, for float weights, the type activations are rounded
/// to first.
///
/// `Linear` has no public constructor, so this builds the same thing the same way as `loader.rs`
/// (`Loader::qtensor` + `Loader::linear`): `qtensor_from_ggml` on the tensor's GGUF bytes with dims
/// `[out, in]`, `QMatMul::from_arc`, and `act_dtype` F16 for F16 weights. The bytes come from
/// `silica_quant::quantize_row`, which is byte-identical to llama-quantize's output.
struct Weight {
    w: QMatMul,
    act_dtype: Option<DType>,
}

impl Weight {
    /// Random N(0, 0.02) weights of `case`, quantized row by row as a GGUF file stores them.
    fn new(case: Case) -> Self {
        let Case { ty, out, inp } = case;
        let normal = Normal::new(0.0f32, 0.02).expect("0.02 is a valid standard deviation");
        let mut rng = StdRng::seed_from_u64(0x5111CA);
        let row_bytes = usize::try_from(
            ty.row_bytes(inp as u64)
                .expect("`in` is a whole number of blocks of every benchmarked type"),
        )
        .expect("a row's bytes fit in memory");
        let mut values = vec![0f32; inp];
        let mut bytes = vec![0u8; row_bytes * out];
        for dst in bytes.chunks_exact_mut(row_bytes) {
            values.iter_mut().for_each(|v| *v = normal.sample(&mut rng));
            quantize_row(ty, &values, dst).expect("quantize a weight row");
        }
        let dtype = candle_dtype(ty).expect("candle computes every benchmarked type");
        // As `Loader::qtensor`: candle takes dims row-major, `[out, in]`.
        let q = qtensor_from_ggml(dtype, &bytes, vec![out, inp], &Device::Cpu).expect("build the QTensor");
        // As `Loader::linear`.
        let act_dtype = match q.dtype() {
            GgmlDType::F16 => Some(DType::F16),
            GgmlDType::BF16 => Some(DType::BF16),
            _ => None,
        };
        let w = QMatMul::from_arc(Arc::new(q)).expect("build the QMatMul");
        Weight { w, act_dtype }
    }

    /// `x`: `[n_tokens, in]` f32 → `[n_tokens, out]` f32, as `Linear::forward`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.act_dtype {
            Some(dt) => self.w.forward(&x.to_dtype(dt)?.to_dtype(DType::F32)?),
            None => self.w.forward(x),
        }
    }
}

/// Random N(0, 1) activations `[n_tokens, inp]`, roughly what follows an RMS norm.
fn activations(n_tokens: usize, inp: usize) -> Tensor {
    let normal = Normal::new(0.0f32, 1.0).expect("1 is a valid standard deviation");
    let mut rng = StdRng::seed_from_u64(0xAC7);
    let x: Vec<f32> = (0..n_tokens * inp).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(x, (n_tokens, inp), &Device::Cpu).expect("build the activations")
}

/// Builds the weight and activations of `case`, runs the product once (candle's lazy repacking happens
/// then, outside the timing), and returns them.
fn setup(case: Case, n_tokens: usize) -> (Weight, Tensor) {
    let weight = Weight::new(case);
    let x = activations(n_tokens, case.inp);
    weight.forward(&x).expect("warm-up product");
    (weight, x)
}

/// Token generation: one token, a matrix-vector product. `BytesCount` = the weight's GGUF bytes.
#[divan::bench(args = CASES)]
fn tg(bencher: Bencher<'_, '_>, case: Case) {
    let (weight, x) = setup(case, 1);
    let weight_bytes = case
        .ty
        .row_bytes((case.out * case.inp) as u64)
        .expect("whole blocks");
    bencher
        .counter(BytesCount::new(weight_bytes))
        .bench_local(|| weight.forward(divan::black_box(&x)).expect("product"));
}

/// Prompt processing: 512 tokens, a matrix-matrix product. `ItemsCount` = 2·m·n·k FLOP, printed by divan
/// as "items/s" = FLOP/s. 20 samples by default (a case can take seconds on few cores); override with
/// `--sample-count`.
#[divan::bench(args = CASES, sample_count = 20)]
fn pp(bencher: Bencher<'_, '_>, case: Case) {
    let (weight, x) = setup(case, PP_TOKENS);
    let flops = 2 * PP_TOKENS as u64 * case.out as u64 * case.inp as u64;
    bencher
        .counter(ItemsCount::new(flops))
        .bench_local(|| weight.forward(divan::black_box(&x)).expect("product"));
}
