package transport

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
)

// MemNetwork is an in-memory network for tests. Its endpoints behave like
// TCP ones (same Send/Close/Addr, one delivery goroutine per endpoint calling
// the Handler sequentially), and it can lose, duplicate and delay messages —
// delays reorder them — and partition or cut links. Random choices come
// from the seed, so a single-goroutine test that sends in a fixed order sees
// the same faults on every run.
//
// All methods are safe for concurrent use.
type MemNetwork struct {
	clk clock.Clock

	mu                 sync.Mutex
	rng                *rand.Rand
	eps                map[string]*MemEndpoint
	loss, dup          float64
	minDelay, maxDelay time.Duration
	group              map[string]int // nil: no partition
	cuts               map[memLink]struct{}

	sent, delivered, dropped atomic.Int64
}

type memLink struct{ from, to string }

// NewMemNetwork returns an empty network without faults. Delayed messages
// are delivered when clk reaches their time (a clock.Fake needs Advance);
// a nil clk means clock.Real{}.
func NewMemNetwork(clk clock.Clock, seed int64) *MemNetwork {
	if clk == nil {
		clk = clock.Real{}
	}
	return &MemNetwork{
		clk:  clk,
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		eps:  make(map[string]*MemEndpoint),
		cuts: make(map[memLink]struct{}),
	}
}

// Endpoint attaches a new endpoint at addr whose messages go to h. An
// address can be reused once its previous endpoint is closed; attaching two
// live endpoints at one address, or a nil handler, is a programming error
// and panics.
func (n *MemNetwork) Endpoint(addr string, h Handler) *MemEndpoint {
	if h == nil {
		panic("transport: MemNetwork.Endpoint with nil handler")
	}
	e := &MemEndpoint{
		net:    n,
		addr:   addr,
		h:      h,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	n.mu.Lock()
	if _, taken := n.eps[addr]; taken {
		n.mu.Unlock()
		panic(fmt.Sprintf("transport: MemNetwork address %q already in use", addr))
	}
	n.eps[addr] = e
	n.mu.Unlock()
	go e.run()
	return e
}

// SetLoss sets the probability (0..1) that a message is dropped.
func (n *MemNetwork) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetDuplicate sets the probability (0..1) that a message is delivered twice.
func (n *MemNetwork) SetDuplicate(p float64) {
	n.mu.Lock()
	n.dup = p
	n.mu.Unlock()
}

// SetDelay delays each message (each copy of a duplicate separately) by a
// uniformly random duration in [min, max], which reorders messages. A
// delayed message is delivered when the network's clock reaches its time.
// With max zero (the default) messages are handed to the receiver's
// delivery goroutine at once. A max below min is taken as min.
func (n *MemNetwork) SetDelay(min, max time.Duration) {
	min = maxDuration(min, 0)
	max = maxDuration(max, min)
	n.mu.Lock()
	n.minDelay, n.maxDelay = min, max
	n.mu.Unlock()
}

// Partition splits the network: only addresses in the same group can talk.
// Addresses in no group form one more group together, so they are isolated
// from every listed group. It replaces any earlier partition; cuts stay.
// Messages in flight across the new boundaries are dropped on arrival.
func (n *MemNetwork) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(groups) == 0 {
		n.group = nil
		return
	}
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, addr := range g {
			n.group[addr] = i
		}
	}
}

// Cut drops every message from from to to, including those in flight; the
// other direction is unaffected.
func (n *MemNetwork) Cut(from, to string) {
	n.mu.Lock()
	n.cuts[memLink{from, to}] = struct{}{}
	n.mu.Unlock()
}

// Heal removes the partition and all cuts. Loss, duplication and delay stay.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	n.group = nil
	clear(n.cuts)
	n.mu.Unlock()
}

// Stats reports messages sent (Send calls from open endpoints), delivered
// (Handler calls that have returned; a duplicate counts twice) and dropped (copies lost to
// loss, partitions, cuts, unknown or closed destinations).
func (n *MemNetwork) Stats() (sent, delivered, dropped int64) {
	return n.sent.Load(), n.delivered.Load(), n.dropped.Load()
}

