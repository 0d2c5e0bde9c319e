package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/datadir"
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
