//! One process's GPU memory and utilisation, where NVML exposes them (NVIDIA; the library is loaded at run time,
//! so builds and machines without a GPU are unaffected).

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};

/// Why [`open_nvml`] found no GPU to use; each caller words it in its own message.
#[derive(Debug)]
pub(crate) enum NvmlOpenError {
    /// `nvmlInit` failed (usually: no NVIDIA driver, so no `libnvidia-ml.so.1`).
    Init(NvmlError),
    /// `nvmlDeviceGetCount` failed.
    Count(NvmlError),
    /// NVML loaded but sees no GPU.
    NoGpu,
}

/// Loads NVML at run time and counts its GPUs: the handle and a count of at least 1.
///
/// # Errors
/// [`NvmlOpenError`] saying which step failed.
pub(crate) fn open_nvml() -> Result<(Nvml, u32), NvmlOpenError> {
    let nvml = Nvml::init().map_err(NvmlOpenError::Init)?;
    let count = nvml.device_count().map_err(NvmlOpenError::Count)?;
    if count == 0 {
        return Err(NvmlOpenError::NoGpu);
    }
    Ok((nvml, count))
}

/// A process's use of the GPUs at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpuProcessStat {
    /// GPU memory the process holds, summed over devices, in bytes (NVML `nvmlDeviceGetComputeRunningProcesses`
    /// and `…GraphicsRunningProcesses`, `usedGpuMemory`).
    pub memory_bytes: u64,
    /// The process's streaming-multiprocessor utilisation since the previous reading, in % of one GPU, the
    /// largest over devices (`nvmlDeviceGetProcessUtilization`, `smUtil`); `None` where the driver gives no
    /// sample for it.
    pub sm_util_pct: Option<f64>,
}

/// Reads [`GpuProcessStat`]s through NVML.
pub struct GpuReader {
    nvml: Nvml,
    /// NVML timestamp (µs) of the last utilisation sample seen, per device.
    last_seen_us: Vec<u64>,
}

impl std::fmt::Debug for GpuReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuReader")
            .field("last_seen_us", &self.last_seen_us)
            .finish()
    }
}

impl GpuReader {
    /// Opens NVML; `Err` with the reason where it cannot be loaded or sees no GPU.
    ///
    /// # Errors
    /// The NVML error, as text (a missing library is the usual case on machines without an NVIDIA GPU).
    pub fn open() -> std::result::Result<Self, String> {
        let (nvml, n) = open_nvml().map_err(|e| match e {
            NvmlOpenError::Init(e) | NvmlOpenError::Count(e) => format!("NVML: {e}"),
            NvmlOpenError::NoGpu => "NVML: no GPU".to_owned(),
        })?;
        Ok(GpuReader {
            nvml,
            last_seen_us: vec![0; n as usize],
        })
    }

    /// `pid`'s memory and utilisation now; `None` when it holds no GPU memory on any device.
    pub fn read(&mut self, pid: u32) -> Option<GpuProcessStat> {
        let mut memory_bytes = 0u64;
        let mut present = false;
        let mut sm_util_pct: Option<f64> = None;
        for (i, last) in self.last_seen_us.iter_mut().enumerate() {
            let Ok(dev) = self.nvml.device_by_index(i as u32) else {
                continue;
            };
            let procs = dev
                .running_compute_processes()
                .into_iter()
                .chain(dev.running_graphics_processes())
                .flatten();
            for p in procs.filter(|p| p.pid == pid) {
                present = true;
                if let UsedGpuMemory::Used(b) = p.used_gpu_memory {
                    memory_bytes += b;
                }
            }
            if let Ok(samples) = dev.process_utilization_stats(*last) {
                for s in samples {
                    *last = (*last).max(s.timestamp);
                    if s.pid == pid {
                        let u = f64::from(s.sm_util);
                        sm_util_pct = Some(sm_util_pct.map_or(u, |m: f64| m.max(u)));
                    }
                }
            }
        }
        present.then_some(GpuProcessStat {
            memory_bytes,
            sm_util_pct,
        })
    }
}
