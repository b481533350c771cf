//! `silica plan`: will a model fit, and how fast will it run — on this machine or any device of the table.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use silica_gguf::{FileType, GgmlType};
use silica_plan::calibrate::{self, SavedProfile};
use silica_plan::estimate::{self, HostMemory, Plan, PlanParams, Split};
use silica_plan::hardware::{self, Backend, DeviceProfile};
use silica_plan::{Efficiency, ModelDesc, output};

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text (a comparison table for `--hw all`).
    Table,
    /// JSON: the plan(s) with every input, figure and formula.
    Json,
    /// A Markdown table, one row per device.
    Md,
    /// CSV, one row per device.
    Csv,
}

/// How several devices share the model.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SplitArg {
    /// Consecutive layers per device (pipeline; llama.cpp `-sm layer`).
    Layer,
    /// Every matrix split over the devices (tensor parallel; llama.cpp `-sm row`).
    Row,
}

/// Arguments of `silica plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "The model: a GGUF file (only its header is read: a partly downloaded file will do), a \
Hugging Face config.json, or a preset name (silica synth --list) with --type.\n\
Speeds: tg = eff_bw × bandwidth ÷ bytes read per token (+ a per-layer overhead); pp = eff_fl × peak FLOP/s ÷ FLOPs \
per token. The factors are fitted per backend on llama.cpp's published results (--fits prints the fit and its \
residuals); the CPU's on silica bench runs. --explain prints every formula with its inputs.\n\
Exit status: 0 when it fits (or fits with offload), 1 when it does not, 2 on an error."
)]
pub(crate) struct PlanArgs {
    /// GGUF file, config.json, or preset name (llama-3-70b, gemma-3-270m...).
    #[arg(short = 'm', long = "model", required_unless_present_any = ["fits", "calibrate"])]
    model: Option<String>,
    /// File type for a config.json or preset (Q4_K_M, Q8_0, F16...); for a GGUF file, plans it as if requantized.
    #[arg(short = 't', long = "type")]
    file_type: Option<String>,
    /// Device: a name from the table (RTX 4090, M4 Max, "Apple M1 (7-core GPU)"), `all` for every device, or
    /// `this` for this machine's CPU as `silica hw` measured it.
    #[arg(long = "hw", default_value = "this")]
    hw: String,
    /// Memory size in GB of the device (picks among the sizes it is sold with; default the largest).
    #[arg(long = "memory")]
    memory_gb: Option<f64>,
    /// Fraction of the memory the engine may use (Apple default ~70-78%: the GPU wired-memory limit).
    #[arg(long = "usable-fraction")]
    usable_fraction: Option<f64>,
    /// Override the device's memory bandwidth, GB/s.
    #[arg(long = "bandwidth")]
    bandwidth_gbps: Option<f64>,
    /// Override the device's peak FLOP/s, TFLOP/s.
    #[arg(long = "tflops")]
    tflops: Option<f64>,
    /// Context size (n_ctx), tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    n_ctx: u64,
    /// Physical batch (n_ubatch), tokens.
    #[arg(long = "ubatch-size", visible_alias = "ub", default_value_t = 512)]
    n_ubatch: u64,
    /// KV cache K type.
    #[arg(long = "cache-type-k", visible_alias = "ctk", default_value = "f16")]
    type_k: String,
    /// KV cache V type.
    #[arg(long = "cache-type-v", visible_alias = "ctv", default_value = "f16")]
    type_v: String,
    /// Flash attention (llama.cpp's default turns it on where supported).
    #[arg(long = "flash-attn", visible_alias = "fa", default_value = "on", value_parser = ["on", "off"])]
    flash_attn: String,
    /// Prompt tokens of the predicted pp test.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: u64,
    /// Generated tokens of the predicted tg test.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: u64,
    /// Tokens already in the cache (depth) for the predictions.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    n_depth: u64,
    /// Number of identical devices.
    #[arg(long = "devices", default_value_t = 1)]
    n_devices: u32,
    /// How several devices share the model.
    #[arg(long = "split", value_enum, default_value_t = SplitArg::Layer)]
    split: SplitArg,
    /// Link between devices: pcie3, pcie4, pcie5, nvlink3, nvlink4, tb4, tb5, 10gbe (default pcie4; tb5 for Apple).
    #[arg(long = "link")]
    link: Option<String>,
    /// Host RAM in GB for layers a GPU cannot hold (CPU offload is planned only with it, except on unified memory).
    #[arg(long = "host-memory")]
    host_memory_gb: Option<f64>,
    /// Host memory bandwidth in GB/s for offloaded layers (default 80: dual-channel DDR5-5000).
    #[arg(long = "host-bw", default_value_t = 80.0)]
    host_bw_gbps: f64,
    /// Override the bandwidth efficiency (0-1).
    #[arg(long = "eff-bw")]
    eff_bw: Option<f64>,
    /// Override the prefill FLOP/s efficiency.
    #[arg(long = "eff-flops")]
    eff_flops: Option<f64>,
    /// Use efficiencies saved by --calibrate (a path, or a name in the cache's profiles folder).
    #[arg(long = "profile")]
    profile: Option<String>,
    /// Fit efficiencies on bench records (silica bench -o jsonl, or llama-bench -o json/jsonl) run on --hw, print
    /// the residuals, and save them as a profile (--save).
    #[arg(long = "calibrate", value_name = "RESULTS")]
    calibrate: Option<PathBuf>,
    /// Name or path to save a --calibrate profile under (default: the backend's name).
    #[arg(long = "save")]
    save: Option<String>,
    /// Print the built-in fits and their residual tables, then exit.
    #[arg(long = "fits")]
    fits: bool,
    /// Print every formula with its inputs.
    #[arg(long = "explain")]
    explain: bool,
    /// Threads `silica hw` measures with when this machine has no cached measurement.
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Where saved calibration profiles live: `profiles/` beside `silica hw`'s cache.
fn profiles_dir() -> PathBuf {
    silica_telemetry::cache_path()
        .parent()
        .map_or_else(|| PathBuf::from("profiles"), |d| d.join("profiles"))
}

fn profile_path(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some() || p.components().count() > 1 {
        p.to_owned()
    } else {
        profiles_dir().join(format!("{name}.json"))
    }
}

/// The model the arguments name.
fn model(a: &PlanArgs) -> anyhow::Result<ModelDesc> {
    let name = a.model.as_deref().unwrap_or_default();
    let ft = a
        .file_type
        .as_deref()
        .map(silica_plan::parse_file_type)
        .transpose()?;
    let path = Path::new(name);
    if path.is_file() {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            let ft =
                ft.with_context(|| format!("{name}: a config.json needs --type (Q4_K_M, Q8_0, F16...)"))?;
            return Ok(ModelDesc::from_hf_config(path, ft)?);
        }
        let m = ModelDesc::from_gguf(path).with_context(|| format!("reading {name}"))?;
        return match ft {
            // A what-if: the same architecture written as another file type.
            Some(ft) if Some(ft) != m.file_type => match preset_for(&m) {
                Some(p) => Ok(ModelDesc::from_preset(&p, ft)?),
                None => {
                    bail!("{name}: --type plans a preset or config.json; this file's shape is not a preset")
                }
            },
            _ => Ok(m),
        };
    }
    if name.contains('/') || name.ends_with(".gguf") || name.ends_with(".json") {
        bail!("{name}: no such file");
    }
    Ok(ModelDesc::from_preset(
        name,
        ft.unwrap_or(FileType::MOSTLY_Q4_K_M),
    )?)
}

