package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

func startDiscovery(t testing.TB) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &proc{t: t, name: "discovery", HTTP: "http://" + addr,
		args: []string{"discovery", "--http-addr", addr, "--ttl", "3s", "--log-level", "debug"}}
	p.start()
	return p
}

// statusOf returns how observer sees the member named name ("" if absent).
func statusOf(observer *proc, name string) (string, error) {
	b, err := observer.get("/nodes")
	if err != nil {
		return "", err
	}
	var ms []struct{ Name, Status string }
	if err := json.Unmarshal(b, &ms); err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Name == name {
			return m.Status, nil
		}
	}
	return "", nil
}

// allSee waits until every observer reports name with status, and returns
// how long that took.
func allSee(t *testing.T, observers []*proc, name, status string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	err := waitFor(t, within, func() error { return everyoneSees(observers, name, status) }, false)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("not within %v: %v", within, err)
	}
	return took
}

func peerCount(d *proc) (int, error) {
	b, err := d.get("/peers")
	if err != nil {
		return 0, err
	}
	var ps []map[string]any
	if err := json.Unmarshal(b, &ps); err != nil {
		return 0, err
	}
	return len(ps), nil
}

// TestDiscoveryAndFailureDetection: five nodes find each other through a
// discovery server alone; a node killed with SIGKILL is dead on every
// other node within 5 s and alive again within 3 s of its restart; a
// restarted discovery server lists all five within 3 s; and with the
// discovery server down, writes on any node still reach every node.
func TestDiscoveryAndFailureDetection(t *testing.T) {
	d := startDiscovery(t)
	var nodes []*proc
	for i := 1; i <= 5; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), "", "--discovery", d.HTTP))
	}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 5) }, true)
	}
	for _, p := range nodes {
		allSee(t, nodes, p.name, "alive", 5*time.Second)
	}

	victim, others := nodes[4], nodes[:4]
	victim.kill()
	took := allSee(t, others, victim.name, "dead", 5*time.Second)
	t.Logf("SIGKILLed node dead on all 4 others after %v", took.Round(time.Millisecond))

	victim.start()
	took = allSee(t, others, victim.name, "alive", 3*time.Second)
	t.Logf("restarted node alive on all 4 others after %v", took.Round(time.Millisecond))

	d.kill()
	d.start()
	start := time.Now()
	waitFor(t, 3*time.Second, func() error {
		n, err := peerCount(d)
		if err == nil && n != 5 {
			err = fmt.Errorf("discovery lists %d nodes", n)
		}
		return err
	}, true)
	t.Logf("restarted discovery server lists all 5 after %v", time.Since(start).Round(time.Millisecond))

	d.kill()
	for i, p := range nodes {
		if err := p.add(context.Background(), "while-discovery-down", int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "while-discovery-down", 15) }, true)
	}
}

// TestNodeUnreachableDiscoveryFailsClearly: a node whose discovery server
// does not answer exits with a clear error, unless --bootstrap.
func TestNodeUnreachableDiscoveryFailsClearly(t *testing.T) {
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	_, errOut, code := runCLI(t, nil, "node", "--in-memory", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--discovery", dead)
	if code == 0 || !strings.Contains(errOut, "cannot reach the discovery server") || !strings.Contains(errOut, "--bootstrap") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	startNode(t, "boot", "", "--discovery", dead, "--bootstrap")
}

// TestFrozenNodeCatchesUp freezes a node with SIGSTOP for several seconds
// while the others take writes; within 3 s of SIGCONT it reports the exact
// totals, and nobody stays dead.
func TestFrozenNodeCatchesUp(t *testing.T) {
	nodes := startCluster(t, 4)
	frozen, others := nodes[3], nodes[:3]
	ctx := context.Background()
	if err := frozen.add(ctx, "k", 100); err != nil {
		t.Fatal(err)
	}
	frozen.cmd.Process.Signal(syscall.SIGSTOP)
	want := int64(100)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := others[i%3].add(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
		want++
		time.Sleep(5 * time.Millisecond) // spread the writes over the freeze
	}
	frozen.cmd.Process.Signal(syscall.SIGCONT)
	resumed := time.Now()
	waitFor(t, 3*time.Second, func() error {
		for _, p := range nodes {
			if err := expectValue(p, "k", want); err != nil {
				return err
			}
		}
		return nil
	}, true)
	t.Logf("%d writes during a 5 s freeze; all nodes exact %v after SIGCONT", want-100, time.Since(resumed).Round(time.Millisecond))
	allSee(t, others, frozen.name, "alive", 3*time.Second)
	for _, o := range others {
		allSee(t, []*proc{frozen}, o.name, "alive", 3*time.Second)
	}
}

// TestGracefulStopAnnouncesLeft: a node stopped with SIGTERM says goodbye;
// the others show it as "left" at once (not suspect, then dead, seconds
// later), and it is alive again when it comes back.
func TestGracefulStopAnnouncesLeft(t *testing.T) {
	nodes := startCluster(t, 3)
	leaver, others := nodes[2], nodes[:2]
	leaver.stop(t)
	took := allSee(t, others, leaver.name, "left", time.Second)
	t.Logf("left on both others %v after SIGTERM returned", took.Round(time.Millisecond))
	leaver.start()
	allSee(t, others, leaver.name, "alive", 3*time.Second)
}
