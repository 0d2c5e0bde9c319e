package crdt

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// checkBuckets checks that no bucket outlives its last key.
func checkBuckets(t testing.TB, ks *Keyspace) {
	t.Helper()
	ks.eachBucket(func(b uint16, bk *bucket) {
		if len(bk.keys) == 0 {
			t.Fatalf("bucket %d is held with no keys (hash %x)", b, bk.hash)
		}
	})
}

func mustApply(t *testing.T, ks *Keyspace, m Meta, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("nothing to write for %+v", m)
	}
	if !ks.MergeMeta(m) {
		t.Fatalf("MergeMeta(%+v) reported no change", m)
	}
}

func TestHigherGenerationDropsLower(t *testing.T) {
	ks := New()
	ks.Merge(Entry{Key: "k", Replica: 1, P: 10})
	ks.Merge(Entry{Key: "k", Replica: 2, N: 3})
	ks.Merge(Entry{Key: "other", Replica: 1, P: 1})
	if !ks.Merge(Entry{Key: "k", Replica: 3, Gen: 1, P: 2}) {
		t.Fatal("an entry of a newer generation reported no change")
	}
	if got := ks.EntriesOf("k"); !reflect.DeepEqual(got, []Entry{{Key: "k", Replica: 3, Gen: 1, P: 2}}) {
		t.Fatalf("EntriesOf after gen 1 = %+v", got)
	}
	if l, ok := ks.LifeOf("k"); !ok || l != (Life{Gen: 1}) {
		t.Fatalf("LifeOf = %+v, %v", l, ok)
	}
	if ks.Entries() != 2 || ks.Len() != 2 {
		t.Fatalf("Len, Entries = %d, %d; want 2, 2", ks.Len(), ks.Entries())
	}
	if v, _ := ks.Value("k", 0); v != 2 {
		t.Fatalf("Value = %d, want 2", v)
	}
	if ks.Stats().DroppedEntries != 2 {
		t.Fatalf("DroppedEntries = %d, want 2", ks.Stats().DroppedEntries)
	}
	// Entries of older generations are ignored afterwards.
	root := ks.Root()
	for _, e := range []Entry{{Key: "k", Replica: 1, P: 100}, {Key: "k", Replica: 3, P: 100}, {Key: "k", Replica: 9, N: 1}} {
		if ks.Merge(e) || ks.MergeKey([]byte(e.Key), e.Replica, e.Gen, e.P, e.N) {
			t.Fatalf("Merge of an older generation's %+v reported a change", e)
		}
	}
	if ks.Root() != root || ks.Get("k", 1) != (PN{}) {
		t.Fatal("an older generation's entry changed the keyspace")
	}
	// MergeKey of a newer generation behaves like Merge.
	if !ks.MergeKey([]byte("k"), 4, 3, 0, 1) {
		t.Fatal("MergeKey of gen 3 reported no change")
	}
	if st := ks.StatusOf("k", 0); st != (Status{Live: true, Value: -1, Gen: 3}) {
		t.Fatalf("StatusOf = %+v", st)
	}
	checkDigest(t, ks)
}

