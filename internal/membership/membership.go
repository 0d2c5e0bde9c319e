// Package membership keeps a node's view of the cluster's members and runs
// the member protocol: joining, member-list gossip, heartbeats and failure
// detection, goodbyes (Engine, in engine.go). Like package gossip it is
// pure: no sockets, goroutines or clocks; the owner (package node) passes
// time, randomness and received messages in, and sends what comes out.
//
// Each member is identified by its replica ID and described by its name and
// addresses, an incarnation and a heartbeat. Only a member itself raises its
// incarnation (on every start, and to refute a rumour that it is not alive)
// and its heartbeat (every gossip interval). Views are merged by gossip: a
// higher incarnation replaces everything; at equal incarnation a higher
// heartbeat is news (and the member was just heard from), and "left" is
// sticky. So every node's view converges, whatever the order of messages.
//
// # Failure detection
//
// Each node judges the others itself, from heartbeats (Detect): a member
// whose heartbeat has not advanced for SuspectAfter is suspect; one silent
// for DeadAfter is dead once two other members (fewer if fewer are alive in
// our view, but at least one if anyone else exists) have sent us their view
// since it became suspect without news of it. A node cut off from everyone, or frozen,
// therefore declares nobody dead: it hears no witnesses. And a node whose
// own detector stalled (a long GC, SIGSTOP, an overloaded machine) gives
// everyone a fresh grace period instead of blaming them for its own
// silence. Remote verdicts of suspect or dead are not adopted for members we
// know; "left" — said by the member itself — is.
//
// # Pruning
//
// A member dead or left for a horizon (Engine Config.Horizon, measured on
// this node's own clock from when it saw the member go) is pruned: removed
// with everything kept about it, so a cluster that saw thousands of
// replicas come and go costs what its live members cost. Its counts stay:
// the keyspace is not touched. A peer that has not pruned it yet cannot
// gossip it back: for another horizon we remember its incarnation and
// heartbeat, which only the member itself raises, and admit it again only
// when it is newer and alive, i.e. when it really came back.
//
// # Clocks
//
// Nothing here compares wall clocks between nodes: incarnations are
// counters, heartbeats are counters, and silence is measured on this node's
// own clock as the time since it last heard news. A member whose clock is
// days off is a member like any other. The times member messages carry are
// used only to estimate and report clock differences (clockskew.go).
//
// The list is pure data: callers pass the current time in. Neither it nor
// the Engine is safe for concurrent use.
package membership

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

// State is a member's status as this node sees it.
type State uint8

// Member states. The numbers are on the wire: only append.
const (
	Alive   State = 0
	Suspect State = 1
	Dead    State = 2
	Left    State = 3
)

func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return "unknown"
}

// Member is one entry of the member list.
type Member struct {
	ID          crdt.ReplicaID
	Name        string
	GossipAddr  string
	HTTPAddr    string
	Incarnation uint64
	Heartbeat   uint64
	State       State
	// LastSeen is when this node last learned news from or about the
	// member (for itself: now). Local; not gossiped.
	LastSeen time.Time
	// Down is when this node saw the member become dead or left (zero
	// while it is alive or suspect): Prune forgets it a horizon later.
	// Local; not gossiped.
	Down time.Time
}

// List is the member list of one node, including itself.
type List struct {
	self    crdt.ReplicaID
	members map[crdt.ReplicaID]*Member
	// lastView is when each member last sent us its member list.
	lastView   map[crdt.ReplicaID]time.Time
	lastDetect time.Time
	// clocks holds each member's clock offset estimate (clockskew.go).
	clocks map[crdt.ReplicaID]*clockSample
	// forgotten are the members Prune removed, kept for a horizon so that
	// a peer that has not pruned them yet cannot gossip them back.
	forgotten map[crdt.ReplicaID]forgottenMember
}

// forgottenMember is what Prune keeps of a member: the newest incarnation
// and heartbeat known of it, and when it was pruned (on this node's clock).
type forgottenMember struct {
	incarnation, heartbeat uint64
	at                     time.Time
}

// DetectConfig tunes Detect. Zero fields take the defaults stated.
type DetectConfig struct {
	// SuspectAfter is the silence after which a member is suspect. Default 1.5s.
	SuspectAfter time.Duration
	// DeadAfter is the silence after which a confirmed suspect is dead. Default 3s.
	DeadAfter time.Duration
	// Stall is the gap between two Detect calls that means this node
	// itself stalled. Default SuspectAfter / 2.
	Stall time.Duration
}

