package crdt

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// recompute rebuilds the digest from scratch out of ForEach.
func recompute(ks *Keyspace) (groups [NumGroups]uint64, buckets map[uint16]uint64, keys map[uint16][]string) {
	buckets, keys = map[uint16]uint64{}, map[uint16][]string{}
	seen := map[string]bool{}
	ks.ForEach(func(e Entry) bool {
		kh := keyHash(e.Key)
		b := bucketOf(kh)
		h := entryHash(kh, e.Replica, e.Gen, e.P, e.N)
		buckets[b] ^= h
		groups[GroupOf(b)] ^= h
		if !seen[e.Key] {
			seen[e.Key] = true
			keys[b] = append(keys[b], e.Key)
		}
		return true
	})
	ks.ForEachMeta(func(m Meta) bool {
		kh := keyHash(m.Key)
		b := bucketOf(kh)
		h := lifeHash(kh, m.Life)
		buckets[b] ^= h
		groups[GroupOf(b)] ^= h
		if !seen[m.Key] {
			seen[m.Key] = true
			keys[b] = append(keys[b], m.Key)
		}
		return true
	})
	return groups, buckets, keys
}

func allGroups() []uint16 {
	gs := make([]uint16, NumGroups)
	for i := range gs {
		gs[i] = uint16(i)
	}
	return gs
}

// checkDigest compares the incrementally maintained digest with a
// recomputation, and checks the shape of Groups and Buckets.
func checkDigest(t testing.TB, ks *Keyspace) {
	t.Helper()
	groups, buckets, keys := recompute(ks)
	if groups != ks.groups {
		t.Fatal("incremental group hashes differ from a recomputation")
	}
	var root uint64
	for _, g := range groups {
		root ^= g
	}
	if ks.Root() != root {
		t.Fatalf("Root = %x, recomputed %x", ks.Root(), root)
	}
	ks.eachBucket(func(b uint16, bk *bucket) {
		if bk.hash != buckets[b] {
			t.Fatalf("bucket %d: hash %x, recomputed %x", b, bk.hash, buckets[b])
		}
		var names []string
		for _, x := range bk.keys {
			names = append(names, ks.recs.at(x).key())
		}
		if !sameSet(names, keys[b]) {
			t.Fatalf("bucket %d: keys %q, recomputed %q", b, names, keys[b])
		}
	})
	for b := range keys {
		if ks.bucket(b) == nil {
			t.Fatalf("bucket %d holds keys but is missing", b)
		}
	}

	gs := ks.Groups()
	checkSparseSorted(t, "Groups", gs)
	for _, h := range gs {
		if h.Hash != groups[h.Index] {
			t.Fatalf("Groups: group %d = %x, recomputed %x", h.Index, h.Hash, groups[h.Index])
		}
	}
	if n := countNonZero(groups[:]); len(gs) != n {
		t.Fatalf("Groups returned %d slots, want %d", len(gs), n)
	}

	bs := ks.Buckets(allGroups())
	checkSparseSorted(t, "Buckets", bs)
	got := map[uint16]uint64{}
	for _, h := range bs {
		got[h.Index] = h.Hash
	}
	for b, h := range buckets {
		if got[b] != h {
			t.Fatalf("Buckets: bucket %d = %x, recomputed %x", b, got[b], h)
		}
	}
	for b := range got {
		if _, ok := buckets[b]; !ok {
			t.Fatalf("Buckets: bucket %d is not in the recomputation", b)
		}
	}

	if es := ks.BucketContents(sortedKeys(keys)).Entries; len(es) != ks.Entries() {
		t.Fatalf("BucketEntries over all buckets returned %d entries, want %d", len(es), ks.Entries())
	}
}

func checkSparseSorted(t testing.TB, what string, hs []Hash) {
	t.Helper()
	for i, h := range hs {
		if h.Hash == 0 {
			t.Fatalf("%s: zero hash at index %d", what, h.Index)
		}
		if i > 0 && hs[i-1].Index >= h.Index {
			t.Fatalf("%s: not strictly increasing at %d: %d then %d", what, i, hs[i-1].Index, h.Index)
		}
	}
}

func countNonZero(xs []uint64) int {
	n := 0
	for _, x := range xs {
		if x != 0 {
			n++
		}
	}
	return n
}

