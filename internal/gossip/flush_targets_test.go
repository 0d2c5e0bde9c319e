package gossip

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// TestFlushSendsEveryHopLevelToTheSamePeers: local news (hop 0) and news a
// peer forwarded (hop 1) go to the same Fanout peers, except that the
// forward skips the peer it came from: a peer gets one batch of frames per
// flush, not one per level.
func TestFlushSendsEveryHopLevelToTheSamePeers(t *testing.T) {
	peers := make([]string, 10)
	for i := range peers {
		peers[i] = fmt.Sprintf("p%d", i)
	}
	sawSenderPicked := false
	for seed := range uint64(200) {
		ks := crdt.New()
		e := New(Config{Fanout: 2, Rand: rand.New(rand.NewPCG(seed, 1))}, ks)
		local := crdt.Entry{Key: "a", Replica: 1, P: 1}
		ks.Merge(local)
		e.Local(crdt.Contents{Entries: []crdt.Entry{local}})
		from := peers[int(seed)%len(peers)]
		_, changed := e.Handle(from, &wire.Delta{Entries: []wire.Entry{{Key: "b", Replica: 2, P: 1}}})
		if changed.Len() != 1 {
			t.Fatalf("seed %d: Delta changed %d items, want 1", seed, changed.Len())
		}
		to := map[uint8]map[string]bool{0: {}, 1: {}}
		for _, o := range e.Flush(peers) {
			to[o.Msg.(*wire.Delta).Hops][o.To] = true
		}
		if len(to[0]) != 2 || len(to[1]) != 2 {
			t.Fatalf("seed %d: hop 0 to %v, hop 1 to %v; want 2 peers each", seed, to[0], to[1])
		}
		if to[1][from] {
			t.Fatalf("seed %d: the forward went back to %s, which sent it", seed, from)
		}
		common := 0
		for p := range to[1] {
			if to[0][p] {
				common++
			}
		}
		want := 2
		if to[0][from] {
			want = 1 // the sender took one of the two places
			sawSenderPicked = true
		}
		if common != want {
			t.Errorf("seed %d: hop 0 to %v, hop 1 to %v (sender %s): %d peers in common, want %d", seed, to[0], to[1], from, common, want)
		}
	}
	if !sawSenderPicked {
		t.Error("no seed picked the sender for hop 0: the case is untested")
	}
}
