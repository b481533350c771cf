//! The memory model, the verdict, and the roofline speed model. Every figure comes with a line of `explain`
//! that gives its formula and inputs.

use serde::Serialize;
use silica_gguf::GgmlType;

use crate::calibrate::{CLASS_NAMES, Efficiency, N_CLASSES};
use crate::hardware::{Backend, DeviceProfile, Link};
use crate::model::{ModelDesc, TensorDesc};
use crate::{Error, GIB, Result};

/// How a model is spread over several identical devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Consecutive layers per device (llama.cpp `--split-mode layer`, pipeline): one token visits every device
    /// in turn, passing its activations over the link at each boundary.
    Layer,
    /// Every matrix split by rows over the devices (llama.cpp `--split-mode row`, vLLM tensor parallel): each
    /// device reads 1/N of the weights per token, with two all-reduces per layer over the link.
    Row,
}

/// Host memory available for layers kept on the CPU when a GPU cannot hold them all.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HostMemory {
    /// Bytes the CPU side may use.
    pub memory_bytes: u64,
    /// Its bandwidth, GB/s.
    pub bandwidth_gbps: f64,
}

/// What to plan: context, batch, cache types, the test sizes to predict, and how devices are combined.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanParams {
    /// `n_ctx`, tokens.
    pub n_ctx: u64,
    /// `n_ubatch`, tokens.
    pub n_ubatch: u64,
    /// KV cache K type (`-ctk`).
    #[serde(serialize_with = "crate::names::ggml_type")]
    pub type_k: GgmlType,
    /// KV cache V type (`-ctv`).
    #[serde(serialize_with = "crate::names::ggml_type")]
    pub type_v: GgmlType,
    /// Flash attention (llama.cpp's default `auto` turns it on where supported).
    pub flash_attn: bool,
    /// Prompt tokens of the pp test (`-p`).
    pub n_prompt: u64,
    /// Generated tokens of the tg test (`-n`).
    pub n_gen: u64,
    /// Tokens already in the cache (`-d`).
    pub n_depth: u64,
    /// Number of identical devices.
    pub n_devices: u32,
    /// How several devices share the model.
    pub split: Split,
    /// The link between devices, and between a GPU and the host for offloaded layers.
    pub link: Link,
    /// Host memory for CPU offload of a discrete GPU (`None`: offload not considered). Unified-memory devices
    /// offload into the memory their GPU may not wire instead.
    pub host: Option<HostMemory>,
}

/// One device's share of the memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceUse {
    /// `GPU 0`, `CPU`...
    pub device: String,
    /// Layers it holds.
    pub n_layers: u32,
    /// Weight bytes.
    pub weights_bytes: u64,
    /// KV cache bytes.
    pub kv_bytes: u64,
    /// Compute buffer bytes.
    pub compute_bytes: u64,
    /// Sum of the three.
    pub total_bytes: u64,
    /// What it may hold.
    pub usable_bytes: u64,
}

impl DeviceUse {
    /// Usable minus total: positive when it fits.
    pub fn margin_bytes(&self) -> i64 {
        self.usable_bytes as i64 - self.total_bytes as i64
    }
}

/// The memory model's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// All weights, bytes.
    pub weights_bytes: u64,
    /// The whole KV cache, bytes.
    pub kv_bytes: u64,
    /// KV cells of full-attention layers (`n_ctx` padded to 256).
    pub kv_cells: u64,
    /// KV cells of sliding-window layers (0 without any).
    pub kv_cells_swa: u64,
    /// Compute buffer per device, bytes.
    pub compute_bytes: u64,
    /// Per device, then the host's share when layers are offloaded or the embedding is kept there.
    pub devices: Vec<DeviceUse>,
}