func sortedKeys[V any](m map[uint16]V) []uint16 {
	out := make([]uint16, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// randomKeyspace fills a keyspace with nkeys keys written by a few replicas.
func randomKeyspace(rng *rand.Rand, nkeys int) *Keyspace {
	ks := New()
	reps := []ReplicaID{ReplicaID(rng.Uint64()), ReplicaID(rng.Uint64()), ReplicaID(rng.Uint64())}
	for i := range nkeys {
		key := fmt.Sprintf("key-%d", i)
		for _, r := range reps[:1+rng.IntN(len(reps))] {
			ks.Merge(Entry{Key: key, Replica: r, P: rng.Uint64N(100), N: 1 + rng.Uint64N(100)})
		}
	}
	return ks
}

func TestDigestIncrementalMatchesRecomputation(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 77))
		ks := New()
		checkDigest(t, ks)
		nkeys := 1 + rng.IntN(3000)
		reps := []ReplicaID{1, 2, 3, ReplicaID(rng.Uint64())}
		for range 3 * nkeys {
			e := Entry{
				Key:     fmt.Sprintf("k%d", rng.IntN(nkeys)),
				Replica: reps[rng.IntN(len(reps))],
				P:       rng.Uint64N(50),
				N:       rng.Uint64N(50),
			}
			ks.Merge(e)
		}
		checkDigest(t, ks)
	}
}

func TestDigestEmpty(t *testing.T) {
	ks := New()
	if ks.Root() != 0 || len(ks.Groups()) != 0 || len(ks.Buckets(allGroups())) != 0 {
		t.Fatal("empty keyspace has a non-empty digest")
	}
	if d := ks.DiffGroups(nil); len(d) != 0 {
		t.Fatalf("DiffGroups(empty, empty) = %v", d)
	}
	if d := ks.DiffBuckets(allGroups(), nil); len(d) != 0 {
		t.Fatalf("DiffBuckets(empty, empty) = %v", d)
	}
	other := New()
	other.Merge(Entry{Key: "k", Replica: 1, P: 1})
	g := GroupOf(BucketOf("k"))
	if d := ks.DiffGroups(other.Groups()); !slices.Equal(d, []uint16{g}) {
		t.Fatalf("DiffGroups(empty, {k}) = %v, want [%d]", d, g)
	}
	if d := other.DiffGroups(nil); !slices.Equal(d, []uint16{g}) {
		t.Fatalf("DiffGroups({k}, empty) = %v, want [%d]", d, g)
	}
}

// TestDiffOneKey: two keyspaces that differ in exactly one key find exactly
// that key's group, bucket and entries.
func TestDiffOneKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	base := randomKeyspace(rng, 5000)
	for i := range 200 {
		a, b := clone(base), clone(base)
		var key string
		if i%3 == 0 {
			key = fmt.Sprintf("new-%d", i) // a key only b has
		} else {
			key = fmt.Sprintf("key-%d", rng.IntN(5000))
		}
		writer := ReplicaID(rng.Uint64N(4)) // sometimes an existing replica of the key, sometimes not
		v, _ := b.Value(key, 0)
		e, err := Change(key, writer, 0, b.Get(key, writer), v, 1+rng.Int64N(10))
		if err != nil {
			t.Fatal(err)
		}
		b.Merge(e)
		// On odd rounds a also wrote to the same key, as another replica.
		var ea Entry
		if i%2 == 1 {
			va, _ := a.Value(key, 0)
			ea, err = Change(key, 1000+writer, 0, a.Get(key, 1000+writer), va, -1)
			if err != nil {
				t.Fatal(err)
			}
			a.Merge(ea)
		}

		bucket := BucketOf(key)
		group := GroupOf(bucket)
		for _, pair := range [][2]*Keyspace{{a, b}, {b, a}} {
			x, y := pair[0], pair[1]
			if d := x.DiffGroups(y.Groups()); !slices.Equal(d, []uint16{group}) {
				t.Fatalf("round %d: DiffGroups = %v, want [%d]", i, d, group)
			}
			groups := x.DiffGroups(y.Groups())
			if d := x.DiffBuckets(groups, y.Buckets(groups)); !slices.Equal(d, []uint16{bucket}) {
				t.Fatalf("round %d: DiffBuckets = %v, want [%d]", i, d, bucket)
			}
		}
		buckets := []uint16{bucket}
		if got := b.Newer(buckets, Contents{Entries: a.BucketContents(buckets).Entries}, nil).Entries; !reflect.DeepEqual(got, []Entry{e}) {
			t.Fatalf("round %d: b.Newer = %+v, want [%+v]", i, got, e)
		}
		gotA := a.Newer(buckets, Contents{Entries: b.BucketContents(buckets).Entries}, nil).Entries
		if i%2 == 1 {
			if !reflect.DeepEqual(gotA, []Entry{ea}) {
				t.Fatalf("round %d: a.Newer = %+v, want [%+v]", i, gotA, ea)
			}
		} else if len(gotA) != 0 {
			t.Fatalf("round %d: a.Newer = %+v, want none", i, gotA)
		}

		// Repair both ways with what Newer found; the digests then agree.
		for _, e := range gotA {
			b.Merge(e)
		}
		a.Merge(e)
		if a.Root() != b.Root() || len(a.DiffGroups(b.Groups())) != 0 {
			t.Fatalf("round %d: digests differ after repair", i)
		}
	}
}

