//! A persistent thread pool for the per-token hot path: `run(f)` calls `f(ith, nth)` on every thread (the
//! caller is thread 0) and returns when all have finished — one fork-join per operation, as ggml's
//! `ggml_graph_compute` threads split each node.
//!
//! Workers spin on an epoch counter for a short while after each job (the next matrix product of a token
//! usually comes within microseconds), then sleep on a condition variable, so an idle pool costs no CPU.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps. Long enough to bridge the gap between two operations of a
/// token (a few µs of element-wise work), short enough not to steal a core from other work for long.
const SPIN: Duration = Duration::from_micros(200);

/// Why [`crate::set_cpu_threads`] refused a thread count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadsError {
    /// A pool needs at least one thread.
    #[error("the CPU thread count must be at least 1")]
    Zero,
    /// The count was already fixed: the pool's threads are spawned once per process.
    #[error("{asked} CPU threads asked for after the kernels fixed {in_use} (set it before loading a model)")]
    AlreadyChosen {
        /// The count asked for.
        asked: usize,
        /// The count in use.
        in_use: usize,
    },
}

/// The job of one `run` call: a type-erased `&(dyn Fn(usize, usize) + Sync)`.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize, usize) + Sync));

// SAFETY: the pointee is `Sync`, and `run` keeps it alive until every worker has finished calling it.
unsafe impl Send for Job {}

struct Shared {
    epoch: AtomicU64,
    pending: AtomicUsize,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    job: Mutex<Option<Job>>,
    wake: Condvar,
    panicked: AtomicBool,
}

/// A fixed set of worker threads; see the module docs.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises concurrent `run` calls from different threads.
    call: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all: the caller of [`ThreadPool::run`] and `n_threads − 1` workers
    /// (`n_threads` 0 is treated as 1).
    ///
    /// # Errors
    /// The OS error if a worker thread cannot be spawned.
    pub fn new(n_threads: usize) -> std::io::Result<Self> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            job: Mutex::new(None),
            wake: Condvar::new(),
            panicked: AtomicBool::new(false),
        });
        let workers = (1..n_threads)
            .map(|ith| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("silica-{ith}"))
                    .spawn(move || worker(&shared, ith, n_threads))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(ThreadPool {
            n_threads,
            shared,
            workers,
            call: Mutex::new(()),
        })
    }

    /// Threads taking part in each [`ThreadPool::run`], the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(ith, n_threads)` once on each thread, `ith` in `0..n_threads` (the caller runs `ith = 0`), and
    /// returns when all calls have returned.
    ///
    /// # Panics
    /// If `f` panicked on a worker (the worker's panic is caught, the pool stays usable, and the caller gets a
    /// panic naming the pool).
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        let _serial = self.call.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let f_ref: &(dyn Fn(usize, usize) + Sync) = &f;
        // SAFETY: the erased borrow of `f` is only dereferenced by workers between the epoch bump below and their
        // `pending` decrement, and this function does not return (nor unwind, see `Finish`) before `pending` is 0.
        let job = Job(unsafe {
            std::mem::transmute::<
                *const (dyn Fn(usize, usize) + Sync + '_),
                *const (dyn Fn(usize, usize) + Sync + 'static),
            >(f_ref)
        });
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.pending.store(self.n_threads - 1, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // Waits for the workers even if `f` panics on this thread.
        struct Finish<'a>(&'a Shared);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut spins = 0u32;
                while self.0.pending.load(Ordering::Acquire) != 0 {
                    spins += 1;
                    if spins < 1 << 16 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        let finish = Finish(s);
        f(0, self.n_threads);
        drop(finish);
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("silica-kernels thread pool: a worker panicked");
        }
    }
}

fn worker(s: &Shared, ith: usize, nth: usize) {
    let mut seen = 0u64;
    loop {
        // Spin, then sleep, until the epoch moves.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.epoch.load(Ordering::Acquire) != seen || s.shutdown.load(Ordering::Acquire) {
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(256) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut g = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Job(f)) = job {
            // SAFETY: `run` keeps the closure alive until `pending` reaches 0, which happens after this call.
            let f = unsafe { &*f };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ith, nth))).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Fills `out` (`[n_rows, row]`, row-major) by calling `f(first_row, part)` on whole-row parts, one part per
/// thread of `pool`; outputs under 16 Ki values (where waking the threads costs more than it saves) take one call
/// on the calling thread. `f` sees rows `first_row..first_row + part.len() / row`.
///
/// # Panics
/// If `row` is 0 or does not divide `out.len()`, or if `f` panics.
pub fn par_rows(pool: &ThreadPool, out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    assert!(row > 0 && out.len().is_multiple_of(row), "par_rows: row length");
    let n_rows = out.len() / row;
    if out.len() < 16 * 1024 || n_rows < 2 {
        f(0, out);
        return;
    }
    let dst = SharedMut::new(out);
    pool.run(|ith, nth| {
        let rows = split(n_rows, ith, nth);
        if !rows.is_empty() {
            // SAFETY: thread `ith` owns rows `rows` only (`split` gives disjoint ranges), within bounds.
            let part = unsafe { dst.slice(rows.start * row, rows.len() * row) };
            f(rows.start, part);
        }
    });
}

