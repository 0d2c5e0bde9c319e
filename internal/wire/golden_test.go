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
	goldenEntryBig = Entry{Key: "ключ", Replica: math.MaxUint64, Gen: 1 << 40, P: math.MaxUint64, N: 1 << 32}
	// A tombstone (generation 1, deleted at goldenSentAt) and an expiring
	// generation with extreme values.
	goldenMetaTomb = Meta{Key: "default", Gen: 1, Deleted: goldenSentAt}
	goldenMetaBig  = Meta{Key: "ключ", Gen: math.MaxUint64, TTLVer: 300, Deadline: math.MaxInt64, Deleted: -1}
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
	// Push: [Entries, Metas, Want]; Entry: [Key, Replica, Gen, P, N];
	// Meta: [Key, Gen, TTLVer, Deadline, Deleted].
	{"push/empty", &Push{},
		"0201000864636f756e74657293c0c0c0"},
	{"push/empty-non-nil", &Push{Entries: []Entry{}, Metas: []Meta{}, Want: []uint16{}},
		"0201000864636f756e74657293909090"},
	{"push/one", &Push{Entries: []Entry{goldenEntry}},
		"0201000864636f756e746572939195a764656661756c74cf0123456789abcdef000503c0c0"},
	{"push/meta-only", &Push{Metas: []Meta{goldenMetaTomb}},
		"0201000864636f756e74657293c09195a764656661756c74010000cf0000019ac7c27000c0"},
	{"push/want", &Push{Entries: []Entry{goldenEntry, goldenEntryBig}, Metas: []Meta{goldenMetaTomb, goldenMetaBig}, Want: []uint16{0, 127, 128, 255, 256, 65535}},
		"0201000864636f756e746572939295a764656661756c74cf0123456789abcdef00050395a8d0bad0bbd18ed187cfffffffffffffffffcf0000010000000000cfffffffffffffffffcf00000001000000009295a764656661756c74010000cf0000019ac7c2700095a8d0bad0bbd18ed187cfffffffffffffffffcd012ccf7fffffffffffffffff96007fcc80ccffcd0100cdffff"},
	// DigestPull
	{"digest_pull/empty", &DigestPull{},
		"0202000864636f756e74657291c0"},
	{"digest_pull/groups", &DigestPull{Groups: []Hash{{Index: 0, Hash: 1}, {Index: 200, Hash: 0x8000000000000000}, {Index: 255, Hash: math.MaxUint64}}},
		"0202000864636f756e746572919392000192ccc8cf800000000000000092ccffcfffffffffffffffff"},
	// DigestAck
	{"digest_ack", &DigestAck{},
		"0203000864636f756e74657290"},
	// DigestBuckets
	{"digest_buckets/empty", &DigestBuckets{},
		"0205000864636f756e74657292c0c0"},
	{"digest_buckets/one-group", &DigestBuckets{Groups: []uint16{7}, Buckets: []Hash{{Index: 0x0700, Hash: 0xdeadbeef}, {Index: 0x07ff, Hash: 1}}},
		"0205000864636f756e7465729291079292cd0700cedeadbeef92cd07ff01"},
	// Delta: [Entries, Metas, Hops]
	{"delta/one", &Delta{Entries: []Entry{goldenEntry}, Hops: 0},
		"0204000864636f756e746572939195a764656661756c74cf0123456789abcdef000503c000"},
	{"delta/meta-only", &Delta{Metas: []Meta{goldenMetaTomb}, Hops: 1},
		"0204000864636f756e74657293c09195a764656661756c74010000cf0000019ac7c2700001"},
	{"delta/two-hops-max", &Delta{Entries: []Entry{goldenEntry, goldenEntryBig}, Metas: []Meta{goldenMetaBig}, Hops: 255},
		"0204000864636f756e746572939295a764656661756c74cf0123456789abcdef00050395a8d0bad0bbd18ed187cfffffffffffffffffcf0000010000000000cfffffffffffffffffcf00000001000000009195a8d0bad0bbd18ed187cfffffffffffffffffcd012ccf7fffffffffffffffffccff"},
	// Join
	{"join", &Join{Self: goldenMember, SentAt: goldenSentAt},
		"0206000864636f756e7465729297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"join/minimal", &Join{Self: Member{ID: 1, GossipAddr: "a:1"}},
		"0206000864636f756e746572929701a0a3613a31a000000000"},
	// JoinAck
	{"join_ack/empty", &JoinAck{},
		"0207000864636f756e74657292c000"},
	{"join_ack/two", &JoinAck{Members: []Member{goldenMember, goldenMember2}, SentAt: -1},
		"0207000864636f756e746572929297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e8019702a26e32aa5b3a3a315d3a37303030a0000002ff"},
	// Members
	{"members/one", &Members{Members: []Member{goldenMember}, SentAt: goldenSentAt},
		"0208000864636f756e746572929197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"members/empty-non-nil", &Members{Members: []Member{}},
		"0208000864636f756e746572929000"},
}

