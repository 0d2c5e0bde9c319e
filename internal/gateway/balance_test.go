package gateway

import (
	"fmt"
	"net/http"
	"testing"
)

func TestSequentialRequestsSpreadOverAllNodes(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	tg := newTestGateway(t, Config{}, ns...)
	const total = 60
	for i := 0; i < total; i++ {
		path := fmt.Sprintf("/counters/k%d", i)
		if i%2 == 0 {
			path += "/increment"
		}
		method := map[bool]string{true: "POST", false: "GET"}[i%2 == 0]
		if resp := tg.do(method, path, nil); resp.Status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, resp.Status, resp.Body)
		}
	}
	sum := 0
	for _, n := range ns {
		c := n.count()
		sum += c
		if c < total/6 {
			t.Errorf("%s received %d of %d requests; want them spread over all nodes", n.name, c, total)
		}
	}
	if sum != total {
		t.Errorf("nodes received %d requests in all, want %d", sum, total)
	}
}

// A listing has no key, so it goes to the least busy node; every other
// request follows its key (see TestKeyRequestsGoToTheKeysHome).
func TestBusyNodeIsAvoidedForListings(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	a := ns[0]
	h := newHolder(t)
	a.setBehavior(h.behavior(answerOK))
	tg := newTestGateway(t, Config{}, ns...)

	// Send listings until one is held by a: the others are answered at once.
	held := make(chan response, 1)
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("no request reached a in 20 tries")
		}
		done := make(chan response, 1)
		go func() {
			resp, err := tg.doCtx(t.Context(), "GET", "/counters", nil)
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		select {
		case <-h.entered:
			go func() { held <- <-done }()
		case resp := <-done:
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d: %s", resp.Status, resp.Body)
			}
			continue
		}
		break
	}

	// a has one outstanding request, b and c none: everything goes to them.
	bBefore, cBefore := ns[1].count(), ns[2].count()
	for i := 0; i < 20; i++ {
		if resp := tg.do("GET", "/counters", nil); resp.Status != http.StatusOK {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
	}
	if got := a.count(); got != 1 {
		t.Errorf("the busy node received %d requests, want only the one it holds", got)
	}
	if b, c := ns[1].count()-bBefore, ns[2].count()-cBefore; b+c != 20 || b == 0 || c == 0 {
		t.Errorf("b received %d and c %d of 20; want all, spread over both", b, c)
	}
	if got := tg.status(a.URL()); got.Outstanding != 1 || got.Status != "healthy" {
		t.Errorf("a: outstanding %d, %s; want 1, healthy", got.Outstanding, got.Status)
	}
	h.releaseAll()
	if resp := recv(t, held, "the held request's answer"); resp.Status != http.StatusOK || resp.answer(t).Node != "a" {
		t.Errorf("held request answered %d %s, want 200 from a", resp.Status, resp.Body)
	}
}
