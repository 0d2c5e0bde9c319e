package wal

import (
	"bytes"
	"encoding/hex"
	"flag"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current code")

// The golden logs. Version 1 (read only: the current code reads it but
// writes version 2): five records of entries, and a snapshot taken after
// the third, in three sets of files: golden.* without idempotency keys,
// golden-idem.* where the second and fourth records carry one and the
// snapshot holds the second's, and golden-legacy-idem.*, the same with the
// tag 0x01 and wall-clock expiries as an even older build wrote it.
//
// Version 2: the same five records, then a write with a TTL (an entry and
// a meta in one record), a delete (a meta alone), a write to the generation
// after the delete, and a late entry of the deleted generation; a snapshot
// taken after the sixth. golden-v2.* has no idempotency keys; in
// golden-v2-idem.* the second, fourth and seventh records carry one.
var (
	goldenUTF8 = "счётчик/κλειδί/🔑"
	goldenLong = strings.Repeat("ж", crdt.MaxKeyLen/2) // 512 bytes: a two-byte length

	goldenRecords = [][]crdt.Entry{
		{{Key: "default", Replica: 1, P: 1}},
		{{Key: goldenUTF8, Replica: 0x0123456789abcdef, P: 42, N: 7}, {Key: "default", Replica: 1, P: 2}},
		{{Key: goldenLong, Replica: math.MaxUint64, P: math.MaxUint64, N: math.MaxUint64 - 1}},
		{{Key: "default", Replica: 2, P: 1 << 63, N: 1 << 32}},
		{{Key: goldenUTF8, Replica: 0x0123456789abcdef, P: 43, N: 7}, {Key: "z", Replica: 0, P: 0, N: 1}},
	}
	goldenLifecycle = []crdt.Contents{
		{ // a write with a TTL
			Entries: []crdt.Entry{{Key: "ttl/🔑", Replica: 3, Gen: 2, P: 5}},
			Metas:   []crdt.Meta{{Key: "ttl/🔑", Life: crdt.Life{Gen: 2, TTL: crdt.TTL{Ver: 1, Deadline: 1_700_000_000_000}}}},
		},
		{Metas: []crdt.Meta{{Key: "default", Life: crdt.Life{Gen: 1, Deleted: 1_700_000_000_500}}}}, // a delete
		{Entries: []crdt.Entry{{Key: "default", Replica: 3, Gen: 1, P: 1}}},
		{Entries: []crdt.Entry{{Key: "default", Replica: 1, Gen: 0, P: 3}}}, // too late: dropped
	}

	goldenIdems = map[int]Idem{ // by record index
		1: {Key: "req-1", Request: 0x0123456789abcdef, Value: 49, At: 3_600_000},
		3: {Key: "ключ/🔑", Request: math.MaxUint64, Value: math.MinInt64, At: 1 << 40},
	}
	goldenLegacyIdems = map[int]Idem{ // At holds the expiry, Unix milliseconds
		1: {Key: "req-1", Request: 0x0123456789abcdef, Value: 49, At: 1_700_000_000_000, Legacy: true},
		3: {Key: "ключ/🔑", Request: math.MaxUint64, Value: math.MinInt64, At: 1_700_000_086_400, Legacy: true},
	}
	goldenV2Idems = map[int]Idem{
		1: goldenIdems[1],
		3: goldenIdems[3],
		6: {Key: "delete-1", Request: 99, Value: 0, At: 3_600_500},
	}
)

// goldenV1Records is goldenRecords as contents.
func goldenV1Records() []crdt.Contents {
	var out []crdt.Contents
	for _, r := range goldenRecords {
		out = append(out, ents(r...))
	}
	return out
}

// goldenSet names the files of one golden set and what they hold.
type goldenSet struct {
	wal, snap string
	records   []crdt.Contents
	snapLSN   uint64
	keys      map[int]Idem // idempotency keys by record index; nil: none
	written   bool         // the current code writes it; otherwise read only
}

var goldenSets = []goldenSet{
	{"golden.wal", "golden.snap", goldenV1Records(), 3, nil, false},
	{"golden-idem.wal", "golden-idem.snap", goldenV1Records(), 3, goldenIdems, false},
	{"golden-legacy-idem.wal", "golden-legacy-idem.snap", goldenV1Records(), 3, goldenLegacyIdems, false},
	{"golden-v2.wal", "golden-v2.snap", append(goldenV1Records(), goldenLifecycle...), 6, nil, true},
	{"golden-v2-idem.wal", "golden-v2-idem.snap", append(goldenV1Records(), goldenLifecycle...), 6, goldenV2Idems, true},
}

// idems returns the set's idempotency keys of records with index in
// [from, to), in order.
func (g goldenSet) idems(from, to int) []Idem {
	var out []Idem
	for i := from; i < to; i++ {
		if k, ok := g.keys[i]; ok {
			out = append(out, k)
		}
	}
	return out
}

// state is the state after the set's first n records.
func (g goldenSet) state(n int) *crdt.Keyspace { return keyspaceOfContents(g.records[:n]...) }

// count returns the entries and metas of records with index in [from, to).
func (g goldenSet) count(from, to int) (entries, metas int) {
	for _, r := range g.records[from:to] {
		entries += len(r.Entries)
		metas += len(r.Metas)
	}
	return entries, metas
}

// buildGolden writes the golden log of set g with the current code and
// returns the bytes of its segment and snapshot.
func buildGolden(t *testing.T, g goldenSet) (wal, snap []byte) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	for i, r := range g.records {
		var idem *Idem
		if k := g.idems(i, i+1); len(k) == 1 {
			idem = &k[0]
		}
		if err := l.AppendContents(r, idem); err != nil {
			t.Fatal(err)
		}
	}
	// Contents in a fixed order, so the snapshot's bytes are too.
	if err := l.WriteSnapshot(g.snapLSN, contentsOf(g.state(int(g.snapLSN))), g.idems(0, int(g.snapLSN))...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return readFile(t, filepath.Join(opts.Dir, segFile(1))), readFile(t, filepath.Join(opts.Dir, snapFile(g.snapLSN)))
}

// TestGoldenFiles checks that the code writes exactly the checked-in bytes.
// A difference means the on-disk format changed: bump the version byte in
// the magic, keep a reader for the old version and its golden files, and
// rerun with -update (which rewrites only the sets the code writes).
func TestGoldenFiles(t *testing.T) {
	for _, g := range goldenSets {
		if !g.written {
			continue
		}
		wal, snap := buildGolden(t, g)
		for _, f := range []struct {
			name string
			got  []byte
		}{{g.wal, wal}, {g.snap, snap}} {
			path := filepath.Join("testdata", f.name)
			if *update {
				writeFile(t, path, f.got)
				continue
			}
			want := readFile(t, path)
			if !bytes.Equal(f.got, want) {
				t.Errorf("%s: the log wrote different bytes than the checked-in fixture\ngot:\n%s\nwant:\n%s", f.name, hex.Dump(f.got), hex.Dump(want))
			}
		}
	}
}

// TestGoldenFilesVersion: the version 1 sets are what they claim to be,
// and the written ones are version 2.
func TestGoldenFilesVersion(t *testing.T) {
	for _, g := range goldenSets {
		want := byte(version1)
		if g.written {
			want = version2
		}
		for _, f := range []struct{ name, prefix string }{{g.wal, segMagicPrefix}, {g.snap, snapMagicPrefix}} {
			if v, err := fileVersion(readFile(t, filepath.Join("testdata", f.name)), f.prefix); err != nil || v != want {
				t.Errorf("%s: version %d (%v), want %d", f.name, v, err, want)
			}
		}
	}
}

// TestGoldenFilesRecover opens copies of the checked-in files: whatever the
// code writes now, it must read what older builds wrote.
func TestGoldenFilesRecover(t *testing.T) {
	golden := func(name string) []byte { return readFile(t, filepath.Join("testdata", name)) }
	for _, g := range goldenSets {
		t.Run(g.wal, func(t *testing.T) {
			var keys []Idem
			options := func() Options {
				keys = nil
				opts := testOptions(t, t.TempDir())
				opts.OnIdem = func(i Idem) { keys = append(keys, i) }
				return opts
			}
			wantKeys := func(want []Idem) {
				t.Helper()
				if !reflect.DeepEqual(keys, want) {
					t.Errorf("idempotency keys %+v, want %+v", keys, want)
				}
			}
			n, snapLSN := len(g.records), int(g.snapLSN)
			t.Run("log", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, segFile(1)), golden(g.wal))
				l, rec := openLog(t, opts, nil)
				entries, metas := g.count(0, n)
				if rec.Records != n || rec.Entries != entries || rec.Metas != metas || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
					t.Errorf("recovery %+v, want %d records, %d entries and %d metas", rec, n, entries, metas)
				}
				if l.LastLSN() != uint64(n) {
					t.Errorf("LastLSN = %d, want %d", l.LastLSN(), n)
				}
				l.Close()
				wantKeys(g.idems(0, n))
				got, _ := recoverState(t, opts)
				sameState(t, got, g.state(n))
			})
			t.Run("snapshot-and-log", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, segFile(1)), golden(g.wal))
				writeFile(t, filepath.Join(opts.Dir, snapFile(g.snapLSN)), golden(g.snap))
				got, rec := recoverState(t, opts)
				snap := g.state(snapLSN)
				entries, metas := g.count(snapLSN, n)
				if rec.SnapshotLSN != g.snapLSN || rec.SnapshotEntries != snap.Entries() || rec.SnapshotMetas != len(contentsOf(snap).Metas) ||
					rec.Records != n-snapLSN || rec.Entries != entries || rec.Metas != metas {
					t.Errorf("recovery %+v, want snapshot %d with %d entries, then %d records with %d entries and %d metas",
						rec, g.snapLSN, snap.Entries(), n-snapLSN, entries, metas)
				}
				sameState(t, got, g.state(n))
				wantKeys(append(g.idems(0, snapLSN), g.idems(snapLSN, n)...))
				got, _ = recoverInto(t, opts)
				sameState(t, got, g.state(n))
			})
			t.Run("snapshot-only", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, snapFile(g.snapLSN)), golden(g.snap))
				got, rec := recoverState(t, opts)
				if rec.SnapshotLSN != g.snapLSN || rec.Records != 0 {
					t.Errorf("recovery %+v", rec)
				}
				sameState(t, got, g.state(snapLSN))
				wantKeys(g.idems(0, snapLSN))
			})
		})
	}
}

