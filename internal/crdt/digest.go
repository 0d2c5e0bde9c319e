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

// bucket is one digest bucket: its hash and its keys. A key finds its
// bucket from its hash (bucketOf), two array indexings.
type bucket struct {
	hash uint64
	keys []ref
}

// digest is maintained by Keyspace.Merge: O(1) work per change.
type digest struct {
	groups [NumGroups]uint64
	// buckets[g][i] is bucket g*BucketsPerGroup+i; a group's table
	// (2 KiB) exists only once one of its buckets holds a key.
	buckets  [NumGroups]*[BucketsPerGroup]*bucket
	nbuckets int // buckets holding keys
}

func newDigest() digest { return digest{} }

// bucket returns bucket b, or nil if no key hashes to it.
func (d *digest) bucket(b uint16) *bucket {
	if g := d.buckets[GroupOf(b)]; g != nil {
		return g[b%BucketsPerGroup]
	}
	return nil
}

func (d *digest) setBucket(b uint16, bk *bucket) {
	g := d.buckets[GroupOf(b)]
	if g == nil {
		g = new([BucketsPerGroup]*bucket)
		d.buckets[GroupOf(b)] = g
	}
	g[b%BucketsPerGroup] = bk
}

// eachBucket calls f for every bucket holding keys, in order.
func (d *digest) eachBucket(f func(b uint16, bk *bucket)) {
	for gi, g := range d.buckets {
		if g == nil {
			continue
		}
		for i, bk := range g {
			if bk != nil {
				f(uint16(gi*BucketsPerGroup+i), bk)
			}
		}
	}
}

func bucketOf(kh uint64) uint16 { return uint16(kh >> 48) }

// GroupOf returns the group a bucket belongs to.
func GroupOf(b uint16) uint16 { return b / BucketsPerGroup }

// addKey adds x, whose key hash is kh, to its bucket.
func (d *digest) addKey(kh uint64, x ref) {
	b := d.bucket(bucketOf(kh))
	if b == nil {
		b = &bucket{}
		d.setBucket(bucketOf(kh), b)
		d.nbuckets++
	}
	if n := len(b.keys); n == cap(b.keys) {
		// Grow by a size class (16 bytes) or an eighth, not append's
		// doubling: a bucket holds a few dozen keys at most, and the slack
		// would cost more than the copies.
		k := make([]ref, n, n+max(4, n/8))
		copy(k, b.keys)
		b.keys = k
	}
	b.keys = append(b.keys, x)
}

// removeKey takes x, whose key hash is kh and whose hash contributions
// must already be removed, out of its bucket.
func (d *digest) removeKey(kh uint64, x ref) {
	b := d.bucket(bucketOf(kh))
	for i, o := range b.keys {
		if o == x {
			last := len(b.keys) - 1
			b.keys[i], b.keys[last] = b.keys[last], 0
			b.keys = b.keys[:last]
			break
		}
	}
	switch {
	case len(b.keys) == 0:
		d.setBucket(bucketOf(kh), nil)
		d.nbuckets--
	case cap(b.keys) >= 32 && len(b.keys) < cap(b.keys)/4:
		b.keys = append([]ref(nil), b.keys...) // give back what churn grew
	}
}

func (d *digest) update(c *counter, old, new uint64) {
	x := old ^ new
	d.bucket(bucketOf(c.hash)).hash ^= x
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
			if bk := ks.bucket(uint16(b)); bk != nil && bk.hash != 0 {
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
			if bk := ks.bucket(uint16(b)); bk != nil {
				mine = bk.hash
			}
			if mine != theirs[uint16(b)] {
				out = append(out, uint16(b))
			}
		}
	}
	return out
}

// Contents is what a keyspace holds for some keys: their current
// generations' entries and their non-zero lives.
type Contents struct {
	Entries []Entry
	Metas   []Meta
}

// Len is the number of items (entries and metas).
func (c Contents) Len() int { return len(c.Entries) + len(c.Metas) }

func (ks *Keyspace) addContents(c *Contents, k *counter) {
	if l := k.life(); !l.IsZero() {
		c.Metas = append(c.Metas, Meta{Key: k.key(), Life: l})
	}
	c.Entries = ks.entriesOf(c.Entries, k)
}

// BucketContents returns everything held for the keys in buckets.
func (ks *Keyspace) BucketContents(buckets []uint16) Contents {
	var out Contents
	for _, b := range dedupe(buckets) {
		if bk := ks.bucket(b); bk != nil {
			for _, x := range bk.keys {
				ks.addContents(&out, ks.recs.at(x))
			}
		}
	}
	return out
}

// Newer returns what this keyspace holds, within buckets, that theirs
// lacks: lives that theirs does not already include, and entries of a
// generation at least theirs that are missing from theirs or larger. theirs
// is the other side's full contents of those buckets. Buckets are visited in
// order and the result stops before the first item (entry or meta) fits
// rejects, so a reply costs work in proportion to its size, not to the
// buckets asked for.
func (ks *Keyspace) Newer(buckets []uint16, theirs Contents, fits func(key string) bool) Contents {
	type rk struct {
		key string
		r   ReplicaID
	}
	have := make(map[rk]PN, len(theirs.Entries))
	gens := make(map[string]uint64, len(theirs.Entries))
	for _, e := range theirs.Entries {
		have[rk{e.Key, e.Replica}] = PN{e.P, e.N}
		gens[e.Key] = max(gens[e.Key], e.Gen)
	}
	lives := make(map[string]Life, len(theirs.Metas))
	for _, m := range theirs.Metas {
		lives[m.Key] = join(lives[m.Key], m.Life)
		gens[m.Key] = max(gens[m.Key], m.Gen)
	}
	var out Contents
	for _, b := range dedupe(buckets) {
		bk := ks.bucket(b)
		if bk == nil {
			continue
		}
		for _, x := range bk.keys {
			c := ks.recs.at(x)
			k := c.key()
			life := c.life()
			theirGen := gens[k]
			if theirGen > life.Gen {
				continue // they are past this generation
			}
			if l := lives[k]; !life.IsZero() && join(l, life) != l {
				if fits != nil && !fits(k) {
					return out
				}
				out.Metas = append(out.Metas, Meta{Key: k, Life: life})
			}
			slots := c.slots()
			for i := 0; i < len(slots); {
				var (
					rep uint64
					s   PN
				)
				rep, s, i = readSlot(slots, i)
				replica := ks.reps.ids[rep]
				if pn, ok := have[rk{k, replica}]; ok && theirGen == life.Gen && s.P <= pn.P && s.N <= pn.N {
					continue
				}
				if fits != nil && !fits(k) {
					return out
				}
				out.Entries = append(out.Entries, Entry{Key: k, Replica: replica, Gen: life.Gen, P: s.P, N: s.N})
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

func entryHash(kh uint64, r ReplicaID, gen, p, n uint64) uint64 {
	h := mix(kh ^ uint64(r))
	if gen != 0 {
		h = mix(h ^ gen ^ 0x67656e0000000000)
	}
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
