package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// randomLifecycle returns n changes of a random lifecycle workload over a
// few keys: writes (some with a TTL), deletes, and TTL changes, each as
// one change's contents, built against a keyspace that follows them.
func randomLifecycle(seed uint64, n int) []crdt.Contents {
	rng := rand.New(rand.NewPCG(seed, 1))
	ks := crdt.New()
	var out []crdt.Contents
	for range n {
		key := fmt.Sprintf("life-%d", rng.IntN(8))
		now := int64(1_700_000_000_000 + rng.IntN(1_000_000))
		var c crdt.Contents
		switch rng.IntN(4) {
		case 0:
			m, _ := ks.Deletion(key, now)
			c.Metas = append(c.Metas, m)
		default:
			r := crdt.ReplicaID(rng.IntN(3) + 1)
			gen, cur := ks.WriteGen(key, r, now)
			e, err := crdt.Change(key, r, gen, cur, 0, int64(rng.IntN(100)+1))
			if err != nil {
				panic(err)
			}
			c.Entries = append(c.Entries, e)
			if rng.IntN(2) == 0 {
				if m, ok := ks.Expiry(key, gen, now+int64(rng.IntN(600_000)), crdt.TTLAlways); ok {
					c.Metas = append(c.Metas, m)
				}
			}
		}
		for _, m := range c.Metas {
			ks.MergeMeta(m)
		}
		for _, e := range c.Entries {
			ks.Merge(e)
		}
		out = append(out, c)
	}
	return out
}

