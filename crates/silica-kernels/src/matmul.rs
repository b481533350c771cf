//! Quantized matrix products `out = x · Wᵀ` with `W` a ggml block matrix viewed in place.
//!
//! Shapes (row-major): `W` `[rows, cols]` of a quantized type, `x` `[n, cols]` f32, `out` `[n, rows]` f32. As ggml's
//! `ggml_compute_forward_mul_mat`: the activations are quantized once to the weight type's `vec_dot_type`, then
//! every output is one integer-SIMD dot product of a weight row and an activation row. Threads split the weight
//! rows, so each thread streams a disjoint part of `W` from memory (generation is bandwidth-bound). For `n ≥ 4`
//! (prefill) each thread walks its rows in tiles of [`TILE_ROWS`] and multiplies each tile by four activation
//! rows at a time, four weight rows at a time ([`WeightBlock::vec_dot_4x4`]), so a weight block is unpacked once
//! per four tokens, an activation block loaded once per four rows, and the tile stays in cache while all `n`
//! tokens pass over it.
#![allow(unsafe_code)]

use silica_gguf::GgmlType;

use crate::pool::{Guided, SharedMut, ThreadPool, split};
use crate::repack::{self, Pack8, Packed};
use crate::repack_k::{self, PackK8, PackedK};
use crate::repack_q6k::BlockQ6_Kx8;
use crate::{
    ActBlock, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5K, BlockQ6K, BlockQ8_0, BlockQ8K, QK, QK_K,
    WeightBlock,
};

/// Weight rows per prefill tile: 16 rows of a 4096-wide Q4_0 matrix are 36 KiB, about an L1+L2 working set.
pub const TILE_ROWS: usize = 16;

/// Errors of [`QMatRef::new`] and [`matmul`].
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The weight type has no native kernel (callers fall back to another backend).
    #[error("no native kernel for {0} weights")]
    Unsupported(GgmlType),
    /// The row length is not a whole number of blocks.
    #[error("row length {cols} is not a multiple of {ty}'s block of {block}")]
    RowLength {
        /// Weight type.
        ty: GgmlType,
        /// Row length.
        cols: usize,
        /// Values per block.
        block: usize,
    },
    /// A buffer does not have the size its shape implies.
    #[error("{what}: {found} bytes or values, expected {expected}")]
    Size {
        /// Which buffer.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The weight bytes are not aligned for the block type (GGUF data is 32-byte aligned, so this means a
    /// corrupt offset).
    #[error("weight bytes are not aligned to {0} bytes")]
    Misaligned(usize),
}

/// Whether [`matmul`] has a native kernel for weights of type `ty`.
pub fn supports(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q8_0
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
    )
}

/// `x` must be `[n, cols]` and `out` `[n, rows]`.
fn check_sizes(rows: usize, cols: usize, x: &[f32], n: usize, out: &[f32]) -> Result<(), KernelError> {
    if x.len() != n * cols {
        return Err(KernelError::Size {
            what: "activations",
            expected: n * cols,
            found: x.len(),
        });
    }
    if out.len() != n * rows {
        return Err(KernelError::Size {
            what: "output",
            expected: n * rows,
            found: out.len(),
        });
    }
    Ok(())
}

/// Calls `f(t)` for every token `t < n`: on this thread for one token (generation: no fork-join for a
/// row's quantization), split over the pool otherwise.
fn per_token(pool: &ThreadPool, n: usize, f: impl Fn(usize) + Sync) {
    if n == 1 {
        f(0);
    } else {
        pool.run(|ith, nth| split(n, ith, nth).for_each(&f));
    }
}

/// A quantized weight matrix `[rows, cols]` viewed in place: `rows` rows of `cols / block_len` blocks.
#[derive(Clone, Copy, Debug)]
pub struct QMatRef<'a> {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: &'a [u8],
}

