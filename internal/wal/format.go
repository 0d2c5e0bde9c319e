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

const (
	segMagic   = "DCWAL\x00\x00\x01"
	snapMagic  = "DCSNAP\x00\x01"
	segHeader  = 16
	recHeader  = 8
	snapHeader = 24
	// MaxRecord is the largest record payload.
	MaxRecord = 64 << 20
	// maxRecordBytes bounds the entries Enqueue packs into one record, so
	// that a record stays far below MaxRecord.
	maxRecordBytes = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors describing bad bytes.
var (
	ErrCorrupt = errors.New("wal: corrupt")
	errShort   = errors.New("cut short")
)

// appendEntry encodes e.
func appendEntry(b []byte, e crdt.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Replica))
	b = binary.AppendUvarint(b, e.P)
	return binary.AppendUvarint(b, e.N)
}

// entrySize over-estimates appendEntry's output.
func entrySize(e crdt.Entry) int { return len(e.Key) + 2 + 8 + 10 + 10 }

// appendRecord encodes one record holding entries under lsn, and the
// idempotency key that came with them, if any.
func appendRecord(b []byte, lsn uint64, entries []crdt.Entry, idem *Idem) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendEntry(b, e)
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

// idemTag introduces the optional idempotency section of a record or a
// snapshot. legacyIdemTag introduced it in older versions, whose keys held
// a wall-clock expiry instead of a remembered time; it is still read.
const (
	legacyIdemTag = 0x01
	idemTag       = 0x02
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

// readEntry decodes one entry from b, returning the bytes it used. The key
// aliases b.
func readEntry(b []byte) (key []byte, replica crdt.ReplicaID, p, n uint64, size int, err error) {
	klen, k := binary.Uvarint(b)
	if k <= 0 || klen == 0 || klen > crdt.MaxKeyLen || uint64(len(b)-k) < klen+8 {
		return nil, 0, 0, 0, 0, fmt.Errorf("bad entry key")
	}
	off := k
	key = b[off : off+int(klen)]
	off += int(klen)
	replica = crdt.ReplicaID(binary.LittleEndian.Uint64(b[off:]))
	off += 8
	if p, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, 0, 0, 0, 0, fmt.Errorf("bad entry P")
	}
	off += k
	if n, k = binary.Uvarint(b[off:]); k <= 0 {
		return nil, 0, 0, 0, 0, fmt.Errorf("bad entry N")
	}
	return key, replica, p, n, off + k, nil
}

// record is a decoded record's header; its entries are decoded on demand.
type record struct {
	lsn     uint64
	count   uint64
	entries []byte // encoded entries
	size    int    // bytes the record took, header included
}

// parseRecord checks and splits the record at the start of b.
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
	r.entries = payload[8+k:]
	return r, nil
}

// splitEntries checks count entries at the start of b and returns their
// bytes and what follows them.
func splitEntries(b []byte, count uint64) (entries, rest []byte, err error) {
	rest = b
	for i := uint64(0); i < count; i++ {
		_, _, _, _, size, err := readEntry(rest)
		if err != nil {
			return nil, nil, err
		}
		rest = rest[size:]
	}
	return b[:len(b)-len(rest)], rest, nil
}

// applyEntries calls f for each entry of b, already checked by splitEntries.
func applyEntries(b []byte, f rawApply) {
	for len(b) > 0 {
		key, r, p, n, size, _ := readEntry(b)
		f(key, r, p, n)
		b = b[size:]
	}
}

// eachEntry checks a record's count entries and optional idempotency key,
// and only then calls f for each entry, so a bad record applies nothing. It
// returns the record's idempotency key, if any.
func eachEntry(b []byte, count uint64, f rawApply) (*Idem, error) {
	entries, rest, err := splitEntries(b, count)
	if err != nil {
		return nil, err
	}
	var idem *Idem
	if len(rest) > 0 {
		if rest[0] != idemTag && rest[0] != legacyIdemTag {
			return nil, fmt.Errorf("%d bytes after the last entry", len(rest))
		}
		i, size, err := readIdem(rest[1:])
		if err != nil {
			return nil, err
		}
		i.Legacy = rest[0] == legacyIdemTag
		if 1+size != len(rest) {
			return nil, fmt.Errorf("%d bytes after the idempotency key", len(rest)-1-size)
		}
		idem = &i
	}
	applyEntries(entries, f)
	return idem, nil
}

// rawApply receives one recovered entry; key is only valid during the call.
type rawApply func(key []byte, replica crdt.ReplicaID, p, n uint64)

// segmentName is the file of the segment whose first record is lsn.
func segmentName(dir string, lsn uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.wal", lsn))
}
