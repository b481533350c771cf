//! The cached hardware profile: machine facts plus one probe measurement, kept in `hw.json` so that `silica hw`
//! and `silica plan` measure once per machine rather than on every run.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::machine::{MachineInfo, machine_info};
use crate::probe::{Probe, ProbeParams, measure};
use crate::{Error, Result};

/// File name of the cached profile inside the cache directory.
pub const HW_PROFILE_FILE: &str = "hw.json";

/// This machine's facts and measured performance, as cached in [`cache_path`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HwProfile {
    /// Facts read from the OS.
    pub machine: MachineInfo,
    /// Measured bandwidth and peak FLOP/s.
    pub probe: Probe,
    /// When `probe` was measured, in seconds since the Unix epoch (UTC).
    pub measured_unix_s: u64,
    /// The silica version that measured it (`CARGO_PKG_VERSION` of this crate).
    pub silica_version: String,
}

/// Where the profile is cached: `$SILICA_CACHE_DIR/hw.json`, else `$XDG_CACHE_HOME/silica/hw.json`, else
/// `~/.cache/silica/hw.json` (`$HOME`), else `.cache/silica/hw.json` relative to the working directory. Empty
/// variables count as unset. The same lookup order as `silica_gguf::models_dir`, with `SILICA_CACHE_DIR` in place
/// of `SILICA_MODELS_DIR` (the XDG Base Directory specification for the rest).
pub fn cache_path() -> PathBuf {
    cache_path_from(|k| std::env::var_os(k))
}

/// [`cache_path`] with the environment given as a function.
fn cache_path_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let env = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("SILICA_CACHE_DIR") {
        return dir.join(HW_PROFILE_FILE);
    }
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("silica")
        .join(HW_PROFILE_FILE)
}

impl HwProfile {
    /// Reads a profile saved by [`HwProfile::save`]; `Ok(None)` when `path` does not exist.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read; [`Error::Parse`] (naming the file) when it is not a
    /// profile.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    what: "reading",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::Parse {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the profile to `path` as pretty JSON, atomically: into a temporary file in the same directory
    /// (created if missing), flushed to disk, then renamed over `path`, so readers see the old or the new file,
    /// never half of one.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory or file that could not be created, written or renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|source| Error::Serialize {
            path: path.to_owned(),
            source,
        })?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).map_err(|source| Error::Io {
            what: "creating directory",
            path: dir.to_owned(),
            source,
        })?;
        let file_name = path
            .file_name()
            .map_or_else(|| HW_PROFILE_FILE.into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = fs_err::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })();
        if let Err(source) = written {
            let _ = fs_err::remove_file(&tmp);
            return Err(Error::Io {
                what: "writing",
                path: tmp,
                source,
            });
        }
        if let Err(source) = fs_err::rename(&tmp, path) {
            let _ = fs_err::remove_file(&tmp);
            return Err(Error::Io {
                what: "renaming onto",
                path: path.to_owned(),
                source,
            });
        }
        Ok(())
    }

    /// Whether this profile still describes `current` measured as `params` asks: same `cpu_info`,
    /// `n_threads_logical` and `ram_total_bytes`, and a probe run on `params.n_threads` threads with the same
    /// page advice (`params.huge_pages`). Anything else (a new VM size, a RAM upgrade, another thread count or
    /// page policy) calls for a new measurement.
    pub fn matches(&self, current: &MachineInfo, params: &ProbeParams) -> bool {
        self.machine.cpu_info == current.cpu_info
            && self.machine.n_threads_logical == current.n_threads_logical
            && self.machine.ram_total_bytes == current.ram_total_bytes
            && self.probe.n_threads == params.n_threads
            && self.probe.huge_pages == params.huge_pages
    }

    /// Measures this machine now with `params` (about 1–3 s with the default parameters).
    ///
    /// # Errors
    /// As [`measure`].
    pub fn measure_now(params: &ProbeParams) -> Result<Self> {
        Self::measure_with(machine_info(), params)
    }

    fn measure_with(machine: MachineInfo, params: &ProbeParams) -> Result<Self> {
        let probe = measure(params)?;
        let measured_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            machine,
            probe,
            measured_unix_s,
            silica_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}

