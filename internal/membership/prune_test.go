package membership

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

func TestPruneForgetsAndRemembers(t *testing.T) {
	const h = time.Hour
	l := New(selfMember(), t0)
	l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 5, 10, Alive), wm(3, "b", "10.0.0.3", 5, 10, Alive)}, t0)
	l.HeardFrom("10.0.0.2:7946", t0)
	l.ObserveClock(2, "", t0.UnixMilli(), t0, 0)
	l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 5, 11, Left)}, t1)

	if p := l.Prune(t1.Add(h-time.Millisecond), h); len(p) != 0 {
		t.Fatalf("pruned %v before the horizon", p)
	}
	p := l.Prune(t1.Add(h), h)
	if len(p) != 1 || p[0].ID != 2 {
		t.Fatalf("pruned %v, want a", p)
	}
	if _, ok := l.Get(2); ok || l.lastView[2] != (time.Time{}) || l.clocks[2] != nil || l.Len() != 2 {
		t.Fatalf("a pruned but state remains: len %d, lastView %v, clocks %v", l.Len(), l.lastView, l.clocks)
	}
	now := t1.Add(h + time.Second)
	// A peer that has not pruned it yet gossips it, as it left or as it
	// was before: nothing newer than what we forgot comes back.
	for _, w := range []wire.Member{wm(2, "a", "10.0.0.2", 5, 11, Left), wm(2, "a", "10.0.0.2", 5, 10, Alive), wm(2, "a", "10.0.0.2", 4, 99, Alive)} {
		if added, _ := l.Merge([]wire.Member{w}, now); len(added) != 0 {
			t.Fatalf("%+v came back: %v", w, added)
		}
	}
	// Newer but gone anyway (it came back and left again, and we missed
	// it): still not a member.
	if added, _ := l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 6, 1, Left)}, now); len(added) != 0 {
		t.Fatalf("a newer left entry came back: %v", added)
	}
	// Back for real: a new incarnation, alive.
	added, _ := l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 7, 0, Alive)}, now)
	if len(added) != 1 || added[0].State != Alive || l.Forgotten() != 0 {
		t.Fatalf("a returning member was not let in: %v, forgotten %d", added, l.Forgotten())
	}
}

func TestPruneDeadMemberAndForgetAfterSecondHorizon(t *testing.T) {
	const h = time.Minute
	l := New(selfMember(), t0)
	l.Merge([]wire.Member{wm(3, "b", "10.0.0.3", 5, 10, Dead)}, t0)
	if p := l.Prune(t0.Add(h), h); len(p) != 1 || l.Forgotten() != 1 {
		t.Fatalf("pruned %v, forgotten %d", p, l.Forgotten())
	}
	// Same heartbeat from the member itself would be no news; a higher one
	// is: a member only marked dead (cut off, frozen) that speaks again.
	if added, _ := l.Merge([]wire.Member{wm(3, "b", "10.0.0.3", 5, 10, Alive)}, t0.Add(h+time.Second)); len(added) != 0 {
		t.Fatalf("stale entry came back: %v", added)
	}
	l.Prune(t0.Add(2*h-time.Millisecond), h)
	if l.Forgotten() != 1 {
		t.Fatal("forgot the pruned member before a second horizon")
	}
	l.Prune(t0.Add(2*h), h)
	if l.Forgotten() != 0 {
		t.Fatal("the pruned member is remembered forever")
	}
	if added, _ := l.Merge([]wire.Member{wm(3, "b", "10.0.0.3", 5, 11, Alive)}, t0.Add(2*h)); len(added) != 1 {
		t.Fatalf("a member that speaks again was not let in: %v", added)
	}
}

// A wall clock a day off changes nothing: the horizon is measured on each
// node's own clock from when it saw the member go.
func TestPruneIgnoresWallClockOffsets(t *testing.T) {
	const h = time.Hour
	s := newSim(t, 11)
	s.horizon = h
	s.skew = map[string]time.Duration{"n2": 24 * time.Hour, "n3": -24 * time.Hour}
	all := s.cluster(4)
	s.enqueue("n4", s.engines["n4"].Leave(s.at("n4")))
	s.down["n4"] = true
	s.deliver()
	live := without(all, "n4")
	if err := s.sees(live, []string{"n4"}, Left); err != nil {
		t.Fatal(err)
	}
	s.run(h - time.Minute)
	if err := s.sees(live, []string{"n4"}, Left); err != nil {
		t.Fatalf("pruned before the horizon: %v", err)
	}
	s.run(2 * time.Minute)
	for _, a := range live {
		if _, ok := s.engines[a].List().Get(4); ok {
			t.Fatalf("%s still lists n4 after the horizon", a)
		}
	}
}