func (c *DetectConfig) setDefaults() {
	if c.SuspectAfter <= 0 {
		c.SuspectAfter = 1500 * time.Millisecond
	}
	if c.DeadAfter <= c.SuspectAfter {
		c.DeadAfter = max(3*time.Second, 2*c.SuspectAfter)
	}
	if c.Stall <= 0 {
		c.Stall = c.SuspectAfter / 2
	}
}

// Change is a member's state change found by Detect.
type Change struct {
	Member   Member
	From, To State
}

// New returns a list holding only self, which must carry an incarnation
// higher than any it used before: a durable counter, raised on every start
// (see package node), never the wall clock, so that no clock, however
// wrong, makes a member's entries look stale or forged.
func New(self Member, now time.Time) *List {
	self.State, self.LastSeen = Alive, now
	return &List{self: self.ID, members: map[crdt.ReplicaID]*Member{self.ID: &self}, lastView: map[crdt.ReplicaID]time.Time{}}
}

// Self returns this node's own entry.
func (l *List) Self() Member { return *l.members[l.self] }

// Get returns the member with id.
func (l *List) Get(id crdt.ReplicaID) (Member, bool) {
	m := l.members[id]
	if m == nil {
		return Member{}, false
	}
	return *m, true
}

// Len reports the number of members, including self and dead ones.
func (l *List) Len() int { return len(l.members) }

// Beat advances this node's own heartbeat.
func (l *List) Beat(now time.Time) {
	s := l.members[l.self]
	s.Heartbeat++
	s.LastSeen = now
}

// Limits on what gossip can add to the list.
const (
	// MaxMembers bounds the list: members beyond it are not added.
	MaxMembers = 4096
	// MaxNewPerMerge bounds how many members one message can add.
	MaxNewPerMerge = 64
)

// Merge folds a peer's view into ours and returns the members that were new
// to us. A newly learned member takes the state the peer gives it; for a
// known member only news from the member itself counts: a higher
// incarnation or heartbeat makes it alive again, and "left" sticks.
// conflict is set when the view holds our own ID at another address under
// an incarnation we never used: another process is running as this replica.
//
// Incarnations are counters, not times, so no incarnation is too high to be
// true and none is checked against a clock: a node whose clock is days off
// is a member like any other. What bounds a forged incarnation (say
// MaxUint64, which its member could never refute) is who can send a view at
// all: with a cluster key only peers that proved they hold it (package
// transport), and a key holder can already change any counter; without a
// key gossip listens on loopback only, unless --insecure-gossip accepts
// that anyone who can reach the port is trusted.
func (l *List) Merge(view []wire.Member, now time.Time) (added []Member, conflict bool) {
	added, _, conflict = l.merge(view, now)
	return added, conflict
}

// merge is Merge that also reports the members it brought back to alive
// (from suspect, dead or left), for the owner to log: failure detection
// reports the way down, this the way back.
func (l *List) merge(view []wire.Member, now time.Time) (added []Member, back []Change, conflict bool) {
	for _, w := range view {
		r := fromWire(w)
		if r.ID == l.self {
			conflict = l.refute(r) || conflict
			continue
		}
		m := l.members[r.ID]
		switch {
		case m == nil:
			if len(added) >= MaxNewPerMerge || len(l.members) >= MaxMembers || !l.remember(r, now) {
				continue
			}
			r.LastSeen = now
			if r.State == Dead || r.State == Left {
				r.Down = now
			}
			l.members[r.ID] = &r
			added = append(added, r)
		case r.Incarnation > m.Incarnation:
			r.LastSeen = now
			if r.State != Left {
				r.State = Alive
			} else {
				r.Down = now
			}
			if was := m.State; was != Alive && r.State == Alive {
				back = append(back, Change{r, was, Alive})
			}
			*m = r
		case r.Incarnation == m.Incarnation:
			if r.Heartbeat > m.Heartbeat {
				m.Heartbeat, m.LastSeen = r.Heartbeat, now
				if was := m.State; was != Left {
					m.State, m.Down = Alive, time.Time{}
					if was != Alive {
						back = append(back, Change{*m, was, Alive})
					}
				}
			}
			if r.State == Left && m.State != Left {
				m.State, m.Down = Left, now
			}
		}
	}
	return added, back, conflict
}

