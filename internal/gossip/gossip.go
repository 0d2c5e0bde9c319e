// Package gossip decides what a node tells its peers about the keyspace.
//
// It is a pure state machine: no sockets, goroutines or clocks. The owner
// feeds it durable local changes (Local), received messages (Handle) and
// ticks (Flush every few milliseconds, Sync every sync interval), and sends
// the Outbound messages it returns.
//
// Two mechanisms replicate state:
//
//   - Eager dissemination. Local changes are batched until the next Flush and
//     pushed as a Delta to Fanout random peers. A peer that learns something
//     new from a Delta queues the news for its own next Flush with one more
//     hop, up to MaxHops, sending it to peers other than the ones it got it
//     from (they have it), so a write reaches every node in a few
//     milliseconds with high probability.
//   - Anti-entropy. Every Sync the node opens a round with one random peer:
//     DigestPull (our group hashes) → DigestAck if equal, else DigestBuckets
//     (their bucket hashes in the groups that differ) → Push (our contents of
//     the buckets that differ, wanting theirs) → Push (what they hold there
//     that is newer than ours). The bytes moved are proportional to the
//     number of differing buckets, not to the keyspace, and whatever
//     dissemination lost is repaired within a few rounds. What a repair
//     teaches a node is then disseminated eagerly like a forwarded delta, so
//     news from the other side of a healed partition spreads in
//     milliseconds, not rounds.
//
// What travels is a key's entries (one per replica, of the key's current
// generation) and its lifecycle state (crdt.Meta: generation, expiry
// register, tombstone time; only when not zero). A receiver merges a
// message's metas before its entries.
//
// Invariants:
//
//   - The owner must only pass durable changes to Local, and must only have
//     merged durable own-replica changes into the keyspace, because anything
//     in the keyspace may be sent to peers.
//   - Whenever an entry is sent (Delta or Push), its key's non-zero life
//     goes in the same message. So a generation that expires never travels
//     without its deadline: a node that receives the entries of a
//     generation it had forgotten (a message replayed or delayed past the
//     reclaim horizon) takes them up already expired, never live.
//   - Queued news is read at Flush: the key's current life and the queued
//     replicas' totals in the key's current generation, so the freshest
//     state goes out, and entries of a generation that has since been
//     replaced are not sent at all.
//
// The engine knows nothing of time. Expiry, reclaim and the clock stay with
// the owner: reclaim's results are reached by every replica on its own
// (crdt.Keyspace.Reclaim), so they need not be passed to Local, though
// passing them is harmless.
package gossip

import (
	"math/rand/v2"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// Config tunes an Engine. The zero value means all defaults.
type Config struct {
	// Fanout is how many random peers each Delta goes to. Default 3.
	Fanout int
	// MaxHops bounds how many times news is forwarded by peers that
	// learned it from a Delta. Default 3.
	MaxHops int
	// MaxPushBytes bounds the estimated encoded size of one repair Push; a
	// larger repair is finished over the following rounds. Default 4 MiB,
	// well within wire.MaxBody.
	MaxPushBytes int
	// Rand picks peers. Default: a randomly seeded source.
	Rand *rand.Rand
}

func (c *Config) setDefaults() {
	if c.Fanout <= 0 {
		c.Fanout = 3
	}
	if c.MaxHops <= 0 {
		c.MaxHops = 3
	}
	if c.MaxPushBytes <= 0 {
		c.MaxPushBytes = 4 << 20
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
}

// Outbound is a message to send to one peer. Several Outbounds may share a
// Msg; it must not be modified.
type Outbound struct {
	To  string
	Msg wire.Message
}

// pending is news queued for one Flush: per key, the replicas whose
// entries are to be sent (possibly none: a change of the key's life only).
// Only names are kept; values are read at Flush.
type pending map[string][]crdt.ReplicaID

func (p pending) add(key string, r crdt.ReplicaID, entry bool) {
	rs, ok := p[key]
	if !entry {
		if !ok {
			p[key] = nil
		}
		return
	}
	for _, x := range rs {
		if x == r {
			return
		}
	}
	p[key] = append(rs, r)
}

func (p pending) addContents(c crdt.Contents) {
	for _, m := range c.Metas {
		p.add(m.Key, 0, false)
	}
	for _, en := range c.Entries {
		p.add(en.Key, en.Replica, true)
	}
}

// Engine is the gossip state of one node. It is not safe for concurrent use.
type Engine struct {
	cfg Config
	ks  *crdt.Keyspace
	// queued[h] holds the news to disseminate with hop count h at the
	// next Flush.
	queued []pending
	// senders[h] are the peers that sent us the news queued at hop h:
	// they have it, so forwarding skips them.
	senders []map[string]struct{}
}

// New returns an engine replicating ks, which it merges into.
func New(cfg Config, ks *crdt.Keyspace) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg, ks: ks, queued: make([]pending, cfg.MaxHops), senders: make([]map[string]struct{}, cfg.MaxHops)}
	for i := range e.queued {
		e.queued[i] = make(pending)
		e.senders[i] = make(map[string]struct{})
	}
	return e
}

