package wal

import (
	"testing"
)

// TestLoneWritesAreWrittenByTheirCaller: a write with nobody else waiting
// is written and synced by Wait on the caller's goroutine, not handed to
// the writer goroutine.
func TestLoneWritesAreWrittenByTheirCaller(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 50)
	st := l.Stats()
	if st.Batches != 50 || st.Direct != 50 || st.Syncs != 50 {
		t.Errorf("50 lone writes: %+v, want 50 batches, all direct, 50 syncs", st)
	}
	l.Close()
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 50)...))
}

// TestWaitBehindABatch: writes that arrive while a batch is being written
// wait for it and are then written together by the writer; none is left
// in the queue.
func TestWaitBehindABatch(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	appendBehindBatch(t, l, 0, 8)
	st := l.Stats()
	if st.Records != 8 || st.Batches > 2 {
		t.Errorf("8 writes queued behind a batch: %+v, want them in one or two batches", st)
	}
	l.Close()
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 8)...))
}

// TestWaitWithAsyncRecords: records from peers (AppendAsync) wait for
// nobody, so a write queued after them is still alone, and writes them
// with its own.
func TestWaitWithAsyncRecords(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	l.AppendAsync(ents(seqEntry(0), seqEntry(1)))
	appendSeq(t, l, 2, 3)
	if st := l.Stats(); st.Records != 2 || st.Batches != 1 || st.Direct != 1 {
		t.Errorf("a write after an async record: %+v, want one direct batch of both", st)
	}
	l.Close()
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(0, 1, 2))
}

// TestWaitYieldsOnlyAfterSharedBatches: Wait lets other goroutines run
// before writing only while writes have lately shared batches; a batch of
// one waiting write (records from peers aside) turns that off, a batch of
// several turns it back on.
func TestWaitYieldsOnlyAfterSharedBatches(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	shared := func() bool { _, s := l.alone(); return s }
	appendSeq(t, l, 0, 3)
	if shared() {
		t.Fatal("after lone writes: Wait would yield")
	}
	appendBehindBatch(t, l, 3, 7) // queued up together
	if !shared() {
		t.Fatal("after a batch of 4 waiting writes: Wait would not yield")
	}
	l.AppendAsync(ents(seqEntry(7)))
	appendSeq(t, l, 8, 9)
	if shared() {
		t.Fatal("after a lone write (with a peer's record): Wait would yield")
	}
	l.Close()
	got, _ := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 9)...))
}
