//! silica's native CPU hot path: quantized dot products and matrix products over ggml blocks, the activation
//! quantizers they need, and a persistent thread pool.
//!
//! Weights are ggml blocks viewed in place (from the GGUF mmap); activations are f32 rows quantized once per
//! matrix product to the weight type's `vec_dot_type` (ggml `type_traits_cpu`): Q8_0 for Q4_0, Q5_0 and Q8_0,
//! Q8_1 for Q4_1, Q8_K for Q4_K, Q5_K and Q6_K. The integer dot products then run in SIMD (AVX2 `maddubs`,
//! AVX-512 VNNI `dpbusd`), selected at run time.
//!
//! Every fast kernel has a plain scalar reference ([`WeightBlock::vec_dot_ref`]) that the tests compare it with
//! over random blocks.
//!
//! | weight | activation | module |
//! |---|---|---|
//! | `Q4_0`, `Q5_0`, `Q8_0` | `Q8_0` | `legacy` |
//! | `Q4_1` | `Q8_1` | `legacy` |
//! | `Q4_K`, `Q5_K`, `Q6_K` | `Q8_K` | `kquants` |

mod alloc;
pub mod attention;
pub mod blocks;
mod cpu;
pub mod expf;
pub mod kquants;
pub mod legacy;
pub mod q8;
pub mod repack;
pub mod repack_k;
pub mod repack_q6k;
#[cfg(test)]
mod test_util;
pub mod vexp;

pub use bytemuck::Pod;
use bytemuck::Zeroable;
use silica_gguf::GgmlType;

pub use blocks::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5K, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K, QK, QK_K,
};

/// A quantized activation block (the right-hand side of a dot product).
pub trait ActBlock: Pod + Zeroable + Send + Sync + 'static {
    /// Values per block.
    const QK: usize;
    /// Quantizes `x` (`[QK · out.len()]` f32) into `out`, with ggml's x86 numerics (see [`q8`]).
    ///
    /// # Panics
    /// If the lengths disagree.
    fn quantize_row(x: &[f32], out: &mut [Self]);
}

impl ActBlock for BlockQ8_0 {
    const QK: usize = QK;
    fn quantize_row(x: &[f32], out: &mut [Self]) {
        q8::quantize_row_q8_0(x, out);
    }
}

impl ActBlock for BlockQ8_1 {
    const QK: usize = QK;
    fn quantize_row(x: &[f32], out: &mut [Self]) {
        q8::quantize_row_q8_1(x, out);
    }
}

impl ActBlock for BlockQ8K {
    const QK: usize = QK_K;
    fn quantize_row(x: &[f32], out: &mut [Self]) {
        q8::quantize_row_q8_k(x, out);
    }
}

/// A quantized weight block type and its dot products with its activation type.
///
/// `w` and `x` (and each `x[i]`) always hold the same number of blocks, so they cover the same number of values;
/// implementations may `assert_eq!` it.
pub trait WeightBlock: Pod + Send + Sync + 'static {
    /// The ggml type.
    const TYPE: GgmlType;
    /// Values per block.
    const QK: usize;
    /// ggml's `vec_dot_type` for this weight type.
    type Act: ActBlock;

    /// `Σ_i w[i]·x[i]` in plain scalar Rust: the reference the fast paths are tested against (integer sums per
    /// block or sub-block, scaled in f32, as ggml's `ggml_vec_dot_*_generic`).
    fn vec_dot_ref(w: &[Self], x: &[Self::Act]) -> f32;

    /// `Σ_i w[i]·x[i]` on the fastest path this CPU has (runtime detection; falls back to the reference).
    fn vec_dot(w: &[Self], x: &[Self::Act]) -> f32;

    /// One weight row against four activation rows: `[w·x[0], w·x[1], w·x[2], w·x[3]]`. Prefill calls this so
    /// that each weight block is loaded and unpacked once per four tokens.
    fn vec_dot_x4(w: &[Self], x: [&[Self::Act]; 4]) -> [f32; 4] {
        x.map(|xi| Self::vec_dot(w, xi))
    }

    /// Four weight rows against four activation rows: `out[r][k] = w[r]·x[k]`, the prefill micro-kernel (each
    /// weight block unpacked once per four tokens, each activation block loaded once per four rows).
    fn vec_dot_4x4(w: [&[Self]; 4], x: [&[Self::Act]; 4]) -> [[f32; 4]; 4] {
        w.map(|wr| Self::vec_dot_x4(wr, x))
    }
}

