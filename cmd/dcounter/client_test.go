package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
)

// memBackend is an in-memory service.Service on a clock that stands still, so
// that the time left before an expiry prints exactly.
type memBackend struct {
	mu       sync.Mutex
	now      time.Time
	keys     map[string]*memKey
	pageSize int // at most this many items a page, whatever the limit
	failPage int // the List call (1-based) that fails; 0: none
	lists    int
}

type memKey struct {
	value    int64
	deadline time.Time // zero: none
}

var _ service.Service = (*memBackend)(nil)

func (m *memBackend) Writes(ctx context.Context, ws []service.Write, out []service.WriteResult) {
	testutil.WriteEach(ctx, m, ws, out)
}

func newMemBackend() *memBackend {
	return &memBackend{now: time.Unix(1_700_000_000, 0), keys: map[string]*memKey{}, pageSize: 1000}
}

func (m *memBackend) live(key string) *memKey {
	k := m.keys[key]
	if k == nil || (!k.deadline.IsZero() && !m.now.Before(k.deadline)) {
		return nil
	}
	return k
}

func (m *memBackend) counter(key string) service.Counter {
	c := service.Counter{Key: key}
	if k := m.live(key); k != nil {
		c.Value, c.Live = k.value, true
		if !k.deadline.IsZero() {
			c.TTL = k.deadline.Sub(m.now)
		}
	}
	return c
}

func (m *memBackend) Get(_ context.Context, key string) (service.Counter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counter(key), nil
}

func (m *memBackend) Add(_ context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.live(key)
	if k == nil {
		k = &memKey{}
		m.keys[key] = k
	}
	k.value += delta
	if w.TTL > 0 && (k.deadline.IsZero() || w.TTLAlways) {
		k.deadline = m.now.Add(w.TTL)
	}
	return m.counter(key), false, nil
}

func (m *memBackend) Delete(_ context.Context, key string, _ string) (bool, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	existed := m.live(key) != nil
	delete(m.keys, key)
	return existed, false, nil
}

func (m *memBackend) SetTTL(_ context.Context, key string, ttl time.Duration, _ string) (service.Counter, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.live(key)
	if k == nil {
		return service.Counter{}, false, api.ErrNotFound
	}
	k.deadline = time.Time{}
	if ttl > 0 {
		k.deadline = m.now.Add(ttl)
	}
	return m.counter(key), false, nil
}