/// Will it fit?
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Everything fits on the device(s), with this much to spare.
    Fits {
        /// Smallest margin over the devices, bytes.
        margin_bytes: u64,
    },
    /// The device(s) lack `shortfall_bytes`; with `n_layers_cpu` layers on the CPU it runs.
    FitsWithOffload {
        /// Bytes missing on the device without offload.
        shortfall_bytes: u64,
        /// Layers kept on the CPU (llama.cpp `-ngl n_layer − this`).
        n_layers_cpu: u32,
        /// Host memory margin, bytes.
        host_margin_bytes: u64,
    },
    /// It does not fit, by this much.
    DoesNotFit {
        /// Bytes missing (on the device, or the host when offloading), bytes.
        shortfall_bytes: u64,
    },
}

impl Verdict {
    /// Whether the model can run (on the device, or with offload).
    pub fn runs(&self) -> bool {
        !matches!(self, Verdict::DoesNotFit { .. })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match *self {
            Verdict::Fits { margin_bytes } => format!("fits ({:.1} GiB to spare)", crate::gib(margin_bytes)),
            Verdict::FitsWithOffload {
                shortfall_bytes,
                n_layers_cpu,
                host_margin_bytes,
            } => format!(
                "does not fit on the GPU (short by {:.1} GiB); fits with {n_layers_cpu} layers on the CPU ({:.1} GiB host memory to spare)",
                crate::gib(shortfall_bytes),
                crate::gib(host_margin_bytes)
            ),
            Verdict::DoesNotFit { shortfall_bytes } => {
                format!("does not fit (short by {:.1} GiB)", crate::gib(shortfall_bytes))
            }
        }
    }
}

/// Predicted speeds, llama-bench's tests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Speed {
    /// `pp512` (with ` @ d…` at depth).
    pub pp_test: String,
    /// Predicted prompt tokens/s; `None` without a peak FLOP/s.
    pub pp_tps: Option<f64>,
    /// `tg128`.
    pub tg_test: String,
    /// Predicted generated tokens/s.
    pub tg_tps: f64,
    /// Weight bytes read per generated token, per weight class (legacy, k-quant, float).
    pub tg_weight_bytes: [f64; N_CLASSES],
    /// KV cache bytes read per generated token at the average depth.
    pub tg_kv_bytes: f64,
    /// Weight-matrix FLOPs per prompt token, per weight class.
    pub pp_matmul_flops: [f64; N_CLASSES],
    /// Attention FLOPs per prompt token at the average depth.
    pub pp_attn_flops: f64,
}

/// A plan: the memory per device, the verdict, the predicted speed, and how each was computed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The model.
    pub model: String,
    /// Its file type.
    pub file_type: Option<String>,
    /// The device.
    pub device: DeviceProfile,
    /// The parameters.
    pub params: PlanParams,
    /// The efficiency factors used.
    pub efficiency: Efficiency,
    /// Memory.
    pub memory: MemoryPlan,
    /// The verdict.
    pub verdict: Verdict,
    /// Speeds, when it runs.
    pub speed: Option<Speed>,
    /// Formulas and inputs, one line each.
    pub explain: Vec<String>,
}

/// `x` rounded up to a multiple of 256 (llama.cpp pads KV cache sizes to 256 cells).
fn pad256(x: u64) -> u64 {
    x.div_ceil(256) * 256
}

/// `b` bytes as `1.23 GiB`, as the explanations print sizes.
fn gib_text(b: u64) -> String {
    gib_text_f(b as f64)
}

/// [`gib_text`] of a fractional byte figure (bytes read per token).
fn gib_text_f(b: f64) -> String {
    format!("{:.2} GiB", b / GIB)
}

/// Per layer: KV cells, and KV bytes per cell.
struct KvLayout {
    cells: Vec<u64>,
    bytes_per_cell: u64,
    cells_full: u64,
    cells_swa: u64,
}

