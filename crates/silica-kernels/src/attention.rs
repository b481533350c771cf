//! Causal attention of a run of query tokens over one sequence's KV cache, read in place in the cache's
//! element type (F32, F16 or BF16): no conversion of the whole cache per step, so the cost of a token grows with
//! depth only by the dot products themselves.
//!
//! Numerics follow ggml's CPU flash-attention path (`ggml_compute_forward_flash_attn_ext_f16`): the query is
//! rounded to the key type before `q·k` (its `kq_vec_dot` on `vec_dot_type`), scores are scaled and soft-maxed
//! online in f32 key by key, and the value sum is accumulated in f16 for an F16 value cache, in f32 otherwise.
//! Its `e^x` is [`crate::expf`], which gives the bits of glibc's `expf` (what ggml calls) eight keys at a time:
//! the one-token path computes eight keys' scores, the running maximum along them and their eight `e^x`
//! arguments, then makes the updates in key order. Against one glibc `expf` call per key (which `perf` put at
//! 19% of SmolLM2 generation at depth 4096), alternating runs of `silica bench -p 0 -n 64 -d 4096`: SmolLM2 Q4_0
//! 74.1–74.7 → 95.1–95.7 t/s, 1B-shape Q4_0 (`-n 32`) 28.6 → 32.2; greedy text unchanged to the byte.
#![allow(unsafe_code)]

use half::{bf16, f16, slice::HalfFloatSliceExt};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::{SharedMut, ThreadPool, split};

/// An element type of the KV cache.
pub trait KvElem: bytemuck::Pod + Send + Sync + 'static {
    /// Converts a row to f32.
    fn to_f32_row(src: &[Self], dst: &mut [f32]);
    /// Rounds `x` to this type and back (what ggml does to queries before the dot product with keys).
    fn round(x: f32) -> f32;
    /// Rounds the running value sum after each update: ggml accumulates an F16 value cache in f16
    /// (`ggml_vec_mad_f16`, `ggml_vec_scale_f16`), other types in f32 (no rounding). `tmp` has `acc`'s length.
    fn round_acc(acc: &mut [f32], tmp: &mut [f16]) {
        let _ = (acc, tmp);
    }
    /// [`KvElem::to_f32_row`] with x86 F16C instructions where the type has them (the default is the portable
    /// one).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[inline]
    unsafe fn to_f32_row_x86(src: &[Self], dst: &mut [f32]) {
        Self::to_f32_row(src, dst);
    }
    /// [`KvElem::round_acc`] in place with x86 F16C instructions where the type rounds.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[inline]
    unsafe fn round_acc_x86(acc: &mut [f32], tmp: &mut [f16]) {
        Self::round_acc(acc, tmp);
    }
}

