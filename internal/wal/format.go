package wal

// The format: encoding and decoding of records, entries and idempotency
// keys, and the names and header of segment files, as laid out in the
// package comment. Nothing here does I/O.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Format versions: the last byte of a segment's or a snapshot's magic.
// Version 1 is read; only version 2 is written (see the package comment).
const (
	version1 = 1
	version2 = 2
)

const (
	segMagicPrefix  = "DCWAL\x00\x00"
	snapMagicPrefix = "DCSNAP\x00"
	segMagic        = segMagicPrefix + "\x02" // the version written
	snapMagic       = snapMagicPrefix + "\x02"
	segHeader       = 16
	recHeader       = 8
	snapHeader      = 24
	// MaxRecord is the largest record payload.
	MaxRecord = 64 << 20
	// maxRecordBytes bounds the entries and metas Enqueue packs into one
	// record, so that a record stays far below MaxRecord.
	maxRecordBytes = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors describing bad bytes.
var (
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrNewerFormat is returned by Open for a segment or snapshot written
	// in a format version newer than this build reads: the data dir was
	// written by a newer build, and going back is not supported. It is
	// never skipped, even under DiscardCorrupt: that would throw away data
	// that is not damaged.
	ErrNewerFormat = errors.New("wal: written by a newer version")
	errShort       = errors.New("cut short")
	errBadMagic    = errors.New("bad header")
)

// fileVersion returns the format version of a file whose magic starts b,
// given the magic's prefix (everything but the version byte).
func fileVersion(b []byte, prefix string) (byte, error) {
	if len(b) < len(prefix)+1 || string(b[:len(prefix)]) != prefix {
		return 0, errBadMagic
	}
	switch v := b[len(prefix)]; {
	case v == version1 || v == version2:
		return v, nil
	case v > version2:
		return 0, fmt.Errorf("%w: format version %d, but this build reads only versions %d and %d; run the newer build (there is no downgrade)",
			ErrNewerFormat, v, version1, version2)
	}
	return 0, errBadMagic
}

// appendEntry encodes e (version 2).
func appendEntry(b []byte, e crdt.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Replica))
	b = binary.AppendUvarint(b, e.Gen)
	b = binary.AppendUvarint(b, e.P)
	return binary.AppendUvarint(b, e.N)
}

// entrySize over-estimates appendEntry's output.
func entrySize(e crdt.Entry) int { return len(e.Key) + 2 + 8 + 3*binary.MaxVarintLen64 }

// appendMeta encodes m.
func appendMeta(b []byte, m crdt.Meta) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	b = binary.AppendUvarint(b, m.Gen)
	b = binary.AppendUvarint(b, m.TTL.Ver)
	b = binary.AppendVarint(b, m.TTL.Deadline)
	return binary.AppendVarint(b, m.Deleted)
}

// metaSize over-estimates appendMeta's output.
func metaSize(m crdt.Meta) int { return len(m.Key) + 2 + 4*binary.MaxVarintLen64 }

// Smallest encodings, which bound the counts a reader accepts by the bytes
// that are there: an entry of a one-byte key (length, key, replica, P, N,
// and in version 2 the generation), and a meta of a one-byte key with four
// one-byte varints.
const (
	minEntryV1 = 1 + 1 + 8 + 1 + 1
	minEntryV2 = minEntryV1 + 1
	minMeta    = 1 + 1 + 4
)

func minEntry(version byte) int {
	if version == version1 {
		return minEntryV1
	}
	return minEntryV2
}

