//! Efficiency factors: how far below the roofline an engine runs on a class of device, fitted on measurements.
//!
//! The speed model ([`crate::estimate`]) per token is
//! - tg: `t = bytes / (eff_bw × BW) + n_layer × overhead` (weights and the KV cache read once per token, plus a
//!   per-layer cost of kernel launches and synchronisation);
//! - pp: `t = F_matmul / (eff_fl × peak) + F_attention / (eff_attn × peak)`.
//!
//! Both are linear in their unknowns (`1/eff_bw`, `overhead`; `1/eff_fl`, `1/eff_attn`), so the fit is a
//! least-squares solve of `a·x₁ + b·x₂ ≈ t` per backend that minimises the *relative* error `Σ ((a·x₁ + b·x₂)/t −
//! 1)²`. When the data cannot tell the two terms apart (every row the same model and depth), the second
//! coefficient is pinned: no per-layer overhead for tg, attention at the matmul efficiency for pp.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use silica_gguf::{FileType, GgmlType};

use crate::estimate::{PlanParams, Split, predict};
use crate::hardware::{self, Backend, DeviceProfile, DeviceSpec, LINKS};
use crate::model::ModelDesc;
use crate::{Error, Result};

/// `shared/data/calibration-llamacpp.csv`: published llama-bench results (Apple M1 and M2 Ultra with Metal; RTX
/// 3090 and 4090 with CUDA and Vulkan), chosen for fitting; see `data/README.md`.
pub const CALIBRATION_LLAMACPP_CSV: &str = include_str!("../data/calibration-llamacpp.csv");

/// silica's own `silica bench` results on the CPU of the machine named in each row, with that machine's
/// bandwidth and peak FLOP/s as `silica hw` measured them: the CPU backend's default factors.
pub const CALIBRATION_SILICA_CPU_CSV: &str = include_str!("../data/calibration-silica-cpu.csv");

/// The factors of one backend class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    /// The backend.
    pub backend: Backend,
    /// Fraction of the bandwidth generation reaches (`eff_bw`).
    pub bandwidth: f64,
    /// Fixed cost per layer per token, µs.
    pub layer_overhead_us: f64,
    /// Fraction of the peak FLOP/s the weight matrices reach in prefill (`eff_fl`).
    pub flops: f64,
    /// Fraction of the peak attention reaches in prefill (`eff_attn`).
    pub attn_flops: f64,
    /// Where the factors come from.
    pub source: String,
}

impl Efficiency {
    /// The ideal roofline: every factor 1, no overhead.
    pub fn ideal(backend: Backend) -> Self {
        Efficiency {
            backend,
            bandwidth: 1.0,
            layer_overhead_us: 0.0,
            flops: 1.0,
            attn_flops: 1.0,
            source: "ideal roofline".into(),
        }
    }
}

/// One measured result to fit or check against.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Device as the source names it.
    pub device: String,
    /// The profile it ran on.
    pub profile: DeviceProfile,
    /// The model.
    pub model: ModelDesc,
    /// `pp512`, `tg128`...
    pub test: String,
    /// The test's sizes (context, prompt, generation, depth, flash attention).
    pub params: PlanParams,
    /// Measured tokens/s.
    pub tok_s: f64,
}

/// One row of a residual table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Residual {
    /// Device.
    pub device: String,
    /// Backend.
    pub backend: Backend,
    /// Model and file type.
    pub model: String,
    /// Test.
    pub test: String,
    /// Measured t/s.
    pub measured_tps: f64,
    /// Predicted t/s.
    pub predicted_tps: f64,
    /// `predicted / measured − 1`.
    pub error: f64,
}

/// A fitted backend: its factors and how well they reproduce the rows they were fitted on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fit {
    /// The factors.
    pub efficiency: Efficiency,
    /// Every row, predicted with them.
    pub residuals: Vec<Residual>,
}

impl Fit {
    /// Median of `|error|` over the rows.
    pub fn median_abs_error(&self) -> f64 {
        median_abs(&self.residuals)
    }
}

/// Median of `|error|` over `rows` (0 for none).
pub fn median_abs(rows: &[Residual]) -> f64 {
    let mut e: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
    e.sort_by(f64::total_cmp);
    match e.len() {
        0 => 0.0,
        n if n % 2 == 1 => e[n / 2],
        n => (e[n / 2 - 1] + e[n / 2]) / 2.0,
    }
}

