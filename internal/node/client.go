package node

import (
	"context"
	"errors"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/wal"
)

// errStopped is returned to clients once the node is shutting down.
var errStopped = errors.New("node: shutting down")

// Get returns key as this node sees it.
func (n *Node) Get(_ context.Context, key string) (service.Counter, error) {
	if err := crdt.ValidKey(key); err != nil {
		return service.Counter{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counter(key, n.nowMs()), nil
}

// counter reports key at now (Unix ms). Caller holds mu.
func (n *Node) counter(key string, now int64) service.Counter {
	c, _ := n.counterGen(key, now)
	return c
}

// counterGen is counter, with the key's current generation. Caller holds mu.
func (n *Node) counterGen(key string, now int64) (service.Counter, uint64) {
	st := n.ks.StatusOf(key, now)
	c := service.Counter{Key: key, Value: st.Value, Live: st.Live}
	if st.Live {
		c.TTL = ttlLeft(st.Deadline, now)
	}
	return c, st.Gen
}

// ttlLeft is the time from now to deadline (Unix ms); 0 for no deadline.
func ttlLeft(deadline, now int64) time.Duration {
	if deadline == 0 {
		return 0
	}
	return time.Duration(deadline-now) * time.Millisecond
}

// nowMs is the node's wall clock in Unix milliseconds, the time expiry
// deadlines are set and checked in.
func (n *Node) nowMs() int64 { return n.clk.Now().UnixMilli() }

// replayedCounter is the answer to a replayed keyed write: the value first
// answered, with the key's expiry as it is now.
func (n *Node) replayedCounter(key string, first int64) service.Counter {
	c := n.counter(key, n.nowMs())
	c.Value, c.Live = first, true
	return c
}

// pendingPN is a reservation of own totals in one generation of a key.
type pendingPN struct {
	gen uint64
	crdt.PN
}

// reservation is the pending entry a write holds until it is merged.
type reservation struct {
	key string
	gen uint64
	pn  crdt.PN
}

func (r *reservation) pendingPN() pendingPN { return pendingPN{gen: r.gen, PN: r.pn} }

// release drops the reservation unless a later write took its place.
// Caller holds mu.
func (n *Node) release(r *reservation) {
	if r != nil && n.pending[r.key] == r.pendingPN() {
		delete(n.pending, r.key)
	}
}

// beginWrite checks that the node takes writes and claims idemKey (if
// any) for a request with fingerprint fp: done means it was applied before
// and first is its answer. On success with a key, the caller must end the
// write with commit or endWrite. Caller holds mu.
func (n *Node) beginWrite(idemKey string, fp uint64) (idem *wal.Idem, first int64, done bool, err error) {
	select {
	case <-n.stop:
		return nil, 0, false, service.Unavailable(errStopped)
	default:
	}
	if n.wal != nil {
		if err := n.wal.Err(); err != nil {
			return nil, 0, false, service.Unavailable(err)
		}
	}
	if n.conflict != nil {
		return nil, 0, false, service.Unavailable(n.conflict)
	}
	if idemKey == "" {
		return nil, 0, false, nil
	}
	first, done, err = n.claimIdem(idemKey, fp)
	if err != nil || done {
		return nil, first, done, err
	}
	return &wal.Idem{Key: idemKey, Request: fp, At: n.remembered(n.clk.Now())}, 0, false, nil
}

// endWrite releases a claimed idempotency key, waking any retry waiting
// for it. Caller holds mu.
func (n *Node) endWrite(idem *wal.Idem) {
	if idem != nil {
		n.releaseIdem(idem.Key)
	}
}

// Nodes lists the members as this node sees them.
func (n *Node) Nodes(context.Context) ([]service.Member, error) {
	n.mu.Lock()
	ms := n.members.Members()
	n.mu.Unlock()
	out := make([]service.Member, len(ms))
	for i, m := range ms {
		out[i] = service.Member{
			ID: m.ID.String(), Name: m.Name, GossipAddr: m.GossipAddr, HTTPAddr: m.HTTPAddr,
			Status: m.State.String(), Incarnation: m.Incarnation, LastSeen: m.LastSeen.UTC().Format(time.RFC3339Nano),
			Self: m.ID == n.id,
		}
	}
	return out, nil
}

// Health reports whether the node is serving.
func (n *Node) Health(context.Context) (bool, service.Health) {
	n.mu.Lock()
	defer n.mu.Unlock()
	written, _, _ := n.ks.Counts()
	h := service.Health{
		Status: "ok", ID: n.id.String(), Name: n.cfg.Name, Cluster: n.cfg.Cluster,
		Members: n.members.Len(), Peers: len(n.members.Peers()), Keys: n.ks.Len(), LiveKeys: written,
		Durability: "memory", PendingKeys: n.eng.PendingKeys(),
	}
	for _, d := range n.members.ClockOffsets() {
		h.ClockOffsetMax = max(h.ClockOffsetMax, d, -d)
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
