package node

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
	"github.com/dcounter/dcounter/internal/wal"
)

// BenchmarkHTTPIncrement measures POST /increment through the node's whole
// client handler (routing, the service middleware, the write path, the
// log, the JSON answer) in memory, without a network: 64 concurrent
// clients, as bench/http.sh's wrk. cpu-µs/op is this process's CPU time
// (getrusage) per request, which a loaded machine distorts far less than
// ns/op; writes/fsync is the log's group size.
//
//	go test -run '^$' -bench HTTPIncrement -benchmem ./internal/node/
func BenchmarkHTTPIncrement(b *testing.B) {
	benchIncrement(b, func(b *testing.B, nd *Node) func(*testing.PB) {
		h := nd.handler
		return func(pb *testing.PB) {
			for pb.Next() {
				r := httptest.NewRequest(http.MethodPost, "/increment", nil)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		}
	})
}

// BenchmarkQuickIncrement is BenchmarkHTTPIncrement through api.Quick,
// the path a node's own listener answers POST /increment by: what a write
// costs the node above its HTTP server.
//
//	go test -run '^$' -bench QuickIncrement -benchmem ./internal/node/
func BenchmarkQuickIncrement(b *testing.B) {
	benchIncrement(b, func(b *testing.B, nd *Node) func(*testing.PB) {
		q := &api.Quick{Service: service.Instrument(nd, nd.metrics.ops, "http")}
		return func(pb *testing.PB) {
			buf := make([]byte, 0, 128)
			r := api.QuickRequest{Method: http.MethodPost, Path: "/increment"}
			for pb.Next() {
				a, ok := q.Answer(context.Background(), &r, buf[:0])
				if !ok || a.Status != http.StatusOK {
					b.Fatal(ok, a.Status, string(a.Body))
				}
			}
		}
	})
}

// benchIncrement runs, for each fsync policy, 64 goroutines of what
// client returns for a fresh node with a client API, and reports CPU per
// write and writes per fsync.
func benchIncrement(b *testing.B, client func(*testing.B, *Node) func(*testing.PB)) {
	for _, p := range []wal.SyncPolicy{wal.SyncNone, wal.SyncAlways} {
		b.Run("fsync="+p.String(), func(b *testing.B) {
			nd, err := New(context.Background(), Config{
				Name: "bench", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: b.TempDir(), Fsync: p,
				SnapshotInterval: time.Hour, Logger: testutil.Logger(b, slog.LevelWarn),
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { nd.Shutdown(context.Background()) })
			run := client(b, nd)
			s0 := nd.wal.Stats()
			b.SetParallelism(32) // 64 goroutines on 2 CPUs
			b.ReportAllocs()
			cpu0 := testutil.CPUTime(b)
			b.ResetTimer()
			b.RunParallel(run)
			b.StopTimer()
			b.ReportMetric(float64(testutil.CPUTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			s := nd.wal.Stats()
			if p == wal.SyncAlways && s.Syncs > s0.Syncs {
				b.ReportMetric(float64(s.Records-s0.Records)/float64(s.Syncs-s0.Syncs), "writes/fsync")
			}
		})
	}
}
