package crdt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// checkRecords checks that the records, the key table, the digest buckets
// and the listing index agree: every key held has one live record, found
// by its name, in the bucket its hash picks, and listed (in key order) iff
// it has entries; freed records are on the free list and nowhere else.
func checkRecords(t testing.TB, ks *Keyspace) {
	t.Helper()
	held := map[ref]bool{}
	ks.counters.each(func(x ref) bool {
		c := ks.recs.at(x)
		if !ks.recs.live(x) {
			t.Fatalf("the key table holds freed record %d", x)
		}
		if got := ks.find(c.key()); got != x {
			t.Fatalf("key %q: record %d, found %d", c.key(), x, got)
		}
		if c.hash != keyHash(c.key()) {
			t.Fatalf("key %q: hash %x, want %x", c.key(), c.hash, keyHash(c.key()))
		}
		held[x] = true
		return true
	})
	if len(held) != ks.Len() {
		t.Fatalf("the key table holds %d keys, Len %d", len(held), ks.Len())
	}
	if live := int(max(ks.recs.next, 1)) - 1 - ks.recs.nfree; live != ks.Len() {
		t.Fatalf("%d records in use, %d keys", live, ks.Len())
	}
	nfree := 0
	for x := ks.recs.free; x != 0; x = ref(ks.recs.at(x).hash) {
		if ks.recs.live(x) || held[x] {
			t.Fatalf("record %d is on the free list and in use", x)
		}
		if nfree++; nfree > ks.recs.nfree {
			t.Fatal("the free list is longer than nfree (a cycle?)")
		}
	}
	if nfree != ks.recs.nfree {
		t.Fatalf("free list of %d records, nfree %d", nfree, ks.recs.nfree)
	}
	inBuckets := 0
	ks.eachBucket(func(b uint16, bk *bucket) {
		for _, x := range bk.keys {
			if !held[x] {
				t.Fatalf("bucket %d holds record %d, not a key held", b, x)
			}
			if bucketOf(ks.recs.at(x).hash) != b {
				t.Fatalf("key %q in bucket %d, hashes to %d", ks.recs.at(x).key(), b, bucketOf(ks.recs.at(x).hash))
			}
			inBuckets++
		}
	})
	if inBuckets != ks.Len() {
		t.Fatalf("buckets hold %d keys, Len %d", inBuckets, ks.Len())
	}
	var listed []string
	ks.index.Ascend(func(x ref) bool {
		if !held[x] || ks.recs.at(x).slen() == 0 {
			t.Fatalf("the index lists record %d (held %v) without entries", x, held[x])
		}
		listed = append(listed, ks.recs.at(x).key())
		return true
	})
	if !slices.IsSorted(listed) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Fatalf("the index is out of order: %q", listed)
	}
	if written, _, _ := ks.Counts(); len(listed) != written {
		t.Fatalf("the index lists %d keys, %d have entries", len(listed), written)
	}
}

