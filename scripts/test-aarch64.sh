#!/usr/bin/env bash
# Runs silica-kernels' tests built for aarch64 under qemu user-mode emulation: the NEON kernels (legacy and k-quant
# dot products, activation quantizers) against their scalar references, on an x86-64 machine. Not part of CI (it
# needs rustup's aarch64 target, fetched from the Rust distribution server); speed on ARM is not measured here.
#
# usage: scripts/test-aarch64.sh [cargo test args...]
# Installs when missing: the Rust target aarch64-unknown-linux-gnu (rustup) and Debian's gcc-aarch64-linux-gnu
# (the linker) and qemu-user (qemu-aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    $sudo apt-get install -y -q gcc-aarch64-linux-gnu qemu-user
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test -p silica-kernels --target "$target" --locked "$@"
