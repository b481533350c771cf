//! Energy counters: Linux powercap RAPL zones and NVIDIA GPUs through NVML, each read as cumulative microjoules
//! since it was opened, with the hardware counter's wrap-around undone.
//!
//! A source that cannot be read is never reported as zero: [`EnergySources::discover`] returns the counters it
//! could open and, for everything else, an [`Unavailable`] entry saying why (no powercap driver in a VM or
//! container, `energy_uj` root-only since Linux 5.10, no NVIDIA driver, …).
//!
//! Counters overlap: RAPL `core` and `uncore` are parts of `package`, and `psys` (where the platform has it)
//! covers the whole SoC and its DRAM. Each counter therefore has a [`CounterKind`]; the machine's energy is the
//! sum of the [`CounterKind::Total`] counters only.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::gpu::{NvmlOpenError, open_nvml};
use crate::machine::energy_unreadable_reason;
use crate::{Error, Result};

/// A cumulative hardware counter that wraps around, unwrapped into a running total.
///
/// The Linux powercap `energy_uj` file counts up to `max_energy_range_uj` and then starts again from zero
/// (Documentation/power/powercap/powercap.rst: "max_energy_range_uj: Range of the above energy counter in
/// micro-joules"). Reading it at least once per wrap period (a common range is 262 143 328 850 µJ, 2³² units of
/// 61 µJ: about 4 minutes at 1 kW) and adding the deltas recovers the energy spent. A decrease between two
/// reads is taken as exactly one wrap: `delta = raw + max_range − last`.
///
/// With `max_range == 0` the counter is taken never to wrap (NVML's 64-bit millijoule counter): a decrease
/// then means the counter was reset (a driver reload) and started again from zero, so `delta = raw`.
///
/// ```
/// use silica_telemetry::WrapCounter;
///
/// let mut c = WrapCounter::new(1000);
/// assert_eq!(c.update(900), 0); // first reading: the origin
/// assert_eq!(c.update(950), 50);
/// assert_eq!(c.update(20), 120); // wrapped: 50 + (20 + 1000 − 950)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapCounter {
    /// The raw value after which the counter wraps to zero (`max_energy_range_uj`); 0 for "never wraps".
    max_range: u64,
    /// The previous raw reading; `None` before the first.
    last: Option<u64>,
    /// Cumulative unwrapped increase since the first reading, in the counter's unit (saturating at `u64::MAX`).
    total: u64,
}

impl WrapCounter {
    /// A counter that wraps after `max_range` (in the counter's unit); `0` means it never wraps.
    pub fn new(max_range: u64) -> Self {
        Self {
            max_range,
            last: None,
            total: 0,
        }
    }

    /// Takes one raw reading and returns the cumulative increase since the first reading (0 for the first).
    ///
    /// `raw ≥ last`: `delta = raw − last`. `raw < last`: one wrap, `delta = raw + max_range − last`; or, with
    /// `max_range == 0` (or a previous reading above `max_range`, which a wrapping counter cannot produce), a
    /// reset, `delta = raw`.
    pub fn update(&mut self, raw: u64) -> u64 {
        if let Some(last) = self.last {
            let delta = if raw >= last {
                raw - last
            } else if self.max_range == 0 || last > self.max_range {
                raw
            } else {
                (self.max_range - last).saturating_add(raw)
            };
            self.total = self.total.saturating_add(delta);
        }
        self.last = Some(raw);
        self.total
    }

    /// The cumulative increase so far (what the last [`update`](Self::update) returned; 0 before any).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The wrap range given to [`new`](Self::new).
    pub fn max_range(&self) -> u64 {
        self.max_range
    }
}

/// How a counter's energy relates to the machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterKind {
    /// Part of the machine's energy, disjoint from the other `Total` counters: the machine's energy is their sum
    /// (RAPL `package-N` and `dram`, or `psys` alone; each NVIDIA GPU).
    Total,
    /// Contained in a `Total` counter, reported for detail only (RAPL `core` and `uncore` inside `package`; every
    /// other zone when `psys` is the total).
    Part,
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Total => "total",
            Self::Part => "part",
        })
    }
}

/// One energy counter, read as cumulative microjoules since it was opened.
pub trait EnergyCounter: Send {
    /// Its name, e.g. `rapl:package-0`, `rapl:dram`, `nvml:gpu0`.
    fn name(&self) -> &str;

