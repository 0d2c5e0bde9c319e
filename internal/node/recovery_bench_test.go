package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/wal"
)

// BenchmarkRecovery times a node's start (lock, recovery of the keyspace
// from snapshot and log, join-free start) on data dirs built beforehand:
//
//	snapshot-1M-keys     one snapshot of 1,000,000 keys written by 3 replicas
//	snapshot-1M-keys-half-expired  the same, every other key with an expired deadline
//	log-10M-records      10,000,000 one-entry records over 100,000 keys, no snapshot
//
//	go test -run '^$' -bench Recovery -benchtime 1x ./internal/node/
func BenchmarkRecovery(b *testing.B) {
	for _, tc := range []struct {
		name  string
		build func(b *testing.B, dir string)
	}{
		{"snapshot-1M-keys", func(b *testing.B, dir string) {
			entries := make([]crdt.Entry, 0, 3_000_000)
			for k := 0; k < 1_000_000; k++ {
				for r := 1; r <= 3; r++ {
					entries = append(entries, crdt.Entry{Key: fmt.Sprintf("page:%d", k), Replica: crdt.ReplicaID(r), P: uint64(k + r), N: uint64(r)})
				}
			}
			l := openBenchLog(b, dir)
			if err := l.WriteSnapshot(1, crdt.Contents{Entries: entries}); err != nil {
				b.Fatal(err)
			}
			l.Close()
		}},
		{"snapshot-1M-keys-half-expired", func(b *testing.B, dir string) {
			// Every other key carries a deadline in the past (expired, not
			// yet reclaimed), the rest none.
			var state crdt.Contents
			state.Entries = make([]crdt.Entry, 0, 3_000_000)
			for k := 0; k < 1_000_000; k++ {
				key := fmt.Sprintf("page:%d", k)
				for r := 1; r <= 3; r++ {
					state.Entries = append(state.Entries, crdt.Entry{Key: key, Replica: crdt.ReplicaID(r), P: uint64(k + r), N: uint64(r)})
				}
				if k%2 == 0 {
					state.Metas = append(state.Metas, crdt.Meta{Key: key, Life: crdt.Life{TTL: crdt.TTL{Ver: 1, Deadline: 1_000_000_000_000}}})
				}
			}
			l := openBenchLog(b, dir)
			if err := l.WriteSnapshot(1, state); err != nil {
				b.Fatal(err)
			}
			l.Close()
		}},
		{"log-10M-records", func(b *testing.B, dir string) {
			l := openBenchLog(b, dir)
			keys := make([]string, 100_000)
			for i := range keys {
				keys[i] = fmt.Sprintf("page:%d", i)
			}
			for i := 0; i < 10_000_000; i++ {
				l.AppendAsync(crdt.Contents{Entries: []crdt.Entry{{Key: keys[i%len(keys)], Replica: crdt.ReplicaID(i%3 + 1), P: uint64(i/len(keys) + 1)}}})
			}
			l.Close()
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var size int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				d, err := datadir.Open(dir, "dcounter")
				if err != nil {
					b.Fatal(err)
				}
				d.SetState(datadir.State{Clean: true, Fsync: "always"})
				d.Close()
				tc.build(b, dir)
				size = dirSize(dir)
				b.StartTimer()
				n, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", DataDir: dir, SnapshotInterval: 1 << 40})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(n.ks.Len()), "keys")
				b.ReportMetric(float64(n.recovery.Records), "records")
				n.Shutdown(context.Background())
			}
			b.ReportMetric(float64(size)/(1<<20), "MiB-on-disk")
		})
	}
}

func openBenchLog(b *testing.B, dir string) *wal.Log {
	l, _, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), Sync: wal.SyncNone}, crdt.New())
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// BenchmarkDiskUse drives 3,000,000 durable writes (64 writers, 10,000 keys)
// through a node with 8 MiB log segments and reports what stays on disk
// against what was written to the log: snapshots on every full segment keep
// the data dir at about one snapshot plus one or two segments.
//
//	go test -run '^$' -bench DiskUse -benchtime 1x ./internal/node/
func BenchmarkDiskUse(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		n, err := New(context.Background(), Config{GossipAddr: "127.0.0.1:0", DataDir: dir, SegmentSize: 8 << 20})
		if err != nil {
			b.Fatal(err)
		}
		const writes, writers = 3_000_000, 64
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for j := w; j < writes; j += writers {
					if _, _, err := n.Add(context.Background(), fmt.Sprintf("page:%d", j%10_000), 1, service.WriteOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		logged := n.wal.Stats().Bytes
		n.trySnapshot() // what the next full segment would trigger anyway
		b.ReportMetric(float64(logged)/(1<<20), "MiB-logged")
		b.ReportMetric(float64(dirSize(dir))/(1<<20), "MiB-on-disk")
		n.Shutdown(context.Background())
		b.ReportMetric(float64(dirSize(dir))/(1<<20), "MiB-after-shutdown")
	}
}
