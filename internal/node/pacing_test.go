package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
)

const testDeltaGap = 50 * time.Millisecond

// TestDeltaPushesArePaced: under a steady stream of writes a node pushes
// at most once per DeltaGap, however fast the writes come, and what it
// pushes still reaches the peer exactly.
func TestDeltaPushesArePaced(t *testing.T) {
	c := startMemClusterWith(t, make([]time.Duration, 2), func(cfg *Config) {
		cfg.SyncInterval = time.Hour // no anti-entropy: only deltas carry writes
		cfg.DeltaGap = testDeltaGap
	})
	c.waitMembers()
	n1 := c.nodes[0]
	deltas := func() float64 {
		var m dto.Metric
		if err := n1.metrics.messages.WithLabelValues("delta", "out").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	before := deltas()

	// One write a millisecond for 500 ms of fake time.
	const writes, period = 500, time.Millisecond
	ctx := context.Background()
	for i := 0; i < writes; i++ {
		if _, _, err := n1.Add(ctx, "k", 1, service.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		c.clk.Advance(period)
		settled(t, n1)
	}
	c.runUntil(10*time.Second, c.exact(map[string]int64{"k": writes}))

	// n1 has only its own news (hop 0) and one peer: a flush is one
	// message. Paced, 500 ms of writes take at most 500ms/DeltaGap + 2
	// flushes (the first after DeltaInterval, the last after the writes);
	// unpaced, one per DeltaInterval: 100.
	sent := deltas() - before
	if limit := float64(writes*period/testDeltaGap + 2); sent > limit {
		t.Fatalf("%v deltas pushed for %d writes over %v, want at most %v (one per DeltaGap %v)",
			sent, writes, writes*period, limit, testDeltaGap)
	}
	if sent < 2 {
		t.Fatalf("%v deltas pushed: the writes were not pushed eagerly", sent)
	}
}

// TestDeltaAfterQuietGoesOutAfterDeltaInterval: a change on a node that
// has pushed nothing for DeltaGap waits only DeltaInterval, not DeltaGap.
func TestDeltaAfterQuietGoesOutAfterDeltaInterval(t *testing.T) {
	c := startMemClusterWith(t, make([]time.Duration, 2), func(cfg *Config) {
		cfg.SyncInterval = time.Hour
		cfg.DeltaGap = testDeltaGap
	})
	c.waitMembers()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		c.advance(2 * testDeltaGap) // quiet
		if _, _, err := c.nodes[0].Add(ctx, "k", 1, service.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		// runUntil steps the fake clock 5 ms (DeltaInterval) at a time.
		if took := c.runUntil(10*time.Second, c.exact(map[string]int64{"k": int64(i)})); took >= testDeltaGap {
			t.Fatalf("write %d after a quiet spell reached the peer after %v of fake time, want less than DeltaGap %v", i, took, testDeltaGap)
		}
	}
}

// TestAutoDeltaGapGrowsWithTheCluster: by default the gap is half a
// DeltaInterval per peer, within [0, MaxAutoDeltaGap]; a set DeltaGap wins.
func TestAutoDeltaGapGrowsWithTheCluster(t *testing.T) {
	cfg := Config{DeltaInterval: 5 * time.Millisecond}
	for _, c := range []struct {
		peers int
		want  time.Duration
	}{
		{-1, 0}, {0, 0}, {1, 2500 * time.Microsecond}, {4, 10 * time.Millisecond},
		{19, 47500 * time.Microsecond}, {40, MaxAutoDeltaGap}, {1000, MaxAutoDeltaGap},
	} {
		if got := deltaGap(cfg, c.peers); got != c.want {
			t.Errorf("%d peers: gap %v, want %v", c.peers, got, c.want)
		}
	}
	cfg.DeltaGap = 30 * time.Millisecond
	if got := deltaGap(cfg, 19); got != cfg.DeltaGap {
		t.Errorf("set DeltaGap: gap %v, want %v", got, cfg.DeltaGap)
	}
}

// settled waits until a flush that came due on nd's fake clock has run, so
// that the test's next step sees its effect as a real clock would.
func settled(t *testing.T, nd *Node) {
	t.Helper()
	err := testutil.Poll(10*time.Second, func() error {
		nd.mu.Lock()
		defer nd.mu.Unlock()
		if nd.flushAt != nil && !nd.flushDue.After(nd.clk.Now()) {
			return fmt.Errorf("a flush due at %v has not run", nd.flushDue)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
