#!/usr/bin/env bash
# run-cluster.sh — run and poke a local dcounter cluster on 127.0.0.1: a
# discovery server, N nodes and the API gateway.
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
resp_base=${DCOUNTER_RESP_BASE_PORT:-6379}
discovery_port=${DCOUNTER_DISCOVERY_PORT:-8500}
gateway_port=${DCOUNTER_GATEWAY_PORT:-8000}
cluster=${DCOUNTER_CLUSTER_NAME:-local}
# Every process reads its DCOUNTER_* flags from the environment, so the
# security settings pass straight through: DCOUNTER_AUTH_FILE (node, gateway),
# DCOUNTER_TLS_CERT/DCOUNTER_TLS_KEY (all servers; then URLs are https),
# DCOUNTER_TLS_CA (gateway, to verify nodes), DCOUNTER_TOKEN and DCOUNTER_CA
# (the client verbs this script runs).
scheme=http
if [ -n "${DCOUNTER_TLS_CERT:-}" ]; then scheme=https; fi

# Secure by default: `start` makes a cluster key and client tokens once, in
# $dir/secrets (dcounter secrets init), and every command of this script uses
# them unless the environment says otherwise: gossip, discovery and the
# gateway's member proofs use the key; nodes and gateway want a token; the
# client verbs below use the admin token. DCOUNTER_INSECURE_LOCAL=1 runs
# without them (everything still listens on 127.0.0.1 only).
secrets=$dir/secrets
role_token() { awk -v r="$1" '$1 !~ /^#/ && $2 == r { print $1; exit }' "$secrets/auth" 2>/dev/null; }
use_secrets() {
  [ -z "${DCOUNTER_INSECURE_LOCAL:-}" ] && [ -f "$secrets/auth" ] || return 0
  if [ -z "${DCOUNTER_CLUSTER_KEY:-}" ]; then export DCOUNTER_CLUSTER_KEY_FILE=${DCOUNTER_CLUSTER_KEY_FILE:-$secrets/cluster.key}; fi
  export DCOUNTER_AUTH_FILE=${DCOUNTER_AUTH_FILE:-$secrets/auth}
  if [ -z "${DCOUNTER_TOKEN:-}" ]; then DCOUNTER_TOKEN=$(role_token admin); export DCOUNTER_TOKEN; fi
}
use_secrets

# Processes outlive the terminal that started them.
detach=$(command -v setsid || command -v nohup || true)

die() { echo "run-cluster.sh: $*" >&2; exit 1; }

