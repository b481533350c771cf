//! Integration tests of the GGUF reader and writer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod crafted;
mod real_models;
mod round_trip;