// appendRecord encodes one record holding c under lsn, and the idempotency
// key that came with it, if any: entries, then the meta section if there
// are metas, then the idempotency section.
func appendRecord(b []byte, lsn uint64, c crdt.Contents, idem *Idem) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.AppendUvarint(b, uint64(len(c.Entries)))
	for _, e := range c.Entries {
		b = appendEntry(b, e)
	}
	if len(c.Metas) > 0 {
		b = append(b, metaTag)
		b = binary.AppendUvarint(b, uint64(len(c.Metas)))
		for _, m := range c.Metas {
			b = appendMeta(b, m)
		}
	}
	if idem != nil {
		b = append(b, idemTag)
		b = appendIdem(b, *idem)
	}
	payload := b[start+recHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// Tags of the optional sections after the entries of a record or a
// snapshot. idemTag introduces the idempotency section. legacyIdemTag
// introduced it in older builds, whose keys held a wall-clock expiry
// instead of a remembered time; it is still read in version 1 files, and
// refused in version 2 ones, which no build wrote it in. metaTag
// introduces the meta section (version 2 only). In version 2 the sections
// come in this order, each at most once: metas, then idempotency.
const (
	legacyIdemTag = 0x01
	idemTag       = 0x02
	metaTag       = 0x03
)

// MaxIdemKey is the longest idempotency key.
const MaxIdemKey = 255

// Idem records that a write carrying an idempotency key was applied, and the
// answer to replay to its retries. It rides in the same record as the write,
// so the two are durable together.
type Idem struct {
	Key     string // the client's Idempotency-Key, 1..MaxIdemKey bytes
	Request uint64 // fingerprint of the request, to refuse a key reused for another
	Value   int64  // the value answered
	// At is when the write was applied, on the caller's remembered-time
	// clock (package node: milliseconds of running, counted across
	// restarts), never a wall-clock reading.
	At int64
	// Legacy marks a key recovered from an older version's data: At then
	// holds the wall-clock expiry (Unix milliseconds) it was written with,
	// which the caller should not trust. Never written.
	Legacy bool
}

func appendIdem(b []byte, i Idem) []byte {
	b = binary.AppendUvarint(b, uint64(len(i.Key)))
	b = append(b, i.Key...)
	b = binary.LittleEndian.AppendUint64(b, i.Request)
	b = binary.AppendVarint(b, i.Value)
	return binary.AppendVarint(b, i.At)
}

func readIdem(b []byte) (Idem, int, error) {
	klen, k := binary.Uvarint(b)
	if k <= 0 || klen == 0 || klen > MaxIdemKey || uint64(len(b)-k) < klen+8 {
		return Idem{}, 0, fmt.Errorf("bad idempotency key")
	}
	off := k
	i := Idem{Key: string(b[off : off+int(klen)])}
	off += int(klen)
	i.Request = binary.LittleEndian.Uint64(b[off:])
	off += 8
	if i.Value, k = binary.Varint(b[off:]); k <= 0 {
		return Idem{}, 0, fmt.Errorf("bad idempotency value")
	}
	off += k
	if i.At, k = binary.Varint(b[off:]); k <= 0 {
		return Idem{}, 0, fmt.Errorf("bad idempotency time")
	}
	return i, off + k, nil
}

// readEntry decodes one entry of the given version from b, returning the
// bytes it used. The key aliases b. Version 1 entries have generation 0.
func readEntry(b []byte, version byte) (key []byte, replica crdt.ReplicaID, gen, p, n uint64, size int, err error) {
	klen, k := binary.Uvarint(b)
	if k <= 0 || klen == 0 || klen > crdt.MaxKeyLen || uint64(len(b)-k) < klen+8 {
		return nil, 0, 0, 0, 0, 0, fmt.Errorf("bad entry key")
	}
	off := k
	key = b[off : off+int(klen)]
	off += int(klen)
	replica = crdt.ReplicaID(binary.LittleEndian.Uint64(b[off:]))
	off += 8
	if version != version1 {
		if gen, k = binary.Uvarint(b[off:]); k <= 0 {
			return nil, 0, 0, 0, 0, 0, fmt.Errorf("bad entry generation")
		}
		off += k
	}
	if p, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, 0, 0, 0, 0, 0, fmt.Errorf("bad entry P")
	}
	off += k
	if n, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, 0, 0, 0, 0, 0, fmt.Errorf("bad entry N")
	}
	return key, replica, gen, p, n, off + k, nil
}

// readMeta decodes one meta from b, returning the bytes it used. The key
// aliases b. It does not check the key or the life: checkMeta does.
func readMeta(b []byte) (key []byte, l crdt.Life, size int, err error) {
	klen, k := binary.Uvarint(b)
	if k <= 0 || klen == 0 || klen > crdt.MaxKeyLen || uint64(len(b)-k) < klen {
		return nil, crdt.Life{}, 0, fmt.Errorf("bad meta key")
	}
	off := k
	key = b[off : off+int(klen)]
	off += int(klen)
	if l.Gen, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, crdt.Life{}, 0, fmt.Errorf("bad meta generation")
	}
	off += k
	if l.TTL.Ver, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, crdt.Life{}, 0, fmt.Errorf("bad meta TTL version")
	}
	off += k
	if l.TTL.Deadline, k = binary.Varint(b[off:]); k <= 0 {
		return nil, crdt.Life{}, 0, fmt.Errorf("bad meta deadline")
	}
	off += k
	if l.Deleted, k = binary.Varint(b[off:]); k <= 0 {
		return nil, crdt.Life{}, 0, fmt.Errorf("bad meta deletion time")
	}
	return key, l, off + k, nil
}

// checkReadMeta refuses a meta read back whose key crdt.ValidKey refuses,
// or whose life is zero (never logged: entries imply it).
func checkReadMeta(key []byte, l crdt.Life) error {
	if validKey(key) != nil {
		return fmt.Errorf("bad meta key %.40q", key)
	}
	if l.IsZero() {
		return fmt.Errorf("empty meta for key %.40q", key)
	}
	return nil
}

// validKey is crdt.ValidKey for a key in a byte slice. Converting to a
// string only to pass it in does not allocate for keys of up to 32 bytes,
// and longer keys are rare.
func validKey(key []byte) error { return crdt.ValidKey(string(key)) }

