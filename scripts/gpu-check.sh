#!/usr/bin/env bash
# Checks silica's CUDA path on a GPU machine that has no Rust toolchain and no network (such as the lent H100/H200
# machines): build and pack here, run there.
#
#   scripts/gpu-check.sh pack      # here: builds --features cuda (scripts/cuda-toolkit.sh supplies nvcc and the
#                                  # libraries), packs the binary and the CUDA tests into .gpu/ (git-ignored,
#                                  # xz-compressed: about 15 MB)
#   scripts/gpu-check.sh run       # there, from the repository root with .gpu/ beside it: the CUDA tests, greedy
#                                  # text on the GPU against the CPU, and `silica bench -dev cuda` on synthetic
#                                  # 1B- and 7B-shape models; log, tables and bench-results.jsonl under $OUT
#                                  # (or .gpu/out)
#
# CUDA_COMPUTE_CAP (default 90: H100, H200) picks the architecture of candle's precompiled quantized kernels; its
# other kernels are PTX, compiled by the driver at load.
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu

case "${1:-}" in
pack)
    cuda="$(scripts/cuda-toolkit.sh)"
    export CUDA_HOME="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
    cargo build --release --locked --features cuda -p silica-cli
    tests="$(cargo test --release --locked --features cuda -p silica-model --test it --no-run \
        --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])')"
    [[ -x "$tests" ]] || { echo "gpu-check.sh: no test executable built" >&2; exit 1; }
    rm -rf "$pack" && mkdir -p "$pack"
    for pair in "silica:$CARGO_TARGET_DIR/release/silica" "silica-model-it:$tests"; do
        name="${pair%%:*}" src="${pair#*:}"
        strip -o "$pack/$name" "$src"
        xz -T0 -6 "$pack/$name"
    done
    git rev-parse HEAD >"$pack/commit"
    du -sh "$pack"
    echo "gpu-check.sh: packed; on the GPU machine run: bash scripts/gpu-check.sh run (carry $pack)"
    ;;
run)
    [[ -f "$pack/silica.xz" ]] || { echo "gpu-check.sh: $pack/silica.xz missing: run 'pack' first and carry $pack" >&2; exit 1; }
    out="${OUT:-$pack/out}"
    mkdir -p "$out"
    bin="$(mktemp -d)"
    for name in silica silica-model-it; do
        python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as s, open(sys.argv[2], "wb") as d: shutil.copyfileobj(s, d)' \
            "$pack/$name.xz" "$bin/$name"
        chmod +x "$bin/$name"
    done
    # cuBLAS, cuRAND, cudart and NVRTC 13: the CUDA install's, else those of the Python packages (PyTorch's).
    libs=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(python3 -c '
import glob, site
for p in site.getsitepackages(): print(*glob.glob(p + "/nvidia/cu13/lib") + glob.glob(p + "/nvidia/*/lib"))' 2>/dev/null); do
        [[ -d "$d" ]] && libs="$libs:$d"
    done
    export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    exec > >(tee "$out/gpu-check.log") 2>&1
    echo "commit $(cat "$pack/commit" 2>/dev/null)"; nvidia-smi -L || true
    ldd "$bin/silica" | grep -E "cuda|cublas|curand|nvrtc" || true
    status=0
    "$bin/silica-model-it" cuda:: --test-threads 1 || status=1
    models="$(mktemp -d)"
    export SILICA_MODELS_DIR="$models" SILICA_DATA_DIR="$out"
    "$bin/silica" hw -o json >"$out/hw.json" || status=1
    for m in "llama-3.2-1b Q4_0" "llama-3.2-1b Q8_0" "llama-3.2-1b Q4_K_M" "llama-2-7b Q4_0"; do
        set -- $m
        "$bin/silica" synth --shape "$1" --type "$2" -o "$models/$1-$2.gguf" || status=1
    done
    # Greedy text of the GPU against the CPU's on one model (random weights: tokens, not meaning).
    for dev in cuda cpu; do
        "$bin/silica" run -m "$models/llama-3.2-1b-Q8_0.gguf" -p "The quick brown fox" -n 32 --temp 0 \
            --device "$dev" >"$out/run-$dev.txt" || status=1
    done
    if cmp -s "$out/run-cuda.txt" "$out/run-cpu.txt"; then echo "greedy text: GPU = CPU"; else
        echo "greedy text: GPU and CPU differ (near-ties on random weights, or a fault):"; cat "$out"/run-*.txt; fi
    "$bin/silica" bench -dev cuda -m "$models"/llama-3.2-1b-Q4_0.gguf -m "$models"/llama-3.2-1b-Q8_0.gguf \
        -m "$models"/llama-3.2-1b-Q4_K_M.gguf -m "$models"/llama-2-7b-Q4_0.gguf -p 512 -n 128 -r 3 \
        | tee "$out/bench-cuda.md" || status=1   # records: $SILICA_DATA_DIR/bench-results.jsonl
    echo "gpu-check.sh: exit $status"
    exit $status
    ;;
*)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
