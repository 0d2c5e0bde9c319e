package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/joinaddr/joinaddrtest"
	"github.com/dcounter/dcounter/internal/testutil"
	"github.com/dcounter/dcounter/internal/transport"
)

// dnsCluster starts nodes at 10.0.0.i:7946 on an in-memory network, each
// configured by cfg(i).
type dnsCluster struct {
	*memCluster
	dns *joinaddrtest.Resolver
}

func newDNSCluster(t *testing.T) *dnsCluster {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	return &dnsCluster{memCluster: &memCluster{t: t, clk: clk, net: transport.NewMemNetwork(clk, 1)}, dns: &joinaddrtest.Resolver{}}
}

func (c *dnsCluster) start(i int, configure func(*Config)) (*Node, error) {
	addr := fmt.Sprintf("10.0.0.%d:7946", i)
	cfg := Config{
		Name: fmt.Sprintf("n%d", i), Clock: c.clk, Logger: testLogger(c.t), Resolver: c.dns,
		Transport: func(h transport.Handler) (Endpoint, error) { return c.net.Endpoint(addr, h), nil },
	}
	if configure != nil {
		configure(&cfg)
	}
	nd, err := New(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { nd.Shutdown(context.Background()) })
	c.nodes = append(c.nodes, nd)
	c.addrs = append(c.addrs, addr)
	return nd, nil
}

func (c *dnsCluster) mustStart(i int, configure func(*Config)) *Node {
	c.t.Helper()
	nd, err := c.start(i, configure)
	if err != nil {
		c.t.Fatal(err)
	}
	return nd
}

func (c *dnsCluster) allKnow(n int) func() error {
	return func() error {
		for _, nd := range c.nodes {
			if got := nd.memberCount(); got != n {
				return fmt.Errorf("%s knows %d members, want %d", nd.cfg.Name, got, n)
			}
		}
		return nil
	}
}

func joinDNS(cfg *Config) { cfg.Join = []string{"dns+dcounter.test:7946"} }

// A node joins through a dns+ name, skipping its own address in the
// records, and a member added to the records later is found by the next
// re-resolution, though it started a cluster of its own.
func TestJoinThroughDNSFindsMembersAddedLater(t *testing.T) {
	c := newDNSCluster(t)
	c.dns.SetHost("dcounter.test", "10.0.0.1")
	c.mustStart(1, joinDNS) // the name lists only itself: a new cluster
	c.dns.SetHost("dcounter.test", "10.0.0.1", "10.0.0.2")
	c.mustStart(2, joinDNS)
	c.runUntil(10*time.Second, c.allKnow(2))

	// n3 is not in the records yet and knows nobody: a cluster of its own.
	c.mustStart(3, nil)
	c.advance(5 * time.Second)
	if got := c.nodes[2].memberCount(); got != 1 {
		t.Fatalf("n3 knows %d members before its record exists", got)
	}
	c.dns.SetHost("dcounter.test", "10.0.0.1", "10.0.0.2", "10.0.0.3")
	took := c.runUntil(2*time.Minute, c.allKnow(3))
	if took > 35*time.Second {
		t.Fatalf("found the new record after %v; JoinInterval is 30s", took)
	}
	t.Logf("member added to the records found after %v (simulated)", took)
}

// Before the first join a name that does not resolve is a target that
// does not answer: without --bootstrap the node gives up at JoinTimeout,
// naming the spec; with it, it starts alone and joins the cluster once the
// name resolves.
func TestJoinDNSUnresolvableBeforeJoin(t *testing.T) {
	c := newDNSCluster(t)
	c.mustStart(1, nil)
	_, err := c.start(2, func(cfg *Config) { joinDNS(cfg); cfg.JoinTimeout = 200 * time.Millisecond })
	if !errors.Is(err, ErrJoin) || !strings.Contains(err.Error(), "dns+dcounter.test:7946") {
		t.Fatalf("err = %v, want ErrJoin naming the spec", err)
	}
	c.mustStart(3, func(cfg *Config) { joinDNS(cfg); cfg.JoinTimeout = 200 * time.Millisecond; cfg.Bootstrap = true })
	c.dns.SetHost("dcounter.test", "10.0.0.1", "10.0.0.3")
	c.runUntil(2*time.Minute, c.allKnow(2))
}

// A bad spec is refused at start, named.
func TestJoinBadSpec(t *testing.T) {
	c := newDNSCluster(t)
	_, err := c.start(1, func(cfg *Config) { cfg.Join = []string{"dns+nopport"} })
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"dns+nopport"`) {
		t.Fatalf("err = %v, want ErrConfig naming the spec", err)
	}
}

// After the first join, a name that stops resolving is logged at most once
// a minute and changes nothing; when every other member comes back at new
// addresses, the records bring the cluster together again.
func TestJoinDNSFailureRateLimitedAndReassembly(t *testing.T) {
	c := newDNSCluster(t)
	var warnings atomic.Int64
	c.dns.SetHost("dcounter.test", "10.0.0.1")
	c.mustStart(1, joinDNS)
	c.dns.SetHost("dcounter.test", "10.0.0.1", "10.0.0.2")
	c.mustStart(2, func(cfg *Config) {
		joinDNS(cfg)
		cfg.Logger = slog.New(testutil.CountingHandler(testLogger(t).Handler(), "does not resolve", &warnings))
	})
	c.runUntil(10*time.Second, c.allKnow(2))

	c.dns.SetHost("dcounter.test") // NXDOMAIN
	for end := c.clk.Now().Add(3*time.Minute + 30*time.Second); c.clk.Now().Before(end); {
		c.clk.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond) // let delivery goroutines run
	}
	if got := warnings.Load(); got < 3 || got > 4 {
		t.Fatalf("%d warnings in 3.5 minutes of a failing name; want one a minute", got)
	}
	if got := c.nodes[1].memberCount(); got != 2 {
		t.Fatalf("n2 knows %d members", got)
	}

	// n1 goes; a new pod comes up at a new address with a cluster of its
	// own; the records list it: n2 joins it.
	c.nodes[0].Shutdown(context.Background())
	c.nodes = c.nodes[1:]
	c.mustStart(4, nil)
	c.dns.SetHost("dcounter.test", "10.0.0.2", "10.0.0.4")
	c.runUntil(2*time.Minute, func() error {
		for _, nd := range c.nodes {
			nd.mu.Lock()
			got := len(nd.members.Peers())
			nd.mu.Unlock()
			if got != 1 {
				return fmt.Errorf("%s has %d live peers, want 1", nd.cfg.Name, got)
			}
		}
		return nil
	})
}
