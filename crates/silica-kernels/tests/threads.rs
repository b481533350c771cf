//! The process-wide thread count: chosen once, before the pool starts, and never changed silently. This file is
//! its own test binary (its own process), because the count is fixed for the process at first use.

use silica_kernels::{ThreadsError, cpu_threads, global_pool, set_cpu_threads};

#[test]
fn the_thread_count_is_fixed_once_and_the_pool_uses_it() {
    // A count that is neither this machine's default nor 1, so that a pool sized any other way is caught.
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) + 2;
    assert_eq!(set_cpu_threads(0), Err(ThreadsError::Zero));
    assert_eq!(set_cpu_threads(n), Ok(n));
    assert_eq!(cpu_threads(), n);
    assert_eq!(global_pool().n_threads(), n);
    // Every thread of the pool takes part in a run.
    let seen = std::sync::Mutex::new(Vec::new());
    global_pool().run(|ith, nth| {
        assert_eq!(nth, n);
        seen.lock().unwrap().push(ith);
    });
    let mut seen = seen.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // The same count again is fine; another one is refused, naming both.
    assert_eq!(set_cpu_threads(n), Ok(n));
    let err = set_cpu_threads(1).unwrap_err();
    assert_eq!(err, ThreadsError::AlreadyChosen { asked: 1, in_use: n });
    assert!(err.to_string().contains(&format!("fixed {n}")), "{err}");
}
