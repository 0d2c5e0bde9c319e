package membership

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

var (
	t0 = time.Unix(1_700_000_000, 0)
	t1 = t0.Add(time.Second)
	t2 = t0.Add(2 * time.Second)
)

const selfAddr = "10.0.0.1:7946"

func selfMember() Member {
	return Member{ID: 1, Name: "self", GossipAddr: selfAddr, HTTPAddr: "10.0.0.1:8080", Incarnation: 100}
}

// wm builds a wire member with addresses derived from addr.
func wm(id uint64, name, addr string, inc, hb uint64, st State) wire.Member {
	return wire.Member{
		ID: id, Name: name, GossipAddr: addr + ":7946", HTTPAddr: addr + ":8080",
		Incarnation: inc, Heartbeat: hb, State: uint8(st),
	}
}

func lookup(l *List, id crdt.ReplicaID) (Member, bool) {
	for _, m := range l.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// withoutLastSeen returns ms with every LastSeen and Down zeroed, for
// comparisons that are about gossiped state only.
func withoutLastSeen(ms []Member) []Member {
	out := slices.Clone(ms)
	for i := range out {
		out[i].LastSeen, out[i].Down = time.Time{}, time.Time{}
	}
	return out
}

func TestNew(t *testing.T) {
	s := selfMember()
	s.State, s.LastSeen = Dead, t0.Add(-time.Hour) // New must override both
	l := New(s, t0)
	got := l.Self()
	want := selfMember()
	want.State, want.LastSeen = Alive, t0
	if got != want {
		t.Fatalf("Self() = %+v, want %+v", got, want)
	}
	if l.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", l.Len())
	}
	if p := l.Peers(); len(p) != 0 {
		t.Fatalf("Peers() = %v, want none", p)
	}
}

