package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// frame builds a message by hand: header for typ with flags, then body.
func frame(typ Type, flags byte, body ...byte) []byte {
	b := []byte{Version, byte(typ), flags, byte(len(testCluster))}
	b = append(b, testCluster...)
	return append(b, body...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// zstdAll compresses body as one frame with the content size declared.
func zstdAll(body []byte) []byte { return testZstd.EncodeAll(body, nil) }

// Single segment: the content size is declared even for tiny bodies, as
// decompress requires.
var testZstd, _ = zstd.NewWriter(nil, zstd.WithSingleSegment(true))

// Entry bodies (fixarray of 5: key, replica, gen, P, N) and meta bodies
// (fixarray of 5: key, gen, TTL version, deadline, deleted) used to build
// Push and Delta bodies.
var (
	entryOK      = []byte{0x95, 0xa1, 'k', 0x01, 0x00, 0x01, 0x00}
	entryNoKey   = []byte{0x95, 0xa0, 0x01, 0x00, 0x01, 0x00}
	entryBadUTF8 = []byte{0x95, 0xa1, 0xff, 0x01, 0x00, 0x01, 0x00}
	entryZero    = []byte{0x95, 0xa1, 'k', 0x01, 0x07, 0x00, 0x00}
	entryLongKey = cat([]byte{0x95, 0xda, 0x02, 0x01}, bytes.Repeat([]byte{'k'}, 513), []byte{0x01, 0x00, 0x01, 0x00})
	entryMaxKey  = cat([]byte{0x95, 0xda, 0x02, 0x00}, bytes.Repeat([]byte{'k'}, 512), []byte{0x01, 0x00, 0x01, 0x00})

	metaOK      = []byte{0x95, 0xa1, 'k', 0x01, 0x00, 0x00, 0x05} // a tombstone
	metaTTLOnly = []byte{0x95, 0xa1, 'k', 0x00, 0x01, 0x05, 0x00} // generation 0 with a deadline
	metaNoKey   = []byte{0x95, 0xa0, 0x01, 0x00, 0x00, 0x05}
	metaBadUTF8 = []byte{0x95, 0xa1, 0xff, 0x01, 0x00, 0x00, 0x05}
	metaZero    = []byte{0x95, 0xa1, 'k', 0x00, 0x00, 0x00, 0x00}
	metaLongKey = cat([]byte{0x95, 0xda, 0x02, 0x01}, bytes.Repeat([]byte{'k'}, 513), []byte{0x01, 0x00, 0x00, 0x05})
)

func pushBody(entries ...[]byte) []byte {
	return cat([]byte{0x93, 0x90 | byte(len(entries))}, cat(entries...), []byte{0xc0, 0xc0})
}

func deltaBody(entries ...[]byte) []byte {
	return cat([]byte{0x93, 0x90 | byte(len(entries))}, cat(entries...), []byte{0xc0, 0x00})
}

func pushMetasBody(metas ...[]byte) []byte {
	return cat([]byte{0x93, 0xc0, 0x90 | byte(len(metas))}, cat(metas...), []byte{0xc0})
}

func deltaMetasBody(metas ...[]byte) []byte {
	return cat([]byte{0x93, 0xc0, 0x90 | byte(len(metas))}, cat(metas...), []byte{0x00})
}

type decodeCase struct {
	name string
	in   []byte
	err  error
}

func decodeErrorCases() []decodeCase {
	ack := frame(TypeDigestAck, 0, 0x90)
	return []decodeCase{
		{"nil", nil, ErrShort},
		{"empty", []byte{}, ErrShort},
		{"one byte", []byte{Version}, ErrShort},
		{"three bytes", []byte{Version, byte(TypePush), 0}, ErrShort},
		{"version 0", cat([]byte{0}, ack[1:]), ErrVersion},
		{"version 1", cat([]byte{1}, ack[1:]), ErrVersion},
		{"version 3", cat([]byte{3}, ack[1:]), ErrVersion},
		{"version 255", cat([]byte{255}, ack[1:]), ErrVersion},
		{"type 0", frame(0, 0, 0x90), ErrUnknownType},
		{"type 9", frame(9, 0, 0x90), ErrUnknownType},
		{"type 200", frame(200, 0, 0x90), ErrUnknownType},
		{"type 255", frame(255, 0, 0x90), ErrUnknownType},
		{"flag bit 1", frame(TypeDigestAck, 2, 0x90), ErrFlags},
		{"flag bit 7", frame(TypeDigestAck, 0x80, 0x90), ErrFlags},
		{"zstd plus unknown flag", frame(TypeDigestAck, 0x03, 0x90), ErrFlags},
		{"all flags", frame(TypeDigestAck, 0xff, 0x90), ErrFlags},
		{"cluster length 0", []byte{Version, byte(TypeDigestAck), 0, 0, 0x90}, ErrBadClusterLen},
		{"cluster length 65", cat([]byte{Version, byte(TypeDigestAck), 0, 65}, bytes.Repeat([]byte{'c'}, 65), []byte{0x90}), ErrBadClusterLen},
		{"cluster length 255", cat([]byte{Version, byte(TypeDigestAck), 0, 255}, bytes.Repeat([]byte{'c'}, 300)), ErrBadClusterLen},
		{"cluster truncated", []byte{Version, byte(TypeDigestAck), 0, 8, 'd', 'c', 'o', 'u'}, ErrShort},
		{"cluster truncated by one", ack[:4+len(testCluster)-1], ErrShort},
		{"wrong cluster same length", cat(ack[:4], []byte("dcountex"), []byte{0x90}), ErrWrongCluster},
		{"wrong cluster shorter", cat([]byte{Version, byte(TypeDigestAck), 0, 5}, []byte("other"), []byte{0x90}), ErrWrongCluster},
		{"wrong cluster prefix", cat([]byte{Version, byte(TypeDigestAck), 0, 9}, []byte("dcounter2"), []byte{0x90}), ErrWrongCluster},
		{"wrong cluster case", cat(ack[:4], []byte("DCOUNTER"), []byte{0x90}), ErrWrongCluster},
		{"no body", frame(TypeDigestAck, 0), ErrBody},
		{"trailing byte", cat(ack, []byte{0x00}), ErrBody},
		{"trailing message", cat(ack, []byte{0x90}), ErrBody},
		{"never-used code 0xc1", frame(TypeDigestAck, 0, 0xc1), ErrBody},
		{"string for struct", frame(TypePush, 0, 0xa1, 'x'), ErrBody},
		{"int for struct", frame(TypeDelta, 0, 0x05), ErrBody},
		{"wrong field count", frame(TypePush, 0, 0x94, 0xc0, 0xc0, 0xc0, 0xc0), ErrBody},
		{"push of version-1 shape", frame(TypePush, 0, 0x92, 0xc0, 0xc0), ErrBody},
		{"too few fields", frame(TypeDelta, 0, 0x91, 0xc0), ErrBody},
		{"delta of version-1 shape", frame(TypeDelta, 0, 0x92, 0xc0, 0x00), ErrBody},
		{"string for uint16", frame(TypePush, 0, 0x93, 0xc0, 0xc0, 0x91, 0xa1, 'x'), ErrBody},
		{"float for uint64", frame(TypeDigestPull, 0, 0x91, 0x91, 0x92, 0x01, 0xcb, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f), ErrBody},
		{"truncated uint64", frame(TypeDigestPull, 0, 0x91, 0x91, 0x92, 0x01, 0xcf, 0, 0), ErrBody},
		{"truncated array", frame(TypePush, 0, 0x93, 0x93, 0x95), ErrBody},
		{"truncated string", frame(TypeJoin, 0, 0x91, 0x97, 0x00, 0xa5, 'a'), ErrBody},
		{"push entry empty key", frame(TypePush, 0, pushBody(entryOK, entryNoKey)...), ErrBadEntry},
		{"push entry invalid UTF-8", frame(TypePush, 0, pushBody(entryBadUTF8)...), ErrBadEntry},
		{"push entry 513-byte key", frame(TypePush, 0, pushBody(entryLongKey)...), ErrBadEntry},
		{"push entry all-zero totals", frame(TypePush, 0, pushBody(entryOK, entryZero)...), ErrBadEntry},
		{"push entry nil", frame(TypePush, 0, pushBody([]byte{0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0})...), ErrBody},
		{"push entry empty array", frame(TypePush, 0, pushBody([]byte{0x90, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0})...), ErrBody},
		{"push entry of 6 fields", frame(TypePush, 0, pushBody([]byte{0x96, 0xa1, 'k', 0x01, 0x00, 0x01, 0x00, 0x00})...), ErrBody},
		{"push entry of 4 fields (version 1)", frame(TypePush, 0, pushBody([]byte{0x94, 0xa1, 'k', 0x01, 0x01, 0x00})...), ErrBody},
		{"push meta empty key", frame(TypePush, 0, pushMetasBody(metaOK, metaNoKey)...), ErrBadMeta},
		{"push meta invalid UTF-8", frame(TypePush, 0, pushMetasBody(metaBadUTF8)...), ErrBadMeta},
		{"push meta 513-byte key", frame(TypePush, 0, pushMetasBody(metaLongKey)...), ErrBadMeta},
		{"push meta zero life", frame(TypePush, 0, pushMetasBody(metaOK, metaZero)...), ErrBadMeta},
		{"push meta nil", frame(TypePush, 0, pushMetasBody([]byte{0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0})...), ErrBody},
		{"push meta of 4 fields", frame(TypePush, 0, pushMetasBody([]byte{0x94, 0xa1, 'k', 0x01, 0x00, 0x00})...), ErrBody},
		{"push meta string for deadline", frame(TypePush, 0, pushMetasBody([]byte{0x95, 0xa1, 'k', 0x01, 0x00, 0xa1, 'x', 0x05})...), ErrBody},
		{"push meta as map", frame(TypePush, 0, pushMetasBody([]byte{0x81, 0xa3, 'K', 'e', 'y', 0xa1, 'k'})...), ErrBody},
		{"push entry as map", frame(TypePush, 0, pushBody([]byte{0x81, 0xa3, 'K', 'e', 'y', 0xa1, 'k'})...), ErrBody},
		{"member nil", frame(TypeMembers, 0, cat([]byte{0x91, 0x91, 0xc0}, bytes.Repeat([]byte{0xc0}, 7))...), ErrBody},
		{"join member of 6 fields", frame(TypeJoin, 0, 0x91, 0x96, 0x01, 0xa0, 0xa0, 0xa0, 0x01, 0x01), ErrBody},
		{"join of 3 fields", frame(TypeJoin, 0, 0x93, 0x97, 0x01, 0xa0, 0xa1, 'a', 0xa0, 0x01, 0x01, 0x00, 0x01, 0x01), ErrBody},
		{"members of 0 fields", frame(TypeMembers, 0, 0x90), ErrBody},
		{"members sent at not an int", frame(TypeMembers, 0, 0x92, 0x90, 0xa1, 'x'), ErrBody},
		{"hash nil", frame(TypeDigestPull, 0, 0x91, 0x91, 0xc0, 0xc0, 0xc0), ErrBody},
		{"nil body", frame(TypeDigestAck, 0, 0xc0), ErrBody},
		{"struct as map", frame(TypeDelta, 0, 0x81, 0xa4, 'H', 'o', 'p', 's', 0x07), ErrBody},
		{"struct as map with an unknown field", frame(TypeDelta, 0, 0x82, 0xa1, 'x', 0x92, 0x01, 0x02, 0xa4, 'H', 'o', 'p', 's', 0x07), ErrBody},
		{"digest_ack with a field", frame(TypeDigestAck, 0, 0x91, 0x01), ErrBody},
		{"delta entry empty key", frame(TypeDelta, 0, deltaBody(entryNoKey)...), ErrBadEntry},
		{"delta entry invalid UTF-8", frame(TypeDelta, 0, deltaBody(entryBadUTF8)...), ErrBadEntry},
		{"delta entry 513-byte key", frame(TypeDelta, 0, deltaBody(entryLongKey)...), ErrBadEntry},
		{"delta entry all-zero totals", frame(TypeDelta, 0, deltaBody(entryZero)...), ErrBadEntry},
		{"delta meta empty key", frame(TypeDelta, 0, deltaMetasBody(metaNoKey)...), ErrBadMeta},
		{"delta meta zero life", frame(TypeDelta, 0, deltaMetasBody(metaZero)...), ErrBadMeta},
		{"compressed bad meta", frame(TypeDelta, flagZstd, zstdAll(deltaMetasBody(metaOK, metaZero))...), ErrBadMeta},
		{"compressed bad entry", frame(TypeDelta, flagZstd, zstdAll(deltaBody(entryZero))...), ErrBadEntry},
		{"zstd garbage", frame(TypePush, flagZstd, []byte("this is not zstd at all")...), ErrBody},
		{"zstd magic then garbage", frame(TypePush, flagZstd, 0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff), ErrBody},
		{"zstd truncated", frame(TypePush, flagZstd, zstdAll(bytes.Repeat(entryOK, 200))[:20]...), ErrBody},
		{"zstd empty body", frame(TypePush, flagZstd), ErrBody},
		{"zstd without declared size", frame(TypeDelta, flagZstd, zstdRLEFrame(10, -1)...), ErrBody},
		{"zstd skippable frame", frame(TypeDelta, flagZstd, 0x50, 0x2a, 0x4d, 0x18, 0x00, 0x00, 0x00, 0x00), ErrBody},
		{"zstd bomb", frame(TypePush, flagZstd, zstdRLEFrame(MaxBody+1, MaxBody+1)...), ErrTooLarge},
		{"zstd valid, msgpack trailing", frame(TypeDigestAck, flagZstd, zstdAll([]byte{0x90, 0x90})...), ErrBody},
		{"array32 claiming 2^32-1 entries", frame(TypePush, 0, 0x92, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x90), ErrBody},
		{"nested too deep", frame(TypeDigestAck, 0, cat([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 100), []byte{0x90})...), ErrBody},
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range decodeErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(testCluster, tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode = %#v, %v; want %v", m, err, tc.err)
			}
			if m != nil {
				t.Fatalf("Decode returned a message with an error: %#v", m)
			}
		})
	}
}

