package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
)

// nodeNamed returns the fake node at b's URL.
func nodeNamed(t testing.TB, ns []*fakeNode, b *backend) *fakeNode {
	t.Helper()
	for _, n := range ns {
		if b != nil && n.URL() == b.url {
			return n
		}
	}
	t.Fatalf("no fake node at %v", b)
	return nil
}

// keyRequests are every request that names a counter key, keyed or not.
var keyRequests = []struct{ method, path string }{
	{"POST", "/counters/%s/increment"},
	{"GET", "/counters/%s"},
	{"HEAD", "/counters/%s"},
	{"POST", "/counters/%s/decrement"},
	{"PUT", "/counters/%s/ttl"},
	{"DELETE", "/counters/%s/ttl"},
	{"DELETE", "/counters/%s"},
}

func TestKeyRequestsGoToTheKeysHome(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	homes := map[string]int{}
	for k := 0; k < 24; k++ {
		key := fmt.Sprintf("key%d", k)
		home := nodeNamed(t, ns, tg.home(key))
		homes[home.name]++
		for _, rq := range keyRequests {
			var body []byte
			if rq.method == "PUT" {
				body = []byte(`{"seconds":60}`)
			}
			if resp := tg.do(rq.method, fmt.Sprintf(rq.path, key), body); resp.Status != http.StatusOK {
				t.Fatalf("%s %s: %d %s", rq.method, rq.path, resp.Status, resp.Body)
			}
		}
		if got := home.countKey(key); got != len(keyRequests) {
			t.Errorf("key %s: its home %s received %d of its %d requests", key, home.name, got, len(keyRequests))
		}
	}
	// The default counter too.
	home := nodeNamed(t, ns, tg.home("default"))
	before := home.countKey("default")
	tg.do("POST", "/increment", nil)
	tg.do("POST", "/decrement", nil)
	if got := home.countKey("default") - before; got != 2 {
		t.Errorf("default's home received %d of its 2 writes", got)
	}
	if len(homes) < 2 {
		t.Errorf("24 keys all have one home (%v); want them spread", homes)
	}
}

func TestKeyMovesAlongItsOrderWhileItsHomeIsDown(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "moving"
	order := tg.order(key)
	home, next := nodeNamed(t, ns, order[0]), nodeNamed(t, ns, order[1])
	home.health.Store(healthFail)
	tg.refreshUntil("the home out of rotation", func(s []NodeStatus) bool { return true })
	for i := 0; i < 5; i++ {
		tg.do("POST", "/counters/"+key+"/increment", nil)
		tg.do("GET", "/counters/"+key, nil)
	}
	if got := next.countKey(key); got != 10 {
		t.Errorf("with its home down, the next node in the key's order got %d of 10 requests", got)
	}
	home.health.Store(healthOK)
	tg.refresh()
	tg.do("GET", "/counters/"+key, nil)
	if got := home.countKey(key); got != 1 {
		t.Errorf("home back: it got %d requests, want the read", got)
	}
}

func TestUnkeyedWriteRefusedByTheHomeGoesToTheNextInOrder(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "refused"
	order := tg.order(key)
	home, next := nodeNamed(t, ns, order[0]), nodeNamed(t, ns, order[1])
	tg.killNode(home)
	resp := tg.write(key)
	if resp.Status != http.StatusOK || resp.answer(t).Node != next.name {
		t.Fatalf("write with its home refusing connections: %d %s, want 200 from %s", resp.Status, resp.Body, next.name)
	}
}

// valueBehavior answers reads with a fixed value.
func valueBehavior(v int64) behavior {
	return func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		api.WriteJSON(w, http.StatusOK, nodeAnswer{Key: rec.Key, Value: v, Node: n.name})
	}
}

func TestMinReadIsAnsweredByANodeAtTheMinimum(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{MinReadWait: 50 * time.Millisecond}, ns...)
	const key = "min"
	order := tg.order(key)
	// The home lags; the last node in the order has the write.
	for i, b := range order {
		nodeNamed(t, ns, b).setBehavior(valueBehavior(int64(3 + i)))
	}
	last := nodeNamed(t, ns, order[2])

	resp := tg.do("GET", "/counters/"+key+"?min=5", nil)
	if resp.Status != http.StatusOK || resp.answer(t).Node != last.name || resp.answer(t).Value != 5 {
		t.Fatalf("?min=5: %d %s, want 5 from %s", resp.Status, resp.Body, last.name)
	}
	for _, r := range last.requests() {
		if r.URI != "/counters/"+key {
			t.Errorf("the node was asked %s; ?min is the gateway's", r.URI)
		}
	}
	// Reached by the home: one request only.
	before := nodeNamed(t, ns, order[1]).count()
	if resp := tg.do("GET", "/counters/"+key+"?min=3", nil); resp.Status != http.StatusOK || resp.answer(t).Value != 3 {
		t.Fatalf("?min=3: %d %s, want 3 from the home", resp.Status, resp.Body)
	}
	if nodeNamed(t, ns, order[1]).count() != before {
		t.Errorf("?min reached by the home still asked the next node")
	}
	// Reached by none within the wait: 503 with the highest value seen.
	resp = tg.do("GET", "/counters/"+key+"?min=9", nil)
	if resp.Status != http.StatusServiceUnavailable || resp.Header.Get(MinValueHeader) != "5" {
		t.Fatalf("?min=9: %d %s %s=%q, want 503 with 5", resp.Status, resp.Body, MinValueHeader, resp.Header.Get(MinValueHeader))
	}
	// A bad minimum is the client's error.
	if resp := tg.do("GET", "/counters/"+key+"?min=x", nil); resp.Status != http.StatusBadRequest {
		t.Fatalf("?min=x: %d %s, want 400", resp.Status, resp.Body)
	}
}

func TestMinReadWaitsForGossip(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	tg := newTestGateway(t, Config{MinReadWait: time.Minute}, ns...)
	// Every node answers 1 for its first reads, then 7: the write arrives
	// by gossip while the gateway waits.
	for _, n := range ns {
		reads := 0
		n.setBehavior(func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
			n.mu.Lock()
			reads++
			v := int64(1)
			if reads > 3 {
				v = 7
			}
			n.mu.Unlock()
			api.WriteJSON(w, http.StatusOK, nodeAnswer{Key: rec.Key, Value: v, Node: n.name})
		})
	}
	resp := tg.do("GET", "/counters/gossip?min="+strconv.Itoa(7), nil)
	if resp.Status != http.StatusOK || resp.answer(t).Value != 7 {
		t.Fatalf("?min=7: %d %s, want 7", resp.Status, resp.Body)
	}
}