func TestMergeRules(t *testing.T) {
	const id = 2
	tests := []struct {
		name      string
		prior     []wire.Member // merged at t0
		rumour    wire.Member   // merged at t1
		want      Member
		wantAdded bool
	}{
		{
			name:      "unknown member is added",
			rumour:    wm(id, "a", "10.0.0.2", 5, 3, Alive),
			want:      Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 3, State: Alive, LastSeen: t1},
			wantAdded: true,
		},
		{
			name:      "unknown member that left is added as left",
			rumour:    wm(id, "a", "10.0.0.2", 5, 3, Left),
			want:      Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 3, State: Left, LastSeen: t1},
			wantAdded: true,
		},
		{
			name:   "higher incarnation replaces everything",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Suspect)},
			rumour: wm(id, "b", "10.0.0.9", 6, 1, Alive),
			want:   Member{ID: id, Name: "b", GossipAddr: "10.0.0.9:7946", HTTPAddr: "10.0.0.9:8080", Incarnation: 6, Heartbeat: 1, State: Alive, LastSeen: t1},
		},
		{
			name:   "higher incarnation replaces left",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Left)},
			rumour: wm(id, "a", "10.0.0.3", 6, 0, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.3:7946", HTTPAddr: "10.0.0.3:8080", Incarnation: 6, Heartbeat: 0, State: Alive, LastSeen: t1},
		},
		{
			name:   "higher incarnation revives whatever a peer thought of it",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 7, 2, Dead),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 7, Heartbeat: 2, State: Alive, LastSeen: t1},
		},
		{
			name:   "higher incarnation carries left",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 7, 2, Left),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 7, Heartbeat: 2, State: Left, LastSeen: t1},
		},
		{
			name:   "equal incarnation higher heartbeat updates heartbeat and last seen",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 5, 11, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Alive, LastSeen: t1},
		},
		{
			name:   "equal incarnation higher heartbeat keeps addresses of the incarnation",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "z", "10.0.0.9", 5, 11, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Alive, LastSeen: t1},
		},
		{
			name:   "equal incarnation higher heartbeat revives suspect",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Suspect)},
			rumour: wm(id, "a", "10.0.0.2", 5, 11, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Alive, LastSeen: t1},
		},
		{
			name:   "equal incarnation higher heartbeat revives dead",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Dead)},
			rumour: wm(id, "a", "10.0.0.2", 5, 11, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Alive, LastSeen: t1},
		},
		{
			name:   "equal incarnation equal heartbeat changes nothing",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 5, 10, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Alive, LastSeen: t0},
		},
		{
			name:   "equal incarnation equal heartbeat does not revive suspect",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Suspect)},
			rumour: wm(id, "a", "10.0.0.2", 5, 10, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Suspect, LastSeen: t0},
		},
		{
			name:   "equal incarnation equal heartbeat dead rumour changes nothing",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 5, 10, Dead),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Alive, LastSeen: t0},
		},
		{
			name:   "equal incarnation lower heartbeat changes nothing",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "z", "10.0.0.9", 5, 9, Suspect),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Alive, LastSeen: t0},
		},
		{
			name:   "lower incarnation is ignored",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "z", "10.0.0.9", 4, 99, Left),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Alive, LastSeen: t0},
		},
		{
			name:   "left is sticky at equal incarnation",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Left)},
			rumour: wm(id, "a", "10.0.0.2", 5, 11, Alive),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Left, LastSeen: t1},
		},
		{
			name:   "left at equal incarnation wins over alive",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 5, 10, Left),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 10, State: Left, LastSeen: t0},
		},
		{
			// Needed for order independence: "left at 10" then "alive at
			// 11" ends left (sticky), so the reverse order must too.
			name:   "left at equal incarnation and lower heartbeat still wins",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 11, Alive)},
			rumour: wm(id, "a", "10.0.0.2", 5, 10, Left),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 11, State: Left, LastSeen: t0},
		},
		{
			name:   "left at equal incarnation and higher heartbeat",
			prior:  []wire.Member{wm(id, "a", "10.0.0.2", 5, 10, Suspect)},
			rumour: wm(id, "a", "10.0.0.2", 5, 12, Left),
			want:   Member{ID: id, Name: "a", GossipAddr: "10.0.0.2:7946", HTTPAddr: "10.0.0.2:8080", Incarnation: 5, Heartbeat: 12, State: Left, LastSeen: t1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(selfMember(), t0)
			l.Merge(tc.prior, t0)
			added, _ := l.Merge([]wire.Member{tc.rumour}, t1)
			got, ok := lookup(l, id)
			if !ok {
				t.Fatalf("member %d missing after merge", id)
			}
			// Down is local bookkeeping for pruning (prune_test.go).
			got.Down = time.Time{}
			for i := range added {
				added[i].Down = time.Time{}
			}
			if got != tc.want {
				t.Errorf("member = %+v\nwant     %+v", got, tc.want)
			}
			var wantAdded []Member
			if tc.wantAdded {
				wantAdded = []Member{tc.want}
			}
			if !slices.Equal(added, wantAdded) {
				t.Errorf("added = %+v, want %+v", added, wantAdded)
			}
			if l.Len() != 2 {
				t.Errorf("Len() = %d, want 2", l.Len())
			}
		})
	}
}

func TestMergeAddedOnlyOnce(t *testing.T) {
	l := New(selfMember(), t0)
	view := []wire.Member{
		wm(2, "a", "10.0.0.2", 5, 1, Alive),
		wm(3, "b", "10.0.0.3", 5, 1, Alive),
		wm(2, "a", "10.0.0.2", 5, 2, Alive), // same member again in the same view
	}
	added, _ := l.Merge(view, t0)
	var ids []crdt.ReplicaID
	for _, m := range added {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []crdt.ReplicaID{2, 3}) {
		t.Fatalf("added IDs = %v, want [2 3]", ids)
	}
	if m, _ := lookup(l, 2); m.Heartbeat != 2 {
		t.Fatalf("heartbeat of 2 = %d, want 2 (second entry in the view is newer)", m.Heartbeat)
	}
	if again, _ := l.Merge(view, t1); len(again) != 0 {
		t.Fatalf("re-merging a known view added %+v", again)
	}
}

