package node

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/service"
)

// ErrDraining is the answer to every client request while the node drains
// before it stops: certainly not applied, so a gateway tries another node.
var ErrDraining = errors.New("node: shutting down: try another node")

// drainQuiet is how long the client API must go without a request before
// a drain ends early: every client that was still sending has seen the
// refusal by then, and one that sends nothing has no request to lose.
const drainQuiet = 100 * time.Millisecond

// drainer sits in front of the client API. Once started, it answers every
// request 503 (ErrDraining) with "Connection: close", so each kept-alive
// connection ends on a complete answer rather than being closed under a
// request already on its way: with HTTP keep-alive, a server that closes
// an idle connection races with a client writing on it, and that client
// cannot tell whether its write was applied (a gateway then answers 502).
// A gateway that gets the 503 retries elsewhere and stops choosing the
// node; its health checks get the same answer (membership proofs do not:
// the node is still a member).
type drainer struct {
	next http.Handler // nil without a client API
	clk  clock.Clock
	// also, if set, counts requests refused elsewhere (the Redis-protocol
	// server's Drained): while it rises the drain is not quiet.
	also func() int64

	// draining is read by every request, so it is not behind mu; it is
	// set under mu, with last.
	draining atomic.Bool
	mu       sync.Mutex
	last     time.Time // the last request turned away, or the drain's start
}

func (d *drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.open() {
		d.next.ServeHTTP(w, r)
		return
	}
	d.mu.Lock()
	d.last = d.clk.Now()
	d.mu.Unlock()
	w.Header().Set("Connection", "close")
	api.WriteError(w, service.Unavailable(ErrDraining))
}

// open reports whether requests are served (the node is not draining).
func (d *drainer) open() bool { return !d.draining.Load() }

// drain turns every request away from now on, and returns once no request
// has come for quiet, limit has passed, or ctx ends, whichever is first.
func (d *drainer) drain(ctx context.Context, limit, quiet time.Duration) {
	d.mu.Lock()
	d.draining.Store(true)
	start := d.clk.Now()
	d.last = start
	d.mu.Unlock()
	t := d.clk.NewTicker(quiet / 4)
	defer t.Stop()
	var seen int64
	if d.also != nil {
		seen = d.also()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		now := d.clk.Now()
		d.mu.Lock()
		if d.also != nil {
			if n := d.also(); n != seen {
				seen, d.last = n, now
			}
		}
		last := d.last
		d.mu.Unlock()
		if now.Sub(start) >= limit || now.Sub(last) >= quiet {
			return
		}
	}
}
