package gateway

import (
	"fmt"
	"net/http"
	"testing"
)

// lifecycleWrites are the writes besides increments: each sends key's
// request with hdr.
var lifecycleWrites = []struct {
	name string
	send func(tg *testGateway, key string, hdr ...string) response
}{
	{"delete", func(tg *testGateway, key string, hdr ...string) response {
		return tg.do(http.MethodDelete, "/counters/"+key, nil, hdr...)
	}},
	{"set ttl", func(tg *testGateway, key string, hdr ...string) response {
		return tg.do(http.MethodPut, "/counters/"+key+"/ttl", []byte(`{"seconds":60}`), append([]string{"Content-Type", "application/json"}, hdr...)...)
	}},
	{"persist", func(tg *testGateway, key string, hdr ...string) response {
		return tg.do(http.MethodDelete, "/counters/"+key+"/ttl", nil, hdr...)
	}},
}

func TestKeyedLifecycleWritesGoToTheKeysHome(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	for _, w := range lifecycleWrites {
		for k := 0; k < 12; k++ {
			key := fmt.Sprintf("%s-%s", w.name[:3], randomKey(k))
			for r := 0; r < 4; r++ {
				if resp := w.send(tg, key, IdempotencyHeader, key); resp.Status != http.StatusOK {
					t.Fatalf("%s: %d %s", w.name, resp.Status, resp.Body)
				}
				tg.write(fmt.Sprintf("plain%d", r)) // moves the balancer, not the homes
			}
			var at []string
			for _, n := range ns {
				if c := n.countKey(key); c > 0 {
					at = append(at, fmt.Sprintf("%s×%d", n.name, c))
				}
			}
			if len(at) != 1 {
				t.Errorf("%s with key %s went to %v, want all to one node", w.name, key, at)
			}
			// The same key's home as an increment's.
			if home, want := homeOf(ns, key), tg.home(key); home == nil || home.URL() != want.url {
				t.Errorf("%s with key %s went to %v, its home is %s", w.name, key, home, want.url)
			}
		}
	}
}

func TestKeyedLifecycleWriteWhoseHomeIsDownIsNotMoved(t *testing.T) {
	for _, w := range lifecycleWrites {
		t.Run(w.name, func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b", "c")
			tg := newTestGateway(t, Config{}, ns...)
			const key = "life-42"
			home := ns[0]
			for _, n := range ns {
				if n.URL() == tg.home(key).url {
					home = n
				}
			}
			// Answered 503 by its home: passed back, not retried.
			home.setBehavior(answerStatus(http.StatusServiceUnavailable))
			if resp := w.send(tg, key, IdempotencyHeader, key); resp.Status != http.StatusServiceUnavailable || resp.errorMessage(t) != home.name+" says 503" {
				t.Errorf("home answering 503: gateway answered %d %s", resp.Status, resp.Body)
			}
			// Refusing connections: 503 naming the home, not moved.
			tg.killNode(home)
			if resp := w.send(tg, key, IdempotencyHeader, key); resp.Status != http.StatusServiceUnavailable {
				t.Errorf("home down: %d %s", resp.Status, resp.Body)
			}
			for _, n := range ns {
				if n != home && n.countKey(key) != 0 {
					t.Errorf("%s received the keyed %s meant for %s", n.name, w.name, home.name)
				}
			}
			if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
				t.Errorf("retries_total = %v, want 0", got)
			}
		})
	}
}

func TestUnkeyedLifecycleWriteLostAfterSendIsNotRetried(t *testing.T) {
	for _, w := range lifecycleWrites {
		t.Run(w.name, func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b")
			tg := newTestGateway(t, Config{}, ns...)
			ns[0].setBehavior(hijackClose)
			ns[1].setBehavior(hijackClose)
			resp := w.send(tg, "lost")
			if resp.Status != http.StatusBadGateway {
				t.Fatalf("status %d %s, want 502", resp.Status, resp.Body)
			}
			if got := ns[0].countKey("lost") + ns[1].countKey("lost"); got != 1 {
				t.Errorf("the nodes received the %s %d times, want once", w.name, got)
			}
			if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="unknown"`); got != 1 {
				t.Errorf(`requests_total{kind="write",outcome="unknown"} = %v, want 1`, got)
			}
		})
	}
}

func TestUnkeyedLifecycleWriteRefusedWith503FailsOver(t *testing.T) {
	for _, w := range lifecycleWrites {
		t.Run(w.name, func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b")
			tg := newTestGateway(t, Config{}, ns...)
			ns[0].setBehavior(answerStatus(http.StatusServiceUnavailable))
			_, resp := tg.untilNodeGets(ns[0], func(key string) response { return w.send(tg, key) })
			if resp.Status != http.StatusOK || resp.answer(t).Node != "b" {
				t.Errorf("status %d %s, want 200 from b", resp.Status, resp.Body)
			}
		})
	}
}

func TestLifecycleMetricsKinds(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	for _, w := range lifecycleWrites {
		w.send(tg, "m")
	}
	tg.do("GET", "/counters?limit=5", nil)
	tg.do("GET", "/counters/m", nil)
	if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="ok"`); got != float64(len(lifecycleWrites)) {
		t.Errorf("writes ok = %v, want %d", got, len(lifecycleWrites))
	}
	if got := tg.metric("dcounter_gateway_requests_total", `kind="read",outcome="ok"`); got != 2 {
		t.Errorf("reads ok = %v, want 2", got)
	}
}