func TestLeftReplacedByHigherIncarnationThenSticky(t *testing.T) {
	l := New(selfMember(), t0)
	l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 5, 10, Left)}, t0)
	l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 5, 20, Alive)}, t1) // late beat from before it left
	if m, _ := lookup(l, 2); m.State != Left {
		t.Fatalf("after a higher heartbeat at the same incarnation state = %v, want left", m.State)
	}
	l.Merge([]wire.Member{wm(2, "a", "10.0.0.2", 6, 0, Alive)}, t2) // restarted
	m, _ := lookup(l, 2)
	if m.State != Alive || m.Incarnation != 6 || m.Heartbeat != 0 || !m.LastSeen.Equal(t2) {
		t.Fatalf("after restart member = %+v, want alive at incarnation 6, heartbeat 0, seen at t2", m)
	}
}

func TestMergeRefutesRumoursAboutSelf(t *testing.T) {
	const inc = 100 // selfMember().Incarnation
	tests := []struct {
		name    string
		state   State
		inc     uint64
		wantInc uint64
	}{
		{"suspect at our incarnation", Suspect, inc, inc + 1},
		{"dead at our incarnation", Dead, inc, inc + 1},
		{"suspect above our incarnation", Suspect, inc + 50, inc + 51},
		{"dead above our incarnation", Dead, inc + 50, inc + 51},
		{"left at our incarnation", Left, inc, inc + 1},
		{"suspect below our incarnation", Suspect, inc - 1, inc},
		{"dead below our incarnation", Dead, 3, inc},
		{"alive at our incarnation, other addresses", Alive, inc, inc + 1},
		{"alive above our incarnation, other addresses", Alive, inc + 50, inc + 51},
		{"alive below our incarnation", Alive, inc - 1, inc},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(selfMember(), t0)
			// The rumour carries different addresses and heartbeat: none
			// of it may leak into our own entry.
			added, _ := l.Merge([]wire.Member{wm(1, "impostor", "10.9.9.9", tc.inc, 999, tc.state)}, t1)
			if len(added) != 0 {
				t.Errorf("added = %+v, want none", added)
			}
			want := selfMember()
			want.State, want.LastSeen, want.Incarnation = Alive, t0, tc.wantInc
			if got := l.Self(); got != want {
				t.Errorf("Self() = %+v\nwant     %+v", got, want)
			}
			if l.Len() != 1 {
				t.Errorf("Len() = %d, want 1", l.Len())
			}
		})
	}
}

func TestRefuteIsIdempotent(t *testing.T) {
	l := New(selfMember(), t0)
	rumour := []wire.Member{wm(1, "self", "10.0.0.1", 100, 0, Dead)}
	l.Merge(rumour, t1)
	l.Merge(rumour, t2) // the same stale rumour again: already refuted
	if got := l.Self().Incarnation; got != 101 {
		t.Fatalf("incarnation = %d, want 101", got)
	}
}

func TestRefuteAtMaxIncarnation(t *testing.T) {
	l := New(selfMember(), t0)
	l.Merge([]wire.Member{wm(1, "self", "10.0.0.1", math.MaxUint64, 0, Dead)}, t1)
	if got := l.Self().Incarnation; got < 100 {
		t.Fatalf("incarnation went backwards to %d after refuting a rumour at MaxUint64", got)
	}
}

func TestBeat(t *testing.T) {
	l := New(selfMember(), t0)
	for i := 1; i <= 3; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		l.Beat(now)
		s := l.Self()
		if s.Heartbeat != uint64(i) || !s.LastSeen.Equal(now) || s.Incarnation != 100 || s.State != Alive {
			t.Fatalf("after %d beats Self() = %+v", i, s)
		}
	}
}

