package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func startGateway(t testing.TB, nodes []*proc, extra ...string) *proc {
	t.Helper()
	var urls []string
	for _, p := range nodes {
		urls = append(urls, p.HTTP)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := &proc{t: t, name: "gateway", HTTP: "http://" + addr,
		args: append([]string{"gateway", "--http-addr", addr, "--nodes", strings.Join(urls, ","), "--log-level", "debug"}, extra...)}
	g.start()
	return g
}

// TestGatewayFailover sends 4,000 concurrent writes through the gateway
// while one of three nodes is killed with SIGKILL and restarted: at most 1%
// may fail or end unknown, and every acknowledged write must be on every
// node afterwards.
func TestGatewayFailover(t *testing.T) {
	nodes := startCluster(t, 3)
	gw := startGateway(t, nodes)
	waitFor(t, 10*time.Second, func() error {
		b, err := gw.get("/health")
		if err == nil && !strings.Contains(string(b), `"healthy_nodes":3`) {
			err = fmt.Errorf("gateway health: %s", b)
		}
		return err
	}, true)

	const writes, workers = 4000, 32
	l := newLedger()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= writes {
				l.record("k", 1, gw.add(context.Background(), "k", 1))
				done.Add(1)
				time.Sleep(time.Millisecond) // spread the writes over the kill and the restart
			}
		}()
	}
	victim := nodes[1]
	waitFor(t, 30*time.Second, func() error {
		if done.Load() < writes/4 {
			return fmt.Errorf("%d writes done", done.Load())
		}
		return nil
	}, true)
	victim.kill()
	waitFor(t, 30*time.Second, func() error {
		if done.Load() < writes/2 {
			return fmt.Errorf("%d writes done", done.Load())
		}
		return nil
	}, true)
	victim.start()
	wg.Wait()

	l.mu.Lock()
	acked, failed := l.acked["k"], l.inDoubt["k"]
	l.mu.Unlock()
	t.Logf("%d writes through the gateway: %d acknowledged, %d failed or unknown (%.2f%%)", writes, acked, failed, 100*float64(failed)/writes)
	if failed > writes/100 {
		t.Errorf("%d of %d writes failed or ended unknown, want at most 1%%", failed, writes)
	}
	// Every acknowledged write on every node (unknown ones may count).
	var final int64
	waitFor(t, 10*time.Second, func() error {
		v0, err := nodes[0].value("k")
		if err != nil {
			return err
		}
		for _, p := range nodes[1:] {
			if err := expectValue(p, "k", v0); err != nil {
				return err
			}
		}
		final = v0
		return nil
	}, true)
	l.check(t, map[string]int64{"k": final})
}
