package crdt

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// state is a keyspace's contents in comparable form: key → replica → totals.
type state map[string]map[ReplicaID]PN

func stateOf(ks *Keyspace) state {
	s := state{}
	ks.ForEach(func(e Entry) bool {
		if s[e.Key] == nil {
			s[e.Key] = map[ReplicaID]PN{}
		}
		if _, dup := s[e.Key][e.Replica]; dup {
			panic("ForEach yielded (" + e.Key + ", " + e.Replica.String() + ") twice")
		}
		s[e.Key][e.Replica] = PN{e.P, e.N}
		return true
	})
	return s
}

func (s state) entries() int {
	n := 0
	for _, rs := range s {
		n += len(rs)
	}
	return n
}

func equalStates(a, b state) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ra := range a {
		rb, ok := b[k]
		if !ok || len(ra) != len(rb) {
			return false
		}
		for r, pa := range ra {
			if pb, ok := rb[r]; !ok || pa != pb {
				return false
			}
		}
	}
	return true
}

// clone copies ks by merging all its entries into a new keyspace.
func clone(ks *Keyspace) *Keyspace {
	c := New()
	ks.ForEach(func(e Entry) bool { c.Merge(e); return true })
	return c
}

// mergeAll returns a new keyspace holding the join of the given ones.
func mergeAll(kss ...*Keyspace) *Keyspace {
	out := New()
	for _, ks := range kss {
		ks.ForEach(func(e Entry) bool { out.Merge(e); return true })
	}
	return out
}

func TestValidKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
		ok   bool
	}{
		{"empty", "", false},
		{"one byte", "a", true},
		{"default", DefaultKey, true},
		{"512 bytes", strings.Repeat("k", 512), true},
		{"513 bytes", strings.Repeat("k", 513), false},
		{"multi-byte UTF-8", "счётчик-😀-計数", true},
		{"128 four-byte runes (512 bytes)", strings.Repeat("😀", 128), true},
		{"129 four-byte runes (516 bytes)", strings.Repeat("😀", 129), false},
		{"511 bytes + 2-byte rune", strings.Repeat("k", 511) + "é", false},
		{"invalid UTF-8", "\xff", false},
		{"truncated rune", "ab\xe2\x82", false},
		{"surrogate half", "\xed\xa0\x80", false},
		{"NUL is UTF-8", "a\x00b", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidKey(tc.key)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidKey(len %d) = %v, want ok=%v", len(tc.key), err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadKey) {
				t.Fatalf("ValidKey error %v is not ErrBadKey", err)
			}

			_, err = Change(tc.key, 1, 0, PN{}, 0, 1)
			if tc.ok != (err == nil) {
				t.Fatalf("Change: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadKey) {
				t.Fatalf("Change error %v is not ErrBadKey", err)
			}

			ks := New()
			changed := ks.Merge(Entry{Key: tc.key, Replica: 1, P: 3})
			if changed != tc.ok {
				t.Fatalf("Merge reported changed=%v, want %v", changed, tc.ok)
			}
			if !tc.ok {
				if ks.Len() != 0 || ks.Entries() != 0 || ks.Root() != 0 || len(ks.Groups()) != 0 {
					t.Fatalf("invalid key left a trace: len=%d entries=%d root=%x", ks.Len(), ks.Entries(), ks.Root())
				}
				return
			}
			if v, ok := ks.Value(tc.key, 0); v != 3 || !ok {
				t.Fatalf("Value = %d, %v; want 3, true", v, ok)
			}
		})
	}
}

func TestMergeIgnoresZeroEntries(t *testing.T) {
	ks := New()
	if ks.Merge(Entry{Key: "k", Replica: 7}) {
		t.Fatal("Merge of an all-zero entry reported a change")
	}
	if ks.Len() != 0 || ks.Entries() != 0 || ks.Root() != 0 {
		t.Fatalf("all-zero entry left a trace: len=%d entries=%d root=%x", ks.Len(), ks.Entries(), ks.Root())
	}
	ks.Merge(Entry{Key: "k", Replica: 7, P: 2})
	root := ks.Root()
	if ks.Merge(Entry{Key: "k", Replica: 7}) || ks.Merge(Entry{Key: "k", Replica: 8}) {
		t.Fatal("Merge of an all-zero entry reported a change")
	}
	if ks.Entries() != 1 || ks.Root() != root {
		t.Fatalf("all-zero entry changed state: entries=%d root=%x want %x", ks.Entries(), ks.Root(), root)
	}
}

