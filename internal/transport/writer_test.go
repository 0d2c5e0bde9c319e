package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
)

// peerCount returns how many destinations have a queue and a writer.
func (t *TCP) peerCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers)
}

// refusedAddr returns the i-th of a set of distinct addresses that refuse
// connections at once (port 1 on loopback addresses).
func refusedAddr(i int) string { return fmt.Sprintf("127.0.%d.%d:1", i/250, i%250+2) }

func TestPeerQueue(t *testing.T) {
	p := newPeer("x:1")
	if !p.push([]byte("0"), 4) {
		t.Fatal("push to an empty queue refused")
	}
	if c := cap(p.msgs); c >= 4 {
		t.Errorf("one queued message took a slice of capacity %d: the queue is allocated whole", c)
	}
	for i := 1; i < 4; i++ {
		if !p.push([]byte{byte('0' + i)}, 4) {
			t.Fatalf("push %d refused", i)
		}
	}
	if p.push([]byte("4"), 4) {
		t.Fatal("push beyond the limit accepted")
	}
	got := p.take(nil, 3)
	if len(got) != 3 || string(got[0]) != "0" || string(got[2]) != "2" || p.len() != 1 {
		t.Fatalf("take(3) = %q, %d left", got, p.len())
	}
	if !p.push([]byte("5"), 4) {
		t.Fatal("push after take refused")
	}
	if got := p.take(nil, 10); len(got) != 2 || string(got[0]) != "3" || string(got[1]) != "5" {
		t.Fatalf("take(10) = %q", got)
	}
	if p.drain() != 0 || p.len() != 0 {
		t.Fatal("queue not empty")
	}
}

// TestClaimedAddressesDoNotLeak: without a key the from address of a Hello
// is whatever the dialer says. A node that answers each sender must not keep
// a writer per made-up address: at most MaxPeers exist, and idle ones go.
func TestClaimedAddressesDoNotLeak(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	var (
		self     atomic.Pointer[TCP]
		mu       sync.Mutex
		answered int
		tooMany  int
	)
	a, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "test", Clock: clk, MaxPeers: 8, IdleWriter: time.Minute},
		func(from string, _ []byte) {
			err := self.Load().Send(from, []byte("answer"))
			mu.Lock()
			defer mu.Unlock()
			answered++
			switch {
			case errors.Is(err, ErrTooManyPeers):
				tooMany++
			case err != nil:
				t.Errorf("Send to %s: %v", from, err)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(a)
	t.Cleanup(func() { a.Close() })
	baseline := runtime.NumGoroutine()

	const claimed = 40
	for i := range claimed {
		p := dialRaw(t, a.Addr(), clusterkey.Keyring{})
		p.handshake("test", refusedAddr(i), false)
		p.write(p.frame([]byte("hi")))
		waitFor(t, "the message to be answered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return answered == i+1
		})
		p.conn.Close()
		if n := a.peerCount(); n > 8 {
			t.Fatalf("%d destinations, MaxPeers is 8", n)
		}
	}
	mu.Lock()
	if tooMany < claimed-8 {
		t.Errorf("%d Sends refused with ErrTooManyPeers, want at least %d", tooMany, claimed-8)
	}
	mu.Unlock()
	if s := a.Stats(); s.Dropped < int64(claimed-8) {
		t.Errorf("stats %+v: refused Sends not counted as dropped", s)
	}

	waitFor(t, "idle writers to be reclaimed", func() bool {
		clk.Advance(time.Minute)
		return a.peerCount() == 0 && runtime.NumGoroutine() <= baseline
	})
	// Room again for a new destination.
	if err := a.Send(refusedAddr(claimed), []byte("x")); err != nil {
		t.Errorf("Send to a new destination after reclaiming: %v", err)
	}
}

