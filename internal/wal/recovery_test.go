package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// tailFixture is a closed log of one segment holding records 1..10: the
// first nine are seqEntry(0..8), the tenth is tailEntries.
var tailEntries = []crdt.Entry{
	{Key: "tail-a", Replica: 5, P: 1000, N: 1},
	{Key: "tail-ü", Replica: 6, P: 1 << 40},
}

func tailFixture(t *testing.T) (opts Options, data []byte, offs []int) {
	t.Helper()
	opts = testOptions(t, t.TempDir())
	opts.Sync = SyncNone
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 9)
	if err := l.Append(tailEntries); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data = readFile(t, filepath.Join(opts.Dir, segFile(1)))
	offs = recordOffsets(t, data)
	if len(offs) != 11 {
		t.Fatalf("fixture has %d records", len(offs)-1)
	}
	return opts, data, offs
}

// checkTornRecovery opens a log whose only segment is seg, expecting the
// first nine records and a cut of torn bytes at keep; then checks that the
// cut is permanent and that new records after it are recovered.
func checkTornRecovery(t *testing.T, opts Options, seg []byte, keep int, torn int64) {
	t.Helper()
	opts.Dir = t.TempDir()
	name := filepath.Join(opts.Dir, segFile(1))
	writeFile(t, name, seg)

	got, rec := recoverState(t, opts)
	if rec.TornBytes != torn {
		t.Fatalf("TornBytes = %d, want %d", rec.TornBytes, torn)
	}
	if rec.Records != 9 || len(rec.Discarded) != 0 {
		t.Fatalf("recovery %+v, want 9 records and nothing discarded", rec)
	}
	sameState(t, got, seqState(span(0, 9)...))
	if size := fileSize(t, name); size != int64(keep) {
		t.Fatalf("segment is %d bytes after recovery, want it cut to %d", size, keep)
	}

	l, rec := openLog(t, opts, nil)
	if rec.TornBytes != 0 || rec.Records != 9 {
		t.Fatalf("second recovery %+v, want 9 records and no torn bytes", rec)
	}
	if got := l.LastLSN(); got != 9 {
		t.Fatalf("LastLSN = %d after cutting record 10, want 9", got)
	}
	appendSeq(t, l, 100, 102)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, rec = recoverState(t, opts)
	sameState(t, got, seqState(append(span(0, 9), 100, 101)...))
	if rec.TornBytes != 0 || rec.Records != 11 {
		t.Fatalf("third recovery %+v, want 11 records", rec)
	}
}

// TestTornTailEveryOffset cuts the last record at every byte inside it.
func TestTornTailEveryOffset(t *testing.T) {
	opts, data, offs := tailFixture(t)
	start, end := offs[9], offs[10]
	for cut := start + 1; cut < end; cut++ {
		t.Run(strconv.Itoa(cut-start), func(t *testing.T) {
			checkTornRecovery(t, opts, data[:cut], start, tornBytes(data[start:cut]))
		})
	}
}

// TestTornTailGarbage replaces or extends the last record with bytes that a
// crash can leave behind.
func TestTornTailGarbage(t *testing.T) {
	opts, data, offs := tailFixture(t)
	start, end := offs[9], offs[10]
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	header := func(n uint32) []byte { // a record header claiming n bytes
		return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, n), 0xdeadbeef)
	}
	zeroed := slices.Clone(data)
	clear(zeroed[start+recHeader : end]) // allocated, header written, payload not
	cases := []struct {
		name string
		seg  []byte
		keep int // where the valid records end
	}{
		{"zeros-1", append(slices.Clone(data), make([]byte, 1)...), end},
		{"zeros-8", append(slices.Clone(data), make([]byte, 8)...), end},
		{"zeros-4096", append(slices.Clone(data), make([]byte, 4096)...), end},
		{"random-3", append(slices.Clone(data), random(3)...), end},
		{"random-200", append(slices.Clone(data), random(200)...), end},
		{"random-64k", append(slices.Clone(data), random(64<<10)...), end},
		{"huge-length", append(append(slices.Clone(data), 0xff, 0xff, 0xff, 0xff), random(10)...), end},
		{"max-length", append(append(slices.Clone(data), header(MaxRecord)...), random(10)...), end},
		{"length-past-end", append(append(slices.Clone(data), header(1000)...), random(20)...), end},
		{"duplicate-record", append(slices.Clone(data), data[offs[8]:offs[9]]...), end},
		{"zeroed-payload", zeroed, start},
		{"cut-and-zeros", append(slices.Clone(data[:start+5]), make([]byte, 100)...), start},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.keep == end {
				// The tenth record is intact; only the garbage goes.
				opts := opts
				opts.Dir = t.TempDir()
				name := filepath.Join(opts.Dir, segFile(1))
				writeFile(t, name, c.seg)
				got, rec := recoverState(t, opts)
				if rec.TornBytes != tornBytes(c.seg[end:]) || rec.Records != 10 {
					t.Fatalf("recovery %+v, want 10 records and %d torn bytes", rec, tornBytes(c.seg[end:]))
				}
				sameState(t, got, keyspaceOf(tailEntries, entriesOf(seqState(span(0, 9)...))))
				if size := fileSize(t, name); size != int64(end) {
					t.Fatalf("segment is %d bytes after recovery, want %d", size, end)
				}
				return
			}
			checkTornRecovery(t, opts, c.seg, c.keep, tornBytes(c.seg[c.keep:]))
		})
	}
}

