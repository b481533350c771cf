//! Facts about this machine that need no measurement: CPU name and topology, SIMD extensions, RAM, NVIDIA GPUs
//! (through NVML, loaded at run time) and the power counters a later sampler can read.
//!
//! Nothing here needs root or a GPU: every fact the OS does not give is `None` or empty, with a note saying why
//! where that helps (`gpu_note`, `power_note`, `PowerSourceInfo::reason`).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::energy::{read_energy_uj, read_trimmed, zone_name};
use crate::gpu::{NvmlOpenError, open_nvml};

/// What this machine is, as far as the OS tells without measuring anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// The CPU's marketing name: `model name` (x86), `Model`, `cpu model` or `Processor` in `/proc/cpuinfo` on
    /// Linux, `sysctl -n machdep.cpu.brand_string` on macOS (what llama-bench shows as `cpu_info`); `""` when
    /// unknown.
    pub cpu_info: String,
    /// `std::env::consts::OS` followed by the kernel release (`/proc/sys/kernel/osrelease` on Linux,
    /// `sysctl -n kern.osrelease` on macOS) where readable, e.g. `"linux 6.8.0-45-generic"`.
    pub os: String,
    /// `std::env::consts::ARCH`, e.g. `"x86_64"`, `"aarch64"`.
    pub arch: String,
    /// Logical CPUs this process may use (`std::thread::available_parallelism`, which honours affinity masks and
    /// cgroup quotas on Linux); 1 when unknown.
    pub n_threads_logical: usize,
    /// Physical cores: distinct (`physical id`, `core id`) pairs in `/proc/cpuinfo`, else distinct
    /// (`physical_package_id`, `core_id`) pairs under `/sys/devices/system/cpu/cpu*/topology/` on Linux;
    /// `sysctl -n hw.physicalcpu` on macOS; `None` when unknown. In a VM this is what the hypervisor exposes.
    pub n_cores_physical: Option<usize>,
    /// SIMD extensions detected at run time, spelled as in ggml's `system_info` (see [`simd_features`]).
    pub simd: Vec<String>,
    /// Installed RAM in bytes: `MemTotal` of `/proc/meminfo` (kB × 1024) on Linux, `sysctl -n hw.memsize` on
    /// macOS; `None` when unknown.
    pub ram_total_bytes: Option<u64>,
    /// RAM available to new allocations without swapping, in bytes: `MemAvailable` of `/proc/meminfo`
    /// (kB × 1024, Linux ≥ 3.14); `None` elsewhere.
    pub ram_available_bytes: Option<u64>,
    /// NVIDIA GPUs seen through NVML, in NVML index order; empty without a driver.
    pub gpus: Vec<GpuInfo>,
    /// Why `gpus` is empty or incomplete, e.g. `"NVML not available: …"`; `None` when every GPU was read.
    pub gpu_note: Option<String>,
    /// Energy counters that a power sampler could read (RAPL zones, NVML GPUs, IOReport), readable or not.
    pub power_sources: Vec<PowerSourceInfo>,
    /// Why no CPU power counter was found, e.g. `"/sys/class/powercap has no intel-rapl zones (a VM?)"`;
    /// `None` when there is one.
    pub power_note: Option<String>,
}

/// One NVIDIA GPU as NVML describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML device index (`nvmlDeviceGetHandleByIndex`), which follows PCI bus order rather than
    /// `CUDA_VISIBLE_DEVICES`.
    pub index: u32,
    /// Product name (`nvmlDeviceGetName`), e.g. `"NVIDIA H100 80GB HBM3"`.
    pub name: String,
    /// Installed device memory in bytes (`nvmlDeviceGetMemoryInfo_v2`, field `total`).
    pub memory_total_bytes: u64,
    /// Memory bus width in bits (`nvmlDeviceGetMemoryBusWidth`); `None` where NVML does not report it.
    pub memory_bus_width_bits: Option<u32>,
    /// Maximum memory clock in MHz (`nvmlDeviceGetMaxClockInfo(NVML_CLOCK_MEM)`); `None` where not reported.
    pub max_memory_clock_mhz: Option<u32>,
    /// Theoretical peak memory bandwidth in GB/s (10⁹ bytes/s) from the two fields above, by
    /// [`theoretical_bandwidth_gbps`]; `None` when either is missing.
    pub theoretical_bandwidth_gbps: Option<f64>,
    /// Driver version (`nvmlSystemGetDriverVersion`), e.g. `"550.54.15"`.
    pub driver_version: Option<String>,
}