// TestGoldenV1ThenV2: a version 1 data dir, opened by this version, goes on
// in version 2 segments after the version 1 one; both read back, with
// snapshots and without, and the version 1 files stay as they were until a
// snapshot makes them redundant.
func TestGoldenV1ThenV2(t *testing.T) {
	g := goldenSets[1] // golden-idem: version 1 with idempotency keys
	opts := testOptions(t, t.TempDir())
	var keys []Idem
	opts.OnIdem = func(i Idem) { keys = append(keys, i) }
	v1 := readFile(t, filepath.Join("testdata", g.wal))
	writeFile(t, filepath.Join(opts.Dir, segFile(1)), v1)
	writeFile(t, filepath.Join(opts.Dir, snapFile(g.snapLSN)), readFile(t, filepath.Join("testdata", g.snap)))

	ks := crdt.New()
	l, rec := openLog(t, opts, ks)
	if rec.SnapshotLSN != 3 || rec.Records != 2 || len(rec.Discarded) != 0 || rec.TornBytes != 0 {
		t.Fatalf("recovery of the version 1 dir %+v", rec)
	}
	sameState(t, ks, g.state(5))
	idem := Idem{Key: "after-upgrade", Request: 5, Value: 2, At: 1}
	for i, c := range goldenLifecycle {
		var k *Idem
		if i == 1 {
			k = &idem
		}
		if err := l.AppendContents(c, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := keyspaceOfContents(append(goldenV1Records(), goldenLifecycle...)...)
	segs, _ := files(t, opts.Dir)
	if len(segs) != 2 || segs[1] != segFile(6) {
		t.Fatalf("segments %v, want the version 1 one and one from LSN 6", segs)
	}
	if got := readFile(t, filepath.Join(opts.Dir, segs[0])); !bytes.Equal(got, v1) {
		t.Error("the version 1 segment changed")
	}
	for i, name := range segs {
		want := []byte{version1, version2}[i]
		if v, err := fileVersion(readFile(t, filepath.Join(opts.Dir, name)), segMagicPrefix); v != want || err != nil {
			t.Errorf("%s: version %d (%v), want %d", name, v, err, want)
		}
	}
	wantKeys := append(g.idems(0, 5), idem)

	keys = nil
	got, rec := recoverInto(t, opts)
	if rec.Records != 6 || rec.Metas != 2 || len(rec.Discarded) != 0 || rec.TornBytes != 0 {
		t.Errorf("recovery %+v, want 6 records (2 after the snapshot, 4 after the upgrade) with 2 metas", rec)
	}
	sameState(t, got, want)
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("idempotency keys %+v, want %+v", keys, wantKeys)
	}

	// A version 2 snapshot makes the version 1 files redundant.
	l, _ = openLog(t, opts, nil)
	if err := l.WriteSnapshot(l.LastLSN(), contentsOf(want), wantKeys...); err != nil {
		t.Fatal(err)
	}
	l.Close()
	keys = nil
	segs, snaps := files(t, opts.Dir)
	if len(snaps) != 1 || slices.Contains(segs, segFile(1)) {
		t.Errorf("after a snapshot: segments %v, snapshots %v", segs, snaps)
	}
	got, rec = recoverInto(t, opts)
	sameState(t, got, want)
	if rec.Records != 0 || rec.SnapshotMetas != len(contentsOf(want).Metas) || !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("recovery from the version 2 snapshot %+v, keys %+v", rec, keys)
	}
}