// TestDecodeAccepts: inputs at the edge of validity decode.
func TestDecodeAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"512-byte key", frame(TypePush, 0, pushBody(entryMaxKey)...)},
		{"multi-byte key", frame(TypeDelta, 0, deltaBody([]byte{0x95, 0xa4, 0xf0, 0x9f, 0x98, 0x80, 0x01, 0x00, 0x00, 0x01})...)},
		{"only N set", frame(TypeDelta, 0, deltaBody([]byte{0x95, 0xa1, 'k', 0x01, 0x00, 0x00, 0x01})...)},
		{"meta: tombstone only", frame(TypeDelta, 0, deltaMetasBody(metaOK)...)},
		{"meta: deadline only", frame(TypePush, 0, pushMetasBody(metaTTLOnly)...)},
		{"meta: TTL version only", frame(TypePush, 0, pushMetasBody([]byte{0x95, 0xa1, 'k', 0x00, 0x01, 0x00, 0x00})...)},
		{"meta: negative times", frame(TypePush, 0, pushMetasBody([]byte{0x95, 0xa1, 'k', 0x00, 0x00, 0xff, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0})...)},
		{"meta: 512-byte key", frame(TypePush, 0, pushMetasBody(cat([]byte{0x95, 0xda, 0x02, 0x00}, bytes.Repeat([]byte{'k'}, 512), []byte{0x01, 0x00, 0x00, 0x05}))...)},
		{"entries and metas", frame(TypePush, 0, cat([]byte{0x93, 0x91}, entryOK, []byte{0x91}, metaOK, []byte{0x91, 0x07})...)},
		{"nil slices and fields", frame(TypeJoinAck, 0, 0x91, 0x91, 0x97, 0x01, 0xc0, 0xa1, 'a', 0xc0, 0xc0, 0xc0, 0xc0)},
		{"str8 for a short string", frame(TypeJoin, 0, 0x91, 0x97, 0x01, 0xd9, 0x01, 'n', 0xa1, 'a', 0xa0, 0x01, 0x01, 0x01)},
		{"bin for a string", frame(TypeJoin, 0, 0x91, 0x97, 0x01, 0xc4, 0x01, 'n', 0xa1, 'a', 0xa0, 0x01, 0x01, 0x01)},
		// msgpack/v5 truncates integers too large for the field.
		{"300 for a uint8", frame(TypeDelta, 0, 0x93, 0xc0, 0xc0, 0xcd, 0x01, 0x2c)},
		{"compressed small body", frame(TypeDelta, flagZstd, zstdAll(deltaBody(entryOK))...)},
		// msgpack/v5 converts a negative integer into an unsigned field.
		{"negative for uint64", frame(TypePush, 0, pushBody([]byte{0x95, 0xa1, 'k', 0xff, 0xff, 0x01, 0x00})...)},
		{"cluster of 64 bytes", nil},
		{"non-compact ints", frame(TypeDigestPull, 0, 0x91, 0x91, 0x92, 0xcd, 0x00, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x01)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := testCluster
			if tc.in == nil {
				cluster = strings.Repeat("c", 64)
				tc.in = cat([]byte{Version, byte(TypeDigestAck), 0, 64}, []byte(cluster), []byte{0x90})
			}
			m, err := Decode(cluster, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, cluster, m)
		})
	}
}

