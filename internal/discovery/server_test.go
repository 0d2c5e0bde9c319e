package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/testutil"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const testTTL = 5 * time.Second

// waitFor polls until cond holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// testLogger routes the server's warnings and errors to t.Log; the info
// lines (one per registration) would drown the output of the bulk tests.
func testLogger(t testing.TB) *slog.Logger {
	return testutil.Logger(t, slog.LevelWarn)
}

// newServer returns a running Server on clk (TTL testTTL unless cfg says
// otherwise), closed when the test ends. It waits until the server's expiry
// ticker is armed, because a ticker created after an Advance misses it.
func newServer(t testing.TB, clk *clock.Fake, cfg Config) *Server {
	t.Helper()
	if cfg.TTL == 0 {
		cfg.TTL = testTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cfg.Clock = clk
	armed := clk.Waiters() + 1
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	waitFor(t, "the expiry ticker to be armed", func() bool { return clk.Waiters() >= armed })
	return s
}

// testServer is a Server behind a real HTTP listener.
type testServer struct {
	t   testing.TB
	clk *clock.Fake
	srv *Server
	hs  *httptest.Server
}

func startServer(t testing.TB, clk *clock.Fake, cfg Config) *testServer {
	t.Helper()
	s := newServer(t, clk, cfg)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testServer{t: t, clk: clk, srv: s, hs: hs}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (ts *testServer) do(method, path, body string) response {
	ts.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.hs.URL+path, r)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.hs.Client().Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// register registers e and returns the ttl_ms the server answered.
func (ts *testServer) register(e Entry) int64 {
	ts.t.Helper()
	return ts.upsertOK("/register", e)
}

func (ts *testServer) heartbeat(e Entry) {
	ts.t.Helper()
	ts.upsertOK("/heartbeat", e)
}

func (ts *testServer) upsertOK(path string, e Entry) int64 {
	ts.t.Helper()
	r := ts.do(http.MethodPost, path, bodyOf(e))
	if r.status != http.StatusOK {
		ts.t.Fatalf("POST %s %s: %d %s", path, e.ID, r.status, r.body)
	}
	var got struct {
		TTLMillis *int64 `json:"ttl_ms"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || got.TTLMillis == nil {
		ts.t.Fatalf("POST %s: body %q: want {\"ttl_ms\":…} (%v)", path, r.body, err)
	}
	return *got.TTLMillis
}

func (ts *testServer) peers() []Entry {
	ts.t.Helper()
	r := ts.do(http.MethodGet, "/peers", "")
	if r.status != http.StatusOK {
		ts.t.Fatalf("GET /peers: %d %s", r.status, r.body)
	}
	var es []Entry
	if err := json.Unmarshal(r.body, &es); err != nil {
		ts.t.Fatalf("GET /peers: body %q: %v", r.body, err)
	}
	return es
}

// entries is the registry size /health reports; unlike /peers it counts
// expired entries the expiry ticker has not removed yet.
func (ts *testServer) entries() int {
	ts.t.Helper()
	r := ts.do(http.MethodGet, "/health", "")
	if r.status != http.StatusOK {
		ts.t.Fatalf("GET /health: %d %s", r.status, r.body)
	}
	var h struct {
		Status  string `json:"status"`
		Entries *int   `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &h); err != nil || h.Status != "ok" || h.Entries == nil {
		ts.t.Fatalf("GET /health: body %q: want {\"status\":\"ok\",\"entries\":N} (%v)", r.body, err)
	}
	return *h.Entries
}

func (ts *testServer) waitEntries(n int) {
	ts.t.Helper()
	waitFor(ts.t, fmt.Sprintf("/health to report %d entries", n), func() bool { return ts.entries() == n })
}

// testEntry returns a valid, distinct entry for every i.
func testEntry(i int) Entry {
	return Entry{
		ID:         fmt.Sprintf("%016x", 0xd1c0000000000000+uint64(i)),
		Name:       fmt.Sprintf("node-%d", i),
		GossipAddr: fmt.Sprintf("10.0.%d.%d:7946", i/250, i%250+1),
		HTTPAddr:   fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1),
	}
}

// bodyOf is the request body a node sends for e.
func bodyOf(e Entry) string {
	b, err := json.Marshal(map[string]string{
		"id": e.ID, "name": e.Name, "gossip_addr": e.GossipAddr, "http_addr": e.HTTPAddr,
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// wantEntries fails unless got holds exactly want (ignoring order), each
// with the last_seen given.
func wantEntries(t testing.TB, got []Entry, want ...Entry) {
	t.Helper()
	byID := func(a, b Entry) int { return strings.Compare(a.ID, b.ID) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	if len(got) != len(want) {
		t.Fatalf("peers = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Name != w.Name || g.GossipAddr != w.GossipAddr || g.HTTPAddr != w.HTTPAddr ||
			!g.LastSeen.Equal(w.LastSeen) {
			t.Fatalf("peers = %+v, want %+v", got, want)
		}
	}
}

func seenAt(e Entry, at time.Time) Entry {
	e.LastSeen = at
	return e
}

// wantError checks that r is an error answer: the status, a JSON body
// {"error": "..."} and, if sub is set, that the message contains it.
func wantError(t testing.TB, r response, status int, sub string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (body %q), want %d", r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]string
	if err := json.Unmarshal(r.body, &e); err != nil || e["error"] == "" || len(e) != 1 {
		t.Fatalf("body %q: want {\"error\": message} (%v)", r.body, err)
	}
	if !strings.Contains(e["error"], sub) {
		t.Errorf("error %q does not mention %q", e["error"], sub)
	}
}

func TestRegisterThenPeersListsEntry(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	a := testEntry(1)

	r := ts.do(http.MethodPost, "/register", bodyOf(a))
	if r.status != http.StatusOK {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("register Content-Type %q", ct)
	}
	var ack map[string]any
	if err := json.Unmarshal(r.body, &ack); err != nil || len(ack) != 1 || ack["ttl_ms"] != float64(5000) {
		t.Fatalf("register body %q, want {\"ttl_ms\":5000} (%v)", r.body, err)
	}

	// The wire shape of /peers: exactly these keys, last_seen in RFC 3339.
	r = ts.do(http.MethodGet, "/peers", "")
	if r.status != http.StatusOK {
		t.Fatalf("peers: %d %s", r.status, r.body)
	}
	var raw []map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("peers body %q (%v)", r.body, err)
	}
	want := map[string]any{
		"id": a.ID, "name": a.Name, "gossip_addr": a.GossipAddr, "http_addr": a.HTTPAddr,
		"last_seen": t0.Format(time.RFC3339Nano),
	}
	for k, v := range want {
		if raw[0][k] != v {
			t.Errorf("peers[0][%q] = %v, want %v", k, raw[0][k], v)
		}
	}
	if len(raw[0]) != len(want) {
		t.Errorf("peers[0] = %v: want exactly the keys %v", raw[0], slices.Sorted(maps.Keys(want)))
	}
	wantEntries(t, ts.peers(), seenAt(a, t0))
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d, want 1", n)
	}

	// http_addr is optional.
	b := testEntry(2)
	b.HTTPAddr = ""
	ts.register(b)
	wantEntries(t, ts.peers(), seenAt(a, t0), seenAt(b, t0))

	// HEAD answers like GET without a body.
	if r := ts.do(http.MethodHead, "/peers", ""); r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("HEAD /peers: %d %q", r.status, r.body)
	}
}

func TestRegisterReportsConfiguredTTL(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{TTL: 1500 * time.Millisecond})
	if got := ts.register(testEntry(1)); got != 1500 {
		t.Fatalf("ttl_ms = %d, want 1500", got)
	}
}

func TestRegisterAgainReplacesEntry(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	a, other := testEntry(1), testEntry(2)
	ts.register(a)
	ts.register(other)

	clk.Advance(2 * time.Second)
	moved := a
	moved.Name = "node-1-restarted"
	moved.GossipAddr = "192.168.7.9:17946"
	moved.HTTPAddr = "[fd00::9]:18080"
	ts.register(moved)

	wantEntries(t, ts.peers(), seenAt(moved, t0.Add(2*time.Second)), seenAt(other, t0))
	if n := ts.entries(); n != 2 {
		t.Fatalf("/health entries = %d, want 2", n)
	}
}

func TestHeartbeatRefreshesLastSeen(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	a, silent := testEntry(1), testEntry(2)
	ts.register(a)
	ts.register(silent)

	clk.Advance(3 * time.Second)
	ts.heartbeat(a)
	wantEntries(t, ts.peers(), seenAt(a, t0.Add(3*time.Second)), seenAt(silent, t0))

	// Past the TTL of the original registration: a is still live, the
	// entry that never sent a heartbeat is not.
	clk.Advance(3 * time.Second)
	wantEntries(t, ts.peers(), seenAt(a, t0.Add(3*time.Second)))
	// Once the ticker has removed the silent entry, a is still there: the
	// sweep honours the heartbeat too.
	ts.waitEntries(1)
	wantEntries(t, ts.peers(), seenAt(a, t0.Add(3*time.Second)))
}

func TestHeartbeatUnknownIDIsNotFound(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	a, stranger := testEntry(1), testEntry(2)
	ts.register(a)

	wantError(t, ts.do(http.MethodPost, "/heartbeat", bodyOf(stranger)), http.StatusNotFound, "register again")
	wantEntries(t, ts.peers(), seenAt(a, t0))
	if n := ts.entries(); n != 1 {
		t.Fatalf("a heartbeat for an unknown id created an entry: /health entries = %d", n)
	}

	// An entry the server has dropped is unknown again: the node has to
	// register, which is what makes a restarted server relearn the cluster.
	clk.Advance(testTTL + time.Second)
	ts.waitEntries(0)
	wantError(t, ts.do(http.MethodPost, "/heartbeat", bodyOf(a)), http.StatusNotFound, a.ID)
	ts.register(a)
	wantEntries(t, ts.peers(), seenAt(a, t0.Add(testTTL+time.Second)))
}

func TestEntryExpiresAfterTTL(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	a := testEntry(1)
	ts.register(a)

	clk.Advance(testTTL)
	wantEntries(t, ts.peers(), seenAt(a, t0)) // live for exactly TTL
	clk.Advance(time.Millisecond)
	if ps := ts.peers(); len(ps) != 0 {
		t.Fatalf("peers %+v after TTL without heartbeat, want none", ps)
	}
	clk.Advance(time.Second) // the next expiry tick
	ts.waitEntries(0)
	if ps := ts.peers(); len(ps) != 0 {
		t.Fatalf("peers %+v after expiry, want none", ps)
	}
}

// An entry leaves /peers the moment its TTL runs out, not when the expiry
// ticker next runs. The entry comes from the data file so that its TTL runs
// out before the ticker's first tick, which makes "not swept yet" certain.
func TestExpiredEntryLeavesPeersBeforeSweep(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	a := seenAt(testEntry(1), t0.Add(-testTTL)) // expires at t0 + 1ns
	writeRegistry(t, file, a)

	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{DataFile: file})
	wantEntries(t, ts.peers(), a)

	clk.Advance(time.Millisecond) // far less than the ticker's period
	if ps := ts.peers(); len(ps) != 0 {
		t.Fatalf("peers %+v after TTL, want none", ps)
	}
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d before any expiry tick, want 1 (setup error: the ticker ran)", n)
	}
	clk.Advance(time.Second)
	ts.waitEntries(0)
}

