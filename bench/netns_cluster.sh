#!/usr/bin/env bash
# Runs an mpirun job whose ranks sit on separate emulated hosts: each rank in
# its own network namespace, joined by veth pairs to a bridge, every link
# shaped with tc. The ranks can only reach each other over those links (TCP),
# so bytes and rate behave as between machines. Needs root (ip netns, tc).
#
#   bench/netns_cluster.sh [-n RANKS] [-r RATE] [-d DELAY] -- SPARETIRE_ARGS...
#   e.g. bench/netns_cluster.sh -n 2 -r 1gbit -- bench -m smollm2 -p 64 -n 32 -t 1 --split tp
#
# RATE is a tc rate (10gbit, 1gbit, 100mbit; default: unshaped). DELAY (e.g.
# 100us, 1ms) needs tc's netem qdisc; the script says so and stops when the
# kernel lacks it (CONFIG_NET_SCH_NETEM), rather than run without it.
# Open MPI starts each rank's daemon through a launcher agent that enters the
# rank's namespace (`ip netns exec`), as ssh would reach another host.
set -euo pipefail

RANKS=2
RATE=""
DELAY=""
while getopts "n:r:d:" opt; do
    case "$opt" in
        n) RANKS="$OPTARG" ;;
        r) RATE="$OPTARG" ;;
        d) DELAY="$OPTARG" ;;
        *) sed -n '2,17p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "error: give the sparetire arguments after --" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (network namespaces and tc)" >&2; exit 2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SPARETIRE:-$ROOT/target/release/sparetire}"
[ -x "$BIN" ] || { echo "error: $BIN missing (cargo build --release --features sparetire/mpi)" >&2; exit 2; }
NET=10.77.0
BR=stbr0
WORK="$(mktemp -d)"

cleanup() {
    for i in $(seq 1 "$RANKS"); do
        ip netns del "st-h$i" 2>/dev/null || true
        ip link del "st-v$i" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup_quiet() { cleanup; trap - EXIT; WORK="$(mktemp -d)"; trap cleanup EXIT; }
cleanup_quiet

# tc shaping for one device: tbf for the rate, netem for the delay.
shape() { # ns dev
    local ns="$1" dev="$2" run=()
    [ -n "$ns" ] && run=(ip netns exec "$ns")
    if [ -n "$DELAY" ]; then
        if ! "${run[@]}" tc qdisc add dev "$dev" root handle 1: netem delay "$DELAY" 2>"$WORK/tc.err"; then
            echo "error: cannot add a ${DELAY} delay: $(cat "$WORK/tc.err")" >&2
            echo "       (this kernel has no netem qdisc: CONFIG_NET_SCH_NETEM is not set)" >&2
            exit 3
        fi
        [ -n "$RATE" ] && "${run[@]}" tc qdisc add dev "$dev" parent 1: handle 2: tbf rate "$RATE" burst 2mb latency 100ms
    elif [ -n "$RATE" ]; then
        "${run[@]}" tc qdisc add dev "$dev" root tbf rate "$RATE" burst 2mb latency 100ms
    fi
    return 0
}

ip link add "$BR" type bridge
ip addr add "$NET.254/24" dev "$BR"
ip link set "$BR" up
HOSTS=()
for i in $(seq 1 "$RANKS"); do
    ns="st-h$i"
    ip netns add "$ns"
    ip link add "st-v$i" type veth peer name eth0 netns "$ns"
    ip link set "st-v$i" master "$BR" up
    ip -n "$ns" addr add "$NET.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    shape "" "st-v$i"      # traffic into host i
    shape "$ns" eth0       # traffic out of host i
    HOSTS+=("$NET.$i")
done

# The launcher agent: "AGENT HOST COMMAND..." runs COMMAND inside HOST's namespace.
cat > "$WORK/agent" <<AGENT
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host="\$1"; shift
exec ip netns exec "st-h\${host##*.}" sh -c "\$*"
AGENT
chmod +x "$WORK/agent"

echo ">> $RANKS hosts ${HOSTS[*]}, rate ${RATE:-unshaped}, delay ${DELAY:-none}" >&2
ping -c 3 -q -I "$BR" "${HOSTS[0]}" 2>/dev/null | tail -1 | sed 's/^/>> bridge ping: /' >&2 || true

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
hostlist="$(IFS=,; echo "${HOSTS[*]}")"
# Every emulated host is this machine: let the kernel place the ranks (binding
# each "host's" rank to its first core would put them all on core 0), and have
# idle ranks yield as mpirun does for ranks sharing one machine's cores.
mpirun --oversubscribe --bind-to none -n "$RANKS" --host "$hostlist" \
    --mca plm_rsh_agent "$WORK/agent" \
    --mca pml ob1 --mca btl self,tcp --mca mpi_yield_when_idle 1 \
    --mca oob_tcp_if_include "$NET.0/24" --mca btl_tcp_if_include "$NET.0/24" \
    "$BIN" "$@"
