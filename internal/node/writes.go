package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/wal"
)

// Writes and groups. Every client write goes through Writes: a group of
// writes is staged in order under mu (each checked, its idempotency key
// claimed, its own totals reserved in pending), queued to the log as one
// group of records, and, once the log says the last is durable, merged,
// queued for gossip and answered. A pipeline of Redis commands or one HTTP
// request is a group; concurrent groups share the log's group commits.
//
// Adds to one key chain through pending (each builds on the totals the one
// before reserved), so any number of them share a group. A change of a
// key's lifecycle (a delete, an expiry, an add that sets a TTL) reads the
// key's merged state, which does not show the group's earlier writes: it
// starts a new group when its key is already in the group, and so does any
// write to a key whose lifecycle the group changes. For the same reason a
// change of a key's lifecycle holds the key until it is merged (holdLives),
// and a call that takes several groups holds all its keys throughout
// (holdKeys): other writes to those keys wait, before staging anything.

// maxGroup bounds the writes staged in one group.
const maxGroup = 1024

// staged is one write of a group, checked and reserved, waiting for the log.
type staged struct {
	i       int // index in the Writes call
	entry   crdt.Entry
	meta    crdt.Meta
	hasE    bool
	hasM    bool
	life    bool // changes its key's lifecycle (see above)
	idem    *wal.Idem
	res     reservation
	reserve bool
}

// group is the staging area of one Writes call, pooled: a steady stream of
// groups allocates nothing here.
type group struct {
	st      []staged
	parts   []wal.Part
	entries []crdt.Entry
	ends    []int
	metas   []crdt.Meta
	done    chan error
	lives   int // staged writes with life set
}

var groups = sync.Pool{New: func() any { return &group{done: make(chan error, 1)} }}

var _ service.Service = (*Node)(nil)

// Writes applies ws in order and fills out (see service.Service).
func (n *Node) Writes(_ context.Context, ws []service.Write, out []service.WriteResult) {
	g := groups.Get().(*group)
	defer groups.Put(g)
	n.mu.Lock()
	defer n.mu.Unlock()
	var mine chan struct{} // this call's hold on its keys, if it splits
	for {
		if n.splits(ws) {
			mine = n.holdKeys(ws)
			defer n.releaseKeys(ws, mine)
			break
		}
		if n.awaitKeys(ws) {
			break // one group, staged under this hold of mu
		}
	}
	for i := 0; i < len(ws); {
		g.st, g.lives = g.st[:0], 0
		if mine != nil {
			n.awaitIdem(ws[i].Opts.Idem)
		}
		now := n.nowMs() // one reading per group: the clock costs
		j := i
		for ; j < len(ws) && len(g.st) < maxGroup; j++ {
			if g.conflicts(ws, j) || (len(g.st) > 0 && n.idemBusy(ws[j].Opts.Idem)) {
				break
			}
			out[j] = service.WriteResult{}
			if s, ok := n.stage(&ws[j], now, &out[j]); ok {
				s.i = j
				g.st = append(g.st, s)
				if s.life {
					g.lives++
				}
			}
		}
		n.commitGroup(g, ws, out)
		i = j
	}
}

// Writes that split. A call whose writes make more than one group (see
// splits) releases mu while each group is made durable; yet no other write
// to its keys may come between its groups, or MULTI; INCR k; EXPIRE k 60
// NX; EXEC could see a DEL of k between them. So such a call first holds
// its keys (n.heldKeys): other calls wait for them before staging
// anything, holding nothing themselves (no reservation, no idempotency
// key), and a holder waits only for groups being logged, so no two calls
// ever wait for each other. A call that does not split stages all its
// writes under one hold of mu: it only waits for its keys to be free when
// it starts.