/// The test sizes of a llama-bench test name (`pp512`, `tg128`) at `n_depth`.
///
/// # Errors
/// [`Error::Invalid`] for another name.
pub fn test_params(test: &str, n_depth: u64, flash_attn: bool) -> Result<PlanParams> {
    let bad = || Error::Invalid {
        what: "test",
        reason: format!("`{test}` is not ppN or tgN"),
    };
    let n: u64 = test.get(2..).and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let (n_prompt, n_gen) = match &test[..2] {
        "pp" => (n, 0),
        "tg" => (0, n),
        _ => return Err(bad()),
    };
    Ok(PlanParams {
        n_ctx: (n_depth + n_prompt + n_gen).max(1),
        n_ubatch: 512,
        type_k: GgmlType::F16,
        type_v: GgmlType::F16,
        flash_attn,
        n_prompt,
        n_gen,
        n_depth,
        n_devices: 1,
        split: Split::Layer,
        link: LINKS[1],
        host: None,
    })
}

#[derive(Deserialize)]
struct CalRow {
    device: String,
    gpu_cores: Option<u32>,
    backend: String,
    model: String,
    quant: String,
    test: String,
    tok_s: Option<f64>,
    flash_attn: Option<u8>,
    status: Option<String>,
    /// silica rows: the measured bandwidth and peak of the machine.
    bandwidth_gbps: Option<f64>,
    peak_tflops: Option<f64>,
    memory_gb: Option<f64>,
    n_depth: Option<u64>,
}

/// The preset a calibration row's model name stands for (`LLaMA 2 7B` → `llama-2-7b`).
fn preset_name(model: &str) -> String {
    model.to_ascii_lowercase().replace(' ', "-")
}

/// The table device a calibration row's device stands for: `Apple M1` with 7 GPU cores → `Apple M1 (7-core
/// GPU)`; `NVIDIA RTX 4090 24GB` → `NVIDIA GeForce RTX 4090` (the explicit mapping `data/README.md` asks for).
fn table_device<'a>(table: &'a [DeviceSpec], device: &str, gpu_cores: Option<u32>) -> Result<&'a DeviceSpec> {
    let name = match gpu_cores {
        Some(c) if device.starts_with("Apple") => format!("{device} ({c}-core GPU)"),
        _ => device
            .trim_end_matches(" 24GB")
            .replace("NVIDIA RTX", "NVIDIA GeForce RTX"),
    };
    hardware::find_device(table, &name, None)
}

/// Parses calibration rows (the columns of `calibration-llamacpp.csv`; rows that also give `bandwidth_gbps` and
/// `peak_tflops` describe their own machine instead of a table device). Rows without a measurement
/// (`blank-in-table`) are skipped.
///
/// # Errors
/// [`Error::BadTable`] naming `table` and the line: an unknown device, model or quant, or a bad test name.
pub fn parse_observations(csv_text: &str, table: &str) -> Result<Vec<Observation>> {
    let specs = hardware::device_table()?;
    let mut models: HashMap<(String, String), ModelDesc> = HashMap::new();
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in rdr.deserialize::<CalRow>().enumerate() {
        let bad = |reason: String| Error::BadTable {
            table: table.to_owned(),
            line: i + 2,
            reason,
        };
        let r = row.map_err(|e| bad(e.to_string()))?;
        let Some(tok_s) = r
            .tok_s
            .filter(|_| r.status.as_deref().is_none_or(|s| s == "ok" || s.is_empty()))
        else {
            continue;
        };
        let backend = Backend::parse(&r.backend).map_err(|e| bad(e.to_string()))?;
        let profile = match (r.bandwidth_gbps, r.peak_tflops) {
            (Some(bw), Some(peak)) => DeviceProfile {
                name: r.device.clone(),
                backend,
                unified_memory: backend == Backend::Cpu,
                memory_bytes: (r.memory_gb.unwrap_or(0.0) * 1e9) as u64,
                usable_fraction: 1.0,
                usable_source: "calibration row".into(),
                overhead_bytes: 0,
                overhead_source: "none".into(),
                bandwidth_gbps: bw,
                bandwidth_source: "measured (silica hw)".into(),
                peak_tflops: Some(peak),
                peak_source: "measured (silica hw)".into(),
            },
            _ => {
                let spec = table_device(&specs, &r.device, r.gpu_cores).map_err(|e| bad(e.to_string()))?;
                let mut p = DeviceProfile::from_spec(spec, &specs, None).map_err(|e| bad(e.to_string()))?;
                p.backend = backend;
                p
            }
        };
        let key = (preset_name(&r.model), r.quant.clone());
        let model = match models.get(&key) {
            Some(m) => m.clone(),
            None => {
                let ft: FileType = crate::parse_file_type(&r.quant).map_err(|e| bad(e.to_string()))?;
                let m = ModelDesc::from_preset(&key.0, ft).map_err(|e| bad(e.to_string()))?;
                models.insert(key, m.clone());
                m
            }
        };
        let params = test_params(
            &r.test,
            r.n_depth.unwrap_or(0),
            r.flash_attn.is_none_or(|f| f == 1),
        )
        .map_err(|e| bad(e.to_string()))?;
        out.push(Observation {
            device: r.device,
            profile,
            model,
            test: r.test,
            params,
            tok_s,
        });
    }
    Ok(out)
}