    /// Whether it adds to the machine's energy or is contained in another counter.
    fn kind(&self) -> CounterKind;

    /// Cumulative energy in µJ since the counter was opened (its first reading is the origin), with the hardware
    /// counter's wrap-around undone. Must be called at least once per wrap period (see [`WrapCounter`]).
    ///
    /// # Errors
    ///
    /// When the counter cannot be read now ([`Error::CounterUnreadable`], [`Error::Nvml`]).
    fn read_uj(&mut self) -> Result<u64>;
}

/// Why an energy source is not measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// The source: `rapl` (the whole interface), `rapl:<zone>`, `nvml`, `nvml:gpu<i>`, `ioreport`, `cpu`.
    pub source: String,
    /// Why, in words, e.g. "/sys/class/powercap does not exist (a VM or container?)".
    pub reason: String,
}

impl Unavailable {
    fn new(source: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// One Linux powercap RAPL zone (`/sys/class/powercap/intel-rapl:N[:M]` or `intel-rapl-mmio:N[:M]`), read from
/// its `energy_uj` file (µJ, wrapping at `max_energy_range_uj`; Documentation/power/powercap/powercap.rst). AMD
/// family 17h and later expose their package and core counters through the same interface.
#[derive(Debug)]
pub struct RaplZone {
    /// `rapl:<zone name>` (discovery may qualify it with the parent zone's name when zone names repeat).
    name: String,
    /// The zone's `name` file, e.g. `package-0`, `core`, `dram`, `psys`.
    zone_name: String,
    kind: CounterKind,
    /// `<zone_dir>/energy_uj`.
    energy_path: PathBuf,
    counter: WrapCounter,
}

impl RaplZone {
    /// Opens the zone in `zone_dir`: reads its `name` (the directory name if absent), `max_energy_range_uj`
    /// (0, "never wraps", if absent) and one `energy_uj` reading, which becomes the origin of
    /// [`read_uj`](EnergyCounter::read_uj).
    ///
    /// # Errors
    ///
    /// [`Error::CounterUnreadable`] when `energy_uj` cannot be read (since Linux 5.10 it is root-only, after the
    /// PLATYPUS power side channel, CVE-2020-8694; the reason says so) or is not a number.
    pub fn open(zone_dir: &Path, kind: CounterKind) -> Result<Self> {
        let zone_name = zone_name(zone_dir);
        let name = format!("rapl:{zone_name}");
        Self::open_named(zone_dir, zone_name, name, kind)
    }

    /// [`open`](Self::open) with the zone's `name` already read (`zone_name`) and the counter's name chosen by
    /// the caller (discovery qualifies repeated names with the parent zone's).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub(crate) fn open_named(
        zone_dir: &Path,
        zone_name: String,
        name: String,
        kind: CounterKind,
    ) -> Result<Self> {
        let max_range = read_trimmed(&zone_dir.join("max_energy_range_uj"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let mut zone = Self {
            name,
            zone_name,
            kind,
            energy_path: zone_dir.join("energy_uj"),
            counter: WrapCounter::new(max_range),
        };
        zone.read_uj()?;
        Ok(zone)
    }

    /// The zone's own name (its `name` file), e.g. `package-0`.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The `energy_uj` file read.
    pub fn path(&self) -> &Path {
        &self.energy_path
    }

    /// The counter's wrap range in µJ (`max_energy_range_uj`; 0 when the file was absent).
    pub fn max_energy_range_uj(&self) -> u64 {
        self.counter.max_range()
    }

    fn raw_uj(&self) -> Result<u64> {
        read_energy_uj(&self.energy_path).map_err(|reason| Error::CounterUnreadable {
            counter: self.name.clone(),
            reason,
        })
    }
}

impl EnergyCounter for RaplZone {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CounterKind {
        self.kind
    }

    fn read_uj(&mut self) -> Result<u64> {
        let raw = self.raw_uj()?;
        Ok(self.counter.update(raw))
    }
}

/// NVML's energy counter unwrapped: millijoule readings in, cumulative microjoules since the first reading out.
///
/// `nvmlDeviceGetTotalEnergyConsumption` counts mJ since the driver was loaded in 64 bits, so it never wraps in
/// practice; a decrease means the driver was reloaded and the counter restarted from zero (a [`WrapCounter`]
/// with `max_range` 0). Kept apart from [`NvmlEnergy`] so that the arithmetic is tested without a GPU.
///
/// ```
/// let mut c = silica_telemetry::MjCounter::new();
/// assert_eq!(c.update(1000), 0);
/// assert_eq!(c.update(1500), 500_000); // 500 mJ = 500 000 µJ
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MjCounter {
    inner: WrapCounter,
}

impl MjCounter {
    /// A counter with no reading yet.
    pub fn new() -> Self {
        Self {
            inner: WrapCounter::new(0),
        }
    }

    /// Takes one reading in mJ and returns the cumulative energy since the first reading in µJ (× 1000).
    pub fn update(&mut self, total_mj: u64) -> u64 {
        self.inner.update(total_mj).saturating_mul(1000)
    }
}

impl Default for MjCounter {
    fn default() -> Self {
        Self::new()
    }
}

/// One NVIDIA GPU's energy through NVML (`nvmlDeviceGetTotalEnergyConsumption`: mJ since the driver loaded,
/// Volta and newer), loaded at run time by `nvml-wrapper`: nothing is needed to build without a GPU.
pub struct NvmlEnergy {
    nvml: Arc<nvml_wrapper::Nvml>,
    index: u32,
    /// `nvml:gpu<index>`.
    name: String,
    counter: MjCounter,
}

impl fmt::Debug for NvmlEnergy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmlEnergy")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl NvmlEnergy {
    /// Opens GPU `index` (NVML index order) and takes its first reading, the origin of
    /// [`read_uj`](EnergyCounter::read_uj).
    ///
    /// # Errors
    ///
    /// [`Error::Nvml`] when the GPU cannot be opened or has no energy counter (older than Volta:
    /// `NotSupported`).
    pub fn open(nvml: Arc<nvml_wrapper::Nvml>, index: u32) -> Result<Self> {
        let mut gpu = Self {
            nvml,
            index,
            name: format!("nvml:gpu{index}"),
            counter: MjCounter::new(),
        };
        gpu.read_uj()?;
        Ok(gpu)
    }

    /// Every GPU NVML sees, opened; what could not be opened (NVML itself, or one GPU) is listed as
    /// [`Unavailable`] with NVML's error.
    pub fn discover() -> (Vec<NvmlEnergy>, Vec<Unavailable>) {
        let (nvml, count) = match open_nvml() {
            Ok((nvml, count)) => (Arc::new(nvml), count),
            Err(e) => {
                let reason = match e {
                    NvmlOpenError::Init(e) => format!("NVML: {e}"),
                    NvmlOpenError::Count(e) => format!("NVML could not count GPUs: {e}"),
                    NvmlOpenError::NoGpu => "NVML found no GPU".to_owned(),
                };
                return (Vec::new(), vec![Unavailable::new("nvml", reason)]);
            }
        };
        let mut gpus = Vec::new();
        let mut unavailable = Vec::new();
        for index in 0..count {
            match Self::open(Arc::clone(&nvml), index) {
                Ok(g) => gpus.push(g),
                Err(e) => unavailable.push(Unavailable::new(format!("nvml:gpu{index}"), e.to_string())),
            }
        }
        (gpus, unavailable)
    }

    /// The GPU's NVML index.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn raw_mj(&self) -> Result<u64> {
        let what = |call: &str| format!("{call} on GPU {}", self.index);
        let device = self
            .nvml
            .device_by_index(self.index)
            .map_err(|source| Error::Nvml {
                what: what("nvmlDeviceGetHandleByIndex"),
                source,
            })?;
        device.total_energy_consumption().map_err(|source| Error::Nvml {
            what: what("nvmlDeviceGetTotalEnergyConsumption"),
            source,
        })
    }
}

impl EnergyCounter for NvmlEnergy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CounterKind {
        CounterKind::Total
    }

