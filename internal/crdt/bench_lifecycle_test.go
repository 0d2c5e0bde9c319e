package crdt

import (
	"fmt"
	"testing"
)

// BenchmarkMergeTTL compares merging entries into keys with and without a
// deadline, and merging the deadlines themselves.
func BenchmarkMergeTTL(b *testing.B) {
	const pool = 1 << 16
	keys := make([]string, pool)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	setup := func(ttl bool) *Keyspace {
		ks := New()
		for i, k := range keys {
			ks.Merge(Entry{Key: k, Replica: 1, P: 1})
			if ttl {
				ks.MergeMeta(Meta{Key: k, Life: Life{TTL: TTL{Ver: 1, Deadline: 1_000_000 + int64(i)}}})
			}
		}
		return ks
	}
	for _, ttl := range []bool{false, true} {
		b.Run(fmt.Sprintf("existing/ttl=%v", ttl), func(b *testing.B) {
			ks := setup(ttl)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ks.Merge(Entry{Key: keys[i%pool], Replica: 2, P: uint64(i/pool) + 1})
			}
		})
	}
	b.Run("meta/new-deadline", func(b *testing.B) {
		ks := setup(false)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			ks.MergeMeta(Meta{Key: keys[i%pool], Life: Life{TTL: TTL{Ver: uint64(i/pool) + 1, Deadline: 1_000_000 + int64(i)}}})
		}
	})
	b.Run("meta/same", func(b *testing.B) {
		ks := setup(true)
		m := Meta{Key: keys[7], Life: Life{TTL: TTL{Ver: 1, Deadline: 1_000_007}}}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ks.MergeMeta(m)
		}
	})
}

// BenchmarkReclaim reclaims 1M expiring keys per op: first their expiry
// into tombstones, then forgetting the tombstones; ns/key is the cost per
// key.
func BenchmarkReclaim(b *testing.B) {
	const n = 1_000_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	for _, phase := range []string{"expire", "forget"} {
		b.Run(phase, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				ks := New()
				for i, k := range keys {
					ks.Merge(Entry{Key: k, Replica: 1, P: 1})
					ks.MergeMeta(Meta{Key: k, Life: Life{TTL: TTL{Ver: 1, Deadline: 1000 + int64(i%1000)}}})
				}
				if phase == "forget" {
					ks.Reclaim(2000, 0, 1<<40)
				}
				b.StartTimer()
				var got int
				if phase == "expire" {
					ts, _ := ks.Reclaim(2000, 0, 1<<40)
					got = len(ts)
				} else {
					_, got = ks.Reclaim(2000+horizon, 0, horizon)
				}
				if got != n || (phase == "forget" && ks.Len() != 0) {
					b.Fatalf("%s: reclaimed %d of %d", phase, got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		})
	}
}

// BenchmarkList lists a page of 100 out of 100,000 keys.
func BenchmarkList(b *testing.B) {
	ks := New()
	for i := range 100_000 {
		k := fmt.Sprintf("user/%06d", i)
		ks.Merge(Entry{Key: k, Replica: 1, P: 1})
		if i%3 == 0 {
			ks.MergeMeta(Meta{Key: k, Life: Life{Gen: 1, Deleted: 10}})
		}
	}
	b.Run("live-page", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			items, _, _ := ks.List("user/", fmt.Sprintf("user/%06d", (i*997)%99_000), 100, 1000, 0)
			if len(items) != 100 {
				b.Fatalf("page of %d", len(items))
			}
		}
	})
	b.Run("dead-scan", func(b *testing.B) {
		// Expired keys: listed (tombstones are not) but not live.
		dead := New()
		for i := range 100_000 {
			k := fmt.Sprintf("user/%06d", i)
			dead.Merge(Entry{Key: k, Replica: 1, P: 1})
			dead.MergeMeta(Meta{Key: k, Life: Life{TTL: TTL{Ver: 1, Deadline: 5}}})
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, _, more := dead.List("user/", "", 100, 1000, 10); !more {
				b.Fatal("expected more")
			}
		}
	})
}
