package wire

import (
	"fmt"
	"testing"
)

func benchDelta() *Delta {
	d := &Delta{Hops: 1}
	for i := range 10 {
		d.Entries = append(d.Entries, Entry{Key: fmt.Sprintf("counter-%d", i), Replica: 0x0123456789abcdef, P: 1000 + uint64(i), N: 10})
	}
	return d
}

func benchEncode(b *testing.B, m Message) {
	enc, err := Encode(testCluster, m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Encode(testCluster, m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, m Message) {
	enc, err := Encode(testCluster, m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Decode(testCluster, enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDelta(b *testing.B) { benchEncode(b, benchDelta()) }
func BenchmarkDecodeDelta(b *testing.B) { benchDecode(b, benchDelta()) }

// The 1000-entry Push takes the compressed path.
func BenchmarkEncodePush1000(b *testing.B) { benchEncode(b, bigPush(1000)) }
func BenchmarkDecodePush1000(b *testing.B) { benchDecode(b, bigPush(1000)) }
