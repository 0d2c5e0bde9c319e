package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
	"github.com/dcounter/dcounter/internal/transport"
)

// memCluster is a set of real Nodes on an in-memory network with a fake clock.
type memCluster struct {
	t     *testing.T
	clk   *clock.Fake
	net   *transport.MemNetwork
	nodes []*Node
	addrs []string
}

func newMemCluster(t *testing.T, n int) *memCluster {
	t.Helper()
	c := startMemCluster(t, make([]time.Duration, n))
	c.waitMembers()
	return c
}

// startMemCluster starts one node per entry of skews on an in-memory network
// and a shared fake clock, each node's wall clock shifted by its skew, every
// node after the first joining through the first. It does not wait for them.
func startMemCluster(t *testing.T, skews []time.Duration) *memCluster {
	t.Helper()
	return startMemClusterWith(t, skews, nil)
}

// startMemClusterWith is startMemCluster with each node's Config passed
// through configure (if not nil) before the node starts.
func startMemClusterWith(t *testing.T, skews []time.Duration, configure func(*Config)) *memCluster {
	t.Helper()
	c := &memCluster{t: t, clk: clock.NewFake(time.Unix(1_700_000_000, 0))}
	c.net = transport.NewMemNetwork(c.clk, 1)
	for i, d := range skews {
		addr := fmt.Sprintf("10.0.0.%d:7946", i+1)
		var clk clock.Clock = c.clk
		if d != 0 {
			clk = clock.Offset{Clock: c.clk, D: d}
		}
		cfg := Config{
			Name: fmt.Sprintf("n%d", i+1), Clock: clk, Logger: testLogger(t),
			Transport: func(h transport.Handler) (Endpoint, error) { return c.net.Endpoint(addr, h), nil },
		}
		if i > 0 {
			cfg.Join = []string{c.addrs[0]}
		}
		if configure != nil {
			configure(&cfg)
		}
		nd, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		c.nodes = append(c.nodes, nd)
		c.addrs = append(c.addrs, addr)
	}
	return c
}

// runUntil advances the fake clock in delta-interval steps until cond holds,
// failing after simulated seconds of fake time (or 30 s of real time).
func (c *memCluster) runUntil(simulated time.Duration, cond func() error) time.Duration {
	c.t.Helper()
	start := c.clk.Now()
	realDeadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return c.clk.Now().Sub(start)
		}
		if c.clk.Now().Sub(start) > simulated || time.Now().After(realDeadline) {
			c.t.Fatalf("after %v of simulated time: %v", c.clk.Now().Sub(start), err)
		}
		c.clk.Advance(5 * time.Millisecond)
		time.Sleep(time.Millisecond) // let delivery goroutines run; the condition is polled, not assumed
	}
}

// advance steps the fake clock by d in delta-interval steps.
func (c *memCluster) advance(d time.Duration) {
	for end := c.clk.Now().Add(d); c.clk.Now().Before(end); {
		c.clk.Advance(5 * time.Millisecond)
		time.Sleep(time.Millisecond) // let delivery goroutines run
	}
}

func (c *memCluster) exact(expected map[string]int64) func() error {
	return func() error {
		for _, nd := range c.nodes {
			for k, want := range expected {
				if got, _ := nd.Get(context.Background(), k); got.Value != want {
					return fmt.Errorf("%s: %s = %d, want %d", nd.cfg.Name, k, got.Value, want)
				}
			}
		}
		return nil
	}
}

func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t, slog.LevelWarn) }

