package wal

import (
	"errors"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// TestSubmitAwaitConcurrent: groups submitted and awaited by many
// goroutines at once (each awaiter may write the log, its own group and
// others', and hand the turn on), mixed with AppendAsync and Enqueue,
// are all answered without error and all read back.
func TestSubmitAwaitConcurrent(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncNone} {
		t.Run(p.String(), func(t *testing.T) {
			opts := testOptions(t, t.TempDir())
			opts.Sync = p
			opts.SegmentSize = 64 << 10 // rotations while groups are led
			l, _ := openLog(t, opts, nil)
			const workers, groups = 32, 60
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					done := make(chan error, 1)
					for g := range groups {
						i := w*groups + g
						parts := []Part{{C: ents(seqEntry(2 * i))}, {C: ents(seqEntry(2*i + 1))}}
						if err := l.Submit(parts, done); err != nil {
							t.Error(err)
							return
						}
						if err := l.Await(done); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			base := 2 * workers * groups
			wg.Add(2)
			go func() { // remote changes, never awaited
				defer wg.Done()
				for i := range groups {
					l.AppendAsync(ents(seqEntry(base + i)))
				}
			}()
			go func() { // a caller that waits on done itself
				defer wg.Done()
				for i := range groups {
					if err := l.Append([]crdt.Entry{seqEntry(base + groups + i)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got, _ := recoverState(t, opts)
			sameState(t, got, seqState(span(0, base+2*groups)...))
		})
	}
}

// TestSubmitAfterClose: a closed log refuses a group and queues nothing.
func TestSubmitAfterClose(t *testing.T) {
	l, _ := openLog(t, testOptions(t, t.TempDir()), nil)
	l.Close()
	if err := l.Submit([]Part{{C: ents(seqEntry(1))}}, make(chan error, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// TestSubmitInvalid: an invalid part refuses the whole group.
func TestSubmitInvalid(t *testing.T) {
	l, _ := openLog(t, testOptions(t, t.TempDir()), nil)
	err := l.Submit([]Part{{C: ents(seqEntry(1))}, {C: ents(crdt.Entry{Key: "k", Replica: 1})}}, make(chan error, 1))
	if !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Submit: %v, want ErrInvalidEntry", err)
	}
	if n := l.LastLSN(); n != 0 {
		t.Fatalf("LastLSN %d after a refused group, want 0", n)
	}
}
