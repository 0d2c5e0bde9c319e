package crdt

import (
	"cmp"
	mathrand "math/rand"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"testing/quick"
)

// snapshot is everything a keyspace holds, in comparable form: its entries
// (with their generations) and non-zero lives in key order, its digest root
// and its counts.
type snapshot struct {
	Entries       []Entry
	Metas         []Meta
	Root          uint64
	Len, NEntries int
}

func snap(ks *Keyspace) snapshot {
	s := snapshot{Entries: []Entry{}, Metas: []Meta{}, Root: ks.Root(), Len: ks.Len(), NEntries: ks.Entries()}
	ks.ForEach(func(e Entry) bool { s.Entries = append(s.Entries, e); return true })
	ks.ForEachMeta(func(m Meta) bool { s.Metas = append(s.Metas, m); return true })
	slices.SortFunc(s.Entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Replica, b.Replica))
	})
	slices.SortFunc(s.Metas, func(a, b Meta) int { return cmp.Compare(a.Key, b.Key) })
	return s
}

func sameSnap(a, b *Keyspace) bool { return reflect.DeepEqual(snap(a), snap(b)) }

// item is one replicated change: an entry or a meta.
type item struct {
	IsMeta bool
	E      Entry
	M      Meta
}

func (it item) apply(ks *Keyspace) bool {
	if it.IsMeta {
		return ks.MergeMeta(it.M)
	}
	return ks.Merge(it.E)
}

// itemList is a quick.Generator of entries and metas over a small domain,
// so that lists collide on keys, replicas, generations and TTL versions.
type itemList []item

var (
	propKeys      = []string{"a", "b", "c", "", "\xff"} // the last two are invalid and must be ignored
	propDeadlines = []int64{0, 10, 20, 30}
	propDeleted   = []int64{0, 5, 7, 40}
)

func randItem(r *mathrand.Rand) item {
	key := propKeys[r.Intn(len(propKeys))]
	if r.Intn(2) == 0 {
		return item{E: Entry{Key: key, Replica: ReplicaID(r.Intn(3)), Gen: uint64(r.Intn(3)), P: uint64(r.Intn(4)), N: uint64(r.Intn(4))}}
	}
	return item{IsMeta: true, M: Meta{Key: key, Life: Life{
		Gen:     uint64(r.Intn(3)),
		TTL:     TTL{Ver: uint64(r.Intn(3)), Deadline: propDeadlines[r.Intn(len(propDeadlines))]},
		Deleted: propDeleted[r.Intn(len(propDeleted))],
	}}}
}

func (itemList) Generate(r *mathrand.Rand, size int) reflect.Value {
	l := make(itemList, r.Intn(size+1))
	for i := range l {
		l[i] = randItem(r)
	}
	return reflect.ValueOf(l)
}

func (l itemList) keyspace() *Keyspace {
	ks := New()
	for _, it := range l {
		it.apply(ks)
	}
	return ks
}

// transfer merges everything src holds into dst, lives first or entries
// first.
func transfer(dst, src *Keyspace, metasFirst bool) {
	metas := func() { src.ForEachMeta(func(m Meta) bool { dst.MergeMeta(m); return true }) }
	if metasFirst {
		metas()
	}
	src.ForEach(func(e Entry) bool { dst.Merge(e); return true })
	if !metasFirst {
		metas()
	}
}

func joinAll(metasFirst bool, kss ...*Keyspace) *Keyspace {
	out := New()
	for _, ks := range kss {
		transfer(out, ks, metasFirst)
	}
	return out
}

// model is the lattice join of l computed directly: per key, the join of
// every life (an entry implies the life {Gen: e.Gen}), and per replica the
// component-wise max of the entries of the winning generation.
func (l itemList) model() snapshot {
	lives := map[string]Life{}
	for _, it := range l {
		switch {
		case it.IsMeta && ValidKey(it.M.Key) == nil && !it.M.IsZero():
			lives[it.M.Key] = join(lives[it.M.Key], it.M.Life)
		case !it.IsMeta && ValidKey(it.E.Key) == nil && (it.E.P != 0 || it.E.N != 0):
			lives[it.E.Key] = join(lives[it.E.Key], Life{Gen: it.E.Gen})
		}
	}
	type rk struct {
		k string
		r ReplicaID
	}
	pns := map[rk]PN{}
	for _, it := range l {
		e := it.E
		if it.IsMeta || ValidKey(e.Key) != nil || (e.P == 0 && e.N == 0) || e.Gen != lives[e.Key].Gen {
			continue
		}
		pn := pns[rk{e.Key, e.Replica}]
		pns[rk{e.Key, e.Replica}] = PN{max(pn.P, e.P), max(pn.N, e.N)}
	}
	s := snapshot{Entries: []Entry{}, Metas: []Meta{}, Len: len(lives), NEntries: len(pns)}
	for k, pn := range pns {
		s.Entries = append(s.Entries, Entry{Key: k.k, Replica: k.r, Gen: lives[k.k].Gen, P: pn.P, N: pn.N})
	}
	for k, lf := range lives {
		if !lf.IsZero() {
			s.Metas = append(s.Metas, Meta{Key: k, Life: lf})
		}
	}
	slices.SortFunc(s.Entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Replica, b.Replica))
	})
	slices.SortFunc(s.Metas, func(a, b Meta) int { return cmp.Compare(a.Key, b.Key) })
	return s
}

