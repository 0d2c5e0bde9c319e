package gateway

import (
	"cmp"
	"slices"
	"strings"
)

// pick returns the healthy node with the fewest outstanding requests that
// is not in tried, or nil; ties go round-robin.
func (g *Gateway) pick(tried []*backend) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rr++
	var best *backend
	var bestLoad int64
	n := len(g.ring)
	for i := 0; i < n; i++ {
		b := g.ring[(int(g.rr%uint64(n))+i)%n]
		if !b.healthy || b.retired || slices.Contains(tried, b) {
			continue
		}
		if load := b.outstanding.Load(); best == nil || load < bestLoad {
			best, bestLoad = b, load
		}
	}
	return best
}

// rebuildRing refreshes the stable order pick walks. Caller holds mu.
func (g *Gateway) rebuildRing() {
	g.ring = g.ring[:0]
	for _, b := range g.backends {
		g.ring = append(g.ring, b)
	}
	slices.SortFunc(g.ring, func(a, b *backend) int { return strings.Compare(a.url, b.url) })
}

// home returns the node a counter key belongs to: rendezvous hashing over
// every node that ever proved membership, healthy or not, so that a key
// does not move while its node is down. A node that never proved anything
// is no candidate: it cannot block the key's writes. A write with an
// Idempotency-Key goes only here (every retry of it names the same counter,
// so it meets the node that remembers the key); route starts here too.
func (g *Gateway) home(key string) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *backend
	var bestScore uint64
	for _, b := range g.ring {
		if !b.everProven {
			continue
		}
		if s := score(b.url, key); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// route returns the node that serves key's reads and unkeyed writes now:
// the first node in key's rendezvous order (home's order) that is healthy,
// in rotation and not in tried, or nil. While the home is healthy every
// read and write of the key goes to it, so a client reads its own writes;
// when it is not, the next node in the order takes over, the same for
// every request of the key.
func (g *Gateway) route(key string, tried []*backend) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *backend
	var bestScore uint64
	for _, b := range g.ring {
		if !b.healthy || b.retired || slices.Contains(tried, b) {
			continue
		}
		if s := score(b.url, key); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// order returns the healthy nodes in rotation in key's rendezvous order.
func (g *Gateway) order(key string) []*backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	type scored struct {
		b *backend
		s uint64
	}
	var ss []scored
	for _, b := range g.ring {
		if b.healthy && !b.retired {
			ss = append(ss, scored{b, score(b.url, key)})
		}
	}
	slices.SortFunc(ss, func(a, b scored) int { return cmp.Compare(b.s, a.s) })
	out := make([]*backend, len(ss))
	for i, s := range ss {
		out[i] = s.b
	}
	return out
}

// score is node url's rendezvous score for key: FNV-1a of url, a zero
// byte and key, mixed. Inline FNV: hash.Hash would allocate per request.
func score(url, key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(url); i++ {
		h = (h ^ uint64(url[i])) * prime
	}
	h *= prime // the zero byte: h ^ 0 == h
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	return mix(h)
}

// mix is the splitmix64 finaliser: FNV alone barely spreads keys that
// differ only in their last bytes.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