func TestMergeOldAfterNew(t *testing.T) {
	ks := New()
	if !ks.Merge(Entry{Key: "k", Replica: 1, P: 10, N: 4}) {
		t.Fatal("first Merge reported no change")
	}
	root, st := ks.Root(), stateOf(ks)
	for _, old := range []Entry{
		{Key: "k", Replica: 1, P: 10, N: 4}, // duplicate
		{Key: "k", Replica: 1, P: 9, N: 4},
		{Key: "k", Replica: 1, P: 10, N: 3},
		{Key: "k", Replica: 1, P: 1, N: 1},
		{Key: "k", Replica: 1, P: 0, N: 4},
	} {
		if ks.Merge(old) {
			t.Errorf("Merge(%+v) after (10,4) reported a change", old)
		}
	}
	if ks.Root() != root || !equalStates(stateOf(ks), st) {
		t.Fatal("merging older entries changed the keyspace")
	}
	if v, _ := ks.Value("k", 0); v != 6 {
		t.Fatalf("Value = %d, want 6", v)
	}
	// Component-wise max: an entry newer in N only still counts.
	if !ks.Merge(Entry{Key: "k", Replica: 1, P: 3, N: 5}) {
		t.Fatal("Merge with a larger N reported no change")
	}
	if got := ks.Get("k", 1); got != (PN{10, 5}) {
		t.Fatalf("Get = %+v, want {10 5}", got)
	}
}

func TestChangeOverflow(t *testing.T) {
	const maxU = math.MaxUint64
	for _, tc := range []struct {
		name  string
		cur   PN
		value int64
		delta int64
		want  PN // ignored when err is set
		err   error
	}{
		{"zero delta", PN{}, 0, 0, PN{}, ErrBadAmount},
		{"inc", PN{2, 3}, -1, 5, PN{7, 3}, nil},
		{"dec", PN{2, 3}, -1, -5, PN{2, 8}, nil},
		{"inc to MaxInt64", PN{}, math.MaxInt64 - 5, 5, PN{5, 0}, nil},
		{"inc past MaxInt64", PN{}, math.MaxInt64 - 5, 6, PN{}, ErrOverflow},
		{"inc 1 at MaxInt64", PN{}, math.MaxInt64, 1, PN{}, ErrOverflow},
		{"inc MaxInt64 from 0", PN{}, 0, math.MaxInt64, PN{math.MaxInt64, 0}, nil},
		{"inc MaxInt64 from 1", PN{}, 1, math.MaxInt64, PN{}, ErrOverflow},
		{"inc MaxInt64 from MinInt64", PN{0, 1 << 63}, math.MinInt64, math.MaxInt64, PN{math.MaxInt64, 1 << 63}, nil},
		{"dec to MinInt64", PN{}, math.MinInt64 + 5, -5, PN{0, 5}, nil},
		{"dec past MinInt64", PN{}, math.MinInt64 + 5, -6, PN{}, ErrOverflow},
		{"dec 1 at MinInt64", PN{}, math.MinInt64, -1, PN{}, ErrOverflow},
		{"delta MinInt64 from 0", PN{4, 4}, 0, math.MinInt64, PN{4, 4 + 1<<63}, nil},
		{"delta MinInt64 from 1", PN{}, 1, math.MinInt64, PN{0, 1 << 63}, nil},
		{"delta MinInt64 from -1", PN{}, -1, math.MinInt64, PN{}, ErrOverflow},
		{"delta MinInt64 from MaxInt64", PN{}, math.MaxInt64, math.MinInt64, PN{0, 1 << 63}, nil},
		{"delta MinInt64 from MinInt64", PN{}, math.MinInt64, math.MinInt64, PN{}, ErrOverflow},
		{"P reaches MaxUint64", PN{maxU - 1, maxU - 1}, 0, 1, PN{maxU, maxU - 1}, nil},
		{"P carry", PN{maxU, maxU}, 0, 1, PN{}, ErrOverflow},
		{"P reaches MaxUint64 by MaxInt64", PN{1 << 63, 1 << 63}, 0, math.MaxInt64, PN{maxU, 1 << 63}, nil},
		{"P carry by MaxInt64", PN{1<<63 + 1, 1 << 63}, 0, math.MaxInt64, PN{}, ErrOverflow},
		{"N reaches MaxUint64", PN{maxU - 1, maxU - 1}, 0, -1, PN{maxU - 1, maxU}, nil},
		{"N carry", PN{maxU, maxU}, 0, -1, PN{}, ErrOverflow},
		{"N carry MinInt64", PN{1 << 63, 1 << 63}, 0, math.MinInt64, PN{}, ErrOverflow},
		{"N MinInt64 exact", PN{1<<63 - 1, 1<<63 - 1}, 0, math.MinInt64, PN{1<<63 - 1, maxU}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Change("k", 9, 0, tc.cur, tc.value, tc.delta)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Change = %+v, %v; want %v", e, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Change: %v", err)
			}
			want := Entry{Key: "k", Replica: 9, P: tc.want.P, N: tc.want.N}
			if e != want {
				t.Fatalf("Change = %+v, want %+v", e, want)
			}
		})
	}
}

