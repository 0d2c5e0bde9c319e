package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ledger tracks, per key, the sum of acknowledged increments and the sum of
// increments whose reply never arrived (they may or may not have counted).
type ledger struct {
	mu      sync.Mutex
	acked   map[string]int64
	inDoubt map[string]int64
}

func newLedger() *ledger { return &ledger{acked: map[string]int64{}, inDoubt: map[string]int64{}} }

func (l *ledger) record(key string, amount int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.acked[key] += amount
	} else {
		l.inDoubt[key] += amount
	}
}

// check verifies acked ≤ v ≤ acked + inDoubt for every key, then settles:
// the observed values become the new acknowledged baseline.
func (l *ledger) check(t *testing.T, values map[string]int64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, acked := range l.acked {
		v := values[k]
		if v < acked || v > acked+l.inDoubt[k] {
			t.Fatalf("%s = %d: acknowledged %d, in doubt %d: an acknowledged write was lost or a refused one counted", k, v, acked, l.inDoubt[k])
		}
	}
	for k, v := range values {
		l.acked[k] = v
	}
	clear(l.inDoubt)
}

// missing reports a key whose value lacks acknowledged writes.
func (l *ledger) missing(values map[string]int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, acked := range l.acked {
		if v := values[k]; v < acked {
			return fmt.Errorf("%s = %d, below the %d acknowledged", k, v, acked)
		}
	}
	return nil
}

// load writes random positive amounts to keys at random nodes until ctx ends.
func load(ctx context.Context, nodes []*proc, keys []string, l *ledger, workers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				p := nodes[rng.IntN(len(nodes))]
				key := keys[rng.IntN(len(keys))]
				amount := int64(rng.IntN(9) + 1)
				wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := p.add(wctx, key, amount)
				cancel()
				l.record(key, amount, err)
				if err != nil {
					time.Sleep(2 * time.Millisecond) // back off while the node is down
				}
			}
		}(uint64(w))
	}
	return &wg
}

func values(t *testing.T, p *proc, keys []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, k := range keys {
		v, err := p.value(k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// TestKill9UnderLoadLosesNoAcknowledgedWrite kills a node with SIGKILL at
// random moments under concurrent HTTP writes, 25 times; after every restart
// the node must report every acknowledged write.
func TestKill9UnderLoadLosesNoAcknowledgedWrite(t *testing.T) {
	p := startNode(t, "victim", "")
	keys := []string{"a", "b", "c", "default"}
	l := newLedger()
	rng := rand.New(rand.NewPCG(42, 42))
	id := health(t, p)["id"]
	total := int64(0)
	for round := 0; round < 25; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		wg := load(ctx, []*proc{p}, keys, l, 16)
		time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond) // a random moment under load
		p.kill()
		cancel()
		wg.Wait()
		p.start()
		l.check(t, values(t, p, keys))
		if got := health(t, p)["id"]; got != id {
			t.Fatalf("replica ID changed across a crash under --fsync always: %v → %v", id, got)
		}
	}
	for _, v := range l.acked {
		total += v
	}
	if total == 0 {
		t.Fatal("no write was ever acknowledged: the test exercised nothing")
	}
	t.Logf("25 kills under load; %d acknowledged in total, none lost", total)
}

// TestWholeClusterKill9 kills all three nodes of a cluster at once under load
// and restarts them: every node reports exactly the same totals, which
// include every acknowledged write.
func TestWholeClusterKill9(t *testing.T) {
	nodes := startCluster(t, 3)
	keys := []string{"x", "y", "z"}
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, nodes, keys, l, 24)
	time.Sleep(300 * time.Millisecond)
	var kw sync.WaitGroup
	for _, p := range nodes {
		kw.Add(1)
		go func(p *proc) { defer kw.Done(); p.cmd.Process.Signal(syscall.SIGKILL) }(p)
	}
	kw.Wait()
	for _, p := range nodes {
		<-p.done
	}
	cancel()
	wg.Wait()
	for _, p := range nodes {
		p.start()
	}
	// All nodes converge to one value per key, which includes every
	// acknowledged write. Agreeing is not enough to stop waiting: each
	// node may have lost the last AsyncDelay of what peers sent it (their
	// owners hold it durably, and anti-entropy brings it back), and such
	// gaps can cancel out (n1 missing a 4 of n2's, n2 one of n3's, n3 one
	// of n1's), so the nodes can agree for a moment below the acknowledged
	// total. A write really lost never comes back, and fails at the deadline.
	waitFor(t, 10*time.Second, func() error {
		first := values(t, nodes[0], keys)
		for _, p := range nodes[1:] {
			for k, v := range values(t, p, keys) {
				if v != first[k] {
					return fmt.Errorf("%s: %s = %d, n1 has %d", p.name, k, v, first[k])
				}
			}
		}
		return l.missing(first)
	}, true)
	l.check(t, values(t, nodes[0], keys))
}