// splits reports whether ws may take more than one group: over maxGroup
// writes, two writes conflicts would part, or an idempotency key that
// another write holds now (idemBusy). Caller holds mu: until it is
// released, no other write can claim a key.
func (n *Node) splits(ws []service.Write) bool {
	if len(ws) > maxGroup {
		return true
	}
	check := false
	for i := range ws {
		if n.idemBusy(ws[i].Opts.Idem) {
			return true
		}
		check = check || ws[i].Opts.Idem != "" || changesLife(&ws[i])
	}
	if !check || len(ws) < 2 {
		return false // adds alone chain through pending: one group
	}
	life := make(map[string]bool, len(ws)) // key: a write to it changes its lifecycle
	var idems map[string]struct{}
	for i := range ws {
		w := &ws[i]
		l, seen := life[w.Key]
		if seen && (l || changesLife(w)) {
			return true
		}
		life[w.Key] = l || changesLife(w)
		if w.Opts.Idem != "" {
			if _, dup := idems[w.Opts.Idem]; dup {
				return true
			}
			if idems == nil {
				idems = make(map[string]struct{})
			}
			idems[w.Opts.Idem] = struct{}{}
		}
	}
	return false
}

// holdKeys waits until no other call holds any key of ws, then holds them
// all for this call. Caller holds mu, and nothing staged.
func (n *Node) holdKeys(ws []service.Write) chan struct{} {
	n.awaitKeys(ws)
	mine := make(chan struct{})
	for i := range ws {
		n.heldKeys[ws[i].Key] = mine
	}
	return mine
}

// releaseKeys ends holdKeys, waking the calls waiting for the keys.
// Caller holds mu.
func (n *Node) releaseKeys(ws []service.Write, mine chan struct{}) {
	for i := range ws {
		if n.heldKeys[ws[i].Key] == mine {
			delete(n.heldKeys, ws[i].Key)
		}
	}
	close(mine)
}

// awaitKeys waits until no other call holds a key of ws; free reports
// whether they were free without waiting. Caller holds mu (released while
// waiting), and nothing staged.
func (n *Node) awaitKeys(ws []service.Write) (free bool) {
	free = true
	for len(n.heldKeys) > 0 {
		var busy chan struct{}
		for i := range ws {
			if ch, ok := n.heldKeys[ws[i].Key]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			return free
		}
		free = false
		n.mu.Unlock()
		<-busy
		n.mu.Lock()
	}
	return free
}

// awaitIdem waits until no other write holds idemKey, so that claiming it
// (claimIdem) does not wait with writes staged. Caller holds mu (released
// while waiting), and nothing staged.
func (n *Node) awaitIdem(idemKey string) {
	for idemKey != "" {
		ch, busy := n.idemWait[idemKey]
		if !busy {
			return
		}
		n.mu.Unlock()
		<-ch
		n.mu.Lock()
	}
}

// conflicts reports whether ws[j] must wait for the group staged so far:
// its key is in the group and either it or the staged write changes the
// key's lifecycle, or it reuses an idempotency key the group claimed.
func (g *group) conflicts(ws []service.Write, j int) bool {
	if len(g.st) == 0 {
		return false
	}
	w := &ws[j]
	life := changesLife(w)
	if !life && g.lives == 0 && w.Opts.Idem == "" {
		return false
	}
	for _, s := range g.st {
		o := &ws[s.i]
		if o.Key == w.Key && (life || s.life) {
			return true
		}
		if w.Opts.Idem != "" && o.Opts.Idem == w.Opts.Idem {
			return true
		}
	}
	return false
}

// idemBusy reports whether another write holds idemKey: claiming it would
// wait, releasing mu. A group must not wait with writes staged: their
// reservations are not logged yet (another group could log totals that
// include them first), and their claimed keys would stay held, so two
// groups using the same two keys in opposite orders would wait for each
// other forever. Caller holds mu.
func (n *Node) idemBusy(idemKey string) bool {
	if idemKey == "" {
		return false
	}
	_, busy := n.idemWait[idemKey]
	return busy
}

