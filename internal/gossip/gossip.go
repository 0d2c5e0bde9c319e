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
//     new from a Delta queues the new entries for its own next Flush with one
//     more hop, up to MaxHops, sending them to peers other than the ones it
//     got them from (they have them), so a write reaches every node in a few
//     milliseconds with high probability.
//   - Anti-entropy. Every Sync the node opens a round with one random peer:
//     DigestPull (our group hashes) → DigestAck if equal, else DigestBuckets
//     (their bucket hashes in the groups that differ) → Push (our entries in
//     the buckets that differ, wanting theirs) → Push (their entries that are
//     newer than ours). The bytes moved are proportional to the number of
//     differing buckets, not to the keyspace, and whatever dissemination lost
//     is repaired within a few rounds. What a repair teaches a node is then
//     disseminated eagerly like a forwarded delta, so news from the other
//     side of a healed partition spreads in milliseconds, not rounds.
//
// Invariant: the owner must only pass durable entries to Local, and must only
// have merged durable own-replica entries into the keyspace, because anything
// in the keyspace may be sent to peers.
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
	// MaxHops bounds how many times an entry is forwarded by peers that
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

type entryKey struct {
	key     string
	replica crdt.ReplicaID
}

// Engine is the gossip state of one node. It is not safe for concurrent use.
type Engine struct {
	cfg Config
	ks  *crdt.Keyspace
	// queued[h] holds entries to disseminate with hop count h at the next
	// Flush; only the (key, replica) is kept, the value is read at Flush so
	// the freshest totals go out.
	queued []map[entryKey]struct{}
	// senders[h] are the peers that sent us the entries queued at hop h:
	// they have them, so forwarding skips them.
	senders []map[string]struct{}
}

// New returns an engine replicating ks, which it merges into.
func New(cfg Config, ks *crdt.Keyspace) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg, ks: ks, queued: make([]map[entryKey]struct{}, cfg.MaxHops), senders: make([]map[string]struct{}, cfg.MaxHops)}
	for i := range e.queued {
		e.queued[i] = make(map[entryKey]struct{})
		e.senders[i] = make(map[string]struct{})
	}
	return e
}