// allocated reports the bytes allocated while running f.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHugeLengthsFailFast: bodies whose headers claim far more elements or
// bytes than follow must fail without allocating for the claim. msgpack/v5
// alone preallocates the whole claimed slice (see checkBody).
func TestHugeLengthsFailFast(t *testing.T) {
	arr32 := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}
	arr16 := []byte{0xdc, 0xff, 0xff}
	map32 := []byte{0xdf, 0xff, 0xff, 0xff, 0xff}
	str32 := []byte{0xdb, 0xff, 0xff, 0xff, 0xff}
	bin32 := []byte{0xc6, 0xff, 0xff, 0xff, 0xff}
	ext32 := []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"push entries", frame(TypePush, 0, cat([]byte{0x93}, arr32, []byte{0x90, 0x90, 0x90})...)},
		{"push entries array16", frame(TypePush, 0, cat([]byte{0x93}, arr16, []byte{0x90, 0x90, 0x90})...)},
		{"push metas", frame(TypePush, 0, cat([]byte{0x93, 0xc0}, arr32, []byte{0x90, 0x90})...)},
		{"push want", frame(TypePush, 0, cat([]byte{0x93, 0xc0, 0xc0}, arr32, []byte{0x01})...)},
		{"delta entries", frame(TypeDelta, 0, cat([]byte{0x93}, arr32, []byte{0xc0, 0xc0})...)},
		{"delta metas", frame(TypeDelta, 0, cat([]byte{0x93, 0xc0}, arr32, []byte{0xc0})...)},
		{"digest_pull groups", frame(TypeDigestPull, 0, cat([]byte{0x91}, arr32, []byte{0x90})...)},
		{"digest_buckets groups", frame(TypeDigestBuckets, 0, cat([]byte{0x92}, arr32, []byte{0x01})...)},
		{"digest_buckets buckets", frame(TypeDigestBuckets, 0, cat([]byte{0x92, 0xc0}, arr32, []byte{0x90})...)},
		{"join_ack members", frame(TypeJoinAck, 0, cat([]byte{0x91}, arr32, []byte{0x90})...)},
		{"members members", frame(TypeMembers, 0, cat([]byte{0x91}, arr32, []byte{0x90})...)},
		{"struct as map32", frame(TypeMembers, 0, cat(map32, []byte{0xa1, 'x', 0x01})...)},
		{"key str32", frame(TypePush, 0, cat([]byte{0x93, 0x91, 0x95}, str32, []byte{'k'})...)},
		{"meta key str32", frame(TypePush, 0, cat([]byte{0x93, 0xc0, 0x91, 0x95}, str32, []byte{'k'})...)},
		{"name str32", frame(TypeJoin, 0, cat([]byte{0x91, 0x97, 0x01}, str32, []byte{'n'})...)},
		{"bin32 unknown field", frame(TypeDelta, 0, cat([]byte{0x81, 0xa1, 'x'}, bin32, []byte{0x01})...)},
		{"ext32 unknown field", frame(TypeDelta, 0, cat([]byte{0x81, 0xa1, 'x'}, ext32, []byte{0x01})...)},
		{"array32 inside skipped field", frame(TypeDelta, 0, cat([]byte{0x81, 0xa1, 'x'}, arr32, []byte{0x01})...)},
		{"compressed push entries", frame(TypePush, flagZstd, zstdAll(cat([]byte{0x93}, arr32, []byte{0x90, 0x90, 0x90}))...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Decode(testCluster, tc.in) })
			if !errors.Is(err, ErrBody) {
				t.Fatalf("Decode error = %v, want ErrBody", err)
			}
			if n > 256<<10 {
				t.Fatalf("Decode allocated %d bytes for a %d-byte message", n, len(tc.in))
			}
			if a := testing.AllocsPerRun(10, func() { _, _ = Decode(testCluster, tc.in) }); a > 20 {
				t.Fatalf("Decode made %.0f allocations", a)
			}
		})
	}
}

