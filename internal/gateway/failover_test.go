package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const mayOrMayNot = "may or may not have been applied"

func TestRefusedConnectionFailsOver(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	tg := newTestGateway(t, Config{}, ns...)
	tg.killNode(a)

	key, resp := tg.untilNodeGets(a, tg.write)
	if resp.Status != http.StatusOK || resp.answer(t).Node != "b" {
		t.Fatalf("write of %s: %d %s, want 200 from b", key, resp.Status, resp.Body)
	}
	if got := b.countKey(key); got != 1 {
		t.Errorf("b received %s %d times, want 1", key, got)
	}
	st := tg.status(a.URL())
	if st.Status != "unhealthy" || st.Error != "unreachable" {
		t.Errorf("a is %s (%q), want unhealthy: unreachable", st.Status, st.Error)
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 1 {
		t.Errorf("retries_total = %v, want 1", got)
	}

	// a is out of rotation: no more retries.
	for i := 0; i < 10; i++ {
		if resp := tg.do("GET", fmt.Sprintf("/counters/r%d", i), nil); resp.Status != http.StatusOK {
			t.Fatalf("read: %d %s", resp.Status, resp.Body)
		}
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 1 {
		t.Errorf("retries_total = %v after more requests, want still 1", got)
	}
}

func TestNode503FailsOverUntilNextHealthCheck(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	a.setBehavior(answerStatus(http.StatusServiceUnavailable))
	tg := newTestGateway(t, Config{}, ns...)

	key, resp := tg.untilNodeGets(a, tg.write)
	if resp.Status != http.StatusOK || resp.answer(t).Node != "b" {
		t.Fatalf("write of %s: %d %s, want 200 from b", key, resp.Status, resp.Body)
	}
	if a.countKey(key) != 1 || b.countKey(key) != 1 {
		t.Errorf("%s reached a %d and b %d times, want once each", key, a.countKey(key), b.countKey(key))
	}
	if st := tg.status(a.URL()); st.Status != "unhealthy" {
		t.Errorf("a is %s after answering 503, want unhealthy", st.Status)
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 1 {
		t.Errorf("retries_total = %v, want 1", got)
	}
	for i := 0; i < 6; i++ {
		tg.write(fmt.Sprintf("more%d", i))
	}
	if got := a.count(); got != 1 {
		t.Errorf("a received %d requests while out of rotation, want 1", got)
	}

	// a's /health still passes, so the next check puts it back.
	a.setBehavior(nil)
	tg.refresh()
	if st := tg.status(a.URL()); st.Status != "healthy" {
		t.Fatalf("a is %s after passing a health check, want healthy", st.Status)
	}
	tg.untilNodeGets(a, tg.write)
}

func TestNodeErrorsOtherThan503ArePassedThrough(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadRequest, http.StatusNotFound, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b")
			a, b := ns[0], ns[1]
			a.setBehavior(answerStatus(status))
			tg := newTestGateway(t, Config{}, ns...)
			key, resp := tg.untilNodeGets(a, tg.write)
			if resp.Status != status || resp.errorMessage(t) != fmt.Sprintf("a says %d", status) {
				t.Errorf("gateway answered %d %s, want a's own %d", resp.Status, resp.Body, status)
			}
			if got := b.countKey(key); got != 0 {
				t.Errorf("b received the write %d times, want 0 (no retry)", got)
			}
			if got := a.countKey(key); got != 1 {
				t.Errorf("a received the write %d times, want 1", got)
			}
			if st := tg.status(a.URL()); st.Status != "healthy" {
				t.Errorf("a is %s, want still healthy", st.Status)
			}
			if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
				t.Errorf("retries_total = %v, want 0", got)
			}
			if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="error"`); got != 1 {
				t.Errorf(`requests_total{write,error} = %v, want 1`, got)
			}
		})
	}
}

func TestConnectionLostAfterSendIsNotRetried(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	a.setBehavior(hijackClose)
	tg := newTestGateway(t, Config{}, ns...)
	key, resp := tg.untilNodeGets(a, tg.write)
	if resp.Status != http.StatusBadGateway || !strings.Contains(resp.errorMessage(t), mayOrMayNot) {
		t.Errorf("gateway answered %d %s, want 502 %q", resp.Status, resp.Body, mayOrMayNot)
	}
	if got := b.countKey(key); got != 0 {
		t.Errorf("b received the write %d times, want 0", got)
	}
	if got := a.countKey(key); got != 1 {
		t.Errorf("a received the write %d times, want exactly 1", got)
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
	if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="unknown"`); got != 1 {
		t.Errorf(`requests_total{write,unknown} = %v, want 1`, got)
	}

	// Reads are not moved to another node either. (net/http itself may
	// resend a GET on a fresh connection to the same node.)
	key, resp = tg.untilNodeGets(a, func(key string) response { return tg.do("GET", "/counters/"+key, nil) })
	if resp.Status != http.StatusBadGateway {
		t.Errorf("read: gateway answered %d %s, want 502", resp.Status, resp.Body)
	}
	if got := b.countKey(key); got != 0 {
		t.Errorf("b received the read %d times, want 0", got)
	}
}

// A node that reads an unkeyed write and then goes away entirely: the write
// may have been applied, so the answer is 502 even though the node now
// refuses connections.
func TestNodeDyingAfterReadingUnkeyedWriteIs502(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	a.setBehavior(func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		n.srv.Listener.Close()
		hijackClose(n, w, r, rec)
	})
	tg := newTestGateway(t, Config{}, ns...)
	key, resp := tg.untilNodeGets(a, tg.write)
	if resp.Status != http.StatusBadGateway || !strings.Contains(resp.errorMessage(t), mayOrMayNot) {
		t.Errorf("gateway answered %d %s, want 502 %q", resp.Status, resp.Body, mayOrMayNot)
	}
	if a.countKey(key) != 1 || b.countKey(key) != 0 {
		t.Errorf("write reached a %d and b %d times, want 1 and 0", a.countKey(key), b.countKey(key))
	}
}

