//! Integration tests of silica-model: real-model greedy agreement with llama.cpp and consistency on fixtures.

mod consistency;
mod reference;
