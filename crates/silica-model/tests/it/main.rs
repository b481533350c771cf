//! Integration tests of silica-model: real-model greedy agreement with llama.cpp and consistency on fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod consistency;
#[cfg(feature = "cuda")]
mod cuda;
mod reference;
