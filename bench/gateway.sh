#!/usr/bin/env bash
# bench/gateway.sh — POST /increment throughput through the gateway, as a
# ratio of the same node reached directly, in alternating rounds of one run.
# See DCOUNTER_BENCH_LAYOUT below for where each process runs.
#
#   bench/gateway.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 5s 64 3)
#
# Node flags come from DCOUNTER_BENCH_NODE_FLAGS (default: --fsync none, so
# the disk does not hide the gateway's cost; pass "" for the defaults).
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

# shellcheck disable=SC2086
"${pin_srv[@]}" "$tmp/dcounter" node --gossip-addr 127.0.0.1:19946 --http-addr 127.0.0.1:19080 --data-dir "$tmp/data" --log-level warn $node_flags &
wait_up http://127.0.0.1:19080/health
"${pin_gw[@]}" "$tmp/dcounter" gateway --http-addr 127.0.0.1:19000 --nodes http://127.0.0.1:19080 --log-level warn &
wait_up http://127.0.0.1:19000/health
rps() { "${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/post.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
: >"$tmp/direct"; : >"$tmp/gateway"
for r in $(seq "$rounds"); do
  rps http://127.0.0.1:19080/increment >>"$tmp/direct"
  rps http://127.0.0.1:19000/increment >>"$tmp/gateway"
done
d=$(median <"$tmp/direct"); g=$(median <"$tmp/gateway")
echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds; layout $layout; node flags: ${node_flags:-(defaults)}"
echo "direct rounds:  $(tr '\n' ' ' <"$tmp/direct")"
echo "gateway rounds: $(tr '\n' ' ' <"$tmp/gateway")"
printf 'direct to the node (median):  %8.0f req/s\nthrough the gateway (median): %8.0f req/s\n' "$d" "$g"
awk -v g="$g" -v d="$d" 'BEGIN { printf "ratio gateway/direct: %.2f (target >= 0.50)\n", g / d }'
echo "final value: $(curl -fs http://127.0.0.1:19080/counter)"