// The version 2 layout of TestFormatLayout, written out by hand: a write
// with a TTL (an entry and a meta), then a delete carrying an idempotency
// key (a meta alone), and a snapshot of the state after the first.
var (
	layoutEntry = crdt.Entry{Key: "a", Replica: 2, Gen: 1, P: 300, N: 5}
	layoutTTL   = crdt.Meta{Key: "a", Life: crdt.Life{Gen: 1, TTL: crdt.TTL{Ver: 2, Deadline: 1_700_000_000_000}}}
	layoutDel   = crdt.Meta{Key: "a", Life: crdt.Life{Gen: 2, Deleted: 1_700_000_000_500}}
	layoutIdem  = Idem{Key: "k", Request: 0x0102030405060708, Value: -5, At: 3_600_000}

	layoutSeg = `
		4443 57414c 0000 02     # "DCWAL\0\0\2"
		0100000000000000        # first LSN 1
		24000000                # payload length 36
		33fee715                # CRC-32C of the payload
		0100000000000000        # LSN 1
		01                      # one entry
		01 61                   # key "a"
		0200000000000000        # replica 2
		01                      # generation 1
		ac02                    # P 300
		05                      # N 5
		03 01                   # metas: one
		01 61                   # key "a"
		01                      # generation 1
		02                      # TTL version 2
		80a0abfef962            # deadline 1,700,000,000,000 (zigzag varint)
		00                      # deleted 0: not a tombstone
		26000000                # payload length 38
		cb9c5ec4                # CRC-32C of the payload
		0200000000000000        # LSN 2
		00                      # no entries
		03 01                   # metas: one
		01 61 02 00 00          # key "a", generation 2, TTL version 0, no deadline
		e8a7abfef962            # deleted at 1,700,000,000,500 (zigzag varint)
		02                      # idempotency key follows
		01 6b                   # key "k"
		0807060504030201        # request fingerprint
		09                      # value -5 (zigzag varint)
		80bab703                # At 3,600,000 ms (zigzag varint)
	`
	layoutSnap = `
		4443 534e 4150 0002     # "DCSNAP\0\2"
		0100000000000000        # covers LSN 1
		0100000000000000        # one entry
		01 61 0200000000000000 01 ac02 05
		03 01                   # metas: one
		01 61 01 02 80a0abfef962 00
		02 01                   # idempotency keys: one
		01 6b 0807060504030201 09 80bab703
		d4fecefd                # CRC-32C of all the above
	`
)