func TestValueAndStatus(t *testing.T) {
	ks := New()
	if st := ks.StatusOf("nope", 0); st != (Status{}) {
		t.Fatalf("StatusOf(absent) = %+v", st)
	}
	ks.Merge(Entry{Key: "k", Replica: 1, P: 7, N: 2})
	mustApply(t, ks, Meta{Key: "k", Life: Life{TTL: TTL{Ver: 1, Deadline: 100}}}, true)
	for _, tc := range []struct {
		now  int64
		want Status
	}{
		{0, Status{Live: true, Value: 5, Deadline: 100}},
		{99, Status{Live: true, Value: 5, Deadline: 100}},
		{100, Status{}}, // at the deadline it is expired
		{1000, Status{}},
	} {
		if st := ks.StatusOf("k", tc.now); st != tc.want {
			t.Errorf("StatusOf at %d = %+v, want %+v", tc.now, st, tc.want)
		}
		v, ok := ks.Value("k", tc.now)
		if v != tc.want.Value || !ok {
			t.Errorf("Value at %d = %d, %v; want %d", tc.now, v, ok, tc.want.Value)
		}
	}
	// A tombstone: not live, value 0, generation reported.
	ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, Deleted: 50}})
	if st := ks.StatusOf("k", 0); st != (Status{Gen: 1}) {
		t.Fatalf("StatusOf(tombstone) = %+v", st)
	}
	if v, ok := ks.Value("k", 0); v != 0 || !ok {
		t.Fatalf("Value(tombstone) = %d, %v", v, ok)
	}
	// Clamped values are reported as such.
	ks.Merge(Entry{Key: "big", Replica: 1, P: 1 << 63})
	ks.Merge(Entry{Key: "big", Replica: 2, P: 1 << 63})
	if st := ks.StatusOf("big", 0); !st.Live || !st.Clamped || st.Value != 1<<63-1 {
		t.Fatalf("StatusOf(big) = %+v", st)
	}
}

func TestWriteGen(t *testing.T) {
	ks := New()
	if g, cur := ks.WriteGen("k", 1, 0); g != 0 || cur != (PN{}) {
		t.Fatalf("WriteGen(absent) = %d, %+v", g, cur)
	}
	ks.Merge(Entry{Key: "k", Replica: 1, Gen: 2, P: 4, N: 1})
	if g, cur := ks.WriteGen("k", 1, 0); g != 2 || cur != (PN{4, 1}) {
		t.Fatalf("WriteGen(live) = %d, %+v", g, cur)
	}
	if g, cur := ks.WriteGen("k", 2, 0); g != 2 || cur != (PN{}) {
		t.Fatalf("WriteGen(live, other replica) = %d, %+v", g, cur)
	}
	mustApply(t, ks, Meta{Key: "k", Life: Life{Gen: 2, TTL: TTL{1, 100}}}, true)
	if g, cur := ks.WriteGen("k", 1, 99); g != 2 || cur != (PN{4, 1}) {
		t.Fatalf("WriteGen before the deadline = %d, %+v", g, cur)
	}
	if g, cur := ks.WriteGen("k", 1, 100); g != 3 || cur != (PN{}) {
		t.Fatalf("WriteGen after the deadline = %d, %+v; want 3 from zero", g, cur)
	}
	// The write after expiry, as a node does it, then reads from zero.
	g, cur := ks.WriteGen("k", 1, 150)
	v, _ := ks.ValueWith("k", 1, g, PN{})
	e, err := Change("k", 1, g, cur, v, 5)
	if err != nil || v != 0 {
		t.Fatalf("Change = %+v, %v (value %d)", e, err, v)
	}
	ks.Merge(e)
	if st := ks.StatusOf("k", 150); st != (Status{Live: true, Value: 5, Gen: 3}) {
		t.Fatalf("StatusOf after a write after expiry = %+v", st)
	}
	// A tombstone's generation takes writes itself.
	ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 4, Deleted: 200}})
	if g, cur := ks.WriteGen("k", 1, 300); g != 4 || cur != (PN{}) {
		t.Fatalf("WriteGen(tombstone) = %d, %+v", g, cur)
	}
}

