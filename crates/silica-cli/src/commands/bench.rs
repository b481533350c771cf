//! `silica bench`: llama-bench's parameters, method and output formats, on silica's engine.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use silica_bench::params::{BenchCase, BenchParams, KvType, parse_int_list};
use silica_bench::printer::{OutputFormat, Printer, printer};
use silica_bench::record::{BenchRecord, EnvInfo, ModelFacts, now_rfc3339};
use silica_bench::runner::{Progress, RunOptions, run_case};
use silica_bench::store::{ResultsFile, default_results_path};
use silica_convert::synth::{self, SynthParams, TokenizerSource};
use silica_engine::{DeviceSpec, Engine, LoadParams};
use silica_gguf::FileType;
use silica_telemetry::EnergySources;

use super::progress::ByteBar;

/// The environment variable that makes `silica bench` a worker for one thread count (see [`run`]).
const CHILD_THREADS_ENV: &str = "SILICA_BENCH_CHILD_THREADS";
/// The environment variable that hands a worker the idle power its parent measured (`--idle-baseline`), W; empty
/// when it was not measured.
const CHILD_IDLE_W_ENV: &str = "SILICA_BENCH_CHILD_IDLE_W";

/// The preset, file type and seed of the default model (no `-m`).
const DEFAULT_PRESET: &str = "llama-3.2-1b";
const DEFAULT_SEED: u64 = 42;

/// Arguments of `silica bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Every test parameter takes a list: 1,2,4 or a range 1-8, 1-32*2, 0-4096+1024; repeating a flag appends. The \
runs are the cartesian product of the lists. Each test runs a warm-up (one prompt run and one generated token) \
and then -r repetitions from an empty KV cache, or from the -d depth state prefilled once and restored. Token \
ids are random (BOS first) and drawn before the clock starts: tokenization and sampling are not timed. pp tests \
feed the prompt in -b chunks split into -ub forward passes; tg tests decode one token per step, synchronising \
after each. t/s is computed per repetition; the table shows mean ± sample stddev and JSON adds the raw samples.

With --batch B, B sequences run together (llama-batched-bench): pp processes B prompts, tg decodes one token of \
each sequence per step; t/s counts the tokens of all sequences (aggregate) and 't/s per seq' divides by B.

Without -m, silica benchmarks a synthetic model with Llama 3.2 1B's shapes in Q4_0 (random weights, built-in \
vocabulary), created on first use in the models cache ($SILICA_MODELS_DIR, default ~/.cache/silica/models).

Every record is appended to the results file ($SILICA_DATA_DIR/bench-results.jsonl, default \
~/.local/share/silica/bench-results.jsonl) unless --no-save. Several -t values run one worker process per \
thread count (candle sizes its CPU pool once per process).

