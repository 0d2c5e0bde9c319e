package crdt

// ref names a key's record in the keyspace's records: the key table, the
// digest buckets, the listing index and the reclaim queues hold a key as a
// ref, 4 bytes, instead of a pointer, 8. 0 is no record, and the last
// ref is never handed out (so that next never wraps), so a keyspace holds
// at most 2^32-2 keys (about 300 GB of them); alloc panics beyond.
type ref uint32

// lastRef is one past the highest ref alloc hands out.
const lastRef = ^ref(0)

// A chunk is 2048 records of 24 bytes, 48 KiB: a large object of whole
// pages. 1024 would be 24 KiB plus the 8-byte header the runtime puts
// before a small object with pointers, rounded up to the next size class
// (26.6 KiB): 11% lost.
const (
	chunkBits = 11
	chunkLen  = 1 << chunkBits
	chunkMask = chunkLen - 1
)

// records holds every key's counter, in chunks of chunkLen that never
// move, so that a *counter stays valid while its key is held (until a
// compaction: see Keyspace.compact), and so that a record costs its 24
// bytes and nothing more: no allocation of its own, no size-class slack.
// A forgotten key's record goes on a free list, threaded through the
// records' hash fields, and is the next to be handed out.
type records struct {
	chunks []*[chunkLen]counter
	next   ref // the lowest ref never handed out
	free   ref // the first free record, 0 if none
	nfree  int
}

// at returns x's record.
func (r *records) at(x ref) *counter { return &r.chunks[x>>chunkBits][x&chunkMask] }

// alloc stores c in a free record and returns its ref.
func (r *records) alloc(c counter) ref {
	x := r.free
	if x != 0 {
		r.free = ref(r.at(x).hash)
		r.nfree--
	} else {
		if r.next == 0 {
			r.next = 1 // ref 0 is no record
		}
		x = r.next
		if x == lastRef {
			panic("crdt: keyspace full: it holds at most 2^32-2 keys")
		}
		if int(x>>chunkBits) == len(r.chunks) {
			r.chunks = append(r.chunks, new([chunkLen]counter))
		}
		r.next++
	}
	*r.at(x) = c
	return x
}

// release frees x's record, which nothing may refer to any more but stale
// reclaim queue items (they check what the record holds: see ReclaimUpTo).
func (r *records) release(x ref) {
	*r.at(x) = counter{hash: uint64(r.free)}
	r.free = x
	r.nfree++
}

// live reports whether x's record holds a key (freed ones have no name).
func (r *records) live(x ref) bool { return r.at(x).data != nil }