func TestPeers(t *testing.T) {
	tests := []struct {
		name string
		view []wire.Member
		want []string
	}{
		{name: "only self", want: nil},
		{
			name: "states",
			view: []wire.Member{
				wm(2, "a", "10.0.0.3", 1, 0, Alive),
				wm(3, "b", "10.0.0.2", 1, 0, Suspect),
				wm(4, "c", "10.0.0.4", 1, 0, Dead),
				wm(5, "d", "10.0.0.5", 1, 0, Left),
			},
			want: []string{"10.0.0.2:7946", "10.0.0.3:7946"},
		},
		{
			name: "deduplicated by address",
			view: []wire.Member{
				wm(2, "a", "10.0.0.2", 1, 0, Alive),
				wm(3, "a-restarted-with-new-id", "10.0.0.2", 1, 0, Alive),
				wm(4, "b", "10.0.0.3", 1, 0, Suspect),
			},
			want: []string{"10.0.0.2:7946", "10.0.0.3:7946"},
		},
		{
			name: "member sharing self's gossip address is excluded",
			view: []wire.Member{
				wm(2, "old-self", "10.0.0.1", 1, 0, Alive),
				wm(3, "b", "10.0.0.3", 1, 0, Alive),
			},
			want: []string{"10.0.0.3:7946"},
		},
		{
			name: "dead duplicate does not hide a live one",
			view: []wire.Member{
				wm(2, "a", "10.0.0.2", 1, 0, Dead),
				wm(3, "a2", "10.0.0.2", 1, 0, Alive),
			},
			want: []string{"10.0.0.2:7946"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(selfMember(), t0)
			l.Merge(tc.view, t0)
			if got := l.Peers(); !slices.Equal(got, tc.want) {
				t.Fatalf("Peers() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMembersSorted(t *testing.T) {
	l := New(selfMember(), t0)
	l.Merge([]wire.Member{
		wm(9, "b", "10.0.0.9", 1, 0, Alive),
		wm(5, "a", "10.0.0.5", 1, 0, Dead),
		wm(3, "a", "10.0.0.3", 1, 0, Alive),
		wm(7, "", "10.0.0.7", 1, 0, Left),
		wm(4, "self", "10.0.0.4", 1, 0, Alive),
	}, t0)
	type key struct {
		name string
		id   crdt.ReplicaID
	}
	var got []key
	for _, m := range l.Members() {
		got = append(got, key{m.Name, m.ID})
	}
	want := []key{{"", 7}, {"a", 3}, {"a", 5}, {"b", 9}, {"self", 1}, {"self", 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("Members() order = %v, want %v", got, want)
	}
}

func TestWireRoundTrip(t *testing.T) {
	a := New(selfMember(), t0)
	a.Merge([]wire.Member{
		wm(2, "a", "10.0.0.2", 5, 7, Alive),
		wm(3, "b", "10.0.0.3", 6, 0, Suspect),
		wm(4, "c", "10.0.0.4", 7, 1, Dead),
		wm(5, "d", "10.0.0.5", 8, 2, Left),
	}, t0)

	ws := a.Wire()
	if len(ws) != a.Len() {
		t.Fatalf("Wire() has %d entries, want %d", len(ws), a.Len())
	}
	b := New(selfMember(), t0)
	b.Merge(ws, t1)
	if got, want := withoutLastSeen(b.Members()), withoutLastSeen(a.Members()); !slices.Equal(got, want) {
		t.Fatalf("after merging a.Wire() into b:\n b = %+v\n a = %+v", got, want)
	}

	for _, m := range a.Members() {
		w := ToWire(m)
		if w.ID != uint64(m.ID) || w.Name != m.Name || w.GossipAddr != m.GossipAddr || w.HTTPAddr != m.HTTPAddr ||
			w.Incarnation != m.Incarnation || w.Heartbeat != m.Heartbeat || w.State != uint8(m.State) {
			t.Errorf("ToWire(%+v) = %+v", m, w)
		}
		back := fromWire(w)
		m.LastSeen, m.Down = time.Time{}, time.Time{}
		if back != m {
			t.Errorf("fromWire(ToWire(m)) = %+v, want %+v", back, m)
		}
	}
}

func TestUnknownWireStateIsAlive(t *testing.T) {
	tests := []struct {
		wireState uint8
		want      State
	}{
		{0, Alive},
		{1, Suspect},
		{2, Dead},
		{3, Left},
		{4, Alive},
		{200, Alive},
		{255, Alive},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.wireState), func(t *testing.T) {
			l := New(selfMember(), t0)
			w := wm(2, "a", "10.0.0.2", 1, 0, Alive)
			w.State = tc.wireState
			l.Merge([]wire.Member{w}, t0)
			if m, _ := lookup(l, 2); m.State != tc.want {
				t.Fatalf("state = %v, want %v", m.State, tc.want)
			}
			if tc.want == Alive {
				if p := l.Peers(); !slices.Equal(p, []string{"10.0.0.2:7946"}) {
					t.Fatalf("Peers() = %q, want the member as a peer", p)
				}
			}
		})
	}
}

func TestStateString(t *testing.T) {
	tests := []struct {
		s    State
		want string
	}{
		{Alive, "alive"}, {Suspect, "suspect"}, {Dead, "dead"}, {Left, "left"}, {State(200), "unknown"},
	}
	for _, tc := range tests {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(tc.s), got, tc.want)
		}
	}
}

// history generates the snapshots a member publishes about itself:
// incarnation and heartbeat only grow and addresses are fixed within an
// incarnation. After leaving, a member normally only restarts (higher
// incarnation), but now and then a stray "alive" beat at the same
// incarnation follows, which the sticky left rule must absorb.
func history(rng *rand.Rand, id uint64) []wire.Member {
	inc := 1 + rng.Uint64N(1000)
	var hb uint64
	host := fmt.Sprintf("10.%d.0.%d", id, inc%250)
	left := false
	var out []wire.Member
	for range 1 + rng.IntN(12) {
		st := Alive
		switch r := rng.IntN(10); {
		case r < 2 || (left && r < 8): // restart
			inc += 1 + rng.Uint64N(3)
			hb = rng.Uint64N(2)
			host = fmt.Sprintf("10.%d.0.%d", id, inc%250)
			left = false
		case left: // stray beat after leaving
			hb++
		case r < 3: // leave
			left, st = true, Left
		default:
			hb += 1 + rng.Uint64N(3)
		}
		out = append(out, wm(id, fmt.Sprintf("m%d", id%3), host, inc, hb, st))
	}
	return out
}

// expected folds every snapshot of one member into the entry all views
// must end with: the highest incarnation, the highest heartbeat within it,
// left if any snapshot at that incarnation says so.
func expected(snaps []wire.Member) Member {
	best := fromWire(snaps[0])
	for _, w := range snaps[1:] {
		m := fromWire(w)
		switch {
		case m.Incarnation > best.Incarnation:
			best = m
		case m.Incarnation == best.Incarnation:
			best.Heartbeat = max(best.Heartbeat, m.Heartbeat)
			if m.State == Left {
				best.State = Left
			}
		}
	}
	return best
}

func TestMergeConverges(t *testing.T) {
	const (
		seeds     = 300
		nMembers  = 6
		nLists    = 4
		firstPeer = 2
		observer  = 100
	)
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var snaps []wire.Member
		var want []Member
		for id := uint64(firstPeer); id < firstPeer+nMembers; id++ {
			h := history(rng, id)
			snaps = append(snaps, h...)
			want = append(want, expected(h))
		}
		slices.SortFunc(want, func(a, b Member) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
		})

		// Cut the snapshots into views; some snapshots go out twice.
		rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
		var views [][]wire.Member
		for rest := snaps; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(5))
			views = append(views, rest[:n])
			rest = rest[n:]
		}
		for range rng.IntN(5) {
			views = append(views, []wire.Member{snaps[rng.IntN(len(snaps))]})
		}

		lists := make([]*List, nLists)
		addedIDs := make([]map[crdt.ReplicaID]int, nLists)
		for i := range lists {
			lists[i] = New(Member{ID: crdt.ReplicaID(observer + i), Name: fmt.Sprintf("obs%d", i), GossipAddr: fmt.Sprintf("10.200.0.%d:7946", i), Incarnation: 1}, t0)
			addedIDs[i] = map[crdt.ReplicaID]int{}
		}
		merge := func(i int, view []wire.Member, now time.Time) {
			added, _ := lists[i].Merge(view, now)
			for _, m := range added {
				addedIDs[i][m.ID]++
			}
		}
		for i := range lists {
			order := rng.Perm(len(views))
			for step, v := range order {
				now := t0.Add(time.Duration(step) * time.Millisecond)
				merge(i, views[v], now)
				if rng.IntN(4) == 0 { // relay: another list gossips its view to this one
					merge(i, lists[rng.IntN(nLists)].Wire(), now)
				}
			}
		}

		historyOnly := func(l *List) []Member {
			var out []Member
			for _, m := range withoutLastSeen(l.Members()) {
				if m.ID < observer {
					out = append(out, m)
				}
			}
			return out
		}
		for i, l := range lists {
			if got := historyOnly(l); !slices.Equal(got, want) {
				t.Fatalf("seed %d: list %d diverged:\n got  %+v\n want %+v", seed, i, got, want)
			}
		}

		// One round of full gossip spreads the observers' own entries;
		// then the lists must be identical.
		for i := range lists {
			for j := range lists {
				merge(i, lists[j].Wire(), t2)
			}
		}
		ref := withoutLastSeen(lists[0].Members())
		for i, l := range lists[1:] {
			if got := withoutLastSeen(l.Members()); !slices.Equal(got, ref) {
				t.Fatalf("seed %d: list %d differs from list 0 after full exchange:\n got  %+v\n want %+v", seed, i+1, got, ref)
			}
		}
		for i := range lists {
			if len(addedIDs[i]) != lists[i].Len()-1 {
				t.Fatalf("seed %d: list %d reported %d members as added, holds %d others", seed, i, len(addedIDs[i]), lists[i].Len()-1)
			}
			for id, n := range addedIDs[i] {
				if n != 1 {
					t.Fatalf("seed %d: list %d reported member %d as added %d times", seed, i, id, n)
				}
			}
		}
	}
}

