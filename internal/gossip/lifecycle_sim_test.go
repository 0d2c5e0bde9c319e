package gossip

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

var lifecycleSeeds = flag.Int("lifecycle.seeds", 20, "random histories run by TestSimLifecycleHistories")

// oracle computes, from a history of operations alone, what every replica
// must report once they have converged: the documented semantics of
// deletes, expiry and reclaim, independently of the keyspace's code.
type oracle map[string]*oracleKey

type oracleKey struct {
	maxGen    uint64
	sums      map[uint64]int64 // generation → sum of its writes' deltas
	written   map[uint64]bool  // generation → has writes
	ttl       map[uint64]crdt.TTL
	reclaimed map[uint64]bool // generation → begun by reclaim (for the log)
	deadlines []int64         // every deadline ever set, for choosing a check time
}

func (o oracle) key(k string) *oracleKey {
	ok := o[k]
	if ok == nil {
		ok = &oracleKey{sums: map[uint64]int64{}, written: map[uint64]bool{}, ttl: map[uint64]crdt.TTL{}, reclaimed: map[uint64]bool{}}
		o[k] = ok
	}
	return ok
}

// write: a write belongs to the generation its writer assigned.
func (o oracle) write(k string, gen uint64, delta int64) {
	ok := o.key(k)
	ok.maxGen = max(ok.maxGen, gen)
	ok.sums[gen] += delta
	ok.written[gen] = true
}

// gen records a delete or an expired generation turned into a tombstone:
// both begin generation gen.
func (o oracle) gen(k string, gen uint64) {
	ok := o.key(k)
	ok.maxGen = max(ok.maxGen, gen)
}

// setTTL records a TTL operation (set or clear) on generation gen.
func (o oracle) setTTL(k string, gen uint64, t crdt.TTL) {
	ok := o.key(k)
	ok.maxGen = max(ok.maxGen, gen)
	ok.ttl[gen] = oracleJoinTTL(ok.ttl[gen], t)
	if t.Deadline != 0 {
		ok.deadlines = append(ok.deadlines, t.Deadline)
	}
}

// oracleJoinTTL: the higher version wins; between equal versions the
// earlier deadline, with none (0) the latest of all.
func oracleJoinTTL(a, b crdt.TTL) crdt.TTL {
	switch {
	case a.Ver > b.Ver:
		return a
	case b.Ver > a.Ver:
		return b
	case a.Deadline == 0:
		return b
	case b.Deadline == 0:
		return a
	case b.Deadline < a.Deadline:
		return b
	}
	return a
}

// want is key's status at true time at: the final generation is the
// highest any write, delete or tombstone assigned; the key is live iff
// that generation has writes and its deadline has not passed; its value is
// the sum of that generation's writes.
func (o oracle) want(k string, at int64) crdt.Status {
	ok := o[k]
	if ok == nil {
		return crdt.Status{}
	}
	st := crdt.Status{Gen: ok.maxGen}
	ttl := ok.ttl[ok.maxGen]
	if !ok.written[ok.maxGen] || (ttl.Deadline != 0 && at >= ttl.Deadline) {
		return st
	}
	st.Live, st.Value, st.Deadline = true, ok.sums[ok.maxGen], ttl.Deadline
	return st
}

// nearDeadline reports whether some deadline lies within d of at.
func (o oracle) nearDeadline(at, d int64) bool {
	for _, ok := range o {
		for _, dl := range ok.deadlines {
			if dl > at-d-1 && dl < at+d+1 {
				return true
			}
		}
	}
	return false
}

// lifecycleOps applies one random client operation at a random node, by
// the node's rules, and records it in o.
type lifecycleOps struct {
	s *sim
	o oracle
	// counts by kind, for the log
	counts map[string]int
}

func (l *lifecycleOps) ttl() int64 {
	r := l.s.rng
	switch r.IntN(10) {
	case 0:
		return 1 + r.Int64N(20) // expires at once, within the skew
	case 1:
		return 60_000 + r.Int64N(600_000) // outlives the test
	}
	return 20 + r.Int64N(2000)
}

