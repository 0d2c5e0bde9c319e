#!/usr/bin/env bash
# bench/gateway.sh — POST /increment throughput through the gateway, as a
# ratio of the same node reached directly, in alternating rounds of one run.
# See DCOUNTER_BENCH_LAYOUT below for where each process runs.
#
#   bench/gateway.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 5s 64 3)
#
# Node flags come from DCOUNTER_BENCH_NODE_FLAGS (default: --fsync none, so
# the disk does not hide the gateway's cost; pass "" for the defaults).
# Besides the rates it reports CPU per request of the gateway process (its
# user+system CPU time from /proc/<pid>/stat over the gateway rounds, divided
# by the requests wrk completed in them) and of the node in the direct
# rounds: figures that a loaded machine distorts far less than req/s.
# DCOUNTER_BENCH_GW_ENV="NAME=VALUE ..." sets the gateway's environment
# (e.g. GODEBUG=schedtrace=0, GOMAXPROCS=2).
# DCOUNTER_BENCH_GW_PROFILE=FILE also writes a 5s CPU profile of the gateway,
# taken during the first gateway round, to FILE (via --debug-addr).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5s} conns=${2:-64} rounds=${3:-3}
node_flags=${DCOUNTER_BENCH_NODE_FLAGS---fsync none}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/dcounter" ./cmd/dcounter
printf 'wrk.method = "POST"\n' >"$tmp/post.lua"
# Layout (DCOUNTER_BENCH_LAYOUT): "shared" (default) puts the node and the
# gateway on CPU 0 and wrk on CPU 1; "split" puts the gateway beside wrk on
# CPU 1, as if it had a core (or a machine) of its own; "free" pins nothing.
layout=${DCOUNTER_BENCH_LAYOUT:-shared}
pin_srv=() pin_gw=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  case $layout in
    shared) pin_srv=(taskset -c 0) pin_gw=(taskset -c 0) pin_wrk=(taskset -c 1) ;;
    split) pin_srv=(taskset -c 0) pin_gw=(taskset -c 1) pin_wrk=(taskset -c 1) ;;
    free) ;;
    *) echo "DCOUNTER_BENCH_LAYOUT must be shared, split or free" >&2; exit 2 ;;
  esac
fi
wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.05; done; echo "no server at $1" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Ports: DCOUNTER_BENCH_PORT (default: a random base) and the next four, so
# that two runs on one machine cannot measure each other's processes.
port=${DCOUNTER_BENCH_PORT:-$((20000 + RANDOM % 12000))} # below Linux's ephemeral ports (32768 up)
gossip_port=$port node_port=$((port + 1)) gw_port=$((port + 2)) debug_port=$((port + 3))
for p in $gossip_port $node_port $gw_port $debug_port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is in use; set DCOUNTER_BENCH_PORT" >&2; exit 1; fi
done
# alive PID NAME: fail unless PID (a server started here) still runs.
alive() { kill -0 "$1" 2>/dev/null || { echo "$2 exited (port taken?)" >&2; exit 1; }; }
# shellcheck disable=SC2086
"${pin_srv[@]}" "$tmp/dcounter" node --gossip-addr 127.0.0.1:$gossip_port --http-addr 127.0.0.1:$node_port --data-dir "$tmp/data" --log-level warn $node_flags &
node_pid=$!
wait_up http://127.0.0.1:$node_port/health
alive "$node_pid" node
profile=${DCOUNTER_BENCH_GW_PROFILE:-}
gw_debug=()
[ -n "$profile" ] && gw_debug=(--debug-addr 127.0.0.1:$debug_port)
# shellcheck disable=SC2086
env ${DCOUNTER_BENCH_GW_ENV:-} "${pin_gw[@]}" "$tmp/dcounter" gateway --http-addr 127.0.0.1:$gw_port --nodes http://127.0.0.1:$node_port --log-level warn "${gw_debug[@]}" &
gw_pid=$!
wait_up http://127.0.0.1:$gw_port/health
alive "$gw_pid" gateway
# cpu_ticks PID: user+system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run URL PID OUT: one wrk round; appends "req/s requests cpu_ticks_of_PID" to OUT.
run() {
  local before after out
  before=$(cpu_ticks "$2")
  out=$("${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/post.lua" "$1")
  after=$(cpu_ticks "$2")
  echo "$out" | awk -v t=$((after - before)) '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {print r, n, t}' >>"$3"
}
: >"$tmp/direct"; : >"$tmp/gateway"
for r in $(seq "$rounds"); do
  run http://127.0.0.1:$node_port/increment "$node_pid" "$tmp/direct"
  if [ -n "$profile" ] && [ "$r" = 1 ]; then
    curl -fs -o "$profile" "http://127.0.0.1:$debug_port/debug/pprof/profile?seconds=5" &
    prof_pid=$!
  fi
  run http://127.0.0.1:$gw_port/increment "$gw_pid" "$tmp/gateway"
  if [ -n "${prof_pid:-}" ]; then wait "$prof_pid"; prof_pid=; fi
done
# us_per_req FILE: total CPU microseconds over total requests.
us_per_req() { awk -v hz="$hz" '{t+=$3; n+=$2} END {printf "%.1f", t * 1e6 / hz / n}' "$1"; }
d=$(cut -d' ' -f1 "$tmp/direct" | median); g=$(cut -d' ' -f1 "$tmp/gateway" | median)
echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds; layout $layout; node flags: ${node_flags:-(defaults)}"
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "direct rounds (req/s):  $(cut -d' ' -f1 "$tmp/direct" | tr '\n' ' ')"
echo "gateway rounds (req/s): $(cut -d' ' -f1 "$tmp/gateway" | tr '\n' ' ')"
echo "gateway CPU per proxied request: $(us_per_req "$tmp/gateway") us (node CPU per direct request: $(us_per_req "$tmp/direct") us)"
printf 'direct to the node (median):  %8.0f req/s\nthrough the gateway (median): %8.0f req/s\n' "$d" "$g"
awk -v g="$g" -v d="$d" 'BEGIN { printf "ratio gateway/direct: %.2f (target >= 0.50)\n", g / d }'
echo "final value: $(curl -fs http://127.0.0.1:$node_port/counter)"