func TestMergeLimitsAndLargeIncarnations(t *testing.T) {
	l := New(selfMember(), t0)
	var view []wire.Member
	for i := 2; i < 2+MaxNewPerMerge+10; i++ {
		view = append(view, wm(uint64(i), "m", fmt.Sprintf("10.1.%d.%d", i/256, i%256), 1, 1, Alive))
	}
	if added, _ := l.Merge(view, t1); len(added) != MaxNewPerMerge {
		t.Fatalf("one message added %d members, want at most %d", len(added), MaxNewPerMerge)
	}
	// Incarnations are counters: one far beyond any wall-clock reading
	// (an old data dir's millisecond start time, or a node whose clock was
	// days ahead) is a member like any other.
	far := uint64(t1.UnixMilli()) + uint64(48*time.Hour/time.Millisecond)
	if added, _ := l.Merge([]wire.Member{wm(99999, "f", "10.9.9.9", far, 1, Alive)}, t1); len(added) != 1 {
		t.Fatal("a member with a large incarnation was not added")
	}
	if added, _ := l.Merge([]wire.Member{wm(99998, "g", "10.9.9.8", 1, 1, Alive)}, t1); len(added) != 1 {
		t.Fatal("a member with incarnation 1 was not added")
	}
}

func TestMergeReportsAnotherProcessWithOurID(t *testing.T) {
	l := New(selfMember(), t0)
	self := l.Self()
	if _, conflict := l.Merge([]wire.Member{wm(uint64(self.ID), "self", "10.0.0.1", self.Incarnation-1, 5, Alive)}, t1); conflict {
		t.Fatal("an old entry of ours is not a conflict")
	}
	if _, conflict := l.Merge([]wire.Member{wm(uint64(self.ID), "clone", "10.7.7.7", self.Incarnation+10, 5, Alive)}, t1); !conflict {
		t.Fatal("our ID at another address under an incarnation we never used is not reported")
	}
}
