package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Fixed values used by the golden tables.
var (
	goldenEntry    = Entry{Key: "default", Replica: 0x0123456789abcdef, P: 5, N: 3}
	goldenEntryBig = Entry{Key: "ключ", Replica: math.MaxUint64, P: math.MaxUint64, N: 1 << 32}
	goldenMember   = Member{
		ID: 0xfeedfacecafebeef, Name: "node-1", GossipAddr: "10.0.0.1:7946",
		HTTPAddr: "10.0.0.1:8080", Incarnation: 3, Heartbeat: 1000, State: 1,
	}
	goldenMember2 = Member{ID: 2, Name: "n2", GossipAddr: "[::1]:7000", HTTPAddr: "", State: 2}
)

type golden struct {
	name string
	msg  Message
	hex  string
}

// goldenTable is the frozen wire format for cluster "dcounter".
//
// DO NOT EDIT these hex strings to make a test pass. They pin the bytes that
// nodes of different builds exchange; if one has to change, the wire format
// has changed and Version (or the message type) must change with it.
var goldenTable = []golden{
	// Push
	{"push/empty", &Push{},
		"0101000864636f756e74657292c0c0"},
	{"push/empty-non-nil", &Push{Entries: []Entry{}, Want: []uint16{}},
		"0101000864636f756e746572929090"},
	{"push/one", &Push{Entries: []Entry{goldenEntry}},
		"0101000864636f756e746572929194a764656661756c74cf0123456789abcdef0503c0"},
	{"push/want", &Push{Entries: []Entry{goldenEntry, goldenEntryBig}, Want: []uint16{0, 127, 128, 255, 256, 65535}},
		"0101000864636f756e746572929294a764656661756c74cf0123456789abcdef050394a8d0bad0bbd18ed187cfffffffffffffffffcfffffffffffffffffcf000000010000000096007fcc80ccffcd0100cdffff"},
	// DigestPull
	{"digest_pull/empty", &DigestPull{},
		"0102000864636f756e74657291c0"},
	{"digest_pull/groups", &DigestPull{Groups: []Hash{{Index: 0, Hash: 1}, {Index: 200, Hash: 0x8000000000000000}, {Index: 255, Hash: math.MaxUint64}}},
		"0102000864636f756e746572919392000192ccc8cf800000000000000092ccffcfffffffffffffffff"},
	// DigestAck
	{"digest_ack", &DigestAck{},
		"0103000864636f756e74657290"},
	// DigestBuckets
	{"digest_buckets/empty", &DigestBuckets{},
		"0105000864636f756e74657292c0c0"},
	{"digest_buckets/one-group", &DigestBuckets{Groups: []uint16{7}, Buckets: []Hash{{Index: 0x0700, Hash: 0xdeadbeef}, {Index: 0x07ff, Hash: 1}}},
		"0105000864636f756e7465729291079292cd0700cedeadbeef92cd07ff01"},
	// Delta
	{"delta/one", &Delta{Entries: []Entry{goldenEntry}, Hops: 0},
		"0104000864636f756e746572929194a764656661756c74cf0123456789abcdef050300"},
	{"delta/two-hops-max", &Delta{Entries: []Entry{goldenEntry, goldenEntryBig}, Hops: 255},
		"0104000864636f756e746572929294a764656661756c74cf0123456789abcdef050394a8d0bad0bbd18ed187cfffffffffffffffffcfffffffffffffffffcf0000000100000000ccff"},
	// Join
	{"join", &Join{Self: goldenMember, SentAt: goldenSentAt},
		"0106000864636f756e7465729297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"join/minimal", &Join{Self: Member{ID: 1, GossipAddr: "a:1"}},
		"0106000864636f756e746572929701a0a3613a31a000000000"},
	// JoinAck
	{"join_ack/empty", &JoinAck{},
		"0107000864636f756e74657292c000"},
	{"join_ack/two", &JoinAck{Members: []Member{goldenMember, goldenMember2}, SentAt: -1},
		"0107000864636f756e746572929297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e8019702a26e32aa5b3a3a315d3a37303030a0000002ff"},
	// Members
	{"members/one", &Members{Members: []Member{goldenMember}, SentAt: goldenSentAt},
		"0108000864636f756e746572929197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"members/empty-non-nil", &Members{Members: []Member{}},
		"0108000864636f756e746572929000"},
}

