// Package membership keeps a node's view of the cluster's members.
//
// Each member is identified by its replica ID and described by its name and
// addresses, an incarnation and a heartbeat. Only a member itself raises its
// incarnation (on every start, and to refute a rumour that it is not alive)
// and its heartbeat (every gossip interval). Views are merged by gossip: a
// higher incarnation replaces everything; at equal incarnation a higher
// heartbeat is news (and the member was just heard from), and "left" is
// sticky. So every node's view converges, whatever the order of messages.
//
// The list is pure data: callers pass the current time in. It is not safe for
// concurrent use.
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
}

// List is the member list of one node, including itself.
type List struct {
	self    crdt.ReplicaID
	members map[crdt.ReplicaID]*Member
}

// New returns a list holding only self, which must carry an incarnation
// higher than any it used before (the start time in milliseconds serves).
func New(self Member, now time.Time) *List {
	self.State, self.LastSeen = Alive, now
	return &List{self: self.ID, members: map[crdt.ReplicaID]*Member{self.ID: &self}}
}

// Self returns this node's own entry.
func (l *List) Self() Member { return *l.members[l.self] }

// Len reports the number of members, including self and dead ones.
func (l *List) Len() int { return len(l.members) }

// Beat advances this node's own heartbeat.
func (l *List) Beat(now time.Time) {
	s := l.members[l.self]
	s.Heartbeat++
	s.LastSeen = now
}

// Merge folds a peer's view into ours and returns the members that were new
// to us.
func (l *List) Merge(view []wire.Member, now time.Time) (added []Member) {
	for _, w := range view {
		r := fromWire(w)
		if r.ID == l.self {
			l.refute(r)
			continue
		}
		m := l.members[r.ID]
		switch {
		case m == nil:
			r.LastSeen = now
			l.members[r.ID] = &r
			added = append(added, r)
		case r.Incarnation > m.Incarnation:
			r.LastSeen = now
			*m = r
		case r.Incarnation == m.Incarnation:
			if r.Heartbeat > m.Heartbeat {
				m.Heartbeat, m.LastSeen = r.Heartbeat, now
				if m.State != Left {
					m.State = Alive
				}
			}
			if r.State == Left {
				m.State = Left
			}
		}
	}
	return added
}

// refute answers a rumour about ourselves: if a peer believes we are not
// alive at our current incarnation or later, take a higher incarnation so
// that our "alive" overrides it.
func (l *List) refute(r Member) {
	s := l.members[l.self]
	if r.State != Alive && r.Incarnation >= s.Incarnation && r.Incarnation < math.MaxUint64 {
		s.Incarnation = r.Incarnation + 1
	}
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
