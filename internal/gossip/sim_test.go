package gossip

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// sim drives engines in discrete ticks of one delta interval (tickMS of
// simulated time) over a lossy, duplicating, reordering, partitionable
// network. It is deterministic for a given seed. Every message is encoded
// and decoded, so the wire codec is in the loop and bytes are counted.
// Each node has its own clock: simulated time plus a fixed skew.
type sim struct {
	t         testing.TB
	rng       *rand.Rand
	nodes     []*simNode
	tick      int
	syncEvery int // ticks per sync interval
	loss, dup float64
	maxDelay  int                        // messages take 1..maxDelay ticks: reordering
	group     map[string]int             // partition: only equal groups talk; nil = none
	cut       func(from, to string) bool // one-way cuts; nil = none
	inflight  map[int][]simMsg
	expected  map[string]int64
	keys      []string
	bytes     map[wire.Type]int
	sent      int
	// base is the simulated time of tick 0 (Unix ms); jump moves it.
	base int64
	// reclaim, when grace > 0, makes every node call Reclaim each tick;
	// onReclaim sees what it turned into tombstones.
	grace, horizon int64
	onReclaim      func(n *simNode, tombs []crdt.Meta)
	// capture, when set, sees every message sent (before loss).
	capture func(from, to string, payload []byte)
}

// tickMS is the simulated time of one tick: the default delta interval.
const tickMS = 5

// simEpoch is the simulated time at tick 0: 2026-11-28T00:00:00Z.
const simEpoch = 1_764_288_000_000

type simNode struct {
	id     crdt.ReplicaID
	addr   string
	ks     *crdt.Keyspace
	eng    *Engine
	offset int   // sync phase, so nodes do not all sync on the same tick
	skew   int64 // clock offset from simulated time, ms
}

type simMsg struct {
	from, to string
	payload  []byte
}

const simCluster = "sim"

func newSim(t testing.TB, n, nkeys int, seed uint64) *sim {
	s := &sim{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), syncEvery: 100, maxDelay: 1,
		inflight: map[int][]simMsg{}, expected: map[string]int64{}, bytes: map[wire.Type]int{},
		base: simEpoch,
	}
	for i := 0; i < nkeys; i++ {
		s.keys = append(s.keys, fmt.Sprintf("key-%d", i))
	}
	for i := 0; i < n; i++ {
		ks := crdt.New()
		s.nodes = append(s.nodes, &simNode{
			id: crdt.ReplicaID(i + 1), addr: fmt.Sprintf("n%d", i), ks: ks,
			eng:    New(Config{Rand: rand.New(rand.NewPCG(seed, uint64(i)))}, ks),
			offset: s.rng.IntN(s.syncEvery),
		})
	}
	return s
}

func (s *sim) peersOf(n *simNode) []string {
	out := make([]string, 0, len(s.nodes)-1)
	for _, o := range s.nodes {
		if o != n {
			out = append(out, o.addr)
		}
	}
	return out
}

func (s *sim) node(addr string) *simNode {
	var i int
	fmt.Sscanf(addr, "n%d", &i)
	return s.nodes[i]
}

// now is n's clock.
func (s *sim) now(n *simNode) int64 { return s.base + int64(s.tick)*tickMS + n.skew }

// trueNow is simulated time, which no node reads.
func (s *sim) trueNow() int64 { return s.base + int64(s.tick)*tickMS }

// write applies a random change at a random node, as a client write would.
func (s *sim) write() {
	n := s.nodes[s.rng.IntN(len(s.nodes))]
	key := s.keys[s.rng.IntN(len(s.keys))]
	delta := int64(s.rng.IntN(100) + 1)
	if s.rng.IntN(2) == 0 {
		delta = -delta
	}
	s.add(n, key, delta)
	s.expected[key] += delta
}

// add writes delta to key at n by a node's rules, and returns the entry
// written: the generation a write belongs to at n's clock, n's totals in
// it, the value n sees.
func (s *sim) add(n *simNode, key string, delta int64) crdt.Entry {
	gen, cur := n.ks.WriteGen(key, n.id, s.now(n))
	view, _ := n.ks.ValueWith(key, n.id, gen, cur)
	e, err := crdt.Change(key, n.id, gen, cur, view, delta)
	if err != nil {
		s.t.Fatal(err)
	}
	n.ks.Merge(e)
	n.eng.Local(crdt.Contents{Entries: []crdt.Entry{e}})
	return e
}

// meta merges a lifecycle change made at n and hands it to n's engine.
func (s *sim) meta(n *simNode, m crdt.Meta) {
	n.ks.MergeMeta(m)
	n.eng.Local(crdt.Contents{Metas: []crdt.Meta{m}})
}

func (s *sim) canTalk(a, b string) bool {
	return (s.group == nil || s.group[a] == s.group[b]) && (s.cut == nil || !s.cut(a, b))
}

