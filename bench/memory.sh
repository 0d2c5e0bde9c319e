#!/usr/bin/env bash
# bench/memory.sh — bytes of memory per live key: a 3-node dcounter cluster
# in which every key has 3 replicas, against redis-server holding the same
# keys, in one run.
#
#   bench/memory.sh [KEYS]   (default 1000000)
#
# redis-server (no persistence) gets INCRBY key:<i> 3 for i in 1..KEYS, by
# redis-cli --pipe. Three dcounter nodes (--fsync none, one cluster) each get
# INCRBY key:<i> 1 for the same keys through their Redis port (--resp-addr),
# so that every key ends with three replicas' entries on every node. The
# script waits until node 1 has merged both other replicas' entry of every
# key (dcounter_merged_entries_total = 2 × KEYS) and until a sample of keys
# reads 3 there, then forces a GC on node 1 (its --debug-addr heap profile
# endpoint collects first), waits for the runtime to give freed pages back,
# and compares, per key:
#   node 1: (RSS − RSS of the same node empty) and (Go heap in use − empty)
#   redis:  (RSS − RSS empty) and (used_memory − used_memory empty)
# The ratio printed is node RSS per key ÷ redis RSS per key (target ≤ 2).
#
# DCOUNTER_BENCH_PROFILE=FILE saves node 1's heap profile (taken after the
# forced GC) for go tool pprof -sample_index=inuse_space.
# DCOUNTER_BENCH_NODE_ENV is put in the nodes' environment (e.g. GOGC=50).
# Needs redis-server and redis-cli (Debian packages redis-server and
# redis-tools, installed here if missing) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
node_env=${DCOUNTER_BENCH_NODE_ENV-}
{ command -v redis-server && command -v redis-cli; } >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
. bench/lib.sh
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b ? a / b : 0 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# The same commands for both servers: INCRBY key:<i> AMOUNT, i in 1..KEYS.
load() { # PORT AMOUNT
  awk -v n="$keys" -v a="$2" 'BEGIN { for (i = 1; i <= n; i++) printf "*3\r\n$6\r\nINCRBY\r\n$%d\r\nkey:%d\r\n$%d\r\n%s\r\n", length("key:" i), i, length(a), a }' |
    "${pin_wrk[@]}" redis-cli -p "$1" --pipe >"$tmp/pipe-$1.log"
  grep -q 'errors: 0,' "$tmp/pipe-$1.log" || { cat "$tmp/pipe-$1.log" >&2; echo "load on port $1 failed" >&2; exit 1; }
}
rss_of() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }

