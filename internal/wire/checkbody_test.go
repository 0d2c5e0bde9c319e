package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// randomValue returns a random Go value whose msgpack encoding uses every
// format family: ints and floats of each width, str/bin/array/map with 8- and
// 16-bit lengths, nil, bools and extensions (time.Time). bigValues has the
// 32-bit lengths.
func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(16)
	if depth >= 4 && k >= 12 {
		k = r.IntN(12)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int64(r.Uint64()) >> r.IntN(64)
	case 3:
		return r.Uint64() >> r.IntN(64)
	case 4:
		return -int64(r.IntN(40))
	case 5:
		return r.Float64()
	case 6:
		return float32(r.Float64())
	case 7:
		return strings.Repeat("s", []int{0, 5, 31, 32, 255, 256, 1000}[r.IntN(7)])
	case 8:
		return bytes.Repeat([]byte{0xc1}, []int{0, 1, 255, 256, 1000}[r.IntN(5)]) // 0xc1 inside bin is data
	case 9:
		// fixext4 (seconds only), fixext8 (with nanoseconds), ext8 (12 bytes: beyond 34 bits).
		return []time.Time{time.Unix(1, 0), time.Unix(1, 5), time.Unix(1<<40, 5)}[r.IntN(3)]
	case 10:
		return int8(-100)
	case 11:
		return uint16(math.MaxUint16)
	case 12, 13:
		a := make([]any, r.IntN(20))
		for i := range a {
			a[i] = randomValue(r, depth+1)
		}
		return a
	default:
		n := r.IntN(20)
		m := make(map[string]any, n)
		for i := range n {
			m[string(rune('a'+i))] = randomValue(r, depth+1)
		}
		return m
	}
}

// skipAll reports whether msgpack's own Skip consumes b as exactly one value.
func skipAll(b []byte) bool {
	d := msgpack.NewDecoder(bytes.NewReader(b))
	if err := d.Skip(); err != nil {
		return false
	}
	_, err := d.PeekCode()
	return err != nil // nothing left
}

func bigValues() []any {
	arr := make([]any, 70000)
	for i := range arr {
		arr[i] = i % 3
	}
	m := make(map[string]int, 70000)
	for i := range 70000 {
		m["k"+strconv.Itoa(i)] = i
	}
	return []any{arr, m, strings.Repeat("s", 70000), bytes.Repeat([]byte{0xdd}, 70000)}
}

func TestCheckBodyAgreesWithMsgpack(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	big := bigValues()
	for i := range 3000 + len(big) {
		var v any
		if i < len(big) {
			v = big[i]
		} else {
			v = randomValue(r, 0)
		}
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if i < len(big) && b[0] != []byte{0xdd, 0xdf, 0xdb, 0xc6}[i] {
			t.Fatalf("big value %d encodes with code %#x", i, b[0])
		}
		if err := checkBody(b); err != nil {
			t.Fatalf("value %d (% x…): %v", i, b[:min(len(b), 16)], err)
		}
		if checkBody(append(b[:len(b):len(b)], 0xc0)) == nil {
			t.Fatalf("value %d: trailing byte accepted", i)
		}
		// Every strict prefix is incomplete (checking each of a big value's
		// prefixes would be quadratic: sample them).
		for j := 0; j < len(b); j++ {
			if len(b) > 512 && r.IntN(len(b)/32) != 0 && j > 8 && j < len(b)-8 {
				continue
			}
			if checkBody(b[:j]) == nil {
				t.Fatalf("value %d: prefix of %d/%d bytes accepted", i, j, len(b))
			}
		}
		// Mutations: whenever checkBody accepts, msgpack must be able to
		// walk the same bytes as one value.
		if len(b) < 4096 {
			for range 20 {
				m := bytes.Clone(b)
				m[r.IntN(len(m))] = byte(r.Uint32())
				if checkBody(m) == nil && !skipAll(m) {
					t.Fatalf("checkBody accepted % x, which msgpack cannot walk", m)
				}
			}
		}
	}
}

func FuzzCheckBody(f *testing.F) {
	r := rand.New(rand.NewPCG(22, 22))
	for range 50 {
		b, _ := msgpack.Marshal(randomValue(r, 2))
		if len(b) < 2000 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkBody(b) == nil && !skipAll(b) {
			t.Fatalf("checkBody accepted % x, which msgpack cannot walk", b)
		}
	})
}