// goldenSentAt is 2026-11-28T00:00:00Z in Unix milliseconds.
const goldenSentAt = 1_764_288_000_000

// legacyGolden holds the member messages as builds before SentAt was
// appended send them. They must keep decoding (SentAt zero). DO NOT EDIT.
var legacyGolden = []golden{
	// Join
	{"join", &Join{Self: goldenMember},
		"0106000864636f756e7465729197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801"},
	{"join/minimal", &Join{Self: Member{ID: 1, GossipAddr: "a:1"}},
		"0106000864636f756e746572919701a0a3613a31a0000000"},
	// JoinAck
	{"join_ack/empty", &JoinAck{},
		"0107000864636f756e74657291c0"},
	{"join_ack/two", &JoinAck{Members: []Member{goldenMember, goldenMember2}},
		"0107000864636f756e746572919297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e8019702a26e32aa5b3a3a315d3a37303030a0000002"},
	// Members
	{"members/one", &Members{Members: []Member{goldenMember}},
		"0108000864636f756e746572919197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801"},
	{"members/empty-non-nil", &Members{Members: []Member{}},
		"0108000864636f756e7465729190"},
}

func TestLegacyMemberMessagesDecode(t *testing.T) {
	for _, g := range legacyGolden {
		t.Run(g.name, func(t *testing.T) {
			m, err := Decode(testCluster, mustHex(t, g.hex))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, g.msg) {
				t.Fatalf("Decode = %#v, want %#v", m, g.msg)
			}
		})
	}
}

const testCluster = "dcounter"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	covered := map[Type]bool{}
	for _, g := range goldenTable {
		t.Run(g.name, func(t *testing.T) {
			covered[g.msg.Type()] = true
			b, err := Encode(testCluster, g.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != g.hex {
				t.Fatalf("Encode changed the wire format (needs a protocol version bump):\n got %s\nwant %s", got, g.hex)
			}
			if b[0] != Version || Type(b[1]) != g.msg.Type() || b[2] != 0 || int(b[3]) != len(testCluster) || string(b[4:4+len(testCluster)]) != testCluster {
				t.Fatalf("bad header % x", b[:4+len(testCluster)])
			}
			m, err := Decode(testCluster, mustHex(t, g.hex))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, g.msg) {
				t.Fatalf("Decode = %#v, want %#v", m, g.msg)
			}
		})
	}
	for typ := TypePush; typ <= TypeMembers; typ++ {
		if !covered[typ] {
			t.Errorf("no golden case for %v", typ)
		}
	}
}

// TestTypeNumbers pins the message type numbers: they are on the wire and the
// list is append-only.
func TestTypeNumbers(t *testing.T) {
	for _, tc := range []struct {
		typ  Type
		num  uint8
		name string
	}{
		{TypePush, 1, "push"},
		{TypeDigestPull, 2, "digest_pull"},
		{TypeDigestAck, 3, "digest_ack"},
		{TypeDelta, 4, "delta"},
		{TypeDigestBuckets, 5, "digest_buckets"},
		{TypeJoin, 6, "join"},
		{TypeJoinAck, 7, "join_ack"},
		{TypeMembers, 8, "members"},
	} {
		if uint8(tc.typ) != tc.num || tc.typ.String() != tc.name {
			t.Errorf("type %v = %d, want %s = %d", tc.typ, uint8(tc.typ), tc.name, tc.num)
		}
		if m := newBody(tc.typ); m == nil || m.Type() != tc.typ {
			t.Errorf("newBody(%v) = %T", tc.typ, m)
		}
	}
	if Version != 1 || CompressThreshold != 1024 || MaxClusterLen != 64 {
		t.Error("a wire constant changed: that needs a protocol version bump")
	}
	if got := Type(200).String(); got != "type(200)" {
		t.Errorf("Type(200).String() = %q", got)
	}
}

// bigPush returns a Push whose body is well above CompressThreshold.
func bigPush(n int) *Push {
	p := &Push{Want: []uint16{1, 2, 3}}
	for i := range n {
		p.Entries = append(p.Entries, Entry{Key: fmt.Sprintf("counter-%05d", i), Replica: 0x0123456789abcdef, P: uint64(i) * 3, N: uint64(i) + 1})
	}
	return p
}

