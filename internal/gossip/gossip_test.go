package gossip

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

func newTestEngine(ks *crdt.Keyspace) *Engine {
	return New(Config{Rand: rand.New(rand.NewPCG(1, 2))}, ks)
}

// onlyDelta returns the one Delta that out must hold (the same message to
// every peer).
func onlyDelta(t *testing.T, out []Outbound) *wire.Delta {
	t.Helper()
	if len(out) == 0 {
		t.Fatal("nothing sent")
	}
	d := out[0].Msg.(*wire.Delta)
	for _, o := range out[1:] {
		if o.Msg != out[0].Msg {
			t.Fatalf("more than one delta: %+v", out)
		}
	}
	return d
}

// TestFlushReadsCurrentGeneration: Flush sends the key's life as it is at
// Flush, and only entries of the key's current generation.
func TestFlushReadsCurrentGeneration(t *testing.T) {
	ks := crdt.New()
	e := newTestEngine(ks)
	peers := []string{"p1"}

	w := crdt.Entry{Key: "k", Replica: 1, P: 5}
	ks.Merge(w)
	e.Local(crdt.Contents{Entries: []crdt.Entry{w}})
	// Deleted before the flush: the queued entry is gone; the tombstone goes.
	del, _ := ks.Deletion("k", 1000)
	ks.MergeMeta(del)
	d := onlyDelta(t, e.Flush(peers))
	if len(d.Entries) != 0 || !reflect.DeepEqual(d.Metas, []wire.Meta{wire.FromMeta(del)}) {
		t.Fatalf("delta after a delete = %+v, want the tombstone only", d)
	}
	if e.Pending() {
		t.Fatal("still pending after Flush")
	}

	// A write to the new generation goes with the key's life, though only
	// the entry was queued.
	w2 := crdt.Entry{Key: "k", Replica: 2, Gen: 1, N: 3}
	ks.Merge(w2)
	e.Local(crdt.Contents{Entries: []crdt.Entry{w2}})
	d = onlyDelta(t, e.Flush(peers))
	want := &wire.Delta{
		Entries: []wire.Entry{wire.FromEntry(w2)},
		Metas:   []wire.Meta{{Key: "k", Gen: 1, Deleted: 1000}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("delta = %+v, want %+v", d, want)
	}

	// A key with a zero life sends no meta.
	w3 := crdt.Entry{Key: "plain", Replica: 1, P: 1}
	ks.Merge(w3)
	e.Local(crdt.Contents{Entries: []crdt.Entry{w3}})
	if d = onlyDelta(t, e.Flush(peers)); len(d.Metas) != 0 || len(d.Entries) != 1 {
		t.Fatalf("delta = %+v, want one entry and no meta", d)
	}
}

// TestFlushKeepsKeysWhole: a flush split over several Deltas by
// MaxPushBytes never separates a key's entries from its life.
func TestFlushKeepsKeysWhole(t *testing.T) {
	ks := crdt.New()
	e := New(Config{Rand: rand.New(rand.NewPCG(1, 2)), MaxPushBytes: 300}, ks)
	var c crdt.Contents
	for i := range 40 {
		key := string(rune('a'+i%20)) + "-key"
		m := crdt.Meta{Key: key, Life: crdt.Life{Gen: 2, TTL: crdt.TTL{Ver: 1, Deadline: 5000}}}
		en := crdt.Entry{Key: key, Replica: crdt.ReplicaID(i + 1), Gen: 2, P: 1}
		ks.MergeMeta(m)
		ks.Merge(en)
		c.Entries = append(c.Entries, en)
	}
	e.Local(c)
	out := e.Flush([]string{"p"})
	if len(out) < 2 {
		t.Fatalf("%d deltas: the test wants a split flush", len(out))
	}
	entries := 0
	for _, o := range out {
		d := o.Msg.(*wire.Delta)
		entries += len(d.Entries)
		for _, en := range d.Entries {
			found := false
			for _, m := range d.Metas {
				found = found || m.Key == en.Key
			}
			if !found {
				t.Fatalf("entry of %q sent without its key's life", en.Key)
			}
		}
	}
	if entries != 40 {
		t.Fatalf("%d entries sent, want 40", entries)
	}
}

// TestHandleReportsChanges: Handle returns the entries and metas that
// changed the keyspace, merging metas first, and forwards them.
func TestHandleReportsChanges(t *testing.T) {
	ks := crdt.New()
	ks.Merge(crdt.Entry{Key: "k", Replica: 1, P: 9}) // generation 0, to be replaced
	e := newTestEngine(ks)
	d := &wire.Delta{
		Entries: []wire.Entry{{Key: "k", Replica: 2, Gen: 1, P: 4}, {Key: "old", Replica: 1, P: 1}},
		Metas:   []wire.Meta{{Key: "k", Gen: 1, TTLVer: 1, Deadline: 7000}},
	}
	_, changed := e.Handle("p1", d)
	want := crdt.Contents{
		Entries: []crdt.Entry{{Key: "k", Replica: 2, Gen: 1, P: 4}, {Key: "old", Replica: 1, P: 1}},
		Metas:   []crdt.Meta{{Key: "k", Life: crdt.Life{Gen: 1, TTL: crdt.TTL{Ver: 1, Deadline: 7000}}}},
	}
	if !reflect.DeepEqual(changed, want) {
		t.Fatalf("changed = %+v, want %+v", changed, want)
	}
	if st := ks.StatusOf("k", 6999); !st.Live || st.Value != 4 || st.Deadline != 7000 {
		t.Fatalf("k = %+v", st)
	}
	// Again: nothing changes.
	if _, changed = e.Handle("p1", d); changed.Len() != 0 {
		t.Fatalf("duplicate delta changed %+v", changed)
	}
	// The news goes on to peers other than the sender, with one more hop.
	out := e.Flush([]string{"p1", "p2"})
	if len(out) != 1 || out[0].To != "p2" || out[0].Msg.(*wire.Delta).Hops != 1 {
		t.Fatalf("forwarded %+v", out)
	}
}

// TestPushAnswerCarriesLives: an anti-entropy answer that sends an entry
// also sends its key's life, even when the peer already has that life.
func TestPushAnswerCarriesLives(t *testing.T) {
	ks := crdt.New()
	life := crdt.Meta{Key: "k", Life: crdt.Life{Gen: 3, TTL: crdt.TTL{Ver: 2, Deadline: 9000}}}
	ks.MergeMeta(life)
	ks.Merge(crdt.Entry{Key: "k", Replica: 1, Gen: 3, P: 5})
	e := newTestEngine(ks)
	b := crdt.BucketOf("k")
	// The peer has the life and an older total.
	out, _ := e.Handle("p1", &wire.Push{
		Entries: []wire.Entry{{Key: "k", Replica: 1, Gen: 3, P: 2}},
		Metas:   []wire.Meta{wire.FromMeta(life)},
		Want:    []uint16{b},
	})
	if len(out) != 1 {
		t.Fatalf("answer = %+v", out)
	}
	p := out[0].Msg.(*wire.Push)
	want := &wire.Push{Entries: []wire.Entry{{Key: "k", Replica: 1, Gen: 3, P: 5}}, Metas: []wire.Meta{wire.FromMeta(life)}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("answer = %+v, want %+v", p, want)
	}
	// A peer past this generation gets nothing for the key.
	out, _ = e.Handle("p1", &wire.Push{Metas: []wire.Meta{{Key: "k", Gen: 4, Deleted: 1}}, Want: []uint16{b}})
	if len(out) != 0 {
		t.Fatalf("answer to a peer past the generation = %+v", out[0].Msg)
	}
}

// TestDigestBucketsPushCarriesContents: the opening Push of a repair holds
// the buckets' entries and lives.
func TestDigestBucketsPushCarriesContents(t *testing.T) {
	ks := crdt.New()
	ks.MergeMeta(crdt.Meta{Key: "gone", Life: crdt.Life{Gen: 1, Deleted: 100}})
	ks.Merge(crdt.Entry{Key: "k", Replica: 1, P: 5})
	e := newTestEngine(ks)
	var groups []uint16
	for _, g := range ks.Groups() {
		groups = append(groups, g.Index)
	}
	out, _ := e.Handle("p1", &wire.DigestBuckets{Groups: groups})
	if len(out) != 1 {
		t.Fatalf("answer = %+v", out)
	}
	p := out[0].Msg.(*wire.Push)
	if len(p.Entries) != 1 || p.Entries[0].Key != "k" || len(p.Metas) != 1 || p.Metas[0].Key != "gone" {
		t.Fatalf("push = %+v", p)
	}
	want := map[uint16]bool{crdt.BucketOf("gone"): true, crdt.BucketOf("k"): true}
	got := map[uint16]bool{}
	for _, b := range p.Want {
		got[b] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("push wants buckets %v, want %v", p.Want, want)
	}
}