/// Which interface a power counter is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerSourceKind {
    /// Linux powercap RAPL zone: cumulative `energy_uj` (µJ) under `/sys/class/powercap/intel-rapl:*`
    /// (Intel, and AMD family 17h+ through the same driver).
    Rapl,
    /// NVIDIA GPU: `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded; Volta and newer).
    Nvml,
    /// macOS IOReport energy channels (Apple silicon).
    #[serde(rename = "ioreport")]
    IoReport,
}

impl fmt::Display for PowerSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rapl => "rapl",
            Self::Nvml => "nvml",
            Self::IoReport => "ioreport",
        })
    }
}

/// One energy counter and whether this process can read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerSourceInfo {
    /// What it measures: the RAPL zone's `name` file (`"package-0"`, `"core"`, `"dram"`, …), or
    /// `"GPU <index>: <name>"` for NVML.
    pub name: String,
    /// The interface it is read through.
    pub kind: PowerSourceKind,
    /// The counter file (RAPL: `…/intel-rapl:N[:M]/energy_uj`); `None` for library interfaces.
    pub path: Option<String>,
    /// Whether one read of the counter succeeded just now.
    pub readable: bool,
    /// Why it is not readable; `None` when it is.
    pub reason: Option<String>,
}

/// Theoretical peak memory bandwidth in GB/s (10⁹ bytes/s): `bus_width_bits / 8 × max_memory_clock_mhz × 2 /
/// 1000`, i.e. bytes per transfer × transfers per second with two transfers per clock (double data rate).
///
/// The inputs are what NVML reports (`nvmlDeviceGetMemoryBusWidth`, `nvmlDeviceGetMaxClockInfo` with
/// `NVML_CLOCK_MEM`). The factor 2 reproduces NVIDIA's published figures for HBM and GDDR6X boards alike, because
/// NVML's memory clock for GDDR6/GDDR6X is already half the per-pin data rate (RTX 4090: 384 bits, 10501 MHz →
/// 1008 GB/s, as published; H100 SXM: 5120 bits, 2619 MHz → 3352 GB/s, published 3.35 TB/s). It is a ceiling:
/// measured copy bandwidth is typically 80–93 % of it.
///
/// ```
/// let gbps = silica_telemetry::theoretical_bandwidth_gbps(5120, 2619);
/// assert!((gbps - 3352.32).abs() < 1e-9);
/// ```
pub fn theoretical_bandwidth_gbps(memory_bus_width_bits: u32, max_memory_clock_mhz: u32) -> f64 {
    f64::from(memory_bus_width_bits) / 8.0 * f64::from(max_memory_clock_mhz) * 2.0 / 1000.0
}