fn kv_layout(m: &ModelDesc, p: &PlanParams) -> Result<KvLayout> {
    let row = |ty: GgmlType, n: u64, what: &'static str| {
        ty.row_bytes(n).ok_or_else(|| Error::Invalid {
            what,
            reason: format!(
                "{} rows of {n} elements are not whole {} blocks",
                ty.name(),
                ty.block_len()
            ),
        })
    };
    let bytes_per_cell =
        row(p.type_k, m.n_embd_k_gqa(), "type_k")? + row(p.type_v, m.n_embd_v_gqa(), "type_v")?;
    let cells_full = pad256(p.n_ctx);
    // llama_kv_cache_iswa: SWA layers keep GGML_PAD(min(n_ctx, n_swa·n_seq + n_ubatch), 256) cells.
    let cells_swa = pad256(p.n_ctx.min(m.n_swa + p.n_ubatch));
    let any_swa = m.swa_layers.iter().any(|&s| s);
    let cells = m
        .swa_layers
        .iter()
        .map(|&swa| if swa { cells_swa } else { cells_full })
        .collect();
    Ok(KvLayout {
        cells,
        bytes_per_cell,
        cells_full,
        cells_swa: if any_swa { cells_swa } else { 0 },
    })
}

/// Compute buffer bytes of one device: `4·n_ubatch·(n_vocab + 2·n_ff) + n_ubatch·n_ctx·(2 with flash attention,
/// else 4·(n_head + 1))`. A fit to the CPU compute buffer sizes llama.cpp (build 11434) reports for SmolLM2 135M,
/// Llama 3.2 1B, Gemma 3 270M and Llama 2 7B shapes at n_ctx 4096 and 32768, n_ubatch 512, flash attention on
/// and off (within 5%): the logits and the FFN activations of one ubatch, plus the F16 mask (flash attention) or
/// the F32 attention scores of all heads.
pub fn compute_bytes(m: &ModelDesc, p: &PlanParams) -> u64 {
    4 * p.n_ubatch * (m.n_vocab + 2 * m.n_ff) + p.n_ubatch * pad256(p.n_ctx) * attn_bytes_per_cell(m, p)
}

/// The attention term of [`compute_bytes`], bytes per ubatch token per context cell: 2 for the F16 mask with
/// flash attention, else `4·(n_head + 1)` for the F32 scores of every head.
fn attn_bytes_per_cell(m: &ModelDesc, p: &PlanParams) -> u64 {
    if p.flash_attn { 2 } else { 4 * (m.n_head + 1) }
}

