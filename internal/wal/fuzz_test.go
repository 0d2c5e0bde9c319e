package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Fuzz modes: what the input becomes on disk.
const (
	fuzzSegmentBody    = iota // the bytes after a valid segment header
	fuzzRecordBody            // the payload of one record with a valid length and CRC
	fuzzSnapshotFile          // a whole snapshot file
	fuzzSnapshotBody          // a snapshot's bytes after its magic and LSN, with a valid CRC
	fuzzSegmentBodyV1         // fuzzSegmentBody under a version 1 header
	fuzzRecordBodyV1          // fuzzRecordBody under a version 1 header
	fuzzSnapshotBodyV1        // fuzzSnapshotBody under a version 1 magic
	fuzzModes
)

// fuzzVersion is the format version of mode's segment or snapshot magic.
func fuzzVersion(mode uint8) byte {
	if mode >= fuzzSegmentBodyV1 {
		return version1
	}
	return version2
}

// fuzzFiles lays out input as mode says, in a fresh directory.
func fuzzFiles(t *testing.T, mode uint8, input []byte) string {
	dir := t.TempDir()
	switch mode {
	case fuzzSegmentBody, fuzzRecordBody, fuzzSegmentBodyV1, fuzzRecordBodyV1:
		seg := binary.LittleEndian.AppendUint64([]byte(segMagicPrefix+string(rune(fuzzVersion(mode)))), 1)
		if mode == fuzzRecordBody || mode == fuzzRecordBodyV1 {
			seg = binary.LittleEndian.AppendUint32(seg, uint32(len(input)))
			seg = binary.LittleEndian.AppendUint32(seg, crc32.Checksum(input, castagnoli))
		}
		writeFile(t, filepath.Join(dir, segFile(1)), append(seg, input...))
	case fuzzSnapshotFile:
		writeFile(t, filepath.Join(dir, snapFile(1)), input)
	case fuzzSnapshotBody, fuzzSnapshotBodyV1:
		snap := binary.LittleEndian.AppendUint64([]byte(snapMagicPrefix+string(rune(fuzzVersion(mode)))), 1)
		snap = append(snap, input...)
		snap = binary.LittleEndian.AppendUint32(snap, crc32.Checksum(snap, castagnoli))
		writeFile(t, filepath.Join(dir, snapFile(1)), snap)
	}
	return dir
}