/// The profile cached at `path` if it [matches](HwProfile::matches) this machine and `params` and
/// `refresh` is false; otherwise a new measurement, saved to `path`. Returns the profile and whether it came from
/// the cache.
///
/// A cached profile's `machine` is replaced by the facts read now (free RAM, GPUs and power counters change
/// between runs); `probe` and `measured_unix_s` stay as measured. A cache file that does not parse (corrupted, or
/// from an incompatible silica version) is measured over rather than reported.
///
/// # Errors
/// [`Error::Io`] when the cache cannot be read or written; as [`measure`] when measuring fails.
pub fn load_or_measure(path: &Path, params: &ProbeParams, refresh: bool) -> Result<(HwProfile, bool)> {
    let machine = machine_info();
    if !refresh {
        let cached = match HwProfile::load(path) {
            Ok(cached) => cached,
            Err(Error::Parse { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(mut profile) = cached.filter(|p| p.matches(&machine, params)) {
            profile.machine = machine;
            return Ok((profile, true));
        }
    }
    let profile = HwProfile::measure_with(machine, params)?;
    profile.save(path)?;
    Ok((profile, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ProbeParams {
        ProbeParams {
            n_threads: 1,
            array_bytes: 1 << 20,
            reps: 1,
            fma_run_ms: 5,
            huge_pages: false,
        }
    }

    #[test]
    fn cache_path_lookup_order() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("SILICA_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_path_from(vars(ALL)), Path::new("/c/hw.json"));
        const NO_SILICA: &[(&str, &str)] =
            &[("SILICA_CACHE_DIR", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(cache_path_from(vars(NO_SILICA)), Path::new("/x/silica/hw.json"));
        assert_eq!(
            cache_path_from(vars(&[("HOME", "/h")])),
            Path::new("/h/.cache/silica/hw.json")
        );
        assert_eq!(cache_path_from(vars(&[])), Path::new(".cache/silica/hw.json"));
    }

    #[test]
    fn save_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dirs/hw.json");
        assert_eq!(HwProfile::load(&path).unwrap(), None);
        let profile = HwProfile::measure_now(&tiny()).unwrap();
        profile.save(&path).unwrap();
        assert_eq!(HwProfile::load(&path).unwrap(), Some(profile.clone()));
        // Saving again replaces the file and leaves no temporary behind.
        profile.save(&path).unwrap();
        let names: Vec<_> = fs_err::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hw.json"]);
    }

    #[test]
    fn corrupted_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hw.json");
        fs_err::write(&path, "{ not json").unwrap();
        let err = HwProfile::load(&path).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }));
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        // load_or_measure measures over it.
        let (profile, from_cache) = load_or_measure(&path, &tiny(), false).unwrap();
        assert!(!from_cache);
        assert_eq!(HwProfile::load(&path).unwrap(), Some(profile));
    }

    #[test]
    fn mismatch_triggers_a_new_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hw.json");
        let mut stale = HwProfile::measure_now(&tiny()).unwrap();
        stale.machine.cpu_info = "Some Other CPU".to_owned();
        stale.measured_unix_s = 1;
        stale.save(&path).unwrap();

        let (fresh, from_cache) = load_or_measure(&path, &tiny(), false).unwrap();
        assert!(!from_cache);
        assert_ne!(fresh.machine.cpu_info, "Some Other CPU");
        assert!(fresh.measured_unix_s > 1);
        assert_eq!(HwProfile::load(&path).unwrap().unwrap(), fresh);

        // Now it matches: served from the cache, with the probe as saved.
        let (cached, from_cache) = load_or_measure(&path, &tiny(), false).unwrap();
        assert!(from_cache);
        assert_eq!(cached.probe, fresh.probe);
        // A different thread count, or refresh, measures again.
        let two = ProbeParams {
            n_threads: 2,
            ..tiny()
        };
        assert!(!load_or_measure(&path, &two, false).unwrap().1);
        assert!(!load_or_measure(&path, &two, true).unwrap().1);
        assert!(load_or_measure(&path, &two, false).unwrap().1);
        // Another page policy measures again, and the profile records it.
        let huge = ProbeParams {
            huge_pages: true,
            ..two
        };
        let (p, from_cache) = load_or_measure(&path, &huge, false).unwrap();
        assert!(!from_cache && p.probe.huge_pages);
        assert!(load_or_measure(&path, &huge, false).unwrap().1);
        assert!(!load_or_measure(&path, &two, false).unwrap().1);
    }

    #[test]
    fn unreadable_cache_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails with something other than NotFound.
        let path = dir.path().join("hw.json");
        fs_err::create_dir_all(&path).unwrap();
        let err = HwProfile::load(&path).unwrap_err();
        assert!(matches!(err, Error::Io { what: "reading", .. }), "{err:?}");
    }
}