impl<'a> QMatRef<'a> {
    /// Views `data` as a `[rows, cols]` matrix of `ty`.
    ///
    /// # Errors
    /// [`KernelError::Unsupported`], [`KernelError::RowLength`], [`KernelError::Size`] if `data` is not exactly
    /// `rows · cols / block_len · block_bytes` bytes, [`KernelError::Misaligned`].
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, KernelError> {
        if !supports(ty) {
            return Err(KernelError::Unsupported(ty));
        }
        let block = ty.block_len();
        if cols == 0 || !cols.is_multiple_of(block) {
            return Err(KernelError::RowLength { ty, cols, block });
        }
        let expected = rows * (cols / block) * ty.block_bytes();
        if data.len() != expected {
            return Err(KernelError::Size {
                what: "weight bytes",
                expected,
                found: data.len(),
            });
        }
        if !(data.as_ptr() as usize).is_multiple_of(2) {
            return Err(KernelError::Misaligned(2));
        }
        Ok(QMatRef { ty, rows, cols, data })
    }

    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Output width (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Reusable buffers for quantized activations (4-byte aligned storage, viewed as any activation block type) and
/// their per-block terms ([`repack::BlockTerms`]).
#[derive(Debug, Default)]
pub struct Scratch(Vec<u32>, Vec<repack::BlockTerms>);

impl Scratch {
    fn blocks<A: ActBlock>(&mut self, n: usize) -> &mut [A] {
        grow_blocks(&mut self.0, n)
    }

    fn blocks_and_terms<A: ActBlock>(&mut self, n: usize) -> (&mut [A], &mut [repack::BlockTerms]) {
        if self.1.len() < n {
            self.1.resize(n, repack::BlockTerms::default());
        }
        (grow_blocks(&mut self.0, n), &mut self.1[..n])
    }
}

/// The first `n` blocks of `A` in `words`, grown as needed.
fn grow_blocks<A: ActBlock>(words: &mut Vec<u32>, n: usize) -> &mut [A] {
    let len = (n * size_of::<A>()).div_ceil(4);
    if words.len() < len {
        words.resize(len, 0);
    }
    &mut bytemuck::cast_slice_mut(&mut words[..len])[..n]
}

/// The `n` rows of `x` (`[n, cols]` f32) quantized to activation blocks `A` in `scratch`, one token per task on
/// `pool`: `[n, cols / A::QK]` blocks.
fn quantize_tokens<'s, A: ActBlock>(
    pool: &ThreadPool,
    scratch: &'s mut Scratch,
    x: &[f32],
    n: usize,
    cols: usize,
) -> &'s [A] {
    let nb = cols / A::QK;
    let xq: &mut [A] = scratch.blocks(n * nb);
    let xq_ptr = SharedMut::new(xq);
    per_token(pool, n, |t| {
        // SAFETY: token `t`'s blocks are written by exactly one thread, within bounds.
        let row = unsafe { xq_ptr.slice(t * nb, nb) };
        A::quantize_row(&x[t * cols..(t + 1) * cols], row);
    });
    xq
}

/// A weight matrix repacked at load for this CPU's eight-row kernels (made by [`repack()`]): it multiplies as
/// [`matmul`] does, with the same shapes and errors.
pub trait RepackedMatrix: Send + Sync + std::fmt::Debug {
    /// `out = x · Wᵀ`: `x` `[n, cols]`, `out` `[n, rows]`, f32 row-major.
    ///
    /// # Errors
    /// [`KernelError::Size`] if `x` or `out` does not have that size.
    fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), KernelError>;

    /// Bytes the repacked copy holds.
    fn size_bytes(&self) -> usize;
}

impl<P: Pack8> RepackedMatrix for Packed<P> {
    fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), KernelError> {
        matmul_packed(pool, self, x, n, out, scratch)
    }
    fn size_bytes(&self) -> usize {
        Packed::size_bytes(self)
    }
}

impl<P: PackK8> RepackedMatrix for PackedK<P> {
    fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), KernelError> {
        matmul_packed_k(pool, self, x, n, out, scratch)
    }
    fn size_bytes(&self) -> usize {
        PackedK::size_bytes(self)
    }
}

/// Repacks `w` eight rows at a time where this CPU has a repacked kernel for its type — Q4_0, Q5_0 and Q8_0
/// ([`repack::has_fast_path`]), Q4_K and Q6_K ([`repack_k::has_fast_path_k`]) — and its shape allows (rows a
/// multiple of 8; for the k-quants, columns a multiple of 256). `None` otherwise: the row-major [`matmul`] is then
/// the faster one. The groups are packed in parallel on the process pool; the copy is the size of `w` for every
/// type.
///
/// # Errors
/// [`KernelError::Misaligned`] if `w`'s bytes are not aligned for its blocks.
pub fn repack(w: &QMatRef<'_>) -> Result<Option<Box<dyn RepackedMatrix>>, KernelError> {
    fn legacy<P: Pack8>(w: &QMatRef<'_>) -> Result<Option<Box<dyn RepackedMatrix>>, KernelError> {
        if !repack::has_fast_path::<P>() {
            return Ok(None);
        }
        Ok(boxed(Packed::<P>::pack(
            crate::blocks_of(w.data)?,
            w.rows,
            w.cols,
        )))
    }
    fn k<P: PackK8>(w: &QMatRef<'_>) -> Result<Option<Box<dyn RepackedMatrix>>, KernelError> {
        if !repack_k::has_fast_path_k() {
            return Ok(None);
        }
        Ok(boxed(PackedK::<P>::pack(
            crate::blocks_of(w.data)?,
            w.rows,
            w.cols,
        )))
    }
    fn boxed(p: Option<impl RepackedMatrix + 'static>) -> Option<Box<dyn RepackedMatrix>> {
        p.map(|p| Box::new(p) as Box<dyn RepackedMatrix>)
    }
    match w.ty {
        GgmlType::Q4_0 => legacy::<repack::BlockQ4_0x8>(w),
        GgmlType::Q5_0 => legacy::<repack::BlockQ5_0x8>(w),
        GgmlType::Q8_0 => legacy::<repack::BlockQ8_0x8>(w),
        GgmlType::Q4_K => k::<repack_k::BlockQ4_Kx8>(w),
        GgmlType::Q6_K => k::<BlockQ6_Kx8>(w),
        _ => Ok(None),
    }
}

