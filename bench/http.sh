#!/usr/bin/env bash
# bench/http.sh — POST /increment throughput of one dcounter node, as a ratio
# of a minimal Go net/http counter (bench/baseline) measured in the same run
# on the same machine with the same wrk settings.
#
#   bench/http.sh [DURATION] [CONNECTIONS]     (defaults: 10s 64)
#
# Extra node flags can be passed in DCOUNTER_BENCH_NODE_FLAGS, and
# variables for the node's environment in DCOUNTER_BENCH_NODE_ENV (e.g.
# GOMAXPROCS=2).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
. bench/lib.sh
CGO_ENABLED=0 go build -o "$tmp/baseline" ./bench/baseline
cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
LUA

# Each server is pinned to CPU 0 and wrk to CPU 1 (lib.sh's pins, when there
# are two or more), so the two servers get identical resources; rounds
# alternate between them and the medians are compared.
rounds=${DCOUNTER_BENCH_ROUNDS:-3}

# CPU time (user + system, clock ticks) a process has used, from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
rps() { # URL PID NAME -> requests/s on stdout; the server's CPU µs per request to $tmp/NAME.cpu
  local t0 out
  t0=$(ticks "$2")
  out=$("${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/post.lua" "$1")
  echo "$out" >>"$tmp/wrk.log"
  awk -v t="$(($(ticks "$2") - t0))" -v hz="$hz" -v n="$(echo "$out" | awk '/requests in/ {print $1}')" \
    'BEGIN { printf "%.2f\n", t / hz * 1e6 / n }' >>"$tmp/$3.cpu"
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

port=$base_port
"${pin_srv[@]}" "$tmp/baseline" --addr "127.0.0.1:$port" & base_pid=$!
wait_up "http://127.0.0.1:$port/counter"
# shellcheck disable=SC2086
env ${DCOUNTER_BENCH_NODE_ENV:-} "${pin_srv[@]}" "$tmp/dcounter" node --gossip-addr "127.0.0.1:$((port + 2))" --http-addr "127.0.0.1:$((port + 1))" --data-dir "$tmp/data" --log-level warn ${DCOUNTER_BENCH_NODE_FLAGS:-} & node_pid=$!
wait_up "http://127.0.0.1:$((port + 1))/health"

: >"$tmp/base" ; : >"$tmp/node"
for r in $(seq "$rounds"); do
  rps "http://127.0.0.1:$port/increment" "$base_pid" base >>"$tmp/base"
  rps "http://127.0.0.1:$((port + 1))/increment" "$node_pid" node >>"$tmp/node"
done
base=$(median <"$tmp/base"); node=$(median <"$tmp/node")
base_cpu=$(median <"$tmp/base.cpu"); node_cpu=$(median <"$tmp/node.cpu")
final=$(curl -fs "http://127.0.0.1:$((port + 1))/counter")
kill "$base_pid" "$node_pid"

echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds, server on CPU 0, wrk on CPU 1"
echo "baseline rounds: $(tr '\n' ' ' <"$tmp/base")"
echo "node rounds:     $(tr '\n' ' ' <"$tmp/node")"
printf 'baseline net/http counter (median): %10.0f req/s\n' "$base"
printf 'dcounter node (median):             %10.0f req/s\n' "$node"
awk -v a="$node" -v b="$base" 'BEGIN { printf "ratio: %.2f\n", a / b }'
# CPU per request is what the load of other processes distorts least.
echo "baseline CPU per request (median): $base_cpu µs; rounds: $(tr '\n' ' ' <"$tmp/base.cpu")"
echo "node CPU per request (median):     $node_cpu µs; rounds: $(tr '\n' ' ' <"$tmp/node.cpu")"
awk -v a="$node_cpu" -v b="$base_cpu" 'BEGIN { printf "CPU per request ratio, baseline/node: %.2f\n", b / a }'
echo "load: $(uptime)"
echo "node's final value: $final"