// TestTornTailOnlyRecord cuts the only record of the last segment, which
// follows a full one.
func TestTornTailOnlyRecord(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	lg, logs := newLogger(t)
	opts.Logger = lg
	twoSegments(t, opts, 6)
	name := filepath.Join(dir, segFile(6))
	data := readFile(t, name)
	writeFile(t, name, data[:len(data)-3])

	got, rec := recoverState(t, opts)
	torn := tornBytes(data[segHeader : len(data)-3])
	if rec.TornBytes != torn {
		t.Errorf("TornBytes = %d, want %d", rec.TornBytes, torn)
	}
	if !logs.has("torn", name, fmt.Sprintf("bytes=%q", strconv.FormatInt(torn, 10))) {
		t.Error("the cut is not logged with the file and the bytes cut")
	}
	sameState(t, got, seqState(span(0, 5)...))
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 6, 8)
	l.Close()
	got, rec = recoverState(t, opts)
	sameState(t, got, seqState(0, 1, 2, 3, 4, 6, 7))
	if rec.TornBytes != 0 {
		t.Errorf("TornBytes = %d on the next recovery", rec.TornBytes)
	}
}

// TestTornTailCutIsSynced: the cut reaches stable storage before the next
// segment is created, and a failure to sync it fails Open.
func TestTornTailCutIsSynced(t *testing.T) {
	opts, data, offs := tailFixture(t)
	start := offs[9]
	opts.Dir = t.TempDir()
	name := filepath.Join(opts.Dir, segFile(1))
	next := filepath.Join(opts.Dir, segFile(10))

	type call struct {
		file       string
		size       int64
		nextExists bool
	}
	var calls []call
	fail := errors.New("injected sync failure")
	failing := false
	t.Cleanup(func() { syncCut = (*os.File).Sync })
	syncCut = func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(next)
		calls = append(calls, call{f.Name(), fi.Size(), err == nil})
		if failing {
			return fail
		}
		return f.Sync()
	}

	writeFile(t, name, data[:start+5])
	failing = true
	if _, _, err := openApply(opts, func(crdt.Entry) {}); !errors.Is(err, fail) {
		t.Fatalf("Open with a failing sync of the cut: %v, want the sync error", err)
	}
	if segs, _ := files(t, opts.Dir); len(segs) != 1 {
		t.Errorf("segments %v after the failed Open: a new one was started", segs)
	}

	writeFile(t, name, data[:start+5])
	failing = false
	calls = nil
	got, rec := recoverState(t, opts)
	if len(calls) != 1 || calls[0].file != name || calls[0].size != int64(start) || calls[0].nextExists {
		t.Fatalf("syncs of the cut %+v, want one of %s at %d bytes, before %s exists", calls, name, start, next)
	}
	if rec.TornBytes != 5 || rec.Records != 9 {
		t.Errorf("recovery %+v", rec)
	}
	sameState(t, got, seqState(span(0, 9)...))
	if _, err := os.Stat(next); err != nil {
		t.Errorf("no new segment after recovery: %v", err)
	}
}

