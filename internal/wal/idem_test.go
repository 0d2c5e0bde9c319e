package wal

import (
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// TestIdempotencyKeysSurviveRecovery: keys appended with their writes come
// back from the log, and from a snapshot, oldest first.
func TestIdempotencyKeysSurviveRecovery(t *testing.T) {
	dir := t.TempDir()
	var got []Idem
	opts := Options{Dir: dir, OnIdem: func(i Idem) { got = append(got, i) }}
	l, _, err := openApply(opts, func(crdt.Entry) {})
	if err != nil {
		t.Fatal(err)
	}
	want := []Idem{
		{Key: "req-1", Request: 11, Value: -5, At: 3_600_000},
		{Key: "req-2 ünïcode", Request: 22, Value: 1 << 62, At: 3_600_001},
	}
	if err := l.AppendKeyed([]crdt.Entry{{Key: "k", Replica: 1, N: 5}}, &want[0]); err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]crdt.Entry{{Key: "k", Replica: 1, P: 1, N: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendKeyed([]crdt.Entry{{Key: "k", Replica: 1, P: 1 << 62, N: 5}}, &want[1]); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendKeyed([]crdt.Entry{{Key: "k", Replica: 1, P: 1}}, &Idem{}); err == nil {
		t.Fatal("an empty idempotency key was logged")
	}
	l.Close()

	ks := crdt.New()
	l, _, err = Open(opts, ks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovered keys %+v, want %+v", got, want)
	}
	if err := l.WriteSnapshot(l.LastLSN(), contentsOf(ks), want...); err != nil {
		t.Fatal(err)
	}
	l.Close()

	got = nil
	ks2 := crdt.New()
	l, rec, err := Open(opts, ks2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec.Records != 0 || !reflect.DeepEqual(got, want) || ks2.Root() != ks.Root() {
		t.Fatalf("from the snapshot: %d records replayed, keys %+v", rec.Records, got)
	}
}

// TestLegacyIdemRecovered: keys written by older versions (tag 0x01, a
// wall-clock expiry, in version 1 files) are still read, marked Legacy.
func TestLegacyIdemRecovered(t *testing.T) {
	le := binary.LittleEndian
	// Key "k", fingerprint, value -5, expiry 1,700,000,000,000 (zigzag varint).
	legacyKey, _ := hex.DecodeString("016b080706050403020109")
	legacyKey = binary.AppendVarint(legacyKey, 1_700_000_000_000)
	entry, _ := hex.DecodeString("01610200000000000000ac0205")

	payload := append(le.AppendUint64(nil, 2), 1)
	payload = append(append(append(payload, entry...), legacyIdemTag), legacyKey...)
	seg := append([]byte(segMagicPrefix+"\x01"), le.AppendUint64(nil, 2)...)
	seg = le.AppendUint32(seg, uint32(len(payload)))
	seg = le.AppendUint32(seg, crc32.Checksum(payload, castagnoli))
	seg = append(seg, payload...)

	snap := append([]byte(snapMagicPrefix+"\x01"), le.AppendUint64(nil, 1)...)
	snap = le.AppendUint64(snap, 1)
	snap = append(append(append(snap, entry...), legacyIdemTag, 1), legacyKey...)
	snap = le.AppendUint32(snap, crc32.Checksum(snap, castagnoli))

	opts := testOptions(t, t.TempDir())
	writeFile(t, filepath.Join(opts.Dir, snapFile(1)), snap)
	writeFile(t, filepath.Join(opts.Dir, segFile(2)), seg)
	var got []Idem
	opts.OnIdem = func(i Idem) { got = append(got, i) }
	l, rec := openLog(t, opts, nil)
	defer l.Close()
	want := Idem{Key: "k", Request: 0x0102030405060708, Value: -5, At: 1_700_000_000_000, Legacy: true}
	if rec.SnapshotLSN != 1 || rec.Records != 1 || !reflect.DeepEqual(got, []Idem{want, want}) {
		t.Fatalf("recovery %+v, keys %+v", rec, got)
	}
}
