package wal

import (
	"fmt"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

func TestSmokeAppendRecoverSnapshot(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(Options{Dir: dir, SegmentSize: 4096}, func(crdt.Entry) {})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 1; i <= 100; i++ {
				if err := l.Append([]crdt.Entry{{Key: fmt.Sprintf("k%d", g), Replica: 1, P: uint64(i)}}); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	st := l.Stats()
	t.Logf("%+v", st)
	l.Close()
	ks := crdt.New()
	l, rec, err := Open(Options{Dir: dir, SegmentSize: 4096}, func(e crdt.Entry) { ks.Merge(e) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rec)
	for g := 0; g < 8; g++ {
		if v, _ := ks.Value(fmt.Sprintf("k%d", g)); v != 100 {
			t.Fatalf("k%d = %d", g, v)
		}
	}
	var all []crdt.Entry
	ks.ForEach(func(e crdt.Entry) bool { all = append(all, e); return true })
	if err := l.WriteSnapshot(l.LastLSN(), all); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ks2 := crdt.New()
	_, rec, err = Open(Options{Dir: dir}, func(e crdt.Entry) { ks2.Merge(e) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rec)
	if ks2.Root() != ks.Root() {
		t.Fatal("snapshot recovery differs")
	}
}
