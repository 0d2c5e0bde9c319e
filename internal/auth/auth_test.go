package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

const (
	tokRead  = "r3ad-T0ken-aaaaaaaaaaaa"
	tokWrite = "wr1te-T0ken-bbbbbbbbbbb"
	tokAdmin = "adm1n-T0ken-ccccccccccc"
)

var goodFile = "# tokens\n\n" + tokRead + " read dashboards\n" + tokWrite + "  write  app\n" + tokAdmin + "\tadmin\n"

func TestParseGood(t *testing.T) {
	tb, err := Parse(strings.NewReader(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 3 {
		t.Fatalf("Len = %d", tb.Len())
	}
	for _, c := range []struct {
		tok  string
		want Identity
	}{
		{tokRead, Identity{RoleRead, "dashboards", ViaToken}},
		{tokWrite, Identity{RoleWrite, "app", ViaToken}},
		{tokAdmin, Identity{RoleAdmin, "", ViaToken}},
	} {
		got, ok := tb.Lookup(c.tok)
		if !ok || got != c.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", c.tok, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", tokRead + "x", tokRead[:len(tokRead)-1], strings.ToUpper(tokRead)} {
		if id, ok := tb.Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %+v, want no match", bad, id)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, file, want string }{
		{"empty", "# nothing\n\n", "no tokens"},
		{"one field", "\n" + tokRead + "\n", "line 2: want TOKEN ROLE [NAME], got 1 fields"},
		{"four fields", tokRead + " read a b\n", "line 1: want TOKEN ROLE [NAME], got 4 fields"},
		{"bad role", "# x\n" + tokRead + " wrte\n", `line 2: unknown role "wrte"`},
		{"short", "short-1234 read\n", "line 1: token too short (10 characters)"},
		{"low entropy", "abababababababababab write\n", "line 1: token too guessable (only 2 distinct characters)"},
		{"non-ascii", "tökentökentökentöken read\n", "printable ASCII"},
		{"duplicate", tokRead + " read\n" + tokWrite + " write\n" + tokRead + " admin\n", "line 3: the same token as line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.file))
			if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrFile containing %q", err, c.want)
			}
			for _, tok := range []string{tokRead, tokWrite, "short-1234", "abababababababababab"} {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("error reveals a token: %v", err)
				}
			}
		})
	}
}

// TestLookupComparesEveryEntry checks that a lookup goes through the
// constant-time comparison for every token, whether the first, the last or
// none matches: no early exit.
func TestLookupComparesEveryEntry(t *testing.T) {
	tb, err := Parse(strings.NewReader(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	constantTimeCompare = func(a, b []byte) int { calls++; return subtle.ConstantTimeCompare(a, b) }
	defer func() { constantTimeCompare = subtle.ConstantTimeCompare }()
	for _, tok := range []string{tokRead, tokAdmin, "no-such-token-at-all"} {
		calls = 0
		tb.Lookup(tok)
		if calls != tb.Len() {
			t.Errorf("Lookup(%s) made %d comparisons, want %d", tok, calls, tb.Len())
		}
	}
}

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tokRead + " read\n")
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Lookup(tokWrite); ok {
		t.Fatal("write token known before reload")
	}
	write(tokWrite + " write\n")
	if n, err := f.Reload(); err != nil || n != 1 {
		t.Fatalf("Reload = %d, %v", n, err)
	}
	if _, ok := f.Lookup(tokRead); ok {
		t.Fatal("removed token still accepted")
	}
	if id, ok := f.Lookup(tokWrite); !ok || id.Role != RoleWrite {
		t.Fatal("new token not accepted")
	}
	// A broken file keeps the tokens in force.
	write(tokAdmin + " superuser\n")
	if _, err := f.Reload(); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reload of a bad file = %v, want ErrFile naming the path", err)
	}
	if _, ok := f.Lookup(tokWrite); !ok {
		t.Fatal("a failed reload dropped the tokens in force")
	}
	os.Remove(path)
	if _, err := f.Reload(); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if _, ok := f.Lookup(tokWrite); !ok {
		t.Fatal("a failed reload dropped the tokens in force")
	}
	if _, err := LoadFile(path); !errors.Is(err, ErrFile) {
		t.Fatalf("LoadFile of a missing file = %v", err)
	}
}

func TestRoles(t *testing.T) {
	for _, c := range []struct {
		have, need Role
		ok         bool
	}{
		{RoleNone, RoleRead, false}, {RoleRead, RoleRead, true}, {RoleRead, RoleWrite, false},
		{RoleWrite, RoleWrite, true}, {RoleWrite, RoleAdmin, false}, {RoleAdmin, RoleAdmin, true},
		{RoleAdmin, RoleRead, true}, {RoleRead, RoleNone, true},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%v.Allows(%v) = %v", c.have, c.need, got)
		}
	}
}

func guardFor(t *testing.T, ring clusterkey.Keyring) *Guard {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(goodFile), 0o600)
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return NewGuard(f, ring, nil)
}