# ---- redis-server -------------------------------------------------------------
rport=19701
"${pin_srv[@]}" redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$tmp/redis.log" --dir "$tmp" &
rpid=$!
for _ in $(seq 100); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.05; done
rinfo() { redis-cli -p $rport info memory | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'; }
sleep 1
r_mem0=$(rinfo used_memory) r_rss0=$(rss_of $rpid)
load $rport 3
r_keys=$(redis-cli -p $rport dbsize | tr -d '\r')
sleep 1
r_mem=$(rinfo used_memory) r_rss=$(rss_of $rpid)
[ "$(redis-cli -p $rport get "key:$keys" | tr -d '\r')" = 3 ] || { echo "redis: key:$keys is not 3" >&2; exit 1; }
redis-cli -p $rport shutdown nosave >/dev/null 2>&1 || true

# ---- three dcounter nodes -------------------------------------------------------
# node i: HTTP 198i0, gossip 198i1, RESP 198i2, debug 198i3
declare -a npid
node_up() { # I [JOIN-FLAGS...]
  local i=$1
  shift
  # shellcheck disable=SC2086
  env $node_env "${pin_srv[@]}" "$tmp/dcounter" node --name "mem-$i" --fsync none --data-dir "$tmp/data-$i" \
    --http-addr "127.0.0.1:198${i}0" --gossip-addr "127.0.0.1:198${i}1" --resp-addr "127.0.0.1:198${i}2" \
    --debug-addr "127.0.0.1:198${i}3" --log-level warn "$@" 2>"$tmp/node-$i.log" &
  npid[$i]=$!
  wait_up "http://127.0.0.1:198${i}0/health"
}
node_up 1
node_up 2 --join 127.0.0.1:19811
node_up 3 --join 127.0.0.1:19811
for _ in $(seq 200); do
  [ "$(curl -fs http://127.0.0.1:19810/nodes | grep -o '"alive"' | wc -l)" -ge 3 ] && break
  sleep 0.1
done
metrics() { curl -fs "http://127.0.0.1:19810/metrics"; }
metric_sum() { metrics | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {printf "%.0f\n", s}'; }
gc() { curl -fs "http://127.0.0.1:19813/debug/pprof/heap?gc=1" >"${1:-/dev/null}"; sleep 3; }
heap_inuse() { metric_sum go_memstats_heap_inuse_bytes; }
sleep 1
gc
n_rss0=$(rss_of "${npid[1]}") n_heap0=$(heap_inuse)

t0=$(date +%s.%N)
for i in 1 2 3; do load "198${i}2" 1; done
t1=$(date +%s.%N)
want=$((2 * keys))
for _ in $(seq 600); do
  [ "$(metric_sum dcounter_merged_entries_total)" -ge "$want" ] && break
  sleep 0.5
done
merged=$(metric_sum dcounter_merged_entries_total)
[ "$merged" -ge "$want" ] || { echo "node 1 merged $merged remote entries, want $want" >&2; exit 1; }
# Every thousandth key reads 3 on node 1: all three replicas' entries are there.
for i in $(seq 1 1000 "$keys"); do echo "GET key:$i"; done | redis-cli -p 19812 >"$tmp/sample"
bad=$(grep -vcx 3 "$tmp/sample" || true)
[ "$bad" = 0 ] || { echo "node 1: $bad sampled keys do not read 3" >&2; exit 1; }
n_keys=$(metrics | awk '$1 == "dcounter_keys" {printf "%.0f", $2}')
gc "${DCOUNTER_BENCH_PROFILE:-}"
sleep 5 # the scavenger returns what the collection freed
gc
n_rss=$(rss_of "${npid[1]}") n_heap=$(heap_inuse)

nb=$(div $((n_rss - n_rss0)) "$n_keys") nh=$(div $((n_heap - n_heap0)) "$n_keys")
rb=$(div $((r_rss - r_rss0)) "$r_keys") rm=$(div $((r_mem - r_mem0)) "$r_keys")
echo "memory per key: $keys keys (key:1..key:$keys); redis-server $(redis-server --version | awk '{print $3}' | sed 's/v=//') without persistence, INCRBY k 3;"
echo "  3 dcounter nodes (--fsync none), INCRBY k 1 on each, node 1 measured once it holds every key with 3 replicas"
echo "  dcounter $(git describe --always --dirty 2>/dev/null || echo '?'); load: $(uptime | sed 's/.*load average/load average/'); node env: ${node_env:-(none)}"
echo "  the three node loads took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s", b - a }')"
printf '%-30s %14s %14s\n' "" "RSS" "heap / used_memory"
printf '%-30s %14s %14s\n' "dcounter node 1, empty" "$(mib "$n_rss0")" "$(mib "$n_heap0")"
printf '%-30s %14s %14s\n' "dcounter node 1, $n_keys keys" "$(mib "$n_rss")" "$(mib "$n_heap")"
printf '%-30s %14s %14s\n' "redis, empty" "$(mib "$r_rss0")" "$(mib "$r_mem0")"
printf '%-30s %14s %14s\n' "redis, $r_keys keys" "$(mib "$r_rss")" "$(mib "$r_mem")"
echo "bytes per key: dcounter RSS $nb, heap in use $nh; redis RSS $rb, used_memory $rm"
awk -v a="$nb" -v b="$rb" -v c="$nh" -v d="$rm" 'BEGIN { printf "ratio dcounter/redis: RSS %.2f (target <= 2), heap/used_memory %.2f\n", a / b, c / d }'
