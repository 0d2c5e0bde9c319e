#!/usr/bin/env bash
# bench/churn.sh — memory and disk under key churn: KEYS distinct keys, each
# written once with a 10 s TTL (POST /counters/churn:<n>/increment with
# {"amount":1,"ttl_seconds":10}, n increasing), against one node with a data
# dir; then what is left once every key has expired, been reclaimed and its
# tombstone forgotten. Side by side, in the same run, redis-server holding
# the same number of keys (SET churn:<n> 1 EX 10).
#
#   bench/churn.sh [KEYS] [CONNECTIONS] [WRK-THREADS]   (defaults: 1000000 64 1)
#
# The node runs with --fsync always (override with DCOUNTER_BENCH_NODE_FLAGS),
# --max-clock-skew 1s (expiry grace 2 s), --reclaim-horizon 30s and
# --snapshot-interval 10s. DCOUNTER_BENCH_NODE_ENV is put in the node's
# environment (e.g. "GOGC=50" or "GOMEMLIMIT=256MiB"); DCOUNTER_BENCH_PROFILE
# names a file to save a heap profile of the node to, taken when the most
# keys are live. Needs wrk, redis-server and redis-cli (Debian packages wrk,
# redis-server, redis-tools), curl.
#
# Figures: RSS (VmRSS), Go heap in use (go_memstats_heap_inuse_bytes) and
# data-dir size (du -sb) of the empty node; at the sample with the most live
# keys (dcounter_keys_by_state{state="written"}), bytes per live key over the
# empty node; and the same after every key is gone (dcounter_keys 0) and a
# snapshot has been written since, then again after SETTLE seconds (default
# 150: the runtime collects garbage at least every 2 minutes) for the Go
# runtime to return freed memory to the OS, and after a forced GC.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000} conns=${2:-64} threads=${3:-1}
node_flags=${DCOUNTER_BENCH_NODE_FLAGS---fsync always}
node_env=${DCOUNTER_BENCH_NODE_ENV-}
settle=${SETTLE:-150}
for c in wrk redis-server redis-cli curl; do
  command -v $c >/dev/null || { echo "bench/churn.sh needs $c (apt-get install wrk redis-server redis-tools curl)" >&2; exit 1; }
done
. bench/lib.sh
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b ? a / b : 0 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }'; }

