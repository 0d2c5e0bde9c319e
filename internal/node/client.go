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

// Get returns key as this node sees it.
func (n *Node) Get(_ context.Context, key string) (c api.Counter, err error) {
	defer func() { n.metrics.op("get", key, err) }()
	if err := crdt.ValidKey(key); err != nil {
		return api.Counter{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counter(key, n.nowMs()), nil
}

// counter reports key at now (Unix ms). Caller holds mu.
func (n *Node) counter(key string, now int64) api.Counter {
	c, _ := n.counterGen(key, now)
	return c
}

// counterGen is counter, with the key's current generation. Caller holds mu.
func (n *Node) counterGen(key string, now int64) (api.Counter, uint64) {
	st := n.ks.StatusOf(key, now)
	c := api.Counter{Key: key, Value: st.Value, Live: st.Live}
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

// Add adds delta (non-zero) to key and returns the value this node sees
// once the change is durable and queued for gossip. With an idempotency key
// the write is applied at most once: a retry within the window gets the
// first answer back (replayed), even across a crash and restart. With a TTL
// the key's expiry is set in the same record (only if its generation has
// none, unless w.TTLAlways).
func (n *Node) Add(ctx context.Context, key string, delta int64, w api.WriteOptions) (c api.Counter, replayed bool, err error) {
	defer func() {
		op := "inc"
		if delta < 0 {
			op = "dec"
		}
		n.metrics.op(op, key, err)
	}()
	mode := crdt.TTLIfNone
	if w.TTLAlways {
		mode = crdt.TTLAlways
	}
	fp := requestFingerprint(opAdd, key, delta)
	if w.TTL >= time.Millisecond {
		fp = requestFingerprint(opAdd, key, delta, w.TTL.Milliseconds(), int64(mode))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	idem, first, done, err := n.beginWrite(w.Idem, fp)
	if err != nil || done {
		return n.replayedCounter(key, first), done, err
	}
	now := n.nowMs()
	if l, _ := n.ks.LifeOf(key); w.TTL > 0 || l.TTL.Deadline != 0 {
		// The clock decides this write's generation, or its deadline.
		if err := n.clockSuspect(); err != nil {
			n.endWrite(idem)
			return api.Counter{}, false, err
		}
	}
	gen, cur := n.ks.WriteGen(key, n.id, now)
	if p, ok := n.pending[key]; ok && p.gen == gen {
		cur = p.PN
	}
	view, _ := n.ks.ValueWith(key, n.id, gen, cur)
	e, err := crdt.Change(key, n.id, gen, cur, view, delta)
	if err != nil {
		n.endWrite(idem)
		return api.Counter{}, false, err
	}
	batch := crdt.Contents{Entries: []crdt.Entry{e}}
	if w.TTL >= time.Millisecond {
		if m, ok := n.ks.Expiry(key, gen, now+w.TTL.Milliseconds(), mode); ok {
			batch.Metas = append(batch.Metas, m)
		}
	}
	res := reservation{key: key, gen: gen, pn: crdt.PN{P: e.P, N: e.N}}
	n.pending[key] = res.pendingPN()
	if err := n.commit(batch, idem, view+delta, &res); err != nil {
		return api.Counter{}, false, err
	}
	c, nowGen := n.counterGen(key, n.nowMs())
	if idem != nil || nowGen != gen || !c.Live {
		// A keyed write answers what its retries will get: the value
		// right after it. So does a write whose generation ended (a
		// concurrent delete, or expiry) while it was made durable: it
		// counted in that generation.
		c.Value, c.Live = view+delta, true
	}
	return c, false, nil
}

// replayedCounter is the answer to a replayed keyed write: the value first
// answered, with the key's expiry as it is now.
func (n *Node) replayedCounter(key string, first int64) api.Counter {
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
		return nil, 0, false, api.Unavailable(errStopped)
	default:
	}
	if n.wal != nil {
		if err := n.wal.Err(); err != nil {
			return nil, 0, false, api.Unavailable(err)
		}
	}
	if n.conflict != nil {
		return nil, 0, false, api.Unavailable(n.conflict)
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

// commit makes batch durable (with idem, answering value, if given), then
// merges it into the keyspace and queues it for gossip, releasing res. It
// is called with mu held and returns with mu held, but releases it while
// the log syncs. batch must be durable before it is merged (and so may be
// gossiped) or acknowledged. It is queued while mu is held, so records
// reach the log in reservation order: a later write's totals, which include
// this reservation, can never be on disk before this record (and its key).
func (n *Node) commit(batch crdt.Contents, idem *wal.Idem, value int64, res *reservation) error {
	if idem != nil {
		// Until the key is remembered it travels with the reservation: a
		// snapshot that holds the one holds the other.
		idem.Value = value
		n.idemInFlight[idem.Key] = *idem
		defer n.endWrite(idem)
	}
	if n.wal != nil {
		if len(batch.Metas) > 0 {
			// Until merged, the metas travel with the record: a snapshot
			// taken meanwhile covers it, so it must hold them.
			n.metaSeq++
			seq := n.metaSeq
			n.pendingMetas[seq] = batch.Metas
			defer delete(n.pendingMetas, seq) // mu is held again on return
		}
		done, err := n.wal.Enqueue(batch, idem)
		if err != nil {
			n.release(res) // nothing was queued
			if idem != nil {
				delete(n.idemInFlight, idem.Key)
			}
			return api.Unavailable(err)
		}
		n.mu.Unlock()
		err = <-done
		n.mu.Lock()
		if err != nil {
			// Not a 503: the record may have reached the disk, so the
			// write may count after a restart. Nobody may retry it blindly.
			// Its reservation (and key) stay: the log refuses all later
			// writes, and no snapshot is written after a log failure.
			return fmt.Errorf("node: write-ahead log failed; this write's outcome is unknown: %w", err)
		}
	}
	for _, m := range batch.Metas {
		n.ks.MergeMeta(m)
	}
	for _, e := range batch.Entries {
		n.ks.Merge(e)
	}
	n.release(res)
	n.eng.Local(batch)
	n.scheduleFlush()
	if idem != nil {
		delete(n.idemInFlight, idem.Key)
		n.rememberIdem(*idem)
	}
	return nil
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