    fn read_uj(&mut self) -> Result<u64> {
        let raw = self.raw_mj()?;
        Ok(self.counter.update(raw))
    }
}

/// The energy counters this process can read, and why the others are missing.
#[derive(Default)]
pub struct EnergySources {
    /// Every counter opened, RAPL zones first (in zone order), then GPUs.
    pub counters: Vec<Box<dyn EnergyCounter>>,
    /// Every source that could not be opened, with why; when `counters` is empty this says why there is no
    /// energy measurement at all.
    pub unavailable: Vec<Unavailable>,
}

impl fmt::Debug for EnergySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnergySources")
            .field("counters", &self.counter_names())
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

impl EnergySources {
    /// Every energy counter of this machine: on Linux the RAPL zones under `/sys/class/powercap` and the NVIDIA
    /// GPUs through NVML; on macOS none yet (Apple IOReport is listed as unavailable); elsewhere the GPUs only.
    pub fn discover() -> EnergySources {
        if cfg!(target_os = "linux") {
            Self::discover_in(Path::new("/sys/class/powercap"), true)
        } else if cfg!(target_os = "macos") {
            EnergySources {
                counters: Vec::new(),
                unavailable: vec![Unavailable::new(
                    "ioreport",
                    "Apple IOReport energy is not implemented yet",
                )],
            }
        } else {
            let mut sources = EnergySources::default();
            sources.unavailable.push(Unavailable::new(
                "cpu",
                format!("no CPU energy counter is known on {}", std::env::consts::OS),
            ));
            sources.add_nvml();
            sources
        }
    }

