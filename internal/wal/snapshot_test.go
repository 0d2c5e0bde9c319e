package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// snapshotDue reports whether SnapshotDue has a signal waiting.
func snapshotDue(l *Log) bool {
	select {
	case <-l.SnapshotDue():
		return true
	default:
		return false
	}
}

func TestRotationSignalsSnapshotDue(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 512
	l, _ := openLog(t, opts, nil)

	// Records are about 45 bytes: the first segment fills after ~11.
	i := 0
	for ; ; i++ {
		appendSeq(t, l, i, i+1)
		segs, _ := files(t, dir)
		if len(segs) > 1 {
			break
		}
		if snapshotDue(l) {
			t.Fatalf("SnapshotDue before any rotation (record %d)", i)
		}
	}
	if !snapshotDue(l) {
		t.Fatal("no SnapshotDue after a rotation")
	}
	segs, _ := files(t, dir)
	// The new segment is named for the first record it holds.
	if want := []string{segFile(1), segFile(uint64(i + 1))}; !slices.Equal(segs, want) {
		t.Fatalf("segments %v, want %v", segs, want)
	}
	if size := fileSize(t, filepath.Join(dir, segFile(1))); size < 512 {
		t.Errorf("first segment rotated at %d bytes, before SegmentSize", size)
	}
	if snapshotDue(l) {
		t.Error("a second SnapshotDue signal for one rotation")
	}
}

// TestSnapshotDropsCoveredFiles writes segments, snapshots at LastLSN and
// checks what is left on disk and what recovery replays.
func TestSnapshotDropsCoveredFiles(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 512
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 60) // several segments
	segs, _ := files(t, dir)
	if len(segs) < 4 {
		t.Fatalf("only %d segments after 60 records", len(segs))
	}

	lsn := l.LastLSN()
	if err := l.WriteSnapshot(lsn, contentsOf(seqState(span(0, 60)...))); err != nil {
		t.Fatal(err)
	}
	segs, snaps := files(t, dir)
	// Every segment but the active one holds only records ≤ lsn.
	if len(segs) != 1 || !slices.Equal(snaps, []string{snapFile(lsn)}) {
		t.Fatalf("after the snapshot: segments %v, snapshots %v; want the active segment and %s", segs, snaps, snapFile(lsn))
	}
	active := segs[0]

	appendSeq(t, l, 60, 70)
	l.Close()
	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 70)...))
	if rec.SnapshotLSN != lsn || rec.SnapshotEntries != 60 {
		t.Errorf("recovery used snapshot %d with %d entries, want %d with 60", rec.SnapshotLSN, rec.SnapshotEntries, lsn)
	}
	if rec.Records != 10 || rec.Entries != 10 {
		t.Errorf("replayed %d records (%d entries) after the snapshot, want 10", rec.Records, rec.Entries)
	}

	// A second snapshot replaces the first.
	l, _ = openLog(t, opts, nil)
	appendSeq(t, l, 70, 100)
	lsn2 := l.LastLSN()
	if err := l.WriteSnapshot(lsn2, contentsOf(seqState(span(0, 100)...))); err != nil {
		t.Fatal(err)
	}
	segs, snaps = files(t, dir)
	if len(segs) != 1 || segs[0] == active || !slices.Equal(snaps, []string{snapFile(lsn2)}) {
		t.Fatalf("after the second snapshot: segments %v, snapshots %v", segs, snaps)
	}
	l.Close()
	got, rec = recoverState(t, opts)
	sameState(t, got, seqState(span(0, 100)...))
	if rec.SnapshotLSN != lsn2 || rec.Records != 0 {
		t.Errorf("recovery: %+v, want snapshot %d and nothing to replay", rec, lsn2)
	}
}

