package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/testutil"
)

// logRecorder is a slog.Handler that sends records to t.Log and keeps them
// for assertions.
type logRecorder struct {
	t     testing.TB
	mu    *sync.Mutex
	lines *[]string
}

func newLogger(t testing.TB) (*slog.Logger, *logRecorder) {
	r := &logRecorder{t: t, mu: new(sync.Mutex), lines: new([]string)}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	line := b.String()
	r.mu.Lock()
	*r.lines = append(*r.lines, line)
	r.mu.Unlock()
	r.t.Log(line)
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// has reports whether some line contains every one of subs.
func (r *logRecorder) has(subs ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, l := range *r.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return true
	}
	return false
}

// testOptions returns options for dir that log to t, with a fake clock that
// only moves when a test advances it.
func testOptions(t testing.TB, dir string) Options {
	lg, _ := newLogger(t)
	return Options{Dir: dir, Logger: lg, Clock: clock.NewFake(time.Unix(1, 0))}
}

// openApply is Open calling apply for every recovered entry instead of
// merging it into a keyspace, so that tests can see each entry; metas are
// ignored.
func openApply(opts Options, apply func(crdt.Entry)) (*Log, Recovery, error) {
	return openApplyAll(opts, apply, func(crdt.Meta) {})
}

// openApplyAll is openApply that also sees every recovered meta.
func openApplyAll(opts Options, entry func(crdt.Entry), meta func(crdt.Meta)) (*Log, Recovery, error) {
	return open(opts, rawApply{
		entry: func(key []byte, r crdt.ReplicaID, gen, p, n uint64) {
			entry(crdt.Entry{Key: string(key), Replica: r, Gen: gen, P: p, N: n})
		},
		meta: func(key []byte, l crdt.Life) { meta(crdt.Meta{Key: string(key), Life: l}) },
	})
}

// Append logs entries and returns once they are durable under the policy.
// If any entry is invalid it logs none of them and returns an error wrapping
// ErrInvalidEntry.
func (l *Log) Append(entries []crdt.Entry) error {
	return l.AppendKeyed(entries, nil)
}

// AppendKeyed is Append for a write that carries an idempotency key.
func (l *Log) AppendKeyed(entries []crdt.Entry, idem *Idem) error {
	return l.AppendContents(crdt.Contents{Entries: entries}, idem)
}

// AppendContents is Append for entries and metas.
func (l *Log) AppendContents(c crdt.Contents, idem *Idem) error {
	done, err := l.Enqueue(c, idem)
	if err != nil {
		return err
	}
	return l.Wait(done)
}

// ents wraps entries as contents.
func ents(es ...crdt.Entry) crdt.Contents { return crdt.Contents{Entries: es} }

// openLog opens the log described by opts, merging what it recovers into ks
// (which may be nil), and closes it when the test ends.
func openLog(t testing.TB, opts Options, ks *crdt.Keyspace) (*Log, Recovery) {
	t.Helper()
	entry, meta := func(crdt.Entry) {}, func(crdt.Meta) {}
	if ks != nil {
		entry = func(e crdt.Entry) { ks.Merge(e) }
		meta = func(m crdt.Meta) { ks.MergeMeta(m) }
	}
	l, rec, err := openApplyAll(opts, entry, meta)
	if err != nil {
		t.Fatalf("openApply(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l, rec
}

// recoverState opens and closes the log, returning what it recovered.
func recoverState(t testing.TB, opts Options) (*crdt.Keyspace, Recovery) {
	t.Helper()
	ks := crdt.New()
	l, rec := openLog(t, opts, ks)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return ks, rec
}

// recoverInto is recoverState through Open, the path production takes.
func recoverInto(t testing.TB, opts Options) (*crdt.Keyspace, Recovery) {
	t.Helper()
	ks := crdt.New()
	l, rec, err := Open(opts, ks)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return ks, rec
}

// slotKey names one item of a keyspace: an entry (key, replica), or with
// meta set a key's life.
type slotKey struct {
	key     string
	replica crdt.ReplicaID
	meta    bool
}

// slotValue is an entry's generation and totals, or a key's life.
type slotValue struct {
	Gen, P, N uint64
	Life      crdt.Life
}

// dump flattens ks for comparison: every entry and every non-zero life.
func dump(ks *crdt.Keyspace) map[slotKey]slotValue {
	m := make(map[slotKey]slotValue)
	ks.ForEach(func(e crdt.Entry) bool {
		m[slotKey{key: e.Key, replica: e.Replica}] = slotValue{Gen: e.Gen, P: e.P, N: e.N}
		return true
	})
	ks.ForEachMeta(func(x crdt.Meta) bool {
		m[slotKey{key: x.Key, meta: true}] = slotValue{Life: x.Life}
		return true
	})
	return m
}

// entriesOf lists ks's entries in a fixed order.
func entriesOf(ks *crdt.Keyspace) []crdt.Entry {
	var out []crdt.Entry
	ks.ForEach(func(e crdt.Entry) bool { out = append(out, e); return true })
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Replica < out[j].Replica
	})
	return out
}