func TestNodesConvergeOverFaultyNetworkAndPartition(t *testing.T) {
	c := newMemCluster(t, 6)
	c.net.SetLoss(0.15)
	c.net.SetDuplicate(0.1)
	c.net.SetDelay(time.Millisecond, 30*time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	expected := map[string]int64{}
	write := func(nodes []*Node) {
		nd := nodes[rng.IntN(len(nodes))]
		key := fmt.Sprintf("k%d", rng.IntN(7))
		delta := int64(rng.IntN(50) + 1)
		if rng.IntN(2) == 0 {
			delta = -delta
		}
		if _, _, err := nd.Add(context.Background(), key, delta, service.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		expected[key] += delta
	}
	for i := 0; i < 200; i++ {
		write(c.nodes)
		if i%10 == 0 {
			c.clk.Advance(5 * time.Millisecond)
		}
	}
	// Partition 3|3 with writes on both sides.
	c.net.Partition(c.addrs[:3], c.addrs[3:])
	for i := 0; i < 200; i++ {
		write(c.nodes[:3])
		write(c.nodes[3:])
		if i%10 == 0 {
			c.clk.Advance(5 * time.Millisecond)
		}
	}
	c.advance(3 * time.Second) // several sync rounds inside each side
	if c.exact(expected)() == nil {
		t.Fatal("exact everywhere during the partition: it cut nothing")
	}
	c.net.Heal()
	took := c.runUntil(30*time.Second, c.exact(expected))
	t.Logf("exact on all nodes %v (simulated) after healing", took)
}

func TestWriteValidation(t *testing.T) {
	c := newMemCluster(t, 1)
	nd := c.nodes[0]
	ctx := context.Background()
	if _, _, err := nd.Add(ctx, "k", 1<<62, service.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nd.Add(ctx, "k", 1<<62, service.WriteOptions{}); !errors.Is(err, crdt.ErrOverflow) {
		t.Fatalf("overflowing add: err = %v, want ErrOverflow", err)
	}
	if v, _ := nd.Get(ctx, "k"); v.Value != 1<<62 {
		t.Fatalf("refused write changed the value to %d", v.Value)
	}
	if _, _, err := nd.Add(ctx, "", 1, service.WriteOptions{}); !errors.Is(err, crdt.ErrBadKey) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestShutdownIsIdempotentAndRefusesWrites(t *testing.T) {
	c := newMemCluster(t, 1)
	nd := c.nodes[0]
	if err := nd.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := nd.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nd.Add(context.Background(), "k", 1, service.WriteOptions{}); err == nil {
		t.Fatal("write accepted after shutdown")
	}
	if ok, _ := nd.Health(context.Background()); ok {
		t.Fatal("healthy after shutdown")
	}
}

func TestAdvertisedHTTP(t *testing.T) {
	for _, tc := range []struct {
		bound, gossip, want string
	}{
		{"127.0.0.1:8080", "127.0.0.1:7946", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "node1:7946", "node1:8080"},
		{"[::]:8080", "10.0.0.5:7946", "10.0.0.5:8080"},
		{"10.1.1.1:9000", "node1:7946", "10.1.1.1:9000"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := advertisedHTTP(addr, tc.gossip); got != tc.want {
			t.Errorf("advertisedHTTP(%s, %s) = %s, want %s", tc.bound, tc.gossip, got, tc.want)
		}
	}
}

// TestConfigRefusesNegativeValues: a negative duration or count is an
// error naming the setting, never silently the default.
func TestConfigRefusesNegativeValues(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"sync-interval":   func(c *Config) { c.SyncInterval = -time.Second },
		"dead-after":      func(c *Config) { c.DeadAfter = -1 },
		"reclaim-horizon": func(c *Config) { c.ReclaimHorizon = -time.Hour },
		"fanout":          func(c *Config) { c.Fanout = -3 },
		"delta-gap":       func(c *Config) { c.DeltaGap = -time.Millisecond },
	} {
		c := Config{}
		mod(&c)
		err := c.setDefaults()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s negative: %v, want ErrConfig naming it", name, err)
		}
	}
	c := Config{DeltaGap: MaxDeltaGap + time.Millisecond}
	if err := c.setDefaults(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "delta-gap must be at most") {
		t.Errorf("delta-gap above MaxDeltaGap: %v, want ErrConfig naming it", err)
	}
	c = Config{DeltaGap: MaxDeltaGap}
	if err := c.setDefaults(); err != nil {
		t.Errorf("delta-gap of MaxDeltaGap: %v", err)
	}
	c = Config{}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.SyncInterval != DefaultSyncInterval || c.DeadAfter != DefaultDeadAfter || c.Fanout != DefaultFanout || c.ExpiryGrace != 2*DefaultMaxClockSkew ||
		c.DeltaInterval != DefaultDeltaInterval || c.DeltaGap != 0 {
		t.Fatalf("zero Config did not take the defaults: %+v", c)
	}
}

// TestRunStopsWhenItsContextEnds: Run blocks while the context lives and
// stops the node cleanly once it ends.
func TestRunStopsWhenItsContextEnds(t *testing.T) {
	nd, err := New(context.Background(), Config{Name: "r", GossipAddr: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nd.Run(ctx, 0) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before its context ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, err := nd.Add(context.Background(), "k", 1, service.WriteOptions{}); service.ClassOf(err) != service.ClassUnavailable {
		t.Fatalf("a write after Run returned: %v, want unavailable", err)
	}
}