/// `out = x · Wᵀ` for a repacked matrix ([`Packed`]: Q4_0, Q5_0 or Q8_0): threads split the groups of eight rows; each
/// group meets the tokens four at a time ([`repack::gemm`]), or for two tokens or more, where the CPU has
/// AVX-512 VNNI, two groups at once, eight tokens at a time ([`repack::gemm16`]).
///
/// # Errors
/// [`KernelError::Size`] if `x` is not `[n, cols]` or `out` not `[n, rows]`.
pub fn matmul_packed<P: Pack8>(
    pool: &ThreadPool,
    w: &Packed<P>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let (rows, cols) = (w.rows(), w.cols());
    check_sizes(rows, cols, x, n, out)?;
    let nb = cols / QK;
    let (xq, terms) = scratch.blocks_and_terms::<BlockQ8_0>(n * nb);
    let (xq_ptr, terms_ptr) = (SharedMut::new(xq), SharedMut::new(terms));
    let quantize = |t: usize| {
        // SAFETY: token `t`'s blocks and terms are written by exactly one thread, within bounds.
        let (row, trow) = unsafe { (xq_ptr.slice(t * nb, nb), terms_ptr.slice(t * nb, nb)) };
        BlockQ8_0::quantize_row(&x[t * cols..(t + 1) * cols], row);
        repack::block_terms::<P>(row, trow);
    };
    per_token(pool, n, quantize);
    let (xq, terms): (&[BlockQ8_0], &[repack::BlockTerms]) = (xq, terms);
    struct Tiles<'a, P> {
        w: &'a Packed<P>,
        xq: &'a [BlockQ8_0],
        terms: &'a [repack::BlockTerms],
        nb: usize,
    }
    impl<P: Pack8> RowGroupTiles for Tiles<'_, P> {
        fn tile<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 8]; N] {
            let nb = self.nb;
            repack::gemm::<P, N>(
                self.w.group(g),
                t.map(|t| &self.xq[t * nb..(t + 1) * nb]),
                t.map(|t| &self.terms[t * nb..(t + 1) * nb]),
            )
        }
        fn tile16<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 16]; N] {
            let nb = self.nb;
            repack::gemm16::<P, N>(
                [self.w.group(g), self.w.group(g + 1)],
                t.map(|t| &self.xq[t * nb..(t + 1) * nb]),
                t.map(|t| &self.terms[t * nb..(t + 1) * nb]),
            )
        }
    }
    run_row_groups(pool, rows, n, out, &Tiles { w, xq, terms, nb });
    Ok(())
}

/// A product over groups of eight repacked rows, `N` tokens at a time: what [`run_row_groups`] drives.
trait RowGroupTiles: Sync {
    /// Rows `8g..8g+8` times the tokens `t`.
    fn tile<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 8]; N];

    /// Rows `8g..8g+16` (groups `g` and `g + 1`) times the tokens `t`: the pair kernel where the CPU has one
    /// ([`repack::has_pair_kernel`]).
    fn tile16<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 16]; N];
}