func (l *lifecycleOps) op() {
	s, r := l.s, l.s.rng
	n := s.nodes[r.IntN(len(s.nodes))]
	key := s.keys[r.IntN(len(s.keys))]
	now := s.now(n)
	delta := int64(r.IntN(100) + 1)
	if r.IntN(3) == 0 {
		delta = -delta
	}
	switch k := r.IntN(20); {
	case k < 11: // plain write
		e := s.add(n, key, delta)
		l.o.write(key, e.Gen, delta)
		l.counts["write"]++
	case k < 15: // write with TTL: if none (the rate limiter's call) or always
		mode, name := crdt.TTLIfNone, "write+ttl-if-none"
		if k == 14 {
			mode, name = crdt.TTLAlways, "write+ttl-always"
		}
		e := s.add(n, key, delta)
		l.o.write(key, e.Gen, delta)
		if m, ok := n.ks.Expiry(key, e.Gen, now+l.ttl(), mode); ok {
			s.meta(n, m)
			l.o.setTTL(key, m.Gen, m.TTL)
		}
		l.counts[name]++
	case k < 17: // set TTL on a live key
		if st := n.ks.StatusOf(key, now); st.Live {
			if m, ok := n.ks.Expiry(key, st.Gen, now+l.ttl(), crdt.TTLAlways); ok {
				s.meta(n, m)
				l.o.setTTL(key, m.Gen, m.TTL)
				l.counts["set-ttl"]++
			}
		}
	case k < 18: // clear TTL on a live key
		if st := n.ks.StatusOf(key, now); st.Live {
			if m, ok := n.ks.Expiry(key, st.Gen, 0, crdt.TTLAlways); ok {
				s.meta(n, m)
				l.o.setTTL(key, m.Gen, m.TTL)
				l.counts["clear-ttl"]++
			}
		}
	default: // delete
		m, _ := n.ks.Deletion(key, now)
		s.meta(n, m)
		l.o.gen(key, m.Gen)
		l.counts["delete"]++
	}
}

// Skew, grace and horizon of the lifecycle simulations, in ms.
const (
	simSkew    = 500         // clocks differ by up to this much
	simGrace   = 2 * simSkew // Reclaim's grace: covers the skew
	simHorizon = 3_600_000   // far beyond any partition in these tests
	simQuiet   = 60 * 100    // ticks allowed to reach quiescence: 60 sync intervals
	simHistory = 4 * simSkew / tickMS
)

// newLifecycleSim is a sim whose nodes have skewed clocks (each its own
// offset within ±simSkew/2, so any two differ by at most simSkew; in half
// the sims every offset is one of the two extremes) and
// reclaim every tick, recording expired generations in o.
func newLifecycleSim(t testing.TB, n, nkeys int, seed uint64, o oracle) *sim {
	s := newSim(t, n, nkeys, seed)
	extremes := s.rng.IntN(2) == 0 // half the sims put every clock at ±simSkew/2
	for _, nd := range s.nodes {
		nd.skew = s.rng.Int64N(simSkew+1) - simSkew/2
		if extremes {
			nd.skew = simSkew/2 - int64(s.rng.IntN(2))*simSkew
		}
	}
	s.grace, s.horizon = simGrace, simHorizon
	s.onReclaim = func(_ *simNode, tombs []crdt.Meta) {
		for _, m := range tombs {
			o.gen(m.Key, m.Gen)
			o[m.Key].reclaimed[m.Gen] = true
		}
	}
	return s
}

// quiet reports whether the sim has settled: every node has the same
// digest and nothing queued. Messages still in flight can then only carry
// what everyone holds (states only grow, and nothing is forgotten within
// the horizon), so nothing changes until a clock passes a deadline.
func (s *sim) quiet() bool {
	root := s.nodes[0].ks.Root()
	for _, n := range s.nodes {
		if n.ks.Root() != root || n.eng.Pending() {
			return false
		}
	}
	return true
}