func TestCompressed(t *testing.T) {
	p := bigPush(200)
	b, err := Encode(testCluster, p)
	if err != nil {
		t.Fatal(err)
	}
	// The zstd output may change with the library version, so only the
	// header is frozen here.
	if got, want := hex.EncodeToString(b[:12]), "0101010864636f756e746572"; got != want {
		t.Fatalf("header %s, want %s", got, want)
	}
	if b[2] != flagZstd {
		t.Fatalf("flags = %#x, want zstd", b[2])
	}
	if !bytes.Equal(b[12:16], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("body does not start with the zstd magic: % x", b[12:16])
	}
	var h zstd.Header
	if err := h.Decode(b[12:]); err != nil || !h.HasFCS || h.FrameContentSize < CompressThreshold {
		t.Fatalf("zstd frame must declare its content size: %+v, %v", h, err)
	}
	if len(b) > 4000 {
		t.Errorf("compressed message is %d bytes: not compressed?", len(b))
	}
	m, err := Decode(testCluster, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, p) {
		t.Fatal("compressed round trip changed the message")
	}
}

// TestCompressThreshold: a body of CompressThreshold-1 bytes goes as is, one
// of CompressThreshold bytes is compressed; both round-trip.
func TestCompressThreshold(t *testing.T) {
	// Four members with names of 32-255 bytes (str8). Body: fixarray(2),
	// fixarray(4), then per member fixarray(7) 0x01 str8(2+L) "a:1"(4) ""(1)
	// 0 0 0 = L + 12 bytes, then SentAt 0: 3 + 48 + total name bytes.
	join := func(nameLen int) *Members {
		m := &Members{}
		for i := 0; i < 4; i++ {
			l := nameLen / 4
			if i < nameLen%4 {
				l++
			}
			m.Members = append(m.Members, Member{ID: 1, Name: strings.Repeat("n", l), GossipAddr: "a:1"})
		}
		return m
	}
	headerSize := 4 + len(testCluster)
	for _, tc := range []struct {
		nameLen    int
		compressed bool
	}{
		{CompressThreshold - 52, false},
		{CompressThreshold - 51, true},
	} {
		m := join(tc.nameLen)
		b, err := Encode(testCluster, m)
		if err != nil {
			t.Fatal(err)
		}
		if got := b[2] == flagZstd; got != tc.compressed {
			t.Fatalf("name %d bytes: compressed = %v, want %v", tc.nameLen, got, tc.compressed)
		}
		if !tc.compressed && len(b)-headerSize != CompressThreshold-1 {
			t.Fatalf("test setup: body is %d bytes, want %d", len(b)-headerSize, CompressThreshold-1)
		}
		got, err := Decode(testCluster, b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatal("round trip changed the message")
		}
	}
}

func TestEncodeClusterNames(t *testing.T) {
	for _, tc := range []struct {
		cluster string
		ok      bool
	}{
		{"", false},
		{"a", true},
		{strings.Repeat("c", MaxClusterLen), true},
		{strings.Repeat("c", MaxClusterLen+1), false},
	} {
		b, err := Encode(tc.cluster, &DigestAck{})
		if tc.ok != (err == nil) {
			t.Fatalf("Encode(cluster of %d bytes) = %v", len(tc.cluster), err)
		}
		if err != nil {
			if !errors.Is(err, ErrBadClusterLen) {
				t.Fatalf("error %v is not ErrBadClusterLen", err)
			}
			continue
		}
		if _, err := Decode(tc.cluster, b); err != nil {
			t.Fatalf("Decode(cluster of %d bytes): %v", len(tc.cluster), err)
		}
	}
}

func TestConversions(t *testing.T) {
	es := []crdt.Entry{{Key: "a", Replica: 1, P: 2, N: 3}, {Key: "b", Replica: math.MaxUint64, P: math.MaxUint64}}
	if got := ToCRDT(FromCRDT(es)); !reflect.DeepEqual(got, es) {
		t.Fatalf("ToCRDT(FromCRDT) = %+v", got)
	}
	hs := []crdt.Hash{{Index: 0, Hash: 1}, {Index: 65535, Hash: math.MaxUint64}}
	if got := ToHashes(FromHashes(hs)); !reflect.DeepEqual(got, hs) {
		t.Fatalf("ToHashes(FromHashes) = %+v", got)
	}
	if len(FromCRDT(nil)) != 0 || len(ToCRDT(nil)) != 0 || len(FromHashes(nil)) != 0 || len(ToHashes(nil)) != 0 {
		t.Fatal("conversions of nil are not empty")
	}
}