/// Solves `min Σ (a·u + b·v − 1)²`, the relative-error fit with `u = x₁/t`, `v = x₂/t`. Returns `None` when the
/// system is singular or ill-conditioned, or a coefficient comes out negative.
fn solve2(uv: &[(f64, f64)]) -> Option<(f64, f64)> {
    let (mut suu, mut suv, mut svv, mut su, mut sv) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(u, v) in uv {
        suu += u * u;
        suv += u * v;
        svv += v * v;
        su += u;
        sv += v;
    }
    let det = suu * svv - suv * suv;
    if det.is_nan() || det <= 1e-6 * suu * svv {
        return None;
    }
    let a = (su * svv - sv * suv) / det;
    let b = (suu * sv - suv * su) / det;
    (a > 0.0 && b >= 0.0).then_some((a, b))
}

/// `min Σ (a·u − 1)²`.
fn solve1(u: impl Iterator<Item = f64>) -> f64 {
    let (s, ss) = u.fold((0.0, 0.0), |(s, ss), u| (s + u, ss + u * u));
    if ss > 0.0 { s / ss } else { 1.0 }
}

/// Fits one backend's factors on `obs` (rows of other backends ignored) and predicts every row with them.
///
/// # Errors
/// [`Error::NoCalibration`] when no row has the backend; model errors from predicting a row.
pub fn fit(backend: Backend, obs: &[Observation], source: &str) -> Result<Fit> {
    let rows: Vec<&Observation> = obs.iter().filter(|o| o.profile.backend == backend).collect();
    if rows.is_empty() {
        return Err(Error::NoCalibration {
            backend: backend.name().into(),
            reason: "no rows".into(),
        });
    }
    let ideal = Efficiency::ideal(backend);
    let mut tg = Vec::new();
    let mut pp = Vec::new();
    for o in &rows {
        let s = predict(&o.model, &o.profile, &ideal, &o.params)?;
        let t = 1.0 / o.tok_s;
        if o.params.n_gen > 0 {
            let x1 = s.tg_bytes_per_token as f64 / (o.profile.bandwidth_gbps * 1e9);
            tg.push((x1 / t, o.model.n_layer as f64 * 1e-6 / t));
        } else if let Some(peak) = o.profile.peak_tflops {
            let peak = peak * 1e12;
            pp.push((s.pp_matmul_flops / peak / t, s.pp_attn_flops / peak / t));
        }
    }
    let mut eff = Efficiency {
        source: format!(
            "{source}: {backend} fit on {} tg and {} pp rows",
            tg.len(),
            pp.len()
        ),
        ..ideal
    };
    if !tg.is_empty() {
        let (a, b) = solve2(&tg).unwrap_or_else(|| (solve1(tg.iter().map(|x| x.0)), 0.0));
        eff.bandwidth = 1.0 / a;
        eff.layer_overhead_us = b;
    }
    if !pp.is_empty() {
        match solve2(&pp) {
            Some((a, b)) => {
                eff.flops = 1.0 / a;
                eff.attn_flops = 1.0 / b.max(1e-9);
            }
            None => {
                let a = solve1(pp.iter().map(|x| x.0 + x.1));
                eff.flops = 1.0 / a;
                eff.attn_flops = 1.0 / a;
            }
        }
    }
    let residuals = rows
        .iter()
        .map(|o| residual(o, &eff))
        .collect::<Result<Vec<_>>>()?;
    Ok(Fit {
        efficiency: eff,
        residuals,
    })
}

/// Predicts `o` with `eff` and compares.
///
/// # Errors
/// As [`predict`].
pub fn residual(o: &Observation, eff: &Efficiency) -> Result<Residual> {
    let s = predict(&o.model, &o.profile, eff, &o.params)?;
    let predicted = if o.params.n_gen > 0 {
        s.tg_tps
    } else {
        s.pp_tps.unwrap_or(0.0)
    };
    Ok(Residual {
        device: o.device.clone(),
        backend: o.profile.backend,
        model: format!("{} {}", o.model.name, o.model.file_type.map_or("", |f| f.name())),
        test: o.test.clone(),
        measured_tps: o.tok_s,
        predicted_tps: predicted,
        error: predicted / o.tok_s - 1.0,
    })
}

