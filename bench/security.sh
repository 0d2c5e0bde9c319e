#!/usr/bin/env bash
# bench/security.sh — what client authentication and TLS cost: POST
# /increment throughput of one dcounter node with neither, with an auth file
# (bearer token on every request), with TLS, and with both, as ratios of the
# plain node, in alternating rounds of one run.
#
#   bench/security.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 10s 64 3)
#
# Node flags come from DCOUNTER_BENCH_NODE_FLAGS (default: --fsync none, so
# the disk does not hide the CPU cost being measured; pass "" for the
# defaults). wrk keeps its connections open, so the TLS figure is the cost of
# encrypting requests, not of handshakes.
#
# Besides requests/s, each round records the node's CPU time (user + system,
# from /proc) per request served. On a machine shared with other work,
# requests/s swing with the neighbours' load; CPU time per request swings far
# less, and its inverse is the throughput one core could reach.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s} conns=${2:-64} rounds=${3:-3}
node_flags=${DCOUNTER_BENCH_NODE_FLAGS---fsync none}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v openssl >/dev/null || { echo "bench/security.sh needs openssl to make a certificate" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/dcounter" ./cmd/dcounter

# A self-signed P-256 certificate for 127.0.0.1, and one write token.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
token=$("$tmp/dcounter" keygen)
printf '%s write bench\n' "$token" >"$tmp/tokens"
chmod 600 "$tmp/tokens"
printf 'wrk.method = "POST"\n' >"$tmp/post.lua"
printf 'wrk.method = "POST"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$tmp/post-auth.lua"

# Every node on CPU 0 and wrk on CPU 1 (when there are two or more); the
# idle nodes cost nothing measurable while another is measured.
pin_srv=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_srv=(taskset -c 0) pin_wrk=(taskset -c 1); fi

configs=(off auth tls both)
declare -A port=([off]=19180 [auth]=19181 [tls]=19182 [both]=19183)
declare -A flags=([off]="" [auth]="--auth-file $tmp/tokens" [tls]="--tls-cert $tmp/tls.crt --tls-key $tmp/tls.key"
  [both]="--auth-file $tmp/tokens --tls-cert $tmp/tls.crt --tls-key $tmp/tls.key")
url() { case $1 in tls|both) echo "https://127.0.0.1:${port[$1]}" ;; *) echo "http://127.0.0.1:${port[$1]}" ;; esac; }
script() { case $1 in auth|both) echo "$tmp/post-auth.lua" ;; *) echo "$tmp/post.lua" ;; esac; }

wait_up() { for _ in $(seq 100); do curl -fs --cacert "$tmp/tls.crt" "$1/health" >/dev/null && return; sleep 0.05; done; echo "node at $1 did not start" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# round CONFIG: appends "req/s cpu-µs-per-request" to $tmp/CONFIG.
round() {
  local before after out
  before=$(cpu_ticks "${pid[$1]}")
  out=$("${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$dur" -s "$(script "$1")" "$(url "$1")/increment")
  after=$(cpu_ticks "${pid[$1]}")
  echo "$out" >>"$tmp/wrk.log"
  awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
    /requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%s %.2f\n", r, (a - b) / hz * 1e6 / n}' <<<"$out" >>"$tmp/$1"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

i=0
declare -A pid
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  "${pin_srv[@]}" "$tmp/dcounter" node --name "$c" --gossip-addr "127.0.0.1:$((19946 + i))" --http-addr "127.0.0.1:${port[$c]}" \
    --data-dir "$tmp/data-$c" --log-level warn $node_flags ${flags[$c]} 2>>"$tmp/node-$c.log" &
  pid[$c]=$!
  i=$((i + 1))
done
for c in "${configs[@]}"; do wait_up "$(url "$c")"; : >"$tmp/$c"; done
# Each configuration really enforces what it claims.
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$(url auth)/increment")" = 401 ] || { echo "auth node accepted a write without a token" >&2; exit 1; }

for _ in $(seq "$rounds"); do
  for c in "${configs[@]}"; do round "$c"; done
done
errors=$(grep -c "Non-2xx" "$tmp/wrk.log" || true)

echo "POST /increment, wrk -t1 -c$conns -d$dur x $rounds alternating rounds, nodes on CPU 0, wrk on CPU 1, node flags: ${node_flags:-(defaults)}"
best() { sort -g | head -1; }
off=$(cut -d' ' -f1 <"$tmp/off" | median) off_cpu=$(cut -d' ' -f2 <"$tmp/off" | median) off_best=$(cut -d' ' -f2 <"$tmp/off" | best)
printf '%-5s %10s %7s %15s %7s %13s %7s   %s\n' config "req/s" ratio "CPU µs/req med" ratio "CPU µs/req min" ratio "rounds (req/s)"
for c in "${configs[@]}"; do
  m=$(cut -d' ' -f1 <"$tmp/$c" | median) cpu=$(cut -d' ' -f2 <"$tmp/$c" | median) cpub=$(cut -d' ' -f2 <"$tmp/$c" | best)
  printf '%-5s %10.0f %7.3f %15.2f %7.3f %13.2f %7.3f   %s\n' "$c" "$m" "$(awk -v a="$m" -v b="$off" 'BEGIN { print a / b }')" \
    "$cpu" "$(awk -v a="$cpu" -v b="$off_cpu" 'BEGIN { print b / a }')" \
    "$cpub" "$(awk -v a="$cpub" -v b="$off_best" 'BEGIN { print b / a }')" "$(cut -d' ' -f1 <"$tmp/$c" | tr '\n' ' ')"
done
echo "ratios against off: req/s (median), and off's CPU per request / this one's (median, and the least of the rounds,"
echo "which other load on the machine can only raise): the throughput ratio on one busy core"
echo "targets: auth >= 0.95, tls >= 0.70; wrk runs with non-2xx answers: $errors"
