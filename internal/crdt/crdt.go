// Package crdt implements the replicated data type at the heart of dcounter:
// a keyspace of named PN-counters.
//
// A PN-counter maps each replica to a pair (P, N) of monotone uint64 totals:
// everything that replica ever added, and everything it ever subtracted. Its
// value is ΣP − ΣN. Merging two replicas' views takes, per (key, replica), the
// larger P and the larger N, which is commutative, associative and idempotent,
// so replicas that have seen the same entries — in any order, any number of
// times — report the same value.
//
// Only the owner of a replica ID ever raises that replica's (P, N); everyone
// else just merges. Entries carry absolute totals, never increments, so
// replaying or duplicating one is harmless.
//
// The keyspace also keeps a two-level digest, updated in O(1) per change, so
// that two replicas can find the keys on which they differ by exchanging a few
// kilobytes whatever the keyspace size: every key hashes to one of NumBuckets
// buckets; a bucket's hash is the XOR of its entries' hashes, and a group's hash
// is the XOR of its BucketsPerGroup buckets' hashes (see digest.go).
//
// Nothing here is safe for concurrent use; the owner serialises access.
package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 512

// DefaultKey is the key served by the un-named routes (/counter, /increment).
const DefaultKey = "default"

var (
	// ErrOverflow is returned when a change would take a value, or a
	// replica's running total, beyond what the counter can represent.
	ErrOverflow = errors.New("crdt: increment or decrement would overflow")
	// ErrBadKey is returned for keys that are empty, longer than MaxKeyLen,
	// or not valid UTF-8.
	ErrBadKey = errors.New("crdt: key must be 1-512 bytes of valid UTF-8")
	// ErrBadAmount is returned for a zero amount.
	ErrBadAmount = errors.New("crdt: amount must be non-zero")
)

// ReplicaID identifies one replica (one node's data dir) for its lifetime.
type ReplicaID uint64

// String renders the ID as 16 lower-case hex digits.
func (id ReplicaID) String() string { return fmt.Sprintf("%016x", uint64(id)) }

// LogValue logs the ID as String does: a JSON handler would otherwise
// print the number, which JSON tools round above 2^53, and which matches
// nothing else (metrics, /nodes, data dirs) that shows IDs in hex.
func (id ReplicaID) LogValue() slog.Value { return slog.StringValue(id.String()) }

// MarshalText encodes the ID as String does, so that it is the same hex
// string in JSON, as a value or a map key.
func (id ReplicaID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the form produced by MarshalText.
func (id *ReplicaID) UnmarshalText(b []byte) error {
	v, err := ParseReplicaID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseReplicaID parses the form produced by String.
func ParseReplicaID(s string) (ReplicaID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("crdt: replica ID %q: want 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("crdt: replica ID %q: %w", s, err)
	}
	return ReplicaID(v), nil
}

// PN is one replica's contribution to a counter.
type PN struct {
	P, N uint64
}

// Entry is the unit of replication: one replica's absolute totals for one
// generation of one key.
type Entry struct {
	Key     string
	Replica ReplicaID
	Gen     uint64
	P, N    uint64
}

// ValidKey reports whether key may name a counter.
func ValidKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen || !utf8.ValidString(key) {
		return ErrBadKey
	}
	return nil
}

type slot struct {
	replica ReplicaID
	PN
}

// counter is one key. Its fields are what every key needs; what only some
// keys have (a non-zero life, a queued expiry) lives in ext, so that a key
// written once and never given a deadline or deleted costs no more.
//
// The key's name and its entries share one allocation, data: the name's
// length (a uvarint), the name, the entries' length (a uvarint) and the
// entries, packed one after the other as three uvarints: the replica's
// index in the keyspace's replica table, P and N. Small totals take a byte
// each, so a short name and three replicas' entries fit in 24 bytes, with
// no pointer for the collector to follow. Few replicas write to a key in
// practice: a linear scan beats any index.
//
// The name's bytes are never written once data holds them: key() hands
// out strings that alias them. Entries are rewritten in place when a
// change keeps their length; any other change allocates a new data and
// copies the name into it (strings handed out keep the old one alive, and
// it is never written again).
type counter struct {
	data *byte // nil in a free record
	// ext next to data: a read needs both, and the two words share a cache
	// line in 7 records out of 8 (a record is 24 bytes).
	ext  *lifeExt
	hash uint64 // keyHash(key), cached; its top bits pick the digest bucket
}

// byteAt returns data[i], which must lie within data.
func (c *counter) byteAt(i int) byte { return *(*byte)(unsafe.Add(unsafe.Pointer(c.data), i)) }

// keyBounds returns the offset of c's name in data and its length (at
// most MaxKeyLen: a uvarint of one or two bytes).
func (c *counter) keyBounds() (off, n int) {
	if b := c.byteAt(0); b < 0x80 {
		return 1, int(b)
	}
	return 2, int(c.byteAt(0)&0x7f) | int(c.byteAt(1))<<7
}

// slotBounds returns the offset of c's entries in data and their length.
func (c *counter) slotBounds() (off, n int) {
	off, kl := c.keyBounds()
	i := off + kl
	var v uint64
	for shift := 0; ; shift += 7 {
		b := c.byteAt(i)
		i++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return i, int(v)
		}
	}
}

