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
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
)

// fakeBackend is a one-replica backend using the real CRDT rules, on a
// clock the test sets (Unix ms).
type fakeBackend struct {
	mu   sync.Mutex
	ks   *crdt.Keyspace
	now  int64
	scan int // keys a listing visits per page; 0: no bound
	idem map[string]idemAnswer
}

type idemAnswer struct {
	request string
	answer  any
}

func newFake() *fakeBackend {
	return &fakeBackend{ks: crdt.New(), now: 1_700_000_000_000, idem: map[string]idemAnswer{}}
}

func (f *fakeBackend) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now += d.Milliseconds()
}

// replay returns the first answer to idem for the same request. Caller
// holds mu.
func (f *fakeBackend) replay(idem, request string) (any, bool, error) {
	if idem == "" {
		return nil, false, nil
	}
	a, ok := f.idem[idem]
	if !ok {
		return nil, false, nil
	}
	if a.request != request {
		return nil, false, ErrIdempotencyReused
	}
	return a.answer, true, nil
}

func (f *fakeBackend) remember(idem, request string, answer any) {
	if idem != "" {
		f.idem[idem] = idemAnswer{request, answer}
	}
}

func (f *fakeBackend) counter(key string) service.Counter {
	st := f.ks.StatusOf(key, f.now)
	c := service.Counter{Key: key, Value: st.Value, Live: st.Live}
	if st.Deadline != 0 {
		c.TTL = time.Duration(st.Deadline-f.now) * time.Millisecond
	}
	return c
}

func (f *fakeBackend) Get(_ context.Context, key string) (service.Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counter(key), nil
}

func (f *fakeBackend) Add(_ context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	request := fmt.Sprint("add", key, delta, w.TTL, w.TTLAlways)
	if a, ok, err := f.replay(w.Idem, request); ok || err != nil {
		c, _ := a.(service.Counter)
		return c, ok, err
	}
	gen, cur := f.ks.WriteGen(key, 1, f.now)
	e, err := crdt.Change(key, 1, gen, cur, f.counter(key).Value, delta)
	if err != nil {
		return service.Counter{}, false, err
	}
	f.ks.Merge(e)
	if w.TTL > 0 {
		mode := crdt.TTLIfNone
		if w.TTLAlways {
			mode = crdt.TTLAlways
		}
		if m, ok := f.ks.Expiry(key, gen, f.now+w.TTL.Milliseconds(), mode); ok {
			f.ks.MergeMeta(m)
		}
	}
	c := f.counter(key)
	f.remember(w.Idem, request, c)
	return c, false, nil
}

func (f *fakeBackend) Delete(_ context.Context, key string, idem string) (bool, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok, err := f.replay(idem, "delete "+key); ok || err != nil {
		existed, _ := a.(bool)
		return existed, ok, err
	}
	m, existed := f.ks.Deletion(key, f.now)
	f.ks.MergeMeta(m)
	f.remember(idem, "delete "+key, existed)
	return existed, false, nil
}

func (f *fakeBackend) SetTTL(_ context.Context, key string, ttl time.Duration, idem string) (service.Counter, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	request := fmt.Sprint("ttl", key, ttl)
	if a, ok, err := f.replay(idem, request); ok || err != nil {
		c, _ := a.(service.Counter)
		return c, ok, err
	}
	st := f.ks.StatusOf(key, f.now)
	if !st.Live {
		return service.Counter{}, false, fmt.Errorf("fake: %w", ErrNotFound)
	}
	var deadline int64
	if ttl > 0 {
		deadline = f.now + ttl.Milliseconds()
	}
	if m, ok := f.ks.Expiry(key, st.Gen, deadline, crdt.TTLAlways); ok {
		f.ks.MergeMeta(m)
	}
	c := f.counter(key)
	f.remember(idem, request, c)
	return c, false, nil
}

func (f *fakeBackend) List(_ context.Context, req service.ListRequest) (service.ListPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	scan := f.scan
	if scan == 0 {
		scan = math.MaxInt
	}
	items, next, more := f.ks.List(req.Prefix, req.Cursor, req.Limit, scan, f.now)
	var page service.ListPage
	for _, it := range items {
		c := service.Counter{Key: it.Key, Value: it.Value, Live: true}
		if it.Deadline != 0 {
			c.TTL = time.Duration(it.Deadline-f.now) * time.Millisecond
		}
		page.Items = append(page.Items, c)
	}
	if more {
		page.Next = next
	}
	return page, nil
}

func (f *fakeBackend) Nodes(context.Context) ([]service.Member, error) {
	return []service.Member{{ID: "0000000000000001", Name: "n1", Status: "alive"}}, nil
}

func (f *fakeBackend) Health(context.Context) (bool, service.Health) {
	return true, service.Health{Status: "ok"}
}

func (f *fakeBackend) Writes(ctx context.Context, ws []service.Write, out []service.WriteResult) {
	testutil.WriteEach(ctx, f, ws, out)
}

var _ service.Service = (*fakeBackend)(nil)

func newTestServer(t *testing.T) *httptest.Server {
	srv, _ := newFakeServer(t)
	return srv
}

func newFakeServer(t *testing.T) (*httptest.Server, *fakeBackend) {
	f := newFake()
	srv := httptest.NewServer(NewHandler(f, nil, nil))
	t.Cleanup(srv.Close)
	return srv, f
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
		{"patch", "PATCH", "/counters/x", "", 405, "method not allowed"},
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

func FuzzParseWrite(f *testing.F) {
	for _, s := range []string{"", `{"amount":5}`, `{"amount":-1}`, `{"amount":1.5}`, `{}`, `null`, `{"amount":9223372036854775807}`,
		`{"ttl_seconds":60}`, `{"ttl_ms":1,"ttl_mode":"always"}`, `{"ttl_mode":"if_none"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWrite(strings.NewReader(s))
		if err == nil && (w.Amount <= 0 || w.TTL < 0 || w.TTL > service.MaxTTL || (w.TTLAlways && w.TTL == 0)) {
			t.Fatalf("ParseWrite(%q) = %+v without error", s, w)
		}
	})
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"", `{"seconds":5}`, `{"milliseconds":1}`, `{"seconds":0}`, `{"seconds":1,"milliseconds":1}`, `{"seconds":315360000}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(strings.NewReader(s))
		if err == nil && (d <= 0 || d > service.MaxTTL) {
			t.Fatalf("ParseTTL(%q) = %v without error", s, d)
		}
	})
}
