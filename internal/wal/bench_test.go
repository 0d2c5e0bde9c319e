package wal

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/testutil"
)

func benchOptions(dir string, p SyncPolicy) Options {
	return Options{Dir: dir, Sync: p, Logger: slog.New(slog.DiscardHandler)}
}

// BenchmarkAppendParallel measures Append throughput with many concurrent
// writers, one entry per Append. SyncNone is the baseline for the cost of
// the fsyncs; records/batch shows how much group commit absorbs.
func BenchmarkAppendParallel(b *testing.B) {
	for _, p := range policies {
		b.Run(p.String(), func(b *testing.B) {
			l, _, err := openApply(benchOptions(b.TempDir(), p), func(crdt.Entry) {})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ReportAllocs()
			b.SetParallelism(16)
			var id sync.Mutex
			next := crdt.ReplicaID(0)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id.Lock()
				next++
				r := next
				id.Unlock()
				e := []crdt.Entry{{Key: "bench-key", Replica: r}}
				for pb.Next() {
					e[0].P++
					if err := l.Append(e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
			b.SetBytes(int64(st.Bytes) / int64(max(b.N, 1)))
		})
	}
}

// BenchmarkLoneAppend measures a durable Append with nobody to share its
// fsync with (one writer, SyncAlways): the latency of a write on an idle
// node, and its CPU (cpu-µs/op, this process's user and system time; the
// kernel's work for the fsync is most of it). "prealloc" is the default,
// the segment kept zeroed ahead of the records; "grow" is Prealloc < 0,
// the file growing with every record, so that every fdatasync also writes
// the inode.
func BenchmarkLoneAppend(b *testing.B) {
	for _, c := range []struct {
		name     string
		prealloc int64
	}{{"prealloc", 0}, {"grow", -1}} {
		b.Run(c.name, func(b *testing.B) {
			opts := benchOptions(b.TempDir(), SyncAlways)
			opts.Prealloc = c.prealloc
			l, _, err := openApply(opts, func(crdt.Entry) {})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			e := []crdt.Entry{{Key: "bench-key", Replica: 1}}
			b.ResetTimer()
			cpu0 := testutil.CPUTime(b)
			for range b.N {
				e[0].P++
				if err := l.Append(e); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(testutil.CPUTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}

// recoverFixtures caches logs built for BenchmarkRecover: building one
// takes longer than recovering it.
var recoverFixtures sync.Map // string -> string (dir)

// recoverEntry is the i-th entry of the recovery workload: 100k keys
// written by 3 replicas with rising totals. As 3 and 100k are coprime, every
// 300k consecutive entries cover each (key, replica) once.
func recoverEntry(i int) crdt.Entry {
	const keys = 100_000
	return crdt.Entry{
		Key:     fmt.Sprintf("key-%06d", i%keys),
		Replica: crdt.ReplicaID(i%3 + 1),
		P:       uint64(i/(3*keys) + 1),
	}
}

// fixtureDir returns a directory holding what build writes, building it only
// once per parent benchmark: a sub-benchmark's function runs several times,
// and b.TempDir would be removed after each run. The parent calls
// removeFixtures when its sub-benchmarks are done.
func fixtureDir(b *testing.B, name string, build func(dir string)) string {
	if dir, ok := recoverFixtures.Load(name); ok {
		return dir.(string)
	}
	dir, err := os.MkdirTemp("", "wal-bench-"+name+"-")
	if err != nil {
		b.Fatal(err)
	}
	build(dir)
	recoverFixtures.Store(name, dir)
	return dir
}

func dirSize(b *testing.B, dir string) int64 {
	des, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			b.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// BenchmarkRecover times recovery through a callback that merges every
// recovered entry into a crdt.Keyspace (openApply), for logs of one entry
// per record, and the same through Open, which merges without allocating
// for keys already held. The merge-only sub-benchmarks merge the same entries from
// memory: the baseline for what reading and checking the log adds.
func BenchmarkRecover(b *testing.B) {
	defer removeFixtures()
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("%dk", n/1000)
		b.Run(name, func(b *testing.B) {
			dir := fixtureDir(b, name, func(dir string) {
				l, _, err := openApply(benchOptions(dir, SyncNone), func(crdt.Entry) {})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					l.AppendAsync(ents(recoverEntry(i)))
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
			b.SetBytes(dirSize(b, dir))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ks := crdt.New()
				l, rec, err := openApply(benchOptions(dir, SyncNone), func(e crdt.Entry) { ks.Merge(e) })
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if rec.Records != n || ks.Len() != 100_000 || ks.Entries() != min(n, 300_000) {
					b.Fatalf("recovered %d records, %d keys, %d entries", rec.Records, ks.Len(), ks.Entries())
				}
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(name+"/Open", func(b *testing.B) {
			dir, ok := recoverFixtures.Load(name)
			if !ok {
				b.Skip("the fixture is built by the callback sub-benchmark")
			}
			b.SetBytes(dirSize(b, dir.(string)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ks := crdt.New()
				l, rec, err := Open(benchOptions(dir.(string), SyncNone), ks)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if rec.Records != n || ks.Len() != 100_000 {
					b.Fatalf("recovered %d records, %d keys", rec.Records, ks.Len())
				}
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(name+"/merge-only", func(b *testing.B) {
			entries := make([]crdt.Entry, n)
			for i := range entries {
				entries[i] = recoverEntry(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ks := crdt.New()
				for _, e := range entries {
					ks.Merge(e)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkRecoverSnapshot times Open plus merge for a log that is one
// snapshot of 1M keys, one replica each; merge-only is the baseline.
func BenchmarkRecoverSnapshot(b *testing.B) {
	defer removeFixtures()
	const n = 1_000_000
	b.Run("1M", func(b *testing.B) {
		dir := fixtureDir(b, "snapshot", func(dir string) {
			entries := make([]crdt.Entry, n)
			for i := range entries {
				entries[i] = crdt.Entry{Key: fmt.Sprintf("key-%07d", i), Replica: 1, P: uint64(i) + 1}
			}
			l, _, err := openApply(benchOptions(dir, SyncNone), func(crdt.Entry) {})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Append(entries[:1]); err != nil {
				b.Fatal(err)
			}
			if err := l.WriteSnapshot(l.LastLSN(), ents(entries...)); err != nil {
				b.Fatal(err)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
		b.SetBytes(fileSize(b, filepath.Join(dir, snapFile(1))))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ks := crdt.New()
			l, rec, err := openApply(benchOptions(dir, SyncNone), func(e crdt.Entry) { ks.Merge(e) })
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if rec.SnapshotEntries != n || ks.Len() != n {
				b.Fatalf("recovered %d snapshot entries, %d keys", rec.SnapshotEntries, ks.Len())
			}
			l.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("1M/merge-only", func(b *testing.B) {
		entries := make([]crdt.Entry, n)
		for i := range entries {
			entries[i] = crdt.Entry{Key: fmt.Sprintf("key-%07d", i), Replica: 1, P: uint64(i) + 1}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ks := crdt.New()
			for _, e := range entries {
				ks.Merge(e)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// lifecycleContents is 1M keys of one entry each, where every other key
// also has a meta: an expired TTL (past deadline, as after a restart long
// after it) on generation 1, so its entry is of generation 1 too.
func lifecycleContents(n int) crdt.Contents {
	c := crdt.Contents{Entries: make([]crdt.Entry, n), Metas: make([]crdt.Meta, 0, n/2)}
	for i := range n {
		key := fmt.Sprintf("page:%07d", i)
		c.Entries[i] = crdt.Entry{Key: key, Replica: crdt.ReplicaID(i%3 + 1), P: uint64(i) + 1}
		if i%2 == 0 {
			c.Entries[i].Gen = 1
			c.Metas = append(c.Metas, crdt.Meta{Key: key, Life: crdt.Life{Gen: 1, TTL: crdt.TTL{Ver: 1, Deadline: 1_600_000_000_000 + int64(i)}}})
		}
	}
	return c
}

// BenchmarkRecoverLifecycle times Open (merging into a crdt.Keyspace) of
// 1M keys, half of them with an expired TTL: as one snapshot, and as
// records of one change each (an entry, or an entry and its meta, as a
// write with a TTL logs them). merge-only merges the same contents from
// memory: the baseline for what reading and checking adds.
//
//	go test -run '^$' -bench RecoverLifecycle -benchtime 3x ./internal/wal/
func BenchmarkRecoverLifecycle(b *testing.B) {
	defer removeFixtures()
	const n = 1_000_000
	c := lifecycleContents(n)
	check := func(b *testing.B, ks *crdt.Keyspace) {
		if ks.Len() != n || ks.Entries() != n {
			b.Fatalf("recovered %d keys, %d entries", ks.Len(), ks.Entries())
		}
		if st := ks.StatusOf("page:0000000", 1_700_000_000_000); st.Live || st.Gen != 1 {
			b.Fatalf("an expired key reads %+v", st)
		}
	}
	for _, kind := range []string{"snapshot", "log"} {
		b.Run("1M/"+kind, func(b *testing.B) {
			dir := fixtureDir(b, "lifecycle-"+kind, func(dir string) {
				l, _, err := openApply(benchOptions(dir, SyncNone), func(crdt.Entry) {})
				if err != nil {
					b.Fatal(err)
				}
				if kind == "snapshot" {
					if err := l.Append(c.Entries[:1]); err != nil {
						b.Fatal(err)
					}
					if err := l.WriteSnapshot(l.LastLSN(), c); err != nil {
						b.Fatal(err)
					}
				} else {
					for i := range n {
						ch := ents(c.Entries[i])
						if i%2 == 0 {
							ch.Metas = c.Metas[i/2 : i/2+1]
						}
						l.AppendAsync(ch)
					}
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
			b.SetBytes(dirSize(b, dir))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ks := crdt.New()
				l, _, err := Open(benchOptions(dir, SyncNone), ks)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				check(b, ks)
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
	b.Run("1M/merge-only", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			ks := crdt.New()
			for _, m := range c.Metas {
				ks.MergeMeta(m)
			}
			for _, e := range c.Entries {
				ks.Merge(e)
			}
			b.StopTimer()
			check(b, ks)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
}

// removeFixtures deletes the cached fixture directories.
func removeFixtures() {
	recoverFixtures.Range(func(k, v any) bool {
		os.RemoveAll(v.(string))
		recoverFixtures.Delete(k)
		return true
	})
}
