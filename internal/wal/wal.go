package wal

// The API: Open, the Log and its Options, queueing records, snapshots and
// Close. The writer goroutine is in writer.go, the format in format.go and
// snapshot.go, recovery in recover.go.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/atomicfile"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
)

// Options configures a Log. Zero fields take the defaults stated.
type Options struct {
	// Dir holds the segments and snapshots; created if missing. Required.
	Dir string
	// Sync is the fsync policy. Default SyncAlways.
	Sync SyncPolicy
	// SyncEvery is the fsync period under SyncInterval. Default 1s.
	SyncEvery time.Duration
	// SegmentSize is the size at which a new segment starts. Default 64 MiB.
	SegmentSize int64
	// SlowSync is the fsync duration above which a warning is logged. Default 1s.
	SlowSync time.Duration
	// DiscardCorrupt makes recovery skip corrupt regions instead of failing.
	DiscardCorrupt bool
	// OnIdem, if set, is called during recovery for every idempotency key
	// in the snapshot and the replayed records, oldest first.
	OnIdem func(Idem)
	// OnSync, if set, is called with the duration of every fsync (for a
	// latency histogram). It runs on the writer goroutine: keep it quick.
	OnSync func(time.Duration)
	// Logger receives recovery reports and warnings. Default: discard.
	Logger *slog.Logger
	// Clock times fsyncs and drives SyncInterval. Default: the wall clock.
	Clock clock.Clock
}

// Recovery reports what Open found.
type Recovery struct {
	SnapshotLSN     uint64 // 0: no snapshot
	SnapshotEntries int
	Segments        int
	Records         int // replayed after the snapshot
	Entries         int // replayed after the snapshot
	TornBytes       int64
	// Discarded describes the corrupt regions skipped under DiscardCorrupt;
	// when non-empty the caller must take a new replica ID.
	Discarded []string
	Duration  time.Duration
}

// Stats are running totals.
type Stats struct {
	Records, Batches, Syncs uint64
	Bytes                   uint64
	LastSyncDuration        time.Duration
}

var (
	// ErrClosed is returned by Enqueue after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrInvalidEntry is returned by Enqueue for an entry that recovery would
	// not restore: a key that crdt.ValidKey refuses, or P and N both zero.
	ErrInvalidEntry = errors.New("wal: invalid entry")
)

type request struct {
	lsn     uint64
	entries []crdt.Entry
	idem    *Idem      // set by Enqueue
	done    chan error // nil for AppendAsync
}

// Log is an open write-ahead log. Its methods are safe for concurrent use.
type Log struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	queue    []request
	nextLSN  uint64
	failed   error
	closed   bool
	segments []uint64 // first LSNs of the segment files, ascending; last is active
	stats    Stats

	kick        chan struct{}
	stop        chan struct{}
	done        chan struct{}
	snapshotDue chan struct{}

	// Owned by the writer goroutine.
	f       *os.File
	size    int64
	dirty   bool
	buf     []byte
	closeMu sync.Mutex
}

// Open recovers the log in opts.Dir, merging every entry of the newest
// snapshot and of every later record into ks (without allocating for keys
// ks already holds), and returns a log ready for appends. An entry may be
// merged many times; merging is what makes that right.
func Open(opts Options, ks *crdt.Keyspace) (*Log, Recovery, error) {
	return open(opts, func(key []byte, r crdt.ReplicaID, p, n uint64) { ks.MergeKey(key, r, p, n) })
}

