#!/usr/bin/env bash
# bench/discovery-spam.sh — gateway throughput and latency while the
# discovery server it reads is flooded with unauthenticated registrations,
# in alternating quiet / spammed rounds of one run.
#
#   bench/discovery-spam.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 5s 32 3)
#
# One node (--fsync none), a discovery server and a gateway reading it every
# 200ms, all with one cluster key (DCOUNTER_BENCH_KEYED=0 runs them without
# one, on loopback). The load is wrk -t1 POST /increment through the
# gateway; the spam is wrk -t1 -c8 POSTing /register with a new random id
# and a dead address each time, as fast as it can. Node and gateway share
# CPU 0; discovery, the load and the spam share CPU 1 (so the spam also
# takes CPU from the load generator: the quiet/spammed ratio is a lower bound).
# Ports: DCOUNTER_BENCH_PORT_BASE (default 29000) and a few above it.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5s} conns=${2:-32} rounds=${3:-3}
keyed=${DCOUNTER_BENCH_KEYED:-1}
base=${DCOUNTER_BENCH_PORT_BASE:-29000}
pg=$base pd=$((base + 500)) pn=$((base + 80)) pgo=$((base + 946))
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/dcounter" ./cmd/dcounter
if [ "$keyed" = 1 ]; then
  DCOUNTER_CLUSTER_KEY=$("$tmp/dcounter" keygen)
  export DCOUNTER_CLUSTER_KEY
fi
pin0=() pin1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin0=(taskset -c 0) pin1=(taskset -c 1); fi
wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.05; done; echo "no server at $1" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

"${pin1[@]}" "$tmp/dcounter" discovery --http-addr 127.0.0.1:${pd} --log-level warn 2>"$tmp/discovery.log" &
wait_up http://127.0.0.1:${pd}/health
"${pin0[@]}" "$tmp/dcounter" node --gossip-addr 127.0.0.1:${pgo} --http-addr 127.0.0.1:${pn} --data-dir "$tmp/data" \
  --fsync none --discovery http://127.0.0.1:${pd} --bootstrap --log-level warn 2>"$tmp/node.log" &
wait_up http://127.0.0.1:${pn}/health
"${pin0[@]}" "$tmp/dcounter" gateway --http-addr 127.0.0.1:${pg} --discovery http://127.0.0.1:${pd} \
  --health-interval 200ms --log-level warn 2>"$tmp/gateway.log" &
for _ in $(seq 100); do curl -fs http://127.0.0.1:${pg}/health | grep -q '"healthy_nodes":1' && break; sleep 0.05; done

printf 'wrk.method = "POST"\n' >"$tmp/post.lua"
cat >"$tmp/spam.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local id = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local port = math.random(20000, 60000)
  return wrk.format(nil, "/register", nil,
    '{"id":"' .. id .. '","name":"fake","gossip_addr":"127.0.0.1:' .. port .. '","http_addr":"127.0.0.1:' .. port .. '"}')
end
LUA
# run prints "req/s p99_ms" for one round of load through the gateway.
run() {
  "${pin1[@]}" wrk -t1 -c"$conns" -d"$dur" --latency -s "$tmp/post.lua" http://127.0.0.1:${pg}/increment |
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v} END {printf "%s %.2f\n", r, p}'
}
: >"$tmp/quiet"; : >"$tmp/spam"; : >"$tmp/spamrate"
for r in $(seq "$rounds"); do
  run >>"$tmp/quiet"
  "${pin1[@]}" wrk -t1 -c8 -d"$dur" -s "$tmp/spam.lua" http://127.0.0.1:${pd}/register >"$tmp/spam.out" &
  spam=$!
  run >>"$tmp/spam"
  wait "$spam"
  awk '/Requests\/sec/ {print $2}' "$tmp/spam.out" >>"$tmp/spamrate"
done
echo "POST /increment through the gateway, wrk -t1 -c$conns -d$dur x $rounds alternating rounds; keyed=$keyed"
echo "quiet rounds (req/s p99ms):   $(tr '\n' ' ' <"$tmp/quiet" | sed 's/ $//')"
echo "spammed rounds (req/s p99ms): $(tr '\n' ' ' <"$tmp/spam" | sed 's/ $//')"
echo "spam rate (registrations/s):  $(tr '\n' ' ' <"$tmp/spamrate")"
q=$(cut -d' ' -f1 <"$tmp/quiet" | median); s=$(cut -d' ' -f1 <"$tmp/spam" | median)
qp=$(cut -d' ' -f2 <"$tmp/quiet" | median); sp=$(cut -d' ' -f2 <"$tmp/spam" | median)
printf 'median quiet:   %8.0f req/s  p99 %6.2f ms\nmedian spammed: %8.0f req/s  p99 %6.2f ms\n' "$q" "$qp" "$s" "$sp"
awk -v q="$q" -v s="$s" 'BEGIN { printf "throughput ratio spammed/quiet: %.2f\n", s / q }'
echo "discovery: $(curl -fs http://127.0.0.1:${pd}/health)"
curl -fs http://127.0.0.1:${pd}/metrics | grep -E '^dcounter_discovery_(refused_total|entries)' || true
sleep 1 # one more gateway refresh after the spam
echo "gateway tracks $(curl -fs http://127.0.0.1:${pg}/nodes | grep -o '"url"' | wc -l) node(s);" \
  "$(grep -c 'discovery unreachable' "$tmp/gateway.log" || true) failed discovery reads;" \
  "node log: $(wc -l <"$tmp/node.log") lines"
