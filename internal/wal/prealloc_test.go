package wal

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// TestPreallocatedSegment: the active segment is kept Options.Prealloc
// bytes of zeros ahead of its last record, grows by that much at a time
// rather than with every record, and ends with its last record once closed.
func TestPreallocatedSegment(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.Prealloc = 4096
	l, _ := openLog(t, opts, nil)
	name := filepath.Join(opts.Dir, segFile(1))
	sizes := map[int64]bool{}
	for i := range 200 {
		appendSeq(t, l, i, i+1)
		written := int64(l.Stats().Bytes) + segHeader
		data := readFile(t, name)
		size := int64(len(data))
		if size < written || size > written+opts.Prealloc {
			t.Fatalf("after %d records: segment of %d bytes holds %d of records; want up to %d of zeros after them", i+1, size, written, opts.Prealloc)
		}
		if !allZero(data[written:]) {
			t.Fatalf("after %d records: the bytes past the last record are not zeros", i+1)
		}
		sizes[size] = true
	}
	// 200 records of about 35 bytes: 7 KB, so two or three sizes, not 200.
	if len(sizes) > 3 {
		t.Errorf("the segment took %d sizes over 200 records; it should grow %d bytes at a time", len(sizes), opts.Prealloc)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if size, want := fileSize(t, name), int64(l.Stats().Bytes)+segHeader; size != want {
		t.Errorf("closed segment is %d bytes, want %d: its zeros were not cut", size, want)
	}
	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 200)...))
	if rec.Records != 200 || rec.TornBytes != 0 {
		t.Errorf("recovery %+v", rec)
	}
}

// TestPreallocOff: a negative Prealloc grows the segment with every record.
func TestPreallocOff(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.Prealloc = -1
	l, _ := openLog(t, opts, nil)
	for i := range 20 {
		appendSeq(t, l, i, i+1)
		if size, want := fileSize(t, filepath.Join(opts.Dir, segFile(1))), int64(l.Stats().Bytes)+segHeader; size != want {
			t.Fatalf("segment is %d bytes, want %d", size, want)
		}
	}
}

// TestPreallocatedSegmentsRotate: a full segment is cut to its last record
// when the next one starts, even while the log stays open.
func TestPreallocatedSegmentsRotate(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentSize, opts.Prealloc = 600, 4096
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 60)
	segs, _ := files(t, opts.Dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		data := readFile(t, filepath.Join(opts.Dir, s))
		offs := recordOffsets(t, data) // fails on zeros after the last record
		if size := int64(len(data)); size > opts.SegmentSize+100 {
			t.Errorf("full segment %s is %d bytes, over its size of %d (records end at %d)", s, size, opts.SegmentSize, offs[len(offs)-1])
		}
	}
	// The active one stops at the segment size, not Prealloc past it.
	if size := fileSize(t, filepath.Join(opts.Dir, segs[len(segs)-1])); size > opts.SegmentSize {
		t.Errorf("active segment is %d bytes, preallocated past the segment size %d", size, opts.SegmentSize)
	}
}

