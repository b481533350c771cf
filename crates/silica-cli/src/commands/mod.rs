//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod hw;
pub(crate) mod inspect;
pub(crate) mod monitor;
pub(crate) mod plan;
mod progress;
pub(crate) mod quantize;
pub(crate) mod run;
pub(crate) mod synth;

/// Opens the device of `--device`; with `auto` in a build with a GPU backend whose GPU 0 does not open, says on
/// stderr why the model runs on the CPU instead.
///
/// # Errors
/// The device named cannot be used ([`silica_engine::Error::Device`]).
pub(crate) fn open_device(spec: silica_engine::DeviceSpec) -> anyhow::Result<silica_engine::LoadParams> {
    if spec != silica_engine::DeviceSpec::Auto {
        return Ok(spec.open()?);
    }
    let (load, why) = silica_engine::DeviceSpec::auto();
    if let Some(e) = why {
        eprintln!("silica: running on the CPU: {e}");
    }
    Ok(load)
}
