//! Devices and links: the built-in table of spec-sheet figures, lookup by name, and the [`DeviceProfile`] an
//! estimate runs on.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, closest};

/// The built-in device table: a copy of `shared/data/hardware-specs.csv` (vendor spec sheets; see
/// `data/README.md` for every column's meaning and caveats).
pub const HARDWARE_SPECS_CSV: &str = include_str!("../data/hardware-specs.csv");

/// The class of engine backend an efficiency factor is fitted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Apple GPUs through Metal.
    Metal,
    /// NVIDIA GPUs through CUDA.
    Cuda,
    /// Any GPU through Vulkan (AMD GPUs default to it: the calibration data has no ROCm rows).
    Vulkan,
    /// The CPU.
    Cpu,
}

impl Backend {
    /// All backends.
    pub const ALL: [Backend; 4] = [Backend::Metal, Backend::Cuda, Backend::Vulkan, Backend::Cpu];

    /// The name llama-bench's `backends` field uses.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Metal => "Metal",
            Backend::Cuda => "CUDA",
            Backend::Vulkan => "Vulkan",
            Backend::Cpu => "CPU",
        }
    }

    /// Parses a backend name, case-insensitively.
    ///
    /// # Errors
    /// [`Error::Unknown`] listing the backends.
    pub fn parse(name: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::Unknown {
                what: "backend",
                name: name.to_owned(),
                closest: closest(name, Backend::ALL.map(Backend::name), 4),
            })
    }

    /// The default backend for a vendor's GPUs.
    pub fn for_vendor(vendor: &str) -> Backend {
        match vendor {
            "Apple" => Backend::Metal,
            "NVIDIA" => Backend::Cuda,
            _ => Backend::Vulkan,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the device table, as published.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceSpec {
    /// Device name as the table spells it.
    pub name: String,
    /// `Apple`, `NVIDIA` or `AMD`.
    pub vendor: String,
    /// Memory configurations sold, GB (10⁹ bytes, as vendors count).
    pub memory_gb_options: Vec<f64>,
    /// Theoretical peak memory bandwidth, GB/s.
    pub bandwidth_gbps: f64,
    /// GPU cores (Apple), CUDA cores (NVIDIA) or compute units (AMD).
    pub gpu_cores: Option<u32>,
    /// FP16 TFLOPS (NVIDIA: dense tensor cores; Apple: shader).
    pub fp16_tflops: Option<f64>,
    /// FP32 TFLOPS (shader).
    pub fp32_tflops: Option<f64>,
    /// TDP / TGP, W.
    pub tdp_w: Option<f64>,
    /// Release, `YYYY-MM` (once `YYYY-Qn`).
    pub release: String,
}

impl DeviceSpec {
    /// Whether the device is sold with `gb` GB of memory (within half a GB of one of `memory_gb_options`).
    pub fn sold_with(&self, gb: f64) -> bool {
        self.memory_gb_options.iter().any(|o| (o - gb).abs() < 0.5)
    }
}

#[derive(Deserialize)]
struct SpecRow {
    device: String,
    vendor: String,
    memory_gb_options: String,
    bandwidth_gbps: f64,
    gpu_cores: Option<u32>,
    fp16_tflops: Option<f64>,
    fp32_tflops: Option<f64>,
    tdp_w: Option<f64>,
    release: String,
}

/// Parses a device table in the columns of `shared/data/hardware-specs.csv` (extra columns ignored).
///
/// # Errors
/// [`Error::BadTable`] naming `table` and the line.
pub fn parse_specs(csv_text: &str, table: &str) -> Result<Vec<DeviceSpec>> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in rdr.deserialize::<SpecRow>().enumerate() {
        let bad = |reason: String| Error::BadTable {
            table: table.to_owned(),
            line: i + 2,
            reason,
        };
        let r = row.map_err(|e| bad(e.to_string()))?;
        let memory_gb_options = r
            .memory_gb_options
            .split(';')
            .map(|m| {
                m.trim()
                    .parse::<f64>()
                    .map_err(|e| bad(format!("memory_gb_options `{m}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if r.bandwidth_gbps <= 0.0 {
            return Err(bad("bandwidth_gbps must be positive".into()));
        }
        out.push(DeviceSpec {
            name: r.device,
            vendor: r.vendor,
            memory_gb_options,
            bandwidth_gbps: r.bandwidth_gbps,
            gpu_cores: r.gpu_cores,
            fp16_tflops: r.fp16_tflops,
            fp32_tflops: r.fp32_tflops,
            tdp_w: r.tdp_w,
            release: r.release,
        });
    }
    Ok(out)
}

/// The built-in device table.
///
/// # Errors
/// [`Error::BadTable`] if the built-in copy is malformed (a test parses it).
pub fn device_table() -> Result<Vec<DeviceSpec>> {
    parse_specs(HARDWARE_SPECS_CSV, "built-in hardware-specs.csv")
}

/// A name reduced for matching: lowercase letters and digits, without vendor and filler words
/// (`NVIDIA GeForce RTX 4090` → `rtx4090`, `Apple M1 (7-core GPU)` → `m17`).
fn key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            !matches!(
                *w,
                "nvidia" | "geforce" | "apple" | "amd" | "core" | "gpu" | "the"
            )
        })
        .collect()
}

/// Finds a device by name: exact (case-insensitive) name, else a unique device whose reduced name
/// (`rtx4090`, `m4max40`) equals or starts with the query's, keeping only devices sold with `memory_gb` when it
/// is given (so `M4 Max` with 128 GB picks the 40-core part).
///
/// # Errors
/// [`Error::Unknown`] with the closest names, or [`Error::Ambiguous`] listing the matches.
pub fn find_device<'a>(
    table: &'a [DeviceSpec],
    query: &str,
    memory_gb: Option<f64>,
) -> Result<&'a DeviceSpec> {
    if let Some(d) = table.iter().find(|d| d.name.eq_ignore_ascii_case(query)) {
        return Ok(d);
    }
    let q = key(query);
    let sells = |d: &DeviceSpec| memory_gb.is_none_or(|m| d.sold_with(m));
    let exact: Vec<&DeviceSpec> = table.iter().filter(|d| key(&d.name) == q && sells(d)).collect();
    let found: Vec<&DeviceSpec> = if exact.is_empty() {
        table
            .iter()
            .filter(|d| !q.is_empty() && key(&d.name).starts_with(&q) && sells(d))
            .collect()
    } else {
        exact
    };
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::Unknown {
            what: "device",
            name: query.to_owned(),
            closest: closest(query, table.iter().map(|d| d.name.as_str()), 4),
        }),
        many => Err(Error::Ambiguous {
            name: query.to_owned(),
            matches: many
                .iter()
                .map(|d| format!("{} ({} GB)", d.name, join_gb(&d.memory_gb_options)))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

fn join_gb(v: &[f64]) -> String {
    v.iter().map(|m| format!("{m}")).collect::<Vec<_>>().join("/")
}

/// What an estimate needs to know about one device, each figure with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Display name.
    pub name: String,
    /// The backend class whose efficiency factors apply.
    pub backend: Backend,
    /// Whether the CPU shares this memory (Apple silicon, DGX Spark, Strix Halo, a CPU itself).
    pub unified_memory: bool,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Fraction of `memory_bytes` the engine may use.
    pub usable_fraction: f64,
    /// Why that fraction.
    pub usable_source: String,
    /// Memory the runtime takes before any model data (CUDA context...), bytes.
    pub overhead_bytes: u64,
    /// Why that overhead.
    pub overhead_source: String,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbps: f64,
    /// Where the bandwidth comes from.
    pub bandwidth_source: String,
    /// Peak FLOP/s the prefill is measured against, TFLOP/s; `None` when unknown.
    pub peak_tflops: Option<f64>,
    /// Where the peak comes from (table column, or how it was estimated).
    pub peak_source: String,
}

impl DeviceProfile {
    /// Memory the engine may fill: `memory_bytes × usable_fraction − overhead_bytes`.
    pub fn usable_bytes(&self) -> u64 {
        ((self.memory_bytes as f64 * self.usable_fraction) as u64).saturating_sub(self.overhead_bytes)
    }

    /// The profile of a table device with `memory_gb` (default: its largest configuration).
    ///
    /// Usable memory: Apple GPUs may wire only part of unified memory by default, about 70% up to 32 GB and
    /// 78% above (XiongjieDai/GPU-Benchmarks-on-LLM-Inference, citing an Apple tech talk; raised with `sysctl
    /// iogpu.wired_limit_mb`); other unified parts 75% (a configured GTT/carve-out share: an assumption); discrete
    /// GPUs all of it less the runtime overhead. Runtime overhead: CUDA 512 MiB (context and cuBLAS workspace
    /// before weights, an assumption of the size `nvidia-smi` shows for an idle llama.cpp process), Vulkan 256
    /// MiB, Metal none (an assumption).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a memory size the device is not sold with.
    pub fn from_spec(spec: &DeviceSpec, table: &[DeviceSpec], memory_gb: Option<f64>) -> Result<Self> {
        let options = &spec.memory_gb_options;
        let gb = match memory_gb {
            Some(m) if spec.sold_with(m) => m,
            Some(m) => {
                return Err(Error::Invalid {
                    what: "--memory",
                    reason: format!("{} is sold with {} GB, not {m}", spec.name, join_gb(options)),
                });
            }
            None => options.iter().copied().fold(0.0, f64::max),
        };
        let backend = Backend::for_vendor(&spec.vendor);
        let unified =
            spec.vendor == "Apple" || spec.name.contains("DGX Spark") || spec.name.contains("Strix Halo");
        let (usable_fraction, usable_source) = if spec.vendor == "Apple" {
            if gb <= 32.0 {
                (
                    0.70,
                    "macOS GPU wired-memory default, ~70% up to 32 GB (raise with sysctl iogpu.wired_limit_mb)",
                )
            } else {
                (
                    0.78,
                    "macOS GPU wired-memory default, ~78% above 32 GB (raise with sysctl iogpu.wired_limit_mb)",
                )
            }
        } else if unified {
            (
                0.75,
                "assumed share of unified memory given to the GPU (set with --usable-fraction)",
            )
        } else {
            (1.0, "discrete GPU: all its memory")
        };
        let (overhead_mib, overhead_source) = match backend {
            Backend::Cuda => (512, "assumed CUDA context + cuBLAS workspace"),
            Backend::Vulkan => (256, "assumed Vulkan driver allocations"),
            Backend::Metal | Backend::Cpu => (0, "none assumed"),
        };
        let (peak_tflops, peak_source) = peak_tflops(spec, table);
        Ok(DeviceProfile {
            name: spec.name.clone(),
            backend,
            unified_memory: unified,
            memory_bytes: (gb * 1e9) as u64,
            usable_fraction,
            usable_source: usable_source.to_owned(),
            overhead_bytes: overhead_mib << 20,
            overhead_source: overhead_source.to_owned(),
            bandwidth_gbps: spec.bandwidth_gbps,
            bandwidth_source: "vendor peak (hardware-specs.csv)".to_owned(),
            peak_tflops,
            peak_source,
        })
    }

    /// A device whose bandwidth and peak were measured (`silica hw`) rather than read from the table: all of its
    /// memory usable, no runtime overhead, unified memory for the CPU. `sources` says where the bandwidth and the
    /// peak come from.
    pub fn measured(
        name: String,
        backend: Backend,
        memory_bytes: u64,
        bandwidth_gbps: f64,
        peak_tflops: f64,
        (bandwidth_source, peak_source): (String, String),
    ) -> Self {
        DeviceProfile {
            name,
            backend,
            unified_memory: backend == Backend::Cpu,
            memory_bytes,
            usable_fraction: 1.0,
            usable_source: "all of it".into(),
            overhead_bytes: 0,
            overhead_source: "none assumed".into(),
            bandwidth_gbps,
            bandwidth_source,
            peak_tflops: Some(peak_tflops),
            peak_source,
        }
    }

    /// One line: name, memory, usable, bandwidth, peak.
    pub fn summary(&self) -> String {
        format!(
            "{} [{}]: {:.1} GiB ({:.0}% usable), {:.0} GB/s, {}",
            self.name,
            self.backend,
            crate::gib(self.memory_bytes),
            self.usable_fraction * 100.0,
            self.bandwidth_gbps,
            self.peak_tflops
                .map_or_else(|| "peak FLOP/s unknown".to_owned(), |p| format!("{p:.2} TFLOP/s")),
        )
    }
}

/// FP16/FP32 dense-tensor ratio of NVIDIA GeForce parts (RTX 3090: 142 / 35.6; RTX 4090: 330.3 / 82.58; both
/// 4.0 in `hardware-specs.csv`), used for NVIDIA rows without an FP16 figure.
const NVIDIA_FP16_PER_FP32: f64 = 4.0;

/// The peak FLOP/s prefill is measured against, and how it was found:
/// 1. the table's `fp16_tflops` (NVIDIA dense tensor cores; Apple shader);
/// 2. Apple and AMD: `fp32_tflops` (Apple GPUs run FP16 at the FP32 rate, per the table's notes);
/// 3. NVIDIA: `fp32_tflops` × [`NVIDIA_FP16_PER_FP32`];
/// 4. the per-core rate (by 1–3) of the same vendor's row with the nearest release date (for Apple, of the same
///    chip generation when it has one) × this device's cores.
fn peak_tflops(spec: &DeviceSpec, table: &[DeviceSpec]) -> (Option<f64>, String) {
    if let Some(direct) = direct_peak(spec) {
        return (Some(direct.0), direct.1.to_owned());
    }
    let Some(cores) = spec.gpu_cores else {
        return (None, "no FLOPS figure and no core count in the table".to_owned());
    };
    let generation = |name: &str| {
        name.split(" (")
            .next()
            .unwrap_or(name)
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let month = |r: &str| {
        let mut it = r.split('-');
        let y: i32 = it.next().and_then(|y| y.parse().ok()).unwrap_or(0);
        let m: i32 = it
            .next()
            .and_then(|m| m.trim_start_matches('Q').parse().ok())
            .unwrap_or(1);
        y * 12 + m
    };
    let same_gen = |d: &DeviceSpec| spec.vendor == "Apple" && generation(&d.name) == generation(&spec.name);
    let best = table
        .iter()
        .filter(|d| d.vendor == spec.vendor && d.name != spec.name && d.gpu_cores.is_some())
        .filter_map(|d| direct_peak(d).map(|p| (d, p.0)))
        .min_by_key(|(d, _)| (!same_gen(d), (month(&d.release) - month(&spec.release)).abs()));
    match best {
        Some((d, p)) => {
            let per_core = p / d.gpu_cores.unwrap_or(1).max(1) as f64;
            (
                Some(per_core * cores as f64),
                format!(
                    "estimated: {} TFLOPS / {} cores of {} × {cores} cores",
                    round2(p),
                    d.gpu_cores.unwrap_or(0),
                    d.name
                ),
            )
        }
        None => (None, "no FLOPS figure for this vendor's devices".to_owned()),
    }
}

fn direct_peak(spec: &DeviceSpec) -> Option<(f64, &'static str)> {
    if let Some(p) = spec.fp16_tflops {
        return Some((p, "FP16 (hardware-specs.csv)"));
    }
    let fp32 = spec.fp32_tflops?;
    if spec.vendor == "NVIDIA" {
        Some((
            fp32 * NVIDIA_FP16_PER_FP32,
            "estimated: 4 × FP32 (the FP16-tensor/FP32 ratio of the RTX 3090 and 4090)",
        ))
    } else {
        Some((fp32, "FP32 = FP16 rate (hardware-specs.csv)"))
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// An interconnect between devices, for activations passed between pipeline stages or tensor-parallel
/// all-reduces.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Link {
    /// `--link` name.
    pub name: &'static str,
    /// What it is.
    pub title: &'static str,
    /// Bandwidth per direction, GB/s.
    pub bandwidth_gbps: f64,
    /// Latency of one small transfer, µs (an assumption of this planner, stated in `source`).
    pub latency_us: f64,
    /// Where the figures come from.
    pub source: &'static str,
}

/// The links `--link` knows. Bandwidths are the specifications' per-direction line rates after encoding;
/// latencies are assumptions: ~10 µs for a device-to-device copy over PCIe or NVLink, ~100 µs for a message
/// over a network stack (Ethernet, or IP over Thunderbolt as llama.cpp's RPC backend and exo use).
pub const LINKS: [Link; 8] = [
    Link {
        name: "pcie3",
        title: "PCIe 3.0 x16",
        bandwidth_gbps: 15.75,
        latency_us: 10.0,
        source: "PCI-SIG PCIe 3.0: 8 GT/s × 16 lanes, 128b/130b",
    },
    Link {
        name: "pcie4",
        title: "PCIe 4.0 x16",
        bandwidth_gbps: 31.5,
        latency_us: 10.0,
        source: "PCI-SIG PCIe 4.0: 16 GT/s × 16 lanes, 128b/130b",
    },
    Link {
        name: "pcie5",
        title: "PCIe 5.0 x16",
        bandwidth_gbps: 63.0,
        latency_us: 10.0,
        source: "PCI-SIG PCIe 5.0: 32 GT/s × 16 lanes, 128b/130b",
    },
    Link {
        name: "nvlink3",
        title: "NVLink 3 bridge (RTX 3090, A100 PCIe)",
        bandwidth_gbps: 56.25,
        latency_us: 5.0,
        source: "NVIDIA RTX 3090: 112.5 GB/s total, both directions",
    },
    Link {
        name: "nvlink4",
        title: "NVLink 4 (H100 SXM)",
        bandwidth_gbps: 450.0,
        latency_us: 5.0,
        source: "NVIDIA H100: 900 GB/s total, both directions",
    },
    Link {
        name: "tb4",
        title: "Thunderbolt 4 (IP networking)",
        bandwidth_gbps: 5.0,
        latency_us: 100.0,
        source: "Intel Thunderbolt 4: 40 Gb/s",
    },
    Link {
        name: "tb5",
        title: "Thunderbolt 5 (IP networking)",
        bandwidth_gbps: 10.0,
        latency_us: 100.0,
        source: "Intel Thunderbolt 5: 80 Gb/s symmetric",
    },
    Link {
        name: "10gbe",
        title: "10 Gigabit Ethernet",
        bandwidth_gbps: 1.25,
        latency_us: 100.0,
        source: "IEEE 802.3ae: 10 Gb/s",
    },
];

/// Finds a link by name (`pcie4`, `nvlink4`, `tb5`, `10gbe`; case and punctuation ignored).
///
/// # Errors
/// [`Error::Unknown`] listing the closest link names.
pub fn find_link(name: &str) -> Result<Link> {
    let q: String = name
        .to_ascii_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let q = q.replace("thunderbolt", "tb").replace("gen", "");
    LINKS
        .into_iter()
        .find(|l| l.name == q)
        .ok_or_else(|| Error::Unknown {
            what: "link",
            name: name.to_owned(),
            closest: closest(name, LINKS.iter().map(|l| l.name), 4),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_built_in_table_parses_and_names_resolve_as_people_write_them() {
        let t = device_table().unwrap();
        assert_eq!(t.len(), 60);
        let find = |q: &str, m: Option<f64>| find_device(&t, q, m).map(|d| d.name.clone());
        assert_eq!(find("RTX 4090", None).unwrap(), "NVIDIA GeForce RTX 4090");
        assert_eq!(
            find("nvidia geforce rtx 4090", None).unwrap(),
            "NVIDIA GeForce RTX 4090"
        );
        assert_eq!(find("M4 Max", Some(128.0)).unwrap(), "Apple M4 Max (40-core GPU)");
        assert_eq!(
            find("Apple M1 (7-core GPU)", None).unwrap(),
            "Apple M1 (7-core GPU)"
        );
        assert_eq!(find("m2 ultra 76", None).unwrap(), "Apple M2 Ultra (76-core GPU)");
        // Two M4 Max parts exist: without a memory size the name is ambiguous, and says which.
        let e = find("M4 Max", None).unwrap_err().to_string();
        assert!(e.contains("32-core") && e.contains("40-core"), "{e}");
        let e = find("RTX 4099", None).unwrap_err().to_string();
        assert!(e.contains("closest") && e.contains("RTX 4090"), "{e}");
        assert!(find("M4 Max", Some(100.0)).is_err());
    }

    #[test]
    fn peaks_come_from_the_table_or_say_how_they_were_estimated() {
        let t = device_table().unwrap();
        let p = |q: &str| {
            let d = find_device(&t, q, None).unwrap();
            peak_tflops(d, &t)
        };
        assert_eq!(p("RTX 4090").0, Some(330.3));
        assert_eq!(p("Apple M1 (8-core GPU)").0, Some(2.62));
        // The 7-core M1 has no figure: 7/8 of the 8-core part's.
        let (m1_7, how) = p("Apple M1 (7-core GPU)");
        assert!((m1_7.unwrap() - 2.62 * 7.0 / 8.0).abs() < 1e-9, "{how}");
        assert!(how.contains("Apple M1 (8-core GPU)"), "{how}");
        // NVIDIA without FP16: 4 × FP32.
        assert_eq!(p("RTX 3060").0, Some(12.74 * 4.0));
    }

    #[test]
    fn links_resolve_and_unknown_ones_list_the_closest() {
        assert_eq!(find_link("PCIe4").unwrap().name, "pcie4");
        assert_eq!(find_link("Thunderbolt 5").unwrap().name, "tb5");
        let e = find_link("nvlink").unwrap_err().to_string();
        assert!(e.contains("nvlink3") && e.contains("nvlink4"), "{e}");
    }

    #[test]
    fn apple_gpus_may_wire_only_part_of_unified_memory() {
        let t = device_table().unwrap();
        let m4 = find_device(&t, "M4 Max", Some(128.0)).unwrap();
        let p = DeviceProfile::from_spec(m4, &t, Some(128.0)).unwrap();
        assert_eq!(p.memory_bytes, 128_000_000_000);
        assert!((p.usable_bytes() as f64 - 0.78 * 128e9).abs() < 1e6);
        let g = DeviceProfile::from_spec(find_device(&t, "RTX 4090", None).unwrap(), &t, None).unwrap();
        assert_eq!(g.usable_bytes(), 24_000_000_000 - (512 << 20));
        assert!(DeviceProfile::from_spec(m4, &t, Some(64.0)).is_ok());
        assert!(DeviceProfile::from_spec(m4, &t, Some(65.0)).is_err());
    }
}
