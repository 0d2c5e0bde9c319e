#!/usr/bin/env bash
# CPU cost of starting the command line: the binary built from BASE against
# the one built from the working tree, in alternating rounds.
#
#   bench/cli.sh [RUNS] [ROUNDS] [BASE]
#
# Prints, per command line, the median CPU time (user + system, from
# getrusage of the children, so a loaded machine does not inflate it much)
# per invocation of each binary, their ratio, and the binaries' sizes.
set -euo pipefail
RUNS=${1:-200}
ROUNDS=${2:-3}
BASE=${3:-5c1945d} # the last commit parsing flags with the standard library
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/src"
git -C "$root" archive "$BASE" | tar -x -C "$dir/src"
(cd "$dir/src" && go build -o "$dir/base" ./cmd/dcounter)
(cd "$root" && go build -o "$dir/head" ./cmd/dcounter)

# cpu BIN ARGS...: microseconds of CPU per run of BIN ARGS.
cpu() {
	local TIMEFORMAT='%U %S'
	{ time (for ((i = 0; i < RUNS; i++)); do "$@" >/dev/null 2>&1 || true; done); } 2>&1 |
		awk -v n="$RUNS" '{ printf "%.0f\n", ($1 + $2) / n * 1e6 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "load: $(uptime)"
printf '%-28s %10s %10s %7s\n' "command" "base µs" "head µs" "ratio"
for args in "version" "inc --help" "get --addr http://127.0.0.1:1 --timeout 1ms" "completion bash"; do
	: >"$dir/b"
	: >"$dir/h"
	for ((r = 0; r < ROUNDS; r++)); do
		# shellcheck disable=SC2086 # args are words
		cpu "$dir/base" $args >>"$dir/b"
		# shellcheck disable=SC2086
		cpu "$dir/head" $args >>"$dir/h"
	done
	b=$(median <"$dir/b")
	h=$(median <"$dir/h")
	printf '%-28s %10s %10s %7.2f\n' "$args" "$b" "$h" "$(echo "$h / $b" | bc -l)"
done
printf 'binary size: base %s bytes, head %s bytes\n' "$(stat -c %s "$dir/base")" "$(stat -c %s "$dir/head")"