func changesLife(w *service.Write) bool {
	return w.Op != service.OpAdd || w.Opts.TTL > 0
}

// stage checks w and reserves what it needs, or answers it in out at once
// (an error, a replay, a write with nothing to do): ok is false then.
// Caller holds mu (which claiming an idempotency key may release).
func (n *Node) stage(w *service.Write, now int64, out *service.WriteResult) (s staged, ok bool) {
	if err := crdt.ValidKey(w.Key); err != nil {
		out.Err = err
		return s, false
	}
	var fp uint64
	if w.Opts.Idem != "" {
		fp = fingerprint(w)
	}
	idem, first, done, err := n.beginWrite(w.Opts.Idem, fp)
	switch {
	case err != nil:
		out.Err = err
		return s, false
	case done:
		n.replay(w, first, out)
		return s, false
	}
	if idem != nil {
		now = n.nowMs() // claiming the key may have waited
	}
	s = staged{idem: idem, life: changesLife(w)}
	switch w.Op {
	case service.OpAdd:
		ok, err = n.stageAdd(w, now, &s, out)
	case service.OpDelete:
		ok = n.stageDelete(w.Key, now, &s, out)
	case service.OpExpire, service.OpPersist:
		ok, err = n.stageExpiry(w, now, &s, out)
	default:
		err = fmt.Errorf("node: unknown write op %d", w.Op)
	}
	if err != nil {
		out.Err = err
	}
	if !ok {
		n.endWrite(idem)
	}
	return s, ok
}

// fingerprint identifies w for its idempotency key (requestFingerprint).
func fingerprint(w *service.Write) uint64 {
	switch w.Op {
	case service.OpAdd:
		if w.Opts.TTL >= time.Millisecond {
			mode := crdt.TTLIfNone
			if w.Opts.TTLAlways {
				mode = crdt.TTLAlways
			}
			return requestFingerprint(opAdd, w.Key, w.Delta, w.Opts.TTL.Milliseconds(), int64(mode))
		}
		return requestFingerprint(opAdd, w.Key, w.Delta)
	case service.OpDelete:
		return requestFingerprint(opDelete, w.Key)
	case service.OpExpire:
		if w.Cond != service.ExpireAlways || w.TTL <= 0 {
			return requestFingerprint(opTTL, w.Key, ttlMillis(w.TTL), int64(w.Cond), 1)
		}
		return requestFingerprint(opTTL, w.Key, ttlMillis(w.TTL))
	}
	return requestFingerprint(opTTL, w.Key, 0) // OpPersist: as SetTTL(0)
}

// ttlMillis is ttl in whole milliseconds, at least 1 for a positive ttl.
func ttlMillis(ttl time.Duration) int64 {
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	return ms
}

// replay answers a write whose idempotency key was applied before: first
// is the answer it had.
func (n *Node) replay(w *service.Write, first int64, out *service.WriteResult) {
	out.Replayed, out.Applied = true, true
	switch w.Op {
	case service.OpAdd:
		out.Counter = n.replayedCounter(w.Key, first)
	case service.OpDelete:
		out.Applied = first != 0
	default:
		out.Counter = n.counter(w.Key, n.nowMs())
	}
}

