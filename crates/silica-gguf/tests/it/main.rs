//! Integration tests of the GGUF reader and writer.

mod crafted;
mod real_models;
mod round_trip;