func TestSecondProcessOnDataDirIsRefused(t *testing.T) {
	p := startNode(t, "owner", "")
	_, errOut, code := runCLI(t, nil, "node", "--data-dir", p.DataDir,
		"--gossip-addr", "127.0.0.1:"+itoa(freePort(t)), "--http-addr", "127.0.0.1:"+itoa(freePort(t)))
	if code == 0 || !strings.Contains(errOut, "locked by another dcounter process") {
		t.Fatalf("second process: exit %d, stderr %q", code, errOut)
	}
	if _, err := p.get("/health"); err != nil {
		t.Fatalf("the owner suffered: %v", err)
	}
}

// TestReplicaIDRules: under --fsync none a crash may lose acknowledged
// writes, so the restarted node takes a new replica ID; after a clean stop
// it keeps its ID.
func TestReplicaIDRules(t *testing.T) {
	p := startNode(t, "lax", "", "--fsync", "none")
	id := health(t, p)["id"]
	if err := p.add(context.Background(), "k", 5); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	p.start()
	if got := health(t, p)["id"]; got != id {
		t.Fatalf("clean restart changed the replica ID %v → %v", id, got)
	}
	p.kill()
	p.start()
	if got := health(t, p)["id"]; got == id {
		t.Fatal("unclean restart under --fsync none kept the replica ID")
	}
	if v, _ := p.value("k"); v != 5 {
		t.Fatalf("k = %d after restarts, want 5 (the old replica's count stays)", v)
	}
}

// TestCorruptLogRefusesToStartUnlessDiscarded corrupts the snapshot of a
// stopped node: it refuses to start naming the file, and with
// --discard-corrupt starts as a new replica.
func TestCorruptLogRefusesToStartUnlessDiscarded(t *testing.T) {
	p := startNode(t, "corrupt", "")
	if err := p.add(context.Background(), "k", 3); err != nil {
		t.Fatal(err)
	}
	id := health(t, p)["id"]
	p.stop(t)
	snaps, _ := filepath.Glob(filepath.Join(p.DataDir, "wal", "*.snap"))
	if len(snaps) != 1 {
		t.Fatalf("want one snapshot after a clean stop, found %v", snaps)
	}
	b, _ := os.ReadFile(snaps[0])
	b[len(b)/2] ^= 0xff
	os.WriteFile(snaps[0], b, 0o640)

	_, errOut, code := runCLI(t, nil, p.args...)
	if code == 0 || !strings.Contains(errOut, filepath.Base(snaps[0])) || !strings.Contains(errOut, "--discard-corrupt") {
		t.Fatalf("start on a corrupt log: exit %d, stderr %q", code, errOut)
	}
	p.args = append(p.args, "--discard-corrupt")
	p.start()
	if got := health(t, p)["id"]; got == id {
		t.Fatal("--discard-corrupt kept the replica ID")
	}
}

func health(t *testing.T, p *proc) map[string]any {
	t.Helper()
	b, err := p.get("/health")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRestoredBackupIsDetected restores a node's data dir from an older
// copy, keeping the replica ID. Writes it would acknowledge could vanish in
// the merge (peers hold more of its replica than the restored log), so it
// must notice, refuse writes and report unhealthy — until restarted with
// --new-replica, after which every acknowledged write is counted once.
func TestRestoredBackupIsDetected(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := b.add(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	b.stop(t)
	backup := t.TempDir() + "/backup"
	if out, err := exec.Command("cp", "-a", b.DataDir, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	b.start()
	for i := 0; i < 5; i++ {
		if err := b.add(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(a, "k", 10) }, true)
	b.stop(t)
	os.RemoveAll(b.DataDir)
	if out, err := exec.Command("cp", "-a", backup, b.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	b.start()
	// Anti-entropy soon shows b that a holds more of b's replica.
	waitFor(t, 5*time.Second, func() error {
		body, err := b.get("/health")
		if err != nil && strings.Contains(string(body), `"status":"conflict"`) {
			return nil
		}
		return fmt.Errorf("the restored node still reports healthy: %s", body)
	}, true)
	if err := b.add(ctx, "k", 1); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("write on a node with a conflicting replica ID: %v, want 503", err)
	}
	if !strings.Contains(b.log.String(), "replica ID conflict") {
		t.Error("no log line explains the conflict")
	}
	b.stop(t)
	b.args = append(b.args, "--new-replica")
	b.start()
	if err := b.add(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "k", 11) }, true)
	}
}

// TestWipedLogTakesNewReplicaID: a data dir whose log is gone but whose
// identity file survived must not reuse the ID.
func TestWipedLogTakesNewReplicaID(t *testing.T) {
	p := startNode(t, "wiped", "")
	id := health(t, p)["id"]
	if err := p.add(context.Background(), "k", 1); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	os.RemoveAll(filepath.Join(p.DataDir, "wal"))
	p.start()
	if got := health(t, p)["id"]; got == id {
		t.Fatal("a data dir without its log kept its replica ID")
	}
}
