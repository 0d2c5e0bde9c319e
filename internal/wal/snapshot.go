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

// writeSnapshot writes c to name atomically (temp file, fsync, rename; the
// caller syncs the directory). c must hold only what checkEntry and
// checkMeta accept.
func writeSnapshot(name string, lsn uint64, c crdt.Contents, idems []Idem) error {
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
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(c.Entries)))
	w.Write(hdr)
	var buf []byte
	for _, e := range c.Entries {
		buf = appendEntry(buf[:0], e)
		w.Write(buf)
	}
	if len(c.Metas) > 0 {
		w.Write(binary.AppendUvarint(append(buf[:0], metaTag), uint64(len(c.Metas))))
		for _, m := range c.Metas {
			buf = appendMeta(buf[:0], m)
			w.Write(buf)
		}
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

// readSnapshot checks the snapshot in name, in full, and only then applies
// its metas and entries. It returns how many entries and metas it held.
func readSnapshot(name string, lsn uint64, apply rawApply, onIdem func(Idem)) (entries, metas int, err error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, 0, err
	}
	version, err := fileVersion(data, snapMagicPrefix)
	if err != nil {
		return 0, 0, err
	}
	if len(data) < snapHeader+4 {
		return 0, 0, fmt.Errorf("not a snapshot (%d bytes)", len(data))
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	var h hash.Hash32 = crc32.New(castagnoli)
	h.Write(body)
	if h.Sum32() != sum {
		return 0, 0, fmt.Errorf("checksum mismatch")
	}
	if got := binary.LittleEndian.Uint64(data[8:]); got != lsn {
		return 0, 0, fmt.Errorf("covers LSN %d but is named for %d", got, lsn)
	}
	count := binary.LittleEndian.Uint64(data[16:])
	c, rest, err := splitContents(body[snapHeader:], count, version)
	if err != nil {
		return 0, 0, err
	}
	var idems []Idem
	if len(rest) > 0 {
		if rest[0] != idemTag && (rest[0] != legacyIdemTag || version != version1) {
			return 0, 0, fmt.Errorf("%d bytes after the last entry or meta", len(rest))
		}
		legacy := rest[0] == legacyIdemTag
		n, k := binary.Uvarint(rest[1:])
		if k <= 0 || n > uint64(len(rest)) {
			return 0, 0, fmt.Errorf("bad idempotency key count")
		}
		for rest = rest[1+k:]; n > 0; n-- {
			i, size, err := readIdem(rest)
			if err != nil {
				return 0, 0, err
			}
			i.Legacy = legacy
			idems = append(idems, i)
			rest = rest[size:]
		}
		if len(rest) != 0 {
			return 0, 0, fmt.Errorf("%d bytes after the idempotency keys", len(rest))
		}
	}
	c.apply(apply)
	if onIdem != nil {
		for _, i := range idems {
			onIdem(i)
		}
	}
	return int(count), c.nMetas, nil
}
