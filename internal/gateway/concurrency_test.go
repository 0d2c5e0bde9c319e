package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// Many clients proxy through the gateway while health-check rounds run and
// nodes flip between healthy, failing their checks, and refusing writes
// with 503. Every answer must be 200 or 503, and every write answered 200
// must have been applied exactly once: nothing is lost or doubled by
// failover.
func TestConcurrentProxyingWhileNodesFlip(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c", "d")
	tg := newTestGateway(t, Config{}, ns...)

	const clients, perClient = 16, 60
	var writesOK, answers503 atomic.Int64
	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Add(1)
	go func() {
		defer flips.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := ns[rng.IntN(len(ns))]
			switch rng.IntN(6) {
			case 0:
				n.health.Store(healthFail)
			case 1:
				n.setBehavior(answerStatus(http.StatusServiceUnavailable))
			case 2, 3:
				n.health.Store(healthOK)
			default:
				n.setBehavior(nil)
			}
			tg.clk.Advance(tg.cfg.HealthInterval) // a round starts unless one is running
			tg.Nodes()
			tg.Health()
			tg.metric("dcounter_gateway_nodes", `health="healthy"`)
		}
	}()

	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				key := fmt.Sprintf("c%d-%d", c, i)
				var resp response
				var err error
				write := true
				switch i % 3 {
				case 0:
					resp, err = tg.doCtx(t.Context(), "POST", "/counters/"+key+"/increment", nil)
				case 1:
					resp, err = tg.doCtx(t.Context(), "POST", "/counters/"+key+"/decrement", nil,
						IdempotencyHeader, fmt.Sprintf("idem-%d-%d", c, i%7))
				case 2:
					write = false
					resp, err = tg.doCtx(t.Context(), "GET", "/counters/"+key, nil)
				}
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				switch resp.Status {
				case http.StatusOK:
					if write {
						writesOK.Add(1)
					}
				case http.StatusServiceUnavailable:
					answers503.Add(1)
				default:
					t.Errorf("client %d request %d: %d %s", c, i, resp.Status, resp.Body)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	flips.Wait()

	applied := 0
	for _, n := range ns {
		applied += n.appliedWrites()
	}
	if int64(applied) != writesOK.Load() {
		t.Errorf("nodes applied %d writes, gateway answered 200 to %d", applied, writesOK.Load())
	}
	t.Logf("%d writes ok, %d answers 503", writesOK.Load(), answers503.Load())

	// Everything recovers once the nodes do.
	for _, n := range ns {
		n.health.Store(healthOK)
		n.setBehavior(nil)
	}
	tg.refreshUntil("all nodes healthy", func(s []NodeStatus) bool {
		for _, n := range s {
			if n.Status != "healthy" {
				return false
			}
		}
		return true
	})
	for i := 0; i < 8; i++ {
		if resp := tg.write(fmt.Sprintf("after%d", i)); resp.Status != http.StatusOK {
			t.Fatalf("write after recovery: %d %s", resp.Status, resp.Body)
		}
	}
}
