package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetricsEndpoint(t *testing.T) {
	ns := newFakeNodes(t, "a", "b", "c")
	ns[2].health.Store(healthFail)
	tg := newTestGateway(t, Config{}, ns...)
	tg.killNode(ns[1])
	tg.untilNodeGets(ns[1], tg.write) // one retry
	tg.do("GET", "/counters/x", nil)
	tg.do("POST", "/counters//increment", nil) // bad request, answered by the gateway

	resp := tg.do("GET", "/metrics", nil)
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	body := string(resp.Body)
	for _, name := range []string{
		"dcounter_gateway_requests_total",
		"dcounter_gateway_request_duration_seconds",
		"dcounter_gateway_retries_total",
		"dcounter_gateway_nodes",
	} {
		if !strings.Contains(body, "# TYPE "+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}
	for _, tc := range []struct {
		name, labels string
		want         float64
	}{
		{"dcounter_gateway_retries_total", "", 1},
		{"dcounter_gateway_requests_total", `kind="read",outcome="ok"`, 1},
		{"dcounter_gateway_request_duration_seconds_count", `kind="read"`, 1},
		{"dcounter_gateway_nodes", `health="healthy"`, 2}, // as of the last round (New's)
		{"dcounter_gateway_nodes", `health="unhealthy"`, 1},
	} {
		if got := tg.metric(tc.name, tc.labels); got != tc.want {
			t.Errorf("%s{%s} = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	writesOK := tg.metric("dcounter_gateway_requests_total", `kind="write",outcome="ok"`)
	if writesOK < 1 || tg.metric("dcounter_gateway_request_duration_seconds_count", `kind="write"`) < writesOK {
		t.Errorf("write metrics: ok %v, durations %v", writesOK, tg.metric("dcounter_gateway_request_duration_seconds_count", `kind="write"`))
	}

	tg.refresh()
	waitFor(t, "the nodes gauge to follow the round", func() bool {
		return tg.metric("dcounter_gateway_nodes", `health="healthy"`) == 1 &&
			tg.metric("dcounter_gateway_nodes", `health="unhealthy"`) == 2
	})
	for _, n := range ns {
		for _, r := range n.requests() {
			if strings.Contains(r.URI, "metrics") {
				t.Errorf("GET /metrics was proxied to %s", n.name)
			}
		}
	}
}

func TestMetricsRouteWithoutMetrics(t *testing.T) {
	n := newFakeNode(t, "a")
	g, err := New(Config{Nodes: []string{n.URL()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics without Metrics: %d, want 404", rec.Code)
	}
	if n.count() != 0 {
		t.Errorf("GET /metrics was proxied")
	}
}
