#!/usr/bin/env bash
# bench/fsync.sh — durable write throughput: POST /increment on one node with
# --fsync always, as a ratio of the same node with --fsync none, under the
# same wrk load, measured in alternating rounds in one run.
#
#   bench/fsync.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 5s 64 5)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5s} conns=${2:-64} rounds=${3:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
. bench/lib.sh
printf 'wrk.method = "POST"\n' >"$tmp/post.lua"

start() { # POLICY PORT
  "${pin_srv[@]}" "$tmp/dcounter" node --fsync "$1" --gossip-addr "127.0.0.1:$(($2 + 1000))" --http-addr "127.0.0.1:$2" \
    --data-dir "$tmp/data-$1" --log-level warn &
  wait_up "http://127.0.0.1:$2/health"
}
port=$base_port
start always "$port"
start none "$((port + 1))"
: >"$tmp/always"; : >"$tmp/none"
for r in $(seq "$rounds"); do
  for p in always none; do
    pp=$port; [ $p = none ] && pp=$((port + 1))
    "${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/post.lua" "http://127.0.0.1:$pp/increment" |
      awk '/Requests\/sec/ {print $2}' >>"$tmp/$p"
  done
done
a=$(median <"$tmp/always"); n=$(median <"$tmp/none")
echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds, node on CPU 0, wrk on CPU 1"
echo "--fsync always rounds: $(tr '\n' ' ' <"$tmp/always")"
echo "--fsync none rounds:   $(tr '\n' ' ' <"$tmp/none")"
printf -- '--fsync always (median): %8.0f req/s\n--fsync none (median):   %8.0f req/s\n' "$a" "$n"
awk -v a="$a" -v n="$n" 'BEGIN { printf "ratio always/none: %.2f (target >= 0.50)\n", a / n }'