/// Plans `model` on `n_devices` × `device` with efficiencies `eff` (and `cpu_eff` for offloaded layers).
///
/// # Errors
/// [`Error::Invalid`] for a zero context, batch or device count, or KV types whose blocks do not divide a row.
pub fn plan(
    model: &ModelDesc,
    device: &DeviceProfile,
    eff: &Efficiency,
    cpu_eff: &Efficiency,
    p: &PlanParams,
) -> Result<Plan> {
    for (what, v) in [
        ("n_ctx", p.n_ctx),
        ("n_ubatch", p.n_ubatch),
        ("n_devices", p.n_devices as u64),
    ] {
        if v == 0 {
            return Err(Error::Invalid {
                what,
                reason: "must be at least 1".into(),
            });
        }
    }
    let mut ex = Vec::new();
    let n_layer = model.n_layer;
    let kv = kv_layout(model, p)?;
    let kv_layer: Vec<u64> = kv.cells.iter().map(|c| c * kv.bytes_per_cell).collect();
    let kv_bytes: u64 = kv_layer.iter().sum();
    let w_layer: Vec<u64> = (0..n_layer).map(|il| model.layer_bytes(il)).collect();
    let weights_bytes = model.weight_bytes();
    let embd = model.token_embd_bytes();
    let other = weights_bytes - w_layer.iter().sum::<u64>() - embd; // output, output_norm, rope_freqs
    let compute = compute_bytes(model, p);
    let gpu = device.backend != Backend::Cpu;
    // llama.cpp keeps token_embd in host memory; a CPU or unified-memory device holds it in the same pool.
    let embd_on_device = !gpu || device.unified_memory;

    ex.push(format!(
        "weights: {} = Σ bytes of {} tensors ({}, {:.2} bits/weight); token_embd {} (kept on the host by llama.cpp: {})",
        gib_text(weights_bytes),
        model.tensors.len(),
        model.file_type.map_or("mixed types", |f| f.name()),
        model.bits_per_weight(),
        gib_text(embd),
        if embd_on_device { "same memory here" } else { "not on the GPU" },
    ));
    ex.push(format!(
        "KV cache: {} = Σ layers cells × (n_embd_k_gqa {} × {} + n_embd_v_gqa {} × {}) bytes; {} cells (n_ctx {} padded to 256){}",
        gib_text(kv_bytes),
        model.n_embd_k_gqa(),
        p.type_k.name(),
        model.n_embd_v_gqa(),
        p.type_v.name(),
        kv.cells_full,
        p.n_ctx,
        if kv.cells_swa > 0 {
            format!(
                ", {} sliding-window layers with {} cells (min(n_ctx, n_swa {} + n_ubatch), padded, as llama_kv_cache_iswa)",
                model.swa_layers.iter().filter(|&&s| s).count(),
                kv.cells_swa,
                model.n_swa
            )
        } else {
            String::new()
        }
    ));
    ex.push(format!(
        "compute buffer: {} per device = 4 B × n_ubatch {} × (n_vocab {} + 2·n_ff {}) + n_ubatch × n_ctx × {} B ({}; a fit to llama.cpp's reported buffers)",
        gib_text(compute),
        p.n_ubatch,
        model.n_vocab,
        model.n_ff,
        attn_bytes_per_cell(model, p),
        if p.flash_attn { "flash attention: F16 mask" } else { "no flash attention: F32 scores of every head" },
    ));
    ex.push(format!(
        "usable: {} per device = {} × {:.0}% ({}) − overhead {} ({})",
        gib_text(device.usable_bytes()),
        gib_text(device.memory_bytes),
        device.usable_fraction * 100.0,
        device.usable_source,
        gib_text(device.overhead_bytes),
        device.overhead_source
    ));

    let usable = device.usable_bytes();
    // The devices' shares when the first `k` layers stay on the host (llama.cpp's `-ngl n_layer − k`).
    let assign = |k: u32| -> Vec<DeviceUse> {
        let n_dev = p.n_devices;
        let n_gpu_layers = n_layer - k;
        let mut first = k;
        (0..n_dev)
            .map(|d| {
                let n = n_gpu_layers / n_dev + u32::from(d < n_gpu_layers % n_dev);
                let (w, kvb) = match p.split {
                    Split::Layer => {
                        let r = first as usize..(first + n) as usize;
                        first += n;
                        let last = d + 1 == n_dev;
                        (
                            w_layer[r.clone()].iter().sum::<u64>() + if last { other } else { 0 },
                            kv_layer[r].iter().sum::<u64>(),
                        )
                    }
                    Split::Row => {
                        let r = k as usize..n_layer as usize;
                        (
                            (w_layer[r.clone()].iter().sum::<u64>() + other) / n_dev as u64,
                            kv_layer[r].iter().sum::<u64>() / n_dev as u64,
                        )
                    }
                };
                let w = w + if embd_on_device && d == 0 && k == 0 {
                    embd
                } else {
                    0
                };
                DeviceUse {
                    device: if n_dev == 1 {
                        device.name.clone()
                    } else {
                        format!("{} #{d}", device.name)
                    },
                    n_layers: if p.split == Split::Row { n_gpu_layers } else { n },
                    weights_bytes: w,
                    kv_bytes: kvb,
                    compute_bytes: compute,
                    total_bytes: w + kvb + compute,
                    usable_bytes: usable,
                }
            })
            .collect()
    };
    let worst = |devs: &[DeviceUse]| devs.iter().map(DeviceUse::margin_bytes).min().unwrap_or(0);
    let mut devices = assign(0);
    let shortfall = (-worst(&devices)).max(0) as u64;
    // Host memory for offloaded layers: given, or on unified memory what the GPU may not wire, less 4 GiB for the
    // OS (an assumption).
    let host = match (p.host, gpu, device.unified_memory) {
        (_, false, _) => None,
        (Some(h), true, false) => Some(h),
        (_, true, true) if p.n_devices == 1 => Some(HostMemory {
            memory_bytes: (device.memory_bytes
                - (device.memory_bytes as f64 * device.usable_fraction) as u64)
                .saturating_sub(4 << 30),
            bandwidth_gbps: device.bandwidth_gbps,
        }),
        _ => None,
    };
    let host_use = |k: u32| -> DeviceUse {
        let r = 0..k as usize;
        let w = w_layer[r.clone()].iter().sum::<u64>() + if embd_on_device { 0 } else { embd };
        let kvb: u64 = kv_layer[r].iter().sum();
        // A host compute buffer for the offloaded layers: an assumption of a quarter of the GPU's.
        let c = if k > 0 { compute / 4 } else { 0 };
        DeviceUse {
            device: "CPU (host)".into(),
            n_layers: k,
            weights_bytes: w,
            kv_bytes: kvb,
            compute_bytes: c,
            total_bytes: w + kvb + c,
            usable_bytes: host.map_or(0, |h| h.memory_bytes),
        }
    };
    let mut n_layers_cpu = 0u32;
    // The host's share when layers are offloaded.
    let mut host_row = None;
    let verdict = if shortfall == 0 {
        Verdict::Fits {
            margin_bytes: worst(&devices) as u64,
        }
    } else if let Some(h) = host {
        // The fewest layers on the host that let every device fit.
        let found = (1..=n_layer)
            .map(|k| (k, assign(k)))
            .find(|(_, devs)| worst(devs) >= 0);
        match found {
            Some((k, devs)) => {
                let row = host_use(k);
                if row.total_bytes <= h.memory_bytes {
                    ex.push(format!(
                        "offload: the first {k} layers to the host (llama.cpp -ngl {}); host compute buffer assumed 1/4 of the GPU's",
                        n_layer - k
                    ));
                    let host_margin_bytes = h.memory_bytes - row.total_bytes;
                    n_layers_cpu = k;
                    devices = devs;
                    host_row = Some(row);
                    Verdict::FitsWithOffload {
                        shortfall_bytes: shortfall,
                        n_layers_cpu: k,
                        host_margin_bytes,
                    }
                } else {
                    Verdict::DoesNotFit {
                        shortfall_bytes: row.total_bytes - h.memory_bytes,
                    }
                }
            }
            None => Verdict::DoesNotFit {
                shortfall_bytes: (-worst(&assign(n_layer))).max(0) as u64,
            },
        }
    } else {
        if gpu {
            ex.push(
                "CPU offload not considered: give --host-memory GB (and --host-bw GB/s) to plan it".into(),
            );
        }
        Verdict::DoesNotFit {
            shortfall_bytes: shortfall,
        }
    };
    // The host's row: its offloaded layers, or on a discrete GPU the token embedding llama.cpp keeps there.
    match host_row {
        Some(row) => devices.push(row),
        None if gpu && !embd_on_device => devices.push(host_use(0)),
        None => {}
    }

    let speed = verdict
        .runs()
        .then(|| speed(model, device, eff, cpu_eff, p, &kv, n_layers_cpu, &mut ex));
    Ok(Plan {
        model: model.name.clone(),
        file_type: model.file_type.map(|f| f.name().to_owned()),
        device: device.clone(),
        params: p.clone(),
        efficiency: eff.clone(),
        memory: MemoryPlan {
            weights_bytes,
            kv_bytes,
            kv_cells: kv.cells_full,
            kv_cells_swa: kv.cells_swa,
            compute_bytes: compute,
            devices,
        },
        verdict,
        speed,
        explain: ex,
    })
}

