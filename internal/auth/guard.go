package auth

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// Guard authenticates requests to a node or gateway.
type Guard struct {
	tokens *File
	keys   clusterkey.Keyring
	log    *slog.Logger
}

// NewGuard returns a guard checking bearer tokens against tokens and
// forwarded identities against keys. With tokens nil the API is open: every
// client is admin (ViaOpen), as the operator asked with --insecure-api or a
// loopback address. With keys empty, forwarded identities are never
// believed. log (nil: discard) receives refused forwarded identities at
// debug level.
func NewGuard(tokens *File, keys clusterkey.Keyring, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{tokens: tokens, keys: keys, log: log}
}

// Open reports whether the guard lets every client in as admin.
func (g *Guard) Open() bool { return g.tokens == nil }

// Authenticate returns who sent r: a gateway's forwarded identity if it
// verifies, else the holder of r's bearer token. body is r's body when r
// carries forwarded-identity headers (the MAC covers it), else nil.
func (g *Guard) Authenticate(r *http.Request, body []byte) (Identity, error) {
	if Forwarded(r.Header) {
		id, err := VerifyForwarded(r, g.keys, body)
		if err == nil {
			return id, nil
		}
		// Ignored, not refused: a client gains nothing by sending these
		// headers, and its bearer token still counts.
		g.log.Debug("forwarded identity ignored", "remote", r.RemoteAddr, "err", err)
	}
	var h string
	if v := r.Header["Authorization"]; len(v) > 0 { // canonical name: no Get needed
		h = v[0]
	}
	return g.AuthenticateBearer(h)
}

// AuthenticateBearer is Authenticate for a request that carries no
// forwarded identity: authorization is its Authorization header ("" if
// none).
func (g *Guard) AuthenticateBearer(authorization string) (Identity, error) {
	if g.tokens == nil {
		return Identity{Role: RoleAdmin, Via: ViaOpen}, nil
	}
	tok, ok := bearer(authorization)
	if !ok {
		return Identity{}, ErrUnauthenticated
	}
	id, ok := g.tokens.Lookup(tok)
	if !ok {
		return Identity{}, fmt.Errorf("%w: the token is not valid", ErrUnauthenticated)
	}
	return id, nil
}

// bearer extracts the token of an "Authorization: Bearer TOKEN" header (the
// scheme is case-insensitive, RFC 7235).
func bearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}
