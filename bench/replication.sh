#!/usr/bin/env bash
# bench/replication.sh — the cost of replication: N real node processes on
# 127.0.0.1 (default --fsync always, keyed gossip) take WRITES durable writes
# (CLIENTS concurrent HTTP clients, 20 keys, spread round-robin over the
# nodes); the run ends when every node reports the exact totals.
#
#   bench/replication.sh [SIZES] [WRITES] [CLIENTS]   (defaults: "1 5 20" 10000 16)
#   BASE_REV=<git rev> bench/replication.sh ...       also runs that revision's
#                                                     build, alternating with this one
#   ROUNDS=3 bench/replication.sh ...                 medians of 3 runs per size and build
#   NODE_FLAGS="--delta-gap 100ms" bench/replication.sh ...
#                                                     extra flags for this build's nodes (not
#                                                     BASE_REV's, which may not know them)
#   NODE_ENV="GOMAXPROCS=1" bench/replication.sh ...  extra environment for every node of
#                                                     both builds (not for the driver)
#
# Per size and build it prints writes/s and, from the node processes' CPU
# (utime+stime, /proc/PID/stat) from the first write to convergence:
#   cpu/write         cluster CPU ÷ writes
#   cpu/apply (raw)   cluster CPU ÷ (writes × nodes)
#   local             CPU per write (idle CPU taken off) of a 1-node run with as many clients as
#                     each node of the N-node run has (CLIENTS ÷ N, at least 1): a local write's
#                     cost at the same concurrency, so with the same group-commit batching (with 16
#                     clients one node shares an fsync among ~7 writes; each of 20 nodes serving
#                     under one client fsyncs every write, and that is not replication's cost)
#   apply             (cluster CPU − idle CPU over the same time − writes × local) ÷ (writes × (nodes − 1)):
#                     what one replica spends applying another's write
#   apply/local       the ratio (target ≤ 0.2)
#   B/write           gossip bytes sent (dcounter_gossip_bytes_total, out) ÷ writes
#   msgs/write        gossip messages sent ÷ writes
#   fsyncs/write      the nodes' WAL fsyncs ÷ writes
# CPU per operation is what contention distorts least; writes/s depends on
# the load, so the script prints `uptime` with the results.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-"1 5 20"}
writes=${2:-10000}
clients=${3:-16}
rounds=${ROUNDS:-1}
tmp=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${basewt:-}" ]; then git worktree remove --force "$basewt" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$tmp/new" ./cmd/dcounter
go build -o "$tmp/driver" ./bench/replication
builds=(new)
if [ -n "${BASE_REV:-}" ]; then
  basewt=$tmp/base-src
  git worktree add --detach "$basewt" "$BASE_REV" >/dev/null 2>&1
  (cd "$basewt" && CGO_ENABLED=0 go build -o "$tmp/base" ./cmd/dcounter)
  builds=(base new)
fi
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
# local_clients N: the clients one node of an N-node run has, at least 1.
local_clients() { awk -v c="$clients" -v n="$1" 'BEGIN { x = int(c / n + 0.5); print (x < 1 ? 1 : x) }'; }

echo "load before: $(uptime)"
for size in $sizes; do
  for r in $(seq "$rounds"); do
    for b in "${builds[@]}"; do
      flags=
      if [ "$b" = new ]; then flags=${NODE_FLAGS:-}; fi
      "$tmp/driver" -bin "$tmp/$b" -nodes "$size" -writes "$writes" -clients "$clients" -label "$b" -node-flags "$flags" -node-env "${NODE_ENV:-}" | tee -a "$tmp/$b.$size"
      if [ "$size" -gt 1 ]; then
        "$tmp/driver" -bin "$tmp/$b" -nodes 1 -writes "$writes" -clients "$(local_clients "$size")" -label "$b-local" -node-flags "$flags" -node-env "${NODE_ENV:-}" | tee -a "$tmp/$b.local$size"
      fi
    done
  done
done
echo "load after: $(uptime)"
echo
printf '%-5s %5s %10s %12s %15s %14s %10s %11s %9s %10s %12s\n' build nodes writes/s cpu/write_us cpu/apply_raw_us 'local_us(cl)' apply_us apply/local B/write msgs/write fsyncs/write
for b in "${builds[@]}"; do
  for size in $sizes; do
    local_us=
    if [ "$size" -gt 1 ]; then
      lc=$(while read -r l; do echo "$l" | field cpu_s; done <"$tmp/$b.local$size" | median)
      li=$(while read -r l; do echo "$l" | field idle_cpu_s; done <"$tmp/$b.local$size" | median)
      local_us=$(awk -v c="$lc" -v i="$li" -v w="$writes" 'BEGIN {printf "%.1f", (c - i) / w * 1e6}')
    fi
    f=$tmp/$b.$size
    # Per round: the figures; then the median of each over the rounds.
    wps=$(while read -r l; do echo "$l" | field writes_per_s; done <"$f" | median)
    cpu=$(while read -r l; do echo "$l" | field cpu_s; done <"$f" | median)
    idle=$(while read -r l; do echo "$l" | field idle_cpu_s; done <"$f" | median)
    bytes=$(while read -r l; do echo "$l" | field bytes_out; done <"$f" | median)
    msgs=$(while read -r l; do echo "$l" | field msgs_out; done <"$f" | median)
    fsyncs=$(while read -r l; do echo "$l" | field fsyncs; done <"$f" | median)
    lcl=$(local_clients "$size")
    awk -v b="$b" -v n="$size" -v wps="$wps" -v c="$cpu" -v i="$idle" -v w="$writes" -v by="$bytes" -v ms="$msgs" -v fs="$fsyncs" -v l="$local_us" -v lcl="$lcl" 'BEGIN {
      apply = "-"; ratio = "-"; lo = "-"
      if (n > 1 && l != "") { a = ((c - i) * 1e6 - w * l) / (w * (n - 1)); apply = sprintf("%.1f", a); ratio = sprintf("%.2f", a / l); lo = sprintf("%s(%d)", l, lcl) }
      printf "%-5s %5d %10.0f %12.1f %15.1f %14s %10s %11s %9.0f %10.2f %12.2f\n", b, n, wps, c / w * 1e6, c / (w * n) * 1e6, lo, apply, ratio, by / w, ms / w, fs / w
    }'
  done
done
if [ -n "${BASE_REV:-}" ]; then
  for size in $sizes; do
    nb=$(while read -r l; do echo "$l" | field writes_per_s; done <"$tmp/new.$size" | median)
    bb=$(while read -r l; do echo "$l" | field writes_per_s; done <"$tmp/base.$size" | median)
    awk -v n="$size" -v a="$nb" -v b="$bb" 'BEGIN {printf "%d nodes: write rate this build / BASE_REV = %.2f\n", n, a / b}'
  done
fi