# ---- redis-server: the same number of keys with a 10 s TTL -----------------
rport=19379
"${pin_srv[@]}" redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$tmp/redis.log" --dir "$tmp" &
for _ in $(seq 100); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.05; done
rinfo() { redis-cli -p $rport info memory | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'; }
rkeys() { redis-cli -p $rport dbsize | tr -d '\r'; }
sleep 1
r_mem0=$(rinfo used_memory) r_rss0=$(rinfo used_memory_rss)
t0=$(date +%s.%N)
awk -v n="$keys" 'BEGIN { for (i = 1; i <= n; i++) printf "*5\r\n$3\r\nSET\r\n$%d\r\nchurn:%d\r\n$1\r\n1\r\n$2\r\nEX\r\n$2\r\n10\r\n", length("churn:" i), i }' |
  "${pin_wrk[@]}" redis-cli -p $rport --pipe >"$tmp/redis-pipe.log"
t1=$(date +%s.%N)
r_live=$(rkeys) r_mem=$(rinfo used_memory) r_rss=$(rinfo used_memory_rss)
for _ in $(seq 120); do [ "$(rkeys)" = 0 ] && break; sleep 1; done
r_left=$(rkeys)
sleep 2
r_mem1=$(rinfo used_memory) r_rss1=$(rinfo used_memory_rss)
redis-cli -p $rport shutdown nosave >/dev/null 2>&1 || true

# ---- dcounter node -----------------------------------------------------------
port=19481 data="$tmp/data"
# shellcheck disable=SC2086
env $node_env "${pin_srv[@]}" "$tmp/dcounter" node --gossip-addr 127.0.0.1:19482 --http-addr 127.0.0.1:$port \
  --debug-addr 127.0.0.1:19483 --data-dir "$data" --log-level warn --max-clock-skew 1s --reclaim-horizon 30s \
  --snapshot-interval 10s $node_flags 2>"$tmp/node.log" &
pid=$!
wait_up "http://127.0.0.1:$port/health"
metric() { curl -fs "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$pid/status"; }
# sample: "unix-time rss heap-inuse written keys tombstones data-dir-bytes"
sample() {
  local m
  m=$(curl -fs "http://127.0.0.1:$port/metrics")
  echo "$(date +%s) $(rss) $(awk '
    $1 == "go_memstats_heap_inuse_bytes" {h = $2} $1 == "dcounter_keys_by_state{state=\"written\"}" {w = $2}
    $1 == "dcounter_keys" {k = $2} $1 == "dcounter_keys_by_state{state=\"tombstone\"}" {t = $2}
    END {printf "%.0f %.0f %.0f %.0f", h, w, k, t}' <<<"$m") $(du -sb "$data" | cut -f1)"
}
sleep 2
read -r _ rss0 heap0 _ _ _ du0 <<<"$(sample)"

# Thread i of THREADS writes churn:<i*per+1>..churn:<(i+1)*per>; wrk has no
# "stop after N requests", so the first thread past its range ends wrk
# (os.exit, once every connection has had its last write answered: no wrk
# summary; the script times the load itself).
cat >"$tmp/churn.lua" <<EOF
local limit, threads, nth = $keys, $threads, 0
local body = '{"amount":1,"ttl_seconds":10}'
local headers = { ["Content-Type"] = "application/json" }
local n, last, done = 0, 0, false
function setup(thread) thread:set("id", nth); nth = nth + 1 end
function init(args)
  local per = math.ceil(limit / threads)
  local id = tonumber(wrk.thread:get("id"))
  n, last = id * per, math.min(limit, (id + 1) * per)
end
local after = 0
function request()
  n = n + 1
  if n > last then done = true; return wrk.format("GET", "/health") end
  return wrk.format("POST", "/counters/churn:" .. n .. "/increment", headers, body)
end
-- once past the range, wait for every connection's last write to answer
function response(status)
  if done then after = after + 1; if after > $conns then os.exit(0) end end
end
EOF

: >"$tmp/samples"
( while sleep 1; do sample >>"$tmp/samples" 2>/dev/null || true; done ) &
sampler=$!
lt0=$(date +%s.%N)
"${pin_wrk[@]}" wrk -t"$threads" -c"$conns" -d600s -s "$tmp/churn.lua" "http://127.0.0.1:$port/" >"$tmp/wrk.out"
lt1=$(date +%s.%N)
read -r _ rsse heape we ke te due <<<"$(sample)"
# The heap profile endpoint (--debug-addr) collects garbage first: heap in
# use then is what the keys hold, not what the next GC would free.
curl -fs "http://127.0.0.1:19483/debug/pprof/heap?gc=1" >"${DCOUNTER_BENCH_PROFILE:-/dev/null}"
read -r _ rssg heapg wg kg tg _ <<<"$(sample)"
# Wait for expiry + grace + horizon: every key reclaimed and forgotten.
for _ in $(seq 300); do [ "$(metric dcounter_keys)" = 0 ] && break; sleep 1; done
touch "$tmp/zero"
kill $sampler; wait $sampler 2>/dev/null || true
# A snapshot follows a reclaim within --snapshot-interval; none comes if the
# last one was taken after the last reclaim already.
snap="none needed"
for _ in $(seq 25); do [ -n "$(find "$data" -name '*.snap' -newer "$tmp/zero")" ] && { snap="written"; break; }; sleep 1; done
sleep 1
read -r _ rss1 heap1 w1 k1 _ du1 <<<"$(sample)"
files=$(cd "$data/wal" && ls -l | awk 'NR > 1 {printf "%s%s %.1f MiB", sep, $9, $5 / 1048576; sep = ", "}')
# The Go runtime collects at least every 2 minutes and returns freed pages
# to the OS in the background: look again after SETTLE seconds (no forced
# GC), then once more after a forced one.
sleep "$settle"
read -r _ rss2 heap2 _ _ _ du2 <<<"$(sample)"
curl -fs "http://127.0.0.1:19483/debug/pprof/heap?gc=1" >/dev/null
sleep 5
read -r _ rss3 heap3 _ _ _ _ <<<"$(sample)"

peak=$(sort -k4,4g "$tmp/samples" | tail -1)
read -r _ rssp heapp wp kp tp dup <<<"$peak"
maxrss=$(sort -k2,2g "$tmp/samples" | tail -1 | cut -d' ' -f2)
rate=$(awk -v n="$keys" -v a="$lt0" -v b="$lt1" 'BEGIN { printf "%.0f", n / (b - a) }')

echo "churn: $keys keys, each written once with ttl_seconds 10 (wrk -t$threads -c$conns, node on CPU 0, wrk on CPU 1)"
echo "node flags: $node_flags --max-clock-skew 1s --reclaim-horizon 30s --snapshot-interval 10s; env: ${node_env:-(none)}"
echo "load: $rate writes/s; expired and reclaimed: $(metric dcounter_keys_expired_total) of $keys keys; snapshot after the last reclaim: $snap"
row() { printf '%-44s %12s %12s %12s\n' "$@"; }
row "dcounter" "RSS" "heap inuse" "data dir"
row "empty node" "$(mib "$rss0")" "$(mib "$heap0")" "$(mib "$du0")"
row "most written keys sampled ($wp written, $kp held)" "$(mib "$rssp")" "$(mib "$heapp")" "$(mib "$dup")"
row "highest RSS sampled" "$(mib "$maxrss")" "" ""
row "end of load ($we written, $te tombstones)" "$(mib "$rsse")" "$(mib "$heape")" "$(mib "$due")"
row "  same, after a forced GC" "$(mib "$rssg")" "$(mib "$heapg")" ""
row "all reclaimed ($k1 keys) + snapshot" "$(mib "$rss1")" "$(mib "$heap1")" "$(mib "$du1")"
row "  vs empty" "$(pct "$rss1" "$rss0")" "$(pct "$heap1" "$heap0")" "$(pct "$du1" "$du0")"
row "  ${settle}s later" "$(mib "$rss2")" "$(mib "$heap2")" "$(mib "$du2")"
row "  vs empty" "$(pct "$rss2" "$rss0")" "$(pct "$heap2" "$heap0")" "$(pct "$du2" "$du0")"
row "  then after a forced GC" "$(mib "$rss3")" "$(mib "$heap3")" ""
row "  vs empty" "$(pct "$rss3" "$rss0")" "$(pct "$heap3" "$heap0")" ""
echo "data dir after reclaim: $files"
echo "bytes per key over the empty node:"
echo "  at the sample with the most written keys: per written key RSS $(div $((rssp - rss0)) "$wp"), heap $(div $((heapp - heap0)) "$wp");" \
  "per held key (written + tombstones) RSS $(div $((rssp - rss0)) "$kp"), heap $(div $((heapp - heap0)) "$kp")"
echo "  end of load after a forced GC ($wg written + $tg tombstones): per written key RSS $(div $((rssg - rss0)) "$wg")," \
  "heap $(div $((heapg - heap0)) "$wg"); per held key RSS $(div $((rssg - rss0)) "$kg"), heap $(div $((heapg - heap0)) "$kg")"
echo "redis-server $(redis-server --version | awk '{print $3}') (no persistence): $r_live keys loaded by redis-cli --pipe in" \
  "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s", b - a }')"