func TestDeletion(t *testing.T) {
	ks := New()
	if m, live := ks.Deletion("k", 10); live || m != (Meta{Key: "k", Life: Life{Gen: 1, Deleted: 10}}) {
		t.Fatalf("Deletion(absent) = %+v, %v", m, live)
	}
	ks.Merge(Entry{Key: "k", Replica: 1, P: 3})
	m, live := ks.Deletion("k", 20)
	if !live || m != (Meta{Key: "k", Life: Life{Gen: 1, Deleted: 20}}) {
		t.Fatalf("Deletion(live) = %+v, %v", m, live)
	}
	// Reset wins by generation: a write of gen 0 the deleter had not seen is dropped.
	other := New()
	other.Merge(Entry{Key: "k", Replica: 2, P: 9})
	mustApply(t, ks, m, true)
	mustApply(t, other, m, true)
	ks.Merge(Entry{Key: "k", Replica: 2, P: 9})
	if !sameSnap(ks, other) || ks.Entries() != 0 || ks.Len() != 1 {
		t.Fatalf("after a delete: %+v vs %+v", snap(ks), snap(other))
	}
	if st := ks.StatusOf("k", 20); st.Live {
		t.Fatalf("deleted key is live: %+v", st)
	}
	// Deleting a tombstone: not live, next generation.
	if m, live := ks.Deletion("k", 30); live || m.Gen != 2 || m.Deleted != 30 {
		t.Fatalf("Deletion(tombstone) = %+v, %v", m, live)
	}
	// Concurrent deletes of the same generation are one delete: latest stamp.
	if ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, Deleted: 15}}) {
		t.Fatal("an earlier concurrent delete changed the tombstone")
	}
	if !ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, Deleted: 25}}) {
		t.Fatal("a later concurrent delete did not change the tombstone")
	}
	if l, _ := ks.LifeOf("k"); l != (Life{Gen: 1, Deleted: 25}) {
		t.Fatalf("LifeOf = %+v", l)
	}
	// Deleting an expired key: not live, next generation.
	ks.Merge(Entry{Key: "e", Replica: 1, P: 1})
	mustApply(t, ks, Meta{Key: "e", Life: Life{TTL: TTL{1, 100}}}, true)
	if m, live := ks.Deletion("e", 99); !live || m.Gen != 1 {
		t.Fatalf("Deletion before the deadline = %+v, %v", m, live)
	}
	if m, live := ks.Deletion("e", 100); live || m != (Meta{Key: "e", Life: Life{Gen: 1, Deleted: 100}}) {
		t.Fatalf("Deletion(expired) = %+v, %v", m, live)
	}
	checkDigest(t, ks)
}

