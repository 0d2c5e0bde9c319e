package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

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
	// maxRecordEntries bounds the entries Append packs into one record, so
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

// appendRecord encodes one record holding entries under lsn.
func appendRecord(b []byte, lsn uint64, entries []crdt.Entry) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	payload := b[start+recHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
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

// eachEntry decodes count entries from b and calls f for each.
func eachEntry(b []byte, count uint64, f rawApply) error {
	for i := uint64(0); i < count; i++ {
		key, r, p, n, size, err := readEntry(b)
		if err != nil {
			return err
		}
		f(key, r, p, n)
		b = b[size:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%d bytes after the last entry", len(b))
	}
	return nil
}