Short multi-letter flags are llama-bench's: -pg, -ub, -ctk, -ctv, -oe, -dev.")]
pub(crate) struct BenchArgs {
    /// GGUF model file(s) (default: the synthetic Llama 3.2 1B-shape Q4_0 model, created on first use).
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    model: Vec<PathBuf>,
    /// Prompt lengths of pp tests.
    #[arg(short = 'p', long = "n-prompt", value_name = "N")]
    n_prompt: Vec<String>,
    /// Generation lengths of tg tests.
    #[arg(short = 'n', long = "n-gen", value_name = "N")]
    n_gen: Vec<String>,
    /// Prompt + generation tests, PP,TG (written -pg).
    #[arg(long = "pg", value_name = "PP,TG")]
    pg: Vec<String>,
    /// Context depths: tokens already in the KV cache when a test starts [default: 0].
    #[arg(short = 'd', long = "n-depth", value_name = "N")]
    n_depth: Vec<String>,
    /// Prompt tokens per decode call, n_batch [default: 2048].
    #[arg(short = 'b', long = "batch-size", value_name = "N")]
    batch_size: Vec<String>,
    /// Tokens per forward pass, n_ubatch (written -ub) [default: 512].
    #[arg(long = "ubatch-size", value_name = "N")]
    ubatch_size: Vec<String>,
    /// Key cache type: f32, f16, bf16 (written -ctk) [default: f16].
    #[arg(long = "cache-type-k", value_name = "TYPE")]
    cache_type_k: Vec<String>,
    /// Value cache type: f32, f16, bf16 (written -ctv) [default: f16].
    #[arg(long = "cache-type-v", value_name = "TYPE")]
    cache_type_v: Vec<String>,
    /// CPU threads [default: SILICA_NUM_THREADS, else the physical cores].
    #[arg(short = 't', long = "threads", value_name = "N")]
    threads: Vec<String>,
    /// Where the model runs (written -dev): auto (GPU 0 of a `--features cuda`/`metal` build, else the CPU),
    /// cpu, cuda or cuda:N, metal or metal:N, or cpu-graph (the GPU code path on the CPU, to check it without a
    /// GPU).
    #[arg(long = "device", default_value = "auto", value_name = "DEV")]
    device: DeviceSpec,
    /// Parallel sequences decoded together (aggregate and per-sequence t/s) [default: 1].
    #[arg(long = "batch", value_name = "B")]
    batch: Vec<String>,
    /// Context size per sequence; 0 = depth + prompt + generation, as llama-bench [default: 0].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    ctx_size: Vec<String>,
    /// Timed repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5, value_name = "N")]
    repetitions: u32,
    /// Seconds to sleep before each test (cool-down).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    delay: f64,
    /// Skip the warm-up run.
    #[arg(long)]
    no_warmup: bool,
    /// Sample CPU use and the energy counters (RAPL, NVML) on a background thread every MS milliseconds while
    /// each test runs; records gain cpu_util and pp/tg energy_j, avg_power_w, j_per_token (0: off).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    telemetry_interval: u64,
    /// Measure the machine's idle power for SECONDS before the tests and subtract it from their energy.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    idle_baseline: f64,
    /// Output format on stdout: md, csv, json, jsonl, sql.
    #[arg(short = 'o', long = "output", default_value = "md", value_name = "FORMAT")]
    output: OutputFormat,
    /// A second output format, on stderr (written -oe).
    #[arg(long = "output-err", value_name = "FORMAT")]
    output_err: Option<OutputFormat>,
    /// Print progress (test, warm-up, repetition) on stderr.
    #[arg(long)]
    progress: bool,
    /// Do not append the records to the results file.
    #[arg(long)]
    no_save: bool,
    /// Results file [default: $SILICA_DATA_DIR/bench-results.jsonl or ~/.local/share/silica/bench-results.jsonl].
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

/// llama-bench flags for settings silica does not have (GPU offload, CPU masks, NUMA, ...).
const UNSUPPORTED: [&str; 19] = [
    "-ngl",
    "--n-gpu-layers",
    "-fa",
    "--flash-attn",
    "-sm",
    "--split-mode",
    "-mg",
    "--main-gpu",
    "-nkvo",
    "-mmp",
    "-embd",
    "-ts",
    "-ot",
    "-ncmoe",
    "-nopo",
    "-C",
    "--cpu-mask",
    "--poll",
    "--numa",
];

/// Rewrites llama-bench's multi-letter short flags (`-pg`, `-ub`, `-ctk`, `-ctv`, `-oe`, `-dev`) to their long forms
/// before clap parses (clap's short flags are one letter). The subcommand is found after the global options
/// `globals` (`--name`, and whether it takes a value: `silica --huge-pages on bench ...`).
///
/// # Errors
/// A message naming a llama-bench flag silica does not support.
pub(crate) fn rewrite_llama_bench_flags(
    args: Vec<String>,
    globals: &[(String, bool)],
) -> Result<Vec<String>, String> {
    let mut i = 1;
    while let Some(a) = args.get(i) {
        let (name, inline_value) = a.split_once('=').map_or((a.as_str(), false), |(n, _)| (n, true));
        match globals.iter().find(|(g, _)| g == name) {
            Some(&(_, takes_value)) => i += if takes_value && !inline_value { 2 } else { 1 },
            None => break,
        }
    }
    if args.get(i).map(String::as_str) != Some("bench") {
        return Ok(args);
    }
    args.into_iter()
        .map(|a| {
            let flag = a.split('=').next().unwrap_or_default();
            if UNSUPPORTED.contains(&flag) {
                return Err(format!(
                    "bench: {flag} is a llama-bench option for a setting silica does not have; see silica bench --help"
                ));
            }
            Ok(match a.as_str() {
                "-pg" => "--pg".to_owned(),
                "-ub" => "--ubatch-size".to_owned(),
                "-ctk" => "--cache-type-k".to_owned(),
                "-ctv" => "--cache-type-v".to_owned(),
                "-oe" => "--output-err".to_owned(),
                "-dev" => "--device".to_owned(),
                _ => a,
            })
        })
        .collect()
}

fn int_list(flag: &str, values: &[String], default: u32) -> anyhow::Result<Vec<u32>> {
    if values.is_empty() {
        return Ok(vec![default]);
    }
    let mut out = Vec::new();
    for v in values {
        out.extend(parse_int_list(flag, v)?);
    }
    Ok(out)
}

fn kv_list(flag: &str, values: &[String]) -> anyhow::Result<Vec<KvType>> {
    if values.is_empty() {
        return Ok(vec![KvType::F16]);
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| {
            s.trim()
                .parse::<KvType>()
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        })
        .collect()
}

fn pg_list(values: &[String]) -> anyhow::Result<Vec<(u32, u32)>> {
    values
        .iter()
        .map(|v| {
            let parsed = v
                .split_once(',')
                .and_then(|(p, n)| Some((p.trim().parse().ok()?, n.trim().parse().ok()?)));
            parsed.with_context(|| format!("-pg: '{v}' is not PP,TG (two non-negative integers)"))
        })
        .collect()
}

/// The validated parameters, with no models yet (the caller fills them in).
fn params(a: &BenchArgs) -> anyhow::Result<BenchParams> {
    // The default (no -t) is resolved only when used: an out-of-range SILICA_NUM_THREADS is an error then.
    let default = if a.threads.is_empty() {
        super::run::resolve_threads(None)?
    } else {
        0
    };
    let threads = int_list("-t/--threads", &a.threads, default as u32)?;
    for &t in &threads {
        super::run::check_threads(t as usize)?;
    }
    anyhow::ensure!(a.repetitions > 0, "-r/--repetitions must be at least 1");
    anyhow::ensure!(
        a.delay.is_finite() && a.delay >= 0.0,
        "--delay must be a number of seconds >= 0"
    );
    anyhow::ensure!(
        a.idle_baseline.is_finite() && a.idle_baseline >= 0.0,
        "--idle-baseline must be a number of seconds >= 0"
    );
    Ok(BenchParams {
        models: Vec::new(),
        n_prompt: int_list("-p/--n-prompt", &a.n_prompt, 512)?,
        n_gen: int_list("-n/--n-gen", &a.n_gen, 128)?,
        n_pg: pg_list(&a.pg)?,
        n_depth: int_list("-d/--n-depth", &a.n_depth, 0)?,
        n_batch: int_list("-b/--batch-size", &a.batch_size, 2048)?,
        n_ubatch: int_list("-ub/--ubatch-size", &a.ubatch_size, 512)?,
        type_k: kv_list("-ctk/--cache-type-k", &a.cache_type_k)?,
        type_v: kv_list("-ctv/--cache-type-v", &a.cache_type_v)?,
        n_threads: threads,
        n_parallel: int_list("--batch", &a.batch, 1)?,
        n_ctx: int_list("-c/--ctx-size", &a.ctx_size, 0)?,
    })
}

/// The default model's path, creating it (with a progress bar) when absent.
fn default_model() -> anyhow::Result<PathBuf> {
    let ty = FileType::MOSTLY_Q4_0;
    let path = silica_gguf::models_dir().join(format!("synth-{DEFAULT_PRESET}-{ty}.gguf"));
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "silica bench: no -m given; creating the default model (random weights, Llama 3.2 1B shapes, {ty}) at {}",
        path.display()
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let params = SynthParams {
        config: synth::preset(DEFAULT_PRESET)?.config,
        file_type: ty,
        pure: false,
        seed: DEFAULT_SEED,
        tokenizer: TokenizerSource::Builtin,
        n_threads: 0,
    };
    let mut bar = ByteBar::new("synth");
    synth::synth_file(&params, &path, &mut |_, _, done, total| {
        bar.update(done, total, "")
    })
    .with_context(|| format!("creating the default model {}", path.display()))?;
    bar.finish();
    Ok(path)
}

/// What the roofline note needs of a generation record.
struct TgResult {
    model_filename: String,
    n_gen: u32,
    n_depth: u32,
    n_parallel: u32,
    avg_ts: f64,
}

/// Where records go: the printers and the results file.
struct Sinks<'w> {
    printers: Vec<Box<dyn Printer + 'w>>,
    results: Option<ResultsFile>,
    /// Generation results on the CPU, for the roofline note.
    tg: Vec<TgResult>,
}