/// Reads every fact in [`MachineInfo`]. Takes tens of milliseconds (NVML initialisation dominates where a driver
/// is installed); never fails: what cannot be read is `None`, empty, or explained in a note.
pub fn machine_info() -> MachineInfo {
    let is_linux = cfg!(target_os = "linux");
    let is_macos = cfg!(target_os = "macos");

    let cpuinfo = if is_linux {
        fs_err::read_to_string("/proc/cpuinfo").ok()
    } else {
        None
    };

    let cpu_info = cpu_info_from(cpuinfo.as_deref());

    let release = if is_linux {
        read_trimmed(Path::new("/proc/sys/kernel/osrelease"))
    } else if is_macos {
        sysctl("kern.osrelease")
    } else {
        None
    };
    let os = match release.filter(|r| !r.is_empty()) {
        Some(r) => format!("{} {r}", std::env::consts::OS),
        None => std::env::consts::OS.to_owned(),
    };

    let n_cores_physical = physical_cores_in(cpuinfo.as_deref());

    let (mut power_sources, power_note) = if is_linux {
        power_sources_in(Path::new("/sys/class/powercap"))
    } else if is_macos {
        let ioreport = PowerSourceInfo {
            name: "SoC".to_owned(),
            kind: PowerSourceKind::IoReport,
            path: None,
            readable: false,
            reason: Some("not implemented yet".to_owned()),
        };
        (vec![ioreport], None)
    } else {
        (
            Vec::new(),
            Some(format!(
                "no CPU power counter is known on {}",
                std::env::consts::OS
            )),
        )
    };

    let nvml = nvml_facts();
    power_sources.extend(nvml.power_sources);

    MachineInfo {
        cpu_info,
        os,
        arch: std::env::consts::ARCH.to_owned(),
        n_threads_logical: available_threads(),
        n_cores_physical,
        simd: simd_features(),
        ram_total_bytes: ram_total_bytes(),
        ram_available_bytes: if is_linux { ram_available_bytes() } else { None },
        gpus: nvml.gpus,
        gpu_note: nvml.gpu_note,
        power_sources,
        power_note,
    }
}

/// Installed RAM in bytes, as in [`MachineInfo::ram_total_bytes`], without reading the other facts.
pub(crate) fn ram_total_bytes() -> Option<u64> {
    if cfg!(target_os = "macos") {
        sysctl("hw.memsize").and_then(|s| s.parse().ok())
    } else if cfg!(target_os = "linux") {
        fs_err::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| meminfo_bytes(&t, "MemTotal"))
    } else {
        None
    }
}

/// Physical cores, as in [`MachineInfo::n_cores_physical`], without reading the other facts.
pub fn physical_cores() -> Option<usize> {
    let cpuinfo = if cfg!(target_os = "linux") {
        fs_err::read_to_string("/proc/cpuinfo").ok()
    } else {
        None
    };
    physical_cores_in(cpuinfo.as_deref())
}

/// The threads silica computes with by default: the physical cores of the fastest kind (on macOS
/// `hw.perflevel0.physicalcpu`, the performance cores, as llama.cpp's `cpu_get_num_physical_cores` in
/// `common/common.cpp`; on Linux with a hybrid Intel CPU its P-cores, as llama.cpp's `cpu_get_num_math`;
/// elsewhere all physical cores), at most the logical CPUs this process may use (a container's CPU limit), and
/// those logical CPUs where the cores cannot be read. SMT siblings share a core's execution units and its path
/// to memory, so they add contention, not speed, to matrix products.
pub fn default_compute_threads() -> usize {
    let cores = if cfg!(target_os = "macos") {
        sysctl("hw.perflevel0.physicalcpu")
            .and_then(|s| s.parse().ok())
            .or_else(physical_cores)
    } else if cfg!(target_os = "linux") {
        performance_cores_from_sysfs(Path::new("/sys/devices"), Path::new("/sys/devices/system/cpu"))
            .or_else(physical_cores)
    } else {
        physical_cores()
    };
    let logical = available_threads();
    cores.filter(|&c| c > 0).map_or(logical, |c| c.min(logical))
}

/// Physical cores from `/proc/cpuinfo`'s text (Linux; `None` elsewhere), else from sysfs topology (Linux), else
/// `hw.physicalcpu` (macOS).
fn physical_cores_in(cpuinfo: Option<&str>) -> Option<usize> {
    if cfg!(target_os = "linux") {
        cpuinfo
            .and_then(physical_cores_from_cpuinfo)
            .or_else(|| physical_cores_from_sysfs(Path::new("/sys/devices/system/cpu")))
    } else if cfg!(target_os = "macos") {
        sysctl("hw.physicalcpu").and_then(|s| s.parse().ok())
    } else {
        None
    }
}