// TestSnapshotThenSegments recovers a snapshot followed by several full
// segments, with a snapshot that does not fall on a segment boundary.
func TestSnapshotThenSegments(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 512
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 25)
	// Snapshot at an LSN inside the active segment, not at its end: the
	// records of that segment up to the LSN must not be replayed again.
	if err := l.WriteSnapshot(20, contentsOf(seqState(span(0, 20)...))); err != nil {
		t.Fatal(err)
	}
	appendSeq(t, l, 25, 80)
	l.Close()
	segs, _ := files(t, dir)

	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 80)...))
	if rec.SnapshotLSN != 20 || rec.SnapshotEntries != 20 || rec.Records != 60 || rec.Segments != len(segs) {
		t.Errorf("recovery %+v, want snapshot 20 with 20 entries, 60 records over %d segments", rec, len(segs))
	}
}

// TestRecoveryRemovesCoveredSegments: segments that a snapshot made redundant
// but that survived (a crash during cleanup) are removed at the next Open.
func TestRecoveryRemovesCoveredSegments(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 512
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 40)
	saved := copyDir(t, dir)
	oldSegs, _ := files(t, dir)
	lsn := l.LastLSN()
	if err := l.WriteSnapshot(lsn, contentsOf(seqState(span(0, 40)...))); err != nil {
		t.Fatal(err)
	}
	appendSeq(t, l, 40, 45)
	l.Close()
	for _, s := range oldSegs[:len(oldSegs)-1] {
		writeFile(t, filepath.Join(dir, s), readFile(t, filepath.Join(saved, s)))
	}

	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(span(0, 45)...))
	if rec.SnapshotLSN != lsn || rec.Records != 5 {
		t.Errorf("recovery %+v, want snapshot %d and 5 records", rec, lsn)
	}
	segs, _ := files(t, dir)
	for _, s := range oldSegs[:len(oldSegs)-1] {
		if slices.Contains(segs, s) {
			t.Errorf("covered segment %s survived recovery (left: %v)", s, segs)
		}
	}
}

// TestDiskUseIsBounded writes about 50 segments' worth, snapshotting on every
// SnapshotDue as the node does, and checks that files do not pile up.
func TestDiskUseIsBounded(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize, opts.Sync = 1024, SyncNone
	l, _ := openLog(t, opts, nil)
	want := crdt.New()
	snapshots := 0
	for i := range 1700 { // ~31 bytes a record: ~50 segments
		e := crdt.Entry{Key: fmt.Sprintf("k%03d", i%100), Replica: 1, P: uint64(i + 1)}
		want.Merge(e)
		if err := l.Append([]crdt.Entry{e}); err != nil {
			t.Fatal(err)
		}
		if snapshotDue(l) {
			if err := l.WriteSnapshot(l.LastLSN(), contentsOf(want)); err != nil {
				t.Fatal(err)
			}
			snapshots++
		}
		if segs, snaps := files(t, dir); len(segs) > 2 || len(snaps) > 1 {
			t.Fatalf("after record %d: segments %v, snapshots %v", i+1, segs, snaps)
		}
	}
	if snapshots < 45 {
		t.Errorf("only %d snapshots for ~50 segments", snapshots)
	}
	l.Close()
	got, rec := recoverState(t, opts)
	sameState(t, got, want)
	if rec.SnapshotLSN == 0 || rec.Records > 30 {
		t.Errorf("recovery %+v: want a snapshot and at most a segment of records", rec)
	}
}

