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
	}
	if len(n.idem) >= n.cfg.MaxIdempotencyKeys {
		return 0, false, api.Unavailable(errIdemFull)
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

// rememberIdem records an applied keyed write. Caller holds mu (or is
// recovering, before the node serves).
func (n *Node) rememberIdem(rec wal.Idem) {
	if _, ok := n.idem[rec.Key]; !ok {
		n.idemOrder = append(n.idemOrder, rec.Key)
	}
	n.idem[rec.Key] = rec
}

// expireIdem forgets keys past their window. Keys expire in the order they
// were applied, since the window is the same for all. Caller holds mu.
func (n *Node) expireIdem() {
	now := n.clk.Now().UnixMilli()
	i := 0
	for ; i < len(n.idemOrder); i++ {
		k := n.idemOrder[i]
		rec, ok := n.idem[k]
		if ok && rec.Expires > now {
			break
		}
		delete(n.idem, k)
	}
	n.idemOrder = n.idemOrder[i:]
}

// liveIdems returns the live keys, oldest first, for a snapshot. Caller
// holds mu.
func (n *Node) liveIdems() []wal.Idem {
	out := make([]wal.Idem, 0, len(n.idem))
	for _, k := range n.idemOrder {
		if rec, ok := n.idem[k]; ok {
			out = append(out, rec)
		}
	}
	return out
}