// TestDecodeMemoryPerByte: however a body is made, decoding it costs at most
// about ten bytes of memory per body byte. Each case is a compressed body of
// many smallest-possible slice elements (a few KB on the wire).
func TestDecodeMemoryPerByte(t *testing.T) {
	const n = 200_000
	arr32 := func(n int) []byte { return binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n)) }
	minEntry := []byte{0x95, 0xa1, 'k', 0x01, 0x00, 0x00, 0x00}
	minMeta := []byte{0x95, 0xa1, 'k', 0x00, 0x00, 0x00, 0x00}
	minMember := []byte{0x97, 0x00, 0xa0, 0xa0, 0xa0, 0x00, 0x00, 0x00}
	minHash := []byte{0x92, 0x00, 0x00}
	for _, tc := range []struct {
		name string
		typ  Type
		body []byte
		err  error
	}{
		{"members of nils", TypeMembers, cat([]byte{0x91}, arr32(n), bytes.Repeat([]byte{0xc0}, n)), ErrBody},
		{"members of empty arrays", TypeJoinAck, cat([]byte{0x91}, arr32(n), bytes.Repeat([]byte{0x90}, n)), ErrBody},
		{"members, smallest well-formed", TypeMembers, cat([]byte{0x91}, arr32(n), bytes.Repeat(minMember, n)), ErrBadMember},
		{"entries, smallest valid", TypeDelta, cat([]byte{0x93}, arr32(n), bytes.Repeat(minEntry, n), []byte{0xc0, 0x00}), ErrBadEntry},
		{"entries, smallest valid, one short", TypeDelta, cat([]byte{0x93}, arr32(n), bytes.Repeat(minEntry, n-1), []byte{0xc0, 0x00}), ErrBody},
		{"metas, smallest valid", TypeDelta, cat([]byte{0x93, 0xc0}, arr32(n), bytes.Repeat(minMeta, n), []byte{0x00}), ErrBadMeta},
		{"metas of nils", TypePush, cat([]byte{0x93, 0xc0}, arr32(n), bytes.Repeat([]byte{0xc0}, n), []byte{0xc0}), ErrBody},
		{"entries and metas, smallest valid", TypePush, cat([]byte{0x93}, arr32(n/2), bytes.Repeat(minEntry, n/2), arr32(n/2), bytes.Repeat(minMeta, n/2), []byte{0xc0}), ErrBadEntry},
		{"hashes, more than the groups", TypeDigestPull, cat([]byte{0x91}, arr32(n), bytes.Repeat(minHash, n)), ErrBadDigest},
		{"hashes of nils", TypeDigestPull, cat([]byte{0x91}, arr32(n), bytes.Repeat([]byte{0xc0}, n)), ErrBody},
		{"want, more than the buckets", TypePush, cat([]byte{0x93, 0xc0, 0xc0}, arr32(n), bytes.Repeat([]byte{0x01}, n)), ErrBadDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := frame(tc.typ, flagZstd, zstdAll(tc.body)...)
			var err error
			a := allocated(func() { _, err = Decode(testCluster, in) })
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode error = %v, want %v", err, tc.err)
			}
			t.Logf("%d-byte message, %d-byte body: %d bytes allocated (%.1f per body byte)", len(in), len(tc.body), a, float64(a)/float64(len(tc.body)))
			// The decompressed body itself, plus the decoded message.
			if limit := uint64(len(tc.body)) * 12; a > limit {
				t.Fatalf("a %d-byte message with a %d-byte body made Decode allocate %d bytes (%.1f per body byte)",
					len(in), len(tc.body), a, float64(a)/float64(len(tc.body)))
			}
		})
	}
}