pub mod matmul;
pub mod ops;
pub mod pool;

pub use alloc::{HugePages, huge_page_vec, huge_pages, keep_freed_memory, set_huge_pages};
pub use cpu::{Simd, SimdError, set_simd, simd};
pub use matmul::{
    KernelError, QMatRef, RepackedMatrix, Scratch, matmul, matmul_packed, matmul_packed_k, repack, supports,
};
pub use pool::{ThreadPool, ThreadsError, par_rows};
pub use repack::{Packed, PackedQ4_0, PackedQ5_0, PackedQ8_0};
pub use repack_k::{BlockQ4_Kx8, PackK8, PackedK, PackedQ4K, has_fast_path_k};
pub use repack_q6k::{BlockQ6_Kx8, PackedQ6K};

/// The thread count named by the environment: `SILICA_NUM_THREADS`, else `CANDLE_NUM_THREADS` or
/// `RAYON_NUM_THREADS` (what candle's own CPU pool reads); `None` when none holds a positive integer.
pub fn env_threads() -> Option<usize> {
    ["SILICA_NUM_THREADS", "CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// The thread count of [`global_pool`], fixed at first use (by [`set_cpu_threads`] or [`cpu_threads`]).
static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The number of CPU threads silica computes with: the count [`set_cpu_threads`] chose, else [`env_threads`],
/// else the available parallelism. The first call fixes it for the process (it does not start any thread).
pub fn cpu_threads() -> usize {
    *THREADS.get_or_init(|| {
        env_threads().unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Makes [`global_pool`] use `n` threads (the caller included), and returns `n`.
///
/// Call it before the first product (before loading a model): the count is fixed at first use, like
/// [`set_simd`]'s level, because the pool's threads are spawned once.
///
/// # Errors
/// [`ThreadsError::Zero`] for `n` = 0; [`ThreadsError::AlreadyChosen`] when the count was already fixed at
/// another value (by an earlier call, or by a [`cpu_threads`] or [`global_pool`] call).
pub fn set_cpu_threads(n: usize) -> Result<usize, ThreadsError> {
    if n == 0 {
        return Err(ThreadsError::Zero);
    }
    let in_use = *THREADS.get_or_init(|| n);
    if in_use == n {
        Ok(n)
    } else {
        Err(ThreadsError::AlreadyChosen { asked: n, in_use })
    }
}

/// The process-wide pool of [`cpu_threads`] threads, created on first use.
///
/// # Panics
/// If the OS refuses to spawn the worker threads.
pub fn global_pool() -> &'static ThreadPool {
    static POOL: std::sync::OnceLock<ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        #[allow(clippy::expect_used)]
        ThreadPool::new(cpu_threads()).expect("silica-kernels: spawning the CPU worker threads")
    })
}

/// Views bytes as blocks of `B`, in place.
///
/// # Errors
/// [`KernelError::Size`] if the length is not a whole number of blocks, [`KernelError::Misaligned`] if the
/// bytes are not aligned for `B`.
pub fn blocks_of<B: Pod>(bytes: &[u8]) -> Result<&[B], KernelError> {
    bytemuck::try_cast_slice(bytes).map_err(|e| match e {
        bytemuck::PodCastError::OutputSliceWouldHaveSlop => KernelError::Size {
            what: "block bytes",
            expected: bytes.len() / size_of::<B>() * size_of::<B>(),
            found: bytes.len(),
        },
        _ => KernelError::Misaligned(align_of::<B>()),
    })
}
