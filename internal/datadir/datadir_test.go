package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityPersistsAndIsRenewable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d")
	d, err := Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Created || d.ReplicaID == 0 {
		t.Fatalf("new dir: created %v id %v", d.Created, d.ReplicaID)
	}
	id := d.ReplicaID
	d.Close()

	d, err = Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	if d.Created || d.ReplicaID != id {
		t.Fatalf("reopened: created %v id %v, want %v", d.Created, d.ReplicaID, id)
	}
	if d.Previous.Clean {
		t.Fatal("a dir that never recorded a clean shutdown reads as clean")
	}
	if err := d.NewReplicaID(); err != nil || d.ReplicaID == id || d.ReplicaID == 0 {
		t.Fatalf("NewReplicaID: %v, %v", d.ReplicaID, err)
	}
	renewed := d.ReplicaID
	d.Close()
	d, err = Open(path, "a")
	if err != nil || d.ReplicaID != renewed {
		t.Fatalf("renewed ID not durable: %v %v", d.ReplicaID, err)
	}
	d.Close()
}

func TestStateRoundTrip(t *testing.T) {
	path := t.TempDir()
	d, err := Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(State{Clean: true, Fsync: "interval"}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Previous != (State{Clean: true, Fsync: "interval"}) {
		t.Fatalf("state = %+v", d.Previous)
	}
}

func TestSecondOpenIsRefusedUntilClose(t *testing.T) {
	path := t.TempDir()
	d, err := Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, "a")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: %v, want ErrLocked naming the holder's pid", err)
	}
	d.Close()
	d.Close() // idempotent
	d, err = Open(path, "a")
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d.Close()
}

func TestOtherClusterAndCorruptMetaAreRefused(t *testing.T) {
	path := t.TempDir()
	d, err := Open(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := Open(path, "b"); !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("other cluster: %v", err)
	}
	for _, bad := range []string{"{", `{"format":99,"cluster":"a","replica_id":"0000000000000001"}`, `{"format":1,"cluster":"a","replica_id":"zz"}`} {
		os.WriteFile(filepath.Join(path, "meta"), []byte(bad), 0o640)
		if _, err := Open(path, "a"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("meta %q: %v, want ErrCorrupt", bad, err)
		}
	}
}
