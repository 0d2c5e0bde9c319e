package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/service"
)

func startDiskNode(t *testing.T, dir string, mod func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		Name: "r", GossipAddr: "127.0.0.1:0", DataDir: dir, Logger: testLogger(t),
		SnapshotInterval: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	nd, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Shutdown(context.Background()) })
	return nd
}

// crashCopy copies a live data dir: the files as a SIGKILL would leave them
// (everything written to the OS is there, nothing more).
func crashCopy(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// Same, without any hook: concurrent keyed writes and a snapshot.
// TestSnapshotKeepsInFlightIdempotencyKeys: keyed writes in flight while a
// snapshot is taken are covered by its LSN, so their keys must be in it;
// after a crash (a copy of the live dir) every retry must be a replay.
func TestSnapshotKeepsInFlightIdempotencyKeys(t *testing.T) {
	ctx := context.Background()
	for iter := 0; iter < 20; iter++ {
		dir := t.TempDir()
		nd := startDiskNode(t, dir, nil)
		const W = 64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < W; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, _, err := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: fmt.Sprintf("k%d", i)}); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		time.Sleep(time.Duration(iter%5) * 100 * time.Microsecond)
		if err := nd.snapshot(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		crashed := crashCopy(t, dir)
		nd.Shutdown(ctx)
		nd2 := startDiskNode(t, crashed, nil)
		lost := 0
		for i := 0; i < W; i++ {
			if _, replayed, _ := nd2.Add(ctx, "c", 1, service.WriteOptions{Idem: fmt.Sprintf("k%d", i)}); !replayed {
				lost++
			}
		}
		got, _ := nd2.Get(ctx, "c")
		nd2.Shutdown(ctx)
		if lost > 0 {
			t.Fatalf("iteration %d: %d of %d acknowledged keys forgotten after snapshot+crash; counter = %d after retries, want %d",
				iter, lost, W, got.Value, W)
		}
	}
}

// A key reused just after its window (before tick purges it) is not
// re-appended to idemOrder, so it pins every later key past its expiry;
// with MaxIdempotencyKeys the node then refuses keyed writes.
// TestReusedIdempotencyKeyDoesNotPinExpiry: a key used again after its window
// must not hold back the expiry of the keys behind it.
func TestReusedIdempotencyKeyDoesNotPinExpiry(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	nd := startDiskNode(t, t.TempDir(), func(c *Config) {
		c.Clock = clk
		c.SyncInterval = time.Hour // run expireIdem by hand
		c.IdempotencyWindow = time.Second
		c.MaxIdempotencyKeys = 100
	})
	mustAdd := func(key string) error {
		_, _, err := nd.Add(ctx, "c", 1, service.WriteOptions{Idem: key})
		return err
	}
	if err := mustAdd("K"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(500 * time.Millisecond)
	if err := mustAdd("L"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(600 * time.Millisecond)  // K expired, not purged yet
	if err := mustAdd("K"); err != nil { // new write with an old key: fine
		t.Fatal(err)
	}
	clk.Advance(600 * time.Millisecond) // L expired too (t=1.7s)
	nd.mu.Lock()
	nd.expireIdem()
	live := len(nd.idem)
	nd.mu.Unlock()
	err := mustAdd("M")
	t.Logf("after expireIdem at t=1.7s: %d keys held (want 1: K), keyed write M: err=%v", live, err)
	if live != 1 || err != nil {
		if errors.Is(err, errIdemFull) || service.HTTPStatus(err) == 503 {
			t.Fatalf("expired key L is pinned behind reused K; keyed writes refused with 503: %v", err)
		}
		t.Fatalf("expired key L still held")
	}
}
