//! silica-convert: llama.cpp's per-tensor mixes, streaming quantization and synth.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod mix;
mod quantize;