func TestExpiry(t *testing.T) {
	ks := New()
	// Absent key, gen 0.
	m, ok := ks.Expiry("k", 0, 100, TTLAlways)
	if !ok || m != (Meta{Key: "k", Life: Life{TTL: TTL{1, 100}}}) {
		t.Fatalf("Expiry(absent) = %+v, %v", m, ok)
	}
	if _, ok := ks.Expiry("k", 0, 0, TTLAlways); ok {
		t.Fatal("clearing a deadline that is not set has something to write")
	}
	ks.Merge(Entry{Key: "k", Replica: 1, P: 1})
	setTTL(t, ks, "k", 0, 100, TTLIfNone)
	if _, ok := ks.Expiry("k", 0, 50, TTLIfNone); ok {
		t.Fatal("TTLIfNone replaced a deadline")
	}
	if _, ok := ks.Expiry("k", 0, 100, TTLAlways); ok {
		t.Fatal("setting the same deadline again has something to write")
	}
	m, ok = ks.Expiry("k", 0, 200, TTLAlways)
	if !ok || m.Life != (Life{TTL: TTL{2, 200}}) {
		t.Fatalf("Expiry(Always) over a deadline = %+v, %v", m, ok)
	}
	mustApply(t, ks, m, ok)
	// Clearing writes a newer version with no deadline, which beats any concurrent set of the older version.
	clear, ok := ks.Expiry("k", 0, 0, TTLAlways)
	if !ok || clear.Life != (Life{TTL: TTL{3, 0}}) {
		t.Fatalf("Expiry(clear) = %+v, %v", clear, ok)
	}
	concurrent := Meta{Key: "k", Life: Life{TTL: TTL{2, 150}}}
	mustApply(t, ks, clear, true)
	if ks.MergeMeta(concurrent) {
		t.Fatal("an older version beat a clear")
	}
	if st := ks.StatusOf("k", 1<<40); !st.Live || st.Deadline != 0 {
		t.Fatalf("StatusOf after clear = %+v", st)
	}

	// Equal versions: the earlier deadline wins; any deadline beats none.
	a, b := New(), New()
	a.Merge(Entry{Key: "k", Replica: 1, P: 1})
	b.Merge(Entry{Key: "k", Replica: 1, P: 1})
	ma, _ := a.Expiry("k", 0, 300, TTLAlways)
	mb, _ := b.Expiry("k", 0, 200, TTLAlways)
	if ma.TTL.Ver != mb.TTL.Ver {
		t.Fatal("test setup: versions differ")
	}
	a.MergeMeta(ma)
	a.MergeMeta(mb)
	b.MergeMeta(mb)
	b.MergeMeta(ma)
	if l, _ := a.LifeOf("k"); l.TTL != (TTL{1, 200}) || !sameSnap(a, b) {
		t.Fatalf("concurrent sets: %+v vs %+v", snap(a), snap(b))
	}
	if a.MergeMeta(Meta{Key: "k", Life: Life{TTL: TTL{1, 0}}}) {
		t.Fatal("no deadline beat a deadline of the same version")
	}
	if !a.MergeMeta(Meta{Key: "k", Life: Life{TTL: TTL{2, 900}}}) {
		t.Fatal("a higher version lost to an earlier deadline")
	}

	// gen+1: a write after expiry starts a fresh register, whatever the mode.
	e := New()
	e.Merge(Entry{Key: "k", Replica: 1, P: 1})
	setTTL(t, e, "k", 0, 100, TTLAlways)
	setTTL(t, e, "k", 0, 120, TTLAlways) // version 2
	gen, _ := e.WriteGen("k", 1, 130)
	for _, mode := range []TTLMode{TTLAlways, TTLIfNone} {
		m, ok := e.Expiry("k", gen, 500, mode)
		if !ok || m != (Meta{Key: "k", Life: Life{Gen: 1, TTL: TTL{1, 500}}}) {
			t.Fatalf("Expiry(gen+1, mode %d) = %+v, %v", mode, m, ok)
		}
	}
	if _, ok := e.Expiry("k", gen, 0, TTLAlways); ok {
		t.Fatal("clearing gen+1's deadline has something to write")
	}
	// Taking the write and its deadline in either order reaches the same state.
	we := Entry{Key: "k", Replica: 1, Gen: gen, P: 1}
	wm, _ := e.Expiry("k", gen, 500, TTLIfNone)
	x, y := clone2(e), clone2(e)
	x.Merge(we)
	x.MergeMeta(wm)
	y.MergeMeta(wm)
	y.Merge(we)
	if !sameSnap(x, y) {
		t.Fatalf("write+TTL after expiry: %+v vs %+v", snap(x), snap(y))
	}
	if st := x.StatusOf("k", 130); st != (Status{Live: true, Value: 1, Deadline: 500, Gen: 1}) {
		t.Fatalf("StatusOf after write+TTL = %+v", st)
	}
	// A generation already gone: nothing to write.
	if _, ok := x.Expiry("k", 0, 900, TTLAlways); ok {
		t.Fatal("Expiry for a gone generation has something to write")
	}
	// A tombstone's deadline keeps its deletion stamp.
	tomb := New()
	tomb.MergeMeta(Meta{Key: "k", Life: Life{Gen: 3, Deleted: 40}})
	if m, ok := tomb.Expiry("k", 3, 90, TTLAlways); !ok || m.Life != (Life{Gen: 3, TTL: TTL{1, 90}, Deleted: 40}) {
		t.Fatalf("Expiry(tombstone) = %+v, %v", m, ok)
	}
}

// setTTL writes and applies key's deadline as a replica does.
func setTTL(t *testing.T, ks *Keyspace, key string, gen uint64, deadline int64, mode TTLMode) Meta {
	t.Helper()
	m, ok := ks.Expiry(key, gen, deadline, mode)
	mustApply(t, ks, m, ok)
	return m
}

// clone2 copies entries and lives.
func clone2(ks *Keyspace) *Keyspace { return joinAll(true, ks) }

const (
	grace   = 1_000
	horizon = 100_000
)

