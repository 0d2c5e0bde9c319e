#!/usr/bin/env bash
# bench/ttl.sh — what expiry costs writes: POST /counters/<key>/increment
# over 1,000 keys with {"amount":1} (plain) against the same with
# {"amount":1,"ttl_seconds":60} (ttl: the default ttl_mode if_none, which sets
# a deadline only on a key without one) and with
# {"amount":1,"ttl_seconds":60,"ttl_mode":"always"} (always: every write
# pushes the deadline back, so every write also logs the key's new expiry),
# on one node with --fsync always and one with --fsync none, in alternating
# rounds of one run. Each variant has its own 1,000 keys (p<n>, t<n>, a<n>).
#
#   bench/ttl.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 10s 64 3)
#
# Besides requests/s, each round records the node's CPU time (user + system,
# from /proc) per request, which the neighbours' load on a shared machine
# moves far less.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s} conns=${2:-64} rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
. bench/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

variants=(plain ttl always)
declare -A prefix=([plain]=p [ttl]=t [always]=a)
declare -A body=([plain]='{"amount":1}' [ttl]='{"amount":1,"ttl_seconds":60}'
  [always]='{"amount":1,"ttl_seconds":60,"ttl_mode":"always"}')
for v in "${variants[@]}"; do
  cat >"$tmp/$v.lua" <<EOF
local n = 0
local headers = { ["Content-Type"] = "application/json" }
function request()
  n = n % 1000 + 1
  return wrk.format("POST", "/counters/${prefix[$v]}" .. n .. "/increment", headers, '${body[$v]}')
end
EOF
done

policies=(always none)
declare -A port=([always]=19581 [none]=19582) pid
for p in "${policies[@]}"; do
  "${pin_srv[@]}" "$tmp/dcounter" node --fsync "$p" --gossip-addr "127.0.0.1:$((port[$p] + 1000))" --http-addr "127.0.0.1:${port[$p]}" \
    --data-dir "$tmp/data-$p" --log-level warn 2>>"$tmp/node-$p.log" &
  pid[$p]=$!
done
for p in "${policies[@]}"; do wait_up "http://127.0.0.1:${port[$p]}/health"; done

# round POLICY VARIANT: appends "req/s cpu-µs-per-request" to $tmp/POLICY-VARIANT.
round() {
  local before after out
  before=$(cpu_ticks "${pid[$1]}")
  out=$("${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$tmp/$2.lua" "http://127.0.0.1:${port[$1]}/")
  after=$(cpu_ticks "${pid[$1]}")
  echo "$out" >>"$tmp/wrk.log"
  awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
    /requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%s %.2f\n", r, (a - b) / hz * 1e6 / n}' <<<"$out" >>"$tmp/$1-$2"
}
for p in "${policies[@]}"; do for v in "${variants[@]}"; do : >"$tmp/$p-$v"; done; done
for _ in $(seq "$rounds"); do
  for p in "${policies[@]}"; do for v in "${variants[@]}"; do round "$p" "$v"; done; done
done
errors=$(grep -c "Non-2xx" "$tmp/wrk.log" || true)

echo "POST /counters/<key>/increment over 1,000 keys, wrk -t1 -c$conns -d$dur x $rounds alternating rounds, node on CPU 0, wrk on CPU 1"
printf '%-8s %-7s %10s %7s %12s %7s   %s\n' fsync variant "req/s" ratio "CPU µs/req" ratio "rounds (req/s)"
for p in "${policies[@]}"; do
  base=$(cut -d' ' -f1 <"$tmp/$p-plain" | median) base_cpu=$(cut -d' ' -f2 <"$tmp/$p-plain" | median)
  for v in "${variants[@]}"; do
    m=$(cut -d' ' -f1 <"$tmp/$p-$v" | median) cpu=$(cut -d' ' -f2 <"$tmp/$p-$v" | median)
    printf '%-8s %-7s %10.0f %7.3f %12.2f %7.3f   %s\n' "$p" "$v" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN { print a / b }')" \
      "$cpu" "$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { print b / a }')" "$(cut -d' ' -f1 <"$tmp/$p-$v" | tr '\n' ' ')"
  done
done
echo "ratios against plain on the same node: req/s (median), and plain's CPU per request / this one's (median)"
echo "target: ttl >= 0.90; wrk runs with non-2xx answers: $errors"
