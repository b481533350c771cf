//! The in-process runner: llama-bench's method (`tools/llama-bench/llama-bench.cpp`, `main`, `test_prompt`,
//! `test_gen`), extended to several parallel sequences as llama-batched-bench runs them.
//!
//! Per case: a KV cache of `n_ctx` positions for each of `n_parallel` sequences; a warm-up (one prompt run and
//! one generated token) unless disabled; then `reps` repetitions, each starting from an empty cache, or from
//! the `n_depth`-token state prefilled once per case (restored by truncating each sequence back to `n_depth`,
//! which is what restoring llama.cpp's saved sequence state amounts to). Only the pp and tg parts are timed;
//! token ids are random (BOS first when the model adds one), drawn before the clock starts; no tokenization
//! or sampling happens. pp: each sequence's `n_prompt` tokens, sequence after sequence, in decode calls of at
//! most `n_batch` tokens, each split into forward passes of at most `n_ubatch` tokens, synchronised at the
//! end. tg: `n_gen` steps of one token per sequence, synchronised after each step.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use silica_engine::Engine;
use silica_model::{Batch, KvCache};
use silica_telemetry::{EnergySources, Sampler, SamplerConfig};

use crate::Error;
use crate::params::BenchCase;
use crate::record::Measurement;

/// How cases are run (the global, not list-valued, llama-bench options).
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Timed repetitions per case (`-r`, default 5).
    pub reps: u32,
    /// Run the warm-up first (llama-bench's default; `--no-warmup` turns it off).
    pub warmup: bool,
    /// Sleep before each case (`--delay`), to let the machine cool down.
    pub delay: Duration,
    /// Seed of the random token ids.
    pub seed: u64,
    /// Sample this process's CPU use and the machine's energy counters on a background thread at this interval
    /// while the case runs (`None`: no sampler).
    pub telemetry_interval: Option<Duration>,
    /// Idle power to subtract from the measured energy, W (`--idle-baseline`).
    pub idle_power_w: Option<f64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            reps: 5,
            warmup: true,
            delay: Duration::ZERO,
            seed: 1234,
            telemetry_interval: None,
            idle_power_w: None,
        }
    }
}

/// A progress event of [`run_case`], printed by `--progress` as llama-bench prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The warm-up run.
    Warmup,
    /// Prefilling the depth state.
    Depth,
    /// Repetition `i` of `n` (1-based).
    Rep(u32, u32),
}

/// KV cache bytes a case allocates ([`KvCache::bytes_needed`] for its context, sequences and types).
pub fn kv_cache_bytes(hp: &silica_model::HParams, case: &BenchCase) -> u64 {
    KvCache::bytes_needed(
        hp,
        case.n_ctx_effective() as usize,
        case.n_parallel as usize,
        case.kv_types(),
    )
}