// TestHeaderCutLastSegment: a crash while a segment was being created leaves
// it shorter than its header; it held nothing and is removed.
func TestHeaderCutLastSegment(t *testing.T) {
	base := t.TempDir()
	opts := testOptions(t, base)
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 5)
	l.Close()
	header := binary.LittleEndian.AppendUint64([]byte(segMagic), 6)
	for n := range segHeader {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, base)
			writeFile(t, filepath.Join(opts.Dir, segFile(6)), header[:n])
			l, rec := openLog(t, opts, nil)
			if rec.TornBytes != 0 || len(rec.Discarded) != 0 || rec.Records != 5 {
				t.Errorf("recovery %+v", rec)
			}
			appendSeq(t, l, 5, 6)
			l.Close()
			got, _ := recoverState(t, opts)
			sameState(t, got, seqState(span(0, 6)...))
		})
	}
	t.Run("only-segment", func(t *testing.T) {
		opts := opts
		opts.Dir = t.TempDir()
		writeFile(t, filepath.Join(opts.Dir, segFile(1)), []byte(segMagic[:5]))
		l, rec := openLog(t, opts, nil)
		if rec.Records != 0 || l.LastLSN() != 0 {
			t.Errorf("recovery %+v, LastLSN %d", rec, l.LastLSN())
		}
		appendSeq(t, l, 0, 1)
		l.Close()
		got, _ := recoverState(t, opts)
		sameState(t, got, seqState(0))
	})
}

// multiSegment builds a closed log of several 256-byte segments holding
// records seqEntry(0..59) and returns its segment names and, per segment,
// the offsets of its records.
func multiSegment(t *testing.T) (opts Options, segs []string, offs map[string][]int) {
	t.Helper()
	opts = testOptions(t, t.TempDir())
	opts.SegmentSize, opts.Sync = 256, SyncNone
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 60)
	l.Close()
	segs, _ = files(t, opts.Dir)
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	offs = make(map[string][]int)
	for _, s := range segs {
		offs[s] = recordOffsets(t, readFile(t, filepath.Join(opts.Dir, s)))
	}
	return opts, segs, offs
}

// lsnOf returns the first LSN of a segment named by segFile.
func lsnOf(t *testing.T, seg string) int {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSuffix(seg, ".wal"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// without returns 0..59 minus the indexes of seqEntry in drop.
func without(drop ...int) []int {
	return slices.DeleteFunc(span(0, 60), func(i int) bool { return slices.Contains(drop, i) })
}

// TestCorruptRecordInLastSegment flips, one at a time, every byte of a
// record that valid records follow: that is corruption, not a torn tail.
func TestCorruptRecordInLastSegment(t *testing.T) {
	opts, data, offs := tailFixture(t)
	start, end := offs[4], offs[5] // record 5, seqEntry(4)
	for i := start; i < end; i++ {
		t.Run(strconv.Itoa(i-start), func(t *testing.T) {
			seg := slices.Clone(data)
			seg[i] ^= 0x55
			opts := opts
			opts.Dir = t.TempDir()
			name := filepath.Join(opts.Dir, segFile(1))
			writeFile(t, name, seg)

			_, _, err := openApply(opts, func(crdt.Entry) {})
			wantCorrupt(t, err, name, fmt.Sprintf("offset %d", start))

			opts.DiscardCorrupt = true
			got, rec := recoverState(t, opts)
			wantDiscarded(t, rec, name, fmt.Sprintf("offset %d", start))
			if rec.TornBytes != 0 || rec.Records != 9 {
				t.Errorf("recovery %+v, want 9 records and no torn bytes", rec)
			}
			sameState(t, got, keyspaceOf(tailEntries, entriesOf(seqState(0, 1, 2, 3, 5, 6, 7, 8))))
		})
	}
}

// TestCorruptOlderSegment corrupts records of a segment that is not the last:
// even its last record is corruption there.
func TestCorruptOlderSegment(t *testing.T) {
	opts, segs, offs := multiSegment(t)
	seg := segs[1]
	first := lsnOf(t, seg) - 1 // seqEntry index of its first record
	n := len(offs[seg]) - 1
	for _, c := range []struct {
		name string
		rec  int // record index within the segment
	}{{"middle", n / 2}, {"last", n - 1}, {"first", 0}} {
		t.Run(c.name, func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, opts.Dir)
			name := filepath.Join(opts.Dir, seg)
			data := readFile(t, name)
			off := offs[seg][c.rec]
			data[off+recHeader+3] ^= 1 // inside the LSN
			writeFile(t, name, data)

			_, _, err := openApply(opts, func(crdt.Entry) {})
			wantCorrupt(t, err, name, fmt.Sprintf("offset %d", off))

			opts.DiscardCorrupt = true
			got, rec := recoverState(t, opts)
			wantDiscarded(t, rec, name, fmt.Sprintf("offset %d", off))
			if rec.TornBytes != 0 || rec.Records != 59 {
				t.Errorf("recovery %+v, want 59 records", rec)
			}
			sameState(t, got, seqState(without(first+c.rec)...))
		})
	}
}

