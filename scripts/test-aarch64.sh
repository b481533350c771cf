#!/usr/bin/env bash
# Runs silica's tests built for aarch64 under qemu user-mode emulation on an x86-64 machine: by default
# silica-kernels' (the NEON kernels — legacy and k-quant dot products, activation quantizers, attention, `expf8` —
# against their scalar or portable twins); with `-p CRATE` first, that crate's. Not part of CI (it needs rustup's
# aarch64 target, fetched from the Rust distribution server); speed on ARM is not measured here.
#
# usage: scripts/test-aarch64.sh [cargo test args...]
#   scripts/test-aarch64.sh --release attention                        # silica-kernels, tests matching `attention`
#   scripts/test-aarch64.sh -p silica-model --release --test it consistency   # the model's graph/native checks
#   SILICA_QEMU_CPU=cortex-a53 scripts/test-aarch64.sh --release      # as an Armv8.0 core (no dotprod, no FP16)
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
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 ${SILICA_QEMU_CPU:+-cpu $SILICA_QEMU_CPU} -L /usr/aarch64-linux-gnu"
if [ "${1:-}" = "-p" ]; then
    cargo test --target "$target" --locked "$@"
else
    cargo test -p silica-kernels --target "$target" --locked "$@"
fi
