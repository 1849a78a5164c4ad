#!/usr/bin/env bash
# `sparetire serve` and llama-server on the same GGUF, threads and slots, measured with
# `sparetire bench serve` (streaming /v1/completions, greedy, fixed max_tokens). At each
# concurrency level the two servers take turns, ROUNDS times (the first one swaps each round),
# so both see the same drift of a shared machine; the table gives medians over the rounds.
#
#   bench/serve_side_by_side.sh [-m MODEL] [-t THREADS] [-P SLOTS] [-c CTX_PER_SLOT]
#                               [-C 1,2,4,8,16] [-n MAX_TOKENS] [-k REQUESTS_PER_CLIENT]
#                               [-R ROUNDS] [-q MAX_OTHER_CPU] [-N NICE] [-S SPARETIRE_BIN]
#                               [-o OUTDIR]
#
# Defaults: smollm2, 2 threads, 16 slots of 512 tokens, -n 32, -k 4, -R 3, -q 0.3.
# Each measurement also records the CPU that everything but the measured server used meanwhile
# (cores, from /proc/stat; the load generator is part of it): a measurement above
# MAX_OTHER_CPU is taken again, up to three tries, keeping the quietest. On a machine that
# others use, -N -10 (as root) runs the script, both servers and the load generator in a
# session and scheduling group of their own at that priority (default: 0, unchanged).
# -S serves with another sparetire binary (another branch's build, say; default: this
# checkout's release build, which always runs the load generator).
# llama-server comes from $LLAMA_CPP_BIN (scripts/build_llamacpp.sh builds it and prints the
# path; default ~/.cache/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin).
# It runs with -np SLOTS -c SLOTS*CTX_PER_SLOT (each slot gets CTX_PER_SLOT) and
# --cont-batching; sparetire with --parallel SLOTS -c CTX_PER_SLOT. Both stay up; an idle one
# uses no CPU.
# Writes OUTDIR (default: a new temporary directory): each measurement's JSON, other_cpu.tsv,
# the medians (median-*.json, `bench serve --json` rows), serve_side_by_side.png and the logs.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
MODEL=smollm2; THREADS=2; SLOTS=16; CTX=512; LEVELS=1,2,4,8,16; NTOK=32; PER_CLIENT=4; ROUNDS=3
MAX_OTHER=0.3; NICE=0; SERVE_BIN=""; OUT=""
while getopts "m:t:P:c:C:n:k:R:q:N:S:o:" o; do
    case $o in
        m) MODEL=$OPTARG ;; t) THREADS=$OPTARG ;; P) SLOTS=$OPTARG ;; c) CTX=$OPTARG ;;
        C) LEVELS=$OPTARG ;; n) NTOK=$OPTARG ;; k) PER_CLIENT=$OPTARG ;; R) ROUNDS=$OPTARG ;;
        q) MAX_OTHER=$OPTARG ;; N) NICE=$OPTARG ;; S) SERVE_BIN=$OPTARG ;;
        o) OUT=$OPTARG ;; *) exit 2 ;;
    esac
done
prioritize "$NICE" "$SELF" "$@"
BIN=${LLAMA_CPP_BIN:-$HOME/.cache/sparetire-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin}
[ -x "$BIN/llama-server" ] || { echo "error: no llama-server in $BIN; run scripts/build_llamacpp.sh or set LLAMA_CPP_BIN" >&2; exit 1; }
[ -n "$OUT" ] || OUT=$(mktemp -d)
mkdir -p "$OUT"
build_sparetire
path=$(model_path "$MODEL")

declare -A PORT PID
PORT[sparetire]=$(free_port)
start_server "$OUT/sparetire.log" "${SERVE_BIN:-$ST}" serve -m "$path" -t "$THREADS" --parallel "$SLOTS" -c "$CTX" \
    --host 127.0.0.1 --port "${PORT[sparetire]}"
PID[sparetire]=$SERVER_PID
PORT[llama-server]=$(free_port)
start_server "$OUT/llama-server.log" "$BIN/llama-server" -m "$path" -t "$THREADS" -np "$SLOTS" \
    -c $((SLOTS * CTX)) --cont-batching --host 127.0.0.1 --port "${PORT[llama-server]}" --no-webui
PID[llama-server]=$SERVER_PID
for s in sparetire llama-server; do wait_ready "http://127.0.0.1:${PORT[$s]}" "${PID[$s]}" "$OUT/$s.log"; done