impl Sinks<'_> {
    fn record(&mut self, r: &BenchRecord) -> anyhow::Result<()> {
        for p in &mut self.printers {
            p.record(r)?;
        }
        if r.n_gen > 0 && r.n_prompt == 0 && r.backends == "CPU" {
            self.tg.push(TgResult {
                model_filename: r.model_filename.clone(),
                n_gen: r.n_gen,
                n_depth: r.n_depth,
                n_parallel: r.n_parallel,
                avg_ts: r.avg_ts,
            });
        }
        if let Some(f) = &mut self.results {
            f.append(r)?;
        }
        Ok(())
    }
}

pub(crate) fn run(a: &BenchArgs) -> anyhow::Result<()> {
    // A worker for one thread count of a multi-thread grid: JSONL records on stdout, nothing saved.
    let child_threads: Option<u32> = match std::env::var(CHILD_THREADS_ENV) {
        Ok(v) => Some(v.parse().with_context(|| format!("{CHILD_THREADS_ENV}={v}"))?),
        Err(_) => None,
    };
    // Every list is parsed and checked before anything runs; the models come last because the default one
    // is synthesized after candle's pool size is set (before any thread exists).
    let mut params = params(a)?;
    let mut distinct: Vec<u32> = Vec::new();
    for &t in &params.n_threads {
        if !distinct.contains(&t) {
            distinct.push(t);
        }
    }
    // One thread count runs here (fixed before any thread exists); several run one worker each.
    let in_process = child_threads.is_some() || distinct.len() == 1;
    if in_process {
        super::run::set_threads(Some(child_threads.unwrap_or(distinct[0]) as usize))?;
    }

    params.models = if a.model.is_empty() {
        vec![default_model()?]
    } else {
        a.model.clone()
    };
    for m in &params.models {
        anyhow::ensure!(m.is_file(), "-m: {}: no such model file", m.display());
    }
    let cases = params.grid()?;
    // The device opens before any output, so a device that cannot be used is the only thing said; a parent of
    // workers lets it go again (each worker opens its own): `load` is `Some` exactly where the tests run here.
    let load = in_process.then_some(super::open_device(a.device)?);

    if let (Some(t), Some(load)) = (child_threads, &load) {
        let mine: Vec<BenchCase> = cases.into_iter().filter(|c| c.n_threads == t).collect();
        let stdout = std::io::stdout();
        let mut sinks = Sinks {
            printers: vec![printer(OutputFormat::Jsonl, Box::new(stdout.lock()))],
            results: None,
            tg: Vec::new(),
        };
        // The parent measured the idle power once for all workers; measured here when started by hand.
        let mut sources = None;
        let idle_w = match std::env::var(CHILD_IDLE_W_ENV) {
            Ok(v) if v.is_empty() => None,
            Ok(v) => Some(v.parse().with_context(|| format!("{CHILD_IDLE_W_ENV}={v}"))?),
            Err(_) => idle_power(a, &mut sources),
        };
        return run_cases(a, load, &mine, &mut sinks, idle_w, sources);
    }

    let stdout = std::io::stdout();
    let mut printers: Vec<Box<dyn Printer + '_>> = vec![printer(a.output, Box::new(stdout.lock()))];
    if let Some(f) = a.output_err {
        printers.push(printer(f, Box::new(std::io::stderr())));
    }
    let energy = EnergySources::discover();
    let measured = a.telemetry_interval > 0 && energy.is_available();
    if a.telemetry_interval > 0 && !measured {
        eprintln!("silica bench: energy: unavailable ({})", energy.reason());
    }
    let mut sources = Some(energy);
    for p in &mut printers {
        p.show_energy(measured);
        p.header(&cases)?;
    }
    let results = if a.no_save {
        None
    } else {
        let path = match &a.results {
            Some(p) => p.clone(),
            None => default_results_path().context("no home directory: give --results FILE or --no-save")?,
        };
        Some(ResultsFile::open(&path)?)
    };
    let mut sinks = Sinks {
        printers,
        results,
        tg: Vec::new(),
    };
    let idle_w = idle_power(a, &mut sources);
    if let Some(load) = &load {
        run_cases(a, load, &cases, &mut sinks, idle_w, sources)?;
    } else {
        for &t in &distinct {
            run_worker(t, idle_w, &mut sinks)?;
        }
    }
    for p in &mut sinks.printers {
        p.footer()?;
    }
    if let Some(f) = &sinks.results {
        eprintln!("silica bench: records appended to {}", f.path().display());
    }
    roofline_note(&sinks.tg);
    Ok(())
}

