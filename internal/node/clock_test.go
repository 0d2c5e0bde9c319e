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
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/wal"
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
	c := startMemCluster(t, []time.Duration{0, 48 * time.Hour, -48 * time.Hour})
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

// The idempotency window measures time remembered, not wall-clock
// arithmetic: across a crash and a restart with the clock stepped by any
// amount in either direction, a retry within the window is replayed.
func TestIdempotencyAcrossClockStepsAndRestarts(t *testing.T) {
	ctx := context.Background()
	base := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name          string
		before, after time.Duration // wall-clock offset before and after the restart
	}{
		{"clock 1h behind, corrected", -time.Hour, 0},
		{"clock stepped a day forward", 0, 24 * time.Hour},
		{"clock stepped a year back", 0, -365 * 24 * time.Hour},
		{"a month of downtime", 0, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(base)
			dir := t.TempDir()
			nd := startDiskNode(t, dir, func(c *Config) { c.Clock = clock.Offset{Clock: clk, D: tc.before} })
			if v, _, err := nd.Add(ctx, "c", 7, service.WriteOptions{Idem: "key-1"}); err != nil || v.Value != 7 {
				t.Fatalf("first write: %d, %v", v.Value, err)
			}
			clk.Advance(30 * time.Minute)
			crashed := crashCopy(t, dir) // kill -9
			nd.Shutdown(ctx)
			nd2 := startDiskNode(t, crashed, func(c *Config) { c.Clock = clock.Offset{Clock: clk, D: tc.after} })
			v, replayed, err := nd2.Add(ctx, "c", 7, service.WriteOptions{Idem: "key-1"})
			if err != nil || !replayed || v.Value != 7 {
				t.Fatalf("retry after the restart: value %d, replayed %v, err %v; want 7, replayed", v.Value, replayed, err)
			}
			if got, _ := nd2.Get(ctx, "c"); got.Value != 7 {
				t.Fatalf("counter %d after the retry, want 7", got.Value)
			}
		})
	}
}

// Remembered time runs while the node runs, continues across restarts, and
// the window expires on it.
func TestIdempotencyWindowCountsRunningTimeAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	dir := t.TempDir()
	mod := func(c *Config) { c.Clock = clk; c.SyncInterval = time.Hour }
	nd := startDiskNode(t, dir, mod)
	if _, _, err := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: "k"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(40 * time.Minute)
	if err := nd.Shutdown(ctx); err != nil { // a clean stop records 40 min
		t.Fatal(err)
	}
	clk.Advance(24 * time.Hour) // downtime: does not count
	nd = startDiskNode(t, dir, mod)
	clk.Advance(19 * time.Minute) // 59 min remembered
	if _, replayed, _ := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: "k"}); !replayed {
		t.Fatal("a retry 59 min into a 1 h window (plus a day of downtime) was not replayed")
	}
	clk.Advance(2 * time.Minute) // 61 min
	if v, replayed, _ := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: "k"}); replayed || v.Value != 2 {
		t.Fatalf("a retry after the window: replayed %v, value %d; want applied, 2", replayed, v.Value)
	}
}

// After a crash, remembered time resumes from the last record of it (the
// state file's periodic save, or the newest key), never from later: keys
// are remembered longer, never shorter.
func TestRememberedTimeAfterACrash(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	dir := t.TempDir()
	mod := func(c *Config) { c.Clock = clk; c.SyncInterval = time.Hour; c.SnapshotInterval = time.Hour }
	nd := startDiskNode(t, dir, mod)
	clk.Advance(10 * time.Minute)
	if _, _, err := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: "k"}); err != nil { // At = 10 min
		t.Fatal(err)
	}
	clk.Advance(30 * time.Minute) // nothing records this
	crashed := crashCopy(t, dir)
	nd.Shutdown(ctx)
	nd2 := startDiskNode(t, crashed, mod)
	if got := nd2.remembered(clk.Now()); got != (10 * time.Minute).Milliseconds() {
		t.Fatalf("remembered time after the crash %d ms, want %d (the key's)", got, (10 * time.Minute).Milliseconds())
	}
	clk.Advance(59 * time.Minute)
	if _, replayed, _ := nd2.Add(ctx, "c", 1, service.WriteOptions{Idem: "k"}); !replayed {
		t.Fatal("key forgotten early after a crash")
	}
}

func TestLegacyIdempotencyKeysKeptAFullWindow(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	n := &Node{cfg: Config{IdempotencyWindow: time.Hour}, clk: clk, log: testLogger(t), idem: map[string]wal.Idem{}}
	n.recoverIdems([]wal.Idem{
		{Key: "old", At: time.Unix(1_600_000_000, 0).UnixMilli(), Legacy: true}, // long "expired" by its wall clock
		{Key: "new", At: 5_000},
		{Key: "expired", At: 1_000 - time.Hour.Milliseconds()},
	}, 2_000)
	if n.rBase != 5_000 {
		t.Fatalf("remembered time %d, want 5000 (the newest key)", n.rBase)
	}
	if rec, ok := n.idem["old"]; !ok || rec.At != 5_000 || rec.Legacy {
		t.Fatalf("legacy key: %+v, %v; want kept from now", rec, ok)
	}
	if _, ok := n.idem["expired"]; ok {
		t.Fatal("a key past its window was kept")
	}
	if len(n.idemOrder) != 2 || n.idemOrder[0].at > n.idemOrder[1].at {
		t.Fatalf("expiry order %+v", n.idemOrder)
	}
}
