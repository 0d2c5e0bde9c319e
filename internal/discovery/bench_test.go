package discovery

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// BenchmarkServerHeartbeat is the server's own CPU for one heartbeat, in
// process (no network): open, and keyed (the challenge plus the signed
// request, the client's signing included).
//
//	go test -run '^$' -bench ServerHeartbeat ./internal/discovery/
func BenchmarkServerHeartbeat(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "open"
		var keys clusterkey.Keyring
		if keyed {
			name, keys = "keyed", clusterkeytest.Ring(b, 1)
		}
		b.Run(name, func(b *testing.B) {
			s := newServer(b, clock.NewFake(t0), Config{Keyring: keys})
			body := bodyOf(testEntry(1))
			do := func(path string) {
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
				if keyed {
					rec := httptest.NewRecorder()
					s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/challenge", nil))
					n, err := ParseNonce(strings.Split(rec.Body.String(), `"`)[3])
					if err != nil {
						b.Fatal(err)
					}
					k := keys.Primary()
					req.Header.Set("Authorization", Authorization(k, n, RequestMAC(k, http.MethodPost, path, n, []byte(body))))
				}
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
			do("/register")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				do("/heartbeat")
			}
		})
	}
}

// BenchmarkUnauthenticatedRefusal is what an unauthenticated request costs
// a keyed server: the 401 path an attacker can drive.
func BenchmarkUnauthenticatedRefusal(b *testing.B) {
	s := newServer(b, clock.NewFake(t0), Config{Keyring: clusterkeytest.Ring(b, 1)})
	body := bodyOf(testEntry(1))
	b.ReportAllocs()
	for range b.N {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body)))
		if rec.Code != http.StatusUnauthorized {
			b.Fatal(rec.Code)
		}
	}
}
