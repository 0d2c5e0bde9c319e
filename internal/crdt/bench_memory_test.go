package crdt

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// BenchmarkMemoryPerKey reports the Go heap a keyspace holds per key for
// 1,000,000 keys written once by one replica, with and without a deadline,
// and written once by each of three replicas (replicas=3, as in a 3-node
// cluster), what a tombstone costs once every key has expired
// (B/tombstone), and what is left once every tombstone is forgotten
// (Reclaim past deadline + grace + horizon). With
// DCOUNTER_HEAP_PROFILE set, it writes a heap profile of what the emptied
// keyspace still holds to that file.
//
//	go test -run '^$' -bench MemoryPerKey -benchtime 1x ./internal/crdt/
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("churn:%d", i+1)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	b.Run("replicas=3", func(b *testing.B) {
		for range b.N {
			before := heap()
			ks := New()
			for r := range ReplicaID(3) {
				for _, k := range keys {
					ks.Merge(Entry{Key: k, Replica: 0x9e3779b97f4a7c15 * (r + 1), P: 1})
				}
			}
			if ks.Entries() != 3*n {
				b.Fatalf("%d entries, want %d", ks.Entries(), 3*n)
			}
			b.ReportMetric(float64(heap()-before)/n, "B/key")
			runtime.KeepAlive(ks)
		}
	})
	for _, ttl := range []bool{false, true} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			for range b.N {
				before := heap()
				ks := New()
				for i, k := range keys {
					ks.Merge(Entry{Key: k, Replica: 1, P: 1})
					if ttl {
						if m, ok := ks.Expiry(k, 0, 10_000+int64(i), TTLIfNone); ok {
							ks.MergeMeta(m)
						}
					}
				}
				live := heap()
				b.ReportMetric(float64(live-before)/n, "B/key")
				if ttl {
					// expire everything (a horizon long enough to keep
					// every tombstone), then forget every tombstone
					const horizon = 10 * n
					ks.Reclaim(10_000+n+2_000, 2_000, horizon)
					b.ReportMetric(float64(heap()-before)/n, "B/tombstone")
					ks.Reclaim(10_000+n+2_000+horizon+1, 2_000, horizon)
					if ks.Len() != 0 {
						b.Fatalf("%d keys left after reclaim", ks.Len())
					}
					after := heap()
					b.ReportMetric(float64(after-before)/(1<<20), "MiB-after-reclaim")
					if name := os.Getenv("DCOUNTER_HEAP_PROFILE"); name != "" {
						f, err := os.Create(name)
						if err != nil {
							b.Fatal(err)
						}
						if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
							b.Fatal(err)
						}
						f.Close()
					}
				}
				runtime.KeepAlive(ks)
			}
		})
	}
}
