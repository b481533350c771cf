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
