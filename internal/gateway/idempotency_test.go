package gateway

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
)

// homeOf returns the node that received the keyed write of key, or nil.
func homeOf(ns []*fakeNode, key string) *fakeNode {
	for _, n := range ns {
		if n.countKey(key) > 0 {
			return n
		}
	}
	return nil
}

func TestKeyedWritesAlwaysGoToTheKeysHome(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const keys, rounds = 24, 8
	for r := 0; r < rounds; r++ {
		for k := 0; k < keys; k++ {
			// The counter key is the idempotency key, so that each node's
			// record shows where every idempotency key went.
			key := randomKey(k)
			if resp := tg.keyedWrite(key, key); resp.Status != http.StatusOK {
				t.Fatalf("keyed write: %d %s", resp.Status, resp.Body)
			}
		}
		// Unkeyed traffic in between changes the balancer's state, not the homes.
		tg.write(fmt.Sprintf("plain%d", r))
	}
	homes := map[string]int{}
	for k := 0; k < keys; k++ {
		key := randomKey(k)
		var at []string
		for _, n := range ns {
			if c := n.countKey(key); c > 0 {
				at = append(at, fmt.Sprintf("%s×%d", n.name, c))
				homes[n.name]++
			}
		}
		if len(at) != 1 {
			t.Errorf("writes with key %s went to %v, want all %d to one node", key, at, rounds)
		}
		for _, n := range ns {
			for _, r := range n.requests() {
				if r.Key == key && r.IdemKey != key {
					t.Errorf("%s received %s with Idempotency-Key %q", n.name, key, r.IdemKey)
				}
			}
		}
	}
	if len(homes) < 2 {
		t.Errorf("all %d keys have the same home (%v); want them spread", keys, homes)
	}
}

