package membership

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// sim runs Engines on a simulated network and clock: deterministic, no
// goroutines. Messages go through the wire codec and are delivered in the
// order sent, after every engine's tick.
type sim struct {
	t       *testing.T
	now     time.Time
	tick    time.Duration
	engines map[string]*Engine
	addrs   []string // sorted
	skew    map[string]time.Duration
	down    map[string]bool // crashed: neither ticks nor receives
	frozen  map[string]bool // stopped: neither ticks nor receives; messages wait
	held    []simMsg
	queue   []simMsg
	events  map[string][]Events
	trace   []string
	seed    uint64
	// horizon is the engines' pruning horizon (0: the default).
	horizon time.Duration
	// noCodec hands messages over as they are, skipping the wire codec,
	// for simulations too large to encode every message of.
	noCodec bool
}

type simMsg struct {
	from, to string
	payload  []byte
	msg      wire.Message // with noCodec
}

func newSim(t *testing.T, seed uint64) *sim {
	return &sim{
		t: t, now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), tick: 500 * time.Millisecond,
		engines: map[string]*Engine{}, skew: map[string]time.Duration{},
		down: map[string]bool{}, frozen: map[string]bool{}, events: map[string][]Events{}, seed: seed,
	}
}

// at is the wall clock of the node at addr.
func (s *sim) at(addr string) time.Time { return s.now.Add(s.skew[addr]) }

// add starts a node at addr (id, incarnation) and has it join through join.
func (s *sim) add(addr string, id crdt.ReplicaID, inc uint64, join ...string) *Engine {
	e := NewEngine(Config{
		Self:    Member{ID: id, Name: addr, GossipAddr: addr, HTTPAddr: addr + "0", Incarnation: inc},
		Rand:    rand.New(rand.NewPCG(s.seed, uint64(id))),
		Horizon: s.horizon,
	}, s.at(addr))
	s.engines[addr] = e
	delete(s.down, addr)
	if !slices.Contains(s.addrs, addr) {
		s.addrs = append(s.addrs, addr)
		slices.Sort(s.addrs)
	}
	s.enqueue(addr, e.Join(join, s.at(addr)))
	s.deliver()
	return e
}

func (s *sim) enqueue(from string, out []Outbound) {
	for _, o := range out {
		if s.noCodec {
			s.queue = append(s.queue, simMsg{from: from, to: o.To, msg: o.Msg})
			continue
		}
		b, err := wire.Encode("sim", o.Msg)
		if err != nil {
			s.t.Fatal(err)
		}
		s.queue = append(s.queue, simMsg{from, o.To, b, nil})
		s.trace = append(s.trace, fmt.Sprintf("%v %s→%s %v", s.now.Sub(time.Time{}), from, o.To, o.Msg.Type()))
	}
}

// deliver hands every queued message to its receiver, and what they answer,
// until nothing is left.
func (s *sim) deliver() {
	for i := 0; len(s.queue) > 0; i++ {
		if i > 100000 {
			s.t.Fatal("messages never stop")
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		switch {
		case s.down[m.to] || s.engines[m.to] == nil:
			continue
		case s.frozen[m.to]:
			s.held = append(s.held, m)
			continue
		}
		msg := m.msg
		if msg == nil {
			var err error
			if msg, err = wire.Decode("sim", m.payload); err != nil {
				s.t.Fatal(err)
			}
		}
		out, ev, ok := s.engines[m.to].Handle(m.from, msg, s.at(m.to))
		if !ok {
			s.t.Fatalf("%v not handled", msg.Type())
		}
		s.events[m.to] = append(s.events[m.to], ev)
		s.enqueue(m.to, out)
	}
}

// run advances the clock tick by tick for d.
func (s *sim) run(d time.Duration) {
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(s.tick)
		for _, a := range s.addrs {
			if s.down[a] || s.frozen[a] {
				continue
			}
			out, ev := s.engines[a].Tick(s.at(a))
			s.events[a] = append(s.events[a], ev)
			s.enqueue(a, out)
		}
		s.deliver()
	}
}

// runUntil runs tick by tick until cond holds, failing after limit.
func (s *sim) runUntil(limit time.Duration, cond func() error) time.Duration {
	s.t.Helper()
	start := s.now
	for {
		err := cond()
		if err == nil {
			return s.now.Sub(start)
		}
		if s.now.Sub(start) >= limit {
			s.t.Fatalf("after %v: %v", s.now.Sub(start), err)
		}
		s.run(s.tick)
	}
}