// TestDeepNesting: a body nesting arrays millions deep in an ignored field of
// a map-encoded struct drove msgpack's recursive Skip past the 1 GB goroutine
// stack limit, a fatal error that kills the process; compressed, such a body
// is a few kilobytes. It must be refused instead.
func TestDeepNesting(t *testing.T) {
	const deep = MaxBody - 16 // 24 MiB overflowed the stack before checkBody
	body := cat([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, deep), []byte{0x90})
	small := cat([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 1000), []byte{0x90})
	for _, in := range [][]byte{
		frame(TypeDelta, flagZstd, zstdAll(body)...),
		frame(TypeDelta, 0, small...),
		frame(TypePush, 0, cat([]byte{0x93}, bytes.Repeat([]byte{0x91}, 1000), []byte{0x90, 0xc0, 0xc0})...),
	} {
		if _, err := Decode(testCluster, in); !errors.Is(err, ErrBody) {
			t.Fatalf("Decode error = %v, want ErrBody", err)
		}
	}
}

// zstdRLEFrame hand-builds a zstd frame of size zero bytes made of RLE blocks,
// declaring fcs as its content size when fcs >= 0. A few bytes per 128 KiB of
// output: a decompression bomb that costs nothing to build.
func zstdRLEFrame(size int, fcs int64) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if fcs >= 0 {
		// Frame_Header_Descriptor: 8-byte content size, single segment.
		b = append(b, 0xe0)
		b = binary.LittleEndian.AppendUint64(b, uint64(fcs))
	} else {
		// No content size; window descriptor: 2^(10+7) = 128 KiB.
		b = append(b, 0x00, 7<<3)
	}
	const maxBlock = 128 << 10
	for {
		n := min(size, maxBlock)
		size -= n
		h := uint32(n)<<3 | 1<<1 // RLE block
		if size == 0 {
			h |= 1 // last block
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0x00)
		if size == 0 {
			break
		}
	}
	return b
}

