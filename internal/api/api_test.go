package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// fakeBackend is a one-replica backend using the real CRDT rules.
type fakeBackend struct {
	mu sync.Mutex
	ks *crdt.Keyspace
}

func (f *fakeBackend) Get(_ context.Context, key string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, _ := f.ks.Value(key)
	return v, nil
}

func (f *fakeBackend) Add(_ context.Context, key string, delta int64, _ string) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, _ := f.ks.Value(key)
	e, err := crdt.Change(key, 1, f.ks.Get(key, 1), v, delta)
	if err != nil {
		return 0, false, err
	}
	f.ks.Merge(e)
	v, _ = f.ks.Value(key)
	return v, false, nil
}

func (f *fakeBackend) Nodes(context.Context) (any, error) {
	return []Member{{ID: "0000000000000001", Name: "n1", Status: "alive"}}, nil
}

func (f *fakeBackend) Health(context.Context) (bool, any) { return true, NodeHealth{Status: "ok"} }

func newTestServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(NewHandler(&fakeBackend{ks: crdt.New()}, nil, nil))
	t.Cleanup(srv.Close)
	return srv
}

type result struct {
	status int
	body   map[string]any
	header http.Header
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); method != http.MethodHead && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, body %s", method, path, ct, b)
	}
	r := result{status: resp.StatusCode, header: resp.Header}
	if method != http.MethodHead && json.Unmarshal(b, &r.body) != nil && b[0] != '[' {
		t.Errorf("%s %s: body is not JSON: %q", method, path, b)
	}
	return r
}

func TestCounterRoutes(t *testing.T) {
	srv := newTestServer(t)
	steps := []struct {
		method, path, body string
		key                string
		value              float64
	}{
		{"GET", "/counter", "", "default", 0},
		{"POST", "/increment", "", "default", 1},
		{"POST", "/increment", `{"amount":41}`, "default", 42},
		{"POST", "/decrement", `{"amount": 50}`, "default", -8},
		{"POST", "/decrement", "  \n", "default", -9},
		{"POST", "/increment", `{}`, "default", -8},
		{"GET", "/counters/default", "", "default", -8},
		{"GET", "/counters/never-written", "", "never-written", 0},
		{"POST", "/counters/likes/increment", `{"amount":3}`, "likes", 3},
		{"POST", "/counters/likes/decrement", "", "likes", 2},
		{"GET", "/counters/likes", "", "likes", 2},
		{"POST", "/counters/a%2Fb/increment", "", "a/b", 1}, // escaped slash stays in the key
		{"GET", "/counters/a%2Fb", "", "a/b", 1},
		{"GET", "/counters/caf%C3%A9", "", "café", 0},
		{"POST", "/counters/increment/increment", "", "increment", 1},
		{"POST", "/counters/" + strings.Repeat("k", 512) + "/increment", "", strings.Repeat("k", 512), 1},
		{"POST", "/counters/big/increment", fmt.Sprintf(`{"amount":%d}`, int64(math.MaxInt64)), "big", math.MaxInt64},
		{"HEAD", "/counter", "", "", 0},
	}
	for _, s := range steps {
		r := do(t, srv, s.method, s.path, s.body)
		if r.status != 200 {
			t.Fatalf("%s %s %q: status %d %v", s.method, s.path, s.body, r.status, r.body)
		}
		if s.method == "HEAD" {
			continue
		}
		if r.body["key"] != s.key || r.body["value"] != s.value {
			t.Fatalf("%s %s %q: got %v, want key %q value %v", s.method, s.path, s.body, r.body, s.key, s.value)
		}
	}
}

