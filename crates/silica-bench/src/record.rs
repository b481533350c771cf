//! One flat record per measured case, with llama-bench's JSON field names, order and value types (build
//! d775b8967 / 10573, `shared/reference/llama-bench-sample.json`), then silica's own fields. Printers are views
//! of it ([`crate::printer`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use silica_gguf::{FileType, GgufFile};

use crate::Error;
use crate::params::BenchCase;

/// The git commit silica was built from (`git rev-parse --short=9 HEAD` at build time; `unknown` outside git).
pub const BUILD_COMMIT: &str = env!("SILICA_BUILD_COMMIT");

/// Number of commits in silica's history at build time (`git rev-list --count HEAD`), llama.cpp's
/// `build_number`; 0 outside git.
pub fn build_number() -> i64 {
    env!("SILICA_BUILD_NUMBER").parse().unwrap_or(0)
}

/// Facts about a model file, read from its GGUF header.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFacts {
    /// llama.cpp's `model_type`: architecture, size label and file type (`llama 1B Q4_0`).
    pub model_type: String,
    /// Bytes of tensor data (llama.cpp's `model_size`).
    pub model_size: u64,
    /// Parameters: elements of all tensors (llama.cpp's `model_n_params`).
    pub model_n_params: u64,
    /// Weight bytes one decode step reads for one token: every tensor once, except the token embedding, of
    /// which only one row is read (unless the output projection is tied to it, then it is read whole).
    pub weight_bytes_per_token: u64,
}

impl ModelFacts {
    /// Reads the facts from `path`'s header (no tensor data is read).
    ///
    /// # Errors
    /// [`Error::Model`] naming the file when it is not a readable GGUF file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let file = GgufFile::open_unmapped(path).map_err(|e| Error::Model {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self::from_gguf(&file))
    }

    /// The facts of an open file.
    pub fn from_gguf(file: &GgufFile) -> Self {
        let meta = file.metadata();
        let arch = meta.opt_str("general.architecture").ok().flatten().unwrap_or("?");
        let ftype = meta
            .opt_u32("general.file_type")
            .ok()
            .flatten()
            .and_then(FileType::from_id)
            .map_or_else(|| "?".to_owned(), ftype_description);
        let model_size = file.tensor_data_bytes();
        let model_n_params = file.n_params();
        let tied = file.tensor("output.weight").is_none();
        let weight_bytes_per_token = file
            .tensors()
            .iter()
            .map(|t| {
                if t.name == "token_embd.weight" && !tied {
                    let rows = t.ne.iter().skip(1).product::<u64>().max(1);
                    t.n_bytes / rows
                } else {
                    t.n_bytes
                }
            })
            .sum();
        ModelFacts {
            model_type: format!("{arch} {} {ftype}", size_label(model_n_params)),
            model_size,
            model_n_params,
            weight_bytes_per_token,
        }
    }
}

/// llama.cpp's file-type description in `model_type` (`llama_model_ftype_name`): `Q4_K_M` → `Q4_K - Medium`,
/// `Q2_K` → `Q2_K - Medium`, `F32` → `all F32`; other names unchanged.
pub fn ftype_description(ftype: FileType) -> String {
    let name = ftype.name();
    match name {
        "F32" => "all F32".into(),
        "Q2_K" => "Q2_K - Medium".into(),
        _ => match name.rsplit_once('_') {
            Some((base, size)) if base.ends_with("_K") => {
                let size = match size {
                    "S" => "Small",
                    "M" => "Medium",
                    "L" => "Large",
                    other => other,
                };
                format!("{base} - {size}")
            }
            _ => name.into(),
        },
    }
}

/// A size label from the parameter count: `135M` below a billion, `1B`, `7B`, `70B` above (rounded to the
/// nearest unit). llama.cpp names sizes by architecture tables instead (SmolLM2-135M shows as `256M` there),
/// so labels may differ; `model_n_params` is the exact figure.
pub fn size_label(n_params: u64) -> String {
    if n_params >= 1_000_000_000 {
        format!("{}B", (n_params as f64 / 1e9).round())
    } else {
        format!("{}M", (n_params as f64 / 1e6).round())
    }
}

