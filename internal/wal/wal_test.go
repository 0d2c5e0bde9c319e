package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
)

var policies = []SyncPolicy{SyncAlways, SyncInterval, SyncNone}

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range policies {
		got, err := ParseSyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"", "Always", "fsync", "sometimes"} {
		if _, err := ParseSyncPolicy(s); err == nil {
			t.Errorf("ParseSyncPolicy(%q) succeeded", s)
		}
	}
	if got := SyncPolicy(7).String(); got != "SyncPolicy(7)" {
		t.Errorf("SyncPolicy(7).String() = %q", got)
	}
}

func TestOpenNeedsDir(t *testing.T) {
	if _, _, err := openApply(Options{}, func(crdt.Entry) {}); err == nil {
		t.Fatal("Open without a directory succeeded")
	}
}

func TestOpenEmptyCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, rec := openLog(t, testOptions(t, dir), nil)
	if rec.SnapshotLSN != 0 || rec.Records != 0 || rec.Segments != 0 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
		t.Errorf("recovery of an empty log: %+v", rec)
	}
	if got := l.LastLSN(); got != 0 {
		t.Errorf("LastLSN = %d, want 0", got)
	}
	segs, snaps := files(t, dir)
	if len(segs) != 1 || segs[0] != segFile(1) || len(snaps) != 0 {
		t.Errorf("files after Open: %v %v, want just %s", segs, snaps, segFile(1))
	}
}

// TestRoundTripConcurrent appends from many goroutines under each policy,
// closes, and recovers exactly the state built directly from the entries.
func TestRoundTripConcurrent(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			dir := t.TempDir()
			// testOptions' clock never moves here: under SyncInterval no
			// periodic sync happens during the test.
			opts := testOptions(t, dir)
			opts.Sync = p
			l, _ := openLog(t, opts, nil)

			const goroutines, perG = 16, 40
			batches := make([][]crdt.Entry, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perG {
						// Each goroutine owns a replica; some records carry
						// several entries, one key is shared by everyone.
						es := []crdt.Entry{{Key: fmt.Sprintf("g%02d", g), Replica: crdt.ReplicaID(g + 1), P: uint64(i + 1), N: uint64(i / 2)}}
						if i%5 == 0 {
							es = append(es, crdt.Entry{Key: "shared", Replica: crdt.ReplicaID(g + 1), P: uint64(i + 1)})
						}
						if err := l.Append(es); err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						batches[g] = append(batches[g], es...)
					}
				}()
			}
			wg.Wait()

			st := l.Stats()
			t.Logf("stats: %+v (%.1f records/batch)", st, float64(st.Records)/float64(max(st.Batches, 1)))
			if st.Records != goroutines*perG {
				t.Errorf("Stats.Records = %d, want %d", st.Records, goroutines*perG)
			}
			if st.Batches == 0 || st.Batches > st.Records {
				t.Errorf("Stats.Batches = %d for %d records", st.Batches, st.Records)
			}
			// The open segment holds the records and preallocated zeros.
			if size := uint64(fileSize(t, filepath.Join(dir, segFile(1)))); st.Bytes == 0 || st.Bytes+segHeader > size {
				t.Errorf("Stats.Bytes = %d, segment holds %d", st.Bytes, size)
			}
			switch p {
			case SyncAlways:
				// The writer needs an fsync per batch; with 16 writers
				// waiting on each one, batches must have formed.
				if st.Batches >= st.Records {
					t.Errorf("no group commit: %d batches for %d records", st.Batches, st.Records)
				}
				if st.Syncs != st.Batches {
					t.Errorf("SyncAlways: Syncs = %d, Batches = %d", st.Syncs, st.Batches)
				}
			case SyncInterval, SyncNone:
				if st.Syncs != 0 {
					t.Errorf("%v: Syncs = %d before any tick or Close", p, st.Syncs)
				}
			}
			if got := l.LastLSN(); got != goroutines*perG {
				t.Errorf("LastLSN = %d, want %d", got, goroutines*perG)
			}

			// Records queued without waiting are written by Close.
			var async []crdt.Entry
			for i := range 50 {
				e := crdt.Entry{Key: fmt.Sprintf("async-%d", i%10), Replica: 99, P: uint64(i + 1)}
				l.AppendAsync(ents(e))
				async = append(async, e)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st = l.Stats()
			if st.Records != goroutines*perG+50 {
				t.Errorf("after Close: Stats.Records = %d, want %d", st.Records, goroutines*perG+50)
			}
			if p != SyncAlways && st.Syncs != 1 {
				t.Errorf("%v: Syncs after Close = %d, want 1", p, st.Syncs)
			}
			if size := uint64(fileSize(t, filepath.Join(dir, segFile(1)))); st.Bytes+segHeader != size {
				t.Errorf("after Close: Stats.Bytes = %d, segment holds %d: the preallocated end was not cut", st.Bytes, size)
			}
			if err := l.Append(async[:1]); !errors.Is(err, ErrClosed) {
				t.Errorf("Append after Close: %v, want ErrClosed", err)
			}
			l.AppendAsync(ents(async[:1]...)) // must not panic or block
			if err := l.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}

			want := keyspaceOf(append(batches, async)...)
			got, rec := recoverState(t, opts)
			sameState(t, got, want)
			if rec.Records != goroutines*perG+50 || rec.SnapshotLSN != 0 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
				t.Errorf("recovery: %+v", rec)
			}
			got, rec2 := recoverInto(t, opts)
			sameState(t, got, want)
			if rec2.Records != rec.Records || rec2.Entries != rec.Entries {
				t.Errorf("Open recovery %+v differs from openApply's %+v", rec2, rec)
			}
			// The LSNs continue where the log left off.
			l2, _ := openLog(t, opts, nil)
			if got := l2.LastLSN(); got != goroutines*perG+50 {
				t.Errorf("LastLSN after reopening = %d, want %d", got, goroutines*perG+50)
			}
		})
	}
}

