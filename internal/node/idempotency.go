package node

import (
	"errors"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/wal"
)

// Idempotency keys. A keyed write is logged together with its key and the
// answer it got (wal.Idem), in one record: after a crash both are back, or
// neither is. The node keeps the live keys in memory (n.idem) and in every
// snapshot, forgets them after IdempotencyWindow, and replays the first
// answer to any retry. A key is bound to its request (counter key and
// change): reusing it for another request is refused.
//
// # Remembered time
//
// The window is measured on the node's remembered time, never on the wall
// clock: milliseconds that the node has been running, counted across
// restarts. While the node runs it advances with the monotonic clock; a
// restart continues from the largest value recovered (the data dir's state
// file, written at start, every SnapshotInterval and at a clean stop, and
// the remembered time of every key in the log and the snapshot). So:
//
//   - a retry within the window is replayed whatever the system clock did
//     meanwhile: a step of any size, forward or back, changes nothing;
//   - time the node is down does not count: after a long downtime a key
//     is still remembered for the rest of its window (a retry that comes a
//     week later, to a node that was down all week, is still replayed);
//   - after a crash, the time since the last of those records (at most
//     SnapshotInterval, 5 minutes by default) does not count either: keys
//     are remembered a little longer, never shorter;
//   - the window applies when a key is checked, so changing
//     --idempotency-window applies to the keys already remembered.
//
// Keys recovered from older versions, which stored a wall-clock expiry,
// are kept a full window from recovery: the stored time cannot be trusted.
// Without a data dir remembered time starts at 0 on every start, as the
// keys do.

// errIdemFull is returned when the table of live keys is full.
var errIdemFull = errors.New("node: too many live idempotency keys; retry later")

// Operations a fingerprint tells apart.
const (
	opAdd    = "" // so that an add's fingerprint is what it was before TTLs
	opDelete = "del"
	opTTL    = "ttl"
)

// requestFingerprint identifies a write for its idempotency key: the
// operation, the counter key and the operation's arguments. An add without
// a TTL hashes as it did in versions without TTLs, so keys remembered across
// an upgrade still match their retries.
func requestFingerprint(op, key string, args ...int64) uint64 {
	h := fnv.New64a()
	if op != opAdd {
		h.Write([]byte(op))
		h.Write([]byte{0})
	}
	h.Write([]byte(key))
	for _, a := range args {
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatInt(a, 10)))
	}
	return h.Sum64()
}

// claimIdem checks idemKey before a keyed write. If the key was applied,
// it returns the first answer and done; if another write with the key is in
// flight, it waits for it (releasing mu meanwhile) and checks again;
// otherwise it marks the key in flight and the caller must releaseIdem.
// Caller holds mu.
func (n *Node) claimIdem(key string, fp uint64) (first int64, done bool, err error) {
	for {
		if rec, ok := n.idem[key]; ok && n.idemLive(rec.At, n.remembered(n.clk.Now())) {
			if rec.Request != fp {
				return 0, false, service.ErrIdempotencyReused
			}
			return rec.Value, true, nil
		}
		wait, busy := n.idemWait[key]
		if !busy {
			break
		}
		n.mu.Unlock()
		<-wait
		n.mu.Lock()
		select {
		case <-n.stop:
			return 0, false, service.Unavailable(errStopped)
		default:
		}
		if n.conflict != nil {
			return 0, false, service.Unavailable(n.conflict)
		}
	}
	if len(n.idem) >= n.cfg.MaxIdempotencyKeys {
		n.expireIdem()
		if len(n.idem) >= n.cfg.MaxIdempotencyKeys {
			return 0, false, service.Unavailable(errIdemFull)
		}
	}
	n.idemWait[key] = make(chan struct{})
	return 0, false, nil
}

// releaseIdem ends a keyed write, waking any retry waiting for it. Caller
// holds mu.
func (n *Node) releaseIdem(key string) {
	if ch, ok := n.idemWait[key]; ok {
		close(ch)
		delete(n.idemWait, key)
	}
}

// idemSlot is a key's place in the expiry order, with the remembered time
// it had when it took that place: a key used again later has a newer slot,
// and its old one is skipped.
type idemSlot struct {
	key string
	at  int64
}

// remembered returns the node's remembered time at now, in milliseconds.
// now.Sub(rStart) is monotonic (both carry Go's monotonic reading), so
// wall-clock steps do not move it.
func (n *Node) remembered(now time.Time) int64 {
	return n.rBase + max(0, now.Sub(n.rStart).Milliseconds())
}

// idemLive reports whether a key remembered since at is still within the
// window at remembered time r.
func (n *Node) idemLive(at, r int64) bool {
	return r-at < n.cfg.IdempotencyWindow.Milliseconds()
}

// rememberIdem records an applied keyed write. Caller holds mu (or is
// recovering, before the node serves).
func (n *Node) rememberIdem(rec wal.Idem) {
	n.idem[rec.Key] = rec
	n.idemOrder = append(n.idemOrder, idemSlot{rec.Key, rec.At})
}

// expireIdem forgets keys past their window. Slots are in expiry order, as
// the window is the same for every key. Caller holds mu.
func (n *Node) expireIdem() {
	r := n.remembered(n.clk.Now())
	i := 0
	for ; i < len(n.idemOrder) && !n.idemLive(n.idemOrder[i].at, r); i++ {
		s := n.idemOrder[i]
		if rec, ok := n.idem[s.key]; ok && rec.At == s.at {
			delete(n.idem, s.key)
		}
	}
	n.idemOrder = n.idemOrder[i:]
}

// snapshotIdems returns the keys a snapshot must hold: the remembered ones
// still live, and those of keyed writes in flight, whose reservations the
// snapshot holds too. Caller holds mu.
func (n *Node) snapshotIdems() []wal.Idem {
	r := n.remembered(n.clk.Now())
	out := make([]wal.Idem, 0, len(n.idem)+len(n.idemInFlight))
	for _, s := range n.idemOrder {
		if rec, ok := n.idem[s.key]; ok && rec.At == s.at && n.idemLive(rec.At, r) {
			out = append(out, rec)
		}
	}
	for _, rec := range n.idemInFlight {
		out = append(out, rec)
	}
	return out
}
