package crdt

import "hash/maphash"

// keyTable finds a key's counter: an open-addressing hash table of
// pointers, probed linearly from the slot the key's hash picks, that takes
// 9 bytes a slot (a pointer and a tag) and between 1.14 and 2.3 slots a key (a Go map of string
// to pointer takes about 25 bytes a slot). It hashes keys with the
// runtime's hash (maphash), as fast as a Go map's, not with the digest's
// key hash, whose byte-at-a-time loop would slow every lookup; growing
// it hashes every key again. Deletion shifts later entries of a run back,
// so there are no tombstones to sweep.
type keyTable struct {
	slots []*counter // len is 0 or a power of two
	// tags[i] is the top byte of slots[i]'s key hash: a probe compares it
	// before it follows the pointer to compare keys.
	tags []uint8
	n    int
}

// tableSeed is the same for every table: the slot a key lands in is never
// stored or sent anywhere.
var tableSeed = maphash.MakeSeed()

func tableHash(key string) uint64 { return maphash.String(tableSeed, key) }

const minTableSlots = 8

func (t *keyTable) len() int { return t.n }

// get returns key's counter, or nil.
func (t *keyTable) get(key string) *counter {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	h := tableHash(key)
	tag := uint8(h >> 56)
	for i := h & mask; ; i = (i + 1) & mask {
		c := t.slots[i]
		if c == nil || (t.tags[i] == tag && c.key() == key) {
			return c
		}
	}
}

// insert adds c, whose key the table must not hold.
func (t *keyTable) insert(c *counter) {
	if (t.n+1)*8 > len(t.slots)*7 { // load factor at most 7/8
		t.resize(max(minTableSlots, 2*len(t.slots)))
	}
	t.place(c)
	t.n++
}

func (t *keyTable) place(c *counter) {
	mask := uint64(len(t.slots) - 1)
	h := tableHash(c.key())
	i := h & mask
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i], t.tags[i] = c, uint8(h>>56)
}

// remove takes c out of the table, if it is there.
func (t *keyTable) remove(c *counter) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := tableHash(c.key()) & mask
	for t.slots[i] != c {
		if t.slots[i] == nil {
			return
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move later members of the run into the hole
	// when their home slot does not lie cyclically within (hole, j].
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		o := t.slots[j]
		if o == nil {
			break
		}
		home := tableHash(o.key()) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i], t.tags[i] = o, t.tags[j]
			i = j
		}
	}
	t.slots[i], t.tags[i] = nil, 0
	t.n--
}

// resize rebuilds the table with size slots (a power of two, more than n).
func (t *keyTable) resize(size int) {
	old := t.slots
	t.slots = make([]*counter, size)
	t.tags = make([]uint8, size)
	for _, c := range old {
		if c != nil {
			t.place(c)
		}
	}
}

// shrink rebuilds the table at the size its keys need.
func (t *keyTable) shrink() {
	size := minTableSlots
	for t.n*8 > size*7 {
		size *= 2
	}
	if t.n == 0 {
		t.slots, t.tags = nil, nil
		return
	}
	t.resize(size)
}

// each calls f for every counter, in no particular order, until f returns
// false. f must not add or remove keys.
func (t *keyTable) each(f func(*counter) bool) {
	for _, c := range t.slots {
		if c != nil && !f(c) {
			return
		}
	}
}

// getBytes is get for a key held in a byte slice.
func (t *keyTable) getBytes(key []byte) *counter {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	h := maphash.Bytes(tableSeed, key)
	tag := uint8(h >> 56)
	for i := h & mask; ; i = (i + 1) & mask {
		c := t.slots[i]
		if c == nil || (t.tags[i] == tag && c.key() == string(key)) {
			return c
		}
	}
}