// gateClock blocks the writer inside its fsync timing while armed, so a test
// can pile up requests behind a batch that is being synced.
type gateClock struct {
	clock.Clock
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (c *gateClock) Now() time.Time {
	c.mu.Lock()
	armed := c.armed
	c.armed = false
	c.mu.Unlock()
	if armed {
		c.entered <- struct{}{}
		<-c.release
	}
	return c.Clock.Now()
}

// TestGroupCommit holds the writer inside one batch's fsync while 20 more
// Appends queue up, and checks that those go out as one batch with one fsync.
func TestGroupCommit(t *testing.T) {
	gc := &gateClock{Clock: clock.NewFake(time.Unix(1, 0)), entered: make(chan struct{}), release: make(chan struct{})}
	opts := testOptions(t, t.TempDir())
	opts.Clock = gc
	l, _ := openLog(t, opts, nil)

	gc.mu.Lock()
	gc.armed = true
	gc.mu.Unlock()
	first := make(chan error, 1)
	go func() { first <- l.Append([]crdt.Entry{seqEntry(0)}) }()
	<-gc.entered // the writer is now syncing the first batch

	const n = 20
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		go func() { errs <- l.Append([]crdt.Entry{seqEntry(i)}) }()
	}
	waitFor(t, "20 queued appends", func() bool { return l.LastLSN() == n+1 })
	select {
	case err := <-first:
		t.Fatalf("the first Append returned (%v) before its batch was synced", err)
	default:
	}
	close(gc.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if st.Records != n+1 || st.Batches != 2 || st.Syncs != 2 {
		t.Errorf("stats %+v, want %d records in 2 batches with 2 syncs", st, n+1)
	}
	l.Close()
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(span(0, n+1)...))
}