/// Bytes read per second by generation at `avg_ts` tokens/s summed over `n_parallel` sequences: each step
/// produces one token per sequence and reads the weights once (`weight_bytes`) and every sequence's KV cache
/// (`kv_bytes_per_seq` each), so steps/s = `avg_ts / n_parallel`.
fn read_bytes_per_s(weight_bytes: f64, kv_bytes_per_seq: f64, avg_ts: f64, n_parallel: u32) -> f64 {
    let n = f64::from(n_parallel.max(1));
    (weight_bytes + n * kv_bytes_per_seq) * avg_ts / n
}

/// On stderr, for each CPU generation result: the bytes read per second (weights and KV cache at the test's
/// average depth, as `silica plan` counts them) against the memory bandwidth `silica hw` measured on this
/// machine, when it has (a bench never runs the probe itself: it would disturb the measurement).
fn roofline_note(tg: &[TgResult]) {
    if tg.is_empty() {
        return;
    }
    let path = silica_telemetry::cache_path();
    let Ok(Some(hw)) = silica_telemetry::HwProfile::load(&path) else {
        eprintln!(
            "silica bench: run `silica hw` once to see generation speed against this machine's memory bandwidth"
        );
        return;
    };
    let bw = hw.probe.triad_gbps;
    if hw.probe.huge_pages != silica_kernels::huge_pages() {
        eprintln!(
            "silica bench: the kernels' weights were on {} and the cached triad on {}: `silica hw` measures again \
             with this run's pages (same --huge-pages)",
            super::hw::pages(silica_kernels::huge_pages()),
            super::hw::pages(hw.probe.huge_pages)
        );
    }
    let cpu = super::hw::cpu_device(&hw);
    let eff = silica_plan::Efficiency::ideal(cpu.backend);
    // Each model's header is read once (a grid of several thread counts repeats every model).
    let mut models: HashMap<&str, Option<silica_plan::ModelDesc>> = HashMap::new();
    for r in tg {
        let Some(model) = models
            .entry(&r.model_filename)
            .or_insert_with(|| silica_plan::ModelDesc::from_gguf(Path::new(&r.model_filename)).ok())
        else {
            continue;
        };
        // test_params sizes n_ctx to depth + generation, as the bench's default context.
        let Ok(p) = silica_plan::calibrate::test_params(&format!("tg{}", r.n_gen), r.n_depth as u64, true)
        else {
            continue;
        };
        let Ok(s) = silica_plan::estimate::predict(model, &cpu, &eff, &p) else {
            continue;
        };
        let gbps = read_bytes_per_s(
            s.tg_weight_bytes.iter().sum::<f64>(),
            s.tg_kv_bytes,
            r.avg_ts,
            r.n_parallel,
        ) / 1e9;
        eprintln!(
            "silica bench: {} tg{}{}{} reads {gbps:.1} GB/s = {:.0}% of the {bw:.1} GB/s STREAM triad `silica hw` measured ({} threads, {}, {})",
            Path::new(&r.model_filename)
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            r.n_gen,
            if r.n_depth > 0 {
                format!(" @ d{}", r.n_depth)
            } else {
                String::new()
            },
            if r.n_parallel > 1 {
                format!(" (batch {})", r.n_parallel)
            } else {
                String::new()
            },
            100.0 * gbps / bw,
            hw.probe.n_threads,
            super::hw::pages(hw.probe.huge_pages),
            path.display()
        );
    }
}