// TestCrashInPreallocatedSegment: a node killed with zeros after its last
// record recovers every record, reports nothing torn, and cuts the zeros;
// a record torn inside the zeros is cut and counted without them.
func TestCrashInPreallocatedSegment(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 10)
	end := int64(l.Stats().Bytes) + segHeader
	crashed := copyDir(t, opts.Dir) // what the disk holds if the process dies now
	name := filepath.Join(crashed, segFile(1))
	if size := fileSize(t, name); size <= end {
		t.Fatalf("segment of %d bytes has no zeros after its records (%d bytes)", size, end)
	}

	t.Run("zeros", func(t *testing.T) {
		opts := opts
		opts.Dir = copyDir(t, crashed)
		got, rec := recoverState(t, opts)
		sameState(t, got, seqState(span(0, 10)...))
		if rec.Records != 10 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
			t.Errorf("recovery %+v, want 10 records, nothing torn or discarded", rec)
		}
		if size := fileSize(t, filepath.Join(opts.Dir, segFile(1))); size != end {
			t.Errorf("segment is %d bytes after recovery, want it cut to %d", size, end)
		}
	})

	t.Run("torn-record", func(t *testing.T) {
		opts := opts
		opts.Dir = copyDir(t, crashed)
		seg := filepath.Join(opts.Dir, segFile(1))
		data := readFile(t, seg)
		offs := recordOffsets(t, data[:end])
		last := data[offs[9]:end] // a whole record, written again half-way into the zeros
		half := last[:len(last)/2]
		copy(data[end:], half)
		writeFile(t, seg, data)
		got, rec := recoverState(t, opts)
		sameState(t, got, seqState(span(0, 10)...))
		if rec.TornBytes != tornBytes(half) || len(rec.Discarded) != 0 {
			t.Errorf("recovery %+v, want TornBytes %d", rec, tornBytes(half))
		}
		if size := fileSize(t, seg); size != end {
			t.Errorf("segment is %d bytes after recovery, want it cut to %d", size, end)
		}
	})

	// A batch of records 11..50 written after record 10, as one write.
	var batch []byte
	for i := 10; i < 50; i++ {
		batch = appendRecord(batch, uint64(i+1), ents(seqEntry(i)), nil)
	}
	s1 := (int(end)/sectorSize + 1) * sectorSize // the first sector boundary in the batch
	for _, c := range []struct {
		name string
		hole [2]int // zeroed after the batch is in place
		torn bool
	}{
		// The crash kept a later sector of the batch and lost an earlier
		// one: zeros up to a sector boundary, then records. Nothing of the
		// batch was acknowledged, so it is a torn tail.
		{"first-sector-lost", [2]int{int(end), s1}, true},
		{"middle-sector-lost", [2]int{s1, s1 + sectorSize}, true},
		// Zeros that end inside a sector, records after them: damage, not
		// a lost write, so it is corruption.
		{"zeros-inside-a-sector", [2]int{s1 + 40, s1 + 140}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, crashed)
			seg := filepath.Join(opts.Dir, segFile(1))
			data := readFile(t, seg)
			copy(data[end:], batch)
			clear(data[c.hole[0]:c.hole[1]])
			writeFile(t, seg, data)
			if !c.torn {
				_, _, err := openApply(opts, func(crdt.Entry) {})
				wantCorrupt(t, err, seg)
				return
			}
			bad := int(end)
			offs := recordOffsets(t, slices.Concat(data[:end], batch))
			for _, o := range offs {
				if o <= c.hole[0] {
					bad = o // the record the hole starts in
				}
			}
			want := seqState(span(0, 10)...)
			for i := 10; i < 50 && offs[i+1] <= c.hole[0]; i++ {
				want.Merge(seqEntry(i)) // whole before the hole
			}
			got, rec := recoverState(t, opts)
			sameState(t, got, want)
			if rec.TornBytes != tornBytes(data[bad:]) || len(rec.Discarded) != 0 {
				t.Errorf("recovery %+v, want TornBytes %d, nothing discarded", rec, tornBytes(data[bad:]))
			}
			if size := fileSize(t, seg); size != int64(bad) {
				t.Errorf("segment is %d bytes after recovery, want it cut to %d", size, bad)
			}
		})
	}
}

// TestZerosEndingOlderSegment: zeros after the last record of a segment
// that is not the last (a crash's preallocated end, kept) are its unused
// end, as long as the next segment continues its LSNs.
func TestZerosEndingOlderSegment(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	twoSegments(t, opts, 10)
	name := filepath.Join(opts.Dir, segFile(1))
	data := readFile(t, name)
	writeFile(t, name, append(data, make([]byte, 3000)...))

	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 10)...))
	if rec.Records != 10 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
		t.Errorf("recovery %+v, want 10 records, nothing torn or discarded", rec)
	}

	// With record 5 zeroed, the next segment no longer continues the
	// first: that is corruption, not an unused end.
	opts.Dir = copyDir(t, opts.Dir)
	os.Remove(filepath.Join(opts.Dir, segFile(11))) // started by recoverState
	writeFile(t, filepath.Join(opts.Dir, segFile(1)), append(data[:recordOffsets(t, data)[4]], make([]byte, 3000)...))
	_, _, err := openApply(opts, func(crdt.Entry) {})
	wantCorrupt(t, err, segFile(6), "records are missing")
}