func TestZstdRLEFrameHelper(t *testing.T) {
	out, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, fcs := range []int64{-1, 300000} {
		got, err := out.DecodeAll(zstdRLEFrame(300000, fcs), nil)
		if err != nil || len(got) != 300000 || bytes.ContainsFunc(got, func(r rune) bool { return r != 0 }) {
			t.Fatalf("fcs %d: helper frame decodes to %d bytes, %v", fcs, len(got), err)
		}
	}
}

// errDecoded marks a case refused as ErrBody only after decompressing.
var errDecoded = errors.New("ErrBody, after decompressing")

// TestZstdBombSmallLimit checks the decompression limit with a 1 MiB limit,
// against bombs made by the real encoder and by hand.
func TestZstdBombSmallLimit(t *testing.T) {
	const limit = 1 << 20
	zd := newZstdDecoder(limit)
	defer zd.Close()

	stream := func(size int, declare bool) []byte {
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(limit))
		if err != nil {
			t.Fatal(err)
		}
		if declare {
			enc.ResetContentSize(&buf, int64(size))
		} else {
			enc.Reset(&buf)
		}
		zeros := make([]byte, 64<<10)
		for size > 0 {
			n := min(size, len(zeros))
			if _, err := enc.Write(zeros[:n]); err != nil {
				t.Fatal(err)
			}
			size -= n
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"EncodeAll of limit+1 zeros", zstdAll(make([]byte, limit+1)), ErrTooLarge},
		{"stream of 4*limit zeros, declared", stream(4*limit, true), ErrTooLarge},
		{"stream of 4*limit zeros, not declared", stream(4*limit, false), ErrBody},
		{"RLE, declared size limit+1", zstdRLEFrame(limit+1, limit+1), ErrTooLarge},
		{"RLE, declared size 2^62", zstdRLEFrame(0, 1<<62), ErrTooLarge},
		{"RLE, not declared", zstdRLEFrame(limit+1, -1), ErrBody},
		{"RLE, 1 GiB, not declared", zstdRLEFrame(1<<30, -1), ErrBody},
		// Its first 128 KiB block is larger than the declared size (which is
		// also the window of a single-segment frame).
		{"RLE, declared size lies low", zstdRLEFrame(2*limit, 1000), ErrTooLarge},
		{"RLE, declared size lies a little low", zstdRLEFrame(300<<10, 200<<10), errDecoded},
		{"RLE, declared size lies high", zstdRLEFrame(100, limit), ErrBody},
		{"two frames", cat(zstdAll(make([]byte, 300)), zstdAll(make([]byte, 300))), ErrBody},
		{"skippable frame", []byte{0x50, 0x2a, 0x4d, 0x18, 0x00, 0x00, 0x00, 0x00}, ErrBody},
		{"exactly the limit", zstdAll(make([]byte, limit)), nil},
		{"stream of exactly the limit, declared", stream(limit, true), nil},
		{"RLE exactly the limit, declared", zstdRLEFrame(limit, limit), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out []byte
			var err error
			n := allocated(func() { out, err = decompress(zd, tc.in, limit) })
			decoded := tc.err == nil || tc.err == errDecoded
			if tc.err == errDecoded {
				tc.err = ErrBody
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("decompress = %d bytes, %v; want %v", len(out), err, tc.err)
			}
			if tc.err == nil && len(out) != limit {
				t.Fatalf("decompress = %d bytes, want %d", len(out), limit)
			}
			// A refusal allocates nothing much; a success, the output plus
			// the decoder's block buffers.
			bound := uint64(64 << 10)
			if decoded {
				bound = limit + 512<<10
			}
			if n > bound {
				t.Fatalf("decompress allocated %d bytes (limit %d)", n, limit)
			}
		})
	}
}