// checkAgainstOracle compares every node with o at true time T (each node
// reading its own clock) and with each other. It counts the keys checked
// by outcome.
func (s *sim) checkAgainstOracle(o oracle, seed uint64, outcomes map[string]int) {
	s.t.Helper()
	T := s.trueNow()
	first := s.nodes[0]
	for _, n := range s.nodes {
		if n.ks.Root() != first.ks.Root() || n.ks.Len() != first.ks.Len() {
			s.t.Fatalf("seed %d: %s and %s differ: root %x/%x, %d/%d keys", seed, first.addr, n.addr, first.ks.Root(), n.ks.Root(), first.ks.Len(), n.ks.Len())
		}
	}
	for _, k := range s.keys {
		want := o.want(k, T)
		switch ok := o[k]; {
		case want.Live && want.Deadline != 0:
			outcomes["live-expiring"]++
		case want.Live:
			outcomes["live"]++
		case ok == nil:
			outcomes["untouched"]++
		case ok.written[want.Gen]:
			outcomes["expired"]++
		case ok.reclaimed[want.Gen]:
			outcomes["reclaimed"]++
		default:
			outcomes["deleted"]++
		}
		for _, n := range s.nodes {
			got := n.ks.StatusOf(k, T+n.skew)
			if got != want {
				l, _ := n.ks.LifeOf(k)
				s.t.Fatalf("seed %d: %s (clock %+d ms) at T=%d reads %q as %+v, want %+v (life %+v, entries %+v)",
					seed, n.addr, n.skew, T, k, got, want, l, n.ks.EntriesOf(k))
			}
		}
	}
}

// runLifecycleHistory runs one random history and checks its outcome; it
// returns the number of replicas and operations, for the log.
func runLifecycleHistory(t *testing.T, seed uint64, outcomes map[string]int) (replicas int, counts map[string]int, ticks int) {
	r := rand.New(rand.NewPCG(seed, 0x11fec1c1e))
	replicas = 5 + r.IntN(46)
	o := oracle{}
	s := newLifecycleSim(t, replicas, 2+r.IntN(12), seed, o)
	s.loss, s.dup, s.maxDelay = []float64{0, 0.05, 0.2}[r.IntN(3)], []float64{0, 0.1}[r.IntN(2)], 1+r.IntN(30)
	ops := &lifecycleOps{s: s, o: o, counts: map[string]int{}}
	rate := 0.2 + 0.6*r.Float64() // operations per tick
	history := simHistory + r.IntN(2*simHistory)
	for i := 0; i < history; i++ {
		if i%60 == 0 { // partitions come and go
			switch r.IntN(3) {
			case 0:
				s.group = nil
			default:
				parts := 2 + r.IntN(3)
				s.group = map[string]int{}
				for _, n := range s.nodes {
					s.group[n.addr] = r.IntN(parts)
				}
			}
		}
		for f := rate; f > 0; f-- {
			if f >= 1 || s.rng.Float64() < f {
				ops.op()
			}
		}
		s.step()
	}
	s.group = nil
	start := s.tick
	for !s.quiet() || o.nearDeadline(s.trueNow(), simSkew) {
		if s.tick-start > simQuiet {
			t.Fatalf("seed %d: %d replicas not quiet %d ticks after healing", seed, replicas, s.tick-start)
		}
		s.step()
	}
	s.checkAgainstOracle(o, seed, outcomes)
	return replicas, ops.counts, s.tick
}

// TestSimLifecycleHistories runs random histories of writes, deletes, TTL
// sets and clears on 5 to 50 replicas with skewed clocks, over a lossy,
// duplicating, reordering network cut by changing partitions, with every
// node reclaiming each tick. After healing and settling, every replica
// must read every key as the oracle computes it from the history alone.
func TestSimLifecycleHistories(t *testing.T) {
	total, outcomes := map[string]int{}, map[string]int{}
	reps, ticks := 0, 0
	for seed := uint64(1); seed <= uint64(*lifecycleSeeds); seed++ {
		ok := t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			n, counts, tk := runLifecycleHistory(t, seed, outcomes)
			reps += n
			ticks += tk
			for k, v := range counts {
				total[k] += v
			}
		})
		if !ok {
			t.Fatalf("seed %d failed: rerun with -run 'TestSimLifecycleHistories/seed=%d$'", seed, seed)
		}
	}
	t.Logf("%d histories, %d replicas in all, %d ticks (%d s simulated); operations:%s; keys at the end:%s",
		*lifecycleSeeds, reps, ticks, ticks*tickMS/1000, counted(total), counted(outcomes))
	if outcomes["live"] == 0 || outcomes["live-expiring"] == 0 || outcomes["expired"]+outcomes["reclaimed"] == 0 || outcomes["deleted"] == 0 {
		t.Errorf("some outcome never checked: %v", outcomes)
	}
}