// stageAdd stages an add: its entry, and its expiry if it sets one.
func (n *Node) stageAdd(w *service.Write, now int64, s *staged, out *service.WriteResult) (bool, error) {
	if l, _ := n.ks.LifeOf(w.Key); w.Opts.TTL > 0 || l.TTL.Deadline != 0 {
		// The clock decides this write's generation, or its deadline.
		if err := n.clockSuspect(); err != nil {
			return false, err
		}
	}
	gen, cur := n.ks.WriteGen(w.Key, n.id, now)
	if p, ok := n.pending[w.Key]; ok && p.gen == gen {
		cur = p.PN
	}
	view, _ := n.ks.ValueWith(w.Key, n.id, gen, cur)
	e, err := crdt.Change(w.Key, n.id, gen, cur, view, w.Delta)
	if err != nil {
		return false, err
	}
	s.entry, s.hasE = e, true
	if w.Opts.TTL >= time.Millisecond {
		mode := crdt.TTLIfNone
		if w.Opts.TTLAlways {
			mode = crdt.TTLAlways
		}
		s.meta, s.hasM = n.ks.Expiry(w.Key, gen, now+w.Opts.TTL.Milliseconds(), mode)
	}
	s.res = reservation{key: w.Key, gen: gen, pn: crdt.PN{P: e.P, N: e.N}}
	s.reserve = true
	n.pending[w.Key] = s.res.pendingPN()
	// The answer is the value right after this write, as this node orders
	// its writes: what a retry with its idempotency key gets back too.
	out.Counter = service.Counter{Key: w.Key, Value: view + w.Delta, Live: true}
	out.Applied = true
	return true, nil
}

// stageDelete stages a delete: a tombstone, written even if the key is
// not live here (another replica may hold it).
func (n *Node) stageDelete(key string, now int64, s *staged, out *service.WriteResult) bool {
	st := n.ks.StatusOf(key, now)
	s.meta, _ = n.ks.Deletion(key, now)
	s.hasM = true
	out.Applied, out.Prior = st.Live, st.Value
	// Adds logged before the delete and not merged yet are in the
	// generation it ends: they go with it, so its answer (GETDEL's value)
	// counts them, as their own answers do. Else a read-and-reset would
	// lose them.
	gen, _ := n.ks.WriteGen(key, n.id, now)
	if p, ok := n.pending[key]; ok && p.gen == gen {
		out.Applied = true
		out.Prior, _ = n.ks.ValueWith(key, n.id, gen, p.PN)
	}
	return true
}

// stageExpiry stages a change of a live key's expiry (OpExpire, OpPersist),
// or a delete for an expiry already past. Nothing is staged for a key that
// is not live, a condition that does not hold or an expiry already as
// asked: out says so.
func (n *Node) stageExpiry(w *service.Write, now int64, s *staged, out *service.WriteResult) (bool, error) {
	// The deadline set, or whether the one held has passed, is read from
	// the clock: a clock most members disagree with must not decide either.
	if err := n.clockSuspect(); err != nil {
		return false, err
	}
	st := n.ks.StatusOf(w.Key, now)
	out.Counter = n.counter(w.Key, now)
	if !st.Live {
		return false, nil
	}
	deadline := int64(0)
	if w.Op == service.OpExpire {
		deadline = now + ttlMillis(w.TTL)
		if !expireHolds(w.Cond, st.Deadline, deadline) {
			return false, nil
		}
		if w.TTL <= 0 {
			// A deadline already past: Redis deletes the key.
			s.meta, _ = n.ks.Deletion(w.Key, now)
			s.hasM = true
			out.Applied, out.Prior = true, st.Value
			out.Counter = service.Counter{Key: w.Key}
			return true, nil
		}
	} else if st.Deadline == 0 {
		return false, nil // OpPersist: no expiry to remove
	}
	out.Applied = true
	m, changed := n.ks.Expiry(w.Key, st.Gen, deadline, crdt.TTLAlways)
	if !changed {
		return false, nil
	}
	s.meta, s.hasM = m, true
	return true, nil
}

// expireHolds reports whether cond allows a new deadline given the key's
// current one (0: none, which counts as never).
func expireHolds(cond service.ExpireCond, cur, next int64) bool {
	switch cond {
	case service.ExpireNX:
		return cur == 0
	case service.ExpireXX:
		return cur != 0
	case service.ExpireGT:
		return cur != 0 && next > cur
	case service.ExpireLT:
		return cur == 0 || next < cur
	}
	return true
}

