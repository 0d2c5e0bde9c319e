package membership

import (
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Clock differences between members.
//
// Every member message carries the sender's wall clock when it sent it
// (wire SentAt). The receiver's estimate of the sender's clock offset is
// SentAt − its own clock on receipt. That is the true offset minus the
// one-way delay (network and queueing), so it is never too high; the
// largest estimate over a short window is therefore the best one, and a
// message that sat in a queue cannot make a clock look wrong for long. A
// member's restart (a new incarnation) starts a new window, so a clock
// corrected with a restart shows at once.
//
// Offsets are reported (logged, exported as a metric) and nothing else:
// membership, failure detection and idempotency never use them, so a
// member lying about its clock can only make itself look skewed.

const (
	// skewWindow is how long the largest estimate is kept before a fresh
	// window starts (so a corrected clock shows within it).
	skewWindow = 30 * time.Second
	// skewWarnEvery limits warnings to one per member per interval.
	skewWarnEvery = time.Minute
)

type clockSample struct {
	incarnation uint64 // a new incarnation (a restart) starts afresh
	windowStart time.Time
	best        time.Duration // largest estimate in the current window
	warned      time.Time
}

// ClockReport is the result of ObserveClock.
type ClockReport struct {
	Member Member
	// Offset is the member's clock minus ours (best current estimate).
	Offset time.Duration
	// Warn is set when |Offset| exceeds the threshold and the member has
	// not been warned about for a minute.
	Warn bool
}

// ObserveClock records a member message's sending time. The sender is id if
// non-zero, else the member at gossip address from. sentAt is in Unix
// milliseconds (0: the sender did not say). ok is false when the sender is
// unknown, is this node, or gave no time.
func (l *List) ObserveClock(id crdt.ReplicaID, from string, sentAt int64, now time.Time, threshold time.Duration) (r ClockReport, ok bool) {
	if sentAt == 0 {
		return r, false
	}
	m := l.members[id]
	if m == nil {
		for mid, mm := range l.members {
			if mm.GossipAddr == from && mid != l.self {
				m = mm
				break
			}
		}
	}
	if m == nil || m.ID == l.self {
		return r, false
	}
	if l.clocks == nil {
		l.clocks = map[crdt.ReplicaID]*clockSample{}
	}
	est := time.UnixMilli(sentAt).Sub(now)
	s := l.clocks[m.ID]
	switch {
	case s == nil:
		s = &clockSample{incarnation: m.Incarnation, windowStart: now, best: est}
		l.clocks[m.ID] = s
	case now.Sub(s.windowStart) > skewWindow || now.Before(s.windowStart) || s.incarnation != m.Incarnation:
		s.incarnation, s.windowStart, s.best = m.Incarnation, now, est
	case est > s.best:
		s.best = est
	}
	r = ClockReport{Member: *m, Offset: s.best}
	if threshold > 0 && (s.best > threshold || s.best < -threshold) &&
		(s.warned.IsZero() || now.Sub(s.warned) >= skewWarnEvery || now.Before(s.warned)) {
		r.Warn = true
		s.warned = now
	}
	return r, true
}

// ClockOffsets returns the estimated clock offset (theirs minus ours) of
// every alive or suspect member that has sent a time.
func (l *List) ClockOffsets() map[crdt.ReplicaID]time.Duration {
	out := map[crdt.ReplicaID]time.Duration{}
	for id, s := range l.clocks {
		if m := l.members[id]; m != nil && (m.State == Alive || m.State == Suspect) {
			out[id] = s.best
		}
	}
	return out
}
