//! Shared by the CLI test binaries: running the built `silica`.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs the `silica` binary built for these tests.
pub fn silica(args: &[&str]) -> Output {
    silica_env::<&str>(args, &[])
}

/// Runs the `silica` binary built for these tests with the environment variables `env` set.
pub fn silica_env<V: AsRef<OsStr>>(args: &[&str], env: &[(&str, V)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silica"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap()
}