// TestKeyBytesNeverChange: names handed out alias the records' data; no
// later change to the key (entries rewritten in place or moved, a new
// generation, forgetting it, its record handed to another key, a
// compaction) writes over them, and a name taken from a caller's buffer is
// a copy.
func TestKeyBytesNeverChange(t *testing.T) {
	ks := New()
	type seen struct{ got, want string }
	var names []seen
	keep := func(k string) { names = append(names, seen{k, strings.Clone(k)}) }
	buf := []byte("from-a-log-buffer")
	ks.MergeKey(buf, 1, 0, 1, 0)
	copy(buf, "XXXXXXXXXXXXXXXXX") // the caller reuses its buffer
	for i := range 2000 {
		ks.Merge(Entry{Key: fmt.Sprintf("k%04d", i), Replica: 1, P: 1})
	}
	for _, e := range ks.EntriesOf("from-a-log-buffer") {
		keep(e.Key)
	}
	if len(names) != 1 {
		t.Fatalf("MergeKey's key not held as a copy: %+v", ks.EntriesOf("from-a-log-buffer"))
	}
	ks.ForEach(func(e Entry) bool { keep(e.Key); return true })
	items, _, _ := ks.List("k00", "", 100, 100, 0)
	for _, it := range items {
		keep(it.Key)
	}
	// In place (same length), then moved (longer totals, more replicas).
	for i := range 2000 {
		k := fmt.Sprintf("k%04d", i)
		ks.Merge(Entry{Key: k, Replica: 1, P: 2})
		ks.Merge(Entry{Key: k, Replica: 1, P: 1 << 40})
		ks.Merge(Entry{Key: k, Replica: ReplicaID(2 + i%5), P: 3, N: 1 << 20})
		if i%3 == 0 {
			setTTL(t, ks, k, 0, 10+int64(i), TTLAlways)
		}
	}
	for _, e := range ks.Newer(allBuckets(), Contents{}, nil).Entries {
		keep(e.Key)
	}
	checkRecords(t, ks)
	// Expire a third, forget them, write new keys into their records, and
	// let a compaction move everything.
	ks.Reclaim(10+2000+grace, grace, horizon)
	ks.Reclaim(10+2000+grace+horizon, grace, horizon)
	checkRecords(t, ks)
	for i := range 300 {
		ks.Merge(Entry{Key: fmt.Sprintf("new%03d", i), Replica: 9, P: 7})
	}
	checkRecords(t, ks)
	for i := range 2000 {
		if k := fmt.Sprintf("k%04d", i); i%3 != 0 {
			m, _ := ks.Deletion(k, 100)
			ks.MergeMeta(m)
		}
	}
	ks.Reclaim(100+horizon+10_000, grace, horizon)
	if ks.Stats().Compactions == 0 {
		t.Fatalf("no compaction (Len %d, peak %d)", ks.Len(), ks.peak)
	}
	checkRecords(t, ks)
	for _, n := range names {
		if n.got != n.want {
			t.Fatalf("a name handed out changed from %q to %q", n.want, n.got)
		}
	}
}

func allBuckets() []uint16 {
	out := make([]uint16, NumBuckets)
	for i := range out {
		out[i] = uint16(i)
	}
	return out
}