func counted(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out string
	for _, k := range keys {
		out += fmt.Sprintf(" %s=%d", k, m[k])
	}
	return out
}

// TestEagerDisseminationCarriesLifecycle: without loss and without any
// anti-entropy, deltas alone must carry every write, delete and TTL change
// to every node of a 5-node cluster within a few ticks. (Anti-entropy
// would hide a delta that went out wrong.) Clocks agree here, so that
// every node reclaims on the same tick.
func TestEagerDisseminationCarriesLifecycle(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		o := oracle{}
		s := newLifecycleSim(t, 5, 3, seed, o)
		s.syncEvery = 1 << 30
		for _, n := range s.nodes {
			n.skew = 0
		}
		ops := &lifecycleOps{s: s, o: o, counts: map[string]int{}}
		for i := 0; i < 200; i++ {
			ops.op()
			for j := 0; j < 4; j++ {
				s.step()
			}
			if !s.quiet() {
				t.Fatalf("seed %d: operation %d (%v so far) did not reach every node by eager dissemination", seed, i, ops.counts)
			}
		}
		for _, k := range s.keys {
			for _, n := range s.nodes {
				if got, want := n.ks.StatusOf(k, s.now(n)), o.want(k, s.trueNow()); got != want {
					t.Fatalf("seed %d: %s reads %q as %+v, want %+v", seed, n.addr, k, got, want)
				}
			}
		}
	}
}

// TestSimReclaimedKeysStayDead: keys deleted or expired are not brought
// back by old messages replayed within the reclaim horizon; after the
// horizon they are gone from every replica, and a replayed expiring
// generation comes back already expired, never live.
func TestSimReclaimedKeysStayDead(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { reclaimedKeysStayDead(t, seed) })
	}
}

