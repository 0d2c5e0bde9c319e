package membership

import (
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/wire"
)

func TestObserveClock(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	l := New(Member{ID: 1, Name: "self", GossipAddr: "10.0.0.1:1", Incarnation: 1}, now)
	l.Merge([]wire.Member{{ID: 2, Name: "ahead", GossipAddr: "10.0.0.2:1", Incarnation: 1}}, now)
	const threshold = 10 * time.Second
	ms := func(t time.Time) int64 { return t.UnixMilli() }

	if _, ok := l.ObserveClock(0, "10.0.0.9:1", ms(now), now, threshold); ok {
		t.Fatal("an unknown sender was observed")
	}
	if _, ok := l.ObserveClock(0, "10.0.0.2:1", 0, now, threshold); ok {
		t.Fatal("a message without a time was observed")
	}
	if _, ok := l.ObserveClock(1, "", ms(now), now, threshold); ok {
		t.Fatal("our own message was observed")
	}

	// 48 h ahead, 20 ms on the way: the estimate is 20 ms short, and warned.
	ahead := 48 * time.Hour
	r, ok := l.ObserveClock(0, "10.0.0.2:1", ms(now.Add(ahead)), now.Add(20*time.Millisecond), threshold)
	if !ok || r.Member.Name != "ahead" || r.Offset != ahead-20*time.Millisecond || !r.Warn {
		t.Fatalf("report %+v, %v", r, ok)
	}
	// A later, less delayed message improves the estimate; no second
	// warning within a minute.
	now = now.Add(time.Second)
	r, _ = l.ObserveClock(2, "", ms(now.Add(ahead)), now.Add(time.Millisecond), threshold)
	if r.Offset != ahead-time.Millisecond || r.Warn {
		t.Fatalf("report %+v", r)
	}
	// A message that sat in a queue for 5 s does not make it worse.
	now = now.Add(5 * time.Second)
	r, _ = l.ObserveClock(2, "", ms(now.Add(ahead).Add(-5*time.Second)), now, threshold)
	if r.Offset != ahead-time.Millisecond {
		t.Fatalf("a delayed message changed the estimate: %+v", r)
	}
	// A minute later: warned again.
	now = now.Add(time.Minute)
	if r, _ = l.ObserveClock(2, "", ms(now.Add(ahead)), now, threshold); !r.Warn {
		t.Fatalf("no warning a minute later: %+v", r)
	}
	// Its clock is corrected: within a window the estimate follows, and
	// within the threshold there is no warning.
	now = now.Add(skewWindow + time.Second)
	r, _ = l.ObserveClock(2, "", ms(now), now.Add(2*time.Millisecond), threshold)
	if r.Offset != -2*time.Millisecond || r.Warn {
		t.Fatalf("after the correction: %+v", r)
	}
	if got := l.ClockOffsets(); len(got) != 1 || got[crdt.ReplicaID(2)] != -2*time.Millisecond {
		t.Fatalf("ClockOffsets = %v", got)
	}
	// A restart (new incarnation) with a corrected clock shows at once.
	l.Merge([]wire.Member{{ID: 2, Name: "ahead", GossipAddr: "10.0.0.2:1", Incarnation: 2}}, now)
	r, _ = l.ObserveClock(0, "10.0.0.2:1", ms(now.Add(ahead)), now, threshold)
	now = now.Add(time.Second)
	l.Merge([]wire.Member{{ID: 2, Name: "ahead", GossipAddr: "10.0.0.2:1", Incarnation: 3}}, now)
	if r, _ = l.ObserveClock(0, "10.0.0.2:1", ms(now), now, threshold); r.Offset != 0 {
		t.Fatalf("after a restart with a corrected clock: %+v", r)
	}
	// Behind by more than the threshold warns too.
	l.Merge([]wire.Member{{ID: 3, Name: "behind", GossipAddr: "10.0.0.3:1", Incarnation: 1}}, now)
	if r, _ = l.ObserveClock(0, "10.0.0.3:1", ms(now.Add(-48*time.Hour)), now, threshold); !r.Warn || r.Offset != -48*time.Hour {
		t.Fatalf("behind: %+v", r)
	}
	// Dead and left members are not reported.
	l.Merge([]wire.Member{{ID: 3, Name: "behind", GossipAddr: "10.0.0.3:1", Incarnation: 1, Heartbeat: 1, State: uint8(Left)}}, now)
	if _, ok := l.ClockOffsets()[3]; ok {
		t.Fatal("a member that left is reported")
	}
}
