package crdt

import "github.com/google/btree"

// leafCap is how many refs a leaf of the listing index holds: with its
// count, 512 bytes, a size class.
const leafCap = 127

// leaf is a run of listed refs, in key order: a fixed array, with no
// pointer for the collector to follow and no slack from append's growth.
type leaf struct {
	n    uint32
	refs [leafCap]ref
}

// listIndex holds, in key order, the refs of the keys with entries in
// their current generation (the only ones a listing can show). It is a
// B+-tree of two parts: leaves of up to leafCap refs, and a B-tree of the
// leaves ordered by their first key. A full leaf gives refs to the next
// one when it has room, else is split in two halves, except when the new
// ref goes after all of its refs: then the new ref starts a new leaf, so
// that keys written in ascending order (user:1, user:2, ...) fill leaves
// instead of leaving them half empty. A leaf that
// falls below a quarter full is merged with the next one when both fit in
// three quarters of a leaf.
type listIndex struct {
	leaves *btree.BTreeG[*leaf]
	n      int
	key    func(ref) string
	// pivot stands for pivotKey in the leaves' order: a search's start.
	pivot    *leaf
	pivotKey string
}

func newListIndex(key func(ref) string) *listIndex {
	ix := &listIndex{key: key, pivot: new(leaf)}
	ix.leaves = btree.NewG(16, func(a, b *leaf) bool { return ix.first(a) < ix.first(b) })
	return ix
}

// first is the key l is ordered by: its first ref's (a leaf is never empty).
func (ix *listIndex) first(l *leaf) string {
	if l == ix.pivot {
		return ix.pivotKey
	}
	return ix.key(l.refs[0])
}

// Len reports how many refs the index holds.
func (ix *listIndex) Len() int { return ix.n }

// leafFor returns the leaf where key k belongs: the last whose first key
// is at most k, else the first (nil if the index is empty).
func (ix *listIndex) leafFor(k string) *leaf {
	var found *leaf
	ix.pivotKey = k
	ix.leaves.DescendLessOrEqual(ix.pivot, func(l *leaf) bool {
		found = l
		return false
	})
	ix.pivotKey = ""
	if found == nil {
		found, _ = ix.leaves.Min()
	}
	return found
}

// search returns the position in l of the first ref whose key is at least k.
func (ix *listIndex) search(l *leaf, k string) int {
	lo, hi := 0, int(l.n)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ix.key(l.refs[m]) < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (l *leaf) insertAt(i int, x ref) {
	copy(l.refs[i+1:l.n+1], l.refs[i:l.n])
	l.refs[i] = x
	l.n++
}

// insert adds x, if the index does not hold it.
func (ix *listIndex) insert(x ref) {
	k := ix.key(x)
	l := ix.leafFor(k)
	if l == nil {
		l = &leaf{n: 1}
		l.refs[0] = x
		ix.leaves.ReplaceOrInsert(l)
		ix.n++
		return
	}
	i := ix.search(l, k)
	if i < int(l.n) && l.refs[i] == x {
		return
	}
	ix.n++
	// Inserting before a leaf's first ref only happens in the first leaf
	// (leafFor), which stays first: the leaves' order holds.
	if l.n < leafCap {
		l.insertAt(i, x)
		return
	}
	// A full leaf first moves its last refs to the front of the next leaf,
	// if that has room for them and for x, so that leaves fill past half
	// (the next leaf's first key falls but stays above all of l's: the
	// leaves' order holds).
	if next := ix.next(l); next != nil && next.n <= leafCap-2 {
		m := (leafCap - next.n) / 2
		copy(next.refs[m:next.n+m], next.refs[:next.n])
		copy(next.refs[:m], l.refs[leafCap-m:])
		next.n += m
		l.n -= m
		clear(l.refs[l.n:])
		if i <= int(l.n) {
			l.insertAt(i, x)
		} else {
			next.insertAt(i-int(l.n), x)
		}
		return
	}
	nl := new(leaf)
	if i == leafCap {
		nl.refs[0], nl.n = x, 1
	} else {
		const h = (leafCap + 1) / 2
		copy(nl.refs[:], l.refs[h:])
		nl.n, l.n = leafCap-h, h
		clear(l.refs[h:])
		if i <= h {
			l.insertAt(i, x)
		} else {
			nl.insertAt(i-h, x)
		}
	}
	ix.leaves.ReplaceOrInsert(nl)
}

// delete removes x, if the index holds it.
func (ix *listIndex) delete(x ref) {
	k := ix.key(x)
	l := ix.leafFor(k)
	if l == nil {
		return
	}
	i := ix.search(l, k)
	if i == int(l.n) || l.refs[i] != x {
		return
	}
	ix.n--
	if l.n == 1 {
		ix.leaves.Delete(l) // while its first key is still there to find it by
		return
	}
	// Removing a leaf's first ref leaves its first key below the next
	// leaf's: the leaves' order holds.
	copy(l.refs[i:], l.refs[i+1:l.n])
	l.n--
	l.refs[l.n] = 0
	if l.n >= leafCap/4 {
		return
	}
	if next := ix.next(l); next != nil && l.n+next.n <= leafCap*3/4 {
		ix.leaves.Delete(next)
		copy(l.refs[l.n:], next.refs[:next.n])
		l.n += next.n
	}
}

// next returns the leaf after l, or nil.
func (ix *listIndex) next(l *leaf) *leaf {
	var next *leaf
	ix.leaves.AscendGreaterOrEqual(l, func(o *leaf) bool {
		if o == l {
			return true
		}
		next = o
		return false
	})
	return next
}

// AscendGreaterOrEqual calls f for every ref whose key is at least k, in
// key order, until f returns false. f must not change the index.
func (ix *listIndex) AscendGreaterOrEqual(k string, f func(ref) bool) {
	l := ix.leafFor(k)
	if l == nil {
		return
	}
	i := ix.search(l, k)
	ix.leaves.AscendGreaterOrEqual(l, func(o *leaf) bool {
		for ; i < int(o.n); i++ {
			if !f(o.refs[i]) {
				return false
			}
		}
		i = 0
		return true
	})
}

// Ascend calls f for every ref, in key order, until f returns false. f
// must not change the index.
func (ix *listIndex) Ascend(f func(ref) bool) {
	ix.leaves.Ascend(func(l *leaf) bool {
		for _, x := range l.refs[:l.n] {
			if !f(x) {
				return false
			}
		}
		return true
	})
}

// fill makes ix, which must be empty, hold refs, which are in key order,
// in full leaves.
func (ix *listIndex) fill(refs []ref) {
	for len(refs) > 0 {
		l := new(leaf)
		l.n = uint32(copy(l.refs[:], refs))
		refs = refs[l.n:]
		ix.leaves.ReplaceOrInsert(l)
		ix.n += int(l.n)
	}
}
