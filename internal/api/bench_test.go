package api

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clusterkey"
)

// BenchmarkAuthorize measures what Authorize adds to one POST /increment
// handled in memory (no network): compare the sub-benchmarks.
func BenchmarkAuthorize(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens")
	var lines []string
	for i := 0; i < 10; i++ {
		lines = append(lines, clusterkey.Generate()+" read")
	}
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"+tokWrite+" write\n"), 0o600)
	f, err := auth.LoadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ring, _ := clusterkey.Parse(clusterkey.Generate())
	plain := NewHandler(newFake(), nil, nil)
	guarded := Authorize(plain, auth.NewGuard(f, ring, nil))
	run := func(b *testing.B, h http.Handler, prep func(r *http.Request)) {
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest("POST", "/increment", nil)
			prep(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatal(w.Code, w.Body.String())
			}
		}
	}
	b.Run("open", func(b *testing.B) { run(b, plain, func(*http.Request) {}) })
	b.Run("bearer-11-tokens", func(b *testing.B) {
		run(b, guarded, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tokWrite) })
	})
	// Signed once: what is measured is the node's check, not the gateway's
	// signature.
	tmpl := httptest.NewRequest("POST", "/increment", nil)
	auth.SignForwarded(tmpl, ring.Primary(), auth.Identity{Role: auth.RoleWrite, Name: "app"}, nil)
	b.Run("forwarded-identity", func(b *testing.B) {
		run(b, guarded, func(r *http.Request) {
			for k, v := range tmpl.Header {
				r.Header[k] = v
			}
		})
	})
}
