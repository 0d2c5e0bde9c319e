package crdt

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

func bucketsOf(keys ...string) []uint16 {
	var bs []uint16
	for _, k := range keys {
		bs = append(bs, BucketOf(k))
	}
	return dedupe(bs)
}

// TestNewerGenerationAhead: the side a generation ahead sends its life and
// entries; the side behind sends nothing for that key.
func TestNewerGenerationAhead(t *testing.T) {
	for _, metasFirst := range []bool{true, false} {
		behind, ahead := New(), New()
		for _, ks := range []*Keyspace{behind, ahead} {
			ks.Merge(Entry{Key: "k", Replica: 1, P: 10})
			ks.Merge(Entry{Key: "k", Replica: 2, P: 3})
		}
		behind.Merge(Entry{Key: "k", Replica: 1, P: 20}) // a gen-0 write the deleter never saw
		setTTL(t, behind, "k", 0, 5000, TTLAlways)
		m, _ := ahead.Deletion("k", 100)
		ahead.MergeMeta(m)
		ahead.Merge(Entry{Key: "k", Replica: 3, Gen: 1, P: 1})

		bs := bucketsOf("k")
		if got := behind.Newer(bs, ahead.BucketContents(bs), nil); got.Len() != 0 {
			t.Fatalf("the side behind offers %+v", got)
		}
		got := ahead.Newer(bs, behind.BucketContents(bs), nil)
		want := Contents{Entries: []Entry{{Key: "k", Replica: 3, Gen: 1, P: 1}}, Metas: []Meta{{Key: "k", Life: Life{Gen: 1, Deleted: 100}}}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the side ahead offers %+v, want %+v", got, want)
		}
		// Both exchange directions converge.
		x, y := clone2(behind), clone2(ahead)
		exchange(x, y, metasFirst)
		if !sameSnap(x, y) || !sameSnap(x, ahead) {
			t.Fatalf("exchange from behind: %+v vs %+v", snap(x), snap(y))
		}
		x, y = clone2(ahead), clone2(behind)
		exchange(x, y, metasFirst)
		if !sameSnap(x, y) || !sameSnap(x, ahead) {
			t.Fatalf("exchange from ahead: %+v vs %+v", snap(x), snap(y))
		}
	}
}

// TestNewerLivesDifferOnlyInTTL: same entries, lives that differ only in
// the expiry register; only the winning side sends its life.
func TestNewerLivesDifferOnlyInTTL(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ttlA, ttlB TTL
		winner     string
	}{
		{"earlier deadline", TTL{1, 100}, TTL{1, 200}, "a"},
		{"deadline vs none", TTL{1, 0}, TTL{1, 200}, "b"},
		{"higher version", TTL{2, 0}, TTL{1, 50}, "a"},
		{"set vs never set", TTL{}, TTL{1, 50}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := New(), New()
			for _, ks := range []*Keyspace{a, b} {
				ks.Merge(Entry{Key: "k", Replica: 1, P: 2})
				ks.Merge(Entry{Key: "k", Replica: 2, N: 1})
			}
			a.MergeMeta(Meta{Key: "k", Life: Life{TTL: tc.ttlA}})
			b.MergeMeta(Meta{Key: "k", Life: Life{TTL: tc.ttlB}})
			if a.Root() == b.Root() {
				t.Fatal("roots equal although the lives differ")
			}
			bs := bucketsOf("k")
			fromA := a.Newer(bs, b.BucketContents(bs), nil)
			fromB := b.Newer(bs, a.BucketContents(bs), nil)
			win, lose := fromA, fromB
			if tc.winner == "b" {
				win, lose = fromB, fromA
			}
			if len(win.Metas) != 1 || len(win.Entries) != 0 || lose.Len() != 0 {
				t.Fatalf("winner offers %+v, loser offers %+v", win, lose)
			}
			exchange(a, b, true)
			if !sameSnap(a, b) {
				t.Fatalf("after exchange: %+v vs %+v", snap(a), snap(b))
			}
		})
	}
}

// TestNewerExchangeRandomLifecycles: replicas running random lifecycles on
// shared keys converge by pairwise exchanges in both directions, including
// replicas that reclaimed at different times.
func TestNewerExchangeRandomLifecycles(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 0xe8c))
		reps := make([]*Keyspace, 2+rng.IntN(3))
		for i := range reps {
			reps[i] = New()
		}
		nkeys := 1 + rng.IntN(40)
		now := int64(1_000_000)
		for range 400 {
			i := rng.IntN(len(reps))
			ks := reps[i]
			key := fmt.Sprintf("k%d", rng.IntN(nkeys))
			now += rng.Int64N(20)
			switch op := rng.IntN(12); {
			case op < 5:
				r := ReplicaID(i)
				g, cur := ks.WriteGen(key, r, now)
				ks.Merge(Entry{Key: key, Replica: r, Gen: g, P: cur.P + 1, N: cur.N})
			case op < 6:
				m, _ := ks.Deletion(key, now)
				ks.MergeMeta(m)
			case op < 8:
				g, _ := ks.WriteGen(key, 0, now)
				d := now + rng.Int64N(500)
				if rng.IntN(4) == 0 {
					d = 0
				}
				if m, ok := ks.Expiry(key, g, d, TTLMode(rng.IntN(2))); ok {
					ks.MergeMeta(m)
				}
			case op < 11:
				j := rng.IntN(len(reps))
				if j != i {
					exchange(ks, reps[j], rng.IntN(2) == 0)
				}
			default:
				// Reclaim with a horizon much longer than the run: only expiry is reclaimed,
				// which every replica reaches on its own.
				ks.Reclaim(now, 50, 1<<40)
			}
		}
		// Heal: exchanges between all pairs, both directions, until stable.
		for range 3 {
			for i := range reps {
				for j := range reps {
					if i != j {
						exchange(reps[i], reps[j], (i+j)%2 == 0)
					}
				}
			}
		}
		for i := range reps {
			if !sameSnap(reps[i], reps[0]) {
				t.Fatalf("seed %d: replica %d differs:\n%+v\n%+v", seed, i, snap(reps[i]), snap(reps[0]))
			}
			checkDigest(t, reps[i])
		}
		// Reclaiming everything at the same point leaves them equal.
		for i := range reps {
			reps[i].Reclaim(now+1000, 50, 1<<40)
			if !sameSnap(reps[i], reps[0]) {
				t.Fatalf("seed %d: replica %d differs after a common reclaim", seed, i)
			}
		}
	}
}

// TestNewerBudgetCountsMetas: fits is asked about metas too, and the reply
// stops before the first rejected item.
func TestNewerBudgetCountsMetas(t *testing.T) {
	ks := New()
	for i := range 50 {
		key := fmt.Sprintf("k%d", i)
		ks.MergeMeta(Meta{Key: key, Life: Life{Gen: 1, Deleted: 10}})
	}
	all := make([]uint16, 0, NumBuckets)
	for b := range NumBuckets {
		all = append(all, uint16(b))
	}
	n := 0
	got := ks.Newer(all, Contents{}, func(string) bool { n++; return n <= 7 })
	if len(got.Metas) != 7 || len(got.Entries) != 0 || n != 8 {
		t.Fatalf("Newer with a budget of 7 = %d metas, %d entries, %d fits calls", len(got.Metas), len(got.Entries), n)
	}
}
