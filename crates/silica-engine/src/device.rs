//! Where a model runs: the `--device` of `silica run` and `silica bench` ([`DeviceSpec`]).

use std::fmt;
use std::str::FromStr;

use silica_model::{CandleError, Device};

use crate::{Error, LoadParams};

/// A device choice as written on the command line: `auto`, `cpu`, `cpu-graph`, `cuda`, `cuda:N`, `metal`,
/// `metal:N` (llama.cpp's `--device` names devices as `CUDA0`, `Metal`; those spellings are accepted too,
/// case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// GPU 0 of the backend this build has (`--features cuda` or `metal`) when it opens, else the CPU.
    Auto,
    /// The CPU, with silica's native kernels.
    Cpu,
    /// The GPU code path, candle's tensor graph ([`silica_model::Model::load_graph`]), run on candle's CPU
    /// kernels: checks that path where no GPU is present. Slower than `cpu`.
    CpuGraph,
    /// CUDA device `N` (a build with `--features cuda`).
    Cuda(usize),
    /// Metal device `N` (a build with `--features metal`).
    Metal(usize),
}

impl DeviceSpec {
    /// Opens the device and returns the [`LoadParams`] that run on it. `Auto` falls back to the CPU when no GPU
    /// backend is built in or GPU 0 does not open.
    ///
    /// # Errors
    /// [`Error::Device`] when a GPU backend is asked for that this build lacks, or the GPU does not open.
    pub fn open(self) -> Result<LoadParams, Error> {
        let err = |reason: String| Error::Device {
            spec: self.to_string(),
            reason,
        };
        // candle's device errors carry a backtrace after their first line.
        let gpu_err = |e: CandleError| err(e.to_string().lines().next().unwrap_or_default().to_owned());
        let on = |device: Device| LoadParams { device, graph: false };
        let not_built = |feature: &str| {
            err(format!(
                "this silica was built without it; rebuild with `cargo build --release --features {feature}`"
            ))
        };
        match self {
            DeviceSpec::Cpu => Ok(LoadParams::default()),
            DeviceSpec::CpuGraph => Ok(LoadParams {
                device: Device::Cpu,
                graph: true,
            }),
            DeviceSpec::Cuda(n) if cfg!(feature = "cuda") => Device::new_cuda(n).map(on).map_err(gpu_err),
            DeviceSpec::Cuda(_) => Err(not_built("cuda")),
            DeviceSpec::Metal(n) if cfg!(feature = "metal") => Device::new_metal(n).map(on).map_err(gpu_err),
            DeviceSpec::Metal(_) => Err(not_built("metal")),
            DeviceSpec::Auto => Ok(Self::auto().0),
        }
    }

    /// What `auto` opens, and, when it falls back to the CPU in a build with a GPU backend, why GPU 0 did not
    /// open (for a note to the user; `None` in a CPU-only build, where the CPU is simply the device).
    pub fn auto() -> (LoadParams, Option<Error>) {
        let mut why = None;
        for (built, gpu) in [
            (cfg!(feature = "cuda"), DeviceSpec::Cuda(0)),
            (cfg!(feature = "metal"), DeviceSpec::Metal(0)),
        ] {
            if built {
                match gpu.open() {
                    Ok(p) => return (p, None),
                    Err(e) => why = Some(e),
                }
            }
        }
        (LoadParams::default(), why)
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    /// Parses `auto`, `cpu`, `cpu-graph`, `cuda`, `cuda:N`, `metal`, `metal:N`, or llama.cpp's `CUDAN`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.trim().to_ascii_lowercase();
        let gpu = |rest: &str, make: fn(usize) -> DeviceSpec| -> Option<DeviceSpec> {
            let n = rest.strip_prefix(':').unwrap_or(rest);
            if n.is_empty() {
                return Some(make(0));
            }
            n.parse().ok().map(make)
        };
        let spec = match lower.as_str() {
            "auto" => Some(DeviceSpec::Auto),
            "cpu" => Some(DeviceSpec::Cpu),
            "cpu-graph" => Some(DeviceSpec::CpuGraph),
            l => match (l.strip_prefix("cuda"), l.strip_prefix("metal")) {
                (Some(rest), _) => gpu(rest, DeviceSpec::Cuda),
                (_, Some(rest)) => gpu(rest, DeviceSpec::Metal),
                _ => None,
            },
        };
        spec.ok_or_else(|| Error::Device {
            spec: s.to_owned(),
            reason: "unknown device: expected auto, cpu, cpu-graph, cuda[:N] or metal[:N]".into(),
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::CpuGraph => f.write_str("cpu-graph"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_spelling() {
        for (s, want) in [
            ("auto", DeviceSpec::Auto),
            ("CPU", DeviceSpec::Cpu),
            ("cpu-graph", DeviceSpec::CpuGraph),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:1", DeviceSpec::Cuda(1)),
            ("CUDA2", DeviceSpec::Cuda(2)),
            ("metal", DeviceSpec::Metal(0)),
            ("Metal:0", DeviceSpec::Metal(0)),
        ] {
            let got: DeviceSpec = s.parse().unwrap();
            assert_eq!(got, want, "{s}");
            assert_eq!(got.to_string().parse::<DeviceSpec>().unwrap(), want);
        }
        for bad in ["gpu", "cuda:x", "vulkan", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(
                e.contains("unknown device") && e.contains("cuda[:N]"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn cpu_choices_open_and_missing_backends_say_how_to_build_them() {
        assert!(DeviceSpec::Cpu.open().unwrap().device.is_cpu());
        let g = DeviceSpec::CpuGraph.open().unwrap();
        assert!(g.device.is_cpu() && g.graph);
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("cuda:0") && e.contains("--features cuda"), "{e}");
        }
        if !cfg!(feature = "metal") {
            let e = DeviceSpec::Metal(0).open().unwrap_err().to_string();
            assert!(e.contains("metal:0") && e.contains("--features metal"), "{e}");
        }
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            assert!(DeviceSpec::Auto.open().unwrap().device.is_cpu());
        }
    }
}
