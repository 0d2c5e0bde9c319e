package wal

// The API: Open, the Log and its Options, queueing records, snapshots and
// Close. The writer goroutine and Wait are in writer.go, the format in
// format.go and snapshot.go, recovery in recover.go.

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
	// Prealloc is how far ahead of its last record the active segment is
	// kept filled with zeros, so that an fdatasync(2) of appended records
	// finds the file's size unchanged and need not write its inode.
	// Default 1 MiB; negative: none (every append grows the file).
	Prealloc int64
	// SlowSync is the fsync duration above which a warning is logged. Default 1s.
	SlowSync time.Duration
	// DiscardCorrupt makes recovery skip corrupt regions instead of failing.
	DiscardCorrupt bool
	// OnIdem, if set, is called during recovery for every idempotency key
	// in the snapshot and the replayed records, oldest first.
	OnIdem func(Idem)
	// OnSync, if set, is called with the duration of every fsync (for a
	// latency histogram). It runs on whichever goroutine writes the batch
	// (the writer, or a Wait): keep it quick.
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
	SnapshotMetas   int
	Segments        int
	Records         int // replayed after the snapshot
	Entries         int // replayed after the snapshot
	Metas           int // replayed after the snapshot
	TornBytes       int64
	// Discarded describes the corrupt regions skipped under DiscardCorrupt;
	// when non-empty the caller must take a new replica ID.
	Discarded []string
	Duration  time.Duration
}

// Stats are running totals.
type Stats struct {
	Records, Batches, Syncs uint64
	// Direct counts the batches that Wait wrote on its caller's
	// goroutine, with nobody else waiting (of Batches).
	Direct           uint64
	Bytes            uint64
	LastSyncDuration time.Duration
}

var (
	// ErrClosed is returned by Enqueue after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrInvalidEntry is returned by Enqueue for an entry or a meta that
	// recovery would not restore: a key that crdt.ValidKey refuses, an
	// entry with P and N both zero, or a meta with a zero life.
	ErrInvalidEntry = errors.New("wal: invalid entry")
)

type request struct {
	lsn  uint64
	c    crdt.Contents
	idem *Idem      // set by Enqueue
	done chan error // nil for AppendAsync
}

// Log is an open write-ahead log. Its methods are safe for concurrent use.
type Log struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	queue    []request
	waiting  int       // groups in queue whose writers wait (a done channel)
	shared   bool      // the last batch held several waiting groups: Wait yields first
	spare    []request // the last written batch's slice, for the next queue
	nextLSN  uint64
	failed   error
	closed   bool
	segments []uint64 // first LSNs of the segment files, ascending; last is active
	stats    Stats
	asyncDue bool // a wake-up for AppendAsync records is armed (kickLater)

	kick        chan struct{}
	stop        chan struct{}
	done        chan struct{}
	snapshotDue chan struct{}
	rotate      chan rotateRequest

	// io is held by whoever writes the file: the writer goroutine, or a
	// caller of Wait writing the queue itself. It guards the fields below.
	io      sync.Mutex
	f       *os.File
	size    int64 // where the next record goes: the end of the last one
	alloc   int64 // the file's size: records, then zeros up to alloc
	dirty   bool
	buf     []byte
	written uint64 // LSN of the last record written to f (0: none)
	closeMu sync.Mutex
}