/// The speed of `model` on one `device` with everything on it, whether or not it fits (what calibration compares
/// with measurements).
///
/// # Errors
/// As [`plan`].
pub fn predict(model: &ModelDesc, device: &DeviceProfile, eff: &Efficiency, p: &PlanParams) -> Result<Speed> {
    let kv = kv_layout(model, p)?;
    let single = PlanParams {
        n_devices: 1,
        ..p.clone()
    };
    Ok(speed(model, device, eff, eff, &single, &kv, 0, &mut Vec::new()))
}

/// KV bytes read per token at `depth`: every layer reads its cached cells (at most its cache size).
fn kv_read_bytes(kv: &KvLayout, depth: f64, layers: std::ops::Range<usize>) -> f64 {
    kv.cells[layers]
        .iter()
        .map(|&c| depth.min(c as f64) * kv.bytes_per_cell as f64)
        .sum()
}

/// Attention FLOPs per token at context `depth`: QKᵀ and PV, 2 FLOPs per multiply-add, `n_head · n_embd_head_k`
/// wide, over the positions each layer sees.
fn attn_flops(m: &ModelDesc, kv: &KvLayout, depth: f64) -> f64 {
    let per_pos = 2.0 * 2.0 * (m.n_head * m.n_embd_head_k) as f64;
    kv.cells.iter().map(|&c| per_pos * depth.min(c as f64)).sum()
}

