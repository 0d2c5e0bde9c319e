#!/usr/bin/env bash
# monitor.sh — a live table of a local cluster started by run-cluster.sh:
# every node's value, health and member view, and whether they agree.
#
#   ./monitor.sh [INTERVAL] [KEY]     refresh every INTERVAL seconds (default 1), key "default"
#   ./monitor.sh --once [KEY]         print the table once (exit 0 only if converged)
#
# "converged" is shown only when every node answered and all values are
# equal; a node that does not answer makes the cluster "UNKNOWN", never
# converged.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${DCOUNTER_CLUSTER_DIR:-$here/.cluster}
bin=${DCOUNTER_BIN:-$here/bin/dcounter}
http_base=${DCOUNTER_HTTP_BASE_PORT:-8080}
gateway_port=${DCOUNTER_GATEWAY_PORT:-8000}
# As run-cluster.sh: https when the servers have DCOUNTER_TLS_CERT; the token
# and CA the client verbs read (DCOUNTER_TOKEN, DCOUNTER_CA) go to curl too.
scheme=http
if [ -n "${DCOUNTER_TLS_CERT:-}" ]; then scheme=https; fi
# A cluster started securely by run-cluster.sh: its read token will do.
if [ -z "${DCOUNTER_TOKEN:-}" ] && [ -z "${DCOUNTER_INSECURE_LOCAL:-}" ] && [ -f "$dir/secrets/auth" ]; then
  DCOUNTER_TOKEN=$(awk '$1 !~ /^#/ && $2 == "read" { print $1; exit }' "$dir/secrets/auth")
  export DCOUNTER_TOKEN
fi
curl_opts=(-s --max-time 1)
if [ -n "${DCOUNTER_TOKEN:-}" ]; then curl_opts+=(-H "Authorization: Bearer $DCOUNTER_TOKEN"); fi
if [ -n "${DCOUNTER_CA:-}" ]; then curl_opts+=(--cacert "$DCOUNTER_CA"); fi

usage() { sed -n 5,6p "$0" | sed 's/^# *//' >&2; exit 2; }
once= interval=1 key=default
case "${1:-}" in
  -h|--help) sed -n 5,6p "$0" | sed 's/^# *//'; exit 0 ;;
  --once)
    once=1; shift
    [ $# -le 1 ] || { echo "monitor.sh: --once takes at most a KEY" >&2; usage; }
    key=${1:-default} ;;
  -*) echo "monitor.sh: unknown option $1" >&2; usage ;;
  *)
    [ $# -le 2 ] || { echo "monitor.sh: too many arguments" >&2; usage; }
    interval=${1:-1} key=${2:-default} ;;
esac
[[ $interval =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "monitor.sh: INTERVAL must be a number of seconds" >&2; exit 2; }
[ -x "$bin" ] || { echo "monitor.sh: no binary at $bin (./run-cluster.sh start builds it)" >&2; exit 1; }

# field JSON NAME: the value of a top-level string or number field.
field() { sed -nE "s/.*\"$2\":\"?([^\",}]*)\"?.*/\1/p" <<<"$1" | head -1; }

table() {
  local ids
  ids=$(ls "$dir"/node*.pid 2>/dev/null | sed -E 's/.*node([0-9]+)\.pid/\1/' | sort -n)
  if [ -z "$ids" ]; then echo "no cluster in $dir (./run-cluster.sh start)"; return 2; fi
  printf '%s   key %q   %s\n\n' "$(date '+%H:%M:%S')" "$key" "$dir"
  printf '%-8s %-22s %-9s %-8s %12s\n' NODE URL HEALTH MEMBERS VALUE
  local values=() missing=0
  for i in $ids; do
    local url="$scheme://127.0.0.1:$((http_base + i - 1))" health value members
    health=$(curl "${curl_opts[@]}" "$url/health")
    if [ -z "$health" ]; then
      health=down members=- value=unreachable
    else
      members="$(field "$health" peers)+1"
      health=$(field "$health" status)
      value=$("$bin" get "$key" --addr "$url" --timeout 1s 2>/dev/null || echo unreachable)
    fi
    if [ "$value" = unreachable ]; then missing=$((missing + 1)); else values+=("$value"); fi
    printf '%-8s %-22s %-9s %-8s %12s\n' "node$i" "${url#*://}" "$health" "$members" "$value"
  done
  local gw="$scheme://127.0.0.1:$gateway_port" gh
  gh=$(curl "${curl_opts[@]}" "$gw/health")
  if [ -n "$gh" ]; then
    printf '%-8s %-22s %-9s %-8s %12s\n' gateway "${gw#*://}" "$(field "$gh" status)" "$(field "$gh" healthy_nodes)/$(field "$gh" nodes)" \
      "$("$bin" get "$key" --addr "$gw" --timeout 1s 2>/dev/null || echo unreachable)"
  fi
  echo
  local distinct=0
  [ "${#values[@]}" -gt 0 ] && distinct=$(printf '%s\n' "${values[@]}" | sort -u | wc -l)
  if [ "$missing" -gt 0 ]; then
    echo "cluster: UNKNOWN — $missing node(s) not answering; the others show $distinct distinct value(s)"
    return 1
  elif [ "$distinct" -eq 1 ]; then
    echo "cluster: converged — every node reports ${values[0]}"
    return 0
  fi
  echo "cluster: diverged — $distinct distinct values (replication in flight, or a partition)"
  return 1
}

if [ -n "$once" ]; then table; exit $?; fi
trap 'tput cnorm 2>/dev/null; echo; exit 0' INT TERM
tput civis 2>/dev/null
while :; do
  out=$(table 2>&1)
  clear 2>/dev/null || printf '\033[H\033[2J'
  printf '%s\n\n(refreshing every %ss; Ctrl-C to quit)\n' "$out" "$interval"
  sleep "$interval"
done
