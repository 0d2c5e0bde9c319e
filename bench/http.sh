#!/usr/bin/env bash
# bench/http.sh — POST /increment throughput of one dcounter node, as a ratio
# of a minimal Go net/http counter (bench/baseline) measured in the same run
# on the same machine with the same wrk settings.
#
#   bench/http.sh [DURATION] [CONNECTIONS]     (defaults: 10s 64)
#
# Extra node flags can be passed in DCOUNTER_BENCH_NODE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
conns=${2:-64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/dcounter" ./cmd/dcounter
CGO_ENABLED=0 go build -o "$tmp/baseline" ./bench/baseline
cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
LUA

# Each server is pinned to CPU 0 and wrk to CPU 1 (when there are two or
# more), so the two servers get identical resources; rounds alternate between
# them and the medians are compared.
pin_srv=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_srv=(taskset -c 0) pin_wrk=(taskset -c 1); fi
rounds=${DCOUNTER_BENCH_ROUNDS:-3}

rps() { # URL -> requests/s
  "${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/post.lua" "$1" | tee -a "$tmp/wrk.log" | awk '/Requests\/sec/ {print $2}'
}
wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.05; done; echo "server at $1 did not start" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

"${pin_srv[@]}" "$tmp/baseline" --addr 127.0.0.1:19090 & base_pid=$!
wait_up http://127.0.0.1:19090/counter
# shellcheck disable=SC2086
"${pin_srv[@]}" "$tmp/dcounter" node --gossip-addr 127.0.0.1:19946 --http-addr 127.0.0.1:19080 --data-dir "$tmp/data" --log-level warn ${DCOUNTER_BENCH_NODE_FLAGS:-} & node_pid=$!
wait_up http://127.0.0.1:19080/health

: >"$tmp/base" ; : >"$tmp/node"
for r in $(seq "$rounds"); do
  rps http://127.0.0.1:19090/increment >>"$tmp/base"
  rps http://127.0.0.1:19080/increment >>"$tmp/node"
done
base=$(median <"$tmp/base"); node=$(median <"$tmp/node")
final=$(curl -fs http://127.0.0.1:19080/counter)
kill "$base_pid" "$node_pid"

echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds, server on CPU 0, wrk on CPU 1"
echo "baseline rounds: $(tr '\n' ' ' <"$tmp/base")"
echo "node rounds:     $(tr '\n' ' ' <"$tmp/node")"
printf 'baseline net/http counter (median): %10.0f req/s\n' "$base"
printf 'dcounter node (median):             %10.0f req/s\n' "$node"
awk -v a="$node" -v b="$base" 'BEGIN { printf "ratio: %.2f (target >= 0.60)\n", a / b }'
echo "node's final value: $final"
