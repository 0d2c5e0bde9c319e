#!/usr/bin/env bash
# bench/gc.sh — what the node's collector tuning (internal/gctune) costs and
# saves on a node holding many keys: one node (--fsync none) is loaded with
# KEYS keys through its Redis port, then takes POST /increment from wrk; the
# same run is made with the tuning (no GOGC) and with GOGC=100 (Go's default),
# alternating, ROUNDS times each.
#
#   bench/gc.sh [KEYS] [DURATION] [ROUNDS]   (defaults: 1000000 10s 2)
#
# In tuned mode the wrk run starts once the tuner has lowered the GC
# percentage (it holds Go's default while the load makes the heap grow).
# Per mode, medians over the rounds: requests/s, the node's CPU per request
# (utime+stime from /proc, robust to load), collections during the wrk run,
# the GC percentage the node ran with (go_gc_gogc_percent) and its RSS at
# the end. Needs redis-cli (Debian package redis-tools) and wrk, installed
# here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
dur=${2:-10s}
rounds=${3:-2}
command -v redis-cli >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
. bench/lib.sh
echo 'wrk.method = "POST"' >"$tmp/post.lua"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
metric() { curl -fs http://127.0.0.1:19920/metrics | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }

run() { # MODE ENV...
  local mode=$1 pid t0 out n gc0
  shift
  rm -rf "$tmp/data"
  env "$@" "${pin_srv[@]}" "$tmp/dcounter" node --name gc-1 --fsync none --data-dir "$tmp/data" \
    --http-addr 127.0.0.1:19920 --gossip-addr 127.0.0.1:19921 --resp-addr 127.0.0.1:19922 \
    --log-level warn 2>"$tmp/node.log" &
  pid=$!
  wait_up http://127.0.0.1:19920/health
  awk -v n="$keys" 'BEGIN { for (i = 1; i <= n; i++) printf "*3\r\n$6\r\nINCRBY\r\n$%d\r\nkey:%d\r\n$1\r\n1\r\n", length("key:" i), i }' |
    "${pin_wrk[@]}" redis-cli -p 19922 --pipe >"$tmp/pipe.log"
  grep -q 'errors: 0,' "$tmp/pipe.log" || { cat "$tmp/pipe.log" >&2; exit 1; }
  if [ "$mode" = tuned ]; then
    # The tuner holds Go's default while the heap grows (the load), and
    # lowers it once the heap has been steady for its window (30 s).
    for _ in $(seq 120); do
      [ "$(metric go_gc_gogc_percent)" -lt 100 ] && break
      sleep 1
    done
  fi
  gc0=$(metric go_gc_duration_seconds_count)
  t0=$(ticks $pid)
  out=$("${pin_wrk[@]}" wrk -t1 -c64 -d"$dur" -s "$tmp/post.lua" http://127.0.0.1:19920/increment)
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$mode" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(awk -v t="$(($(ticks $pid) - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')" \
    "$(($(metric go_gc_duration_seconds_count) - gc0))" \
    "$(metric go_gc_gogc_percent)" \
    "$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)" >>"$tmp/results"
  kill $pid
  wait $pid 2>/dev/null || true
}

echo "load before: $(uptime)"
for _ in $(seq "$rounds"); do
  run tuned
  run gogc100 GOGC=100
done
echo "load after: $(uptime)"
echo "$keys keys, wrk -c64 -d$dur POST /increment, --fsync none, $rounds rounds (medians)"
printf '%-8s %10s %12s %12s %8s %10s\n' mode req/s cpu/req_us gc_cycles gogc rss_MiB
for mode in tuned gogc100; do
  col() { awk -v m="$mode" -v c="$1" '$1 == m {print $c}' "$tmp/results" | median; }
  printf '%-8s %10.0f %12.1f %12.0f %8.0f %10.1f\n' "$mode" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)"
done
t_cpu=$(awk '$1 == "tuned" {print $3}' "$tmp/results" | median) d_cpu=$(awk '$1 == "gogc100" {print $3}' "$tmp/results" | median)
t_rss=$(awk '$1 == "tuned" {print $6}' "$tmp/results" | median) d_rss=$(awk '$1 == "gogc100" {print $6}' "$tmp/results" | median)
awk -v a="$t_cpu" -v b="$d_cpu" -v c="$t_rss" -v d="$d_rss" 'BEGIN { printf "tuned / GOGC=100: CPU per request %.2f, RSS %.2f\n", a / b, c / d }'
