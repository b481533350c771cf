#!/usr/bin/env bash
# Lints the CUDA build (`--features cuda`: candle's CUDA kernels compiled by nvcc, the CUDA tests of
# crates/silica-model/tests/it/cuda.rs type-checked) without a GPU, so CI keeps the GPU path building.
# scripts/cuda-toolkit.sh supplies nvcc and the libraries; the build goes to target/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda="$(scripts/cuda-toolkit.sh)"
export CUDA_HOME="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
cargo clippy --locked --all-targets -p silica-model -p silica-engine -p silica-cli \
    --features silica-model/cuda,silica-engine/cuda,silica-cli/cuda -- -D warnings