func (s *sim) thaw(addr string) {
	delete(s.frozen, addr)
	held := s.held
	s.held = nil
	s.queue = append(s.queue, held...)
	s.deliver()
}

// sees checks that every live observer sees each of names in state.
func (s *sim) sees(observers []string, names []string, st State) error {
	for _, o := range observers {
		for _, n := range names {
			if n == o {
				continue
			}
			var got *Member
			for _, m := range s.engines[o].List().Members() {
				if m.Name == n {
					got = &m
				}
			}
			if got == nil {
				return fmt.Errorf("%s does not know %s", o, n)
			}
			if got.State != st {
				return fmt.Errorf("%s sees %s %v, want %v", o, n, got.State, st)
			}
		}
	}
	return nil
}

func (s *sim) cluster(n int) []string {
	var addrs []string
	for i := 1; i <= n; i++ {
		a := fmt.Sprintf("n%d", i)
		var join []string
		if i > 1 {
			join = []string{"n1"}
		}
		s.add(a, crdt.ReplicaID(i), 1, join...)
		addrs = append(addrs, a)
	}
	return addrs
}

func without(all []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(a string) bool { return a == drop })
}

func TestEngineJoinSpreadsWithinARoundTrip(t *testing.T) {
	s := newSim(t, 1)
	all := s.cluster(5)
	// Join answers and announcements alone (no tick yet) tell everyone.
	if err := s.sees(all, all, Alive); err != nil {
		t.Fatal(err)
	}
	for _, a := range all[1:] {
		if !s.engines[a].Joined() {
			t.Fatalf("%s did not get its JoinAck", a)
		}
	}
	// And they stay alive: heartbeats flow.
	s.run(30 * time.Second)
	if err := s.sees(all, all, Alive); err != nil {
		t.Fatal(err)
	}
}

func TestEngineDetectsACrashAndTheRestart(t *testing.T) {
	s := newSim(t, 2)
	all := s.cluster(4)
	s.down["n3"] = true
	others := without(all, "n3")
	took := s.runUntil(10*time.Second, func() error { return s.sees(others, []string{"n3"}, Dead) })
	if took < 3*time.Second { // DeadAfter's default
		t.Fatalf("declared dead after %v, before DeadAfter", took)
	}
	// Restarted with a higher incarnation: alive again within a few
	// rounds of member gossip.
	s.add("n3", 3, 2, "n1")
	s.runUntil(2*time.Second, func() error { return s.sees(all, all, Alive) })
}

// A frozen node (SIGSTOP) blames nobody when it thaws: it knows it was the
// one not listening. The others declare it dead, and alive again when it
// speaks.
func TestEngineFrozenNodeBlamesNobody(t *testing.T) {
	s := newSim(t, 3)
	all := s.cluster(3)
	s.frozen["n2"] = true
	s.runUntil(10*time.Second, func() error { return s.sees([]string{"n1", "n3"}, []string{"n2"}, Dead) })
	s.run(10 * time.Second)
	s.thaw("n2")
	s.run(s.tick)
	for _, ev := range s.events["n2"] {
		for _, c := range ev.Changes {
			if c.To == Dead {
				t.Fatalf("the thawed node declared %s dead", c.Member.Name)
			}
		}
	}
	s.runUntil(5*time.Second, func() error { return s.sees(all, all, Alive) })
	// The way back is reported like the way down, for the owner to log.
	for _, name := range []string{"n1", "n3"} {
		back := false
		for _, ev := range s.events[name] {
			for _, c := range ev.Changes {
				back = back || (c.Member.Name == "n2" && c.From == Dead && c.To == Alive)
			}
		}
		if !back {
			t.Errorf("%s reported no change of n2 from dead to alive", name)
		}
	}
}

func TestEngineGoodbye(t *testing.T) {
	s := newSim(t, 4)
	all := s.cluster(3)
	s.enqueue("n2", s.engines["n2"].Leave(s.at("n2")))
	s.down["n2"] = true
	s.deliver()
	if err := s.sees([]string{"n1", "n3"}, []string{"n2"}, Left); err != nil {
		t.Fatal(err)
	}
	// Left is final for that incarnation: nobody suspects or gossips with it.
	s.run(10 * time.Second)
	if err := s.sees([]string{"n1", "n3"}, []string{"n2"}, Left); err != nil {
		t.Fatal(err)
	}
	if p := s.engines["n1"].List().Peers(); slices.Contains(p, "n2") {
		t.Fatalf("n1 still gossips with a member that left: %v", p)
	}
	// Back with a new incarnation: a member again.
	s.add("n2", 2, 2, "n3")
	s.runUntil(2*time.Second, func() error { return s.sees(all, all, Alive) })
}