// TestFormatLayout pins the version 2 layout documented in doc.go with
// bytes written out by hand, independent of the encoder, and reads them
// back.
func TestFormatLayout(t *testing.T) {
	wantSeg, wantSnap := unhex(t, layoutSeg), unhex(t, layoutSnap)
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	first := crdt.Contents{Entries: []crdt.Entry{layoutEntry}, Metas: []crdt.Meta{layoutTTL}}
	if err := l.AppendContents(first, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendContents(crdt.Contents{Metas: []crdt.Meta{layoutDel}}, &layoutIdem); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteSnapshot(1, first, layoutIdem); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := readFile(t, filepath.Join(opts.Dir, segFile(1))); !bytes.Equal(got, wantSeg) {
		t.Errorf("segment:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(wantSeg))
	}
	if got := readFile(t, filepath.Join(opts.Dir, snapFile(1))); !bytes.Equal(got, wantSnap) {
		t.Errorf("snapshot:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(wantSnap))
	}
	// Files are named by LSN in 16 hex digits.
	segs, snaps := files(t, opts.Dir)
	if len(segs) != 1 || segs[0] != "0000000000000001.wal" || len(snaps) != 1 || snaps[0] != "0000000000000001.snap" {
		t.Errorf("files %v %v", segs, snaps)
	}

	// The hand-written bytes read back: the snapshot, then the delete,
	// whose tombstone drops the entry of generation 1.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, segFile(1)), wantSeg)
	writeFile(t, filepath.Join(dir, snapFile(1)), wantSnap)
	var entries []crdt.Entry
	var metas []crdt.Meta
	var keys []Idem
	opts = testOptions(t, dir)
	opts.OnIdem = func(i Idem) { keys = append(keys, i) }
	l, rec, err := openApplyAll(opts, func(e crdt.Entry) { entries = append(entries, e) }, func(m crdt.Meta) { metas = append(metas, m) })
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rec.SnapshotEntries != 1 || rec.SnapshotMetas != 1 || rec.Records != 1 || rec.Entries != 0 || rec.Metas != 1 {
		t.Errorf("recovery %+v", rec)
	}
	if !reflect.DeepEqual(entries, []crdt.Entry{layoutEntry}) || !reflect.DeepEqual(metas, []crdt.Meta{layoutTTL, layoutDel}) ||
		!reflect.DeepEqual(keys, []Idem{layoutIdem, layoutIdem}) {
		t.Errorf("read entries %+v, metas %+v, keys %+v", entries, metas, keys)
	}
	got, _ := recoverInto(t, opts)
	sameState(t, got, keyspaceOfContents(first, crdt.Contents{Metas: []crdt.Meta{layoutDel}}))
	if st := got.StatusOf("a", 0); st.Live || st.Gen != 2 {
		t.Errorf("after the delete: %+v", st)
	}
}

// TestFormatLayoutV1 reads version 1 files written out by hand, as
// documented in doc.go: entries have no generation (they read as
// generation 0) and there are no metas.
func TestFormatLayoutV1(t *testing.T) {
	seg := unhex(t, `
		4443 57414c 0000 01     # "DCWAL\0\0\1"
		0100000000000000        # first LSN 1
		16000000                # payload length 22
		e15a6298                # CRC-32C of the payload
		0100000000000000        # LSN 1
		01                      # one entry
		01 61                   # key "a"
		0200000000000000        # replica 2
		ac02                    # P 300
		05                      # N 5
		26000000                # payload length 38
		0465774d                # CRC-32C of the payload
		0200000000000000        # LSN 2
		01                      # one entry
		01 61 0200000000000000 ad02 05
		02                      # idempotency key follows
		01 6b 0807060504030201 09 80bab703
	`)
	snap := unhex(t, `
		4443 534e 4150 0001     # "DCSNAP\0\1"
		0100000000000000        # covers LSN 1
		0100000000000000        # one entry
		01 61 0200000000000000 ac02 05
		02 01                   # idempotency keys: one
		01 6b 0807060504030201 09 80bab703
		b4121d9b                # CRC-32C of all the above
	`)
	idem := Idem{Key: "k", Request: 0x0102030405060708, Value: -5, At: 3_600_000}
	for _, withSnap := range []bool{false, true} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, segFile(1)), seg)
		if withSnap {
			writeFile(t, filepath.Join(dir, snapFile(1)), snap)
		}
		var keys []Idem
		opts := testOptions(t, dir)
		opts.OnIdem = func(i Idem) { keys = append(keys, i) }
		got, rec := recoverInto(t, opts)
		if len(rec.Discarded) != 0 || rec.TornBytes != 0 || rec.Metas != 0 || rec.SnapshotMetas != 0 {
			t.Errorf("recovery %+v", rec)
		}
		sameState(t, got, keyspaceOf([]crdt.Entry{{Key: "a", Replica: 2, P: 301, N: 5}}))
		want := []Idem{idem}
		if withSnap {
			want = append(want, idem)
		}
		if !reflect.DeepEqual(keys, want) {
			t.Errorf("keys %+v, want %+v", keys, want)
		}
	}
}

// unhex decodes hex digits written out by hand, ignoring spaces and
// # comments.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
