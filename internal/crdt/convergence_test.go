package crdt

import (
	"fmt"
	mathrand "math/rand"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
)

// replica is one simulated node: its own ID and its view of the keyspace.
type replica struct {
	id ReplicaID
	ks *Keyspace
}

var historyKeys = []string{DefaultKey, "a", "b", "ключ", "😀", "x/y/z", strings.Repeat("L", MaxKeyLen)}

// TestConvergenceRandomHistories runs random op histories on several
// replicas, delivers the resulting entries between them in random order with
// duplicates, stale entries and random subsets, then delivers everything
// everywhere, and checks that every replica reports exactly Σinc − Σdec per
// key, with identical state and digests.
func TestConvergenceRandomHistories(t *testing.T) {
	for seed := range uint64(60) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runHistory(t, seed)
		})
	}
}

func runHistory(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xdc0))
	nrep := 2 + rng.IntN(5)
	reps := make([]replica, nrep)
	for i := range reps {
		reps[i] = replica{id: ReplicaID(rng.Uint64()), ks: New()}
	}
	keys := historyKeys[:1+rng.IntN(len(historyKeys))]
	expected := map[string]int64{}
	var sent []Entry // every entry any replica ever produced, in production order

	amount := func() int64 {
		switch rng.IntN(10) {
		case 0:
			return 1 + rng.Int64N(1<<40)
		case 1, 2:
			return 1
		}
		return 1 + rng.Int64N(1000)
	}
	deliver := func(to *replica, e Entry) {
		before := to.ks.Get(e.Key, e.Replica)
		changed := to.ks.Merge(e)
		after := to.ks.Get(e.Key, e.Replica)
		want := PN{max(before.P, e.P), max(before.N, e.N)}
		if after != want {
			t.Fatalf("Merge(%+v) over %+v gave %+v, want %+v", e, before, after, want)
		}
		if changed != (after != before) {
			t.Fatalf("Merge(%+v) over %+v reported changed=%v", e, before, changed)
		}
	}

	steps := 200 + rng.IntN(600)
	for range steps {
		r := &reps[rng.IntN(nrep)]
		switch op := rng.IntN(10); {
		case op < 5: // a local write, as a node does it
			key := keys[rng.IntN(len(keys))]
			delta := amount()
			if rng.IntN(2) == 0 {
				delta = -delta
			}
			v, ok := r.ks.Value(key, 0)
			if !ok {
				t.Fatalf("Value(%q) out of range", key)
			}
			e, err := Change(key, r.id, 0, r.ks.Get(key, r.id), v, delta)
			if err != nil {
				t.Fatalf("Change(%q, %d) at value %d: %v", key, delta, v, err)
			}
			deliver(r, e)
			if got, _ := r.ks.Value(key, 0); got != v+delta {
				t.Fatalf("after Change(%q, %d) from %d the writer sees %d", key, delta, v, got)
			}
			expected[key] += delta
			sent = append(sent, e)
		case op < 8: // one entry, possibly stale or a duplicate, to one replica
			if len(sent) > 0 {
				deliver(&reps[rng.IntN(nrep)], sent[rng.IntN(len(sent))])
			}
		default: // a random subset of another replica's state, shuffled
			from := &reps[rng.IntN(nrep)]
			var es []Entry
			from.ks.ForEach(func(e Entry) bool {
				if rng.IntN(3) == 0 {
					es = append(es, e)
				}
				return true
			})
			rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
			for _, e := range es {
				deliver(r, e)
			}
		}
	}

	// Heal: every replica gets every entry ever sent, shuffled, some twice.
	for i := range reps {
		es := append([]Entry(nil), sent...)
		for range len(sent) / 4 {
			es = append(es, sent[rng.IntN(len(sent))])
		}
		rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		for _, e := range es {
			deliver(&reps[i], e)
		}
	}

	want := stateOf(reps[0].ks)
	for i, r := range reps {
		for _, key := range keys {
			v, ok := r.ks.Value(key, 0)
			if !ok || v != expected[key] {
				t.Errorf("replica %d: Value(%q) = %d, %v; want %d", i, key, v, ok, expected[key])
			}
		}
		if r.ks.Root() != reps[0].ks.Root() {
			t.Errorf("replica %d: Root %x, replica 0: %x", i, r.ks.Root(), reps[0].ks.Root())
		}
		if got := stateOf(r.ks); !equalStates(got, want) {
			t.Errorf("replica %d: state differs from replica 0", i)
		}
		if r.ks.Entries() != want.entries() || r.ks.Len() != len(want) {
			t.Errorf("replica %d: Len, Entries = %d, %d; want %d, %d", i, r.ks.Len(), r.ks.Entries(), len(want), want.entries())
		}
		if d := r.ks.DiffGroups(reps[0].ks.Groups()); len(d) != 0 {
			t.Errorf("replica %d: DiffGroups against replica 0 = %v", i, d)
		}
		checkDigest(t, r.ks)
	}
	// Each replica's own totals are exactly what it wrote.
	for _, r := range reps {
		own := map[string]PN{}
		for _, e := range sent {
			if e.Replica == r.id {
				own[e.Key] = PN{e.P, e.N} // sent in production order: last is largest
			}
		}
		for key, pn := range own {
			if got := r.ks.Get(key, r.id); got != pn {
				t.Errorf("replica %v: own totals for %q = %+v, want %+v", r.id, key, got, pn)
			}
		}
	}
}