func reclaimedKeysStayDead(t *testing.T, seed uint64) {
	o := oracle{}
	s := newLifecycleSim(t, 6, 0, seed, o)
	s.loss, s.dup, s.maxDelay = 0.1, 0.1, 10
	const horizon = 60_000
	s.horizon = horizon
	// Capture everything sent: the old messages to replay later.
	var old [][]byte
	s.capture = func(_, _ string, b []byte) { old = append(old, b) }
	// n5 is cut off while the keys are written, so that anti-entropy
	// repairs it with Pushes after the partition heals.
	s.group = map[string]int{"n5": 1}
	a, b := s.nodes[0], s.nodes[1]
	s.add(a, "expiring", 7)
	if m, ok := a.ks.Expiry("expiring", 0, s.now(a)+200, crdt.TTLIfNone); ok {
		s.meta(a, m)
	} else {
		t.Fatal("no expiry written")
	}
	s.add(b, "deleted", 3)
	s.add(a, "kept", 1)
	for range 20 {
		s.step()
	}
	m, _ := b.ks.Deletion("deleted", s.now(b))
	s.meta(b, m)
	s.group = nil
	for !s.quiet() {
		if s.tick > simQuiet {
			t.Fatalf("seed %d: not quiet", seed)
		}
		s.step()
	}
	// Past the expiry's grace on every clock: the expiring generation is a
	// tombstone everywhere.
	for s.trueNow() < simEpoch+200+simGrace+simSkew || !s.quiet() {
		s.step()
	}
	s.capture = nil
	pushes, deltas := 0, 0
	for _, p := range old {
		if msg, _ := wire.Decode(simCluster, p); msg != nil {
			switch msg.(type) {
			case *wire.Push:
				pushes++
			case *wire.Delta:
				deltas++
			}
		}
	}
	if pushes == 0 || deltas == 0 {
		t.Fatalf("seed %d: captured %d pushes and %d deltas; want both", seed, pushes, deltas)
	}
	dead := []string{"expiring", "deleted"}
	checkDead := func(when string) {
		t.Helper()
		for _, n := range s.nodes {
			for _, k := range dead {
				if st := n.ks.StatusOf(k, s.now(n)); st.Live {
					t.Fatalf("seed %d: %s: %s reads %q live: %+v", seed, when, n.addr, k, st)
				}
			}
			if st := n.ks.StatusOf("kept", s.now(n)); !st.Live || st.Value != 1 {
				t.Fatalf("seed %d: %s: %s reads kept as %+v", seed, when, n.addr, st)
			}
		}
	}
	replay := func(filter func(key string) bool) {
		for _, p := range old {
			msg, err := wire.Decode(simCluster, p)
			if err != nil {
				t.Fatal(err)
			}
			msg = keep(msg, filter)
			if msg == nil {
				continue
			}
			for _, n := range s.nodes {
				n.eng.Handle("replay", msg)
			}
		}
	}
	// Within the horizon: replaying every old message changes nothing.
	root := s.nodes[0].ks.Root()
	replay(func(string) bool { return true })
	checkDead("replayed within the horizon")
	for _, n := range s.nodes {
		if n.ks.Root() != root {
			t.Fatalf("seed %d: replay within the horizon changed %s", seed, n.addr)
		}
	}
	// Past the horizon: the tombstones are forgotten everywhere.
	s.base += horizon + simSkew
	s.step()
	for _, n := range s.nodes {
		if n.ks.Len() != 1 || n.ks.Root() != s.nodes[0].ks.Root() {
			t.Fatalf("seed %d: past the horizon %s holds %d keys (want only kept), root %x vs %x", seed, n.addr, n.ks.Len(), n.ks.Root(), s.nodes[0].ks.Root())
		}
		for _, k := range dead {
			if _, held := n.ks.LifeOf(k); held {
				t.Fatalf("seed %d: %s still holds %q past the horizon", seed, n.addr, k)
			}
		}
	}
	// Replaying the expiring key's old messages brings it back only as an
	// expired generation: it is never live, and the next reclaim forgets it.
	replay(func(k string) bool { return k == "expiring" })
	checkDead("expiring generation replayed past the horizon")
	resurrected := 0
	for _, n := range s.nodes {
		if l, held := n.ks.LifeOf("expiring"); held {
			resurrected++
			if len(n.ks.EntriesOf("expiring")) > 0 && l.TTL.Deadline == 0 {
				t.Fatalf("seed %d: %s took up the expiring key's entries without their deadline: %+v", seed, n.addr, l)
			}
		}
	}
	if resurrected == 0 {
		t.Fatalf("seed %d: the replay did not reach the keyspaces: the test tests nothing", seed)
	}
	s.step()
	for _, n := range s.nodes {
		if n.ks.Len() != 1 {
			t.Fatalf("seed %d: %s holds %d keys one reclaim after the replay, want 1", seed, n.addr, n.ks.Len())
		}
	}
}

// keep returns msg with only the entries and metas of keys filter accepts,
// or nil if none is left or msg carries neither.
func keep(msg wire.Message, filter func(string) bool) wire.Message {
	fe := func(es []wire.Entry) (out []wire.Entry) {
		for _, e := range es {
			if filter(e.Key) {
				out = append(out, e)
			}
		}
		return out
	}
	fm := func(ms []wire.Meta) (out []wire.Meta) {
		for _, m := range ms {
			if filter(m.Key) {
				out = append(out, m)
			}
		}
		return out
	}
	switch m := msg.(type) {
	case *wire.Delta:
		d := &wire.Delta{Entries: fe(m.Entries), Metas: fm(m.Metas), Hops: m.Hops}
		if len(d.Entries)+len(d.Metas) > 0 {
			return d
		}
	case *wire.Push:
		p := &wire.Push{Entries: fe(m.Entries), Metas: fm(m.Metas)}
		if len(p.Entries)+len(p.Metas) > 0 {
			return p
		}
	}
	return nil
}