/// Logical CPUs this process may use (`std::thread::available_parallelism`), 1 when unknown.
pub(crate) fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// SIMD extensions this CPU supports, detected at run time (`is_x86_feature_detected!`,
/// `is_aarch64_feature_detected!`), in ggml's `system_info` spelling (`ggml_backend_cpu_get_features` in
/// ggml-cpu.cpp) where ggml prints the feature:
///
/// - x86_64: `SSE42` (sse4.2), `AVX`, `AVX_VNNI` (avxvnni), `AVX2`, `F16C`, `FMA`, `AVX512` (avx512f),
///   `AVX512BW`, `AVX512VL` (ggml does not print these two; spelled as its `cpu-feats-x86.cpp` names them),
///   `AVX512_VNNI`, `AVX512_BF16`.
/// - aarch64: `NEON`, `DOTPROD`, `MATMUL_INT8` (i8mm), `FP16_VA` (fp16), `SVE`.
/// - other architectures: none.
pub fn simd_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut found: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let all = [
            (has!("sse4.2"), "SSE42"),
            (has!("avx"), "AVX"),
            (has!("avxvnni"), "AVX_VNNI"),
            (has!("avx2"), "AVX2"),
            (has!("f16c"), "F16C"),
            (has!("fma"), "FMA"),
            (has!("avx512f"), "AVX512"),
            (has!("avx512bw"), "AVX512BW"),
            (has!("avx512vl"), "AVX512VL"),
            (has!("avx512vnni"), "AVX512_VNNI"),
            (has!("avx512bf16"), "AVX512_BF16"),
        ];
        found.extend(all.iter().filter(|(on, _)| *on).map(|(_, name)| *name));
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let all = [
            (has!("neon"), "NEON"),
            (has!("dotprod"), "DOTPROD"),
            (has!("i8mm"), "MATMUL_INT8"),
            (has!("fp16"), "FP16_VA"),
            (has!("sve"), "SVE"),
        ];
        found.extend(all.iter().filter(|(on, _)| *on).map(|(_, name)| *name));
    }
    found.into_iter().map(str::to_owned).collect()
}

/// `sysctl -n <name>`, trimmed; `None` when the command is missing, fails or prints nothing.
fn sysctl(name: &str) -> Option<String> {
    let out = Command::new("sysctl").args(["-n", name]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The CPU's marketing name (what llama-bench's `cpu_info` shows): `model name` and its kin in `/proc/cpuinfo` on
/// Linux, `machdep.cpu.brand_string` on macOS; `""` when unknown.
pub fn cpu_info() -> String {
    let text = if cfg!(target_os = "linux") {
        fs_err::read_to_string("/proc/cpuinfo").ok()
    } else {
        None
    };
    cpu_info_from(text.as_deref())
}

fn cpu_info_from(cpuinfo: Option<&str>) -> String {
    cpuinfo
        .and_then(cpu_name_from_cpuinfo)
        .or_else(|| {
            if cfg!(target_os = "macos") {
                sysctl("machdep.cpu.brand_string")
            } else {
                None
            }
        })
        .unwrap_or_default()
}

/// Memory available to new allocations without swapping, in bytes (`MemAvailable` of `/proc/meminfo`); `None`
/// where the OS does not say.
pub fn ram_available_bytes() -> Option<u64> {
    let text = fs_err::read_to_string("/proc/meminfo").ok()?;
    meminfo_bytes(&text, "MemAvailable")
}

/// `key : value` lines of `/proc/cpuinfo`-style text, trimmed.
fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let (k, v) = l.split_once(':')?;
        Some((k.trim(), v.trim()))
    })
}

/// The first of `model name` (x86), `Model` (Raspberry Pi, some arm64), `cpu model` (MIPS), `Processor` (old
/// arm) with a non-empty value: the keys llama-bench's `get_cpu_info` reads, in its order.
fn cpu_name_from_cpuinfo(text: &str) -> Option<String> {
    ["model name", "Model", "cpu model", "Processor"]
        .iter()
        .find_map(|key| {
            fields(text)
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.to_owned())
        })
}

