package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"sync"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// The headers a gateway passes a client's identity to a node in. A node
// believes them only when HeaderMAC verifies under a key of its own
// keyring; otherwise it ignores them, so a client that sets them itself
// gains nothing.
//
// The MAC is clusterkey's MAC under the ForwardedIdentity purpose over, in
// order: the method, the request URI (path and query as sent), the role's
// name, the name, the SHA-256 of the body and the Idempotency-Key header
// (empty if none). It binds the identity to this exact request: it cannot be
// moved to another route, amount or key. It carries no time and no nonce, so
// someone who can read the gateway's traffic to a node can replay a request
// byte for byte (as they could replay a bearer token): use TLS between
// gateway and nodes where that traffic crosses a network you do not trust; a
// replayed write that carries an Idempotency-Key is answered, not applied.
const (
	HeaderRole = "Dcounter-Identity-Role"
	HeaderName = "Dcounter-Identity-Name"
	HeaderKey  = "Dcounter-Identity-Key"
	HeaderMAC  = "Dcounter-Identity-Mac"
)

// idempotencyHeader is the API's Idempotency-Key header (package api's
// IdempotencyHeader; api imports this package, not the other way).
const idempotencyHeader = "Idempotency-Key"

// ErrForwarded reports forwarded-identity headers that do not verify.
var ErrForwarded = errors.New("auth: forwarded identity does not verify")

// Forwarded reports whether h carries any forwarded-identity header.
func Forwarded(h http.Header) bool {
	// Direct map lookups: the names are canonical already, and this runs on
	// every request.
	return len(h[HeaderMAC]) > 0 || len(h[HeaderKey]) > 0 || len(h[HeaderRole]) > 0 || len(h[HeaderName]) > 0
}

// ForwardedHeaders lists the forwarded-identity headers.
var ForwardedHeaders = []string{HeaderRole, HeaderName, HeaderKey, HeaderMAC}

// StripForwarded removes the forwarded-identity headers from h.
func StripForwarded(h http.Header) {
	for _, k := range ForwardedHeaders {
		h.Del(k)
	}
}

// macParts lists what the MAC covers; see the constants' comment.
func macParts(method, uri string, id Identity, body []byte, idem string) [][]byte {
	d := sha256.Sum256(body)
	return [][]byte{[]byte(method), []byte(uri), []byte(id.Role.String()), []byte(id.Name), d[:], []byte(idem)}
}

// SignForwarded sets on req the headers passing id on, signed with key (a
// gateway's primary cluster key). body is the request's body (nil for none).
// Any forwarded-identity header already on req is replaced.
func SignForwarded(req *http.Request, key clusterkey.Key, id Identity, body []byte) {
	h := req.Header
	mac := forwardedMAC(key, macParts(req.Method, req.URL.RequestURI(), id, body, h.Get(idempotencyHeader)))
	h.Set(HeaderRole, id.Role.String())
	h.Set(HeaderName, id.Name)
	h.Set(HeaderKey, key.ID().String())
	h.Set(HeaderMAC, base64.RawURLEncoding.EncodeToString(mac))
}

// VerifyForwarded returns the identity r's forwarded-identity headers carry
// if their MAC verifies under a key of ring. body is r's body (nil for none).
func VerifyForwarded(r *http.Request, ring clusterkey.Keyring, body []byte) (Identity, error) {
	h := r.Header
	if ring.Empty() {
		return Identity{}, fmt.Errorf("%w: no cluster key configured", ErrForwarded)
	}
	kid, err := clusterkey.ParseID(h.Get(HeaderKey))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrForwarded, err)
	}
	mac, err := base64.RawURLEncoding.DecodeString(h.Get(HeaderMAC))
	if err != nil || len(mac) != sha256.Size {
		return Identity{}, fmt.Errorf("%w: malformed MAC", ErrForwarded)
	}
	role, err := ParseRole(h.Get(HeaderRole))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrForwarded, err)
	}
	id := Identity{Role: role, Name: h.Get(HeaderName), Via: ViaForwarded}
	key, ok := ring.Find(kid)
	if !ok {
		return Identity{}, fmt.Errorf("%w: unknown key %s", ErrForwarded, kid)
	}
	if !hmac.Equal(mac, forwardedMAC(key, macParts(r.Method, r.URL.RequestURI(), id, body, h.Get(idempotencyHeader)))) {
		return Identity{}, fmt.Errorf("%w: wrong MAC", ErrForwarded)
	}
	return id, nil
}

// macPools holds, by key ID, reusable HMACs keyed with the
// ForwardedIdentity key derived from each cluster key: the derivation (HKDF)
// costs more than the MAC itself, and both run on every request through a
// gateway. A process holds a handful of keys, so this stays tiny.
var macPools sync.Map // clusterkey.ID -> *sync.Pool of hash.Hash

// forwardedMAC is key.MAC(clusterkey.ForwardedIdentity, parts...) with the
// derived key cached. TestForwardedMACIsClusterkeyMAC holds the two equal.
func forwardedMAC(key clusterkey.Key, parts [][]byte) []byte {
	p, ok := macPools.Load(key.ID())
	if !ok {
		dk := key.Derive(clusterkey.ForwardedIdentity)
		p, _ = macPools.LoadOrStore(key.ID(), &sync.Pool{New: func() any { return hmac.New(sha256.New, dk) }})
	}
	pool := p.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	defer func() { m.Reset(); pool.Put(m) }()
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}