func TestReclaimExpiredToTombstone(t *testing.T) {
	mk := func() *Keyspace {
		ks := New()
		ks.Merge(Entry{Key: "k", Replica: 1, P: 5})
		ks.Merge(Entry{Key: "k", Replica: 2, N: 2})
		ks.Merge(Entry{Key: "live", Replica: 1, P: 1})
		setTTL(t, ks, "k", 0, 500, TTLAlways)
		return ks
	}
	a, b, c := mk(), mk(), mk()
	// Before deadline+grace nothing happens (the key is expired but readable skew is tolerated).
	if ts, f := a.Reclaim(500+grace-1, grace, horizon); len(ts) != 0 || f != 0 {
		t.Fatalf("Reclaim before deadline+grace = %+v, %d", ts, f)
	}
	want := Meta{Key: "k", Life: Life{Gen: 1, Deleted: 500}}
	ts, f := a.Reclaim(500+grace, grace, horizon)
	if !reflect.DeepEqual(ts, []Meta{want}) || f != 0 {
		t.Fatalf("Reclaim at deadline+grace = %+v, %d; want [%+v]", ts, f, want)
	}
	// Another replica reclaims much later: the same tombstone.
	if ts, _ := b.Reclaim(500+grace+horizon/2, grace, horizon); !reflect.DeepEqual(ts, []Meta{want}) {
		t.Fatalf("later Reclaim = %+v", ts)
	}
	// A third never reclaims but hears of the tombstone.
	if !c.MergeMeta(want) {
		t.Fatal("the tombstone did not change a replica that had not reclaimed")
	}
	if !sameSnap(a, b) || !sameSnap(a, c) {
		t.Fatalf("replicas differ after reclaim:\n%+v\n%+v\n%+v", snap(a), snap(b), snap(c))
	}
	if ts, _ := c.Reclaim(500+grace, grace, horizon); len(ts) != 0 || !sameSnap(a, c) {
		t.Fatalf("reclaiming an already-tombstoned key = %+v", ts)
	}
	if a.Entries() != 1 || a.Len() != 2 {
		t.Fatalf("Len, Entries = %d, %d", a.Len(), a.Entries())
	}
	st := a.Stats()
	// Expiry freed the two entries (data of 9 bytes → 3, 16 → 8 rounded)
	// and the key's ref in the listing index (4).
	if st.Expired != 1 || st.Forgotten != 0 || st.DroppedEntries != 2 || st.ReclaimedBytes != 8+4 {
		t.Fatalf("Stats after expiry = %+v", st)
	}
	for _, ks := range []*Keyspace{a, b, c} {
		checkDigest(t, ks)
	}
	// The tombstone is forgotten at deadline+horizon, on every replica.
	if _, f := a.Reclaim(500+horizon-1, grace, horizon); f != 0 {
		t.Fatal("tombstone forgotten before the horizon")
	}
	for _, ks := range []*Keyspace{a, b, c} {
		if _, f := ks.Reclaim(500+horizon, grace, horizon); f != 1 {
			t.Fatalf("forgotten = %d, want 1", f)
		}
		if _, held := ks.LifeOf("k"); held {
			t.Fatal("forgotten key still held")
		}
		checkDigest(t, ks)
		checkBuckets(t, ks)
	}
	if !sameSnap(a, b) || !sameSnap(a, c) || a.Len() != 1 {
		t.Fatal("replicas differ after forgetting")
	}
	st = a.Stats()
	// Forgetting freed the rest: the record (24), its data (8), its
	// lifecycle record (40), its refs in the key table and its bucket (14).
	if st.Expired != 1 || st.Forgotten != 1 || st.ReclaimedBytes != 8+4+24+8+40+14 {
		t.Fatalf("Stats after forgetting = %+v", st)
	}
}

