package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// BenchmarkFailureDetection reports, on 5 real nodes on loopback, how long
// a SIGKILLed node takes to be declared dead by all four others (over
// b.N kills), and how many false suspicions and false deaths a saturating
// write load of 20 s causes (64 concurrent writers against all nodes on a
// 2-core machine).
//
//	go test -run '^$' -bench FailureDetection -benchtime 5x ./e2e/
func BenchmarkFailureDetection(b *testing.B) {
	nodes := startCluster(b, 5)
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		victim := nodes[i%5]
		var others []*proc
		for _, p := range nodes {
			if p != victim {
				others = append(others, p)
			}
		}
		victim.kill()
		start := time.Now()
		waitFor(b, 10*time.Second, func() error { return everyoneSees(others, victim.name, "dead") }, true)
		times = append(times, time.Since(start))
		victim.start()
		waitFor(b, 10*time.Second, func() error { return everyoneSees(nodes, victim.name, "alive") }, true)
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[0].Milliseconds()), "min-detect-ms")
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-detect-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-detect-ms")

	// False positives under saturation.
	before := detections(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil {
				if nodes[w%5].add(context.Background(), fmt.Sprintf("load-%d", w%16), 1) == nil {
					writes.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	after := detections(nodes)
	b.ReportMetric(float64(after.suspect-before.suspect), "false-suspect")
	b.ReportMetric(float64(after.dead-before.dead), "false-dead")
	b.ReportMetric(float64(writes.Load())/20, "load-writes/s")
}

type detectCount struct{ suspect, dead int }

func detections(nodes []*proc) detectCount {
	var c detectCount
	for _, p := range nodes {
		log := p.log.String()
		c.suspect += strings.Count(log, `msg="member suspect"`)
		c.dead += strings.Count(log, `msg="member dead"`)
	}
	return c
}

func everyoneSees(observers []*proc, name, status string) error {
	for _, o := range observers {
		got, err := statusOf(o, name)
		if err != nil {
			return err
		}
		if got != status {
			return fmt.Errorf("%s sees %s as %q", o.name, name, got)
		}
	}
	return nil
}