// contentsOf is everything ks holds, in a fixed order.
func contentsOf(ks *crdt.Keyspace) crdt.Contents {
	c := crdt.Contents{Entries: entriesOf(ks)}
	ks.ForEachMeta(func(m crdt.Meta) bool { c.Metas = append(c.Metas, m); return true })
	sort.Slice(c.Metas, func(i, j int) bool { return c.Metas[i].Key < c.Metas[j].Key })
	return c
}

// sameState fails t unless got and want hold the same entries and lives.
func sameState(t testing.TB, got, want *crdt.Keyspace) {
	t.Helper()
	g, w := dump(got), dump(want)
	if reflect.DeepEqual(g, w) {
		return
	}
	n := 0
	for k, wv := range w {
		if gv, ok := g[k]; !ok || gv != wv {
			if n < 10 {
				t.Errorf("%+v: got %+v (present %v), want %+v", k, gv, ok, wv)
			}
			n++
		}
	}
	for k, gv := range g {
		if _, ok := w[k]; !ok {
			if n < 10 {
				t.Errorf("%+v: got %+v, want absent", k, gv)
			}
			n++
		}
	}
	t.Fatalf("recovered state differs from the expected one in %d items (got %d, want %d)", n, len(g), len(w))
}

// keyspaceOf merges every entry of every batch.
func keyspaceOf(batches ...[]crdt.Entry) *crdt.Keyspace {
	ks := crdt.New()
	for _, b := range batches {
		for _, e := range b {
			ks.Merge(e)
		}
	}
	return ks
}

// keyspaceOfContents merges everything in cs.
func keyspaceOfContents(cs ...crdt.Contents) *crdt.Keyspace {
	ks := crdt.New()
	for _, c := range cs {
		for _, m := range c.Metas {
			ks.MergeMeta(m)
		}
		for _, e := range c.Entries {
			ks.Merge(e)
		}
	}
	return ks
}

// seqEntry is the i-th entry of a simple sequential workload: every record
// raises its own key, so a missing record shows as a missing key.
func seqEntry(i int) crdt.Entry {
	return crdt.Entry{Key: fmt.Sprintf("seq-%05d", i), Replica: crdt.ReplicaID(i%3 + 1), P: uint64(i) + 1, N: uint64(i % 7)}
}