func (s *sim) send(from string, out []Outbound) {
	for _, o := range out {
		b, err := wire.Encode(simCluster, o.Msg)
		if err != nil {
			s.t.Fatal(err)
		}
		s.sent++
		s.bytes[o.Msg.Type()] += len(b) + 4 // + frame length prefix
		s.checkLivesTravel(s.node(from), o.Msg)
		if s.capture != nil {
			s.capture(from, o.To, b)
		}
		if !s.canTalk(from, o.To) || s.rng.Float64() < s.loss {
			continue
		}
		copies := 1
		if s.rng.Float64() < s.dup {
			copies = 2
		}
		for c := 0; c < copies; c++ {
			at := s.tick + 1 + s.rng.IntN(s.maxDelay)
			s.inflight[at] = append(s.inflight[at], simMsg{from: from, to: o.To, payload: b})
		}
	}
}

// step advances one tick: deliver due messages (in random order), flush
// deltas, and run the syncs that fall on this tick.
func (s *sim) step() {
	s.tick++
	due := s.inflight[s.tick]
	delete(s.inflight, s.tick)
	s.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, m := range due {
		if !s.canTalk(m.from, m.to) {
			continue
		}
		msg, err := wire.Decode(simCluster, m.payload)
		if err != nil {
			s.t.Fatal(err)
		}
		n := s.node(m.to)
		out, _ := n.eng.Handle(m.from, msg)
		s.send(n.addr, out)
	}
	if s.grace > 0 {
		for _, n := range s.nodes {
			tombs, _ := n.ks.Reclaim(s.now(n), s.grace, s.horizon)
			if s.onReclaim != nil && len(tombs) > 0 {
				s.onReclaim(n, tombs)
			}
		}
	}
	for _, n := range s.nodes {
		peers := s.peersOf(n)
		s.send(n.addr, n.eng.Flush(peers))
		if (s.tick+n.offset)%s.syncEvery == 0 {
			s.send(n.addr, n.eng.Sync(peers))
		}
	}
}

// checkLivesTravel fails the test unless msg, sent by n, carries with every
// entry its key's life as n holds it (when not zero): the engine's
// invariant that an expiring generation never travels without its
// deadline.
func (s *sim) checkLivesTravel(n *simNode, msg wire.Message) {
	var entries []wire.Entry
	var metas []wire.Meta
	switch m := msg.(type) {
	case *wire.Delta:
		entries, metas = m.Entries, m.Metas
	case *wire.Push:
		entries, metas = m.Entries, m.Metas
	default:
		return
	}
	for _, en := range entries {
		want, ok := n.ks.MetaOf(en.Key)
		if !ok {
			continue
		}
		found := false
		for _, m := range metas {
			if m.Key == en.Key && m.ToMeta() == want {
				found = true
				break
			}
		}
		if !found {
			s.t.Fatalf("%s sent an entry of %q (generation %d) in a %v without the key's life %+v", n.addr, en.Key, en.Gen, msg.Type(), want.Life)
		}
	}
}

// converged reports whether every node holds exactly the expected values.
func (s *sim) converged() bool {
	root := s.nodes[0].ks.Root()
	for _, n := range s.nodes[1:] {
		if n.ks.Root() != root {
			return false
		}
	}
	for k, want := range s.expected {
		for _, n := range s.nodes {
			if v, _ := n.ks.Value(k, s.now(n)); v != want {
				return false
			}
		}
	}
	return true
}

// runUntilConverged steps until convergence or maxTicks; it returns the ticks taken.
func (s *sim) runUntilConverged(maxTicks int) (int, bool) {
	start := s.tick
	for s.tick-start < maxTicks {
		if s.converged() {
			return s.tick - start, true
		}
		s.step()
	}
	return s.tick - start, s.converged()
}

func TestSimFiftyNodesFaultyNetworkConverges(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			s := newSim(t, 50, 21, seed)
			s.loss, s.dup, s.maxDelay = 0.2, 0.1, 20

			// Writes everywhere on a faulty network.
			for i := 0; i < 300; i++ {
				s.write()
				s.step()
			}
			// Split into two halves, keep writing on both sides.
			s.group = map[string]int{}
			for i, n := range s.nodes {
				s.group[n.addr] = i % 2
			}
			for i := 0; i < 600; i++ {
				s.write()
				s.step()
			}
			if s.converged() {
				t.Fatal("converged across a partition: the partition is not cutting anything")
			}
			// Heal; no more writes: everyone must reach the exact totals.
			s.group = nil
			ticks, ok := s.runUntilConverged(20 * s.syncEvery)
			if !ok {
				t.Fatalf("not converged %d ticks after healing", ticks)
			}
			t.Logf("converged %d ticks (%.1f sync intervals) after healing; %d messages sent", ticks, float64(ticks)/float64(s.syncEvery), s.sent)
		})
	}
}