func (m *memBackend) List(_ context.Context, req service.ListRequest) (service.ListPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	if m.lists == m.failPage {
		return service.ListPage{}, service.Unavailable(errors.New("test: page refused"))
	}
	var keys []string
	for k := range m.keys {
		if m.live(k) != nil && strings.HasPrefix(k, req.Prefix) && k > req.Cursor {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var page service.ListPage
	n := min(req.Limit, m.pageSize)
	for i, k := range keys {
		if i == n {
			page.Next = keys[i-1]
			break
		}
		page.Items = append(page.Items, m.counter(k))
	}
	return page, nil
}

func (m *memBackend) Nodes(context.Context) ([]service.Member, error) { return []service.Member{}, nil }

func (m *memBackend) Health(context.Context) (bool, service.Health) {
	return true, service.Health{Status: "ok"}
}

// sentRequest is one request as the test server received it.
type sentRequest struct{ method, uri, body string }

type testServer struct {
	*memBackend
	url  string
	mu   sync.Mutex
	sent []sentRequest
}

func newClientTestServer(t *testing.T) *testServer {
	t.Helper()
	clearDcounterEnv(t)
	ts := &testServer{memBackend: newMemBackend()}
	h := api.NewHandler(ts.memBackend, nil, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ts.mu.Lock()
		ts.sent = append(ts.sent, sentRequest{r.Method, r.RequestURI, string(b)})
		ts.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	return ts
}

func (ts *testServer) last() sentRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.sent) == 0 {
		return sentRequest{}
	}
	return ts.sent[len(ts.sent)-1]
}

// run runs the dcounter command line args against ts.
func (ts *testServer) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append([]string{args[0], "--addr", ts.url}, args[1:]...)
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestClientLifecycleVerbs(t *testing.T) {
	ts := newClientTestServer(t)
	for _, s := range []struct {
		args     []string
		code     int
		out      string
		sent     sentRequest // checked when method is set
		errWants string
	}{
		{args: []string{"inc", "x", "--by", "5", "--ttl", "90s"}, out: "5\n",
			sent: sentRequest{"POST", "/counters/x/increment", `{"amount":5,"ttl_ms":90000}`}},
		{args: []string{"ttl", "x"}, out: "1m30s\n", sent: sentRequest{"GET", "/counters/x", ""}},
		// Without --ttl-always an existing expiry stays.
		{args: []string{"inc", "x", "--ttl", "10s"}, out: "6\n"},
		{args: []string{"ttl", "x"}, out: "1m30s\n"},
		{args: []string{"dec", "x", "--ttl", "1500ms", "--ttl-always"}, out: "5\n",
			sent: sentRequest{"POST", "/counters/x/decrement", `{"amount":1,"ttl_ms":1500,"ttl_mode":"always"}`}},
		{args: []string{"ttl", "x"}, out: "1.5s\n"},
		{args: []string{"inc", "x", "--json"}, out: `{"key":"x","value":6,"ttl_ms":1500}` + "\n"},
		{args: []string{"persist", "x"}, out: "6\n", sent: sentRequest{"DELETE", "/counters/x/ttl", ""}},
		{args: []string{"ttl", "x"}, out: "none\n"},
		{args: []string{"ttl", "x", "60"}, out: "1m0s\n", sent: sentRequest{"PUT", "/counters/x/ttl", `{"seconds":60}`}},
		{args: []string{"ttl", "x", "2h"}, out: "2h0m0s\n", sent: sentRequest{"PUT", "/counters/x/ttl", `{"seconds":7200}`}},
		{args: []string{"ttl", "x", "250ms", "--json"}, out: `{"key":"x","value":6,"ttl_ms":250}` + "\n",
			sent: sentRequest{"PUT", "/counters/x/ttl", `{"milliseconds":250}`}},
		{args: []string{"del", "x"}, out: "deleted\n", sent: sentRequest{"DELETE", "/counters/x", ""}},
		{args: []string{"del", "x"}, out: "not found\n"},
		{args: []string{"del", "x", "--json"}, out: `{"key":"x","deleted":false}` + "\n"},
		{args: []string{"get", "x"}, out: "0\n"},
		{args: []string{"ttl", "x"}, out: "none\n"},
		{args: []string{"ttl", "x", "5"}, code: 1, errWants: "dcounter ttl: 404 Not Found: key not found"},
		{args: []string{"persist", "x"}, code: 1, errWants: "dcounter persist: 404 Not Found: key not found"},
		// Keys that need escaping in a path.
		{args: []string{"inc", "a/b c?d"}, out: "1\n", sent: sentRequest{"POST", "/counters/a%2Fb%20c%3Fd/increment", `{"amount":1}`}},
		{args: []string{"ttl", "a/b c?d", "30"}, out: "30s\n", sent: sentRequest{"PUT", "/counters/a%2Fb%20c%3Fd/ttl", `{"seconds":30}`}},
		{args: []string{"del", "a/b c?d"}, out: "deleted\n", sent: sentRequest{"DELETE", "/counters/a%2Fb%20c%3Fd", ""}},
		// The server's limit, as the server words it.
		{args: []string{"ttl", "x", "100000d"}, code: 2, errWants: "dcounter ttl:"},
		{args: []string{"inc", "y", "--ttl", "876000h"}, code: 1, errWants: "400 Bad Request: a TTL must be a positive integer of at most"},
	} {
		before := len(ts.sent)
		code, out, errOut := ts.run(t, s.args...)
		if code != s.code || out != s.out || !strings.Contains(errOut, s.errWants) || (s.errWants == "" && errOut != "") {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", s.args, code, out, errOut, s.code, s.out, s.errWants)
		}
		if s.sent.method != "" && (len(ts.sent) != before+1 || ts.last() != s.sent) {
			t.Fatalf("%q sent %+v, want %+v", s.args, ts.last(), s.sent)
		}
	}
}

func TestClientLifecycleUsageErrors(t *testing.T) {
	ts := newClientTestServer(t)
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"del"}, "want KEY, got 0 arguments"},
		{[]string{"del", "a", "b"}, "want KEY, got 2 arguments"},
		{[]string{"persist"}, "want KEY"},
		{[]string{"ttl"}, "want KEY [SECONDS], got 0"},
		{[]string{"ttl", "a", "5", "6"}, "want KEY [SECONDS], got 3"},
		{[]string{"ttl", "a", "0"}, "must be positive"},
		{[]string{"ttl", "a", "0s"}, "must be positive"},
		{[]string{"ttl", "a", "--", "-5s"}, "must be positive"},
		{[]string{"ttl", "a", "1.5"}, "want seconds or a duration"},
		{[]string{"ttl", "a", "ten"}, "want seconds or a duration"},
		{[]string{"ttl", "a", "1500us"}, "whole milliseconds"},
		{[]string{"ttl", "a", "99999999999999999999"}, "want seconds or a duration"},
		{[]string{"inc", "a", "--ttl", "1us"}, "whole milliseconds"},
		{[]string{"inc", "a", "--ttl", "-1s"}, "must be positive"},
		{[]string{"inc", "a", "--ttl-always"}, "--ttl-always needs --ttl"},
		{[]string{"get", "a", "--ttl", "1s"}, "unknown flag: --ttl"},
		{[]string{"keys", "a", "b"}, "want at most one PREFIX"},
		{[]string{"keys", "--limit", "-1"}, "--limit must not be negative"},
	} {
		code, out, errOut := ts.run(t, s.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, s.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q", s.args, code, out, errOut, exitUsage, s.want)
		}
	}
	if len(ts.sent) != 0 {
		t.Errorf("usage errors sent %d requests: %+v", len(ts.sent), ts.sent)
	}
}