// randomKey is a UUID-like idempotency key, fixed for i.
func randomKey(i int) string {
	h := sha256.Sum256([]byte(strconv.Itoa(i)))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func TestKeyHomesAreSpreadOverTheNodes(t *testing.T) {
	urls := []string{"http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"}
	g, err := New(Config{Nodes: urls, HealthTimeout: 50 * time.Millisecond, Clock: clock.NewFake(t0), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// Nothing listens at these addresses: count them proven, as if they
	// had passed a check before going down.
	g.mu.Lock()
	for _, b := range g.backends {
		b.everProven = true
	}
	g.mu.Unlock()
	for _, format := range []string{"order-%d", "idem%d", "%d"} {
		homes := map[string]int{}
		for i := 0; i < 300; i++ {
			homes[g.home(fmt.Sprintf(format, i)).url]++
		}
		for _, u := range urls {
			// A fair split gives 100 each; below 60 is beyond any
			// reasonable deviation (p < 1e-5 for a uniform hash).
			if homes[u] < 60 {
				t.Errorf("keys %q: homes %v; %s has %d of 300", format, homes, u, homes[u])
			}
		}
	}
}

func TestKeyedWriteWhoseHomeIsUnhealthyIsRefused(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "order-1234"
	if resp := tg.keyedWrite(key, key); resp.Status != http.StatusOK {
		t.Fatalf("first keyed write: %d %s", resp.Status, resp.Body)
	}
	home := homeOf(ns, key)
	home.health.Store(healthFail)
	tg.refresh()
	if st := tg.status(home.URL()); st.Status != "unhealthy" {
		t.Fatalf("home %s is %s, want unhealthy", home.name, st.Status)
	}
	before := map[*fakeNode]int{}
	for _, n := range ns {
		before[n] = n.count()
	}
	for i := 0; i < 5; i++ {
		resp := tg.keyedWrite(key, key)
		msg := resp.errorMessage(t)
		if resp.Status != http.StatusServiceUnavailable || !strings.Contains(msg, "Idempotency-Key") || !strings.Contains(msg, "down") {
			t.Fatalf("keyed write with home down: %d %s, want 503 naming the key's node as down", resp.Status, resp.Body)
		}
	}
	for _, n := range ns {
		if got := n.count() - before[n]; got != 0 {
			t.Errorf("%s received %d requests, want none", n.name, got)
		}
	}
	if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="unavailable"`); got != 5 {
		t.Errorf(`requests_total{write,unavailable} = %v, want 5`, got)
	}

	// Unkeyed writes, reads with a key, and other keys are unaffected.
	for i := 0; i < 6; i++ {
		if resp := tg.write(fmt.Sprintf("plain%d", i)); resp.Status != http.StatusOK || resp.answer(t).Node == home.name {
			t.Errorf("unkeyed write: %d %s, want 200 from a healthy node", resp.Status, resp.Body)
		}
		if resp := tg.do("GET", "/counters/"+key, nil, IdempotencyHeader, key); resp.Status != http.StatusOK {
			t.Errorf("read with a key: %d %s, want 200", resp.Status, resp.Body)
		}
	}

	// The home comes back: the key's writes go there again.
	home.health.Store(healthOK)
	tg.refresh()
	if resp := tg.keyedWrite(key, key); resp.Status != http.StatusOK || resp.answer(t).Node != home.name {
		t.Errorf("keyed write after the home recovered: %d %s, want 200 from %s", resp.Status, resp.Body, home.name)
	}
}

func TestKeyedWriteAnswered503ByItsHomeIsNotRetried(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "pay-77"
	tg.keyedWrite(key, key)
	home := homeOf(ns, key)
	home.setBehavior(answerStatus(http.StatusServiceUnavailable))
	resp := tg.keyedWrite(key, key)
	if resp.Status != http.StatusServiceUnavailable || resp.errorMessage(t) != home.name+" says 503" {
		t.Errorf("gateway answered %d %s, want the home's own 503", resp.Status, resp.Body)
	}
	for _, n := range ns {
		want := 0
		if n == home {
			want = 2
		}
		if got := n.countKey(key); got != want {
			t.Errorf("%s received the key's writes %d times, want %d", n.name, got, want)
		}
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
	// Unkeyed writes that meet the 503 are still moved to another node.
	_, resp = tg.untilNodeGets(home, tg.write)
	if resp.Status != http.StatusOK || resp.answer(t).Node == home.name {
		t.Errorf("unkeyed write: %d %s, want 200 from another node", resp.Status, resp.Body)
	}
}

func TestKeyedWriteWhoseHomeRefusesConnectionsIsNotMoved(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "refused-1"
	tg.keyedWrite(key, key)
	home := homeOf(ns, key)
	tg.killNode(home)
	before := map[*fakeNode]int{}
	for _, n := range ns {
		before[n] = n.count()
	}
	resp := tg.keyedWrite(key, key)
	if resp.Status != http.StatusServiceUnavailable {
		t.Errorf("gateway answered %d %s, want 503", resp.Status, resp.Body)
	}
	for _, n := range ns {
		if got := n.count() - before[n]; got != 0 {
			t.Errorf("%s received %d requests, want none", n.name, got)
		}
	}
	if st := tg.status(home.URL()); st.Status != "unhealthy" {
		t.Errorf("home is %s, want unhealthy", st.Status)
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
}

func TestKeyedWriteWhoseHomeRefusesConnectionsNamesTheHome(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "refused-2"
	tg.keyedWrite(key, key)
	tg.killNode(homeOf(ns, key))
	resp := tg.keyedWrite(key, key)
	if msg := resp.errorMessage(t); resp.Status != http.StatusServiceUnavailable || !strings.Contains(msg, "Idempotency-Key") {
		t.Errorf("gateway answered %d %q, want 503 saying the key's node is down", resp.Status, msg)
	}
}

// A keyed write is read by its home, which then drops the connection
// without answering (it may have applied the write). The gateway forwards the
// Idempotency-Key header, which makes net/http's Transport treat the POST as
// replayable: when the dropped connection was a reused keep-alive one (it is,
// after a health check) the Transport resends the write on a new connection
// to the same node, which replays its first answer. Whatever the answer, the
// write must not reach any other node.
func TestKeyedWriteLostAfterSendStaysWithItsHome(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "resend-1"
	tg.keyedWrite(key, key)
	home := homeOf(ns, key)
	home.setBehavior(func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		n.setBehavior(nil) // only the first
		hijackClose(n, w, r, rec)
	})
	tg.refresh() // the gateway now holds an idle keep-alive connection to the home
	before := home.countKey(key)
	resp := tg.keyedWrite(key, key)
	if resp.Status != http.StatusOK && resp.Status != http.StatusBadGateway {
		t.Errorf("gateway answered %d %s, want the home's answer to a resend or 502", resp.Status, resp.Body)
	}
	if got := home.countKey(key) - before; got < 1 || got > 2 {
		t.Errorf("the home received the write %d times, want once (or twice with the Transport's resend)", got)
	}
	for _, n := range ns {
		if got := n.countKey(key); n != home && got != 0 {
			t.Errorf("%s received the keyed write %d times, want 0", n.name, got)
		}
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
}

// As above, but the home is gone for good after reading the write: the
// Transport's resend is refused, and the gateway reports that refusal as a
// 503, which (README: "refused before anything happened; safe to retry
// elsewhere") tells the client the write was certainly not applied.
func TestKeyedWriteLostAfterSendIsNot503(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const key = "resend-2"
	tg.keyedWrite(key, key)
	home := homeOf(ns, key)
	home.setBehavior(func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		n.srv.Listener.Close()
		hijackClose(n, w, r, rec)
	})
	tg.refresh()
	resp := tg.keyedWrite(key, key)
	if resp.Status != http.StatusBadGateway || !strings.Contains(resp.errorMessage(t), mayOrMayNot) {
		t.Errorf("gateway answered %d %s, want 502 %q", resp.Status, resp.Body, mayOrMayNot)
	}
}
