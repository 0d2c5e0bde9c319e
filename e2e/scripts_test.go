package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/testutil"
)

// TestRunClusterScript drives run-cluster.sh and monitor.sh as a user would:
// start, three decrements and an increment, -2 on every node, consistency,
// status, a short simulation, stop — and nothing keeps running afterwards.
func TestRunClusterScript(t *testing.T) {
	base, sh, must := scriptRunner(t, os.Environ())

	must("run-cluster.sh", "start")
	for i := 0; i < 3; i++ {
		must("run-cluster.sh", "dec")
	}
	must("run-cluster.sh", "inc")
	waitFor(t, 5*time.Second, func() error {
		out, err := sh("run-cluster.sh", "consistency")
		if err != nil || !strings.Contains(out, "every node reports -2") {
			return fmt.Errorf("consistency: %v\n%s", err, out)
		}
		return nil
	}, true)
	// A node that does not exist is refused before anything is sent: not
	// to node 0's port (base-1), where the arithmetic on an empty number
	// would lead, nor anywhere else.
	var stray atomic.Int32
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base-1)); err == nil {
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				stray.Add(1)
				c.Close()
			}
		}()
	}
	for _, args := range [][]string{{"inc", "9"}, {"dec", "x"}, {"peers", "9"}, {"increment", "node0"}, {"counter", "7"}, {"logs", "9"}} {
		out, err := sh("run-cluster.sh", args...)
		if err == nil || !(strings.Contains(out, "is not part of the running cluster") || strings.Contains(out, "NODE must be a number")) {
			t.Errorf("run-cluster.sh %v: err %v, want a failure naming the node:\n%s", args, err, out)
		}
	}
	if n := stray.Load(); n != 0 {
		t.Errorf("%d connections to port base-1 from commands naming a missing node", n)
	}
	if out := must("run-cluster.sh", "counter"); strings.Count(out, ": -2") != 5 {
		t.Fatalf("counter:\n%s", out)
	}
	if out := must("run-cluster.sh", "status"); strings.Count(out, " ok ") != 7 {
		t.Fatalf("status (want discovery, 5 nodes and the gateway ok):\n%s", out)
	}
	if out := must("monitor.sh", "--once"); !strings.Contains(out, "cluster: converged") {
		t.Fatalf("monitor.sh --once:\n%s", out)
	}
	if out := must("monitor.sh", "--once", "nothing-here"); !strings.Contains(out, `key nothing-here`) || !strings.Contains(out, "every node reports 0") {
		t.Fatalf("monitor.sh --once KEY:\n%s", out)
	}
	for _, args := range [][]string{{"--once", "a", "b"}, {"1", "a", "b"}, {"--bogus"}} {
		if out, err := sh("monitor.sh", args...); err == nil || !strings.Contains(out, "Usage") && !strings.Contains(out, "./monitor.sh") {
			t.Errorf("monitor.sh %v: err %v, want a usage error:\n%s", args, err, out)
		}
	}
	if out := must("run-cluster.sh", "simulation", "2", "0.05", "3"); !strings.Contains(out, "converged: every node reports") {
		t.Fatalf("simulation:\n%s", out)
	}
	must("run-cluster.sh", "stop")
	if out, _ := exec.Command("pgrep", "-f", fmt.Sprintf("127.0.0.1:%d", base+10)).Output(); len(out) > 0 {
		t.Fatalf("processes still running after stop: %s", out)
	}
	if out, err := sh("monitor.sh", "--once"); err == nil {
		t.Fatalf("monitor.sh after stop exited 0:\n%s", out)
	}
}

// scriptRunner prepares to run the repository's shell scripts against a
// cluster of their own: a free block of 20 ports from base, a temporary
// cluster dir, the test binary, and env (plus the test's own variables). It
// returns the base port, a runner, a runner that fails the test on error, and
// stops the cluster when the test ends.
func scriptRunner(t *testing.T, env []string, extra ...string) (base int, sh func(string, ...string) (string, error), must func(string, ...string) string) {
	t.Helper()
	base = testutil.FreeBlock(t, 20)
	env = append(env,
		"DCOUNTER_CLUSTER_DIR="+t.TempDir(), "DCOUNTER_BIN="+dcounterBin,
		fmt.Sprintf("DCOUNTER_HTTP_BASE_PORT=%d", base), fmt.Sprintf("DCOUNTER_GOSSIP_BASE_PORT=%d", base+5),
		fmt.Sprintf("DCOUNTER_DISCOVERY_PORT=%d", base+10), fmt.Sprintf("DCOUNTER_GATEWAY_PORT=%d", base+11),
		fmt.Sprintf("DCOUNTER_RESP_BASE_PORT=%d", base+15))
	env = append(env, extra...)
	sh = func(script string, args ...string) (string, error) {
		cmd := exec.Command("../"+script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must = func(script string, args ...string) string {
		t.Helper()
		out, err := sh(script, args...)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", script, args, err, out)
		}
		return out
	}
	t.Cleanup(func() { sh("run-cluster.sh", "stop") })
	return base, sh, must
}
