package node

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/testutil"
	"github.com/dcounter/dcounter/internal/wal"
	"github.com/dcounter/dcounter/internal/wire"
)

// BenchmarkReceiveDelta measures what a node spends, in process, on one
// Delta from a peer (decode, merge, the log record it queues, queueing the
// news for the next push), for Deltas of 1 and 8 fresh entries: the
// replica-side work per message and per entry, without the network and
// the scheduler (bench/replication.sh measures those, on real processes).
//
//	go test -run '^$' -bench ReceiveDelta -benchmem ./internal/node/
func BenchmarkReceiveDelta(b *testing.B) {
	for _, entries := range []int{1, 8} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			nd, err := New(context.Background(), Config{
				Name: "bench", GossipAddr: "127.0.0.1:0", DataDir: b.TempDir(), Fsync: wal.SyncAlways,
				SnapshotInterval: time.Hour, SyncInterval: time.Hour, Logger: testutil.Logger(b, slog.LevelWarn),
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { nd.Shutdown(context.Background()) })
			// Every Delta must be news: totals keep rising, so the
			// payloads are made afresh, outside the timer and the CPU
			// count, every 1024 messages.
			payloads := make([][]byte, 1024)
			p := uint64(0)
			refill := func() {
				for i := range payloads {
					d := &wire.Delta{}
					for e := 0; e < entries; e++ {
						p++
						d.Entries = append(d.Entries, wire.Entry{Key: fmt.Sprintf("k%d", e%20), Replica: uint64(7 + e%19), P: p})
					}
					if payloads[i], err = wire.Encode(nd.cfg.Cluster, d); err != nil {
						b.Fatal(err)
					}
				}
			}
			refill()
			b.ReportAllocs()
			var cpu time.Duration
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(b.N-done, len(payloads))
				c0 := testutil.CPUTime(b)
				for _, m := range payloads[:n] {
					nd.receive("10.0.0.9:7946", m)
				}
				cpu += testutil.CPUTime(b) - c0
				done += n
				b.StopTimer()
				refill()
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}