func writeRegistry(t testing.TB, file string, es ...Entry) {
	t.Helper()
	b, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidRequestsAreRejected(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	good := testEntry(1)
	ts.register(good)
	// A wrongly accepted register or heartbeat would now move last_seen.
	clk.Advance(time.Second)

	with := func(f func(*Entry)) string {
		e := good
		e.GossipAddr = "10.9.9.9:7946"
		f(&e)
		return bodyOf(e)
	}
	valid := with(func(*Entry) {})
	newcomer := bodyOf(testEntry(2))

	type tc struct {
		name         string
		method, path string
		body         string
		status       int
		sub          string
	}
	cases := []tc{
		{"register body over 16 KiB", "POST", "/register", valid + strings.Repeat(" ", MaxBody+1-len(valid)), 413, "larger than 16384"},
		{"heartbeat body over 16 KiB", "POST", "/heartbeat", valid + strings.Repeat(" ", MaxBody+1-len(valid)), 413, "larger than"},
		{"far over 16 KiB", "POST", "/register", strings.Repeat("x", 1<<20), 413, "larger than"},
		{"empty body", "POST", "/register", "", 400, "JSON"},
		{"not JSON", "POST", "/register", "id=" + good.ID, 400, "JSON"},
		{"truncated JSON", "POST", "/register", valid[:len(valid)-1], 400, "JSON"},
		{"JSON array", "POST", "/register", "[" + valid + "]", 400, "JSON"},
		{"JSON string", "POST", "/register", `"` + good.ID + `"`, 400, "JSON"},
		{"id not a string", "POST", "/register", `{"id":1,"gossip_addr":"10.9.9.9:7946"}`, 400, "JSON"},
		{"unknown field", "POST", "/register", strings.TrimSuffix(valid, "}") + `,"port":7946}`, 400, "unknown field"},
		{"unknown field in heartbeat", "POST", "/heartbeat", strings.TrimSuffix(valid, "}") + `,"incarnation":2}`, 400, "unknown field"},
		{"JSON null", "POST", "/register", "null", 400, "id"},
		{"missing id", "POST", "/register", with(func(e *Entry) { e.ID = "" }), 400, "16 hex"},
		{"short id", "POST", "/register", with(func(e *Entry) { e.ID = "abc" }), 400, "16 hex"},
		{"long id", "POST", "/register", with(func(e *Entry) { e.ID = good.ID + "0" }), 400, "16 hex"},
		{"non-hex id", "POST", "/register", with(func(e *Entry) { e.ID = "zzzzzzzzzzzzzzzz" }), 400, "16 hex"},
		{"0x id", "POST", "/register", with(func(e *Entry) { e.ID = "0x" + good.ID[2:] }), 400, "16 hex"},
		{"signed id", "POST", "/register", with(func(e *Entry) { e.ID = "+" + good.ID[1:] }), 400, "16 hex"},
		{"id with underscore", "POST", "/register", with(func(e *Entry) { e.ID = good.ID[:8] + "_" + good.ID[9:] }), 400, "16 hex"},
		{"id with space", "POST", "/register", with(func(e *Entry) { e.ID = " " + good.ID[1:] }), 400, "16 hex"},
		{"bad id in heartbeat", "POST", "/heartbeat", with(func(e *Entry) { e.ID = "abc" }), 400, "16 hex"},
		{"name too long", "POST", "/register", with(func(e *Entry) { e.Name = strings.Repeat("n", 257) }), 400, "name"},
		{"gossip_addr empty", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "" }), 400, "gossip_addr"},
		{"gossip_addr no port", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "x" }), 400, "gossip_addr"},
		{"gossip_addr empty port", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "host:" }), 400, "gossip_addr"},
		{"gossip_addr empty host", "POST", "/register", with(func(e *Entry) { e.GossipAddr = ":80" }), 400, "gossip_addr"},
		{"gossip_addr port 0", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "h:0" }), 400, "gossip_addr"},
		{"gossip_addr port 70000", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "h:70000" }), 400, "gossip_addr"},
		{"gossip_addr port 65536", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "h:65536" }), 400, "gossip_addr"},
		{"gossip_addr negative port", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "h:-1" }), 400, "gossip_addr"},
		{"gossip_addr named port", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "h:http" }), 400, "gossip_addr"},
		{"gossip_addr unbracketed IPv6", "POST", "/register", with(func(e *Entry) { e.GossipAddr = "fd00::1:80" }), 400, "gossip_addr"},
		{"gossip_addr too long", "POST", "/register", with(func(e *Entry) { e.GossipAddr = strings.Repeat("h", 250) + ".test:1" }), 400, "gossip_addr"},
		{"bad gossip_addr in heartbeat", "POST", "/heartbeat", with(func(e *Entry) { e.GossipAddr = "h:0" }), 400, "gossip_addr"},
		{"http_addr no port", "POST", "/register", with(func(e *Entry) { e.HTTPAddr = "x" }), 400, "http_addr"},
		{"http_addr empty host", "POST", "/register", with(func(e *Entry) { e.HTTPAddr = ":8080" }), 400, "http_addr"},
		{"http_addr port 0", "POST", "/register", with(func(e *Entry) { e.HTTPAddr = "h:0" }), 400, "http_addr"},
		{"http_addr port 70000", "POST", "/register", with(func(e *Entry) { e.HTTPAddr = "h:70000" }), 400, "http_addr"},
		{"http_addr URL", "POST", "/register", with(func(e *Entry) { e.HTTPAddr = "http://h:8080" }), 400, "http_addr"},
		{"GET /register", "GET", "/register", "", 405, "POST"},
		{"PUT /register", "PUT", "/register", newcomer, 405, "POST"},
		{"GET /heartbeat", "GET", "/heartbeat", "", 405, "POST"},
		{"DELETE /heartbeat", "DELETE", "/heartbeat", valid, 405, "POST"},
		{"POST /peers", "POST", "/peers", newcomer, 405, "GET"},
		{"PUT /peers", "PUT", "/peers", newcomer, 405, "GET"},
		{"DELETE /peers", "DELETE", "/peers", "", 405, "GET"},
		{"root", "GET", "/", "", 404, "/"},
		{"POST root", "POST", "/", newcomer, 404, "/"},
		{"unknown path", "POST", "/registers", newcomer, 404, "/registers"},
		{"trailing slash", "POST", "/register/", newcomer, 404, "/register/"},
		{"peers subpath", "GET", "/peers/" + good.ID, "", 404, "/peers/"},
		{"prefixed path", "GET", "/v1/peers", "", 404, "/v1/peers"},
		{"case differs", "POST", "/Register", newcomer, 404, "/Register"},
	}
	wantAllow := map[string]string{"/register": "POST", "/heartbeat": "POST", "/peers": "GET, HEAD"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ts.do(c.method, c.path, c.body)
			wantError(t, r, c.status, c.sub)
			if c.status == http.StatusMethodNotAllowed {
				if got := r.header.Get("Allow"); got != wantAllow[c.path] {
					t.Errorf("Allow %q, want %q", got, wantAllow[c.path])
				}
			}
		})
	}
	wantEntries(t, ts.peers(), seenAt(good, t0))
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d after invalid requests, want 1", n)
	}
}