/// Sample mean and sample standard deviation (n − 1 in the denominator; 0 for fewer than two samples), as
/// llama-bench's `avg` and `stdev`. Welford's update keeps the stddev stable for large, close values.
pub fn mean_stddev(xs: &[f64]) -> (f64, f64) {
    let mut mean = 0.0;
    let mut m2 = 0.0;
    for (i, &x) in xs.iter().enumerate() {
        let d = x - mean;
        mean += d / (i + 1) as f64;
        m2 += d * (x - mean);
    }
    let sd = if xs.len() > 1 {
        (m2 / (xs.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// Everything needed to reproduce and compare one result. The fields up to `samples_ts` are llama-bench's, in
/// its order and with its types; settings silica does not have carry llama-bench's neutral value (`cpu_mask`
/// `0x0`, `n_cpu_moe` 0, ...) so records join by name. silica's own fields follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// silica's git commit at build time.
    pub build_commit: String,
    /// Commits in silica's history at build time.
    pub build_number: i64,
    /// CPU name.
    pub cpu_info: String,
    /// GPU name; empty on CPU.
    pub gpu_info: String,
    /// Backend (`CPU`, `CUDA`, `Metal`).
    pub backends: String,
    /// Model path as given.
    pub model_filename: String,
    /// Architecture, size label and file type (`llama 1B Q4_0`).
    pub model_type: String,
    /// Bytes of tensor data.
    pub model_size: u64,
    /// Parameters.
    pub model_n_params: u64,
    /// Prompt tokens per decode call.
    pub n_batch: u32,
    /// Tokens per forward pass.
    pub n_ubatch: u32,
    /// CPU threads.
    pub n_threads: u32,
    /// CPU affinity mask: none (`0x0`).
    pub cpu_mask: String,
    /// Strict CPU placement: no.
    pub cpu_strict: bool,
    /// llama.cpp's polling level; silica has none (0).
    pub poll: u32,
    /// Key cache type.
    pub type_k: String,
    /// Value cache type.
    pub type_v: String,
    /// Layers on the GPU: 0 on CPU, 99 (all) on a GPU.
    pub n_gpu_layers: i32,
    /// MoE layers kept on the CPU: 0.
    pub n_cpu_moe: u32,
    /// Split mode over several GPUs: `none` (one device).
    pub split_mode: String,
    /// Main GPU index: 0.
    pub main_gpu: u32,
    /// KV cache kept off the GPU: no.
    pub no_kv_offload: bool,
    /// Flash attention: 0 (silica runs plain attention with flash attention's rounding).
    pub flash_attn: i32,
    /// Devices: `auto`.
    pub devices: String,
    /// Tensor split: `0.00`.
    pub tensor_split: String,
    /// Buffer-type overrides: `none`.
    pub tensor_buft_overrides: String,
    /// How weights are loaded: `mmap`.
    pub load_mode: String,
    /// Embeddings mode: no.
    pub embeddings: bool,
    /// Op offload disabled: 0.
    pub no_op_offload: u32,
    /// Host buffers disabled: no.
    pub no_host: bool,
    /// llama.cpp's memory-fit target: 0 (not used).
    pub fit_target: u32,
    /// llama.cpp's minimum fitted context: 0 (not used).
    pub fit_min_ctx: u32,
    /// Prompt tokens per sequence.
    pub n_prompt: u32,
    /// Generated tokens per sequence.
    pub n_gen: u32,
    /// Tokens cached before the timed part.
    pub n_depth: u32,
    /// When the test finished, RFC 3339 UTC (`2026-11-21T18:31:22Z`).
    pub test_time: String,
    /// Mean time per repetition, ns.
    pub avg_ns: u64,
    /// Sample standard deviation of the time, ns.
    pub stddev_ns: u64,
    /// Mean of the per-repetition rates, tokens/s (all sequences together).
    pub avg_ts: f64,
    /// Sample standard deviation of the rates, tokens/s.
    pub stddev_ts: f64,
    /// Time of each repetition, ns (warm-up excluded).
    pub samples_ns: Vec<u64>,
    /// Rate of each repetition, tokens/s.
    pub samples_ts: Vec<f64>,
    // ---- silica's own fields ----
    /// Engine name (`silica`).
    pub engine: String,
    /// Engine version (the crate version).
    pub engine_version: String,
    /// The SIMD level of silica's CPU kernels (`avx512-vnni`, `avx2`, `neon-dotprod`, `scalar`, ...: the
    /// CPU's best unless `--simd` chose a lower one; see `silica_kernels::Simd`). Empty in records written
    /// before the field existed.
    #[serde(default)]
    pub kernel_simd: String,
    /// llama-bench's test name (`pp512`, `tg128 @ d4096`).
    pub test: String,
    /// Parallel sequences (`--batch`); tokens per repetition are `n_parallel · (n_prompt + n_gen)`.
    pub n_parallel: u32,
    /// Context positions allocated per sequence.
    pub n_ctx: u64,
    /// `avg_ts / n_parallel`: the rate each sequence sees.
    pub avg_ts_per_seq: f64,
    /// Peak resident memory of the process during the test, bytes (`None` where the OS does not say).
    pub peak_rss_bytes: Option<u64>,
    /// Anonymous memory on transparent huge pages after the test, bytes (`AnonHugePages`; `None` where the OS does
    /// not say): the repacked weights when `--huge-pages` put them there, which speeds generation (see
    /// `silica_kernels::HugePages`).
    pub anon_huge_pages_bytes: Option<u64>,
    /// Bytes of the KV cache allocated for the test (all sequences).
    pub kv_cache_bytes: u64,
    /// Weight bytes read per generated token ([`ModelFacts::weight_bytes_per_token`]).
    pub weight_bytes_per_token: u64,
    /// Cores this process kept busy over the timed repetitions (CPU time ÷ wall time; `None` without the
    /// sampler or where the OS does not say).
    pub cpu_util: Option<f64>,
    /// The energy counters summed (`rapl:package-0 + rapl:dram`, `nvml:gpu0`), or `unavailable (<reason>)`;
    /// empty without the sampler.
    pub energy_source: String,
    /// Idle power subtracted from the energies below, W (`--idle-baseline`); `None` when not measured.
    pub idle_power_w: Option<f64>,
    /// Energy of the prompt-processing windows of all repetitions, J.
    pub pp_energy_j: Option<f64>,
    /// Average power while processing prompts, W.
    pub pp_avg_power_w: Option<f64>,
    /// Energy per prompt token, J.
    pub pp_j_per_token: Option<f64>,
    /// Energy of the generation windows of all repetitions, J.
    pub tg_energy_j: Option<f64>,
    /// Average power while generating, W.
    pub tg_avg_power_w: Option<f64>,
    /// Energy per generated token, J.
    pub tg_j_per_token: Option<f64>,
}

/// The environment half of a record.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvInfo {
    /// CPU name.
    pub cpu_info: String,
    /// GPU name or empty.
    pub gpu_info: String,
    /// Backend name.
    pub backends: String,
    /// SIMD level of the CPU kernels ([`silica_kernels::simd`]).
    pub kernel_simd: String,
}

impl EnvInfo {
    /// This machine, running on `device`; `graph` when the model runs candle's tensor graph on the CPU
    /// (`--device cpu-graph`), whose backend reads `CPU (candle graph)` so its records never join the native
    /// CPU's. A CUDA device's `gpu_info` is NVML's name of the GPU of the same index (NVML counts in PCI bus
    /// order, CUDA by `CUDA_VISIBLE_DEVICES`; they agree when that variable is unset); Metal's is `Apple GPU`.
    pub fn detect(device: &silica_model::Device, graph: bool) -> Self {
        use silica_model::DeviceLocation;
        let (backends, gpu_info) = match device.location() {
            DeviceLocation::Cpu if graph => ("CPU (candle graph)", String::new()),
            DeviceLocation::Cpu => ("CPU", String::new()),
            DeviceLocation::Cuda { gpu_id } => {
                let name = silica_telemetry::machine::machine_info()
                    .gpus
                    .into_iter()
                    .find(|g| g.index as usize == gpu_id)
                    .map_or_else(|| format!("CUDA device {gpu_id}"), |g| g.name);
                ("CUDA", name)
            }
            DeviceLocation::Metal { .. } => ("Metal", "Apple GPU".to_owned()),
        };
        EnvInfo {
            cpu_info: silica_telemetry::machine::cpu_info(),
            gpu_info,
            backends: backends.into(),
            kernel_simd: silica_kernels::simd().name().into(),
        }
    }
}

/// What one case measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Time of each repetition, ns.
    pub samples_ns: Vec<u64>,
    /// Peak RSS during the case, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Anonymous memory on huge pages at the end of the case, bytes.
    pub anon_huge_pages_bytes: Option<u64>,
    /// KV cache bytes.
    pub kv_cache_bytes: u64,
    /// CPU use and energy from the background sampler (`None` when it did not run).
    pub telemetry: Option<crate::energy::CaseTelemetry>,
}

impl BenchRecord {
    /// Builds the record of `case` from its measurement.
    pub fn new(
        case: &BenchCase,
        env: &EnvInfo,
        facts: &ModelFacts,
        m: &Measurement,
        test_time: String,
    ) -> Self {
        let tokens = f64::from(case.n_parallel) * f64::from(case.n_prompt + case.n_gen);
        let samples_ts: Vec<f64> = m
            .samples_ns
            .iter()
            .map(|&ns| if ns > 0 { 1e9 * tokens / ns as f64 } else { 0.0 })
            .collect();
        let ns: Vec<f64> = m.samples_ns.iter().map(|&n| n as f64).collect();
        let (avg_ns, stddev_ns) = mean_stddev(&ns);
        let (avg_ts, stddev_ts) = mean_stddev(&samples_ts);
        let on_gpu = !env.backends.starts_with("CPU");
        let telemetry = m.telemetry.as_ref();
        let (pp, tg) = (telemetry.and_then(|t| t.pp), telemetry.and_then(|t| t.tg));
        BenchRecord {
            build_commit: BUILD_COMMIT.into(),
            build_number: build_number(),
            cpu_info: env.cpu_info.clone(),
            gpu_info: env.gpu_info.clone(),
            backends: env.backends.clone(),
            model_filename: case.model.display().to_string(),
            model_type: facts.model_type.clone(),
            model_size: facts.model_size,
            model_n_params: facts.model_n_params,
            n_batch: case.n_batch,
            n_ubatch: case.n_ubatch,
            n_threads: case.n_threads,
            cpu_mask: "0x0".into(),
            cpu_strict: false,
            poll: 0,
            type_k: case.type_k.name().into(),
            type_v: case.type_v.name().into(),
            n_gpu_layers: if on_gpu { 99 } else { 0 },
            n_cpu_moe: 0,
            split_mode: "none".into(),
            main_gpu: 0,
            no_kv_offload: false,
            flash_attn: 0,
            devices: "auto".into(),
            tensor_split: "0.00".into(),
            tensor_buft_overrides: "none".into(),
            load_mode: "mmap".into(),
            embeddings: false,
            no_op_offload: 0,
            no_host: false,
            fit_target: 0,
            fit_min_ctx: 0,
            n_prompt: case.n_prompt,
            n_gen: case.n_gen,
            n_depth: case.n_depth,
            test_time,
            avg_ns: avg_ns.round() as u64,
            stddev_ns: stddev_ns.round() as u64,
            avg_ts,
            stddev_ts,
            samples_ns: m.samples_ns.clone(),
            samples_ts,
            engine: "silica".into(),
            engine_version: env!("CARGO_PKG_VERSION").into(),
            kernel_simd: env.kernel_simd.clone(),
            test: case.test_name(),
            n_parallel: case.n_parallel,
            n_ctx: case.n_ctx_effective(),
            avg_ts_per_seq: avg_ts / f64::from(case.n_parallel.max(1)),
            peak_rss_bytes: m.peak_rss_bytes,
            anon_huge_pages_bytes: m.anon_huge_pages_bytes,
            kv_cache_bytes: m.kv_cache_bytes,
            weight_bytes_per_token: facts.weight_bytes_per_token,
            cpu_util: telemetry.and_then(|t| t.cpu_util),
            energy_source: telemetry.map_or_else(String::new, |t| t.energy_source.clone()),
            idle_power_w: telemetry.and_then(|t| t.idle_power_w),
            pp_energy_j: pp.map(|p| p.energy_j),
            pp_avg_power_w: pp.map(|p| p.avg_power_w),
            pp_j_per_token: pp.map(|p| p.j_per_token),
            tg_energy_j: tg.map(|p| p.energy_j),
            tg_avg_power_w: tg.map(|p| p.avg_power_w),
            tg_j_per_token: tg.map(|p| p.j_per_token),
        }
    }

    /// The record's fields as `(name, value)` in order, arrays (`samples_*`) left out: the columns of the
    /// CSV and SQL printers.
    pub fn scalar_fields(&self) -> Vec<(String, serde_json::Value)> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_array()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Formats a Unix time (seconds) as RFC 3339 UTC, `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days: Howard Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms").
pub fn rfc3339_utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Now, as [`rfc3339_utc`].
pub fn now_rfc3339() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_utc(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_the_textbook() {
        let (m, s) = mean_stddev(&[291.971, 265.824, 335.432]);
        assert!((m - 297.742_333).abs() < 1e-3, "{m}");
        assert!((s - 35.161_053).abs() < 1e-5, "{s}");
        assert_eq!(mean_stddev(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_113_082), "2026-11-19T18:31:22Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ftype_names_follow_llama_cpp() {
        assert_eq!(ftype_description(FileType::MOSTLY_Q4_K_M), "Q4_K - Medium");
        assert_eq!(ftype_description(FileType::MOSTLY_Q3_K_L), "Q3_K - Large");
        assert_eq!(ftype_description(FileType::MOSTLY_Q4_0), "Q4_0");
        assert_eq!(ftype_description(FileType::ALL_F32), "all F32");
        assert_eq!(size_label(134_515_008), "135M");
        assert_eq!(size_label(6_738_415_616), "7B");
    }
}