// TestConcurrentSnapshots appends from many goroutines while another writes
// snapshots on SnapshotDue, following the protocol in the package doc: the
// state is changed and the LSN read in one critical section.
func TestConcurrentSnapshots(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentSize = 2048
	l, _ := openLog(t, opts, nil)

	var mu sync.Mutex
	state := crdt.New()
	stop := make(chan struct{})
	snapDone := make(chan int)
	go func() {
		n := 0
		defer func() { snapDone <- n }()
		for {
			select {
			case <-stop:
				return
			case <-l.SnapshotDue():
				mu.Lock()
				lsn := l.LastLSN()
				es := entriesOf(state)
				mu.Unlock()
				if err := l.WriteSnapshot(lsn, ents(es...)); err != nil {
					t.Error(err)
					return
				}
				n++
			}
		}
	}()

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				e := crdt.Entry{Key: fmt.Sprintf("k%d", i%20), Replica: crdt.ReplicaID(g + 1), P: uint64(i + 1)}
				mu.Lock()
				state.Merge(e)
				mu.Unlock()
				if err := l.Append([]crdt.Entry{e}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := <-snapDone
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d snapshots", n)
	if n == 0 {
		t.Error("no snapshot was written")
	}
	got, rec := recoverState(t, opts)
	sameState(t, got, state)
	if rec.SnapshotLSN == 0 {
		t.Errorf("recovery did not use a snapshot: %+v", rec)
	}
}

// TestStrayFilesIgnored: a snapshot temp file left by a crash, and files
// that are not named like segments or snapshots, play no part in recovery.
func TestStrayFilesIgnored(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l, _ := openLog(t, opts, nil)
	appendSeq(t, l, 0, 5)
	l.Close()
	for _, name := range []string{snapFile(5) + ".tmp", "LOCK", "notes.wal", "00000000000000zz.wal", "1.snap"} {
		writeFile(t, filepath.Join(dir, name), []byte("garbage"))
	}
	got, rec := recoverState(t, opts)
	if len(rec.Discarded) != 0 || rec.SnapshotLSN != 0 || rec.Records != 5 {
		t.Errorf("recovery %+v", rec)
	}
	sameState(t, got, seqState(span(0, 5)...))
}

// TestSnapshotClosesLargeCoveredSegment: a snapshot that covers every
// record of a large active segment closes it, so that it is deleted; a
// node that stops writing after a burst does not keep the burst on disk.
func TestSnapshotClosesLargeCoveredSegment(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l, _ := openLog(t, opts, nil)
	big := func(i int) crdt.Entry {
		return crdt.Entry{Key: fmt.Sprintf("%05d-%s", i, strings.Repeat("k", 400)), Replica: 1, P: uint64(i) + 1}
	}
	want := crdt.New()
	for i := 0; i < 3000; i++ { // ≈ 1.2 MiB, one segment
		if err := l.Append([]crdt.Entry{big(i)}); err != nil {
			t.Fatal(err)
		}
		want.Merge(big(i))
	}
	small := contentsOf(crdt.New()) // the state after reclaim: nothing left
	lsn := l.LastLSN()
	if err := l.WriteSnapshot(lsn, small); err != nil {
		t.Fatal(err)
	}
	segs, snaps := files(t, dir)
	if !slices.Equal(segs, []string{segFile(lsn + 1)}) || !slices.Equal(snaps, []string{snapFile(lsn)}) {
		t.Fatalf("after the snapshot: segments %v, snapshots %v; want only a new empty segment %s and %s", segs, snaps, segFile(lsn+1), snapFile(lsn))
	}
	if size := dirBytes(t, dir); size > 1024 {
		t.Fatalf("data left on disk: %d bytes", size)
	}
	if err := l.Append([]crdt.Entry{seqEntry(1)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got, rec := recoverState(t, opts)
	sameState(t, got, seqState(1))
	if rec.SnapshotLSN != lsn || rec.Records != 1 {
		t.Errorf("recovery: %+v, want snapshot %d and one record", rec, lsn)
	}

	// A small active segment stays: rotating it would only make files.
	l, _ = openLog(t, opts, nil)
	appendSeq(t, l, 2, 5)
	lsn = l.LastLSN()
	if err := l.WriteSnapshot(lsn, contentsOf(seqState(1, 2, 3, 4))); err != nil {
		t.Fatal(err)
	}
	segs, _ = files(t, dir)
	if len(segs) != 1 || segs[0] == segFile(lsn+1) {
		t.Fatalf("a small covered segment was rotated: %v", segs)
	}
	l.Close()
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