// TestZstdBombMaxBody runs bombs through Decode itself, with the real
// MaxBody limit: all are refused from the frame header, before allocating.
func TestZstdBombMaxBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		err  error
	}{
		{"declared size beyond MaxBody", zstdRLEFrame(MaxBody+1, MaxBody+1), ErrTooLarge},
		{"1 GiB, not declared", zstdRLEFrame(1<<30, -1), ErrBody},
		{"declares MaxBody, holds 100 bytes", zstdRLEFrame(100, MaxBody), ErrBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := frame(TypePush, flagZstd, tc.body...)
			var err error
			n := allocated(func() { _, err = Decode(testCluster, in) })
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode error = %v, want %v", err, tc.err)
			}
			if n > 64<<10 {
				t.Fatalf("Decode allocated %d bytes to refuse a %d-byte bomb", n, len(in))
			}
		})
	}
	t.Run("exactly MaxBody", func(t *testing.T) {
		if testing.Short() {
			t.Skip("decompresses MaxBody bytes")
		}
		// Decompressed (one allocation of MaxBody), then refused as msgpack:
		// a zero byte followed by trailing bytes.
		in := frame(TypePush, flagZstd, zstdRLEFrame(MaxBody, MaxBody)...)
		var err error
		n := allocated(func() { _, err = Decode(testCluster, in) })
		if !errors.Is(err, ErrBody) {
			t.Fatalf("Decode error = %v, want ErrBody", err)
		}
		if n > MaxBody+1<<20 {
			t.Fatalf("Decode allocated %d bytes for a body of MaxBody", n)
		}
	})
}