impl KvElem for f32 {
    fn to_f32_row(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn round(x: f32) -> f32 {
        x
    }
}

impl KvElem for f16 {
    fn to_f32_row(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn round(x: f32) -> f32 {
        f16::from_f32(x).to_f32()
    }
    fn round_acc(acc: &mut [f32], tmp: &mut [f16]) {
        tmp.convert_from_f32_slice(acc);
        tmp.convert_to_f32_slice(acc);
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn to_f32_row_x86(src: &[f16], dst: &mut [f32]) {
        // SAFETY: the caller guarantees F16C and AVX2.
        unsafe { f16c::to_f32(src, dst) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn round_acc_x86(acc: &mut [f32], _tmp: &mut [f16]) {
        // SAFETY: the caller guarantees F16C and AVX2.
        unsafe { f16c::round(acc) }
    }
}

/// F16C conversions for the attention workers (8 values per instruction; scalar `half` for the tail).
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    use half::f16;

    /// `dst[i] = src[i]` as f32.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(super) fn to_f32(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 ≤ n` elements of each slice are in bounds; unaligned load and store.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = src[j].to_f32();
        }
    }

    /// Rounds each value to f16 and back, in place (round to nearest even, as `vcvtps2ph` with mode 0).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(super) fn round(acc: &mut [f32]) {
        let n = acc.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 ≤ n`; unaligned load and store.
            unsafe {
                let v = _mm256_loadu_ps(acc.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for a in &mut acc[i..] {
            *a = f16::from_f32(*a).to_f32();
        }
    }
}

impl KvElem for bf16 {
    fn to_f32_row(src: &[bf16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn round(x: f32) -> f32 {
        bf16::from_f32(x).to_f32()
    }
}

/// The shape of one [`attention`] call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (`n_head` is a multiple: query head `h` reads kv head `h / (n_head / n_head_kv)`).
    pub n_head_kv: usize,
    /// Key head width.
    pub head_dim_k: usize,
    /// Value head width.
    pub head_dim_v: usize,
    /// Positions per head in the cache (the stride between heads, in rows).
    pub n_ctx: usize,
    /// Position of the first query; query `i` is at `p0 + i` and its key and value are already in the cache.
    pub p0: usize,
    /// Sliding window (0: none): query at `p` sees keys `j` with `p − j < n_swa`.
    pub n_swa: usize,
    /// Scale applied to `q·k`.
    pub scale: f32,
}

/// One attention call: shape, query count, inputs and the output, shared by its workers.
#[derive(Clone, Copy)]
struct Work<'a, K, V> {
    s: AttnShape,
    m: usize,
    q: &'a [f32],
    k: &'a [K],
    v: &'a [V],
    out: SharedMut<f32>,
}

impl<'a, K, V> Work<'a, K, V> {
    /// The same call with empty caches of other element types (to be filled by struct update).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
    fn with_types<K2, V2>(self) -> Work<'a, K2, V2> {
        Work {
            s: self.s,
            m: self.m,
            q: self.q,
            k: &[],
            v: &[],
            out: self.out,
        }
    }
}

impl AttnShape {
    /// The first key a query at position `p` sees: 0, or `p + 1 − n_swa` inside a sliding window.
    pub fn first_key(&self, p: usize) -> usize {
        if self.n_swa > 0 {
            (p + 1).saturating_sub(self.n_swa)
        } else {
            0
        }
    }
}

/// `T::to_f32_row`, with x86 F16C instructions when `X86` (set only by the `*_avx2` worker wrappers, which run
/// after `has_avx2_fma` checked the CPU).
#[inline(always)]
fn to_f32<T: KvElem, const X86: bool>(src: &[T], dst: &mut [f32]) {
    if X86 {
        // SAFETY: `X86` is set only on CPUs with AVX2, FMA and F16C (see above).
        unsafe { T::to_f32_row_x86(src, dst) }
    } else {
        T::to_f32_row(src, dst)
    }
}

/// `T::round_acc`, with x86 F16C instructions when `X86` (as [`to_f32`]).
#[inline(always)]
fn round_acc<T: KvElem, const X86: bool>(acc: &mut [f32], tmp: &mut [f16]) {
    if X86 {
        // SAFETY: as in `to_f32`.
        unsafe { T::round_acc_x86(acc, tmp) }
    } else {
        T::round_acc(acc, tmp)
    }
}

/// `out[i, h, :] = softmax_j(scale · round(q[i, h])·k[g, j]) · v[g, j]` for `j ≤ p0 + i` (and inside the window),
/// `g = h / (n_head / n_head_kv)`.
///
/// Shapes (row-major): `q` `[m, n_head, head_dim_k]` f32; `k` `[n_head_kv, n_ctx, head_dim_k]`; `v`
/// `[n_head_kv, n_ctx, head_dim_v]`; `out` `[m, n_head · head_dim_v]` f32. Work is split over `pool` by
/// (query, head) pairs.
///
/// # Panics
/// If a slice length disagrees with the shape or the queries reach past `n_ctx` (broken caller invariants:
/// the model checks positions against `n_ctx` before calling).
pub fn attention<K: KvElem, V: KvElem>(
    pool: &ThreadPool,
    s: AttnShape,
    q: &[f32],
    k: &[K],
    v: &[V],
    out: &mut [f32],
) {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let m = q.len() / (s.n_head * dk);
    assert_eq!(q.len(), m * s.n_head * dk, "attention: query length");
    assert_eq!(k.len(), s.n_head_kv * s.n_ctx * dk, "attention: key cache length");
    assert_eq!(
        v.len(),
        s.n_head_kv * s.n_ctx * dv,
        "attention: value cache length"
    );
    assert_eq!(out.len(), m * s.n_head * dv, "attention: output length");
    assert!(s.p0 + m <= s.n_ctx, "attention: queries past n_ctx");
    if m >= TILE_Q {
        return attention_tiled(pool, s, m, q, k, v, out);
    }
    let n_chunks = kv_chunks(s, m, pool.n_threads());
    // Only the split path has partials (`Vec::new` allocates nothing).
    let mut partials = Vec::new();
    if n_chunks > 1 {
        partials = PARTIALS.take();
        partials.clear();
        partials.resize(s.n_head * n_chunks * (2 + dv), 0.0);
    }
    let units = OneUnits {
        n_chunks,
        partials: SharedMut::new(&mut partials),
    };
    let w = Work {
        s,
        m,
        q,
        k,
        v,
        out: SharedMut::new(out),
    };
    one_token(pool, w, units);
    if n_chunks > 1 {
        reduce_partials(pool, s, n_chunks, &partials, out);
        PARTIALS.set(partials);
    }
}

/// Runs the one-token workers of `w` over `units` (the F16 kernel where the CPU and the shapes allow).
fn one_token<K: KvElem, V: KvElem>(pool: &ThreadPool, w: Work<'_, K, V>, units: OneUnits) {
    let dk = w.s.head_dim_k;
    #[cfg(test)]
    if tests::PORTABLE_ONE_TOKEN.load(Ordering::Relaxed) > 0 {
        return pool.run(|ith, nth| one_chunk_worker::<K, V, false>(w, units, ith, nth));
    }
    // The common case — an F16 cache, equal head widths of 64, 128 or 256 — has a register-resident kernel.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
    if std::any::TypeId::of::<K>() == std::any::TypeId::of::<f16>()
        && std::any::TypeId::of::<V>() == std::any::TypeId::of::<f16>()
        && dk == w.s.head_dim_v
        && matches!(dk, 64 | 128 | 256)
    {
        let w16 = Work {
            k: bytemuck::cast_slice::<K, f16>(w.k),
            v: bytemuck::cast_slice::<V, f16>(w.v),
            ..w.with_types()
        };
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            pool.run(|ith, nth| {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                unsafe {
                    match dk {
                        64 => one_chunk_f16::worker::<8>(w16, units, ith, nth),
                        128 => one_chunk_f16::worker::<16>(w16, units, ith, nth),
                        _ => one_chunk_f16::worker::<32>(w16, units, ith, nth),
                    }
                }
            });
            return;
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        {
            pool.run(|ith, nth| match dk {
                64 => one_chunk_f16_neon::worker::<16>(w16, units, ith, nth),
                128 => one_chunk_f16_neon::worker::<32>(w16, units, ith, nth),
                _ => one_chunk_f16_neon::worker::<64>(w16, units, ith, nth),
            });
            return;
        }
    }
    pool.run(|ith, nth| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has the features the function is compiled for (checked at run time).
            return unsafe { one_chunk_worker_avx2(w, units, ith, nth) };
        }
        one_chunk_worker::<K, V, false>(w, units, ith, nth)
    });
}

/// Keys from which one query's attention may be split over the threads by key rather than by
/// head: ggml's `use_split_kv_path` (`ggml_compute_forward_flash_attn_ext_f16` in `ggml-cpu/ops.cpp`, llama.cpp
/// PR #19209) takes it for one query over 512 or more keys.
pub const SPLIT_KV_MIN_KEYS: usize = 512;

/// Key chunks of a one-token call of `m` queries on `n_threads`: `n_threads` for one query over at least
/// [`SPLIT_KV_MIN_KEYS`] keys when the heads do not divide evenly among the threads, else 1 (the units are
/// (query, head) pairs).
///
/// By head, a thread's share is whole heads: 9 heads (SmolLM2) on 2 threads wait for the thread with 5, 32 on 12
/// threads for the threads with 3, and 4 heads (Gemma 3 270M) leave all but 4 threads idle. Where the heads do
/// divide evenly, splitting by key only adds the partials' second pass, so (unlike ggml, which splits whenever
/// it can) silica keeps heads there. Measured, `silica bench -p 0 -n 64 -d 4096 -r 2`, alternating builds, AMD
/// EPYC Zen 4, 2 threads: SmolLM2 Q4_0 (9 heads) tg64 @ d4096 88.5, 89.3, 76.4, 89.1, 89.7 → 92.8, 73.6, 95.2,
/// 93.2, 93.6 t/s (medians 89.1 → 93.2); Gemma 3 270M (4 heads), split whenever possible against not at all,
/// 137.7, 140.8, 135.6, 120.6 → 137.8, 138.5, 136.3, 114.2 (no gain, some loss).
fn kv_chunks(s: AttnShape, m: usize, n_threads: usize) -> usize {
    if m == 1
        && n_threads > 1
        && !s.n_head.is_multiple_of(n_threads)
        && s.p0 + 1 - s.first_key(s.p0) >= SPLIT_KV_MIN_KEYS
    {
        n_threads
    } else {
        1
    }
}

thread_local! {
    /// The split path's partial results, kept by the calling thread between calls (no allocation per token).
    static PARTIALS: std::cell::Cell<Vec<f32>> = std::cell::Cell::default();
}

/// The one-token path's units of work and where each unit's result goes.
///
/// With one chunk, unit `u` is query `u / n_head`, head `u % n_head`, over all the keys its position sees; its
/// normalized result is the output row. With `n_chunks` chunks (one query), unit `u` is head `u % n_head` over
/// the keys of chunk `u / n_head` (the query's keys split into `n_chunks` near-equal runs); its result is the
/// partial `[max, sum, acc[0..head_dim_v]]` (f32, the running maximum, the sum of `e^(score − max)`, and the
/// unnormalized value sum) at `partials[(h · n_chunks + c) · (2 + head_dim_v)..]`, which [`reduce_partials`]
/// combines.
#[derive(Clone, Copy)]
struct OneUnits {
    n_chunks: usize,
    partials: SharedMut<f32>,
}

impl OneUnits {
    /// The units thread `ith` of `nth` computes (with `n_chunks == nth`, chunk `ith`'s heads).
    fn range(&self, s: AttnShape, m: usize, ith: usize, nth: usize) -> std::ops::Range<usize> {
        let n = if self.n_chunks == 1 { m } else { self.n_chunks };
        split(n * s.n_head, ith, nth)
    }

    /// Unit `u` as (query, head, keys, slot of its result).
    #[inline(always)]
    fn unit(&self, s: AttnShape, u: usize) -> (usize, usize, std::ops::Range<usize>, usize) {
        let (r, h) = (u / s.n_head, u % s.n_head);
        if self.n_chunks == 1 {
            let p = s.p0 + r;
            (r, h, s.first_key(p)..p + 1, u)
        } else {
            let j0 = s.first_key(s.p0);
            let keys = split(s.p0 + 1 - j0, r, self.n_chunks);
            (0, h, j0 + keys.start..j0 + keys.end, h * self.n_chunks + r)
        }
    }

    /// Stores unit `slot`'s running maximum, sum and value sum `acc`: `acc / sum` into the output (one chunk,
    /// multiplied by `1 / sum` as ggml's `ggml_vec_scale_f32`), or the partial.
    #[inline(always)]
    fn finish(&self, out: SharedMut<f32>, slot: usize, max: f32, sum: f32, acc: &[f32]) {
        let dv = acc.len();
        if self.n_chunks == 1 {
            let inv = 1.0 / sum;
            // SAFETY: unit `slot` is this thread's only and its row lies inside `out` (lengths checked by
            // `attention`).
            let row = unsafe { out.slice(slot * dv, dv) };
            for (o, &a) in row.iter_mut().zip(acc) {
                *o = a * inv;
            }
        } else {
            // SAFETY: as above, in the partials (sized `n_head · n_chunks · (2 + dv)` by `attention`).
            let part = unsafe { self.partials.slice(slot * (2 + dv), 2 + dv) };
            part[0] = max;
            part[1] = sum;
            part[2..].copy_from_slice(acc);
        }
    }
}

/// Combines the partials of [`OneUnits`] chunk by chunk into `out` (`[n_head, head_dim_v]` f32), one head per
/// thread: `M = max(M, m_c)`, then the running value sum and sum scaled by `e^(M_old − M)` and the chunk's by
/// `e^(m_c − M)`, in chunk order, then divided by the sum; chunks without keys are skipped. ggml's
/// `ggml_flash_attn_ext_reduce_partials` (`ggml-cpu/ops.cpp`), with its `expf` bits ([`crate::expf::expf`]).
fn reduce_partials(pool: &ThreadPool, s: AttnShape, n_chunks: usize, partials: &[f32], out: &mut [f32]) {
    let dv = s.head_dim_v;
    let optr = SharedMut::new(out);
    pool.run(|ith, nth| {
        for h in split(s.n_head, ith, nth) {
            // SAFETY: head `h` is this thread's only; its row lies inside `out`.
            let row = unsafe { optr.slice(h * dv, dv) };
            row.fill(0.0);
            let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
            for part in partials[h * n_chunks * (2 + dv)..][..n_chunks * (2 + dv)].chunks_exact(2 + dv) {
                let (m_c, s_c) = (part[0], part[1]);
                if s_c == 0.0 {
                    continue;
                }
                let m_new = max.max(m_c);
                let (scale_old, scale_new) = (crate::expf::expf(max - m_new), crate::expf::expf(m_c - m_new));
                for (o, &a) in row.iter_mut().zip(&part[2..]) {
                    *o = *o * scale_old + a * scale_new;
                }
                sum = sum * scale_old + s_c * scale_new;
                max = m_new;
            }
            if sum != 0.0 {
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|o| *o *= inv);
            }
        }
    });
}

/// The generation path for an F16 cache on x86-64: [`one_chunk_worker`]'s algorithm with the query, the running
/// value sum (rounded to f16 after every update, as ggml) and each key's conversion in registers.
#[cfg(target_arch = "x86_64")]
mod one_chunk_f16 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{OneUnits, Work};

    /// `NV` = head width / 8 (vectors per row).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn worker<const NV: usize>(w: Work<'_, f16, f16>, units: OneUnits, ith: usize, nth: usize) {
        let Work { s, q, k, v, .. } = w;
        let d = 8 * NV;
        let n_group = s.n_head / s.n_head_kv;
        for u in units.range(s, w.m, ith, nth) {
            let (i, h, keys, slot) = units.unit(s, u);
            let g = h / n_group;
            let qrow = &q[(i * s.n_head + h) * d..][..d];
            // The query rounded to f16 (the key type), as ggml converts it for the dot products.
            let qv: [__m256; NV] = std::array::from_fn(|c| {
                // SAFETY: `8c + 8 ≤ d`; unaligned load.
                let x = unsafe { _mm256_loadu_ps(qrow.as_ptr().add(8 * c)) };
                _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
            });
            let mut acc = [_mm256_setzero_ps(); NV];
            let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
            let kb = &k[g * s.n_ctx * d..(g * s.n_ctx + keys.end) * d];
            let vb = &v[g * s.n_ctx * d..(g * s.n_ctx + keys.end) * d];
            // Eight keys at a time: their scores, then the running maximum and the `e^x` arguments along
            // them, the eight `e^x` in one vector call (glibc's `expf` bits, `crate::expf`), then the updates in
            // key order — the operations and order of one key at a time.
            let mut j = keys.start;
            while j < keys.end {
                let nk = (keys.end - j).min(8);
                let mut sc = [0f32; 8];
                for (t, sct) in sc.iter_mut().enumerate().take(nk) {
                    let mut dotv = _mm256_setzero_ps();
                    for (c, qc) in qv.iter().enumerate() {
                        // SAFETY: `(j + t)·d + 8c + 8 ≤ keys.end·d = kb.len()`; unaligned 16-byte load.
                        let kv = _mm256_cvtph_ps(unsafe {
                            _mm_loadu_si128(kb.as_ptr().add((j + t) * d + 8 * c).cast())
                        });
                        dotv = _mm256_fmadd_ps(*qc, kv, dotv);
                    }
                    *sct = s.scale * hsum(dotv);
                }
                let steps = super::online_steps(&sc, nk, &mut max);
                for (t, &(ms, vs, new_max)) in steps[..nk].iter().enumerate() {
                    if new_max {
                        let msv = _mm256_set1_ps(ms);
                        for a in acc.iter_mut() {
                            *a = round_f16(_mm256_mul_ps(*a, msv));
                        }
                    }
                    let vsv = _mm256_set1_ps(vs);
                    for (c, a) in acc.iter_mut().enumerate() {
                        // SAFETY: as for the keys.
                        let vv = _mm256_cvtph_ps(unsafe {
                            _mm_loadu_si128(vb.as_ptr().add((j + t) * d + 8 * c).cast())
                        });
                        *a = round_f16(_mm256_fmadd_ps(vv, vsv, *a));
                    }
                    sum = sum * ms + vs;
                }
                j += nk;
            }
            let mut o = [[0f32; 8]; NV];
            for (oc, a) in o.iter_mut().zip(&acc) {
                // SAFETY: `oc` is 32 writable bytes; unaligned store.
                unsafe { _mm256_storeu_ps(oc.as_mut_ptr(), *a) };
            }
            units.finish(w.out, slot, max, sum, o.as_flattened());
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn round_f16(x: __m256) -> __m256 {
        _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
    }

    /// The 8 lanes' sum, in [`super::dot`]'s order (lanes 0..8 added left to right).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum(x: __m256) -> f32 {
        let mut a = [0f32; 8];
        // SAFETY: `a` is 32 writable bytes; unaligned store.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), x) };
        a.iter().sum()
    }
}

/// The generation path for an F16 cache on aarch64: [`one_chunk_worker`]'s algorithm with the query, the running
/// value sum (rounded to f16 after every update, as ggml) and each key's conversion in NEON registers, as the x86
/// kernel (`one_chunk_f16`) does. The conversions are `FCVTL` (f16 → f32) and `FCVTN` (f32 → f16, rounding to
/// nearest even under the default FPCR), base Armv8.0 Advanced SIMD instructions (no FEAT_FP16), written as inline
/// assembly because Rust's `float16x4_t` intrinsics are unstable.
///
/// Without it, ARM ran the portable worker, which converts each key and value row through `half`'s slice
/// functions and rounds the value sum with two more. Its cost, measured on x86 where both run (the portable
/// worker built with FMA but `half`'s conversions, against the F16C kernel; `silica bench -m
/// synth-llama-3.2-1b-Q4_0.gguf -p 0 -n 32 -d 4096 -r 2`, alternating, AMD EPYC Zen 4, 2 threads): tg32 @ d4096
/// 11.72, 12.86 against 32.65, 30.15 t/s. This kernel is not timed on ARM hardware.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod one_chunk_f16_neon {
    use std::arch::aarch64::*;
    use std::arch::asm;

    use half::f16;

    use super::{OneUnits, Work};
    use crate::cpu::arm::{widen_hi, widen_lo};

    /// `NQ` = head width / 4 (NEON vectors per row).
    pub(super) fn worker<const NQ: usize>(w: Work<'_, f16, f16>, units: OneUnits, ith: usize, nth: usize) {
        let Work { s, q, k, v, .. } = w;
        let d = 4 * NQ;
        let n_group = s.n_head / s.n_head_kv;
        for u in units.range(s, w.m, ith, nth) {
            let (i, h, keys, slot) = units.unit(s, u);
            let g = h / n_group;
            let qrow = &q[(i * s.n_head + h) * d..][..d];
            // The query rounded to f16 (the key type), as ggml converts it for the dot products.
            // SAFETY: `4c + 4 ≤ d = qrow.len()`; unaligned load.
            let qv: [float32x4_t; NQ] =
                std::array::from_fn(|c| round_f16(unsafe { vld1q_f32(qrow.as_ptr().add(4 * c)) }));
            // SAFETY: register arithmetic only (NEON is a static target feature here).
            let mut acc = [unsafe { vdupq_n_f32(0.0) }; NQ];
            let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
            let kb: &[u16] = bytemuck::cast_slice(&k[g * s.n_ctx * d..(g * s.n_ctx + keys.end) * d]);
            let vb: &[u16] = bytemuck::cast_slice(&v[g * s.n_ctx * d..(g * s.n_ctx + keys.end) * d]);
            // As the x86 kernel: eight keys' scores, their `e^x` in one call, then the updates in key order.
            let mut j = keys.start;
            while j < keys.end {
                let nk = (keys.end - j).min(8);
                let mut sc = [0f32; 8];
                for (t, sct) in sc.iter_mut().enumerate().take(nk) {
                    // Two accumulators: lanes 0–3 and 4–7 of [`super::dot`]'s eight (each product of two f16
                    // values is exact in f32, so fused and separate multiply-adds agree).
                    // SAFETY: register arithmetic only (NEON is a static target feature here).
                    let (mut lo, mut hi) = unsafe { (vdupq_n_f32(0.0), vdupq_n_f32(0.0)) };
                    for (c, qc) in qv.chunks_exact(2).enumerate() {
                        // SAFETY: `(j + t)·d + 8c + 8 ≤ keys.end·d = kb.len()`; unaligned 16-byte load.
                        let kh = unsafe { vld1q_u16(kb.as_ptr().add((j + t) * d + 8 * c)) };
                        // SAFETY: register arithmetic only, as for `lo` and `hi`.
                        unsafe {
                            lo = vfmaq_f32(lo, qc[0], widen_lo(kh));
                            hi = vfmaq_f32(hi, qc[1], widen_hi(kh));
                        }
                    }
                    *sct = s.scale * hsum(lo, hi);
                }
                let steps = super::online_steps(&sc, nk, &mut max);
                for (t, &(ms, vs, new_max)) in steps[..nk].iter().enumerate() {
                    if new_max {
                        for a in acc.iter_mut() {
                            // SAFETY: as above.
                            *a = round_f16(unsafe { vmulq_n_f32(*a, ms) });
                        }
                    }
                    // SAFETY: as above.
                    let vsv = unsafe { vdupq_n_f32(vs) };
                    for (c, a) in acc.chunks_exact_mut(2).enumerate() {
                        // SAFETY: as for the keys.
                        let vh = unsafe { vld1q_u16(vb.as_ptr().add((j + t) * d + 8 * c)) };
                        // SAFETY: as above.
                        unsafe {
                            a[0] = round_f16(vfmaq_f32(a[0], widen_lo(vh), vsv));
                            a[1] = round_f16(vfmaq_f32(a[1], widen_hi(vh), vsv));
                        }
                    }
                    sum = sum * ms + vs;
                }
                j += nk;
            }
            let mut o = [[0f32; 4]; NQ];
            for (oc, a) in o.iter_mut().zip(&acc) {
                // SAFETY: `oc` is 16 writable bytes; unaligned store.
                unsafe { vst1q_f32(oc.as_mut_ptr(), *a) };
            }
            units.finish(w.out, slot, max, sum, o.as_flattened());
        }
    }

    /// `x` rounded to f16 (to nearest even) and back (`FCVTN`, `FCVTL`).
    #[inline(always)]
    fn round_f16(x: float32x4_t) -> float32x4_t {
        let r: float32x4_t;
        // SAFETY: FCVTN and FCVTL read and write vector registers only (Armv8.0 Advanced SIMD, always present
        // with NEON).
        unsafe {
            asm!(
                "fcvtn {t:v}.4h, {x:v}.4s",
                "fcvtl {r:v}.4s, {t:v}.4h",
                x = in(vreg) x,
                t = out(vreg) _,
                r = lateout(vreg) r,
                options(pure, nomem, nostack),
            );
        }
        r
    }

    /// The 8 lanes' sum (`lo`'s, then `hi`'s), in [`super::dot`]'s order (added left to right).
    #[inline(always)]
    fn hsum(lo: float32x4_t, hi: float32x4_t) -> f32 {
        let mut a = [0f32; 8];
        // SAFETY: `a` is 32 writable bytes; unaligned stores.
        unsafe {
            vst1q_f32(a.as_mut_ptr(), lo);
            vst1q_f32(a.as_mut_ptr().add(4), hi);
        }
        a.iter().sum()
    }
}

/// Queries per tile of the prompt path: from this many queries on, ggml (build 11434) switches to its tiled
/// flash attention (`GGML_FA_TILE_Q` in `ggml-cpu/common.h`), which works in f32 throughout.
pub const TILE_Q: usize = 64;

/// Keys per block of the prompt path's two passes: a block of transposed keys or of values, `64 · KEY_BLOCK`
/// floats at head size 64 (64 KiB), stays in L2 while the tile's sixteen quads of queries use it. Against one
/// quad at a time over all keys (each quad streaming a megabyte of keys and one of values from L3 at depth 4096):
/// SmolLM2 Q4_0 pp512 at depth 4096 353–399 → 439–454 t/s, Llama 3.2 1B shape Q4_0 149–154 → 166–173
/// (`silica bench -p 512 -n 0 -d 4096`, alternating, AMD EPYC Zen 4, 2 threads). The zmm micro-kernels
/// (`use_zmm`) then took SmolLM2 from 420–429 to 504–515 t/s and the 1B shape from 170 to 192–195.
const KEY_BLOCK: usize = 256;

/// [`KEY_BLOCK`], or in tests the block size a test set (0: none), to check that blocking changes no bit.
fn key_block() -> usize {
    #[cfg(test)]
    {
        let b = tests::KEY_BLOCK_OVERRIDE.load(std::sync::atomic::Ordering::Relaxed);
        if b != 0 {
            return b;
        }
    }
    KEY_BLOCK
}

/// Whether the prompt path's micro-kernels run on zmm registers (AVX-512F; in tests, unless a test turned them
/// off to compare). Every score and value sum is the same chain of FMAs in the same order on either width.
#[cfg(target_arch = "x86_64")]
fn use_zmm() -> bool {
    #[cfg(test)]
    if tests::ZMM_OFF.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    crate::cpu::x86::best() == Some(crate::cpu::x86::Level::Avx512Vnni)
}

/// The prompt path: per (head, tile of [`TILE_Q`] queries), the keys and values the tile can see are converted to
/// f32 once and shared by its queries; queries are not rounded, scores are soft-maxed exactly (max first) and the
/// value sum is accumulated in f32, as ggml's `ggml_compute_forward_flash_attn_ext_tiled`.
///
/// A unit of work is one tile of one kv head for the query heads that read it (all of them, or a part: see
/// [`head_parts`]), so the keys and values are converted and the keys transposed once per tile for all those heads.
/// Threads take units one at a time from a shared counter, the latest tiles (the most keys) first, so the short
/// units come last and fill the gaps. Each output row is written by one unit, by the same operations whichever
/// thread takes it.
///
/// Against units of one head each dealt round-robin (with two threads and an even tile count, one thread got every
/// odd, longer tile), `silica bench -p 512 -n 0 -d 4096 -r 2`, two alternating rounds on AMD EPYC Zen 4, 2
/// threads: SmolLM2 Q4_0 (3 query heads per kv head) 598.1, 614.8 → 667.8, 654.5 t/s; 1B-shape Q4_0 (4 per kv
/// head) 215.9, 213.0 → 240.1, 234.1; Gemma 3 270M (4 per kv head, one round) 1197.5 → 1323.8.
fn attention_tiled<K: KvElem, V: KvElem>(
    pool: &ThreadPool,
    s: AttnShape,
    m: usize,
    q: &[f32],
    k: &[K],
    v: &[V],
    out: &mut [f32],
) {
    let w = Work {
        s,
        m,
        q,
        k,
        v,
        out: SharedMut::new(out),
    };
    let units = Units::new(s, m, pool.n_threads());
    let next = AtomicUsize::new(0);
    pool.run(|_, _| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has the features the function is compiled for (checked at run time).
            return unsafe { tiled_worker_avx2(w, units, &next) };
        }
        tiled_worker::<K, V, false>(w, units, &next)
    });
}

