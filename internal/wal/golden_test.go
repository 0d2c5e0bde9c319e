package wal

import (
	"bytes"
	"encoding/hex"
	"flag"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current code")

// The golden log: five records, and a snapshot taken after the third. It
// comes in two sets of files: golden.* without idempotency keys, and
// golden-idem.* where the second and fourth records carry one and the
// snapshot holds the second's. golden-legacy-idem.* is the same log as an
// older version wrote it, with the tag 0x01 and wall-clock expiries; the
// current code cannot write it, only read it.
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
	goldenSnapLSN = uint64(3)

	goldenIdems = map[int]Idem{ // by record index
		1: {Key: "req-1", Request: 0x0123456789abcdef, Value: 49, At: 3_600_000},
		3: {Key: "ключ/🔑", Request: math.MaxUint64, Value: math.MinInt64, At: 1 << 40},
	}
	goldenLegacyIdems = map[int]Idem{ // At holds the expiry, Unix milliseconds
		1: {Key: "req-1", Request: 0x0123456789abcdef, Value: 49, At: 1_700_000_000_000, Legacy: true},
		3: {Key: "ключ/🔑", Request: math.MaxUint64, Value: math.MinInt64, At: 1_700_000_086_400, Legacy: true},
	}
)

// goldenSet names the files of one golden set.
type goldenSet struct {
	wal, snap string
	idem      bool
	legacy    bool // written by an older version: read only
}

var goldenSets = []goldenSet{
	{"golden.wal", "golden.snap", false, false},
	{"golden-idem.wal", "golden-idem.snap", true, false},
	{"golden-legacy-idem.wal", "golden-legacy-idem.snap", true, true},
}

// idems returns the set's idempotency keys of records with index in
// [from, to), in order.
func (g goldenSet) idems(from, to int) []Idem {
	var out []Idem
	keys := goldenIdems
	if g.legacy {
		keys = goldenLegacyIdems
	}
	for i := from; i < to && g.idem; i++ {
		if k, ok := keys[i]; ok {
			out = append(out, k)
		}
	}
	return out
}

// goldenState is the state after the first n golden records.
func goldenState(n int) *crdt.Keyspace { return keyspaceOf(goldenRecords[:n]...) }

// buildGolden writes the golden log of set g with the current code and
// returns the bytes of its segment and snapshot.
func buildGolden(t *testing.T, g goldenSet) (wal, snap []byte) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	for i, r := range goldenRecords {
		var idem *Idem
		if k := g.idems(i, i+1); len(k) == 1 {
			idem = &k[0]
		}
		if err := l.AppendKeyed(r, idem); err != nil {
			t.Fatal(err)
		}
	}
	// Entries in a fixed order, so the snapshot's bytes are too.
	if err := l.WriteSnapshot(goldenSnapLSN, entriesOf(goldenState(int(goldenSnapLSN))), g.idems(0, int(goldenSnapLSN))...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return readFile(t, filepath.Join(opts.Dir, segFile(1))), readFile(t, filepath.Join(opts.Dir, snapFile(goldenSnapLSN)))
}

// TestGoldenFiles checks that the code writes exactly the checked-in bytes.
// A difference means the on-disk format changed: bump the version byte in
// the magic, keep a reader for the old version, and rerun with -update.
func TestGoldenFiles(t *testing.T) {
	for _, g := range goldenSets {
		if g.legacy {
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
			t.Run("log", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, segFile(1)), golden(g.wal))
				l, rec := openLog(t, opts, nil)
				if rec.Records != 5 || rec.Entries != 7 || rec.TornBytes != 0 || len(rec.Discarded) != 0 {
					t.Errorf("recovery %+v, want 5 records and 7 entries", rec)
				}
				if l.LastLSN() != 5 {
					t.Errorf("LastLSN = %d, want 5", l.LastLSN())
				}
				l.Close()
				wantKeys(g.idems(0, 5))
				got, _ := recoverState(t, opts)
				sameState(t, got, goldenState(5))
			})
			t.Run("snapshot-and-log", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, segFile(1)), golden(g.wal))
				writeFile(t, filepath.Join(opts.Dir, snapFile(goldenSnapLSN)), golden(g.snap))
				got, rec := recoverState(t, opts)
				if rec.SnapshotLSN != 3 || rec.SnapshotEntries != goldenState(3).Entries() || rec.Records != 2 || rec.Entries != 3 {
					t.Errorf("recovery %+v, want snapshot 3 with %d entries, then 2 records with 3 entries", rec, goldenState(3).Entries())
				}
				sameState(t, got, goldenState(5))
				wantKeys(append(g.idems(0, 3), g.idems(3, 5)...))
				got, _ = recoverInto(t, opts)
				sameState(t, got, goldenState(5))
			})
			t.Run("snapshot-only", func(t *testing.T) {
				opts := options()
				writeFile(t, filepath.Join(opts.Dir, snapFile(goldenSnapLSN)), golden(g.snap))
				got, rec := recoverState(t, opts)
				if rec.SnapshotLSN != 3 || rec.Records != 0 {
					t.Errorf("recovery %+v", rec)
				}
				sameState(t, got, goldenState(3))
				wantKeys(g.idems(0, 3))
			})
		})
	}
}

// TestFormatLayout pins the layout documented in doc.go with bytes written
// out by hand, independent of the encoder.
func TestFormatLayout(t *testing.T) {
	entry := crdt.Entry{Key: "a", Replica: 2, P: 300, N: 5}
	wantSeg := unhex(t, `
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
	`)
	wantSnap := unhex(t, `
		4443 534e 4150 0001     # "DCSNAP\0\1"
		0100000000000000        # covers LSN 1
		0100000000000000        # one entry
		01 61 0200000000000000 ac02 05
		b9be5054                # CRC-32C of all the above
	`)

	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	if err := l.Append([]crdt.Entry{entry}); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteSnapshot(1, []crdt.Entry{entry}); err != nil {
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