// TestLifeJoinLaws: join on lives (and joinTTL on registers) is a
// semilattice: commutative, associative, idempotent, and an upper bound.
func TestLifeJoinLaws(t *testing.T) {
	gen := func(r *mathrand.Rand) Life { return randItem(r).M.Life }
	r := mathrand.New(mathrand.NewSource(21))
	for range 20000 {
		a, b, c := gen(r), gen(r), gen(r)
		if join(a, b) != join(b, a) {
			t.Fatalf("join not commutative: %+v, %+v", a, b)
		}
		if join(join(a, b), c) != join(a, join(b, c)) {
			t.Fatalf("join not associative: %+v, %+v, %+v", a, b, c)
		}
		if join(a, a) != a || join(a, Life{}) != a {
			t.Fatalf("join not idempotent or Life{} not its bottom: %+v", a)
		}
		ab := join(a, b)
		if join(ab, a) != ab || join(ab, b) != ab {
			t.Fatalf("join(%+v, %+v) = %+v is not an upper bound", a, b, ab)
		}
		if jt := joinTTL(a.TTL, b.TTL); jt != joinTTL(b.TTL, a.TTL) || joinTTL(jt, c.TTL) != joinTTL(a.TTL, joinTTL(b.TTL, c.TTL)) {
			t.Fatalf("joinTTL not commutative/associative: %+v %+v %+v", a.TTL, b.TTL, c.TTL)
		}
	}
}

func TestJoinTTLOrder(t *testing.T) {
	for _, tc := range []struct{ a, b, want TTL }{
		{TTL{1, 100}, TTL{1, 50}, TTL{1, 50}},   // equal versions: the earlier deadline wins
		{TTL{1, 0}, TTL{1, 100}, TTL{1, 100}},   // any deadline beats none
		{TTL{2, 0}, TTL{1, 50}, TTL{2, 0}},      // a higher version beats, even a clear
		{TTL{2, 500}, TTL{1, 50}, TTL{2, 500}},  // a higher version beats an earlier deadline
		{TTL{0, 0}, TTL{1, 0}, TTL{1, 0}},       // a cleared register is newer than a never-set one
		{TTL{3, -5}, TTL{3, 7}, TTL{3, -5}},     // negative deadlines order like any other
		{TTL{3, 7}, TTL{3, 7}, TTL{3, 7}},       // equal
		{TTL{1, 1}, TTL{1, 1 << 62}, TTL{1, 1}}, // far deadlines
	} {
		if got := joinTTL(tc.a, tc.b); got != tc.want {
			t.Errorf("joinTTL(%+v, %+v) = %+v, want %+v", tc.a, tc.b, got, tc.want)
		}
		if got := joinTTL(tc.b, tc.a); got != tc.want {
			t.Errorf("joinTTL(%+v, %+v) = %+v, want %+v", tc.b, tc.a, got, tc.want)
		}
	}
	// Life join: a higher generation wins outright; equal generations merge.
	if got := join(Life{Gen: 1, TTL: TTL{9, 9}, Deleted: 99}, Life{Gen: 2}); got != (Life{Gen: 2}) {
		t.Errorf("higher gen does not win outright: %+v", got)
	}
	if got := join(Life{Gen: 2, TTL: TTL{1, 30}, Deleted: 5}, Life{Gen: 2, TTL: TTL{1, 20}, Deleted: 7}); got != (Life{Gen: 2, TTL: TTL{1, 20}, Deleted: 7}) {
		t.Errorf("same-gen join = %+v", got)
	}
}

// TestMixedMergeMatchesModel: merging any list of entries and metas yields
// exactly the directly computed join, and Merge/MergeMeta report a change
// exactly when the state changed.
func TestMixedMergeMatchesModel(t *testing.T) {
	n := 0
	f := func(l itemList) bool {
		ks := New()
		for _, it := range l {
			before := snap(ks)
			changed := it.apply(ks)
			if changed == reflect.DeepEqual(before, snap(ks)) {
				t.Logf("apply(%+v) reported changed=%v wrongly", it, changed)
				return false
			}
		}
		got, want := snap(ks), l.model()
		want.Root = got.Root
		if !reflect.DeepEqual(got, want) {
			t.Logf("got  %+v\nwant %+v", got, want)
			return false
		}
		if n++; n%50 == 0 { // checkDigest scans every bucket: sample it
			checkDigest(t, ks)
		}
		return true
	}
	if err := quick.Check(f, quickConfig(31)); err != nil {
		t.Fatal(err)
	}
}