// key returns c's name, aliasing data.
func (c *counter) key() string {
	off, n := c.keyBounds()
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(c.data), off)), n)
}

// slen returns the length of c's packed entries.
func (c *counter) slen() int {
	_, n := c.slotBounds()
	return n
}

// slots returns c's packed entries, aliasing data (nil if it has none).
func (c *counter) slots() []byte {
	off, n := c.slotBounds()
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(c.data), off)), n)
}

// makeData returns a data holding key and, as its entries, the
// concatenation of parts.
func makeData[K string | []byte](key K, parts ...[]byte) *byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, uvarintLen(uint64(len(key)))+len(key)+uvarintLen(uint64(n))+n)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	return &b[0]
}

// setData gives c a fresh data holding its name and, as its entries, the
// concatenation of parts (which may alias the old data).
func (c *counter) setData(parts ...[]byte) { c.data = makeData(c.key(), parts...) }

// newRecord returns a counter named key, which it copies, with no entries.
func newRecord[K string | []byte](key K) counter {
	c := counter{data: makeData(key)}
	c.hash = keyHash(c.key())
	return c
}

// lifeExt is the part of a key that most keys never need.
type lifeExt struct {
	life Life // generation, expiry, tombstone time
	// expiryDue is the deadline of the key's queued expiry item (0: none):
	// at most one per key, a later deadline is picked up when the queued
	// one comes due (see Reclaim).
	expiryDue int64
}

func (c *counter) life() Life {
	if c.ext == nil {
		return Life{}
	}
	return c.ext.life
}

func (c *counter) gen() uint64 {
	if c.ext == nil {
		return 0
	}
	return c.ext.life.Gen
}

func (c *counter) expiryDue() int64 {
	if c.ext == nil {
		return 0
	}
	return c.ext.expiryDue
}

// setExt sets what ext holds, dropping ext when that is nothing.
func (c *counter) setExt(l Life, due int64) {
	switch {
	case l.IsZero() && due == 0:
		c.ext = nil
	case c.ext == nil:
		c.ext = &lifeExt{life: l, expiryDue: due}
	default:
		c.ext.life, c.ext.expiryDue = l, due
	}
}

// uvarint decodes the uvarint at b[i:] and returns it and the index after it.
func uvarint(b []byte, i int) (uint64, int) {
	if c := b[i]; c < 0x80 {
		return uint64(c), i + 1
	}
	v, n := binary.Uvarint(b[i:])
	return v, i + n
}

// readSlot decodes the slot at b[i:] and returns the index after it.
func readSlot(b []byte, i int) (rep uint64, pn PN, next int) {
	rep, i = uvarint(b, i)
	pn.P, i = uvarint(b, i)
	pn.N, i = uvarint(b, i)
	return rep, pn, i
}

