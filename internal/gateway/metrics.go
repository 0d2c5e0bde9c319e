package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  prometheus.Counter
	nodes    *prometheus.GaugeVec
	handler  http.Handler
	// Resolved children for the hot path (label lookups hash every time).
	latencyRead, latencyWrite prometheus.Observer
	outcomes                  sync.Map // "kind/outcome" → prometheus.Counter
}

// observe records one proxied request.
func (m *Metrics) observe(write bool, outcome string, took time.Duration) {
	kind, lat := "read", m.latencyRead
	if write {
		kind, lat = "write", m.latencyWrite
	}
	lat.Observe(took.Seconds())
	c, ok := m.outcomes.Load(kind + "/" + outcome)
	if !ok {
		c, _ = m.outcomes.LoadOrStore(kind+"/"+outcome, m.requests.WithLabelValues(kind, outcome))
	}
	c.(prometheus.Counter).Inc()
}

// NewMetrics registers the gateway's metrics (and the Go runtime's) in a
// new registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcounter_gateway_requests_total",
			Help: "Proxied counter requests by kind (read, write) and outcome (ok, error, unavailable, unknown, bad_request, client_gone).",
		}, []string{"kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dcounter_gateway_request_duration_seconds",
			Help:    "Time to answer a proxied counter request, failovers included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"kind"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dcounter_gateway_retries_total",
			Help: "Requests tried again on another node because the first certainly did not receive them.",
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dcounter_gateway_nodes",
			Help: "Known nodes by health.",
		}, []string{"health"}),
	}
	reg.MustRegister(m.requests, m.latency, m.retries, m.nodes,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	m.latencyRead, m.latencyWrite = m.latency.WithLabelValues("read"), m.latency.WithLabelValues("write")
	return m
}
