package crdt

// keyTable finds a key's counter: an open-addressing hash table of
// pointers, probed linearly from the slot the key's hash picks, that takes
// 8 bytes a slot and between 1.14 and 2.3 slots a key (a Go map of string
// to pointer takes about 25 bytes a slot). It reuses the key hash the
// digest needs anyway, cached in the counter, so growing it hashes no key
// again and a probe compares hashes before it compares keys. Deletion shifts
// later entries of a run back, so there are no tombstones to sweep.
type keyTable struct {
	slots []*counter // len is 0 or a power of two
	n     int
}

const minTableSlots = 8

func (t *keyTable) len() int { return t.n }

// get returns key's counter, or nil; h is keyHash(key).
func (t *keyTable) get(key string, h uint64) *counter {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		c := t.slots[i]
		if c == nil {
			return nil
		}
		if c.hash == h && c.key == key {
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
	i := c.hash & mask
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = c
}

// remove takes c out of the table, if it is there.
func (t *keyTable) remove(c *counter) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := c.hash & mask
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
		home := o.hash & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = o
			i = j
		}
	}
	t.slots[i] = nil
	t.n--
}

// resize rebuilds the table with size slots (a power of two, more than n).
func (t *keyTable) resize(size int) {
	old := t.slots
	t.slots = make([]*counter, size)
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
		t.slots = nil
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
func (t *keyTable) getBytes(key []byte, h uint64) *counter {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		c := t.slots[i]
		if c == nil {
			return nil
		}
		if c.hash == h && c.key == string(key) {
			return c
		}
	}
}
