package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestPartitionHealsExactly splits five nodes in separate network
// namespaces 2|3 for longer than failure detection takes, with writes on
// both sides, then heals the network: every node reports the exact
// acknowledged totals within 2 s of healing.
func TestPartitionHealsExactly(t *testing.T) {
	lab := newNetlab(t, 5)
	var nodes []*proc
	for i := 0; i < 5; i++ {
		join := ""
		if i > 0 {
			join = nodes[0].Gossip
		}
		nodes = append(nodes, lab.node(i, join))
	}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 5) }, true)
	}
	keys := []string{"default", "likes", "views"}
	var mu sync.Mutex
	expected := map[string]int64{}
	write := func(side []*proc, n int) {
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					key, delta := keys[i%len(keys)], int64(i%7+1)
					if i%3 == 0 {
						delta = -delta
					}
					if err := side[i%len(side)].add(context.Background(), key, delta); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					expected[key] += delta
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
	}
	write(nodes, 300)

	left, right := nodes[:2], nodes[2:]
	lab.partition([]int{0, 1}, []int{2, 3, 4})
	// Keep writing on both sides until the partition has outlasted failure
	// detection: each side declares the other dead.
	apart := func() error {
		for _, pair := range [][2]int{{0, 4}, {4, 0}} {
			if s, err := statusOf(nodes[pair[0]], nodes[pair[1]].name); err != nil || s != "dead" {
				return fmt.Errorf("%s sees %s as %q (%v)", nodes[pair[0]].name, nodes[pair[1]].name, s, err)
			}
		}
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for apart() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s of partition: %v", apart())
		}
		write(left, 40)
		write(right, 40)
	}
	if err := allExact(nodes, expected); err == nil {
		t.Fatal("all nodes exact during the partition: it cut nothing")
	}

	lab.heal()
	healed := time.Now()
	waitFor(t, 2*time.Second, func() error { return allExact(nodes, expected) }, true)
	t.Logf("exact on all 5 nodes %v after healing", time.Since(healed).Round(time.Millisecond))
	for _, p := range nodes {
		allSee(t, nodes, p.name, "alive", 3*time.Second)
	}
}

// TestOneWayPartitionHeals cuts one direction only (n1 can hear n2 but not
// send to it), with writes on both, then heals.
func TestOneWayPartitionHeals(t *testing.T) {
	lab := newNetlab(t, 3)
	n1 := lab.node(0, "")
	n2 := lab.node(1, n1.Gossip)
	n3 := lab.node(2, n1.Gossip)
	nodes := []*proc{n1, n2, n3}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 3) }, true)
	}
	lab.cutOneWay(0, 1)
	lab.cutOneWay(0, 2) // n1's words reach nobody; it still hears everyone
	expected := map[string]int64{}
	for i := 0; i < 50; i++ {
		for _, p := range nodes {
			if err := p.add(context.Background(), "k", 1); err != nil {
				t.Fatal(err)
			}
			expected["k"]++
		}
	}
	time.Sleep(time.Second) // let gossip try (and fail) to carry n1's writes
	if err := allExact(nodes, expected); err == nil {
		t.Fatal("exact everywhere although n1 could send to nobody")
	}
	lab.heal()
	healed := time.Now()
	waitFor(t, 3*time.Second, func() error { return allExact(nodes, expected) }, true)
	t.Logf("exact %v after healing a one-way partition", time.Since(healed).Round(time.Millisecond))
}

func allExact(nodes []*proc, expected map[string]int64) error {
	for _, p := range nodes {
		for k, want := range expected {
			v, err := p.value(k)
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("%s: %s = %d, want %d", p.name, k, v, want)
			}
		}
	}
	return nil
}