func TestReclaimDeletedForgottenAfterHorizon(t *testing.T) {
	ks := New()
	ks.Merge(Entry{Key: "k", Replica: 1, P: 5})
	m, _ := ks.Deletion("k", 1000)
	ks.MergeMeta(m)
	if _, f := ks.Reclaim(1000+horizon-1, grace, horizon); f != 0 || ks.Len() != 1 {
		t.Fatal("tombstone forgotten before the horizon")
	}
	if _, f := ks.Reclaim(1000+horizon, grace, horizon); f != 1 || ks.Len() != 0 || ks.Root() != 0 || ks.Tracked() != 0 {
		t.Fatalf("after horizon: forgotten %d, Len %d, Root %x, Tracked %d", f, ks.Len(), ks.Root(), ks.Tracked())
	}
	checkBuckets(t, ks)
	// Past-horizon tombstones of absent keys are not taken up again.
	if ks.MergeMeta(m) || ks.Len() != 0 {
		t.Fatal("a past-horizon tombstone for an absent key was taken up")
	}
	if ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 7, Deleted: 1000 - 5}}) {
		t.Fatal("an older past-horizon tombstone for an absent key was taken up")
	}
	// ... but a past-horizon tombstone with a deadline is (it expires into a newer tombstone).
	if !ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, TTL: TTL{1, 1 << 40}, Deleted: 1000}}) {
		t.Fatal("a tombstone with a deadline was not taken up")
	}
	// Re-creation of the forgotten key starts from generation 0 and is held normally.
	fresh := New()
	fresh.Merge(Entry{Key: "x", Replica: 1, P: 1})
	fresh.MergeMeta(Meta{Key: "x", Life: Life{Gen: 1, Deleted: 1000}})
	fresh.Reclaim(1000+horizon, grace, horizon)
	if fresh.Len() != 0 {
		t.Fatal("setup: x not forgotten")
	}
	if !fresh.Merge(Entry{Key: "x", Replica: 2, P: 3}) {
		t.Fatal("re-creating a forgotten key reported no change")
	}
	if st := fresh.StatusOf("x", 0); st != (Status{Live: true, Value: 3}) {
		t.Fatalf("re-created key: %+v", st)
	}
	checkDigest(t, fresh)
	checkBuckets(t, fresh)
	ref := New()
	ref.Merge(Entry{Key: "x", Replica: 2, P: 3})
	if !sameSnap(fresh, ref) {
		t.Fatal("a re-created key differs from a never-deleted one")
	}
}

func TestMergeMetaWithinHorizonKillsOlderGen(t *testing.T) {
	ks := New()
	ks.Merge(Entry{Key: "held", Replica: 1, P: 5})
	ks.Reclaim(10*horizon, grace, horizon) // floor = 9*horizon
	// Within the horizon: taken up, for an absent key or over older entries.
	for _, key := range []string{"held", "absent"} {
		if !ks.MergeMeta(Meta{Key: key, Life: Life{Gen: 1, Deleted: 9*horizon + 1}}) {
			t.Fatalf("%s: a tombstone within the horizon was not taken up", key)
		}
		if st := ks.StatusOf(key, 10*horizon); st != (Status{Gen: 1}) {
			t.Fatalf("%s: StatusOf = %+v", key, st)
		}
	}
	if ks.Entries() != 0 {
		t.Fatalf("older generation entries survive: %d", ks.Entries())
	}
	// Past the horizon, for a key held at an older generation: still taken up (it kills the older gen).
	ks.Merge(Entry{Key: "old", Replica: 1, P: 5})
	if !ks.MergeMeta(Meta{Key: "old", Life: Life{Gen: 1, Deleted: 5}}) || ks.Entries() != 0 {
		t.Fatal("a past-horizon tombstone did not kill a held older generation")
	}
	// ... and forgotten at the next reclaim.
	if _, f := ks.Reclaim(10*horizon, grace, horizon); f != 1 {
		t.Fatalf("forgotten = %d, want 1", f)
	}
	checkDigest(t, ks)
	checkBuckets(t, ks)
}

