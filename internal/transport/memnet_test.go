package transport

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
)

// memNode is a MemEndpoint with its inbox.
type memNode struct {
	*MemEndpoint
	in *inbox
}

func memNodes(t *testing.T, n *MemNetwork, addrs ...string) []memNode {
	t.Helper()
	var out []memNode
	for _, a := range addrs {
		in := &inbox{}
		e := n.Endpoint(a, in.handle)
		t.Cleanup(func() { e.Close() })
		out = append(out, memNode{e, in})
	}
	return out
}

func sendN(t *testing.T, from memNode, to string, n int) {
	t.Helper()
	for i := range n {
		if err := from.Send(to, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// settle waits until every message sent so far is delivered or dropped.
// Copies scheduled by duplication count once per copy, so it takes the
// number of copies expected.
func settle(t *testing.T, n *MemNetwork, copies int64) {
	t.Helper()
	waitFor(t, "network to settle", func() bool {
		_, delivered, dropped := n.Stats()
		return delivered+dropped >= copies
	})
}

func TestMemDelivery(t *testing.T) {
	n := NewMemNetwork(nil, 1)
	ns := memNodes(t, n, "a", "b")
	sendN(t, ns[0], "b", 100)
	waitFor(t, "delivery", func() bool { return ns[1].in.len() == 100 })
	for i, m := range ns[1].in.get() {
		if m.from != "a" || string(m.payload) != fmt.Sprint(i) {
			t.Fatalf("message %d = %q from %q; want in order from a", i, m.payload, m.from)
		}
	}
	if sent, delivered, dropped := n.Stats(); sent != 100 || delivered != 100 || dropped != 0 {
		t.Errorf("stats %d %d %d", sent, delivered, dropped)
	}
	if ns[0].Addr() != "a" {
		t.Errorf("Addr = %q", ns[0].Addr())
	}
}

func TestMemLossAndDuplicate(t *testing.T) {
	n := NewMemNetwork(nil, 2)
	ns := memNodes(t, n, "a", "b")

	n.SetLoss(1)
	sendN(t, ns[0], "b", 50)
	settle(t, n, 50)
	if got := ns[1].in.len(); got != 0 {
		t.Errorf("loss=1 delivered %d", got)
	}

	n.SetLoss(0)
	n.SetDuplicate(1)
	sendN(t, ns[0], "b", 50)
	waitFor(t, "duplicates", func() bool { return ns[1].in.len() == 100 })
	count := map[string]int{}
	for _, m := range ns[1].in.get() {
		count[string(m.payload)]++
	}
	for i := range 50 {
		if count[fmt.Sprint(i)] != 2 {
			t.Errorf("message %d delivered %d times, want 2", i, count[fmt.Sprint(i)])
		}
	}

	n.SetDuplicate(0)
	n.SetLoss(0.5)
	sendN(t, ns[0], "b", 1000)
	settle(t, n, 50+100+1000)
	if got := ns[1].in.len() - 100; got < 350 || got > 650 {
		t.Errorf("loss=0.5 delivered %d of 1000", got)
	}
}

func TestMemDelayWithFakeClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	n := NewMemNetwork(clk, 3)
	ns := memNodes(t, n, "a", "b")
	n.SetDelay(10*time.Millisecond, 100*time.Millisecond)
	sendN(t, ns[0], "b", 200)
	if clk.Waiters() != 200 {
		t.Fatalf("%d timers armed, want 200", clk.Waiters())
	}
	clk.Advance(9 * time.Millisecond)
	if got := ns[1].in.len(); got != 0 {
		t.Fatalf("%d delivered before the minimum delay", got)
	}
	clk.Advance(91 * time.Millisecond)
	waitFor(t, "delayed delivery", func() bool { return ns[1].in.len() == 200 })
	inOrder := true
	for i, m := range ns[1].in.get() {
		if string(m.payload) != fmt.Sprint(i) {
			inOrder = false
		}
	}
	if inOrder {
		t.Error("random delays did not reorder 200 messages")
	}
}

func TestMemPartitionCutHeal(t *testing.T) {
	n := NewMemNetwork(nil, 4)
	ns := memNodes(t, n, "a", "b", "c", "d")
	a, b, c, d := ns[0], ns[1], ns[2], ns[3]
	total := int64(0)
	send := func(from memNode, to string) {
		t.Helper()
		sendN(t, from, to, 1)
		total++
	}
	expect := func(want map[memNode]int) {
		t.Helper()
		settle(t, n, total)
		for node, w := range want {
			if got := node.in.len(); got != w {
				t.Errorf("%s has %d messages, want %d", node.Addr(), got, w)
			}
		}
	}

	// a and b together; c alone; d in no group.
	n.Partition([]string{"a", "b"}, []string{"c"})
	send(a, "b")
	send(b, "a")
	send(a, "c")
	send(c, "a")
	send(a, "d")
	send(d, "c")
	expect(map[memNode]int{a: 1, b: 1, c: 0, d: 0})

	n.Heal()
	n.Cut("a", "b")
	send(a, "b")
	send(b, "a")
	expect(map[memNode]int{a: 2, b: 1})

	n.Heal()
	send(a, "b")
	send(c, "d")
	expect(map[memNode]int{b: 2, d: 1})
}

func TestMemPartitionDropsMessagesInFlight(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	n := NewMemNetwork(clk, 5)
	ns := memNodes(t, n, "a", "b")
	n.SetDelay(time.Second, time.Second)
	sendN(t, ns[0], "b", 10)
	n.Partition([]string{"a"}, []string{"b"})
	clk.Advance(time.Second)
	settle(t, n, 10)
	if got := ns[1].in.len(); got != 0 {
		t.Errorf("%d in-flight messages crossed a partition", got)
	}

	n.Heal()
	sendN(t, ns[0], "b", 10)
	n.Cut("a", "b")
	clk.Advance(time.Second)
	settle(t, n, 20)
	if got := ns[1].in.len(); got != 0 {
		t.Errorf("%d in-flight messages crossed a cut", got)
	}
}

func TestMemUnknownAndClosed(t *testing.T) {
	n := NewMemNetwork(nil, 6)
	ns := memNodes(t, n, "a", "b")
	if err := ns[0].Send("nowhere", []byte("x")); err != nil {
		t.Errorf("Send to unknown address: %v", err)
	}
	if err := ns[1].Close(); err != nil {
		t.Fatal(err)
	}
	if err := ns[1].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := ns[0].Send("b", []byte("x")); err != nil {
		t.Errorf("Send to closed address: %v", err)
	}
	if err := ns[1].Send("a", []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send from closed endpoint: %v, want ErrClosed", err)
	}
	if err := ns[0].Send("b", nil); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("empty Send: %v", err)
	}
	if _, _, dropped := n.Stats(); dropped != 2 {
		t.Errorf("dropped %d, want 2", dropped)
	}

	// The address can be reused once closed.
	b2 := memNodes(t, n, "b")[0]
	ns[0].Send("b", []byte("again"))
	waitFor(t, "delivery to the new endpoint", func() bool { return b2.in.len() == 1 })
}

// A handler that holds a lock while sending must not deadlock against a
// peer doing the same: delivery runs on the receiver's own goroutine.
func TestMemHandlersThatSendDoNotDeadlock(t *testing.T) {
	n := NewMemNetwork(nil, 7)
	var (
		mu   sync.Mutex
		eps  = map[string]*MemEndpoint{}
		hops = map[string]int{}
	)
	done := make(chan struct{})
	handler := func(self, other string) Handler {
		return func(from string, p []byte) {
			mu.Lock()
			defer mu.Unlock()
			hops[self]++
			if hops[self] == 500 && self == "a" {
				close(done)
			}
			if hops[self] <= 500 {
				eps[self].Send(other, p)
			}
		}
	}
	mu.Lock()
	eps["a"] = n.Endpoint("a", handler("a", "b"))
	eps["b"] = n.Endpoint("b", handler("b", "a"))
	mu.Unlock()
	t.Cleanup(func() { eps["a"].Close(); eps["b"].Close() })
	eps["a"].Send("b", []byte("ping"))
	eps["b"].Send("a", []byte("pong"))
	waitFor(t, "ping-pong", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}