// appendSeq appends records seqEntry(from) ... seqEntry(to-1), one per Append.
func appendSeq(t testing.TB, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := l.Append([]crdt.Entry{seqEntry(i)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

// appendBehindBatch appends seqEntry(from) ... seqEntry(to-1), each by a
// goroutine of its own, while a batch is being written (io held), so that
// they all queue up, then lets the batch end and returns once every one
// is written.
func appendBehindBatch(t testing.TB, l *Log, from, to int) {
	t.Helper()
	l.io.Lock() // a batch in progress
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Append([]crdt.Entry{seqEntry(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, fmt.Sprintf("%d writes queued", to-from), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.waiting == to-from
	})
	l.io.Unlock()
	wg.Wait()
}

// twoSegments writes seqEntry(0) ... seqEntry(4) to segment 1 and
// seqEntry(5) ... seqEntry(to-1) to segment 6, each by a Log of its own,
// both closed.
func twoSegments(t testing.TB, opts Options, to int) {
	t.Helper()
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 5)
	l.Close()
	l, _ = openLog(t, opts, nil) // starts segment 6
	appendSeq(t, l, 5, to)
	l.Close()
}

// seqState is the state after seqEntry(i) for every i in is.
func seqState(is ...int) *crdt.Keyspace {
	ks := crdt.New()
	for _, i := range is {
		ks.Merge(seqEntry(i))
	}
	return ks
}

// span returns from, from+1, ..., to-1.
func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// files lists the segment and snapshot names in dir.
func files(t testing.TB, dir string) (segs, snaps []string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		switch filepath.Ext(de.Name()) {
		case ".wal":
			segs = append(segs, de.Name())
		case ".snap":
			snaps = append(snaps, de.Name())
		}
	}
	return segs, snaps
}

// tornBytes is what recovery reports as torn for bytes b cut off the end
// of a segment: up to the last one that is not zero, since zeros after it
// may be preallocated space the record never reached.
func tornBytes(b []byte) int64 { return int64(len(bytes.TrimRight(b, "\x00"))) }

func segFile(lsn uint64) string  { return fmt.Sprintf("%016x.wal", lsn) }
func snapFile(lsn uint64) string { return fmt.Sprintf("%016x.snap", lsn) }

// recordOffsets returns the offset of every record in a segment file's bytes,
// followed by the offset where the last one ends.
func recordOffsets(t testing.TB, data []byte) []int {
	t.Helper()
	offs := []int{segHeader}
	for off := segHeader; off < len(data); {
		r, err := parseRecord(data[off:])
		if err != nil {
			t.Fatalf("record at %d: %v", off, err)
		}
		off += r.size
		offs = append(offs, off)
	}
	return offs
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, name string) int64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// waitFor polls until cond holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// wantCorrupt fails t unless err is ErrCorrupt and names every one of subs.
func wantCorrupt(t testing.TB, err error, subs ...string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: got %v, want ErrCorrupt", err)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// wantDiscarded fails t unless some Recovery.Discarded line names every one of subs.
func wantDiscarded(t testing.TB, rec Recovery, subs ...string) {
	t.Helper()
next:
	for _, d := range rec.Discarded {
		for _, s := range subs {
			if !strings.Contains(d, s) {
				continue next
			}
		}
		return
	}
	t.Fatalf("Recovery.Discarded = %q, want a line mentioning %q", rec.Discarded, subs)
}

// Version 1 encoders: the current code only reads version 1, so tests
// build such files with these.

// appendEntryV1 encodes e without its generation.
func appendEntryV1(b []byte, e crdt.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Replica))
	b = binary.AppendUvarint(b, e.P)
	return binary.AppendUvarint(b, e.N)
}

// appendRecordV1 encodes a version 1 record, with idem under tag if not nil.
func appendRecordV1(b []byte, lsn uint64, entries []crdt.Entry, idem *Idem, tag byte) []byte {
	payload := binary.LittleEndian.AppendUint64(nil, lsn)
	payload = binary.AppendUvarint(payload, uint64(len(entries)))
	for _, e := range entries {
		payload = appendEntryV1(payload, e)
	}
	if idem != nil {
		payload = appendIdem(append(payload, tag), *idem)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// segmentV1 is a version 1 segment starting at lsn.
func segmentV1(lsn uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte(segMagicPrefix+"\x01"), lsn)
}

// snapshotV1 is a version 1 snapshot file, with idems under tag if any.
func snapshotV1(lsn uint64, entries []crdt.Entry, idems []Idem, tag byte) []byte {
	b := binary.LittleEndian.AppendUint64([]byte(snapMagicPrefix+"\x01"), lsn)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendEntryV1(b, e)
	}
	if len(idems) > 0 {
		b = binary.AppendUvarint(append(b, tag), uint64(len(idems)))
		for _, i := range idems {
			b = appendIdem(b, i)
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}