// Local queues durable local changes, already merged into the keyspace, for
// dissemination at the next Flush.
func (e *Engine) Local(entries ...crdt.Entry) {
	for _, en := range entries {
		e.queued[0][entryKey{en.Key, en.Replica}] = struct{}{}
	}
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
func (e *Engine) Flush(peers []string) []Outbound {
	var out []Outbound
	for hops, q := range e.queued {
		if len(q) == 0 {
			continue
		}
		entries := make([]wire.Entry, 0, len(q))
		for k := range q {
			pn := e.ks.Get(k.key, k.replica)
			entries = append(entries, wire.Entry{Key: k.key, Replica: uint64(k.replica), P: pn.P, N: pn.N})
			delete(q, k)
		}
		targets := peers
		if from := e.senders[hops]; len(from) > 0 {
			targets = make([]string, 0, len(peers))
			for _, p := range peers {
				if _, ok := from[p]; !ok {
					targets = append(targets, p)
				}
			}
			clear(from)
		}
		if len(targets) == 0 {
			continue // anti-entropy will carry them once there are peers
		}
		for _, entries := range chunk(entries, e.cfg.MaxPushBytes) {
			msg := &wire.Delta{Entries: entries, Hops: uint8(hops)}
			for _, p := range e.pick(targets, e.cfg.Fanout) {
				out = append(out, Outbound{To: p, Msg: msg})
			}
		}
	}
	return out
}

// Sync opens an anti-entropy round with one random peer.
func (e *Engine) Sync(peers []string) []Outbound {
	if len(peers) == 0 {
		return nil
	}
	p := peers[e.cfg.Rand.IntN(len(peers))]
	return []Outbound{{To: p, Msg: &wire.DigestPull{Groups: wire.FromHashes(e.ks.Groups())}}}
}

// Handle processes a message from peer from. It returns the messages to
// send and the entries that changed the local keyspace (for the owner to
// persist). Membership messages are not handled here and return nothing.
func (e *Engine) Handle(from string, m wire.Message) (out []Outbound, changed []crdt.Entry) {
	switch m := m.(type) {
	case *wire.Delta:
		changed = e.merge(m.Entries)
		if next := int(m.Hops) + 1; next < e.cfg.MaxHops && len(changed) > 0 {
			for _, c := range changed {
				e.queued[next][entryKey{c.Key, c.Replica}] = struct{}{}
			}
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
		buckets, entries := e.bucketsWithin(buckets)
		out = append(out, Outbound{To: from, Msg: &wire.Push{Entries: wire.FromCRDT(entries), Want: buckets}})
	case *wire.Push:
		theirs := wire.ToCRDT(m.Entries)
		changed = e.merge(m.Entries)
		// News found by repair (typically after a partition heals) spreads
		// eagerly too, instead of waiting for more sync rounds.
		if e.cfg.MaxHops > 1 && len(changed) > 0 {
			for _, c := range changed {
				e.queued[1][entryKey{c.Key, c.Replica}] = struct{}{}
			}
			e.senders[1][from] = struct{}{}
		}
		if len(m.Want) > 0 {
			size := 0
			newer := e.ks.Newer(m.Want, theirs, func(en crdt.Entry) bool {
				size += entrySize(en.Key)
				return size <= e.cfg.MaxPushBytes
			})
			if len(newer) > 0 {
				out = append(out, Outbound{To: from, Msg: &wire.Push{Entries: wire.FromCRDT(newer)}})
			}
		}
	case *wire.DigestAck:
		// Nothing to repair.
	}
	return out, changed
}

func (e *Engine) merge(es []wire.Entry) []crdt.Entry {
	var changed []crdt.Entry
	for _, w := range es {
		en := crdt.Entry{Key: w.Key, Replica: crdt.ReplicaID(w.Replica), P: w.P, N: w.N}
		if e.ks.Merge(en) {
			changed = append(changed, en)
		}
	}
	return changed
}

// bucketsWithin returns a prefix of buckets (at least one) whose entries fit
// in MaxPushBytes, and those entries.
func (e *Engine) bucketsWithin(buckets []uint16) ([]uint16, []crdt.Entry) {
	var entries []crdt.Entry
	size := 0
	for i, b := range buckets {
		es := e.ks.BucketEntries([]uint16{b})
		for _, en := range es {
			size += entrySize(en.Key)
		}
		if i > 0 && size > e.cfg.MaxPushBytes {
			return buckets[:i], entries
		}
		entries = append(entries, es...)
	}
	return buckets, entries
}

// entrySize over-estimates an entry's msgpack size: array header, key
// header and bytes, three integers of at most 9 bytes.
func entrySize(key string) int { return len(key) + 32 }

// chunk splits entries into slices whose estimated size stays within max;
// it always returns at least one (possibly empty) slice.
func chunk(entries []wire.Entry, max int) [][]wire.Entry {
	var out [][]wire.Entry
	start, size := 0, 0
	for i, en := range entries {
		s := entrySize(en.Key)
		if i > start && size+s > max {
			out = append(out, entries[start:i])
			start, size = i, 0
		}
		size += s
	}
	return append(out, entries[start:])
}

// pick returns up to n distinct random peers, in O(n) for n much smaller
// than len(peers) (rejection sampling).
func (e *Engine) pick(peers []string, n int) []string {
	if n >= len(peers) {
		return peers
	}
	out := make([]string, 0, n)
	chosen := make([]int, 0, n)
next:
	for len(out) < n {
		j := e.cfg.Rand.IntN(len(peers))
		for _, c := range chosen {
			if c == j {
				continue next
			}
		}
		chosen = append(chosen, j)
		out = append(out, peers[j])
	}
	return out
}