func TestBodyOfExactlyMaxBodyIsAccepted(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	a := testEntry(1)
	body := bodyOf(a)
	body += strings.Repeat(" ", MaxBody-len(body))
	if r := ts.do(http.MethodPost, "/register", body); r.status != http.StatusOK {
		t.Fatalf("register with a %d-byte body: %d %s", len(body), r.status, r.body)
	}
	wantEntries(t, ts.peers(), seenAt(a, t0))
}

func TestTrailingDataAfterJSONIsRejected(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	a := testEntry(1)
	for _, tail := range []string{"x", "}", bodyOf(testEntry(2)), "[]"} {
		wantError(t, ts.do(http.MethodPost, "/register", bodyOf(a)+tail), http.StatusBadRequest, "JSON")
	}
	if n := ts.entries(); n != 0 {
		t.Fatalf("/health entries = %d after invalid requests, want 0", n)
	}
}

func TestHealthRejectsWrongMethods(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		r := ts.do(m, "/health", "")
		wantError(t, r, http.StatusMethodNotAllowed, "GET")
		if got := r.header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s /health: Allow %q, want \"GET, HEAD\"", m, got)
		}
	}
}

func TestRegistryFullRejectsNewIDs(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{MaxPerSource: MaxEntries})
	// Fill in-process: ten thousand round trips over loopback would only
	// make the test slow. The requests come from the address ts.do uses,
	// so that the same source may update them later.
	for i := range MaxEntries {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(bodyOf(testEntry(i))))
		req.RemoteAddr = "127.0.0.1:1"
		ts.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("register #%d: %d %s", i, rec.Code, rec.Body)
		}
	}
	last := testEntry(MaxEntries)
	wantError(t, ts.do(http.MethodPost, "/register", bodyOf(last)), http.StatusServiceUnavailable, "full")
	if n := ts.entries(); n != MaxEntries {
		t.Fatalf("/health entries = %d, want %d", n, MaxEntries)
	}

	// Known nodes keep their place in a full registry.
	clk.Advance(time.Second)
	moved := testEntry(7)
	moved.GossipAddr = "10.200.0.1:7946"
	ts.register(moved)
	ts.heartbeat(testEntry(8))
	if n := ts.entries(); n != MaxEntries {
		t.Fatalf("/health entries = %d, want %d", n, MaxEntries)
	}

	// Room again once entries expire.
	clk.Advance(testTTL)
	ts.waitEntries(2)
	ts.register(last)
	if n := ts.entries(); n != 3 {
		t.Fatalf("/health entries = %d, want 3", n)
	}
}

