package wal

import (
	"testing"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/testutil"
)

// TestAppendAsyncRidesWithTheNextWrite: a record of merged peer state does
// not cost a write and fsync of its own when a local write follows: both
// go out in one batch under one fsync, in LSN order.
func TestAppendAsyncRidesWithTheNextWrite(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	remote := crdt.Entry{Key: "k", Replica: 7, P: 3}
	local := crdt.Entry{Key: "k", Replica: 1, P: 1}
	l.AppendAsync(ents(remote))
	if st := l.Stats(); st.Records != 0 {
		t.Fatalf("Stats.Records = %d right after AppendAsync, want 0 (it waits for a batch)", st.Records)
	}
	if err := l.Append([]crdt.Entry{local}); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != 2 || st.Batches != 1 || st.Syncs != 1 {
		t.Errorf("Stats = %+v, want 2 records in 1 batch under 1 fsync", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := recoverState(t, opts)
	sameState(t, got, keyspaceOf([]crdt.Entry{remote, local}))
}

// TestAppendAsyncAloneIsWrittenWithinAsyncDelay: with no local write to
// ride with, the record is written and fsynced once AsyncDelay passes.
func TestAppendAsyncAloneIsWrittenWithinAsyncDelay(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	clk := opts.Clock.(*clock.Fake)
	l, _ := openLog(t, opts, nil)
	remote := crdt.Entry{Key: "k", Replica: 7, P: 3}
	for range 3 {
		l.AppendAsync(ents(remote)) // one wake-up for all three
	}
	clk.Advance(AsyncDelay - 1)
	if st := l.Stats(); st.Records != 0 {
		t.Fatalf("Stats.Records = %d before AsyncDelay passed, want 0", st.Records)
	}
	clk.Advance(1)
	testutil.WaitFor(t, "the async records written and fsynced", func() bool {
		st := l.Stats()
		return st.Records == 3 && st.Syncs == 1
	})
	if st := l.Stats(); st.Batches != 1 {
		t.Errorf("Stats.Batches = %d, want 1", st.Batches)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := recoverState(t, opts)
	sameState(t, got, keyspaceOf([]crdt.Entry{remote}))
}
