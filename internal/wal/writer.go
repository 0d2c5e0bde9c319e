package wal

// The writer: one goroutine per Log drains the queue into group commits,
// applies the fsync policy and starts a new segment when the active one is
// full; Wait drains it on its caller's goroutine when that is alone. Whoever
// touches the active segment's file holds io.

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/dcounter/dcounter/internal/atomicfile"
)

// SyncPolicy says when appended records are forced to stable storage.
type SyncPolicy int

const (
	// SyncAlways fsyncs every batch before its records complete (the default).
	SyncAlways SyncPolicy = iota
	// SyncInterval returns once the batch is written to the OS and fsyncs
	// every Options.SyncEvery: a machine crash can lose that much.
	SyncInterval
	// SyncNone never fsyncs except at snapshots and Close.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return "SyncPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseSyncPolicy parses "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("wal: fsync policy %q: want always, interval or none", s)
}

// syncCut forces a cut segment to stable storage; tests replace it.
var syncCut = (*os.File).Sync

// startSegment closes the active segment (synced) and starts a new one
// whose first record will carry lsn. Caller holds io (or is Open).
func (l *Log) startSegment(lsn uint64) error {
	if l.f != nil {
		if err := l.trim(); err != nil {
			return fmt.Errorf("wal: closing the full segment: %w", err)
		}
		l.f.Close()
		l.f = nil
	}
	name := segmentName(l.opts.Dir, lsn)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	hdr := binary.LittleEndian.AppendUint64([]byte(segMagic), lsn)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	if err := fdatasync(f); err != nil {
		f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	if err := atomicfile.SyncDir(l.opts.Dir); err != nil {
		f.Close()
		return err
	}
	l.f, l.size, l.alloc, l.dirty = f, segHeader, segHeader, false
	l.mu.Lock()
	if n := len(l.segments); n == 0 || l.segments[n-1] != lsn {
		l.segments = append(l.segments, lsn)
	}
	l.mu.Unlock()
	return nil
}

// zeros is what preallocate writes.
var zeros [64 << 10]byte

// preallocate makes sure the active segment has room for n more bytes of
// records without growing: if it has not, it writes zeros up to
// Options.Prealloc past them, but not past the segment's size unless the
// records themselves go past it. A failure (a full disk) is logged and
// leaves the records to grow the file as far as the zeros fall short: the
// records' own write decides whether the log fails. The zeros are
// written, not fallocate(2)d: on ext4 and XFS an allocated but unwritten
// extent is converted on its first write, and that is the metadata change
// preallocating avoids. The batch's fdatasync makes the zeros and the new
// size durable with the records, so the inode is written once per
// Prealloc bytes instead of at every fsync. Recovery reads a segment's
// zeros after its last record as its unused end. Caller holds io.
func (l *Log) preallocate(n int64) {
	end := l.size + n
	if l.opts.Prealloc < 0 || end <= l.alloc {
		return
	}
	target := min(end+l.opts.Prealloc, max(end, l.opts.SegmentSize))
	for l.alloc < target {
		z := zeros[:min(int64(len(zeros)), target-l.alloc)]
		w, err := l.f.WriteAt(z, l.alloc)
		l.alloc += int64(w)
		if err != nil {
			l.log.Warn("cannot preallocate the log; appending without", "file", l.f.Name(), "err", err)
			return
		}
	}
}

// trim cuts the active segment's preallocated zeros and syncs it, so that
// a closed segment ends with its last record. Caller holds io.
func (l *Log) trim() error {
	if l.alloc > l.size {
		if err := l.f.Truncate(l.size); err != nil {
			return fmt.Errorf("cutting the preallocated end: %w", err)
		}
		l.alloc = l.size
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

func (l *Log) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Sync == SyncInterval {
		t := l.opts.Clock.NewTicker(l.opts.SyncEvery)
		defer t.Stop()
		tick = t.C()
	}
	for {
		select {
		case <-l.kick:
			// While writes share batches, let writers that are about to
			// enqueue run first: on a busy node with few cores this turns
			// a trickle of one-record batches into one batch per fsync.
			// Otherwise (lone writes, peers' records after AsyncDelay)
			// the yield would wake a thread to find nobody.
			if _, shared := l.alone(); shared {
				runtime.Gosched()
			}
			l.io.Lock()
			l.drain(false)
			l.io.Unlock()
		case <-tick:
			l.io.Lock()
			if l.dirty {
				l.sync()
			}
			l.io.Unlock()
		case r := <-l.rotate:
			l.io.Lock()
			if l.Err() == nil && l.written != 0 && l.written <= r.lsn && l.size >= rotateMin {
				if err := l.startSegment(l.written + 1); err != nil {
					l.fail(err)
				}
			}
			l.io.Unlock()
			close(r.done)
		case <-l.stop:
			l.io.Lock()
			l.drain(false)
			if l.dirty {
				l.sync()
			}
			l.io.Unlock()
			return
		}
	}
}

// Wait returns the outcome of the records EnqueueGroup queued with done.
// When they are the only ones anybody waits for and no batch is being
// written, it writes the queue itself, on the caller's goroutine: a write
// with nobody to share its fsync with then costs no hand-off to the writer
// goroutine and back, each a thread wake-up. Otherwise it wakes the
// writer, which gathers every waiting group into one batch, and waits.
func (l *Log) Wait(done <-chan error) error {
	select {
	case err := <-done:
		return err
	default:
	}
	// As the writer does: when writes have lately shared batches, let
	// writers about to enqueue run first, so that a busy node's writes
	// keep sharing a batch instead of each writing its own. A node whose
	// writes come one at a time skips that: the yield finds nobody to
	// wait for and costs a thread wake-up per write. Should writers turn
	// concurrent, those that find this batch being written wake the
	// writer, which gathers them into one, and the next Wait yields again.
	alone, shared := l.alone()
	if shared {
		runtime.Gosched()
		alone, _ = l.alone()
	}
	// Whoever queued records while this batch is written finds io held and
	// wakes the writer itself, and records from peers have their own
	// wake-up (kickLater): nothing more to wake after a direct batch.
	if alone && l.io.TryLock() {
		l.drainDirect()
	} else {
		l.wake()
	}
	return <-done
}

// drainDirect is drain on a caller's goroutine, which holds io. A panic
// there is a bug that leaves the batch's writers waiting: it must stop the
// process, as it would on the writer goroutine, but the request servers
// recover panics, so it is raised again on a goroutine of its own once the
// log is failed (no later write is acknowledged).
func (l *Log) drainDirect() {
	defer l.io.Unlock()
	defer func() {
		if r := recover(); r != nil {
			l.fail(fmt.Errorf("wal: panic writing a batch: %v", r))
			go func() { panic(r) }()
		}
	}()
	l.drain(true)
}

// alone reports whether at most one queued group has a writer waiting
// for it: the caller's own (AppendAsync records wait for nobody). Should
// the caller's have been written meanwhile, the one may be another's,
// which the caller then writes for it. shared is whether the last batch
// written held more than one waiting group.
func (l *Log) alone() (alone, shared bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting <= 1, l.shared
}

// drain writes every queued request as one batch; direct says Wait called
// it (Stats.Direct). Caller holds io.
func (l *Log) drain(direct bool) {
	l.mu.Lock()
	batch := l.queue
	l.queue, l.spare = l.spare[:0], nil
	if len(batch) > 0 {
		l.shared = l.waiting > 1
	}
	l.waiting = 0
	failed := l.failed
	l.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	// The batch's slice becomes the next queue once written: a steady
	// stream of groups allocates no queue.
	defer func() {
		clear(batch) // drop the contents: they are the callers'
		if cap(batch) <= 4096 {
			l.mu.Lock()
			l.spare = batch[:0]
			l.mu.Unlock()
		}
	}()
	if failed != nil {
		finish(batch, failed)
		return
	}
	if l.size > segHeader && l.size >= l.opts.SegmentSize {
		if err := l.startSegment(batch[0].lsn); err != nil {
			l.fail(err)
			finish(batch, err)
			return
		}
		select {
		case l.snapshotDue <- struct{}{}:
		default:
		}
	}
	l.buf = l.buf[:0]
	for _, r := range batch {
		l.buf = appendRecord(l.buf, r.lsn, r.c, r.idem)
	}
	l.preallocate(int64(len(l.buf)))
	if _, err := l.f.Write(l.buf); err != nil {
		err = fmt.Errorf("wal: write: %w", err)
		l.fail(err)
		finish(batch, err)
		return
	}
	l.size += int64(len(l.buf))
	l.written = batch[len(batch)-1].lsn
	l.dirty = true
	l.mu.Lock()
	l.stats.Records += uint64(len(batch))
	l.stats.Batches++
	if direct {
		l.stats.Direct++
	}
	l.stats.Bytes += uint64(len(l.buf))
	l.mu.Unlock()
	var err error
	if l.opts.Sync == SyncAlways {
		err = l.sync()
	}
	finish(batch, err)
	if cap(l.buf) > 4<<20 {
		l.buf = nil // don't pin a buffer sized for one huge repair
	}
}

func (l *Log) sync() error {
	start := l.opts.Clock.Now()
	err := fdatasync(l.f)
	took := l.opts.Clock.Now().Sub(start)
	if err != nil {
		err = fmt.Errorf("wal: fsync: %w", err)
		l.fail(err)
		return err
	}
	l.dirty = false
	if l.opts.OnSync != nil {
		l.opts.OnSync(took)
	}
	l.mu.Lock()
	l.stats.Syncs++
	l.stats.LastSyncDuration = took
	l.mu.Unlock()
	if took >= l.opts.SlowSync {
		l.log.Warn("slow fsync", "took", took, "file", l.f.Name())
	}
	return nil
}

func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
		l.log.Error("write-ahead log failed; refusing further writes", "err", err)
	}
	l.mu.Unlock()
}

func finish(batch []request, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
}