/// The preset with `m`'s shape, if any.
fn preset_for(m: &ModelDesc) -> Option<String> {
    silica_convert::synth::presets()
        .into_iter()
        .find(|p| {
            let c = &p.config;
            c.n_layer == m.n_layer
                && c.n_embd as u64 == m.n_embd
                && c.n_ff as u64 == m.n_ff
                && c.n_vocab as u64 == m.n_vocab
        })
        .map(|p| p.name.to_owned())
}

/// The devices to plan on.
fn devices(a: &PlanArgs) -> anyhow::Result<Vec<DeviceProfile>> {
    let table = hardware::device_table()?;
    let mut out = match a.hw.to_ascii_lowercase().as_str() {
        "this" | "local" | "cpu" => {
            let (hw, _) = super::hw::load(false, a.threads)?;
            vec![super::hw::cpu_device(&hw)]
        }
        "all" => table
            .iter()
            .filter(|d| a.memory_gb.is_none_or(|m| d.sold_with(m)))
            .map(|d| DeviceProfile::from_spec(d, &table, a.memory_gb))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            let spec = hardware::find_device(&table, &a.hw, a.memory_gb)?;
            vec![DeviceProfile::from_spec(spec, &table, a.memory_gb)?]
        }
    };
    for d in &mut out {
        if let Some(f) = a.usable_fraction {
            if !(0.0..=1.0).contains(&f) || f == 0.0 {
                bail!("--usable-fraction {f}: must be in (0, 1]");
            }
            d.usable_fraction = f;
            d.usable_source = "--usable-fraction".into();
        }
        if let Some(b) = a.bandwidth_gbps {
            d.bandwidth_gbps = b;
            d.bandwidth_source = "--bandwidth".into();
        }
        if let Some(t) = a.tflops {
            d.peak_tflops = Some(t);
            d.peak_source = "--tflops".into();
        }
    }
    Ok(out)
}