func TestClientKeys(t *testing.T) {
	ts := newClientTestServer(t)
	keys := []string{"a", "a b", "a/b", "b", "q\"uote", "tab\there", "é", "back\\slash", "nl\nx", "z"}
	for _, k := range keys {
		if code, _, errOut := ts.run(t, "inc", k); code != 0 {
			t.Fatalf("inc %q: %s", k, errOut)
		}
	}
	ts.run(t, "inc", "b", "--by", "41", "--ttl", "1m")
	ts.run(t, "inc", "gone")
	ts.run(t, "del", "gone")
	ts.mu.Lock()
	ts.pageSize = 3 // short pages: the verb must follow next
	ts.mu.Unlock()
	want := strings.Join([]string{
		"a 1", `"a b" 1`, "a/b 1", "b 42 1m0s", `"back\\slash" 1`, `"nl\nx" 1`, `"q\"uote" 1`, `"tab\there" 1`, "z 1", "é 1",
	}, "\n") + "\n"
	code, out, errOut := ts.run(t, "keys")
	if code != 0 || out != want {
		t.Fatalf("keys: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, want)
	}
	if code, out, _ := ts.run(t, "keys", "a"); code != 0 || out != "a 1\n\"a b\" 1\na/b 1\n" {
		t.Fatalf("keys a: %d %q", code, out)
	}
	if code, out, _ := ts.run(t, "keys", "nothing"); code != 0 || out != "" {
		t.Fatalf("keys nothing: %d %q", code, out)
	}
	before := len(ts.sent)
	if code, out, _ := ts.run(t, "keys", "--limit", "4"); code != 0 || out != "a 1\n\"a b\" 1\na/b 1\nb 42 1m0s\n" {
		t.Fatalf("keys --limit 4: %d %q", code, out)
	}
	if got := ts.sent[before:]; len(got) != 2 || got[0].uri != "/counters?limit=4" || !strings.HasPrefix(got[1].uri, "/counters?cursor=") || !strings.HasSuffix(got[1].uri, "&limit=1") {
		t.Fatalf("keys --limit 4 sent %+v", got)
	}
	// --json: one item per line, exactly as the server answered it.
	code, out, _ = ts.run(t, "keys", "b", "--json")
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("keys --json line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if code != 0 || len(lines) != 2 || lines[0]["key"] != "b" || lines[0]["ttl_ms"] != 60000.0 || lines[1]["key"] != "back\\slash" {
		t.Fatalf("keys b --json: %d %q", code, out)
	}
	// A page that fails: what came before is printed, then exit 1.
	ts.mu.Lock()
	ts.lists, ts.failPage = 0, 2
	ts.mu.Unlock()
	code, out, errOut = ts.run(t, "keys")
	if code != 1 || out != "a 1\n\"a b\" 1\na/b 1\n" || !strings.Contains(errOut, "503 Service Unavailable: test: page refused") {
		t.Fatalf("failing page: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestKeyText(t *testing.T) {
	for k, want := range map[string]string{
		"plain": "plain", "a/b:c": "a/b:c", "é☃": "é☃", "": `""`, "a b": `"a b"`, "\x00": `"\x00"`, "\u00a0": `"\u00a0"`,
	} {
		if got := keyText(k); got != want {
			t.Errorf("keyText(%q) = %s, want %s", k, got, want)
		}
	}
}

// A write whose answer never comes says so, and how to retry it safely.
func TestClientOutcomeUnknownNamesTheKey(t *testing.T) {
	clearDcounterEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"inc", "k", "--addr", srv.URL, "--timeout", "2s"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "may or may not have been applied") || !strings.Contains(errb.String(), "--idempotency-key ") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// A verb's own settings never come from the environment, only how to reach
// the server: DCOUNTER_BY=1000 dcounter inc adds 1.
func TestClientVerbReadsOnlyConnectionVariables(t *testing.T) {
	ts := newClientTestServer(t)
	t.Setenv("DCOUNTER_ADDR", ts.url)
	for k, v := range map[string]string{"DCOUNTER_BY": "1000", "DCOUNTER_JSON": "true", "DCOUNTER_TTL": "1h", "DCOUNTER_INC_BY": "7", "DCOUNTER_INC_ADDR": "http://127.0.0.1:1"} {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"inc", "scoped"}, &out, &errb); code != 0 || out.String() != "1\n" {
		t.Fatalf("inc = %d, stdout %q, stderr %q; want 0 and 1", code, out.String(), errb.String())
	}
	if got := ts.last(); got != (sentRequest{"POST", "/counters/scoped/increment", `{"amount":1}`}) {
		t.Fatalf("sent %+v", got)
	}
}

// health checks --addr, read from DCOUNTER_ADDR, unless given a URL.
func TestHealthHonoursAddrVariable(t *testing.T) {
	ts := newClientTestServer(t)
	dead := "http://127.0.0.1:1"
	for _, tc := range []struct {
		env  string
		args []string
		code int
	}{
		{ts.url, nil, 0},
		{dead, nil, 1},
		{dead, []string{ts.url}, 0},
		{ts.url, []string{dead}, 1},
		{dead, []string{"--addr", ts.url}, 0},
	} {
		t.Setenv("DCOUNTER_ADDR", tc.env)
		var out, errb bytes.Buffer
		before := len(ts.sent)
		code := run(context.Background(), append([]string{"health"}, tc.args...), &out, &errb)
		if code != tc.code || out.Len() != 0 {
			t.Errorf("DCOUNTER_ADDR=%s health %q = %d, stdout %q, stderr %q; want %d", tc.env, tc.args, code, out.String(), errb.String(), tc.code)
		}
		if reached := len(ts.sent) > before; reached != (tc.code == 0) {
			t.Errorf("DCOUNTER_ADDR=%s health %q: server reached %v", tc.env, tc.args, reached)
		}
	}
}
