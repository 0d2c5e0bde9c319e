package crdt

import (
	"math"
	"unsafe"
)

// A key's lifecycle: generations, expiry, tombstones.
//
// Every key has a generation number, starting at 0. Entries belong to one
// generation (Entry.Gen) and a key holds only the entries of its highest
// generation: merging anything of a higher generation drops the lower one.
// Generations move on only by +1 steps and only in three ways:
//
//   - A delete: the deleting replica moves the key from its generation g to
//     g+1 with no entries (a tombstone) and stamps it with its clock
//     (Life.Deleted). Writes of generation g that the deleting replica had not
//     seen are dropped everywhere: reset wins by generation. Concurrent
//     deletes of the same generation are one delete.
//   - Expiry: generation g carries an optional deadline (Life.TTL, Unix
//     milliseconds). From the deadline on, on a replica whose clock has
//     passed it, the key reads 0, is not listed, and a write goes to g+1,
//     counting from 0 with no deadline.
//   - Reclaim (see Reclaim): an expired generation is turned into a
//     tombstone, and a tombstone is forgotten once it is older than the
//     reclaim horizon.
//
// The deadline of a generation is a last-writer-wins register ordered by a
// Lamport version, not by clocks: a replica that sets or clears the
// deadline writes version v+1 over the v it holds; between equal versions
// (concurrent sets) the earlier deadline wins, and any deadline wins over
// none. So (Gen, TTL, Deleted) is itself a join-semilattice and merges in
// any order to the same state on every replica.

// TTL is a generation's expiry register.
type TTL struct {
	Ver      uint64 // Lamport version; 0 = never set
	Deadline int64  // Unix milliseconds; 0 = none (persistent)
}

// Life is a key's lifecycle state, replicated alongside its entries.
type Life struct {
	Gen uint64
	TTL TTL
	// Deleted is when the generation began as a tombstone (Unix
	// milliseconds): the deleting replica's clock, or the deadline of the
	// expired generation it replaced. 0 for a generation begun by a write.
	Deleted int64
}

// Meta is a key's Life on the wire and in the log.
type Meta struct {
	Key string
	Life
}

// IsZero reports whether l is a never-deleted key's first generation
// without a deadline, the state every key starts in. Zero lives are not
// replicated or logged: entries alone imply them.
func (l Life) IsZero() bool { return l == Life{} }

func (l Life) expired(now int64) bool { return l.TTL.Deadline != 0 && now >= l.TTL.Deadline }

// effDeadline orders deadlines so that the earlier one is larger: none
// (0) is the latest of all.
func effDeadline(d int64) int64 {
	if d == 0 {
		return math.MinInt64
	}
	return -d
}

// joinTTL is the register's merge: higher version, then earlier deadline.
func joinTTL(a, b TTL) TTL {
	if a.Ver != b.Ver {
		if a.Ver > b.Ver {
			return a
		}
		return b
	}
	if effDeadline(b.Deadline) > effDeadline(a.Deadline) {
		return b
	}
	return a
}

// join merges two lives of any generations.
func join(a, b Life) Life {
	switch {
	case a.Gen > b.Gen:
		return a
	case b.Gen > a.Gen:
		return b
	}
	return Life{Gen: a.Gen, TTL: joinTTL(a.TTL, b.TTL), Deleted: max(a.Deleted, b.Deleted)}
}

func lifeHash(kh uint64, l Life) uint64 {
	if l.IsZero() {
		return 0
	}
	h := mix(kh ^ 0x6c69666500000000 ^ l.Gen)
	h = mix(h ^ l.TTL.Ver)
	h = mix(h ^ uint64(l.TTL.Deadline))
	return mix(h ^ uint64(l.Deleted) ^ 0x2545f4914f6cdd1d)
}

// lifecycle is the keyspace's bookkeeping for expiry, reclaim and listing.
type lifecycle struct {
	// expiring orders keys by deadline and tombs by deletion time, for
	// Reclaim. Items may be stale (the key changed since); Reclaim checks.
	expiring, tombs dueHeap
	// floor: tombstones deleted before it are past the horizon; merging one
	// for a key not held is a no-op (see Reclaim).
	floor int64
	// index holds, in key order, the refs of the keys with entries in
	// their current generation (the only ones a listing can show).
	index *listIndex
	// peak is the most keys held since the last compaction (see compact).
	peak  int
	stats ReclaimStats
	// empty counts keys without entries (tombstones, or lives that came
	// before their entries); expiringKeys counts keys with a deadline.
	empty, expiringKeys int
}

