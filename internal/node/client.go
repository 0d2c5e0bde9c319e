package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wal"
)

var _ api.Backend = (*Node)(nil)

// errStopped is returned to clients once the node is shutting down.
var errStopped = errors.New("node: shutting down")

// Get returns key's value as this node sees it.
func (n *Node) Get(_ context.Context, key string) (v int64, err error) {
	defer func() { n.metrics.op("get", key, err) }()
	if err := crdt.ValidKey(key); err != nil {
		return 0, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	v, _ = n.ks.Value(key)
	return v, nil
}

// Add adds delta (non-zero) to key and returns the value this node sees
// once the change is durable and queued for gossip. With an idempotency key
// the write is applied at most once: a retry within the window gets the
// first answer back (replayed), even across a crash and restart.
func (n *Node) Add(ctx context.Context, key string, delta int64, idemKey string) (v int64, replayed bool, err error) {
	defer func() {
		op := "inc"
		if delta < 0 {
			op = "dec"
		}
		n.metrics.op(op, key, err)
	}()
	select {
	case <-n.stop:
		return 0, false, api.Unavailable(errStopped)
	default:
	}
	if n.wal != nil {
		if err := n.wal.Err(); err != nil {
			return 0, false, api.Unavailable(err)
		}
	}
	fp := requestFingerprint(key, delta)
	n.mu.Lock()
	if n.conflict != nil {
		err := n.conflict
		n.mu.Unlock()
		return 0, false, api.Unavailable(err)
	}
	var idem *wal.Idem
	if idemKey != "" {
		first, done, err := n.claimIdem(idemKey, fp)
		if err != nil || done {
			n.mu.Unlock()
			return first, done, err
		}
		defer n.releaseIdem(idemKey)
		idem = &wal.Idem{Key: idemKey, Request: fp, At: n.remembered(n.clk.Now())}
	}
	cur, ok := n.pending[key]
	if !ok {
		cur = n.ks.Get(key, n.id)
	}
	view, _ := n.ks.ValueWith(key, n.id, cur)
	e, err := crdt.Change(key, n.id, cur, view, delta)
	if err != nil {
		n.mu.Unlock()
		return 0, false, err
	}
	n.pending[key] = crdt.PN{P: e.P, N: e.N}
	if idem != nil {
		// The answer a retry will get: the value right after this write.
		// Until the key is remembered it travels with the reservation: a
		// snapshot that holds the one holds the other.
		idem.Value = view + delta
		n.idemInFlight[idemKey] = *idem
	}
	// e must be durable before it is merged (and so may be gossiped) or
	// acknowledged. It is queued while mu is held, so records reach the log
	// in reservation order: a later write's totals, which include this
	// reservation, can never be on disk before this record (and its key).
	var done <-chan error
	if n.wal != nil {
		done, err = n.wal.Enqueue([]crdt.Entry{e}, idem)
		if err != nil {
			delete(n.idemInFlight, idemKey)
			if pn := n.pending[key]; pn == (crdt.PN{P: e.P, N: e.N}) {
				delete(n.pending, key) // nothing was queued
			}
			n.mu.Unlock()
			return 0, false, api.Unavailable(err)
		}
	}
	n.mu.Unlock()

	if done != nil {
		if err := <-done; err != nil {
			// Not a 503: the record may have reached the disk, so the
			// write may count after a restart. Nobody may retry it blindly.
			// Its reservation (and key) stay: the log refuses all later
			// writes, and no snapshot is written after a log failure.
			return 0, false, fmt.Errorf("node: write-ahead log failed; this write's outcome is unknown: %w", err)
		}
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	n.ks.Merge(e)
	if n.pending[key] == (crdt.PN{P: e.P, N: e.N}) {
		delete(n.pending, key)
	}
	n.eng.Local(e)
	n.scheduleFlush()
	if idem != nil {
		delete(n.idemInFlight, idemKey)
		n.rememberIdem(*idem)
		return idem.Value, false, nil
	}
	v, _ = n.ks.Value(key)
	return v, false, nil
}

// Nodes lists the members as this node sees them.
func (n *Node) Nodes(context.Context) (any, error) {
	n.mu.Lock()
	ms := n.members.Members()
	n.mu.Unlock()
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = api.Member{
			ID: m.ID.String(), Name: m.Name, GossipAddr: m.GossipAddr, HTTPAddr: m.HTTPAddr,
			Status: m.State.String(), Incarnation: m.Incarnation, LastSeen: m.LastSeen.UTC().Format(time.RFC3339Nano),
			Self: m.ID == n.id,
		}
	}
	return out, nil
}

// Health reports whether the node is serving.
func (n *Node) Health(context.Context) (bool, any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := api.NodeHealth{
		Status: "ok", ID: n.id.String(), Name: n.cfg.Name, Cluster: n.cfg.Cluster,
		Members: n.members.Len(), Peers: len(n.members.Peers()), Keys: n.ks.Len(),
		Durability: "memory",
	}
	if n.wal != nil {
		h.Durability = "fsync=" + n.cfg.Fsync.String()
	}
	select {
	case <-n.stop:
		h.Status = "stopping"
		return false, h
	default:
	}
	if n.wal != nil {
		if err := n.wal.Err(); err != nil {
			h.Status, h.Error = "failed", err.Error()
			return false, h
		}
	}
	if n.conflict != nil {
		h.Status, h.Error = "conflict", n.conflict.Error()
		return false, h
	}
	return true, h
}