    /// The RAPL zones under `powercap_root` (normally `/sys/class/powercap`) and, with `with_nvml`, the NVIDIA
    /// GPUs.
    ///
    /// Zones are `intel-rapl:N` (top level: `package-N`, or `psys`) and `intel-rapl:N:M` (`core`, `uncore`,
    /// `dram`), listed flat under the root (as sysfs does) or nested in their parent, each once; then
    /// `intel-rapl-mmio:N[:M]`, skipped where it repeats an `intel-rapl` zone of the same name (Intel client
    /// parts expose `package-0` through both). Kinds: a readable `psys` zone (the whole platform) is the only
    /// [`CounterKind::Total`] and every other zone a part of it; otherwise each top-level zone is `Total`,
    /// `dram` sub-zones are `Total` too (DRAM energy is outside the package domain: the Intel SDM, vol. 3B, "RAPL
    /// Interfaces", lists DRAM as its own domain beside PKG, whose PP0 and PP1 are the kernel's `core` and
    /// `uncore`, and PSys as the whole platform) and `core`, `uncore` and other sub-zones are `Part`.
    ///
    /// Counters are named `rapl:<zone name>`, or `rapl:<parent name>/<zone name>` when the name repeats (two
    /// sockets: `rapl:package-1/dram`).
    pub fn discover_in(powercap_root: &Path, with_nvml: bool) -> EnergySources {
        let mut sources = rapl_sources_in(powercap_root);
        if with_nvml {
            sources.add_nvml();
        }
        sources
    }

    fn add_nvml(&mut self) {
        let (gpus, unavailable) = NvmlEnergy::discover();
        self.counters
            .extend(gpus.into_iter().map(|g| Box::new(g) as Box<dyn EnergyCounter>));
        self.unavailable.extend(unavailable);
    }

    /// Whether any counter was opened.
    pub fn is_available(&self) -> bool {
        !self.counters.is_empty()
    }

    /// Whether any [`CounterKind::Total`] counter was opened (there is a machine energy to report).
    pub fn has_total(&self) -> bool {
        self.counters.iter().any(|c| c.kind() == CounterKind::Total)
    }

    /// Why sources are missing: the [`Unavailable`] entries as `source: reason`, joined by `"; "`, for messages
    /// like `energy: unavailable (<reason>)`; "no energy counter found" when there is no entry.
    pub fn reason(&self) -> String {
        joined_reasons(&self.unavailable).unwrap_or_else(|| "no energy counter found".to_owned())
    }

    /// Each counter's name and kind, in order.
    pub fn counter_names(&self) -> Vec<(String, CounterKind)> {
        self.counters
            .iter()
            .map(|c| (c.name().to_owned(), c.kind()))
            .collect()
    }

    /// Reads every counter once ([`EnergyCounter::read_uj`], µJ since opened), `None` for a failed read.
    pub fn read_all_uj(&mut self) -> Vec<Option<u64>> {
        self.counters.iter_mut().map(|c| c.read_uj().ok()).collect()
    }
}