func TestDataFileKeepsLiveEntriesAcrossRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{DataFile: file})
	a, b := testEntry(1), testEntry(2)
	ts.register(a)
	clk.Advance(3 * time.Second)
	ts.register(b)
	ts.hs.Close()
	if err := ts.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := ts.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// Restarted within both TTLs: both entries, last_seen as before.
	clk.Advance(time.Second) // t0+4s
	ts = startServer(t, clk, Config{DataFile: file})
	wantEntries(t, ts.peers(), seenAt(a, t0), seenAt(b, t0.Add(3*time.Second)))
	ts.hs.Close()
	ts.srv.Close()

	// Restarted after a's TTL: a is not loaded at all, b is.
	clk.Advance(2 * time.Second) // t0+6s
	ts = startServer(t, clk, Config{DataFile: file})
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d after loading, want 1 (the expired entry was loaded)", n)
	}
	wantEntries(t, ts.peers(), seenAt(b, t0.Add(3*time.Second)))
}

func TestDataFileIsSavedWhileRunning(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{DataFile: file})
	a := testEntry(1)
	ts.register(a)

	// No Close: a crashed server must not lose what it saved on its ticks.
	clk.Advance(time.Second)
	waitFor(t, "the registry to be saved", func() bool {
		b, err := os.ReadFile(file)
		return err == nil && bytes.Contains(b, []byte(a.ID))
	})
	again := startServer(t, clk, Config{DataFile: file})
	wantEntries(t, again.peers(), seenAt(a, t0))
}