// fuzzSeeds returns inputs for every mode: valid logs, cut ones, bit flips,
// and lengths that promise far more bytes than follow.
func fuzzSeeds(t testing.TB) (seeds []struct {
	mode  uint8
	input []byte
}) {
	add := func(mode uint8, b []byte) {
		seeds = append(seeds, struct {
			mode  uint8
			input []byte
		}{mode, slices.Clone(b)})
	}
	entries := []crdt.Entry{
		{Key: "default", Replica: 1, P: 5, N: 2},
		{Key: "счётчик", Replica: 1 << 63, Gen: 3, P: 1 << 62, N: 0},
	}
	metas := []crdt.Meta{
		{Key: "default", Life: crdt.Life{Gen: 1, Deleted: 1_700_000_000_000}},
		{Key: "счётчик", Life: crdt.Life{Gen: 3, TTL: crdt.TTL{Ver: 2, Deadline: -1}}},
	}
	idem := Idem{Key: "req-1", Request: 7, Value: -3, At: 3_600_000}
	for _, v := range []byte{version2, version1} {
		segBody, recBody, snapBody := uint8(fuzzSegmentBody), uint8(fuzzRecordBody), uint8(fuzzSnapshotBody)
		if v == version1 {
			segBody, recBody, snapBody = fuzzSegmentBodyV1, fuzzRecordBodyV1, fuzzSnapshotBodyV1
		}
		record := func(b []byte, lsn uint64, c crdt.Contents, idem *Idem) []byte {
			if v == version1 {
				return appendRecordV1(b, lsn, c.Entries, idem, idemTag)
			}
			return appendRecord(b, lsn, c, idem)
		}
		// Segment bodies: three valid records, then damaged copies.
		var body []byte
		for lsn := uint64(1); lsn <= 3; lsn++ {
			body = record(body, lsn, crdt.Contents{Entries: entries[:1+lsn%2], Metas: metas[:lsn%3]}, nil)
		}
		add(segBody, body)
		add(segBody, nil)
		for _, cut := range []int{1, 7, 8, 9, len(body) / 2, len(body) - 1} {
			add(segBody, body[:cut])
		}
		for _, i := range []int{0, 4, 9, len(body) / 2, len(body) - 1} {
			b := slices.Clone(body)
			b[i] ^= 0x10
			add(segBody, b)
		}
		add(segBody, append(slices.Clone(body), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5))
		add(segBody, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
		add(segBody, append(binary.LittleEndian.AppendUint32(nil, MaxRecord), 0, 0, 0, 0, 1, 2))
		add(segBody, make([]byte, 64))
		// Records with idempotency keys.
		keyed := record(nil, 1, ents(entries[:1]...), &idem)
		keyed = record(keyed, 2, crdt.Contents{Entries: entries, Metas: metas}, &idem)
		add(segBody, keyed)
		// A torn record whose key holds a whole record frame, with an LSN in and
		// out of the window recovery accepts.
		for _, lsn := range []uint64{2, 3, 1 << 40} {
			frame := record(nil, lsn, ents(entries[:1]...), nil)
			torn := record(nil, 1, ents(entries[:1]...), nil)
			torn = record(torn, 2, ents(crdt.Entry{Key: "frame:" + string(frame) + ":end", Replica: 9, P: 1}), nil)
			end := len(torn) - 8 - 1 - 1 - len(":end") // the end of the frame inside the key
			if v == version2 {
				end-- // the generation
			}
			add(segBody, torn[:end])
			add(segBody, torn[:end+2])
		}

		// Record payloads: LSN, entry count, entries, sections.
		r := record(nil, 1, crdt.Contents{Entries: entries, Metas: metas}, &idem)
		payload := r[recHeader:]
		add(recBody, payload)
		add(recBody, payload[:len(payload)-1])
		add(recBody, append(slices.Clone(payload[:8]), 0xff, 0xff, 0xff, 0xff, 0x0f))      // huge count
		add(recBody, append(slices.Clone(payload[:9]), 0xff, 0xff, 0xff, 0xff, 0x0f, 'k')) // huge key length
		add(recBody, append(slices.Clone(payload), 0))                                     // trailing byte
		// Sections: every tag after the entries, a huge meta count, a
		// repeated section, the wrong order.
		noSections := record(nil, 1, ents(entries...), nil)[recHeader:]
		for _, tag := range []byte{0, legacyIdemTag, idemTag, metaTag, 4, 0xff} {
			add(recBody, append(slices.Clone(noSections), tag))
			add(recBody, append(append(slices.Clone(noSections), tag), 1, 1, 'k', 1, 0, 0, 0))
		}
		add(recBody, append(append(slices.Clone(noSections), metaTag), 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 'k'))
		meta := appendMeta(nil, metas[0])
		twice := append(append(slices.Clone(noSections), metaTag, 1), meta...)
		add(recBody, append(append(slices.Clone(twice), metaTag, 1), meta...))
		idemFirst := append(slices.Clone(noSections), idemTag)
		idemFirst = append(append(appendIdem(idemFirst, idem), metaTag, 1), meta...)
		add(recBody, idemFirst)

		// Snapshots.
		name := filepath.Join(t.TempDir(), snapFile(1))
		if v == version1 {
			writeFile(t, name, snapshotV1(1, entries, []Idem{idem, {Key: "k", At: 1}}, idemTag))
		} else if err := writeSnapshot(name, 1, crdt.Contents{Entries: entries, Metas: metas}, []Idem{idem, {Key: "k", At: 1}}); err != nil {
			t.Fatal(err)
		}
		snap := readFile(t, name)
		add(fuzzSnapshotFile, snap)
		add(fuzzSnapshotFile, snap[:len(snap)-1])
		add(fuzzSnapshotFile, snap[:snapHeader])
		b := slices.Clone(snap)
		b[snapHeader+2] ^= 4
		add(fuzzSnapshotFile, b)
		sbody := snap[16 : len(snap)-4] // count, entries and sections
		add(snapBody, sbody)
		add(snapBody, sbody[:len(sbody)-2])
		huge := slices.Clone(sbody)
		binary.LittleEndian.PutUint64(huge, 1<<62)
		add(snapBody, huge)
		add(snapBody, append(binary.LittleEndian.AppendUint64(nil, 1), 0xff, 0xff, 0xff, 0xff, 0x0f))
	}
	return seeds
}

// FuzzRecovery writes the input as part of a segment or a snapshot, of
// either format version, and opens the log, with and without
// DiscardCorrupt. Open must not panic, must fail only with ErrCorrupt (or
// ErrNewerFormat for a snapshot file whose magic claims a newer version),
// must otherwise always succeed when discarding, and a log it
// opened must open again to the same state with nothing left to cut.
//
// Open fsyncs, so on a real disk the fuzzer manages a few hundred inputs a
// second and stalls while minimizing; point TMPDIR at a tmpfs:
//
//	TMPDIR=/dev/shm go test -run='^$' -fuzz=FuzzRecovery -fuzztime=60s ./internal/wal/
func FuzzRecovery(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.mode, false, s.input)
		f.Add(s.mode, true, s.input)
	}
	f.Fuzz(func(t *testing.T, mode uint8, discard bool, input []byte) {
		mode %= fuzzModes
		dir := fuzzFiles(t, mode, input)
		opts := Options{Dir: dir, Sync: SyncNone, DiscardCorrupt: discard, Logger: slog.New(slog.DiscardHandler)}

		ks := crdt.New()
		l, rec, err := openApplyAll(opts, func(e crdt.Entry) { ks.Merge(e) }, func(m crdt.Meta) { ks.MergeMeta(m) })
		if errors.Is(err, ErrNewerFormat) && mode == fuzzSnapshotFile {
			return // a whole snapshot file may claim any version
		}
		if err != nil {
			if discard || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open (discard %v): %v", discard, err)
			}
			return
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		// The second time through Open, which must agree with openApply.
		ks2 := crdt.New()
		l, rec2, err := Open(opts, ks2)
		if err != nil {
			t.Fatalf("a log that opened once does not open again: %v (first recovery %+v)", err, rec)
		}
		l.Close()
		if rec2.TornBytes != 0 {
			t.Fatalf("second recovery cut %d more bytes (first: %+v)", rec2.TornBytes, rec)
		}
		// A record that is cut or discarded may have been applied in part
		// (TestCutRecordIsNotApplied), so compare only clean recoveries.
		if rec.TornBytes == 0 && len(rec.Discarded) == 0 {
			if len(rec2.Discarded) != 0 {
				t.Fatalf("second recovery discarded %q after a clean first one", rec2.Discarded)
			}
			if !maps.Equal(dump(ks), dump(ks2)) {
				t.Fatalf("recovered states differ: %v then %v", dump(ks), dump(ks2))
			}
		}
	})
}
