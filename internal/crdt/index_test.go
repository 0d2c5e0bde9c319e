package crdt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkIndex checks the listing index's structure: non-empty leaves, in
// order within and across leaves, holding Len refs in all.
func checkIndex(t testing.TB, ix *listIndex) []ref {
	t.Helper()
	var all []ref
	var prev string
	leaves := 0
	ix.leaves.Ascend(func(l *leaf) bool {
		if l.n == 0 || l.n > leafCap {
			t.Fatalf("a leaf of %d refs", l.n)
		}
		for _, x := range l.refs[l.n:] {
			if x != 0 {
				t.Fatal("a leaf holds a ref past its count")
			}
		}
		for _, x := range l.refs[:l.n] {
			if k := ix.key(x); len(all) > 0 && k <= prev {
				t.Fatalf("%q after %q", k, prev)
			} else {
				prev = k
			}
			all = append(all, x)
		}
		leaves++
		return true
	})
	if len(all) != ix.Len() {
		t.Fatalf("%d refs in the leaves, Len %d", len(all), ix.Len())
	}
	return all
}

// TestListIndexMatchesModel: inserts and deletes in ascending, descending
// and random order keep the index equal to a sorted model, and a search
// from any key starts at the right place.
func TestListIndexMatchesModel(t *testing.T) {
	const nkeys = 5000
	names := make([]string, nkeys+1) // names[x] is ref x's key; ref 0 is none
	for x := 1; x <= nkeys; x++ {
		names[x] = fmt.Sprintf("k%07d", x*7)
	}
	key := func(x ref) string { return names[x] }
	orders := map[string]func(rng *rand.Rand) []ref{
		"ascending": func(*rand.Rand) []ref {
			out := make([]ref, nkeys)
			for i := range out {
				out[i] = ref(i + 1)
			}
			return out
		},
		"descending": func(*rand.Rand) []ref {
			out := make([]ref, nkeys)
			for i := range out {
				out[i] = ref(nkeys - i)
			}
			return out
		},
		"random": func(rng *rand.Rand) []ref {
			out := make([]ref, nkeys)
			for i := range out {
				out[i] = ref(i + 1)
			}
			rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			return out
		},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 7))
			ix := newListIndex(key)
			in := map[ref]bool{}
			model := func() []ref {
				var out []ref
				for x := ref(1); x <= nkeys; x++ {
					if in[x] {
						out = append(out, x)
					}
				}
				return out
			}
			check := func() {
				t.Helper()
				if got, want := checkIndex(t, ix), model(); !slices.Equal(got, want) {
					t.Fatalf("index holds %d refs, model %d", len(got), len(want))
				}
				for range 20 {
					k := fmt.Sprintf("k%07d", rng.IntN(nkeys*7+10))
					var got []ref
					ix.AscendGreaterOrEqual(k, func(x ref) bool {
						got = append(got, x)
						return len(got) < 300
					})
					var want []ref
					for _, x := range model() {
						if names[x] >= k && len(want) < 300 {
							want = append(want, x)
						}
					}
					if !slices.Equal(got, want) {
						t.Fatalf("from %q: %v, want %v", k, got, want)
					}
				}
			}
			for _, x := range order(rng) {
				ix.insert(x)
				in[x] = true
			}
			ix.insert(order(rng)[0]) // already held: no change
			check()
			if name == "ascending" && ix.leaves.Len() > nkeys/leafCap+1 {
				t.Errorf("ascending inserts: %d leaves for %d refs", ix.leaves.Len(), nkeys)
			}
			// Delete most, in random order, re-inserting some.
			for _, x := range order(rng) {
				if rng.IntN(10) < 8 {
					ix.delete(x)
					in[x] = false
				}
				if rng.IntN(20) == 0 {
					y := ref(1 + rng.IntN(nkeys))
					ix.insert(y)
					in[y] = true
				}
			}
			ix.delete(nkeys) // held or not
			in[nkeys] = false
			check()
			if n := ix.Len(); ix.leaves.Len() > 1+4*n/leafCap+n/(leafCap/4) {
				t.Errorf("%d leaves for %d refs after deletes", ix.leaves.Len(), n)
			}
			for _, x := range order(rng) {
				ix.delete(x)
				in[x] = false
			}
			check()
			if ix.Len() != 0 || ix.leaves.Len() != 0 {
				t.Fatalf("emptied index: Len %d, %d leaves", ix.Len(), ix.leaves.Len())
			}
			asc := orders["ascending"](rng)[:1000]
			ix.fill(asc)
			for _, x := range asc {
				in[x] = true
			}
			check()
		})
	}
}