/// The range of `0..n` that thread `ith` of `nth` owns when `n` items are split into `nth` near-equal parts.
pub fn split(n: usize, ith: usize, nth: usize) -> std::ops::Range<usize> {
    let per = n.div_ceil(nth.max(1));
    (ith * per).min(n)..((ith + 1) * per).min(n)
}

/// Items `0..n` shared by the threads of one [`ThreadPool::run`] so that a thread that runs ahead takes over
/// from a slower one: each thread first takes its own contiguous part of the first three quarters (as [`split`]
/// would), then the last quarter comes in small chunks from a shared counter, first come first served.
///
/// One-token products stream their weights from DRAM, where one core's equal share can take longer than the
/// other's; the faster thread then spins. On the test machine (AMD EPYC Zen 4, 2 threads, 7B-shape Q4_0 `tg32`,
/// `perf`) the pool's spinning fell from 5.7% to 3.4% of the samples and the product kernel's share rose from
/// 87.7% to 89.9%. Which thread computes an item never changes its result.
#[derive(Debug)]
pub(crate) struct Guided {
    n: usize,
    n_static: usize,
    chunk: usize,
    next: AtomicUsize,
}

impl Guided {
    /// The schedule of `n` items over `nth` threads.
    pub(crate) fn new(n: usize, nth: usize) -> Self {
        let nth = nth.max(1);
        let n_static = if nth == 1 { n } else { n - n / 4 };
        // About four chunks per thread in the shared quarter.
        let chunk = ((n - n_static) / (4 * nth)).max(1);
        Guided {
            n,
            n_static,
            chunk,
            next: AtomicUsize::new(n_static),
        }
    }

    /// Calls `f` on the ranges thread `ith` of `nth` takes, in order, until none is left.
    pub(crate) fn for_each(&self, ith: usize, nth: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
        let own = split(self.n_static, ith, nth);
        if !own.is_empty() {
            f(own);
        }
        loop {
            let start = self.next.fetch_add(self.chunk, Ordering::Relaxed);
            if start >= self.n {
                return;
            }
            f(start..(start + self.chunk).min(self.n));
        }
    }
}

/// A mutable slice shared by the threads of one [`ThreadPool::run`], each of which writes a disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: callers of `write`/`slice` promise disjoint access; `run` joins the threads before the borrow ends.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(s: &mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Writes element `i`.
    ///
    /// # Safety
    /// No other thread reads or writes element `i` during this `run`, and the slice outlives the `run`.
    pub(crate) unsafe fn write(self, i: usize, v: T) {
        assert!(i < self.len, "SharedMut::write out of bounds");
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        unsafe { *self.ptr.add(i) = v };
    }

    /// The sub-slice `start..start + len`.
    ///
    /// # Safety
    /// No other thread touches that range during this `run`, and the slice outlives the `run`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "SharedMut::slice out of bounds");
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_rows_visits_every_row_once_with_its_index() {
        let pool = ThreadPool::new(3).unwrap();
        for (n_rows, row) in [(1, 7), (5, 3), (1000, 64), (7, 4096)] {
            let mut out = vec![-1f32; n_rows * row];
            par_rows(&pool, &mut out, row, |first, part| {
                assert_eq!(part.len() % row, 0);
                for (i, r) in part.chunks_exact_mut(row).enumerate() {
                    r.iter_mut().for_each(|v| *v = (first + i) as f32);
                }
            });
            for (i, r) in out.chunks_exact(row).enumerate() {
                assert!(r.iter().all(|&v| v == i as f32), "row {i} of {n_rows}x{row}");
            }
        }
    }

    #[test]
    fn guided_schedules_hand_out_every_item_exactly_once() {
        let pool = ThreadPool::new(3).unwrap();
        for n in [0, 1, 2, 3, 7, 64, 1000, 1377] {
            for nth in [1, 2, 3] {
                let sched = Guided::new(n, nth);
                let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let run = |ith: usize| {
                    sched.for_each(ith, nth, |r| {
                        assert!(r.start < r.end && r.end <= n, "{r:?} of {n}");
                        r.for_each(|i| {
                            seen[i].fetch_add(1, Ordering::Relaxed);
                        })
                    })
                };
                if nth == 3 {
                    pool.run(|ith, _| run(ith));
                } else {
                    (0..nth).for_each(run);
                }
                assert!(
                    seen.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "n {n}, nth {nth}"
                );
            }
        }
    }

    #[test]
    fn every_thread_runs_once_per_call_and_sees_the_result_of_the_previous_call() {
        let pool = ThreadPool::new(3).unwrap();
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for round in 1..=500usize {
            pool.run(|ith, nth| {
                assert_eq!(nth, 3);
                assert_eq!(hits[ith].load(Ordering::SeqCst), round - 1);
                hits[ith].fetch_add(1, Ordering::SeqCst);
            });
            // Once a sleep is long enough for the workers to park, the next call must still wake them.
            if round % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 500));
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|ith, _| assert!(ith == 0, "worker fails"));
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(|_, _| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn split_covers_the_range_once() {
        for n in [0, 1, 5, 17, 64] {
            for nth in 1..5 {
                let mut seen = vec![0; n];
                for ith in 0..nth {
                    for i in split(n, ith, nth) {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "n {n} nth {nth}");
            }
        }
    }
}
