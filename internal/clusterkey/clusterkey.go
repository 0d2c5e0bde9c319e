// Package clusterkey holds a cluster's shared secret: the keyring given by
// --cluster-key, and the keys derived from it for each job.
//
// A keyring is one or more 32-byte keys. The first (primary) key is the one
// this process uses when it starts something — dials a peer, signs a request,
// answers a challenge; every key of the ring is accepted from others. That is
// what lets a cluster rotate keys without downtime: add the new key
// everywhere, make it primary everywhere, then remove the old one.
//
// A raw cluster key is never used directly. Each job gets its own key,
// derived with HKDF-SHA256 and a purpose label, so that a value computed for
// one job (a discovery request's MAC, say) can never be presented as another
// (a member proof), and no derived key reveals the others or the root.
//
// Every key has a public 8-byte ID, so that a verifier finds the key a
// message claims to use without trying each one; the ID reveals nothing
// useful about the key.
package clusterkey

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Size is the length of a cluster key.
const Size = 32

// MaxKeys bounds a keyring: rotation needs two keys, a little slack is fine,
// but every accepted key is one more secret to guard.
const MaxKeys = 8

// Purposes: the label each derived key is bound to. ONLY APPEND: changing
// one changes every key derived for it, on the wire.
const (
	// Gossip is the pre-shared key of the transport handshake.
	Gossip = "dcounter gossip psk v1"
	// Discovery authenticates requests to a discovery server.
	Discovery = "dcounter discovery request v1"
	// MemberProof is what a node answers a gateway's challenge with.
	MemberProof = "dcounter member proof v1"
	// ForwardedIdentity signs the client identity a gateway passes on to nodes.
	ForwardedIdentity = "dcounter forwarded identity v1"
)

// ErrKey reports a malformed key or keyring.
var ErrKey = errors.New("clusterkey: invalid key")

// ID identifies a key publicly.
type ID [8]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses ID.String's output.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: key id %q is not 16 hex digits", ErrKey, s)
	}
	copy(id[:], b)
	return id, nil
}

// Key is one cluster key.
type Key struct {
	raw [Size]byte
	id  ID
}

func newKey(raw []byte) Key {
	var k Key
	copy(k.raw[:], raw)
	m := hmac.New(sha256.New, k.raw[:])
	m.Write([]byte("dcounter key id v1"))
	copy(k.id[:], m.Sum(nil))
	return k
}

// ID returns the key's public identifier.
func (k Key) ID() ID { return k.id }

// Derive returns the 32-byte key for purpose.
func (k Key) Derive(purpose string) []byte {
	out, err := hkdf.Key(sha256.New, k.raw[:], nil, purpose, Size)
	if err != nil { // only for lengths HKDF cannot produce; Size is fine
		panic(err)
	}
	return out
}

// MAC returns HMAC-SHA256, under the key derived for purpose, of parts. Each
// part is length-prefixed, so no two different lists of parts collide.
func (k Key) MAC(purpose string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k.Derive(purpose))
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}

// Keyring is the ordered set of keys a process holds. The zero Keyring is
// empty: no key configured.
type Keyring struct {
	keys []Key
}

// New builds a keyring from raw keys, primary first.
func New(raw ...[]byte) (Keyring, error) {
	if len(raw) > MaxKeys {
		return Keyring{}, fmt.Errorf("%w: %d keys, at most %d", ErrKey, len(raw), MaxKeys)
	}
	var r Keyring
	seen := map[ID]bool{}
	for i, b := range raw {
		if len(b) != Size {
			return Keyring{}, fmt.Errorf("%w: key %d is %d bytes, want %d (make one with 'dcounter keygen')", ErrKey, i+1, len(b), Size)
		}
		k := newKey(b)
		if seen[k.id] {
			return Keyring{}, fmt.Errorf("%w: key %d is listed twice", ErrKey, i+1)
		}
		seen[k.id] = true
		r.keys = append(r.keys, k)
	}
	return r, nil
}

// Parse reads a keyring written as comma-separated base64 keys, primary
// first. An empty (or blank) string is the empty keyring.
func Parse(s string) (Keyring, error) {
	var raw [][]byte
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			return Keyring{}, fmt.Errorf("%w: key %d is not valid base64", ErrKey, i+1)
		}
		raw = append(raw, b)
	}
	return New(raw...)
}

// Generate returns a new random key in the form Parse reads.
func Generate() string {
	b := make([]byte, Size)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.StdEncoding.EncodeToString(b)
}

// Empty reports whether no key is configured.
func (r Keyring) Empty() bool { return len(r.keys) == 0 }

// Len is the number of keys.
func (r Keyring) Len() int { return len(r.keys) }

// Primary returns the key used to start things. It panics on an empty ring:
// callers check Empty first.
func (r Keyring) Primary() Key { return r.keys[0] }

// Keys returns the keys, primary first.
func (r Keyring) Keys() []Key { return append([]Key(nil), r.keys...) }

// Find returns the key with id.
func (r Keyring) Find(id ID) (Key, bool) {
	for _, k := range r.keys {
		if k.id == id {
			return k, true
		}
	}
	return Key{}, false
}

// Verify reports whether mac is MAC(purpose, parts...) under the key with
// id, comparing in constant time.
func (r Keyring) Verify(id ID, mac []byte, purpose string, parts ...[]byte) bool {
	k, ok := r.Find(id)
	return ok && hmac.Equal(mac, k.MAC(purpose, parts...))
}

// IDs lists the keys' IDs, primary first, for logs.
func (r Keyring) IDs() []string {
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.id.String()
	}
	return out
}
