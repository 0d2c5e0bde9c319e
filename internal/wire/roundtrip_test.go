package wire

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// roundTrip checks that m survives Encode and Decode unchanged.
func roundTrip(t testing.TB, cluster string, m Message) {
	t.Helper()
	b, err := Encode(cluster, m)
	if err != nil {
		t.Fatalf("Encode(%v): %v", m.Type(), err)
	}
	got, err := Decode(cluster, b)
	if err != nil {
		t.Fatalf("Decode(Encode(%v)): %v", m.Type(), err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip changed the message:\n got %#v\nwant %#v", got, m)
	}
}

// gen makes random messages of every type.
type gen struct{ r *rand.Rand }

func (g gen) u64() uint64 {
	switch g.r.IntN(4) {
	case 0:
		return uint64(g.r.IntN(200))
	case 1:
		return []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}[g.r.IntN(11)]
	}
	return g.r.Uint64()
}

// count picks a slice length, mostly small, sometimes large enough for the
// body to pass CompressThreshold.
func (g gen) count() int {
	if g.r.IntN(8) == 0 {
		return 50 + g.r.IntN(400)
	}
	return g.r.IntN(6)
}

// slice returns nil or an empty non-nil slice for 0: both must survive.
func slice[T any](g gen, n int, f func() T) []T {
	if n == 0 {
		if g.r.IntN(2) == 0 {
			return nil
		}
		return []T{}
	}
	out := make([]T, n)
	for i := range out {
		out[i] = f()
	}
	return out
}

func (g gen) key() string {
	var sb strings.Builder
	n := 1 + g.r.IntN(24)
	if g.r.IntN(20) == 0 {
		n = 400 + g.r.IntN(200)
	}
	for sb.Len() < n {
		var r rune
		switch g.r.IntN(4) {
		case 0:
			r = rune(0x80 + g.r.IntN(0x10ff80))
			if !utf8.ValidRune(r) {
				r = 'x'
			}
		default:
			r = rune(' ' + g.r.IntN(95))
		}
		if sb.Len()+utf8.RuneLen(r) > 512 {
			break
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// str is any byte string: msgpack strings are not checked for UTF-8.
func (g gen) str() string {
	b := make([]byte, g.r.IntN(40))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return string(b)
}

func (g gen) entry() Entry {
	e := Entry{Key: g.key(), Replica: g.u64(), Gen: g.u64(), P: g.u64(), N: g.u64()}
	if e.P == 0 && e.N == 0 {
		e.N = 1
	}
	return e
}

func (g gen) meta() Meta {
	m := Meta{Key: g.key(), Gen: g.u64(), TTLVer: g.u64(), Deadline: int64(g.u64()), Deleted: int64(g.u64())}
	if m.isZero() {
		m.Gen = 1
	}
	return m
}

func (g gen) hash() Hash { return Hash{Index: uint16(g.u64()), Hash: g.u64()} }

func (g gen) u16() uint16 { return uint16(g.u64()) }

func (g gen) member() Member {
	return Member{ID: g.u64() | 1, Name: g.str(), GossipAddr: g.str() + ":1", HTTPAddr: g.str(),
		Incarnation: g.u64(), Heartbeat: g.u64(), State: uint8(g.u64())}
}

func (g gen) message(typ Type) Message {
	switch typ {
	case TypePush:
		return &Push{Entries: slice(g, g.count(), g.entry), Metas: slice(g, g.count(), g.meta), Want: slice(g, g.count(), g.u16)}
	case TypeDigestPull:
		return &DigestPull{Groups: slice(g, min(g.count(), 256), func() Hash { h := g.hash(); h.Index %= 256; return h })}
	case TypeDigestAck:
		return &DigestAck{}
	case TypeDigestBuckets:
		return &DigestBuckets{Groups: slice(g, min(g.count(), 256), func() uint16 { return g.u16() % 256 }), Buckets: slice(g, g.count(), g.hash)}
	case TypeDelta:
		return &Delta{Entries: slice(g, g.count(), g.entry), Metas: slice(g, g.count(), g.meta), Hops: uint8(g.u64())}
	case TypeJoin:
		return &Join{Self: g.member()}
	case TypeJoinAck:
		return &JoinAck{Members: slice(g, g.count(), g.member)}
	case TypeMembers:
		return &Members{Members: slice(g, g.count(), g.member)}
	}
	panic(fmt.Sprintf("no generator for %v", typ))
}

func TestRoundTripRandom(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(7, 7))}
	compressed := map[Type]int{}
	for i := range 3000 {
		typ := TypePush + Type(i%int(TypeMembers))
		m := g.message(typ)
		cluster := testCluster
		if i%5 == 0 {
			cluster = strings.Repeat("z", 1+g.r.IntN(MaxClusterLen))
		}
		roundTrip(t, cluster, m)
		if b, _ := Encode(cluster, m); b[2] == flagZstd {
			compressed[typ]++
		}
	}
	for _, typ := range []Type{TypePush, TypeDigestPull, TypeDigestBuckets, TypeDelta, TypeJoinAck, TypeMembers} {
		if compressed[typ] == 0 {
			t.Errorf("no %v message took the compressed path", typ)
		}
	}
}

// TestDecodeOtherClusterRefused: the error names the foreign cluster, for the log.
func TestDecodeOtherClusterRefused(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(8, 8))}
	for typ := TypePush; typ <= TypeMembers; typ++ {
		b, err := Encode("cluster-a", g.message(typ))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode("cluster-b", b); err == nil || !strings.Contains(err.Error(), "cluster-a") {
			t.Fatalf("%v from another cluster: %v", typ, err)
		}
	}
}

// TestConcurrentCodec runs Encode and Decode from many goroutines: the zstd
// coders and buffer pools are shared.
func TestConcurrentCodec(t *testing.T) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gen{rand.New(rand.NewPCG(uint64(w), 99))}
			for i := range 100 {
				var m Message = bigPush(100 + w)
				if i%2 == 0 {
					m = g.message(TypePush + Type(i%int(TypeMembers)))
				}
				b, err := Encode(testCluster, m)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := Decode(testCluster, b)
				if err != nil {
					t.Error(err)
					return
				}
				if !reflect.DeepEqual(got, m) {
					t.Error("concurrent round trip changed a message")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// fill sets every exported field reachable from v to a non-zero value, so
// that a field the hand-written decoder forgot cannot go unnoticed.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		fill(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		v.SetString("s")
	case reflect.Uint8, reflect.Uint16, reflect.Uint64:
		v.SetUint(7)
	case reflect.Int64:
		v.SetInt(-7)
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

func TestRoundTripAllFieldsSet(t *testing.T) {
	for typ := TypePush; typ <= TypeMembers; typ++ {
		m := newBody(typ)
		fill(reflect.ValueOf(m))
		roundTrip(t, testCluster, m)
	}
}
