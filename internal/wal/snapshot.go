package wal

// The snapshot file: its layout, written atomically, and read back whole
// before any of it is applied.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"

	"github.com/dcounter/dcounter/internal/crdt"
)

// writeSnapshot writes entries to name atomically (temp file, fsync, rename;
// the caller syncs the directory).
func writeSnapshot(name string, lsn uint64, entries []crdt.Entry, idems []Idem) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("wal: snapshot: %w", err)
	}
	defer os.Remove(tmp) // no-op after the rename
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	hdr := []byte(snapMagic)
	hdr = binary.LittleEndian.AppendUint64(hdr, lsn)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(entries)))
	w.Write(hdr)
	var buf []byte
	for _, e := range entries {
		buf = appendEntry(buf[:0], e)
		w.Write(buf)
	}
	if len(idems) > 0 {
		buf = binary.AppendUvarint(append(buf[:0], idemTag), uint64(len(idems)))
		for _, i := range idems {
			buf = appendIdem(buf, i)
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("wal: snapshot: %w", err)
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		f.Close()
		return fmt.Errorf("wal: snapshot: %w", err)
	}
	if err := fdatasync(f); err != nil {
		f.Close()
		return fmt.Errorf("wal: snapshot sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: snapshot: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("wal: snapshot: %w", err)
	}
	return nil
}

// readSnapshot checks the snapshot in name and calls apply for each entry.
func readSnapshot(name string, lsn uint64, apply rawApply, onIdem func(Idem)) (int, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	if len(data) < snapHeader+4 || string(data[:8]) != snapMagic {
		return 0, fmt.Errorf("not a snapshot (bad header)")
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	var h hash.Hash32 = crc32.New(castagnoli)
	h.Write(body)
	if h.Sum32() != sum {
		return 0, fmt.Errorf("checksum mismatch")
	}
	if got := binary.LittleEndian.Uint64(data[8:]); got != lsn {
		return 0, fmt.Errorf("covers LSN %d but is named for %d", got, lsn)
	}
	count := binary.LittleEndian.Uint64(data[16:])
	if count > uint64(len(body)) {
		return 0, fmt.Errorf("entry count %d exceeds the file", count)
	}
	// The checksum matched, so these are the bytes we wrote; a decode error
	// here would be a bug, and what was applied before it is still valid state.
	entries, rest, err := splitEntries(body[snapHeader:], count)
	if err != nil {
		return 0, err
	}
	var idems []Idem
	if len(rest) > 0 {
		if rest[0] != idemTag && rest[0] != legacyIdemTag {
			return 0, fmt.Errorf("%d bytes after the last entry", len(rest))
		}
		legacy := rest[0] == legacyIdemTag
		n, k := binary.Uvarint(rest[1:])
		if k <= 0 || n > uint64(len(rest)) {
			return 0, fmt.Errorf("bad idempotency key count")
		}
		for rest = rest[1+k:]; n > 0; n-- {
			i, size, err := readIdem(rest)
			if err != nil {
				return 0, err
			}
			i.Legacy = legacy
			idems = append(idems, i)
			rest = rest[size:]
		}
		if len(rest) != 0 {
			return 0, fmt.Errorf("%d bytes after the idempotency keys", len(rest))
		}
	}
	applyEntries(entries, apply)
	if onIdem != nil {
		for _, i := range idems {
			onIdem(i)
		}
	}
	return int(count), nil
}