func TestSimAsymmetricPartitionHeals(t *testing.T) {
	s := newSim(t, 10, 5, 7)
	s.loss = 0.05
	// n0 can send to nobody; the others can send to it.
	s.cut = func(from, to string) bool { return from == "n0" }
	for i := 0; i < 200; i++ {
		s.write()
		s.step()
	}
	if s.converged() {
		t.Fatal("converged although n0's writes could not leave it")
	}
	s.cut = nil
	ticks, ok := s.runUntilConverged(20 * s.syncEvery)
	if !ok {
		t.Fatalf("not converged %d ticks after healing", ticks)
	}
}

func TestSimFlappingLinksConverge(t *testing.T) {
	s := newSim(t, 12, 8, 11)
	s.loss, s.maxDelay = 0.1, 5
	down := map[[2]string]bool{}
	s.cut = func(from, to string) bool { return down[[2]string{from, to}] }
	for i := 0; i < 2000; i++ {
		if i%50 == 0 { // every 50 ticks, a random set of one-way links flips
			clear(down)
			for j := 0; j < 30; j++ {
				a, b := s.nodes[s.rng.IntN(12)].addr, s.nodes[s.rng.IntN(12)].addr
				down[[2]string{a, b}] = true
			}
		}
		if i%3 == 0 {
			s.write()
		}
		s.step()
	}
	s.cut = nil
	if ticks, ok := s.runUntilConverged(20 * s.syncEvery); !ok {
		t.Fatalf("not converged %d ticks after links stopped flapping", ticks)
	}
}

func TestRepairBytesOneKeyIn100k(t *testing.T) {
	got := repairBytes(t, 100_000)
	t.Logf("repairing one differing key in a 100,000-key keyspace moved %d bytes", got)
	if got >= 64<<10 {
		t.Fatalf("repair moved %d bytes, want well under 64 KiB", got)
	}
}

// repairBytes builds two replicas that agree on nkeys keys (written by 3
// replicas each) but one, runs anti-entropy until they agree, and returns
// the bytes exchanged.
func repairBytes(t testing.TB, nkeys int) int {
	s := newSim(t, 2, 0, 1)
	a, b := s.nodes[0], s.nodes[1]
	for i := 0; i < nkeys; i++ {
		key := fmt.Sprintf("page:%d", i)
		for r := crdt.ReplicaID(1); r <= 3; r++ {
			e := crdt.Entry{Key: key, Replica: r, P: uint64(i) + uint64(r), N: 1}
			a.ks.Merge(e)
			b.ks.Merge(e)
		}
	}
	e := crdt.Entry{Key: "page:42", Replica: 1, P: 1e6, N: 1}
	a.ks.Merge(e)
	s.send(a.addr, a.eng.Sync([]string{b.addr}))
	for i := 0; i < 10 && a.ks.Root() != b.ks.Root(); i++ {
		s.step()
	}
	if a.ks.Root() != b.ks.Root() {
		t.Fatal("one anti-entropy round did not repair the difference")
	}
	total := 0
	for _, n := range s.bytes {
		total += n
	}
	return total
}

func BenchmarkRepairBytes(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var bytes int
			for i := 0; i < b.N; i++ {
				bytes = repairBytes(b, n)
			}
			b.ReportMetric(float64(bytes), "repair-bytes")
		})
	}
}

// BenchmarkConverge1000 measures how long 1,000 nodes with 10% message loss
// take to converge after 100 writes at random nodes: in sync intervals
// (rounds) and in simulated time, with the default 5 ms delta batching and
// 500 ms sync interval.
func BenchmarkConverge1000(b *testing.B) {
	var ticks int
	for i := 0; i < b.N; i++ {
		s := newSim(b, 1000, 20, uint64(i+1))
		s.loss = 0.1
		for w := 0; w < 100; w++ {
			s.write()
		}
		var ok bool
		ticks, ok = s.runUntilConverged(100 * s.syncEvery)
		if !ok {
			b.Fatal("1000-node simulation did not converge")
		}
	}
	b.ReportMetric(float64(ticks)/100, "rounds")
	b.ReportMetric(float64(ticks*5), "sim-ms")
}

// TestEagerDisseminationReachesSmallClusters: without loss and without any
// anti-entropy, the eager path alone must carry every write to every node of
// a 5-node cluster (fanout 3 of 4 peers): forwards skip the peers the
// entries came from, so the second hop always reaches the node the first
// one missed.
func TestEagerDisseminationReachesSmallClusters(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		s := newSim(t, 5, 3, seed)
		s.syncEvery = 1 << 30 // no anti-entropy
		for i := 0; i < 50; i++ {
			s.write()
			for j := 0; j < 4; j++ {
				s.step()
			}
			if !s.converged() {
				t.Fatalf("seed %d: write %d did not reach every node by eager dissemination", seed, i)
			}
		}
	}
}