/// Splits the groups of eight rows over `pool`'s threads — in pairs (`tile16`) for two tokens or more where the
/// CPU has the pair kernels ([`repack::has_pair_kernel`]) — and each unit meets the tokens four at a time
/// (pairs eight at a time from 8 tokens on, then four), then the one to three left; the results go to `out`
/// (`[n, rows]`, row-major).
///
/// One token keeps one group at a time: it reads the weights from DRAM, where the pair kernel's two interleaved
/// streams ran at 32 GB/s against 42 (`examples/stream_dram.rs` Q4_0, AMD EPYC, 2 threads). Pairs take eight
/// tokens per tile because their kernels have the registers for it (32 zmm: 8 level vectors and 8
/// accumulators) and each unpacked weight block then serves twice the tokens: divan `pp` (512 tokens,
/// 2048×2048, AMD EPYC Zen 4, 2 threads, the same run) Q4_0 4.61 → 4.19 ms, Q8_0 5.36 → 4.68 ms; 1B-shape
/// pp512 in alternating runs Q4_0 414–421 → 442–453 t/s, Q8_0 353–370 → 389–402; Q6_K 4096×4096 (divan,
/// alternating) 26.5–26.7 → 23.3 ms, Q4_K within 4% either way.
fn run_row_groups(pool: &ThreadPool, rows: usize, n: usize, out: &mut [f32], tiles: &impl RowGroupTiles) {
    let optr = SharedMut::new(out);
    let groups = rows / 8;
    let per_unit = if n >= 2 && repack::has_pair_kernel() { 2 } else { 1 };
    // With 8 to 15 tokens (batched generation, short prompts) a unit's weights come from memory during its
    // only eight-token tile: the pair kernels prefetch 4 KiB ahead in eight-token tiles for that. Without it,
    // the long per-block work kept fewer loads in flight than two four-token tiles (1B-shape Q4_0, alternating:
    // pp8 198 → 161–171 t/s, `--batch 8` generation 156–158 → 125–132); with it, against four-token tiles at
    // 8..15 tokens: Q4_0 pp8 180–191 → 237–251, batch 8 146 → 178; Q4_K_M pp8 179–180 → 226, batch 8 140–142 →
    // 188–193; Q8_0 batch 8 136–142 → 171–173; pp512 unchanged.
    let eight = n >= 8 && per_unit == 2;
    let sched = Guided::new(groups.div_ceil(per_unit), pool.n_threads());
    pool.run(|ith, nth| {
        sched.for_each(ith, nth, |units| {
            for u in units {
                let g = per_unit * u;
                let put = |t0: usize, v: &[&[f32]]| {
                    for (k, vk) in v.iter().enumerate() {
                        // SAFETY: the unit's rows belong to this thread only; `slice` checks the bounds.
                        unsafe { optr.slice((t0 + k) * rows + 8 * g, vk.len()) }.copy_from_slice(vk);
                    }
                };
                // One unit times the tokens from `t` on, `N` at a time: two groups where a second one is left.
                macro_rules! tokens {
                ($t:expr, [$($k:expr),+]) => {{
                    let ts = [$($t + $k),+];
                    if per_unit == 2 && g + 1 < groups {
                        let v = tiles.tile16(g, ts);
                        put($t, &v.each_ref().map(|r| r.as_slice()));
                    } else {
                        let v = tiles.tile(g, ts);
                        put($t, &v.each_ref().map(|r| r.as_slice()));
                    }
                }};
            }
                let mut t = 0;
                if eight {
                    while t + 8 <= n {
                        tokens!(t, [0, 1, 2, 3, 4, 5, 6, 7]);
                        t += 8;
                    }
                }
                while t + 4 <= n {
                    tokens!(t, [0, 1, 2, 3]);
                    t += 4;
                }
                match n - t {
                    3 => tokens!(t, [0, 1, 2]),
                    2 => tokens!(t, [0, 1]),
                    1 => tokens!(t, [0]),
                    _ => {}
                }
            }
        });
    });
}

/// `out = x · Wᵀ` for a repacked k-quant matrix ([`PackedK`]: Q4_K, Q6_K): the activations are quantized to Q8_K
/// once per token ([`crate::q8::quantize_row_q8_k`], ggml's numerics), then threads split the groups of eight rows
/// and each group meets the tokens four at a time, then the rest ([`PackK8::gemm`]); with AVX-512 VNNI and two
/// tokens or more, two groups at once ([`PackK8::gemm16`]), eight tokens at a time. Shapes as [`matmul`].
///
/// # Errors
/// [`KernelError::Size`] if `x` is not `[n, cols]` or `out` not `[n, rows]`.
pub fn matmul_packed_k<P: PackK8>(
    pool: &ThreadPool,
    w: &PackedK<P>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    let (rows, cols) = (w.rows(), w.cols());
    check_sizes(rows, cols, x, n, out)?;
    let nb = cols / QK_K;
    let xq: &[BlockQ8K] = quantize_tokens(pool, scratch, x, n, cols);
    struct Tiles<'a, P> {
        w: &'a PackedK<P>,
        xq: &'a [BlockQ8K],
        nb: usize,
    }
    impl<P: PackK8> RowGroupTiles for Tiles<'_, P> {
        fn tile<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 8]; N] {
            let nb = self.nb;
            P::gemm::<N>(self.w.group(g), t.map(|t| &self.xq[t * nb..(t + 1) * nb]))
        }
        fn tile16<const N: usize>(&self, g: usize, t: [usize; N]) -> [[f32; 16]; N] {
            let nb = self.nb;
            P::gemm16::<N>(
                [self.w.group(g), self.w.group(g + 1)],
                t.map(|t| &self.xq[t * nb..(t + 1) * nb]),
            )
        }
    }
    run_row_groups(pool, rows, n, out, &Tiles { w, xq, nb });
    Ok(())
}

