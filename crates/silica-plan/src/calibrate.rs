//! Efficiency factors: how far below the roofline an engine runs on a class of device, fitted on measurements.
//!
//! The speed model ([`crate::estimate`]) per token is
//! - tg: `t = Σ_class bytes_class / (eff_bw_class × BW) + KV bytes / (eff_kv × BW) + n_layer × overhead`
//!   (weights and the KV cache read once per token, each weight class by its own kernels, plus a per-layer cost
//!   of kernel launches and synchronisation);
//! - pp: `t = Σ_class F_matmul_class / (eff_fl_class × peak) + F_attention / (eff_attn × peak)`.
//!
//! Both are linear in their unknowns (`1/eff`, `overhead`), so the fit is a least-squares solve per backend that
//! minimises the *relative* error `Σ (predicted t / measured t − 1)²`. Terms the data cannot tell apart (every
//! row one type, or one depth) are tied to the first class's factor, and a per-layer overhead that comes out
//! negative is dropped.

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

/// Weight types grouped by the kernels that read them: `0` legacy blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), `1`
/// k-quants and the other super-block types (Q2_K…Q6_K, IQ*, TQ*, MXFP4), `2` floats (F32, F16, BF16).
pub const N_CLASSES: usize = 3;

/// Names of the [`N_CLASSES`] weight classes.
pub const CLASS_NAMES: [&str; N_CLASSES] = ["legacy", "k-quant", "float"];

/// The class (index into [`CLASS_NAMES`]) of a weight type.
pub fn type_class(ty: GgmlType) -> usize {
    use GgmlType::*;
    match ty {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 => 0,
        F32 | F16 | BF16 => 2,
        _ => 1,
    }
}