// send applies the faults to one message and schedules its delivery.
func (n *MemNetwork) send(from, to string, payload []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent.Add(1)
	if !n.canTalkLocked(from, to) || n.rollLocked(n.loss) {
		n.dropped.Add(1)
		return
	}
	copies := 1
	if n.rollLocked(n.dup) {
		copies = 2
	}
	for i := range copies {
		p := payload
		if i > 0 {
			p = bytes.Clone(payload) // a handler may scribble on its copy
		}
		if d := n.delayLocked(); d > 0 {
			n.clk.AfterFunc(d, func() { n.deliver(from, to, p) })
		} else {
			n.deliverLocked(from, to, p)
		}
	}
}

func (n *MemNetwork) deliver(from, to string, payload []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deliverLocked(from, to, payload)
}

// deliverLocked puts a message in its receiver's inbox if the link is still
// open and the receiver exists.
func (n *MemNetwork) deliverLocked(from, to string, payload []byte) {
	e := n.eps[to]
	if e == nil || !n.canTalkLocked(from, to) || !e.enqueue(memMsg{from: from, payload: payload}) {
		n.dropped.Add(1)
	}
}

// canTalk reports whether a message from from to to may pass now.
func (n *MemNetwork) canTalk(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.canTalkLocked(from, to)
}

func (n *MemNetwork) canTalkLocked(from, to string) bool {
	if _, cut := n.cuts[memLink{from, to}]; cut {
		return false
	}
	if n.group == nil {
		return true
	}
	gf, ok := n.group[from]
	if !ok {
		gf = -1
	}
	gt, ok := n.group[to]
	if !ok {
		gt = -1
	}
	return gf == gt
}

func (n *MemNetwork) rollLocked(p float64) bool {
	return p > 0 && n.rng.Float64() < p
}

func (n *MemNetwork) delayLocked() time.Duration {
	if n.maxDelay <= 0 {
		return 0
	}
	return n.minDelay + time.Duration(n.rng.Int64N(int64(n.maxDelay-n.minDelay)+1))
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// MemEndpoint is one address on a MemNetwork.
type MemEndpoint struct {
	net  *MemNetwork
	addr string
	h    Handler

	mu     sync.Mutex
	inbox  []memMsg // unbounded: a sender never waits for a receiver
	closed bool

	wake   chan struct{} // a message arrived (capacity 1)
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when run returns
}

type memMsg struct {
	from    string
	payload []byte
}

// Addr returns the endpoint's address.
func (e *MemEndpoint) Addr() string { return e.addr }

// Send passes payload through the network's faults towards to. A message
// to an unknown or closed address is dropped silently, as on a real network;
// Send returns ErrClosed only if this endpoint is closed, and ErrEmptyFrame
// for an empty payload (which TCP cannot frame).
func (e *MemEndpoint) Send(to string, payload []byte) error {
	if len(payload) == 0 {
		return fmt.Errorf("%w: empty payload", ErrEmptyFrame)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	e.net.send(e.addr, to, payload)
	return nil
}

// Close detaches the endpoint, drops its undelivered messages and waits for
// its delivery goroutine. It is idempotent; it must not be called from the
// endpoint's own Handler.
// Flush returns at once: a MemEndpoint hands messages to the network as
// they are sent.
func (e *MemEndpoint) Flush(context.Context) error { return nil }

func (e *MemEndpoint) Close() error {
	n := e.net
	n.mu.Lock()
	if n.eps[e.addr] == e {
		delete(n.eps, e.addr)
	}
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		n.dropped.Add(int64(len(e.inbox)))
		e.inbox = nil
		close(e.done)
	}
	e.mu.Unlock()
	n.mu.Unlock()
	<-e.exited
	return nil
}

// enqueue adds m to the inbox; it reports false if the endpoint is closed.
func (e *MemEndpoint) enqueue(m memMsg) bool {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	e.inbox = append(e.inbox, m)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return true
}

// run is the endpoint's delivery goroutine: it hands inbox messages to the
// Handler one at a time, re-checking the link so that a partition that
// started while a message waited still drops it.
func (e *MemEndpoint) run() {
	defer close(e.exited)
	for {
		select {
		case <-e.done:
			return
		case <-e.wake:
		}
		for {
			e.mu.Lock()
			if e.closed || len(e.inbox) == 0 {
				e.mu.Unlock()
				break
			}
			m := e.inbox[0]
			e.inbox[0] = memMsg{}
			e.inbox = e.inbox[1:]
			e.mu.Unlock()
			if !e.net.canTalk(m.from, e.addr) {
				e.net.dropped.Add(1)
				continue
			}
			e.h(m.from, m.payload)
			e.net.delivered.Add(1) // after the call, so tests that wait on Stats see its effects
		}
	}
}