/// Fits every backend present in `obs`.
///
/// # Errors
/// As [`fit`].
pub fn fit_all(obs: &[Observation], source: &str) -> Result<Vec<Fit>> {
    let mut backends: Vec<Backend> = obs.iter().map(|o| o.profile.backend).collect();
    backends.sort();
    backends.dedup();
    backends.into_iter().map(|b| fit(b, obs, source)).collect()
}

/// The built-in fits: GPU backends on `calibration-llamacpp.csv`, the CPU on `calibration-silica-cpu.csv`.
///
/// # Errors
/// If a built-in table is malformed (tests parse them).
pub fn builtin_fits() -> Result<Vec<Fit>> {
    let mut obs = parse_observations(CALIBRATION_LLAMACPP_CSV, "calibration-llamacpp.csv")?;
    obs.extend(parse_observations(
        CALIBRATION_SILICA_CPU_CSV,
        "calibration-silica-cpu.csv",
    )?);
    fit_all(&obs, "built-in")
}

/// The built-in factors of `backend`.
///
/// # Errors
/// [`Error::NoCalibration`] for a backend without rows.
pub fn builtin_efficiency(backend: Backend) -> Result<Efficiency> {
    builtin_fits()?
        .into_iter()
        .find(|f| f.efficiency.backend == backend)
        .map(|f| f.efficiency)
        .ok_or_else(|| Error::NoCalibration {
            backend: backend.name().into(),
            reason: "no built-in rows".into(),
        })
}

/// The fields of a `silica bench` or llama-bench JSON record that calibration reads.
#[derive(Deserialize)]
struct RecordRow {
    model_filename: String,
    n_prompt: u64,
    n_gen: u64,
    #[serde(default)]
    n_depth: u64,
    avg_ts: f64,
    #[serde(default)]
    n_ubatch: Option<u64>,
    #[serde(default)]
    flash_attn: Option<i64>,
}

/// Reads bench records — `silica bench -o jsonl` lines, or llama-bench's `-o json` array or `-o jsonl` — as
/// observations on `profile`. Each record's model is described from its `model_filename`, looked up as given,
/// then in the models directory by file name. Records with both a prompt and generation (`pp512+tg128`) are
/// skipped.
///
/// # Errors
/// [`Error::Io`], [`Error::BadFile`] naming the file and record, and model errors naming the model file.
pub fn observations_from_records(path: &Path, profile: &DeviceProfile) -> Result<Vec<Observation>> {
    let text = fs_err::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| Error::BadFile {
        path: path.to_owned(),
        reason,
    };
    let values: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(format!("line {}: {e}", i + 1))))
            .collect::<Result<_>>()?
    };
    let mut models: HashMap<String, ModelDesc> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let r: RecordRow = serde_json::from_value(v).map_err(|e| bad(format!("record {}: {e}", i + 1)))?;
        if (r.n_prompt > 0) == (r.n_gen > 0) {
            continue;
        }
        let model = match models.get(&r.model_filename) {
            Some(m) => m.clone(),
            None => {
                let m = ModelDesc::from_gguf(&locate(&r.model_filename))?;
                models.insert(r.model_filename.clone(), m.clone());
                m
            }
        };
        let test = if r.n_prompt > 0 {
            format!("pp{}", r.n_prompt)
        } else {
            format!("tg{}", r.n_gen)
        };
        let mut params = test_params(&test, r.n_depth, r.flash_attn.is_none_or(|f| f != 0))?;
        params.n_ubatch = r.n_ubatch.unwrap_or(512);
        out.push(Observation {
            device: profile.name.clone(),
            profile: profile.clone(),
            model,
            test,
            params,
            tok_s: r.avg_ts,
        });
    }
    if out.is_empty() {
        return Err(bad("no pp or tg records".into()));
    }
    Ok(out)
}

/// A record's model file: as given if it exists, else its file name in the models directory.
fn locate(name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.exists() {
        return p;
    }
    match p.file_name() {
        Some(f) => {
            let cached = silica_gguf::models_dir().join(f);
            if cached.exists() { cached } else { p }
        }
        None => p,
    }
}

/// A saved calibration: the factors fitted on a user's records, for `plan --profile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedProfile {
    /// The device the records ran on.
    pub device: String,
    /// The factors.
    pub efficiency: Efficiency,
    /// Rows fitted.
    pub n_rows: usize,
    /// Median |error| over them.
    pub median_abs_error: f64,
}

impl SavedProfile {
    /// Writes the profile as JSON (creating the folder).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::BadFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        fs_err::write(path, text + "\n").map_err(io)
    }

    /// Reads a profile written by [`SavedProfile::save`].
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadFile`] naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}
