package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// keyedAdd posts an increment with an Idempotency-Key and returns the
// status, the value answered and whether it was a replay.
func keyedAdd(t *testing.T, base, key, idem string, amount int) (int, int64, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/counters/"+key+"/increment", strings.NewReader(fmt.Sprintf(`{"amount":%d}`, amount)))
	req.Header.Set("Idempotency-Key", idem)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Value int64 }
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Value, resp.Header.Get("Idempotent-Replayed") == "true"
}

// TestIdempotencyKey: three identical writes with one Idempotency-Key add
// the amount once, through the gateway and on every node; reusing the key
// for another write is refused; and a retry after the node was killed with
// SIGKILL and restarted is still answered, not applied again.
func TestIdempotencyKey(t *testing.T) {
	nodes := startCluster(t, 3)
	gw := startGateway(t, nodes)
	var values []int64
	for i := 0; i < 3; i++ {
		status, v, replayed := keyedAdd(t, gw.HTTP, "orders", "order-42", 5)
		if status != 200 || replayed != (i > 0) {
			t.Fatalf("attempt %d: status %d replayed %v", i, status, replayed)
		}
		values = append(values, v)
	}
	if values[0] != 5 || values[1] != 5 || values[2] != 5 {
		t.Fatalf("answers %v, want the first answer (5) three times", values)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "orders", 5) }, true)
	}
	if status, _, _ := keyedAdd(t, gw.HTTP, "orders", "order-42", 7); status != http.StatusUnprocessableEntity {
		t.Fatalf("key reused for another amount: status %d, want 422", status)
	}

	// Straight to a node, across a crash.
	n := nodes[0]
	if status, _, _ := keyedAdd(t, n.HTTP, "orders", "order-43", 2); status != 200 {
		t.Fatal(status)
	}
	n.kill()
	n.start()
	status, v, replayed := keyedAdd(t, n.HTTP, "orders", "order-43", 2)
	if status != 200 || !replayed || v != 7 {
		t.Fatalf("retry after a restart: status %d value %d replayed %v, want 200 7 true", status, v, replayed)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "orders", 7) }, true)
	}
}