// TestEntriesGrowAndShrink: a key's entries, rewritten in place or moved
// to a new allocation as totals change length and replicas come, keep the
// name and every other replica's totals.
func TestEntriesGrowAndShrink(t *testing.T) {
	ks := New()
	const key = "grow"
	model := map[ReplicaID]PN{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 5000 {
		r := ReplicaID(rng.IntN(40)) * 0x9e3779b97f4a7c15
		pn := model[r]
		// Totals cross every uvarint length, one byte to ten.
		pn.P += 1 + rng.Uint64N(1<<uint(rng.IntN(9)*7))
		if rng.IntN(3) == 0 {
			pn.N += 1 + rng.Uint64N(1<<uint(rng.IntN(9)*7))
		}
		model[r] = pn
		if !ks.Merge(Entry{Key: key, Replica: r, P: pn.P, N: pn.N}) {
			t.Fatalf("step %d: merge reported no change", step)
		}
		if step%97 == 0 || step == 4999 {
			es := ks.EntriesOf(key)
			if len(es) != len(model) {
				t.Fatalf("step %d: %d entries, want %d", step, len(es), len(model))
			}
			for _, e := range es {
				if e.Key != key || model[e.Replica] != (PN{e.P, e.N}) {
					t.Fatalf("step %d: entry %+v, want %+v", step, e, model[e.Replica])
				}
			}
			checkDigest(t, ks)
		}
	}
	c := ks.lookup(key)
	if c.slen() != len(c.slots()) || c.key() != key || ks.Entries() != len(model) {
		t.Fatalf("record %q with %d bytes of entries, %d entries", c.key(), c.slen(), ks.Entries())
	}
	// A new generation drops the entries and keeps the name alone.
	m, _ := ks.Deletion(key, 5)
	ks.MergeMeta(m)
	if c := ks.lookup(key); c.slen() != 0 || c.slots() != nil || c.key() != key || ks.Entries() != 0 {
		t.Fatalf("after a delete: %q with %d bytes of entries", c.key(), c.slen())
	}
	checkRecords(t, ks)
}

// TestStaleItemOfReusedRecord: a reclaim item left by a forgotten key
// whose record now holds another key acts on that key only as its own
// item would.
func TestStaleItemOfReusedRecord(t *testing.T) {
	const stale = 300_000
	for _, d := range []int64{stale, stale + 10_000, stale - 10_000} {
		ks := New()
		ks.Merge(Entry{Key: "a", Replica: 1, P: 1})
		setTTL(t, ks, "a", 0, stale, TTLAlways)
		m, _ := ks.Deletion("a", 100) // a's expiry item stays queued
		ks.MergeMeta(m)
		if _, f := ks.Reclaim(100+horizon, grace, horizon); f != 1 || ks.Len() != 0 || ks.Tracked() != 1 {
			t.Fatalf("forgotten %d, Len %d, Tracked %d; want a forgotten, its expiry item left", f, ks.Len(), ks.Tracked())
		}
		ks.Merge(Entry{Key: "b", Replica: 1, P: 1})
		if x := ks.find("b"); x != 1 {
			t.Fatalf("b got record %d, want a's record 1 again", x)
		}
		setTTL(t, ks, "b", 0, d, TTLAlways)
		var all []Meta
		for now := int64(stale - 20_000); now <= stale+20_000; now++ {
			ts, _ := ks.Reclaim(now, grace, 10*horizon)
			for _, m := range ts {
				if m.Key != "b" || m.Deleted != d || now != d+grace {
					t.Fatalf("deadline %d: at %d tombstoned %+v", d, now, m)
				}
			}
			all = append(all, ts...)
		}
		if len(all) != 1 || ks.Stats().Expired != 1 {
			t.Fatalf("deadline %d: tombstoned %+v, Expired %d; want b once", d, all, ks.Stats().Expired)
		}
		checkRecords(t, ks)
		checkDigest(t, ks)
	}
}

// TestCompactionKeepsKeysAndQueues: compacting the records after most
// keys went renames the rest everywhere, their queued expiries included.
func TestCompactionKeepsKeysAndQueues(t *testing.T) {
	ks := New()
	const n = 4000
	for i := range n {
		k := fmt.Sprintf("key/%05d", (i*7919)%n)
		ks.Merge(Entry{Key: k, Replica: ReplicaID(1 + i%3), P: uint64(i) + 1})
		d := int64(1000)
		if i%10 == 0 {
			d = 500_000 + int64(i) // survives the first reclaims
		}
		setTTL(t, ks, k, 0, d, TTLAlways)
	}
	ks.Reclaim(1000+grace, grace, horizon)
	ks.Reclaim(1000+horizon, grace, horizon)
	if ks.Len() != n/10 || ks.Stats().Compactions != 1 {
		t.Fatalf("Len %d, compactions %d", ks.Len(), ks.Stats().Compactions)
	}
	if ks.recs.next != n/10+1 || ks.recs.nfree != 0 || len(ks.recs.chunks) != 1 {
		t.Fatalf("records after compaction: next %d, %d free, %d chunks", ks.recs.next, ks.recs.nfree, len(ks.recs.chunks))
	}
	checkRecords(t, ks)
	checkDigest(t, ks)
	checkBuckets(t, ks)
	items, _, more := ks.List("key/", "", n, n, 0)
	if len(items) != n/10 || more {
		t.Fatalf("listed %d keys, more %v", len(items), more)
	}
	for _, it := range items {
		var j int
		fmt.Sscanf(it.Key, "key/%05d", &j)
		if it.Deadline < 500_000 || it.Value <= 0 {
			t.Fatalf("item %+v", it)
		}
	}
	// The survivors' queued expiries still name them.
	ts, _ := ks.Reclaim(500_000+n+grace, grace, horizon)
	if len(ts) != n/10 {
		t.Fatalf("tombstoned %d survivors, want %d", len(ts), n/10)
	}
	ks.Reclaim(500_000+n+horizon, grace, horizon)
	if ks.Len() != 0 || ks.Tracked() != 0 {
		t.Fatalf("Len %d, Tracked %d", ks.Len(), ks.Tracked())
	}
	checkRecords(t, ks)
}

// TestRecordsThroughChurn: random writes, deletes, deadlines and reclaims
// over enough keys to reuse records and compact them keep every index in
// agreement with the records and with a keyspace fed the same entries.
func TestRecordsThroughChurn(t *testing.T) {
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 0xc0de))
		ks := New()
		now := int64(0)
		for round := range 6 {
			nkeys := 500 + rng.IntN(3000)
			for i := range nkeys * 3 {
				key := fmt.Sprintf("r%d/%d", round%2, rng.IntN(nkeys))
				now += rng.Int64N(3)
				switch op := rng.IntN(10); {
				case op < 6:
					r := ReplicaID(rng.IntN(4))
					g, cur := ks.WriteGen(key, r, now)
					ks.Merge(Entry{Key: key, Replica: r, Gen: g, P: cur.P + 1 + rng.Uint64N(300), N: cur.N})
				case op < 7:
					m, _ := ks.Deletion(key, now)
					ks.MergeMeta(m)
				default:
					g, _ := ks.WriteGen(key, 0, now)
					if m, ok := ks.Expiry(key, g, now+rng.Int64N(500), TTLAlways); ok {
						ks.MergeMeta(m)
					}
				}
				if i%1000 == 0 {
					ks.Reclaim(now, 50, 200)
				}
			}
			checkRecords(t, ks)
			checkDigest(t, ks)
			// Most keys go.
			for i := range nkeys {
				if rng.IntN(10) > 0 {
					m, _ := ks.Deletion(fmt.Sprintf("r%d/%d", round%2, i), now)
					ks.MergeMeta(m)
				}
			}
			now += 10_000
			ks.Reclaim(now, 50, 200)
			ks.Reclaim(now+1000, 50, 200)
			now += 1000
			checkRecords(t, ks)
			checkDigest(t, ks)
			checkBuckets(t, ks)
			// A copy built from what ks reports is the same keyspace.
			cp := New()
			ks.ForEach(func(e Entry) bool { cp.Merge(e); return true })
			ks.ForEachMeta(func(m Meta) bool { cp.MergeMeta(m); return true })
			if cp.Root() != ks.Root() || cp.Len() != ks.Len() {
				t.Fatalf("seed %d round %d: a copy differs (root %x/%x, len %d/%d)", seed, round, cp.Root(), ks.Root(), cp.Len(), ks.Len())
			}
		}
		if ks.Stats().Compactions == 0 {
			t.Errorf("seed %d: no compaction", seed)
		}
	}
}