// commitGroup makes g's staged writes durable, merges them, queues them for
// gossip and completes their answers in out. It is called with mu held and
// returns with mu held, but releases it while the log syncs. The records
// are queued while mu is held, so they reach the log in reservation order:
// a later write's totals, which include an earlier reservation, can never
// be on disk before the earlier record (and its key).
func (n *Node) commitGroup(g *group, ws []service.Write, out []service.WriteResult) {
	if len(g.st) == 0 {
		return
	}
	g.parts, g.metas, g.entries = g.parts[:0], g.metas[:0], g.entries[:0]
	// A keyed write is a record of its own (the key is logged with its
	// change); a run of unkeyed ones shares one. Entries go to one pooled
	// slice, cut into the parts once it has stopped growing: the log has
	// encoded them by the time it answers, and gossip keeps only keys.
	ends := g.ends[:0] // entry index where each part ends
	for k := range g.st {
		s := &g.st[k]
		if s.idem != nil {
			// Until the key is remembered it travels with the reservation:
			// a snapshot that holds the one holds the other.
			s.idem.Value = idemAnswer(ws[s.i].Op, &out[s.i])
			n.idemInFlight[s.idem.Key] = *s.idem
		}
		if s.idem != nil || len(g.parts) == 0 || g.parts[len(g.parts)-1].Idem != nil {
			if len(g.parts) > 0 {
				ends = append(ends, len(g.entries))
			}
			g.parts = append(g.parts, wal.Part{Idem: s.idem})
		}
		if s.hasM {
			p := &g.parts[len(g.parts)-1]
			p.C.Metas = append(p.C.Metas, s.meta)
			g.metas = append(g.metas, s.meta)
		}
		if s.hasE {
			g.entries = append(g.entries, s.entry)
		}
	}
	ends = append(ends, len(g.entries))
	g.ends = ends
	start := 0
	for i := range g.parts {
		g.parts[i].C.Entries = g.entries[start:ends[i]:ends[i]]
		start = ends[i]
	}
	held := n.holdLives(g, ws)
	err := n.logGroup(g)
	now := n.nowMs()
	defer n.releaseLives(g, ws, held)
	for k := range g.st {
		s := &g.st[k]
		o := &out[s.i]
		if err == nil {
			if s.hasM {
				n.ks.MergeMeta(s.meta)
			}
			if s.hasE {
				n.ks.Merge(s.entry)
			}
		}
		if s.reserve {
			n.release(&s.res)
		}
		if s.idem != nil {
			delete(n.idemInFlight, s.idem.Key)
			if err == nil {
				n.rememberIdem(*s.idem)
			}
			n.endWrite(s.idem)
		}
		if err != nil {
			*o = service.WriteResult{Err: err}
			continue
		}
		switch ws[s.i].Op {
		case service.OpDelete:
			n.metrics.deletes.Inc()
		case service.OpAdd, service.OpExpire, service.OpPersist:
			o.Counter.TTL = 0
			if l, _ := n.ks.LifeOf(o.Counter.Key); o.Counter.Live && l.TTL.Deadline != 0 {
				o.Counter.TTL = n.counter(o.Counter.Key, now).TTL
			}
		}
	}
	if err == nil {
		for _, p := range g.parts {
			n.eng.Local(p.C)
		}
		n.scheduleFlush()
	}
	// The parts' metas went to the log and to gossip: start afresh.
	clear(g.parts)
	if cap(g.entries) > 4*maxGroup {
		g.entries = nil // don't pool a buffer grown for a huge group
	}
}

// holdLives holds the keys whose lifecycle g changes (a delete, an expiry)
// until the change is merged: staging reads a key's merged lifecycle, so a
// write staged meanwhile would build on the generation the change ends (an
// INCR answered, then dropped by a DEL logged before it). Keys this call
// holds already are skipped. Caller holds mu.
func (n *Node) holdLives(g *group, ws []service.Write) chan struct{} {
	if n.wal == nil {
		return nil // without a log, mu is held until the changes are merged
	}
	var held chan struct{}
	for k := range g.st {
		s := &g.st[k]
		if !s.hasM {
			continue
		}
		key := ws[s.i].Key
		if _, ok := n.heldKeys[key]; ok {
			continue // this call holds it (no other call stages a held key)
		}
		if held == nil {
			held = make(chan struct{})
		}
		n.heldKeys[key] = held
	}
	return held
}