func newLifecycle() lifecycle {
	return lifecycle{floor: math.MinInt64}
}

// newIndex returns an empty listing index for ks's keys.
func newIndex(ks *Keyspace) *listIndex {
	return newListIndex(func(x ref) string { return ks.recs.at(x).key() })
}

// dueItem is a key's time to be looked at by Reclaim. Its key may have been
// forgotten since, and its record handed to another key: Reclaim acts on
// an item only if what the record holds says it is due at that time, as
// the item its key queued says too.
type dueItem struct {
	at int64
	x  ref
}

// dueHeap is a min-heap of items by time (container/heap without the
// boxing of every item in an interface).
type dueHeap []dueItem

func (h *dueHeap) push(it dueItem) {
	*h = append(*h, it)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].at <= q[i].at {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *dueHeap) pop() dueItem {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = dueItem{}
	q = q[:last]
	q.down(0)
	*h = q
	return top
}

// down restores the heap order below i.
func (q dueHeap) down(i int) {
	for {
		l, m := 2*i+1, i
		if l < len(q) && q[l].at < q[m].at {
			m = l
		}
		if r := l + 1; r < len(q) && q[r].at < q[m].at {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}

// setLife replaces x's life with l, dropping the entries of a generation
// l leaves behind, and keeps the digest and the reclaim queue up to date.
func (ks *Keyspace) setLife(x ref, l Life) {
	c := ks.recs.at(x)
	old := c.life()
	due := c.expiryDue()
	hx := lifeHash(c.hash, old) ^ lifeHash(c.hash, l)
	if (old.TTL.Deadline != 0) != (l.TTL.Deadline != 0) {
		if l.TTL.Deadline != 0 {
			ks.expiringKeys++
		} else {
			ks.expiringKeys--
		}
	}
	if l.Gen != old.Gen && c.slen() > 0 {
		ks.empty++
		ks.index.delete(x) // not listed without entries
	}
	if l.Gen != old.Gen {
		n := 0
		ks.eachSlot(c, func(s slot) bool {
			hx ^= entryHash(c.hash, s.replica, old.Gen, s.P, s.N)
			n++
			return true
		})
		ks.entries -= n
		ks.stats.DroppedEntries += uint64(n)
		if c.slen() > 0 {
			c.setData() // the name alone: the entries' bytes are freed
		}
	}
	if hx != 0 {
		ks.update(c, 0, hx)
	}
	if d := l.TTL.Deadline; d != 0 && (due == 0 || d < due) {
		ks.expiring.push(dueItem{at: d, x: x})
		due = d
	}
	c.setExt(l, due)
	// A tombstone item per new stamp, and again when a deadline that kept
	// an empty generation from being forgotten goes. Each is a replicated
	// lifecycle change, so their number is bounded by the changes within
	// the horizon; stale ones are dropped when they come due.
	if d := l.Deleted; d != 0 && (d != old.Deleted || l.Gen != old.Gen || (old.TTL.Deadline != 0 && l.TTL.Deadline == 0)) {
		ks.tombs.push(dueItem{at: d, x: x})
	}
}

// MergeMeta folds a key's replicated lifecycle state into the keyspace and
// reports whether anything changed. A tombstone already past the reclaim
// horizon (see Reclaim) is not taken up for a key not held: it would only
// be forgotten again.
func (ks *Keyspace) MergeMeta(m Meta) bool {
	if m.IsZero() {
		return false
	}
	x := ks.find(m.Key)
	if x == 0 {
		if ValidKey(m.Key) != nil || (m.Deleted != 0 && m.Deleted <= ks.floor && m.TTL.Deadline == 0) {
			return false
		}
		x = ks.newCounter(newRecord(m.Key))
	}
	c := ks.recs.at(x)
	j := join(c.life(), m.Life)
	if j == c.life() {
		return false
	}
	ks.setLife(x, j)
	return true
}

// LifeOf returns key's lifecycle state and whether the key is held at all.
func (ks *Keyspace) LifeOf(key string) (Life, bool) {
	c := ks.lookup(key)
	if c == nil {
		return Life{}, false
	}
	return c.life(), true
}

// MetaOf returns key's lifecycle state as a Meta; ok is false when there is
// nothing to replicate (the key is absent or its life is zero).
func (ks *Keyspace) MetaOf(key string) (m Meta, ok bool) {
	c := ks.lookup(key)
	if c == nil || c.ext == nil || c.ext.life.IsZero() {
		return Meta{}, false
	}
	return Meta{Key: c.key(), Life: c.ext.life}, true
}

// ForEachMeta calls f for every key with a non-zero life, in no particular
// order, until f returns false.
func (ks *Keyspace) ForEachMeta(f func(Meta) bool) {
	ks.counters.each(func(x ref) bool {
		c := ks.recs.at(x)
		return c.ext == nil || c.ext.life.IsZero() || f(Meta{Key: c.key(), Life: c.ext.life})
	})
}

// Status is what a reader sees of a key at some time.
type Status struct {
	Live     bool   // written in its current generation, and not expired
	Value    int64  // 0 unless Live
	Clamped  bool   // the exact value lies outside int64 (see Value)
	Deadline int64  // Unix ms when the key expires; 0 = never (or not live)
	Gen      uint64 // current generation
}

// StatusOf reports key as a reader at time now (Unix ms) sees it.
func (ks *Keyspace) StatusOf(key string, now int64) Status {
	c := ks.lookup(key)
	if c == nil {
		return Status{}
	}
	return c.status(now)
}

func (c *counter) status(now int64) Status {
	l := c.life()
	st := Status{Gen: l.Gen}
	slots := c.slots()
	if len(slots) == 0 || l.expired(now) {
		return st
	}
	v, ok := slotsValue(slots)
	st.Live, st.Value, st.Clamped, st.Deadline = true, v, !ok, l.TTL.Deadline
	return st
}

// WriteGen returns the generation a write taken at now (Unix ms) belongs
// to, and replica's totals in it: the key's current generation, or the next
// one, starting from zero, if the current one has expired at now.
func (ks *Keyspace) WriteGen(key string, replica ReplicaID, now int64) (gen uint64, cur PN) {
	c := ks.lookup(key)
	if c == nil {
		return 0, PN{}
	}
	l := c.life()
	if l.expired(now) {
		return l.Gen + 1, PN{}
	}
	if rep, ok := ks.reps.lookup(replica); ok {
		_, _, pn := c.find(rep)
		return l.Gen, pn
	}
	return l.Gen, PN{}
}

// Deletion returns the Meta a replica writes to delete key at now, and
// whether the key was live (something to delete) at now.
func (ks *Keyspace) Deletion(key string, now int64) (m Meta, wasLive bool) {
	var l Life
	if c := ks.lookup(key); c != nil {
		l = c.life()
		wasLive = c.status(now).Live
	}
	return Meta{Key: key, Life: Life{Gen: l.Gen + 1, Deleted: now}}, wasLive
}

// TTLMode says when SetTTL replaces a deadline.
type TTLMode uint8

// TTL modes. Always replaces any deadline; IfNone only sets one on a
// generation without one (the fixed-window rate limiter's call: the
// window is not extended by every hit).
const (
	TTLAlways TTLMode = iota
	TTLIfNone
)

// Expiry returns the Meta a replica writes to give generation gen of key
// the deadline (Unix ms; 0 clears it), given the key's state, and whether
// anything is to be written: nothing when mode is TTLIfNone and gen already
// has a deadline, or when the deadline is already the one asked for. gen
// is the generation the caller wrote to or checked as live, which may be
// the one after the key's current one (a write after expiry).
func (ks *Keyspace) Expiry(key string, gen uint64, deadline int64, mode TTLMode) (Meta, bool) {
	var cur Life // the generation's life if the key holds it; else a new generation's
	if c := ks.lookup(key); c != nil {
		switch l := c.life(); {
		case l.Gen > gen:
			return Meta{}, false // the generation is gone already
		case l.Gen == gen:
			cur = l
		}
	}
	if (mode == TTLIfNone && cur.TTL.Deadline != 0) || cur.TTL.Deadline == deadline {
		return Meta{}, false
	}
	l := Life{Gen: gen, TTL: TTL{Ver: cur.TTL.Ver + 1, Deadline: deadline}, Deleted: cur.Deleted}
	return Meta{Key: key, Life: l}, true
}

// ReclaimStats counts what reclaim has done since the keyspace was made.
type ReclaimStats struct {
	Expired        uint64 // expired generations turned into tombstones
	Forgotten      uint64 // tombstones forgotten after the horizon
	DroppedEntries uint64 // entries dropped by a newer generation
	ReclaimedBytes uint64 // estimated bytes freed by Expired and Forgotten
	Compactions    uint64 // rebuilds of the key map after most keys left (see Reclaim)
}

// Stats returns the reclaim counters.
func (ks *Keyspace) Stats() ReclaimStats { return ks.stats }

// Counts tells apart the keys held: written (entries in the current
// generation; live unless expired), empty (tombstones, awaiting the
// horizon) and, among all, expiring (with a deadline).
func (ks *Keyspace) Counts() (written, empty, expiring int) {
	return ks.counters.len() - ks.empty, ks.empty, ks.expiringKeys
}

// Reclaim frees what expiry and deletion left behind, as of now (Unix ms):
//
//   - a generation whose deadline passed at least grace ago becomes a
//     tombstone of the next generation, stamped with the deadline, so its
//     entries are freed (grace covers clock skew: a replica whose clock is
//     behind may still read the key until its own clock passes the deadline);
//   - a tombstone stamped at least horizon ago is forgotten altogether, and
//     tombstones that old are no longer taken up from peers (MergeMeta).
//
// Both results are what every replica reaches on its own once its clock
// passes the same points, so replicas converge without exchanging them
// (though exchanging them is harmless). It returns the metas of the keys it
// turned into tombstones, which the caller may log. A write or a delete of a
// forgotten key starts again from generation 0, so a replica that held an
// older generation and was cut off for longer than the horizon can bring it
// back; the horizon must exceed the longest partition tolerated.
func (ks *Keyspace) Reclaim(now, grace, horizon int64) (tombstoned []Meta, forgotten int) {
	tombstoned, forgotten, _ = ks.ReclaimUpTo(now, grace, horizon, math.MaxInt)
	return tombstoned, forgotten
}

// ReclaimUpTo is Reclaim doing at most limit steps (queue items looked
// at); more reports whether work was left for another call.
func (ks *Keyspace) ReclaimUpTo(now, grace, horizon int64, limit int) (tombstoned []Meta, forgotten int, more bool) {
	ks.floor = max(ks.floor, now-horizon)
	steps := 0
	for len(ks.expiring) > 0 && ks.expiring[0].at <= now-grace {
		if steps == limit {
			return tombstoned, forgotten, true
		}
		steps++
		it := ks.expiring.pop()
		c := ks.recs.at(it.x)
		if !ks.recs.live(it.x) || it.at != c.expiryDue() {
			continue // forgotten, or superseded by an earlier deadline
		}
		life := c.life()
		if d := life.TTL.Deadline; d != it.at {
			if d != 0 { // pushed back (or moved) since: queue it again
				ks.expiring.push(dueItem{at: d, x: it.x})
			}
			c.setExt(life, d)
			continue
		}
		c.setExt(life, 0)
		freed := ks.sizeOf(c)
		l := Life{Gen: life.Gen + 1, Deleted: it.at}
		ks.setLife(it.x, l)
		ks.stats.Expired++
		ks.stats.ReclaimedBytes += uint64(max(0, freed-ks.sizeOf(c)))
		tombstoned = append(tombstoned, Meta{Key: c.key(), Life: l})
	}
	for len(ks.tombs) > 0 && ks.tombs[0].at <= now-horizon {
		if steps == limit {
			return tombstoned, forgotten, true
		}
		steps++
		it := ks.tombs.pop()
		c := ks.recs.at(it.x)
		if !ks.recs.live(it.x) || c.life().Deleted != it.at {
			continue // forgotten, or deleted again since (its own item is queued)
		}
		if c.slen() > 0 || c.life().TTL.Deadline != 0 {
			// Written since, or expiring: not a tombstone. If it becomes
			// one again, setLife queues it.
			continue
		}
		ks.stats.ReclaimedBytes += uint64(ks.sizeOf(c))
		ks.forget(it.x)
		ks.stats.Forgotten++
		forgotten++
	}
	ks.compact()
	return tombstoned, forgotten, false
}

// compact gives back the memory a churn grew once most of it is free: Go
// maps never shrink, nor do the slices behind the reclaim queues, so after
// a million keys come and go they would hold their peak size forever.
// Rebuilding costs O(keys held), and happens only when they fell below a
// quarter of the peak since the last rebuild, so it is amortised over the
// keys freed.
func (ks *Keyspace) compact() {
	if ks.peak >= 1024 && ks.counters.len() < ks.peak/4 {
		ks.compactRecords()
		ks.peak = ks.counters.len()
		ks.stats.Compactions++
	}
	for _, q := range []*dueHeap{&ks.expiring, &ks.tombs} {
		if cap(*q) >= 1024 && len(*q) < cap(*q)/4 {
			*q = append(dueHeap(nil), *q...)
		}
	}
}

// compactRecords moves the records of the keys held to the front of a new
// set of records, giving back the chunks that forgotten keys left mostly
// free, and renames every ref held: the key table's (which it rebuilds at
// the size its keys need), the buckets', the listing index's and the
// reclaim queues' (dropping items of forgotten keys).
func (ks *Keyspace) compactRecords() {
	var (
		old   = ks.recs
		recs  records
		remap = make([]ref, old.next) // old ref → new ref; 0 for freed records
	)
	for x := ref(1); x < old.next; x++ {
		if old.live(x) {
			remap[x] = recs.alloc(*old.at(x))
		}
	}
	listed := make([]ref, 0, ks.index.Len())
	ks.index.Ascend(func(x ref) bool { // in key order, comparing nothing
		listed = append(listed, remap[x])
		return true
	})
	ks.recs = recs
	ks.counters.shrink(&ks.recs, remap)
	ks.eachBucket(func(_ uint16, bk *bucket) {
		for i, x := range bk.keys {
			bk.keys[i] = remap[x]
		}
	})
	ks.index = newIndex(ks)
	ks.index.fill(listed)
	for _, q := range []*dueHeap{&ks.expiring, &ks.tombs} {
		h := (*q)[:0]
		for _, it := range *q {
			if x := remap[it.x]; x != 0 {
				h = append(h, dueItem{at: it.at, x: x})
			}
		}
		clear((*q)[len(h):])
		for i := len(h)/2 - 1; i >= 0; i-- {
			h.down(i)
		}
		*q = h
	}
}

// forget removes x, a tombstone, from the keyspace.
func (ks *Keyspace) forget(x ref) {
	c := ks.recs.at(x)
	ks.update(c, lifeHash(c.hash, c.life()), 0)
	ks.removeKey(c.hash, x)
	ks.empty--
	ks.counters.remove(&ks.recs, x)
	ks.recs.release(x)
}

// sizeOf estimates the memory c takes, for the reclaimed-bytes metric:
// its record, its data (rounded up to 8 bytes, as the allocator does at
// least), its lifecycle record if it has one, and its 4-byte ref in the
// key table (about two slots of 5 bytes with the table's slack), in its
// digest bucket and, if it has entries, in the listing index.
func (ks *Keyspace) sizeOf(c *counter) int {
	off, n := c.slotBounds()
	size := int(unsafe.Sizeof(counter{})) + (off+n+7)&^7 + 2*5 + 4
	if n > 0 {
		size += 4
	}
	if c.ext != nil {
		size += int(unsafe.Sizeof(lifeExt{}))
	}
	return size
}

// Item is one key of a listing.
type Item struct {
	Key      string
	Value    int64
	Deadline int64 // Unix ms; 0 = none
}

// List returns up to limit live keys (at now) starting with prefix and
// ordered after after (byte-wise), in byte-wise order, and whether more may
// follow. It visits at most scan keys (live or not) so that a page over
// many dead keys still costs bounded work; more is then true and the
// caller continues after the last key visited, which is returned as next.
func (ks *Keyspace) List(prefix, after string, limit, scan int, now int64) (items []Item, next string, more bool) {
	visited := 0
	ks.index.AscendGreaterOrEqual(max(prefix, after), func(x ref) bool {
		c := ks.recs.at(x)
		k := c.key()
		if k == after {
			return true
		}
		if len(k) < len(prefix) || k[:len(prefix)] != prefix {
			return false
		}
		if len(items) == limit || visited == scan {
			more = true
			return false
		}
		visited++
		next = k
		if st := c.status(now); st.Live {
			items = append(items, Item{Key: k, Value: st.Value, Deadline: st.Deadline})
		}
		return true
	})
	return items, next, more
}
