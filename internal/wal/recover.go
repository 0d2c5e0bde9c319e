package wal

// Recovery: reading the snapshot and segments back at Open, cutting a torn
// tail and telling it from corruption.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

type file struct {
	lsn  uint64
	name string
}

func (l *Log) list(ext string) ([]file, error) {
	des, err := os.ReadDir(l.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var out []file
	for _, de := range des {
		name := de.Name()
		base, ok := strings.CutSuffix(name, ext)
		if !ok || len(base) != 16 {
			continue
		}
		lsn, err := strconv.ParseUint(base, 16, 64)
		if err != nil {
			continue
		}
		out = append(out, file{lsn: lsn, name: filepath.Join(l.opts.Dir, name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lsn < out[j].lsn })
	return out, nil
}

func (l *Log) corrupt(rec *Recovery, what string) error {
	if l.opts.DiscardCorrupt {
		rec.Discarded = append(rec.Discarded, what)
		l.log.Error("discarding corrupt log data", "what", what)
		return nil
	}
	return fmt.Errorf("%w: %s; refusing to start (run with --discard-corrupt to skip it and start as a new replica)", ErrCorrupt, what)
}

// recover loads the newest readable snapshot and replays later records. It
// returns the last LSN in the log.
func (l *Log) recover(apply rawApply) (Recovery, uint64, error) {
	var rec Recovery
	snaps, err := l.list(".snap")
	if err != nil {
		return rec, 0, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		n, m, err := readSnapshot(snaps[i].name, snaps[i].lsn, apply, l.opts.OnIdem)
		if err == nil {
			rec.SnapshotLSN, rec.SnapshotEntries, rec.SnapshotMetas = snaps[i].lsn, n, m
			break
		}
		if errors.Is(err, ErrNewerFormat) {
			return rec, 0, fmt.Errorf("snapshot %s: %w", snaps[i].name, err)
		}
		if cerr := l.corrupt(&rec, fmt.Sprintf("snapshot %s: %v", snaps[i].name, err)); cerr != nil {
			return rec, 0, cerr
		}
	}
	segs, err := l.list(".wal")
	if err != nil {
		return rec, 0, err
	}
	rec.Segments = len(segs)
	last := rec.SnapshotLSN
	expect := uint64(0) // LSN the next record must carry; 0 = not known yet
	next, stop := prefetch(segs)
	defer stop()
	for i, seg := range segs {
		data, err := next()
		if err != nil {
			return rec, 0, fmt.Errorf("wal: %w", err)
		}
		version, verr := fileVersion(data, segMagicPrefix)
		if errors.Is(verr, ErrNewerFormat) {
			return rec, 0, fmt.Errorf("segment %s: %w", seg.name, verr)
		}
		if verr != nil || len(data) < segHeader || binary.LittleEndian.Uint64(data[8:]) != seg.lsn {
			if i == len(segs)-1 && len(data) < segHeader {
				// Crashed while creating the segment: nothing in it was acknowledged.
				l.log.Warn("removing a segment cut short in its header", "file", seg.name, "bytes", len(data))
				os.Remove(seg.name)
				continue
			}
			if cerr := l.corrupt(&rec, fmt.Sprintf("segment %s: bad header", seg.name)); cerr != nil {
				return rec, 0, cerr
			}
			continue
		}
		// A gap is harmless when the snapshot covers every missing LSN: the
		// snapshot's LSN is the last one queued when it was taken, so records
		// up to it may never have been written, or their segment may be gone.
		if expect != 0 && seg.lsn != expect && (seg.lsn < expect || seg.lsn > rec.SnapshotLSN+1) {
			if cerr := l.corrupt(&rec, fmt.Sprintf("segment %s starts at LSN %d, want %d: records are missing", seg.name, seg.lsn, expect)); cerr != nil {
				return rec, 0, cerr
			}
		} else if expect == 0 && seg.lsn > rec.SnapshotLSN+1 {
			if cerr := l.corrupt(&rec, fmt.Sprintf("segment %s starts at LSN %d but the snapshot covers only up to %d: records are missing", seg.name, seg.lsn, rec.SnapshotLSN)); cerr != nil {
				return rec, 0, cerr
			}
		}
		expect = seg.lsn
		off := segHeader
		for off < len(data) {
			r, perr := parseRecord(data[off:])
			if perr == nil && r.lsn != expect {
				perr = fmt.Errorf("LSN %d, want %d", r.lsn, expect)
			}
			if perr == nil && r.lsn > rec.SnapshotLSN {
				var c contents
				var idem *Idem
				c, idem, perr = checkRecord(r, version)
				if perr == nil {
					c.apply(apply)
					rec.Records++
					rec.Entries += int(r.count)
					rec.Metas += c.nMetas
					if idem != nil && l.opts.OnIdem != nil {
						l.opts.OnIdem(*idem)
					}
				}
			}
			if perr == nil {
				off += r.size
				expect++
				last = max(last, r.lsn)
				continue
			}
			if allZero(data[off:]) {
				// The segment's preallocated end (Options.Prealloc): the
				// writer filled it with zeros before any record, and a zero
				// record length is never valid. The last segment is cut
				// here, as a closed one would have been.
				if i == len(segs)-1 {
					l.log.Info("cutting the unused, preallocated end of the log", "file", seg.name, "offset", off, "bytes", len(data)-off)
					if err := cutTail(seg.name, int64(off)); err != nil {
						return rec, 0, fmt.Errorf("wal: cutting the preallocated end: %w", err)
					}
				}
				break
			}
			next := resyncPoint(data, off, expect, version)
			if i == len(segs)-1 && (next < 0 || lostSector(data, off)) {
				// A torn tail. With a record after it that continues the
				// log, it is a batch torn by a crash in its fsync: the disk
				// kept a later sector of it and lost an earlier one, which
				// reads as the zeros preallocated there. Those records
				// belong to the same batch (the next one is written only
				// once this one is durable), so none was acknowledged.
				// Torn bytes end at the last one that is not zero: what
				// follows is preallocated space the batch never reached.
				msg := "cutting a torn record off the end of the log"
				if next >= 0 {
					msg = "cutting a batch torn by a lost sector off the end of the log"
				}
				torn := int64(len(bytes.TrimRight(data[off:], "\x00")))
				l.log.Warn(msg, "file", seg.name, "offset", off, "bytes", torn, "reason", perr)
				if err := cutTail(seg.name, int64(off)); err != nil {
					return rec, 0, fmt.Errorf("wal: cutting the torn tail: %w", err)
				}
				rec.TornBytes += torn
				break
			}
			what := fmt.Sprintf("record at %s offset %d: %v", seg.name, off, perr)
			if cerr := l.corrupt(&rec, what); cerr != nil {
				return rec, 0, cerr
			}
			if next < 0 {
				break
			}
			off = next
			if r, err := parseRecord(data[off:]); err == nil {
				expect = r.lsn
			}
		}
	}
	// Segments wholly covered by the snapshot may survive a crash during cleanup.
	l.segments = nil
	for i, seg := range segs {
		if i+1 < len(segs) && segs[i+1].lsn <= rec.SnapshotLSN+1 {
			os.Remove(seg.name)
			continue
		}
		if _, err := os.Stat(seg.name); err == nil {
			l.segments = append(l.segments, seg.lsn)
		}
	}
	if len(rec.Discarded) > 0 || rec.TornBytes > 0 || rec.Records > 0 || rec.SnapshotLSN > 0 {
		l.log.Info("recovered the log", "snapshot_lsn", rec.SnapshotLSN, "snapshot_entries", rec.SnapshotEntries,
			"snapshot_metas", rec.SnapshotMetas, "records_replayed", rec.Records, "entries_replayed", rec.Entries,
			"metas_replayed", rec.Metas, "torn_bytes", rec.TornBytes, "discarded", len(rec.Discarded))
	}
	return rec, last, nil
}

// cutTail truncates the segment name to size and syncs it before recovery
// goes on to start the next segment. Were a power loss to undo an unsynced
// cut after that, the torn bytes would be back in a segment that is no
// longer the last, where they read as corruption.
func cutTail(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := syncCut(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sectorSize is the unit in which a disk writes, and a crash loses, data.
const sectorSize = 512

// lostSector reports whether the bytes of a segment from a bad record at
// bad on show a sector write that a crash lost: zeros from bad, or from a
// sector's start after it, up to the end of that sector, followed by a
// sector that is not all zeros. Overwriting preallocated zeros, a batch's
// sectors may reach the disk in any order; one lost before a later one
// survives reads as zeros up to a sector boundary with the batch's later
// records after it. Damage to records that were acknowledged does not
// look like this unless it zeroes whole sectors.
func lostSector(data []byte, bad int) bool {
	for s := (bad/sectorSize + 1) * sectorSize; s < len(data); s += sectorSize {
		if allZero(data[max(bad, s-sectorSize):s]) && !allZero(data[s:min(s+sectorSize, len(data))]) {
			return true
		}
	}
	return false
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// prefetch reads the files one ahead of the caller, so that reading the
// next segment overlaps replaying this one. next returns the files' contents
// in order; stop ends the reader early.
func prefetch(files []file) (next func() ([]byte, error), stop func()) {
	type loaded struct {
		data []byte
		err  error
	}
	ch := make(chan loaded, 1)
	quit := make(chan struct{})
	go func() {
		defer close(ch)
		for _, f := range files {
			data, err := os.ReadFile(f.name)
			select {
			case ch <- loaded{data, err}:
			case <-quit:
				return
			}
		}
	}()
	next = func() ([]byte, error) {
		l, ok := <-ch
		if !ok {
			return nil, errors.New("prefetch: no more files")
		}
		return l.data, l.err
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			for range ch { // let the reader finish
			}
		})
	}
	return next, stop
}

// minRecord is the size of the smallest record parseRecord accepts: a
// header and a payload of an LSN and a one-byte entry count. It bounds how
// many records the damaged bytes before a candidate could have held, so it
// must not exceed the smallest record the log writes, in any version: one
// entry of a one-byte key (29 bytes in version 1, 30 in version 2), or in
// version 2 a meta alone (25 bytes: the count, the tag, the meta count and
// a 6-byte meta). It does not depend on the entry layout, so the version 2
// entry's generation and the meta section leave it unchanged; a tighter
// bound would only narrow a window whose worst case is already a refusal
// to start, never a silent cut.
const minRecord = recHeader + 9

// resyncPoint returns the offset of the first record after the bad one at
// bad that continues the log, or -1 if there is none. A candidate at offset
// c continues the log when it is a whole record of the segment's format
// version (length, checksum, entries, metas and idempotency key all
// decode) and its LSN could follow the last good record given the bytes in
// between: at least expect (the LSN the bad record should have carried;
// equal to it if the damage is bytes inserted rather than a record
// overwritten) and at most expect + (c-bad)/minRecord (no more records than
// fit in the damaged bytes).
//
// The LSN test is what keeps a client-chosen key from stopping recovery: a
// torn record's surviving prefix may hold, inside its key, bytes that parse
// as a record, but they pass only if their LSN falls in that narrow window,
// and even then the result is a refusal to start, never a silent cut. The
// test never rejects a record the log wrote after the damage, since every
// such record's LSN lies in the window; so a bad record followed by records
// the log wrote is always found to be corruption, whatever follows them.
//
// It is only used on the error path.
func resyncPoint(data []byte, bad int, expect uint64, version byte) int {
	for c := max(bad+1, segHeader); c+recHeader < len(data); c++ {
		r, err := parseRecord(data[c:])
		if err != nil || r.lsn < expect || r.lsn-expect > uint64(c-bad)/minRecord {
			continue
		}
		if _, _, err := checkRecord(r, version); err != nil {
			continue
		}
		return c
	}
	return -1
}