// TestRepairFlow runs the whole anti-entropy exchange between two diverged
// keyspaces, the way package gossip uses the digest, and checks that it
// transfers only entries from differing buckets and converges.
func TestRepairFlow(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	base := randomKeyspace(rng, 2000)
	a, b := clone(base), clone(base)
	touched := map[uint16]bool{}
	for range 30 {
		x, id := a, ReplicaID(1)
		if rng.IntN(2) == 0 {
			x, id = b, 2
		}
		key := fmt.Sprintf("key-%d", rng.IntN(2500))
		v, _ := x.Value(key, 0)
		e, err := Change(key, id, 0, x.Get(key, id), v, 1)
		if err != nil {
			t.Fatal(err)
		}
		x.Merge(e)
		touched[BucketOf(key)] = true
	}
	groups := a.DiffGroups(b.Groups())
	buckets := b.DiffBuckets(groups, a.Buckets(groups))
	for _, bk := range buckets {
		if !touched[bk] {
			t.Fatalf("DiffBuckets returned untouched bucket %d", bk)
		}
	}
	if len(buckets) != len(touched) {
		t.Fatalf("DiffBuckets returned %d buckets, %d were touched", len(buckets), len(touched))
	}
	fromA := a.BucketContents(buckets).Entries
	toA := b.Newer(buckets, Contents{Entries: fromA}, nil).Entries
	for _, e := range fromA {
		b.Merge(e)
	}
	for _, e := range toA {
		a.Merge(e)
	}
	if !sameKeyspace(a, b) {
		t.Fatal("keyspaces differ after repair")
	}
	checkDigest(t, a)
	checkDigest(t, b)
}

func TestDiffIgnoresOutOfRangeAndDuplicates(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	a := randomKeyspace(rng, 3000)
	b := clone(a)
	b.Merge(Entry{Key: "key-17", Replica: 99, P: 1})
	b.Merge(Entry{Key: "extra", Replica: 99, P: 1})

	remote := b.Groups()
	want := a.DiffGroups(remote)
	if len(want) == 0 {
		t.Fatal("test setup: keyspaces do not differ")
	}
	noisy := append(slices.Clone(remote),
		Hash{Index: NumGroups, Hash: 1}, Hash{Index: 65535, Hash: 2}, Hash{Index: 300, Hash: 3})
	if got := a.DiffGroups(noisy); !slices.Equal(got, want) {
		t.Fatalf("DiffGroups with out-of-range indexes = %v, want %v", got, want)
	}
	// A duplicated slot: the same value again changes nothing.
	dup := append(slices.Clone(remote), remote...)
	if got := a.DiffGroups(dup); !slices.Equal(got, want) {
		t.Fatalf("DiffGroups with duplicated slots = %v, want %v", got, want)
	}
	shuffled := slices.Clone(remote)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := a.DiffGroups(shuffled); !slices.Equal(got, want) {
		t.Fatalf("DiffGroups with unordered slots = %v, want %v", got, want)
	}

	wantB := a.DiffBuckets(want, b.Buckets(want))
	if len(wantB) == 0 {
		t.Fatal("test setup: no differing bucket")
	}
	messy := []uint16{NumGroups, 65535}
	for i := len(want) - 1; i >= 0; i-- {
		messy = append(messy, want[i], want[i], 999)
	}
	if got := a.Buckets(messy); !reflect.DeepEqual(got, a.Buckets(want)) {
		t.Fatalf("Buckets with duplicated/out-of-range groups = %v, want %v", got, a.Buckets(want))
	}
	remoteB := append(b.Buckets(messy), b.Buckets([]uint16{(want[0] + 1) % NumGroups})...) // buckets outside the groups
	remoteB = append(remoteB, Hash{Index: 65535, Hash: 5})
	if got := a.DiffBuckets(messy, remoteB); !slices.Equal(got, wantB) {
		t.Fatalf("DiffBuckets with noisy input = %v, want %v", got, wantB)
	}
	for i := 1; i < len(wantB); i++ {
		if wantB[i-1] >= wantB[i] {
			t.Fatalf("DiffBuckets not sorted: %v", wantB)
		}
	}

	if d := a.DiffBuckets([]uint16{NumGroups, 65535}, nil); len(d) != 0 {
		t.Fatalf("DiffBuckets over out-of-range groups = %v", d)
	}
	bucket := BucketOf("key-17")
	es := a.BucketContents([]uint16{bucket, bucket, bucket}).Entries
	if want := a.BucketContents([]uint16{bucket}).Entries; !reflect.DeepEqual(es, want) {
		t.Fatalf("BucketEntries with duplicated buckets = %+v, want %+v", es, want)
	}
	for _, e := range es {
		if BucketOf(e.Key) != bucket {
			t.Fatalf("BucketEntries(%d) returned key %q of bucket %d", bucket, e.Key, BucketOf(e.Key))
		}
	}
	if got := a.Newer([]uint16{bucket, bucket}, Contents{}, nil).Entries; len(got) != len(a.BucketContents([]uint16{bucket}).Entries) {
		t.Fatalf("Newer with duplicated buckets returned %d entries", len(got))
	}
}