// remember decides whether a member unknown to us may be added: yes,
// unless Prune forgot it and the entry is no newer than what we forgot.
// Only the member itself raises its incarnation and heartbeat, so an entry
// that is newer and alive is the member back (restarted, or a partition
// healed); one that is newer but dead or left is a peer's late news of a
// member that is gone either way: it only refreshes what we forgot.
func (l *List) remember(r Member, now time.Time) bool {
	f, ok := l.forgotten[r.ID]
	if !ok {
		return true
	}
	newer := r.Incarnation > f.incarnation || (r.Incarnation == f.incarnation && r.Heartbeat > f.heartbeat)
	switch {
	case !newer:
		return false
	case r.State == Dead || r.State == Left:
		l.forgotten[r.ID] = forgottenMember{incarnation: r.Incarnation, heartbeat: r.Heartbeat, at: now}
		return false
	}
	delete(l.forgotten, r.ID)
	return true
}

// Prune forgets the members that have been dead or left for horizon or
// longer on this node's clock, with everything kept about them (witness
// times, clock offsets), and returns them. Each is remembered, by
// incarnation and heartbeat only, for another horizon, so that a peer
// which saw it go later than we did, and has not pruned it yet, cannot
// gossip it back; after that a stale entry can only come from a peer cut
// off for longer than the horizon, and is pruned again a horizon later.
// Nothing here touches the keyspace: a pruned member's counts stay.
func (l *List) Prune(now time.Time, horizon time.Duration) []Member {
	var pruned []Member
	for id, m := range l.members {
		if id == l.self || (m.State != Dead && m.State != Left) || m.Down.IsZero() || now.Sub(m.Down) < horizon {
			continue
		}
		pruned = append(pruned, *m)
		delete(l.members, id)
		delete(l.lastView, id)
		delete(l.clocks, id)
		if l.forgotten == nil {
			l.forgotten = map[crdt.ReplicaID]forgottenMember{}
		}
		l.forgotten[id] = forgottenMember{incarnation: m.Incarnation, heartbeat: m.Heartbeat, at: now}
	}
	expired := 0
	for id, f := range l.forgotten {
		if now.Sub(f.at) >= horizon {
			delete(l.forgotten, id)
			expired++
		}
	}
	// Go maps keep their buckets when entries are deleted (and maps.Clone
	// copies them): rebuild them, so the memory of a thousand departed
	// members is given back too. Pruning is rare, so this is cheap.
	if len(pruned) > 0 {
		l.members = shrink(l.members)
		l.lastView = shrink(l.lastView)
		l.clocks = shrink(l.clocks)
	}
	if expired > 0 {
		l.forgotten = shrink(l.forgotten)
	}
	return pruned
}