func TestCheckBodyDepth(t *testing.T) {
	nest := func(depth int) []byte {
		return cat(bytes.Repeat([]byte{0x91}, depth-1), []byte{0x91, 0x01})
	}
	if err := checkBody(nest(maxDepth)); err != nil {
		t.Fatalf("depth %d: %v", maxDepth, err)
	}
	if err := checkBody(nest(maxDepth + 1)); err == nil {
		t.Fatalf("depth %d accepted", maxDepth+1)
	}
	// Empty containers do not count as a level.
	if err := checkBody(cat(bytes.Repeat([]byte{0x91}, maxDepth), []byte{0x90})); err != nil {
		t.Fatalf("empty container at depth %d: %v", maxDepth+1, err)
	}
	// Depth is per path, not cumulative over siblings.
	wide := []byte{0x9f}
	for range 15 {
		wide = append(wide, nest(maxDepth-1)...)
	}
	if err := checkBody(wide); err != nil {
		t.Fatalf("wide body: %v", err)
	}
	if err := checkBody([]byte{0x92, 0x01}); err == nil {
		t.Fatal("array missing an element accepted")
	}
	if err := checkBody([]byte{0x82, 0x01, 0x01, 0x01}); err == nil {
		t.Fatal("map missing a value accepted")
	}
	if err := checkBody([]byte{math.MaxUint8}); err != nil {
		t.Fatalf("negative fixint: %v", err)
	}
}

func TestMemberLimits(t *testing.T) {
	ok := Member{ID: 1, Name: strings.Repeat("n", MaxMemberName), GossipAddr: strings.Repeat("a", MaxMemberAddr), HTTPAddr: "h:1"}
	for _, tc := range []struct {
		name string
		m    Message
		err  error
	}{
		{"at the limits", &Join{Self: ok}, nil},
		{"zero id", &Join{Self: Member{GossipAddr: "a:1"}}, ErrBadMember},
		{"no gossip address", &Members{Members: []Member{{ID: 1}}}, ErrBadMember},
		{"long name", &JoinAck{Members: []Member{{ID: 1, GossipAddr: "a:1", Name: strings.Repeat("n", MaxMemberName+1)}}}, ErrBadMember},
		{"long address", &Members{Members: []Member{{ID: 1, GossipAddr: strings.Repeat("a", MaxMemberAddr+1)}}}, ErrBadMember},
		{"long http address", &Members{Members: []Member{{ID: 1, GossipAddr: "a:1", HTTPAddr: strings.Repeat("h", MaxMemberAddr+1)}}}, ErrBadMember},
		{"too many", &Members{Members: make([]Member, MaxMembers+1)}, ErrBadMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(testCluster, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(testCluster, b); !errors.Is(err, tc.err) {
				t.Fatalf("Decode error = %v, want %v", err, tc.err)
			}
		})
	}
}