// TestMetasRoundTrip: entries and metas logged together come back from
// the records, from a snapshot, and from a snapshot followed by records,
// exactly as they were logged.
func TestMetasRoundTrip(t *testing.T) {
	changes := randomLifecycle(1, 400)
	want := keyspaceOfContents(changes...)
	opts := testOptions(t, t.TempDir())
	var gotEntries []crdt.Entry
	var gotMetas []crdt.Meta
	l, _, err := openApplyAll(opts, func(crdt.Entry) {}, func(crdt.Meta) {})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changes[:300] {
		if i%2 == 0 {
			l.AppendAsync(c)
		} else if err := l.AppendContents(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()

	// Every item comes back as logged, in order.
	l, rec, err := openApplyAll(opts, func(e crdt.Entry) { gotEntries = append(gotEntries, e) }, func(m crdt.Meta) { gotMetas = append(gotMetas, m) })
	if err != nil {
		t.Fatal(err)
	}
	var wantEntries []crdt.Entry
	var wantMetas []crdt.Meta
	for _, c := range changes[:300] {
		wantEntries = append(wantEntries, c.Entries...)
		wantMetas = append(wantMetas, c.Metas...)
	}
	if !reflect.DeepEqual(gotEntries, wantEntries) || !reflect.DeepEqual(gotMetas, wantMetas) {
		t.Fatalf("read back %d entries and %d metas, not the %d and %d logged", len(gotEntries), len(gotMetas), len(wantEntries), len(wantMetas))
	}
	if rec.Records != 300 || rec.Entries != len(wantEntries) || rec.Metas != len(wantMetas) {
		t.Errorf("recovery %+v", rec)
	}
	// A snapshot of the first 300 changes, then the other 100 as records.
	snap := contentsOf(keyspaceOfContents(changes[:300]...))
	if len(snap.Metas) == 0 {
		t.Fatal("the workload left no metas to snapshot")
	}
	if err := l.WriteSnapshot(l.LastLSN(), snap); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes[300:] {
		if err := l.AppendContents(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	got, rec := recoverInto(t, opts)
	if rec.SnapshotEntries != len(snap.Entries) || rec.SnapshotMetas != len(snap.Metas) || rec.Records != 100 {
		t.Errorf("recovery %+v, want a snapshot of %d entries and %d metas, then 100 records", rec, len(snap.Entries), len(snap.Metas))
	}
	sameState(t, got, want)
	if got.Root() != want.Root() {
		t.Errorf("digest root %x, want %x", got.Root(), want.Root())
	}
	// And from the snapshot alone.
	l, _ = openLog(t, opts, nil)
	if err := l.WriteSnapshot(l.LastLSN(), contentsOf(want)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got, rec = recoverInto(t, opts)
	if rec.Records != 0 {
		t.Errorf("recovery %+v", rec)
	}
	sameState(t, got, want)
}

// TestDeleteRecovered: a delete's tombstone drops the entries of the
// generations before it however the records holding them are ordered
// around it, and whether they come from a snapshot or from records.
func TestDeleteRecovered(t *testing.T) {
	old := []crdt.Entry{{Key: "k", Replica: 1, P: 7}, {Key: "k", Replica: 2, N: 3}}
	del := crdt.Meta{Key: "k", Life: crdt.Life{Gen: 1, Deleted: 1_700_000_000_000}}
	after := crdt.Entry{Key: "k", Replica: 3, Gen: 1, P: 2}
	orders := map[string][]crdt.Contents{
		"old-delete-new": {ents(old[0]), ents(old[1]), {Metas: []crdt.Meta{del}}, ents(after)},
		"delete-first":   {{Metas: []crdt.Meta{del}}, ents(old...), ents(after)},
		"new-first":      {ents(after), ents(old[1]), {Metas: []crdt.Meta{del}}, ents(old[0])},
		"one-record":     {{Entries: append([]crdt.Entry{after}, old...), Metas: []crdt.Meta{del}}},
	}
	want := keyspaceOfContents(crdt.Contents{Metas: []crdt.Meta{del}}, ents(after))
	for name, records := range orders {
		t.Run(name, func(t *testing.T) {
			for snapAfter := 0; snapAfter <= len(records); snapAfter++ {
				opts := testOptions(t, t.TempDir())
				l, _ := openLog(t, opts, nil)
				for i, c := range records {
					if i == snapAfter {
						if err := l.WriteSnapshot(l.LastLSN(), contentsOf(keyspaceOfContents(records[:i]...))); err != nil {
							t.Fatal(err)
						}
					}
					if err := l.AppendContents(c, nil); err != nil {
						t.Fatal(err)
					}
				}
				l.Close()
				got, _ := recoverInto(t, opts)
				sameState(t, got, want)
				if st := got.StatusOf("k", 1_700_000_000_001); !st.Live || st.Value != 2 || st.Gen != 1 {
					t.Errorf("snapshot after %d records: status %+v, want live with 2 in generation 1", snapAfter, st)
				}
			}
		})
	}
}

// TestExpiredRecovered: a write with a TTL is one record of an entry and a
// meta, and reads back expired after its deadline.
func TestExpiredRecovered(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l, _ := openLog(t, opts, nil)
	c := crdt.Contents{
		Entries: []crdt.Entry{{Key: "rate/1.2.3.4", Replica: 1, P: 3}},
		Metas:   []crdt.Meta{{Key: "rate/1.2.3.4", Life: crdt.Life{TTL: crdt.TTL{Ver: 1, Deadline: 5000}}}},
	}
	if err := l.AppendContents(c, nil); err != nil {
		t.Fatal(err)
	}
	if got := l.LastLSN(); got != 1 {
		t.Errorf("a write with a TTL took %d records", got)
	}
	l.Close()
	got, rec := recoverInto(t, opts)
	if rec.Records != 1 || rec.Entries != 1 || rec.Metas != 1 {
		t.Errorf("recovery %+v", rec)
	}
	if st := got.StatusOf("rate/1.2.3.4", 4999); !st.Live || st.Value != 3 || st.Deadline != 5000 {
		t.Errorf("before the deadline: %+v", st)
	}
	if st := got.StatusOf("rate/1.2.3.4", 5000); st.Live {
		t.Errorf("at the deadline: %+v", st)
	}
}

// TestInvalidMetasAreRefused: Enqueue refuses, and AppendAsync and
// WriteSnapshot drop, metas that recovery would refuse.
func TestInvalidMetasAreRefused(t *testing.T) {
	life := crdt.Life{Gen: 1, Deleted: 1}
	invalid := map[string]crdt.Meta{
		"empty-key":    {Key: "", Life: life},
		"long-key":     {Key: strings.Repeat("x", crdt.MaxKeyLen+1), Life: life},
		"bad-utf8-key": {Key: "a\xffb", Life: life},
		"zero-life":    {Key: "zero"},
	}
	good := crdt.Meta{Key: "good", Life: life}
	opts := testOptions(t, t.TempDir())
	lg, logs := newLogger(t)
	opts.Logger = lg
	l, _ := openLog(t, opts, nil)
	for name, m := range invalid {
		err := l.AppendContents(crdt.Contents{Entries: []crdt.Entry{seqEntry(0)}, Metas: []crdt.Meta{good, m}}, nil)
		if !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: Enqueue = %v, want ErrInvalidEntry", name, err)
		}
		l.AppendAsync(crdt.Contents{Metas: []crdt.Meta{m}})
	}
	if got := l.LastLSN(); got != 0 {
		t.Errorf("LastLSN = %d: something invalid was queued", got)
	}
	all := crdt.Contents{Entries: []crdt.Entry{seqEntry(1)}, Metas: []crdt.Meta{good}}
	for _, m := range invalid {
		all.Metas = append(all.Metas, m)
	}
	l.AppendAsync(all)
	if !logs.has("ERROR", "invalid entries", `dropped_metas="4"`) {
		t.Error("dropping invalid metas is not logged")
	}
	if err := l.WriteSnapshot(l.LastLSN(), all); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got, rec := recoverInto(t, opts)
	if rec.SnapshotLSN != 1 || rec.SnapshotMetas != 1 || len(rec.Discarded) != 0 || rec.TornBytes != 0 {
		t.Errorf("recovery %+v", rec)
	}
	sameState(t, got, keyspaceOfContents(crdt.Contents{Entries: []crdt.Entry{seqEntry(1)}, Metas: []crdt.Meta{good}}))
}

// TestSectionsValidated: the sections after a record's entries must be
// what the record's format version allows, in order, whole, and nothing
// after them; anything else is refused before anything is applied.
func TestSectionsValidated(t *testing.T) {
	entry := appendEntry(nil, crdt.Entry{Key: "a", Replica: 1, P: 1})
	meta := appendMeta(nil, crdt.Meta{Key: "a", Life: crdt.Life{Gen: 1, Deleted: 9}})
	idem := appendIdem(nil, Idem{Key: "k", Request: 1, Value: 2, At: 3})
	metaWith := func(key []byte, rest ...byte) []byte {
		b := binary.AppendUvarint([]byte{metaTag, 1}, uint64(len(key)))
		return append(append(b, key...), rest...)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	sec := func(tag byte, b []byte) []byte { return append([]byte{tag}, b...) }
	good := map[string][]byte{
		"entries":             entry,
		"entries-metas":       cat(entry, sec(metaTag, append([]byte{1}, meta...))),
		"entries-metas-idem":  cat(entry, sec(metaTag, append([]byte{1}, meta...)), sec(idemTag, idem)),
		"entries-idem":        cat(entry, sec(idemTag, idem)),
		"no-entries-metas":    sec(metaTag, append([]byte{2}, cat(meta, meta)...)),
		"no-entries-metas-id": cat(sec(metaTag, append([]byte{1}, meta...)), sec(idemTag, idem)),
	}
	bad := map[string][]byte{
		"idem-then-metas":  cat(entry, sec(idemTag, idem), sec(metaTag, append([]byte{1}, meta...))),
		"metas-twice":      cat(entry, sec(metaTag, append([]byte{1}, meta...)), sec(metaTag, append([]byte{1}, meta...))),
		"legacy-idem":      cat(entry, sec(legacyIdemTag, idem)),
		"unknown-tag":      cat(entry, sec(4, idem)),
		"zero-metas":       cat(entry, []byte{metaTag, 0}),
		"count-too-big":    cat(entry, []byte{metaTag, 2}, meta),
		"huge-count":       cat(entry, []byte{metaTag, 0xff, 0xff, 0xff, 0xff, 0x0f}, meta),
		"trailing-byte":    cat(entry, sec(metaTag, append([]byte{1}, meta...)), []byte{0}),
		"cut-meta":         cat(entry, sec(metaTag, append([]byte{1}, meta[:len(meta)-1]...))),
		"zero-life":        metaWith([]byte("a"), 0, 0, 0, 0),
		"empty-key":        metaWith(nil, 1, 0, 0, 0),
		"bad-utf8-key":     metaWith([]byte("a\xff"), 1, 0, 0, 0),
		"long-key":         metaWith([]byte(strings.Repeat("x", crdt.MaxKeyLen+1)), 1, 0, 0, 0),
		"overlong-varint":  metaWith([]byte("a"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0),
		"trailing-in-idem": cat(entry, sec(idemTag, idem), []byte{0}),
	}
	count := func(body []byte) uint64 {
		if len(body) > 0 && body[0] == metaTag {
			return 0
		}
		return 1
	}
	for name, body := range good {
		c, _, err := checkRecord(record{count: count(body), body: body}, version2)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if c.nMetas == 0 && strings.Contains(name, "metas") {
			t.Errorf("%s: no metas", name)
		}
	}
	for name, body := range bad {
		if _, _, err := checkRecord(record{count: count(body), body: body}, version2); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Version 1 records have neither metas nor generations; the legacy tag
	// is theirs.
	v1entry := appendEntryV1(nil, crdt.Entry{Key: "a", Replica: 1, P: 1})
	if _, _, err := checkRecord(record{count: 1, body: cat(v1entry, sec(legacyIdemTag, idem))}, version1); err != nil {
		t.Errorf("version 1 legacy idempotency key: %v", err)
	}
	if _, _, err := checkRecord(record{count: 1, body: cat(v1entry, sec(metaTag, append([]byte{1}, meta...)))}, version1); err == nil {
		t.Error("version 1 record with a meta section accepted")
	}

	// In a snapshot, a bad meta section makes the snapshot corrupt.
	dir := t.TempDir()
	snap := binary.LittleEndian.AppendUint64([]byte(snapMagic), 1)
	snap = binary.LittleEndian.AppendUint64(snap, 1)
	snap = append(snap, bad["count-too-big"]...)
	writeFile(t, filepath.Join(dir, snapFile(1)), binary.LittleEndian.AppendUint32(snap, crc32.Checksum(snap, castagnoli)))
	_, _, err := openApply(testOptions(t, dir), func(crdt.Entry) {})
	wantCorrupt(t, err, snapFile(1))
}

// TestNewerFormatRefused: a segment or snapshot of a format version this
// build does not know is refused with ErrNewerFormat, not as corruption,
// even under DiscardCorrupt, and left as it is.
func TestNewerFormatRefused(t *testing.T) {
	for _, which := range []string{"segment", "snapshot"} {
		t.Run(which, func(t *testing.T) {
			opts := testOptions(t, t.TempDir())
			l, _ := openLog(t, opts, nil)
			appendSeq(t, l, 0, 3)
			if which == "snapshot" {
				if err := l.WriteSnapshot(3, contentsOf(seqState(0, 1, 2))); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			name := filepath.Join(opts.Dir, segFile(1))
			if which == "snapshot" {
				name = filepath.Join(opts.Dir, snapFile(3))
			}
			b := readFile(t, name)
			b[7] = 3
			writeFile(t, name, b)
			for _, discard := range []bool{false, true} {
				opts.DiscardCorrupt = discard
				_, _, err := openApply(opts, func(crdt.Entry) {})
				if !errors.Is(err, ErrNewerFormat) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) ||
					!strings.Contains(err.Error(), "format version 3") {
					t.Errorf("discard %v: Open = %v, want ErrNewerFormat naming %s", discard, err, name)
				}
				if got := readFile(t, name); !reflect.DeepEqual(got, b) {
					t.Error("the file was changed")
				}
			}
		})
	}
}

// TestLargeContentsAreSplit: contents too big for one record are split
// into several, metas included, and all of them read back.
func TestLargeContentsAreSplit(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.Sync = SyncNone
	l, _ := openLog(t, opts, nil)
	prefix := strings.Repeat("k", 490)
	var c crdt.Contents
	for i := range 30000 { // about 16 MB of entries and as much of metas: more than maxRecordBytes
		key := fmt.Sprintf("%s%06d", prefix, i)
		c.Entries = append(c.Entries, crdt.Entry{Key: key, Replica: 7, Gen: 1, P: uint64(i) + 1})
		c.Metas = append(c.Metas, crdt.Meta{Key: key, Life: crdt.Life{Gen: 1, TTL: crdt.TTL{Ver: 1, Deadline: int64(i) + 1}}})
	}
	idem := Idem{Key: "big", Request: 1, Value: 1, At: 1}
	if err := l.AppendContents(c, &idem); err != nil {
		t.Fatal(err)
	}
	records := l.LastLSN()
	if records < 2 {
		t.Errorf("%d record for about 32 MB, want it split", records)
	}
	l.Close()
	var keys []Idem
	opts.OnIdem = func(i Idem) { keys = append(keys, i) }
	got, rec := recoverInto(t, opts)
	if uint64(rec.Records) != records || rec.Entries != len(c.Entries) || rec.Metas != len(c.Metas) {
		t.Errorf("recovered %+v, want %d records, %d entries, %d metas", rec, records, len(c.Entries), len(c.Metas))
	}
	if !reflect.DeepEqual(keys, []Idem{idem}) {
		t.Errorf("idempotency keys %+v, want the one, once", keys)
	}
	sameState(t, got, keyspaceOfContents(c))
}