// releaseLives ends holdLives. Caller holds mu.
func (n *Node) releaseLives(g *group, ws []service.Write, held chan struct{}) {
	if held == nil {
		return
	}
	for k := range g.st {
		if key := ws[g.st[k].i].Key; n.heldKeys[key] == held {
			delete(n.heldKeys, key)
		}
	}
	close(held)
}

// idemAnswer is what a keyed write's retries get back (wal.Idem.Value).
func idemAnswer(op service.Op, o *service.WriteResult) int64 {
	switch op {
	case service.OpDelete:
		if o.Applied {
			return 1
		}
		return 0
	}
	return o.Counter.Value
}

// logGroup queues g's parts and waits until they are durable, releasing mu
// meanwhile. Without a log it returns at once.
func (n *Node) logGroup(g *group) error {
	if n.wal == nil {
		return nil
	}
	if len(g.metas) > 0 {
		// Until merged, the metas travel with their records: a snapshot
		// taken meanwhile covers the records, so it must hold them.
		n.metaSeq++
		seq := n.metaSeq
		n.pendingMetas[seq] = g.metas
		defer delete(n.pendingMetas, seq) // mu is held again on return
	}
	if err := n.wal.EnqueueGroup(g.parts, g.done); err != nil {
		return service.Unavailable(err) // nothing was queued
	}
	n.mu.Unlock()
	err := n.wal.Wait(g.done)
	n.mu.Lock()
	if err != nil {
		// Not a 503: the records may have reached the disk, so the writes
		// may count after a restart. Nobody may retry them blindly. The
		// log refuses all later writes, and no snapshot is written after a
		// log failure.
		return fmt.Errorf("node: write-ahead log failed; this write's outcome is unknown: %w", err)
	}
	return nil
}

// Add adds delta (non-zero) to key and returns the value right after the
// write, once it is durable and queued for gossip (see Writes).
func (n *Node) Add(ctx context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error) {
	var out [1]service.WriteResult
	n.Writes(ctx, []service.Write{{Op: service.OpAdd, Key: key, Delta: delta, Opts: w}}, out[:])
	return out[0].Counter, out[0].Replayed, out[0].Err
}

// Delete resets key on every replica: it ends the generation this node
// holds, so writes to it that this node had not seen are dropped
// everywhere, and later writes count from 0. The tombstone is written even
// if the key is not live here.
func (n *Node) Delete(ctx context.Context, key string, idem string) (existed, replayed bool, err error) {
	var out [1]service.WriteResult
	n.Writes(ctx, []service.Write{{Op: service.OpDelete, Key: key, Opts: service.WriteOptions{Idem: idem}}}, out[:])
	return out[0].Applied, out[0].Replayed, out[0].Err
}

// SetTTL gives live key an expiry ttl from now (ttl > 0; it replaces any
// other) or removes its expiry (ttl == 0). It returns service.ErrNotFound
// if the key is not live on this node.
func (n *Node) SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (service.Counter, bool, error) {
	w := service.Write{Op: service.OpExpire, Key: key, TTL: ttl, Opts: service.WriteOptions{Idem: idem}}
	if ttl == 0 {
		w.Op = service.OpPersist
	}
	var out [1]service.WriteResult
	n.Writes(ctx, []service.Write{w}, out[:])
	o := out[0]
	if o.Err == nil && !o.Replayed && !o.Counter.Live {
		return service.Counter{}, false, fmt.Errorf("%w: key %q is absent, deleted or expired", service.ErrNotFound, key)
	}
	return o.Counter, o.Replayed, o.Err
}