/// The idle power `--idle-baseline` measures (once, before any test, by the parent of a multi-thread grid), W.
/// Reads the counters in `sources` (discovered when `None`) and leaves them there for the tests.
fn idle_power(a: &BenchArgs, sources: &mut Option<EnergySources>) -> Option<f64> {
    if a.idle_baseline <= 0.0 || a.telemetry_interval == 0 {
        return None;
    }
    let (w, back) = silica_telemetry::idle_power_w(
        sources.take().unwrap_or_else(EnergySources::discover),
        Duration::from_secs_f64(a.idle_baseline),
    );
    *sources = Some(back);
    match w {
        Some(w) => eprintln!(
            "silica bench: idle power {w:.1} W over {} s, subtracted from every test",
            a.idle_baseline
        ),
        None => eprintln!("silica bench: --idle-baseline: no energy counter to measure idle power with"),
    }
    w
}

/// Runs the cases of one thread count in a child `silica bench` and forwards its records; `idle_w` is the idle
/// power measured here, handed to the child.
fn run_worker(threads: u32, idle_w: Option<f64>, sinks: &mut Sinks<'_>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the silica binary for a worker process")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_THREADS_ENV, threads.to_string())
        .env(
            CHILD_IDLE_W_ENV,
            idle_w.map_or_else(String::new, |w| w.to_string()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a worker process")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading a worker's records")?;
        let r: BenchRecord = serde_json::from_str(&line).with_context(|| {
            format!("a worker (-t {threads}) printed something that is not a record: {line}")
        })?;
        sinks.record(&r)?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "the worker for -t {threads} failed ({status})");
    Ok(())
}

