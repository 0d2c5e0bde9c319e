package e2e

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func startCluster(t testing.TB, n int, extra ...string) []*proc {
	t.Helper()
	nodes := []*proc{startNode(t, "n1", "", extra...)}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), nodes[0].Gossip, extra...))
	}
	// Everyone knows everyone.
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, n) }, true)
	}
	return nodes
}

// memberCount checks that p sees exactly n members.
func memberCount(p *proc, n int) error {
	b, err := p.get("/nodes")
	if err != nil {
		return err
	}
	var ms []map[string]any
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	if len(ms) != n {
		return fmt.Errorf("%s sees %d members, want %d", p.name, len(ms), n)
	}
	return nil
}

// TestFiveNodesConvergeExactly is the headline acceptance test: five real
// processes joined through one take 10,000 concurrent random writes over 21
// keys at random nodes, and every node reports the exact totals within one
// second of the last acknowledged write.
func TestFiveNodesConvergeExactly(t *testing.T) {
	nodes := startCluster(t, 5)
	keys := make([]string, 21)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	keys[0] = "default"

	var (
		mu       sync.Mutex
		expected = map[string]int64{}
		acked    atomic.Int64
		failed   atomic.Int64
		wg       sync.WaitGroup
		next     atomic.Int64
	)
	const ops, workers = 10_000, 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, 1))
			for next.Add(1) <= ops {
				p := nodes[rng.IntN(len(nodes))]
				key := keys[rng.IntN(len(keys))]
				delta := int64(rng.IntN(1000) + 1)
				if rng.IntN(2) == 0 {
					delta = -delta
				}
				if err := p.add(context.Background(), key, delta); err != nil {
					failed.Add(1)
					continue
				}
				acked.Add(1)
				mu.Lock()
				expected[key] += delta
				mu.Unlock()
			}
		}(uint64(w))
	}
	wg.Wait()
	lastAck := time.Now()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d writes failed on a healthy cluster", f, ops)
	}
	err := waitFor(t, time.Second, func() error { return allReport(nodes, keys, expected) }, false)
	took := time.Since(lastAck)
	if err != nil {
		t.Fatalf("not converged within 1s of the last acknowledged write: %v", err)
	}
	t.Logf("%d acknowledged writes; all 5 nodes exact %v after the last ack", acked.Load(), took.Round(time.Millisecond))
}

// TestGossipPortSurvivesGarbage throws random bytes, oversized length
// prefixes and half-open connections at a node's gossip port: the node keeps
// serving, keeps gossiping, and its state does not change.
func TestGossipPortSurvivesGarbage(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	if err := a.add(ctx, "x", 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(b, "x", 7) }, true)

	attacks := [][]byte{
		{0xff, 0xff, 0xff, 0xff},             // 4 GiB length prefix
		{0x02, 0x00, 0x00, 0x01, 0, 1, 2, 3}, // 32 MiB + 1
		{0x00, 0x00, 0x00, 0x00},             // zero length
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0, 0, 0, 5, 'D', 'C', 'N', 'T', 1}, // truncated handshake
	}
	for i := 0; i < 50; i++ {
		junk := make([]byte, 1+i*37)
		rand.Read(junk)
		attacks = append(attacks, junk)
	}
	// A frame that claims 16 MiB and sends a few bytes, then stays open.
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 16<<20)
	attacks = append(attacks, append(hdr[:], 1, 2, 3))
	var open []net.Conn
	for _, payload := range attacks {
		for _, target := range []*proc{a, b} {
			c, err := net.Dial("tcp", target.Gossip)
			if err != nil {
				t.Fatalf("gossip port of %s stopped accepting: %v", target.name, err)
			}
			c.Write(payload)
			open = append(open, c)
		}
	}
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for _, p := range nodes {
		if err := expectValue(p, "x", 7); err != nil {
			t.Fatalf("state changed by garbage: %v", err)
		}
	}
	// Still replicating.
	if err := b.add(ctx, "x", 5); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(a, "x", 12) }, true)
	for _, p := range nodes {
		select {
		case <-p.done:
			t.Fatalf("%s died", p.name)
		default:
		}
	}
}

func expectValue(p *proc, key string, want int64) error {
	v, err := p.value(key)
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("%s: %s = %d, want %d", p.name, key, v, want)
	}
	return nil
}

// allReport checks that every node reports expected[k] for every key k.
func allReport(nodes []*proc, keys []string, expected map[string]int64) error {
	for _, p := range nodes {
		for _, k := range keys {
			if err := expectValue(p, k, expected[k]); err != nil {
				return err
			}
		}
	}
	return nil
}
