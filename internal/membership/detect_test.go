package membership

import (
	"fmt"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// detectCluster is one node's list over n members ("m1" is self), driven by
// a fake time and fed views as if gossip delivered them.
type detectCluster struct {
	l   *List
	now time.Time
	hb  map[crdt.ReplicaID]uint64
	cfg DetectConfig
}

func newDetectCluster(n int) *detectCluster {
	now := time.Unix(1_700_000_000, 0)
	c := &detectCluster{now: now, hb: map[crdt.ReplicaID]uint64{}, cfg: DetectConfig{SuspectAfter: 1500 * time.Millisecond, DeadAfter: 3 * time.Second}}
	c.l = New(Member{ID: 1, Name: "m1", GossipAddr: "m1:1", Incarnation: 1}, now)
	var view []wire.Member
	for i := 2; i <= n; i++ {
		view = append(view, wire.Member{ID: uint64(i), Name: fmt.Sprintf("m%d", i), GossipAddr: fmt.Sprintf("m%d:1", i), Incarnation: 1})
	}
	c.l.Merge(view, now)
	return c
}

// tick advances 500ms: every member in alive beats and sends us its view
// (containing every alive member's heartbeat); then we run the detector.
func (c *detectCluster) tick(alive ...crdt.ReplicaID) []Change {
	c.now = c.now.Add(500 * time.Millisecond)
	var view []wire.Member
	for _, id := range alive {
		c.hb[id]++
		view = append(view, wire.Member{ID: uint64(id), GossipAddr: fmt.Sprintf("m%d:1", id), Incarnation: 1, Heartbeat: c.hb[id]})
	}
	c.l.Merge(view, c.now)
	for _, id := range alive {
		c.l.HeardFrom(fmt.Sprintf("m%d:1", id), c.now)
	}
	return c.l.Detect(c.now, c.cfg)
}

func (c *detectCluster) state(id crdt.ReplicaID) State { return c.l.members[id].State }

func TestKilledMemberIsSuspectThenDeadWithWitnesses(t *testing.T) {
	c := newDetectCluster(5)
	for i := 0; i < 4; i++ {
		c.tick(2, 3, 4, 5)
	}
	// m5 dies.
	var suspectAt, deadAt time.Duration
	start := c.now
	for i := 0; i < 20 && deadAt == 0; i++ {
		c.tick(2, 3, 4)
		switch c.state(5) {
		case Suspect:
			if suspectAt == 0 {
				suspectAt = c.now.Sub(start)
			}
		case Dead:
			deadAt = c.now.Sub(start)
		}
	}
	if suspectAt == 0 || deadAt == 0 {
		t.Fatalf("m5 never declared: suspect at %v, dead at %v", suspectAt, deadAt)
	}
	if suspectAt <= c.cfg.SuspectAfter || deadAt <= c.cfg.DeadAfter || deadAt > c.cfg.DeadAfter+time.Second {
		t.Fatalf("suspect at %v, dead at %v; want just after %v and %v", suspectAt, deadAt, c.cfg.SuspectAfter, c.cfg.DeadAfter)
	}
	for _, id := range []crdt.ReplicaID{2, 3, 4} {
		if c.state(id) != Alive {
			t.Fatalf("m%d is %v", id, c.state(id))
		}
	}
	if got := c.l.Peers(); len(got) != 3 {
		t.Fatalf("peers %v: a dead member is still a gossip target", got)
	}
	// m5 comes back (same incarnation, higher heartbeat): alive again.
	c.tick(2, 3, 4, 5)
	if c.state(5) != Alive {
		t.Fatalf("m5 heard again but %v", c.state(5))
	}
}

func TestIsolatedNodeDeclaresNobodyDead(t *testing.T) {
	c := newDetectCluster(5)
	c.tick(2, 3, 4, 5)
	for i := 0; i < 40; i++ { // 20 s of hearing nobody
		c.tick()
	}
	for id := crdt.ReplicaID(2); id <= 5; id++ {
		if c.state(id) == Dead {
			t.Fatalf("m%d declared dead by a node that heard from nobody", id)
		}
	}
}

func TestStalledDetectorBlamesNobody(t *testing.T) {
	c := newDetectCluster(5)
	c.tick(2, 3, 4, 5)
	// We freeze for 10 s (SIGSTOP, a huge GC pause): no ticks at all.
	c.now = c.now.Add(10 * time.Second)
	if ch := c.l.Detect(c.now, c.cfg); len(ch) != 0 {
		t.Fatalf("after our own stall: %v", ch)
	}
	c.tick(2, 3, 4, 5)
	for id := crdt.ReplicaID(2); id <= 5; id++ {
		if c.state(id) != Alive {
			t.Fatalf("m%d is %v after we resumed", id, c.state(id))
		}
	}
}

func TestTwoNodeClusterNeedsNoWitness(t *testing.T) {
	c := newDetectCluster(2)
	c.tick(2)
	for i := 0; i < 10; i++ {
		c.tick()
	}
	if c.state(2) != Dead {
		t.Fatalf("the only peer, silent for 5 s, is %v", c.state(2))
	}
}

func TestLeftIsNeverSuspected(t *testing.T) {
	c := newDetectCluster(3)
	c.tick(2, 3)
	c.l.Merge([]wire.Member{{ID: 3, GossipAddr: "m3:1", Incarnation: 1, Heartbeat: c.hb[3] + 1, State: uint8(Left)}}, c.now)
	for i := 0; i < 20; i++ {
		c.tick(2)
	}
	if c.state(3) != Left {
		t.Fatalf("a member that left is %v", c.state(3))
	}
	if got := c.l.Peers(); len(got) != 1 {
		t.Fatalf("peers %v include a member that left", got)
	}
}

func TestNewer(t *testing.T) {
	c := newDetectCluster(3)
	c.tick(2, 3)
	view := c.l.Wire()
	if c.l.Newer(view) {
		t.Fatal("our own view is newer than itself")
	}
	stale := append([]wire.Member(nil), view...)
	for i := range stale {
		if stale[i].ID == 2 {
			stale[i].Heartbeat--
		}
	}
	if !c.l.Newer(stale) || !c.l.Newer(view[:1]) {
		t.Fatal("a stale or partial view is not seen as older")
	}
}

func TestMinoritySideOfPartitionDeclaresTheOthersDead(t *testing.T) {
	c := newDetectCluster(5)
	c.tick(2, 3, 4, 5)
	for i := 0; i < 20; i++ { // only m2 is on our side
		c.tick(2)
	}
	for id := crdt.ReplicaID(3); id <= 5; id++ {
		if c.state(id) != Dead {
			t.Fatalf("m%d is %v after 10 s on the other side of a partition", id, c.state(id))
		}
	}
	if c.state(2) != Alive {
		t.Fatalf("m2 is %v", c.state(2))
	}
}

// TestSuspectHeardFromIsReportedBack: a suspect member whose heartbeat
// advances is alive again, and merge says so (the owner logs it).
func TestSuspectHeardFromIsReportedBack(t *testing.T) {
	c := newDetectCluster(3)
	for range 4 {
		c.tick(2, 3)
	}
	for i := 0; i < 10 && c.state(3) != Suspect; i++ {
		c.tick(2)
	}
	if c.state(3) != Suspect {
		t.Fatalf("m3 is %s, want suspect", c.state(3))
	}
	c.hb[3]++
	_, back, _ := c.l.merge([]wire.Member{{ID: 3, GossipAddr: "m3:1", Incarnation: 1, Heartbeat: c.hb[3]}}, c.now)
	if len(back) != 1 || back[0].Member.ID != 3 || back[0].From != Suspect || back[0].To != Alive {
		t.Fatalf("back %+v, want m3 from suspect to alive", back)
	}
	// Already alive: nothing more to report.
	c.hb[3]++
	if _, back, _ := c.l.merge([]wire.Member{{ID: 3, GossipAddr: "m3:1", Incarnation: 1, Heartbeat: c.hb[3]}}, c.now); len(back) != 0 {
		t.Errorf("back %+v for a member already alive", back)
	}
}
