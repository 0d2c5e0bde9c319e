package wal

import (
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
	l, _, err := Open(opts, func(crdt.Entry) {})
	if err != nil {
		t.Fatal(err)
	}
	want := []Idem{
		{Key: "req-1", Request: 11, Value: -5, Expires: 1_700_000_000_000},
		{Key: "req-2 ünïcode", Request: 22, Value: 1 << 62, Expires: 1_700_000_000_001},
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
	l, _, err = OpenInto(opts, ks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovered keys %+v, want %+v", got, want)
	}
	var all []crdt.Entry
	ks.ForEach(func(e crdt.Entry) bool { all = append(all, e); return true })
	if err := l.WriteSnapshot(l.LastLSN(), all, want...); err != nil {
		t.Fatal(err)
	}
	l.Close()

	got = nil
	ks2 := crdt.New()
	l, rec, err := OpenInto(opts, ks2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec.Records != 0 || !reflect.DeepEqual(got, want) || ks2.Root() != ks.Root() {
		t.Fatalf("from the snapshot: %d records replayed, keys %+v", rec.Records, got)
	}
}
