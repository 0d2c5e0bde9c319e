package node

import (
	"errors"
	"hash/fnv"
	"strconv"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/wal"
)

// Idempotency keys. A keyed write is logged together with its key and the
// answer it got (wal.Idem), in one record: after a crash both are back, or
// neither is. The node keeps the live keys in memory (n.idem) and in every
// snapshot, forgets them after IdempotencyWindow, and replays the first
// answer to any retry. A key is bound to its request (counter key and
// change): reusing it for another request is refused.

// errIdemFull is returned when the table of live keys is full.
var errIdemFull = errors.New("node: too many live idempotency keys; retry later")

// requestFingerprint identifies a write for its idempotency key.
func requestFingerprint(key string, delta int64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(delta, 10)))
	return h.Sum64()
}

// claimIdem checks idemKey before a keyed write. If the key was applied,
// it returns the first answer and done; if another write with the key is in
// flight, it waits for it (releasing mu meanwhile) and checks again;
// otherwise it marks the key in flight and the caller must releaseIdem.
// Caller holds mu.
func (n *Node) claimIdem(key string, fp uint64) (first int64, done bool, err error) {
	for {
		if rec, ok := n.idem[key]; ok && rec.Expires > n.clk.Now().UnixMilli() {
			if rec.Request != fp {
				return 0, false, api.ErrIdempotencyReused
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
			return 0, false, api.Unavailable(errStopped)
		default:
		}
		if n.conflict != nil {
			return 0, false, api.Unavailable(n.conflict)
		}
	}
	if len(n.idem) >= n.cfg.MaxIdempotencyKeys {
		n.expireIdem()
		if len(n.idem) >= n.cfg.MaxIdempotencyKeys {
			return 0, false, api.Unavailable(errIdemFull)
		}
	}
	n.idemWait[key] = make(chan struct{})
	return 0, false, nil
}

// releaseIdem ends a keyed write, waking any retry waiting for it. It takes mu.
func (n *Node) releaseIdem(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.idemWait[key]; ok {
		close(ch)
		delete(n.idemWait, key)
	}
}

// idemSlot is a key's place in the expiry order, with the expiry it had
// when it took that place: a key used again later has a newer slot, and
// its old one is skipped.
type idemSlot struct {
	key     string
	expires int64
}

// rememberIdem records an applied keyed write. Caller holds mu (or is
// recovering, before the node serves).
func (n *Node) rememberIdem(rec wal.Idem) {
	n.idem[rec.Key] = rec
	n.idemOrder = append(n.idemOrder, idemSlot{rec.Key, rec.Expires})
}

// expireIdem forgets keys past their window. Slots are in expiry order, as
// the window is the same for every key. Caller holds mu.
func (n *Node) expireIdem() {
	now := n.clk.Now().UnixMilli()
	i := 0
	for ; i < len(n.idemOrder) && n.idemOrder[i].expires <= now; i++ {
		s := n.idemOrder[i]
		if rec, ok := n.idem[s.key]; ok && rec.Expires == s.expires {
			delete(n.idem, s.key)
		}
	}
	n.idemOrder = n.idemOrder[i:]
}

// snapshotIdems returns the keys a snapshot must hold: the remembered ones
// still live, and those of keyed writes in flight, whose reservations the
// snapshot holds too. Caller holds mu.
func (n *Node) snapshotIdems() []wal.Idem {
	now := n.clk.Now().UnixMilli()
	out := make([]wal.Idem, 0, len(n.idem)+len(n.idemInFlight))
	for _, s := range n.idemOrder {
		if rec, ok := n.idem[s.key]; ok && rec.Expires == s.expires && rec.Expires > now {
			out = append(out, rec)
		}
	}
	for _, rec := range n.idemInFlight {
		out = append(out, rec)
	}
	return out
}
