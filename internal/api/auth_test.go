package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/service"
)

const (
	tokRead  = "read-token-0123456789"
	tokWrite = "write-token-0123456789"
	tokAdmin = "admin-token-0123456789"
)

func newAuthServer(t *testing.T, ring clusterkey.Keyring) *httptest.Server {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(tokRead+" read r\n"+tokWrite+" write w\n"+tokAdmin+" admin a\n"), 0o600)
	f, err := auth.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m 1\n") })
	h := Authorize(NewHandler(newFake(), nil, metrics), auth.NewGuard(f, ring, nil))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, srv *httptest.Server, method, path, token string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	return sendBody(t, srv, method, path, "", token, hdr)
}

func sendBody(t *testing.T, srv *httptest.Server, method, path, body, token string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestAuthMatrix: every role against every route.
func TestAuthMatrix(t *testing.T) {
	srv := newAuthServer(t, clusterkey.Keyring{})
	// "t" stays live for the TTL routes; "d" is deleted again and again.
	if code, _, body := send(t, srv, "POST", "/counters/t/increment", tokWrite, nil); code != 200 {
		t.Fatalf("setup: %d %s", code, body)
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/counter", ""}, {"GET", "/counters/a", ""}, {"HEAD", "/counters/a", ""},
		{"POST", "/increment", ""}, {"POST", "/decrement", ""}, {"POST", "/counters/a/increment", ""}, {"POST", "/counters/a/decrement", ""},
		{"GET", "/nodes", ""}, {"GET", "/metrics", ""}, {"GET", "/health", ""},
		{"GET", "/counters", ""}, {"HEAD", "/counters?prefix=a", ""}, {"DELETE", "/counters/d", ""},
		{"PUT", "/counters/t/ttl", `{"seconds":60}`}, {"DELETE", "/counters/t/ttl", ""},
		{"POST", "/counters/a/increment", `{"ttl_seconds":60}`},
	}
	// want[token][route] = status
	want := map[string][]int{
		"":                  {401, 401, 401, 401, 401, 401, 401, 401, 401, 200, 401, 401, 401, 401, 401, 401},
		"not-a-token-01234": {401, 401, 401, 401, 401, 401, 401, 401, 401, 200, 401, 401, 401, 401, 401, 401},
		tokRead:             {200, 200, 200, 403, 403, 403, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403},
		tokWrite:            {200, 200, 200, 200, 200, 200, 200, 403, 403, 200, 200, 200, 200, 200, 200, 200},
		tokAdmin:            {200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200},
	}
	for tok, statuses := range want {
		for i, rt := range routes {
			code, h, body := sendBody(t, srv, rt.method, rt.path, rt.body, tok, nil)
			if code != statuses[i] {
				t.Errorf("token %q: %s %s = %d %s, want %d", tok, rt.method, rt.path, code, body, statuses[i])
			}
			switch code {
			case 401:
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %v", h)
				}
			case 403:
				if !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
					t.Errorf("403 without insufficient_scope: %v", h)
				}
			}
			if code >= 400 && rt.method != "HEAD" {
				var e ErrorResponse
				if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || strings.HasPrefix(e.Error, "auth:") {
					t.Errorf("%d body %q is not a clean {\"error\"}", code, body)
				}
			}
		}
	}
	// Unknown routes and wrong methods: 401 to strangers, 404/405 to clients.
	for _, c := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "/nope", "", 401}, {"GET", "/nope", tokRead, 404},
		{"GET", "/increment", "", 401}, {"GET", "/increment", tokRead, 405},
		{"POST", "/health", "", 401}, {"POST", "/health", tokRead, 405},
		{"PUT", "/counters/t", "", 401}, {"PUT", "/counters/t", tokRead, 405},
		{"GET", "/counters/t/ttl", "", 401}, {"GET", "/counters/t/ttl", tokRead, 405},
		// Bad input is only judged for a caller with the role.
		{"GET", "/counters?limit=0", "", 401}, {"GET", "/counters?limit=0", tokRead, 400},
		{"DELETE", "/counters/nope/ttl", tokRead, 403}, {"DELETE", "/counters/nope/ttl", tokWrite, 404},
	} {
		if code, _, body := send(t, srv, c.method, c.path, c.tok, nil); code != c.want {
			t.Errorf("%s %s token %q = %d %s, want %d", c.method, c.path, c.tok, code, body, c.want)
		}
	}
}

// TestHealthAnonymous: /health tells a stranger only whether it is up.
func TestHealthAnonymous(t *testing.T) {
	srv := newAuthServer(t, clusterkey.Keyring{})
	_, _, anon := send(t, srv, "GET", "/health", "", nil)
	if strings.TrimSpace(anon) != `{"status":"ok"}` {
		t.Fatalf("anonymous /health = %s", anon)
	}
	_, _, bad := send(t, srv, "GET", "/health", "wrong-token-0123456789", nil)
	if bad != anon {
		t.Fatalf("/health with a wrong token = %s", bad)
	}
	_, _, full := send(t, srv, "GET", "/health", tokRead, nil)
	var h service.Health
	if json.Unmarshal([]byte(full), &h) != nil || h.Status != "ok" {
		t.Fatalf("authenticated /health = %s", full)
	}
}

// TestForwardedIdentityThroughAPI: a client setting the identity headers
// itself gets nothing; a gateway's signed ones are believed.
func TestForwardedIdentityThroughAPI(t *testing.T) {
	ring, _ := clusterkey.Parse(clusterkey.Generate())
	srv := newAuthServer(t, ring)
	forged := map[string]string{auth.HeaderRole: "admin", auth.HeaderName: "x", auth.HeaderKey: ring.Primary().ID().String(), auth.HeaderMAC: strings.Repeat("A", 43)}
	if code, _, _ := send(t, srv, "POST", "/increment", "", forged); code != 401 {
		t.Fatalf("forged identity without a token = %d, want 401", code)
	}
	if code, _, _ := send(t, srv, "POST", "/increment", tokRead, forged); code != 403 {
		t.Fatalf("forged admin identity with a read token = %d, want 403", code)
	}
	body := `{"amount":3}`
	req, _ := http.NewRequest("POST", srv.URL+"/counters/f/increment", strings.NewReader(body))
	auth.SignForwarded(req, ring.Primary(), auth.Identity{Role: auth.RoleWrite, Name: "app"}, []byte(body))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"value":3`) {
		t.Fatalf("signed write = %d %s", resp.StatusCode, b)
	}
	// The same headers on a different body do not verify.
	req, _ = http.NewRequest("POST", srv.URL+"/counters/f/increment", strings.NewReader(`{"amount":300}`))
	auth.SignForwarded(req, ring.Primary(), auth.Identity{Role: auth.RoleWrite, Name: "app"}, []byte(body))
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("signed headers on another body = %d, want 401", resp.StatusCode)
	}
}