func TestDedupeDoesNotModifyInput(t *testing.T) {
	in := []uint16{5, 3, 5, 1, 3}
	out := dedupe(in)
	if !slices.Equal(out, []uint16{1, 3, 5}) {
		t.Fatalf("dedupe = %v", out)
	}
	if !slices.Equal(in, []uint16{5, 3, 5, 1, 3}) {
		t.Fatalf("dedupe modified its input: %v", in)
	}
	for _, tc := range [][]uint16{nil, {}, {7}, {1, 2, 3}, {3, 2, 1}, {2, 2}} {
		got := dedupe(tc)
		want := slices.Compact(slices.Sorted(slices.Values(tc)))
		if !slices.Equal(got, want) {
			t.Fatalf("dedupe(%v) = %v, want %v", tc, got, want)
		}
	}
}

func TestBucketGeometry(t *testing.T) {
	if NumBuckets != 1<<16 || NumGroups*BucketsPerGroup != NumBuckets {
		t.Fatal("digest geometry changed: that needs a protocol version bump")
	}
	for _, b := range []uint16{0, 255, 256, 65535} {
		if g := GroupOf(b); int(g) != int(b)/BucketsPerGroup || int(g) >= NumGroups {
			t.Fatalf("GroupOf(%d) = %d", b, g)
		}
	}
	// Key and entry hashes are compared across nodes, so they are part of the
	// protocol: changing these values needs a protocol version bump.
	for _, tc := range []struct {
		key    string
		hash   uint64
		bucket uint16
	}{
		{"default", 0xf109ada1b3dd278e, 61705},
		{"a", 0x02c0bdbf481420f8, 704},
		{"ключ", 0x95f04555fa3bf374, 38384},
		{strings.Repeat("k", 512), 0x2849b398e63b52c1, 10313},
	} {
		if h := keyHash(tc.key); h != tc.hash {
			t.Errorf("keyHash(%.10q…) = %#016x, want %#016x", tc.key, h, tc.hash)
		}
		if b := BucketOf(tc.key); b != tc.bucket {
			t.Errorf("BucketOf(%.10q…) = %d, want %d", tc.key, b, tc.bucket)
		}
	}
	if h := entryHash(keyHash("default"), 0x0123456789abcdef, 0, 5, 3); h != 0xa202eb616d536243 {
		t.Errorf("entryHash = %#016x", h)
	}
	if h := entryHash(keyHash("a"), 1, 0, 0, 1); h != 0x7cf570b41cc53776 {
		t.Errorf("entryHash = %#016x", h)
	}
	// Lives are hashed into the digest too.
	if h := lifeHash(keyHash("default"), Life{Gen: 1, Deleted: 1_700_000_000_000}); h != 0x681c9faf471d5cb9 {
		t.Errorf("lifeHash(tombstone) = %#016x", h)
	}
	if h := lifeHash(keyHash("a"), Life{Gen: 2, TTL: TTL{Ver: 3, Deadline: 1_700_000_060_000}}); h != 0x85855dac1ff19a7c {
		t.Errorf("lifeHash(deadline) = %#016x", h)
	}
	// And what a node sends: the group hashes of a small keyspace, entries
	// and a life together (the same before and after the keyspace's
	// in-memory layout changed).
	ks := New()
	ks.Merge(Entry{Key: "default", Replica: 0x0123456789abcdef, P: 5, N: 3})
	ks.Merge(Entry{Key: "a", Replica: 1, P: 1})
	ks.MergeMeta(Meta{Key: "a", Life: Life{TTL: TTL{Ver: 3, Deadline: 1_700_000_060_000}}})
	want := []Hash{{Index: 0x2, Hash: 0x1c81ffb83f8e4459}, {Index: 0xf1, Hash: 0xa202eb616d536243}}
	if got := ks.Groups(); !slices.Equal(got, want) {
		t.Errorf("Groups() = %#v, want %#v", got, want)
	}
}

