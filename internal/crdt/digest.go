package crdt

import "sort"

// Digest geometry. A key's bucket is the top 16 bits of its hash; a bucket's
// group is the bucket's top 8 bits. Changing these changes the wire meaning of
// digests, so it requires a protocol version bump.
const (
	NumGroups       = 256
	BucketsPerGroup = 256
	NumBuckets      = NumGroups * BucketsPerGroup
)

// Hash is one slot of a sparse digest: the hash of group or bucket Index.
// Slots whose hash is zero (empty, in practice) are omitted.
type Hash struct {
	Index uint16
	Hash  uint64
}

type bucket struct {
	hash uint64
	keys []string
}

// digest is maintained by Keyspace.Merge: O(1) work per change.
type digest struct {
	groups  [NumGroups]uint64
	buckets map[uint16]*bucket
}

func newDigest() digest { return digest{buckets: make(map[uint16]*bucket)} }

func bucketOf(kh uint64) uint16 { return uint16(kh >> 48) }

// GroupOf returns the group a bucket belongs to.
func GroupOf(b uint16) uint16 { return b / BucketsPerGroup }

func (d *digest) addKey(key string, kh uint64) *bucket {
	b := d.buckets[bucketOf(kh)]
	if b == nil {
		b = &bucket{}
		d.buckets[bucketOf(kh)] = b
	}
	b.keys = append(b.keys, key)
	return b
}

func (d *digest) update(c *counter, old, new uint64) {
	x := old ^ new
	c.bkt.hash ^= x
	d.groups[GroupOf(bucketOf(c.hash))] ^= x
}

// Root is a hash of the whole keyspace: equal roots mean (with overwhelming
// probability) equal keyspaces.
func (ks *Keyspace) Root() uint64 {
	var r uint64
	for _, g := range ks.groups {
		r ^= g
	}
	return r
}

// Groups returns the non-zero group hashes, ordered by index.
func (ks *Keyspace) Groups() []Hash {
	var out []Hash
	for i, h := range ks.groups {
		if h != 0 {
			out = append(out, Hash{Index: uint16(i), Hash: h})
		}
	}
	return out
}

// DiffGroups returns, in order, the groups whose hash differs from remote's.
// Out-of-range indexes in remote are ignored.
func (ks *Keyspace) DiffGroups(remote []Hash) []uint16 {
	var theirs [NumGroups]uint64
	for _, h := range remote {
		if int(h.Index) < NumGroups {
			theirs[h.Index] = h.Hash
		}
	}
	var out []uint16
	for i := range ks.groups {
		if ks.groups[i] != theirs[i] {
			out = append(out, uint16(i))
		}
	}
	return out
}

// Buckets returns the non-zero bucket hashes within the given groups, ordered.
func (ks *Keyspace) Buckets(groups []uint16) []Hash {
	var out []Hash
	for _, g := range dedupe(groups) {
		if int(g) >= NumGroups {
			continue
		}
		for b := int(g) * BucketsPerGroup; b < int(g+1)*BucketsPerGroup; b++ {
			if bk := ks.buckets[uint16(b)]; bk != nil && bk.hash != 0 {
				out = append(out, Hash{Index: uint16(b), Hash: bk.hash})
			}
		}
	}
	return out
}

// DiffBuckets returns, in order, the buckets within groups whose hash differs
// from remote's bucket hashes for those groups. Remote buckets outside groups
// are ignored.
func (ks *Keyspace) DiffBuckets(groups []uint16, remote []Hash) []uint16 {
	theirs := make(map[uint16]uint64, len(remote))
	for _, h := range remote {
		theirs[h.Index] = h.Hash
	}
	var out []uint16
	for _, g := range dedupe(groups) {
		if int(g) >= NumGroups {
			continue
		}
		for b := int(g) * BucketsPerGroup; b < int(g+1)*BucketsPerGroup; b++ {
			var mine uint64
			if bk := ks.buckets[uint16(b)]; bk != nil {
				mine = bk.hash
			}
			if mine != theirs[uint16(b)] {
				out = append(out, uint16(b))
			}
		}
	}
	return out
}

// BucketEntries returns every entry whose key falls in one of buckets.
func (ks *Keyspace) BucketEntries(buckets []uint16) []Entry {
	var out []Entry
	for _, b := range dedupe(buckets) {
		bk := ks.buckets[b]
		if bk == nil {
			continue
		}
		for _, k := range bk.keys {
			out = append(out, ks.EntriesOf(k)...)
		}
	}
	return out
}

// Newer returns the entries this keyspace holds, within buckets, that are
// missing from theirs or larger than theirs: what the other side lacks after
// it sent theirs, its full contents of those buckets. Buckets are visited in
// order and the result stops before the first entry fits rejects, so a reply
// costs work in proportion to its size, not to the buckets asked for.
func (ks *Keyspace) Newer(buckets []uint16, theirs []Entry, fits func(Entry) bool) []Entry {
	type rk struct {
		key string
		r   ReplicaID
	}
	have := make(map[rk]PN, len(theirs))
	for _, e := range theirs {
		have[rk{e.Key, e.Replica}] = PN{e.P, e.N}
	}
	var out []Entry
	for _, b := range dedupe(buckets) {
		bk := ks.buckets[b]
		if bk == nil {
			continue
		}
		for _, k := range bk.keys {
			for _, s := range ks.counters[k].slots {
				pn, ok := have[rk{k, s.replica}]
				if ok && s.P <= pn.P && s.N <= pn.N {
					continue
				}
				e := Entry{Key: k, Replica: s.replica, P: s.P, N: s.N}
				if fits != nil && !fits(e) {
					return out
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// BucketOf returns the bucket that key hashes to.
func BucketOf(key string) uint16 { return bucketOf(keyHash(key)) }

func dedupe(xs []uint16) []uint16 {
	if sort.SliceIsSorted(xs, func(i, j int) bool { return xs[i] < xs[j] }) {
		ok := true
		for i := 1; i < len(xs); i++ {
			if xs[i] == xs[i-1] {
				ok = false
				break
			}
		}
		if ok {
			return xs
		}
	}
	c := append([]uint16(nil), xs...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	out := c[:0]
	for i, x := range c {
		if i == 0 || x != c[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// keyHash is FNV-1a, finished with a mixer so that the top bits (which pick
// the bucket) depend on every byte. It must be identical on every node.
func keyHash(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return mix(h)
}

func entryHash(kh uint64, r ReplicaID, p, n uint64) uint64 {
	h := mix(kh ^ uint64(r))
	h = mix(h ^ p)
	return mix(h ^ n ^ 0x9e3779b97f4a7c15)
}

// mix is the splitmix64 finaliser: a bijection with good avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