printf '%-34s %12s %12s\n' "redis" "used_memory" "used_rss"
printf '%-34s %12s %12s\n' "empty" "$(mib "$r_mem0")" "$(mib "$r_rss0")"
printf '%-34s %12s %12s\n' "$r_live keys live" "$(mib "$r_mem")" "$(mib "$r_rss")"
printf '%-34s %12s %12s\n' "after expiry ($r_left keys left)" "$(mib "$r_mem1")" "$(mib "$r_rss1")"
echo "redis bytes per live key: used_memory $(div $((r_mem - r_mem0)) "$r_live"), RSS $(div $((r_rss - r_rss0)) "$r_live")"
rb=$(div $((r_mem - r_mem0)) "$r_live")
awk -v a="$(div $((rssp - rss0)) "$wp")" -v b="$(div $((heapp - heap0)) "$wp")" -v c="$(div $((heapg - heap0)) "$wg")" \
  -v d="$(div $((heapg - heap0)) "$kg")" -v r="$rb" 'BEGIN { printf "dcounter/redis bytes per key (redis used_memory %d): per written key RSS %.2f, heap %.2f, heap after GC %.2f; per held key heap after GC %.2f (target <= 2)\n", r, a / r, b / r, c / r, d / r }'
echo "targets: after reclaim, RSS and data dir within 10% of the empty node's"
