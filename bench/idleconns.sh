#!/usr/bin/env bash
# bench/idleconns.sh — what idle keep-alive connections cost a node: opens N
# connections to one node's client API (one GET /counter each, then idle)
# and prints the node's RSS before and after.
#
#   bench/idleconns.sh [N]     (default 5000; needs `ulimit -n` above N)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
. bench/lib.sh
go build -o "$tmp/idleconns" ./bench/idleconns
port=$base_port
"$tmp/dcounter" node --gossip-addr "127.0.0.1:$((port + 1))" --http-addr "127.0.0.1:$port" --data-dir "$tmp/data" --log-level warn & pid=$!
wait_up "http://127.0.0.1:$port/health"
"$tmp/idleconns" -addr "127.0.0.1:$port" -n "$n" -pid "$pid"
