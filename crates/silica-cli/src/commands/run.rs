//! `silica run`: generate text (llama.cpp `llama-cli`/`llama-simple` flags).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use silica_engine::{DeviceSpec, Engine, GenerateParams};
use silica_sample::SamplerParams;

/// Arguments of `silica run`. Sampling defaults equal llama.cpp's.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    model: PathBuf,
    /// Prompt text (special-token text such as `<|im_start|>` is parsed).
    #[arg(short = 'p', long = "prompt")]
    prompt: String,
    /// Tokens to generate at most; generation also stops at an end-of-generation token.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Context size in tokens (0 = prompt + n-predict).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    ctx_size: usize,
    /// Prompt tokens per forward pass (llama.cpp n_batch).
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    batch_size: usize,
    /// CPU threads [default: SILICA_NUM_THREADS, else the physical cores].
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Where the model runs (llama.cpp's `--device`): auto (GPU 0 of a `--features cuda`/`metal` build, else the
    /// CPU), cpu, cuda or cuda:N, metal or metal:N, or cpu-graph (the GPU code path on the CPU, to check it
    /// without a GPU).
    #[arg(long = "device", default_value = "auto", value_name = "DEV")]
    device: DeviceSpec,
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    temp: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    /// Top-p (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Tokens considered for the penalties.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    repeat_last_n: usize,
    /// Frequency penalty (0 = off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Presence penalty (0 = off).
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    presence_penalty: f32,
    /// RNG seed (default: random).
    #[arg(short = 's', long = "seed")]
    seed: Option<u64>,
    /// Do not echo the prompt before the generated text.
    #[arg(long = "no-display-prompt")]
    no_display_prompt: bool,
}

/// Checks a thread count: at least 1, at most 4 × the machine's cores (more only adds contention, and a
/// mistyped count such as 1000 would start that many threads).
pub(crate) fn check_threads(t: usize) -> anyhow::Result<()> {
    anyhow::ensure!(t > 0, "-t/--threads must be at least 1");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    anyhow::ensure!(
        t <= 4 * cores,
        "-t/--threads {t} is more than 4 x the {cores} cores of this machine"
    );
    Ok(())
}

/// The thread count used without `-t`: `SILICA_NUM_THREADS` (or `CANDLE_NUM_THREADS`, `RAYON_NUM_THREADS`),
/// else the physical cores (`silica_telemetry::default_compute_threads`, llama.cpp's default too).
pub(crate) fn default_threads() -> usize {
    silica_kernels::env_threads().unwrap_or_else(silica_telemetry::default_compute_threads)
}

/// `threads`, else [`default_threads`], checked by [`check_threads`].
///
/// # Errors
/// A count out of range; one that came from the environment says so.
pub(crate) fn resolve_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    let t = threads.unwrap_or_else(default_threads);
    match check_threads(t) {
        Ok(()) => Ok(t),
        Err(e) if threads.is_none() && silica_kernels::env_threads().is_some() => Err(
            e.context("the thread count from SILICA_NUM_THREADS (or CANDLE_NUM_THREADS, RAYON_NUM_THREADS)")
        ),
        Err(e) => Err(e),
    }
}

/// Fixes the CPU thread count ([`resolve_threads`]) for silica's kernels and candle's before any kernel runs, and
/// returns it.
///
/// # Errors
/// A count out of [`check_threads`]' range, or one set after the kernels' pool already fixed another.
pub(crate) fn set_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    let t = resolve_threads(threads)?;
    silica_kernels::set_cpu_threads(t)?;
    #[allow(unsafe_code)]
    // SAFETY: called from `main`'s thread before any other thread (rayon's pool and silica's included) exists:
    // `set_cpu_threads` above fixes the count without spawning the pool.
    unsafe {
        if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
            // silica-kernels' pool runs the heavy operations; candle's CPU pool (element-wise ops) would
            // otherwise spin for 25,000 iterations after each op, on the cores silica's workers need.
            std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "500");
        }
        // candle's kernels read `CANDLE_NUM_THREADS` first, its rayon pool `RAYON_NUM_THREADS`.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", t.to_string());
    }
    Ok(t)
}

pub(crate) fn run(a: &RunArgs) -> anyhow::Result<()> {
    set_threads(a.threads)?;
    let engine = Engine::load(&a.model, &super::open_device(a.device)?)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let sampling = SamplerParams {
        temp: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        frequency_penalty: a.frequency_penalty,
        presence_penalty: a.presence_penalty,
        seed: a.seed.unwrap_or_else(rand_seed),
    };
    let params = GenerateParams {
        n_predict: a.n_predict,
        n_ctx: a.ctx_size,
        n_batch: a.batch_size,
        sampling,
        parse_special: true,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.no_display_prompt {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let mut io_err = None;
    let g = engine.generate(&a.prompt, &params, |piece| {
        let r = out.write_all(piece.as_bytes()).and_then(|()| out.flush());
        if let Err(e) = r {
            io_err = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    writeln!(out)?;
    let t = &g.timings;
    eprintln!();
    eprintln!("load time       = {:10.2} ms", t.load_ms);
    eprintln!(
        "prompt eval     = {:10.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
        t.prompt_ms,
        t.prompt_n,
        t.prompt_ms / t.prompt_n.max(1) as f64,
        t.prompt_per_second()
    );
    eprintln!(
        "eval            = {:10.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
        t.predicted_ms,
        t.predicted_n,
        t.predicted_ms / t.predicted_n.max(1) as f64,
        t.predicted_per_second()
    );
    Ok(())
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (t as u64) ^ u64::from(std::process::id()).rotate_left(32)
}