func TestMissingSegment(t *testing.T) {
	opts, segs, offs := multiSegment(t)
	t.Run("middle", func(t *testing.T) {
		opts := opts
		opts.Dir = copyDir(t, opts.Dir)
		if err := os.Remove(filepath.Join(opts.Dir, segs[1])); err != nil {
			t.Fatal(err)
		}
		_, _, err := openApply(opts, func(crdt.Entry) {})
		wantCorrupt(t, err, filepath.Join(opts.Dir, segs[2]), "missing")

		opts.DiscardCorrupt = true
		got, rec := recoverState(t, opts)
		wantDiscarded(t, rec, segs[2], "missing")
		var lost []int
		for i := range len(offs[segs[1]]) - 1 {
			lost = append(lost, lsnOf(t, segs[1])-1+i)
		}
		sameState(t, got, seqState(without(lost...)...))
	})
	t.Run("first", func(t *testing.T) {
		opts := opts
		opts.Dir = copyDir(t, opts.Dir)
		if err := os.Remove(filepath.Join(opts.Dir, segs[0])); err != nil {
			t.Fatal(err)
		}
		_, _, err := openApply(opts, func(crdt.Entry) {})
		wantCorrupt(t, err, filepath.Join(opts.Dir, segs[1]), "missing")

		opts.DiscardCorrupt = true
		got, rec := recoverState(t, opts)
		wantDiscarded(t, rec, segs[1], "missing")
		sameState(t, got, seqState(span(lsnOf(t, segs[1])-1, 60)...))
	})
}

func TestBadSegmentHeader(t *testing.T) {
	opts, segs, offs := multiSegment(t)
	cases := []struct {
		name string
		seg  int
		edit func([]byte) []byte
	}{
		{"bad-magic", 1, func(b []byte) []byte { b[0] = 'X'; return b }},
		{"bad-version", 1, func(b []byte) []byte { b[7] = 0; return b }},
		{"lsn-not-name", 1, func(b []byte) []byte { b[8]++; return b }},
		{"cut-in-header-not-last", 1, func(b []byte) []byte { return b[:10] }},
		{"bad-magic-last", len(segs) - 1, func(b []byte) []byte { b[3] = 0; return b }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, opts.Dir)
			name := filepath.Join(opts.Dir, segs[c.seg])
			writeFile(t, name, c.edit(readFile(t, name)))
			_, _, err := openApply(opts, func(crdt.Entry) {})
			wantCorrupt(t, err, name, "header")

			opts.DiscardCorrupt = true
			got, rec := recoverState(t, opts)
			wantDiscarded(t, rec, name, "header")
			var lost []int
			for i := range len(offs[segs[c.seg]]) - 1 {
				lost = append(lost, lsnOf(t, segs[c.seg])-1+i)
			}
			sameState(t, got, seqState(without(lost...)...))
		})
	}
}