// TestNewerComponentwise: an entry is newer when either total is larger, and
// an entry the other side lacks entirely is newer too.
func TestNewerComponentwise(t *testing.T) {
	ks := New()
	mine := []Entry{
		{Key: "k", Replica: 1, P: 5, N: 3},
		{Key: "k", Replica: 2, P: 5, N: 3},
		{Key: "k", Replica: 3, P: 5, N: 3},
		{Key: "k", Replica: 4, P: 5, N: 3},
		{Key: "k", Replica: 5, P: 5, N: 3},
	}
	for _, e := range mine {
		ks.Merge(e)
	}
	theirs := []Entry{
		{Key: "k", Replica: 1, P: 5, N: 3}, // equal: not newer
		{Key: "k", Replica: 2, P: 5, N: 1}, // mine has a larger N
		{Key: "k", Replica: 3, P: 4, N: 3}, // mine has a larger P
		{Key: "k", Replica: 4, P: 9, N: 9}, // theirs is ahead: not newer
		// replica 5 missing on their side
		{Key: "other", Replica: 1, P: 1}, // a key I lack: not my business
	}
	got := ks.Newer([]uint16{BucketOf("k")}, Contents{Entries: theirs}, nil).Entries
	slices.SortFunc(got, func(a, b Entry) int { return int(a.Replica) - int(b.Replica) })
	if want := []Entry{mine[1], mine[2], mine[4]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Newer = %+v, want %+v", got, want)
	}
	if got := ks.Newer([]uint16{BucketOf("k") + 1}, Contents{Entries: nil}, nil).Entries; len(got) != 0 {
		t.Fatalf("Newer over another bucket = %+v", got)
	}
}

// TestBucketsSkipZeroHashes: a bucket whose entries' hashes cancel out (or a
// bucket that exists without entries) must not show up in the sparse list.
func TestBucketsSkipZeroHashes(t *testing.T) {
	ks := New()
	ks.Merge(Entry{Key: "k", Replica: 1, P: 1})
	b := BucketOf("k")
	g := GroupOf(b)
	other := uint16(int(g)*BucketsPerGroup + (int(b)+1)%BucketsPerGroup)
	ks.setBucket(other, &bucket{})
	if got := ks.Buckets([]uint16{g}); len(got) != 1 || got[0].Index != b {
		t.Fatalf("Buckets = %+v, want only bucket %d", got, b)
	}
}

func TestNewerStopsAtTheBudget(t *testing.T) {
	ks := New()
	for i := 0; i < 1000; i++ {
		ks.Merge(Entry{Key: fmt.Sprintf("k%d", i), Replica: 1, P: 1})
	}
	var all []uint16
	for b := 0; b < NumBuckets; b++ {
		all = append(all, uint16(b))
	}
	n := 0
	got := ks.Newer(all, Contents{Entries: nil}, func(string) bool { n++; return n <= 10 }).Entries
	if len(got) != 10 {
		t.Fatalf("got %d entries with a budget of 10", len(got))
	}
	if n != 11 {
		t.Fatalf("fits called %d times: Newer kept working past the budget", n)
	}
}
