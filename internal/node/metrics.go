package node

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/transport"
	"github.com/dcounter/dcounter/internal/wire"
)

// metrics are a node's Prometheus metrics, in a registry of its own.
type metrics struct {
	ops       *prometheus.CounterVec
	messages  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	sendFails prometheus.Counter
	merged    *prometheus.CounterVec
	fsync     prometheus.Histogram
	reg       *prometheus.Registry
	handler   http.Handler
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcounter_operations_total",
			Help: "Client operations by op (get, inc, dec), key type (default, named) and outcome (ok, bad_request, unavailable).",
		}, []string{"op", "key_type", "outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcounter_gossip_messages_total",
			Help: "Gossip messages by type and direction (in, out).",
		}, []string{"type", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcounter_gossip_bytes_total",
			Help: "Encoded gossip message bytes by type and direction (in, out).",
		}, []string{"type", "direction"}),
		sendFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dcounter_gossip_send_failures_total",
			Help: "Messages the transport refused to queue (peer queue full, transport closed).",
		}),
		merged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcounter_merged_entries_total",
			Help: "Remote entries that changed this replica, by how they came: delta (eager dissemination) or repair (anti-entropy).",
		}, []string{"via"}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dcounter_wal_fsync_duration_seconds",
			Help:    "Write-ahead log fsync latency.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	m.reg.MustRegister(m.ops, m.messages, m.bytes, m.sendFails, m.merged, m.fsync,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return m
}

// attach registers the collectors that read n's state, transport and log.
func (m *metrics) attach(n *Node) {
	reg := m.reg

	members := prometheus.NewDesc("dcounter_members", "Members by state, as this node sees them (itself included).", []string{"state"}, nil)
	reg.MustRegister(collectorFunc{
		desc: []*prometheus.Desc{members},
		collect: func(ch chan<- prometheus.Metric) {
			counts := map[membership.State]int{}
			n.mu.Lock()
			for _, mb := range n.members.Members() {
				counts[mb.State]++
			}
			n.mu.Unlock()
			for _, st := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
				ch <- prometheus.MustNewConstMetric(members, prometheus.GaugeValue, float64(counts[st]), st.String())
			}
		},
	})
	// One series per live member (bounded by the member list), plus the
	// largest, for an alert that does not need to know member names.
	offset := prometheus.NewDesc("dcounter_member_clock_offset_seconds",
		"Estimated wall-clock offset of each alive or suspect member (its clock minus ours), from the times on member messages; a lower bound off by at most the one-way delay. Informational only.", []string{"member"}, nil)
	maxOffset := prometheus.NewDesc("dcounter_member_clock_offset_max_seconds",
		"Largest absolute estimated wall-clock offset of any alive or suspect member (0 when none is known).", nil, nil)
	reg.MustRegister(collectorFunc{
		desc: []*prometheus.Desc{offset, maxOffset},
		collect: func(ch chan<- prometheus.Metric) {
			n.mu.Lock()
			offs := n.members.ClockOffsets()
			names := make(map[crdt.ReplicaID]string, len(offs))
			for id := range offs {
				m, _ := n.members.Get(id)
				names[id] = m.Name
			}
			n.mu.Unlock()
			var worst time.Duration
			seen := map[string]bool{}
			for id, d := range offs {
				name := names[id]
				if seen[name] {
					name += "/" + id.String() // two members of one name: keep the series apart
				}
				seen[name] = true
				ch <- prometheus.MustNewConstMetric(offset, prometheus.GaugeValue, d.Seconds(), name)
				worst = max(worst, d, -d)
			}
			ch <- prometheus.MustNewConstMetric(maxOffset, prometheus.GaugeValue, worst.Seconds())
		},
	})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dcounter_keys", Help: "Counters (keys) in the keyspace.",
	}, func() float64 { n.mu.Lock(); defer n.mu.Unlock(); return float64(n.ks.Len()) }))
	if tcp, ok := n.ep.(*transport.TCP); ok {
		for name, f := range map[string]func(transport.Stats) uint64{
			"dcounter_transport_frames_sent_total":     func(s transport.Stats) uint64 { return uint64(s.FramesSent) },
			"dcounter_transport_frames_received_total": func(s transport.Stats) uint64 { return uint64(s.FramesReceived) },
			"dcounter_transport_dropped_total":         func(s transport.Stats) uint64 { return uint64(s.Dropped) },
			"dcounter_transport_rejected_total":        func(s transport.Stats) uint64 { return uint64(s.Rejected) },
			"dcounter_transport_dial_failures_total":   func(s transport.Stats) uint64 { return uint64(s.DialFailures) },
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "Transport " + name[len("dcounter_transport_"):] + "."},
				func() float64 { return float64(f(tcp.Stats())) }))
		}
	}
	if n.wal != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dcounter_wal_records_total", Help: "Write-ahead log records written.",
		}, func() float64 { return float64(n.wal.Stats().Records) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dcounter_wal_bytes_total", Help: "Write-ahead log bytes written.",
		}, func() float64 { return float64(n.wal.Stats().Bytes) }))
	}
}

// collectorFunc is a prometheus.Collector made of two functions.
type collectorFunc struct {
	desc    []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.desc {
		ch <- d
	}
}
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func (m *metrics) op(op, key string, err error) {
	kt := "named"
	if key == crdt.DefaultKey {
		kt = "default"
	}
	outcome := "ok"
	if err != nil {
		outcome = "bad_request"
		if api.StatusOf(err) == http.StatusServiceUnavailable {
			outcome = "unavailable"
		}
	}
	m.ops.WithLabelValues(op, kt, outcome).Inc()
}

func (m *metrics) message(t wire.Type, direction string, size int) {
	m.messages.WithLabelValues(t.String(), direction).Inc()
	m.bytes.WithLabelValues(t.String(), direction).Add(float64(size))
}

func (m *metrics) observeSync(d time.Duration) { m.fsync.Observe(d.Seconds()) }
