# bench/lib.sh — what the benchmark scripts share; source it from the repo
# root after `set -euo pipefail`. It makes a temp dir ($tmp, removed with
# every background job on exit), builds the binary into $tmp/dcounter, and
# defines the CPU pins (pin_srv: CPU 0 for servers, pin_wrk: CPU 1 for the
# load generator, when there are two CPUs and taskset), wait_up URL,
# median (of numbers on stdin) and base_port.
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/dcounter" ./cmd/dcounter
pin_srv=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_srv=(taskset -c 0) pin_wrk=(taskset -c 1); fi
wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.05; done; echo "no server at $1" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# base_port: the first of ten ports for this run's servers, from this
# shell's PID so that runs by different users of one machine do not collide,
# and below Linux's ephemeral ports (32768 up), where a client connection
# could be holding it.
base_port=$((20000 + ($$ % 1200) * 10))