// goldenSentAt is 2026-11-28T00:00:00Z in Unix milliseconds.
const goldenSentAt = 1_764_288_000_000

// legacyGolden holds the member messages without their appended SentAt,
// as builds before SentAt was appended sent them (under version 1; the
// version byte here is 2). No version-2 build sends the shorter form, but
// decoders still accept it (SentAt zero). DO NOT EDIT.
var legacyGolden = []golden{
	// Join
	{"join", &Join{Self: goldenMember},
		"0206000864636f756e7465729197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801"},
	{"join/minimal", &Join{Self: Member{ID: 1, GossipAddr: "a:1"}},
		"0206000864636f756e746572919701a0a3613a31a0000000"},
	// JoinAck
	{"join_ack/empty", &JoinAck{},
		"0207000864636f756e74657291c0"},
	{"join_ack/two", &JoinAck{Members: []Member{goldenMember, goldenMember2}},
		"0207000864636f756e746572919297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e8019702a26e32aa5b3a3a315d3a37303030a0000002"},
	// Members
	{"members/one", &Members{Members: []Member{goldenMember}},
		"0208000864636f756e746572919197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801"},
	{"members/empty-non-nil", &Members{Members: []Member{}},
		"0208000864636f756e7465729190"},
}

// version1Golden is goldenTable as version-1 builds encoded it, frozen
// when version 2 replaced it. Every one must be refused with ErrVersion:
// the upgrade to version 2 is a full restart (see the package doc). DO NOT
// EDIT.
var version1Golden = []struct{ name, hex string }{
	{"push/empty", "0101000864636f756e74657292c0c0"},
	{"push/empty-non-nil", "0101000864636f756e746572929090"},
	{"push/one", "0101000864636f756e746572929194a764656661756c74cf0123456789abcdef0503c0"},
	{"push/want", "0101000864636f756e746572929294a764656661756c74cf0123456789abcdef050394a8d0bad0bbd18ed187cfffffffffffffffffcfffffffffffffffffcf000000010000000096007fcc80ccffcd0100cdffff"},
	{"digest_pull/empty", "0102000864636f756e74657291c0"},
	{"digest_pull/groups", "0102000864636f756e746572919392000192ccc8cf800000000000000092ccffcfffffffffffffffff"},
	{"digest_ack", "0103000864636f756e74657290"},
	{"digest_buckets/empty", "0105000864636f756e74657292c0c0"},
	{"digest_buckets/one-group", "0105000864636f756e7465729291079292cd0700cedeadbeef92cd07ff01"},
	{"delta/one", "0104000864636f756e746572929194a764656661756c74cf0123456789abcdef050300"},
	{"delta/two-hops-max", "0104000864636f756e746572929294a764656661756c74cf0123456789abcdef050394a8d0bad0bbd18ed187cfffffffffffffffffcfffffffffffffffffcf0000000100000000ccff"},
	{"join", "0106000864636f756e7465729297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"join/minimal", "0106000864636f756e746572929701a0a3613a31a000000000"},
	{"join_ack/empty", "0107000864636f756e74657292c000"},
	{"join_ack/two", "0107000864636f756e746572929297cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e8019702a26e32aa5b3a3a315d3a37303030a0000002ff"},
	{"members/one", "0108000864636f756e746572929197cffeedfacecafebeefa66e6f64652d31ad31302e302e302e313a37393436ad31302e302e302e313a3830383003cd03e801cf0000019ac7c27000"},
	{"members/empty-non-nil", "0108000864636f756e746572929000"},
}

func TestVersion1Refused(t *testing.T) {
	for _, g := range version1Golden {
		t.Run(g.name, func(t *testing.T) {
			b := mustHex(t, g.hex)
			if b[0] != 1 {
				t.Fatalf("version byte %d, want 1", b[0])
			}
			m, err := Decode(testCluster, b)
			if !errors.Is(err, ErrVersion) || m != nil {
				t.Fatalf("Decode = %#v, %v; want ErrVersion", m, err)
			}
			// The same bytes under the current version byte do not decode
			// as the message they were either: entries and Push/Delta
			// changed shape.
			b[0] = Version
			if m, err := Decode(testCluster, b); err == nil && (m.Type() == TypePush || m.Type() == TypeDelta) {
				t.Fatalf("version-1 %v body decodes under version %d: %#v", m.Type(), Version, m)
			}
		})
	}
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
	if Version != 2 || CompressThreshold != 1024 || MaxClusterLen != 64 {
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
		p.Entries = append(p.Entries, Entry{Key: fmt.Sprintf("counter-%05d", i), Replica: 0x0123456789abcdef, Gen: uint64(i % 3), P: uint64(i) * 3, N: uint64(i) + 1})
		if i%3 != 0 {
			p.Metas = append(p.Metas, Meta{Key: fmt.Sprintf("counter-%05d", i), Gen: uint64(i % 3), TTLVer: 1, Deadline: goldenSentAt + int64(i)})
		}
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
	if got, want := hex.EncodeToString(b[:12]), "0201010864636f756e746572"; got != want {
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
	c := crdt.Contents{
		Entries: []crdt.Entry{{Key: "a", Replica: 1, P: 2, N: 3}, {Key: "b", Replica: math.MaxUint64, Gen: math.MaxUint64, P: math.MaxUint64}},
		Metas: []crdt.Meta{
			{Key: "a", Life: crdt.Life{Gen: 1, Deleted: 5}},
			{Key: "b", Life: crdt.Life{Gen: math.MaxUint64, TTL: crdt.TTL{Ver: 3, Deadline: math.MinInt64}, Deleted: math.MaxInt64}},
		},
	}
	if got := ToContents(FromContents(c)); !reflect.DeepEqual(got, c) {
		t.Fatalf("ToContents(FromContents) = %+v", got)
	}
	if es, ms := FromContents(crdt.Contents{}); len(es) != 0 || len(ms) != 0 {
		t.Fatal("FromContents of nothing is not empty")
	}
	if got := ToContents(nil, nil); got.Len() != 0 {
		t.Fatal("ToContents of nothing is not empty")
	}
	// Field by field, so that a field added to either side is noticed.
	e := crdt.Entry{Key: "k", Replica: 1, Gen: 2, P: 3, N: 4}
	if w := FromEntry(e); w != (Entry{Key: "k", Replica: 1, Gen: 2, P: 3, N: 4}) || w.ToEntry() != e {
		t.Fatalf("entry conversion: %+v", w)
	}
	m := crdt.Meta{Key: "k", Life: crdt.Life{Gen: 1, TTL: crdt.TTL{Ver: 2, Deadline: 3}, Deleted: 4}}
	if w := FromMeta(m); w != (Meta{Key: "k", Gen: 1, TTLVer: 2, Deadline: 3, Deleted: 4}) || w.ToMeta() != m {
		t.Fatalf("meta conversion: %+v", w)
	}
	hs := []crdt.Hash{{Index: 0, Hash: 1}, {Index: 65535, Hash: math.MaxUint64}}
	if got := ToHashes(FromHashes(hs)); !reflect.DeepEqual(got, hs) {
		t.Fatalf("ToHashes(FromHashes) = %+v", got)
	}
	if len(FromHashes(nil)) != 0 || len(ToHashes(nil)) != 0 {
		t.Fatal("conversions of nil are not empty")
	}
}