// Open recovers the log in opts.Dir, merging every entry (ks.MergeKey)
// and every meta (ks.MergeMeta) of the newest snapshot and of every later
// record into ks, and returns a log ready for appends. Entries of keys ks
// already holds cost no allocation; a meta costs one string for its key.
// Anything may be merged many times and in any order; merging is what
// makes that right: a tombstone drops the older generations' entries
// whether it is read before or after them.
//
// Open reads format versions 1 and 2 and writes only version 2. It fails
// with an error wrapping ErrNewerFormat, even under DiscardCorrupt, for a
// file of a newer version.
func Open(opts Options, ks *crdt.Keyspace) (*Log, Recovery, error) {
	return open(opts, rawApply{
		entry: func(key []byte, r crdt.ReplicaID, gen, p, n uint64) { ks.MergeKey(key, r, gen, p, n) },
		meta:  func(key []byte, l crdt.Life) { ks.MergeMeta(crdt.Meta{Key: string(key), Life: l}) },
	})
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
	if opts.Prealloc == 0 {
		opts.Prealloc = 1 << 20
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
		snapshotDue: make(chan struct{}, 1), rotate: make(chan rotateRequest),
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

// Enqueue queues one record holding c — the entries and metas of one
// change, such as a write with a TTL (an entry and a meta) or a delete (a
// meta) — and idem if it is not nil, and returns at once; Wait(done)
// returns its outcome once it is durable under the policy. Nothing wakes
// the writer until someone Waits. The idempotency key and its answer go
// into the same record as the change, so a crash keeps both or neither.
// If anything in c is invalid it queues nothing and returns an error
// wrapping ErrInvalidEntry. An empty c queues nothing, idem included.
//
// Records are written in the order they are enqueued, so a caller that
// enqueues while holding its own lock gets records in its own order — and
// a later record never reaches the disk before an earlier one.
func (l *Log) Enqueue(c crdt.Contents, idem *Idem) (done <-chan error, err error) {
	ch := make(chan error, 1)
	if err := l.EnqueueGroup([]Part{{C: c, Idem: idem}}, ch); err != nil {
		return nil, err
	}
	return ch, nil
}

// Part is one record of a group (EnqueueGroup): contents and the
// idempotency key logged with them, if any.
type Part struct {
	C    crdt.Contents
	Idem *Idem
}

// EnqueueGroup queues one record per part, in order and with nothing
// between them, and sends on done (which must have room for one value)
// once the last is durable per the sync policy, or failed: records are
// written in order and a failure fails every later record, so the one
// signal covers them all. The caller then calls Wait(done), which writes
// the records if nobody else is writing: until someone Waits, queued
// records wait too. So a caller that queues under a lock of its own (to
// keep its order) Waits after releasing it. It refuses the whole group,
// queueing nothing, if any part holds an invalid entry or meta
// (ErrInvalidEntry) or the log is closed or failed. Parts with empty
// contents are skipped.
func (l *Log) EnqueueGroup(parts []Part, done chan error) error {
	for _, p := range parts {
		for _, e := range p.C.Entries {
			if err := checkEntry(e); err != nil {
				return err
			}
		}
		for _, m := range p.C.Metas {
			if err := checkMeta(m); err != nil {
				return err
			}
		}
		if p.Idem != nil && (len(p.Idem.Key) == 0 || len(p.Idem.Key) > MaxIdemKey) {
			return fmt.Errorf("%w: idempotency key of %d bytes", ErrInvalidEntry, len(p.Idem.Key))
		}
	}
	return l.enqueue(parts, done, false)
}

// AppendAsync logs c (changes learned from peers) without waiting; a
// failure shows in Err and in every later Enqueue. Invalid entries and
// metas (see ErrInvalidEntry) are dropped, and logged as an error: a
// caller should never pass them.
//
// The record does not wake the writer: it goes out with the next batch
// written for a Wait (in LSN order, under that batch's fsync), or at the
// latest AsyncDelay after it was queued. So logging what peers send costs
// no write or fsync of its own on a node taking writes, and at most one
// per AsyncDelay on one that is not. A process killed within AsyncDelay
// may lose such records; their owners hold them durably, and anti-entropy
// brings them back.
func (l *Log) AppendAsync(c crdt.Contents) {
	l.enqueue([]Part{{C: l.validOnly(c)}}, nil, true)
}

// AsyncDelay bounds how long an AppendAsync record waits in memory for a
// batch of Enqueued records to ride along with.
const AsyncDelay = 50 * time.Millisecond

// kickLater wakes the writer AsyncDelay from now, unless a wake-up is
// already due. Caller holds mu.
func (l *Log) kickLater() {
	if l.asyncDue {
		return
	}
	l.asyncDue = true
	l.opts.Clock.AfterFunc(AsyncDelay, func() {
		l.mu.Lock()
		l.asyncDue = false
		l.mu.Unlock()
		l.wake()
	})
}

// wake tells the writer there is a batch to write.
func (l *Log) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
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

// checkMeta is checkEntry for a meta: recovery refuses a zero life (never
// logged: entries imply it) as corrupt.
func checkMeta(m crdt.Meta) error {
	if err := crdt.ValidKey(m.Key); err != nil {
		return fmt.Errorf("%w: meta key %.40q of %d bytes: %w", ErrInvalidEntry, m.Key, len(m.Key), err)
	}
	if m.IsZero() {
		return fmt.Errorf("%w: meta of key %.40q has a zero life", ErrInvalidEntry, m.Key)
	}
	return nil
}

// validOnly returns c without its invalid entries and metas, copying only
// if there are any, and logs what it drops.
func (l *Log) validOnly(c crdt.Contents) crdt.Contents {
	entries, dropped, first := keepValid(c.Entries, checkEntry)
	metas, droppedMetas, firstMeta := keepValid(c.Metas, checkMeta)
	if dropped+droppedMetas > 0 {
		if first == nil {
			first = firstMeta
		}
		l.log.Error("not logging invalid entries", "dropped", dropped, "dropped_metas", droppedMetas, "err", first)
	}
	return crdt.Contents{Entries: entries, Metas: metas}
}

// keepValid returns the items that check accepts, copying only if it
// refuses any, how many it refused, and the first refusal.
func keepValid[T any](items []T, check func(T) error) (kept []T, dropped int, first error) {
	for i := range items {
		if check(items[i]) == nil {
			continue
		}
		kept = slices.Clone(items[:i])
		for _, it := range items[i:] {
			if err := check(it); err == nil {
				kept = append(kept, it)
			} else if first == nil {
				first = err
			}
		}
		return kept, len(items) - len(kept), first
	}
	return items, 0, nil
}

func (l *Log) enqueue(parts []Part, done chan error, async bool) error {
	last := -1
	for i, p := range parts {
		if p.C.Len() > 0 {
			last = i
		}
	}
	if last < 0 {
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
	for i, p := range parts[:last+1] {
		// Split big contents so every record stays well under MaxRecord;
		// only the last record of a part carries its idem, and only the
		// group's last record done. A change of a few items always fits
		// one record.
		c := p.C
		for c.Len() > 0 {
			ne, nm, size := 0, 0, 0
			for ne < len(c.Entries) && (ne == 0 || size+entrySize(c.Entries[ne]) <= maxRecordBytes) {
				size += entrySize(c.Entries[ne])
				ne++
			}
			for nm < len(c.Metas) && (ne+nm == 0 || size+metaSize(c.Metas[nm]) <= maxRecordBytes) {
				size += metaSize(c.Metas[nm])
				nm++
			}
			r := request{lsn: l.nextLSN, c: crdt.Contents{Entries: c.Entries[:ne:ne], Metas: c.Metas[:nm:nm]}}
			c.Entries, c.Metas = c.Entries[ne:], c.Metas[nm:]
			if c.Len() == 0 {
				r.idem = p.Idem
				if i == last {
					r.done = done
					if done != nil {
						l.waiting++
					}
				}
			}
			l.nextLSN++
			l.queue = append(l.queue, r)
		}
	}
	if async {
		l.kickLater()
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
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

// WriteSnapshot durably stores c (and the live idempotency keys) as the
// state covering every record up to lsn, then deletes the snapshots and
// segments it makes redundant. Invalid entries and metas (see
// ErrInvalidEntry; a keyspace never holds them) are left out and logged
// as an error, so that the snapshot always reads back.
func (l *Log) WriteSnapshot(lsn uint64, c crdt.Contents, idems ...Idem) error {
	name := filepath.Join(l.opts.Dir, fmt.Sprintf("%016x.snap", lsn))
	if err := writeSnapshot(name, lsn, l.validOnly(c), idems); err != nil {
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
	// its records are ≤ lsn. The active (last) segment always stays, so a
	// large one that the snapshot covers entirely is closed first (a node
	// that stopped writing after a churn would otherwise keep it forever).
	l.rotateCovered(lsn)
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

// rotateMin is the size from which an active segment that a snapshot
// covers entirely is closed so that it can be deleted.
const rotateMin = 1 << 20

type rotateRequest struct {
	lsn  uint64
	done chan struct{}
}

// rotateCovered asks the writer to start a new segment if every record of
// the active one is ≤ lsn and it holds at least rotateMin bytes. A failure
// to rotate fails the log, as any failure to start a segment does.
func (l *Log) rotateCovered(lsn uint64) {
	r := rotateRequest{lsn: lsn, done: make(chan struct{})}
	select {
	case l.rotate <- r:
		<-r.done
	case <-l.done:
	}
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
	l.io.Lock() // a Wait that found the queue empty may still hold it
	defer l.io.Unlock()
	if err == nil && l.alloc > l.size {
		if terr := l.trim(); terr != nil {
			err = fmt.Errorf("wal: %w", terr)
		}
	}
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: %w", cerr)
	}
	return err
}