func TestMaxPeers(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	a := listen(t, Config{Clock: clk, MaxPeers: 3})
	for i := range 3 {
		if err := a.Send(refusedAddr(i), []byte("x")); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	waitFor(t, "the dials to fail", func() bool { s := a.Stats(); return s.DialFailures == 3 && s.Dropped == 3 })
	err := a.Send(refusedAddr(3), []byte("x"))
	if !errors.Is(err, ErrTooManyPeers) || !strings.HasPrefix(err.Error(), "transport: ") {
		t.Fatalf("Send to a fourth destination: %v, want ErrTooManyPeers", err)
	}
	if s := a.Stats(); s.Dropped != 4 {
		t.Errorf("Dropped = %d, want 4", s.Dropped)
	}
	if !a.log.has(0, "too many destinations", "max_peers") {
		t.Error("hitting MaxPeers is not logged")
	}
	// Known destinations still take messages (their writers are in backoff).
	if err := a.Send(refusedAddr(0), []byte("x")); err != nil {
		t.Errorf("Send to a known destination: %v", err)
	}
	if err := a.Send("no port", []byte("x")); !errors.Is(err, ErrBadAddress) {
		t.Errorf("a bad address at the cap: %v, want ErrBadAddress", err)
	}
}

// TestIdleWriterIsRecreated: a writer reclaimed while idle closes its
// connection; the next Send dials again and is delivered. A writer that
// keeps getting messages is not reclaimed.
func TestIdleWriterIsRecreated(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	a := listen(t, Config{Clock: clk, IdleWriter: time.Minute})
	b := listen(t, Config{})
	baseline := runtime.NumGoroutine()

	for i := range 5 {
		if err := a.Send(b.Addr(), pattern(i, 10)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "delivery", func() bool { return b.in.len() == i+1 })
		clk.Advance(40 * time.Second) // less than IdleWriter since the last message
	}
	if s := a.Stats(); s.Dials != 1 || a.peerCount() != 1 {
		t.Fatalf("a busy writer was reclaimed: %d dials, %d peers", s.Dials, a.peerCount())
	}

	waitFor(t, "the idle writer and its connection to go", func() bool {
		clk.Advance(time.Minute)
		return a.peerCount() == 0 && runtime.NumGoroutine() <= baseline
	})
	if err := a.Send(b.Addr(), []byte("again")); err != nil {
		t.Fatalf("Send after the writer retired: %v", err)
	}
	waitFor(t, "delivery by a new writer", func() bool { return b.in.len() == 6 })
	if got := b.in.get()[5]; string(got.payload) != "again" || got.from != a.Addr() {
		t.Errorf("got %q from %q", got.payload, got.from)
	}
	if s := a.Stats(); s.Dials != 2 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 2 dials and nothing dropped", s)
	}
}

// TestRetireRacesSend: a writer retiring for idleness while Sends arrive
// must lose nothing that Send accepted.
func TestRetireRacesSend(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	a := listen(t, Config{Clock: clk, IdleWriter: time.Second, QueueLen: 64})
	b := listen(t, Config{})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				clk.Advance(time.Second)
				runtime.Gosched()
			}
		}
	}()
	sent, full := 0, 0
	for i := range 2000 {
		switch err := a.Send(b.Addr(), pattern(i, 16)); {
		case err == nil:
			sent++
		case errors.Is(err, ErrQueueFull):
			full++
		default:
			t.Fatalf("Send %d: %v", i, err)
		}
		if i%20 == 19 { // let the writer run dry, so that it may retire
			waitFor(t, "delivery", func() bool { return b.in.len() == sent })
		}
	}
	close(stop)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every accepted message", func() bool { return b.in.len() == sent })
	s := a.Stats()
	if s.Dropped != int64(full) || s.FramesSent != int64(sent) {
		t.Errorf("stats %+v: want %d sent and %d dropped (queue full)", s, sent, full)
	}
	if s.Dials < 2 {
		t.Errorf("the writer never retired (%d dials): the test proves nothing", s.Dials)
	}
}

// TestInboundConnectionEndsBackoff: a writer backing off after failed dials
// to a peer dials again as soon as that peer connects to us, without waiting
// for its (fake, never advanced) backoff timer.
func TestInboundConnectionEndsBackoff(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	a := listen(t, Config{Clock: clk})
	// Reserve an address for b, and send to it while nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bAddr := ln.Addr().String()
	ln.Close()
	if err := a.Send(bAddr, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first dial to fail", func() bool { return a.Stats().DialFailures >= 1 })
	// b comes up at that address and talks to a first.
	b := listen(t, Config{BindAddr: bAddr, Clock: clk})
	if err := b.Send(a.Addr(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to hear from b", func() bool { return a.in.len() == 1 })
	// a's writer to b must not sit out its backoff.
	if err := a.Send(bAddr, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to get a's message without the backoff timer firing", func() bool { return b.in.len() == 1 })
}
