package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
	"github.com/dcounter/dcounter/internal/wal"
)

func incr(key string, d int64) service.Write {
	return service.Write{Op: service.OpAdd, Key: key, Delta: d}
}

// writes runs ws as one group and fails the test on any error.
func writes(t *testing.T, nd *Node, ws ...service.Write) []service.WriteResult {
	t.Helper()
	out := make([]service.WriteResult, len(ws))
	nd.Writes(context.Background(), ws, out)
	for i, o := range out {
		if o.Err != nil {
			t.Fatalf("write %d (%+v): %v", i, ws[i], o.Err)
		}
	}
	return out
}

// TestGroupOfAddsIsOneRecordAndAnswersInOrder: a pipeline of increments
// to one key is one log record and one sync, and each answer is the value
// right after that increment, as Redis answers INCR.
func TestGroupOfAddsIsOneRecordAndAnswersInOrder(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), nil)
	before := nd.wal.Stats()
	ws := make([]service.Write, 16)
	for i := range ws {
		ws[i] = incr("hits", 1)
	}
	out := writes(t, nd, ws...)
	for i, o := range out {
		if o.Counter.Value != int64(i+1) || !o.Counter.Live || !o.Applied {
			t.Fatalf("answer %d = %+v, want value %d", i, o, i+1)
		}
	}
	after := nd.wal.Stats()
	if got := after.Records - before.Records; got != 1 {
		t.Errorf("16 unkeyed increments took %d log records, want 1", got)
	}
	if got := after.Syncs - before.Syncs; got != 1 {
		t.Errorf("16 unkeyed increments took %d syncs, want 1", got)
	}
	if c, _ := nd.Get(context.Background(), "hits"); c.Value != 16 {
		t.Fatalf("hits = %d, want 16", c.Value)
	}
}

// TestGroupKeepsRedisOrderAcrossLifecycleChanges: a delete or an expiry in
// the middle of a group sees the writes before it, and the writes after it
// count from the reset.
func TestGroupKeepsRedisOrderAcrossLifecycleChanges(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), nil)
	out := writes(t, nd,
		incr("k", 5),
		service.Write{Op: service.OpDelete, Key: "k"},
		incr("k", 2),
		service.Write{Op: service.OpExpire, Key: "k", TTL: time.Minute, Cond: service.ExpireNX},
		service.Write{Op: service.OpExpire, Key: "k", TTL: time.Hour, Cond: service.ExpireNX},
		service.Write{Op: service.OpExpire, Key: "k", TTL: time.Hour, Cond: service.ExpireGT},
		service.Write{Op: service.OpExpire, Key: "k", TTL: time.Second, Cond: service.ExpireGT},
		service.Write{Op: service.OpPersist, Key: "k"},
		service.Write{Op: service.OpPersist, Key: "k"},
		incr("other", 1),
	)
	want := []struct {
		applied bool
		value   int64
		prior   int64
	}{
		{true, 5, 0}, {true, 0, 5}, {true, 2, 0},
		{true, 2, 0}, {false, 2, 0}, {true, 2, 0}, {false, 2, 0},
		{true, 2, 0}, {false, 2, 0}, {true, 1, 0},
	}
	for i, w := range want {
		o := out[i]
		if o.Applied != w.applied || o.Counter.Value != w.value || o.Prior != w.prior {
			t.Errorf("write %d: applied %v value %d prior %d, want %v %d %d", i, o.Applied, o.Counter.Value, o.Prior, w.applied, w.value, w.prior)
		}
	}
	if c, _ := nd.Get(context.Background(), "k"); c.Value != 2 || c.TTL != 0 {
		t.Fatalf("k = %+v, want 2 without expiry", c)
	}
}

// TestExpireConditionsAndPastDeadline: EXPIRE's NX, XX, GT and LT, and a
// deadline already past deleting the key, as Redis does.
func TestExpireConditionsAndPastDeadline(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), nil)
	ctx := context.Background()
	expire := func(ttl time.Duration, cond service.ExpireCond) service.WriteResult {
		return writes(t, nd, service.Write{Op: service.OpExpire, Key: "k", TTL: ttl, Cond: cond})[0]
	}
	if o := expire(time.Minute, service.ExpireAlways); o.Applied {
		t.Fatalf("EXPIRE on an absent key applied: %+v", o)
	}
	writes(t, nd, incr("k", 3))
	steps := []struct {
		ttl   time.Duration
		cond  service.ExpireCond
		apply bool
	}{
		{time.Minute, service.ExpireXX, false}, // no expiry yet
		{time.Minute, service.ExpireGT, false}, // none counts as never
		{time.Hour, service.ExpireLT, true},
		{time.Minute, service.ExpireNX, false},
		{time.Minute, service.ExpireLT, true},
		{time.Hour, service.ExpireGT, true},
		{time.Minute, service.ExpireXX, true},
	}
	for i, s := range steps {
		if o := expire(s.ttl, s.cond); o.Applied != s.apply {
			t.Fatalf("step %d (%v, cond %d): applied %v, want %v", i, s.ttl, s.cond, o.Applied, s.apply)
		}
	}
	if c, _ := nd.Get(ctx, "k"); c.TTL <= 0 || c.TTL > time.Minute {
		t.Fatalf("k's TTL = %v, want about a minute", c.TTL)
	}
	if o := expire(-time.Second, service.ExpireAlways); !o.Applied || o.Prior != 3 {
		t.Fatalf("EXPIRE k -1 = %+v, want applied with prior 3", o)
	}
	if c, _ := nd.Get(ctx, "k"); c.Live {
		t.Fatalf("k still live after a past deadline: %+v", c)
	}
}

