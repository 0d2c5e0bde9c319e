package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkWriteVisibility measures, on a 5-node cluster of real processes
// on loopback, the time from a write's acknowledgment by one node until
// every other node reports it. Each iteration writes a fresh key at a random
// node; four pollers read it on the other nodes about every millisecond.
//
//	go test -run '^$' -bench WriteVisibility -benchtime 300x ./e2e/
func BenchmarkWriteVisibility(b *testing.B) {
	nodes := startCluster(b, 5)
	rng := rand.New(rand.NewPCG(1, 1))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := rng.IntN(len(nodes))
		key := fmt.Sprintf("vis-%d-%d", time.Now().UnixNano(), i)
		if err := nodes[w].add(context.Background(), key, 1); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var worst time.Duration
		for j, p := range nodes {
			if j == w {
				continue
			}
			wg.Add(1)
			go func(p *proc) {
				defer wg.Done()
				for deadline := acked.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if v, err := p.value(key); err == nil && v == 1 {
						d := time.Since(acked)
						mu.Lock()
						worst = max(worst, d)
						mu.Unlock()
						return
					}
				}
				b.Errorf("%s never saw %s", p.name, key)
			}(p)
		}
		wg.Wait()
		lat = append(lat, worst)
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.90), "p90-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
