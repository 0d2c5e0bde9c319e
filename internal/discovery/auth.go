package discovery

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// Wire names of the authentication scheme (see the package doc).
const (
	// AuthScheme is the scheme word of the Authorization header.
	AuthScheme = "DCounter-HMAC-SHA256"
	// ResponseMACHeader carries the server's MAC over its answer.
	ResponseMACHeader = "Dcounter-Response-Mac"
	// NonceSize is the length of a challenge nonce in bytes.
	NonceSize = 16
)

// Bounds of the challenge store.
const (
	// NonceTTL is how long a challenge nonce may wait for its request.
	NonceTTL = 10 * time.Second
	// MaxNonces bounds the outstanding nonces; when full, a random one is
	// dropped for the new one.
	MaxNonces = 4096
	// MaxNoncesPerSource bounds the outstanding nonces of one client IP.
	MaxNoncesPerSource = 64
)

// ErrUnauthenticated is the answer (401) to a request without a valid MAC.
var ErrUnauthenticated = errors.New("discovery: unauthenticated")

// ErrTooManyChallenges is the answer (429) to a source holding too many
// outstanding nonces.
var ErrTooManyChallenges = errors.New("discovery: too many outstanding challenges from this source")

// Nonce is a single-use server challenge.
type Nonce [NonceSize]byte

func (n Nonce) String() string { return base64.RawURLEncoding.EncodeToString(n[:]) }

// ParseNonce parses Nonce.String's output.
func ParseNonce(s string) (Nonce, error) {
	var n Nonce
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != NonceSize {
		return n, fmt.Errorf("%w: nonce is not %d base64url bytes", ErrUnauthenticated, NonceSize)
	}
	copy(n[:], b)
	return n, nil
}

// RequestMAC is what a client signs: the method, the path, the nonce and
// the body (empty for GET), each length-prefixed by clusterkey.
func RequestMAC(k clusterkey.Key, method, path string, n Nonce, body []byte) []byte {
	return k.MAC(clusterkey.Discovery, []byte(method), []byte(path), n[:], body)
}

// ResponseMAC is what the server signs its answer with: the word
// "response", the request's nonce, the status and the body. It lets a
// client tell a real server's answer (a peer list, a 404) from a forged one.
func ResponseMAC(k clusterkey.Key, n Nonce, status int, body []byte) []byte {
	return k.MAC(clusterkey.Discovery, []byte("response"), n[:], []byte(strconv.Itoa(status)), body)
}

// Authorization formats the Authorization header of a request.
func Authorization(k clusterkey.Key, n Nonce, mac []byte) string {
	return fmt.Sprintf("%s key=%s, nonce=%s, mac=%s", AuthScheme, k.ID(), n,
		base64.RawURLEncoding.EncodeToString(mac))
}

// authHeader is a parsed Authorization header.
type authHeader struct {
	key   clusterkey.ID
	nonce Nonce
	mac   []byte
}

// parseAuthorization reads Authorization's output; nothing in it is
// trusted until the MAC checks out.
func parseAuthorization(h string) (authHeader, error) {
	var a authHeader
	rest, ok := strings.CutPrefix(h, AuthScheme+" ")
	if !ok {
		return a, fmt.Errorf("%w: want an Authorization: %s header (is --cluster-key set on the client?)", ErrUnauthenticated, AuthScheme)
	}
	var haveKey, haveNonce, haveMAC bool
	for _, f := range strings.Split(rest, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(f), "=")
		var err error
		switch name {
		case "key":
			a.key, err = clusterkey.ParseID(val)
			haveKey = err == nil
		case "nonce":
			a.nonce, err = ParseNonce(val)
			haveNonce = err == nil
		case "mac":
			a.mac, err = base64.RawURLEncoding.DecodeString(val)
			haveMAC = err == nil && len(a.mac) == 32
		}
		if err != nil {
			return a, fmt.Errorf("%w: malformed %s", ErrUnauthenticated, name)
		}
	}
	if !haveKey || !haveNonce || !haveMAC {
		return a, fmt.Errorf("%w: Authorization needs key, nonce and mac", ErrUnauthenticated)
	}
	return a, nil
}

// nonces is the store of outstanding challenges: pure, time passed in, not
// safe for concurrent use. Expiry is on the caller's clock (monotonic with
// the real one), so a wall-clock step neither revives nor kills a nonce.
type nonces struct {
	m         map[Nonce]nonceRec
	perSource map[string]int
}

type nonceRec struct {
	source  string
	expires time.Time
}

func newNonces() *nonces {
	return &nonces{m: map[Nonce]nonceRec{}, perSource: map[string]int{}}
}

// issue returns a fresh nonce for source.
func (s *nonces) issue(source string, now time.Time) (Nonce, error) {
	if s.perSource[source] >= MaxNoncesPerSource {
		s.sweep(now)
		if s.perSource[source] >= MaxNoncesPerSource {
			return Nonce{}, ErrTooManyChallenges
		}
	}
	if len(s.m) >= MaxNonces {
		s.sweep(now)
	}
	for n := range s.m { // still full: drop one at random
		if len(s.m) < MaxNonces {
			break
		}
		s.drop(n)
	}
	var n Nonce
	rand.Read(n[:]) // never fails (crypto/rand since Go 1.24)
	s.m[n] = nonceRec{source: source, expires: now.Add(NonceTTL)}
	s.perSource[source]++
	return n, nil
}

// consume removes n and reports whether it was outstanding and unexpired.
// A nonce is consumed by any request that names it, valid or not: it gets
// exactly one try.
func (s *nonces) consume(n Nonce, now time.Time) bool {
	rec, ok := s.m[n]
	if !ok {
		return false
	}
	s.drop(n)
	return !now.After(rec.expires)
}

func (s *nonces) drop(n Nonce) {
	rec := s.m[n]
	delete(s.m, n)
	if s.perSource[rec.source]--; s.perSource[rec.source] <= 0 {
		delete(s.perSource, rec.source)
	}
}

// sweep drops the expired nonces.
func (s *nonces) sweep(now time.Time) {
	for n, rec := range s.m {
		if now.After(rec.expires) {
			s.drop(n)
		}
	}
}

func (s *nonces) len() int { return len(s.m) }