func TestDataFileSkipsInvalidEntries(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	good := seenAt(testEntry(1), t0)
	badID := seenAt(testEntry(2), t0)
	badID.ID = "not-an-id"
	badAddr := seenAt(testEntry(3), t0)
	badAddr.GossipAddr = "h:0"
	writeRegistry(t, file, good, badID, badAddr)

	ts := startServer(t, clock.NewFake(t0), Config{DataFile: file})
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d, want 1", n)
	}
	wantEntries(t, ts.peers(), good)
}

func TestMissingDataFileStartsEmpty(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	ts := startServer(t, clock.NewFake(t0), Config{DataFile: file})
	if n := ts.entries(); n != 0 {
		t.Fatalf("/health entries = %d, want 0", n)
	}
}

func TestBadDataFileFailsNew(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"truncated":     `[{"id":"d1c0000000000001","name":"node-1"`,
		"not JSON":      "not json at all",
		"wrong shape":   `{"id":"d1c0000000000001"}`,
		"wrong type":    `[{"id":1}]`,
		"binary":        "\x00\x01\x02\xff",
		"empty (0 len)": "",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{DataFile: file, Clock: clock.NewFake(t0), Logger: testLogger(t)})
			if err == nil {
				s.Close()
				t.Fatalf("New with data file %q succeeded", content)
			}
			if !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q does not name the file %s", err, file)
			}
		})
	}

	// A data file that cannot be read is an error too, not an empty registry.
	s, err := New(Config{DataFile: dir, Clock: clock.NewFake(t0), Logger: testLogger(t)})
	if err == nil {
		s.Close()
		t.Fatal("New with a directory as data file succeeded")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not name %s", err, dir)
	}
}

