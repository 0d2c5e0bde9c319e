package wire

import (
	"reflect"
	"testing"
)

// FuzzDecode: Decode never panics, and whatever it accepts survives
// re-encoding unchanged. The seed corpus is every golden message, the
// compressed case and every decode error case; testdata/fuzz/FuzzDecode holds
// more.
func FuzzDecode(f *testing.F) {
	for _, g := range goldenTable {
		f.Add(mustHex(f, g.hex))
	}
	if b, err := Encode(testCluster, bigPush(200)); err == nil {
		f.Add(b)
	}
	for _, tc := range decodeErrorCases() {
		if len(tc.in) < 4096 {
			f.Add(tc.in)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Decode(testCluster, in)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a message and an error: %v", err)
			}
			return
		}
		b, err := Encode(testCluster, m)
		if err != nil {
			t.Fatalf("Encode of a decoded %v: %v", m.Type(), err)
		}
		m2, err := Decode(testCluster, b)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(in))) of %v: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the message:\nfirst  %#v\nsecond %#v", m, m2)
		}
	})
}