/// The prompt path's units of work: (tile of [`TILE_Q`] queries, kv head, part of its query heads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Units {
    /// Tiles of queries.
    n_tiles: usize,
    /// Key/value heads.
    n_head_kv: usize,
    /// Query heads per kv head.
    n_group: usize,
    /// Parts the query heads of one kv head are split into ([`head_parts`]).
    parts: usize,
}

impl Units {
    fn new(s: AttnShape, m: usize, n_threads: usize) -> Self {
        let n_tiles = m.div_ceil(TILE_Q);
        let n_group = s.n_head / s.n_head_kv;
        Units {
            n_tiles,
            n_head_kv: s.n_head_kv,
            n_group,
            parts: head_parts(n_group, n_tiles * s.n_head_kv, n_threads),
        }
    }

    fn len(&self) -> usize {
        self.n_tiles * self.n_head_kv * self.parts
    }

    /// Unit `u` (`u < len`) as (tile, kv head, query heads), the last tile first.
    fn get(&self, u: usize) -> (usize, usize, std::ops::Range<usize>) {
        let per_tile = self.n_head_kv * self.parts;
        let tile = self.n_tiles - 1 - u / per_tile;
        let (g, part) = ((u % per_tile) / self.parts, u % self.parts);
        let per = self.n_group / self.parts;
        let h0 = g * self.n_group + part * per;
        (tile, g, h0..h0 + per)
    }
}

