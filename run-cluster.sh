#!/usr/bin/env bash
# run-cluster.sh — run and poke a local dcounter cluster on 127.0.0.1.
#
# State (PIDs, logs, data dirs) lives in $DCOUNTER_CLUSTER_DIR (default
# ./.cluster). Only processes this script started, recorded by PID, are ever
# stopped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${DCOUNTER_CLUSTER_DIR:-$here/.cluster}
bin=${DCOUNTER_BIN:-$here/bin/dcounter}
http_base=${DCOUNTER_HTTP_BASE_PORT:-8080}
gossip_base=${DCOUNTER_GOSSIP_BASE_PORT:-7946}
cluster=${DCOUNTER_CLUSTER_NAME:-local}

# Nodes outlive the terminal that started them.
detach=$(command -v setsid || command -v nohup || true)

die() { echo "run-cluster.sh: $*" >&2; exit 1; }

usage() {
  cat <<USAGE
Usage: ./run-cluster.sh <command> [args]

Commands:
  start [N]         build if needed, start N nodes (default 5), wait until healthy
  stop              stop the nodes this script started
  status            show each node's PID, health and value of "default"
  inc|increment [NODE] [KEY]   increment KEY (default "default") on NODE (default 1)
  dec|decrement [NODE] [KEY]   decrement
  cnt|counter [NODE] [KEY]     read KEY on NODE, or on every node if NODE is omitted
  p|peers [NODE]    the members NODE (default 1) sees
  consistency [KEY] do all running nodes report the same value?
  logs NODE         follow a node's log
  clean             stop, then delete all state (logs, data dirs)
  help              this text

Environment: DCOUNTER_HTTP_BASE_PORT (8080), DCOUNTER_GOSSIP_BASE_PORT (7946),
DCOUNTER_CLUSTER_DIR (./.cluster), DCOUNTER_CLUSTER_NAME (local).
Node i listens on HTTP port base+i-1 and gossip port base+i-1.
USAGE
}

build() {
  if [ ! -x "$bin" ] || [ -n "$(find "$here/cmd" "$here/internal" -name '*.go' -newer "$bin" -print -quit 2>/dev/null)" ]; then
    echo "building $bin"
    (cd "$here" && CGO_ENABLED=0 go build -o "$bin" ./cmd/dcounter)
  fi
}

http_port() { echo $((http_base + $1 - 1)); }
url() { echo "http://127.0.0.1:$(http_port "$1")"; }
nodes() { ls "$dir"/node*.pid 2>/dev/null | sed -E 's/.*node([0-9]+)\.pid/\1/' | sort -n; }

# alive PIDFILE: true if the recorded process is running and is dcounter.
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && grep -q dcounter "/proc/$pid/cmdline" 2>/dev/null
}

wait_healthy() {
  local i=$1 deadline=$((SECONDS + 15))
  until "$bin" health "$(url "$i")" 2>/dev/null; do
    alive "$dir/node$i.pid" || { tail -5 "$dir/node$i.log" >&2; die "node$i exited during start (log: $dir/node$i.log)"; }
    [ $SECONDS -lt $deadline ] || die "node$i not healthy after 15s (log: $dir/node$i.log)"
    sleep 0.1
  done
}

start() {
  local n=${1:-5}
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "start: N must be a positive integer"
  for i in $(nodes); do alive "$dir/node$i.pid" && die "a cluster is already running (./run-cluster.sh stop first)"; done
  build
  mkdir -p "$dir"
  local first="127.0.0.1:$gossip_base"
  for i in $(seq 1 "$n"); do
    local join=()
    [ "$i" -gt 1 ] && join=(--join "$first")
    $detach "$bin" node --name "node$i" --cluster "$cluster" \
      --gossip-addr "127.0.0.1:$((gossip_base + i - 1))" --http-addr "127.0.0.1:$(http_port "$i")" \
      --data-dir "$dir/data/node$i" "${join[@]}" >>"$dir/node$i.log" 2>&1 &
    echo $! >"$dir/node$i.pid"
    wait_healthy "$i"
  done
  echo "started $n nodes:"
  for i in $(seq 1 "$n"); do echo "  node$i  $(url "$i")"; done
  echo "try: curl -X POST $(url 1)/increment; ./run-cluster.sh counter"
}