/// The `--profile` file and what it holds.
fn load_profile(name: &str) -> anyhow::Result<(PathBuf, SavedProfile)> {
    let path = profile_path(name);
    let saved = SavedProfile::load(&path)?;
    Ok((path, saved))
}

/// The efficiencies for `backend`: the `--profile` loaded by [`load_profile`], else the built-in fit; then the
/// overrides.
fn efficiency(
    a: &PlanArgs,
    profile: Option<&(PathBuf, SavedProfile)>,
    backend: Backend,
    fits: &[silica_plan::Fit],
) -> anyhow::Result<Efficiency> {
    let mut e = match profile {
        Some((path, saved)) => {
            if saved.efficiency.backend != backend {
                bail!(
                    "{}: a {} profile, the device is {backend}",
                    path.display(),
                    saved.efficiency.backend
                );
            }
            saved.efficiency.clone()
        }
        None => calibrate::efficiency_for(fits, backend)
            .cloned()
            .with_context(|| {
                format!("no built-in calibration for {backend}: give --eff-bw and --eff-flops or --profile")
            })?,
    };
    if let Some(b) = a.eff_bw {
        e.bandwidth = [b; silica_plan::calibrate::N_CLASSES];
        e.kv_bandwidth = b;
        e.source = format!("{} (eff_bw from --eff-bw)", e.source);
    }
    if let Some(f) = a.eff_flops {
        e.flops = [f; silica_plan::calibrate::N_CLASSES];
        e.attn_flops = f;
        e.source = format!("{} (eff_fl from --eff-flops)", e.source);
    }
    Ok(e)
}

/// The parameters of every plan, parsed once: the link is `--link`, else PCIe 4 ([`params_for`] gives Macs
/// Thunderbolt 5).
fn params(a: &PlanArgs) -> anyhow::Result<PlanParams> {
    let ty = |s: &str| -> anyhow::Result<GgmlType> { Ok(silica_plan::parse_ggml_type(s)?) };
    let link = hardware::find_link(a.link.as_deref().unwrap_or("pcie4"))?;
    Ok(PlanParams {
        n_ctx: a.n_ctx,
        n_ubatch: a.n_ubatch,
        type_k: ty(&a.type_k)?,
        type_v: ty(&a.type_v)?,
        flash_attn: a.flash_attn == "on",
        n_prompt: a.n_prompt,
        n_gen: a.n_gen,
        n_depth: a.n_depth,
        n_devices: a.n_devices,
        split: match a.split {
            SplitArg::Layer => Split::Layer,
            SplitArg::Row => Split::Row,
        },
        link,
        host: a.host_memory_gb.map(|gb| HostMemory {
            memory_bytes: (gb * 1e9) as u64,
            bandwidth_gbps: a.host_bw_gbps,
        }),
    })
}