/// Into how many parts the prompt path splits the `n_group` query heads that read one kv head, given `units`
/// (tile, kv head) pairs and `n_threads`: 1, so that a tile's keys are converted and transposed once for all of
/// them, unless that leaves fewer than four units per thread to balance; then the smallest divisor of `n_group`
/// that leaves four (or `n_group`, one head per unit).
fn head_parts(n_group: usize, units: usize, n_threads: usize) -> usize {
    (1..=n_group)
        .filter(|d| n_group.is_multiple_of(*d))
        .find(|d| units * d >= 4 * n_threads)
        .unwrap_or(n_group)
}

/// One online-softmax step per score `sc[..nk]` of consecutive keys, with the running maximum `max` carried along
/// (and left at the last key's): `(ms, vs, new_max)`, the factor the running sum and accumulator are scaled by,
/// the key's weight, and whether the key set a new maximum — `(e^(max − sc), 1, true)` for a key above the
/// maximum, else `(1, e^(sc − max), false)`, ggml's one-chunk order one key after another. The eight `e^x` are
/// one [`crate::expf::expf8`] call.
#[inline(always)]
fn online_steps(sc: &[f32; 8], nk: usize, max: &mut f32) -> [(f32, f32, bool); 8] {
    let (mut arg, mut new_max) = ([0f32; 8], [false; 8]);
    for t in 0..nk {
        if sc[t] > *max {
            arg[t] = *max - sc[t];
            *max = sc[t];
            new_max[t] = true;
        } else {
            arg[t] = sc[t] - *max;
        }
    }
    let e = crate::expf::expf8(arg);
    std::array::from_fn(|t| {
        if new_max[t] {
            (e[t], 1.0, true)
        } else {
            (1.0, e[t], false)
        }
    })
}

#[inline(always)]
fn one_chunk_worker<K: KvElem, V: KvElem, const X86: bool>(
    w: Work<'_, K, V>,
    units: OneUnits,
    ith: usize,
    nth: usize,
) {
    let Work { s, m, q, k, v, .. } = w;
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let n_group = s.n_head / s.n_head_kv;
    let mut scratch = SCRATCH.take();
    let [qr, kr, acc, ..] = &mut scratch.f;
    let (qr, kr, acc) = (zeroed(qr, dk), zeroed(kr, dk.max(dv)), zeroed(acc, dv));
    let tmp = &mut scratch.h;
    tmp.clear();
    tmp.resize(dv, f16::ZERO);
    for u in units.range(s, m, ith, nth) {
        let (i, h, keys, slot) = units.unit(s, u);
        let g = h / n_group;
        for (d, &x) in qr.iter_mut().zip(&q[(i * s.n_head + h) * dk..][..dk]) {
            *d = K::round(x);
        }
        // Online softmax over the keys in order (ggml's one-chunk flash attention): on a new maximum the
        // running sum and accumulator are rescaled; an F16 value cache accumulates in f16, rounding after
        // every update as ggml's `ggml_vec_scale_f16` / `ggml_vec_mad_f16` do.
        // Eight keys at a time, as the F16 kernel (`one_chunk_f16`): scores, then `e^x` of the eight, then the
        // updates in key order.
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        acc.fill(0.0);
        let mut j = keys.start;
        while j < keys.end {
            let nk = (keys.end - j).min(8);
            let mut sc = [0f32; 8];
            for (t, sct) in sc.iter_mut().enumerate().take(nk) {
                let krow = &k[(g * s.n_ctx + j + t) * dk..][..dk];
                to_f32::<K, X86>(krow, &mut kr[..dk]);
                *sct = s.scale * dot(qr, &kr[..dk]);
            }
            let steps = online_steps(&sc, nk, &mut max);
            for (t, &(ms, vs, new_max)) in steps[..nk].iter().enumerate() {
                if new_max {
                    acc.iter_mut().for_each(|a| *a *= ms);
                    round_acc::<V, X86>(acc, tmp);
                }
                let vrow = &v[(g * s.n_ctx + j + t) * dv..][..dv];
                to_f32::<V, X86>(vrow, &mut kr[..dv]);
                for (a, &x) in acc.iter_mut().zip(&kr[..dv]) {
                    *a = x.mul_add(vs, *a);
                }
                round_acc::<V, X86>(acc, tmp);
                sum = sum * ms + vs;
            }
            j += nk;
        }
        units.finish(w.out, slot, max, sum, acc);
    }
    SCRATCH.set(scratch);
}

/// Per-thread scratch of the attention workers, kept between calls so that a generated token allocates nothing.
#[derive(Default)]
struct Scratch {
    f: [Vec<f32>; 6],
    h: Vec<f16>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::default();
}

