# Helpers shared by bench/serve_side_by_side.sh and bench/load_run.sh (sourced, not run).
#
# Servers started with start_server are stopped when the sourcing script exits.

SERVER_PIDS=()
stop_servers() {
    local p
    for p in "${SERVER_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap stop_servers EXIT

# prioritize NICE SCRIPT ARGS... : with NICE other than 0, runs the calling script again in a
# session of its own, whose scheduling group (Linux autogroup) and processes get nice NICE, so
# the servers and the load generator take precedence over other users' work (root for NICE < 0).
# Plain `nice` is not enough: with autogroups, CPU is shared between sessions first.
prioritize() {
    local nice=$1; shift
    [ "$nice" = 0 ] && return 0
    if [ -z "${SPARETIRE_BENCH_SESSION:-}" ]; then
        exec setsid -w env SPARETIRE_BENCH_SESSION=1 bash "$@"
    fi
    renice -n "$nice" -p $$ >/dev/null
    if [ -w /proc/self/autogroup ]; then echo "$nice" > /proc/self/autogroup; fi
}

# Builds sparetire (release) and sets ST to the binary.
build_sparetire() {
    cargo build --release -q --locked -p sparetire
    ST="${CARGO_TARGET_DIR:-target}/release/sparetire"
}

# A GGUF path for MODEL (a path or a store name, fetched if needed).
model_path() {
    if [ -f "$1" ]; then echo "$1"; else "$ST" pull "$1" 2>/dev/null; fi
}

# A TCP port on loopback that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server LOG CMD... : starts CMD in the background (stdout and stderr to LOG), records
# its pid in SERVER_PID.
start_server() {
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
}

# wait_ready URL PID LOG : waits (up to 120 s) until URL/health answers 200; fails if PID died.
wait_ready() {
    local url=$1 pid=$2 log=$3
    for _ in $(seq 1 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the server exited; its log ($log):" >&2; tail -20 "$log" >&2; exit 1
        fi
        python3 - "$url/health" <<'PY' 2>/dev/null && return 0
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
        sleep 0.2
    done
    echo "error: $url not ready after 120 s; log: $log" >&2; exit 1
}

# The 1-minute load average, to judge how quiet the machine was.
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# CPU ticks all cores spent busy since boot (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# CPU ticks process PID (all its threads) has used.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
