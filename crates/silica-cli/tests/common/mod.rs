//! Shared by the CLI test binaries: running the built `silica`.

use std::process::{Command, Output};

/// Runs the `silica` binary built for these tests.
pub fn silica(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silica"))
        .args(args)
        .output()
        .unwrap()
}
