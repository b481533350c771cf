//! `silica bench`: llama-bench's method and records for silica's engine.
//!
//! [`params::BenchParams`] (one list per parameter, llama-bench's flags and defaults) → [`params::BenchCase`]s
//! (their cartesian product, ordered so each model loads once) → [`runner::run_case`] (warm-up, repetitions
//! from an empty or depth-restored KV cache, random token ids, pp in `n_batch`/`n_ubatch` chunks, tg one token
//! per step, parallel sequences) → [`record::BenchRecord`] (llama-bench's JSON field names and types, then
//! silica's: engine, `n_parallel`, peak RSS, KV cache bytes, weight bytes per token) → [`printer`]s (md,
//! csv, json, jsonl, sql) and the [`store`] (a JSONL results file).
//!
//! ```
//! use silica_bench::params::BenchParams;
//! let mut p = BenchParams::with_threads(2);
//! p.models = vec!["model.gguf".into()];
//! p.n_depth = vec![0, 4096];
//! let names: Vec<String> = p.grid()?.iter().map(|c| c.test_name()).collect();
//! assert_eq!(names, ["pp512", "tg128", "pp512 @ d4096", "tg128 @ d4096"]);
//! # Ok::<(), silica_bench::Error>(())
//! ```

use std::path::PathBuf;

pub mod energy;
pub mod params;
pub mod printer;
pub mod record;
pub mod runner;
pub mod store;

/// A bench error; each names the flag, file or test at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter value is invalid.
    #[error("{flag}: {message}")]
    Param {
        /// The flag.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// No test remains after zero-length tests are dropped.
    #[error("nothing to benchmark: every test has zero tokens (give -p, -n or -pg a value above 0)")]
    EmptyGrid,
    /// The model file cannot be read.
    #[error("{}: {message}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The KV cache of a test would not fit in memory.
    #[error(
        "{test}: the KV cache needs {need_bytes} bytes but only {available_bytes} bytes of memory are available; \
         lower -d/-p/-n, --batch or use a smaller -ctk/-ctv type"
    )]
    Memory {
        /// The test.
        test: String,
        /// KV cache bytes.
        need_bytes: u64,
        /// Available memory, bytes.
        available_bytes: u64,
    },
    /// A forward pass failed.
    #[error("{test}: {message}")]
    Run {
        /// The test.
        test: String,
        /// What failed.
        message: String,
    },
    /// The results file cannot be written or read.
    #[error("results file {}: {message}", path.display())]
    Results {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}
