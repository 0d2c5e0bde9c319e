package wire

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Message bodies are decoded by hand rather than by msgpack's reflection,
// which is too trusting for input from the network: msgpack/v5 (v5.4.1)
//
//   - preallocates a slice for whatever length an array header claims (its
//     allocation limit is never applied: decodeSliceValue tests
//     flags&disableAllocLimitFlag != 1, which is always true), so a 20-byte
//     message claiming 2^32 entries made the process allocate 171 GB and die;
//   - decodes nil or an empty array as a zero struct, so even with lengths
//     checked, a body of one-byte elements cost ~180 bytes of memory per byte
//     (a 2 KB zstd body expanding to MaxBody: over 10 GB);
//   - accepts structs encoded as maps, skipping unknown fields recursively.
//
// Here every struct must be an array of exactly its field count, and a slice
// is allocated only if the bytes left can hold that many of its smallest
// possible elements, which keeps memory within about ten bytes per body byte,
// as for honest messages. Encoding still uses msgpack's reflection (struct
// tags as_array); the golden and round-trip tests hold the two together.

// Smallest encodings of slice elements: a fixarray header, then one byte per
// field (nil, a fixint or an empty fixstr).
const (
	minEntrySize  = 1 + 5
	minMetaSize   = 1 + 5
	minHashSize   = 1 + 2
	minMemberSize = 1 + 7
	minUint16Size = 1
)

// bodyDecoder reads one message body. d reads straight from r (a
// bytes.Reader is an io.ByteScanner, so msgpack does not buffer it), so
// r.Len() is the number of bytes left.
type bodyDecoder struct {
	d *msgpack.Decoder
	r *bytes.Reader
}

func (b *bodyDecoder) decode(m Message) (err error) {
	switch m := m.(type) {
	case *Push:
		if err = b.header(3); err != nil {
			return err
		}
		if m.Entries, err = decodeSlice(b, minEntrySize, b.entry); err != nil {
			return err
		}
		if m.Metas, err = decodeSlice(b, minMetaSize, b.meta); err != nil {
			return err
		}
		m.Want, err = decodeSlice(b, minUint16Size, b.uint16)
		return err
	case *DigestPull:
		if err = b.header(1); err != nil {
			return err
		}
		m.Groups, err = decodeSlice(b, minHashSize, b.hash)
		return err
	case *DigestAck:
		return b.header(0)
	case *DigestBuckets:
		if err = b.header(2); err != nil {
			return err
		}
		if m.Groups, err = decodeSlice(b, minUint16Size, b.uint16); err != nil {
			return err
		}
		m.Buckets, err = decodeSlice(b, minHashSize, b.hash)
		return err
	case *Delta:
		if err = b.header(3); err != nil {
			return err
		}
		if m.Entries, err = decodeSlice(b, minEntrySize, b.entry); err != nil {
			return err
		}
		if m.Metas, err = decodeSlice(b, minMetaSize, b.meta); err != nil {
			return err
		}
		m.Hops, err = b.d.DecodeUint8()
		return err
	case *Join:
		n, err := b.headerRange(1, 2)
		if err != nil {
			return err
		}
		if err = b.member(&m.Self); err != nil {
			return err
		}
		m.SentAt, err = b.appended(n, 2)
		return err
	case *JoinAck:
		n, err := b.headerRange(1, 2)
		if err != nil {
			return err
		}
		if m.Members, err = decodeSlice(b, minMemberSize, b.member); err != nil {
			return err
		}
		m.SentAt, err = b.appended(n, 2)
		return err
	case *Members:
		n, err := b.headerRange(1, 2)
		if err != nil {
			return err
		}
		if m.Members, err = decodeSlice(b, minMemberSize, b.member); err != nil {
			return err
		}
		m.SentAt, err = b.appended(n, 2)
		return err
	}
	return fmt.Errorf("no decoder for %T", m)
}

// header reads the array header of a struct with the given number of fields.
func (b *bodyDecoder) header(fields int) error {
	n, err := b.d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != fields {
		return fmt.Errorf("struct of %d fields encoded with %d", fields, n)
	}
	return nil
}

// headerRange reads the array header of a message that gained appended
// fields: older builds send min fields, this one max.
func (b *bodyDecoder) headerRange(min, max int) (int, error) {
	n, err := b.d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < min || n > max {
		return 0, fmt.Errorf("struct of %d to %d fields encoded with %d", min, max, n)
	}
	return n, nil
}

// appended reads the appended int64 field that is field number pos
// (counting from 1) if the struct was sent with n ≥ pos fields, else 0.
func (b *bodyDecoder) appended(n, pos int) (int64, error) {
	if n < pos {
		return 0, nil
	}
	return b.d.DecodeInt64()
}