func TestMixedMergeCommutative(t *testing.T) {
	f := func(a, b itemList, metasFirst bool) bool {
		ab := append(append(itemList(nil), a...), b...)
		ba := append(append(itemList(nil), b...), a...)
		x, y := a.keyspace(), b.keyspace()
		return sameSnap(ab.keyspace(), ba.keyspace()) &&
			sameSnap(joinAll(metasFirst, x, y), joinAll(!metasFirst, y, x)) &&
			sameSnap(joinAll(metasFirst, x, y), ab.keyspace())
	}
	if err := quick.Check(f, quickConfig(32)); err != nil {
		t.Fatal(err)
	}
}

func TestMixedMergeAssociative(t *testing.T) {
	f := func(a, b, c itemList, metasFirst bool) bool {
		x, y, z := a.keyspace(), b.keyspace(), c.keyspace()
		return sameSnap(joinAll(metasFirst, joinAll(metasFirst, x, y), z), joinAll(!metasFirst, x, joinAll(metasFirst, y, z)))
	}
	if err := quick.Check(f, quickConfig(33)); err != nil {
		t.Fatal(err)
	}
}

func TestMixedMergeIdempotent(t *testing.T) {
	f := func(l itemList) bool {
		x := l.keyspace()
		before := snap(x)
		for _, it := range l {
			if it.apply(x) {
				t.Logf("re-applying %+v reported a change", it)
				return false
			}
		}
		changed := false
		x.ForEach(func(e Entry) bool { changed = changed || x.Merge(e); return true })
		x.ForEachMeta(func(m Meta) bool { changed = changed || x.MergeMeta(m); return true })
		return !changed && reflect.DeepEqual(snap(x), before) && sameSnap(joinAll(true, x, x), x)
	}
	if err := quick.Check(f, quickConfig(34)); err != nil {
		t.Fatal(err)
	}
}

// TestMixedMergeAnyOrderAnyDuplication: shuffled, duplicated deliveries of
// the same set of entries and metas all reach the same state.
func TestMixedMergeAnyOrderAnyDuplication(t *testing.T) {
	f := func(l itemList, seed uint64) bool {
		want := snap(l.keyspace())
		rng := rand.New(rand.NewPCG(seed, 3))
		for range 8 {
			p := slices.Clone(l)
			for range rng.IntN(len(l) + 1) {
				p = append(p, l[rng.IntN(len(l))])
			}
			rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			if got := snap(p.keyspace()); !reflect.DeepEqual(got, want) {
				t.Logf("order %+v\ngot  %+v\nwant %+v", p, got, want)
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, quickConfig(35)); err != nil {
		t.Fatal(err)
	}
}

// exchange runs one anti-entropy round from x's side: x sends the contents
// of the differing buckets, y replies with what it has that x lacks
// (computed before taking x's contents in), and both merge.
func exchange(x, y *Keyspace, metasFirst bool) (sent, replied Contents) {
	groups := x.DiffGroups(y.Groups())
	buckets := x.DiffBuckets(groups, y.Buckets(groups))
	sent = x.BucketContents(buckets)
	replied = y.Newer(buckets, sent, nil)
	mergeContents(y, sent, metasFirst)
	mergeContents(x, replied, !metasFirst)
	return sent, replied
}

func mergeContents(ks *Keyspace, c Contents, metasFirst bool) {
	if metasFirst {
		for _, m := range c.Metas {
			ks.MergeMeta(m)
		}
	}
	for _, e := range c.Entries {
		ks.Merge(e)
	}
	if !metasFirst {
		for _, m := range c.Metas {
			ks.MergeMeta(m)
		}
	}
}

// TestNewerExchangeConverges: two keyspaces built from arbitrary entries and
// metas end equal after one exchange in either direction, both equal to
// their join, and a second exchange finds nothing to send.
func TestNewerExchangeConverges(t *testing.T) {
	n := 0
	f := func(a, b itemList, fromB, metasFirst bool) bool {
		x, y := a.keyspace(), b.keyspace()
		if fromB {
			x, y = y, x
		}
		want := snap(joinAll(true, x, y))
		exchange(x, y, metasFirst)
		if !reflect.DeepEqual(snap(x), want) || !reflect.DeepEqual(snap(y), want) {
			t.Logf("a=%+v\nb=%+v\nx=%+v\ny=%+v\nwant=%+v", a, b, snap(x), snap(y), want)
			return false
		}
		if n++; n%50 == 0 { // checkDigest scans every bucket: sample it
			checkDigest(t, x)
			checkDigest(t, y)
		}
		all := make([]uint16, 0, len(propKeys))
		for _, k := range propKeys {
			all = append(all, BucketOf(k))
		}
		if n := y.Newer(all, x.BucketContents(all), nil); n.Len() != 0 {
			t.Logf("Newer between equal keyspaces = %+v", n)
			return false
		}
		return true
	}
	if err := quick.Check(f, quickConfig(36)); err != nil {
		t.Fatal(err)
	}
}