usage() {
  cat <<USAGE
Usage: ./run-cluster.sh <command> [args]

Commands:
  start [N]            build if needed; start a discovery server, N nodes (default 5) and
                       the gateway; wait until all are healthy; print the URLs
  stop                 stop everything this script started
  status               each process: PID, URL, health, and each node's value of "default"
  inc|increment [NODE] increment "default" on NODE (1..N), or through the gateway if omitted
  dec|decrement [NODE] decrement likewise
  cnt|counter [NODE]   "default" on NODE, or on every node if omitted
  p|peers [NODE]       the members NODE (default 1) sees; "gateway" for the gateway's view
  consistency          do all nodes report the same value of "default"?
  logs NODE|discovery|gateway   follow a log
  simulation [SECONDS] [INTERVAL] [OPS]
                       random increments and decrements of random amounts on random nodes
                       and the gateway (OPS every INTERVAL seconds for SECONDS; defaults
                       10 0.1 10), then a convergence report
  clean                stop, then delete all state (logs, data dirs, secrets)
  token [ROLE]         print the cluster's admin (or write, read) client token
  help                 this text

Environment (defaults): DCOUNTER_HTTP_BASE_PORT (8080), DCOUNTER_GOSSIP_BASE_PORT (7946) and
DCOUNTER_RESP_BASE_PORT (6379, the Redis protocol): node i uses base+i-1; DCOUNTER_DISCOVERY_PORT (8500); DCOUNTER_GATEWAY_PORT (8000);
DCOUNTER_CLUSTER_DIR (./.cluster); DCOUNTER_CLUSTER_NAME (local); DCOUNTER_BIN (./bin/dcounter).
Security: by default start makes a cluster key and client tokens in DCOUNTER_CLUSTER_DIR/secrets
and everything uses them (DCOUNTER_INSECURE_LOCAL=1: no key, no tokens). Passed to every
process if set: DCOUNTER_CLUSTER_KEY, DCOUNTER_AUTH_FILE, DCOUNTER_TLS_CERT + DCOUNTER_TLS_KEY
(URLs become https://), DCOUNTER_TLS_CA; the client verbs use DCOUNTER_TOKEN and DCOUNTER_CA.
USAGE
}

build() {
  if [ ! -x "$bin" ] || [ -n "$(find "$here/cmd" "$here/internal" -name '*.go' -newer "$bin" -print -quit 2>/dev/null)" ]; then
    command -v go >/dev/null || die "Go is needed to build $bin (or set DCOUNTER_BIN to a built binary)"
    echo "building $bin"
    (cd "$here" && mkdir -p "$(dirname "$bin")" && CGO_ENABLED=0 go build -o "$bin" ./cmd/dcounter)
  fi
}

node_url() { echo "$scheme://127.0.0.1:$((http_base + $1 - 1))"; }
gateway_url() { echo "$scheme://127.0.0.1:$gateway_port"; }
discovery_url() { echo "$scheme://127.0.0.1:$discovery_port"; }
nodes() { ls "$dir"/node*.pid 2>/dev/null | sed -E 's/.*node([0-9]+)\.pid/\1/' | sort -n; }

# alive NAME: true if the process recorded in NAME.pid runs and is dcounter.
alive() {
  local pid
  pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && grep -q dcounter "/proc/$pid/cmdline" 2>/dev/null
}

# launch NAME ARGS...: start a dcounter process in the background.
launch() {
  local name=$1
  shift
  $detach "$bin" "$@" >>"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# wait_healthy NAME URL: until URL/health answers 200, or fail with the log.
wait_healthy() {
  local deadline=$((SECONDS + 20))
  until "$bin" health "$2" 2>/dev/null; do
    alive "$1" || { tail -5 "$dir/$1.log" >&2; die "$1 exited during start (log: $dir/$1.log)"; }
    [ $SECONDS -lt $deadline ] || die "$1 not healthy after 20s (log: $dir/$1.log)"
    sleep 0.1
  done
}

start() {
  local n=${1:-5}
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "start: N must be a positive integer"
  for p in "$dir"/*.pid; do
    [ -e "$p" ] || continue
    alive "$(basename "$p" .pid)" && die "a cluster is already running (./run-cluster.sh stop first)"
  done
  rm -f "$dir"/*.pid
  build
  mkdir -p "$dir/data"
  if [ -z "${DCOUNTER_INSECURE_LOCAL:-}" ]; then
    "$bin" secrets init "$secrets" >/dev/null || die "cannot create $secrets"
    use_secrets
  fi
  launch discovery discovery --http-addr "127.0.0.1:$discovery_port" --data-file "$dir/data/discovery.json"
  wait_healthy discovery "$(discovery_url)"
  for i in $(seq 1 "$n"); do
    launch "node$i" node --name "node$i" --cluster "$cluster" \
      --gossip-addr "127.0.0.1:$((gossip_base + i - 1))" --http-addr "127.0.0.1:$((http_base + i - 1))" \
      --resp-addr "127.0.0.1:$((resp_base + i - 1))" --data-dir "$dir/data/node$i" --discovery "$(discovery_url)"
    wait_healthy "node$i" "$(node_url "$i")"
  done
  launch gateway gateway --http-addr "127.0.0.1:$gateway_port" --discovery "$(discovery_url)" --cluster "$cluster"
  wait_healthy gateway "$(gateway_url)"
  echo "started:"
  echo "  discovery  $(discovery_url)"
  for i in $(seq 1 "$n"); do echo "  node$i      $(node_url "$i")  redis://127.0.0.1:$((resp_base + i - 1))"; done
  echo "  gateway    $(gateway_url)"
  if [ -n "${DCOUNTER_TOKEN:-}" ]; then
    echo "secrets (cluster key, client tokens): $secrets"
    echo "try: export DCOUNTER_TOKEN=\$(./run-cluster.sh token write)"
    echo "     curl -H \"Authorization: Bearer \$DCOUNTER_TOKEN\" -X POST $(gateway_url)/increment; ./run-cluster.sh counter"
    echo "     redis-cli -p $resp_base -a \"\$DCOUNTER_TOKEN\" --no-auth-warning INCR hits"
  else
    echo "try: curl -X POST $(gateway_url)/increment; ./run-cluster.sh counter; redis-cli -p $resp_base INCR hits"
  fi
}

stop() {
  local any= names=()
  for p in "$dir"/*.pid; do
    [ -e "$p" ] || continue
    names+=("$(basename "$p" .pid)")
  done
  # Gateway first, discovery last: clients lose their entry point before the nodes go.
  local ordered=()
  for nm in gateway "${names[@]}" discovery; do
    [[ " ${ordered[*]:-} " == *" $nm "* ]] || { [ -e "$dir/$nm.pid" ] && ordered+=("$nm"); }
  done
  for nm in "${ordered[@]}"; do
    if alive "$nm"; then kill "$(cat "$dir/$nm.pid")" && any=1; fi
  done
  for nm in "${ordered[@]}"; do
    local deadline=$((SECONDS + 15))
    while alive "$nm"; do
      if [ $SECONDS -ge $deadline ]; then kill -9 "$(cat "$dir/$nm.pid")" 2>/dev/null || true; fi
      sleep 0.1
    done
    rm -f "$dir/$nm.pid"
  done
  [ -n "$any" ] && echo "stopped" || echo "nothing running"
}

node_arg() {
  local i=$1
  [[ $i =~ ^(node)?([0-9]+)$ ]] || die "NODE must be a number like 3 or node3, got '$i'"
  i=${BASH_REMATCH[2]}
  [ -f "$dir/node$i.pid" ] || die "node$i is not part of the running cluster"
  echo "$i"
}

value_at() { "$bin" get "${2:-default}" --addr "$1" --timeout 2s 2>/dev/null || echo "unreachable"; }

status() {
  [ -n "$(ls "$dir"/*.pid 2>/dev/null)" ] || { echo "no cluster (./run-cluster.sh start)"; return 0; }
  printf '%-10s %-8s %-24s %-8s %s\n' NAME PID URL HEALTH VALUE
  row() { # NAME URL SHOW_VALUE
    local pid health=down value=-
    pid=$(cat "$dir/$1.pid" 2>/dev/null || echo -)
    alive "$1" && "$bin" health "$2" 2>/dev/null && health=ok
    [ "$3" = yes ] && value=$(value_at "$2")
    printf '%-10s %-8s %-24s %-8s %s\n' "$1" "$pid" "$2" "$health" "$value"
  }
  [ -f "$dir/discovery.pid" ] && row discovery "$(discovery_url)" no
  for i in $(nodes); do row "node$i" "$(node_url "$i")" yes; done
  [ -f "$dir/gateway.pid" ] && row gateway "$(gateway_url)" yes
  return 0
}

# node_addr NODE: NODE's URL, or exit with node_arg's message. Call it as
# `addr=$(node_addr N) || exit 1`: a failure inside a command substitution
# that is itself an argument (node_url "$(node_arg N)") would go unnoticed
# and the request go to a port that is no node's.
node_addr() {
  local i
  i=$(node_arg "$1") || exit 1
  node_url "$i"
}

change() { # inc|dec [NODE]
  local addr
  if [ $# -ge 2 ] && [ -n "$2" ]; then addr=$(node_addr "$2") || exit 1; else addr=$(gateway_url); fi
  "$bin" "$1" default --addr "$addr"
}

counter() {
  if [ $# -ge 1 ] && [ -n "$1" ]; then
    local i; i=$(node_arg "$1") || exit 1
    echo "node$i: $(value_at "$(node_url "$i")")"
    return
  fi
  for i in $(nodes); do echo "node$i: $(value_at "$(node_url "$i")")"; done
}

# consistency [KEY]: exit 0 only if every node answered with the same value.
consistency() {
  local key=${1:-default} values=() missing=0
  for i in $(nodes); do
    local v; v=$(value_at "$(node_url "$i")" "$key")
    echo "node$i: $v"
    if [ "$v" = unreachable ]; then missing=$((missing + 1)); else values+=("$v"); fi
  done
  [ "${#values[@]}" -gt 0 ] || { echo "no node answered"; return 1; }
  local distinct; distinct=$(printf '%s\n' "${values[@]}" | sort -u | wc -l)
  if [ "$distinct" -eq 1 ] && [ "$missing" -eq 0 ]; then
    echo "consistent: every node reports ${values[0]}"
  elif [ "$distinct" -eq 1 ]; then
    echo "NOT confirmed: the ${#values[@]} reachable nodes agree on ${values[0]}, but $missing did not answer"; return 1
  else
    echo "NOT consistent: $distinct different values (gossip may still be in flight; try again)"; return 1
  fi
}

simulation() {
  local secs=${1:-10} interval=${2:-0.1} ops=${3:-10}
  [[ $secs =~ ^[0-9]+$ && $ops =~ ^[0-9]+$ && $interval =~ ^[0-9]*\.?[0-9]+$ ]] || die "simulation: SECONDS and OPS must be integers, INTERVAL a number"
  local ids; ids=($(nodes))
  [ "${#ids[@]}" -gt 0 ] || die "no cluster (./run-cluster.sh start)"
  local key="simulation-$(date +%s)" expected=0 acked=0 failed=0 end=$((SECONDS + secs))
  echo "simulation: $ops random operations every ${interval}s for ${secs}s on key $key"
  while [ $SECONDS -lt $end ]; do
    for _ in $(seq "$ops"); do
      local pick=$((RANDOM % (${#ids[@]} + 1))) addr verb amount=$((RANDOM % 10 + 1))
      if [ "$pick" -eq "${#ids[@]}" ]; then addr=$(gateway_url); else addr=$(node_url "${ids[$pick]}"); fi
      verb=inc; [ $((RANDOM % 2)) -eq 0 ] && verb=dec
      if "$bin" "$verb" "$key" --by "$amount" --addr "$addr" --timeout 2s >/dev/null 2>&1; then
        acked=$((acked + 1))
        if [ $verb = inc ]; then expected=$((expected + amount)); else expected=$((expected - amount)); fi
      else
        failed=$((failed + 1))
      fi
    done
    sleep "$interval"
  done
  echo "done: $acked acknowledged, $failed failed; expected value $expected"
  local deadline=$((SECONDS + 10)) ok
  while :; do
    ok=1
    for i in "${ids[@]}"; do [ "$(value_at "$(node_url "$i")" "$key")" = "$expected" ] || ok=; done
    [ -n "$ok" ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  for i in "${ids[@]}"; do
    local v; v=$(value_at "$(node_url "$i")" "$key")
    printf '  node%-3s %s%s\n' "$i" "$v" "$([ "$v" = "$expected" ] && echo "" || echo "   <- expected $expected")"
  done
  if [ -n "$ok" ]; then echo "converged: every node reports $expected"; else
    echo "NOT converged within 10s of the last write$([ "$failed" -gt 0 ] && echo " ($failed writes failed: they may or may not have counted)")"; return 1; fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  status) status ;;
  inc|increment) change inc "${1:-}" ;;
  dec|decrement) change dec "${1:-}" ;;
  cnt|counter) counter "${1:-}" ;;
  p|peers)
    if [ "${1:-}" = gateway ]; then addr=$(gateway_url); else addr=$(node_addr "${1:-1}") || exit 1; fi
    "$bin" nodes --addr "$addr" ;;
  consistency) consistency "$@" ;;
  logs)
    [ $# -ge 1 ] || die "logs: which one? NODE (1..N), discovery or gateway"
    case "$1" in
      discovery|gateway) f="$dir/$1.log" ;;
      *) i=$(node_arg "$1") || exit 1; f="$dir/node$i.log" ;;
    esac
    [ -f "$f" ] || die "no log at $f"
    exec tail -n 50 -f "$f" ;;
  simulation|sim) simulation "$@" ;;
  clean) stop; rm -rf "$dir"; echo "removed $dir" ;;
  token)
    [ -f "$secrets/auth" ] || die "no secrets in $secrets (./run-cluster.sh start makes them)"
    t=$(role_token "${1:-admin}")
    [ -n "$t" ] || die "no ${1:-admin} token in $secrets/auth (roles: admin, write, read)"
    echo "$t" ;;
  help|-h|--help) usage ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
