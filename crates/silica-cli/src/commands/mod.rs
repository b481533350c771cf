//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod inspect;
mod progress;
pub(crate) mod quantize;
pub(crate) mod run;
pub(crate) mod synth;