// snapshotFixture is a closed log with a snapshot at LSN 40 covering
// seqEntry(0..39), and records seqEntry(40..49) after it; active is the
// first seqEntry index of the segment the snapshot left behind.
func snapshotFixture(t *testing.T) (opts Options, active int) {
	t.Helper()
	opts = testOptions(t, t.TempDir())
	opts.SegmentSize, opts.Sync = 512, SyncNone
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 40)
	if err := l.WriteSnapshot(40, contentsOf(seqState(span(0, 40)...))); err != nil {
		t.Fatal(err)
	}
	segs, _ := files(t, opts.Dir)
	if len(segs) != 1 || lsnOf(t, segs[0]) == 1 {
		t.Fatalf("segments %v after the snapshot: want one, not the first", segs)
	}
	appendSeq(t, l, 40, 50)
	l.Close()
	return opts, lsnOf(t, segs[0]) - 1
}

func TestCorruptSnapshot(t *testing.T) {
	opts, active := snapshotFixture(t)
	name := snapFile(40)
	size := int(fileSize(t, filepath.Join(opts.Dir, name)))
	cases := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[1] ^= 1; return b }},
		{"lsn", func(b []byte) []byte { b[8] ^= 1; return b }},
		{"count", func(b []byte) []byte { b[16] ^= 1; return b }},
		{"entry", func(b []byte) []byte { b[size/2] ^= 0x80; return b }},
		{"checksum", func(b []byte) []byte { b[size-1] ^= 1; return b }},
		{"cut", func(b []byte) []byte { return b[:size-10] }},
		{"header-only", func(b []byte) []byte { return b[:snapHeader] }},
		{"empty", func(b []byte) []byte { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, opts.Dir)
			path := filepath.Join(opts.Dir, name)
			writeFile(t, path, c.edit(readFile(t, path)))
			_, _, err := openApply(opts, func(crdt.Entry) {})
			wantCorrupt(t, err, path)

			// Without the snapshot, what is left is the segment it did
			// not cover whole.
			opts.DiscardCorrupt = true
			got, rec := recoverState(t, opts)
			wantDiscarded(t, rec, path)
			if rec.SnapshotLSN != 0 {
				t.Errorf("recovery used the corrupt snapshot: %+v", rec)
			}
			sameState(t, got, seqState(span(active, 50)...))
		})
	}
	t.Run("intact", func(t *testing.T) {
		got, rec := recoverState(t, opts)
		sameState(t, got, seqState(span(0, 50)...))
		if rec.SnapshotLSN != 40 || rec.Records != 10 {
			t.Errorf("recovery %+v", rec)
		}
	})
}

// TestOlderSnapshotUsedWhenNewestIsCorrupt: a crash between writing a new
// snapshot and removing the older one leaves both.
func TestOlderSnapshotUsedWhenNewestIsCorrupt(t *testing.T) {
	opts, _ := snapshotFixture(t)
	saved := copyDir(t, opts.Dir) // snapshot 40 and the segment after it
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 50, 55)
	if err := l.WriteSnapshot(55, contentsOf(seqState(span(0, 55)...))); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// The crash came before the cleanup: put back what it removed.
	segs, snaps := files(t, saved)
	for _, name := range append(segs, snaps...) {
		writeFile(t, filepath.Join(opts.Dir, name), readFile(t, filepath.Join(saved, name)))
	}
	newest := filepath.Join(opts.Dir, snapFile(55))
	b := readFile(t, newest)
	b[30] ^= 1
	writeFile(t, newest, b)

	opts.DiscardCorrupt = true
	got, rec := recoverState(t, opts)
	wantDiscarded(t, rec, newest)
	if rec.SnapshotLSN != 40 {
		t.Errorf("recovery used snapshot %d, want the older one, 40", rec.SnapshotLSN)
	}
	sameState(t, got, seqState(span(0, 55)...))
}

