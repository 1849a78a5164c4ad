#!/usr/bin/env bash
# A bounded load run of `sparetire serve` on loopback: `sparetire bench serve --duration` keeps
# each number of connections busy for a fixed time (connections beyond --parallel wait in the
# server's queue), while the server's resident memory is read from /proc every second.
# Prints, per level, requests, failures, tokens/s, latency percentiles and RSS start/peak/end;
# exits 1 if any request failed.
#
#   bench/load_run.sh [-m MODEL] [-t THREADS] [-P SLOTS] [-q MAX_QUEUE] [-c CTX_PER_SLOT]
#                     [-C 8,16,32] [-d SECONDS] [-n MAX_TOKENS] [-N NICE] [-o OUTDIR]
#
# Defaults: smollm2, 2 threads, --parallel 16, --max-queue 64, -c 512, 8, 16 and 32
# connections for 30 s each, -n 32. Writes OUTDIR (default: a new temporary directory):
# rows-C.json for each level, rss.tsv (unix time, RSS KiB) and the server's log.
# -N -10 (as root) runs it all in a session and scheduling group of its own at that priority,
# ahead of other users' work on a shared machine.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/.."
source bench/serve_lib.sh
MODEL=smollm2; THREADS=2; SLOTS=16; QUEUE=64; CTX=512; LEVELS=8,16,32; SECS=30; NTOK=32; NICE=0; OUT=""
while getopts "m:t:P:q:c:C:d:n:N:o:" o; do
    case $o in
        m) MODEL=$OPTARG ;; t) THREADS=$OPTARG ;; P) SLOTS=$OPTARG ;; q) QUEUE=$OPTARG ;;
        c) CTX=$OPTARG ;; C) LEVELS=$OPTARG ;; d) SECS=$OPTARG ;; n) NTOK=$OPTARG ;;
        N) NICE=$OPTARG ;; o) OUT=$OPTARG ;; *) exit 2 ;;
    esac
done
prioritize "$NICE" "$SELF" "$@"
[ -n "$OUT" ] || OUT=$(mktemp -d)
mkdir -p "$OUT"
build_sparetire
path=$(model_path "$MODEL")
port=$(free_port)
start_server "$OUT/server.log" "$ST" serve -m "$path" -t "$THREADS" --parallel "$SLOTS" \
    --max-queue "$QUEUE" -c "$CTX" --host 127.0.0.1 --port "$port"
pid=$SERVER_PID
wait_ready "http://127.0.0.1:$port" "$pid" "$OUT/server.log"

: > "$OUT/rss.tsv"
( while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
      echo "$(date +%s.%N) $rss" >> "$OUT/rss.tsv"
      sleep 1
  done ) &
sampler=$!
SERVER_PIDS+=("$sampler")

: > "$OUT/levels.tsv"
IFS=, read -ra conns <<< "$LEVELS"
for c in "${conns[@]}"; do
    echo ">> $c connections for $SECS s (load average $(loadavg))" >&2
    t0=$(date +%s.%N)
    "$ST" bench serve --url "http://127.0.0.1:$port" --label "load" --concurrency "$c" \
        --duration "$SECS" -n "$NTOK" --timeout 120 --json > "$OUT/rows-$c.json"
    echo "$c $t0 $(date +%s.%N)" >> "$OUT/levels.tsv"
done
sleep 1.5  # one more RSS sample after the last level
kill "$sampler" 2>/dev/null || true

python3 - "$OUT" "$MODEL" "$SLOTS" "$QUEUE" "$SECS" "$NTOK" <<'PY'
import json, os, sys
out, model, slots, queue, secs, ntok = sys.argv[1:]
rss = [tuple(map(float, l.split())) for l in open(os.path.join(out, "rss.tsv")) if len(l.split()) == 2]
mib = lambda kib: kib / 1024
print(f"{model}, --parallel {slots} --max-queue {queue}, {secs} s per level, max_tokens {ntok}\n")
print("| connections | requests | failed | gen tok/s | req/s | latency p50 / p99 ms | TTFT p50 / p99 ms | RSS start / peak / end MiB |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
failed = 0
for line in open(os.path.join(out, "levels.tsv")):
    c, t0, t1 = line.split()
    r = json.load(open(os.path.join(out, f"rows-{c}.json")))[0]
    failed += r["failures"]
    seen = [k for t, k in rss if float(t0) <= t <= float(t1) + 1.0] or [0]
    f = lambda v: "-" if v is None else f"{v:.0f}"
    print(f"| {c} | {r['requests']} | {r['failures']} | {r['tokens_per_second']:.1f} | {r['requests_per_second']:.2f} | "
          f"{f(r['latency_p50_ms'])} / {f(r['latency_p99_ms'])} | {f(r['ttft_p50_ms'])} / {f(r['ttft_p99_ms'])} | "
          f"{mib(seen[0]):.1f} / {mib(max(seen)):.1f} / {mib(seen[-1]):.1f} |")
if rss:
    k = [k for _, k in rss]
    print(f"\nserver RSS over the whole run ({len(k)} samples, 1/s): start {mib(k[0]):.1f} MiB, peak {mib(max(k)):.1f} MiB, end {mib(k[-1]):.1f} MiB")
print(f"failed requests: {failed}")
sys.exit(1 if failed else 0)
PY
echo "(rows, rss.tsv and the server log in $OUT)"