// record is a decoded record's header; its contents are decoded on demand.
type record struct {
	lsn   uint64
	count uint64 // entries
	body  []byte // what follows the entry count: entries, then sections
	size  int    // bytes the record took, header included
}

// parseRecord checks and splits the record at the start of b. Nothing in
// it depends on the format version.
func parseRecord(b []byte) (record, error) {
	if len(b) < recHeader {
		return record{}, errShort
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > MaxRecord {
		return record{}, fmt.Errorf("record length %d out of range", n)
	}
	if uint64(len(b)-recHeader) < uint64(n) {
		return record{}, errShort
	}
	payload := b[recHeader : recHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return record{}, fmt.Errorf("checksum mismatch")
	}
	if len(payload) < 9 {
		return record{}, fmt.Errorf("payload too short")
	}
	r := record{lsn: binary.LittleEndian.Uint64(payload), size: recHeader + int(n)}
	var k int
	r.count, k = binary.Uvarint(payload[8:])
	if k <= 0 || r.count > uint64(len(payload)) { // every entry takes at least one byte
		return record{}, fmt.Errorf("bad entry count")
	}
	r.body = payload[8+k:]
	return r, nil
}

// contents is the checked, still encoded, entries and metas of a record or
// a snapshot.
type contents struct {
	version byte
	entries []byte
	metas   []byte
	nMetas  int
}

// splitContents checks count entries of the given version at the start of
// b, then, in version 2, an optional meta section, and returns them and
// what follows.
func splitContents(b []byte, count uint64, version byte) (c contents, rest []byte, err error) {
	c.version = version
	if count > uint64(len(b)/minEntry(version)) {
		return contents{}, nil, fmt.Errorf("entry count %d exceeds the bytes there", count)
	}
	rest = b
	for i := uint64(0); i < count; i++ {
		_, _, _, _, _, size, err := readEntry(rest, version)
		if err != nil {
			return contents{}, nil, err
		}
		rest = rest[size:]
	}
	c.entries = b[:len(b)-len(rest)]
	if version == version1 || len(rest) == 0 || rest[0] != metaTag {
		return c, rest, nil
	}
	n, k := binary.Uvarint(rest[1:])
	if k <= 0 || n == 0 || n > uint64(len(rest)-1-k)/minMeta {
		return contents{}, nil, fmt.Errorf("bad meta count")
	}
	metas := rest[1+k:]
	rest = metas
	for i := uint64(0); i < n; i++ {
		key, l, size, err := readMeta(rest)
		if err == nil {
			err = checkReadMeta(key, l)
		}
		if err != nil {
			return contents{}, nil, err
		}
		rest = rest[size:]
	}
	c.metas, c.nMetas = metas[:len(metas)-len(rest)], int(n)
	return c, rest, nil
}

// apply calls f for each meta, then for each entry, of c, already checked
// by splitContents. Metas go first because the order does not matter to
// the merge, and a meta creating a key takes the one string allocation
// that the key needs; its entries then find it.
func (c contents) apply(f rawApply) {
	for b := c.metas; len(b) > 0; {
		key, l, size, _ := readMeta(b)
		f.meta(key, l)
		b = b[size:]
	}
	for b := c.entries; len(b) > 0; {
		key, r, gen, p, n, size, _ := readEntry(b, c.version)
		f.entry(key, r, gen, p, n)
		b = b[size:]
	}
}

// checkRecord checks a record's entries, metas and optional idempotency key
// as the format version says, returning its contents to apply and its
// idempotency key, if any. Nothing is applied here, so a bad record
// applies nothing.
func checkRecord(r record, version byte) (contents, *Idem, error) {
	c, rest, err := splitContents(r.body, r.count, version)
	if err != nil {
		return contents{}, nil, err
	}
	if len(rest) == 0 {
		return c, nil, nil
	}
	switch {
	case rest[0] == idemTag:
	case rest[0] == legacyIdemTag && version == version1:
	default:
		return contents{}, nil, fmt.Errorf("%d bytes after the last entry or meta", len(rest))
	}
	i, size, err := readIdem(rest[1:])
	if err != nil {
		return contents{}, nil, err
	}
	i.Legacy = rest[0] == legacyIdemTag
	if 1+size != len(rest) {
		return contents{}, nil, fmt.Errorf("%d bytes after the idempotency key", len(rest)-1-size)
	}
	return c, &i, nil
}

// rawApply receives what recovery reads; keys are only valid during a call.
type rawApply struct {
	entry func(key []byte, replica crdt.ReplicaID, gen, p, n uint64)
	meta  func(key []byte, l crdt.Life)
}

// segmentName is the file of the segment whose first record is lsn.
func segmentName(dir string, lsn uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.wal", lsn))
}
