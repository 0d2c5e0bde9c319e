#!/usr/bin/env bash
# bench/resp.sh — INCR through the Redis protocol: redis-benchmark against a
# dcounter node (--resp-addr) and against redis-server 7, with the same
# flags, in one run. Two pairs of durability settings:
#   no fsync:     dcounter --fsync none    vs redis-server --save '' --appendonly no
#   fsync always: dcounter --fsync always  vs redis-server --save '' --appendonly yes --appendfsync always
# and two loads: redis-benchmark -t incr -n REQUESTS -c CONNECTIONS -P 16 -q,
# and the same with -P 1. Every figure is the median of ROUNDS runs; the
# servers run side by side and are measured in alternating order.
#
#   bench/resp.sh [REQUESTS] [CONNECTIONS] [ROUNDS]   (defaults: 200000 50 3)
#
# DCOUNTER_BENCH_PROFILE=DIR then profiles each dcounter node under the
# -P 16 load for PROFILE_SECONDS (default 10): a CPU profile (cpu-POLICY.pprof,
# summarised with go tool pprof -top into cpu-POLICY.txt) and an execution
# trace (trace-POLICY.out) whose blocking profiles (go tool trace -pprof=sync,
# syscall, net) say where goroutines wait: the node sets no mutex profile
# rate, so the trace is what shows lock waits.
#
# Needs redis-server and redis-benchmark (Debian packages redis-server and
# redis-tools, installed here if missing) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000} conns=${2:-50} rounds=${3:-3}
profile_dir=${DCOUNTER_BENCH_PROFILE:-} profile_secs=${PROFILE_SECONDS:-10}
{ command -v redis-server && command -v redis-benchmark; } >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
. bench/lib.sh

# ---- servers: two redis-servers, two dcounter nodes ------------------------
redis_up() { # NAME PORT FLAGS...
  local name=$1 port=$2
  shift 2
  mkdir -p "$tmp/$name"
  "${pin_srv[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/$name" --daemonize no \
    --logfile "$tmp/$name.log" "$@" &
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server $name did not start" >&2
  exit 1
}
node_up() { # POLICY RESP-PORT (HTTP on +1, gossip on +2, debug on +3)
  "${pin_srv[@]}" "$tmp/dcounter" node --name "bench-$1" --fsync "$1" --data-dir "$tmp/data-$1" \
    --resp-addr "127.0.0.1:$2" --http-addr "127.0.0.1:$(($2 + 1))" --gossip-addr "127.0.0.1:$(($2 + 2))" \
    --debug-addr "127.0.0.1:$(($2 + 3))" --log-level warn 2>"$tmp/node-$1.log" &
  wait_up "http://127.0.0.1:$(($2 + 1))/health"
}
redis_up redis-none 19601 --save '' --appendonly no
redis_up redis-always 19602 --save '' --appendonly yes --appendfsync always
node_up none 19611
node_up always 19621
declare -A port=([redis-none]=19601 [redis-always]=19602 [dcounter-none]=19611 [dcounter-always]=19621)

# bench PORT PIPELINE: one redis-benchmark run; prints "requests/s p50-ms".
bench() {
  "${pin_wrk[@]}" redis-benchmark -p "$1" -t incr -n "$n" -c "$conns" -P "$2" -q 2>/dev/null | tr '\r' '\n' |
    awk '/^INCR: .* requests per second/ {rps = $2; for (i = 1; i <= NF; i++) if ($i ~ /^p50=/) {sub("p50=", "", $i); p50 = $i}}
         END {if (rps == "") exit 1; print rps, p50}'
}
for r in $(seq "$rounds"); do
  for p in 16 1; do
    for s in dcounter-none redis-none dcounter-always redis-always; do
      bench "${port[$s]}" "$p" >>"$tmp/$s-P$p"
    done
  done
done
# Every INCR was counted: redis-benchmark's key is counter:__rand_int__.
for policy in none always; do
  got=$(curl -fs "http://127.0.0.1:$((${port[dcounter-$policy]} + 1))/counters/counter:__rand_int__" | sed 's/.*"value":\([0-9]*\).*/\1/')
  want=$((2 * rounds * n))
  [ "$got" = "$want" ] || echo "WARNING: dcounter --fsync $policy holds $got INCRs, $want were acknowledged" >&2
done