func TestSyncInterval(t *testing.T) {
	clk := clock.NewFake(time.Unix(1, 0))
	opts := testOptions(t, t.TempDir())
	opts.Sync, opts.SyncEvery, opts.Clock = SyncInterval, 5*time.Second, clk
	l, _ := openLog(t, opts, nil)
	waitFor(t, "the sync ticker", func() bool { return clk.Waiters() > 0 })

	appendSeq(t, l, 0, 3)
	if st := l.Stats(); st.Syncs != 0 || st.Records != 3 {
		t.Fatalf("before a tick: %+v", st)
	}
	clk.Advance(4 * time.Second)
	clk.Advance(time.Second)
	waitFor(t, "a sync after the interval", func() bool { return l.Stats().Syncs == 1 })

	appendSeq(t, l, 3, 4)
	clk.Advance(5 * time.Second)
	waitFor(t, "a second sync", func() bool { return l.Stats().Syncs == 2 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 4)...))
}

// slowClock makes every fsync look like it took two seconds.
type slowClock struct{ *clock.Fake }

func (c slowClock) Now() time.Time {
	c.Advance(2 * time.Second)
	return c.Fake.Now()
}

func TestSlowSyncIsLogged(t *testing.T) {
	lg, rec := newLogger(t)
	l, _ := openLog(t, Options{Dir: t.TempDir(), Logger: lg, Clock: slowClock{clock.NewFake(time.Unix(1, 0))}}, nil)
	appendSeq(t, l, 0, 1)
	if st := l.Stats(); st.LastSyncDuration != 2*time.Second {
		t.Errorf("LastSyncDuration = %v, want 2s", st.LastSyncDuration)
	}
	if !rec.has("slow fsync", segFile(1)) {
		t.Error("no slow fsync warning naming the segment")
	}
}

func TestEmptyAppend(t *testing.T) {
	l, _ := openLog(t, testOptions(t, t.TempDir()), nil)
	if err := l.Append(nil); err != nil {
		t.Fatal(err)
	}
	l.AppendAsync(crdt.Contents{})
	if got := l.LastLSN(); got != 0 {
		t.Errorf("LastLSN after empty appends = %d", got)
	}
	if st := l.Stats(); st.Records != 0 {
		t.Errorf("empty appends wrote records: %+v", st)
	}
}

// TestLargeAppendIsSplit appends more than one record can hold in one call.
func TestLargeAppendIsSplit(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.Sync = SyncNone
	l, _ := openLog(t, opts, nil)
	prefix := strings.Repeat("k", 490)
	es := make([]crdt.Entry, 40000) // about 21 MB, more than maxRecordBytes
	for i := range es {
		es[i] = crdt.Entry{Key: fmt.Sprintf("%s%06d", prefix, i), Replica: 7, P: uint64(i) + 1}
	}
	if err := l.Append(es); err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]crdt.Entry{seqEntry(0)}); err != nil {
		t.Fatal(err)
	}
	if got := l.LastLSN(); got != 3 {
		t.Errorf("LastLSN = %d, want 3 (two records for the big append, one more)", got)
	}
	l.Close()
	got, rec := recoverState(t, opts)
	if rec.Records != 3 || rec.Entries != len(es)+1 {
		t.Errorf("recovered %d records, %d entries; want 3, %d", rec.Records, rec.Entries, len(es)+1)
	}
	sameState(t, got, keyspaceOf(es, []crdt.Entry{seqEntry(0)}))
}

// TestWriteFailureIsSticky breaks the writer's file under it: the Append that
// hits the failure and every later one fail, and Err reports it.
func TestWriteFailureIsSticky(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			opts := testOptions(t, t.TempDir())
			opts.Sync = p
			l, _ := openLog(t, opts, nil)
			appendSeq(t, l, 0, 3)
			if err := l.Err(); err != nil {
				t.Fatalf("Err before the failure: %v", err)
			}

			l.f.Close() // the writer is idle: every Append above has returned
			err := l.Append([]crdt.Entry{seqEntry(3)})
			if err == nil || !errors.Is(err, os.ErrClosed) {
				t.Fatalf("Append on a broken file: %v, want an error wrapping os.ErrClosed", err)
			}
			if lerr := l.Err(); lerr == nil || !errors.Is(lerr, os.ErrClosed) {
				t.Errorf("Err = %v", lerr)
			}
			for i := 4; i < 6; i++ {
				if err := l.Append([]crdt.Entry{seqEntry(i)}); err == nil || err.Error() != l.Err().Error() {
					t.Errorf("later Append: %v, want the sticky error %v", err, l.Err())
				}
			}
			l.AppendAsync(ents(seqEntry(6))) // dropped, must not panic
			if err := l.Close(); err == nil {
				t.Error("Close of a failed log returned nil")
			}

			got, _ := recoverState(t, opts)
			sameState(t, got, seqState(0, 1, 2))
		})
	}
}