/// Runs `cases` in this process on `load`'s device, loading each model once, subtracting `idle_power_w`; every
/// case's sampler reads the counters in `sources` (discovered by the first case when `None`).
fn run_cases(
    a: &BenchArgs,
    load: &LoadParams,
    cases: &[BenchCase],
    sinks: &mut Sinks<'_>,
    idle_power_w: Option<f64>,
    mut sources: Option<EnergySources>,
) -> anyhow::Result<()> {
    let opts = RunOptions {
        reps: a.repetitions,
        warmup: !a.no_warmup,
        delay: Duration::from_secs_f64(a.delay),
        telemetry_interval: (a.telemetry_interval > 0).then(|| Duration::from_millis(a.telemetry_interval)),
        idle_power_w,
        ..RunOptions::default()
    };
    let env = EnvInfo::detect(&load.device, load.graph);
    let mut loaded: Option<(PathBuf, Engine, ModelFacts)> = None;
    let n = cases.len();
    for (i, case) in cases.iter().enumerate() {
        if loaded.as_ref().is_none_or(|(p, _, _)| p != &case.model) {
            drop(loaded.take()); // free the previous model before loading the next
            let facts = ModelFacts::read(&case.model)?;
            let engine = Engine::load(&case.model, load)
                .with_context(|| format!("loading model {}", case.model.display()))?;
            warn_ctx_train(&case.model, &engine, cases);
            loaded = Some((case.model.clone(), engine, facts));
        }
        let (_, engine, facts) = loaded.as_ref().context("no model loaded")?;
        let name = case.test_name();
        let mut report = |p: Progress| {
            if a.progress {
                let what = match p {
                    Progress::Warmup => "warmup".to_owned(),
                    Progress::Depth => "depth run".to_owned(),
                    Progress::Rep(r, n) => format!("repetition {r}/{n}"),
                };
                eprintln!(
                    "silica bench: test {}/{n} ({name}, t {}): {what}",
                    i + 1,
                    case.n_threads
                );
            }
        };
        let m = run_case(engine, case, &opts, &mut sources, &mut report)?;
        let r = BenchRecord::new(case, &env, facts, &m, now_rfc3339());
        sinks.record(&r)?;
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// A note when a test reaches past the context length the model was trained for (llama.cpp runs it too, but
/// quality and speed there are not what the model was made for).
fn warn_ctx_train(model: &Path, engine: &Engine, cases: &[BenchCase]) {
    let n_ctx_train = engine.model().hparams().n_ctx_train as u64;
    if let Some(c) = cases
        .iter()
        .filter(|c| c.model == model)
        .find(|c| n_ctx_train > 0 && c.n_ctx_needed() > n_ctx_train)
    {
        eprintln!(
            "silica bench: note: {} needs {} positions, more than the {n_ctx_train} {} was trained for",
            c.test_name(),
            c.n_ctx_needed(),
            model.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::read_bytes_per_s;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn rewrite_llama_bench_flags(args: Vec<String>) -> Result<Vec<String>, String> {
        super::rewrite_llama_bench_flags(args, &[("--huge-pages".to_owned(), true)])
    }

    #[test]
    fn llama_bench_flags_are_rewritten_after_global_options_too() {
        let want = args("silica bench --pg 512,128 --ubatch-size 256");
        assert_eq!(
            rewrite_llama_bench_flags(args("silica bench -pg 512,128 -ub 256")),
            Ok(want)
        );
        for global in ["--huge-pages on", "--huge-pages=off"] {
            let got = rewrite_llama_bench_flags(args(&format!("silica {global} bench -pg 512,128 -ub 256")));
            assert_eq!(
                got,
                Ok(args(&format!(
                    "silica {global} bench --pg 512,128 --ubatch-size 256"
                )))
            );
        }
        // Other commands are left alone; unsupported llama-bench flags are errors.
        assert_eq!(
            rewrite_llama_bench_flags(args("silica run -pg")),
            Ok(args("silica run -pg"))
        );
        assert!(rewrite_llama_bench_flags(args("silica --huge-pages on bench --numa x")).is_err());
    }

    #[test]
    fn batched_generation_reads_the_weights_once_per_step() {
        // One sequence at 50 t/s: 50 reads of weights and cache.
        assert_eq!(read_bytes_per_s(1e9, 1e6, 50.0, 1), 50.0 * (1e9 + 1e6));
        // Eight sequences at 160 t/s in all: 20 steps/s, each reading the weights once and eight caches.
        assert_eq!(read_bytes_per_s(1e9, 1e6, 160.0, 8), 20.0 * (1e9 + 8e6));
    }
}