// entryList is a quick.Generator of entries over a small domain, so that
// lists collide on (key, replica) often.
type entryList []Entry

func (entryList) Generate(r *mathrand.Rand, size int) reflect.Value {
	keys := []string{"a", "b", "c", "", "\xff"} // the last two are invalid and must be ignored
	n := r.Intn(size + 1)
	es := make(entryList, n)
	for i := range es {
		es[i] = Entry{
			Key:     keys[r.Intn(len(keys))],
			Replica: ReplicaID(r.Intn(3)),
			P:       uint64(r.Intn(5)),
			N:       uint64(r.Intn(5)),
		}
		if r.Intn(20) == 0 {
			es[i].P = r.Uint64()
		}
	}
	return reflect.ValueOf(es)
}

func (es entryList) keyspace() *Keyspace {
	ks := New()
	for _, e := range es {
		ks.Merge(e)
	}
	return ks
}

func sameKeyspace(a, b *Keyspace) bool {
	return a.Root() == b.Root() && a.Len() == b.Len() && a.Entries() == b.Entries() && equalStates(stateOf(a), stateOf(b))
}

func quickConfig(seed int64) *quick.Config {
	return &quick.Config{MaxCount: 2000, Rand: mathrand.New(mathrand.NewSource(seed))}
}

func TestMergeCommutative(t *testing.T) {
	f := func(a, b entryList) bool {
		ab := append(append(entryList(nil), a...), b...)
		ba := append(append(entryList(nil), b...), a...)
		return sameKeyspace(ab.keyspace(), ba.keyspace()) &&
			sameKeyspace(mergeAll(a.keyspace(), b.keyspace()), mergeAll(b.keyspace(), a.keyspace()))
	}
	if err := quick.Check(f, quickConfig(1)); err != nil {
		t.Fatal(err)
	}
}

func TestMergeAnyOrder(t *testing.T) {
	f := func(a entryList, seed uint64) bool {
		want := a.keyspace()
		rng := rand.New(rand.NewPCG(seed, 1))
		for range 5 {
			p := append(entryList(nil), a...)
			rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			if !sameKeyspace(p.keyspace(), want) {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, quickConfig(2)); err != nil {
		t.Fatal(err)
	}
}

func TestMergeAssociative(t *testing.T) {
	f := func(a, b, c entryList) bool {
		x, y, z := a.keyspace(), b.keyspace(), c.keyspace()
		return sameKeyspace(mergeAll(mergeAll(x, y), z), mergeAll(x, mergeAll(y, z)))
	}
	if err := quick.Check(f, quickConfig(3)); err != nil {
		t.Fatal(err)
	}
}

func TestMergeIdempotent(t *testing.T) {
	f := func(a entryList) bool {
		x := a.keyspace()
		root, st := x.Root(), stateOf(x)
		// Merging the keyspace's own entries, or the whole input again, changes nothing.
		for _, e := range a {
			if x.Merge(e) {
				return false
			}
		}
		x.ForEach(func(e Entry) bool {
			if x.Merge(e) {
				panic("re-merging an own entry reported a change")
			}
			return true
		})
		return x.Root() == root && equalStates(stateOf(x), st) && sameKeyspace(mergeAll(x, x), x)
	}
	if err := quick.Check(f, quickConfig(4)); err != nil {
		t.Fatal(err)
	}
}

// TestMergeIsJoin: the merged state is the component-wise max over all
// entries for each (key, replica), ignoring invalid and all-zero entries.
func TestMergeIsJoin(t *testing.T) {
	f := func(a entryList) bool {
		want := state{}
		for _, e := range a {
			if ValidKey(e.Key) != nil || (e.P == 0 && e.N == 0) {
				continue
			}
			if want[e.Key] == nil {
				want[e.Key] = map[ReplicaID]PN{}
			}
			pn := want[e.Key][e.Replica]
			want[e.Key][e.Replica] = PN{max(pn.P, e.P), max(pn.N, e.N)}
		}
		return equalStates(stateOf(a.keyspace()), want)
	}
	if err := quick.Check(f, quickConfig(5)); err != nil {
		t.Fatal(err)
	}
}
