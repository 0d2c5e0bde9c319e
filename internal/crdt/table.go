package crdt

import "hash/maphash"

// keyTable finds a key's record: an open-addressing hash table of refs,
// probed linearly from the slot the key's hash picks, that takes 5 bytes
// a slot (a ref and a tag) and between 1.14 and 2.3 slots a key (a Go map
// of string to pointer takes about 25 bytes a slot). It hashes keys with
// the runtime's hash (maphash), as fast as a Go map's, not with the
// digest's key hash, whose byte-at-a-time loop would slow every lookup;
// growing it hashes every key again. Deletion shifts later entries of a
// run back, so there are no tombstones to sweep. Its methods take the
// records its refs name.
type keyTable struct {
	slots []ref // len is 0 or a power of two; 0 is an empty slot
	// tags[i] is the top byte of slots[i]'s key hash: a probe compares it
	// before it follows the ref to compare keys.
	tags []uint8
	n    int
}

// tableSeed is the same for every table: the slot a key lands in is never
// stored or sent anywhere.
var tableSeed = maphash.MakeSeed()

func tableHash(key string) uint64 { return maphash.String(tableSeed, key) }

const minTableSlots = 8

func (t *keyTable) len() int { return t.n }

// get returns key's ref, or 0.
func (t *keyTable) get(r *records, key string) ref {
	if t.n == 0 {
		return 0
	}
	mask := uint64(len(t.slots) - 1)
	h := tableHash(key)
	tag := uint8(h >> 56)
	for i := h & mask; ; i = (i + 1) & mask {
		x := t.slots[i]
		if x == 0 || (t.tags[i] == tag && r.at(x).key() == key) {
			return x
		}
	}
}

// insert adds x, whose key the table must not hold.
func (t *keyTable) insert(r *records, x ref) {
	if (t.n+1)*8 > len(t.slots)*7 { // load factor at most 7/8
		t.resize(r, max(minTableSlots, 2*len(t.slots)))
	}
	t.place(r, x)
	t.n++
}

func (t *keyTable) place(r *records, x ref) {
	mask := uint64(len(t.slots) - 1)
	h := tableHash(r.at(x).key())
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i], t.tags[i] = x, uint8(h>>56)
}

// remove takes x out of the table, if it is there.
func (t *keyTable) remove(r *records, x ref) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := tableHash(r.at(x).key()) & mask
	for t.slots[i] != x {
		if t.slots[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move later members of the run into the hole
	// when their home slot does not lie cyclically within (hole, j].
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		o := t.slots[j]
		if o == 0 {
			break
		}
		home := tableHash(r.at(o).key()) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i], t.tags[i] = o, t.tags[j]
			i = j
		}
	}
	t.slots[i], t.tags[i] = 0, 0
	t.n--
}

// resize rebuilds the table with size slots (a power of two, more than n).
func (t *keyTable) resize(r *records, size int) {
	old := t.slots
	t.slots = make([]ref, size)
	t.tags = make([]uint8, size)
	for _, x := range old {
		if x != 0 {
			t.place(r, x)
		}
	}
}

// shrink rebuilds the table at the size its keys need, with every ref x
// replaced by remap[x] (remap nil: unchanged), r holding the new refs.
func (t *keyTable) shrink(r *records, remap []ref) {
	if remap != nil {
		for i, x := range t.slots {
			t.slots[i] = remap[x]
		}
	}
	size := minTableSlots
	for t.n*8 > size*7 {
		size *= 2
	}
	if t.n == 0 {
		t.slots, t.tags = nil, nil
		return
	}
	t.resize(r, size)
}

// each calls f for every ref, in no particular order, until f returns
// false. f must not add or remove keys.
func (t *keyTable) each(f func(ref) bool) {
	for _, x := range t.slots {
		if x != 0 && !f(x) {
			return
		}
	}
}

// getBytes is get for a key held in a byte slice.
func (t *keyTable) getBytes(r *records, key []byte) ref {
	if t.n == 0 {
		return 0
	}
	mask := uint64(len(t.slots) - 1)
	h := maphash.Bytes(tableSeed, key)
	tag := uint8(h >> 56)
	for i := h & mask; ; i = (i + 1) & mask {
		x := t.slots[i]
		if x == 0 || (t.tags[i] == tag && r.at(x).key() == string(key)) {
			return x
		}
	}
}