// TestNameLengths: names of every uvarint length prefix (one byte up to
// 127, two beyond) come back whole, with their entries after them.
func TestNameLengths(t *testing.T) {
	ks := New()
	lengths := []int{1, 2, 126, 127, 128, 129, 255, 256, 300, 511, MaxKeyLen}
	for i, n := range lengths {
		k := strings.Repeat(string(rune('a'+i)), n)
		ks.Merge(Entry{Key: k, Replica: 1, P: uint64(n)})
		ks.MergeKey([]byte(k), 2, 0, 1<<62, uint64(i))
		if c := ks.lookup(k); c == nil || c.key() != k {
			t.Fatalf("length %d: record not found by its name", n)
		}
		es := ks.EntriesOf(k)
		if len(es) != 2 || es[0].Key != k || es[0].P != uint64(n) || es[1].P != 1<<62 || es[1].N != uint64(i) {
			t.Fatalf("length %d: entries %+v", n, es)
		}
	}
	items, _, _ := ks.List("", "", 100, 100, 0)
	if len(items) != len(lengths) {
		t.Fatalf("listed %d keys", len(items))
	}
	for i, it := range items {
		if len(it.Key) != lengths[i] {
			t.Fatalf("item %d: a key of %d bytes, want %d", i, len(it.Key), lengths[i])
		}
	}
	checkRecords(t, ks)
	checkDigest(t, ks)
}

// TestRecordsStopBeforeTheLastRef: past 2^32-2 keys alloc panics instead
// of wrapping around and handing out a live record's ref again.
func TestRecordsStopBeforeTheLastRef(t *testing.T) {
	var r records
	r.chunks = make([]*[chunkLen]counter, 1<<(32-chunkBits))
	r.chunks[0] = new([chunkLen]counter)
	r.next = 1
	a := r.alloc(newRecord("a"))
	r.next = lastRef - 1 // as if 2^32-3 refs had been handed out
	r.chunks[(lastRef-1)>>chunkBits] = new([chunkLen]counter)
	if x := r.alloc(newRecord("last")); x != lastRef-1 {
		t.Fatalf("the last key got ref %d, want %d", x, lastRef-1)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("alloc past the last ref did not panic")
		}
		if got := r.at(a).key(); got != "a" {
			t.Fatalf("ref %d holds %q, want %q", a, got, "a")
		}
	}()
	r.alloc(newRecord("b"))
}