func TestIDSpellingsOfOneReplicaShareAnEntry(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	lower := testEntry(1)
	upper := lower
	upper.ID = strings.ToUpper(lower.ID)
	ts.register(lower)
	ts.do(http.MethodPost, "/register", bodyOf(upper)) // rejecting it is as good as merging it
	if n := ts.entries(); n != 1 {
		t.Fatalf("/health entries = %d for one replica registered under two spellings of its id, want 1", n)
	}
}

func TestCloseStopsTheTicker(t *testing.T) {
	clk := clock.NewFake(t0)
	s := newServer(t, clk, Config{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers still armed after Close", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTinyTTLIsRefused(t *testing.T) {
	for _, ttl := range []time.Duration{time.Nanosecond, 3 * time.Nanosecond, MinTTL - 1} {
		if _, err := New(Config{TTL: ttl, Clock: clock.NewFake(t0)}); err == nil || !strings.Contains(err.Error(), "minimum") {
			t.Fatalf("TTL %v: err = %v, want a refusal naming the minimum", ttl, err)
		}
	}
	s, err := New(Config{TTL: MinTTL, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestServeShutsDownWhenContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, clock.NewFake(t0), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, ln, s) }()

	resp, err := http.Post("http://"+ln.Addr().String()+"/register", "application/json", strings.NewReader(bodyOf(testEntry(1))))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after Serve returned")
	}
}

func TestConcurrentRegisterHeartbeatPeers(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	const workers, rounds = 16, 15
	var wg sync.WaitGroup
	errc := make(chan error, workers+1)
	for w := range workers {
		wg.Go(func() {
			e := testEntry(w)
			c := ts.hs.Client()
			post := func(path string) error {
				resp, err := c.Post(ts.hs.URL+path, "application/json", strings.NewReader(bodyOf(e)))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s %s: %s", path, e.ID, resp.Status)
				}
				return nil
			}
			if err := post("/register"); err != nil {
				errc <- err
				return
			}
			for range rounds {
				if err := post("/heartbeat"); err != nil {
					errc <- err
					return
				}
				resp, err := c.Get(ts.hs.URL + "/peers")
				if err != nil {
					errc <- err
					return
				}
				var es []Entry
				err = json.NewDecoder(resp.Body).Decode(&es)
				resp.Body.Close()
				if err != nil {
					errc <- err
					return
				}
				_ = ts.srv.Peers()
			}
		})
	}
	// Time moves, and the expiry ticker runs, while they work; the total
	// stays under the TTL so that every entry is live at the end.
	wg.Go(func() {
		for range 40 {
			clk.Advance(100 * time.Millisecond)
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if ps := ts.peers(); len(ps) != workers {
		t.Fatalf("%d peers after the concurrent run, want %d", len(ps), workers)
	}
}

// TestConfigRefusesNegativeValues: negative limits are errors, never the
// defaults.
func TestConfigRefusesNegativeValues(t *testing.T) {
	for _, cfg := range []Config{{TTL: -time.Second}, {MaxEntries: -1}, {MaxPerSource: -1}} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted a negative value", cfg)
		}
	}
}