stop() {
  local any=
  for i in $(nodes); do
    if alive "$dir/node$i.pid"; then
      kill "$(cat "$dir/node$i.pid")" && any=1
    fi
  done
  for i in $(nodes); do
    local deadline=$((SECONDS + 10))
    while alive "$dir/node$i.pid"; do
      if [ $SECONDS -ge $deadline ]; then kill -9 "$(cat "$dir/node$i.pid")" 2>/dev/null || true; fi
      sleep 0.1
    done
    rm -f "$dir/node$i.pid"
  done
  [ -n "$any" ] && echo "stopped" || echo "nothing running"
}

node_arg() {
  local i=${1:-1}
  [[ $i =~ ^(node)?([0-9]+)$ ]] || die "NODE must be a number like 3 or node3, got '$i'"
  i=${BASH_REMATCH[2]}
  [ -f "$dir/node$i.pid" ] || die "node$i is not part of the running cluster"
  echo "$i"
}

value_of() { "$bin" get "${2:-default}" --addr "$(url "$1")" --timeout 2s 2>/dev/null || echo "unreachable"; }

status() {
  [ -n "$(nodes)" ] || { echo "no cluster (./run-cluster.sh start)"; return 0; }
  printf '%-7s %-8s %-24s %-10s %s\n' NODE PID URL HEALTH VALUE
  for i in $(nodes); do
    local pid health=down
    pid=$(cat "$dir/node$i.pid")
    alive "$dir/node$i.pid" && "$bin" health "$(url "$i")" 2>/dev/null && health=ok
    printf '%-7s %-8s %-24s %-10s %s\n' "node$i" "$pid" "$(url "$i")" "$health" "$(value_of "$i")"
  done
}

counter() {
  if [ $# -ge 1 ] && [ -n "$1" ]; then
    local i; i=$(node_arg "$1")
    echo "node$i: $(value_of "$i" "${2:-default}")"
    return
  fi
  for i in $(nodes); do echo "node$i: $(value_of "$i")"; done
}

consistency() {
  local key=${1:-default} values=() missing=0
  for i in $(nodes); do
    local v; v=$(value_of "$i" "$key")
    echo "node$i: $v"
    if [ "$v" = unreachable ]; then missing=$((missing + 1)); else values+=("$v"); fi
  done
  local distinct; distinct=$(printf '%s\n' "${values[@]}" | sort -u | grep -c . || true)
  if [ "${#values[@]}" -eq 0 ]; then echo "no node answered"; return 1; fi
  if [ "$distinct" -eq 1 ] && [ "$missing" -eq 0 ]; then
    echo "consistent: every node reports ${values[0]}"
  elif [ "$distinct" -eq 1 ]; then
    echo "the $((${#values[@]})) reachable nodes agree on ${values[0]}, but $missing node(s) did not answer"; return 1
  else
    echo "NOT consistent yet: $distinct different values (gossip may still be in flight; try again)"; return 1
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  status) status ;;
  inc|increment) i=$(node_arg "${1:-1}"); "$bin" inc "${2:-default}" --addr "$(url "$i")" ;;
  dec|decrement) i=$(node_arg "${1:-1}"); "$bin" dec "${2:-default}" --addr "$(url "$i")" ;;
  cnt|counter) counter "$@" ;;
  p|peers) i=$(node_arg "${1:-1}"); "$bin" nodes --addr "$(url "$i")" ;;
  consistency) consistency "$@" ;;
  logs) [ $# -ge 1 ] || die "logs: which node?"; i=$(node_arg "$1"); exec tail -n 50 -f "$dir/node$i.log" ;;
  clean) stop; rm -rf "$dir"; echo "removed $dir" ;;
  help|-h|--help) usage ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
