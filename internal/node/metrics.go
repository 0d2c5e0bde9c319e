package node

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/transport"
	"github.com/dcounter/dcounter/internal/wire"
)

// metrics are a node's Prometheus metrics, in a registry of its own.
type metrics struct {
	ops       *service.OpMetrics
	messages  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	sendFails prometheus.Counter
	merged    *prometheus.CounterVec
	fsync     prometheus.Histogram
	deletes   prometheus.Counter
	reg       *prometheus.Registry
	handler   http.Handler
	// byType holds the messages and bytes counters of every known type,
	// [0] in and [1] out: looking them up by label values would hash the
	// labels for every message.
	byType [2][wire.TypeMembers + 1]struct{ messages, bytes prometheus.Counter }
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
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
		deletes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dcounter_keys_deleted_total",
			Help: "Deletes this node took from clients (each writes a tombstone, whether or not the key was live here).",
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dcounter_wal_fsync_duration_seconds",
			Help:    "Write-ahead log fsync latency.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	m.ops = service.NewOpMetrics(m.reg)
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dcounter_build_info",
		Help:        "Always 1; its labels name the running binary's version and the Go release that built it.",
		ConstLabels: prometheus.Labels{"version": Version(), "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(build, m.messages, m.bytes, m.sendFails, m.merged, m.fsync, m.deletes,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	for d, direction := range []string{"in", "out"} {
		for t := wire.TypePush; t <= wire.TypeMembers; t++ {
			c := &m.byType[d][t]
			c.messages = m.messages.WithLabelValues(t.String(), direction)
			c.bytes = m.bytes.WithLabelValues(t.String(), direction)
		}
	}
	return m
}

// attach registers the collectors that read n's state, transport and log.
func (m *metrics) attach(n *Node) {
	reg := m.reg

	members := prometheus.NewDesc("dcounter_members", "Members by state, as this node sees them (itself included).", []string{"state"}, nil)
	forgotten := prometheus.NewDesc("dcounter_members_forgotten",
		"Members pruned after the member horizon whose last incarnation is still remembered (for one more horizon), so that gossip cannot bring them back.", nil, nil)
	reg.MustRegister(collectorFunc{
		desc: []*prometheus.Desc{members, forgotten},
		collect: func(ch chan<- prometheus.Metric) {
			counts := map[membership.State]int{}
			n.mu.Lock()
			for _, mb := range n.members.Members() {
				counts[mb.State]++
			}
			f := n.members.Forgotten()
			n.mu.Unlock()
			for _, st := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
				ch <- prometheus.MustNewConstMetric(members, prometheus.GaugeValue, float64(counts[st]), st.String())
			}
			ch <- prometheus.MustNewConstMetric(forgotten, prometheus.GaugeValue, float64(f))
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
	byState := prometheus.NewDesc("dcounter_keys_by_state",
		"Keys held by state: written (entries in the current generation; live unless expired and not yet reclaimed), tombstone (deleted or expired, kept until the reclaim horizon), expiring (written keys with a deadline, a subset of written).", []string{"state"}, nil)
	reclaim := map[string]*prometheus.Desc{
		"expired":   prometheus.NewDesc("dcounter_keys_expired_total", "Expired generations turned into tombstones by reclaim on this node.", nil, nil),
		"forgotten": prometheus.NewDesc("dcounter_keys_forgotten_total", "Tombstones forgotten after the reclaim horizon on this node.", nil, nil),
		"dropped":   prometheus.NewDesc("dcounter_generation_dropped_entries_total", "Entries dropped because their key moved to a newer generation (delete, expiry).", nil, nil),
		"bytes":     prometheus.NewDesc("dcounter_reclaimed_bytes_total", "Estimated memory freed by reclaim (expired entries and forgotten tombstones).", nil, nil),
	}
	reg.MustRegister(collectorFunc{
		desc: []*prometheus.Desc{byState, reclaim["expired"], reclaim["forgotten"], reclaim["dropped"], reclaim["bytes"]},
		collect: func(ch chan<- prometheus.Metric) {
			n.mu.Lock()
			written, empty, expiring := n.ks.Counts()
			st := n.ks.Stats()
			n.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(written), "written")
			ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(empty), "tombstone")
			ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(expiring), "expiring")
			ch <- prometheus.MustNewConstMetric(reclaim["expired"], prometheus.CounterValue, float64(st.Expired))
			ch <- prometheus.MustNewConstMetric(reclaim["forgotten"], prometheus.CounterValue, float64(st.Forgotten))
			ch <- prometheus.MustNewConstMetric(reclaim["dropped"], prometheus.CounterValue, float64(st.DroppedEntries))
			ch <- prometheus.MustNewConstMetric(reclaim["bytes"], prometheus.CounterValue, float64(st.ReclaimedBytes))
		},
	})
	if tcp, ok := n.ep.(*transport.TCP); ok {
		reg.MustRegister(transportCollector(tcp.Stats))
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

// transportCollector exposes the transport's counters, read from one
// Stats snapshot per scrape so that the rejection series add up.
func transportCollector(stats func() transport.Stats) prometheus.Collector {
	sent := prometheus.NewDesc("dcounter_transport_frames_sent_total",
		"Message frames written to peers (handshakes excluded).", nil, nil)
	received := prometheus.NewDesc("dcounter_transport_frames_received_total",
		"Message frames received from peers and handed to gossip (handshakes excluded).", nil, nil)
	dropped := prometheus.NewDesc("dcounter_transport_dropped_total",
		"Messages never written: refused because the peer's queue was full or too many peers have queues, or discarded because the peer was unreachable, the write failed or the transport closed.", nil, nil)
	rejected := prometheus.NewDesc("dcounter_transport_rejected_total",
		"Connections refused or closed for misbehaving, on either side, by reason: auth (missing or unknown cluster key, forged hello or frame), wrong_cluster, version (another handshake version), handshake (malformed, missing or incomplete), frame_too_large, empty_frame, too_many_connections (inbound beyond the cap).", []string{"reason"}, nil)
	dialFailures := prometheus.NewDesc("dcounter_transport_dial_failures_total",
		"Outbound connection attempts that did not end in a completed handshake.", nil, nil)
	return collectorFunc{
		desc: []*prometheus.Desc{sent, received, dropped, rejected, dialFailures},
		collect: func(ch chan<- prometheus.Metric) {
			s := stats()
			ch <- prometheus.MustNewConstMetric(sent, prometheus.CounterValue, float64(s.FramesSent))
			ch <- prometheus.MustNewConstMetric(received, prometheus.CounterValue, float64(s.FramesReceived))
			ch <- prometheus.MustNewConstMetric(dropped, prometheus.CounterValue, float64(s.Dropped))
			for r, v := range s.RejectedBy {
				ch <- prometheus.MustNewConstMetric(rejected, prometheus.CounterValue, float64(v), transport.RejectReason(r).String())
			}
			ch <- prometheus.MustNewConstMetric(dialFailures, prometheus.CounterValue, float64(s.DialFailures))
		},
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

func (m *metrics) message(t wire.Type, direction string, size int) {
	d := 0
	if direction == "out" {
		d = 1
	}
	if int(t) < len(m.byType[d]) && m.byType[d][t].messages != nil {
		m.byType[d][t].messages.Inc()
		m.byType[d][t].bytes.Add(float64(size))
		return
	}
	m.messages.WithLabelValues(t.String(), direction).Inc()
	m.bytes.WithLabelValues(t.String(), direction).Add(float64(size))
}

func (m *metrics) observeSync(d time.Duration) { m.fsync.Observe(d.Seconds()) }