// TestChangeProperty checks Change against exact big-integer arithmetic.
func TestChangeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	edge := []int64{0, 1, -1, 2, -2, math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, math.MinInt64 + 1, 1 << 62, -1 << 62}
	edgeU := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1, 1 << 63, 1<<63 - 1}
	pick := func() int64 {
		if rng.IntN(2) == 0 {
			return edge[rng.IntN(len(edge))] + rng.Int64N(3) - 1
		}
		return int64(rng.Uint64())
	}
	pickU := func() uint64 {
		if rng.IntN(2) == 0 {
			return edgeU[rng.IntN(len(edgeU))]
		}
		return rng.Uint64()
	}
	maxI, minI := big.NewInt(math.MaxInt64), big.NewInt(math.MinInt64)
	maxU := new(big.Int).SetUint64(math.MaxUint64)
	for range 100000 {
		cur, value, delta := PN{pickU(), pickU()}, pick(), pick()
		e, err := Change("k", 1, 0, cur, value, delta)
		if delta == 0 {
			if !errors.Is(err, ErrBadAmount) {
				t.Fatalf("delta 0: err = %v", err)
			}
			continue
		}
		nv := new(big.Int).Add(big.NewInt(value), big.NewInt(delta))
		np, nn := new(big.Int).SetUint64(cur.P), new(big.Int).SetUint64(cur.N)
		if delta > 0 {
			np.Add(np, big.NewInt(delta))
		} else {
			nn.Sub(nn, big.NewInt(delta))
		}
		wantErr := nv.Cmp(maxI) > 0 || nv.Cmp(minI) < 0 || np.Cmp(maxU) > 0 || nn.Cmp(maxU) > 0
		if wantErr {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("Change(%+v, %d, 0, %d) = %+v, %v; want ErrOverflow", cur, value, delta, e, err)
			}
			continue
		}
		if err != nil || e.P != np.Uint64() || e.N != nn.Uint64() {
			t.Fatalf("Change(%+v, %d, 0, %d) = %+v, %v; want P=%v N=%v", cur, value, delta, e, err, np, nn)
		}
	}
}