: > "$OUT/other_cpu.tsv"
measure() { # measure SERVER LEVEL ROUND: the quietest of up to three tries
    local s=$1 c=$2 r=$3 best="" try other
    for try in 1 2 3; do
        local b0 p0 t0 b1 p1 t1
        b0=$(busy_ticks); p0=$(proc_ticks "${PID[$s]}"); t0=$(date +%s.%N)
        "$ST" bench serve --url "http://127.0.0.1:${PORT[$s]}" --label "$s" --concurrency "$c" \
            --requests-per-client "$PER_CLIENT" -n "$NTOK" --warmup 1 --json 2>/dev/null > "$OUT/try.json"
        b1=$(busy_ticks); p1=$(proc_ticks "${PID[$s]}"); t1=$(date +%s.%N)
        other=$(python3 -c "print(f'{max(0, ($b1 - $b0) - ($p1 - $p0)) / ($t1 - $t0) / $(getconf CLK_TCK):.2f}')")
        if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $other < $best else 1)"; then
            best=$other; mv "$OUT/try.json" "$OUT/$s-c$c-r$r.json"
        fi
        python3 -c "import sys; sys.exit(0 if $best <= $MAX_OTHER else 1)" && break
        echo "   (other processes used $other cores; again)" >&2
    done
    printf '%s\t%s\t%s\t%s\n' "$s" "$c" "$r" "$best" >> "$OUT/other_cpu.tsv"
    echo ">> $s, $c clients, round $r: $(python3 -c "import json; print(round(json.load(open('$OUT/$s-c$c-r$r.json'))[0]['tokens_per_second'], 1))") tok/s (other CPU $best cores)" >&2
}
IFS=, read -ra levels <<< "$LEVELS"
for c in "${levels[@]}"; do
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then order=(sparetire llama-server); else order=(llama-server sparetire); fi
        for s in "${order[@]}"; do measure "$s" "$c" "$r"; done
    done
done

python3 - "$OUT" "$MODEL" "$THREADS" "$SLOTS" "$NTOK" "$ROUNDS" <<'PY'
import csv, glob, json, os, re, statistics, sys
out, model, threads, slots, ntok, rounds = sys.argv[1:]
runs, other = {}, {}
for f in glob.glob(os.path.join(out, "*-c*-r*.json")):
    for r in json.load(open(f)):
        runs.setdefault(r["label"], {}).setdefault(r["concurrency"], []).append(r)
for s, c, _, o in csv.reader(open(os.path.join(out, "other_cpu.tsv")), delimiter="\t"):
    other.setdefault((s, int(c)), []).append(float(o))
def median_row(rows):
    m = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in rows if r[k] is not None]
            m[k] = statistics.median(vals) if vals else None
            if isinstance(v, int) and m[k] is not None:
                m[k] = round(m[k])
    for k in ("requests", "failures", "generated_tokens"):
        m[k] = sum(r[k] for r in rows)
    return m
med = {lab: {c: median_row(rs) for c, rs in levels.items()} for lab, levels in runs.items()}
for lab, levels in med.items():
    json.dump([levels[c] for c in sorted(levels)], open(os.path.join(out, f"median-{lab}.json"), "w"), indent=1)
st, ls = med.get("sparetire", {}), med.get("llama-server", {})
f = lambda r, k: "-" if not r or r[k] is None else f"{r[k]:.1f}"
oc = lambda s, c: f"{statistics.median(other[(s, c)]):.2f}" if (s, c) in other else "-"
print(f"{model}, {threads} threads, {slots} slots, max_tokens {ntok}; medians of {rounds} rounds\n")
print("| clients | llama-server tok/s | sparetire tok/s | sparetire / llama-server | TTFT p50 ms (llama / sparetire) | TPOT p50 ms (llama / sparetire) | latency p99 ms (llama / sparetire) | failed | other CPU, cores (llama / sparetire) |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in sorted(set(st) | set(ls)):
    a, b = ls.get(c), st.get(c)
    ta, tb = (a or {}).get("tokens_per_second", 0), (b or {}).get("tokens_per_second", 0)
    ratio = f"{tb / ta:.2f}×" if ta else "-"
    fails = (a or {}).get("failures", 0) + (b or {}).get("failures", 0)
    print(f"| {c} | {ta:.1f} | {tb:.1f} | {ratio} | {f(a,'ttft_p50_ms')} / {f(b,'ttft_p50_ms')} | "
          f"{f(a,'tpot_p50_ms')} / {f(b,'tpot_p50_ms')} | {f(a,'latency_p99_ms')} / {f(b,'latency_p99_ms')} | {fails} | "
          f"{oc('llama-server', c)} / {oc('sparetire', c)} |")
PY
args=()
for m in "$OUT"/median-*.json; do args+=(--from-json "$m"); done
"$ST" bench serve "${args[@]}" --plot "$OUT/serve_side_by_side.png" >/dev/null
echo "(measurements, medians, logs and serve_side_by_side.png in $OUT)"