/// Runs one case on `engine` and returns its timings.
///
/// With `opts.telemetry_interval`, the sampler reads the energy counters in `sources`, discovered here when it is
/// `None`, and hands them back there for the next case (counters opened once keep counting across cases).
///
/// The thread count is not set here: the CPU pools (silica's and candle's) are sized once per process, so the
/// caller runs each `n_threads` value in a process whose count is set before the model loads (`silica bench`
/// does), and on a CPU device `case.n_threads` must be that count ([`silica_model::cpu_threads`]).
///
/// # Errors
/// [`Error::Memory`] when the KV cache would not fit in the memory available; [`Error::Run`] naming the case
/// when a forward pass fails, or when the case's `n_threads` is not the count this process computes with on the
/// CPU (its records would be mislabelled).
pub fn run_case(
    engine: &Engine,
    case: &BenchCase,
    opts: &RunOptions,
    sources: &mut Option<EnergySources>,
    mut progress: impl FnMut(Progress),
) -> Result<Measurement, Error> {
    let model = engine.model();
    let hp = model.hparams();
    let n_ctx = case.n_ctx_effective();
    let kv_bytes = kv_cache_bytes(hp, case);
    if engine.device().is_cpu() {
        let in_use = silica_model::cpu_threads();
        if in_use != case.n_threads as usize {
            return Err(Error::Run {
                test: case.test_name(),
                message: format!(
                    "this process computes with {in_use} CPU threads, the test asks for {}; each n_threads value \
                     needs a process of its own whose count is set before the model loads",
                    case.n_threads
                ),
            });
        }
    }
    if let Some(avail) = silica_telemetry::machine::ram_available_bytes()
        && kv_bytes > avail
    {
        return Err(Error::Memory {
            test: case.test_name(),
            need_bytes: kv_bytes,
            available_bytes: avail,
        });
    }
    let run_err = |e: silica_model::Error| Error::Run {
        test: case.test_name(),
        message: e.to_string(),
    };
    if !opts.delay.is_zero() {
        std::thread::sleep(opts.delay);
    }
    // The previous case's freed buffers go back to the OS first, so this case's peak is its own.
    silica_telemetry::process::trim_heap();
    silica_telemetry::process::reset_peak_rss();
    let n_seq = case.n_parallel as usize;
    let mut kv = engine
        .model()
        .new_kv_cache_typed(n_ctx as usize, n_seq, case.kv_types(), engine.device())
        .map_err(run_err)?;
    let tok = engine.tokenizer();
    let bos = tok.bos().filter(|_| tok.add_bos());
    let mut ids = TokenSource {
        rng: SmallRng::seed_from_u64(opts.seed),
        n_vocab: hp.n_vocab as u32,
        bos,
    };
    let dev = engine.device();
    // Each call's start, end of prompt processing, and end.
    let mut bench = |kv: &mut KvCache, n_prompt: u32, n_gen: u32| -> Result<[Instant; 3], Error> {
        let prompt = (n_prompt > 0).then(|| ids.prompt(n_prompt, n_seq));
        let gen_ids = (n_gen > 0).then(|| ids.generate(n_gen, n_seq));
        let t0 = Instant::now();
        if let Some(p) = &prompt {
            run_prompt(engine, kv, p, case.n_batch, case.n_ubatch).map_err(run_err)?;
            dev.synchronize().map_err(|e| run_err(e.into()))?;
        }
        let t_pp = Instant::now();
        if let Some(g) = &gen_ids {
            run_gen(engine, kv, g, dev).map_err(run_err)?;
        }
        Ok([t0, t_pp, Instant::now()])
    };
    // The sampler runs on its own thread for the whole case; only the timed windows are read from its trace.
    let sampler = match opts.telemetry_interval {
        Some(interval) => Some(
            Sampler::start(
                SamplerConfig {
                    pid: std::process::id(),
                    interval,
                },
                sources.take().unwrap_or_else(EnergySources::discover),
                None,
            )
            .map_err(|e| Error::Run {
                test: case.test_name(),
                message: format!("starting the telemetry sampler: {e}"),
            })?,
        ),
        None => None,
    };

    if opts.warmup {
        progress(Progress::Warmup);
        bench(&mut kv, case.n_prompt, case.n_gen.min(1))?;
    }
    let mut depth_ready = false;
    let mut samples_ns = Vec::with_capacity(opts.reps as usize);
    let (mut pp_windows, mut tg_windows) = (Vec::new(), Vec::new());
    for i in 0..opts.reps {
        if case.n_depth == 0 {
            kv.clear();
        } else {
            if !depth_ready {
                kv.clear();
                progress(Progress::Depth);
                bench(&mut kv, case.n_depth, 0)?;
                depth_ready = true;
            }
            // Back to the saved state: every sequence holds exactly its first n_depth tokens.
            for s in 0..n_seq {
                kv.truncate(s, case.n_depth as usize);
            }
        }
        progress(Progress::Rep(i + 1, opts.reps));
        let [t0, t_pp, t1] = bench(&mut kv, case.n_prompt, case.n_gen)?;
        samples_ns.push(t1.duration_since(t0).as_nanos() as u64);
        if case.n_prompt > 0 {
            pp_windows.push((t0, t_pp));
        }
        if case.n_gen > 0 {
            tg_windows.push((t_pp, t1));
        }
    }
    let telemetry = sampler.map(|s| {
        let (trace, back) = s.stop_keep_sources();
        *sources = back;
        crate::energy::case_telemetry(
            &trace,
            &pp_windows,
            &tg_windows,
            n_seq as f64 * f64::from(case.n_prompt),
            n_seq as f64 * f64::from(case.n_gen),
            opts.idle_power_w,
        )
    });
    Ok(Measurement {
        samples_ns,
        peak_rss_bytes: silica_telemetry::process::peak_rss_bytes(),
        anon_huge_pages_bytes: silica_telemetry::process::anon_huge_pages_bytes(),
        kv_cache_bytes: kv.size_bytes() as u64,
        telemetry,
    })
}

