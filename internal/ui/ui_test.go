package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/ui"
)

// tokens is an Authenticator with one token per role.
type tokens map[string]auth.Role

func (t tokens) Authenticate(r *http.Request, _ []byte) (auth.Identity, error) {
	role, ok := t[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		return auth.Identity{}, auth.ErrUnauthenticated
	}
	return auth.Identity{Role: role, Name: "t", Via: "token"}, nil
}

// cluster is a fake gateway: it records who asked.
type cluster struct{ asked []string }

func (c *cluster) ReadEach(r *http.Request, key string) []ui.NodeValue {
	c.asked = append(c.asked, key)
	one, two := int64(1), int64(2)
	if key == "diverged" {
		return []ui.NodeValue{{Name: "a", Status: "healthy", Value: &one}, {Name: "b", Status: "healthy", Value: &two}}
	}
	return []ui.NodeValue{{Name: "a", Status: "healthy", Value: &one}, {Name: "b", Status: "healthy", Value: &one},
		{Name: "c", Status: "unhealthy", Error: "unreachable"}}
}

func (c *cluster) Members(r *http.Request) (int, []byte, error) {
	return http.StatusOK, []byte(`[{"id":"1","name":"a","status":"alive"}]`), nil
}

// server wires the dashboard as the gateway does: files outside
// authorisation, data routes inside.
func server(t *testing.T, a api.Authenticator, c ui.Cluster) *httptest.Server {
	t.Helper()
	apiH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusTeapot, "api")
	})
	var h http.Handler = ui.MountAPI(apiH, c)
	if a != nil {
		h = api.Authorize(h, a)
	}
	s := httptest.NewServer(ui.Mount(h))
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, method, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestFilesNeedNoToken(t *testing.T) {
	s := server(t, tokens{"r": auth.RoleRead}, &cluster{})
	for path, want := range map[string]string{"/ui/": "<title>dcounter dashboard</title>", "/ui/app.js": "POLL_MS", "/ui/style.css": "--bg"} {
		resp, body := do(t, "GET", s.URL+path, "")
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %q", path, resp.StatusCode, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp, _ := do(t, "GET", s.URL+"/ui", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, "POST", s.URL+"/ui/", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d, want 405", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", s.URL+"/ui/nope.js", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/nope.js: %d, want 404", resp.StatusCode)
	}
	// Everything else is the API's, token and all.
	if resp, _ := do(t, "GET", s.URL+"/uix", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /uix without a token: %d, want 401 from the API", resp.StatusCode)
	}
}

func TestDataNeedsReadRole(t *testing.T) {
	c := &cluster{}
	s := server(t, tokens{"r": auth.RoleRead, "n": auth.RoleNone}, c)
	for _, path := range []string{"/ui/api/key?key=k", "/ui/api/members"} {
		if resp, _ := do(t, "GET", s.URL+path, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, resp.StatusCode)
		}
		if resp, _ := do(t, "GET", s.URL+path, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, resp.StatusCode)
		}
		if resp, _ := do(t, "GET", s.URL+path, "n"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s with no role: %d, want 403", path, resp.StatusCode)
		}
		if resp, body := do(t, "GET", s.URL+path, "r"); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the read role: %d %s, want 200", path, resp.StatusCode, body)
		}
	}
	if len(c.asked) != 1 {
		t.Errorf("the cluster was asked %d times, want once (only the authorised request)", len(c.asked))
	}
}

func TestKeyValues(t *testing.T) {
	s := server(t, nil, &cluster{})
	for key, want := range map[string]bool{"k": true, "diverged": false} {
		resp, body := do(t, "GET", s.URL+"/ui/api/key?key="+key, "")
		var kv ui.KeyValues
		if err := json.Unmarshal([]byte(body), &kv); resp.StatusCode != 200 || err != nil {
			t.Fatalf("GET key %s: %d %s", key, resp.StatusCode, body)
		}
		if kv.Converged != want || kv.Key != key {
			t.Errorf("key %s: %+v, want converged %v", key, kv, want)
		}
	}
	if resp, _ := do(t, "GET", s.URL+"/ui/api/key?key="+strings.Repeat("x", 10000), ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an invalid key: %d, want 400", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", s.URL+"/ui/api/nope", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown data route: %d, want 404", resp.StatusCode)
	}
}