func TestGuardBearer(t *testing.T) {
	g := guardFor(t, clusterkey.Keyring{})
	for _, c := range []struct {
		header string
		want   Role
		err    bool
	}{
		{"", 0, true},
		{"Bearer", 0, true},
		{"Bearer ", 0, true},
		{"Basic " + tokAdmin, 0, true},
		{"Bearer wrong-token-0123456789", 0, true},
		{"Bearer " + tokRead, RoleRead, false},
		{"bearer " + tokWrite, RoleWrite, false},
		{"BEARER  " + tokAdmin + " ", RoleAdmin, false},
	} {
		r := httptest.NewRequest("GET", "/counter", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		id, err := g.Authenticate(r, nil)
		if c.err != (err != nil) || (err == nil && id.Role != c.want) {
			t.Errorf("Authorization %q: %+v, %v", c.header, id, err)
		}
		if err != nil && !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("err = %v, want ErrUnauthenticated", err)
		}
	}
	open := NewGuard(nil, clusterkey.Keyring{}, nil)
	if id, err := open.Authenticate(httptest.NewRequest("GET", "/nodes", nil), nil); err != nil || id.Role != RoleAdmin || id.Via != ViaOpen {
		t.Fatalf("open guard: %+v, %v", id, err)
	}
}

func ring(t *testing.T, keys ...string) clusterkey.Keyring {
	r, err := clusterkey.Parse(strings.Join(keys, ","))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestForwardedIdentity(t *testing.T) {
	keyA, keyB := clusterkey.Generate(), clusterkey.Generate()
	gwRing := ring(t, keyA)
	body := []byte(`{"amount":5}`)
	signed := func() *http.Request {
		r := httptest.NewRequest("POST", "http://node:8080/counters/x/increment", strings.NewReader(string(body)))
		r.Header.Set("Idempotency-Key", "k1")
		SignForwarded(r, gwRing.Primary(), Identity{Role: RoleWrite, Name: "app"}, body)
		return r
	}
	// A node holding the key (even as its second one, mid-rotation) believes it.
	for _, nodeRing := range []clusterkey.Keyring{ring(t, keyA), ring(t, keyB, keyA)} {
		g := guardFor(t, nodeRing)
		id, err := g.Authenticate(signed(), body)
		if err != nil || id != (Identity{RoleWrite, "app", ViaForwarded}) {
			t.Fatalf("valid forwarded identity: %+v, %v", id, err)
		}
	}
	g := guardFor(t, ring(t, keyA))
	for _, c := range []struct {
		name   string
		mutate func(r *http.Request) []byte
	}{
		{"role raised", func(r *http.Request) []byte { r.Header.Set(HeaderRole, "admin"); return body }},
		{"name changed", func(r *http.Request) []byte { r.Header.Set(HeaderName, "other"); return body }},
		{"body changed", func(r *http.Request) []byte { return []byte(`{"amount":500}`) }},
		{"path changed", func(r *http.Request) []byte { r.URL.Path = "/counters/y/increment"; return body }},
		{"method changed", func(r *http.Request) []byte { r.Method = "GET"; return body }},
		{"idempotency key changed", func(r *http.Request) []byte { r.Header.Set("Idempotency-Key", "k2"); return body }},
		{"idempotency key dropped", func(r *http.Request) []byte { r.Header.Del("Idempotency-Key"); return body }},
		{"mac stripped", func(r *http.Request) []byte { r.Header.Del(HeaderMAC); return body }},
		{"mac garbage", func(r *http.Request) []byte { r.Header.Set(HeaderMAC, "AAAA"); return body }},
		{"key id unknown", func(r *http.Request) []byte {
			r.Header.Set(HeaderKey, ring(t, keyB).Primary().ID().String())
			return body
		}},
		{"forged by a client", func(r *http.Request) []byte {
			m, _ := base64.RawURLEncoding.DecodeString(r.Header.Get(HeaderMAC))
			m[0] ^= 1
			r.Header.Set(HeaderMAC, base64.RawURLEncoding.EncodeToString(m))
			return body
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := signed()
			b := c.mutate(r)
			id, err := g.Authenticate(r, b)
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("got %+v, %v; want ErrUnauthenticated", id, err)
			}
			// Without the forgery the client's own token still counts.
			r.Header.Set("Authorization", "Bearer "+tokRead)
			if id, err := g.Authenticate(r, b); err != nil || id.Role != RoleRead || id.Via != ViaToken {
				t.Fatalf("with a read token: %+v, %v", id, err)
			}
		})
	}
	// Signed with another cluster's key, or checked by a node without a key.
	r := httptest.NewRequest("GET", "/counter", nil)
	SignForwarded(r, ring(t, keyB).Primary(), Identity{Role: RoleAdmin}, nil)
	if _, err := g.Authenticate(r, nil); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong key accepted: %v", err)
	}
	r = signed()
	if _, err := guardFor(t, clusterkey.Keyring{}).Authenticate(r, body); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("keyless node accepted a forwarded identity: %v", err)
	}
}

func TestForwardedMACIsClusterkeyMAC(t *testing.T) {
	for i := 0; i < 20; i++ {
		k := ring(t, clusterkey.Generate()).Primary()
		parts := [][]byte{[]byte("POST"), []byte("/x"), nil, []byte(strings.Repeat("p", i*7)), {}, []byte("k")}
		for j := 0; j < 2; j++ { // derived, then cached
			if got, want := forwardedMAC(k, parts), k.MAC(clusterkey.ForwardedIdentity, parts...); string(got) != string(want) {
				t.Fatalf("forwardedMAC differs from clusterkey's MAC")
			}
		}
	}
}
