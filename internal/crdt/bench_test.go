package crdt

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func BenchmarkMerge(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		// Each Merge adds a new key; the pool of keys is reused with a fresh
		// keyspace when exhausted so the keyspace stays of a realistic size.
		const pool = 1 << 17
		keys := make([]string, pool)
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%d", i)
		}
		ks := New()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%pool == 0 && i > 0 {
				b.StopTimer()
				ks = New()
				b.StartTimer()
			}
			ks.Merge(Entry{Key: keys[i%pool], Replica: 1, P: 1})
		}
	})
	b.Run("existing", func(b *testing.B) {
		ks := New()
		for r := range ReplicaID(5) {
			ks.Merge(Entry{Key: DefaultKey, Replica: r, P: 1})
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			ks.Merge(Entry{Key: DefaultKey, Replica: 3, P: uint64(i) + 2})
		}
	})
	b.Run("stale", func(b *testing.B) {
		ks := New()
		ks.Merge(Entry{Key: DefaultKey, Replica: 1, P: 100})
		e := Entry{Key: DefaultKey, Replica: 1, P: 50}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ks.Merge(e)
		}
	})
}

func BenchmarkChange(b *testing.B) {
	cur := PN{P: 1000, N: 10}
	b.ReportAllocs()
	for range b.N {
		e, err := Change(DefaultKey, 1, 0, cur, 990, 1)
		if err != nil {
			b.Fatal(err)
		}
		cur.P = e.P
	}
}

func BenchmarkValue(b *testing.B) {
	ks := New()
	for r := range ReplicaID(5) {
		ks.Merge(Entry{Key: DefaultKey, Replica: r, P: 100 * uint64(r+1), N: 7})
	}
	b.ReportAllocs()
	var sink int64
	for range b.N {
		v, _ := ks.Value(DefaultKey, 0)
		sink += v
	}
	_ = sink
}

var (
	bigOnce  sync.Once
	bigA     *Keyspace
	bigB     *Keyspace // bigA plus one changed key
	bigGroup uint16    // the group where they differ
)

// bigKeyspaces builds, once, two 100,000-key keyspaces that differ in one key.
func bigKeyspaces() {
	bigOnce.Do(func() {
		bigA = randomKeyspace(rand.New(rand.NewPCG(42, 42)), 100_000)
		bigB = clone(bigA)
		bigB.Merge(Entry{Key: "key-4242", Replica: 77, P: 1})
		bigGroup = GroupOf(BucketOf("key-4242"))
	})
}

func BenchmarkGroups(b *testing.B) {
	bigKeyspaces()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(bigA.Groups()) != NumGroups {
			b.Fatal("expected every group to be non-empty")
		}
	}
}

func BenchmarkDiffGroups(b *testing.B) {
	bigKeyspaces()
	remote := bigB.Groups()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(bigA.DiffGroups(remote)) != 1 {
			b.Fatal("expected one differing group")
		}
	}
}

func BenchmarkDiffBuckets(b *testing.B) {
	bigKeyspaces()
	b.Run("one-group", func(b *testing.B) {
		groups := []uint16{bigGroup}
		remote := bigB.Buckets(groups)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if len(bigA.DiffBuckets(groups, remote)) != 1 {
				b.Fatal("expected one differing bucket")
			}
		}
	})
	b.Run("all-groups", func(b *testing.B) {
		groups := allGroups()
		remote := bigB.Buckets(groups)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if len(bigA.DiffBuckets(groups, remote)) != 1 {
				b.Fatal("expected one differing bucket")
			}
		}
	})
}

func BenchmarkBucketEntries(b *testing.B) {
	bigKeyspaces()
	buckets := bigB.DiffBuckets([]uint16{bigGroup}, bigA.Buckets([]uint16{bigGroup}))
	for _, k := range []string{"key-1", "key-2", "key-3"} {
		buckets = append(buckets, BucketOf(k))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(bigA.BucketContents(buckets).Entries) == 0 {
			b.Fatal("no entries")
		}
	}
}

// BenchmarkLargeKeyspace reads and writes keys picked at random among
// 1,000,000 held, three replicas' entries each: what a lookup costs once
// the keyspace is far larger than the caches.
func BenchmarkLargeKeyspace(b *testing.B) {
	const n = 1_000_000
	keys := make([]string, n)
	var ids [3]ReplicaID
	ks := New()
	for r := range ids {
		ids[r] = 0x9e3779b97f4a7c15 * ReplicaID(r+1)
		for i := range keys {
			if r == 0 {
				keys[i] = fmt.Sprintf("churn:%d", i+1)
			}
			ks.Merge(Entry{Key: keys[i], Replica: ids[r], P: 1})
		}
	}
	order := rand.New(rand.NewPCG(1, 1)).Perm(n)
	b.Run("get", func(b *testing.B) {
		var sink uint64
		for i := range b.N {
			sink += ks.Get(keys[order[i%n]], ids[0]).P
		}
		_ = sink
	})
	b.Run("value", func(b *testing.B) {
		var sink int64
		for i := range b.N {
			v, _ := ks.Value(keys[order[i%n]], 0)
			sink += v
		}
		_ = sink
	})
	b.Run("merge", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			ks.Merge(Entry{Key: keys[order[i%n]], Replica: ids[1], P: 2 + uint64(i/n)})
		}
	})
}
