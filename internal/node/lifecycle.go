package node

import (
	"context"
	"errors"
	"runtime/debug"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
)

// The counter lifecycle (see package crdt): deletes and expiry change a
// key's generation and its expiry register, which are logged and gossiped
// like entries; reclaim frees what they leave behind on a timer.

// errClockOff refuses writes whose meaning depends on this node's clock
// while that clock disagrees with most members' (clockSuspect).
var errClockOff = errors.New("node: this node's wall clock differs from most members' by more than --max-clock-skew; writes that set or depend on an expiry are refused until it is fixed")

// clockSuspect returns errClockOff when more than half of the alive
// members' clocks, as measured from their member messages, differ from this
// node's by more than MaxClockSkew in the same direction: then this node's
// clock is the odd one out. A write that sets a deadline, or that decides
// by the clock whether a key's generation has expired, could otherwise
// expire windows early (a clock ahead: every write would open a new window
// that replaces the current one on every node) or keep them forever. With
// no member measured yet it trusts the clock. Caller holds mu.
func (n *Node) clockSuspect() error {
	offs := n.members.ClockOffsets()
	ahead, behind := 0, 0
	for _, d := range offs {
		// A member's offset is its clock minus ours: members far behind
		// us mean our clock is ahead.
		switch {
		case d < -n.cfg.MaxClockSkew:
			ahead++
		case d > n.cfg.MaxClockSkew:
			behind++
		}
	}
	if 2*ahead > len(offs) || 2*behind > len(offs) {
		return service.Unavailable(errClockOff)
	}
	return nil
}

// listScan bounds the keys one page looks at, live or not.
const listScan = 10_000

// List returns a page of live keys in byte-wise order.
func (n *Node) List(_ context.Context, req service.ListRequest) (page service.ListPage, err error) {
	limit := req.Limit
	if limit <= 0 {
		limit = service.DefaultListLimit
	}
	limit = min(limit, service.MaxListLimit)
	n.mu.Lock()
	now := n.nowMs()
	items, next, more := n.ks.List(req.Prefix, req.Cursor, limit, listScan, now)
	n.mu.Unlock()
	page.Items = make([]service.Counter, len(items))
	for i, it := range items {
		page.Items[i] = service.Counter{Key: it.Key, Value: it.Value, Live: true, TTL: ttlLeft(it.Deadline, now)}
	}
	if more {
		page.Next = next
	}
	return page, nil
}

// reclaimBatch bounds the keys one reclaim pass looks at while holding mu.
const reclaimBatch = 4096

// reclaimLoop frees expired generations and old tombstones (crdt.Reclaim)
// every ReclaimInterval, in passes short enough not to stall writes. When
// it frees anything, the next snapshot is written even if nothing was
// logged since the last, so the data dir shrinks too. It pauses while this
// node's clock is suspect (clockSuspect).
func (n *Node) reclaimLoop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.ReclaimInterval)
	defer t.Stop()
	grace, horizon := n.cfg.ExpiryGrace.Milliseconds(), n.cfg.ReclaimHorizon.Milliseconds()
	var compactions uint64
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
		}
		for more := true; more; {
			n.mu.Lock()
			if n.clockSuspect() != nil || (len(n.members.Peers()) > 0 && len(n.members.ClockOffsets()) == 0) {
				// Our clock is the odd one out (or, with peers, not yet
				// compared with any): a deadline it has passed may not
				// have come, and the tombstone that frees an expired
				// generation ends the key on every replica.
				n.mu.Unlock()
				break
			}
			var tomb []crdt.Meta
			var forgot int
			tomb, forgot, more = n.ks.ReclaimUpTo(n.nowMs(), grace, horizon, reclaimBatch)
			if len(tomb) > 0 || forgot > 0 {
				n.reclaimedSinceSnapshot = true
			}
			compacted := n.ks.Stats().Compactions != compactions
			compactions = n.ks.Stats().Compactions
			n.mu.Unlock()
			if compacted {
				// Most keys just left: hand their memory back to the OS now
				// rather than over the scavenger's minutes.
				debug.FreeOSMemory()
			}
			select {
			case <-n.stop:
				return
			default:
			}
		}
	}
}
