package gateway

import (
	"hash/fnv"
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

// home returns the node an idempotency key belongs to: rendezvous hashing
// over every node that ever proved membership, healthy or not, so that a
// key does not move while its node is down. A node that never proved
// anything is no candidate: it cannot block the key's writes.
func (g *Gateway) home(key string) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *backend
	var bestScore uint64
	for _, b := range g.backends {
		if !b.everProven {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(b.url))
		h.Write([]byte{0})
		h.Write([]byte(key))
		if s := mix(h.Sum64()); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
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