/// The factors of one backend class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    /// The backend.
    pub backend: Backend,
    /// Fraction of the bandwidth generation reaches reading weights of each class (`eff_bw`; legacy, k-quant,
    /// float).
    pub bandwidth: [f64; N_CLASSES],
    /// Fraction of the bandwidth reading the KV cache reaches.
    pub kv_bandwidth: f64,
    /// Fixed cost per layer per token, µs.
    pub layer_overhead_us: f64,
    /// Fraction of the peak FLOP/s the weight matrices of each class reach in prefill (`eff_fl`).
    pub flops: [f64; N_CLASSES],
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
            bandwidth: [1.0; N_CLASSES],
            kv_bandwidth: 1.0,
            layer_overhead_us: 0.0,
            flops: [1.0; N_CLASSES],
            attn_flops: 1.0,
            source: "ideal roofline".into(),
        }
    }

    /// The factors in one line.
    pub fn describe(&self) -> String {
        let per = |v: &[f64; N_CLASSES]| {
            CLASS_NAMES
                .iter()
                .zip(v)
                .map(|(n, x)| format!("{n} {x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "eff_bw {} (KV {:.3}), overhead {:.1} µs/layer; eff_fl {} (attention {:.3})",
            per(&self.bandwidth),
            self.kv_bandwidth,
            self.layer_overhead_us,
            per(&self.flops),
            self.attn_flops
        )
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
/// GPU)`; `NVIDIA RTX 4090 24GB` → `NVIDIA GeForce RTX 4090` (the explicit mapping `data/README.md` asks for:
/// the memory suffix dropped, and [`hardware::find_device`] ignores the vendor and `GeForce`).
fn table_device<'a>(table: &'a [DeviceSpec], device: &str, gpu_cores: Option<u32>) -> Result<&'a DeviceSpec> {
    let name = match gpu_cores {
        Some(c) if device.starts_with("Apple") => format!("{device} ({c}-core GPU)"),
        _ => device.trim_end_matches(" 24GB").to_owned(),
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
            (Some(bw), Some(peak)) => DeviceProfile::measured(
                r.device.clone(),
                backend,
                (r.memory_gb.unwrap_or(0.0) * 1e9) as u64,
                bw,
                peak,
                ("measured (silica hw)".into(), "measured (silica hw)".into()),
            ),
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

/// Solves `min Σᵢ (Σₖ cₖ·vᵢₖ − 1)²` by the normal equations (Gaussian elimination with partial pivoting), where
/// `vᵢₖ` sums the columns of `u` that `groups` maps to parameter `k` (`None`: the column's coefficient is 0).
/// Returns the coefficient of every column, or `None` when the system is ill-conditioned or a coefficient is not
/// positive.
#[allow(clippy::needless_range_loop)] // row operations on a small dense matrix read clearest with indices
fn solve(u: &[Vec<f64>], groups: &[Option<usize>]) -> Option<Vec<f64>> {
    let n = groups.iter().flatten().max().map_or(0, |k| k + 1);
    let v: Vec<Vec<f64>> = u
        .iter()
        .map(|row| {
            let mut v = vec![0.0; n];
            for (j, g) in groups.iter().enumerate() {
                if let Some(k) = g {
                    v[*k] += row[j];
                }
            }
            v
        })
        .collect();
    let mut a = vec![vec![0.0; n + 1]; n];
    for row in &v {
        for i in 0..n {
            for k in 0..n {
                a[i][k] += row[i] * row[k];
            }
            a[i][n] += row[i];
        }
    }
    let scale: f64 = (0..n).map(|i| a[i][i]).fold(0.0, f64::max);
    for col in 0..n {
        let piv = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        a.swap(col, piv);
        if a[col][col].abs() <= 1e-9 * scale {
            return None;
        }
        for r in 0..n {
            if r != col {
                let f = a[r][col] / a[col][col];
                for k in col..=n {
                    a[r][k] -= f * a[col][k];
                }
            }
        }
    }
    let c: Vec<f64> = (0..n).map(|i| a[i][n] / a[i][i]).collect();
    if c.iter().any(|&x| x.is_nan() || x <= 0.0) {
        return None;
    }
    Some(groups.iter().map(|g| g.map_or(0.0, |k| c[k])).collect())
}

/// Fits coefficients to the columns of `u` (relative-error least squares, see [`solve`]): each weight class
/// (columns `0..N_CLASSES`) with data gets its own, classes without data share the first class that has data;
/// when the system cannot be solved, `merges` are applied in order (`(column, Some(target))` ties a column to
/// another's coefficient, `(column, None)` drops it) until it can.
fn fit_columns(u: &[Vec<f64>], merges: &[(usize, Option<usize>)]) -> Vec<f64> {
    let n_cols = u.first().map_or(0, Vec::len);
    // A weight class needs a fifth of some row's weight term to be told apart (the Q6_K output matrix of a Q4_0
    // file alone is not enough), the KV / attention column a twentieth (a depth, not tg128's 64 tokens); the
    // per-layer column any data.
    let has = |j: usize| {
        u.iter().any(|r| {
            let classes: f64 = r[..N_CLASSES.min(r.len())].iter().sum();
            let share = match j {
                j if j < N_CLASSES => 0.2,
                j if j == N_CLASSES => 0.05,
                _ => 0.0,
            };
            r[j] > 0.0 && r[j] >= share * classes
        })
    };
    let anchor = (0..N_CLASSES).find(|&j| has(j)).unwrap_or(0);
    // Every column with data gets its own coefficient; one without (a class absent from the rows, no depth) is
    // tied to the anchor's.
    let mut groups: Vec<Option<usize>> = (0..n_cols)
        .map(|j| Some(if has(j) { j } else { anchor }))
        .collect();
    let renumber = |groups: &[Option<usize>]| -> Vec<Option<usize>> {
        let mut ids: Vec<usize> = groups.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        groups
            .iter()
            .map(|g| g.map(|k| ids.iter().position(|&i| i == k).unwrap_or(0)))
            .collect()
    };
    let mut steps = merges.iter();
    loop {
        if let Some(c) = solve(u, &renumber(&groups)) {
            return c;
        }
        match steps.next() {
            Some(&(col, target)) => {
                let to = target.map(|t| groups[t].unwrap_or(anchor));
                let from = groups[col];
                for g in groups.iter_mut() {
                    if *g == from && from.is_some() {
                        *g = to;
                    }
                }
                if to.is_none() {
                    groups[col] = None;
                }
            }
            None => {
                // One efficiency for everything (and no term a merge drops).
                let all: Vec<Option<usize>> = (0..n_cols)
                    .map(|j| (!merges.contains(&(j, None))).then_some(0))
                    .collect();
                return solve(u, &all).unwrap_or_else(|| vec![1.0; n_cols]);
            }
        }
    }
}

/// Fits one backend's factors on `obs` (rows of other backends ignored) and predicts every row with them.
///
/// tg columns: weight bytes per class and KV bytes, each ÷ bandwidth, and `n_layer` (µs); pp columns: matmul
/// FLOPs per class and attention FLOPs, each ÷ peak. A column the data cannot separate is tied: KV, float and
/// k-quant reads to the first class, then the per-layer overhead dropped (tg); attention, float and k-quant to
/// the first class (pp).
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
            let bw = o.profile.bandwidth_gbps * 1e9;
            let mut u: Vec<f64> = s.tg_weight_bytes.iter().map(|b| b / bw / t).collect();
            u.push(s.tg_kv_bytes / bw / t);
            u.push(o.model.n_layer as f64 * 1e-6 / t);
            tg.push(u);
        } else if let Some(peak) = o.profile.peak_tflops {
            let peak = peak * 1e12;
            let mut u: Vec<f64> = s.pp_matmul_flops.iter().map(|f| f / peak / t).collect();
            u.push(s.pp_attn_flops / peak / t);
            pp.push(u);
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
    let (kv, layer) = (N_CLASSES, N_CLASSES + 1);
    if !tg.is_empty() {
        let c = fit_columns(&tg, &[(kv, Some(0)), (2, Some(0)), (1, Some(0)), (layer, None)]);
        eff.bandwidth = std::array::from_fn(|k| 1.0 / c[k]);
        eff.kv_bandwidth = 1.0 / c[kv];
        eff.layer_overhead_us = c[layer];
    }
    if !pp.is_empty() {
        let c = fit_columns(&pp, &[(kv, Some(0)), (2, Some(0)), (1, Some(0))]);
        eff.flops = std::array::from_fn(|k| 1.0 / c[k]);
        eff.attn_flops = 1.0 / c[kv];
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

/// The factors `fits` hold for `backend`.
pub fn efficiency_for(fits: &[Fit], backend: Backend) -> Option<&Efficiency> {
    fits.iter().map(|f| &f.efficiency).find(|e| e.backend == backend)
}

/// The built-in factors of `backend`.
///
/// # Errors
/// [`Error::NoCalibration`] for a backend without rows.
pub fn builtin_efficiency(backend: Backend) -> Result<Efficiency> {
    efficiency_for(&builtin_fits()?, backend)
        .cloned()
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