/// The [`Unavailable`] entries as `source: reason`, joined by `"; "`; `None` for none.
pub(crate) fn joined_reasons(unavailable: &[Unavailable]) -> Option<String> {
    (!unavailable.is_empty()).then(|| {
        unavailable
            .iter()
            .map(Unavailable::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `fs_err::read_to_string(path)`, trimmed; `None` when unreadable.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    fs_err::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// A RAPL zone's name: its `name` file, trimmed, or the directory name when that is missing or empty.
pub(crate) fn zone_name(zone_dir: &Path) -> String {
    read_trimmed(&zone_dir.join("name"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            zone_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// One reading of a RAPL `energy_uj` file (`path`), in µJ; `Err` with why it cannot be read ("energy_uj not
/// readable: …", root-only since Linux 5.10) or is not a counter.
pub(crate) fn read_energy_uj(path: &Path) -> Result<u64, String> {
    let text = fs_err::read_to_string(path).map_err(|e| energy_unreadable_reason(&e))?;
    let text = text.trim();
    text.parse::<u64>()
        .map_err(|_| format!("energy_uj is not a counter: {text:?}"))
}

/// Zone order key: (0 for `intel-rapl`, 1 for `intel-rapl-mmio`; indices), e.g. `intel-rapl:1:0` → (0, [1, 0]).
pub(crate) type ZoneKey = (u8, Vec<u32>);

fn rapl_zone_key(dir_name: &str) -> Option<ZoneKey> {
    let (family, rest) = if let Some(rest) = dir_name.strip_prefix("intel-rapl-mmio:") {
        (1, rest)
    } else {
        (0, dir_name.strip_prefix("intel-rapl:")?)
    };
    let indices: Option<Vec<u32>> = rest.split(':').map(|n| n.parse().ok()).collect();
    let indices = indices?;
    (!indices.is_empty() && indices.len() <= 2).then_some((family, indices))
}

/// A zone directory found, before opening.
struct ZoneDir {
    dir: PathBuf,
    /// Its `name` file, or the directory name.
    name: String,
    top_level: bool,
    /// `name` for a top-level zone, `<parent name>/<name>` for a sub-zone.
    qualified: String,
}

/// The RAPL zone directories under `root` (normally `/sys/class/powercap`) in zone order: every `intel-rapl:N`
/// (and `intel-rapl-mmio:N`) and its `…:N:M` sub-zones, listed flat under `root` (as sysfs does) or nested in
/// the parent zone, each once. `None` when `root` cannot be read.
pub(crate) fn rapl_zone_dirs(root: &Path) -> Option<BTreeMap<ZoneKey, PathBuf>> {
    fn add_zones_in(entries: fs_err::ReadDir, zones: &mut BTreeMap<ZoneKey, PathBuf>) {
        for entry in entries.flatten() {
            if let Some(key) = entry.file_name().to_str().and_then(rapl_zone_key) {
                zones.entry(key).or_insert_with(|| entry.path());
            }
        }
    }
    let entries = fs_err::read_dir(root).ok()?;
    let mut dirs: BTreeMap<ZoneKey, PathBuf> = BTreeMap::new();
    add_zones_in(entries, &mut dirs);
    let top: Vec<PathBuf> = dirs
        .iter()
        .filter(|(k, _)| k.1.len() == 1)
        .map(|(_, d)| d.clone())
        .collect();
    for dir in top {
        if let Ok(children) = fs_err::read_dir(&dir) {
            add_zones_in(children, &mut dirs);
        }
    }
    Some(dirs)
}

fn rapl_sources_in(root: &Path) -> EnergySources {
    let mut sources = EnergySources::default();
    let Some(dirs) = rapl_zone_dirs(root) else {
        let reason = format!("{} does not exist (a VM or container?)", root.display());
        sources.unavailable.push(Unavailable::new("rapl", reason));
        return sources;
    };
    if dirs.is_empty() {
        let reason = format!("no intel-rapl zones in {} (a VM?)", root.display());
        sources.unavailable.push(Unavailable::new("rapl", reason));
        return sources;
    }

    // Names, qualified by the parent zone's name.
    let names: BTreeMap<&ZoneKey, String> = dirs.iter().map(|(k, dir)| (k, zone_name(dir))).collect();
    let mut zones: Vec<ZoneDir> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (key, dir) in &dirs {
        let name = names[key].clone();
        let top_level = key.1.len() == 1;
        let qualified = if top_level {
            name.clone()
        } else {
            let parent: ZoneKey = (key.0, key.1[..1].to_vec());
            match names.get(&parent) {
                Some(p) => format!("{p}/{name}"),
                None => name.clone(),
            }
        };
        // `intel-rapl` zones come first in key order, so an `intel-rapl-mmio` repeat is the one skipped.
        if !seen.insert(qualified.clone()) {
            continue;
        }
        zones.push(ZoneDir {
            dir: dir.clone(),
            name,
            top_level,
            qualified,
        });
    }

    // Open every zone; kinds are settled once we know whether `psys` is readable.
    let mut opened: Vec<(RaplZone, bool)> = Vec::new();
    let name_count = |n: &str| zones.iter().filter(|z| z.name == n).count();
    for z in &zones {
        let label = if name_count(&z.name) > 1 {
            format!("rapl:{}", z.qualified)
        } else {
            format!("rapl:{}", z.name)
        };
        match RaplZone::open_named(&z.dir, z.name.clone(), label.clone(), CounterKind::Part) {
            Ok(zone) => opened.push((zone, z.top_level)),
            Err(Error::CounterUnreadable { reason, .. }) => {
                sources.unavailable.push(Unavailable::new(label, reason));
            }
            Err(e) => sources.unavailable.push(Unavailable::new(label, e.to_string())),
        }
    }
    let psys = opened.iter().any(|(z, _)| z.zone_name == "psys");
    for (mut zone, top_level) in opened {
        let total = if psys {
            zone.zone_name == "psys"
        } else {
            top_level || zone.zone_name == "dram"
        };
        zone.kind = if total {
            CounterKind::Total
        } else {
            CounterKind::Part
        };
        sources.counters.push(Box::new(zone));
    }
    sources
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Writes one zone in sysfs's format: `name`, `max_energy_range_uj`, and `energy_uj` when given.
    fn zone(dir: &Path, name: &str, max_range: u64, energy: Option<u64>) {
        fs_err::create_dir_all(dir).unwrap();
        fs_err::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs_err::write(dir.join("max_energy_range_uj"), format!("{max_range}\n")).unwrap();
        if let Some(e) = energy {
            set(dir, e);
        }
    }

    fn set(dir: &Path, energy_uj: u64) {
        fs_err::write(dir.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    }

    fn names_kinds(s: &EnergySources) -> Vec<(String, CounterKind)> {
        s.counter_names()
    }

    #[test]
    fn wrap_counter_unwraps_once_per_decrease() {
        let mut c = WrapCounter::new(262_143_328_850);
        assert_eq!(c.total(), 0);
        assert_eq!(c.update(262_143_000_000), 0);
        assert_eq!(c.update(262_143_300_000), 300_000);
        // Wrapped: 28 850 µJ to the top, then 1 000 from zero.
        assert_eq!(c.update(1_000), 300_000 + 28_850 + 1_000);
        assert_eq!(c.update(1_000), 329_850);
        assert_eq!(c.total(), 329_850);
    }

    #[test]
    fn wrap_counter_without_range_treats_a_decrease_as_a_reset() {
        let mut c = WrapCounter::new(0);
        assert_eq!(c.update(500), 0);
        assert_eq!(c.update(800), 300);
        assert_eq!(c.update(50), 350);
        // A reading above a non-zero range cannot come from a wrapping counter: a reset too.
        let mut c = WrapCounter::new(100);
        c.update(150);
        assert_eq!(c.update(10), 10);
    }

    #[test]
    fn mj_counter_follows_a_recorded_nvml_sequence() {
        let mut c = MjCounter::new();
        let totals: Vec<u64> = [1000, 1500, 2600, 100, 400]
            .into_iter()
            .map(|mj| c.update(mj))
            .collect();
        // 500 mJ, 1100 mJ, then a driver reload (100 mJ since), then 300 mJ.
        assert_eq!(totals, [0, 500_000, 1_600_000, 1_700_000, 2_000_000]);
    }

    #[test]
    fn rapl_package_core_dram_with_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pkg = root.join("intel-rapl:0");
        let core = pkg.join("intel-rapl:0:0");
        let dram = pkg.join("intel-rapl:0:1");
        zone(&pkg, "package-0", 1_000_000, Some(990_000));
        zone(&core, "core", 1_000_000, Some(10));
        zone(&dram, "dram", 500_000, Some(400_000));
        // Not zones: the control type and another powercap driver.
        fs_err::create_dir_all(root.join("intel-rapl")).unwrap();
        fs_err::create_dir_all(root.join("dtpm")).unwrap();

        let mut s = EnergySources::discover_in(root, false);
        assert!(s.is_available() && s.has_total());
        assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);
        assert_eq!(
            names_kinds(&s),
            [
                ("rapl:package-0".to_owned(), CounterKind::Total),
                ("rapl:core".to_owned(), CounterKind::Part),
                ("rapl:dram".to_owned(), CounterKind::Total),
            ]
        );
        // Opening took the origin.
        assert_eq!(s.read_all_uj(), [Some(0), Some(0), Some(0)]);

        // Time passes: the package wraps past max_energy_range_uj.
        set(&pkg, 5_000);
        set(&core, 2_010);
        set(&dram, 450_000);
        assert_eq!(s.read_all_uj(), [Some(10_000 + 5_000), Some(2_000), Some(50_000)]);
        // The dram counter wraps too, the package does not.
        set(&pkg, 25_000);
        set(&core, 3_010);
        set(&dram, 100);
        assert_eq!(
            s.read_all_uj(),
            [Some(35_000), Some(3_000), Some(50_000 + 50_000 + 100)]
        );

        // A failed read is an error, not a zero; the counter carries on afterwards.
        fs_err::remove_file(core.join("energy_uj")).unwrap();
        let r = s.counters[1].read_uj();
        assert!(
            matches!(&r, Err(Error::CounterUnreadable { counter, reason })
                if counter == "rapl:core" && reason.starts_with("energy_uj not readable")),
            "{r:?}"
        );
        set(&core, 4_010);
        assert_eq!(s.counters[1].read_uj().unwrap(), 4_000);
    }

    #[test]
    fn flat_sysfs_listing_and_mmio_duplicates() {
        // sysfs lists every zone flat under /sys/class/powercap (symlinks) and nests sub-zones in their parent.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(&root.join("intel-rapl:0"), "package-0", 100, Some(1));
        zone(&root.join("intel-rapl:0:0"), "core", 100, Some(1));
        zone(&root.join("intel-rapl:0/intel-rapl:0:0"), "core", 100, Some(1));
        zone(&root.join("intel-rapl:1"), "package-1", 100, Some(1));
        zone(&root.join("intel-rapl:1/intel-rapl:1:0"), "core", 100, Some(1));
        zone(&root.join("intel-rapl-mmio:0"), "package-0", 100, Some(1));
        zone(&root.join("intel-rapl-mmio:1"), "platform-x", 100, Some(1));
        let s = EnergySources::discover_in(root, false);
        assert_eq!(
            names_kinds(&s),
            [
                ("rapl:package-0".to_owned(), CounterKind::Total),
                ("rapl:package-0/core".to_owned(), CounterKind::Part),
                ("rapl:package-1".to_owned(), CounterKind::Total),
                ("rapl:package-1/core".to_owned(), CounterKind::Part),
                ("rapl:platform-x".to_owned(), CounterKind::Total),
            ]
        );
    }

    #[test]
    fn readable_psys_is_the_only_total() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(&root.join("intel-rapl:0"), "package-0", 1000, Some(5));
        zone(&root.join("intel-rapl:0/intel-rapl:0:0"), "core", 1000, Some(5));
        zone(&root.join("intel-rapl:0/intel-rapl:0:1"), "dram", 1000, Some(5));
        zone(&root.join("intel-rapl:1"), "psys", 1000, Some(5));
        let s = EnergySources::discover_in(root, false);
        let totals: Vec<String> = names_kinds(&s)
            .into_iter()
            .filter(|(_, k)| *k == CounterKind::Total)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(totals, ["rapl:psys"]);
        assert_eq!(s.counters.len(), 4);

        // An unreadable psys does not count: packages and dram are the totals again.
        fs_err::remove_file(root.join("intel-rapl:1/energy_uj")).unwrap();
        let s = EnergySources::discover_in(root, false);
        assert_eq!(
            names_kinds(&s),
            [
                ("rapl:package-0".to_owned(), CounterKind::Total),
                ("rapl:core".to_owned(), CounterKind::Part),
                ("rapl:dram".to_owned(), CounterKind::Total),
            ]
        );
        assert_eq!(s.unavailable.len(), 1);
        assert_eq!(s.unavailable[0].source, "rapl:psys");
    }

    #[test]
    fn unreadable_zones_are_listed_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        zone(&root.join("intel-rapl:0"), "package-0", 1000, None);
        // A directory where the counter file should be: reading it fails (EISDIR) even as root.
        fs_err::create_dir_all(root.join("intel-rapl:0/energy_uj")).unwrap();
        zone(&root.join("intel-rapl:0/intel-rapl:0:0"), "core", 1000, None);
        zone(&root.join("intel-rapl:1"), "package-1", 1000, None);
        fs_err::write(root.join("intel-rapl:1/energy_uj"), "n/a\n").unwrap();
        let s = EnergySources::discover_in(root, false);
        assert!(!s.is_available());
        let sources: Vec<&str> = s.unavailable.iter().map(|u| u.source.as_str()).collect();
        assert_eq!(sources, ["rapl:package-0", "rapl:core", "rapl:package-1"]);
        assert!(s.unavailable[0].reason.starts_with("energy_uj not readable: "));
        assert!(s.unavailable[1].reason.starts_with("energy_uj not readable: "));
        assert_eq!(s.unavailable[2].reason, "energy_uj is not a counter: \"n/a\"");
        let reason = s.reason();
        assert!(
            reason.starts_with("rapl:package-0: energy_uj not readable"),
            "{reason}"
        );
        assert_eq!(reason.matches("; ").count(), 2);

        // Opening one directly gives the same reason in the error.
        let e = RaplZone::open(&root.join("intel-rapl:1"), CounterKind::Total).unwrap_err();
        assert_eq!(
            e.to_string(),
            "energy counter rapl:package-1: energy_uj is not a counter: \"n/a\""
        );
    }

    #[test]
    fn no_powercap_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let s = EnergySources::discover_in(dir.path(), false);
        assert!(!s.is_available() && !s.has_total());
        assert_eq!(s.unavailable.len(), 1);
        assert!(s.reason().contains("no intel-rapl zones"), "{}", s.reason());

        let s = EnergySources::discover_in(&dir.path().join("powercap"), false);
        assert!(!s.is_available());
        assert!(s.reason().contains("does not exist"), "{}", s.reason());

        assert_eq!(EnergySources::default().reason(), "no energy counter found");
    }

    #[test]
    fn zone_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("intel-rapl:0");
        zone(&z, "package-0", 262_143_328_850, Some(7));
        let zone = RaplZone::open(&z, CounterKind::Total).unwrap();
        assert_eq!(zone.name(), "rapl:package-0");
        assert_eq!(zone.zone_name(), "package-0");
        assert_eq!(zone.kind(), CounterKind::Total);
        assert_eq!(zone.max_energy_range_uj(), 262_143_328_850);
        assert!(zone.path().ends_with("intel-rapl:0/energy_uj"));
    }

    #[test]
    fn nvml_gpus_are_totals_or_explained() {
        let dir = tempfile::tempdir().unwrap();
        let s = EnergySources::discover_in(dir.path(), true);
        // The empty powercap root is explained first.
        assert_eq!(s.unavailable[0].source, "rapl");
        for (name, kind) in s.counter_names() {
            assert!(
                name.starts_with("nvml:gpu") && kind == CounterKind::Total,
                "{name}"
            );
        }
        if !s.is_available() {
            let nvml = s.unavailable.iter().find(|u| u.source.starts_with("nvml"));
            assert!(nvml.is_some_and(|u| !u.reason.is_empty()), "{:?}", s.unavailable);
        }
    }

    #[test]
    fn this_machine_explains_what_is_missing() {
        let s = EnergySources::discover();
        if !s.is_available() {
            assert!(!s.unavailable.is_empty());
            assert!(!s.reason().is_empty());
        }
        for u in &s.unavailable {
            assert!(!u.reason.is_empty(), "{u:?}");
        }
    }
}
