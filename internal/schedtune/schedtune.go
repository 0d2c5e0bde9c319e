// Package schedtune keeps the Go runtime's monitor thread from costing a
// lightly loaded server a burst of wake-ups for every request.
//
// The runtime's monitor thread (sysmon) sleeps deeply while every P is
// idle. The first system call after such a pause wakes it, and a wake-up
// by a system call sets it polling every 20µs for the next millisecond
// before it backs off again. A node that serves a few hundred requests a
// second, each one a read, a write and an fsync separated by idle gaps,
// therefore pays about fifty timer wake-ups per request: on 20 nodes
// sharing 2 cores that was two thirds of all thread wake-ups.
//
// With schedtrace set, the monitor never sleeps deeply: it polls every
// 20µs only after it took a P back from a blocked system call (when that
// P's work was needed), and otherwise backs off to once every 10ms. Exec
// sets schedtrace to its largest value, so that the trace it exists for
// prints once per 24.8 days of the host's uptime: a line on stderr, the
// first at start on a host up longer than that.
//
// With a single P it is the other way round. A goroutine blocked in a
// system call (the log writer in fdatasync) holds the only P until the
// monitor takes it back, and a monitor that is not already polling fast
// takes up to 10ms to do so, while every other goroutine waits: a node
// pinned to one core served durable writes ten times slower. Exec
// therefore leaves a process with one P (GOMAXPROCS=1, one CPU in its
// affinity mask or its container's quota) as it is.
//
// GODEBUG is read before main runs, so Exec re-executes the binary with
// it: the same process ID, arguments and inherited descriptors.
package schedtune

import (
	"slices"
	"strings"
)

// Setting is what Exec adds to GODEBUG: the largest interval, in
// milliseconds, the runtime accepts.
const Setting = "schedtrace=2147483647"

// MinProcs is the fewest Ps (GOMAXPROCS) a process needs for Exec to
// apply Setting.
const MinProcs = 2

// Env returns env with Setting added to its GODEBUG, and whether that
// changed anything. A GODEBUG that already sets schedtrace (to any value,
// 0 included) is left as it is: the operator's choice stands.
func Env(env []string) ([]string, bool) {
	const name = "GODEBUG="
	// The runtime reads the first GODEBUG; so does this.
	i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name) })
	if i < 0 {
		return append(slices.Clone(env), name+Setting), true
	}
	v := env[i][len(name):]
	for s := range strings.SplitSeq(v, ",") {
		// As the runtime parses it: no spaces trimmed.
		if k, _, _ := strings.Cut(s, "="); k == "schedtrace" {
			return env, false
		}
	}
	out := slices.Clone(env)
	out[i] = name + Setting
	if v != "" {
		out[i] = name + v + "," + Setting
	}
	return out, true
}
