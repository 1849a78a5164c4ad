#!/usr/bin/env bash
# Decode/prefill speed of 2 ranks on emulated hosts (bench/netns_cluster.sh) at
# several link rates, next to what `sparetire plan` predicts for those links,
# and next to one process. Needs root; run it on an idle machine.
#
#   bench/netns_sweep.sh [MODEL] [RATES]     (default: smollm2 "unshaped 10gbit 1gbit 100mbit")
set -euo pipefail
MODEL="${1:-smollm2}"
RATES="${2:-unshaped 10gbit 1gbit 100mbit}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SPARETIRE:-$ROOT/target/release/sparetire}"
BENCH=(bench -m "$MODEL" -p 64 -n 32 -r 3 --json)

ts() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join("%.1f" % x["avg_ts"] for x in r))'; }
gbit() { case "$1" in *gbit) echo "${1%gbit}" ;; *mbit) python3 -c "print(${1%mbit}/1000)" ;; *) echo 100 ;; esac; }

echo "| layout | link | pp64 tok/s | tg32 tok/s | plan tg32 tok/s | plan network ms/token |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
read -r pp tg < <("$BIN" "${BENCH[@]}" -t 2 2>/dev/null | ts)
echo "| 1 process × 2 threads | – | $pp | $tg | | |"
for rate in $RATES; do
    shape=(); [ "$rate" != unshaped ] && shape=(-r "$rate")
    for split in "tp f32" "tp q8" "pp f32"; do
        set -- $split
        extra=(--split "$1"); [ "$1" = tp ] && extra+=(--tp-wire "$2")
        read -r pp tg < <(bash "$ROOT/bench/netns_cluster.sh" -n 2 "${shape[@]}" -- "${BENCH[@]}" -t 1 "${extra[@]}" 2>/dev/null | ts)
        # plan: this machine's 2-thread bandwidth shared by the two ranks (one memory bus),
        # 22 µs one-way latency (measured TCP round trip between the namespaces: 44 µs).
        plan=$("$BIN" plan -m "$MODEL" --nodes 2 --link-gbit "$(gbit "$rate")" --latency-us 22 \
            --mem-bw 12.25 --tp-wire "${2:-f32}" --json 2>/dev/null \
            | python3 -c "import json,sys; r=[x for x in json.load(sys.stdin) if x['split']=='$1'][0]; print('%.1f %.2f' % (r['tokens_per_s'], r['network_s']*1e3))")
        echo "| $1 ${2:-} 2 ranks × 1 thread | $rate | $pp | $tg | ${plan% *} | ${plan#* } |"
    done
done