// decodeSlice reads a slice (nil for msgpack nil) whose elements take at
// least minSize bytes each.
func decodeSlice[T any](b *bodyDecoder, minSize int, elem func(*T) error) ([]T, error) {
	n, err := b.d.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > b.r.Len()/minSize {
		return nil, fmt.Errorf("%d elements cannot fit in %d bytes", n, b.r.Len())
	}
	out := make([]T, n)
	for i := range out {
		if err := elem(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (b *bodyDecoder) entry(e *Entry) error {
	err := b.header(5)
	e.Key, err = b.string(err)
	e.Replica, err = b.uint64(err)
	e.Gen, err = b.uint64(err)
	e.P, err = b.uint64(err)
	e.N, err = b.uint64(err)
	return err
}

func (b *bodyDecoder) meta(m *Meta) error {
	err := b.header(5)
	m.Key, err = b.string(err)
	m.Gen, err = b.uint64(err)
	m.TTLVer, err = b.uint64(err)
	m.Deadline, err = b.int64(err)
	m.Deleted, err = b.int64(err)
	return err
}

func (b *bodyDecoder) hash(h *Hash) error {
	err := b.header(2)
	if err == nil {
		err = b.uint16(&h.Index)
	}
	h.Hash, err = b.uint64(err)
	return err
}

func (b *bodyDecoder) member(m *Member) error {
	err := b.header(7)
	m.ID, err = b.uint64(err)
	m.Name, err = b.string(err)
	m.GossipAddr, err = b.string(err)
	m.HTTPAddr, err = b.string(err)
	m.Incarnation, err = b.uint64(err)
	m.Heartbeat, err = b.uint64(err)
	if err == nil {
		m.State, err = b.d.DecodeUint8()
	}
	return err
}

func (b *bodyDecoder) uint16(x *uint16) (err error) {
	*x, err = b.d.DecodeUint16()
	return err
}

// uint64, int64 and string read the next field unless an earlier one failed, so
// that a struct's fields read as a straight list.
func (b *bodyDecoder) uint64(prev error) (uint64, error) {
	if prev != nil {
		return 0, prev
	}
	return b.d.DecodeUint64()
}

func (b *bodyDecoder) int64(prev error) (int64, error) {
	if prev != nil {
		return 0, prev
	}
	return b.d.DecodeInt64()
}

func (b *bodyDecoder) string(prev error) (string, error) {
	if prev != nil {
		return "", prev
	}
	return b.d.DecodeString()
}

// maxDepth bounds container nesting in a body. The deepest message nests three
// containers (Push → entries → entry); the bound leaves room for growth. (Before
// bodies were decoded by hand, msgpack's recursive Skip of an unknown field
// of a map-encoded struct overflowed the goroutine stack, a fatal error, on a
// body nesting arrays millions deep.)
const maxDepth = 16

// checkBody walks b as exactly one msgpack value, without decoding it, and
// fails unless every array, map, string, binary and extension length fits in
// the bytes that remain and nesting stays within maxDepth. It is a first,
// schema-free pass: after it, no length that bodyDecoder or msgpack reads can
// claim more than the bytes that are there.
func checkBody(b []byte) error {
	var open [maxDepth + 1]uint64 // values still to read per open container; open[0] is the body
	open[0] = 1
	depth, p := 0, 0
	for {
		if open[depth] == 0 {
			if depth > 0 {
				depth--
				continue
			}
			if p != len(b) {
				return fmt.Errorf("%d trailing bytes", len(b)-p)
			}
			return nil
		}
		open[depth]--
		if p >= len(b) {
			return errors.New("unexpected end of body")
		}
		c := b[p]
		p++
		var (
			lenSize int    // size of a big-endian length field that follows c
			skip    uint64 // bytes of payload after the length field
			elems   uint64 // values in a container; mult 2 for maps
			mult    uint64
		)
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixint, nil, bool
		case c <= 0x8f: // fixmap
			elems, mult = uint64(c&0x0f), 2
		case c <= 0x9f: // fixarray
			elems, mult = uint64(c&0x0f), 1
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc4, 0xd9: // bin8, str8
				lenSize = 1
			case 0xc5, 0xda: // bin16, str16
				lenSize = 2
			case 0xc6, 0xdb: // bin32, str32
				lenSize = 4
			case 0xc7, 0xc8, 0xc9: // ext8, ext16, ext32: length, type byte, data
				lenSize, skip = 1<<(c-0xc7), 1
			case 0xca, 0xce, 0xd2: // float32, uint32, int32
				skip = 4
			case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
				skip = 8
			case 0xcc, 0xd0: // uint8, int8
				skip = 1
			case 0xcd, 0xd1: // uint16, int16
				skip = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext1..16: type byte, data
				skip = 1 + 1<<(c-0xd4)
			case 0xdc: // array16
				lenSize, mult = 2, 1
			case 0xdd: // array32
				lenSize, mult = 4, 1
			case 0xde: // map16
				lenSize, mult = 2, 2
			case 0xdf: // map32
				lenSize, mult = 4, 2
			default: // 0xc1 is never used
				return fmt.Errorf("invalid msgpack code %#x", c)
			}
		}
		if lenSize > 0 {
			if len(b)-p < lenSize {
				return errors.New("unexpected end of body")
			}
			var n uint64
			for _, x := range b[p : p+lenSize] {
				n = n<<8 | uint64(x)
			}
			p += lenSize
			if mult > 0 {
				elems = n
			} else {
				skip += n
			}
		}
		left := uint64(len(b) - p)
		if mult > 0 {
			if elems*mult > left {
				return fmt.Errorf("container claims %d values with %d bytes left", elems*mult, left)
			}
			if elems > 0 {
				if depth == maxDepth {
					return fmt.Errorf("nested deeper than %d", maxDepth)
				}
				depth++
				open[depth] = elems * mult
			}
			continue
		}
		if skip > left {
			return fmt.Errorf("value claims %d bytes with %d left", skip, left)
		}
		p += int(skip)
	}
}
