package membership

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// The member protocol.
//
// Engine runs one node's side of it as a pure, tick-driven state machine,
// like gossip.Engine: the owner passes the current time and received
// messages in and sends the Outbound messages it returns; the Engine has no
// sockets, goroutines or clock, and draws randomness from its Config.Rand.
// The messages:
//
//   - Join (Self): a node asks any member to add it. The member merges the
//     entry, answers with JoinAck (its whole view) and announces the
//     newcomer to Fanout random peers with Members.
//   - Members (view): every tick a node pushes its view, with its own
//     heartbeat raised, to one random live peer (push), and to one random
//     member believed dead, so that a healed partition or a thawed process
//     is found again without anyone rejoining. The receiver answers with
//     JoinAck only if its own view has news for the sender (pull).
//   - JoinAck (view): merged like Members, never answered. The first one
//     tells a joining node it is in.
//   - Goodbye: Leave marks this node "left" and sends its view to every
//     peer, so they stop gossiping with it at once instead of suspecting it.
//
// Every message carries the sender's wall clock (wire SentAt), used only to
// estimate and report clock offsets (clockskew.go).

// Outbound is a member message to send to one peer. Several Outbounds may
// share a Msg; it must not be modified. (It converts to gossip.Outbound.)
type Outbound struct {
	To  string
	Msg wire.Message
}

// Config configures an Engine. Zero fields take the defaults stated.
type Config struct {
	// Self is this node's entry: ID, Name, GossipAddr, HTTPAddr and an
	// Incarnation higher than any it used before (see New).
	Self Member
	// Detect tunes failure detection (see DetectConfig for defaults).
	Detect DetectConfig
	// Fanout is how many peers hear of a member that just joined. Default 3.
	Fanout int
	// MaxClockSkew is the clock offset beyond which Events.Clock reports a
	// member (at most once a minute each). Default 10s.
	MaxClockSkew time.Duration
	// Horizon is how long a member stays in the list after this node saw
	// it die or leave; then it is pruned (List.Prune). It must exceed the
	// longest partition that should heal by itself: a member pruned on
	// both sides of a partition is not knocked on any more. Default 24h.
	Horizon time.Duration
	// Rand picks peers. Default: a randomly seeded source.
	Rand *rand.Rand
}

