package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// BenchmarkClusterWrites measures, side by side, the write rate of a
// 3-node cluster of real processes on loopback with plaintext gossip and
// with keyed (Noise) gossip: 32 concurrent clients write random keys at
// random nodes, and the run ends when every node reports the exact totals.
// writes/s counts from the first write until all nodes are exact, so it
// includes replication. Nodes run --fsync none, so that disk flushes do not
// hide the cost of gossip.
//
//	go test -run '^$' -bench ClusterWrites -benchtime 20000x ./e2e/
func BenchmarkClusterWrites(b *testing.B) {
	for _, mode := range []struct {
		name  string
		extra []string
	}{
		{"plaintext", nil},
		{"keyed", []string{"--cluster-key", clusterkey.Generate()}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			nodes := startCluster(b, 3, append([]string{"--fsync", "none"}, mode.extra...)...)
			keys := make([]string, 16)
			for i := range keys {
				keys[i] = fmt.Sprintf("bench-%d", i)
			}
			var (
				mu       sync.Mutex
				expected = map[string]int64{}
				next     atomic.Int64
				wg       sync.WaitGroup
			)
			b.ResetTimer()
			start := time.Now()
			for w := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for next.Add(1) <= int64(b.N) {
						key := keys[rng.IntN(len(keys))]
						if err := nodes[rng.IntN(len(nodes))].add(context.Background(), key, 1); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						expected[key]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			waitFor(b, 30*time.Second, func() error { return allReport(nodes, keys, expected) }, true)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}