// TestGroupWithRepeatedIdempotencyKey: a token used twice in one group is
// applied once; the second write gets the first answer back.
func TestGroupWithRepeatedIdempotencyKey(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), nil)
	keyed := service.Write{Op: service.OpAdd, Key: "k", Delta: 10, Opts: service.WriteOptions{Idem: "tok-1"}}
	out := writes(t, nd, keyed, incr("k", 1), keyed, incr("k", 1))
	got := []int64{out[0].Counter.Value, out[1].Counter.Value, out[2].Counter.Value, out[3].Counter.Value}
	if fmt.Sprint(got) != "[10 11 10 12]" || !out[2].Replayed || out[0].Replayed {
		t.Fatalf("answers %v (replayed %v %v), want [10 11 10 12] with the third replayed", got, out[0].Replayed, out[2].Replayed)
	}
	reused := service.Write{Op: service.OpAdd, Key: "k", Delta: 5, Opts: service.WriteOptions{Idem: "tok-1"}}
	o := make([]service.WriteResult, 2)
	nd.Writes(context.Background(), []service.Write{reused, incr("k", 1)}, o)
	if !errors.Is(o[0].Err, service.ErrIdempotencyReused) || o[1].Err != nil || o[1].Counter.Value != 13 {
		t.Fatalf("reused token: %+v, then %+v; want ErrIdempotencyReused and 13", o[0], o[1])
	}
}

// TestGroupIsDurable: every acknowledged write of a group survives a crash
// (a copy of the live data dir).
func TestGroupIsDurable(t *testing.T) {
	dir := t.TempDir()
	nd := startDiskNode(t, dir, nil)
	ws := []service.Write{incr("a", 1), incr("b", 2), {Op: service.OpAdd, Key: "c", Delta: 3, Opts: service.WriteOptions{Idem: "t"}}, incr("a", 4)}
	writes(t, nd, ws...)
	again := startDiskNode(t, crashCopy(t, dir), nil)
	for key, want := range map[string]int64{"a": 5, "b": 2, "c": 3} {
		if c, _ := again.Get(context.Background(), key); c.Value != want {
			t.Errorf("after a crash %s = %d, want %d", key, c.Value, want)
		}
	}
	o := writes(t, again, ws[2])[0]
	if !o.Replayed || o.Counter.Value != 3 {
		t.Fatalf("retry after the crash: %+v, want a replay of 3", o)
	}
}

// TestGroupFailuresAreEach: a bad write in a group fails alone.
func TestGroupFailuresAreEach(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), nil)
	out := make([]service.WriteResult, 3)
	nd.Writes(context.Background(), []service.Write{incr("k", 1), incr("", 1), incr("k", 1)}, out)
	if out[0].Err != nil || out[1].Err == nil || out[2].Err != nil || out[2].Counter.Value != 2 {
		t.Fatalf("results %+v", out)
	}
	if service.ClassOf(out[1].Err) != service.ClassInvalid {
		t.Fatalf("empty key: class %v, want invalid", service.ClassOf(out[1].Err))
	}
}

// BenchmarkWritesGroup16 measures the node's write path for a pipeline of
// 16 increments of one key (what redis-benchmark -P 16 sends), with the
// log on disk but never synced: allocations and CPU per increment, not the
// disk's fsync latency.
//
//	go test -run '^$' -bench WritesGroup -benchmem ./internal/node/
func BenchmarkWritesGroup16(b *testing.B) {
	nd, err := New(context.Background(), Config{
		Name: "bench", GossipAddr: "127.0.0.1:0", DataDir: b.TempDir(), Fsync: wal.SyncNone,
		SnapshotInterval: time.Hour, Logger: testutil.Logger(b, slog.LevelWarn),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nd.Shutdown(context.Background()) })
	ws := make([]service.Write, 16)
	for i := range ws {
		ws[i] = incr("counter:__rand_int__", 1)
	}
	out := make([]service.WriteResult, len(ws))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		nd.Writes(ctx, ws, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ws)), "ns/write")
}
