#!/usr/bin/env bash
# Runs llama.cpp's llama-bench and `silica bench` alternately on the same GGUF files and thread count, and prints
# silica ÷ llama.cpp ratios per test (pp512, tg128, ...), as the engine-speed issue asks.
#
# usage: scripts/compare-llamacpp.sh LLAMA_BIN_DIR MODEL.gguf [MODEL.gguf ...]
#   LLAMA_BIN_DIR  a llama.cpp build made outside this repository (the folder holding llama-bench; never
#                  committed here)
# environment:
#   THREADS (default 2), REPS (default 5), PP (default 512), TG (default 128), ROUNDS (default 1: each round
#   runs llama-bench then silica for every model), EXTRA_ARGS (more flags for both tools, e.g. "-d 0,512"),
#   BATCHED=8 (also compares aggregate generation of 8 sequences: llama-batched-bench vs silica bench --batch 8),
#   SILICA_ARGS (flags for silica only, e.g. "--huge-pages on").
# Requires python3 (JSON parsing). Builds silica in release mode first.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
bin_dir=$1
shift
for tool in llama-bench; do
  [[ -x "$bin_dir/$tool" ]] || { echo "error: $bin_dir/$tool not found or not executable" >&2; exit 2; }
done
THREADS=${THREADS:-2} REPS=${REPS:-5} PP=${PP:-512} TG=${TG:-128} ROUNDS=${ROUNDS:-1} EXTRA_ARGS=${EXTRA_ARGS:-}
SILICA_ARGS=${SILICA_ARGS:-}
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --release --quiet --bin silica)
silica="$root/target/release/silica"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for round in $(seq "$ROUNDS"); do
  for m in "$@"; do
    [[ -f "$m" ]] || { echo "error: model $m not found" >&2; exit 2; }
    tag="$(basename "$m" .gguf).r$round"
    echo "== $tag: llama-bench" >&2
    # shellcheck disable=SC2086
    "$bin_dir/llama-bench" -m "$m" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" $EXTRA_ARGS -o json >"$out/$tag.llama.json"
    echo "== $tag: silica bench" >&2
    # shellcheck disable=SC2086
    "$silica" $SILICA_ARGS bench -m "$m" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" $EXTRA_ARGS --no-save -o json >"$out/$tag.silica.json"
    if [[ -n "${BATCHED:-}" && -x "$bin_dir/llama-batched-bench" ]]; then
      echo "== $tag: llama-batched-bench -npl $BATCHED" >&2
      "$bin_dir/llama-batched-bench" -m "$m" -t "$THREADS" -c $((BATCHED * (PP + TG) + 64)) -b 2048 -ub 512 \
        -npp "$PP" -ntg "$TG" -npl "$BATCHED" --output-format jsonl 2>/dev/null | grep '^{' >"$out/$tag.llama-batched.jsonl" || true
      echo "== $tag: silica bench --batch $BATCHED" >&2
      # shellcheck disable=SC2086
      "$silica" $SILICA_ARGS bench -m "$m" -t "$THREADS" -p 0 -n "$TG" -r "$REPS" --batch "$BATCHED" --no-save -o json \
        >"$out/$tag.silica-batched.json"
    fi
  done
done

python3 - "$out" "$THREADS" <<'PY'
import collections, glob, json, os, re, sys
out, threads = sys.argv[1], sys.argv[2]
rows = collections.OrderedDict()
def test_name(r):
    p, g, d = r["n_prompt"], r["n_gen"], r.get("n_depth", 0)
    name = f"pp{p}" if g == 0 else (f"tg{g}" if p == 0 else f"pp{p}+tg{g}")
    return name + (f" @ d{d}" if d else "")
for f in sorted(glob.glob(os.path.join(out, "*.llama.json"))):
    tag = os.path.basename(f)[: -len(".llama.json")]
    model = tag.rsplit(".r", 1)[0]
    for engine, path in (("llama.cpp", f), ("silica", f.replace(".llama.json", ".silica.json"))):
        for r in json.load(open(path)):
            rows.setdefault((model, test_name(r)), {}).setdefault(engine, []).append(r["avg_ts"])
    bl = f.replace(".llama.json", ".llama-batched.jsonl")
    bs = f.replace(".llama.json", ".silica-batched.json")
    if os.path.exists(bl) and os.path.exists(bs):
        for line in open(bl):
            # With PP=0 llama-batched-bench writes speed_pp as a bare `-nan`, which is not JSON.
            r = json.loads(re.sub(r"(?<=: )-?nan\b", "NaN", line))
            rows.setdefault((model, f"tg batch {r['pl']}"), {}).setdefault("llama.cpp", []).append(r["speed_tg"])
        for r in json.load(open(bs)):
            rows.setdefault((model, f"tg batch {r['n_parallel']}"), {}).setdefault("silica", []).append(r["avg_ts"])
print(f"| model | test | llama.cpp t/s | silica t/s | silica ÷ llama.cpp |  (threads {threads})")
print("|---|---|---:|---:|---:|")
for (model, test), v in rows.items():
    l = sum(v.get("llama.cpp", [0])) / max(1, len(v.get("llama.cpp", [])))
    s = sum(v.get("silica", [0])) / max(1, len(v.get("silica", [])))
    ratio = f"{s / l:.2f}" if l else "n/a"
    print(f"| {model} | {test} | {l:.2f} | {s:.2f} | {ratio} |")
PY