// TestRotationFailureIsSticky makes creating the next segment fail.
func TestRotationFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 64
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 2) // the segment is now full

	// A path below a regular file cannot be created, even by root. The
	// writer reads opts.Dir only after the next Append hands it work.
	blocker := filepath.Join(t.TempDir(), "file")
	writeFile(t, blocker, nil)
	l.opts.Dir = filepath.Join(blocker, "dir")
	if err := l.Append([]crdt.Entry{seqEntry(2)}); err == nil {
		t.Fatal("Append succeeded though the next segment could not be created")
	}
	if l.Err() == nil {
		t.Fatal("Err is nil after a failed rotation")
	}
	if err := l.Append([]crdt.Entry{seqEntry(3)}); err == nil {
		t.Fatal("Append after a failed rotation succeeded")
	}
	if err := l.Close(); err == nil {
		t.Error("Close of a failed log returned nil")
	}
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(0, 1))
}

func TestCloseIsIdempotentAndConcurrent(t *testing.T) {
	l, _ := openLog(t, testOptions(t, t.TempDir()), nil)
	appendSeq(t, l, 0, 2)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := l.Append([]crdt.Entry{seqEntry(3)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
}

// TestInvalidEntriesAreRefused: Append refuses, and AppendAsync drops,
// entries that recovery would not restore; the log carries on.
func TestInvalidEntriesAreRefused(t *testing.T) {
	invalid := map[string]crdt.Entry{
		"empty-key":    {Key: "", Replica: 1, P: 1},
		"long-key":     {Key: strings.Repeat("x", crdt.MaxKeyLen+1), Replica: 1, P: 1},
		"bad-utf8-key": {Key: "a\xffb", Replica: 1, P: 1},
		"zero-totals":  {Key: "zero", Replica: 1},
	}
	opts := testOptions(t, t.TempDir())
	lg, logs := newLogger(t)
	opts.Logger = lg
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 2)
	for name, e := range invalid {
		for _, batch := range [][]crdt.Entry{{e}, {seqEntry(10), e}} {
			err := l.Append(batch)
			if !errors.Is(err, ErrInvalidEntry) || !strings.HasPrefix(err.Error(), "wal: ") {
				t.Errorf("%s: Append(%d entries) = %v, want ErrInvalidEntry", name, len(batch), err)
			}
		}
	}
	if got := l.LastLSN(); got != 2 {
		t.Errorf("LastLSN = %d after refused Appends, want 2: something was queued", got)
	}
	for _, e := range invalid {
		l.AppendAsync(ents(e)) // nothing left to log
	}
	if got := l.LastLSN(); got != 2 {
		t.Errorf("LastLSN = %d after AppendAsync of invalid entries only, want 2", got)
	}
	mixed := []crdt.Entry{seqEntry(2), invalid["empty-key"], seqEntry(3), invalid["zero-totals"]}
	keep := append([]crdt.Entry(nil), mixed...)
	l.AppendAsync(ents(mixed...))
	if !reflect.DeepEqual(mixed, keep) {
		t.Error("AppendAsync modified the caller's slice")
	}
	if !logs.has("ERROR", "invalid entries", `dropped="2"`) {
		t.Error("dropping invalid entries is not logged")
	}
	appendSeq(t, l, 4, 5)
	if err := l.Err(); err != nil {
		t.Fatalf("Err = %v after invalid entries", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, rec := recoverState(t, opts)
	if rec.Records != 4 || rec.Entries != 5 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
		t.Errorf("recovery %+v, want 4 records of 5 entries", rec)
	}
	sameState(t, got, seqState(0, 1, 2, 3, 4))
}