med() { awk -v c="$2" '{print $c}' "$tmp/$1" | median; }
echo "redis-benchmark -t incr -n $n -c $conns -q, median of $rounds alternating runs; servers on CPU 0, redis-benchmark on CPU 1 ($(nproc) CPUs)"
echo "redis-server $(redis-server --version | awk '{print $3}' | sed 's/v=//'), dcounter $(git describe --always --dirty 2>/dev/null || echo '?')"
printf '%-6s %-13s %14s %14s %7s   %s\n' load durability "dcounter r/s" "redis r/s" ratio "p50 ms dcounter / redis"
for p in 16 1; do
  for policy in none always; do
    d=$(med "dcounter-$policy-P$p" 1) rr=$(med "redis-$policy-P$p" 1)
    dl=$(med "dcounter-$policy-P$p" 2) rl=$(med "redis-$policy-P$p" 2)
    label="no fsync"; [ $policy = always ] && label="fsync always"
    awk -v p="-P $p" -v l="$label" -v d="$d" -v r="$rr" -v dl="$dl" -v rl="$rl" \
      'BEGIN { printf "%-6s %-13s %14.0f %14.0f %7.2f   %s / %s\n", p, l, d, r, d / r, dl, rl }'
  done
done
echo "runs (requests/s):"
for f in "$tmp"/*-P*; do printf '  %-22s %s\n' "$(basename "$f")" "$(awk '{printf "%s ", $1}' "$f")"; done

# ---- profiles -----------------------------------------------------------------
[ -n "$profile_dir" ] || exit 0
walstats() { # HTTP-PORT: "fsyncs fsync-seconds records" so far
  curl -fs "http://127.0.0.1:$1/metrics" | awk '$1 == "dcounter_wal_fsync_duration_seconds_count" {c = $2}
    $1 == "dcounter_wal_fsync_duration_seconds_sum" {s = $2} $1 == "dcounter_wal_records_total" {r = $2} END {print c + 0, s + 0, r + 0}'
}
mkdir -p "$profile_dir"
for policy in none always; do
  rp=${port[dcounter-$policy]} dbg=$((${port[dcounter-$policy]} + 3))
  "${pin_wrk[@]}" redis-benchmark -p "$rp" -t incr -n 1000000000 -c "$conns" -P 16 -q >/dev/null 2>&1 &
  load=$!
  sleep 1
  w0=$(walstats $((rp + 1))) t0=$(date +%s.%N)
  curl -fs "http://127.0.0.1:$dbg/debug/pprof/profile?seconds=$profile_secs" >"$profile_dir/cpu-$policy.pprof"
  w1=$(walstats $((rp + 1))) t1=$(date +%s.%N)
  curl -fs "http://127.0.0.1:$dbg/debug/pprof/trace?seconds=$((profile_secs / 2))" >"$profile_dir/trace-$policy.out"
  kill "$load"
  wait "$load" 2>/dev/null || true
  go tool pprof -top -nodecount=40 "$tmp/dcounter" "$profile_dir/cpu-$policy.pprof" >"$profile_dir/cpu-$policy.txt" 2>/dev/null
  go tool pprof -top -cum -nodecount=40 "$tmp/dcounter" "$profile_dir/cpu-$policy.pprof" >"$profile_dir/cpu-cum-$policy.txt" 2>/dev/null
  for kind in sync syscall net; do
    go tool trace -pprof="$kind" "$profile_dir/trace-$policy.out" >"$profile_dir/$kind-$policy.pprof" 2>/dev/null &&
      go tool pprof -top -nodecount=25 "$tmp/dcounter" "$profile_dir/$kind-$policy.pprof" >"$profile_dir/$kind-$policy.txt" 2>/dev/null || true
  done
  echo "profiles of dcounter --fsync $policy under -P 16 -c $conns: $profile_dir/{cpu,cpu-cum,sync,syscall,net}-$policy.txt"
  awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" 'BEGIN { split(a, x); split(b, y); d = t1 - t0; f = y[1] - x[1]; r = y[3] - x[3]
    printf "  during the CPU profile: %.0f log records/s, %.0f fsyncs/s, %.3f ms per fsync, %.1f records per fsync\n",
      r / d, f / d, f ? (y[2] - x[2]) / f * 1000 : 0, f ? r / f : 0 }' </dev/null
  grep -m1 -B0 -A0 'Total samples' "$profile_dir/cpu-$policy.txt" | sed 's/^/  /' || true
done
