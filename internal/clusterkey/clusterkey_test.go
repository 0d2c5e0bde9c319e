package clusterkey

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, Size) }

// TestGolden freezes the derivations: they are on the wire, so changing one
// breaks every mixed-version cluster. The expected values were computed
// independently (Python's hmac and an RFC 5869 HKDF).
func TestGolden(t *testing.T) {
	r, err := New(key(1))
	if err != nil {
		t.Fatal(err)
	}
	k := r.Primary()
	for _, c := range []struct{ name, got, want string }{
		{"id", k.ID().String(), "b5410098f4f34594"},
		{"gossip", hex.EncodeToString(k.Derive(Gossip)), "f8c0d807f14eb7f9c13dea22f7e99efc4361d131db71f0f7d6f6ddc73ec95caf"},
		{"mac", hex.EncodeToString(k.MAC(Discovery, []byte("a"), []byte("bc"))), "0c8079faab579f8eada5f07cd7106b7b0824e35ce0576348b4893307a07ec938"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	a, b := Generate(), Generate()
	r, err := Parse(" " + a + " , " + b + ",")
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 || r.Empty() {
		t.Fatalf("len %d", r.Len())
	}
	ra, _ := Parse(a)
	if r.Primary().ID() != ra.Primary().ID() {
		t.Fatal("primary is not the first key")
	}
	if e, err := Parse("  "); err != nil || !e.Empty() {
		t.Fatalf("blank: %v %v", e, err)
	}
	for _, bad := range []string{"not base64!", "AAAA", a + "," + a, strings.Repeat(a+",", MaxKeys+1)} {
		if _, err := Parse(bad); !errors.Is(err, ErrKey) {
			t.Errorf("Parse(%.20q…) = %v, want ErrKey", bad, err)
		}
	}
}

func TestDerivedKeysDiffer(t *testing.T) {
	r, _ := New(key(1), key(2))
	k1, k2 := r.Keys()[0], r.Keys()[1]
	if bytes.Equal(k1.Derive(Gossip), k1.Derive(Discovery)) {
		t.Fatal("purposes share a key")
	}
	if bytes.Equal(k1.Derive(Gossip), k2.Derive(Gossip)) || k1.ID() == k2.ID() {
		t.Fatal("keys share a derivation")
	}
	// Length prefixes: ("ab","c") and ("a","bc") must not collide.
	if bytes.Equal(k1.MAC(Discovery, []byte("ab"), []byte("c")), k1.MAC(Discovery, []byte("a"), []byte("bc"))) {
		t.Fatal("MAC parts collide")
	}
}

func TestVerify(t *testing.T) {
	r, _ := New(key(1), key(2))
	old, _ := New(key(2))
	other, _ := New(key(3))
	mac := old.Primary().MAC(MemberProof, []byte("nonce"))
	if !r.Verify(old.Primary().ID(), mac, MemberProof, []byte("nonce")) {
		t.Fatal("a secondary key of the ring is not accepted")
	}
	if r.Verify(old.Primary().ID(), mac, Discovery, []byte("nonce")) {
		t.Fatal("a MAC verified under another purpose")
	}
	if r.Verify(old.Primary().ID(), mac, MemberProof, []byte("other")) {
		t.Fatal("a MAC verified for other data")
	}
	if r.Verify(other.Primary().ID(), other.Primary().MAC(MemberProof, []byte("nonce")), MemberProof, []byte("nonce")) {
		t.Fatal("a key outside the ring verified")
	}
	id, err := ParseID(r.Primary().ID().String())
	if err != nil || id != r.Primary().ID() {
		t.Fatalf("ParseID round trip: %v %v", id, err)
	}
	if _, err := ParseID("zz"); !errors.Is(err, ErrKey) {
		t.Fatal("bad id accepted")
	}
}