/// Random token ids, as llama-bench draws them (`std::rand() % n_vocab`, BOS first when the model adds one).
struct TokenSource {
    rng: SmallRng,
    n_vocab: u32,
    bos: Option<u32>,
}

impl TokenSource {
    fn first(&mut self) -> u32 {
        self.bos.unwrap_or_else(|| self.rng.random_range(0..self.n_vocab))
    }

    /// `[n_seq][n]` prompt ids, each sequence starting with BOS.
    fn prompt(&mut self, n: u32, n_seq: usize) -> Vec<Vec<u32>> {
        (0..n_seq)
            .map(|_| {
                let mut v = vec![self.first()];
                v.extend((1..n).map(|_| self.rng.random_range(0..self.n_vocab)));
                v
            })
            .collect()
    }

    /// `[n][n_seq]` ids fed one step at a time; the first step is BOS.
    fn generate(&mut self, n: u32, n_seq: usize) -> Vec<Vec<u32>> {
        let first = self.first();
        let mut steps = vec![vec![first; n_seq]];
        steps.extend((1..n).map(|_| {
            (0..n_seq)
                .map(|_| self.rng.random_range(0..self.n_vocab))
                .collect()
        }));
        steps
    }
}

/// Feeds each sequence's prompt (sequence after sequence) in decode calls of `n_batch` tokens, each split into
/// forward passes of `n_ubatch`. Logits are computed for the last token of each forward pass (at least one
/// row is needed; llama.cpp computes one per decode call) and of each sequence.
fn run_prompt(
    engine: &Engine,
    kv: &mut KvCache,
    prompts: &[Vec<u32>],
    n_batch: u32,
    n_ubatch: u32,
) -> Result<(), silica_model::Error> {
    let flat: Vec<(u32, usize, bool)> = prompts
        .iter()
        .enumerate()
        .flat_map(|(s, p)| p.iter().enumerate().map(move |(i, &t)| (t, s, i + 1 == p.len())))
        .collect();
    let mut batch = Batch::default();
    for call in flat.chunks(n_batch as usize) {
        for pass in call.chunks(n_ubatch.min(n_batch) as usize) {
            batch.clear();
            for (i, &(t, s, last)) in pass.iter().enumerate() {
                batch.push(t, s, last || i + 1 == pass.len());
            }
            engine.model().forward_logits(&batch, kv)?;
        }
    }
    Ok(())
}

/// One forward pass per step of one token for every sequence, synchronised after each.
fn run_gen(
    engine: &Engine,
    kv: &mut KvCache,
    steps: &[Vec<u32>],
    dev: &silica_model::Device,
) -> Result<(), silica_model::Error> {
    let mut batch = Batch::default();
    for step in steps {
        batch.clear();
        for (s, &t) in step.iter().enumerate() {
            batch.push(t, s, true);
        }
        engine.model().forward_logits(&batch, kv)?;
        dev.synchronize()?;
    }
    Ok(())
}