// checkOnlyLive fails unless every node in observers holds exactly the
// members in live, in its list and in every per-member map.
func checkOnlyLive(s *sim, observers []string, live map[crdt.ReplicaID]bool) error {
	for _, o := range observers {
		l := s.engines[o].List()
		for id, m := range l.members {
			if !live[id] {
				return fmt.Errorf("%s still lists %v (%v, down since %v)", o, id, m.State, m.Down)
			}
		}
		for id := range l.lastView {
			if !live[id] {
				return fmt.Errorf("%s keeps a witness time for %v", o, id)
			}
		}
		for id := range l.clocks {
			if !live[id] {
				return fmt.Errorf("%s keeps a clock sample for %v", o, id)
			}
		}
		if l.Len() != len(live) {
			return fmt.Errorf("%s lists %d members, want %d", o, l.Len(), len(live))
		}
	}
	return nil
}

// 1,000 replicas join and go (half say goodbye, half crash) in waves.
// After the horizon every node holds its live members only; a node that
// saw the departures late (it was frozen) gossips them for a while after
// the others pruned them, and they do not come back; a pruned replica that
// restarts rejoins.
func TestPrune1000DepartedReplicas(t *testing.T) {
	const (
		horizon = 5 * time.Minute
		waves   = 20
		perWave = 50
	)
	s := newSim(t, 12)
	s.horizon, s.noCodec = horizon, true
	core := s.cluster(5)
	live := map[crdt.ReplicaID]bool{}
	for i := 1; i <= 5; i++ {
		live[crdt.ReplicaID(i)] = true
	}
	next := 1000
	for w := 0; w < waves; w++ {
		if w == waves-2 {
			// n5 misses the last two waves' departures.
			s.frozen["n5"] = true
		}
		var wave []string
		for i := 0; i < perWave; i++ {
			next++
			a := fmt.Sprintf("t%d", next)
			s.add(a, crdt.ReplicaID(next), 1, core[i%4])
			wave = append(wave, a)
		}
		s.run(time.Second)
		for i, a := range wave {
			if i%2 == 0 {
				s.enqueue(a, s.engines[a].Leave(s.at(a)))
			}
			s.down[a] = true
		}
		s.deliver()
		s.run(4 * time.Second)
	}
	s.run(20 * time.Second)
	s.thaw("n5")
	// Everyone has seen every departure; n5 saw the last ones ~30s late.
	if n := s.engines["n1"].List().Len(); n != 5+waves*perWave {
		t.Fatalf("n1 lists %d members before the horizon, want %d", n, 5+waves*perWave)
	}
	early := core[:4]
	// A horizon after each saw the last departure (detection takes a few
	// seconds, more for a node that was just told otherwise by n5).
	s.runUntil(horizon+time.Minute, func() error { return checkOnlyLive(s, early, live) })
	// Until n5 prunes its late departures too, it gossips them to the
	// others every tick: none comes back.
	for s.engines["n5"].List().Len() != len(live) {
		s.run(s.tick)
		if err := checkOnlyLive(s, early, live); err != nil {
			t.Fatalf("resurrected by gossip: %v", err)
		}
		if s.now.Sub(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) > 24*time.Hour {
			t.Fatal("n5 never pruned")
		}
	}
	if err := checkOnlyLive(s, core, live); err != nil {
		t.Fatal(err)
	}
	if err := s.sees(core, core, Alive); err != nil {
		t.Fatal(err)
	}
	// A pruned replica restarts (a higher incarnation) and rejoins.
	s.add("t1001", 1001, 2, "n3")
	live[1001] = true
	s.runUntil(5*time.Second, func() error { return s.sees(core, []string{"t1001"}, Alive) })
	// And after another horizon nothing is remembered of the others.
	s.run(horizon + time.Minute)
	for _, a := range core {
		if f := s.engines[a].List().Forgotten(); f != 0 {
			t.Fatalf("%s still remembers %d pruned members", a, f)
		}
	}
	if err := checkOnlyLive(s, append(slices.Clone(core), "t1001"), live); err != nil {
		t.Fatal(err)
	}
}
