//! Test helpers shared by silica's crates: where the real test models are ([`models`]), tiny generated GGUF
//! models with random weights ([`fixtures`]) and llama.cpp's reference outputs ([`golden`]).
//!
//! Not published; panics freely, since a failed helper is a failed test.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod fixtures;
pub mod golden;
pub mod models;
