package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/schedtune"
)

// godebugOf returns the GODEBUG entry the kernel recorded when p's process
// image was last executed (/proc/PID/environ), or "" if it has none.
func godebugOf(t *testing.T, p *proc) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return firstGodebug(strings.Split(string(b), "\x00"))
}

// firstGodebug returns env's first GODEBUG entry (the one the runtime
// reads), or "".
func firstGodebug(env []string) string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GODEBUG=") {
			return kv
		}
	}
	return ""
}

// TestServersRunWithMonitorTuning: the node and the gateway, started as
// the real binary, re-execute themselves (same process) with the runtime
// setting of package schedtune when they have two or more Ps; a GODEBUG
// that already sets schedtrace is the operator's and stays as given, and a
// node with one P runs as started.
func TestServersRunWithMonitorTuning(t *testing.T) {
	// The servers inherit this process's environment and CPUs, so they
	// have as many Ps as it has.
	var want string
	if runtime.GOMAXPROCS(0) >= schedtune.MinProcs {
		env, _ := schedtune.Env(cleanEnv())
		want = firstGodebug(env)
	}
	n := startNode(t, "n1", "")
	gw := startGateway(t, []*proc{n})
	// The kernel names a process after the file it executes (15 bytes).
	name := filepath.Base(dcounterBin)
	name = name[:min(len(name), 15)]
	for _, p := range []*proc{n, gw} {
		if got := godebugOf(t, p); got != want {
			t.Errorf("%s runs with %q, want %q", p.name, got, want)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(comm)); got != name {
			t.Errorf("%s's process is named %q, want %q", p.name, got, name)
		}
	}

	// Restarted with the operator's own setting, then with one P: either
	// way it runs as started.
	for _, c := range []struct{ env, want string }{
		{"GODEBUG=schedtrace=0", "GODEBUG=schedtrace=0"},
		{"GOMAXPROCS=1", ""},
	} {
		n.stop(t)
		n.startWithEnv([]string{c.env})
		if got := godebugOf(t, n); got != c.want {
			t.Errorf("restarted with %s, the node runs with %q, want %q", c.env, got, c.want)
		}
		if err := n.add(t.Context(), "k", 1); err != nil {
			t.Fatal(err)
		}
	}
}