/// `v` holding `n` zeros (allocating only when its capacity is smaller).
fn zeroed(v: &mut Vec<f32>, n: usize) -> &mut Vec<f32> {
    v.clear();
    v.resize(n, 0.0);
    v
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn one_chunk_worker_avx2<K: KvElem, V: KvElem>(w: Work<'_, K, V>, units: OneUnits, ith: usize, nth: usize) {
    one_chunk_worker::<K, V, true>(w, units, ith, nth)
}

#[inline(always)]
fn tiled_worker<K: KvElem, V: KvElem, const X86: bool>(w: Work<'_, K, V>, units: Units, next: &AtomicUsize) {
    let Work {
        s,
        m,
        q,
        k,
        v,
        out: optr,
    } = w;
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let window_lo = |p: usize| s.first_key(p);
    let mut scratch = SCRATCH.take();
    let [kf, kt, vf, scores, acc, acc4] = &mut scratch.f;
    let (acc, acc4) = (zeroed(acc, dv), zeroed(acc4, TILE_Q * dv));
    let micro = Micro::pick::<X86>();
    let key_block = key_block();
    loop {
        let u = next.fetch_add(1, Ordering::Relaxed);
        if u >= units.len() {
            break;
        }
        let (tile, g, heads) = units.get(u);
        let (i0, i1) = (tile * TILE_Q, ((tile + 1) * TILE_Q).min(m));
        // Keys visible to some query of the tile: from the first query's window start to the last query.
        let j_lo = window_lo(s.p0 + i0);
        let j_hi = s.p0 + i1; // exclusive
        let n = j_hi - j_lo;
        kf.resize(n * dk, 0.0);
        vf.resize(n * dv, 0.0);
        for (jj, j) in (j_lo..j_hi).enumerate() {
            let (krow, vrow) = (
                &k[(g * s.n_ctx + j) * dk..][..dk],
                &v[(g * s.n_ctx + j) * dv..][..dv],
            );
            to_f32::<K, X86>(krow, &mut kf[jj * dk..][..dk]);
            to_f32::<V, X86>(vrow, &mut vf[jj * dv..][..dv]);
        }
        // The unit's heads take four queries at a time against eight keys at a time (keys transposed once for
        // all of them: `kt[d·ld + jj]`), so each key vector load serves four queries and no horizontal sums are
        // needed. Rows of `kt` and of the scores are `ld` floats apart (see `row_stride`).
        let ld = row_stride(n);
        kt.resize(ld * dk, 0.0);
        // Blocks of eight keys, so each write fills eight consecutive floats.
        for jb in (0..n).step_by(8) {
            if n - jb >= 8 && dk.is_multiple_of(8) {
                micro.transpose_keys8(kf, dk, kt, ld, jb);
                continue;
            }
            let w = (n - jb).min(8);
            for d in 0..dk {
                let dst = &mut kt[d * ld + jb..d * ld + jb + w];
                for (t, x) in dst.iter_mut().enumerate() {
                    *x = kf[(jb + t) * dk + d];
                }
            }
        }
        for h in heads {
            // The tile's queries four at a time ("quads"), each against the keys `a..b` it can see. Both passes
            // go over the keys in blocks of `KEY_BLOCK` and give every quad its share of a block before the next
            // block: a block of `kt` or `vf` is read from L2 by all the quads, where a quad at a time streamed the
            // whole of both (a megabyte each at depth 4096) from L3. Each score and each value sum is computed by
            // the same operations in the same key order as one quad at a time would, so the results are equal.
            let n_quads = (i1 - i0) / 4;
            let range = |qd: usize| {
                let i = i0 + 4 * qd;
                (window_lo(s.p0 + i) - j_lo, s.p0 + i + 4 - j_lo)
            };
            // Block by block, each quad's share `a2..b2` of the block with its whole range `a..b`.
            let shares = || {
                (0..n).step_by(key_block).flat_map(move |kb| {
                    let kb_end = kb.saturating_add(key_block).min(n);
                    (0..n_quads).filter_map(move |qd| {
                        let (a, b) = range(qd);
                        let (a2, b2) = (a.max(kb), b.min(kb_end));
                        (a2 < b2).then_some((qd, a, a2, b2))
                    })
                })
            };
            scores.resize(n_quads * 4 * ld, 0.0);
            for (qd, _, a2, b2) in shares() {
                let i = i0 + 4 * qd;
                let qs: [&[f32]; 4] = std::array::from_fn(|r| &q[((i + r) * s.n_head + h) * dk..][..dk]);
                micro.qk4(qs, kt, ld, a2, b2, &mut scores[qd * 4 * ld..][..4 * ld]);
            }
            // Softmax weights over `a..b`, zero outside each query's own keys.
            let mut inv = [[0f32; 4]; TILE_Q / 4];
            for qd in 0..n_quads {
                let (a, b) = range(qd);
                for r in 0..4 {
                    let p = s.p0 + i0 + 4 * qd + r;
                    let (lo, hi) = (window_lo(p) - j_lo, p + 1 - j_lo);
                    let row = &mut scores[(qd * 4 + r) * ld..][..n];
                    let sum = crate::vexp::softmax_row(&mut row[lo..hi], s.scale);
                    row[a..lo].fill(0.0);
                    row[hi..b].fill(0.0);
                    inv[qd][r] = 1.0 / sum;
                }
            }
            for (qd, a, a2, b2) in shares() {
                let w = &scores[qd * 4 * ld..][..4 * ld];
                // A quad's first block starts its sums, later ones continue them.
                micro.pv4(w, ld, a2, b2, vf, dv, &mut acc4[qd * 4 * dv..][..4 * dv], a2 > a);
            }
            for qd in 0..n_quads {
                let o = &acc4[qd * 4 * dv..][..4 * dv];
                for r in 0..4 {
                    let i = i0 + 4 * qd + r;
                    for d in 0..dv {
                        // SAFETY: (i, h) belongs to this unit only, and each unit to one thread.
                        unsafe { optr.write((i * s.n_head + h) * dv + d, o[r * dv + d] * inv[qd][r]) };
                    }
                }
            }
            // The last queries of a tile that are not a whole quad: one at a time, the same softmax and f32 sums.
            for i in i0 + 4 * n_quads..i1 {
                let p = s.p0 + i;
                let lo = window_lo(p);
                let qi = &q[(i * s.n_head + h) * dk..][..dk];
                scores.clear();
                scores.extend((lo..=p).map(|j| dot(qi, &kf[(j - j_lo) * dk..][..dk])));
                let sum = crate::vexp::softmax_row(scores, s.scale);
                acc.fill(0.0);
                for (j, &w) in (lo..=p).zip(scores.iter()) {
                    for (a, &x) in acc.iter_mut().zip(&vf[(j - j_lo) * dv..][..dv]) {
                        *a = x.mul_add(w, *a);
                    }
                }
                let inv = 1.0 / sum;
                for (d, &a) in acc.iter().enumerate() {
                    // SAFETY: (i, h) belongs to this unit only, and each unit to one thread.
                    unsafe { optr.write((i * s.n_head + h) * dv + d, a * inv) };
                }
            }
        }
    }
    SCRATCH.set(scratch);
}

/// The micro-kernels of the prompt path: x86's on ymm or zmm registers, or portable Rust that the compiler
/// vectorizes (NEON on aarch64). All compute each score and each value sum by the same chain of FMAs in the same
/// order, so they give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Micro {
    /// [`qk_portable`].
    Portable,
    /// [`qk_x86`]'s AVX2 kernels (constructed only where the CPU has AVX2, FMA and F16C).
    #[cfg(target_arch = "x86_64")]
    Ymm,
    /// [`qk_x86`]'s AVX-512F kernels (constructed only where the CPU has AVX-512 as well).
    #[cfg(target_arch = "x86_64")]
    Zmm,
}

impl Micro {
    /// The x86 kernels where `X86` and the CPU has them (zmm ones with AVX-512, unless a test turned them off),
    /// the portable ones otherwise.
    fn pick<const X86: bool>() -> Self {
        #[cfg(target_arch = "x86_64")]
        if X86 && has_avx2_fma() {
            return if use_zmm() { Micro::Zmm } else { Micro::Ymm };
        }
        Micro::Portable
    }

    /// `kt[d·ld + jb + t] = kf[(jb + t)·dk + d]` for the eight keys `jb..jb + 8`; `dk` a multiple of 8.
    #[inline(always)]
    fn transpose_keys8(self, kf: &[f32], dk: usize, kt: &mut [f32], ld: usize, jb: usize) {
        match self {
            Micro::Portable => qk_portable::transpose_keys8(kf, dk, kt, ld, jb),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: these variants exist only where the CPU has AVX2 (see `pick`).
            Micro::Ymm | Micro::Zmm => unsafe { qk_x86::transpose_keys8(kf, dk, kt, ld, jb) },
        }
    }

    /// `scores[r·ld + c] = Σ_d q[r][d]·kt[d·ld + c]` for keys `c` in `a..b` (see [`qk_portable::qk4`]).
    #[inline(always)]
    fn qk4(self, q: [&[f32]; 4], kt: &[f32], ld: usize, a: usize, b: usize, scores: &mut [f32]) {
        match self {
            Micro::Portable => qk_portable::qk4(q, kt, ld, a, b, scores),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (see `pick`).
            Micro::Ymm => unsafe { qk_x86::qk4(q, kt, ld, a, b, scores) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F too (see `pick`).
            Micro::Zmm => unsafe { qk_x86::qk4_zmm(q, kt, ld, a, b, scores) },
        }
    }

    /// `out[r·dv + d] (+)= Σ_{j∈a..b} w[r·ld + j]·vf[j·dv + d]` (see [`qk_portable::pv4`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn pv4(
        self,
        w: &[f32],
        ld: usize,
        a: usize,
        b: usize,
        vf: &[f32],
        dv: usize,
        out: &mut [f32],
        resume: bool,
    ) {
        match self {
            Micro::Portable => qk_portable::pv4(w, ld, a, b, vf, dv, out, resume),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (see `pick`).
            Micro::Ymm => unsafe { qk_x86::pv4(w, ld, a, b, vf, dv, out, resume) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F too (see `pick`).
            Micro::Zmm => unsafe { qk_x86::pv4_zmm(w, ld, a, b, vf, dv, out, resume) },
        }
    }
}

/// The prompt path's micro-kernels in plain Rust: fixed-size accumulator arrays that the compiler keeps in vector
/// registers (`fmla` on aarch64's NEON: sixteen `fmla .4s` per step in each kernel's loop), each score and value
/// sum the FMA chain of the x86 kernels.
///
/// Before them, targets without the x86 kernels computed each query's scores one key at a time (an 8-lane dot
/// product and its horizontal sum per key). Timed only on x86, as a stand-in: both built with `RUSTFLAGS="-C
/// target-feature=+avx2,+fma,+f16c"` and run in place of the x86 kernels, SmolLM2 Q4_0 `silica bench -p 512 -n 0
/// -d 4096 -r 2` gave 131.7, 132.9 t/s for the per-query path and 488.3, 502.9 for these, against 682.4, 728.0
/// for the x86 kernels (alternating runs, AMD EPYC Zen 4, 2 threads). No ARM CPU has timed them yet.
mod qk_portable {
    /// Keys (or value columns) per step: sixteen floats, four NEON registers per query.
    const W: usize = 16;