/// Distinct (`physical id`, `core id`) pairs over the `processor` blocks of `/proc/cpuinfo`; `None` when any
/// block lacks them (arm64, some VMs).
fn physical_cores_from_cpuinfo(text: &str) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for block in text.split("\n\n") {
        if !fields(block).any(|(k, _)| k == "processor") {
            continue;
        }
        let get = |key: &str| fields(block).find(|(k, _)| *k == key).map(|(_, v)| v.to_owned());
        cores.insert((get("physical id")?, get("core id")?));
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Distinct (`physical_package_id`, `core_id`) pairs over `<root>/cpu<N>/topology/` (root normally
/// `/sys/devices/system/cpu`; offline CPUs have no `topology` and are skipped); `None` when none is readable.
fn physical_cores_from_sysfs(root: &Path) -> Option<usize> {
    cores_from_sysfs(root, None)
}

/// [`physical_cores_from_sysfs`] over the logical CPUs in `only` (all when `None`).
fn cores_from_sysfs(root: &Path, only: Option<&BTreeSet<usize>>) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for entry in fs_err::read_dir(root).ok()?.flatten() {
        let name = entry.file_name();
        let cpu = name
            .to_str()
            .and_then(|n| n.strip_prefix("cpu"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok());
        let Some(cpu) = cpu else { continue };
        if only.is_some_and(|set| !set.contains(&cpu)) {
            continue;
        }
        let topo = entry.path().join("topology");
        let read = |f: &str| read_trimmed(&topo.join(f));
        if let (Some(package), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((package, core));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// The CPU numbers of a Linux CPU list such as `0-3,8,10-11` (`Documentation/admin-guide/cputopology.rst`);
/// `None` when it is empty or not one.
fn parse_cpu_list(text: &str) -> Option<BTreeSet<usize>> {
    let mut set = BTreeSet::new();
    for part in text.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a > b {
            return None;
        }
        set.extend(a..=b);
    }
    (!set.is_empty()).then_some(set)
}

/// Physical performance cores of a hybrid Intel CPU (Alder Lake and later) under Linux: the kernel's perf driver
/// lists the P-cores' logical CPUs in `<devices>/cpu_core/cpus` and the E-cores' in `<devices>/cpu_atom/cpus`
/// (`devices` normally `/sys/devices`), and the P-cores are counted once per core from `<cpu_root>/cpu<N>/topology`
/// (`cpu_root` normally `/sys/devices/system/cpu`). `None` on any other CPU (no `cpu_atom`). llama.cpp's
/// `cpu_get_num_math` (`common/common.cpp`) likewise leaves E-cores and SMT siblings out of its default, since a
/// matrix product split evenly waits for its slowest thread.
fn performance_cores_from_sysfs(devices: &Path, cpu_root: &Path) -> Option<usize> {
    if !devices.join("cpu_atom/cpus").exists() {
        return None;
    }
    let p_cpus = parse_cpu_list(&read_trimmed(&devices.join("cpu_core/cpus"))?)?;
    cores_from_sysfs(cpu_root, Some(&p_cpus))
}

/// `key:   N kB` in `/proc/meminfo` (or `/proc/<pid>/smaps_rollup`, same format), as bytes (the kernel's "kB" is
/// KiB: `proc(5)`).
pub(crate) fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let (_, v) = fields(text).find(|(k, _)| *k == key)?;
    let kib: u64 = v.trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The reason given for an `energy_uj` that cannot be read.
pub(crate) fn energy_unreadable_reason(err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::PermissionDenied {
        // Linux 5.10 made energy_uj root-only after the PLATYPUS power side channel (CVE-2020-8694).
        "energy_uj not readable: permission denied (root only since Linux 5.10, CVE-2020-8694)".to_owned()
    } else {
        format!("energy_uj not readable: {err}")
    }
}

/// RAPL zones under `root` (normally `/sys/class/powercap`), in zone order ([`crate::energy::rapl_zone_dirs`]),
/// each with whether its counter can be read. Returns the zones and, when there are none, why.
pub(crate) fn power_sources_in(root: &Path) -> (Vec<PowerSourceInfo>, Option<String>) {
    let Some(zones) = crate::energy::rapl_zone_dirs(root) else {
        let note = format!(
            "{} does not exist (no powercap driver: not Linux, or a VM or container)",
            root.display()
        );
        return (Vec::new(), Some(note));
    };
    if zones.is_empty() {
        let note = format!("{} has no intel-rapl zones (a VM?)", root.display());
        return (Vec::new(), Some(note));
    }
    let sources = zones
        .values()
        .map(|dir| {
            let energy = dir.join("energy_uj");
            let reason = read_energy_uj(&energy).err();
            PowerSourceInfo {
                name: zone_name(dir),
                kind: PowerSourceKind::Rapl,
                path: Some(energy.display().to_string()),
                readable: reason.is_none(),
                reason,
            }
        })
        .collect();
    (sources, None)
}

/// What NVML reports: GPUs, why the list is empty or short, and one energy counter per GPU.
struct NvmlFacts {
    gpus: Vec<GpuInfo>,
    gpu_note: Option<String>,
    power_sources: Vec<PowerSourceInfo>,
}

/// Loads `libnvidia-ml.so.1` (`nvml.dll` on Windows) at run time through `nvml-wrapper` and reads every GPU;
/// without a driver the list is empty and the note gives NVML's error.
fn nvml_facts() -> NvmlFacts {
    let mut facts = NvmlFacts {
        gpus: Vec::new(),
        gpu_note: None,
        power_sources: Vec::new(),
    };
    let (nvml, count) = match open_nvml() {
        Ok(opened) => opened,
        Err(e) => {
            facts.gpu_note = Some(match e {
                NvmlOpenError::Init(e) => format!("NVML not available: {e}"),
                NvmlOpenError::Count(e) => format!("NVML could not count GPUs: {e}"),
                NvmlOpenError::NoGpu => "NVML found no GPU".to_owned(),
            });
            return facts;
        }
    };
    let driver_version = nvml.sys_driver_version().ok();
    let mut notes = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("GPU {index}: {e}"));
                continue;
            }
        };
        let name = device.name().unwrap_or_else(|e| format!("unknown ({e})"));
        let memory_total_bytes = device.memory_info().map_or(0, |m| m.total);
        let memory_bus_width_bits = device.memory_bus_width().ok();
        let max_memory_clock_mhz = device
            .max_clock_info(nvml_wrapper::enum_wrappers::device::Clock::Memory)
            .ok();
        let theoretical = match (memory_bus_width_bits, max_memory_clock_mhz) {
            (Some(bits), Some(mhz)) => Some(theoretical_bandwidth_gbps(bits, mhz)),
            _ => None,
        };
        let energy = device.total_energy_consumption();
        facts.power_sources.push(PowerSourceInfo {
            name: format!("GPU {index}: {name}"),
            kind: PowerSourceKind::Nvml,
            path: None,
            readable: energy.is_ok(),
            reason: energy
                .err()
                .map(|e| format!("nvmlDeviceGetTotalEnergyConsumption: {e}")),
        });
        facts.gpus.push(GpuInfo {
            index,
            name,
            memory_total_bytes,
            memory_bus_width_bits,
            max_memory_clock_mhz,
            theoretical_bandwidth_gbps: theoretical,
            driver_version: driver_version.clone(),
        });
    }
    if !notes.is_empty() {
        facts.gpu_note = Some(notes.join("; "));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO_X86: &str = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nphysical id\t: 0\ncore id\t\t: 0\n\n\
        processor\t: 1\nmodel name\t: AMD EPYC 9R14\nphysical id\t: 0\ncore id\t\t: 0\n\n\
        processor\t: 2\nmodel name\t: AMD EPYC 9R14\nphysical id\t: 0\ncore id\t\t: 1\n\n\
        processor\t: 3\nmodel name\t: AMD EPYC 9R14\nphysical id\t: 1\ncore id\t\t: 0\n\n";

    const CPUINFO_ARM: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\n\n\
        processor\t: 1\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

    #[test]
    fn cpuinfo_name_and_cores() {
        assert_eq!(
            cpu_name_from_cpuinfo(CPUINFO_X86).as_deref(),
            Some("AMD EPYC 9R14")
        );
        assert_eq!(physical_cores_from_cpuinfo(CPUINFO_X86), Some(3));
        assert_eq!(
            cpu_name_from_cpuinfo(CPUINFO_ARM).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(physical_cores_from_cpuinfo(CPUINFO_ARM), None);
    }

    #[test]
    fn cpu_lists() {
        let set = |v: &[usize]| Some(v.iter().copied().collect::<BTreeSet<_>>());
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), set(&[0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("5"), set(&[5]));
        for bad in ["", "\n", "a-b", "3-1", "1,,2", "1-"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sysfs_cores_fallback() {
        let dir = tempfile::tempdir().unwrap();
        for (cpu, package, core) in [(0, 0, 0), (1, 0, 0), (2, 0, 1), (3, 0, 1), (4, 1, 0)] {
            let topo = dir.path().join(format!("cpu{cpu}/topology"));
            fs_err::create_dir_all(&topo).unwrap();
            fs_err::write(topo.join("physical_package_id"), format!("{package}\n")).unwrap();
            fs_err::write(topo.join("core_id"), format!("{core}\n")).unwrap();
        }
        // Offline CPU without topology, and directories that are not CPUs.
        fs_err::create_dir_all(dir.path().join("cpu5")).unwrap();
        fs_err::create_dir_all(dir.path().join("cpufreq/topology")).unwrap();
        assert_eq!(physical_cores_from_sysfs(dir.path()), Some(3));
        assert_eq!(physical_cores_from_sysfs(&dir.path().join("missing")), None);
        // The same CPUs as a hybrid part: CPUs 0–3 (two SMT cores) are P-cores, 4 an E-core.
        let devices = tempfile::tempdir().unwrap();
        assert_eq!(
            performance_cores_from_sysfs(devices.path(), dir.path()),
            None,
            "not hybrid"
        );
        for (pmu, list) in [("cpu_core", "0-3\n"), ("cpu_atom", "4\n")] {
            fs_err::create_dir_all(devices.path().join(pmu)).unwrap();
            fs_err::write(devices.path().join(pmu).join("cpus"), list).unwrap();
        }
        assert_eq!(performance_cores_from_sysfs(devices.path(), dir.path()), Some(2));
        fs_err::write(devices.path().join("cpu_core/cpus"), "0,2\n").unwrap();
        assert_eq!(performance_cores_from_sysfs(devices.path(), dir.path()), Some(2));
        fs_err::write(devices.path().join("cpu_core/cpus"), "0\n").unwrap();
        assert_eq!(performance_cores_from_sysfs(devices.path(), dir.path()), Some(1));
        fs_err::write(devices.path().join("cpu_core/cpus"), "garbage\n").unwrap();
        assert_eq!(performance_cores_from_sysfs(devices.path(), dir.path()), None);
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       16318452 kB\nMemFree:         1234 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), Some(16_318_452 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_bytes(text, "SwapTotal"), None);
    }

    #[test]
    fn bandwidth_formula_matches_published_figures() {
        // H100 SXM5: 5120-bit HBM3 at 2619 MHz, published 3.35 TB/s.
        assert!((theoretical_bandwidth_gbps(5120, 2619) - 3352.32).abs() < 1e-9);
        // RTX 4090: 384-bit GDDR6X, NVML max memory clock 10501 MHz, published 1008 GB/s.
        assert!((theoretical_bandwidth_gbps(384, 10501) - 1008.096).abs() < 1e-9);
    }

    fn zone(dir: &Path, name: &str, energy: Option<&str>) {
        fs_err::create_dir_all(dir).unwrap();
        fs_err::write(dir.join("name"), format!("{name}\n")).unwrap();
        if let Some(e) = energy {
            fs_err::write(dir.join("energy_uj"), e).unwrap();
        }
    }

    #[test]
    fn rapl_zones_flat_and_nested() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(&root.join("intel-rapl:0"), "package-0", Some("123456\n"));
        zone(&root.join("intel-rapl:0/intel-rapl:0:0"), "core", Some("42\n"));
        zone(&root.join("intel-rapl:0/intel-rapl:0:1"), "uncore", None);
        zone(&root.join("intel-rapl:10"), "package-10", Some("garbage"));
        zone(&root.join("intel-rapl:2"), "dram", Some("7"));
        // The control-type directory and other drivers are not zones.
        fs_err::create_dir_all(root.join("intel-rapl")).unwrap();
        fs_err::create_dir_all(root.join("dtpm")).unwrap();

        let (sources, note) = power_sources_in(root);
        assert_eq!(note, None);
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["package-0", "core", "uncore", "dram", "package-10"]);
        assert!(sources.iter().all(|s| s.kind == PowerSourceKind::Rapl));
        assert!(sources[0].readable && sources[0].reason.is_none());
        assert!(
            sources[0]
                .path
                .as_deref()
                .unwrap()
                .ends_with("intel-rapl:0/energy_uj")
        );
        assert!(sources[1].readable);
        assert!(!sources[2].readable);
        assert!(
            sources[2]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("energy_uj not readable: ")
        );
        assert!(!sources[4].readable);
        assert!(sources[4].reason.as_deref().unwrap().contains("not a counter"));
    }

    #[test]
    fn rapl_absent_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (sources, note) = power_sources_in(dir.path());
        assert!(sources.is_empty());
        assert!(note.unwrap().contains("has no intel-rapl zones"));
        let (sources, note) = power_sources_in(&dir.path().join("powercap"));
        assert!(sources.is_empty());
        assert!(note.unwrap().contains("does not exist"));
    }

    #[test]
    fn permission_denied_reason_names_the_cve() {
        let err = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(
            energy_unreadable_reason(&err),
            "energy_uj not readable: permission denied (root only since Linux 5.10, CVE-2020-8694)"
        );
    }

    #[test]
    fn this_machine() {
        let m = machine_info();
        assert!(m.n_threads_logical >= 1);
        assert_eq!(m.arch, std::env::consts::ARCH);
        assert!(m.os.starts_with(std::env::consts::OS));
        if m.gpus.is_empty() {
            assert!(m.gpu_note.is_some());
        }
        if !m.power_sources.iter().any(|p| p.kind != PowerSourceKind::Nvml) {
            assert!(m.power_note.is_some());
        }
        if cfg!(target_os = "linux") {
            assert!(!m.cpu_info.is_empty());
            assert!(m.ram_total_bytes.unwrap() > 0);
            assert!(m.ram_available_bytes.unwrap() <= m.ram_total_bytes.unwrap());
            assert!(m.n_cores_physical.unwrap() >= 1);
            assert_eq!(physical_cores(), m.n_cores_physical);
            // The default is the physical cores (a hybrid CPU's P-cores only), capped by the CPUs this process
            // may use.
            let cap = m.n_cores_physical.unwrap().min(m.n_threads_logical);
            let d = default_compute_threads();
            if Path::new("/sys/devices/cpu_atom").exists() {
                assert!((1..=cap).contains(&d), "{d} of at most {cap}");
            } else {
                assert_eq!(d, cap);
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            m.simd.contains(&"AVX2".to_owned()),
            is_x86_feature_detected!("avx2")
        );
        let json = serde_json::to_string(&m).unwrap();
        let back: MachineInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
