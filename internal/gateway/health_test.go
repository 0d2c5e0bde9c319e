package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestFailingNodeLeavesRotationAtNextCheckAndReturns(t *testing.T) {
	for _, mode := range []struct {
		name   string
		health int32
	}{{"503", healthFail}, {"hangs", healthHang}, {"not JSON", healthGarbage}} {
		t.Run(mode.name, func(t *testing.T) {
			ns := newFakeNodes(t, "a", "b")
			a := ns[0]
			tg := newTestGateway(t, Config{HealthTimeout: 50 * time.Millisecond}, ns...)
			if st := tg.status(a.URL()); st.Status != "healthy" {
				t.Fatalf("a is %s at start (%s)", st.Status, st.Error)
			}
			a.health.Store(mode.health)
			// Checks run only on the health interval: until then a stays.
			if st := tg.status(a.URL()); st.Status != "healthy" {
				t.Fatalf("a is %s before any new check", st.Status)
			}
			tg.refresh()
			st := tg.status(a.URL())
			if st.Status != "unhealthy" || st.Error == "" || st.Value != nil {
				t.Fatalf("a after failing a check: %+v, want unhealthy with a reason and no value", st)
			}
			before := a.count()
			for i := 0; i < 6; i++ {
				if resp := tg.write(fmt.Sprintf("w%d", i)); resp.Status != http.StatusOK || resp.answer(t).Node != "b" {
					t.Fatalf("write: %d %s, want 200 from b", resp.Status, resp.Body)
				}
			}
			if got := a.count() - before; got != 0 {
				t.Errorf("unhealthy a received %d requests", got)
			}
			a.health.Store(healthOK)
			tg.refresh()
			if st := tg.status(a.URL()); st.Status != "healthy" || st.Error != "" {
				t.Fatalf("a after passing a check: %+v, want healthy", st)
			}
			tg.untilNodeGets(a, tg.write)
		})
	}
}

func TestHealthChecksRunEveryInterval(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	if got := n.healthCheckCount(); got != 1 {
		t.Fatalf("%d health checks after New, want 1", got)
	}
	for i := 2; i <= 4; i++ {
		tg.refresh()
		if got := n.healthCheckCount(); got != i {
			t.Fatalf("%d health checks after %d intervals, want %d", got, i-1, i)
		}
	}
}

// A node counts every counter read as a client operation, so the health
// checks must read none: only asking /nodes (a real read, by an operator)
// reads "default", once per healthy node.
func TestHealthChecksReadNoCounter(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	tg := newTestGateway(t, Config{}, ns...)
	for range 3 {
		tg.refresh()
	}
	for _, n := range ns {
		if got := n.healthCheckCount(); got < 4 {
			t.Fatalf("%s: %d health checks, want at least 4", n.name, got)
		}
		if got := n.counterReadCount(); got != 0 {
			t.Errorf("%s: health checks read GET /counter %d times, want 0", n.name, got)
		}
	}
	if resp := tg.do("GET", "/nodes", nil); resp.Status != http.StatusOK {
		t.Fatalf("GET /nodes: %d %s", resp.Status, resp.Body)
	}
	for _, n := range ns {
		if got := n.counterReadCount(); got != 1 {
			t.Errorf("%s: GET /nodes read its value %d times, want 1", n.name, got)
		}
	}
}

func TestNodesListsEveryNode(t *testing.T) {
	ns := newFakeNodes(t, "alpha", "beta", "gamma")
	ns[0].value.Store(42)
	ns[1].value.Store(-7)
	ns[2].health.Store(healthFail)
	tg := newTestGateway(t, Config{}, ns...)
	tg.refresh()
	checked := tg.clk.Now().UTC().Format(time.RFC3339Nano)

	resp := tg.do("GET", "/nodes", nil)
	if resp.Status != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /nodes: %d %q %s", resp.Status, resp.Header.Get("Content-Type"), resp.Body)
	}
	var raw []map[string]any
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 3 {
		t.Fatalf("GET /nodes lists %d nodes, want 3: %s", len(raw), resp.Body)
	}
	for _, f := range []string{"url", "status", "value", "last_check"} {
		for _, e := range raw {
			if _, ok := e[f]; !ok {
				t.Errorf("entry %v has no %q", e, f)
			}
		}
	}
	var got []NodeStatus
	json.Unmarshal(resp.Body, &got)
	byURL := map[string]NodeStatus{}
	for _, s := range got {
		byURL[s.URL] = s
	}
	for _, tc := range []struct {
		n      *fakeNode
		status string
		value  *int64
	}{
		{ns[0], "healthy", ptr[int64](42)},
		{ns[1], "healthy", ptr[int64](-7)},
		{ns[2], "unproven", nil}, // never passed a check
	} {
		s, ok := byURL[tc.n.URL()]
		if !ok {
			t.Errorf("%s (%s) not listed", tc.n.name, tc.n.URL())
			continue
		}
		if s.Status != tc.status || s.LastCheck != checked || !equalPtr(s.Value, tc.value) {
			t.Errorf("%s: %+v, want status %s, value %v, last_check %s", tc.n.name, s, tc.status, deref(tc.value), checked)
		}
		if tc.status == "healthy" && (s.ID != tc.n.id || s.Name != tc.n.name || s.Error != "") {
			t.Errorf("%s: id %q name %q error %q, want %q %q and no error", tc.n.name, s.ID, s.Name, s.Error, tc.n.id, tc.n.name)
		}
		if tc.status == "unproven" && s.Error == "" {
			t.Errorf("%s: unhealthy without a reason", tc.n.name)
		}
	}
	for _, n := range ns {
		if got := n.count(); got != 0 {
			t.Errorf("GET /nodes was proxied to %s", n.name)
		}
	}
}

func TestGatewayHealth(t *testing.T) {
	ns := newFakeNodes(t, "a", "b")
	tg := newTestGateway(t, Config{}, ns...)
	checks := ns[0].healthCheckCount()
	assertHealth := func(status int, want Health) {
		t.Helper()
		resp := tg.do("GET", "/health", nil)
		var got Health
		if err := json.Unmarshal(resp.Body, &got); err != nil {
			t.Fatalf("GET /health: %d %s: %v", resp.Status, resp.Body, err)
		}
		if resp.Status != status || got != want {
			t.Errorf("GET /health: %d %+v, want %d %+v", resp.Status, got, status, want)
		}
	}
	assertHealth(200, Health{Status: "ok", HealthyNodes: 2, Nodes: 2})
	ns[0].health.Store(healthFail)
	tg.refresh()
	assertHealth(200, Health{Status: "ok", HealthyNodes: 1, Nodes: 2})
	ns[1].health.Store(healthFail)
	tg.refresh()
	assertHealth(503, Health{Status: "unavailable", HealthyNodes: 0, Nodes: 2, Error: "no healthy node"})
	resp := tg.do("HEAD", "/health", nil)
	if resp.Status != http.StatusServiceUnavailable {
		t.Errorf("HEAD /health: %d, want 503", resp.Status)
	}
	ns[1].health.Store(healthOK)
	tg.refresh()
	assertHealth(200, Health{Status: "ok", HealthyNodes: 1, Nodes: 2})
	if got := ns[0].healthCheckCount() - checks; got != 3 {
		t.Errorf("node a was health-checked %d times, want only the 3 rounds (GET /health is not proxied)", got)
	}
}

func ptr[T any](v T) *T { return &v }

func equalPtr(a, b *int64) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