/// Seconds to read `bytes` of each weight class at `bw` bytes/s with the class factors `eff`.
fn read_s(bytes: &[f64; N_CLASSES], eff: &[f64; N_CLASSES], bw: f64) -> f64 {
    bytes.iter().zip(eff).map(|(b, e)| b / (e * bw)).sum()
}

#[allow(clippy::too_many_arguments)]
fn speed(
    m: &ModelDesc,
    dev: &DeviceProfile,
    eff: &Efficiency,
    cpu_eff: &Efficiency,
    p: &PlanParams,
    kv: &KvLayout,
    n_cpu: u32,
    ex: &mut Vec<String>,
) -> Speed {
    let n_layer = m.n_layer as usize;
    let n = p.n_devices as f64;
    let bw = dev.bandwidth_gbps * 1e9;
    let link_bw = p.link.bandwidth_gbps * 1e9;
    let link_lat = p.link.latency_us * 1e-6;
    let depth_tg = p.n_depth as f64 + p.n_gen as f64 / 2.0;
    let on_cpu = |t: &TensorDesc| t.layer().is_some_and(|il| il < n_cpu);
    let weights_tok = m.bytes_per_token_by_class(|_| true);
    let cpu_w = m.bytes_per_token_by_class(on_cpu);
    let gpu_w: [f64; N_CLASSES] = std::array::from_fn(|c| weights_tok[c] - cpu_w[c]);
    let kv_tok = kv_read_bytes(kv, depth_tg, 0..n_layer);
    let kv_cpu = kv_read_bytes(kv, depth_tg, 0..n_cpu as usize);
    let gpu_kv = kv_tok - kv_cpu;
    let ov = eff.layer_overhead_us * 1e-6;
    let act = m.n_embd as f64 * 4.0; // one token's F32 activations
    let allreduce = |bytes: f64| 2.0 * (n - 1.0) / n * bytes / link_bw + 2.0 * (n - 1.0) * link_lat;
    let t_read = read_s(&gpu_w, &eff.bandwidth, bw) + gpu_kv / (eff.kv_bandwidth * bw);
    let n_gpu_layers = (n_layer - n_cpu as usize) as f64;
    let (mut t_tg, how) = match p.split {
        Split::Row if p.n_devices > 1 => (
            t_read / n + n_gpu_layers * ov + 2.0 * n_gpu_layers * allreduce(act),
            format!(
                "reads / {n} devices + n_layer × overhead + 2·n_layer all-reduces over {}",
                p.link.title
            ),
        ),
        _ => (
            t_read + n_gpu_layers * ov + (n - 1.0) * (act / link_bw + link_lat),
            if p.n_devices > 1 {
                format!(
                    "reads + n_layer × overhead + {} activation hops over {}",
                    p.n_devices - 1,
                    p.link.title
                )
            } else {
                "reads + n_layer × overhead".to_owned()
            },
        ),
    };
    if n_cpu > 0 {
        let host_bw = p.host.map_or(dev.bandwidth_gbps, |h| h.bandwidth_gbps) * 1e9;
        let t_cpu = read_s(&cpu_w, &cpu_eff.bandwidth, host_bw)
            + kv_cpu / (cpu_eff.kv_bandwidth * host_bw)
            + n_cpu as f64 * cpu_eff.layer_overhead_us * 1e-6;
        ex.push(format!(
            "tg on the CPU: {:.2} ms/token for {n_cpu} layers ({} of weights at {:.0} GB/s host bandwidth, CPU factors: {})",
            t_cpu * 1e3,
            gib_text_f(cpu_w.iter().sum::<f64>() + kv_cpu),
            host_bw / 1e9,
            cpu_eff.describe()
        ));
        t_tg += t_cpu + 2.0 * (act / link_bw + link_lat);
    }
    let tg_tps = 1.0 / t_tg;
    let per_class = |v: &[f64; N_CLASSES]| {
        CLASS_NAMES
            .iter()
            .zip(v)
            .filter(|(_, b)| **b > 0.0)
            .map(|(c, b)| format!("{c} {}", gib_text_f(*b)))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    ex.push(format!(
        "tg{} t/s = 1 / t, t = {how}: weights ({}) each / (eff_bw[class] × {:.0} GB/s) + KV {} at depth {depth_tg:.0} / (eff_kv × BW) + {n_gpu_layers} × {:.1} µs = {:.2} ms → {tg_tps:.2} t/s (factors: {}; {})",
        p.n_gen,
        per_class(&gpu_w),
        dev.bandwidth_gbps,
        gib_text_f(gpu_kv),
        eff.layer_overhead_us,
        t_tg * 1e3,
        eff.describe(),
        eff.source
    ));

    let depth_pp = p.n_depth as f64 + p.n_prompt as f64 / 2.0;
    let f_mm: [f64; N_CLASSES] = m.matmul_params_by_class().map(|x| 2.0 * x);
    let f_attn = attn_flops(m, kv, depth_pp);
    let pp_tps = dev.peak_tflops.map(|peak| {
        let peak = peak * 1e12;
        let mut t_compute = read_s(&f_mm, &eff.flops, peak) + f_attn / (eff.attn_flops * peak);
        let ubatch = p.n_ubatch.min(p.n_prompt.max(1)) as f64;
        let t_mem = (read_s(&weights_tok, &eff.bandwidth, bw) + n_layer as f64 * ov) / ubatch;
        if p.n_devices > 1 {
            t_compute = match p.split {
                Split::Row => t_compute / n + 2.0 * n_layer as f64 * allreduce(act * ubatch) / ubatch,
                Split::Layer => t_compute + (n - 1.0) * (act / link_bw + link_lat / ubatch),
            };
        }
        // Layers on the CPU: llama.cpp copies their weights to the GPU for large batches (op offload), once per
        // ubatch.
        let t_copy = cpu_w.iter().sum::<f64>() / link_bw / ubatch;
        let t = t_compute.max(t_mem) + t_copy;
        ex.push(format!(
            "pp{} t/s = 1 / max(compute, memory){}: compute = {:.2} GFLOP of matrices / (eff_fl[class] × {:.2} TFLOP/s) + {:.3} GFLOP attention at depth {depth_pp:.0} / (eff_attn × peak) = {:.3} ms; memory = weight reads / n_ubatch {ubatch} = {:.3} ms → {:.1} t/s (peak: {})",
            p.n_prompt,
            if n_cpu > 0 { " + offloaded weights over the link per ubatch" } else { "" },
            f_mm.iter().sum::<f64>() / 1e9,
            peak / 1e12,
            f_attn / 1e9,
            t_compute * 1e3,
            t_mem * 1e3,
            1.0 / t,
            dev.peak_source
        ));
        1.0 / t
    });
    if pp_tps.is_none() {
        ex.push(format!("pp: not predicted: {} (give --tflops)", dev.peak_source));
    }
    let at = |d: u64| if d > 0 { format!(" @ d{d}") } else { String::new() };
    Speed {
        pp_test: format!("pp{}{}", p.n_prompt, at(p.n_depth)),
        pp_tps,
        tg_test: format!("tg{}{}", p.n_gen, at(p.n_depth)),
        tg_tps,
        tg_weight_bytes: weights_tok,
        tg_kv_bytes: kv_tok,
        pp_matmul_flops: f_mm,
        pp_attn_flops: f_attn,
    }
}