func TestSlowNodeTimesOutWithoutRetry(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	h := newHolder(t)
	a.setBehavior(h.behavior(answerOK))
	tg := newTestGateway(t, Config{ProxyTimeout: 100 * time.Millisecond}, ns...)
	key, resp := tg.untilNodeGets(a, tg.write)
	if resp.Status != http.StatusBadGateway || !strings.Contains(resp.errorMessage(t), mayOrMayNot) {
		t.Errorf("gateway answered %d %s, want 502 %q", resp.Status, resp.Body, mayOrMayNot)
	}
	if a.countKey(key) != 1 || b.countKey(key) != 0 {
		t.Errorf("write reached a %d and b %d times, want 1 and 0", a.countKey(key), b.countKey(key))
	}
	if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
		t.Errorf("retries_total = %v, want 0", got)
	}
}

func TestAtMostMaxTriesNodesAreTried(t *testing.T) {
	for _, mode := range []string{"503", "refused"} {
		t.Run(mode, func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b", "c", "d", "e")
			tg := newTestGateway(t, Config{MaxTries: 3}, ns...)
			for _, n := range ns {
				if mode == "503" {
					n.setBehavior(answerStatus(http.StatusServiceUnavailable))
				} else {
					tg.killNode(n)
				}
			}
			resp := tg.write("x")
			if resp.Status != http.StatusServiceUnavailable || !strings.Contains(resp.errorMessage(t), "no healthy node") {
				t.Errorf("gateway answered %d %s, want 503 no healthy node", resp.Status, resp.Body)
			}
			tried, unhealthy := 0, 0
			for _, n := range ns {
				tried += n.count()
				if tg.status(n.URL()).Status == "unhealthy" {
					unhealthy++
				}
			}
			if mode == "503" && tried != 3 {
				t.Errorf("%d nodes received the write, want MaxTries = 3", tried)
			}
			if unhealthy != 3 {
				t.Errorf("%d nodes marked unhealthy, want the 3 tried", unhealthy)
			}
			if got := tg.metric("dcounter_gateway_retries_total", ""); got != 2 {
				t.Errorf("retries_total = %v, want 2", got)
			}
		})
	}
}

func TestNoHealthyNode(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	for _, n := range ns {
		n.health.Store(healthFail)
	}
	tg := newTestGateway(t, Config{}, ns...)
	for _, req := range [][2]string{{"POST", "/increment"}, {"GET", "/counter"}, {"GET", "/counters/x"}, {"POST", "/counters/x/decrement"}} {
		resp := tg.do(req[0], req[1], nil)
		if resp.Status != http.StatusServiceUnavailable || !strings.Contains(resp.errorMessage(t), "no healthy node") {
			t.Errorf("%s %s: %d %s, want 503 no healthy node", req[0], req[1], resp.Status, resp.Body)
		}
	}
	for _, n := range ns {
		if got := n.count(); got != 0 {
			t.Errorf("%s received %d requests, want 0", n.name, got)
		}
	}
	if got := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="unavailable"`); got != 2 {
		t.Errorf(`requests_total{write,unavailable} = %v, want 2`, got)
	}
}

func TestNoHealthyNodeBodyIsExactly(t *testing.T) {
	n := newFakeNode(t, "a")
	n.health.Store(healthFail)
	tg := newTestGateway(t, Config{}, n)
	resp := tg.do("POST", "/increment", nil)
	if want := `{"error":"no healthy node"}` + "\n"; resp.Status != http.StatusServiceUnavailable || string(resp.Body) != want {
		t.Errorf("gateway answered %d %q, want 503 %q", resp.Status, resp.Body, want)
	}
}

func TestClientCancellationIsNotRetried(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b", "c")
			h := newHolder(t)
			for _, n := range ns {
				n.setBehavior(h.behavior(answerOK))
			}
			tg := newTestGateway(t, Config{}, ns...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				hdr := []string{"Content-Type", "application/json"}
				if keyed {
					hdr = append(hdr, IdempotencyHeader, "cancel-me")
				}
				_, err := tg.doCtx(ctx, "POST", "/counters/c/increment", []byte(`{"amount":1}`), hdr...)
				errc <- err
			}()
			recv(t, h.entered, "the write to reach a node")
			cancel()
			if err := recv(t, errc, "the client to give up"); !errors.Is(err, context.Canceled) {
				t.Errorf("client got %v, want context.Canceled", err)
			}
			waitFor(t, "the gateway to finish the request", func() bool {
				return tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="client_gone"`) == 1
			})
			got := 0
			for _, n := range ns {
				got += n.count()
			}
			if got != 1 {
				t.Errorf("nodes received %d requests in all, want exactly 1", got)
			}
			if len(h.entered) != 0 {
				t.Errorf("%d more requests reached a node", len(h.entered))
			}
			if got := tg.metric("dcounter_gateway_retries_total", ""); got != 0 {
				t.Errorf("retries_total = %v, want 0", got)
			}
			for _, n := range ns {
				if st := tg.status(n.URL()); st.Status != "healthy" {
					t.Errorf("%s is %s after a client gave up on it, want healthy", n.name, st.Status)
				}
			}
		})
	}
}
