package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/transport"
	"github.com/dcounter/dcounter/internal/wire"
)

// Incarnations count starts; the clock, however wrong or corrected, has no
// say in them.
func TestIncarnationCountsStartsWhateverTheClock(t *testing.T) {
	dir := t.TempDir()
	base := time.Unix(1_700_000_000, 0)
	start := func(at time.Time) uint64 {
		t.Helper()
		n, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", DataDir: dir, Clock: clock.NewFake(at), Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		inc := n.members.Self().Incarnation
		if err := n.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return inc
	}
	for i, at := range []time.Time{
		base.Add(48 * time.Hour), // a clock two days ahead…
		base,                     // …corrected
		base.Add(-48 * time.Hour),
		base.Add(-100 * time.Second),
		base.Add(365 * 24 * time.Hour),
	} {
		if got, want := start(at), uint64(i+1); got != want {
			t.Fatalf("start %d (clock at %v): incarnation %d, want %d", i+1, at, got, want)
		}
	}

	// A data dir from when incarnations were start times in milliseconds
	// keeps counting from there.
	d, err := datadir.Open(dir, "dcounter")
	if err != nil {
		t.Fatal(err)
	}
	old := uint64(base.Add(48 * time.Hour).UnixMilli())
	if err := d.SetState(datadir.State{Clean: true, Fsync: "always", Incarnation: old}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got := start(base); got != old+1 {
		t.Fatalf("after a millisecond-sized incarnation %d: %d, want %d", old, got, old+1)
	}
}

func TestInMemoryNodeStartsAtIncarnationOne(t *testing.T) {
	n, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", Clock: clock.NewFake(time.Unix(1_700_000_000, 0)), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if got := n.members.Self().Incarnation; got != 1 {
		t.Fatalf("incarnation %d, want 1", got)
	}
}

// An incarnation raised to refute a rumour is durable before it is used, so
// the next start outgrows it even after a crash.
func TestRefutedIncarnationIsKept(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	n, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", DataDir: dir, Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	self := n.members.Self()
	rumour := wire.Member{ID: uint64(self.ID), Name: self.Name, GossipAddr: self.GossipAddr, HTTPAddr: self.HTTPAddr,
		Incarnation: self.Incarnation + 5, Heartbeat: 1, State: 2} // "dead", five incarnations on
	msg, err := wire.Encode("dcounter", &wire.Members{Members: []wire.Member{rumour}})
	if err != nil {
		t.Fatal(err)
	}
	n.receive("10.0.0.9:7946", msg)
	if got := n.members.Self().Incarnation; got != self.Incarnation+6 {
		t.Fatalf("refuted to %d, want %d", got, self.Incarnation+6)
	}
	// Read the state a crash right now would leave behind.
	b, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	var st datadir.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Incarnation != self.Incarnation+6 || st.Clean {
		t.Fatalf("durable state %+v after refuting, want incarnation %d, not clean", st, self.Incarnation+6)
	}
	n.Shutdown(context.Background())
	n2, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", DataDir: dir, Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown(context.Background())
	if got := n2.members.Self().Incarnation; got != self.Incarnation+7 {
		t.Fatalf("next start at incarnation %d, want %d", got, self.Incarnation+7)
	}
}

// newSkewedCluster is newMemCluster with each node's wall clock shifted by
// skews[i].
func newSkewedCluster(t *testing.T, skews []time.Duration) *memCluster {
	t.Helper()
	c := &memCluster{t: t, clk: clock.NewFake(time.Unix(1_700_000_000, 0))}
	c.net = transport.NewMemNetwork(c.clk, 1)
	for i, d := range skews {
		addr := fmt.Sprintf("10.0.0.%d:7946", i+1)
		cfg := Config{
			Name: fmt.Sprintf("n%d", i+1), Clock: clock.Offset{Clock: c.clk, D: d}, Logger: testLogger(t),
			Transport: func(h transport.Handler) (Endpoint, error) { return c.net.Endpoint(addr, h), nil },
		}
		if i > 0 {
			cfg.Join = []string{c.addrs[0]}
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

// allAlive checks that every node lists every node, alive.
func (c *memCluster) allAlive() error {
	for _, nd := range c.nodes {
		nd.mu.Lock()
		ms := nd.members.Members()
		nd.mu.Unlock()
		alive := 0
		for _, m := range ms {
			if m.State == membership.Alive {
				alive++
			}
		}
		if alive != len(c.nodes) {
			return fmt.Errorf("%s sees %d of %d members alive: %+v", nd.cfg.Name, alive, len(c.nodes), ms)
		}
	}
	return nil
}

func TestSkewedClocksAreFullMembersAndReported(t *testing.T) {
	c := newSkewedCluster(t, []time.Duration{0, 48 * time.Hour, -48 * time.Hour})
	c.runUntil(10*time.Second, c.allAlive)
	// Still all alive a while later: nothing judges members by their clocks.
	c.advance(5 * time.Second)
	if err := c.allAlive(); err != nil {
		t.Fatal(err)
	}
	// n1 measures n2 two days ahead and n3 two days behind (give or take
	// the in-memory network's delay).
	c.runUntil(5*time.Second, func() error {
		n1 := c.nodes[0]
		n1.mu.Lock()
		offs := n1.members.ClockOffsets()
		n1.mu.Unlock()
		want := map[crdt.ReplicaID]time.Duration{c.nodes[1].ID(): 48 * time.Hour, c.nodes[2].ID(): -48 * time.Hour}
		for id, w := range want {
			got, ok := offs[id]
			if !ok || got > w || got < w-time.Second {
				return fmt.Errorf("offset of %v: %v (known %v), want about %v", id, got, ok, w)
			}
		}
		return nil
	})
	body := scrape(t, c.nodes[0])
	for _, want := range []string{
		`dcounter_member_clock_offset_seconds{member="n2"} 1727`, // 172799.x or 172800
		`dcounter_member_clock_offset_seconds{member="n3"} -172`,
		`dcounter_member_clock_offset_max_seconds 172`,
	} {
		if !strings.Contains(body, want) && !strings.Contains(body, strings.Replace(want, "1727", "172800", 1)) {
			t.Errorf("metrics lack %q:\n%s", want, grep(body, "clock_offset"))
		}
	}
}

func scrape(t *testing.T, n *Node) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.metrics.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
