#!/usr/bin/env bash
# Counts the aarch64 instructions `silica bench` executes per prompt token and per generated token, for two silica
# binaries built for aarch64, under qemu user-mode emulation with a plugin that counts guest instructions
# (scripts/qemu-insn/insn.c). No ARM machine is needed, and nothing is timed: qemu's speed says nothing about an ARM
# core's, but the instruction counts are those of the real aarch64 code. One compute thread (-t 1, and
# SILICA_NUM_THREADS=1 for binaries built before 2026-11-23, whose bench computed with the default count whatever
# -t said), no telemetry sampler, and only the main thread's instructions are counted: any other thread (a spinning
# pool worker, a sampler) executes instructions in proportion to qemu's wall time, which depends on the load.
#
# Per token: the difference between -p 128 and -p 64 (prompt) or -n 32 and -n 16 (generation), one repetition
# without warm-up, divided by the difference in tokens (64, 16), so loading and fixed costs drop out.
#
# usage: scripts/arm-insn-count.sh OLD_BINARY NEW_BINARY MODEL.gguf...
#   cargo build --release --target aarch64-unknown-linux-gnu --bin silica   (see scripts/test-aarch64.sh's set-up;
#   once per revision, copying target/aarch64-unknown-linux-gnu/release/silica aside)
# Needs: qemu-aarch64 (Debian's qemu-user), gcc, the aarch64 sysroot (Debian's gcc-aarch64-linux-gnu).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,13p "$0"; exit 2; }
old=$1 new=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
plugin="$here/../target/qemu-insn/libinsn.so"
mkdir -p "$(dirname "$plugin")"
gcc -shared -fPIC -O2 -o "$plugin" "$here/qemu-insn/insn.c"
count() {
    local bin=$1 model=$2
    shift 2
    SILICA_NUM_THREADS=1 qemu-aarch64 -L /usr/aarch64-linux-gnu -plugin "$plugin" "$bin" bench -m "$model" -r 1 -t 1 --no-warmup --telemetry-interval 0 --no-save "$@" 2>&1 |
        awk '/^guest_insns/ { print $4; found = 1 } END { if (!found) exit 1 }' ||
        { echo "arm-insn-count: $bin bench -m $model $* printed no count" >&2; exit 1; }
}
echo "| model | binary | instructions per prompt token | per generated token |"
echo "|---|---|---:|---:|"
for m in "$@"; do
    for b in "$old" "$new"; do
        p1=$(count "$b" "$m" -p 64 -n 0)
        p2=$(count "$b" "$m" -p 128 -n 0)
        g1=$(count "$b" "$m" -p 0 -n 16)
        g2=$(count "$b" "$m" -p 0 -n 32)
        echo "| $(basename "$m") | $b | $(((p2 - p1) / 64)) | $(((g2 - g1) / 16)) |"
    done
done