// TestReclaimStaleQueueItems: queue items made stale by later changes do
// not reclaim or forget live keys.
func TestReclaimStaleQueueItems(t *testing.T) {
	ks := New()
	write := func(key string, now int64) {
		g, cur := ks.WriteGen(key, 1, now)
		v, _ := ks.ValueWith(key, 1, g, cur)
		e, err := Change(key, 1, g, cur, v, 1)
		if err != nil {
			t.Fatal(err)
		}
		ks.Merge(e)
	}
	for _, k := range []string{"moved", "cleared", "rewritten", "redeleted", "undeleted"} {
		write(k, 0)
	}
	setTTL(t, ks, "moved", 0, 100, TTLAlways)
	setTTL(t, ks, "moved", 0, 10*horizon, TTLAlways) // deadline changed
	setTTL(t, ks, "cleared", 0, 100, TTLAlways)
	setTTL(t, ks, "cleared", 0, 0, TTLAlways) // TTL cleared
	setTTL(t, ks, "rewritten", 0, 100, TTLAlways)
	m, _ := ks.Deletion("rewritten", 50)
	ks.MergeMeta(m)
	write("rewritten", 60) // key rewritten after delete
	m, _ = ks.Deletion("redeleted", 50)
	ks.MergeMeta(m)
	m, _ = ks.Deletion("redeleted", 70)
	ks.MergeMeta(m) // deleted twice: gen 2
	m, _ = ks.Deletion("undeleted", 50)
	ks.MergeMeta(m)
	write("undeleted", 60)

	now := int64(65 + horizon) // past every stale item, before the gen-2 tombstone's horizon
	ts, f := ks.Reclaim(now, grace, horizon)
	if len(ts) != 0 {
		t.Fatalf("stale expiry items reclaimed %+v", ts)
	}
	if f != 0 {
		t.Fatalf("stale tombstone items forgot %d keys", f)
	}
	for _, k := range []string{"moved", "cleared", "rewritten", "undeleted"} {
		if st := ks.StatusOf(k, now); !st.Live || st.Value != 1 {
			t.Errorf("%s: StatusOf = %+v", k, st)
		}
	}
	if l, ok := ks.LifeOf("redeleted"); !ok || l != (Life{Gen: 2, Deleted: 70}) {
		t.Fatalf("redeleted: %+v, %v", l, ok)
	}
	// The stale items are gone; the live deadline and the later tombstone remain queued.
	if ks.Tracked() != 2 {
		t.Fatalf("Tracked = %d, want 2", ks.Tracked())
	}
	if _, f := ks.Reclaim(70+horizon, grace, horizon); f != 1 {
		t.Fatal("the later tombstone was not forgotten at its own horizon")
	}
	checkDigest(t, ks)
	checkBuckets(t, ks)
}

// TestReclaimTombstoneWithClearedTTL: a tombstone that gained a deadline
// and lost it again must still be forgotten after the horizon.
func TestReclaimTombstoneWithClearedTTL(t *testing.T) {
	ks := New()
	ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, Deleted: 10}})
	ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, TTL: TTL{1, 1 << 40}, Deleted: 10}})
	ks.Reclaim(10+horizon, grace, horizon) // the tombstone's item is popped while it has a deadline
	ks.MergeMeta(Meta{Key: "k", Life: Life{Gen: 1, TTL: TTL{2, 0}, Deleted: 10}})
	ks.Reclaim(20+horizon, grace, horizon)
	if ks.Len() != 0 {
		t.Fatalf("a tombstone whose deadline was cleared after its reclaim item was dropped was not forgotten (Len %d, Tracked %d)", ks.Len(), ks.Tracked())
	}
}