/// `out = x · Wᵀ` on `pool`'s threads (see the module docs); `scratch` holds the quantized activations.
///
/// # Errors
/// [`KernelError::Size`] if `x` is not `[n, cols]` or `out` not `[n, rows]`.
pub fn matmul(
    pool: &ThreadPool,
    w: &QMatRef<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    check_sizes(w.rows, w.cols, x, n, out)?;
    match w.ty {
        GgmlType::Q4_0 => typed::<BlockQ4_0>(pool, w, x, n, out, scratch),
        GgmlType::Q4_1 => typed::<BlockQ4_1>(pool, w, x, n, out, scratch),
        GgmlType::Q5_0 => typed::<BlockQ5_0>(pool, w, x, n, out, scratch),
        GgmlType::Q8_0 => typed::<BlockQ8_0>(pool, w, x, n, out, scratch),
        GgmlType::Q4_K => typed::<BlockQ4K>(pool, w, x, n, out, scratch),
        GgmlType::Q5_K => typed::<BlockQ5K>(pool, w, x, n, out, scratch),
        GgmlType::Q6_K => typed::<BlockQ6K>(pool, w, x, n, out, scratch),
        ty => return Err(KernelError::Unsupported(ty)),
    }
    Ok(())
}

fn typed<B: WeightBlock>(
    pool: &ThreadPool,
    w: &QMatRef<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    let blocks: &[B] = bytemuck::cast_slice(w.data);
    let nb_w = w.cols / B::QK;
    let nb_x = w.cols / <B::Act as ActBlock>::QK;
    let xq: &[B::Act] = quantize_tokens(pool, scratch, x, n, w.cols);
    let rows = w.rows;
    let optr = SharedMut::new(out);
    pool.run(|ith, nth| {
        let mine = split(rows, ith, nth);
        if n < 4 {
            for r in mine {
                let wr = &blocks[r * nb_w..(r + 1) * nb_w];
                #[cfg(target_arch = "x86_64")]
                if n == 1 {
                    // One token streams the weights from DRAM: ask for this row's bytes 4 KiB ahead.
                    crate::cpu::x86::prefetch_slice_ahead(wr);
                }
                for t in 0..n {
                    let v = B::vec_dot(wr, &xq[t * nb_x..(t + 1) * nb_x]);
                    // SAFETY: row `r` belongs to this thread only; `t·rows + r < n·rows`.
                    unsafe { optr.write(t * rows + r, v) };
                }
            }
            return;
        }
        let mut r0 = mine.start;
        while r0 < mine.end {
            let r1 = (r0 + TILE_ROWS).min(mine.end);
            let mut t = 0;
            while t + 4 <= n {
                let xs: [&[B::Act]; 4] = std::array::from_fn(|k| &xq[(t + k) * nb_x..(t + k + 1) * nb_x]);
                let mut r = r0;
                while r + 4 <= r1 {
                    let ws: [&[B]; 4] = std::array::from_fn(|i| &blocks[(r + i) * nb_w..(r + i + 1) * nb_w]);
                    let v = B::vec_dot_4x4(ws, xs);
                    for (i, vi) in v.into_iter().enumerate() {
                        for (k, vk) in vi.into_iter().enumerate() {
                            // SAFETY: as above.
                            unsafe { optr.write((t + k) * rows + r + i, vk) };
                        }
                    }
                    r += 4;
                }
                for r in r..r1 {
                    let v = B::vec_dot_x4(&blocks[r * nb_w..(r + 1) * nb_w], xs);
                    for (k, vk) in v.into_iter().enumerate() {
                        // SAFETY: as above.
                        unsafe { optr.write((t + k) * rows + r, vk) };
                    }
                }
                t += 4;
            }
            for t in t..n {
                for r in r0..r1 {
                    let v = B::vec_dot(&blocks[r * nb_w..(r + 1) * nb_w], &xq[t * nb_x..(t + 1) * nb_x]);
                    // SAFETY: as above.
                    unsafe { optr.write(t * rows + r, v) };
                }
            }
            r0 = r1;
        }
    });
}