func TestValueClamps(t *testing.T) {
	const maxU = math.MaxUint64
	for _, tc := range []struct {
		name  string
		slots []PN
		want  int64
		ok    bool
	}{
		{"empty", nil, 0, true},
		{"MaxInt64", []PN{{math.MaxInt64, 0}}, math.MaxInt64, true},
		{"MaxInt64 + 1 across replicas", []PN{{math.MaxInt64, 0}, {1, 0}}, math.MaxInt64, false},
		{"MinInt64", []PN{{0, 1 << 63}}, math.MinInt64, true},
		{"MinInt64 - 1 across replicas", []PN{{0, 1 << 63}, {0, 1}}, math.MinInt64, false},
		{"P beyond uint64", []PN{{maxU, 0}, {maxU, 0}}, math.MaxInt64, false},
		{"N beyond uint64", []PN{{0, maxU}, {0, maxU}, {0, maxU}}, math.MinInt64, false},
		{"huge but cancelling", []PN{{maxU, maxU}, {maxU, maxU - 5}, {maxU, maxU}}, 5, true},
		{"cancelling across replicas", []PN{{maxU, 0}, {0, maxU}, {maxU, 0}, {0, maxU - 7}}, 7, true},
		{"MinInt64 out of cancelling", []PN{{maxU, 0}, {0, maxU}, {0, 1 << 63}}, math.MinInt64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := New()
			for i, pn := range tc.slots {
				ks.Merge(Entry{Key: "k", Replica: ReplicaID(i + 1), P: pn.P, N: pn.N})
			}
			v, ok := ks.Value("k", 0)
			if v != tc.want || ok != tc.ok {
				t.Fatalf("Value = %d, %v; want %d, %v", v, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestValueConcurrentOverflow: two replicas that cannot see each other each
// stay within int64, but together they do not; Value clamps and says so, and
// a further change in the same direction is refused.
func TestValueConcurrentOverflow(t *testing.T) {
	for _, dir := range []int64{1, -1} {
		a, b := New(), New()
		step := dir * math.MaxInt64
		for _, w := range []struct {
			ks *Keyspace
			id ReplicaID
		}{{a, 1}, {b, 2}} {
			v, _ := w.ks.Value("k", 0)
			e, err := Change("k", w.id, 0, w.ks.Get("k", w.id), v, step)
			if err != nil {
				t.Fatalf("dir %d: Change: %v", dir, err)
			}
			w.ks.Merge(e)
		}
		m := mergeAll(a, b)
		v, ok := m.Value("k", 0)
		want := int64(math.MaxInt64)
		if dir < 0 {
			want = math.MinInt64
		}
		if ok || v != want {
			t.Fatalf("dir %d: Value = %d, %v; want %d, false", dir, v, ok, want)
		}
		if _, err := Change("k", 3, 0, PN{}, v, dir); !errors.Is(err, ErrOverflow) {
			t.Fatalf("dir %d: further change = %v, want ErrOverflow", dir, err)
		}
	}
}

// TestValueProperty checks Value against big-integer sums over random slots.
func TestValueProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	edge := []uint64{0, 1, math.MaxUint64, 1 << 63, 1<<63 - 1, 1<<63 + 1}
	pick := func() uint64 {
		switch rng.IntN(3) {
		case 0:
			return edge[rng.IntN(len(edge))]
		case 1:
			return rng.Uint64N(1000)
		}
		return rng.Uint64()
	}
	maxI, minI := big.NewInt(math.MaxInt64), big.NewInt(math.MinInt64)
	for range 20000 {
		ks := New()
		exact := new(big.Int)
		n := 1 + rng.IntN(6)
		for r := range n {
			p, q := pick(), pick()
			if p == 0 && q == 0 {
				p = 1
			}
			ks.Merge(Entry{Key: "k", Replica: ReplicaID(r), P: p, N: q})
			exact.Add(exact, new(big.Int).SetUint64(p))
			exact.Sub(exact, new(big.Int).SetUint64(q))
		}
		v, ok := ks.Value("k", 0)
		switch {
		case exact.Cmp(maxI) > 0:
			if ok || v != math.MaxInt64 {
				t.Fatalf("exact %v: Value = %d, %v; want MaxInt64, false", exact, v, ok)
			}
		case exact.Cmp(minI) < 0:
			if ok || v != math.MinInt64 {
				t.Fatalf("exact %v: Value = %d, %v; want MinInt64, false", exact, v, ok)
			}
		default:
			if !ok || v != exact.Int64() {
				t.Fatalf("exact %v: Value = %d, %v", exact, v, ok)
			}
		}
	}
}

func TestReplicaIDString(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, id := range []ReplicaID{0, 1, math.MaxUint64, ReplicaID(rng.Uint64()), ReplicaID(rng.Uint64())} {
		s := id.String()
		if len(s) != 16 || strings.ToLower(s) != s {
			t.Fatalf("String(%d) = %q", uint64(id), s)
		}
		got, err := ParseReplicaID(s)
		if err != nil || got != id {
			t.Fatalf("ParseReplicaID(%q) = %v, %v; want %v", s, got, err, id)
		}
	}
	for _, bad := range []string{"", "1", "000000000000000g", "00000000000000001", "+000000000000001", "-000000000000001", " 000000000000001"} {
		if _, err := ParseReplicaID(bad); err == nil {
			t.Errorf("ParseReplicaID(%q) succeeded", bad)
		}
	}
}

func TestGetAndEntriesOf(t *testing.T) {
	ks := New()
	if got := ks.Get("nope", 1); got != (PN{}) {
		t.Fatalf("Get on missing key = %+v", got)
	}
	if got := ks.EntriesOf("nope"); got != nil {
		t.Fatalf("EntriesOf on missing key = %+v", got)
	}
	want := map[ReplicaID]PN{1: {1, 0}, 2: {0, 2}, 3: {5, 5}}
	for r, pn := range want {
		ks.Merge(Entry{Key: "k", Replica: r, P: pn.P, N: pn.N})
	}
	if ks.Len() != 1 || ks.Entries() != 3 {
		t.Fatalf("Len, Entries = %d, %d; want 1, 3", ks.Len(), ks.Entries())
	}
	es := ks.EntriesOf("k")
	if len(es) != 3 {
		t.Fatalf("EntriesOf = %+v", es)
	}
	for _, e := range es {
		if e.Key != "k" || want[e.Replica] != (PN{e.P, e.N}) || ks.Get("k", e.Replica) != want[e.Replica] {
			t.Fatalf("EntriesOf yielded %+v", e)
		}
	}
	if got := ks.Get("k", 4); got != (PN{}) {
		t.Fatalf("Get for an unknown replica = %+v", got)
	}
	n := 0
	ks.ForEach(func(Entry) bool { n++; return false })
	if n != 1 {
		t.Fatalf("ForEach went on after f returned false: %d calls", n)
	}
}