/// `base` for `dev`: without `--link`, Macs are linked by Thunderbolt 5.
fn params_for(a: &PlanArgs, base: &PlanParams, dev: &DeviceProfile) -> anyhow::Result<PlanParams> {
    let mut p = base.clone();
    if a.link.is_none() && dev.backend == Backend::Metal {
        p.link = hardware::find_link("tb5")?;
    }
    Ok(p)
}

/// Runs `silica plan`; returns the exit status (0 runs, 1 does not fit).
pub(crate) fn run(a: &PlanArgs) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    if a.fits {
        write!(out, "{}", output::fits_markdown(&calibrate::builtin_fits()?))?;
        return Ok(0);
    }
    if let Some(results) = &a.calibrate {
        return calibrate_records(a, results, &mut out);
    }
    let fits = calibrate::builtin_fits()?;
    let m = model(a)?;
    if let silica_plan::ModelSource::Gguf {
        file_bytes,
        expected_file_bytes,
        ..
    } = m.source
        && file_bytes < expected_file_bytes
    {
        eprintln!(
            "note: the file is incomplete ({:.2} of {:.2} GiB): planned from its header",
            silica_plan::gib(file_bytes),
            silica_plan::gib(expected_file_bytes)
        );
    }
    let devs = devices(a)?;
    let cpu_eff = calibrate::efficiency_for(&fits, Backend::Cpu)
        .cloned()
        .unwrap_or_else(|| Efficiency::ideal(Backend::Cpu));
    let profile = a.profile.as_deref().map(load_profile).transpose()?;
    let base = params(a)?;
    let mut plans: Vec<Plan> = Vec::new();
    for d in &devs {
        let eff = efficiency(a, profile.as_ref(), d.backend, &fits)?;
        plans.push(estimate::plan(&m, d, &eff, &cpu_eff, &params_for(a, &base, d)?)?);
    }
    let comparison = plans.len() > 1;
    match a.output {
        Format::Json if comparison => writeln!(out, "{}", serde_json::to_string_pretty(&plans)?)?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&plans[0])?)?,
        Format::Md => write!(out, "{}", output::plans_markdown(&plans))?,
        Format::Csv => write!(out, "{}", output::plans_csv(&plans))?,
        Format::Table if comparison => {
            writeln!(
                out,
                "{} ({}), n_ctx {}, KV {}/{}: {} devices\n",
                m.name,
                m.file_type.map_or("mixed types", |f| f.name()),
                a.n_ctx,
                a.type_k,
                a.type_v,
                plans.len()
            )?;
            write!(out, "{}", output::plans_markdown(&plans))?;
        }
        Format::Table => write!(out, "{}", output::plan_text(&plans[0], a.explain))?,
    }
    Ok(if plans.iter().any(|p| p.verdict.runs()) {
        0
    } else {
        1
    })
}

/// `--calibrate`: fit on records, print the residuals, save the profile.
fn calibrate_records(a: &PlanArgs, results: &Path, out: &mut impl Write) -> anyhow::Result<i32> {
    let devs = devices(a)?;
    let [dev] = devs.as_slice() else {
        bail!("--calibrate needs one device (--hw NAME or this), not `all`");
    };
    let obs = calibrate::observations_from_records(results, dev)?;
    let fit = calibrate::fit(dev.backend, &obs, &format!("fitted on {}", results.display()))?;
    write!(out, "{}", output::fits_markdown(std::slice::from_ref(&fit)))?;
    let path = profile_path(
        a.save
            .as_deref()
            .unwrap_or(&dev.backend.name().to_ascii_lowercase()),
    );
    SavedProfile {
        device: dev.name.clone(),
        n_rows: fit.residuals.len(),
        median_abs_error: fit.median_abs_error(),
        efficiency: fit.efficiency,
    }
    .save(&path)?;
    writeln!(out, "saved: {} (use with --profile)", path.display())?;
    Ok(0)
}