// TestSnapshotBeyondWrittenRecords: a snapshot may cover records that never
// reached the disk — the state and LastLSN include queued records, and under
// SyncNone or SyncInterval written records are not synced with the snapshot.
// After such a crash the first restart is fine; the log must stay readable
// at the next.
func TestSnapshotBeyondWrittenRecords(t *testing.T) {
	t.Run("tail-lost", func(t *testing.T) {
		opts := testOptions(t, t.TempDir())
		opts.Sync = SyncNone
		l, _ := openLog(t, opts, nil)
		appendSeq(t, l, 0, 8)
		if err := l.WriteSnapshot(8, contentsOf(seqState(span(0, 8)...))); err != nil {
			t.Fatal(err)
		}
		l.Close()
		// Power loss: the snapshot was synced, records 7 and 8 were not.
		name := filepath.Join(opts.Dir, segFile(1))
		data := readFile(t, name)
		writeFile(t, name, data[:recordOffsets(t, data)[6]])

		l, rec := openLog(t, opts, nil) // first restart: fine
		if l.LastLSN() != 8 || rec.SnapshotLSN != 8 {
			t.Fatalf("first restart: LastLSN %d, recovery %+v", l.LastLSN(), rec)
		}
		appendSeq(t, l, 8, 10)
		l.Close()

		ks := crdt.New()
		l, _, err := openApply(opts, func(e crdt.Entry) { ks.Merge(e) })
		if err != nil {
			t.Fatalf("second restart: %v", err)
		}
		l.Close()
		sameState(t, ks, seqState(span(0, 10)...))
	})
	t.Run("snapshot-ahead", func(t *testing.T) {
		// The snapshot covers LSNs 6..8, queued but never written.
		opts := testOptions(t, t.TempDir())
		l, _ := openLog(t, opts, nil)
		appendSeq(t, l, 0, 5)
		if err := l.WriteSnapshot(8, contentsOf(seqState(span(0, 8)...))); err != nil {
			t.Fatal(err)
		}
		l.Close()
		for restart := 1; restart <= 3; restart++ {
			ks := crdt.New()
			l, rec, err := openApply(opts, func(e crdt.Entry) { ks.Merge(e) })
			if err != nil {
				t.Fatalf("restart %d: %v", restart, err)
			}
			if len(rec.Discarded) != 0 || rec.SnapshotLSN != 8 {
				t.Fatalf("restart %d: recovery %+v", restart, rec)
			}
			want := 8 + 2*(restart-1)
			if got := l.LastLSN(); got != uint64(want) {
				t.Fatalf("restart %d: LastLSN %d, want %d", restart, got, want)
			}
			sameState(t, ks, seqState(span(0, want)...))
			appendSeq(t, l, want, want+2)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("gap-beyond-snapshot", func(t *testing.T) {
		// Records 6..11 are missing; the snapshot covers only up to 8.
		opts := testOptions(t, t.TempDir())
		l, _ := openLog(t, opts, nil)
		appendSeq(t, l, 0, 5)
		if err := l.WriteSnapshot(8, contentsOf(seqState(span(0, 8)...))); err != nil {
			t.Fatal(err)
		}
		l.Close()
		seg := binary.LittleEndian.AppendUint64([]byte(segMagic), 12)
		seg = appendRecord(seg, 12, ents(seqEntry(11)), nil)
		name := filepath.Join(opts.Dir, segFile(12))
		writeFile(t, name, seg)
		_, _, err := openApply(opts, func(crdt.Entry) {})
		wantCorrupt(t, err, name, "missing")
	})
	t.Run("covered-segment-missing", func(t *testing.T) {
		// WriteSnapshot removes covered segments without syncing the
		// directory; if a later removal persists and an earlier one does
		// not, the remaining covered segment is followed by a gap.
		opts, segs, _ := multiSegment(t)
		saved := readFile(t, filepath.Join(opts.Dir, segs[0]))
		l, _ := openLog(t, opts, nil)
		if err := l.WriteSnapshot(60, contentsOf(seqState(span(0, 60)...))); err != nil {
			t.Fatal(err)
		}
		appendSeq(t, l, 60, 62)
		l.Close()
		// Undo the removal of the first segment only.
		writeFile(t, filepath.Join(opts.Dir, segs[0]), saved)

		ks := crdt.New()
		l, _, err := openApply(opts, func(e crdt.Entry) { ks.Merge(e) })
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		l.Close()
		sameState(t, ks, seqState(span(0, 62)...))
	})
}

// recordLikeKey returns a valid key that holds a whole record frame with
// the given LSN, and that frame. Every byte of the frame outside the LSN is
// ASCII, so the key is valid UTF-8 whenever the LSN's bytes are.
func recordLikeKey(t *testing.T, lsn uint64) (key string, frame []byte) {
	t.Helper()
	for p := byte(1); p < 0x80; p++ {
		for c := byte('a'); c <= 'z'; c++ {
			payload := binary.LittleEndian.AppendUint64(nil, lsn)
			payload = append(payload, 1, 1, c)       // one entry, key of one byte
			payload = append(payload, "BBBBBBBB"...) // replica
			payload = append(payload, 0, p, 0)       // generation, P, N
			frame := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
			frame = binary.LittleEndian.AppendUint32(frame, crc32.Checksum(payload, castagnoli))
			frame = append(frame, payload...)
			if !slices.ContainsFunc(frame[:8], func(b byte) bool { return b >= 0x80 }) {
				key = "frame:" + string(frame) + ":end-of-key"
				if err := crdt.ValidKey(key); err != nil {
					t.Fatal(err)
				}
				return key, frame
			}
		}
	}
	t.Fatal("no ASCII frame found")
	return "", nil
}

// recordLikeTail writes a log of records 1..3 (seqEntry 0..2) and a fourth
// whose key is key, then cuts the fourth at the given number of bytes past
// the end of frame. It returns the options and the offset of the fourth.
func recordLikeTail(t *testing.T, key string, frame []byte, past int) (opts Options, start, cut int) {
	t.Helper()
	opts = testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 3)
	if err := l.Append([]crdt.Entry{{Key: key, Replica: 9, P: 1}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	name := filepath.Join(opts.Dir, segFile(1))
	data := readFile(t, name)
	start = recordOffsets(t, data)[3]
	cut = bytes.Index(data, frame) + len(frame) + past
	writeFile(t, name, data[:cut])
	return opts, start, cut
}

// TestTornTailWithRecordLikeKey: a torn last record whose intact prefix holds
// bytes that parse as a record must still be a torn tail, or any client can
// make a node refuse to restart after a crash.
func TestTornTailWithRecordLikeKey(t *testing.T) {
	for _, lsn := range []uint64{0x4141414141414141, 3, 100} { // far ahead, behind, beyond what fits
		for _, past := range []int{0, 1, 9} { // the frame ends the file, or some of the key follows it
			t.Run(fmt.Sprintf("lsn=%d/past=%d", lsn, past), func(t *testing.T) {
				key, frame := recordLikeKey(t, lsn)
				opts, start, _ := recordLikeTail(t, key, frame, past)
				torn := tornBytes(readFile(t, filepath.Join(opts.Dir, segFile(1)))[start:])
				ks := crdt.New()
				l, rec, err := openApply(opts, func(e crdt.Entry) { ks.Merge(e) })
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				l.Close()
				if rec.TornBytes != torn || len(rec.Discarded) != 0 {
					t.Errorf("recovery %+v, want TornBytes %d and nothing discarded", rec, torn)
				}
				sameState(t, ks, seqState(0, 1, 2))
			})
		}
	}
}

// TestRecordLikeKeyWithContinuingLSN: a frame inside a key that carries the
// LSN a record after the torn one would carry cannot be told from a record
// the log wrote after a damaged one. Recovery must then refuse to start
// rather than cut what may be acknowledged records; --discard-corrupt gets
// past it.
func TestRecordLikeKeyWithContinuingLSN(t *testing.T) {
	key, frame := recordLikeKey(t, 5) // the torn record is LSN 4
	opts, start, _ := recordLikeTail(t, key, frame, 0)
	name := filepath.Join(opts.Dir, segFile(1))
	_, _, err := openApply(opts, func(crdt.Entry) {})
	wantCorrupt(t, err, name, fmt.Sprintf("offset %d", start))

	opts.DiscardCorrupt = true
	got, rec := recoverState(t, opts)
	wantDiscarded(t, rec, name, fmt.Sprintf("offset %d", start))
	want := seqState(0, 1, 2)
	want.Merge(crdt.Entry{Key: string(frame[recHeader+10 : recHeader+11]), Replica: crdt.ReplicaID(binary.LittleEndian.Uint64([]byte("BBBBBBBB"))), P: uint64(frame[len(frame)-2])})
	sameState(t, got, want)
}

// TestDoubleCorruption: a damaged record followed by good records and then a
// torn tail is corruption, not a torn tail to cut from the damaged record on:
// the good records in between were acknowledged.
func TestDoubleCorruption(t *testing.T) {
	opts, data, offs := tailFixture(t)
	bad := offs[4] // record 5, seqEntry(4)
	for _, c := range []struct {
		name   string
		damage func(seg []byte)
	}{
		{"payload", func(seg []byte) { seg[bad+recHeader+9] ^= 0x55 }},
		{"length", func(seg []byte) { seg[bad+2] ^= 0x10 }},
		{"zeroed", func(seg []byte) { clear(seg[bad:offs[6]]) }}, // records 5 and 6
	} {
		t.Run(c.name, func(t *testing.T) {
			seg := slices.Clone(data[:offs[9]+(offs[10]-offs[9])/2]) // record 10 torn
			c.damage(seg)
			opts := opts
			opts.Dir = t.TempDir()
			name := filepath.Join(opts.Dir, segFile(1))
			writeFile(t, name, seg)

			_, _, err := openApply(opts, func(crdt.Entry) {})
			wantCorrupt(t, err, name, fmt.Sprintf("offset %d", bad))
			if size := fileSize(t, name); size != int64(len(seg)) {
				t.Fatalf("a refused recovery changed the segment: %d bytes, want %d", size, len(seg))
			}

			opts.DiscardCorrupt = true
			got, rec := recoverState(t, opts)
			wantDiscarded(t, rec, name, fmt.Sprintf("offset %d", bad))
			if rec.TornBytes != tornBytes(seg[offs[9]:]) {
				t.Errorf("TornBytes = %d, want %d", rec.TornBytes, tornBytes(seg[offs[9]:]))
			}
			keep := []int{0, 1, 2, 3, 5, 6, 7, 8}
			if c.name == "zeroed" {
				keep = []int{0, 1, 2, 3, 6, 7, 8}
			}
			sameState(t, got, seqState(keep...))
		})
	}
}

// TestAppendOfUnreadableEntry: the reader rejects keys that are empty or
// longer than crdt.MaxKeyLen, but Append accepts them. Append must either
// refuse such an entry or the log must read it back.
func TestAppendOfUnreadableEntry(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []crdt.Entry
	}{
		{"empty-key", []crdt.Entry{{Key: "", Replica: 1, P: 1}}},
		{"long-key", []crdt.Entry{{Key: strings.Repeat("x", crdt.MaxKeyLen+1), Replica: 1, P: 1}}},
		{"mixed", []crdt.Entry{{Key: "good", Replica: 1, P: 1}, {Key: "", Replica: 1, P: 1}}},
	} {
		for _, last := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/last=%v", c.name, last), func(t *testing.T) {
				opts := testOptions(t, t.TempDir())
				l, _ := openLog(t, opts, nil)
				appendSeq(t, l, 0, 2)
				err := l.Append(c.entries)
				if !last {
					appendSeq(t, l, 2, 3)
				}
				l.Close()
				if err != nil {
					return // refused: fine
				}
				ks := crdt.New()
				l, rec, err := openApply(opts, func(e crdt.Entry) { ks.Merge(e) })
				if err != nil {
					t.Fatalf("Append accepted %.40q but the log no longer opens: %v", c.entries[len(c.entries)-1].Key, err)
				}
				l.Close()
				if rec.TornBytes != 0 || len(rec.Discarded) != 0 {
					t.Fatalf("Append accepted %.40q and returned nil but recovery cut it: %+v", c.entries[len(c.entries)-1].Key, rec)
				}
			})
		}
	}
}

// TestCutRecordIsNotApplied: a record that recovery cuts off must contribute
// nothing, even if its first entries decode.
func TestCutRecordIsNotApplied(t *testing.T) {
	dir := t.TempDir()
	seg := binary.LittleEndian.AppendUint64([]byte(segMagic), 1)
	seg = appendRecord(seg, 1, ents(seqEntry(0)), nil)
	// A checksummed record whose second entry does not decode.
	seg = appendRecord(seg, 2, ents(seqEntry(1), crdt.Entry{Key: "", Replica: 1, P: 1}), nil)
	writeFile(t, filepath.Join(dir, segFile(1)), seg)

	ks := crdt.New()
	l, rec, err := openApply(testOptions(t, dir), func(e crdt.Entry) { ks.Merge(e) })
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rec.TornBytes == 0 {
		t.Fatalf("the bad record was not cut: %+v", rec)
	}
	sameState(t, ks, seqState(0))
}
