#!/usr/bin/env bash
# `sparetire serve` and llama-server on the same GGUF, threads and slots, measured with
# `sparetire bench serve` (streaming /v1/completions, greedy, fixed max_tokens) at each
# concurrency level; whole sweeps alternate between the two servers round by round (the first
# server swaps each round), then a table of medians over the rounds and a plot.
#
#   bench/serve_side_by_side.sh [-m MODEL] [-t THREADS] [-P SLOTS] [-c CTX_PER_SLOT]
#                               [-C 1,2,4,8,16] [-n MAX_TOKENS] [-k REQUESTS_PER_CLIENT]
#                               [-R ROUNDS] [-o OUTDIR]
#
# Defaults: smollm2, 2 threads, 16 slots of 512 tokens, -n 32, -k 4, -R 2.
# llama-server comes from $LLAMA_CPP_BIN (scripts/build_llamacpp.sh builds it and prints the
# path; default ~/.cache/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin).
# It runs with -np SLOTS -c SLOTS*CTX_PER_SLOT (each slot gets CTX_PER_SLOT) and
# --cont-batching; sparetire with --parallel SLOTS -c CTX_PER_SLOT.
# Writes OUTDIR (default: a new temporary directory): each sweep's JSON, the medians
# (median-*.json, `bench serve --json` rows), serve_side_by_side.png and the servers' logs.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
MODEL=smollm2; THREADS=2; SLOTS=16; CTX=512; LEVELS=1,2,4,8,16; NTOK=32; PER_CLIENT=4; ROUNDS=2; OUT=""
while getopts "m:t:P:c:C:n:k:R:o:" o; do
    case $o in
        m) MODEL=$OPTARG ;; t) THREADS=$OPTARG ;; P) SLOTS=$OPTARG ;; c) CTX=$OPTARG ;;
        C) LEVELS=$OPTARG ;; n) NTOK=$OPTARG ;; k) PER_CLIENT=$OPTARG ;; R) ROUNDS=$OPTARG ;;
        o) OUT=$OPTARG ;; *) exit 2 ;;
    esac
done
BIN=${LLAMA_CPP_BIN:-$HOME/.cache/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin}
[ -x "$BIN/llama-server" ] || { echo "error: no llama-server in $BIN; run scripts/build_llamacpp.sh or set LLAMA_CPP_BIN" >&2; exit 1; }
[ -n "$OUT" ] || OUT=$(mktemp -d)
mkdir -p "$OUT"
build_sparetire
path=$(model_path "$MODEL")

p1=$(free_port)
start_server "$OUT/sparetire.log" "$ST" serve -m "$path" -t "$THREADS" --parallel "$SLOTS" -c "$CTX" \
    --host 127.0.0.1 --port "$p1"
st_pid=$SERVER_PID
p2=$(free_port)
start_server "$OUT/llama-server.log" "$BIN/llama-server" -m "$path" -t "$THREADS" -np "$SLOTS" \
    -c $((SLOTS * CTX)) --cont-batching --host 127.0.0.1 --port "$p2" --no-webui
ls_pid=$SERVER_PID
wait_ready "http://127.0.0.1:$p1" "$st_pid" "$OUT/sparetire.log"
wait_ready "http://127.0.0.1:$p2" "$ls_pid" "$OUT/llama-server.log"

sweep() { # sweep LABEL PORT ROUND
    echo ">> round $3/$ROUNDS: $1 (load average $(loadavg))" >&2
    "$ST" bench serve --url "http://127.0.0.1:$2" --label "$1" --concurrency "$LEVELS" \
        --requests-per-client "$PER_CLIENT" -n "$NTOK" --warmup 2 --json > "$OUT/$1-$3.json"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        sweep sparetire "$p1" "$r"; sweep llama-server "$p2" "$r"
    else
        sweep llama-server "$p2" "$r"; sweep sparetire "$p1" "$r"
    fi
done
echo ">> done (load average $(loadavg))" >&2

python3 - "$OUT" "$MODEL" "$THREADS" "$SLOTS" "$NTOK" <<'PY'
import glob, json, os, statistics, sys
out, model, threads, slots, ntok = sys.argv[1:]
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*-[0-9]*.json"))):
    for r in json.load(open(f)):
        runs.setdefault(r["label"], {}).setdefault(r["concurrency"], []).append(r)
def median_row(rows):
    m = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in rows if r[k] is not None]
            m[k] = statistics.median(vals) if vals else None
            if isinstance(v, int) and m[k] is not None:
                m[k] = round(m[k])
    m["requests"] = sum(r["requests"] for r in rows)
    m["failures"] = sum(r["failures"] for r in rows)
    m["generated_tokens"] = sum(r["generated_tokens"] for r in rows)
    return m
med = {lab: {c: median_row(rs) for c, rs in levels.items()} for lab, levels in runs.items()}
for lab, levels in med.items():
    json.dump([levels[c] for c in sorted(levels)], open(os.path.join(out, f"median-{lab}.json"), "w"), indent=1)
st, ls = med.get("sparetire", {}), med.get("llama-server", {})
f = lambda v: "-" if v is None else f"{v:.1f}"
rounds = max((len(rs) for levels in runs.values() for rs in levels.values()), default=0)
print(f"{model}, {threads} threads, {slots} slots, max_tokens {ntok}; medians of {rounds} sweeps each\n")
print("| clients | llama-server tok/s | sparetire tok/s | sparetire / llama-server | TTFT p50 ms (llama / sparetire) | TPOT p50 ms (llama / sparetire) | latency p99 ms (llama / sparetire) | failed |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in sorted(set(st) | set(ls)):
    a, b = ls.get(c), st.get(c)
    ta = a["tokens_per_second"] if a else 0
    tb = b["tokens_per_second"] if b else 0
    ratio = f"{tb / ta:.2f}×" if ta else "-"
    g = lambda r, k: f(r[k]) if r else "-"
    fails = (a["failures"] if a else 0) + (b["failures"] if b else 0)
    print(f"| {c} | {ta:.1f} | {tb:.1f} | {ratio} | {g(a,'ttft_p50_ms')} / {g(b,'ttft_p50_ms')} | "
          f"{g(a,'tpot_p50_ms')} / {g(b,'tpot_p50_ms')} | {g(a,'latency_p99_ms')} / {g(b,'latency_p99_ms')} | {fails} |")
PY
args=()
for m in "$OUT"/median-*.json; do args+=(--from-json "$m"); done
"$ST" bench serve "${args[@]}" --plot "$OUT/serve_side_by_side.png" >/dev/null
echo "(raw JSON, medians, logs and serve_side_by_side.png in $OUT)"