    /// `out[r·ld_out + c] = Σ_{t∈ts} x(t)[r]·y[t·ld_y + c]` for the four rows `r` and the columns `c` in `cols`
    /// (with `resume`, `out[r·ld_out + c] + Σ…`): sixteen columns a step, accumulators in registers, each vector
    /// load of `y` serving four rows; then the last columns one at a time. Each element is one FMA chain over `t`
    /// in order. The callers have checked the bounds (indexing still checks them).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn panel4(
        x: impl Fn(usize) -> [f32; 4],
        ts: std::ops::Range<usize>,
        y: &[f32],
        ld_y: usize,
        cols: std::ops::Range<usize>,
        out: &mut [f32],
        ld_out: usize,
        resume: bool,
    ) {
        let mut c = cols.start;
        while c + W <= cols.end {
            let mut acc = [[0f32; W]; 4];
            if resume {
                for (r, acc) in acc.iter_mut().enumerate() {
                    acc.copy_from_slice(&out[r * ld_out + c..][..W]);
                }
            }
            for t in ts.clone() {
                let v = &y[t * ld_y + c..][..W];
                for (acc, x) in acc.iter_mut().zip(x(t)) {
                    for (a, &vv) in acc.iter_mut().zip(v) {
                        *a = x.mul_add(vv, *a);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                out[r * ld_out + c..][..W].copy_from_slice(acc);
            }
            c += W;
        }
        for c in c..cols.end {
            for r in 0..4 {
                let mut a = if resume { out[r * ld_out + c] } else { 0.0 };
                for t in ts.clone() {
                    a = x(t)[r].mul_add(y[t * ld_y + c], a);
                }
                out[r * ld_out + c] = a;
            }
        }
    }

    /// See [`super::Micro::transpose_keys8`].
    ///
    /// # Panics
    /// If `dk` is not a multiple of 8 or a slice is too short for the eight keys.
    #[inline]
    pub(super) fn transpose_keys8(kf: &[f32], dk: usize, kt: &mut [f32], ld: usize, jb: usize) {
        assert!(
            dk.is_multiple_of(8) && (jb + 8) * dk <= kf.len() && jb + 8 <= ld && dk * ld <= kt.len(),
            "transpose_keys8: sizes"
        );
        for d0 in (0..dk).step_by(8) {
            let rows: [&[f32]; 8] = std::array::from_fn(|t| &kf[(jb + t) * dk + d0..][..8]);
            for d in 0..8 {
                let dst = &mut kt[(d0 + d) * ld + jb..][..8];
                for (t, x) in dst.iter_mut().enumerate() {
                    *x = rows[t][d];
                }
            }
        }
    }

    /// `scores[r·n + c] = Σ_d q[r][d]·kt[d·n + c]` for the four queries `r` and keys `c` in `a..b`: `kt` is
    /// `[dk][n]` (keys transposed), `scores` `[4][n]` (`n` the row stride). Sixteen keys a step, then one at a
    /// time; each score is one FMA chain over `d` from zero.
    ///
    /// # Panics
    /// If the queries' lengths differ, a slice is too short, or not `a ≤ b ≤ n`.
    #[inline]
    pub(super) fn qk4(q: [&[f32]; 4], kt: &[f32], n: usize, a: usize, b: usize, scores: &mut [f32]) {
        super::check_qk4(&q, kt, n, a, b, scores);
        let dk = q[0].len();
        let q: [&[f32]; 4] = q.map(|r| &r[..dk]);
        panel4(
            |d| [q[0][d], q[1][d], q[2][d], q[3][d]],
            0..dk,
            kt,
            n,
            a..b,
            scores,
            n,
            false,
        );
    }

    /// `out[r·dv + d] = Σ_{j∈a..b} w[r·n + j]·vf[j·dv + d]` for the four rows `r` of weights (`w` `[4][n]`, `n`
    /// the row stride; `vf` `[b][dv]` at least), or with `resume`, `out[r·dv + d] + Σ…`, continuing a sum over
    /// earlier keys in the same order. Sixteen columns a step, then one at a time; each sum one FMA chain over `j`.
    ///
    /// # Panics
    /// If a slice is too short or not `a ≤ b ≤ n`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pv4(
        w: &[f32],
        n: usize,
        a: usize,
        b: usize,
        vf: &[f32],
        dv: usize,
        out: &mut [f32],
        resume: bool,
    ) {
        super::check_pv4(w, n, a, b, vf, dv, out);
        let w: [&[f32]; 4] = std::array::from_fn(|r| &w[r * n..r * n + b]);
        panel4(
            |j| [w[0][j], w[1][j], w[2][j], w[3][j]],
            a..b,
            vf,
            dv,
            0..dv,
            out,
            dv,
            resume,
        );
    }
}

/// Checks the shapes of a four-query score product (the prompt path's micro-kernels): `kt` `[dk][n]`, `scores`
/// `[4][n]`, keys `a..b` of `n` (`n` is the row stride: the prompt path passes its padded [`row_stride`]).
///
/// # Panics
/// If the queries' lengths differ, a slice is too short, or not `a ≤ b ≤ n`.
fn check_qk4(q: &[&[f32]; 4], kt: &[f32], n: usize, a: usize, b: usize, scores: &[f32]) {
    let dk = q[0].len();
    assert!(
        q.iter().all(|r| r.len() == dk) && kt.len() >= dk * n && scores.len() >= 4 * n && a <= b && b <= n,
        "qk4: sizes"
    );
}

/// Checks the shapes of a four-query value sum (the prompt path's micro-kernels): weights `w` `[4][n]` (`n` the
/// row stride), keys `a..b` of `n`, values `vf` `[b][dv]` at least, `out` `[4][dv]`.
///
/// # Panics
/// If a slice is too short or not `a ≤ b ≤ n`.
fn check_pv4(w: &[f32], n: usize, a: usize, b: usize, vf: &[f32], dv: usize, out: &[f32]) {
    assert!(
        w.len() >= 4 * n && a <= b && b <= n && vf.len() >= b * dv && out.len() >= 4 * dv,
        "pv4: sizes"
    );
}

/// The distance in floats between rows of the prompt path's transposed keys and scores for `n` keys: `n` rounded
/// up to a whole number of 64-byte lines, and to an odd number of them. The score kernel reads one line from each
/// of the `dk` rows of the transposed keys per step and the transpose writes one to each; with rows a multiple of
/// 4 KiB apart plus `2^k` lines, those lines fall in only `64 / 2^k` of an L1 data cache's 64 sets (8-way, 64-byte
/// lines: Zen 4 and recent Intel cores) and evict each other. An odd number of lines puts 64 consecutive rows in
/// 64 different sets.
fn row_stride(n: usize) -> usize {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    let lines = n.div_ceil(LINE);
    (lines | 1) * LINE
}

/// The score and value micro-kernels of the prompt path (indices spelled out: they mirror the layouts).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod qk_x86 {
    use std::arch::x86_64::*;