// TestTrackedBoundedUnderChurn: keys set with a TTL and all reclaimed leave
// nothing behind.
func TestTrackedBoundedUnderChurn(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	ks := New()
	rng := rand.New(rand.NewPCG(5, 5))
	var maxDeadline int64
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		ks.Merge(Entry{Key: key, Replica: ReplicaID(1 + rng.IntN(3)), P: 1 + rng.Uint64N(9)})
		d := 1000 + rng.Int64N(10_000)
		maxDeadline = max(maxDeadline, d)
		setTTL(t, ks, key, 0, d, TTLIfNone)
	}
	if ks.Tracked() != n {
		t.Fatalf("Tracked = %d, want %d", ks.Tracked(), n)
	}
	ts, _ := ks.Reclaim(maxDeadline+grace, grace, horizon)
	if len(ts) != n || ks.Entries() != 0 || ks.Stats().Expired != uint64(n) {
		t.Fatalf("tombstoned %d, entries %d", len(ts), ks.Entries())
	}
	if ks.Tracked() != n {
		t.Fatalf("Tracked after expiry = %d, want %d tombstones", ks.Tracked(), n)
	}
	checkDigest(t, ks)
	_, f := ks.Reclaim(maxDeadline+horizon, grace, horizon)
	if f != n || ks.Len() != 0 || ks.Tracked() != 0 || ks.Entries() != 0 || ks.Root() != 0 || ks.nbuckets != 0 || ks.index.Len() != 0 {
		t.Fatalf("after forgetting: forgotten %d Len %d Tracked %d Entries %d Root %x buckets %d index %d",
			f, ks.Len(), ks.Tracked(), ks.Entries(), ks.Root(), ks.nbuckets, ks.index.Len())
	}
	if st := ks.Stats(); st.Forgotten != uint64(n) || st.Compactions == 0 {
		t.Fatalf("Stats = %+v; want every key forgotten and the emptied map rebuilt", st)
	}
	if cap(ks.expiring) > 1024 || cap(ks.tombs) > 1024 || ks.peak != 0 {
		t.Fatalf("after the churn: queues of capacity %d and %d, peak %d; want them given back", cap(ks.expiring), cap(ks.tombs), ks.peak)
	}
}

// TestTrackedBoundedUnderTTLRefresh: a key whose deadline is pushed back on
// every hit (a sliding expiry) should not queue one reclaim item per hit.
func TestTrackedBoundedUnderTTLRefresh(t *testing.T) {
	ks := New()
	ks.Merge(Entry{Key: "session", Replica: 1, P: 1})
	const hits = 10_000
	for i := range int64(hits) {
		setTTL(t, ks, "session", 0, 3_600_000+i, TTLAlways)
		ks.Reclaim(i, grace, horizon)
	}
	if ks.Tracked() > 10 {
		t.Fatalf("one live key with a refreshed deadline queues %d reclaim items", ks.Tracked())
	}
}

// TestDigestThroughLifecycle: the incremental digest matches a recomputation
// through random writes, deletes, deadlines, reclaims and re-creations.
func TestDigestThroughLifecycle(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 0x11fe))
		ks := New()
		nkeys := 1 + rng.IntN(300)
		now := int64(0)
		for step := range 3000 {
			key := fmt.Sprintf("k%d", rng.IntN(nkeys))
			now += rng.Int64N(50)
			switch op := rng.IntN(10); {
			case op < 5:
				r := ReplicaID(rng.IntN(3))
				g, cur := ks.WriteGen(key, r, now)
				ks.Merge(Entry{Key: key, Replica: r, Gen: g, P: cur.P + 1 + rng.Uint64N(5), N: cur.N})
			case op < 6:
				m, _ := ks.Deletion(key, now)
				ks.MergeMeta(m)
			case op < 8:
				g, _ := ks.WriteGen(key, 0, now)
				var d int64
				if rng.IntN(4) > 0 {
					d = now + rng.Int64N(2000)
				}
				if m, ok := ks.Expiry(key, g, d, TTLMode(rng.IntN(2))); ok {
					ks.MergeMeta(m)
				}
			default:
				ks.Reclaim(now, 100, 1000)
			}
			if step%500 == 0 {
				checkDigest(t, ks)
				checkBuckets(t, ks)
			}
		}
		checkDigest(t, ks)
		checkBuckets(t, ks)
		if ks.Tracked() > 20*nkeys+100 {
			t.Errorf("seed %d: Tracked = %d with %d keys", seed, ks.Tracked(), ks.Len())
		}
	}
}

// Tracked reports how many reclaim items are queued (expiring keys and
// tombstones, including items made stale by later changes).
func (ks *Keyspace) Tracked() int { return len(ks.expiring) + len(ks.tombs) }