// Clocks days apart in either direction change nothing: every node is a
// full member, and the offsets are reported.
func TestEngineSkewedClocks(t *testing.T) {
	s := newSim(t, 5)
	s.skew = map[string]time.Duration{"n2": 48 * time.Hour, "n3": -48 * time.Hour, "n4": 365 * 24 * time.Hour}
	all := s.cluster(4)
	// n5 was two days ahead under an older version, whose incarnations were
	// start times in milliseconds: its data dir counts on from there.
	s.skew["n5"] = 48 * time.Hour
	s.add("n5", 5, uint64(s.at("n5").UnixMilli())+1, "n3")
	all = append(all, "n5")
	if err := s.sees(all, all, Alive); err != nil {
		t.Fatal(err)
	}
	s.run(30 * time.Second)
	if err := s.sees(all, all, Alive); err != nil {
		t.Fatal(err)
	}
	offs := s.engines["n1"].List().ClockOffsets()
	for id, want := range map[crdt.ReplicaID]time.Duration{2: 48 * time.Hour, 3: -48 * time.Hour, 4: 365 * 24 * time.Hour} {
		if offs[id] != want {
			t.Errorf("n1 estimates n%d's offset at %v, want %v", id, offs[id], want)
		}
	}
	warned := map[string]int{}
	for _, ev := range s.events["n1"] {
		if ev.Clock != nil {
			warned[ev.Clock.Member.Name]++
		}
	}
	// Once each at first, then at most once a minute: in 30 s, once.
	if warned["n2"] != 1 || warned["n3"] != 1 || warned["n4"] != 1 || warned["n5"] != 1 || len(warned) != 4 {
		t.Errorf("clock warnings on n1: %v, want one each for n2, n3, n4, n5", warned)
	}
	// n2's clock is corrected with a restart: still a member, and the
	// offset shows the correction at once.
	s.skew["n2"] = 0
	s.add("n2", 2, 2, "n1")
	s.runUntil(2*time.Second, func() error { return s.sees(all, all, Alive) })
	if got := s.engines["n1"].List().ClockOffsets()[2]; got != 0 {
		t.Errorf("n2's corrected offset %v, want 0", got)
	}
}

func TestEngineReportsAnotherProcessWithOurID(t *testing.T) {
	s := newSim(t, 6)
	s.cluster(2)
	s.add("clone", 2, 7, "n1") // n2's replica ID at another address
	s.run(2 * time.Second)
	found := false
	for _, ev := range append(s.events["n2"], s.events["clone"]...) {
		if strings.Contains(ev.Conflict, "replica ID") {
			found = true
		}
	}
	if !found {
		t.Fatal("no conflict reported for two processes with one replica ID")
	}
}

func TestEngineRefutesARumour(t *testing.T) {
	s := newSim(t, 7)
	s.cluster(2)
	self := s.engines["n2"].List().Self()
	rumour := ToWire(self)
	rumour.State = uint8(Dead)
	out, ev, _ := s.engines["n2"].Handle("n1", &wire.Members{Members: []wire.Member{rumour}}, s.at("n2"))
	if !ev.Refuted || s.engines["n2"].List().Self().Incarnation != self.Incarnation+1 {
		t.Fatalf("events %+v, incarnation %d", ev, s.engines["n2"].List().Self().Incarnation)
	}
	if len(out) != 1 || out[0].Msg.Type() != wire.TypeJoinAck {
		t.Fatalf("no answer carrying the refutation: %+v", out)
	}
	if _, ev, _ = s.engines["n2"].Handle("n1", &wire.Members{Members: []wire.Member{rumour}}, s.at("n2")); ev.Refuted {
		t.Fatal("an old rumour refuted again")
	}
}

// The engine is deterministic: the same seed and inputs give the same
// messages.
func TestEngineIsDeterministic(t *testing.T) {
	run := func() []string {
		s := newSim(t, 42)
		s.cluster(5)
		s.down["n4"] = true
		s.run(10 * time.Second)
		return s.trace
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatal("two runs with one seed sent different messages")
	}
}
