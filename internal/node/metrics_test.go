package node

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/transport"
)

func TestBuildInfo(t *testing.T) {
	m := newMetrics()
	rec := httptest.NewRecorder()
	m.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `dcounter_build_info{goversion="` + runtime.Version() + `",version="` + Version() + `"} 1`
	if !strings.Contains(rec.Body.String(), "\n"+want+"\n") {
		t.Errorf("/metrics lacks %s:\n%s", want, grep(rec.Body.String(), "build_info"))
	}
}

// TestTransportMetrics: one series per rejection reason, whose sum is the
// transport's total, and help texts that explain rather than repeat the
// name.
func TestTransportMetrics(t *testing.T) {
	var s transport.Stats
	s.FramesSent, s.FramesReceived, s.Dropped, s.DialFailures = 10, 9, 2, 1
	s.RejectedBy[transport.RejectWrongCluster] = 3
	s.RejectedBy[transport.RejectFrameTooLarge] = 1
	s.Rejected = 4
	reg := prometheus.NewRegistry()
	reg.MustRegister(transportCollector(func() transport.Stats { return s }))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		"dcounter_transport_frames_sent_total 10",
		"dcounter_transport_frames_received_total 9",
		"dcounter_transport_dropped_total 2",
		"dcounter_transport_dial_failures_total 1",
		`dcounter_transport_rejected_total{reason="wrong_cluster"} 3`,
		`dcounter_transport_rejected_total{reason="frame_too_large"} 1`,
		`dcounter_transport_rejected_total{reason="auth"} 0`,
		`dcounter_transport_rejected_total{reason="too_many_connections"} 0`,
	} {
		if !strings.Contains(text, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(text, "\ndcounter_transport_rejected_total{"); n != int(transport.NumRejectReasons) {
		t.Errorf("%d rejection series, want one per reason (%d)", n, transport.NumRejectReasons)
	}
	for _, l := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(l, "# HELP "); ok && strings.HasPrefix(name, "dcounter_transport_") {
			name, help, _ := strings.Cut(name, " ")
			if len(help) < 40 || strings.Contains(help, strings.TrimPrefix(name, "dcounter_transport_")) {
				t.Errorf("help of %s: %q", name, help)
			}
		}
	}
}

// lockedBuffer is a log destination safe for the node's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestMemberBackFromSuspectIsLogged: a member cut off long enough to be
// suspect, but not dead, is logged alive again when it is heard from, and
// the JSON log names it by its hex replica ID.
func TestMemberBackFromSuspectIsLogged(t *testing.T) {
	var logs lockedBuffer
	c := startMemClusterWith(t, make([]time.Duration, 3), func(cfg *Config) {
		if cfg.Name == "n1" {
			cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	})
	c.waitMembers()
	n3 := c.nodes[2]
	stateOf := func() membership.State {
		c.nodes[0].mu.Lock()
		defer c.nodes[0].mu.Unlock()
		m, _ := c.nodes[0].members.Get(n3.ID())
		return m.State
	}
	c.net.Partition(c.addrs[:2], c.addrs[2:])
	c.runUntil(5*time.Second, func() error {
		if st := stateOf(); st != membership.Suspect {
			return fmt.Errorf("n1 sees n3 %s, want suspect", st)
		}
		return nil
	})
	c.net.Partition()
	// The node's own replica and the member's ID, both as hex strings.
	want := []string{`"msg":"member alive again"`, fmt.Sprintf(`"replica":"%s"`, c.nodes[0].ID()),
		fmt.Sprintf(`"member":"n3","id":"%s"`, n3.ID()), `"was":"suspect"`}
	c.runUntil(5*time.Second, func() error {
		for _, l := range strings.Split(logs.String(), "\n") {
			found := true
			for _, w := range want {
				found = found && strings.Contains(l, w)
			}
			if found {
				return nil
			}
		}
		return fmt.Errorf("n1 has logged no line with all of %s:\n%s", want, grep(logs.String(), "member"))
	})
}