func TestBadInput(t *testing.T) {
	srv := newTestServer(t)
	do(t, srv, "POST", "/counters/max/increment", fmt.Sprintf(`{"amount":%d}`, int64(math.MaxInt64)))
	do(t, srv, "POST", "/counters/min/decrement", fmt.Sprintf(`{"amount":%d}`, int64(math.MaxInt64)))
	do(t, srv, "POST", "/counters/min/decrement", "")
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"bad json", "POST", "/increment", `{"amount":`, 400, "not valid JSON"},
		{"not an object", "POST", "/increment", `5`, 400, "JSON object"},
		{"array", "POST", "/increment", `[1]`, 400, "JSON object"},
		{"null", "POST", "/increment", `null`, 400, "JSON object"},
		{"zero", "POST", "/increment", `{"amount":0}`, 400, "positive integer"},
		{"negative", "POST", "/increment", `{"amount":-5}`, 400, "positive integer"},
		{"fraction", "POST", "/increment", `{"amount":1.5}`, 400, "positive integer"},
		{"exponent", "POST", "/increment", `{"amount":1e3}`, 400, "positive integer"},
		{"string", "POST", "/increment", `{"amount":"5"}`, 400, "positive integer"},
		{"bool", "POST", "/increment", `{"amount":true}`, 400, "positive integer"},
		{"null amount", "POST", "/increment", `{"amount":null}`, 400, "positive integer"},
		{"object amount", "POST", "/increment", `{"amount":{"n":1}}`, 400, "positive integer"},
		{"beyond int64", "POST", "/increment", `{"amount":9223372036854775808}`, 400, "int64"},
		{"huge", "POST", "/increment", `{"amount":1` + strings.Repeat("0", 400) + `}`, 400, "int64"},
		{"unknown field", "POST", "/increment", `{"amont":5}`, 400, "unknown field"},
		{"trailing data", "POST", "/increment", `{"amount":1}{"amount":2}`, 400, "trailing"},
		{"trailing garbage", "POST", "/increment", `{"amount":1} x`, 400, "trailing"},
		{"result overflow", "POST", "/counters/max/increment", "", 400, "would overflow"},
		{"result underflow", "POST", "/counters/min/decrement", "", 400, "would overflow"},
		{"key too long", "GET", "/counters/" + strings.Repeat("k", 513), "", 400, "512 bytes"},
		{"key too long write", "POST", "/counters/" + strings.Repeat("k", 513) + "/increment", "", 400, "512 bytes"},
		{"invalid utf8 key", "GET", "/counters/%FF", "", 400, "UTF-8"},
		{"empty key", "GET", "/counters/", "", 400, "1-512 bytes"},
		{"wrong method write", "GET", "/increment", "", 405, "method not allowed"},
		{"wrong method read", "POST", "/counter", "", 405, "method not allowed"},
		{"delete", "DELETE", "/counters/x", "", 405, "method not allowed"},
		{"put", "PUT", "/counters/x/increment", "", 405, "method not allowed"},
		{"nodes write", "POST", "/nodes", "", 405, "method not allowed"},
		{"unknown route", "GET", "/nope", "", 404, "not found"},
		{"root", "GET", "/", "", 404, "not found"},
		{"deep", "GET", "/counters/a/b/c", "", 404, "not found"},
		{"unknown verb", "POST", "/counters/x/multiply", "", 404, "not found"},
		{"too large", "POST", "/increment", `{"amount":1,"pad":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (%v)", r.status, c.status, r.body)
			}
			if c.status == 200 {
				return
			}
			msg, _ := r.body["error"].(string)
			if msg == "" || !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q, want it to mention %q", msg, c.msg)
			}
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	// Nothing above changed state.
	for key, want := range map[string]float64{"default": 0, "max": math.MaxInt64, "min": math.MinInt64} {
		if r := do(t, srv, "GET", "/counters/"+key, ""); r.body["value"] != want {
			t.Errorf("%s = %v after bad input, want %v", key, r.body["value"], want)
		}
	}
}

func TestNodesAndHealth(t *testing.T) {
	srv := newTestServer(t)
	if r := do(t, srv, "GET", "/health", ""); r.status != 200 || r.body["status"] != "ok" {
		t.Fatalf("health: %d %v", r.status, r.body)
	}
	resp, err := srv.Client().Get(srv.URL + "/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ms []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil || len(ms) != 1 {
		t.Fatalf("nodes: %v %v", ms, err)
	}
	for _, f := range []string{"id", "name", "gossip_addr", "http_addr", "status"} {
		if _, ok := ms[0][f]; !ok {
			t.Errorf("nodes entry lacks %q: %v", f, ms[0])
		}
	}
}

func TestServerHasTimeouts(t *testing.T) {
	s := NewServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 {
		t.Fatalf("server without timeouts: %+v", s)
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"", `{"amount":5}`, `{"amount":-1}`, `{"amount":1.5}`, `{}`, `null`, `{"amount":9223372036854775807}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseAmount(strings.NewReader(s))
		if err == nil && n <= 0 {
			t.Fatalf("ParseAmount(%q) = %d without error", s, n)
		}
	})
}