func appendSlot(b []byte, rep uint64, pn PN) []byte {
	b = binary.AppendUvarint(b, rep)
	b = binary.AppendUvarint(b, pn.P)
	return binary.AppendUvarint(b, pn.N)
}

func slotLen(rep uint64, pn PN) int {
	return uvarintLen(rep) + uvarintLen(pn.P) + uvarintLen(pn.N)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// find returns the bounds of replica index rep's slot in c.slots and its
// totals; start is -1 if rep has none.
func (c *counter) find(rep uint64) (start, end int, pn PN) {
	slots := c.slots()
	for i := 0; i < len(slots); {
		r, v, next := readSlot(slots, i)
		if r == rep {
			return i, next, v
		}
		i = next
	}
	return -1, -1, PN{}
}

// nslots counts c's entries.
func (c *counter) nslots() int {
	n := 0
	slots := c.slots()
	for i := 0; i < len(slots); n++ {
		_, _, i = readSlot(slots, i)
	}
	return n
}

// replicas interns replica IDs: a key's slot names its replica by an index
// into ids, one or two bytes instead of eight. The table only grows: it
// holds every replica that ever wrote to a key held here, a few per node
// of the cluster's history.
type replicas struct {
	ids     []ReplicaID
	index   map[ReplicaID]uint64
	last    ReplicaID // the most recent lookup: merges come in runs from one replica
	lastIdx uint64
	lastOK  bool
}

// lookup returns id's index, if it has one.
func (r *replicas) lookup(id ReplicaID) (uint64, bool) {
	if r.lastOK && r.last == id {
		return r.lastIdx, true
	}
	i, ok := r.index[id]
	if ok {
		r.last, r.lastIdx, r.lastOK = id, i, true
	}
	return i, ok
}

// intern returns id's index, giving it one if it has none.
func (r *replicas) intern(id ReplicaID) uint64 {
	if i, ok := r.lookup(id); ok {
		return i
	}
	if r.index == nil {
		r.index = make(map[ReplicaID]uint64)
	}
	i := uint64(len(r.ids))
	r.ids = append(r.ids, id)
	r.index[id] = i
	r.last, r.lastIdx, r.lastOK = id, i, true
	return i
}

// Keyspace is a set of named PN-counters plus their digest.
type Keyspace struct {
	recs     records
	counters keyTable
	entries  int
	reps     replicas
	digest
	lifecycle
}

// New returns an empty keyspace.
func New() *Keyspace {
	ks := &Keyspace{digest: newDigest(), lifecycle: newLifecycle()}
	ks.index = newIndex(ks)
	return ks
}

// Len reports the number of keys held, live or not (expired keys and
// tombstones count until they are reclaimed).
func (ks *Keyspace) Len() int { return ks.counters.len() }

// Entries reports the number of (key, replica) entries.
func (ks *Keyspace) Entries() int { return ks.entries }

// Get returns replica's totals in key's current generation (zero if it
// never wrote to it).
func (ks *Keyspace) Get(key string, replica ReplicaID) PN {
	c := ks.lookup(key)
	if c == nil {
		return PN{}
	}
	rep, ok := ks.reps.lookup(replica)
	if !ok {
		return PN{}
	}
	_, _, pn := c.find(rep)
	return pn
}

// Merge folds e into the keyspace and reports whether anything changed.
// An entry of a generation older than the key's is ignored; one of a newer
// generation first moves the key to it (dropping the older generation's
// entries and expiry). An entry with an invalid key is ignored (and
// reported as no change).
func (ks *Keyspace) Merge(e Entry) bool {
	if e.P == 0 && e.N == 0 {
		return false
	}
	x := ks.find(e.Key)
	if x == 0 {
		if ValidKey(e.Key) != nil {
			return false
		}
		x = ks.newCounter(newRecord(e.Key))
	}
	return ks.mergeInto(x, e.Replica, e.Gen, e.P, e.N)
}

// MergeKey is Merge for a key held in a byte slice, as a log reader has it:
// it allocates a string only for a key the keyspace does not hold yet. key
// is not retained.
func (ks *Keyspace) MergeKey(key []byte, replica ReplicaID, gen, p, n uint64) bool {
	if p == 0 && n == 0 {
		return false
	}
	x := ks.counters.getBytes(&ks.recs, key)
	if x == 0 {
		if ValidKey(unsafe.String(unsafe.SliceData(key), len(key))) != nil {
			return false
		}
		x = ks.newCounter(newRecord(key))
	}
	return ks.mergeInto(x, replica, gen, p, n)
}

// newCounter adds c, a key not held, with no entries, and returns its ref.
func (ks *Keyspace) newCounter(c counter) ref {
	x := ks.recs.alloc(c)
	ks.addKey(c.hash, x)
	ks.counters.insert(&ks.recs, x)
	ks.empty++
	ks.peak = max(ks.peak, ks.counters.len())
	return x
}

func (ks *Keyspace) mergeInto(x ref, replica ReplicaID, gen, p, n uint64) bool {
	c := ks.recs.at(x)
	if cg := c.gen(); gen < cg {
		return false
	} else if gen > cg {
		ks.setLife(x, Life{Gen: gen})
	}
	rep := ks.reps.intern(replica)
	start, end, cur := c.find(rep)
	if start < 0 {
		if c.slen() == 0 {
			ks.empty--
			ks.index.insert(x) // listed from its first entry on
		}
		var buf [3 * binary.MaxVarintLen64]byte
		c.setData(c.slots(), appendSlot(buf[:0], rep, PN{P: p, N: n})) // exact: a key's slots rarely change size
		ks.entries++
		ks.update(c, 0, entryHash(c.hash, replica, gen, p, n))
		return true
	}
	np, nn := max(cur.P, p), max(cur.N, n)
	if np == cur.P && nn == cur.N {
		return false
	}
	ks.update(c, entryHash(c.hash, replica, gen, cur.P, cur.N), entryHash(c.hash, replica, gen, np, nn))
	pn := PN{P: np, N: nn}
	slots := c.slots()
	if l := slotLen(rep, pn); l == end-start {
		appendSlot(slots[start:start], rep, pn) // in place: the name's bytes are before start
	} else {
		var buf [3 * binary.MaxVarintLen64]byte
		c.setData(slots[:start], appendSlot(buf[:0], rep, pn), slots[end:])
	}
	return true
}

// Value returns key's value at time now (Unix milliseconds): ΣP − ΣN over
// its current generation, or 0 if the key is absent, deleted or expired at
// now. ok is false when the exact value lies outside int64 (only possible
// when concurrent writes on different replicas each stayed in range); the
// value is then clamped to the nearest bound.
func (ks *Keyspace) Value(key string, now int64) (v int64, ok bool) {
	st := ks.StatusOf(key, now)
	return st.Value, !st.Clamped
}

// slotsValue returns the value of a key whose packed entries are slots.
func slotsValue(slots []byte) (int64, bool) {
	var s sum
	for i := 0; i < len(slots); {
		var pn PN
		_, pn, i = readSlot(slots, i)
		s.add(pn)
	}
	return s.value()
}

// eachSlot calls f for each of c's entries until f returns false, and
// reports whether it was not stopped.
func (ks *Keyspace) eachSlot(c *counter, f func(s slot) bool) bool {
	slots := c.slots()
	for i := 0; i < len(slots); {
		var (
			rep uint64
			pn  PN
		)
		rep, pn, i = readSlot(slots, i)
		if !f(slot{replica: ks.reps.ids[rep], PN: pn}) {
			return false
		}
	}
	return true
}

// entriesOf appends c's entries to out.
func (ks *Keyspace) entriesOf(out []Entry, c *counter) []Entry {
	gen, key := c.gen(), c.key()
	ks.eachSlot(c, func(s slot) bool {
		out = append(out, Entry{Key: key, Replica: s.replica, Gen: gen, P: s.P, N: s.N})
		return true
	})
	return out
}

// Change computes the entry that replica must write to add delta to key in
// generation gen, given cur, replica's current totals in gen, and value,
// the key's current value as the writer sees it. It refuses (ErrOverflow)
// any change that would take the value outside int64 or a running total
// beyond uint64, like Redis's INCRBY.
func Change(key string, replica ReplicaID, gen uint64, cur PN, value, delta int64) (Entry, error) {
	if err := ValidKey(key); err != nil {
		return Entry{}, err
	}
	if delta == 0 {
		return Entry{}, ErrBadAmount
	}
	if (delta > 0 && value > math.MaxInt64-delta) || (delta < 0 && value < math.MinInt64-delta) {
		return Entry{}, ErrOverflow
	}
	e := Entry{Key: key, Replica: replica, Gen: gen, P: cur.P, N: cur.N}
	var carry uint64
	if delta > 0 {
		e.P, carry = bits.Add64(cur.P, uint64(delta), 0)
	} else {
		e.N, carry = bits.Add64(cur.N, uint64(-(delta+1))+1, 0) // -delta without overflow at MinInt64
	}
	if carry != 0 {
		return Entry{}, ErrOverflow
	}
	return e, nil
}

// ForEach calls f for every entry, in no particular order, until f returns false.
func (ks *Keyspace) ForEach(f func(Entry) bool) {
	ks.counters.each(func(x ref) bool {
		c := ks.recs.at(x)
		gen, key := c.gen(), c.key()
		return ks.eachSlot(c, func(s slot) bool {
			return f(Entry{Key: key, Replica: s.replica, Gen: gen, P: s.P, N: s.N})
		})
	})
}

// EntriesOf returns every replica's entry for key's current generation.
func (ks *Keyspace) EntriesOf(key string) []Entry {
	c := ks.lookup(key)
	if c == nil {
		return nil
	}
	return ks.entriesOf(make([]Entry, 0, c.nslots()), c)
}

// sum is a 128-bit signed accumulator for ΣP − ΣN.
type sum struct {
	phi, plo, nhi, nlo uint64
}

func (s *sum) add(pn PN) {
	var c uint64
	s.plo, c = bits.Add64(s.plo, pn.P, 0)
	s.phi += c
	s.nlo, c = bits.Add64(s.nlo, pn.N, 0)
	s.nhi += c
}

func (s *sum) value() (int64, bool) {
	// d = P − N as a two's-complement 128-bit number.
	lo, b := bits.Sub64(s.plo, s.nlo, 0)
	hi, _ := bits.Sub64(s.phi, s.nhi, b)
	switch {
	case hi == 0 && lo <= math.MaxInt64:
		return int64(lo), true
	case hi == math.MaxUint64 && lo >= 1<<63:
		return int64(lo), true
	case int64(hi) < 0:
		return math.MinInt64, false
	default:
		return math.MaxInt64, false
	}
}

// ValueWith returns key's value as it would be if replica's totals in
// generation gen were raised to pn (used by a writer whose own totals are not
// merged yet). A gen newer than the key's counts pn alone.
func (ks *Keyspace) ValueWith(key string, replica ReplicaID, gen uint64, pn PN) (int64, bool) {
	var s sum
	s.add(pn)
	if c := ks.lookup(key); c != nil && c.gen() == gen {
		ks.eachSlot(c, func(sl slot) bool {
			if sl.replica != replica {
				s.add(sl.PN)
			}
			return true
		})
	}
	return s.value()
}

// find returns key's ref, or 0.
func (ks *Keyspace) find(key string) ref { return ks.counters.get(&ks.recs, key) }

// lookup returns key's counter, or nil. It is valid until the key is
// forgotten or the records are compacted.
func (ks *Keyspace) lookup(key string) *counter {
	if x := ks.find(key); x != 0 {
		return ks.recs.at(x)
	}
	return nil
}
