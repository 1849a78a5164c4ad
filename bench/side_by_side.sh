#!/usr/bin/env bash
# sparetire bench and llama-bench on the same GGUF files and thread counts, alternating the two
# programs round by round (the machine is noisy), then a table of medians and ratios.
#
#   bench/side_by_side.sh [-m MODEL]... [-t THREADS] [-p N_PROMPT] [-n N_GEN] [-d DEPTH] [-R ROUNDS] [-r REPS]
#
# DEPTH: tokens already in the KV cache (llama-bench's -d; comma-separated, default 0).
#
# MODEL is a GGUF path or a sparetire store name (default: smollm2 and gemma3-270m).
# llama-bench comes from $LLAMA_CPP_BIN (scripts/build_llamacpp.sh prints it; default
# ~/.cache/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=(); THREADS=2; NP=128; NG=64; DEPTH=0; ROUNDS=3; REPS=3
while getopts "m:t:p:n:d:R:r:" o; do
    case $o in
        m) MODELS+=("$OPTARG") ;; t) THREADS=$OPTARG ;; p) NP=$OPTARG ;; n) NG=$OPTARG ;;
        d) DEPTH=$OPTARG ;;
        R) ROUNDS=$OPTARG ;; r) REPS=$OPTARG ;; *) exit 2 ;;
    esac
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2 gemma3-270m)
BIN=${LLAMA_CPP_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin}
[ -x "$BIN/llama-bench" ] || { echo "error: no llama-bench in $BIN; run scripts/build_llamacpp.sh or set LLAMA_CPP_BIN" >&2; exit 1; }
# SPARETIRE_BIN: a sparetire binary to measure (default: build target/release/sparetire).
if [ -n "${SPARETIRE_BIN:-}" ]; then
    ST=$SPARETIRE_BIN
else
    cargo build --release -q -p sparetire
    ST=./target/release/sparetire
fi
OUT=$(mktemp -d)
for m in "${MODELS[@]}"; do
    path=$m
    [ -f "$path" ] || path=$($ST pull "$m" 2>/dev/null)
    for r in $(seq 1 "$ROUNDS"); do
        echo ">> $m round $r/$ROUNDS" >&2
        "$BIN/llama-bench" -m "$path" -t "$THREADS" -p "$NP" -n "$NG" -d "$DEPTH" -r "$REPS" -o json 2>/dev/null > "$OUT/llama-$(basename "$path")-$r.json"
        $ST bench -m "$path" -t "$THREADS" -p "$NP" -n "$NG" -d "$DEPTH" -r "$REPS" --json 2>/dev/null > "$OUT/sparetire-$(basename "$path")-$r.json"
    done
done
python3 - "$OUT" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
rows = {}
for f in sorted(os.listdir(d)):
    prog, rest = f.split("-", 1)
    model = rest.rsplit("-", 1)[0]
    for r in json.load(open(os.path.join(d, f))):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        if r.get("n_depth"):
            test += f" @ d{r['n_depth']}"
        rows.setdefault((model, r["n_threads"], test), {}).setdefault(prog, []).append(r["avg_ts"])
print("| model | threads | test | llama.cpp t/s | sparetire t/s | sparetire / llama.cpp |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
for (model, t, test), v in sorted(rows.items()):
    a, b = statistics.median(v.get("llama", [0])), statistics.median(v.get("sparetire", [0]))
    print(f"| {model} | {t} | {test} | {a:.1f} | {b:.1f} | {b / a if a else 0:.2f}x |")
print(f"\n(medians over rounds; each round runs each program with -r; raw JSON in {d})")
PY