// shrink returns a copy of m sized for its entries.
func shrink[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Forgotten reports how many pruned members are remembered (see Prune).
func (l *List) Forgotten() int { return len(l.forgotten) }

// HeardFrom records that the member at gossip address addr just sent us its
// view: it is a witness for Detect.
func (l *List) HeardFrom(addr string, now time.Time) {
	for id, m := range l.members {
		if m.GossipAddr == addr && id != l.self && m.State != Dead && m.State != Left {
			l.lastView[id] = now
		}
	}
}

// Detect updates the members' states from their silence and returns the
// changes. Call it every gossip interval.
func (l *List) Detect(now time.Time, cfg DetectConfig) []Change {
	cfg.setDefaults()
	stalled := !l.lastDetect.IsZero() && now.Sub(l.lastDetect) > cfg.Stall
	l.lastDetect = now
	var changes []Change
	for id, m := range l.members {
		if id == l.self || m.State == Left {
			continue
		}
		if stalled && m.State != Dead {
			// We could not listen: nobody is to blame for the silence.
			m.LastSeen = now
		}
		silent := now.Sub(m.LastSeen)
		switch {
		case m.State == Alive && silent > cfg.SuspectAfter:
			changes = append(changes, Change{*m, Alive, Suspect})
			m.State = Suspect
		case m.State == Suspect && silent > cfg.DeadAfter && l.witnesses(id, m.LastSeen.Add(cfg.SuspectAfter)) >= l.witnessesNeeded(id):
			changes = append(changes, Change{*m, Suspect, Dead})
			m.State, m.Down = Dead, now
		}
	}
	return changes
}

// witnesses counts the other live members that sent us their view after
// since without news of target (had they had news, target would not be
// suspect).
func (l *List) witnesses(target crdt.ReplicaID, since time.Time) int {
	n := 0
	for id, t := range l.lastView {
		if id != target && t.After(since) {
			if m := l.members[id]; m != nil && m.State != Dead && m.State != Left {
				n++
			}
		}
	}
	return n
}

// witnessesNeeded is two, or as many other members as are alive in our
// view, but at least one when there is anyone else at all: a node that
// hears from nobody declares nobody dead, while the smaller side of a
// partition, or a small cluster, still can.
func (l *List) witnessesNeeded(target crdt.ReplicaID) int {
	alive, others := 0, 0
	for id, m := range l.members {
		if id == target || id == l.self || m.State == Dead || m.State == Left {
			continue
		}
		others++
		if m.State == Alive {
			alive++
		}
	}
	if others == 0 {
		return 0
	}
	return min(2, max(1, alive))
}

// Leave marks this node as having left, for its last announcements.
func (l *List) Leave(now time.Time) {
	s := l.members[l.self]
	s.State, s.LastSeen = Left, now
	s.Heartbeat++
}

// Newer reports whether our view holds anything the given view lacks or has
// older: then a pull answer is worth sending.
func (l *List) Newer(view []wire.Member) bool {
	theirs := make(map[uint64]wire.Member, len(view))
	for _, w := range view {
		theirs[w.ID] = w
	}
	for id, m := range l.members {
		t, ok := theirs[uint64(id)]
		if !ok || m.Incarnation > t.Incarnation || (m.Incarnation == t.Incarnation && (m.Heartbeat > t.Heartbeat || (m.State == Left && t.State != uint8(Left)))) {
			return true
		}
	}
	return false
}

// refute answers a rumour about ourselves: an entry at our incarnation or
// later that differs from ours (says we are not alive, or gives other
// addresses) is overridden by taking a higher incarnation. It reports a
// conflict when the entry is at another gossip address under a higher
// incarnation than ours: not an old entry of ours, but someone else.
func (l *List) refute(r Member) (conflict bool) {
	s := l.members[l.self]
	if r.Incarnation < s.Incarnation {
		return false
	}
	conflict = r.Incarnation > s.Incarnation && r.GossipAddr != s.GossipAddr
	differs := r.State != Alive || r.GossipAddr != s.GossipAddr || r.HTTPAddr != s.HTTPAddr || r.Name != s.Name
	if differs && r.Incarnation < math.MaxUint64 {
		s.Incarnation = r.Incarnation + 1
	}
	return conflict
}

// Peers returns the gossip addresses of the members other than self that
// may be gossiped with (alive or suspect), sorted, without duplicates.
func (l *List) Peers() []string {
	selfAddr := l.members[l.self].GossipAddr
	var out []string
	for id, m := range l.members {
		if id == l.self || m.GossipAddr == selfAddr || m.State == Dead || m.State == Left {
			continue
		}
		out = append(out, m.GossipAddr)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// DeadPeers returns the gossip addresses of the members believed dead (not
// those that left), sorted. They are sent our view now and then, so that a
// partition that healed, or a member that was only frozen, is found again
// without waiting for anyone to rejoin.
func (l *List) DeadPeers() []string {
	var out []string
	for id, m := range l.members {
		if id != l.self && m.State == Dead {
			out = append(out, m.GossipAddr)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Members returns every member, sorted by name then ID.
func (l *List) Members() []Member {
	out := make([]Member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Wire returns the list for gossip.
func (l *List) Wire() []wire.Member {
	out := make([]wire.Member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, ToWire(*m))
	}
	return out
}

// ToWire converts a member for the wire.
func ToWire(m Member) wire.Member {
	return wire.Member{
		ID: uint64(m.ID), Name: m.Name, GossipAddr: m.GossipAddr, HTTPAddr: m.HTTPAddr,
		Incarnation: m.Incarnation, Heartbeat: m.Heartbeat, State: uint8(m.State),
	}
}

func fromWire(w wire.Member) Member {
	st := State(w.State)
	if st > Left {
		st = Alive
	}
	return Member{
		ID: crdt.ReplicaID(w.ID), Name: w.Name, GossipAddr: w.GossipAddr, HTTPAddr: w.HTTPAddr,
		Incarnation: w.Incarnation, Heartbeat: w.Heartbeat, State: st,
	}
}
