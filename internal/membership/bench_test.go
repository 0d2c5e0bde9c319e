package membership

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/wire"
)

// benchEngine returns an engine that knows live other members, all alive,
// and departed ones, half left and half dead since start; with pruned, a
// horizons have passed since (the first prunes them, the second
// forgets them). It returns the time to tick at.
func benchEngine(live, departed int, horizons int) (*Engine, time.Time) {
	const horizon = time.Hour
	start := time.Unix(1_700_000_000, 0)
	e := NewEngine(Config{
		Self:    Member{ID: 1, Name: "self", GossipAddr: "10.0.0.1:7946", HTTPAddr: "10.0.0.1:8080", Incarnation: 1},
		Horizon: horizon, Rand: rand.New(rand.NewPCG(1, 2)),
	}, start)
	var view []wire.Member
	for i := 0; i < departed; i++ {
		st := Left
		if i%2 == 1 {
			st = Dead
		}
		id := uint64(10_000 + i)
		view = append(view, wire.Member{
			ID: id, Name: fmt.Sprintf("dcounter-%d", id), GossipAddr: fmt.Sprintf("10.1.%d.%d:7946", i/250, i%250),
			HTTPAddr: fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250), Incarnation: 3, Heartbeat: 1234, State: uint8(st),
		})
	}
	for len(view) > 0 {
		n := min(len(view), MaxNewPerMerge)
		e.list.Merge(view[:n], start)
		view = view[n:]
	}
	now := start
	keepAlive(e, live, 1, now)
	for i := 0; i < horizons; i++ {
		now = now.Add(horizon)
		keepAlive(e, live, uint64(1+i), now)
		e.list.Prune(now, horizon)
	}
	return e, now
}

// keepAlive gives the live members news of heartbeat hb at now.
func keepAlive(e *Engine, live int, hb uint64, now time.Time) {
	view := make([]wire.Member, 0, live)
	for i := 0; i < live; i++ {
		id := uint64(2 + i)
		view = append(view, wire.Member{
			ID: id, Name: fmt.Sprintf("live-%d", id), GossipAddr: fmt.Sprintf("10.0.0.%d:7946", id),
			HTTPAddr: fmt.Sprintf("10.0.0.%d:8080", id), Incarnation: 1, Heartbeat: hb, State: uint8(Alive),
		})
	}
	e.list.Merge(view, now)
	for _, w := range view {
		e.list.HeardFrom(w.GossipAddr, now)
		e.list.ObserveClock(0, w.GossipAddr, now.UnixMilli(), now, 0)
	}
}

// BenchmarkMembershipDeparted measures what 1,000 departed replicas cost a
// node of a 5-node cluster: the member list's heap (with the per-member
// maps) and the bytes its member gossip sends per round (one tick: a push
// to a live peer, and a knock on a dead member's door while there are
// any), before and after the member horizon, against a cluster that never
// had them.
func BenchmarkMembershipDeparted(b *testing.B) {
	for _, bc := range []struct {
		name     string
		departed int
		horizons int
	}{
		{"never", 0, 0},
		{"departed-1000/before-horizon", 1000, 0},
		{"departed-1000/after-horizon", 1000, 1},
		{"departed-1000/after-2-horizons", 1000, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const live = 4 // others; 5 with self
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.HeapAlloc
			e, now := benchEngine(live, bc.departed, bc.horizons)
			runtime.GC()
			runtime.ReadMemStats(&ms)
			heap := int64(ms.HeapAlloc) - int64(before)
			b.ResetTimer()
			var sent, msgs int
			for i := 0; i < b.N; i++ {
				now = now.Add(500 * time.Millisecond)
				keepAlive(e, live, uint64(2+i), now)
				out, _ := e.Tick(now)
				for _, o := range out {
					p, err := wire.Encode("dcounter", o.Msg)
					if err != nil {
						b.Fatal(err)
					}
					sent += len(p)
					msgs++
				}
			}
			b.StopTimer()
			runtime.KeepAlive(e)
			b.ReportMetric(float64(heap), "heap-B")
			b.ReportMetric(float64(e.List().Len()), "members")
			b.ReportMetric(float64(e.List().Forgotten()), "forgotten")
			b.ReportMetric(float64(sent)/float64(b.N), "gossip-B/round")
			b.ReportMetric(float64(msgs)/float64(b.N), "msgs/round")
		})
	}
}