func (c *Config) setDefaults() {
	c.Detect.setDefaults()
	if c.Fanout <= 0 {
		c.Fanout = 3
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = 10 * time.Second
	}
	if c.Horizon <= 0 {
		c.Horizon = 24 * time.Hour
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
}

// Events is what a step of the Engine found, for the owner to log and act
// upon.
type Events struct {
	// Added are members new to us.
	Added []Member
	// Changes are state changes: to suspect and dead, found by failure
	// detection; back to alive, when a member not alive is heard from again.
	Changes []Change
	// Pruned are members forgotten after Config.Horizon dead or left.
	Pruned []Member
	// Clock, if set, is a member whose clock offset exceeds MaxClockSkew.
	Clock *ClockReport
	// Conflict, if not empty, says why another process seems to use this
	// node's replica ID (the owner must stop accepting writes).
	Conflict string
	// Joined is set by the first JoinAck: this node is in the cluster.
	Joined bool
	// Refuted is set when this node raised its own incarnation to refute a
	// rumour: the owner must make it durable before sending anything.
	Refuted bool
}

// Engine is one node's member protocol. It is not safe for concurrent use.
type Engine struct {
	cfg    Config
	list   *List
	rng    *rand.Rand
	joined bool
}

// NewEngine returns an engine whose list holds only cfg.Self.
func NewEngine(cfg Config, now time.Time) *Engine {
	cfg.setDefaults()
	return &Engine{cfg: cfg, list: New(cfg.Self, now), rng: cfg.Rand}
}

// List returns the member list, for queries. Changing it bypasses the
// protocol: don't.
func (e *Engine) List() *List { return e.list }

// Joined reports whether a JoinAck has arrived.
func (e *Engine) Joined() bool { return e.joined }

// Join returns a Join for each target; the owner resends it until Joined
// (or gives up), since any of them may be lost.
func (e *Engine) Join(targets []string, now time.Time) []Outbound {
	self := e.list.Self()
	msg := &wire.Join{Self: ToWire(self), SentAt: now.UnixMilli()}
	out := make([]Outbound, 0, len(targets))
	for _, t := range targets {
		if t != "" && t != self.GossipAddr {
			out = append(out, Outbound{To: t, Msg: msg})
		}
	}
	return out
}

// Tick is called every gossip interval: it raises our heartbeat, runs
// failure detection, and pushes our view to one random live peer and one
// random member believed dead.
func (e *Engine) Tick(now time.Time) ([]Outbound, Events) {
	var ev Events
	e.list.Beat(now)
	ev.Changes = e.list.Detect(now, e.cfg.Detect)
	ev.Pruned = e.list.Prune(now, e.cfg.Horizon)
	view := e.view(now)
	var out []Outbound
	if peers := e.list.Peers(); len(peers) > 0 {
		out = append(out, Outbound{To: peers[e.rng.IntN(len(peers))], Msg: view})
	}
	if dead := e.list.DeadPeers(); len(dead) > 0 {
		// Knock on one dead member's door: if it is back, or the partition
		// healed, its answer makes it alive again within a round trip.
		out = append(out, Outbound{To: dead[e.rng.IntN(len(dead))], Msg: view})
	}
	return out, ev
}

// Handle processes a member message from the peer at gossip address from.
// ok is false for messages that are not member messages (the owner passes
// those to gossip).
func (e *Engine) Handle(from string, m wire.Message, now time.Time) (out []Outbound, ev Events, ok bool) {
	inc := e.list.Self().Incarnation
	selfAddr := e.list.Self().GossipAddr
	switch m := m.(type) {
	case *wire.Join:
		id := crdt.ReplicaID(m.Self.ID)
		if id == e.cfg.Self.ID && m.Self.GossipAddr == selfAddr {
			return nil, ev, true // our own Join, through an alias of our address: not a cluster
		}
		added, back, conflict := e.list.merge([]wire.Member{m.Self}, now)
		ev.Changes = back
		if conflict || id == e.cfg.Self.ID {
			ev.Conflict = fmt.Sprintf("a node at %s joined with this node's replica ID", m.Self.GossipAddr)
			return nil, ev, true
		}
		ev.Added = added
		out = append(out, Outbound{To: from, Msg: &wire.JoinAck{Members: e.list.Wire(), SentAt: now.UnixMilli()}})
		out = append(out, e.announce(added, from, now)...)
		ev.Clock = e.observeClock(id, from, m.SentAt, now)
	case *wire.JoinAck:
		if from == selfAddr {
			return nil, ev, true // answered by ourselves
		}
		_, back, conflict := e.list.merge(m.Members, now)
		ev.Changes = back
		if conflict {
			ev.Conflict = "a peer lists this node's replica ID at another address"
		}
		e.list.HeardFrom(from, now)
		ev.Clock = e.observeClock(0, from, m.SentAt, now)
		if !e.joined {
			e.joined, ev.Joined = true, true
		}
	case *wire.Members:
		added, back, conflict := e.list.merge(m.Members, now)
		ev.Changes = back
		if conflict {
			ev.Conflict = "a peer lists this node's replica ID at another address"
		}
		ev.Added = added
		e.list.HeardFrom(from, now)
		ev.Clock = e.observeClock(0, from, m.SentAt, now)
		out = e.announce(added, from, now)
		if e.list.Newer(m.Members) {
			out = append(out, Outbound{To: from, Msg: &wire.JoinAck{Members: e.list.Wire(), SentAt: now.UnixMilli()}})
		}
	default:
		return nil, ev, false
	}
	ev.Refuted = e.list.Self().Incarnation != inc
	return out, ev, true
}

// Leave marks this node as having left and returns the goodbye: our view,
// to every peer, so they stop gossiping with us at once instead of
// suspecting us for seconds.
func (e *Engine) Leave(now time.Time) []Outbound {
	e.list.Leave(now)
	bye := e.view(now)
	var out []Outbound
	for _, p := range e.list.Peers() {
		out = append(out, Outbound{To: p, Msg: bye})
	}
	return out
}

func (e *Engine) view(now time.Time) *wire.Members {
	return &wire.Members{Members: e.list.Wire(), SentAt: now.UnixMilli()}
}

// announce spreads news of members we just learned about to a few peers,
// so a join is known cluster-wide within a round trip instead of a tick.
func (e *Engine) announce(added []Member, except string, now time.Time) []Outbound {
	if len(added) == 0 {
		return nil
	}
	msg := e.view(now)
	var out []Outbound
	peers := e.list.Peers()
	for _, i := range e.rng.Perm(len(peers)) {
		if len(out) == e.cfg.Fanout {
			break
		}
		if peers[i] != except {
			out = append(out, Outbound{To: peers[i], Msg: msg})
		}
	}
	return out
}

func (e *Engine) observeClock(id crdt.ReplicaID, from string, sentAt int64, now time.Time) *ClockReport {
	if r, ok := e.list.ObserveClock(id, from, sentAt, now, e.cfg.MaxClockSkew); ok && r.Warn {
		return &r
	}
	return nil
}