func open(opts Options, apply rawApply) (*Log, Recovery, error) {
	if opts.Dir == "" {
		return nil, Recovery{}, errors.New("wal: no directory")
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = time.Second
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.SlowSync <= 0 {
		opts.SlowSync = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, Recovery{}, fmt.Errorf("wal: %w", err)
	}
	l := &Log{
		opts: opts, log: opts.Logger,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		snapshotDue: make(chan struct{}, 1),
	}
	start := opts.Clock.Now()
	rec, last, err := l.recover(apply)
	if err != nil {
		return nil, rec, err
	}
	rec.Duration = opts.Clock.Now().Sub(start)
	l.nextLSN = last + 1
	if err := l.startSegment(l.nextLSN); err != nil {
		return nil, rec, err
	}
	go l.run()
	return l, rec, nil
}

// Enqueue queues one record of entries, and of idem if it is not nil, and
// returns at once; done yields its outcome once it is durable under the
// policy. The idempotency key and its answer go into the same record as the
// entries, so a crash keeps both or neither. If any entry is invalid it
// queues nothing and returns an error wrapping ErrInvalidEntry.
//
// Records are written in the order they are enqueued, so a caller that
// enqueues while holding its own lock gets records in its own order — and
// a later record never reaches the disk before an earlier one.
func (l *Log) Enqueue(entries []crdt.Entry, idem *Idem) (done <-chan error, err error) {
	for _, e := range entries {
		if err := checkEntry(e); err != nil {
			return nil, err
		}
	}
	if idem != nil && (len(idem.Key) == 0 || len(idem.Key) > MaxIdemKey) {
		return nil, fmt.Errorf("%w: idempotency key of %d bytes", ErrInvalidEntry, len(idem.Key))
	}
	ch := make(chan error, 1)
	if err := l.enqueue(entries, idem, ch); err != nil {
		return nil, err
	}
	return ch, nil
}

// AppendAsync logs entries without waiting; a failure shows in Err and in
// every later Enqueue. Invalid entries (see ErrInvalidEntry) are dropped, and
// logged as an error: a caller should never pass them.
func (l *Log) AppendAsync(entries []crdt.Entry) {
	l.enqueue(l.validOnly(entries), nil, nil)
}

// checkEntry returns an error wrapping ErrInvalidEntry for an entry that
// recovery would refuse or ignore, so that whatever Enqueue accepts reads back.
func checkEntry(e crdt.Entry) error {
	if err := crdt.ValidKey(e.Key); err != nil {
		return fmt.Errorf("%w: key %.40q of %d bytes: %w", ErrInvalidEntry, e.Key, len(e.Key), err)
	}
	if e.P == 0 && e.N == 0 {
		return fmt.Errorf("%w: key %.40q, replica %v: P and N are both zero", ErrInvalidEntry, e.Key, e.Replica)
	}
	return nil
}

// validOnly returns entries without the invalid ones, copying only if there
// are any.
func (l *Log) validOnly(entries []crdt.Entry) []crdt.Entry {
	for i := range entries {
		if checkEntry(entries[i]) == nil {
			continue
		}
		kept := slices.Clone(entries[:i])
		var first error
		for _, e := range entries[i:] {
			if err := checkEntry(e); err == nil {
				kept = append(kept, e)
			} else if first == nil {
				first = err
			}
		}
		l.log.Error("not logging invalid entries", "dropped", len(entries)-len(kept), "err", first)
		return kept
	}
	return entries
}

func (l *Log) enqueue(entries []crdt.Entry, idem *Idem, done chan error) error {
	if len(entries) == 0 {
		if done != nil {
			done <- nil
		}
		return nil
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.failed != nil:
		err := l.failed
		l.mu.Unlock()
		return err
	}
	// Split big batches so every record stays well under MaxRecord; only
	// the last part carries done, and the writer handles them in order.
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && (n == 0 || size+entrySize(entries[n]) <= maxRecordBytes) {
			size += entrySize(entries[n])
			n++
		}
		r := request{lsn: l.nextLSN, entries: entries[:n]}
		if n == len(entries) {
			r.done, r.idem = done, idem
		}
		l.nextLSN++
		l.queue = append(l.queue, r)
		entries = entries[n:]
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

// LastLSN returns the LSN of the most recently queued record.
func (l *Log) LastLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextLSN - 1
}

// Err returns the sticky error that stopped the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Stats returns running totals.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// SnapshotDue is signalled when a segment fills up, so the owner can write a
// snapshot that lets the full segments go.
func (l *Log) SnapshotDue() <-chan struct{} { return l.snapshotDue }

// WriteSnapshot durably stores entries (and the live idempotency keys) as
// the state covering every record up to lsn, then deletes the snapshots and segments it makes redundant.
func (l *Log) WriteSnapshot(lsn uint64, entries []crdt.Entry, idems ...Idem) error {
	name := filepath.Join(l.opts.Dir, fmt.Sprintf("%016x.snap", lsn))
	if err := writeSnapshot(name, lsn, entries, idems); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(l.opts.Dir); err != nil {
		return err
	}
	snaps, err := l.list(".snap")
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.lsn < lsn {
			os.Remove(s.name)
		}
	}
	// A segment may go when the next one starts at or before lsn+1: all of
	// its records are ≤ lsn. The active (last) segment always stays.
	l.mu.Lock()
	var drop []uint64
	keep := l.segments[:0]
	for i, s := range l.segments {
		if i+1 < len(l.segments) && l.segments[i+1] <= lsn+1 {
			drop = append(drop, s)
		} else {
			keep = append(keep, s)
		}
	}
	l.segments = keep
	l.mu.Unlock()
	for _, s := range drop {
		os.Remove(segmentName(l.opts.Dir, s))
	}
	return nil
}

// Close writes what is queued, syncs, and closes the log. It is idempotent.
func (l *Log) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	err := l.Err()
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: %w", cerr)
	}
	return err
}
