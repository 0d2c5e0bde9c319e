package respserver

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcounter/dcounter/internal/service"
)

// TestRefusalsCountedOnce: a request refused before the service (a bad
// integer, no credentials) is counted once, through service.Recorder, and
// one that reaches the service is counted by the middleware alone.
func TestRefusalsCountedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	svc := service.Instrument(newFake(), service.NewOpMetrics(reg), "resp")
	_, addr := startServer(t, Config{Service: svc, Auth: testTokens})
	c := dial(t, addr)
	c.do("INCR a") // NOAUTH
	c.do("AUTH ops admin-token-0123456789")
	c.do("INCRBY a x") // bad integer
	c.do("INCR a")     // ok
	c.do("INCR ")      // wrong arity
	c.do("GET a")      // ok
	want := map[[2]string]float64{
		{"inc", "unauthorized"}: 1,
		{"inc", "bad_request"}:  2,
		{"inc", "ok"}:           1,
		{"get", "ok"}:           1,
	}
	got := map[[2]string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if v := m.GetCounter().GetValue(); v > 0 {
				got[[2]string{l["op"], l["outcome"]}] += v
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("counted %v, want %v", got, want)
	}
}
