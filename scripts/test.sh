#!/usr/bin/env bash
# silica's test command (README): fetches the real test models when missing (sha256-checked, cached outside
# git), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh
cargo test --workspace --locked "$@"