// Local queues durable local changes (entries and metas), already merged
// into the keyspace, for dissemination at the next Flush.
func (e *Engine) Local(c crdt.Contents) {
	e.queued[0].addContents(c)
}

// PendingKeys counts the keys with changes queued for Flush (a key queued
// at several hop levels counts at each).
func (e *Engine) PendingKeys() int {
	n := 0
	for _, q := range e.queued {
		n += len(q)
	}
	return n
}

// Pending reports whether Flush has anything to send.
func (e *Engine) Pending() bool {
	for _, q := range e.queued {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

// Flush returns the queued deltas, each hop level sent to Fanout random peers.
// The levels go to the same peers as far as their senders allow (one
// random order of peers, each level taking the first Fanout of it that did
// not send it the news), so that a flush reaches few peers with several
// messages each: the transport writes a peer's queued messages with one
// system call, and the peer reads them with one.
func (e *Engine) Flush(peers []string) []Outbound {
	var (
		out   []Outbound
		order *randomOrder // drawn once per Flush
	)
	for hops, q := range e.queued {
		if len(q) == 0 {
			continue
		}
		var b batcher
		for key, rs := range q {
			b.key(e.ks, key, rs, e.cfg.MaxPushBytes)
		}
		clear(q)
		from := e.senders[hops]
		if order == nil {
			order = &randomOrder{rng: e.cfg.Rand, peers: peers, taken: make(map[int]struct{})}
		}
		targets := make([]string, 0, e.cfg.Fanout)
		for i := 0; len(targets) < e.cfg.Fanout; i++ {
			p, ok := order.at(i)
			if !ok {
				break
			}
			if _, ok := from[p]; !ok {
				targets = append(targets, p)
			}
		}
		clear(from)
		if len(targets) == 0 {
			continue // anti-entropy will carry them once there are peers
		}
		for _, d := range b.done() {
			msg := &wire.Delta{Entries: d.Entries, Metas: d.Metas, Hops: uint8(hops)}
			for _, p := range targets {
				out = append(out, Outbound{To: p, Msg: msg})
			}
		}
	}
	return out
}

// batcher splits a Flush into Deltas of at most MaxPushBytes (estimated),
// never splitting a key: its entries and its life go in the same message.
type batcher struct {
	msgs []wire.Delta
	size int
}

// key adds key's current life (if not zero) and the current-generation
// entries of replicas rs.
func (b *batcher) key(ks *crdt.Keyspace, key string, rs []crdt.ReplicaID, max int) {
	var d wire.Delta
	if m, ok := ks.MetaOf(key); ok {
		d.Metas = append(d.Metas, wire.FromMeta(m))
	}
	gen := uint64(0)
	if l, ok := ks.LifeOf(key); ok {
		gen = l.Gen
	}
	for _, r := range rs {
		pn := ks.Get(key, r)
		if pn == (crdt.PN{}) {
			continue // replaced by a newer generation since it was queued
		}
		d.Entries = append(d.Entries, wire.Entry{Key: key, Replica: uint64(r), Gen: gen, P: pn.P, N: pn.N})
	}
	n := len(d.Metas) + len(d.Entries)
	if n == 0 {
		return // forgotten since
	}
	s := n * itemSize(key)
	if len(b.msgs) == 0 || (b.size > 0 && b.size+s > max) {
		b.msgs = append(b.msgs, wire.Delta{})
		b.size = 0
	}
	last := &b.msgs[len(b.msgs)-1]
	last.Entries = append(last.Entries, d.Entries...)
	last.Metas = append(last.Metas, d.Metas...)
	b.size += s
}

func (b *batcher) done() []wire.Delta { return b.msgs }

// Sync opens an anti-entropy round with one random peer.
func (e *Engine) Sync(peers []string) []Outbound {
	if len(peers) == 0 {
		return nil
	}
	p := peers[e.cfg.Rand.IntN(len(peers))]
	return []Outbound{{To: p, Msg: &wire.DigestPull{Groups: wire.FromHashes(e.ks.Groups())}}}
}

// Handle processes a message from peer from. It returns the messages to
// send and what changed the local keyspace (entries and metas, for the
// owner to persist). Membership messages are not handled here and return
// nothing.
func (e *Engine) Handle(from string, m wire.Message) (out []Outbound, changed crdt.Contents) {
	switch m := m.(type) {
	case *wire.Delta:
		changed = e.merge(wire.ToContents(m.Entries, m.Metas))
		if next := int(m.Hops) + 1; next < e.cfg.MaxHops && changed.Len() > 0 {
			e.queued[next].addContents(changed)
			e.senders[next][from] = struct{}{}
		}
	case *wire.DigestPull:
		groups := e.ks.DiffGroups(wire.ToHashes(m.Groups))
		if len(groups) == 0 {
			out = append(out, Outbound{To: from, Msg: &wire.DigestAck{}})
			break
		}
		out = append(out, Outbound{To: from, Msg: &wire.DigestBuckets{
			Groups: groups, Buckets: wire.FromHashes(e.ks.Buckets(groups)),
		}})
	case *wire.DigestBuckets:
		buckets := e.ks.DiffBuckets(m.Groups, wire.ToHashes(m.Buckets))
		if len(buckets) == 0 {
			break // converged since the peer answered
		}
		buckets, c := e.bucketsWithin(buckets)
		entries, metas := wire.FromContents(c)
		out = append(out, Outbound{To: from, Msg: &wire.Push{Entries: entries, Metas: metas, Want: buckets}})
	case *wire.Push:
		theirs := wire.ToContents(m.Entries, m.Metas)
		changed = e.merge(theirs)
		// News found by repair (typically after a partition heals) spreads
		// eagerly too, instead of waiting for more sync rounds.
		if e.cfg.MaxHops > 1 && changed.Len() > 0 {
			e.queued[1].addContents(changed)
			e.senders[1][from] = struct{}{}
		}
		if len(m.Want) > 0 {
			if newer := e.newer(m.Want, theirs); newer.Len() > 0 {
				entries, metas := wire.FromContents(newer)
				out = append(out, Outbound{To: from, Msg: &wire.Push{Entries: entries, Metas: metas}})
			}
		}
	case *wire.DigestAck:
		// Nothing to repair.
	}
	return out, changed
}

// merge folds c into the keyspace, metas first (so that entries of a new
// generation find its deadline in place), and returns what changed it.
func (e *Engine) merge(c crdt.Contents) crdt.Contents {
	var changed crdt.Contents
	for _, m := range c.Metas {
		if e.ks.MergeMeta(m) {
			changed.Metas = append(changed.Metas, m)
		}
	}
	for _, en := range c.Entries {
		if e.ks.Merge(en) {
			changed.Entries = append(changed.Entries, en)
		}
	}
	return changed
}

// newer is what the keyspace holds in buckets that theirs (the peer's full
// contents of them) lacks, within MaxPushBytes, plus the current life of
// every key it sends entries of that the peer already had: an entry never
// travels without its key's life.
func (e *Engine) newer(buckets []uint16, theirs crdt.Contents) crdt.Contents {
	size := 0
	seen := make(map[string]struct{})
	out := e.ks.Newer(buckets, theirs, func(key string) bool {
		size += itemSize(key)
		if _, ok := seen[key]; !ok {
			seen[key] = struct{}{}
			size += itemSize(key) // room for the key's life, added below
		}
		return size <= e.cfg.MaxPushBytes
	})
	withMeta := make(map[string]struct{}, len(out.Metas))
	for _, m := range out.Metas {
		withMeta[m.Key] = struct{}{}
	}
	for _, en := range out.Entries {
		if _, ok := withMeta[en.Key]; ok {
			continue
		}
		withMeta[en.Key] = struct{}{}
		if m, ok := e.ks.MetaOf(en.Key); ok {
			out.Metas = append(out.Metas, m)
		}
	}
	return out
}

// bucketsWithin returns a prefix of buckets (at least one) whose contents
// fit in MaxPushBytes, and those contents.
func (e *Engine) bucketsWithin(buckets []uint16) ([]uint16, crdt.Contents) {
	var out crdt.Contents
	size := 0
	for i, b := range buckets {
		c := e.ks.BucketContents([]uint16{b})
		for _, en := range c.Entries {
			size += itemSize(en.Key)
		}
		for _, m := range c.Metas {
			size += itemSize(m.Key)
		}
		if i > 0 && size > e.cfg.MaxPushBytes {
			return buckets[:i], out
		}
		out.Entries = append(out.Entries, c.Entries...)
		out.Metas = append(out.Metas, c.Metas...)
	}
	return buckets, out
}

// itemSize over-estimates the msgpack size of an entry or a meta of key:
// array header, key header and bytes, four integers of at most 9 bytes.
func itemSize(key string) int { return len(key) + 48 }

// randomOrder yields peers in a random order, drawn lazily: a Flush
// usually needs only its first Fanout, and a cluster may have thousands.
type randomOrder struct {
	rng   *rand.Rand
	peers []string
	order []int
	taken map[int]struct{}
}

// at returns the i-th peer of the order, if there are more than i peers.
func (o *randomOrder) at(i int) (string, bool) {
	for len(o.order) <= i {
		if len(o.order) == len(o.peers) {
			return "", false
		}
		if 2*len(o.order) >= len(o.peers) {
			// Rejection gets slow: shuffle the rest instead.
			var rest []int
			for j := range o.peers {
				if _, ok := o.taken[j]; !ok {
					rest = append(rest, j)
				}
			}
			o.rng.Shuffle(len(rest), func(a, b int) { rest[a], rest[b] = rest[b], rest[a] })
			for _, j := range rest {
				o.taken[j] = struct{}{}
			}
			o.order = append(o.order, rest...)
			continue
		}
		j := o.rng.IntN(len(o.peers))
		if _, ok := o.taken[j]; ok {
			continue
		}
		o.taken[j] = struct{}{}
		o.order = append(o.order, j)
	}
	return o.peers[o.order[i]], true
}