    /// `kt[d·n + jb + t] = kf[(jb + t)·dk + d]` for the eight keys `jb..jb + 8` and every `d`: the prompt path's
    /// key transpose (`kf` `[keys][dk]`, `kt` `[dk][n]`), 8×8 blocks at a time through registers (unpack,
    /// shuffle, lane permute). Element by element it took 14% of SmolLM2's pp512 at depth 4096 (`perf`); this
    /// took 7% (bound by the stores to 64 rows 18 KB apart), and pp512 @ d4096 went 492–499 → 508–514 t/s in
    /// alternating runs. Rows `n` = [`super::row_stride`] apart then moved the whole path on again: rows of
    /// `4096·m + 2^k·64` bytes had sent each step's 64 lines (transpose stores, score kernel loads) to a few L1
    /// sets. `silica bench -p 512 -n 0 -d 4096 -r 2`, two alternating rounds: SmolLM2 Q4_0 522.6, 544.5 →
    /// 594.9, 631.4 t/s; 1B-shape Q4_0 201.1, 209.4 → 224.3, 229.9; SmolLM2 pp512 at depth 0 2279.0, 2406.9 →
    /// 2516.0, 2540.5.
    ///
    /// # Panics
    /// If `dk` is not a multiple of 8 or a slice is too short for the eight keys.
    #[target_feature(enable = "avx2")]
    pub(super) fn transpose_keys8(kf: &[f32], dk: usize, kt: &mut [f32], n: usize, jb: usize) {
        assert!(
            dk.is_multiple_of(8) && (jb + 8) * dk <= kf.len() && jb + 8 <= n && dk * n <= kt.len(),
            "transpose_keys8: sizes"
        );
        for d0 in (0..dk).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (t, rt) in r.iter_mut().enumerate() {
                // SAFETY: `(jb + t)·dk + d0 + 8 ≤ (jb + 8)·dk ≤ kf.len()` (asserted); unaligned load.
                *rt = unsafe { _mm256_loadu_ps(kf.as_ptr().add((jb + t) * dk + d0)) };
            }
            // Rows (keys) to columns (dimensions): pairs, then quads, then 128-bit halves.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (d, c) in cols.into_iter().enumerate() {
                // SAFETY: `(d0 + d)·n + jb + 8 ≤ (dk − 1)·n + n = dk·n ≤ kt.len()` (asserted); unaligned store.
                unsafe { _mm256_storeu_ps(kt.as_mut_ptr().add((d0 + d) * n + jb), c) };
            }
        }
    }

    /// Defines `$name(q, kt, n, a, b, scores) -> c`, the four-query score steps for the features `$feat`: keys
    /// `a..c` in steps of `$w` (two key loads of `$w / 2` lanes and four query broadcasts feed eight FMAs), `c`
    /// the first key after the last whole step. Each score is one FMA chain over `d`, the same on every width.
    macro_rules! qk4_steps {
        ($name:ident, $feat:literal, $w:literal, $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident) => {
            #[target_feature(enable = $feat)]
            #[inline]
            fn $name(q: [&[f32]; 4], kt: &[f32], n: usize, a: usize, b: usize, scores: &mut [f32]) -> usize {
                const H: usize = $w / 2;
                super::check_qk4(&q, kt, n, a, b, scores);
                let dk = q[0].len();
                let mut c = a;
                while c + $w <= b {
                    let mut acc = [[$zero(); 2]; 4];
                    for d in 0..dk {
                        // SAFETY: `d·n + c + $w ≤ (dk − 1)·n + b ≤ dk·n ≤ kt.len()`; unaligned loads.
                        let (k0, k1) = unsafe {
                            let p = kt.as_ptr().add(d * n + c);
                            ($load(p), $load(p.add(H)))
                        };
                        for r in 0..4 {
                            let qv = $set1(q[r][d]);
                            acc[r][0] = $fma(qv, k0, acc[r][0]);
                            acc[r][1] = $fma(qv, k1, acc[r][1]);
                        }
                    }
                    for r in 0..4 {
                        // SAFETY: `r·n + c + $w ≤ 4n ≤ scores.len()`; unaligned stores.
                        unsafe {
                            let p = scores.as_mut_ptr().add(r * n + c);
                            $store(p, acc[r][0]);
                            $store(p.add(H), acc[r][1]);
                        }
                    }
                    c += $w;
                }
                c
            }
        };
    }

    qk4_steps!(
        qk4_steps_ymm,
        "avx2,fma",
        16,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps
    );
    qk4_steps!(
        qk4_steps_zmm,
        "avx512f,avx2,fma",
        32,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps
    );

    /// `scores[r·n + c] = Σ_d q[r][d] · kt[d·n + c]` for the four queries `r` and keys `c` in `a..b`.
    /// `kt` is `[dk][n]` (keys transposed); `scores` is `[4][n]`. Sixteen keys at a time, then eight, then one.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn qk4(q: [&[f32]; 4], kt: &[f32], n: usize, a: usize, b: usize, scores: &mut [f32]) {
        let dk = q[0].len();
        let mut c = qk4_steps_ymm(q, kt, n, a, b, scores);
        while c + 8 <= b {
            let mut acc = [_mm256_setzero_ps(); 4];
            for d in 0..dk {
                // SAFETY: `d·n + c + 8 ≤ (dk − 1)·n + b ≤ dk·n ≤ kt.len()`; unaligned load.
                let kv = unsafe { _mm256_loadu_ps(kt.as_ptr().add(d * n + c)) };
                for r in 0..4 {
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[r][d]), kv, acc[r]);
                }
            }
            for r in 0..4 {
                // SAFETY: `r·n + c + 8 ≤ 4n ≤ scores.len()`; unaligned store.
                unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(r * n + c), acc[r]) };
            }
            c += 8;
        }
        for c in c..b {
            for r in 0..4 {
                let mut x = 0f32;
                for d in 0..dk {
                    x = q[r][d].mul_add(kt[d * n + c], x);
                }
                scores[r * n + c] = x;
            }
        }
    }

    /// Defines a four-query value-sum kernel `$name` for the features `$feat`, `$w` columns per step in two
    /// registers of `$w / 2` lanes: `out[r·dv + d] = Σ_{j∈a..b} w[r·n + j] · vf[j·dv + d]`, or with `resume`,
    /// `out[r·dv + d] + Σ…`, continuing a sum over earlier keys in the same order of operations. Each value
    /// vector load serves four queries; accumulators stay in registers across the keys; columns past the last
    /// whole step are summed one at a time, by the same FMA chain. `w` is `[4][n]` (rows `n` floats apart),
    /// `vf` `[b][dv]` at least.
    macro_rules! pv4_kernel {
        (
            $(#[$doc:meta])*
            $name:ident, $feat:literal, $w:literal,
            $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident
        ) => {
            $(#[$doc])*
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn $name(
                w: &[f32],
                n: usize,
                a: usize,
                b: usize,
                vf: &[f32],
                dv: usize,
                out: &mut [f32],
                resume: bool,
            ) {
                const H: usize = $w / 2;
                super::check_pv4(w, n, a, b, vf, dv, out);
                let mut c0 = 0;
                while c0 + $w <= dv {
                    let mut acc = [[$zero(); 2]; 4];
                    if resume {
                        for r in 0..4 {
                            // SAFETY: `r·dv + c0 + $w ≤ 4·dv ≤ out.len()`; unaligned loads.
                            unsafe {
                                let p = out.as_ptr().add(r * dv + c0);
                                acc[r] = [$load(p), $load(p.add(H))];
                            }
                        }
                    }
                    for j in a..b {
                        // SAFETY: `j·dv + c0 + $w ≤ b·dv ≤ vf.len()`; unaligned loads.
                        let (v0, v1) = unsafe {
                            let p = vf.as_ptr().add(j * dv + c0);
                            ($load(p), $load(p.add(H)))
                        };
                        for r in 0..4 {
                            let x = $set1(w[r * n + j]);
                            acc[r][0] = $fma(x, v0, acc[r][0]);
                            acc[r][1] = $fma(x, v1, acc[r][1]);
                        }
                    }
                    for r in 0..4 {
                        // SAFETY: `r·dv + c0 + $w ≤ 4·dv ≤ out.len()`; unaligned stores.
                        unsafe {
                            let p = out.as_mut_ptr().add(r * dv + c0);
                            $store(p, acc[r][0]);
                            $store(p.add(H), acc[r][1]);
                        }
                    }
                    c0 += $w;
                }
                for d in c0..dv {
                    for r in 0..4 {
                        let mut x = if resume { out[r * dv + d] } else { 0.0 };
                        for j in a..b {
                            x = w[r * n + j].mul_add(vf[j * dv + d], x);
                        }
                        out[r * dv + d] = x;
                    }
                }
            }
        };
    }

    pv4_kernel!(
        /// The value sums of four queries on ymm registers (AVX2), 16 columns per step.
        pv4, "avx2,fma", 16,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps
    );
    pv4_kernel!(
        /// [`pv4`] on zmm registers (AVX-512F), 32 columns per step: each `out[r·dv + d]` is the same FMA chain.
        pv4_zmm, "avx512f,avx2,fma", 32,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps
    );

    /// [`qk4`] 32 keys at a time on zmm registers, the last keys on [`qk4`]'s paths: each score is the same FMA
    /// chain over `d` as there.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn qk4_zmm(q: [&[f32]; 4], kt: &[f32], n: usize, a: usize, b: usize, scores: &mut [f32]) {
        let c = qk4_steps_zmm(q, kt, n, a, b, scores);
        qk4(q, kt, n, c, b, scores);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn tiled_worker_avx2<K: KvElem, V: KvElem>(w: Work<'_, K, V>, units: Units, next: &AtomicUsize) {
    tiled_worker::<K, V, true>(w, units, next)
}

/// Whether the CPU has AVX2, FMA and F16C (the attention workers' fast build).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    crate::cpu::x86::best().is_some()
}

/// f32 dot product in 8 independent lanes (vectorizes without `-ffast-math`).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The prompt path's key block size while a test overrides it (0: [`KEY_BLOCK`]).
    pub(super) static KEY_BLOCK_OVERRIDE: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    /// While above 0 (tests that compare the portable one-token worker with the SIMD ones, x86 or NEON, hold it up), the
    /// one-token path uses the portable worker. Both give the same bits, so other tests running meanwhile see no
    /// difference.
    pub(super) static PORTABLE_ONE_TOKEN: AtomicUsize = AtomicUsize::new(0);

    /// Turns the prompt path's zmm micro-kernels off while a test compares them with the ymm ones.
    #[cfg(target_arch = "x86_64")]
    pub(super) static ZMM_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_key_transpose_moves_every_element() {
        if !has_avx2_fma() {
            eprintln!("no AVX2 on this CPU: the prompt path transposes keys element by element only");
            return;
        }
        let (dk, n) = (24, 21);
        let kf: Vec<f32> = (0..n * dk).map(|i| i as f32).collect();
        let mut kt = vec![f32::NAN; dk * n];
        for jb in [0, 8] {
            // SAFETY: AVX2 checked above.
            unsafe { qk_x86::transpose_keys8(&kf, dk, &mut kt, n, jb) };
        }
        for d in 0..dk {
            for j in 0..n {
                let want = if j < 16 { kf[j * dk + d] } else { f32::NAN };
                let got = kt[d * n + j];
                assert!(
                    got == want || (got.is_nan() && want.is_nan()),
                    "d {d} key {j}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn key_blocks_of_any_size_give_the_same_bits() {
        let mut rng = StdRng::seed_from_u64(11);
        // 700 keys: three blocks of 256 for the last tiles; tiles of 64, 64, 64 and 8 queries; a window too.
        for (n_swa, threads) in [(0, 2), (300, 1)] {
            let s = AttnShape {
                n_head: 9,
                n_head_kv: 3,
                head_dim_k: 64,
                head_dim_v: 64,
                n_ctx: 700,
                p0: 500,
                n_swa,
                scale: 0.125,
            };
            let m = 200;
            let q: Vec<f32> = (0..m * 9 * 64).map(|_| rng.random_range(-2.0..2.0)).collect();
            let k: Vec<f32> = (0..3 * 700 * 64).map(|_| rng.random_range(-2.0..2.0)).collect();
            let v: Vec<f32> = (0..3 * 700 * 64).map(|_| rng.random_range(-2.0..2.0)).collect();
            let pool = ThreadPool::new(threads).unwrap();
            let run = |block: usize| {
                KEY_BLOCK_OVERRIDE.store(block, std::sync::atomic::Ordering::Relaxed);
                let mut out = vec![0f32; m * 9 * 64];
                attention::<f32, f32>(&pool, s, &q, &k, &v, &mut out);
                out
            };
            let whole = run(usize::MAX);
            for block in [KEY_BLOCK, 64, 37, 1] {
                let got = run(block);
                let same = whole.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "key block {block}, window {n_swa}: results differ from one block"
                );
            }
            // The ymm micro-kernels give the same bits as the zmm ones (where the CPU has AVX-512F), and the
            // portable ones as both.
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                ZMM_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
                let ymm = run(KEY_BLOCK);
                ZMM_OFF.store(false, std::sync::atomic::Ordering::Relaxed);
                let same = whole.iter().zip(&ymm).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "window {n_swa}: the ymm kernels differ from the zmm ones");
                KEY_BLOCK_OVERRIDE.store(KEY_BLOCK, std::sync::atomic::Ordering::Relaxed);
                let portable = tiled_portable(&pool, s, &q, &k, &v);
                let same = whole
                    .iter()
                    .zip(&portable)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "window {n_swa}: the portable kernels differ from the x86 ones"
                );
            }
            KEY_BLOCK_OVERRIDE.store(0, std::sync::atomic::Ordering::Relaxed);
            let want = reference(s, &q, &k, &v);
            for (a, b) in whole.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    /// The prompt path on the portable micro-kernels ([`Micro::Portable`]) over an f32 cache, whatever the CPU.
    fn tiled_portable(pool: &ThreadPool, s: AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let m = q.len() / (s.n_head * s.head_dim_k);
        let mut out = vec![0f32; m * s.n_head * s.head_dim_v];
        let w = Work {
            s,
            m,
            q,
            k,
            v,
            out: SharedMut::new(&mut out),
        };
        let (units, next) = (Units::new(s, m, pool.n_threads()), AtomicUsize::new(0));
        pool.run(|_, _| tiled_worker::<f32, f32, false>(w, units, &next));
        out
    }

    /// [`attention`] on the portable one-token worker, whatever the CPU.
    fn one_token_portable<K: KvElem, V: KvElem>(
        pool: &ThreadPool,
        s: AttnShape,
        q: &[f32],
        k: &[K],
        v: &[V],
    ) -> Vec<f32> {
        let m = q.len() / (s.n_head * s.head_dim_k);
        let mut out = vec![0f32; m * s.n_head * s.head_dim_v];
        PORTABLE_ONE_TOKEN.fetch_add(1, Ordering::Relaxed);
        attention(pool, s, q, k, v, &mut out);
        PORTABLE_ONE_TOKEN.fetch_sub(1, Ordering::Relaxed);
        out
    }

    /// `k` and `v` as an F16 cache, and [`reference`] on the data as the kernels see it (queries, keys and values
    /// rounded to f16).
    fn f16_cache(s: AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f16>, Vec<f16>, Vec<f32>) {
        let k16: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let round = |x: &[f32]| -> Vec<f32> { x.iter().map(|&x| f16::from_f32(x).to_f32()).collect() };
        let want = reference(s, &round(q), &round(k), &round(v));
        (k16, v16, want)
    }

    /// Plain two-pass reference in f64 over f32 data.
    fn reference(s: AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let (dk, dv) = (s.head_dim_k, s.head_dim_v);
        let m = q.len() / (s.n_head * dk);
        let mut out = vec![0f32; m * s.n_head * dv];
        for i in 0..m {
            for h in 0..s.n_head {
                let g = h / (s.n_head / s.n_head_kv);
                let p = s.p0 + i;
                let js: Vec<usize> = (0..=p).filter(|&j| s.n_swa == 0 || p - j < s.n_swa).collect();
                let sc: Vec<f64> = js
                    .iter()
                    .map(|&j| {
                        let qk: f64 = (0..dk)
                            .map(|d| {
                                f64::from(q[(i * s.n_head + h) * dk + d])
                                    * f64::from(k[(g * s.n_ctx + j) * dk + d])
                            })
                            .sum();
                        qk * f64::from(s.scale)
                    })
                    .collect();
                let max = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dv {
                    let o: f64 = js
                        .iter()
                        .zip(&e)
                        .map(|(&j, w)| w * f64::from(v[(g * s.n_ctx + j) * dv + d]))
                        .sum();
                    out[(i * s.n_head + h) * dv + d] = (o / z) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn prompt_units_cover_every_tile_and_head_once() {
        for (n_head, n_head_kv, m, threads, parts) in [
            (32, 8, 512, 2, 1),
            (9, 3, 512, 2, 1),
            (4, 1, 512, 16, 4),
            (8, 2, 130, 2, 2),
            (8, 2, 64, 2, 4),
            (6, 6, 64, 4, 1),
        ] {
            let s = AttnShape {
                n_head,
                n_head_kv,
                head_dim_k: 8,
                head_dim_v: 8,
                n_ctx: m,
                p0: 0,
                n_swa: 0,
                scale: 1.0,
            };
            let units = Units::new(s, m, threads);
            assert_eq!(
                units.parts, parts,
                "{n_head}/{n_head_kv} heads, m {m}, {threads} threads"
            );
            let n_tiles = m.div_ceil(TILE_Q);
            let mut seen = vec![0u32; n_tiles * n_head];
            let mut last_tile = usize::MAX;
            for u in 0..units.len() {
                let (tile, g, heads) = units.get(u);
                assert!(tile <= last_tile, "the latest tiles come first");
                last_tile = tile;
                for h in heads {
                    assert_eq!(h / (n_head / n_head_kv), g, "head {h} reads kv head {g}");
                    seen[tile * n_head + h] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        }
    }

    #[test]
    fn matches_the_reference_with_gqa_windows_and_threads() {
        let mut rng = StdRng::seed_from_u64(7);
        for (n_head, n_head_kv, dk, n_ctx, p0, m, n_swa, threads) in [
            (4, 2, 8, 16, 0, 5, 0, 1),
            (4, 2, 8, 16, 3, 4, 0, 3),
            (6, 2, 12, 32, 10, 7, 4, 2),
            (2, 2, 64, 64, 0, 1, 0, 2),
            (9, 3, 64, 64, 0, 10, 0, 2),
            (9, 3, 64, 64, 0, 10, 0, 1),
            (4, 2, 16, 160, 5, 130, 0, 2),
            (4, 1, 16, 200, 0, 150, 20, 3),
            // Prompt units of a whole group of four heads (one thread, then two), and of half a group.
            (8, 2, 16, 300, 0, 260, 0, 1),
            (8, 2, 16, 300, 0, 260, 0, 2),
            (8, 2, 16, 300, 4, 130, 0, 2),
        ] {
            let s = AttnShape {
                n_head,
                n_head_kv,
                head_dim_k: dk,
                head_dim_v: dk,
                n_ctx,
                p0,
                n_swa,
                scale: 0.3,
            };
            let q: Vec<f32> = (0..m * n_head * dk)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let k: Vec<f32> = (0..n_head_kv * n_ctx * dk)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let v: Vec<f32> = (0..n_head_kv * n_ctx * dk)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let want = reference(s, &q, &k, &v);
            let pool = ThreadPool::new(threads).unwrap();
            let mut out = vec![0f32; want.len()];
            attention::<f32, f32>(&pool, s, &q, &k, &v, &mut out);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            if m >= TILE_Q {
                // The portable micro-kernels too (on x86 the call above used the x86 ones).
                let portable = tiled_portable(&pool, s, &q, &k, &v);
                for (a, b) in portable.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "portable: {a} vs {b}");
                }
            }
            // F16 cache: same data rounded to f16; queries rounded too.
            let (k16, v16, want) = f16_cache(s, &q, &k, &v);
            attention::<f16, f16>(&pool, s, &q, &k16, &v16, &mut out);
            if m < TILE_Q {
                // The portable worker gives the same bits as the F16 kernel, x86 or NEON (same operations, same
                // rounding).
                let portable = one_token_portable(&pool, s, &q, &k16, &v16);
                assert_eq!(
                    portable.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 8e-3, "f16 (accumulated in f16): {a} vs {b}");
            }
        }
    }

    #[test]
    fn one_query_over_many_keys_is_split_over_the_threads() {
        let mut rng = StdRng::seed_from_u64(19);
        for (n_head, n_head_kv, d, n_ctx, p0, n_swa, threads) in [
            // SmolLM2's heads over 1101 keys; Gemma 3's over exactly 512, then 511 (not split); a window of 600
            // keys; head widths 64, 128 and 256 (the F16 kernel's) and 40 (the generic worker's); heads that
            // divide evenly among the threads (not split), and one thread.
            (9, 3, 64, 1200, 1100, 0, 2),
            (4, 1, 128, 800, 511, 0, 3),
            (4, 1, 128, 800, 510, 0, 3),
            (4, 1, 64, 1500, 1400, 600, 5),
            (6, 2, 256, 700, 520, 0, 4),
            (8, 2, 40, 900, 899, 0, 3),
            (8, 2, 128, 900, 899, 0, 2),
            (8, 2, 128, 900, 899, 0, 1),
        ] {
            let s = AttnShape {
                n_head,
                n_head_kv,
                head_dim_k: d,
                head_dim_v: d,
                n_ctx,
                p0,
                n_swa,
                scale: 0.3,
            };
            let n_keys = p0 + 1 - s.first_key(p0);
            let want_chunks = if threads > 1 && n_head % threads != 0 && n_keys >= SPLIT_KV_MIN_KEYS {
                threads
            } else {
                1
            };
            assert_eq!(
                kv_chunks(s, 1, threads),
                want_chunks,
                "{n_keys} keys, {threads} threads"
            );
            assert_eq!(kv_chunks(s, 2, threads), 1, "two queries are never split");
            let q: Vec<f32> = (0..n_head * d).map(|_| rng.random_range(-2.0..2.0)).collect();
            let k: Vec<f32> = (0..n_head_kv * n_ctx * d)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let v: Vec<f32> = (0..n_head_kv * n_ctx * d)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let pool = ThreadPool::new(threads).unwrap();
            let one = ThreadPool::new(1).unwrap();
            let run = |pool: &ThreadPool| {
                let mut out = vec![0f32; n_head * d];
                attention::<f32, f32>(pool, s, &q, &k, &v, &mut out);
                out
            };
            let want = reference(s, &q, &k, &v);
            let (split_f32, whole_f32) = (run(&pool), run(&one));
            for ((a, b), c) in split_f32.iter().zip(&want).zip(&whole_f32) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{n_keys} keys, {threads} threads: {a} vs {b}"
                );
                assert!((a - c).abs() < 1e-5, "split against one thread: {a} vs {c}");
            }
            // F16 cache (queries rounded to f16 as the kernel does): the reference on the rounded data, and the
            // portable worker's bits equal to the F16 kernel's (x86 or NEON), split or not.
            let (k16, v16, want) = f16_cache(s, &q, &k, &v);
            let mut out = vec![0f32; n_head * d];
            attention::<f16, f16>(&pool, s, &q, &k16, &v16, &mut out);
            let portable = one_token_portable(&pool, s, &q, &k16, &v16);
            assert!(
                out.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n_keys} keys, {threads} threads: the portable worker differs from the F16 kernel"
            );
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 8e-3,
                    "f16, {n_keys} keys, {threads} threads: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn partials_combine_as_one_softmax_and_skip_empty_chunks() {
        // One head of width 2 over three chunks: keys with scores (1, 2), none, (3) (the last chunk raises the
        // maximum, so the first one's sums are rescaled); values (1, 0), (0, 1), (2, 2).
        let s = AttnShape {
            n_head: 1,
            n_head_kv: 1,
            head_dim_k: 2,
            head_dim_v: 2,
            n_ctx: 3,
            p0: 2,
            n_swa: 0,
            scale: 1.0,
        };
        let e = |x: f32| x.exp();
        let partials = [
            2.0,
            e(1.0 - 2.0) + 1.0,
            e(1.0 - 2.0),
            1.0,
            f32::NEG_INFINITY,
            0.0,
            0.0,
            0.0,
            3.0,
            1.0,
            2.0,
            2.0,
        ];
        let mut out = [f32::NAN; 2];
        reduce_partials(&ThreadPool::new(2).unwrap(), s, 3, &partials, &mut out);
        let w = [e(1.0), e(2.0), e(3.0)];
        let z: f32 = w.iter().sum();
        let want = [(w[0] + 2.0 * w[2]) / z, (w[1] + 2.0 * w[2]) / z];
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
